"""Pipeline throughput, CPU and latency on the embedded default, against floors measured in the same run.

    python benchmarks/pipeline.py [--events 100000] [--quick] [--scale-processes 2] [--write-docs]

1. ``--events`` synthetic web and logistics events (:mod:`streams.tools.traffic.generator`, replayed from an
hour ago,
   with a few broken messages mixed in) are produced into an embedded Tansu broker.
2. Floors, measured in the same run on the same broker and messages: a bare aiokafka consumer reads
   them all; bare Faust workers (:mod:`benchmarks.faust_floor`): one agent that only iterates
   (``iterate``: the floor of the CPU ratio), its tuned variant when faust_floor has it
   (``iterate-tuned``), and the pipeline's shape doing none of its work (``rekey-table``).
3. Replay: Forewarn's processes take them all through every stage (validation, re-keying, per-user
   state, triggers, interventions, dead letters, the ClickHouse sink into chdb). Where ``forewarn sink``
   exists, one ``forewarn worker`` without its sink (``FOREWARN_SINK_IN_WORKER=false``) beside one
   ``forewarn sink``, as ``forewarn worker --processes N`` runs them; otherwise one ``forewarn worker``
   with the sink inside. Their counters are scraped from ``/metrics`` once a second (a scrape costs the
   worker CPU); the CPU of every Forewarn process (the started ones and their descendants, found through
   ``/proc/PID/task/*/children``; not the broker, not this load generator) is read from
   ``/proc/PID/stat`` right after each scrape, so counts and CPU are known at the same moments.
4. Latency: on a fresh broker and processes of the same shape (the replayed users, an hour old, would
   all fall due at once when live time arrives), live traffic at ``--latency-share`` (50%) of the
   events/s the replay measured, ``--warmup-seconds`` then ``--latency-seconds`` measured; a consumer
   of the interventions topic measures event time to arrival of every intervention, per trigger (p50,
   p99, max). ``delay_notice`` is pure pipeline latency; ``payment_assist`` falls due while the user is
   silent, so the timer sweep's interval adds to it.
5. The sink alone: :func:`benchmarks.sink.run` on the events table (rows/s into chdb, in process).
6. Scale: the replay again on a fresh broker with ``--scale-processes`` (2) worker processes:
   ``forewarn worker --processes 2`` where it exists (two workers and the sink's process), otherwise
   two workers of one group beside one ``forewarn sink``, or two plain workers with a chdb each;
   events/s together.

Rates come from the samples, not from when a 1 Hz sample happened to see a stage finish: the
throughput is the steady window between the first sample past 10% of the events and the last one
below 90% (events counted and CPU read at both ends, so no sampling error in either), and a stage's
seconds from start to finish are interpolated between the samples around its start and its end.

``--write-docs`` puts the report into docs/performance.md between the pipeline-benchmark markers.
The report ends with one line of the headline figures (:func:`final_line`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from benchmarks import sink as sink_benchmark  # noqa: E402
from benchmarks.readme import PERFORMANCE, publish  # noqa: E402
from streams.contracts.events import InvalidEvent, parse_event  # noqa: E402
from streams.contracts.interventions import DELAY_NOTICE, PAYMENT_ASSIST  # noqa: E402
from streams.contracts.settings import Settings  # noqa: E402
from streams.contracts.topics import ensure_topics  # noqa: E402
from streams.tools.broker import free_port, start_broker  # noqa: E402
from streams.tools.traffic.generator import TrafficGenerator  # noqa: E402
from streams.tools.traffic.profile import TrafficProfile  # noqa: E402
from streams.tools.traffic.schedule import Outgoing  # noqa: E402
from streams.tools.worker_launcher import (  # noqa: E402
    EMBEDDED_BROKER_ENV,
    READY_LINES,
    WorkerProcess,
    send_everything_policy,
)

PARTITIONS = 4
MEASURED = (PAYMENT_ASSIST, DELAY_NOTICE)  # the triggers this traffic leads to
DWELL_SECONDS = 5.0  # the live phase's payment dwell threshold; its lingering visits last longer
SWEEP_SECONDS = 0.25
SCRAPE_SECONDS = 1.0  # the worker's /metrics, and /proc, once a second
STEADY = (0.1, 0.9)  # the replay's throughput is measured while this share of the events is done
MARKERS = ("<!-- pipeline-benchmark:start -->", "<!-- pipeline-benchmark:end -->")  # in docs/performance.md

# The targets, each against what the same run measures: (required, goal).
CPU_RATIO = (3.0, 1.5)  # all Forewarn processes' CPU per event / the bare Faust agent's, at most
EVENTS_PER_PROCESS = (5_000.0, 10_000.0)  # events/s per worker process through every stage, at least
SCALE_TWO = 1.5  # two worker processes' events/s against one's, at least
LATENCY_P50_MS = 50.0  # delay_notice at half the measured capacity, below
LATENCY_P99_MS = 250.0
SINK_ROWS_PER_SECOND = float(sink_benchmark.TARGET_ROWS_PER_SECOND)  # events table, at least


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


def _is_broken(message: Outgoing) -> bool:
    try:
        parse_event(message.value, message.topic)
    except InvalidEvent:
        return True
    return False


# --- floors


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


@dataclass
class Floor:
    mode: str
    events: int
    seconds: float
    cpu_seconds: float

    @property
    def cpu_micros(self) -> float:
        return 1e6 * self.cpu_seconds / self.events


FLOOR_SCRIPT = ROOT / "benchmarks" / "faust_floor.py"


def floor_modes(quick: bool) -> list[str]:
    """The bare Faust workers to measure: ``iterate`` always, ``iterate-tuned`` when faust_floor.py has
    it, ``rekey-table`` unless ``quick``."""
    help_text = subprocess.run(
        [sys.executable, str(FLOOR_SCRIPT), "--help"], capture_output=True, text=True, check=False
    ).stdout
    modes = ["iterate", *(["iterate-tuned"] if "iterate-tuned" in help_text else [])]
    return modes if quick else [*modes, "rekey-table"]


def faust_floor(bootstrap: str, topics: list[str], count: int, mode: str, linger_ms: int) -> Floor:
    """A bare Faust worker over the same messages (benchmarks/faust_floor.py), in its own process."""
    command = [
        sys.executable,
        str(FLOOR_SCRIPT),
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


# --- Forewarn's processes, from /proc


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """Child processes of ``pid`` (/proc/PID/task/*/children: every thread's)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:  # the thread ended meanwhile
            continue
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, parents first."""
    tree, index = [pid], 0
    while index < len(tree):
        with contextlib.suppress(OSError):  # it exited meanwhile
            tree += children(tree[index])
        index += 1
    return tree


def process_role(pid: int) -> str:
    """What a Forewarn process is, from its command line: ``sink``, ``supervisor`` (a ``worker`` with
    ``--processes``) or ``worker``."""
    words = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    if "sink" in words:
        return "sink"
    return "supervisor" if any(word.startswith("--processes") for word in words) else "worker"


def listening_ports(pid: int) -> set[int]:
    """TCP ports process ``pid`` listens on (its socket inodes in /proc/PID/fd, looked up in
    /proc/PID/net/tcp and tcp6)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            columns = line.split()
            if columns[3] == "0A" and columns[9] in inodes:  # 0A: LISTEN
                ports.add(int(columns[1].rsplit(":", 1)[1], 16))
    return ports


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


# --- the deployment under test


@dataclass
class Capabilities:
    """What this checkout's ``forewarn`` offers: ``worker --processes N`` (a supervisor) and
    ``forewarn sink`` (the sink as its own process)."""

    supervisor: bool
    sink_process: bool

    @classmethod
    def detect(cls) -> Capabilities:
        def helps(*command: str) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "streams.tools.cli", *command, "--help"],
                capture_output=True,
                text=True,
                check=False,
            )
            return done.stdout if done.returncode == 0 else ""

        return cls("--processes" in helps("worker"), bool(helps("sink")))


@dataclass
class Counters:
    """One scrape's figures, summed over Forewarn's processes."""

    ingested: float = 0.0  # messages validated or rejected
    tracked: float = 0.0  # events through the per-user agent
    stored: float = 0.0  # events rows in ClickHouse
    interventions: Counter[str] = field(default_factory=Counter)

    def add(self, text: str) -> None:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "forewarn_events_total" or (
                    sample.name == "forewarn_dead_letters_total"
                    and sample.labels["reason"] != "processing_error"
                ):
                    self.ingested += sample.value
                elif sample.name == "forewarn_event_processing_seconds_count":
                    self.tracked += sample.value
                elif sample.name == "forewarn_sink_rows_total" and sample.labels["table"] == "events":
                    self.stored += sample.value
                elif sample.name == "forewarn_interventions_total":
                    self.interventions[sample.labels["trigger"]] += sample.value


class SinkProcess(WorkerProcess):
    """``forewarn sink`` as a child process: a worker process's log, readiness and stop, its own
    command; ``metrics_port`` is its ``FOREWARN_SINK_METRICS_PORT``."""

    def start(self, timeout: float = 60.0) -> SinkProcess:
        env = {**os.environ, **self.env, "FOREWARN_SINK_METRICS_PORT": str(self.metrics_port)}
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module, "sink"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_for_log(READY_LINES[1], timeout)
        return self


@dataclass
class Deployment:
    """Forewarn's processes for one replay, as :meth:`build` chooses them, and how to read them."""

    description: str
    workers: list[WorkerProcess]  # what is started: a supervisor, or workers and a sink
    processes: int  # worker processes
    shared_log: bool  # every process logs into the first one's log
    endpoints: list[int] = field(default_factory=list)  # the /metrics ports summed per scrape
    supervised: bool = False  # the endpoints are its children's, found once they serve (:meth:`discover`)
    ready: bool = False

    @classmethod
    def build(
        cls, env: dict[str, str], workdir: Path, processes: int, capabilities: Capabilities
    ) -> Deployment:
        """With ``forewarn sink``: ``forewarn worker --processes N`` for more than one process where the
        worker has it, otherwise N workers without their sinks (``FOREWARN_SINK_IN_WORKER=false``) and
        one ``forewarn sink``, as the supervisor runs them. Without: N plain workers of one group, each
        with its sink inside and a chdb of its own."""
        log = workdir / "forewarn.log"
        if capabilities.sink_process and capabilities.supervisor and processes > 1:
            supervisor = WorkerProcess(
                {**env, "FOREWARN_SINK_METRICS_PORT": str(free_port())},
                log,
                args=("--processes", str(processes)),
            )
            description = f"`forewarn worker --processes {processes}`"
            return cls(description, [supervisor], processes, shared_log=True, supervised=True)
        workers: list[WorkerProcess] = []
        for index in range(processes):
            own = {**env, "FOREWARN_DATA_DIR": str(workdir / f"worker-{index}")}
            if capabilities.sink_process:
                workers.append(WorkerProcess({**own, "FOREWARN_SINK_IN_WORKER": "false"}, log))
            else:  # one chdb per process: it is the sink's, in the worker
                own["FOREWARN_CLICKHOUSE_DSN"] = f"chdb://{workdir / f'clickhouse-{index}'}"
                workers.append(WorkerProcess(own, workdir / f"worker-{index}.log"))
        plural = "es" if processes > 1 else ""
        if capabilities.sink_process:
            workers.append(SinkProcess(env, log))
            description = f"{processes} `forewarn worker` process{plural} without sink + `forewarn sink`"
        else:
            description = f"{processes} `forewarn worker` process{plural}, the sink inside"
        endpoints = [worker.metrics_port for worker in workers]
        return cls(description, workers, processes, capabilities.sink_process, endpoints)

    def start(self, timeout: float) -> None:
        """Start every process at once (so that a group's members join together) and wait until ready;
        with one log for all, until it shows as many ready workers as there are (at most ``timeout``)."""
        with ThreadPoolExecutor(len(self.workers)) as pool:
            for started in [pool.submit(worker.start, timeout) for worker in self.workers]:
                started.result()
        if self.shared_log:
            log = self.workers[0]
            deadline = time.monotonic() + timeout
            while log.log_text().count(READY_LINES[0]) < self.processes and time.monotonic() < deadline:
                time.sleep(0.2)
        if self.supervised:
            self.discover()
        self.ready = True

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def pids(self) -> list[int]:
        """Every Forewarn process now running: the started ones and their descendants."""
        return [pid for worker in self.workers if worker.pid for pid in process_tree(worker.pid)]

    def discover(self) -> dict[int, str]:
        """The /metrics ports to scrape under a supervisor: of every process serving Forewarn's metrics,
        those none of whose descendants serve them too (a supervisor that sums its children's is taken
        only when they serve none themselves). Returns what each port served, so that this scrape
        counts as the sample's."""
        serving: dict[int, dict[int, str]] = {}
        for pid in self.pids():
            try:
                ports = listening_ports(pid)
            except OSError:
                continue
            for port in sorted(ports):
                try:
                    text = scrape(port)
                except (OSError, ValueError):
                    continue
                if "forewarn_" in text:
                    serving.setdefault(pid, {})[port] = text
        leaves = [pid for pid in serving if not any(d in serving for d in process_tree(pid)[1:])]
        texts = {port: text for pid in leaves for port, text in serving[pid].items()}
        self.endpoints = list(texts)
        return texts

    def counters(self) -> Counters:
        """The counters summed over the endpoints, one scrape each (under a supervisor not yet ready,
        the discovery's)."""
        if self.supervised and not self.ready:  # its processes may still be coming up
            texts = self.discover()
        else:
            texts = {port: scrape(port) for port in self.endpoints}
        if not texts:
            raise OSError("no /metrics endpoint yet")
        counters = Counters()
        for text in texts.values():
            counters.add(text)
        return counters

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of every Forewarn process, by ``role pid``."""
        seconds = {}
        for pid in self.pids():
            try:
                seconds[f"{process_role(pid)} {pid}"] = process_cpu_seconds(pid)
            except OSError:  # it exited meanwhile
                continue
        return seconds


# --- samples and what they say (pure)


@dataclass(frozen=True)
class Sample:
    """One scrape: seconds since the replay's processes were started, the counters, and the CPU
    seconds of every Forewarn process read right after."""

    seconds: float
    ingested: float
    tracked: float
    stored: float
    cpu: dict[str, float]

    @property
    def done(self) -> float:
        """Events through every stage: through the per-user agent and stored in ClickHouse."""
        return min(self.tracked, self.stored)


Measure = Callable[[Sample], float]


def crossing(samples: list[Sample], measure: Measure, target: float) -> float:
    """When ``measure`` reached ``target``: between the last sample below it and the first at or above
    it, at the pace of the interval before (a stage finishing early in a 1 Hz interval is not billed
    the rest of the second), and at the latest at that first sample."""
    for index, (before, after) in enumerate(itertools.pairwise(samples)):
        if measure(after) >= target > measure(before):
            earlier = samples[index - 1] if index else before
            pace = (measure(before) - measure(earlier)) / (before.seconds - earlier.seconds) if index else 0.0
            if pace <= 0:  # no interval before: this one's own pace
                pace = (measure(after) - measure(before)) / (after.seconds - before.seconds)
            return min(after.seconds, before.seconds + (target - measure(before)) / pace)
    if samples and measure(samples[0]) >= target:
        return samples[0].seconds
    raise ValueError(f"never reached {target}")


def began(samples: list[Sample], measure: Measure) -> float:
    """When ``measure`` started to grow: extrapolated back from the first sample that saw progress at
    the pace of the next interval, not before the last sample that saw none."""
    first = next(index for index, sample in enumerate(samples) if measure(sample) > 0)
    floor = samples[first - 1].seconds if first else 0.0
    if first + 1 >= len(samples):
        return floor
    now, then = samples[first], samples[first + 1]
    pace = (measure(then) - measure(now)) / (then.seconds - now.seconds)
    return max(floor, now.seconds - measure(now) / pace) if pace > 0 else floor


@dataclass(frozen=True)
class Window:
    """What happened between two samples: events done, seconds, CPU seconds by process."""

    events: float
    seconds: float
    cpu: dict[str, float]

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def cpu_micros(self) -> float:
        """CPU µs per event of all the processes together."""
        return 1e6 * sum(self.cpu.values()) / self.events


def steady_window(samples: list[Sample], target: float, shares: tuple[float, float] = STEADY) -> Window:
    """Events done, seconds and CPU between the first sample at ``shares[0]`` of ``target`` and the last
    below ``shares[1]`` of it (the start's group join and table recovery and the last batches' flush
    left out); both ends are samples, so counts and CPU are exact there. When the run is too short for
    two such samples, the first sample with progress and the first at ``target`` are taken."""
    low = next((s for s in samples if s.done >= shares[0] * target), None)
    high = next((s for s in reversed(samples) if s.done < shares[1] * target), None)
    if low is None or high is None or high.seconds <= low.seconds:
        low = next(s for s in samples if s.done > 0)
        high = next(s for s in samples if s.done >= target)
    cpu = {name: seconds - low.cpu.get(name, 0.0) for name, seconds in high.cpu.items()}
    return Window(high.done - low.done, high.seconds - low.seconds, cpu)


# --- the replay


@dataclass
class Replay:
    """One replay of the messages through a deployment, sampled once a second."""

    description: str
    processes: int
    messages: int
    valid: int
    samples: list[Sample]
    interventions: dict[str, int]

    @property
    def window(self) -> Window:
        return steady_window(self.samples, self.valid)

    def stage_seconds(self, measure: Measure, target: float) -> float:
        """Seconds from the stage's first event to its last (both interpolated)."""
        return crossing(self.samples, measure, target) - began(self.samples, measure)


def watch(deployment: Deployment, valid: int, samples: list[Sample], stop: threading.Event) -> Counters:
    """Sample the deployment every SCRAPE_SECONDS (on a fixed schedule) until every valid event is
    through the per-user agent and in ClickHouse; returns the last counters."""
    started = due = time.perf_counter()
    last = Counters()
    while not stop.is_set():
        time.sleep(max(0.0, due - time.perf_counter()))
        try:
            counters = deployment.counters()
        except (OSError, ValueError):  # not serving yet
            due = time.perf_counter() + 0.2
            continue
        cpu = deployment.cpu()
        samples.append(
            Sample(time.perf_counter() - started, counters.ingested, counters.tracked, counters.stored, cpu)
        )
        last = counters
        if samples[-1].done >= valid:
            return last
        due += SCRAPE_SECONDS
    return last


def replay(deployment: Deployment, messages: int, valid: int, timeout: float) -> Replay:
    """Start the deployment on the produced messages and sample it until every valid event went through
    every stage (it keeps running: the caller stops it)."""
    print(f"replay through {deployment.description} ...", flush=True)
    samples: list[Sample] = []
    stop = threading.Event()
    result: list[Counters] = []
    watcher = threading.Thread(
        target=lambda: result.append(watch(deployment, valid, samples, stop)), daemon=True
    )
    watcher.start()  # before the start: the processes take events before they say they are ready
    deployment.start(timeout=120)
    watcher.join(timeout)
    stop.set()
    watcher.join(5)
    if not samples or samples[-1].done < valid:
        raise RuntimeError(f"not every event went through every stage within {timeout}s: {samples[-1:]}")
    interventions = {trigger: int(count) for trigger, count in sorted(result[0].interventions.items())}
    done = Replay(deployment.description, deployment.processes, messages, valid, samples, interventions)
    window = done.window
    print(f"  {window.rate:,.0f} events/s, {window.cpu_micros:,.0f} µs CPU/event", flush=True)
    return done


# --- latency


@dataclass
class LiveResult:
    rate: float  # events/s offered
    latencies: dict[str, list[float]]  # ms from event time to arrival, by trigger
    due: Counter[str]  # interventions the measured window's traffic leads to (ground truth)
    events: int = 0  # events sent in the measured window

    @property
    def delays(self) -> list[float]:
        """``delay_notice``'s: pure pipeline latency, no dwell or sweep in it."""
        return self.latencies[DELAY_NOTICE]

    @property
    def complete(self) -> bool:
        """Whether every ``delay_notice`` due arrived within the run."""
        return bool(self.delays) and len(self.delays) >= self.due[DELAY_NOTICE]


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
    # A short fetch wait: the embedded broker holds fetches (streams/worker/transport.py), which would add to
    # the latency measured here.
    consumer = AIOKafkaConsumer(
        interventions_topic, bootstrap_servers=bootstrap, auto_offset_reset="latest", fetch_max_wait_ms=10
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await consumer.start()
    await producer.start()
    await consumer.seek_to_end()
    result = LiveResult(rate, {trigger: [] for trigger in MEASURED}, Counter())
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


# --- targets (pure)


@dataclass(frozen=True)
class Headline:
    """The figures the targets are judged on, all from one run."""

    events_per_process: float  # the one-process replay's events/s through every stage, per worker process
    cpu_micros: float  # CPU µs per event of all Forewarn's processes in that replay
    floor_cpu_micros: float  # the bare Faust agent's (faust_floor ``iterate``)
    scale: float | None  # the scale replay's events/s over the one-process replay's (None: not run)
    scale_processes: int
    p50_ms: float  # delay_notice at ``latency_rate`` (inf: none arrived)
    p99_ms: float
    latency_complete: bool  # every delay_notice due arrived
    latency_rate: float  # events/s offered in the latency phase
    sink_rows_per_second: float  # the sink alone, events table

    @property
    def cpu_ratio(self) -> float:
        return self.cpu_micros / self.floor_cpu_micros


@dataclass(frozen=True)
class Verdict:
    target: str
    required: str
    measured: str
    met: bool


def evaluate(headline: Headline) -> list[Verdict]:
    """Each target against what the run measured."""
    h = headline
    verdicts = [
        Verdict(
            "CPU per event, all Forewarn processes, over the bare Faust agent's",
            f"<= {CPU_RATIO[0]:g}x (goal {CPU_RATIO[1]:g}x)",
            f"{h.cpu_ratio:.2f}x ({h.cpu_micros:,.0f} / {h.floor_cpu_micros:,.0f} µs)",
            h.cpu_ratio <= CPU_RATIO[0],
        ),
        Verdict(
            "events/s per worker process through every stage",
            f">= {EVENTS_PER_PROCESS[0]:,.0f} (goal {EVENTS_PER_PROCESS[1]:,.0f})",
            f"{h.events_per_process:,.0f}",
            h.events_per_process >= EVENTS_PER_PROCESS[0],
        ),
        Verdict(
            f"{h.scale_processes} worker processes over one",
            f">= {SCALE_TWO:g}x",
            "not run" if h.scale is None else f"{h.scale:.2f}x",
            h.scale is not None and h.scale >= SCALE_TWO,
        ),
    ]
    arrived = "" if h.latency_complete else ", not all due arrived"
    for name, value, limit in (("p50", h.p50_ms, LATENCY_P50_MS), ("p99", h.p99_ms, LATENCY_P99_MS)):
        verdicts.append(
            Verdict(
                f"`delay_notice` {name}, event time to arrival, at half the capacity"
                f" ({h.latency_rate:,.0f}/s)",
                f"< {limit:g} ms",
                f"{value:,.0f} ms{arrived}",
                h.latency_complete and value < limit,
            )
        )
    verdicts.append(
        Verdict(
            "the sink alone, events table into chdb",
            f">= {SINK_ROWS_PER_SECOND:,.0f} rows/s",
            f"{h.sink_rows_per_second:,.0f} rows/s",
            h.sink_rows_per_second >= SINK_ROWS_PER_SECOND,
        )
    )
    return verdicts


def targets_table(verdicts: list[Verdict]) -> list[str]:
    lines = ["| target | required | measured | |", "| --- | --- | ---: | --- |"]
    for v in verdicts:
        lines.append(f"| {v.target} | {v.required} | {v.measured} | {'met' if v.met else 'not met'} |")
    return lines


def final_line(headline: Headline) -> str:
    """The report's last line: the headline figures in one fixed form."""
    h = headline
    scale = "n/a" if h.scale is None else f"{h.scale:.2f}"
    return (
        f"pipeline: {h.events_per_process:,.0f} events/s per process, {h.cpu_micros:,.0f} µs CPU/event,"
        f" {h.cpu_ratio:.2f}x the bare Faust agent's CPU per event, {scale}x with {h.scale_processes}"
        f" processes, p99 {h.p99_ms:,.0f} ms at {h.latency_rate:,.0f}/s"
    )


# --- the run


@dataclass
class Run:
    """Everything one run measured."""

    capabilities: Capabilities
    messages: int
    valid: int
    produce_seconds: float
    bare_seconds: float
    floors: list[Floor]
    single: Replay
    live: LiveResult
    sink: sink_benchmark.Figure
    scaled: Replay | None

    def headline(self, scale_processes: int) -> Headline:
        floor = next(f for f in self.floors if f.mode == "iterate")
        delays = self.live.delays
        window = self.single.window
        return Headline(
            events_per_process=window.rate / self.single.processes,
            cpu_micros=window.cpu_micros,
            floor_cpu_micros=floor.cpu_micros,
            scale=None if self.scaled is None else self.scaled.window.rate / window.rate,
            scale_processes=max(2, scale_processes),  # the target is for two, when not run too
            p50_ms=statistics.median(delays) if delays else math.inf,
            p99_ms=percentile(delays, 0.99) if delays else math.inf,
            latency_complete=self.live.complete,
            latency_rate=self.live.rate,
            sink_rows_per_second=self.sink.rate,
        )


def sink_events_figure(figures: list[sink_benchmark.Figure]) -> sink_benchmark.Figure:
    """The events table's figure of benchmarks/sink.py: in envelopes where it measures them (as
    ``forewarn-events`` carries the events), otherwise one message per event."""
    events = [figure for figure in figures if figure.what.startswith("(b) sink: events")]
    return next((figure for figure in events if "envelope" in figure.what), events[0])


@dataclass
class Phase:
    """A fresh embedded broker with the topics, and Forewarn's settings for it, in ``workdir``."""

    workdir: Path
    bootstrap: str
    env: dict[str, str]
    settings: Settings

    def produce(self, traffic: list[Outgoing], valid: int) -> float:
        print(f"producing {len(traffic)} events ({len(traffic) - valid} broken) ...", flush=True)
        seconds = asyncio.run(produce(self.bootstrap, self.settings.source_topics, traffic))
        print(f"  {len(traffic) / seconds:,.0f} events/s produced", flush=True)
        return seconds


@contextmanager
def phase(workdir: Path, args: argparse.Namespace) -> Iterator[Phase]:
    """Every candidate intervention is sent (so that what arrives can be checked against the traffic's
    ground truth); one pseudonym key and cluster secret for all processes. The broker stops after."""
    workdir.mkdir(parents=True)
    broker = start_broker(log_path=workdir / "broker.log")
    try:
        policy_file = workdir / "policy.toml"
        policy_file.write_text(send_everything_policy(f"{DWELL_SECONDS:g}s"))
        env = {
            "FOREWARN_BROKER_URL": broker.url,
            "FOREWARN_CLICKHOUSE_DSN": f"chdb://{workdir / 'clickhouse'}",
            "FOREWARN_DATA_DIR": str(workdir / "worker"),
            "FOREWARN_PARTITIONS": str(PARTITIONS),
            "FOREWARN_POLICY_FILE": str(policy_file),
            "FOREWARN_SWEEP_INTERVAL_SECONDS": str(SWEEP_SECONDS),
            "FOREWARN_PSEUDONYM_KEY": str(uuid.UUID(int=args.seed)),
            "FOREWARN_CLUSTER_SECRET": str(uuid.UUID(int=args.seed + 1)),
            **EMBEDDED_BROKER_ENV,
            "FOREWARN_BROKER_FETCH_MAX_WAIT": str(args.fetch_max_wait),
        }
        settings = Settings.from_env(env)
        asyncio.run(ensure_topics(settings))
        yield Phase(workdir, broker.bootstrap, env, settings)
    finally:
        broker.stop()


def run(args: argparse.Namespace) -> Run:
    """Every phase in turn (the module says which), each on its own broker, in one temporary directory."""
    capabilities = Capabilities.detect()
    print(f"forewarn: {capabilities}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="forewarn-bench-"))
    traffic = replayed_traffic(args.events, args.seed)
    valid = sum(1 for m in traffic if not _is_broken(m))

    with phase(workdir / "one", args) as one:
        produce_seconds = one.produce(traffic, valid)
        topics = list(one.settings.source_topics.values())
        print("(a) bare aiokafka consumer ...", flush=True)
        bare_seconds = asyncio.run(bare_consumer(one.bootstrap, topics, len(traffic)))
        floors = []
        for mode in floor_modes(args.quick):
            print(f"(a) bare Faust worker, {mode} ...", flush=True)
            linger = one.settings.producer_linger_ms
            floors.append(faust_floor(one.bootstrap, topics, len(traffic), mode, linger))
            print(f"  {len(traffic) / floors[-1].seconds:,.0f} events/s", flush=True)
        with Deployment.build(one.env, one.workdir, 1, capabilities) as deployment:
            single = replay(deployment, len(traffic), valid, args.timeout)

    # Live traffic on a fresh broker and processes: after the replay, an hour of event time old, every
    # replayed user would fall due at once when live time arrives, and the first seconds would measure
    # that sweep, not the steady latency.
    rate = max(10.0, round(args.latency_share * single.window.rate, -1))
    with (
        phase(workdir / "live", args) as fresh,
        Deployment.build(fresh.env, fresh.workdir, 1, capabilities) as deployment,
    ):
        deployment.start(timeout=120)
        print(
            f"latency: live traffic at {rate:,.0f} events/s,"
            f" {args.warmup_seconds:.0f}s warm-up + {args.latency_seconds:.0f}s measured ...",
            flush=True,
        )
        live = asyncio.run(
            live_latency(
                fresh.bootstrap,
                fresh.settings.source_topics,
                fresh.settings.topic_interventions,
                rate,
                args.warmup_seconds,
                args.latency_seconds,
                args.seed,
            )
        )

    print("the sink alone (benchmarks/sink.py) ...", flush=True)
    sink_args = argparse.Namespace(
        events=args.sink_events,
        seed=args.seed,
        batch_rows=5000,
        repeat=1 if args.quick else 2,
        envelope_events=100,  # where benchmarks/sink.py measures envelopes: its own default
    )
    sink = sink_events_figure(sink_benchmark.run(sink_args)[0])

    scaled = None
    if args.scale_processes > 1:
        with (
            phase(workdir / "scaled", args) as again,
            Deployment.build(again.env, again.workdir, args.scale_processes, capabilities) as deployment,
        ):
            again.produce(traffic, valid)
            scaled = replay(deployment, len(traffic), valid, args.timeout)
    return Run(
        capabilities, len(traffic), valid, produce_seconds, bare_seconds, floors, single, live, sink, scaled
    )


# --- the report


def command_line(args: argparse.Namespace) -> str:
    words = ["python benchmarks/pipeline.py", f"--events {args.events}"]
    words += [f"--warmup-seconds {args.warmup_seconds:g}", f"--latency-seconds {args.latency_seconds:g}"]
    words += [f"--scale-processes {args.scale_processes}", f"--fetch-max-wait {args.fetch_max_wait:g}"]
    return " ".join(words + (["--quick"] if args.quick else []))


FLOOR_ROWS = {
    "iterate": "(a) bare Faust worker: one agent iterating (the CPU ratio's floor)",
    "iterate-tuned": "(a) the same, with the worker's transport and sensors (streams.worker.transport)",
    "rekey-table": "(a) bare Faust worker: re-key + table write per event",
}


def report(args: argparse.Namespace, run: Run) -> str:
    single, floor_cpu = run.single, next(f.cpu_micros for f in run.floors if f.mode == "iterate")
    headline = run.headline(args.scale_processes)
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {os.cpu_count()} cores,"
        f" Python {platform.python_version()}, {PARTITIONS} partitions, embedded Tansu broker and chdb,"
        f" Forewarn as {single.description}:"
        f" `{command_line(args)}`",
        "",
        "| what | events | seconds | events/s | CPU µs/event | CPU vs bare Faust agent |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]

    def row(what: str, events: float, seconds: float, cpu_micros: float | None = None) -> None:
        cpu = "" if cpu_micros is None else f"{cpu_micros:,.0f} | {cpu_micros / floor_cpu:.2f}"
        lines.append(f"| {what} | {events:.0f} | {seconds:.2f} | {events / seconds:,.0f} | {cpu or ' |'} |")

    row("producer (aiokafka, acks=all)", run.messages, run.produce_seconds)
    row("(a) bare aiokafka consumer", run.messages, run.bare_seconds)
    for floor in run.floors:
        row(FLOOR_ROWS.get(floor.mode, floor.mode), floor.events, floor.seconds, floor.cpu_micros)
    stages = (
        ("validated and re-keyed", run.messages, lambda s: s.ingested),
        ("through per-user state and triggers", run.valid, lambda s: s.tracked),
        ("stored in ClickHouse", run.valid, lambda s: s.stored),
        ("every stage, first to last event", run.valid, lambda s: s.done),
    )
    for what, target, measure in stages:
        row(f"(b) pipeline: {what}", target, single.stage_seconds(measure, target))
    window = single.window
    row(
        f"**(b) pipeline: every stage, steady ({STEADY[0]:.0%}-{STEADY[1]:.0%} of the events)**",
        window.events,
        window.seconds,
        window.cpu_micros,
    )
    lines += [
        "",
        "CPU of Forewarn's processes in the steady window (from /proc; the broker and the load generator"
        " not included):",
        "",
        "| replay | process | CPU seconds | CPU µs/event | events/s |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for replayed in (single, run.scaled):
        if replayed is None:
            continue
        steady = replayed.window
        for name, seconds in sorted(steady.cpu.items()):
            micros = 1e6 * seconds / steady.events
            lines.append(f"| {replayed.description} | {name} | {seconds:.2f} | {micros:,.0f} | |")
        lines.append(
            f"| {replayed.description} | **all** | {sum(steady.cpu.values()):.2f} | {steady.cpu_micros:,.0f}"
            f" | {steady.rate:,.0f} |"
        )
    if run.scaled is not None:
        lines += [
            "",
            f"Scale: {run.scaled.description} on a fresh broker, the same events:"
            f" {run.scaled.window.rate:,.0f} events/s together, {headline.scale:.2f}x one process"
            f" ({run.scaled.window.rate / run.scaled.processes:,.0f} per process).",
        ]
    live = run.live
    lines += [
        "",
        f"Interventions emitted during the replay: {single.interventions}.",
        "",
        f"Event time to intervention arrival at a consumer, live traffic at {args.latency_share:.0%} of the"
        f" replay's events/s ({live.events / args.latency_seconds:,.0f}/s sent; {args.warmup_seconds:.0f}s"
        f" of warm-up, then {args.latency_seconds:.0f}s measured; only interventions caused by the measured"
        f" events count; payment dwell {DWELL_SECONDS:g}s, timer sweep every {SWEEP_SECONDS:g}s):",
        "",
        "| events/s offered | events measured | trigger | received / due | p50 ms | p99 ms | max ms |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for trigger in MEASURED:
        values = live.latencies[trigger]
        figures = (
            f"{statistics.median(values):.0f} | {percentile(values, 0.99):.0f} | {max(values):.0f}"
            if values
            else "| |"
        )
        arrived = f"{len(values)} / {live.due[trigger]}"
        lines.append(f"| {live.rate:,.0f} | {live.events} | `{trigger}` | {arrived} | {figures} |")
    lines += [
        "",
        f"The sink alone (`benchmarks/sink.py`'s measurement, {run.sink.what.removeprefix('(b) sink: ')},"
        f" {run.sink.rows} rows, in process):"
        f" {run.sink.rate:,.0f} rows/s, {run.sink.cpu_micros:.1f} CPU µs per row.",
        "",
        "Targets, each against this run:",
        "",
        *targets_table(evaluate(headline)),
        "",
        final_line(headline),
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 20k events, a short latency phase, fewer floors"
    )
    parser.add_argument("--latency-share", type=float, default=0.5, help="of the replay's events/s")
    parser.add_argument("--warmup-seconds", type=float, default=30.0, help="live traffic before measuring")
    parser.add_argument("--latency-seconds", type=float, default=30.0, help="live traffic measured")
    parser.add_argument("--scale-processes", type=int, default=2, help="worker processes of the scale replay")
    parser.add_argument("--sink-events", type=int, default=100_000, help="rows of the sink's own measurement")
    parser.add_argument("--timeout", type=float, default=900.0, help="longest wait for a replay")
    parser.add_argument(
        "--fetch-max-wait",
        type=float,
        default=float(EMBEDDED_BROKER_ENV["FOREWARN_BROKER_FETCH_MAX_WAIT"]),
        help="the workers' FOREWARN_BROKER_FETCH_MAX_WAIT",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--write-docs", action="store_true", help=f"put the report into {PERFORMANCE.name}")
    args = parser.parse_args()
    if args.write_docs and not all(marker in PERFORMANCE.read_text(encoding="utf-8") for marker in MARKERS):
        parser.error(f"{PERFORMANCE} has no {' ... '.join(MARKERS)} markers to write between")
    if args.quick:
        args.events, args.sink_events = min(args.events, 20_000), min(args.sink_events, 20_000)
        args.warmup_seconds, args.latency_seconds = (
            min(args.warmup_seconds, 10.0),
            min(args.latency_seconds, 15.0),
        )
    publish(MARKERS, report(args, run(args)), args.write_docs, PERFORMANCE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
