"""What the worker's agents, timers and endpoints share (``streams.app`` builds it)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from redis.exceptions import RedisError

from config.numbering import NumberingPlan
from config.settings import Settings
from detectors.pseudonym import key_id
from streams.allowlist import Allowlist, shared_key
from streams.campaignwork import CampaignRecorder
from streams.delivery import Confirmed, Outlets
from streams.runtime import Links, Runtime
from streams.state.redis import RedisStore
from streams.topics import WorkerTopics

log = logging.getLogger("dialwatch.worker")


@dataclass(slots=True)
class BrokerHealth:
    """Whether the broker answered the last probe (``streams.app``); /health reports it."""

    ok: bool = True
    answered: bool = False  # the broker has answered a probe since start (/readyz)


@dataclass(frozen=True, slots=True)
class Context:
    """Both stages (stage 1 with its two inputs), the topics and the broker calls each input
    recovers with."""

    settings: Settings
    callers: Runtime  # stage 1
    subjects: Runtime  # stage 2
    topics: WorkerTopics
    caller_links: Links
    subject_links: Links
    token: str | None  # the bearer token of the state-changing endpoints (None: they are off)
    rekeyed: Runtime  # stage 1's second input, the repartition topic (Runtime.rekeyed_input)
    rekeyed_links: Links
    out: Outlets  # the output topics, refused sends dead-lettered (streams.delivery)
    broker: BrokerHealth = field(default_factory=BrokerHealth)
    campaigns: CampaignRecorder | None = None  # stage 2's campaign sketches (campaignwork)
    # The alert and feed-record ids of batches the broker confirmed: a batch whose sends are
    # retried after one of them failed (a timeout under load) sends only the unconfirmed ones.
    sent: Confirmed = field(default_factory=Confirmed)

    @property
    def plan(self) -> NumberingPlan:
        return self.callers.engine.numbering

    @property
    def feed_key_id(self) -> str:
        """The pseudonym key's id, written in every feed record (detectors.pseudonym.key_id)."""
        return key_id(self.settings.pseudonym_key.encode(), self.settings.pseudonym_key_id)

    @property
    def tz(self) -> ZoneInfo:
        return self.callers.engine.tz

    async def refresh_allowlist(self) -> None:
        """Reload the allowlist file if it changed and take the shared entries from Redis; on
        failure keep the current list."""
        allowlist, store = self.callers.engine.allowlist, self.callers.engine.store
        try:
            if isinstance(allowlist, Allowlist):
                allowlist.reload_if_changed()
                if isinstance(store, RedisStore):
                    allowlist.set_shared(
                        await store.client.smembers(shared_key(self.settings.key_prefix))
                    )
        except (OSError, ValueError, RedisError) as exc:  # keep the last good list
            log.warning("allowlist refresh failed (%s); keeping the current list", exc)
