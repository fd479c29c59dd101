"""What the agents, timers and services share: the app, its topics and tables, the senders and the
in-memory bookkeeping, built once per app by :meth:`WorkerContext.build`."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import faust

from models.launch_faq import FaqRules
from models.surge import SurgeRules
from streams.contracts.deadletters import DeadLetterQueue, DeadLetterSender, StopRequested
from streams.contracts.erasure import ErasedUsers
from streams.contracts.events import InvalidEvent
from streams.contracts.settings import Settings
from streams.contracts.time import DAY
from streams.domain.clock import PartitionClocks
from streams.domain.eviction import idle_horizon, longest_window
from streams.domain.policy import Policy
from streams.domain.policy_reload import PolicyReloader
from streams.domain.triggers import PendingTimers
from streams.processes.catalog import load_catalog
from streams.processes.run import References
from streams.processes.tickets import load_service_points
from streams.worker.acknowledged import AcknowledgedSender
from streams.worker.live_models import LiveModels
from streams.worker.read_progress import InFlight, ReadProgress
from streams.worker.statewrites import StateWrites
from streams.worker.stock_reader import StockReader
from streams.worker.topology import Tables, Topics

log = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    """One app's shared pieces, each field named for what it holds."""

    app: faust.App
    settings: Settings
    policy_reloader: PolicyReloader  # holds the policy in force; calls use_policy with each new one
    references: References  # the catalog and the service points
    topics: Topics
    tables: Tables
    state_writes: StateWrites  # users whose state changed since their last changelog record
    pending_timers: PendingTimers  # users with a timer pending: what the sweep looks at
    clocks: PartitionClocks  # each partition's event-time clock
    # Users erased lately and when (wall clock, ms): an event of theirs timed up to the erasure that
    # reaches track_users after it (in flight on another source topic when the erasure was ingested)
    # must not bring their state back. In memory: a restart forgets it.
    erased_users: ErasedUsers
    horizon: float  # users idle this long (event time, s) are evicted
    acknowledged: AcknowledgedSender  # sends what must be acknowledged before its records are
    dead_letters: DeadLetterSender
    models: LiveModels  # each partition's intent and churn models and tagger
    progress: ReadProgress  # how far each input partition was taken
    in_flight: InFlight  # envelopes ingest sent that the per-user agent may not have read yet
    stock_reader: StockReader
    surge_rules: SurgeRules
    faq_rules: FaqRules  # the FAQ forecasts' (models.launch_faq), over surge_rules' age buckets
    # Per product, the day and basis of the last FAQ forecast sent (streams.processes.run.due_forecasts).
    faq_made: dict[str, str]
    source_of: dict[str, str]  # source topic -> source
    internal_max_bytes: int  # largest record of an internal topic read

    @classmethod
    def build(cls, app: faust.App, settings: Settings, topics: Topics, tables: Tables) -> WorkerContext:
        """The context of ``app``, its services (acknowledged sender, dead-letter queue, stock reader)
        added to the app. Raises PolicyError (naming file, trigger and field) for an invalid policy."""
        reloader = PolicyReloader.start(settings.policy_file, apply=lambda policy: None)
        policy = reloader.policy
        references = References(
            load_catalog(settings.catalog_file),
            load_service_points(settings.service_points_file),
            settings.dispatch_max_km,
        )
        horizon = eviction_horizon(policy, settings)
        acknowledged = app.service(AcknowledgedSender(settings))
        # Through the producer that waits for the broker's acknowledgement: a dead letter the broker
        # refused is known at once, and tried again, before its message is.
        dead_letters = DeadLetterSender(
            settings.topic_dead_letters, acknowledged.send, stopping=lambda: app.should_stop, sleep=app.sleep
        )
        # The dead letters of changelog records the tables refuse at recovery, which cannot wait for the
        # broker: queued, and sent by a service started after the acknowledged sender (the app starts
        # its services in order, once the first recovery is done).
        changelog_dead_letters = app.service(DeadLetterQueue(dead_letters))
        for table in tables.all():
            table.dead_letters = changelog_dead_letters

        async def dead_letter_stock(message: Any, error: InvalidEvent) -> None:
            with contextlib.suppress(StopRequested):  # the stock reader stops too, and reads it again
                await dead_letters.send(message, error.reason, error.detail, time.time())

        ctx = cls(
            app=app,
            settings=settings,
            policy_reloader=reloader,
            references=references,
            topics=topics,
            tables=tables,
            state_writes=StateWrites(),
            pending_timers=PendingTimers(policy, horizon),
            clocks=PartitionClocks(),
            erased_users=ErasedUsers(),
            horizon=horizon,
            acknowledged=acknowledged,
            dead_letters=dead_letters,
            models=LiveModels(tables.models),
            progress=ReadProgress(),
            in_flight=InFlight(),
            stock_reader=app.service(StockReader(settings, on_invalid=dead_letter_stock)),
            surge_rules=SurgeRules(),
            faq_rules=FaqRules(ahead_days=settings.faq_ahead_days, surge=SurgeRules()),
            faq_made={},
            source_of={topic: source for source, topic in settings.source_topics.items()},
            # see streams.contracts.internal.DEFAULT_MAX_BYTES
            internal_max_bytes=2 * settings.max_event_bytes,
        )
        reloader.apply = ctx.use_policy
        return ctx

    @property
    def policy(self) -> Policy:
        """The policy in force for the next rounds: the reloader's, replaced whole (never changed) when
        the policy file is reloaded."""
        return self.policy_reloader.policy

    def use_policy(self, policy: Policy) -> None:
        """The reloader has put ``policy`` in force (a batch under way keeps the one it took): the
        sweep's timers follow it too. The eviction horizon stays the one set at start; timers already
        filed keep their time until the user's next round files them again."""
        self.pending_timers.policy = policy
        needed, longest = longest_window(policy, self.settings.session_gap_seconds)
        if self.horizon < longest:
            log.warning(
                "the reloaded policy reads a longer window (%s, %gs) than users are kept idle (%gs, set"
                " at start): what that window reads of an idle user is lost with them until a restart",
                needed,
                longest,
                self.horizon,
            )

    @property
    def users(self) -> Any:
        """The users table (:class:`streams.worker.codec.CheckedTable`)."""
        return self.tables.users

    async def dead_letter(self, message: Any, reason: str, detail: str, rejected_at: float) -> None:
        """Dead-letter ``message``, sent until the broker takes it."""
        await self.dead_letters.send(message, reason, detail, rejected_at)

    async def processing_failed(self, message: Any, error: Exception) -> None:
        """Whatever handling ``message`` raised: logged, and the message dead-lettered."""
        log.error(
            "processing %s:%s@%s failed", message.topic, message.partition, message.offset, exc_info=error
        )
        await self.dead_letter(message, "processing_error", repr(error)[:300], time.time())

    def took(self, message: Any) -> None:
        """An agent took ``message`` of a source topic or the events topic."""
        self.progress.took(message)

    def put_user(self, partition: int, user_id: str, state: Any) -> None:
        """Store ``state`` now, in the table and its changelog (``partition``: the user's). Explicit: a
        batch holds records of several partitions, and Faust's ``table[key] = value`` takes the
        partition of the last record the agent read."""
        self.users.data[user_id] = state
        self.users.send_changelog(partition, user_id, state)

    def delete_user(self, partition: int, user_id: str) -> None:
        """Delete the user's state, with a tombstone in the changelog (``partition``: the user's)."""
        self.users.data.pop(user_id, None)
        self.users.send_changelog(partition, user_id, None, value_serializer="raw")

    def write_changed_states(self) -> None:
        """Send the state of every user changed since their last changelog record: before every offset
        commit, when partitions are revoked and at shutdown (:mod:`streams.worker.statewrites`)."""
        self.state_writes.write(self.users)

    def checkpoint_models(self, partitions: Any) -> None:
        """Write the models of ``partitions`` that learned since their last checkpoint to the changelog."""
        self.models.checkpoint(partitions, self._send_models)

    def _send_models(self, partition: int, models: Any) -> None:
        # Straight to the changelog, at the partition's own number: a table cannot be written outside an
        # agent (Faust takes the partition from the message being processed). No persisted-offset
        # callback, so that a recovery of this partition always reads it.
        self.tables.models.changelog_topic.send_soon(
            key=str(partition),
            value=models,
            partition=partition,
            key_serializer="table_key",
            value_serializer="partition_models",
        )

    async def models_recovered(self) -> None:
        """The models table was recovered after a rebalance: compare the live models with it."""
        self.models.table_recovered()

    async def users_recovered(self) -> None:
        """After each rebalance the users table holds other users: index their pending timers again."""
        self.pending_timers.rebuild(self.users.values())

    async def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> None:
        """Hand a record to the app's producer, which the worker flushes before it commits offsets."""
        await self.app.producer.send(topic, key, value, partition, None, None)

    @property
    def stopping(self) -> bool:
        return bool(self.app.should_stop)

    def active_partitions(self) -> set[int]:
        """The partitions of the events topic this worker holds as active."""
        events = self.settings.topic_events
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == events}


def eviction_horizon(policy: Policy, settings: Settings) -> float:
    """How long (event time, s) a user stays idle before their state is evicted
    (:mod:`streams.domain.eviction`); logged, with a warning when the policy needs a longer window."""
    horizon = idle_horizon(policy, settings.user_idle_seconds, settings.session_gap_seconds)
    needed, longest = longest_window(policy, settings.session_gap_seconds)
    log.info(
        "users idle for %.4g days of event time are evicted (the longest window: %s, %.4g days)",
        horizon / DAY,
        needed,
        longest / DAY,
    )
    if horizon < longest:
        log.warning(
            "FOREWARN_USER_IDLE_SECONDS=%g is shorter than the longest window the policy needs (%s, %gs):"
            " what that window reads of an idle user is lost with them",
            horizon,
            needed,
            longest,
        )
    return horizon
