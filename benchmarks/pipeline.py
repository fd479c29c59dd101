"""Pipeline throughput and latency on the embedded default, against a baseline measured in the same run.

    python benchmarks/pipeline.py [--events 200000] [--rates 300,5000] [--latency-seconds 30] [--write-readme]

1. ``--events`` synthetic web and logistics events (:mod:`streams.traffic`, replayed from an hour ago,
   with a few broken messages mixed in) are produced into an embedded Tansu broker.
2. Baselines (a), measured in the same run on the same broker and messages: a bare aiokafka consumer
   reads them all; a bare Faust worker whose one agent only iterates over them, stock and with the
   worker's changes to Faust's per-record work (``iterate-tuned``); and a bare Faust worker of the
   pipeline's shape doing none of its work (re-key each event by user onto a second topic, write it
   into a changelog-backed table there): :mod:`benchmarks.faust_floor`.
3. Pipeline (b): a ``forewarn worker`` process (validation, re-keying, per-user state, triggers,
   interventions, dead letters, ClickHouse sink into chdb) processes them all. Its progress is read from
   its own ``/metrics`` every 0.1 s; it counts as done when ClickHouse holds every valid event.
   Events/s of each, the ratios to the bare consumer and to the bare Faust re-key + table worker, the
   CPU µs per event of the Faust workers and the pipeline's worker, and the issue's targets are printed.
4. Latency: with the worker caught up, live traffic at each of ``--rates`` events/s (lowest first) for
   ``--latency-seconds``; a consumer of the interventions topic measures event time to arrival of every
   intervention, per trigger (p50, p99, max). ``delay_notice`` is pure pipeline latency;
   ``payment_assist`` falls due while the user is silent, so the timer sweep's interval adds to it.

``--write-readme`` puts the figures into README.md between the benchmark markers.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from benchmarks.readme import publish  # noqa: E402
from streams.broker import start_broker  # noqa: E402
from streams.config import Settings  # noqa: E402
from streams.events import InvalidEvent, parse_event  # noqa: E402
from streams.interventions import DELAY_NOTICE, PAYMENT_ASSIST  # noqa: E402
from streams.topics import ensure_topics  # noqa: E402
from streams.traffic import Outgoing, TrafficGenerator, TrafficProfile  # noqa: E402
from streams.worker_process import EMBEDDED_BROKER_ENV, WorkerProcess, send_everything_policy  # noqa: E402

PARTITIONS = 4
MEASURED = (PAYMENT_ASSIST, DELAY_NOTICE)  # the triggers this traffic leads to
DWELL_SECONDS = 5.0  # the live phase's payment dwell threshold; its lingering visits last longer
SWEEP_SECONDS = 0.25
README_MARKERS = ("<!-- benchmark:start -->", "<!-- benchmark:end -->")


# --- input


def replayed_traffic(count: int, seed: int) -> list[Outgoing]:
    """``count`` messages of synthetic traffic whose event times lie in the last hour or so."""
    profile = TrafficProfile(sessions_per_second=100.0, malformed_share=0.001)
    start = time.time() - 3600.0
    generator = TrafficGenerator(profile, seed=seed, start=start)
    messages: list[Outgoing] = []
    clock = start
    while len(messages) < count:
        clock += 10.0
        messages.extend(generator.due(clock))
    return messages[:count]


async def produce(bootstrap: str, topics: dict[str, str], messages: list[Outgoing]) -> float:
    """Produce everything (acks=all); returns the seconds it took."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=256 * 1024
    )
    await producer.start()
    started = time.perf_counter()
    try:
        pending = [await producer.send(topics[m.topic], value=m.value, key=m.key) for m in messages]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


# --- (a) the baseline


async def bare_consumer(bootstrap: str, topics: list[str], count: int) -> float:
    """Seconds a bare aiokafka consumer takes to read ``count`` messages of ``topics`` from the start
    (partitions assigned directly: no group join in the measurement)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # fetches the metadata partitions_for_topic reads
        partitions = [
            TopicPartition(topic, p) for topic in topics for p in consumer.partitions_for_topic(topic) or ()
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        started = time.perf_counter()
        read = 0
        while read < count:
            for batch in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                read += len(batch)
        return time.perf_counter() - started
    finally:
        await consumer.stop()


# --- (b) the pipeline


@dataclass
class Progress:
    """Samples of the worker's own counters: (seconds since start, ingested, tracked, stored, the
    worker process's CPU seconds so far)."""

    samples: list[tuple[float, float, float, float, float]] = field(default_factory=list)
    interventions: dict[str, float] = field(default_factory=dict)


def read_counters(text: str) -> tuple[float, float, float, dict[str, float]]:
    """Messages ingested (valid + rejected), events through the per-user agent, events rows stored,
    and interventions by trigger, from one /metrics scrape."""
    ingested = tracked = stored = 0.0
    interventions: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "forewarn_events_total" or (
                sample.name == "forewarn_dead_letters_total" and sample.labels["reason"] != "processing_error"
            ):
                ingested += sample.value
            elif sample.name == "forewarn_event_processing_seconds_count":
                tracked += sample.value
            elif sample.name == "forewarn_sink_rows_total" and sample.labels["table"] == "events":
                stored += sample.value
            elif sample.name == "forewarn_interventions_total":
                interventions[sample.labels["trigger"]] = sample.value
    return ingested, tracked, stored, interventions


def watch(worker: WorkerProcess, progress: Progress, valid: int, stop: threading.Event) -> None:
    """Scrape the worker every 0.1 s until the per-user agent has processed ``valid`` events and
    ClickHouse holds them (the sink reads the validated events on its own, beside that agent)."""
    started = time.perf_counter()
    while not stop.is_set():
        try:
            ingested, tracked, stored, interventions = read_counters(worker.metrics())
        except OSError:  # not serving yet
            time.sleep(0.05)
            continue
        cpu = process_cpu_seconds(worker.pid) if worker.pid else 0.0
        progress.samples.append((time.perf_counter() - started, ingested, tracked, stored, cpu))
        progress.interventions = interventions
        if tracked >= valid and stored >= valid:
            return
        time.sleep(0.1)


def stage_seconds(progress: Progress, column: int, target: float, measure: int = 0) -> float:
    """From the last sample before any message was ingested to the first that reached ``target``:
    seconds (``measure`` 0), or the worker's CPU seconds (``measure`` 4)."""
    began = max((s[measure] for s in progress.samples if s[1] == 0), default=0.0)
    done = next(s[measure] for s in progress.samples if s[column] >= target)
    return done - began


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the framework's floor


@dataclass
class Floor:
    mode: str
    events: int
    seconds: float
    cpu_seconds: float


def faust_floor(bootstrap: str, topics: list[str], count: int, mode: str, linger_ms: int) -> Floor:
    """A bare Faust worker over the same messages (benchmarks/faust_floor.py), in its own process."""
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "faust_floor.py"),
        f"--bootstrap={bootstrap}",
        f"--topics={','.join(topics)}",
        f"--count={count}",
        f"--mode={mode}",
        f"--partitions={PARTITIONS}",
        f"--linger-ms={linger_ms}",
    ]
    with tempfile.TemporaryDirectory() as directory:
        result_file = Path(directory) / "result.json"
        command.append(f"--result={result_file}")
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0 or not result_file.exists():
            raise RuntimeError(f"faust floor {mode} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        result = orjson.loads(result_file.read_bytes())
    return Floor(mode, result["events"], result["seconds"], result["cpu_seconds"])


# --- latency


@dataclass
class LiveResult:
    latencies: dict[str, list[float]]  # ms from event time to arrival, by trigger
    due: Counter[str]  # interventions the measured window's traffic leads to (ground truth)
    events: int = 0  # events sent in the measured window


async def live_latency(
    bootstrap: str,
    topics: dict[str, str],
    interventions_topic: str,
    rate: float,
    warmup: float,
    seconds: float,
    seed: int,
) -> LiveResult:
    """Stream live traffic at about ``rate`` events/s: ``warmup`` seconds until sessions of every age
    are in flight, then ``seconds`` measured. Only interventions caused by events sent in the measured
    window count (matched by their source event id)."""
    profile = TrafficProfile(
        shipment_step_seconds=(0.5, 2.0),
        linger_seconds=(DWELL_SECONDS + 1.0, DWELL_SECONDS + 6.0),
        pay_seconds=(0.5, DWELL_SECONDS - 1.0),
    )
    profile.sessions_per_second = rate / events_per_session(profile, seed)
    generator = TrafficGenerator(profile, seed=seed + 1)
    # A short fetch wait: the embedded broker holds fetches (streams/transport.py), which would add to
    # the latency measured here.
    consumer = AIOKafkaConsumer(
        interventions_topic, bootstrap_servers=bootstrap, auto_offset_reset="latest", fetch_max_wait_ms=10
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await consumer.start()
    await producer.start()
    await consumer.seek_to_end()
    result = LiveResult({trigger: [] for trigger in MEASURED}, Counter())
    measured_sources: set[str] = set()
    stop = asyncio.Event()

    async def receive() -> None:
        while not stop.is_set():
            for batch in (await consumer.getmany(timeout_ms=50)).values():
                arrived = time.time()
                for message in batch:
                    intervention = orjson.loads(message.value)
                    if intervention["source_event_id"] not in measured_sources:
                        continue  # caused by warm-up traffic or an earlier phase
                    event_time = datetime.fromisoformat(intervention["event_time"]).timestamp()
                    result.latencies[intervention["trigger"]].append((arrived - event_time) * 1000.0)

    receiver = asyncio.create_task(receive())
    started = time.time()
    measure_from, measure_until = started + warmup, started + warmup + seconds
    try:
        while (now := time.time()) < measure_until:
            for outgoing in generator.due(now):
                if outgoing.event_time >= measure_from:
                    result.events += 1
                    if outgoing.expects:
                        result.due[outgoing.expects] += 1
                        measured_sources.add(orjson.loads(outgoing.value)["event_id"])
                await producer.send(topics[outgoing.topic], value=outgoing.value, key=outgoing.key)
            await asyncio.sleep(0.005)
        await producer.flush()
        # Lingering visits that began near the end fall due up to a dwell later.
        await asyncio.sleep(DWELL_SECONDS + 5.0)
    finally:
        stop.set()
        await receiver
        await producer.stop()
        await consumer.stop()
    return result


def events_per_session(profile: TrafficProfile, seed: int) -> float:
    probe = TrafficGenerator(
        TrafficProfile(**{**profile.__dict__, "sessions_per_second": 20.0}), seed=seed, start=0.0
    )
    probe.due(600.0)
    probe.profile.sessions_per_second = 1e-9
    probe.due(1e7)
    return probe.stats.events / probe.stats.sessions


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- report


def run(args: argparse.Namespace) -> str:
    workdir = Path(tempfile.mkdtemp(prefix="forewarn-bench-"))
    broker = start_broker(log_path=workdir / "broker.log")
    # Every candidate is sent, so that what arrives can be checked against the traffic's ground truth.
    policy_file = workdir / "policy.toml"
    policy_file.write_text(send_everything_policy(f"{DWELL_SECONDS:g}s"))
    env = {
        "FOREWARN_BROKER_URL": broker.url,
        "FOREWARN_CLICKHOUSE_DSN": f"chdb://{workdir / 'clickhouse'}",
        "FOREWARN_DATA_DIR": str(workdir / "worker"),
        "FOREWARN_PARTITIONS": str(PARTITIONS),
        "FOREWARN_POLICY_FILE": str(policy_file),
        "FOREWARN_SWEEP_INTERVAL_SECONDS": str(SWEEP_SECONDS),
        **EMBEDDED_BROKER_ENV,
        "FOREWARN_BROKER_FETCH_MAX_WAIT": str(args.fetch_max_wait),
    }
    settings = Settings.from_env(env)
    topics = settings.source_topics
    worker = WorkerProcess(env, workdir / "worker.log")
    try:
        asyncio.run(ensure_topics(settings))
        messages = replayed_traffic(args.events, args.seed)
        valid = sum(1 for m in messages if not _is_broken(m))
        print(f"producing {len(messages)} events ({len(messages) - valid} broken) ...", flush=True)
        produce_seconds = asyncio.run(produce(broker.bootstrap, topics, messages))
        print(f"  {len(messages) / produce_seconds:,.0f} events/s produced", flush=True)

        print("(a) bare aiokafka consumer ...", flush=True)
        bare_seconds = asyncio.run(bare_consumer(broker.bootstrap, list(topics.values()), len(messages)))
        bare_rate = len(messages) / bare_seconds
        print(f"  {bare_rate:,.0f} events/s", flush=True)

        floors = []
        for mode in ("iterate", "iterate-tuned", "rekey-table"):
            print(f"(a) bare Faust worker, {mode} ...", flush=True)
            linger = settings.producer_linger_ms
            floors.append(faust_floor(broker.bootstrap, list(topics.values()), len(messages), mode, linger))
            print(f"  {len(messages) / floors[-1].seconds:,.0f} events/s", flush=True)

        print("(b) forewarn worker: validation, state, triggers, emit, ClickHouse sink ...", flush=True)
        progress = Progress()
        stop = threading.Event()
        watcher = threading.Thread(target=watch, args=(worker, progress, valid, stop), daemon=True)
        watcher.start()
        worker.start(timeout=120)
        watcher.join(timeout=args.timeout)
        stop.set()
        if not progress.samples or min(progress.samples[-1][2:4]) < valid:
            raise RuntimeError(
                f"the worker did not store all events within {args.timeout}s: {progress.samples[-1:]}"
            )
        ingest_seconds = stage_seconds(progress, 1, len(messages))
        tracked_seconds = stage_seconds(progress, 2, valid)
        stored_seconds = stage_seconds(progress, 3, valid)
        pipeline_seconds = max(tracked_seconds, stored_seconds)
        last_stage = 2 if tracked_seconds >= stored_seconds else 3
        pipeline_cpu = stage_seconds(progress, last_stage, valid, measure=4)
        pipeline_rate = len(messages) / pipeline_seconds
        print(f"  {pipeline_rate:,.0f} events/s end to end", flush=True)
        replay_interventions = {k: int(v) for k, v in sorted(progress.interventions.items())}

        lives: dict[float, LiveResult] = {}
        for rate in sorted(args.rates):  # the lowest first: a rate the worker cannot take leaves a backlog
            print(
                f"latency: live traffic at {rate:.0f} events/s,"
                f" {args.warmup_seconds:.0f}s warm-up + {args.latency_seconds:.0f}s measured ...",
                flush=True,
            )
            lives[rate] = asyncio.run(
                live_latency(
                    broker.bootstrap,
                    topics,
                    settings.topic_interventions,
                    rate,
                    args.warmup_seconds,
                    args.latency_seconds,
                    args.seed,
                )
            )
    finally:
        worker.stop()
        broker.stop()

    floor_rows = {
        "iterate": "(a) bare Faust worker: one agent iterating",
        "iterate-tuned": "(a) the same, with the worker's transport and sensors (streams.transport)",
        "rekey-table": "(a) bare Faust worker: re-key + table write per event",
    }
    stages = [  # (what, events, seconds, worker CPU seconds or None)
        ("producer (aiokafka, acks=all)", len(messages), produce_seconds, None),
        ("(a) bare aiokafka consumer", len(messages), bare_seconds, None),
        *((floor_rows[f.mode], f.events, f.seconds, f.cpu_seconds) for f in floors),
        ("(b) pipeline: all validated and re-keyed", len(messages), ingest_seconds, None),
        ("(b) pipeline: all through per-user state and triggers", valid, tracked_seconds, None),
        ("(b) pipeline: all stored in ClickHouse", valid, stored_seconds, None),
        ("**(b) pipeline: every stage done**", len(messages), pipeline_seconds, pipeline_cpu),
    ]
    skeleton = next(f for f in floors if f.mode == "rekey-table")
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {os.cpu_count()} cores,"
        f" Python {platform.python_version()}, one worker, {PARTITIONS} partitions,"
        " embedded Tansu broker and chdb:"
        f" `python benchmarks/pipeline.py --events {args.events}"
        f" --rates {','.join(f'{rate:g}' for rate in args.rates)}"
        f" --fetch-max-wait {args.fetch_max_wait:g}`",
        "",
        "| what | events | seconds | events/s | vs. (a) bare consumer | vs. re-key + table | CPU µs/event |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for what, events, seconds, cpu in stages:
        rate = events / seconds
        ratio = "" if what.startswith("producer") else f"{rate / bare_rate:.4f}"
        compared = "(b)" in what or "Faust" in what
        to_skeleton = f"{rate / (skeleton.events / skeleton.seconds):.2f}" if compared else ""
        cpu_text = "" if cpu is None else f"{1e6 * cpu / events:,.0f}"
        lines.append(
            f"| {what} | {events} | {seconds:.2f} | {rate:,.0f} | {ratio} | {to_skeleton} | {cpu_text} |"
        )
    pipeline_rate = len(messages) / pipeline_seconds
    lines += [
        "",
        "Targets (issue 7) against this run: full pipeline at >= 40% of the bare consumer:"
        f" {pipeline_rate / bare_rate:.2%} ({'met' if pipeline_rate >= 0.4 * bare_rate else 'not met'});"
        f" >= 10,000 events/s per worker process: {pipeline_rate:,.0f}"
        f" ({'met' if pipeline_rate >= 10_000 else 'not met'}).",
    ]
    lines += [
        "",
        f"Interventions emitted during the replay: {replay_interventions}.",
        "",
        "Event time to intervention arrival at a consumer, live traffic at a steady rate"
        f" ({args.warmup_seconds:.0f}s of warm-up, then {args.latency_seconds:.0f}s measured; only"
        f" interventions caused by the measured events count; payment dwell {DWELL_SECONDS:g}s, timer sweep"
        f" every {SWEEP_SECONDS:g}s):",
        "",
        "| events/s offered | events measured | trigger | received / due | p50 ms | p99 ms | max ms |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for rate, live in sorted(lives.items()):
        for trigger in MEASURED:
            values = live.latencies[trigger]
            figures = (
                f"{statistics.median(values):.0f} | {percentile(values, 0.99):.0f} | {max(values):.0f}"
                if values
                else "| |"
            )
            arrived = f"{len(values)} / {live.due[trigger]}"
            lines.append(f"| {rate:,.0f} | {live.events} | `{trigger}` | {arrived} | {figures} |")
    for rate, live in sorted(lives.items()):
        delays = live.latencies[DELAY_NOTICE]  # pure pipeline latency: no dwell or sweep in it
        complete = bool(delays) and len(delays) == live.due[DELAY_NOTICE]
        p99 = percentile(delays, 0.99) if delays else math.inf
        verdict = "met" if complete and p99 < 250.0 else "not met"
        lines.append(
            f"\nLatency target (issue 7: p99 under 250 ms at 5,000 events/s) at {rate:,.0f} events/s:"
            f" `delay_notice` p99 {p99:.0f} ms, {len(delays)} of {live.due[DELAY_NOTICE]} due arrived within"
            f" the run ({verdict}{'' if rate >= 5000 else '; below the target rate'})."
        )
    return "\n".join(lines)


def _is_broken(message: Outgoing) -> bool:
    try:
        parse_event(message.value, message.topic)
    except InvalidEvent:
        return True
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument(
        "--rates",
        type=lambda text: [float(rate) for rate in text.split(",")],
        default=[300.0, 5000.0],
        help="live events/s of the latency phases, comma-separated",
    )
    parser.add_argument("--warmup-seconds", type=float, default=30.0, help="live traffic before measuring")
    parser.add_argument("--latency-seconds", type=float, default=30.0, help="live traffic measured")
    parser.add_argument("--timeout", type=float, default=900.0, help="longest wait for the pipeline")
    parser.add_argument(
        "--fetch-max-wait",
        type=float,
        default=float(EMBEDDED_BROKER_ENV["FOREWARN_BROKER_FETCH_MAX_WAIT"]),
        help="the worker's FOREWARN_BROKER_FETCH_MAX_WAIT",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--write-readme", action="store_true", help="put the figures into README.md")
    args = parser.parse_args()
    report = run(args)
    publish(README_MARKERS, report, args.write_readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
