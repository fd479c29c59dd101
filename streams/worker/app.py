"""The Faust application: its topics, tables, services and timers, and the agents wired to them.

Data flow::

    clickstream, logistics --ingest--> forewarn-events (envelopes) --track_users--> interventions
         (raw bytes)          \\--> dead_letters                  ^
                                                    forewarn-ticks (timer sweep, keyed by user)

    forewarn-events, interventions, dead_letters --ClickHouse sink--> ClickHouse tables

* ``ingest`` (:mod:`streams.worker.agents.ingest`) takes the source messages waiting as one batch, validates
  each (:func:`streams.contracts.events.parse_event`), dead-letters the bad ones alone with their original
  bytes
  and reason, and sends each partition of ``forewarn-events`` one envelope of its users' events
  (:mod:`streams.contracts.envelopes`), acknowledged by the broker before the source records are.
* ``track_users`` (:mod:`streams.worker.agents.users`) owns the per-user table (changelog-backed): the
  envelopes, ticks and corrections waiting run as one batch of rounds (:mod:`streams.domain.batches`: state,
  triggers, models, contact policy), one acknowledged send of their decisions and interventions, then
  the states recorded and scores, tagged feedback and ``crm_sync`` sent; a process input
  (:mod:`streams.processes.run`) emits tickets, order commands or rejections; an erasure deletes the user's
  state. Corrections on ``forewarn-labels`` train the partition's tagger.
* ``ingest_labels`` sends each feedback correction to every partition of ``forewarn-labels``;
  ``ingest`` sends support questions to ``forewarn-questions`` keyed by product category, where
  ``watch_issues`` counts them (:func:`streams.processes.run.observe_question`) and raises hot issues.
* The CRM/ERP API (:mod:`streams.api.server`) is served by the worker's HTTP server, which replaces Faust's
  web server (none of Faust's pages is served); stock levels are read by every worker
  (:class:`streams.worker.stock_reader.StockReader`).
* ``sweep`` is a timer: users lingering on the payment page who send nothing more get a tick on their
  own partition, so the dwell trigger fires in ``track_users``, the only writer of user state. It looks
  only at users with a pending timer (:class:`streams.domain.triggers.PendingTimers`, kept by ``track_users``
  and rebuilt from the table after each rebalance), never at the whole table, and holds a partition's
  clock while its records wait to be read (``partitions_catching_up``). Users idle past the idle
  horizon get a tick the same way, and ``track_users`` deletes their state, or trims it to their lasting
  facts (:mod:`streams.domain.eviction`).
* The ClickHouse sink runs as a service of the same worker with its own consumer group, or as a process
  of its own (``forewarn sink``, ``FOREWARN_SINK_IN_WORKER=false``).

Every agent reads bytes and checks them, internal topics included (:mod:`streams.contracts.internal`), and
handles its records through one guard (:mod:`streams.worker.guard`): whatever the handling raises is
dead-lettered (``processing_error``), never left unacknowledged. Dead letters are bounded in size and
sent until the broker takes them (:mod:`streams.contracts.deadletters`).

Faust flushes the producer before committing offsets, so an input offset is committed only after
everything its processing sent (dead letters, the changelog records written right before the commit:
:mod:`streams.worker.statewrites`) is acknowledged; envelopes, decisions, interventions and dead letters are
acknowledged before their records are (:mod:`streams.worker.acknowledged`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

import faust
import mode
from faust.tables import TableManager
from faust.worker import Worker

from models.learners import PartitionModels
from models.surge import SurgeRules
from streams.contracts import metrics
from streams.contracts.deadletters import DeadLetterQueue, DeadLetterSender, StopRequested
from streams.contracts.erasure import ErasedUsers
from streams.contracts.events import InvalidEvent
from streams.contracts.feedback import parse_label
from streams.contracts.internal import read_question
from streams.contracts.privacy import load_cluster_secret
from streams.contracts.settings import Settings
from streams.contracts.time import DAY, to_millis
from streams.domain.clock import PartitionClocks
from streams.domain.eviction import idle_horizon, longest_window
from streams.domain.policy import load_policy
from streams.domain.triggers import PendingTimers
from streams.processes.catalog import load_catalog
from streams.processes.run import (
    References,
    observe_question,
)
from streams.processes.tickets import load_service_points
from streams.worker import codec
from streams.worker.acknowledged import AcknowledgedSender
from streams.worker.agents.ingest import ingest_batch
from streams.worker.agents.users import track_batch
from streams.worker.codec import CheckedTable
from streams.worker.context import InFlight, WorkerContext
from streams.worker.guard import each_batch, each_event
from streams.worker.statewrites import BeforeCommit, StateWrites
from streams.worker.stock_reader import StockReader
from streams.worker.transport import use_lean_sensors, use_transport

log = logging.getLogger(__name__)

# Memory of each table partition's RocksDB (with FOREWARN_STORE=rocksdb://): Faust's defaults (64 MiB
# memtables, three of them, and a 2 GiB block cache, per table partition) would hold hundreds of
# thousands of users' state in memory before any of it went to disk. With these a table partition
# holds at most two 4 MiB memtables and an 8 MiB cache of what was read from disk.
ROCKSDB_OPTIONS = {
    "write_buffer_size": 4 * 1024**2,
    "max_write_buffer_number": 2,
    "block_cache_size": 8 * 1024**2,
}


# Most records track_users takes as one batch: envelopes, each of up to MAX_ENVELOPE_EVENTS events.
USER_BATCH_MESSAGES = 50


class PromptTableManager(TableManager):
    """Faust's table manager without the second it waits before it starts its tables' recovery (for
    tables added once the app runs; every table of Forewarn's is added before): the worker joins its
    consumer group, and is ready, a second sooner."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


def faust_credentials(settings: Settings) -> faust.SSLCredentials | faust.SASLCredentials | None:
    """The broker security settings as Faust's ``broker_credentials``."""
    protocol = settings.broker_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(settings.ssl_context())
    return faust.SASLCredentials(
        username=settings.broker_sasl_username,
        password=settings.broker_sasl_password,
        mechanism=settings.broker_sasl_mechanism,
        ssl_context=settings.ssl_context(),
    )


def create_app(settings: Settings) -> faust.App:
    """The worker's app. Raises PolicyError (naming file, trigger and field) for an invalid policy."""
    policy = load_policy(settings.policy_file)
    references = References(
        load_catalog(settings.catalog_file),
        load_service_points(settings.service_points_file),
        settings.dispatch_max_km,
    )
    codec.register(load_cluster_secret(settings))
    app = faust.App(
        settings.app_id,
        broker=settings.broker_url,
        broker_credentials=faust_credentials(settings),
        store=settings.store,
        datadir=settings.data_dir,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        table_standby_replicas=settings.standby_replicas,
        web_port=settings.web_port,
        broker_rebalance_timeout=settings.broker_rebalance_timeout,
        broker_session_timeout=settings.broker_session_timeout,
        broker_heartbeat_interval=settings.broker_heartbeat_interval,
        TableManager=PromptTableManager,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger_ms=settings.producer_linger_ms,
        key_serializer="raw",
        value_serializer="orjson",
    )
    use_transport(app, settings)
    use_lean_sensors(app)  # before the first table or agent: they take the sensors' hooks
    source_of = {topic: source for source, topic in settings.source_topics.items()}

    raw_input = app.topic(*source_of, key_serializer="raw", value_serializer="raw")
    raw_labels = app.topic(settings.topic_feedback_labels, key_serializer="raw", value_serializer="raw")
    # Internal topics are read as bytes too, and each record checked by the agent
    # (streams.contracts.internal):
    # a value Faust could not decode would be thrown into the agent, and what decodes need not have
    # the shape the agent reads.
    user_input = app.topic(
        settings.topic_events, settings.topic_ticks, settings.topic_labels, value_serializer="raw"
    )
    internal_max_bytes = 2 * settings.max_event_bytes  # see streams.contracts.internal.DEFAULT_MAX_BYTES
    ticks_topic = app.topic(settings.topic_ticks, partitions=settings.partitions)
    labels_topic = app.topic(settings.topic_labels, partitions=settings.partitions)
    raw_questions = app.topic(settings.topic_questions, value_serializer="raw")

    def changelogged_table(name: str, value_codec: str) -> CheckedTable:
        """A table keyed by JSON, its values by ``value_codec`` (:mod:`streams.worker.codec`). Built as
        app.Table does, but with the serializers set before the table is added: Faust derives a table's
        serializers from key_type/value_type (ignoring a Schema) and makes the changelog topic when the
        table is added. Values recovered from the changelog then decode into the same objects as live
        writes. A CheckedTable: a changelog record that does not decode is left out (and dead-lettered)."""
        table = CheckedTable(
            app,
            name=name,
            partitions=settings.partitions,
            beacon=app.tables.beacon,
            options=dict(ROCKSDB_OPTIONS),  # read by the RocksDB store only
        )
        table.key_serializer = "table_key"
        table.value_serializer = value_codec
        app.tables.add(table)
        return table

    users = changelogged_table("users", "user_state")
    # The intent and churn models of each partition of the events topic, keyed by partition number, so
    # a worker that takes over a partition takes over its models. They are written to the changelog
    # every model_checkpoint_seconds, when their partition is revoked and at shutdown, not on every
    # event (a model is far larger than a user's state): a crash loses at most one interval of their
    # learning, never a prediction or a user's features.
    # The checkpoints are signed with the cluster secret (streams.worker.checkpoints): one without a valid tag
    # is refused at recovery and its partition starts from fresh models.
    partition_models = changelogged_table("models", "partition_models")
    # The live models of this worker's partitions (a RocksDB store would hand out a fresh copy of the
    # last checkpoint on every read), those that learned since their last checkpoint, and those to
    # compare with the table after a rebalance.
    live_models: dict[int, PartitionModels] = {}
    learned_since_checkpoint: set[int] = set()
    # (model, metric, partition) -> the latest quality read at a checkpoint; exported for the partitions
    # this worker serves (report_partitions).
    model_quality: dict[tuple[str, str, str], float] = {}
    recovered_since: set[int] = set()

    @partition_models.on_recover
    async def compare_after_recovery() -> None:
        recovered_since.update(live_models)

    def models_of(partition: int) -> PartitionModels:
        """The partition's models: live, or as recovered from their changelog, or new. After a
        rebalance the later of the live ones and the table's (another worker may have held the
        partition and checkpointed since) is kept."""
        models = live_models.get(partition)
        if models is None or partition in recovered_since:
            recovered_since.discard(partition)
            stored = partition_models.get(str(partition))
            if stored is not None and (models is None or stored.checkpoints > models.checkpoints):
                models = stored
                learned_since_checkpoint.discard(partition)
            live_models[partition] = models = models or PartitionModels()
        return models

    def checkpoint_models(partitions: Iterable[int]) -> None:
        for partition in partitions:
            models = live_models.get(partition)
            if models is None or partition not in learned_since_checkpoint:
                continue
            # Straight to the changelog, at the partition's own number: a table cannot be written outside
            # an agent (Faust takes the partition from the message being processed). No persisted-offset
            # callback, so that a recovery of this partition always reads it.
            # Read the quality first: River's rolling ROC AUC buffers its updates until it is read, and
            # the checkpoint is pickled at once; unread, every label since the last one rides along.
            for model in models.by_name().values():
                for metric, value in model.quality().items():
                    model_quality[(model.name, metric, str(partition))] = value
                    metrics.MODEL_QUALITY.labels(model.name, metric, str(partition)).set(value)
            models.checkpoints += 1
            partition_models.changelog_topic.send_soon(
                key=str(partition),
                value=models,
                partition=partition,
                key_serializer="table_key",
                value_serializer="partition_models",
            )
            learned_since_checkpoint.discard(partition)
            metrics.MODEL_CHECKPOINTS.labels(str(partition)).inc()

    # Users whose state changed since its last changelog record: written before every offset commit.
    state_writes = StateWrites()

    def write_changed_states() -> None:
        written = 0
        for user_id, before in state_writes.take():
            state = users.data.get(user_id)
            if state is None:  # erased since
                continue
            if before is None:
                users.send_changelog(state.partition, user_id, state)
            else:  # the user is in a round: their state as of before it
                users.send_changelog(state.partition, user_id, before, value_serializer="raw")
            written += 1
        metrics.STATE_WRITES.inc(written)

    app.sensors.add(BeforeCommit(write_changed_states))

    @app.timer(settings.model_checkpoint_seconds)
    async def checkpoint_periodically() -> None:
        checkpoint_models(list(live_models))

    @app.on_partitions_revoked.connect
    async def checkpoint_revoked(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        """Before another worker recovers them: flushed here, ahead of the rebalance going on."""
        checkpoint_models({tp.partition for tp in revoked if tp.topic == settings.topic_events})
        for tp in revoked:  # read from its committed offset when it comes back
            furthest_taken.pop(tp, None)
        write_changed_states()
        await app.producer.flush()

    @app.on_before_shutdown.connect
    async def checkpoint_at_shutdown(sender: Any, **kwargs: Any) -> None:
        checkpoint_models(list(live_models))  # the app flushes its producer next
        write_changed_states()

    # Hot issues (models.surge): questions are keyed by product category, so every product of a
    # category and every earlier launch (the launch prior) is on one partition. The counts are kept per
    # product and the launch profiles per launched product, not per category: a category's whole state
    # would be one changelog record of megabytes, rewritten on every question.
    issue_counts = changelogged_table("issue-counts", "product_issues")
    launch_profiles = changelogged_table("launch-profiles", "launch_profile")
    hot_issues_topic = app.topic(settings.topic_hot_issues)
    surge_rules = SurgeRules()

    @app.agent(raw_questions)
    async def watch_issues(stream: faust.StreamT) -> None:
        await each_event(stream, watch_question, processing_failed)

    async def watch_question(event: faust.EventT) -> None:
        message = event.message
        wall = time.time()
        try:
            question = read_question(message.value, references.catalog.category_of, internal_max_bytes)
        except InvalidEvent as error:
            await dead_letter(message, error.reason, error.detail, wall)
            return
        alerts = observe_question(question, references.catalog, issue_counts, launch_profiles, surge_rules)
        metrics.SUPPORT_QUESTIONS.labels(question["category"]).inc()
        for alert in alerts:
            await hot_issues_topic.send(key=alert.product_id.encode(), value=alert.to_wire(wall))
            metrics.HOT_ISSUES.labels(alert.category).inc()

    clocks = PartitionClocks()
    # The offset of the furthest record ingest and track_users took of each partition of their input
    # since its assignment: while a high watermark is past it, the sweep's clocks stay at the data's
    # time (partitions_catching_up).
    furthest_taken: dict[Any, int] = {}
    in_flight = InFlight()  # envelopes this worker's ingest sent: waiting too until read

    def took(message: Any) -> None:
        # The furthest: a record read again after a seek back (streams.worker.transport) is behind records
        # already taken.
        furthest_taken[message.tp] = max(message.offset, furthest_taken.get(message.tp, -1))

    # Users idle this long are evicted (streams.domain.eviction): by a tick, like a timer, so that track_users
    # stays the only writer of user state.
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
    pending_timers = PendingTimers(policy, horizon)  # what the sweep looks at, instead of every user
    # Users erased lately and when (wall clock, ms), as the sink keeps them: an event of theirs timed up
    # to the erasure that reaches track_users after it (in flight on another source topic when the
    # erasure was ingested) must not bring their state back. In memory: a restart forgets it.
    erased_users = ErasedUsers()

    @users.on_recover
    async def index_recovered_users() -> None:
        """After each rebalance the table holds other users: index their pending timers again."""
        pending_timers.rebuild(users.values())

    acknowledged = app.service(AcknowledgedSender(settings))
    # Through the producer that waits for the broker's acknowledgement: a dead letter the broker
    # refused is known at once, and tried again (streams.contracts.deadletters), before its message is.
    dead_letters = DeadLetterSender(
        settings.topic_dead_letters, acknowledged.send, stopping=lambda: app.should_stop, sleep=app.sleep
    )
    dead_letter = dead_letters.send
    # The dead letters of changelog records the tables refuse at recovery, which cannot wait for the
    # broker (streams.worker.codec.CheckedTable): queued, and sent by a service started after the acknowledged
    # sender (the app starts its services in order, once the first recovery is done).
    changelog_dead_letters = app.service(DeadLetterQueue(dead_letters))
    for table in (users, partition_models, issue_counts, launch_profiles):
        table.dead_letters = changelog_dead_letters

    async def processing_failed(message: Any, error: Exception) -> None:
        """Whatever handling ``message`` raised: logged, and the message dead-lettered."""
        log.error(
            "processing %s:%s@%s failed", message.topic, message.partition, message.offset, exc_info=error
        )
        await dead_letter(message, "processing_error", repr(error)[:300], time.time())

    async def dead_letter_stock(message: Any, error: InvalidEvent) -> None:
        with contextlib.suppress(StopRequested):  # the stock reader stops too, and reads it again
            await dead_letter(message, error.reason, error.detail, time.time())

    stock_reader = app.service(StockReader(settings, on_invalid=dead_letter_stock))

    ctx = WorkerContext(
        app=app,
        settings=settings,
        policy=policy,
        references=references,
        users=users,
        state_writes=state_writes,
        pending_timers=pending_timers,
        clocks=clocks,
        erased_users=erased_users,
        horizon=horizon,
        acknowledged=acknowledged,
        dead_letter=dead_letter,
        processing_failed=processing_failed,
        models_of=models_of,
        learned_since_checkpoint=learned_since_checkpoint,
        took=took,
        in_flight=in_flight,
        stock_reader=stock_reader,
        surge_rules=surge_rules,
        source_of=source_of,
        internal_max_bytes=internal_max_bytes,
    )

    @app.agent(raw_input)
    async def ingest(stream: faust.StreamT) -> None:
        await each_batch(
            stream,
            lambda events: ingest_batch(ctx, events),
            processing_failed,
            max_events=settings.ingest_batch_events,
        )

    @app.agent(raw_labels)
    async def ingest_labels(stream: faust.StreamT) -> None:
        """Every partition's tagger learns every correction: each goes to every partition."""
        await each_event(stream, ingest_label, processing_failed)

    async def ingest_label(event: faust.EventT) -> None:
        message = event.message
        try:
            correction = parse_label(message.value, max_bytes=settings.max_event_bytes)
        except InvalidEvent as error:
            await dead_letter(message, error.reason, error.detail, time.time())
            return
        metrics.FEEDBACK_LABELS.inc()
        for partition in range(settings.partitions):
            await labels_topic.send(
                key=correction.feedback_id.encode(), value=correction.to_wire(), partition=partition
            )

    @app.agent(user_input)
    async def track_users(stream: faust.StreamT) -> None:
        await each_batch(
            stream, lambda events: track_batch(ctx, events), processing_failed, max_events=USER_BATCH_MESSAGES
        )

    @app.timer(settings.sweep_interval_seconds)
    async def sweep() -> None:
        """Tick users whose timers (dwell, renewal, decline, quiet-hours end) fell due while silent, and
        users idle past the horizon (their state is then deleted or trimmed)."""
        try:
            await sweep_once()
        except Exception:  # an exception in a Faust timer crashes the app; the next sweep retries
            log.exception("timer sweep failed")

    async def sweep_once() -> None:
        wall = time.time()
        active = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == settings.topic_events}
        behind = await partitions_catching_up(active)
        for user_id, partition, now in pending_timers.due(clocks, active, wall, catching_up=behind):
            await ticks_topic.send(
                key=user_id.encode(), value={"user_id": user_id, "now": to_millis(now)}, partition=partition
            )
            metrics.TICKS_SENT.inc()

    async def partitions_catching_up(active: set[int]) -> set[int]:
        """The partitions of ``active`` whose events may still wait to be read: those of the events
        topic with records waiting, and all of them while a source partition of this worker's has
        records waiting (its events are re-keyed onto any partition). A partition has records waiting
        while its high watermark is past the furthest record taken, or, none taken since its
        assignment, past the consumer's position; unknown (no fetch answered yet) counts as waiting. An
        events partition also waits while envelopes this worker's ingest sent it are not yet read
        (:class:`streams.worker.context.InFlight`): the last fetch's high watermark may predate them."""
        behind = set()
        for tp in app.consumer.assignment():
            source = tp.topic in source_of
            if not source and (tp.topic != settings.topic_events or tp.partition not in active):
                continue
            highwater = app.consumer.highwater(tp)
            taken = furthest_taken.get(tp)
            if taken is not None:
                next_unread = taken + 1
            else:
                try:
                    next_unread = await app.consumer.position(tp)
                except Exception:  # no longer assigned: counted as waiting
                    next_unread = None
                if highwater is not None and next_unread is not None and next_unread >= highwater:
                    furthest_taken[tp] = next_unread - 1  # all before it was taken before: not asked again
            waiting = highwater is None or next_unread is None or next_unread < highwater
            if source and waiting:
                return set(active)
            if waiting or (not source and in_flight.waiting(tp.partition, next_unread)):
                behind.add(tp.partition)
        return behind

    @app.timer(5.0)
    async def report_partitions() -> None:
        """Lag, the partitions held and the models' quality, for the partitions this worker holds now:
        what a rebalance took away is removed, so that sums over workers count each partition once."""
        read_offsets = app.monitor.tp_read_offsets
        lags = {}
        for tp in app.consumer.assignment():
            highwater = app.consumer.highwater(tp)
            read = read_offsets.get(tp)
            if highwater is not None and read is not None:
                lags[(tp.topic, tp.partition)] = max(0, highwater - read - 1)
        metrics.report_lag(settings.app_id, lags)
        actives = app.assignor.assigned_actives()
        held = {(tp.topic, str(tp.partition), "active"): 1 for tp in actives}
        held |= {(tp.topic, str(tp.partition), "standby"): 1 for tp in app.assignor.assigned_standbys()}
        metrics.replace_series(metrics.ASSIGNED_PARTITIONS, "worker", held)
        served = {str(tp.partition) for tp in actives if tp.topic == settings.topic_events}
        quality = {labels: value for labels, value in model_quality.items() if labels[2] in served}
        metrics.replace_series(metrics.MODEL_QUALITY, "worker", quality)

    return app


def run(app: faust.App, services: Iterable[mode.ServiceT], loglevel: str) -> None:
    """Run ``app`` with ``services`` started beside it until SIGTERM or SIGINT: Faust's Worker then
    stops the agents, lets the services finish (the sink flushes and commits) and commits offsets."""
    Worker(app, *services, loglevel=loglevel).execute_from_commandline()
