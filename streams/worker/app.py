"""The Faust application: its topics and tables (:mod:`streams.worker.topology`), and the agents,
timers and services wired to them, each in a module of its own over one shared
:class:`~streams.worker.context.WorkerContext`.

Data flow::

    source topics --ingest--> forewarn-events (envelopes) --track_users--> interventions, decisions,
     (raw bytes)      |                                  ^              scores, tickets, orders, ...
                      +--> forewarn-questions            |
                      |       --watch_issues--> hot_issues, launch_faq_forecasts
                      +--> dead_letters           forewarn-ticks (sweep)  forewarn-labels (ingest_labels)

===================== ========================================= ==========================================
agent / timer         module                                    reads -> writes
===================== ========================================= ==========================================
``ingest``            :mod:`streams.worker.agents.ingest`       source topics -> envelopes, questions
``track_users``       :mod:`streams.worker.agents.users`        events, ticks, labels -> every output
``ingest_labels``     :mod:`streams.worker.agents.labels`       feedback_labels -> forewarn-labels
``watch_issues``      :mod:`streams.worker.agents.questions`    forewarn-questions -> hot issues, forecasts
``ingest_campaigns``  :mod:`streams.worker.agents.support_load` campaigns -> forewarn-contacts
``forecast_load``     :mod:`streams.worker.agents.support_load` forewarn-contacts -> load forecasts
``sweep``             :mod:`streams.worker.timers.sweep`        pending timers -> forewarn-ticks
checkpoints           :mod:`streams.worker.timers.checkpoints`  live models -> the models changelog
``reload_policy``     :mod:`streams.worker.timers.policy_reload` the policy file -> ``ctx.policy``
``report_partitions`` :mod:`streams.worker.timers.partitions_report` lag, partitions, model quality
===================== ========================================= ==========================================

Every agent handles its records through one guard (:mod:`streams.worker.guard`): whatever the handling
raises is dead-lettered (``processing_error``), never left unacknowledged. Faust flushes the producer
before committing offsets, so an input offset is committed only after everything its processing sent
is acknowledged (:mod:`streams.worker.statewrites`, :mod:`streams.worker.acknowledged`).

The CRM/ERP API and the in-worker ClickHouse sink are added by :mod:`streams.run.worker`, which runs
the app.
"""

from __future__ import annotations

from collections.abc import Iterable

import faust
import mode
from faust.tables import TableManager
from faust.worker import Worker

from streams.contracts.privacy import load_cluster_secret
from streams.contracts.settings import Settings
from streams.worker import codec
from streams.worker.agents import ingest, labels, questions, support_load, users
from streams.worker.context import WorkerContext
from streams.worker.statewrites import BeforeCommit
from streams.worker.timers import checkpoints, partitions_report, policy_reload, sweep
from streams.worker.topology import Tables, Topics
from streams.worker.transport import use_lean_sensors, use_transport


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


def new_faust_app(settings: Settings) -> faust.App:
    """A Faust app configured from ``settings``, its transport and sensors set, nothing declared yet."""
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
    return app


def create_app(settings: Settings) -> faust.App:
    """The worker's app: topics and tables declared, then the agents, timers and handlers wired to
    them. Raises PolicyError (naming file, trigger and field) for an invalid policy."""
    codec.register(load_cluster_secret(settings))
    app = new_faust_app(settings)
    topics = Topics.declare(app, settings)
    tables = Tables.declare(app, settings)
    ctx = WorkerContext.build(app, settings, topics, tables)

    app.agent(topics.sources, name="ingest")(ingest.agent(ctx))
    app.agent(topics.user_input, name="track_users")(users.agent(ctx))
    app.agent(topics.feedback_labels, name="ingest_labels")(labels.agent(ctx))
    app.agent(topics.questions, name="watch_issues")(questions.agent(ctx))
    app.agent(topics.campaigns, name="ingest_campaigns")(support_load.campaigns_agent(ctx))
    app.agent(topics.contacts, name="forecast_load")(support_load.agent(ctx))

    app.timer(settings.sweep_interval_seconds)(sweep.timer(ctx))
    app.timer(settings.model_checkpoint_seconds)(checkpoints.timer(ctx))
    app.timer(partitions_report.INTERVAL_SECONDS)(partitions_report.timer(ctx))
    if settings.policy_reload_seconds > 0:
        app.timer(settings.policy_reload_seconds)(policy_reload.timer(ctx))
    app.task(policy_reload.on_sighup(ctx))

    app.sensors.add(BeforeCommit(ctx.write_changed_states))
    app.on_partitions_revoked.connect(checkpoints.on_partitions_revoked(ctx))
    app.on_before_shutdown.connect(checkpoints.on_before_shutdown(ctx))
    tables.models.on_recover(ctx.models_recovered)
    tables.users.on_recover(ctx.users_recovered)
    return app


def run(app: faust.App, services: Iterable[mode.ServiceT], loglevel: str) -> None:
    """Run ``app`` with ``services`` started beside it until SIGTERM or SIGINT: Faust's Worker then
    stops the agents, lets the services finish (the sink flushes and commits) and commits offsets."""
    Worker(app, *services, loglevel=loglevel).execute_from_commandline()
