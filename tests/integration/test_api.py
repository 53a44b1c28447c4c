"""The operator's HTTP API against a worker fed the scenario (tests/integration/desk.py): roles,
refusals, audit by token name, pseudonyms for read-only tokens, probes. schemathesis runs in
test_openapi.py, after the console test: its approvals change the list."""

from __future__ import annotations

import orjson
import pytest

from detectors.pseudonym import pseudonym
from tests.integration.desk import ApiWorker

pytestmark = pytest.mark.e2e


def pending_number(w: ApiWorker) -> str:
    status, body = w.call("GET", "/interceptions?state=pending", "read-only")
    assert status == 200 and body["entries"], "the scenario left nothing pending"
    return str(sorted(x["number"] for x in body["entries"])[-1])


def test_refusals_are_401_and_403_with_a_json_error(api_worker: ApiWorker) -> None:
    w = api_worker
    assert w.call("GET", "/interceptions")[0] == 401
    w.tokens["bogus"] = "not-a-configured-token-at-all"
    status, body = w.call("GET", "/interceptions", "bogus")
    assert status == 401 and "error" in body
    number = pending_number(w)
    status, body = w.call("POST", f"/interceptions/{number}/approve", "read-only", {})
    assert status == 403 and "operator" in body["error"]
    status, _ = w.call("POST", "/allowlist", "operator", {"number": number})
    assert status == 403  # allowlisting is the admin's
    # Bad input: 400 with the reason.
    status, body = w.call("POST", f"/interceptions/{number}/release", "operator", {})
    assert status == 400 and "reason" in body["error"]
    # A JSON null is no string (the document's type): refused, not taken as "no reason".
    for path in ("approve", "release"):
        status, body = w.call(
            "POST", f"/interceptions/{number}/{path}", "operator", {"reason": None}
        )
        assert status == 400 and "reason must be a string" in body["error"]
    status, body = w.call("GET", "/numbers/not-a-number", "read-only")
    assert status == 400 and "number" in body["error"]
    status, body = w.call("GET", "/interceptions?state=bogus", "read-only")
    assert status == 400 and "state" in body["error"]
    assert w.redis().exists(w.key("pend", number))  # nothing changed
    for path in ("/healthz", "/readyz", "/health"):
        assert w.call("GET", path)[0] == 200


def test_an_operator_approves_and_releases_audited_with_the_tokens_name(
    api_worker: ApiWorker,
) -> None:
    w, client = api_worker, api_worker.redis()
    number = pending_number(w)
    status, body = w.call("POST", f"/interceptions/{number}/approve", "operator", {})
    assert status == 200 and body["result"] == "approved"
    assert client.hget(w.key("icpt", number), "state") == "active"
    assert client.hget(w.key("icpt", number), "approved_by") == w.names["operator"]
    status, _ = w.call("POST", f"/interceptions/{number}/approve", "operator", {})
    assert status == 404  # nothing pending any more
    status, body = w.call(
        "POST", f"/interceptions/{number}/release", "operator", {"reason": "appeal 7 upheld"}
    )
    assert status == 200 and body["result"] == "released"
    assert not client.exists(w.key("icpt", number))
    status, body = w.call("GET", f"/audit?number={number}", "read-only")
    events = [(x["event"], x["actor"]) for x in body["entries"]]
    assert ("approve", "olga") in events and ("release", "olga") in events
    assert body["entries"][-1]["reason"] == "appeal 7 upheld"
    status, view = w.call("GET", f"/numbers/{number}", "read-only")
    assert status == 200 and view["interception"]["entries"] == []
    assert view["interception"]["held"].startswith("operator: appeal 7 upheld")
    assert view["caller"]["windows"] and view["alerts"]


def test_read_only_responses_show_victims_only_by_pseudonym(api_worker: ApiWorker) -> None:
    w = api_worker
    victims = [x.subject for x in w.scenario.labels if x.expect == "protect"]
    assert victims
    key = w.env.get("DIALWATCH_PSEUDONYM_KEY") or ""
    from config.settings import Settings

    key = key or Settings().pseudonym_key
    victim = victims[0]
    status, seen = w.call("GET", f"/numbers/{victim}", "read-only")
    assert status == 200 and seen["interception"]["protection"] is not None
    shown = pseudonym(victim, key.encode())
    assert seen["interception"]["protection"]["victim"] == shown
    assert seen["callee"]["subject"] == shown
    if seen["caller"] is not None:  # the victim's own calls: the number asked for, echoed
        assert seen["caller"].pop("subject") == victim
    body = orjson.dumps({k: v for k, v in seen.items() if k != "number"}).decode()
    assert victim not in body
    status, op = w.call("GET", f"/numbers/{victim}", "operator")
    assert op["interception"]["protection"]["victim"] == victim
    for path in ("/alerts/recent?limit=1000", "/audit?limit=1000", "/interceptions"):
        text = orjson.dumps(w.call("GET", path, "read-only")[1]).decode()
        assert not any(v in text for v in victims), path


def test_openapi_document_lists_every_route_with_its_role(api_worker: ApiWorker) -> None:
    from streams.api.routes import ROUTES

    status, doc = api_worker.call("GET", "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    for route in ROUTES:
        op = doc["paths"][route.path][route.method.lower()]
        assert op["x-role"] == route.role.label
