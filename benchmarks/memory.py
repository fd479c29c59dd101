"""Memory per user: what a worker's resident memory grows by for each user it holds, per table store,
and the bytes of one user's state.

    python benchmarks/memory.py [--users 100000] [--stores memory://,rocksdb://] [--write-docs]

1. For each store (``FOREWARN_STORE``), in turn: an embedded Tansu broker, a ClickHouse server of its
   own (so that the sink's memory is not the worker's: chdb would run in the worker's process), and one
   ``forewarn worker`` process (4 partitions, the packaged policy's idle horizon: nobody is evicted).
2. ``--warmup-users`` users, one page view each (the first rounds allocate what later ones reuse:
   the models, caches), then the worker's resident memory (``VmRSS`` of it and its children) once
   settled: that store's baseline, measured in the same run. The sink's duplicate window is kept at
   1,000 ids (as in the soak): its filling is the sink's memory, not the users'.
3. ``--users`` new users, one page view each (an attacker's burst of fake ids, or a day's new
   visitors), produced at once; the worker takes them through every stage: the events are through the
   per-user agent, every user's state is written to the table and its changelog, every event stored.
4. Its resident memory again once settled, after the first half of the users and after all: the
   growth per 100,000 idle users is the figure, and the second half's alone, past the store's fixed
   buffers (RocksDB's memtables and block caches fill in the first half), what each further user costs.

Besides, in-process: the serialized bytes (what the changelog and RocksDB hold; the user_state codec)
of one such idle user, and of the users of an hour of synthetic traffic
(:mod:`streams.tools.traffic.generator`) run
through every round (state, features, both models, triggers): the median user is the typical one.

``--write-docs`` puts the figures into docs/benchmarks.md between the memory markers.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
sys.path.insert(0, str(ROOT / "tests"))  # the ClickHouse server the tests start, without Docker

from harness import metric, worker_env  # noqa: E402

from benchmarks.readme import publish  # noqa: E402
from benchmarks.soak import usage  # noqa: E402
from models.learners import PartitionModels  # noqa: E402
from streams.contracts.events import SOURCES, InvalidEvent, parse_event  # noqa: E402
from streams.domain.policy import load_policy  # noqa: E402
from streams.domain.rounds import run_round  # noqa: E402
from streams.domain.state import UserState  # noqa: E402
from streams.tools.broker import start_broker  # noqa: E402
from streams.tools.clickhouse_server import start_clickhouse_server  # noqa: E402
from streams.tools.traffic.generator import TrafficGenerator  # noqa: E402
from streams.tools.traffic.profile import TrafficProfile  # noqa: E402
from streams.tools.worker_launcher import WorkerProcess  # noqa: E402

MARKERS = ("<!-- memory:start -->", "<!-- memory:end -->")
PER = 100_000  # users the figures are given per
MB = 1024 * 1024
SETTLE_SECONDS = 10.0  # after the worker is ready, and after the last user is stored


@dataclass(frozen=True)
class StoreRun:
    store: str
    users: int
    rss_before_mb: float
    rss_half_mb: float  # with the first half of the users
    rss_after_mb: float
    seconds: float  # from the first user produced to the last one stored

    @property
    def mb_per_100k(self) -> float:
        return (self.rss_after_mb - self.rss_before_mb) * PER / self.users

    @property
    def bytes_per_user(self) -> float:
        return (self.rss_after_mb - self.rss_before_mb) * MB / self.users

    @property
    def second_half_mb_per_100k(self) -> float:
        """The growth over the second half: past the store's fixed buffers (RocksDB's memtables and
        cache fill in the first), what each further user costs."""
        return (self.rss_after_mb - self.rss_half_mb) * PER / (self.users - self.users // 2)


def page_view(user: str, at_ms: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"{user}-1",
            "event_type": "page_view",
            "event_time": at_ms,
            "user_id": user,
            "session_id": f"{user}-s",
            "page": "/home",
        }
    )


async def produce_users(bootstrap: str, first: int, users: int) -> None:
    """Users ``idle-<first>`` onwards, one page view each."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        now = int(time.time() * 1000)
        pending = [
            await producer.send("clickstream", key=f"idle-{n}".encode(), value=page_view(f"idle-{n}", now))
            for n in range(first, first + users)
        ]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def settled_rss_mb(pid: int, seconds: float = SETTLE_SECONDS) -> float:
    """The resident memory after ``seconds`` of quiet: the lowest of samples over the last few."""
    time.sleep(seconds)
    samples = []
    for _ in range(5):
        samples.append(usage(pid).rss_mb)
        time.sleep(1.0)
    return min(samples)


def wait_until_through(worker: WorkerProcess, users: int, deadline: float) -> None:
    """Until ``users`` events are through the per-user agent, their users' state written to the
    changelog and the events stored in ClickHouse."""
    while True:
        text = worker.metrics()
        tracked = metric(text, "forewarn_event_processing_seconds_count")
        written = metric(text, "forewarn_state_writes_total")
        stored = metric(text, "forewarn_sink_rows_total", table="events")
        if min(tracked, written, stored) >= users:
            return
        if time.monotonic() > deadline:
            counts = f"{tracked:.0f} tracked, {written:.0f} written, {stored:.0f} stored"
            raise TimeoutError(f"of {users} events: {counts}")
        time.sleep(1.0)


def run_store(store: str, users: int, warmup: int, workdir: Path, timeout: float) -> StoreRun:
    """One store's baseline and growth, with a broker and a ClickHouse server of its own."""
    workdir.mkdir(parents=True)
    broker = start_broker(log_path=workdir / "broker.log")
    clickhouse = start_clickhouse_server(workdir / "clickhouse")
    worker = None
    try:
        # The sink's duplicate window (ids remembered per partition) kept small, as in the soak: its
        # filling is the sink's memory, not the users'.
        env = worker_env(
            broker.bootstrap,
            workdir,
            clickhouse.url,
            policy="",
            FOREWARN_STORE=store,
            FOREWARN_SINK_DEDUP_WINDOW="1000",
        )
        worker = WorkerProcess(env, workdir / "worker.log").start()
        assert worker.pid is not None
        # Warm-up users first: the first rounds allocate what every later one reuses (models, caches).
        asyncio.run(produce_users(broker.bootstrap, 0, warmup))
        wait_until_through(worker, warmup, time.monotonic() + timeout)
        before = settled_rss_mb(worker.pid)
        started = time.monotonic()
        half = users // 2
        asyncio.run(produce_users(broker.bootstrap, warmup, half))
        wait_until_through(worker, warmup + half, started + timeout)
        at_half = settled_rss_mb(worker.pid)
        asyncio.run(produce_users(broker.bootstrap, warmup + half, users - half))
        wait_until_through(worker, warmup + users, started + timeout)
        seconds = time.monotonic() - started
        after = settled_rss_mb(worker.pid)
        print(
            f"{store}: {before:.0f} MB, {at_half:.0f} MB at half, {after:.0f} MB with {users:,} users"
            f" ({seconds:.0f}s)",
            flush=True,
        )
        return StoreRun(store, users, before, at_half, after, seconds)
    finally:
        if worker is not None:
            worker.stop()
        clickhouse.stop()
        broker.stop()


def state_bytes(state: UserState) -> int:
    """What the changelog and a RocksDB store hold for the user (the user_state codec)."""
    return len(orjson.dumps(state))


def traffic_state_bytes(hours: float, seed: int) -> list[int]:
    """The serialized state of every user of ``hours`` of synthetic traffic, each message run through
    the user's round as the worker runs it (the process inputs aside)."""
    policy, models = load_policy(), PartitionModels()
    start = time.time() - hours * 3600.0
    generator = TrafficGenerator(TrafficProfile(sessions_per_second=0.5, users=300), seed=seed, start=start)
    states: dict[str, UserState] = {}
    clock = start
    while clock < start + hours * 3600.0:
        clock += 10.0
        for message in generator.due(clock):
            if message.topic not in SOURCES:
                continue
            try:
                event = parse_event(message.value, message.topic, now=clock)
            except InvalidEvent:
                continue
            state = states.setdefault(event.user_id, UserState(event.user_id))
            run_round(state, event.to_wire(), tick=False, policy=policy, models=models)
    return sorted(state_bytes(state) for state in states.values())


def idle_state_bytes() -> int:
    """The serialized state of a user seen once: one page view."""
    state = UserState("idle-1")
    value = parse_event(page_view("idle-1", int(time.time() * 1000)), "clickstream").to_wire()
    run_round(state, value, tick=False, policy=load_policy(), models=PartitionModels())
    return state_bytes(state)


def report(runs: list[StoreRun], idle_bytes: int, typical: list[int], hours: float, command: str) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    lines = [
        f"Measured {when} on {_cores()} cores, Python {platform.python_version()}, one worker, 4 partitions,"
        f" embedded Tansu broker, ClickHouse server outside the worker: `{command}`",
        "",
        "| store | users added | RSS MB: before / at half / after | MB per 100,000 idle users | bytes per"
        " user | vs. `memory://` | second half: MB per 100,000 | vs. `memory://` |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    base = next((run for run in runs if run.store == "memory://"), runs[0])
    for run in runs:
        lines.append(
            f"| `{run.store}` | {run.users:,}"
            f" | {run.rss_before_mb:.0f} / {run.rss_half_mb:.0f} / {run.rss_after_mb:.0f}"
            f" | {run.mb_per_100k:,.0f} | {run.bytes_per_user:,.0f}"
            f" | {_ratio(run.mb_per_100k, base.mb_per_100k)}"
            f" | {run.second_half_mb_per_100k:,.0f}"
            f" | {_ratio(run.second_half_mb_per_100k, base.second_half_mb_per_100k)} |"
        )
    if runs and runs[0].users != PER:
        lines += ["", f"Measured with {runs[0].users:,} users and scaled to 100,000."]
    lines += [
        "",
        f"One user's state, serialized (what the `users` changelog and RocksDB hold): {idle_bytes:,} bytes"
        f" for a user seen once (one page view); over the {len(typical)} users of {hours:g} h of synthetic"
        f" traffic run through every round, median {statistics.median(typical):,.0f} bytes (the typical"
        f" user), 90th percentile {typical[int(0.9 * (len(typical) - 1))]:,}, largest {typical[-1]:,}.",
    ]
    return "\n".join(lines)


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}" if base > 0 else ""


def _cores() -> int:
    import os

    return os.cpu_count() or 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=PER, help="idle users added per store")
    parser.add_argument("--warmup-users", type=int, default=5000, help="before the baseline")
    parser.add_argument(
        "--stores", default="memory://,rocksdb://", help="FOREWARN_STORE values, comma-separated"
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="longest wait for the users, per store")
    parser.add_argument(
        "--traffic-hours", type=float, default=1.0, help="of synthetic traffic, for the sizes"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--write-docs", action="store_true", help="put the figures into docs/benchmarks.md")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="forewarn-memory-"))
    print(f"memory: {args.users:,} idle users per store; files in {workdir}", flush=True)
    typical = traffic_state_bytes(args.traffic_hours, args.seed)
    idle_bytes = idle_state_bytes()
    runs = [
        run_store(store, args.users, args.warmup_users, workdir / store.split(":")[0], args.timeout)
        for store in args.stores.split(",")
    ]
    command = f"python benchmarks/memory.py --users {args.users}"
    publish(MARKERS, report(runs, idle_bytes, typical, args.traffic_hours, command), args.write_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
