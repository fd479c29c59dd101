"""The ClickHouse sink as a process of its own: ``forewarn sink``.

The same sink the worker runs (:class:`sinks.consumer.ClickHouseSink`, consumer group
``<app id>-sink``), from the same settings, without the agents: so it can be scaled, restarted and
given memory apart from the workers, which then run with ``FOREWARN_SINK_IN_WORKER=false``.

It applies the schema and the retention at start, serves its own ``/metrics`` on
``FOREWARN_SINK_METRICS_PORT``, and on SIGTERM or SIGINT stores and commits what it holds and leaves
its group before it exits (0). A crash (an error the sink does not retry) exits 1, so that whatever
runs it starts it again: the rows it held and had not committed are read again, and stored once
(:mod:`sinks.consumer`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

import mode

from sinks.clickhouse import ClickHouseStore
from sinks.consumer import ClickHouseSink
from sinks.rows import sink_specs
from streams.contracts.settings import Settings

log = logging.getLogger(__name__)


class SinkService(mode.Service):
    """Runs the ClickHouse sink inside the worker; on shutdown it lets the sink store and commit what
    it holds and leave its group before the worker goes.

    The worker starts it beside the app, not as one of the app's services (which Faust starts only
    once its tables are recovered): the sink's consumer group then forms while the app's does, instead
    of after it (each waits for the broker's rebalance timeout), and it stops after the app, so what
    the app produced last is sent before the sink leaves."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.sink: ClickHouseSink | None = None
        self._task: asyncio.Task[None] | None = None
        self._crash_task: asyncio.Future[None] | None = None

    async def on_start(self) -> None:
        self.sink = open_sink(self.settings)
        # A task of our own, not a mode future: those are cancelled on stop, before the sink could
        # flush, commit and leave its group.
        self._task = asyncio.ensure_future(self.sink.run())
        self._task.add_done_callback(self._on_sink_done)

    def _on_sink_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("ClickHouse sink stopped", exc_info=task.exception())
            # Fail loudly (the worker exits and is restarted), never silently stop storing.
            self._crash_task = asyncio.ensure_future(self.crash(task.exception()))

    async def on_stop(self) -> None:
        if self.sink is not None and self._task is not None:
            await self.sink.stop()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.settings.sink_max_retry_seconds + 10)
            except TimeoutError:
                log.warning("the ClickHouse sink did not stop in time; uncommitted rows will be re-read")
                self._task.cancel()


def open_sink(settings: Settings) -> ClickHouseSink:
    """The ClickHouse sink of ``settings``, its schema migrations and retention applied: what the
    worker's sink service and ``forewarn sink`` run."""
    from sinks.retention import apply_retention
    from streams.contracts.privacy import Pseudonymizer, load_key

    store = ClickHouseStore(settings.clickhouse_dsn)
    applied = store.apply_schema(settings.clickhouse_cluster)
    if applied:
        log.info("ClickHouse schema migrations applied: %s", applied)
    sink = ClickHouseSink(
        store,
        sink_specs(settings),
        bootstrap_servers=settings.bootstrap_servers,
        group_id=f"{settings.app_id}-sink",
        dead_letter_topic=settings.topic_dead_letters,
        # The same key in every worker: one user, one pseudonym (streams.contracts.privacy).
        pseudonymize=Pseudonymizer(load_key(settings)),
        erasures_topic=settings.topic_erasures,
        batch_rows=settings.sink_batch_rows,
        flush_seconds=settings.sink_flush_seconds,
        max_retry_seconds=settings.sink_max_retry_seconds,
        verify_end_offsets=settings.broker_verify_end_offsets,
        dedup_window=settings.sink_dedup_window,
        security=settings.aiokafka_security(),
        consumer_options={
            "fetch_max_wait_ms": settings.fetch_max_wait_ms,
            **settings.aiokafka_group_timeouts(),
        },
    )
    # TTLs from the settings, at every start (a changed setting takes effect now).
    apply_retention(store, sink.specs.values(), settings)
    return sink


def serve_sink(settings: Settings) -> int:
    """Run the sink until SIGTERM or SIGINT (0) or until it fails (1)."""
    from streams.contracts import metrics
    from streams.contracts.topics import ensure_topics

    asyncio.run(ensure_topics(settings))  # it may start before any worker made them
    metrics.serve(settings.sink_metrics_port)
    try:
        asyncio.run(_run(settings))
    except Exception:
        log.exception("ClickHouse sink stopped")
        return 1
    return 0


async def _run(settings: Settings) -> None:
    sink = await asyncio.to_thread(open_sink, settings)  # ClickHouse calls: not on the loop
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []  # held: a task only the loop references may be collected

    def stop(signum: int) -> None:
        log.info("signal %s: storing and committing what the sink holds, then leaving", signum)
        stopping.append(asyncio.ensure_future(sink.stop()))

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signum)
    await sink.run()
    log.info("ClickHouse sink stopped")
