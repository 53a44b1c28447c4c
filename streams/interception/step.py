"""The worker's interception step: published alerts in, list changes out.

``Runtime.publish`` and ``Runtime.recover`` (streams/worker.py) hand it every alert the broker
confirmed, before the outbox forgets them; ``apply`` is idempotent by alert_id, so an alert
handed over again after a crash changes nothing. Stage 2 calls ``stage`` before its fenced write
to record which victim each bombing alert is about (alerts name victims by pseudonym only).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from config.numbering import NumberingPlan, is_emergency
from config.settings import Settings
from detectors.pseudonym import pseudonym
from streams.interception.model import VICTIM_DETECTORS, Intent, Mode, Timing, decide, parse_modes
from streams.interception.store import InterceptStore
from streams.security import redis_client

log = logging.getLogger("dialwatch.interception")
MEMBER_SUFFIX = ":member"


def build_store(settings: Settings) -> InterceptStore:
    """The list's store on DIALWATCH_INTERCEPT_REDIS, else on the main Redis."""
    client = redis_client(settings, settings.intercept_redis or settings.redis)
    return InterceptStore(
        client,
        settings.key_prefix,
        breaker_max=settings.intercept_breaker_max,
        breaker_window_s=settings.intercept_breaker_window_s,
        grace_s=settings.intercept_release_grace_s,
        audit_retention_s=settings.audit_retention_s,
    )


class Interception:
    def __init__(
        self,
        store: InterceptStore,
        settings: Settings,
        plan: NumberingPlan,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.store = store
        self.plan = plan
        self.modes = parse_modes(settings.intercept_modes)
        self.timing = Timing(settings.intercept_open_max_s, settings.intercept_after_clear_s)
        self.key = settings.pseudonym_key.encode()
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))

    def intents(self, alerts: Sequence[Mapping[str, Any]], now_ms: int) -> list[Intent]:
        out: list[Intent] = []
        for alert in alerts:
            intent = decide(alert, self.modes, self.plan, self.timing, now_ms)
            member = (
                alert.get("detector") in VICTIM_DETECTORS
                and alert.get("subject") == "number"
                and alert.get("state") != "cleared"
                and not alert.get("allowlisted")
                and not is_emergency(str(alert.get("number", "")), self.plan)
                and self.modes.get(str(alert.get("number_class")), Mode.SHADOW) is not Mode.SHADOW
            )
            if intent is not None:
                out.append(intent)
            if member:
                out.append(
                    Intent(
                        "member",
                        "",
                        alert_id=str(alert["alert_id"]) + MEMBER_SUFFIX,
                        detector=str(alert.get("detector")),
                        episode_id=str(alert.get("episode_id", "")),
                        expires_at_ms=self.timing.expires_at(now_ms, False),
                        caller=str(alert.get("number", "")),
                    )
                )
        return out

    async def apply(self, alerts: Sequence[Mapping[str, Any]]) -> int:
        """Apply the list changes ``alerts`` ask for. Returns how many changed something."""
        now_ms = self.clock_ms()
        intents = self.intents(alerts, now_ms)
        if not intents:
            return 0
        wanted = []
        for it in intents:
            if it.op == "member":
                wanted.append((it.alert_id, ""))
            elif it.number.startswith("ps:"):
                wanted.append((it.alert_id, it.number))
        victims = await self.store.resolve((a.removesuffix(MEMBER_SUFFIX), p) for a, p in wanted)
        by_id = {}
        for alert_id, _ in wanted:
            victim = victims.get(alert_id.removesuffix(MEMBER_SUFFIX))
            if victim is not None and not is_emergency(victim, self.plan):
                by_id[alert_id] = victim
        ready = [
            replace(it, number=pseudonym(by_id[it.alert_id], self.key))
            if it.op == "member" and it.alert_id in by_id
            else it
            for it in intents
        ]
        unresolved = [a for a, _ in wanted if a not in by_id]
        if unresolved:
            log.warning("%d bombing alerts name no known victim; not protected", len(unresolved))
        results = await self.store.apply(ready, by_id, now_ms)
        changed = 0
        for _, outcome, tripped in results:
            if outcome not in ("dup", "noop"):
                changed += 1
            if tripped:
                log.warning(
                    "interception breaker open: more than %d auto-listings within %d s; new "
                    "entries wait for approval",
                    self.store.breaker_max,
                    self.store.breaker_window_ms // 1000,
                )
        return changed

    async def release(self, number: str, actor: str, reason: str, kind: str) -> str:
        """Remove ``number`` at once and hold it out for the grace period (audited)."""
        return await self.store.decide("release", number, actor, reason, kind, self.clock_ms())

    def stage_for(
        self, observations: Sequence[tuple[int, Any]]
    ) -> Callable[[Any], Awaitable[None]]:
        """Stage 2's ``before_write``: record the victims of the batch's bombing alerts."""

        async def stage(outcome: Any) -> None:
            bombing = [
                a for a in outcome.alerts if a.detector in VICTIM_DETECTORS and a.state != "cleared"
            ]
            if not bombing:
                return
            # Stage 2 applies the observations it released (streams.reorder), which may have
            # come in earlier batches: those are the ones the alerts are about.
            released = getattr(outcome, "released", None)
            seen = [(0, obs) for obs in released] if released is not None else observations
            via, shown = victims_of(bombing, seen, self.key)
            await self.store.stage_victims(via, shown)

        return stage


def victims_of(
    alerts: Sequence[Any], observations: Sequence[tuple[int, Any]], key: bytes
) -> tuple[dict[str, str], dict[str, str]]:
    """(alert_id -> victim, pseudonym -> victim) for a stage-2 batch's bombing alerts.

    A victim's alert names it by pseudonym: the victim is the batch's callee with that
    pseudonym. A member's alert carries the start_time of the call to the victim that made it
    cross (``event_ms``): its victims are the batch's callees called at that time, narrowed to
    those the member itself called when that decides it.
    """
    callees: dict[str, str] = {}
    seen: set[str] = set()
    at: dict[int, set[str]] = {}
    pairs: set[tuple[str, str]] = set()
    for _, obs in observations:
        if getattr(obs, "kind", None) != "callee":
            continue
        if obs.subject not in seen:
            seen.add(obs.subject)
            callees[pseudonym(obs.subject, key)] = obs.subject
        at.setdefault(obs.start_ms, set()).add(obs.subject)
        pairs.add((obs.subject, obs.other))
    via: dict[str, str] = {}
    shown: dict[str, str] = {}
    for alert in alerts:
        if alert.subject == "callee":
            victim = callees.get(alert.number)
            if victim is not None:
                via[alert.alert_id] = victim
                shown[alert.number] = victim
        elif alert.subject == "number":
            candidates = at.get(alert.event_ms, set())
            called = {v for v in candidates if (v, alert.number) in pairs}
            chosen = called or candidates
            if len(chosen) == 1:
                via[alert.alert_id] = next(iter(chosen))
    return via, shown
