"""Alerts: deterministic ids and the alert record (see README "Alert")."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from detectors.snapshot import Finding

SCHEMA_VERSION = 1


def episode_id(number: str, detector: str, opened_ms: int) -> str:
    """An episode is named by subject, detector and the start_time of the call that opened it."""
    return _digest(f"ep|{number}|{detector}|{opened_ms}")


def alert_id(number: str, detector: str, episode: str, label: str) -> str:
    """Deterministic: the same input yields the same ids however it was cut into batches."""
    return _digest(f"al|{number}|{detector}|{episode}|{label}")


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def iso(ms: int, tz: tzinfo) -> str:
    return datetime.fromtimestamp(ms / 1000, tz).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    episode_id: str
    number: str
    number_class: str
    subject: str  # what ``number`` names: detectors.snapshot.KINDS
    detector: str
    state: str  # "raised" | "escalated" | "cleared"
    severity: str
    action: str
    category: str
    event_ms: int
    detected_at_ms: int
    evidence: Mapping[str, int | float]
    reasons: tuple[str, ...]
    policy_version: str
    allowlisted: bool = False

    def to_dict(self, tz: tzinfo) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "episode_id": self.episode_id,
            "number": self.number,
            "number_class": self.number_class,
            "subject": self.subject,
            "detector": self.detector,
            "state": self.state,
            "severity": self.severity,
            "action": self.action,
            "category": self.category,
            "event_time": iso(self.event_ms, tz),
            "detected_at": iso(self.detected_at_ms, tz),
            "evidence": dict(self.evidence),
            "reasons": list(self.reasons),
            "allowlisted": self.allowlisted,
            "schema_version": SCHEMA_VERSION,
            "policy_version": self.policy_version,
        }


def raise_alert(
    finding: Finding,
    *,
    number: str,
    number_class: str,
    episode: str,
    escalated: bool,
    event_ms: int,
    detected_at_ms: int,
    policy_version: str,
    allowlisted: bool,
    subject: str = "number",
    action: str | None = None,
    evidence: Mapping[str, int | float] | None = None,
    identity: str | None = None,
) -> Alert:
    """The alert for ``finding`` about ``number``; ``action`` overrides the finding's (members).
    ``identity`` (default: the number) is what the id hashes: a callee's own number, not the
    pseudonym it is shown by."""
    action = finding.action if action is None else action
    reasons = finding.reasons
    if allowlisted and action == "intercept":
        action = "monitor"
        reasons = (*reasons, "allowlisted: intercept withheld")
    return Alert(
        alert_id=alert_id(identity or number, finding.detector, episode, finding.severity),
        episode_id=episode,
        number=number,
        number_class=number_class,
        subject=subject,
        detector=finding.detector,
        state="escalated" if escalated else "raised",
        severity=finding.severity,
        action=action,
        category=finding.category,
        event_ms=event_ms,
        detected_at_ms=detected_at_ms,
        evidence=finding.evidence if evidence is None else evidence,
        reasons=reasons,
        policy_version=policy_version,
        allowlisted=allowlisted,
    )


def clear_alert(
    *,
    number: str,
    number_class: str,
    detector: str,
    category: str,
    episode: str,
    quiet_s: int,
    event_ms: int,
    detected_at_ms: int,
    policy_version: str,
    subject: str = "number",
    identity: str | None = None,
) -> Alert:
    return Alert(
        alert_id=alert_id(identity or number, detector, episode, "cleared"),
        episode_id=episode,
        number=number,
        number_class=number_class,
        subject=subject,
        detector=detector,
        state="cleared",
        severity="info",
        action="monitor",
        category=category,
        event_ms=event_ms,
        detected_at_ms=detected_at_ms,
        evidence={"quiet_s": quiet_s},
        reasons=(f"no calls for {quiet_s // 60} min",),
        policy_version=policy_version,
    )
