"""``forewarn demo``: the whole pipeline on one machine with nothing else installed.

It starts the embedded Tansu broker and a ``forewarn worker`` (ClickHouse embedded through chdb),
streams synthetic web and logistics traffic into the broker, shows progress, and at the end reads a
summary back from ClickHouse. Ctrl-C or the end of ``--duration`` stops everything it started, by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import sys
import time
from collections import Counter, deque
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.broker import start_broker
from streams.config import Settings
from streams.interventions import PAYMENT_ASSIST, TRIGGERS
from streams.traffic import Outgoing, TrafficGenerator, TrafficProfile
from streams.worker_process import EMBEDDED_BROKER_ENV, WorkerProcess

MARKER = ".forewarn-demo"
DEMO_DWELL_SECONDS = 30


def _prepare(workdir: Path) -> None:
    """Start from a clean demo directory; refuse to wipe a directory the demo did not make."""
    if workdir.exists():
        if any(workdir.iterdir()) and not (workdir / MARKER).exists():
            raise SystemExit(f"{workdir} exists and is not a demo directory; choose another --workdir")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / MARKER).touch()


class _Tally:
    """What the demo has seen go by, and what the traffic's ground truth says is due by now."""

    def __init__(self, dwell_seconds: float) -> None:
        self.dwell_seconds = dwell_seconds
        self.sent = 0
        self.interventions: Counter[str] = Counter()
        self.dead_letters: Counter[str] = Counter()
        self.examples: dict[str, dict] = {}
        self.due: Counter[str] = Counter()
        # (event time it falls due, trigger); messages come in event-time order, so this stays sorted.
        self._waiting: deque[tuple[float, str]] = deque()

    def sent_message(self, outgoing: Outgoing) -> None:
        self.sent += 1
        if outgoing.expects == PAYMENT_ASSIST:
            self._waiting.append((outgoing.event_time + self.dwell_seconds, PAYMENT_ASSIST))
        elif outgoing.expects is not None:
            self.due[outgoing.expects] += 1

    def advance(self, now: float) -> None:
        while self._waiting and self._waiting[0][0] <= now:
            self.due[self._waiting.popleft()[1]] += 1


async def _watch(bootstrap: str, settings: Settings, tally: _Tally, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        settings.topic_interventions,
        settings.topic_dead_letters,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        while not stop.is_set():
            for tp, messages in (await consumer.getmany(timeout_ms=300)).items():
                for message in messages:
                    if tp.topic == settings.topic_interventions:
                        intervention = orjson.loads(message.value)
                        tally.interventions[intervention["trigger"]] += 1
                        tally.examples.setdefault(intervention["trigger"], intervention)
                    else:
                        reason = dict(message.headers).get("forewarn.dlq.reason", b"?").decode()
                        tally.dead_letters[reason] += 1
    finally:
        await consumer.stop()


def _progress(tally: _Tally, elapsed: float, duration: float) -> str:
    interventions = ", ".join(
        f"{trigger} {tally.interventions[trigger]}/{tally.due[trigger]}" for trigger in TRIGGERS
    )
    return (
        f"[{elapsed:5.0f}s/{duration:.0f}s] events sent {tally.sent:7d}"
        f" ({tally.sent / max(elapsed, 1):5.0f}/s)"
        f" | interventions emitted/due: {interventions}"
        f" | dead letters {sum(tally.dead_letters.values())}"
    )


async def _stream(bootstrap: str, settings: Settings, generator: TrafficGenerator, duration: float) -> _Tally:
    tally = _Tally(settings.payment_dwell_seconds)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    watcher = asyncio.create_task(_watch(bootstrap, settings, tally, stop))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10)
    await producer.start()
    topics = {"clickstream": settings.topic_clickstream, "logistics": settings.topic_logistics}
    started = time.time()
    last_report = 0.0
    interactive = sys.stdout.isatty()
    try:
        while not stop.is_set() and time.time() - started < duration:
            now = time.time()
            for outgoing in generator.due(now):
                await producer.send(topics[outgoing.topic], value=outgoing.value, key=outgoing.key)
                tally.sent_message(outgoing)
            tally.advance(now)
            elapsed = now - started
            if interactive or elapsed - last_report >= 5:
                line = _progress(tally, elapsed, duration)
                print("\r" + line if interactive else line, end="" if interactive else "\n", flush=True)
                last_report = elapsed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)
        await producer.flush()
        if not stop.is_set():  # let the last events through the pipeline before stopping it
            await asyncio.sleep(3)
    finally:
        stop.set()
        await producer.stop()
        await watcher
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
    tally.advance(time.time())
    print(("\n" if interactive else "") + _progress(tally, time.time() - started, duration))
    return tally


def _summary(dsn: str, tally: _Tally) -> str:
    from sinks.clickhouse import ClickHouseStore

    store = ClickHouseStore(dsn)
    try:
        by_type = store.query(
            "SELECT source, event_type, sum(events) FROM events_per_minute GROUP BY ALL ORDER BY 1, 3 DESC"
        )
        stored = store.query("SELECT count() FROM events FINAL")[0][0]
        triggers = store.query(
            "SELECT trigger, count(), round(avg(toUnixTimestamp64Milli(decided_at)"
            " - toUnixTimestamp64Milli(event_time)))"
            " FROM interventions FINAL GROUP BY trigger ORDER BY trigger"
        )
        dead = store.query("SELECT reason, count() FROM dead_letters FINAL GROUP BY reason ORDER BY 2 DESC")
        minutes = store.query(
            "SELECT minute, sum(events) FROM events_per_minute GROUP BY minute ORDER BY minute"
        )
    finally:
        store.close()
    lines = [f"\nRead back from ClickHouse ({dsn}):", f"  events stored: {stored}"]
    lines += [f"    {source:12s} {kind:20s} {count}" for source, kind, count in by_type]
    lines.append(
        "  events per minute (materialized view): "
        + ", ".join(f"{minute:%H:%M} {count}" for minute, count in minutes)
    )
    lines.append("  interventions by trigger:")
    lines += [
        f"    {trigger:16s} {count:6d}   mean event-time-to-decision {lag} ms"
        for trigger, count, lag in triggers
    ] or ["    none"]
    lines.append("  dead letters by reason:")
    lines += [f"    {reason:20s} {count}" for reason, count in dead] or ["    none"]
    for trigger, example in sorted(tally.examples.items()):
        lines.append(
            f"  example {trigger}: {example['reason']}; evidence {orjson.dumps(example['evidence']).decode()}"
        )
    return "\n".join(lines)


def run_demo(duration: float, sessions_per_second: float, workdir: str, seed: int) -> int:
    # The worker logs to its own file; the demo's own Kafka clients need not narrate their group joins.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    root = Path(workdir).resolve()
    _prepare(root)
    broker = start_broker(log_path=root / "broker.log")
    dsn = f"chdb://{root / 'clickhouse'}"
    env = {
        "FOREWARN_BROKER_URL": broker.url,
        "FOREWARN_CLICKHOUSE_DSN": dsn,
        "FOREWARN_DATA_DIR": str(root / "worker"),
        "FOREWARN_PARTITIONS": "4",
        "FOREWARN_PAYMENT_DWELL_SECONDS": str(DEMO_DWELL_SECONDS),
        **EMBEDDED_BROKER_ENV,
    }
    settings = Settings.from_env(env)
    worker = WorkerProcess(env, root / "worker.log")
    try:
        print(f"Forewarn demo: embedded Kafka (Tansu) on {broker.bootstrap}, ClickHouse (chdb) in {dsn}")
        worker.start(timeout=60)
        print(
            f"worker ready (pid {worker.pid}, log {worker.log_path},"
            f" metrics http://127.0.0.1:{worker.metrics_port}/metrics);"
            f" payment dwell threshold {DEMO_DWELL_SECONDS}s; streaming {duration:.0f}s of traffic"
        )
        generator = TrafficGenerator(
            # Logistics steps a few seconds apart, so that a one-minute demo shows delays too.
            TrafficProfile(
                sessions_per_second=sessions_per_second,
                shipment_step_seconds=(1.0, 4.0),
                malformed_share=0.005,
            ),
            seed=seed,
        )
        tally = asyncio.run(_stream(broker.bootstrap, settings, generator, duration))
    except (RuntimeError, TimeoutError) as error:  # the worker did not start: say why, stop the rest
        raise SystemExit(str(error)) from None
    finally:
        if worker.running():
            print("stopping the worker (it flushes the ClickHouse sink and commits) ...")
        worker.stop()
        broker.stop()
    print(_summary(dsn, tally))
    return 0
