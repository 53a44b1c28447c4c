"""The batch engine over the in-process store: thresholds, lateness, duplicates, determinism."""

from __future__ import annotations

import itertools
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

import pytest

from config.numbering import CHINA
from config.policy import load_policy, parse_policy
from config.settings import Settings
from detectors.alerts import Alert
from detectors.pseudonym import pseudonym
from detectors.windows import WindowSpec
from streams.cdr import CDR, Reject
from streams.engine import Engine
from streams.items import CALLER_KINDS, DERIVED_KINDS, Outcome, store_key
from streams.observe import Obs, derived_obs
from streams.reorder import Progress
from streams.state.base import NumberState
from streams.state.blob import from_blobs
from streams.state.memory import MemoryStore
from streams.state.prune import MAX_PEER_TIMES, MAX_SEEN
from tests.factories import T0, cdr, dial

NOW_MS = (T0 + 30 * 86_400) * 1000
SETTINGS = Settings()
# The engine's mechanics are tested on the plain velocity rule; tests/unit/test_detection_quality.py
# and tests/unit/test_detectors.py cover the bundled policy.
VELOCITY = {
    "policy_version": "test",
    "windows": {"10m": 600, "40m": 2400, "24h": 86_400},
    "detectors": {
        "bulk_dialling": {
            "category": "telemarketing",
            "levels": [
                {
                    "severity": "critical",
                    "action": "intercept",
                    "thresholds": {"40m": 250, "24h": 2000},
                }
            ],
        }
    },
}


def make_engine(policy_raw: Mapping[str, object] | None = None, **settings: object) -> Engine:
    policy = parse_policy(policy_raw or VELOCITY)
    return Engine(SETTINGS.with_(**settings), policy, MemoryStore(), clock_ms=lambda: NOW_MS)


async def run(engine: Engine, records: Sequence[CDR | Reject], batch: int = 500) -> Outcome:
    """Feed records in order, ``batch`` per call, and merge the outcomes."""
    total = Outcome()
    meta = await engine.meta(0)
    items = [(meta.offset + 1 + i, r) for i, r in enumerate(records)]
    for i in range(0, len(items), batch):
        out = await engine.process(0, items[i : i + batch])
        total.alerts += out.alerts
        total.accepted += out.accepted
        total.duplicates += out.duplicates
        total.replayed += out.replayed
        total.rejects += out.rejects
    return total


def intercepts(alerts: list[Alert]) -> list[Alert]:
    return [a for a in alerts if a.action == "intercept"]


def normal_traffic(n: int, seed: int = 1) -> list[CDR]:
    rng = random.Random(seed)
    out = [
        cdr(f"135{i:08d}", T0 + rng.uniform(0, 8 * 3600), k)
        for i in range(n)
        for k in range(rng.randint(0, 12))
    ]
    return sorted(out, key=lambda c: c.start_ms)


async def test_250_calls_in_40_minutes_raise_one_intercept() -> None:
    engine = make_engine()
    dialler = dial("17012345678", 300, 2400 * 300 / 250)  # 250 per 40 min, for longer
    records = sorted(dialler + normal_traffic(300), key=lambda c: c.start_ms)
    out = await run(engine, records)
    hits = intercepts(out.alerts)
    assert [(a.number, a.detector, a.severity, a.state) for a in hits] == [
        ("17012345678", "bulk_dialling", "critical", "raised")
    ]
    assert hits[0].evidence["window_calls"] == 250
    assert hits[0].reasons == ("250 calls in 40m >= 250",)
    assert hits[0].event_ms == dialler[249].start_ms


async def test_249_calls_in_40_minutes_raise_nothing() -> None:
    engine = make_engine()
    out = await run(engine, dial("17012345678", 249, 2339))  # 249 calls inside 39 minutes
    assert out.alerts == []
    assert out.accepted == 249


async def test_threshold_counts_buckets_not_seconds() -> None:
    # The 40 min window is 40 one-minute buckets: calls from hh:00:00 to hh:39:59 count, ...
    start = T0 - T0 % 60
    inside = [cdr("17012345678", start + i * 9.6, i) for i in range(250)]
    assert len(intercepts((await run(make_engine(), inside)).alerts)) == 1
    # ... while 250 calls from hh:00:59 to hh:40:00 span 41 buckets, though only 39 min apart.
    spread = [cdr("17012345678", start + 59 + i * (2341 / 249), i) for i in range(250)]
    assert (await run(make_engine(), spread)).alerts == []


@pytest.mark.parametrize("batch", [1, 7, 64, 500, 100_000])
async def test_alerts_do_not_depend_on_batching(batch: int) -> None:
    traffic = sorted(
        dial("17012345678", 600, 4800) + dial("95512345", 2100, 86_000) + normal_traffic(200),
        key=lambda c: c.start_ms,
    )
    reference = await run(make_engine(), traffic, batch=100_000)
    out = await run(make_engine(), traffic, batch=batch)
    assert [a.alert_id for a in out.alerts] == [a.alert_id for a in reference.alerts]
    assert len(intercepts(out.alerts)) == 2


async def test_late_out_of_order_delivery_gives_same_intercepts() -> None:
    traffic = sorted(dial("17012345678", 400, 3840) + normal_traffic(300), key=lambda c: c.start_ms)
    rng = random.Random(3)
    # mediation files: each record delivered up to 15 minutes after its start
    delivered = sorted(traffic, key=lambda c: c.start_ms + rng.uniform(0, 900_000))
    assert delivered != traffic
    on_time = await run(make_engine(), traffic)
    late = await run(make_engine(), delivered)
    assert late.rejects == []
    assert late.accepted == on_time.accepted == len(traffic)
    assert [(a.number, a.action) for a in intercepts(late.alerts)] == [
        (a.number, a.action) for a in intercepts(on_time.alerts)
    ]


async def test_records_older_than_the_lateness_horizon_are_rejected() -> None:
    engine = make_engine(allowed_lateness_s=600)
    out = await run(engine, [cdr("13800000001", T0 + 3600, 1), cdr("13800000002", T0, 2)])
    assert [r.reason for _, r in out.rejects] == ["too_late"]
    assert out.accepted == 1


async def test_future_records_are_rejected() -> None:
    engine = make_engine()
    out = await run(engine, [cdr("13800000001", NOW_MS / 1000 + 3600, 1)])
    assert [r.reason for _, r in out.rejects] == ["future"]


async def test_duplicate_cdr_ids_count_once() -> None:
    engine = make_engine()
    calls = dial("17012345678", 249, 1500)  # all within the 30 min lateness horizon
    out = await run(engine, calls + calls[:10] + [calls[5]])
    assert out.duplicates == 11
    assert out.alerts == []  # 249 distinct calls, however often repeated
    # beyond the horizon a repeat is rejected as too late instead: still not counted
    stale = await run(engine, [cdr("13500000000", T0 + 4000, 1), calls[0]])
    assert [r.reason for _, r in stale.rejects] == ["too_late"]


async def test_a_flood_keeps_the_subject_state_bounded() -> None:
    """20,000 calls in 10 minutes from one number: its stored state stays within a bound set
    by MAX_SEEN (ids within the lateness horizon), not by the number of calls."""
    engine = make_engine()
    await run(engine, dial("17012345678", 20_000, 600), batch=2000)
    store = engine.store
    assert isinstance(store, MemoryStore)
    blob = store._windows[(0, store_key("number", "17012345678"))]
    assert len(from_blobs(blob, None).seen) == MAX_SEEN
    assert len(blob) < 40 * MAX_SEEN  # about 34 B of JSON per remembered id


async def test_a_bombed_callee_keeps_a_bounded_list_per_caller() -> None:
    engine = default_engine(DERIVED_KINDS)
    calls = [cdr("17012345678", T0 + i * 3, i, callee="13900139000") for i in range(1000)]
    observed = derived_obs(calls, SETTINGS.international_trunks, 0, CHINA)
    await feed(engine, [observed])
    store = engine.store
    assert isinstance(store, MemoryStore)
    state = from_blobs(store._windows[(0, store_key("callee", "13900139000"))], None)
    assert [len(times) for times in state.peers.values()] == [MAX_PEER_TIMES]


async def test_replayed_offsets_are_skipped() -> None:
    engine = make_engine()
    calls = dial("17012345678", 260, 2000)
    items = list(enumerate(calls))
    first = await engine.process(0, items[:200])
    again = await engine.process(0, items[:250])  # redelivery overlapping the applied part
    assert first.accepted == 200
    assert again.replayed == 200 and again.accepted == 50
    assert len(intercepts(again.alerts)) == 1


async def test_episode_clears_after_quiet_period_and_rearms() -> None:
    engine = make_engine(episode_quiet_s=3600)
    burst = dial("17012345678", 260, 2400)
    quiet_until = T0 + 2400 + 3 * 3600
    later = [cdr("13500000000", quiet_until, 9)]  # moves the watermark on
    second = dial("17012345678", 260, 2400, start_s=quiet_until + 60)
    second = [cdr(c.caller, c.start_ms / 1000, 1000 + i) for i, c in enumerate(second)]
    out = await run(engine, burst + later + second)
    states = [(a.state, a.severity) for a in out.alerts]
    assert states == [("raised", "critical"), ("cleared", "info"), ("raised", "critical")]
    assert out.alerts[0].episode_id == out.alerts[1].episode_id != out.alerts[2].episode_id
    assert out.alerts[1].event_ms == burst[-1].start_ms + 3600_000


TWO_LEVELS = {
    "policy_version": "t",
    "windows": {"40m": 2400, "24h": 86400},
    "detectors": {
        "bulk_dialling": {
            "category": "telemarketing",
            "levels": [
                {"severity": "warning", "action": "monitor", "thresholds": {"40m": 100}},
                {"severity": "critical", "action": "intercept", "thresholds": {"40m": 250}},
            ],
        }
    },
}


async def test_escalation_is_a_new_alert_in_the_same_episode() -> None:
    out = await run(make_engine(TWO_LEVELS), dial("17012345678", 300, 2400 * 300 / 250))
    assert [(a.state, a.severity, a.action) for a in out.alerts] == [
        ("raised", "warning", "monitor"),
        ("escalated", "critical", "intercept"),
    ]
    assert out.alerts[0].episode_id == out.alerts[1].episode_id
    assert out.alerts[0].alert_id != out.alerts[1].alert_id


async def test_allowlisted_number_is_never_intercepted() -> None:
    engine = make_engine()
    engine.allowlist = frozenset({"95588"})
    out = await run(engine, dial("95588", 400, 2400))
    assert [(a.number, a.action, a.allowlisted) for a in out.alerts] == [("95588", "monitor", True)]


async def test_daily_threshold_fires_for_a_steady_dialler() -> None:
    engine = make_engine()
    out = await run(engine, dial("95512345", 2000, 86_000))  # ~56 per 40 min, all day
    hits = intercepts(out.alerts)
    assert len(hits) == 1
    assert hits[0].reasons == ("2000 calls in 24h >= 2000",)


async def test_bad_records_are_counted_and_do_not_stop_the_batch() -> None:
    engine = make_engine()
    good = dial("17012345678", 260, 2000)
    mixed: list[CDR | Reject] = [*good[:100], Reject("bad_number", "x"), *good[100:]]
    out = await run(engine, mixed, batch=1000)
    assert [r.reason for _, r in out.rejects] == ["bad_number"]
    assert out.accepted == 260
    assert len(intercepts(out.alerts)) == 1


# ------------------------------------------------------- arrival order, sources and spoofing

DEFAULT_POLICY = load_policy(SETTINGS.policy_file)
VICTIM = "13811112222"
BOMBERS = tuple(f"1390000{i:04d}" for i in range(5))
N_SOURCES = 3


def default_engine(kinds: Collection[str] = CALLER_KINDS, sources: int = 1) -> Engine:
    return Engine(
        SETTINGS,
        DEFAULT_POLICY,
        MemoryStore(),
        clock_ms=lambda: NOW_MS,
        kinds=kinds,
        sources=sources,
    )


def flagged(alerts: list[Alert]) -> set[tuple[str, str, str, str]]:
    return {(a.subject, a.number, a.detector, a.action) for a in alerts if a.state != "cleared"}


def bombing_sources() -> list[list[Obs]]:
    """Five callers flood VICTIM (20 calls in 4 minutes, 4 each); hours later VICTIM gets and
    makes ordinary calls. Stage-1 partitions are keyed by caller, so each caller's CDRs come
    from one source; no source alone sees the 10 calls in 5 minutes call_bombing needs."""
    per_source: list[list[CDR]] = [[] for _ in range(N_SOURCES)]
    for i, bomber in enumerate(BOMBERS):
        for k in range(4):
            at = T0 + 60 + k * 50 + i * 7
            per_source[i % N_SOURCES].append(cdr(bomber, at, 100 * i + k, callee=VICTIM))
    later = T0 + 3 * 3600
    for j in range(6):
        friend = f"1360000{j:04d}"
        per_source[j % N_SOURCES].append(cdr(friend, later + j * 1200, 900 + j, callee=VICTIM))
    # the victim's own calls: all from its own partition
    for j in range(4):
        per_source[1].append(cdr(VICTIM, later + j * 1100 + 30, 800 + j, callee=f"1370000{j:04d}"))
    return [
        derived_obs(sorted(cdrs, key=lambda c: c.start_ms), SETTINGS.international_trunks, s, CHINA)
        for s, cdrs in enumerate(per_source)
    ]


def expected_bombing_alerts() -> set[tuple[str, str, str, str]]:
    victim = pseudonym(VICTIM, SETTINGS.pseudonym_key.encode())
    return {("callee", victim, "call_bombing", "protect")} | {
        ("number", b, "call_bombing", "intercept") for b in BOMBERS
    }


async def feed(engine: Engine, batches: Sequence[Sequence[CDR | Obs | Progress]]) -> Outcome:
    """Feed ``batches`` to partition 0, one process() call each, and merge the outcomes. A
    stage-2 engine is then told that every source has read all its input, releasing what it
    held for the canonical order (streams.reorder)."""
    total = Outcome()
    offset = 0
    if engine.kinds != CALLER_KINDS:
        seen = [o for batch in batches for o in batch if isinstance(o, Obs)]
        fronts = {o.source: o.start_ms for o in sorted(seen, key=lambda o: o.start_ms)}
        batches = [*batches, [Progress(s, front, True) for s, front in sorted(fronts.items())]]
    for batch in batches:
        out = await engine.process(0, [(offset + i, o) for i, o in enumerate(batch)])
        offset += len(batch)
        total.alerts += out.alerts
        total.accepted += out.accepted
        total.duplicates += out.duplicates
        total.to_trunk += out.to_trunk
        total.rejects += out.rejects
    return total


def test_no_single_source_sees_the_bombing() -> None:
    for obs in bombing_sources():
        bombing = [
            o
            for o in obs
            if o.kind == "callee" and o.subject == VICTIM and o.start_ms < (T0 + 3600) * 1000
        ]
        assert 0 < len(bombing) < 10  # so a stage-2 alert needs the sources merged


@pytest.mark.parametrize(
    "order",
    list(itertools.permutations(range(N_SOURCES))),
    ids=lambda o: "sources-" + "".join(map(str, o)),
)
async def test_stage2_alerts_do_not_depend_on_the_order_of_sources(
    order: tuple[int, ...],
) -> None:
    sources = bombing_sources()
    stream = [o for s in order for o in sources[s]]
    out = await feed(default_engine(DERIVED_KINDS), [stream])
    assert out.rejects == []
    assert out.accepted == len(stream)
    assert flagged(out.alerts) == expected_bombing_alerts()


@pytest.mark.parametrize(
    ("order", "per_source"),
    [
        *[pytest.param(o, True, id=f"one-batch-per-source-{o}") for o in [(0, 1, 2), (2, 1, 0)]],
        pytest.param((0, 1, 2), False, id="one-observation-per-batch"),
    ],
)
async def test_stage2_alerts_do_not_depend_on_batching_across_sources(
    order: tuple[int, ...], per_source: bool
) -> None:
    sources = bombing_sources()
    stream = [o for s in order for o in sources[s]]
    batches = [sources[s] for s in order] if per_source else [[o] for o in stream]
    # As in the worker: the engine knows how many stage-1 partitions feed it.
    out = await feed(default_engine(DERIVED_KINDS, sources=N_SOURCES), batches)
    assert out.rejects == []
    assert flagged(out.alerts) == expected_bombing_alerts()


def burst_dialler() -> tuple[list[CDR], list[CDR]]:
    """A dialler idling at one call every 2 minutes for 2 hours, and its burst of 25 calls in
    3 minutes 30 minutes in: only the burst reaches bulk dialling's 22 calls in 5 minutes."""
    rng = random.Random(7)
    caller = "13512345678"
    idle = [
        cdr(caller, T0 + i * 120, i, callee=f"1{rng.randrange(10**10):010d}") for i in range(60)
    ]
    burst = [
        cdr(caller, T0 + 1800 + 5 + i * 7, 1000 + i, callee=f"1{rng.randrange(10**10):010d}")
        for i in range(25)
    ]
    return idle, burst


@pytest.mark.parametrize("batch", [1, 500])
async def test_stage1_late_burst_flags_the_same_as_in_order(batch: int) -> None:
    idle, burst = burst_dialler()
    in_order = sorted(idle + burst, key=lambda c: c.start_ms)
    # the burst reaches the switch 20 minutes late, after calls made up to 20 minutes later
    late_ids = {c.cdr_id for c in burst}
    late = sorted(in_order, key=lambda c: c.start_ms + (1_200_000 if c.cdr_id in late_ids else 0))
    assert late != in_order
    on_time = await run(default_engine(), in_order, batch=batch)
    delayed = await run(default_engine(), late, batch=batch)
    assert delayed.rejects == [] and delayed.accepted == on_time.accepted == len(in_order)
    expected = {(a.number, a.detector) for a in on_time.alerts if a.state != "cleared"}
    assert ("13512345678", "bulk_dialling") in expected
    assert {(a.number, a.detector) for a in delayed.alerts if a.state != "cleared"} == expected


SPOOFS = [
    pytest.param("C", None, id="attestation-C"),
    pytest.param(" c ", "core-1", id="attestation-padded-c"),
    pytest.param(None, "intl-gw7", id="domestic-on-intl-trunk"),
]


def flood(caller: str, calls: int, span_s: float, trunk: str | None, att: str | None) -> list[CDR]:
    rng = random.Random(11)
    return [
        replace(
            cdr(caller, T0 + i * span_s / calls, i, callee=f"1{rng.randrange(10**10):010d}"),
            ingress_trunk=trunk,
            attestation=att,
        )
        for i in range(calls)
    ]


@pytest.mark.parametrize(("attestation", "trunk"), SPOOFS)
async def test_stage1_spoofed_calls_go_to_the_trunk_not_the_presented_number(
    attestation: str | None, trunk: str | None
) -> None:
    presented = "13812345678"
    calls = flood(presented, 300, 1200, trunk, attestation)
    out = await feed(default_engine(), [calls[i : i + 100] for i in range(0, 300, 100)])
    assert out.to_trunk == 300
    assert out.accepted == 0
    assert out.alerts == []
    # the same calls with an asserted identity are a bulk dialler
    asserted = await feed(default_engine(), [flood(presented, 300, 1200, "core-1", "A")])
    assert asserted.to_trunk == 0 and asserted.accepted == 300
    assert (presented, "bulk_dialling", "intercept") in {
        (a.number, a.detector, a.action) for a in asserted.alerts
    }


@pytest.mark.parametrize(("attestation", "trunk"), SPOOFS)
async def test_stage2_spoofed_bombing_never_intercepts_the_presented_numbers(
    attestation: str | None, trunk: str | None
) -> None:
    def bombing(att: str | None, via: str | None) -> list[Obs]:
        calls = [
            replace(
                cdr(BOMBERS[i % 3], T0 + i * 8, i, callee=VICTIM),
                ingress_trunk=via,
                attestation=att,
            )
            for i in range(30)
        ]
        return derived_obs(calls, SETTINGS.international_trunks, 0, CHINA)

    honest = await feed(default_engine(DERIVED_KINDS), [bombing("A", "core-1")])
    assert {("number", b, "intercept") for b in BOMBERS[:3]} <= {
        (a.subject, a.number, a.action) for a in honest.alerts
    }
    spoofed = await feed(default_engine(DERIVED_KINDS), [bombing(attestation, trunk)])
    assert spoofed.accepted == 60  # 30 trunk and 30 callee observations
    assert [a for a in spoofed.alerts if a.subject == "number"] == []
    # The victim is still protected, and the trunk that carried the flood is flagged.
    assert {(a.subject, a.detector, a.action) for a in spoofed.alerts} == {
        ("callee", "call_bombing", "protect"),
        ("trunk", "spoofed_identity", "intercept"),
    }


async def test_stage2_spoofed_flood_is_attributed_to_its_trunk() -> None:
    calls = [
        replace(
            cdr(f"1380000{i:04d}", T0 + i * 10, i, callee=f"1390000{i:04d}"),
            ingress_trunk="intl-gw7",
        )
        for i in range(25)
    ]
    out = await feed(
        default_engine(DERIVED_KINDS), [derived_obs(calls, SETTINGS.international_trunks, 0, CHINA)]
    )
    assert flagged(out.alerts) == {("trunk", "intl-gw7", "spoofed_identity", "intercept")}


async def test_only_admitted_cdrs_are_forwarded_to_stage_2() -> None:
    """A CDR stage 1 rejects (future, too late) is not forwarded, so it is rejected and
    dead-lettered once; a spoofed call is admitted and forwarded for its trunk."""
    engine = default_engine(CALLER_KINDS)
    newest = cdr("13512345678", T0 + 7200, 1)
    late = cdr("13512345679", T0, 2)
    future = cdr("13512345670", NOW_MS / 1000 + 86_400, 3)
    spoofed = replace(cdr("13512345671", T0 + 7100, 4), attestation="C")
    out = await engine.process(0, list(enumerate([newest, late, future, spoofed])))
    assert [c.cdr_id for c in out.admitted] == [newest.cdr_id, spoofed.cdr_id]
    assert sorted(r.reason for _, r in out.rejects) == ["future", "too_late"]
    assert out.to_trunk == 1


def afresh_engine(kinds: Collection[str]) -> Engine:
    """An engine that sums every window afresh from its buckets (no kept sums)."""
    engine = default_engine(kinds)
    window = engine._window

    def fresh(state: NumberState, spec: WindowSpec, at_ms: int, cache: object = None) -> list[int]:
        return window(state, spec, at_ms)

    engine._window = fresh  # type: ignore[method-assign]
    return engine


@pytest.mark.parametrize("batch", [7, 500])
@pytest.mark.parametrize("kinds", [CALLER_KINDS, DERIVED_KINDS], ids=["callers", "subjects"])
async def test_kept_window_sums_equal_sums_read_afresh(kinds: Collection[str], batch: int) -> None:
    """The in-order window sums _apply keeps up to date give the same alerts, to the id, as
    summing the buckets afresh at every record, on late, out-of-order traffic."""
    traffic = dial("17012345678", 400, 3840) + normal_traffic(300)
    traffic += [cdr("17099990000", T0 + i * 20, i, callee="13900139000") for i in range(60)]
    rng = random.Random(5)
    delivered = sorted(traffic, key=lambda c: c.start_ms + rng.uniform(0, 900_000))
    items: list[CDR | Obs] = list(delivered)
    if kinds == DERIVED_KINDS:
        items = list(derived_obs(delivered, SETTINGS.international_trunks, 0, CHINA))
    batches = [items[i : i + batch] for i in range(0, len(items), batch)]
    kept = await feed(default_engine(kinds), batches)
    afresh = await feed(afresh_engine(kinds), batches)
    assert kept.alerts and [a.alert_id for a in kept.alerts] == [a.alert_id for a in afresh.alerts]


async def test_a_new_pseudonym_key_changes_no_alert_or_episode_id() -> None:
    """Ids hash the callee itself; only the displayed pseudonym follows the key."""
    stream = [o for source in bombing_sources() for o in source]
    runs = []
    for key in ("key-one", "key-two"):
        engine = Engine(
            SETTINGS.with_(pseudonym_key=key),
            DEFAULT_POLICY,
            MemoryStore(),
            clock_ms=lambda: NOW_MS,
            kinds=DERIVED_KINDS,
        )
        runs.append((await feed(engine, [stream])).alerts)
    first, second = runs
    victims = [(a, b) for a, b in zip(first, second, strict=True) if a.subject == "callee"]
    assert victims
    assert [(a.alert_id, a.episode_id) for a in first] == [
        (b.alert_id, b.episode_id) for b in second
    ]
    assert all(a.number != b.number for a, b in victims)
