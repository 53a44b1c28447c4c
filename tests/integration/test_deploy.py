"""deploy/ validates without Docker, Kubernetes or the network (issue 16): promtool on the
Prometheus files and the rules' unit tests, the compose file against the Compose
specification's JSON schema (as vendored by check-jsonschema), the manifests against the
Kubernetes schemas (kubernetes-validate), every referenced file, and the dashboard's JSON.
Under tests/integration because promtool is a process of its own."""

from __future__ import annotations

import json
import re
import runpy
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROM = DEPLOY / "prometheus"
K8S_VERSION = "1.31.0"


def promtool(*args: str) -> str:
    done = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_prometheus_config_rules_and_rule_unit_tests() -> None:
    promtool("check", "config", str(PROM / "prometheus.yml"))
    assert "SUCCESS: 8 rules found" in promtool("check", "rules", str(PROM / "rules.yml"))
    promtool("test", "rules", str(PROM / "rules.test.yml"))


def alert_names() -> list[str]:
    rules = yaml.safe_load((PROM / "rules.yml").read_text())
    return [r["alert"] for g in rules["groups"] for r in g["rules"]]


def test_every_alert_has_a_unit_test_and_a_runbook_line() -> None:
    names = alert_names()
    assert len(names) == 8
    tests = yaml.safe_load((PROM / "rules.test.yml").read_text())["tests"]
    tested = {case["alertname"] for t in tests for case in t["alert_rule_test"]}
    assert tested == set(names)
    readme = (ROOT / "README.md").read_text()
    for name in names:
        assert re.search(rf"^\| `{name}` \|.*\|.*\|$", readme, re.MULTILINE), name


def compose_schema() -> dict[str, Any]:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads(vendor.joinpath("compose-spec.json").read_text())
    return schema


def test_compose_file_matches_the_compose_specification() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    validator = jsonschema.Draft7Validator(compose_schema())
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, errors
    # The schema has teeth: a misspelt key is refused.
    broken = {**compose, "services": {**compose["services"], "oops": {"imagee": "x"}}}
    assert list(validator.iter_errors(broken))

    services = compose["services"]
    kafka = [name for name in services if name.startswith("kafka-") and name[6:].isdigit()]
    assert len(kafka) == 3
    for name in kafka:
        env = services[name]["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
    workers = [s for s in services.values() if s.get("command") == ["worker"]]
    assert len(workers) == 2
    assert {w["environment"]["DIALWATCH_APP_ID"] for w in workers} == {"dialwatch"}
    assert {w["environment"]["DIALWATCH_TOPIC_REPLICATION"] for w in workers} == {"3"}
    for redis in ("redis", "redis-intercept"):
        assert "--appendonly" in services[redis]["command"]
    assert {"prometheus", "grafana"} <= set(services)


def test_every_file_the_compose_file_references_exists() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    referenced: list[Path] = []
    for service in compose["services"].values():
        build = service.get("build")
        if build:
            context = DEPLOY / build["context"]
            referenced += [context, context / build["dockerfile"]]
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                referenced.append(DEPLOY / source)
        entry = service.get("entrypoint") or []
        referenced += [DEPLOY / p.removeprefix("/deploy/") for p in entry if "/deploy/" in p]
    assert len(referenced) >= 6
    missing = [str(p) for p in referenced if not p.exists()]
    assert not missing, missing
    # Secret files are the operator's (never committed): they live in deploy/secrets/.
    for secret in compose["secrets"].values():
        assert (DEPLOY / secret["file"]).parent == DEPLOY / "secrets"
    assert (DEPLOY / "secrets" / "README.md").exists()
    mounted = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    assert "rules.yml" in mounted


def manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_kubernetes_manifests_validate_against_the_schemas() -> None:
    docs = manifests()
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    kinds = {d["kind"]: d for d in docs}
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget"} <= set(kinds)
    assert "HorizontalPodAutoscaler" in kinds
    deployment = kinds["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    requests = container["resources"]["requests"]
    assert requests["cpu"] and requests["memory"]
    secret_refs = [
        e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e
    ]
    assert secret_refs and set(secret_refs) == {"dialwatch-secrets"}
    config = container["envFrom"][0]["configMapRef"]["name"]
    assert config == kinds["ConfigMap"]["metadata"]["name"]
    for selector in (
        kinds["Service"]["spec"]["selector"],
        kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()
    target = kinds["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert target["name"] == deployment["metadata"]["name"]
    partitions = int(kinds["ConfigMap"]["data"]["DIALWATCH_TOPIC_PARTITIONS"])
    assert kinds["HorizontalPodAutoscaler"]["spec"]["maxReplicas"] <= partitions


def test_dashboard_json_is_generated_and_well_formed() -> None:
    generator = runpy.run_path(str(DEPLOY / "grafana" / "dashboard.py"))
    path = DEPLOY / "grafana" / "dashboards" / "dialwatch.json"
    assert path.read_text() == generator["render"](), "run python deploy/grafana/dashboard.py"
    dashboard = json.loads(path.read_text())
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )["datasources"][0]
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"]["uid"] == datasource["uid"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"]["uid"] == datasource["uid"]
    titles = " ".join(p["title"].lower() for p in panels)
    for needed in ("throughput", "lag", "event-time", "detector", "interception", "rejected"):
        assert needed in titles
    assert "batch latency" in titles and "redis latency" in titles
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "dialwatch.yaml").read_text()
    )["providers"][0]
    compose = (DEPLOY / "compose.yaml").read_text()
    assert f"./grafana/dashboards:{provider['options']['path']}" in compose
