"""How findings become alerts: each subject's episodes opened, escalated and cleared, and how
an alert names its subject (callees only by pseudonym; ids hash the subject itself, so a new
pseudonym key changes no id). The engine calls it from its batch loop; nothing here does I/O."""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from config.numbering import NumberingPlan, classify
from config.policy import SEVERITIES, Policy
from config.settings import Settings
from detectors.alerts import clear_alert, episode_id, raise_alert
from detectors.pseudonym import pseudonym
from detectors.snapshot import Finding
from streams.items import Outcome, split_key
from streams.state.base import Episode, NumberState

MEMBER = ">"  # episode key "detector>member" for a member's own episode


@dataclass(frozen=True, slots=True)
class Subject:
    """One subject as the engine's steps name it: what it is and how its thresholds scale."""

    kind: str  # detectors.snapshot.KINDS
    subject: str  # normalised number, callee, block prefix or trunk id
    key: str  # its store key (store_key)
    number_class: str
    # The factor on every call threshold: the class's, times the complaint factor when the
    # record being evaluated has a report in the horizon.
    factor: float


class Episodes:
    """The alert side of one engine: its numbering plan, pseudonym key, policy and allowlist."""

    def __init__(
        self,
        settings: Settings,
        policy: Policy,
        numbering: NumberingPlan,
        allowlist: Container[str] = frozenset(),
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.numbering = numbering
        self.allowlist = allowlist
        self.pseudonym_key = settings.pseudonym_key.encode()
        self.quiet_ms = settings.episode_quiet_s * 1000

    def number_class(self, kind: str, subject: str) -> str:
        if kind == "trunk":
            return "trunk"
        if kind == "block":
            return str(classify(subject + "00", self.numbering))
        return str(classify(subject, self.numbering))

    def display(self, kind: str, subject: str) -> str:
        """How an alert names the subject: callees only by pseudonym."""
        if kind == "callee":
            return pseudonym(subject, self.pseudonym_key)
        return subject + "xx" if kind == "block" else subject

    def identity(self, subj: Subject) -> str:
        """What ids hash: a callee itself, not its pseudonym (a new key changes no id)."""
        shown = self.display(subj.kind, subj.subject)
        return "callee:" + subj.subject if subj.kind == "callee" else shown

    def subject_of(self, key: str) -> Subject:
        kind, subject = split_key(key)
        number_class = self.number_class(kind, subject)
        return Subject(kind, subject, key, number_class, self.policy.factor(number_class))

    def raise_(
        self,
        subj: Subject,
        name: str,
        finding: Finding,
        state: NumberState,
        event_ms: int,
        now_ms: int,
        out: Outcome,
    ) -> None:
        episode = state.episodes.get(name)
        if episode is None:
            episode = state.episodes[name] = Episode(finding.severity, event_ms)
            escalated = False
        elif SEVERITIES.index(finding.severity) > SEVERITIES.index(episode.severity):
            episode.severity = finding.severity
            escalated = True
        else:
            return
        shown, identity = self.display(subj.kind, subj.subject), self.identity(subj)
        out.alerts.append(
            raise_alert(
                finding,
                number=shown,
                identity=identity,
                number_class=subj.number_class,
                episode=episode_id(identity, name, episode.opened_ms),
                escalated=escalated,
                event_ms=event_ms,
                detected_at_ms=now_ms,
                policy_version=self.policy.version,
                allowlisted=subj.kind == "number" and subj.subject in self.allowlist,
                subject=subj.kind,
            )
        )

    def raise_member(
        self,
        member: str,
        calls: int,
        name: str,
        finding: Finding,
        state: NumberState,
        event_ms: int,
        now_ms: int,
        out: Outcome,
    ) -> None:
        """A member (``calls`` in the peer window) gets its own episode, as a number."""
        ep_key = f"{name}{MEMBER}{member}"
        if ep_key in state.episodes:
            return
        state.episodes[ep_key] = Episode(finding.severity, event_ms)
        out.alerts.append(
            raise_alert(
                finding,
                number=member,
                number_class=str(classify(member, self.numbering)),
                episode=episode_id(member, name, event_ms),
                escalated=False,
                event_ms=event_ms,
                detected_at_ms=now_ms,
                policy_version=self.policy.version,
                allowlisted=member in self.allowlist,
                action=finding.member_action,
                evidence={**finding.evidence, "member_calls": calls},
            )
        )

    def close_if_quiet(
        self, key: str, state: NumberState, watermark: int, now_ms: int, out: Outcome
    ) -> None:
        close_at = state.newest_ms + self.quiet_ms
        if state.episodes and close_at <= watermark:
            self.close(self.subject_of(key), state, close_at, now_ms, out)

    def close(
        self, subj: Subject, state: NumberState, close_at: int, now_ms: int, out: Outcome
    ) -> None:
        for ep_key, episode in sorted(state.episodes.items()):
            name, sep, member = ep_key.partition(MEMBER)
            if sep:
                shown, shown_kind, identity = member, "number", member
                number_class = str(classify(member, self.numbering))
            else:
                shown, shown_kind = self.display(subj.kind, subj.subject), subj.kind
                identity = self.identity(subj)
                number_class = subj.number_class
            dpolicy = self.policy.detectors.get(name)
            out.alerts.append(
                clear_alert(
                    number=shown,
                    identity=identity,
                    number_class=number_class,
                    detector=name,
                    category=dpolicy.category if dpolicy else name,
                    episode=episode_id(identity, name, episode.opened_ms),
                    quiet_s=self.settings.episode_quiet_s,
                    event_ms=close_at,
                    detected_at_ms=now_ms,
                    policy_version=self.policy.version,
                    subject=shown_kind,
                )
            )
        state.episodes.clear()
