"""``dialwatch evaluate``: detection quality of the engine on a labelled scenario.

:func:`evaluate` is pure: it scores the alerts of one run against the scenario's labels and CDRs
and returns a :class:`Report` (per-pattern recall, time to detect, every false intercept and the
PASS/FAIL of each target). :func:`run_benchmark` generates scenarios, replays them through
``dialwatch scan``'s engine and prints the reports; :func:`score_files` scores an existing run.

Times to detect are in event time: the ``event_time`` of the first alert that detects a subject
minus the start of the subject's first call. Medians and 90th percentiles are nearest-rank.

Two replay orders: ``sorted`` (by start time, as ``dialwatch scan`` reads files) and ``delivery``
(the scenario's own order, late records where they arrive, in the demo's messages: arrays of
records of one partition, ``streams.tools.simulate.batch_by_partition``, each through stage 1 and
its observations straight on through stage 2, as a worker that keeps up would take them).
"""

from __future__ import annotations

import asyncio
import io
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, TextIO
from zoneinfo import ZoneInfo

import orjson

from config.numbering import CHINA, normalise
from detectors.pseudonym import pseudonym

if TYPE_CHECKING:
    from config.settings import Settings
    from streams.engine import Engine

INTERCEPT: Final = "intercept"
PROTECT: Final = "protect"
TRUNK: Final = "trunk"
NORMAL: Final = "normal"
ACTIVE_STATES: Final = frozenset({"raised", "escalated"})
BOMB_SOURCE_ROLES: Final = frozenset({"bomber", "bomb_crew"})
# Roles whose time to detect runs from their Nth call to a subject labelled "protect" (the
# person they harass), not from their first call: a debt collector's target is 30 min after
# its 10th attempt at the debtor (issue 19).
ATTEMPT_FROM: Final[Mapping[str, int]] = {"debt_collector": 10}
FALSE_INTERCEPTS: Final = "false_intercepts"
SORTED: Final = "sorted"
DELIVERY: Final = "delivery"
ORDERS: Final = (SORTED, DELIVERY)
MESSAGE_RECORDS: Final = 200  # records per CDR message in the demo (and in delivery replay)
PASS: Final = "PASS"
FAIL: Final = "FAIL"
NOT_APPLICABLE: Final = "N/A"  # nothing labelled in the role: the target cannot be measured
# The labelled scenario's numbers are Chinese (streams.tools.scenario), so scoring reads them
# under the CN plan whatever DIALWATCH_NUMBERING_PLAN says.
SCENARIO_PLAN: Final = CHINA

Records = Iterable[Mapping[str, object]]
Alerts = Iterable[Mapping[str, object]]


class LabelLike(Protocol):
    """What scoring needs of a label (``streams.tools.scenario.ScenarioLabel`` has it)."""

    @property
    def subject(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def expect(self) -> str: ...


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class PatternResult:
    """Recall and times to detect of one labelled role."""

    role: str
    expect: str
    labelled: int
    detected: int
    ttd_min: tuple[float, ...] = ()  # sorted; detected subjects with a known first call
    missed: tuple[str, ...] = ()  # sorted; victims appear by pseudonym, never in clear

    @property
    def recall(self) -> float | None:
        return self.detected / self.labelled if self.labelled else None

    @property
    def median_ttd_min(self) -> float | None:
        return nearest_rank(self.ttd_min, 50)

    @property
    def p90_ttd_min(self) -> float | None:
        return nearest_rank(self.ttd_min, 90)

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "expect": self.expect,
            "labelled": self.labelled,
            "detected": self.detected,
            "recall": self.recall,
            "median_ttd_min": self.median_ttd_min,
            "p90_ttd_min": self.p90_ttd_min,
            "ttd_min": list(self.ttd_min),
            "missed": list(self.missed),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> PatternResult:
        return cls(
            role=str(doc["role"]),
            expect=str(doc["expect"]),
            labelled=int(doc["labelled"]),
            detected=int(doc["detected"]),
            ttd_min=tuple(float(v) for v in doc["ttd_min"]),
            missed=tuple(str(v) for v in doc["missed"]),
        )


@dataclass(frozen=True, slots=True)
class FalseIntercept:
    """A number intercepted that should not have been."""

    number: str
    role: str  # its label's role; "normal" when unlabelled
    detectors: tuple[str, ...]  # sorted
    allowlisted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "role": self.role,
            "detectors": list(self.detectors),
            "allowlisted": self.allowlisted,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> FalseIntercept:
        return cls(
            number=str(doc["number"]),
            role=str(doc["role"]),
            detectors=tuple(str(d) for d in doc["detectors"]),
            allowlisted=bool(doc["allowlisted"]),
        )


@dataclass(frozen=True, slots=True)
class Target:
    """A quality target on one role: minimum recall and, optionally, a median TTD bound."""

    role: str
    min_recall_pct: int
    max_median_min: float | None = None  # strict: the median must be below it
    max_each_min: float | None = None  # every detected subject's TTD at most this

    def describe(self) -> str:
        op = "=" if self.min_recall_pct >= 100 else "≥"
        text = f"{self.role} recall {op} {self.min_recall_pct}%"
        if self.max_median_min is not None:
            text += f", median TTD < {self.max_median_min:g} min"
        if self.max_each_min is not None:
            text += f", every TTD <= {self.max_each_min:g} min"
        return text

    def check(self, result: PatternResult | None) -> TargetResult:
        if result is None or result.labelled == 0:
            return TargetResult(self.describe(), NOT_APPLICABLE, "nothing labelled")
        ok = result.detected * 100 >= self.min_recall_pct * result.labelled
        detail = f"{result.detected}/{result.labelled} = {_pct(result.recall)}"
        if self.max_median_min is not None:
            median = result.median_ttd_min
            ok = ok and median is not None and median < self.max_median_min
            detail += f", median {_minutes(median)}"
        if self.max_each_min is not None:
            worst = result.ttd_min[-1] if result.ttd_min else None
            ok = ok and worst is not None and worst <= self.max_each_min
            detail += f", worst {_minutes(worst)}"
        return TargetResult(self.describe(), PASS if ok else FAIL, detail)


@dataclass(frozen=True, slots=True)
class TargetResult:
    target: str
    status: str  # PASS | FAIL | N/A
    detail: str

    def line(self) -> str:
        return f"  {self.status:4}  {self.target:52} {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "status": self.status, "detail": self.detail}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> TargetResult:
        return cls(str(doc["target"]), str(doc["status"]), str(doc["detail"]))


TARGETS: Final[tuple[Target, ...]] = (
    Target("bulk_dialler", 100, 5.0),
    Target("sequential_dialler", 100, 3.0),
    Target("one_ring", 100, 3.0),
    Target("bomber", 100, 3.0),
    Target("bomb_crew", 100, 3.0),
    Target("bomb_victim", 100),
    Target("spoof_trunk", 100),
    Target("new_hire", 80),
    Target("block_member", 90),
    # TTD from the collector's 10th attempt at its debtor (ATTEMPT_FROM).
    Target("debt_collector", 100, max_each_min=30.0),
    Target("debtor", 100),
)
FALSE_INTERCEPT_TARGET: Final = "zero false intercepts"


@dataclass(frozen=True, slots=True)
class Throughput:
    """What ``scan`` reported of the replay behind a report."""

    records: int
    seconds: float
    alerts: int

    @property
    def per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "seconds": self.seconds,
            "alerts": self.alerts,
            "records_per_s": self.per_second,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Throughput:
        return cls(int(doc["records"]), float(doc["seconds"]), int(doc["alerts"]))


@dataclass(frozen=True, slots=True)
class Report:
    """The score of one run."""

    role_counts: Mapping[str, int]
    patterns: tuple[PatternResult, ...]
    false_intercepts: tuple[FalseIntercept, ...]
    targets: tuple[TargetResult, ...]
    seed: int | None = None
    throughput: Throughput | None = None

    @property
    def passed(self) -> bool:
        return all(t.status != FAIL for t in self.targets)

    def pattern(self, role: str) -> PatternResult | None:
        return next((p for p in self.patterns if p.role == role), None)

    def render(self) -> str:
        title = "evaluation" if self.seed is None else f"evaluation, seed {self.seed}"
        parts = [f"== {title}: {PASS if self.passed else FAIL}"]
        if self.throughput is not None:
            parts.append(_render_throughput(self.throughput))
        parts += [
            _render_counts(self.role_counts),
            _render_patterns(self.patterns),
            _render_false(self.false_intercepts),
            "targets:",
            *(t.line() for t in self.targets),
        ]
        return "\n".join(parts) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "passed": self.passed,
            "throughput": None if self.throughput is None else self.throughput.to_dict(),
            "role_counts": dict(self.role_counts),
            "patterns": [p.to_dict() for p in self.patterns],
            "false_intercepts": [f.to_dict() for f in self.false_intercepts],
            "targets": [t.to_dict() for t in self.targets],
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Report:
        throughput = doc.get("throughput")
        seed = doc.get("seed")
        return cls(
            role_counts={str(k): int(v) for k, v in doc["role_counts"].items()},
            patterns=tuple(PatternResult.from_dict(p) for p in doc["patterns"]),
            false_intercepts=tuple(FalseIntercept.from_dict(f) for f in doc["false_intercepts"]),
            targets=tuple(TargetResult.from_dict(t) for t in doc["targets"]),
            seed=None if seed is None else int(seed),
            throughput=None if throughput is None else Throughput.from_dict(throughput),
        )


# ---------------------------------------------------------------------------------------------
# Scoring


def nearest_rank(sorted_values: Sequence[float], pct: int) -> float | None:
    """The nearest-rank ``pct``-th percentile of ascending values; ``None`` when empty."""
    if not sorted_values:
        return None
    rank = max(1, -(-pct * len(sorted_values) // 100))  # ceil(pct / 100 * n), in integers
    return sorted_values[rank - 1]


def _number(raw: object) -> str:
    return _normalised(str(raw))


@lru_cache(maxsize=1 << 16)
def _normalised(text: str) -> str:
    """The engine's form of a number; text that is not a number (a trunk id) is kept."""
    return normalise(text, SCENARIO_PLAN) or text


def _epoch_s(value: object) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value)).timestamp()


def _earliest(table: dict[str, float], key: str, at: float) -> None:
    if at < table.get(key, float("inf")):
        table[key] = at


@dataclass(slots=True)
class _LabelIndex:
    """Labels keyed the way alerts name their subjects."""

    # role -> its subjects, in label order (a dict as an ordered set)
    by_role: dict[str, dict[str, None]] = field(default_factory=lambda: defaultdict(dict))
    expect_of_role: dict[str, str] = field(default_factory=dict)
    role_of: dict[str, str] = field(default_factory=dict)  # first label wins
    expected_intercept: set[str] = field(default_factory=set)
    bomb_sources: set[str] = field(default_factory=set)

    @classmethod
    def build(cls, labels: Iterable[LabelLike]) -> _LabelIndex:
        index = cls()
        for label in labels:
            subject = label.subject if label.expect == TRUNK else _number(label.subject)
            index.by_role[label.role][subject] = None
            index.expect_of_role.setdefault(label.role, label.expect)
            index.role_of.setdefault(subject, label.role)
            if label.expect == INTERCEPT:
                index.expected_intercept.add(subject)
            if label.role in BOMB_SOURCE_ROLES:
                index.bomb_sources.add(subject)
        return index

    def subjects(self, expect: str) -> set[str]:
        return {
            s
            for role, subs in self.by_role.items()
            if self.expect_of_role[role] == expect
            for s in subs
        }


@dataclass(slots=True)
class _FirstCalls:
    """Event time (epoch s) of the first call of each subject that is scored."""

    callers: set[str] = field(default_factory=set)
    by_caller: dict[str, float] = field(default_factory=dict)
    # first call to a victim by its attackers (bombers, crews, debt collectors)
    to_victim_by_bombers: dict[str, float] = field(default_factory=dict)
    to_victim: dict[str, float] = field(default_factory=dict)
    by_trunk: dict[str, float] = field(default_factory=dict)
    # caller of an ATTEMPT_FROM role -> start times of its calls to protect-labelled subjects
    attempts: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def scan(cls, records: Records, index: _LabelIndex) -> _FirstCalls:
        first = cls()
        attackers = index.subjects(INTERCEPT)
        victims = index.subjects(PROTECT)
        trunks = index.subjects(TRUNK)
        counted = {s for role in ATTEMPT_FROM for s in index.by_role.get(role, ())}
        for rec in records:
            caller = _number(rec.get("caller", ""))
            first.callers.add(caller)
            at = _epoch_s(rec["start_time"])
            callee = _number(rec.get("callee", ""))
            if caller in counted:
                if callee in victims:
                    first.attempts[caller].append(at)
            elif caller in attackers:
                _earliest(first.by_caller, caller, at)
            if callee in victims:
                _earliest(first.to_victim, callee, at)
                if caller in index.bomb_sources or caller in counted:
                    _earliest(first.to_victim_by_bombers, callee, at)
            trunk = rec.get("ingress_trunk")
            if trunk is not None and str(trunk) in trunks:
                _earliest(first.by_trunk, str(trunk), at)
        for role, nth in ATTEMPT_FROM.items():
            for caller in index.by_role.get(role, ()):
                times = sorted(first.attempts.get(caller, ()))
                if len(times) >= nth:
                    first.by_caller[caller] = times[nth - 1]
        return first

    def victim(self, number: str) -> float | None:
        return self.to_victim_by_bombers.get(number, self.to_victim.get(number))


@dataclass(slots=True)
class _AlertIndex:
    """First detecting alert (epoch s of its event time) per subject, and intercepted numbers."""

    intercepted: dict[str, float] = field(default_factory=dict)
    intercept_detectors: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    allowlisted_intercepts: set[str] = field(default_factory=set)
    protected: dict[str, float] = field(default_factory=dict)  # by pseudonym
    trunks: dict[str, float] = field(default_factory=dict)

    @classmethod
    def build(cls, alerts: Alerts) -> _AlertIndex:
        index = cls()
        for alert in alerts:
            if alert.get("state") in ACTIVE_STATES:
                index.add(alert)
        return index

    def add(self, alert: Mapping[str, object]) -> None:
        subject, action = alert.get("subject"), alert.get("action")
        at = _epoch_s(alert["event_time"])
        if subject == "number" and action == INTERCEPT:
            number = _number(alert["number"])
            _earliest(self.intercepted, number, at)
            self.intercept_detectors[number].add(str(alert.get("detector", "")))
            if alert.get("allowlisted") is True:
                self.allowlisted_intercepts.add(number)
        elif subject == "callee" and action == PROTECT:
            _earliest(self.protected, str(alert["number"]), at)
        elif subject == TRUNK:
            _earliest(self.trunks, str(alert["number"]), at)


def _pattern(
    role: str,
    expect: str,
    subjects: Sequence[str],
    found: Mapping[str, float | None],
    shown: Callable[[str], str],
) -> PatternResult:
    """``found`` maps each detected subject to its TTD in minutes (``None``: no first call)."""
    ttd = sorted(t for s in subjects if (t := found.get(s)) is not None)
    missed = sorted(shown(s) for s in subjects if s not in found)
    detected = sum(1 for s in subjects if s in found)
    return PatternResult(role, expect, len(subjects), detected, tuple(ttd), tuple(missed))


def _ttd(detected_at: float | None, first: float | None) -> float | None:
    if detected_at is None or first is None:
        return None
    return (detected_at - first) / 60.0


def _score_role(
    role: str, labels: _LabelIndex, calls: _FirstCalls, alerts: _AlertIndex, key: bytes
) -> PatternResult | None:
    expect, subjects = labels.expect_of_role[role], list(labels.by_role[role])
    found: dict[str, float | None] = {}
    if expect == INTERCEPT:
        for s in subjects:
            if s in alerts.intercepted:
                found[s] = _ttd(alerts.intercepted[s], calls.by_caller.get(s))
        return _pattern(role, expect, subjects, found, str)
    if expect == PROTECT:
        names = {s: pseudonym(s, key) for s in subjects}
        for s, name in names.items():
            if name in alerts.protected:
                found[s] = _ttd(alerts.protected[name], calls.victim(s))
        return _pattern(role, expect, subjects, found, names.__getitem__)
    if expect == TRUNK:
        for s in subjects:
            if s in alerts.trunks:
                found[s] = _ttd(alerts.trunks[s], calls.by_trunk.get(s))
        return _pattern(role, expect, subjects, found, str)
    return None


def _false_intercepts(
    labels: _LabelIndex, alerts: _AlertIndex, allowlist: Collection[str]
) -> tuple[FalseIntercept, ...]:
    out = []
    for number in alerts.intercepted:
        listed = number in alerts.allowlisted_intercepts or number in allowlist
        if number in labels.expected_intercept and not listed:
            continue
        role = labels.role_of.get(number, NORMAL)
        detectors = tuple(sorted(alerts.intercept_detectors[number]))
        out.append(FalseIntercept(number, role, detectors, listed))
    return tuple(sorted(out, key=lambda f: (f.role, f.number)))


def _role_counts(labels: _LabelIndex, callers: set[str]) -> dict[str, int]:
    counts = {NORMAL: len(callers - labels.role_of.keys())}
    for role in sorted(labels.by_role):
        counts[role] = counts.get(role, 0) + len(labels.by_role[role])
    return counts


def check_targets(
    patterns: Iterable[PatternResult], false_intercepts: int
) -> tuple[TargetResult, ...]:
    by_role = {p.role: p for p in patterns}
    results = [target.check(by_role.get(target.role)) for target in TARGETS]
    status = PASS if false_intercepts == 0 else FAIL
    results.append(TargetResult(FALSE_INTERCEPT_TARGET, status, f"{false_intercepts} found"))
    return tuple(results)


def evaluate(
    records: Records,
    labels: Iterable[LabelLike],
    alerts: Alerts,
    key: bytes,
    *,
    allowlist: Iterable[str] = (),
) -> Report:
    """Score the ``alerts`` of one run of ``records`` against ``labels``.

    ``key`` is the pseudonym key the engine named callees with. Numbers are compared in their
    normalised form. An intercept of an allowlisted number (flagged so in the alert, or listed in
    ``allowlist``) is a false intercept whatever the number's label.
    """
    label_index = _LabelIndex.build(labels)
    calls = _FirstCalls.scan(records, label_index)
    alert_index = _AlertIndex.build(alerts)
    patterns = tuple(
        result
        for role in label_index.by_role
        if (result := _score_role(role, label_index, calls, alert_index, key)) is not None
    )
    listed = {_number(n) for n in allowlist}
    false = _false_intercepts(label_index, alert_index, listed)
    return Report(
        role_counts=_role_counts(label_index, calls.callers),
        patterns=patterns,
        false_intercepts=false,
        targets=check_targets(patterns, len(false)),
    )


def combine(reports: Sequence[Report]) -> tuple[TargetResult, ...]:
    """The targets over all reports' subjects pooled together."""
    pooled: dict[str, PatternResult] = {}
    for report in reports:
        for p in report.patterns:
            q = pooled.get(p.role)
            pooled[p.role] = p if q is None else _merge(q, p)
    false = sum(len(r.false_intercepts) for r in reports)
    return check_targets(pooled.values(), false)


def _merge(a: PatternResult, b: PatternResult) -> PatternResult:
    return replace(
        a,
        labelled=a.labelled + b.labelled,
        detected=a.detected + b.detected,
        ttd_min=tuple(sorted(a.ttd_min + b.ttd_min)),
        missed=tuple(sorted(a.missed + b.missed)),
    )


# ---------------------------------------------------------------------------------------------
# Text


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _minutes(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} min"


def _render_throughput(t: Throughput) -> str:
    return (
        f"scan: {t.records:,} records in {t.seconds:.2f} s "
        f"({t.per_second:,.0f} records/s), {t.alerts:,} alerts"
    )


def _render_counts(counts: Mapping[str, int]) -> str:
    rows = [f"  {role:24} {n:>9,}" for role, n in counts.items()]
    return "\n".join(["subjects per role:", *rows])


def _render_patterns(patterns: Sequence[PatternResult]) -> str:
    head = f"  {'pattern':20} {'expect':10} {'labelled':>8} {'detected':>8} {'recall':>7}"
    head += f" {'median TTD':>12} {'p90 TTD':>12}"
    rows = [
        f"  {p.role:20} {p.expect:10} {p.labelled:>8,} {p.detected:>8,} {_pct(p.recall):>7}"
        f" {_minutes(p.median_ttd_min):>12} {_minutes(p.p90_ttd_min):>12}"
        for p in patterns
    ]
    missed = [f"  missed {p.role}: {', '.join(p.missed)}" for p in patterns if p.missed]
    return "\n".join(["detection:", head, *rows, *missed])


def _render_false(false: Sequence[FalseIntercept]) -> str:
    by_role = Counter(f.role for f in false)
    summary = ", ".join(f"{role} {n}" for role, n in sorted(by_role.items())) or "none"
    rows = [
        f"  {f.number:22} {f.role:22} {','.join(f.detectors)}"
        + ("  (allowlisted)" if f.allowlisted else "")
        for f in false
    ]
    return "\n".join([f"false intercepts: {len(false)} ({summary})", *rows])


def render_combined(reports: Sequence[Report], targets: Sequence[TargetResult]) -> str:
    seeds = ", ".join(str(r.seed) for r in reports)
    status = PASS if all(t.status != FAIL for t in targets) else FAIL
    return "\n".join([f"== all seeds ({seeds}): {status}", *(t.line() for t in targets)]) + "\n"


# ---------------------------------------------------------------------------------------------
# Running


@dataclass(frozen=True, slots=True)
class BenchmarkSpec:
    seeds: tuple[int, ...] = (1,)
    subscribers: int = 20_000
    hours: float = 12.0
    scale: float = 1.0
    order: str = SORTED  # SORTED | DELIVERY
    # SORTED only: the scenario is written in this format and scanned from it. DELIVERY replays
    # the demo's contract messages.
    format: str = "contract"


def parse_alerts(text: str) -> list[dict[str, Any]]:
    """Alerts from JSON Lines (only ``\\n`` ends a line)."""
    return [orjson.loads(line) for line in text.split("\n") if line.strip()]


def _throughput(totals: Counter[str]) -> Throughput:
    alerts = sum(v for k, v in totals.items() if k.startswith("alerts:"))
    return Throughput(totals["read"], totals["seconds_x1000"] / 1000, alerts)


async def _replay(
    settings: Settings,
    records: list[dict[str, object]],
    allowlist: Sequence[str],
    fmt: str = "contract",
) -> tuple[list[dict[str, Any]], Throughput]:
    from streams.factory import build_engines
    from streams.formats import get
    from streams.scan import scan
    from streams.tools.simulate import write_format, write_jsonl

    with tempfile.TemporaryDirectory(prefix="dialwatch-evaluate-") as tmp:
        cdrs, listed = Path(tmp, "cdrs.jsonl"), Path(tmp, "allowlist.txt")
        if fmt == "contract":
            write_jsonl(cdrs, records)
        else:
            write_format(cdrs, records, fmt, ZoneInfo(settings.timezone))
        listed.write_text("".join(f"{n}\n" for n in allowlist), encoding="utf-8")
        # Both stages, over memory, exactly as ``dialwatch scan`` wires them.
        engine, derived = build_engines(settings.with_(allowlist_file=listed, redis=None), None)
        out, err = io.StringIO(), io.StringIO()
        try:
            totals = await scan(engine, [str(cdrs)], out, err, derived=derived, fmt=get(fmt))
        finally:
            await engine.store.close()
            await derived.store.close()
    return parse_alerts(out.getvalue()), _throughput(totals)


async def _stream(
    settings: Settings, records: list[dict[str, object]], allowlist: Sequence[str]
) -> tuple[list[dict[str, Any]], Throughput]:
    """Replay ``records`` in the order given, in the messages the demo produces.

    Each message (MESSAGE_RECORDS records of one caller partition, over
    ``settings.topic_partitions``) runs through stage 1; its admitted CDRs' observations go to
    the stage-2 partitions the worker would send them to, and run there at once. Nothing is
    sorted: late records come where they arrive, and stage 2 sees the sources interleaved by
    message, as the worker does."""
    import time

    from streams.cdr import CDR, parse_records
    from streams.derived import derived_messages, progress_messages
    from streams.factory import build_engines
    from streams.observe import derived_obs
    from streams.tools.simulate import batch_by_partition

    started = time.perf_counter()
    partitions = settings.topic_partitions
    alerts: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="dialwatch-evaluate-") as tmp:
        listed = Path(tmp, "allowlist.txt")
        listed.write_text("".join(f"{n}\n" for n in allowlist), encoding="utf-8")
        engine, derived = build_engines(
            settings.with_(allowlist_file=listed, redis=None), None, sources=partitions
        )
        first = dict.fromkeys(range(partitions), 1)
        second = dict.fromkeys(range(partitions), 1)
        trunks = engine.settings.international_trunks
        try:
            for part, message in batch_by_partition(records, partitions, MESSAGE_RECORDS):
                # The worker decodes a message record by record; the scenario has no rejects.
                batch = [r for r in parse_records(message, engine.numbering) if isinstance(r, CDR)]
                outcome = await engine.process(
                    part, [(first[part] + j, r) for j, r in enumerate(batch)]
                )
                first[part] += len(batch)
                alerts += [a.to_dict(engine.tz) for a in outcome.alerts]
                observed = derived_obs(outcome.admitted, trunks, part, engine.numbering)
                messages = derived_messages(observed, part, partitions, outcome.front_ms)
                alerts += await _derive(derived, messages, second)
            for part in range(partitions):  # the input is read: every source says so
                messages = progress_messages(part, partitions, (await engine.meta(part)).newest_ms)
                alerts += await _derive(derived, messages, second)
        finally:
            await engine.store.close()
            await derived.store.close()
    return alerts, Throughput(len(records), time.perf_counter() - started, len(alerts))


def _decode_derived(message: bytes) -> list[Any]:
    from streams.derived import decode_derived

    return list(decode_derived(message))


async def _derive(
    derived: Engine, messages: list[tuple[int, bytes]], second: dict[int, int]
) -> list[dict[str, Any]]:
    """Stage 2 over one stage-1 batch's derived messages, as the worker reads them."""
    alerts: list[dict[str, Any]] = []
    for target, message in messages:
        outcome = await derived.process(
            target, [(second[target], item) for item in _decode_derived(message)]
        )
        second[target] += 1
        alerts += [a.to_dict(derived.tz) for a in outcome.alerts]
    return alerts


async def run_seed(settings: Settings, spec: BenchmarkSpec, seed: int, start: datetime) -> Report:
    """Generate one scenario, replay it through the engine and score it."""
    from streams.tools.scenario import ScenarioSpec, generate_scenario

    scenario = generate_scenario(
        ScenarioSpec(
            start=start, seed=seed, subscribers=spec.subscribers, hours=spec.hours, scale=spec.scale
        )
    )
    if spec.order == DELIVERY:
        alerts, throughput = await _stream(settings, scenario.records, scenario.allowlist)
    else:
        alerts, throughput = await _replay(
            settings, scenario.records, scenario.allowlist, spec.format
        )
    report = evaluate(
        scenario.records,
        scenario.labels,
        alerts,
        settings.pseudonym_key.encode(),
        allowlist=scenario.allowlist,
    )
    return replace(report, seed=seed, throughput=throughput)


def write_json(path: Path, reports: Sequence[Report], combined: Sequence[TargetResult]) -> None:
    doc = {
        "passed": all(r.passed for r in reports) and all(t.status != FAIL for t in combined),
        "reports": [r.to_dict() for r in reports],
        "combined": [t.to_dict() for t in combined],
    }
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))


def run_benchmark(
    settings: Settings,
    spec: BenchmarkSpec,
    start: datetime,
    json_path: Path | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Evaluate every seed, print the reports and the pooled targets; 1 if any target fails."""

    async def run_all() -> list[Report]:
        reports = []
        for seed in spec.seeds:
            report = await run_seed(settings, spec, seed, start)
            out.write(report.render() + "\n")
            out.flush()
            reports.append(report)
        return reports

    out.write(f"replay order: {spec.order}\n")
    reports = asyncio.run(run_all())
    combined = combine(reports)
    out.write(render_combined(reports, combined))
    if json_path is not None:
        write_json(json_path, reports, combined)
    ok = all(r.passed for r in reports) and all(t.status != FAIL for t in combined)
    return 0 if ok else 1


# ---------------------------------------------------------------------------------------------
# Scoring an existing run


def _cdr_rows(path: str) -> list[dict[str, object]]:
    """The fields scoring needs of every valid CDR in ``path`` (CSV or JSON Lines, .gz too)."""
    from streams.cdr import CDR
    from streams.files import read_records

    return [
        {
            "caller": r.caller,
            "callee": r.callee,
            "start_time": datetime.fromtimestamp(r.start_ms / 1000, UTC),
            "ingress_trunk": r.ingress_trunk,
        }
        for r in read_records(path, SCENARIO_PLAN)
        if isinstance(r, CDR)
    ]


def _read_allowlist(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text("utf-8").splitlines())
    return [line for line in lines if line]


def score_files(
    settings: Settings,
    cdrs: str,
    labels: Path,
    alerts: str,
    *,
    allowlist: Path | None = None,
    json_path: Path | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Score an existing run: its CDR file, scenario labels and ``dialwatch scan`` output."""
    from streams.files import open_text
    from streams.tools.scenario import read_scenario_labels

    with open_text(alerts) as fh:
        parsed = parse_alerts(fh.read())
    report = evaluate(
        _cdr_rows(cdrs),
        read_scenario_labels(labels),
        parsed,
        settings.pseudonym_key.encode(),
        allowlist=_read_allowlist(allowlist) if allowlist else (),
    )
    out.write(report.render())
    if json_path is not None:
        write_json(json_path, [report], report.targets)
    return 0 if report.passed else 1
