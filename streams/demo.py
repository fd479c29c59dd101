"""``forewarn demo``: the whole pipeline on one machine with nothing else installed.

It starts the embedded Tansu broker and a ``forewarn worker`` (ClickHouse embedded through chdb),
streams synthetic web and logistics traffic into the broker, shows progress, and at the end reads a
summary back from ClickHouse. Ctrl-C or the end of ``--duration`` stops everything it started, by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.broker import free_port, start_broker
from streams.config import Settings
from streams.traffic import TrafficGenerator, TrafficProfile

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


def _wait_for(log: Path, text: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"the worker did not start (see {log}):\n{tail}")
        time.sleep(0.2)


class _Tally:
    """What the demo has seen go by, for the progress line."""

    def __init__(self) -> None:
        self.sent = 0
        self.interventions: Counter[str] = Counter()
        self.dead_letters: Counter[str] = Counter()
        self.examples: dict[str, dict] = {}


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


def _progress(tally: _Tally, elapsed: float, duration: float, generator: TrafficGenerator) -> str:
    interventions = ", ".join(f"{k} {v}" for k, v in sorted(tally.interventions.items())) or "none yet"
    truth = generator.stats
    return (
        f"[{elapsed:5.0f}s/{duration:.0f}s] events sent {tally.sent:7d}"
        f" ({tally.sent / max(elapsed, 1):6.0f}/s)"
        f" | interventions: {interventions} | dead letters {sum(tally.dead_letters.values())}"
        f" | scripted so far: {truth.lingering_payments} lingering payments,"
        f" {truth.delayed_shipments + truth.exception_shipments} late shipments"
    )


async def _stream(bootstrap: str, settings: Settings, generator: TrafficGenerator, duration: float) -> _Tally:
    tally = _Tally()
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
            for outgoing in generator.due(time.time()):
                await producer.send(topics[outgoing.topic], value=outgoing.value, key=outgoing.key)
                tally.sent += 1
            elapsed = time.time() - started
            if interactive or elapsed - last_report >= 5:
                line = _progress(tally, elapsed, duration, generator)
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
    print(("\n" if interactive else "") + _progress(tally, time.time() - started, duration, generator))
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
    root = Path(workdir).resolve()
    _prepare(root)
    broker = start_broker(log_path=root / "broker.log")
    worker: subprocess.Popen[bytes] | None = None
    metrics_port = free_port()
    dsn = f"chdb://{root / 'clickhouse'}"
    env = {
        **os.environ,
        "FOREWARN_BROKER_URL": broker.url,
        "FOREWARN_CLICKHOUSE_DSN": dsn,
        "FOREWARN_DATA_DIR": str(root / "worker"),
        "FOREWARN_PARTITIONS": "4",
        "FOREWARN_PAYMENT_DWELL_SECONDS": str(DEMO_DWELL_SECONDS),
        "FOREWARN_METRICS_PORT": str(metrics_port),
        "FOREWARN_WEB_PORT": str(free_port()),
        "FOREWARN_BROKER_REBALANCE_TIMEOUT": "3",
        "FOREWARN_BROKER_SESSION_TIMEOUT": "6",
        "FOREWARN_BROKER_HEARTBEAT_INTERVAL": "1",
    }
    settings = Settings.from_env(env)
    log = root / "worker.log"
    try:
        print(f"Forewarn demo: embedded Kafka (Tansu) on {broker.bootstrap}, ClickHouse (chdb) in {dsn}")
        with open(log, "ab") as output:
            # Its own session, so Ctrl-C reaches only the demo, which then stops the worker in order.
            worker = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker"],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_for(log, "[^Worker]: Ready", worker, 60)
        _wait_for(log, "ClickHouse sink assigned", worker, 60)
        print(
            f"worker ready (pid {worker.pid}, log {log}, metrics http://127.0.0.1:{metrics_port}/metrics);"
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
    finally:
        if worker is not None and worker.poll() is None:
            print("stopping the worker (it flushes the ClickHouse sink and commits) ...")
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        broker.stop()
    print(_summary(dsn, tally))
    return 0
