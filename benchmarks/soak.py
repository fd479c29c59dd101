"""Soak: one worker under live traffic at a steady rate for minutes; does its lag stay bounded and its
memory flat, and is every event stored exactly once?

    python benchmarks/soak.py [--rate 300] [--minutes 10] [--sample-seconds 5] [--write-docs]

1. An embedded Tansu broker and one ``forewarn worker`` process (chdb in the worker, as by default, or
   ``--clickhouse-dsn``; the embedded settings of :data:`streams.tools.worker_launcher.EMBEDDED_BROKER_ENV`;
   every candidate intervention sent).
2. Live synthetic web and logistics traffic (:mod:`streams.tools.traffic.generator`, a few broken messages
mixed in) at
   about ``--rate`` events/s for ``--minutes``, from a bounded population of ``--users`` users, so that
   the per-user state stops growing once every user has been seen (a real shop's new users would make
   it grow, legitimately; that is sizing, not a leak). The generator runs a minute ahead unsent, so the
   traffic starts at full rate with sessions of every age in flight, as for a worker started amid live
   traffic, instead of ramping up over a session's length.
3. Every ``--sample-seconds``: the worker's resident memory (``VmRSS`` of it and its children), the
   broker's, and the worker's ``/metrics``: its consumer-lag gauges
   (``forewarn_consumer_lag_messages``, Faust's group and the sink's), events processed, the mean time
   from event time to processed, interventions, and the backlog computed from counters: events sent
   but not yet through every stage (validated, through the per-user agent, stored in ClickHouse).
4. Traffic stops; the worker must drain (backlog 0). Then it is stopped and ClickHouse is read: every
   valid event sent must be in ``events`` exactly once (none lost, no row twice), every intervention
   a consumer of the ``interventions`` topic received must be there once and have arrived once.

Verdict (thresholds are flags):

* **lag bounded**: the largest backlog of the second half is at most the first half's plus
  ``--lag-margin-seconds`` (5) of traffic. A worker below capacity has a backlog of about
  rate x (fetch wait + sink flush interval + a round), which does not grow; one above capacity grows by
  (rate - capacity) x t, so even 5 % over capacity at 300/s adds 4,500 events over a 5-minute half,
  far past the margin (1,500 at 300/s), while a stall of a few seconds stays within it.
* **memory flat**: the least-squares slope of the worker's RSS over the second half is under
  ``--max-rss-slope`` MB/min (2). The first half is warm-up, and takes minutes: users seen for the first
  time, their state filling up to its bounds (:mod:`streams.domain.state`), the models' rolling quality
  windows (5,000 examples a partition), chdb's memory (it levelled off after about 3 minutes at 200
  events/s), the allocator's high-water mark after bursts. At 200 events/s the Python side still grew
  3.6 MB/min in minutes 2.5-5 and 1.1 MB/min in minutes 5-10, hence 10 minutes by default. 2 MB/min at
  300 events/s is about 110 bytes per event: a leak that keeps anything per event (an id in a set, a
  dict entry) exceeds it, while noise over minutes stays below.

The sink remembers the last ``FOREWARN_SINK_DEDUP_WINDOW`` row ids per partition and table (100,000 by
default: bounded, but at 300 events/s over 4 partitions the events' window takes over 20 minutes to
fill, growing RSS by some 150 bytes per id until then); the soak sets it to ``--dedup-window`` (1,000)
so that this bound is reached in the warm-up and its filling is not mistaken for a leak, nor hides one.

``--write-docs`` puts the figures into docs/benchmarks.md between the soak markers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import clickhouse_connect
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from benchmarks.pipeline import events_per_session  # noqa: E402
from benchmarks.readme import publish  # noqa: E402
from streams.contracts.events import InvalidEvent, parse_event  # noqa: E402
from streams.contracts.settings import Settings  # noqa: E402
from streams.contracts.topics import ensure_topics  # noqa: E402
from streams.tools.broker import EmbeddedBroker, start_broker  # noqa: E402
from streams.tools.traffic.generator import TrafficGenerator  # noqa: E402
from streams.tools.traffic.profile import TrafficProfile  # noqa: E402
from streams.tools.traffic.schedule import Outgoing  # noqa: E402
from streams.tools.worker_launcher import EMBEDDED_BROKER_ENV, WorkerProcess, send_everything_policy  # noqa: E402

PARTITIONS = 4
DWELL_SECONDS = 5.0  # payment dwell: lingering visits last longer, so payment_assist fires all along
MARKERS = ("<!-- soak:start -->", "<!-- soak:end -->")
MB = 1024 * 1024


@dataclass(frozen=True)
class SoakConfig:
    rate: float = 300.0  # events/s
    seconds: float = 600.0  # of traffic
    sample_seconds: float = 5.0
    users: int = 2000
    dedup_window: int = 1000
    seed: int = 7
    drain_timeout: float = 120.0  # longest wait for the worker to catch up after the traffic
    # The traffic generator runs this long before the soak begins, its messages dropped, so that the
    # soak begins at full rate with sessions of every age in flight (a worker started amid live
    # traffic), rather than ramping up over a session's length as sessions start.
    preroll_seconds: float = 60.0
    malformed_share: float = 0.001
    clickhouse_dsn: str | None = None  # None: chdb in the worker's process, under the work directory


@dataclass(frozen=True)
class Thresholds:
    lag_margin_seconds: float = 5.0  # of traffic: how far the second half's backlog may exceed the first's
    rss_slope_mb_per_min: float = 2.0  # the worker's RSS over the second half


# --- what the worker says


@dataclass(frozen=True)
class Scrape:
    """The figures of one ``/metrics`` scrape this soak uses."""

    ingested: float = 0.0  # messages validated: valid events plus input rejected to dead letters
    tracked: float = 0.0  # events through the per-user agent
    stored: float = 0.0  # rows inserted into ClickHouse's events table
    interventions: float = 0.0  # emitted, all triggers
    worker_lag: float = 0.0  # forewarn_consumer_lag_messages of Faust's group, all partitions
    sink_lag: float = 0.0  # ... of the sink's group
    processing_sum: float = 0.0  # forewarn_event_processing_seconds: event time to processed
    processing_count: float = 0.0
    sink_duplicates: float = 0.0  # rows the sink dropped as already stored


def parse_scrape(text: str, app_id: str) -> Scrape:
    """The figures of :class:`Scrape` from the exposition ``text`` of a worker of app ``app_id``."""
    figures: dict[str, float] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "forewarn_events_total" or (
                name == "forewarn_dead_letters_total" and labels["reason"] != "processing_error"
            ):
                figures["ingested"] += value
            elif name == "forewarn_event_processing_seconds_count":
                figures["tracked"] += value
                figures["processing_count"] += value
            elif name == "forewarn_event_processing_seconds_sum":
                figures["processing_sum"] += value
            elif name == "forewarn_sink_rows_total" and labels["table"] == "events":
                figures["stored"] += value
            elif name == "forewarn_interventions_total":
                figures["interventions"] += value
            elif name == "forewarn_consumer_lag_messages":
                figures["worker_lag" if labels["group"] == app_id else "sink_lag"] += value
            elif name == "forewarn_sink_duplicates_total":
                figures["sink_duplicates"] += value
    return Scrape(**figures)


# --- memory


@dataclass(frozen=True)
class Usage:
    rss_mb: float  # resident memory
    cpu_seconds: float  # user + system, since the process started


def usage(pid: int) -> Usage:
    """Resident memory and CPU time of ``pid`` and all its descendants (zeros for a process gone)."""
    stats: dict[int, list[str]] = {}  # pid -> the fields of /proc/<pid>/stat after "pid (comm)"
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stats[int(entry)] = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
    children: dict[int, list[int]] = {}
    for child, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(child)  # fields: state, ppid, ...
    rss_kb, ticks, todo = 0, 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, ()))
        if current in stats:
            ticks += int(stats[current][11]) + int(stats[current][12])  # utime, stime
            rss_kb += _vm_rss_kb(current)
    return Usage(rss_kb / 1024, ticks / os.sysconf("SC_CLK_TCK"))


def _vm_rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# --- the run


@dataclass(frozen=True)
class Sample:
    seconds: float  # since the traffic began
    sent: int  # messages produced so far
    valid_sent: int  # ... of which valid events
    users: int  # distinct users the traffic has had so far
    worker_rss_mb: float
    broker_rss_mb: float
    worker_cpu_seconds: float
    broker_cpu_seconds: float
    scrape: Scrape

    @property
    def backlog(self) -> int:
        """Events sent and not yet through every stage (validated, per-user agent, ClickHouse)."""
        s = self.scrape
        return int(max(self.sent - s.ingested, self.valid_sent - s.tracked, self.valid_sent - s.stored, 0))


@dataclass
class SoakResult:
    config: SoakConfig
    samples: list[Sample] = field(default_factory=list)  # during the traffic and the drain
    sent: int = 0
    valid_ids: set[str] = field(default_factory=set)
    interventions_seen: Counter[str] = field(default_factory=Counter)  # id -> times on the topic
    traffic_seconds: float = 0.0  # as it ran
    drain_seconds: float | None = None  # from the end of the traffic until the backlog was 0
    stored_ids: Counter[str] = field(default_factory=Counter)  # event_id -> rows in ClickHouse
    interventions_stored: Counter[str] = field(default_factory=Counter)  # id -> rows in ClickHouse

    @property
    def lost(self) -> int:
        """Valid events sent that are not in ClickHouse."""
        return len(self.valid_ids - self.stored_ids.keys())

    @property
    def duplicate_rows(self) -> int:
        """Rows beyond the first of an event, plus interventions stored twice. For events also by the
        sink's own count of rows inserted, in case a background merge collapsed a repeat before the read."""
        inserted = int(self.samples[-1].scrape.stored) if self.samples else 0
        events = max(_repeats(self.stored_ids), inserted - len(self.stored_ids))
        return events + _repeats(self.interventions_stored)

    @property
    def duplicate_interventions(self) -> int:
        """Interventions delivered on the topic more than once (same id)."""
        return _repeats(self.interventions_seen)

    @property
    def interventions_not_stored(self) -> int:
        """Interventions a consumer of the topic received that are not in ClickHouse."""
        return len(self.interventions_seen.keys() - self.interventions_stored.keys())

    @property
    def interventions_emitted(self) -> int:
        return int(self.samples[-1].scrape.interventions) if self.samples else 0

    def during_traffic(self) -> list[Sample]:
        return [s for s in self.samples if s.seconds <= self.traffic_seconds + 1e-6]


def _repeats(counts: Counter[str]) -> int:
    """Occurrences beyond the first of every key."""
    return sum(count - 1 for count in counts.values() if count > 1)


def soak_profile(config: SoakConfig) -> TrafficProfile:
    """Web and logistics traffic of ``config.users`` users at about ``config.rate`` events/s, in which
    payments linger past the dwell and shipments move every few seconds, so interventions are due all
    along (as in ``benchmarks/pipeline.py``'s latency phase)."""
    profile = TrafficProfile(
        users=config.users,
        shipment_step_seconds=(0.5, 2.0),
        linger_seconds=(DWELL_SECONDS + 1.0, DWELL_SECONDS + 6.0),
        pay_seconds=(0.5, DWELL_SECONDS - 1.0),
        malformed_share=config.malformed_share,
    )
    profile.sessions_per_second = config.rate / events_per_session(profile, config.seed)
    return profile


def worker_settings(bootstrap: str, workdir: Path, config: SoakConfig) -> dict[str, str]:
    """The worker's environment: embedded broker, chdb under ``workdir``, every candidate sent."""
    policy_file = workdir / "policy.toml"
    policy_file.write_text(send_everything_policy(f"{DWELL_SECONDS:g}s"))
    return {
        "FOREWARN_BROKER_URL": f"kafka://{bootstrap}",
        "FOREWARN_CLICKHOUSE_DSN": config.clickhouse_dsn or f"chdb://{workdir / 'clickhouse'}",
        "FOREWARN_DATA_DIR": str(workdir / "worker"),
        "FOREWARN_PSEUDONYM_KEY_FILE": str(workdir / "pseudonym.key"),
        "FOREWARN_CLUSTER_SECRET_FILE": str(workdir / "cluster.key"),
        "FOREWARN_PARTITIONS": str(PARTITIONS),
        "FOREWARN_POLICY_FILE": str(policy_file),
        "FOREWARN_SWEEP_INTERVAL_SECONDS": "0.5",
        "FOREWARN_SINK_DEDUP_WINDOW": str(config.dedup_window),
        **EMBEDDED_BROKER_ENV,
    }


def valid_event_id(message: Outgoing) -> str | None:
    """The event id of a message the worker accepts, None for a broken one (it is dead-lettered)."""
    try:
        return parse_event(message.value, message.topic).event_id
    except InvalidEvent:
        return None


def run_soak(config: SoakConfig, broker: EmbeddedBroker, workdir: Path, quiet: bool = False) -> SoakResult:
    """Start a worker on ``broker`` (files under ``workdir``), run the traffic, let it drain, stop it
    and read ClickHouse. Prints the table over time as it is sampled, unless ``quiet``."""
    env = worker_settings(broker.bootstrap, workdir, config)
    settings = Settings.from_env(env)
    result = SoakResult(config)
    worker = WorkerProcess(env, workdir / "worker.log")
    try:
        asyncio.run(ensure_topics(settings))
        worker.start(timeout=120)
        assert worker.pid is not None and broker.process.pid is not None
        asyncio.run(_stream(config, settings, broker, worker, result, quiet))
    finally:
        worker.stop()
    client = clickhouse_connect.get_client(dsn=env["FOREWARN_CLICKHOUSE_DSN"])
    try:
        # Rows as inserted (no FINAL): a row stored twice counts until a merge would collapse it.
        result.stored_ids = _id_counts(client, "SELECT event_id, count() FROM events GROUP BY 1")
        result.interventions_stored = _id_counts(
            client, "SELECT toString(intervention_id), count() FROM interventions GROUP BY 1"
        )
    finally:
        client.close()
    return result


def _id_counts(client: Any, sql: str) -> Counter[str]:
    return Counter({str(key): int(count) for key, count in client.query(sql).result_rows})


async def _stream(
    config: SoakConfig,
    settings: Settings,
    broker: EmbeddedBroker,
    worker: WorkerProcess,
    result: SoakResult,
    quiet: bool,
) -> None:
    profile = soak_profile(config)
    generator = TrafficGenerator(profile, seed=config.seed + 1, start=time.time() - config.preroll_seconds)
    topics = settings.source_topics
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
    consumer = AIOKafkaConsumer(
        settings.topic_interventions,
        bootstrap_servers=broker.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await producer.start()
    await consumer.start()
    stop_receiving = asyncio.Event()

    async def receive() -> None:
        while not stop_receiving.is_set():
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                for message in batch:
                    result.interventions_seen[orjson.loads(message.value)["intervention_id"]] += 1

    receiver = asyncio.create_task(receive())
    wall_start = time.time()
    generator.due(wall_start)  # the pre-roll: not sent
    started = time.monotonic()

    async def sample() -> Sample:
        text = await asyncio.to_thread(worker.metrics)
        worker_usage, broker_usage = usage(worker.pid or 0), usage(broker.process.pid)
        taken = Sample(
            seconds=time.monotonic() - started,
            sent=result.sent,
            valid_sent=len(result.valid_ids),
            users=len(generator.seen_users()),
            worker_rss_mb=worker_usage.rss_mb,
            broker_rss_mb=broker_usage.rss_mb,
            worker_cpu_seconds=worker_usage.cpu_seconds,
            broker_cpu_seconds=broker_usage.cpu_seconds,
            scrape=parse_scrape(text, settings.app_id),
        )
        result.samples.append(taken)
        if not quiet:
            print(format_row(result.samples[-2] if len(result.samples) > 1 else None, taken), flush=True)
        return taken

    try:
        if not quiet:
            print(TABLE_HEADER, flush=True)
        await sample()  # before any traffic: the worker's RSS once ready
        next_sample = started + config.sample_seconds
        while (elapsed := time.monotonic() - started) < config.seconds:
            for message in generator.due(wall_start + elapsed):
                event_id = valid_event_id(message)
                if event_id is not None:
                    result.valid_ids.add(event_id)
                await producer.send(topics[message.topic], value=message.value, key=message.key)
                result.sent += 1
            if time.monotonic() >= next_sample:
                await producer.flush()
                await sample()
                next_sample += config.sample_seconds
            await asyncio.sleep(0.01)
        await producer.flush()
        result.traffic_seconds = time.monotonic() - started
        # Drain: sample until the backlog is 0 (the lag gauges follow within their 5 s update).
        deadline = time.monotonic() + config.drain_timeout
        while True:
            last = await sample()
            if last.backlog == 0 and last.scrape.ingested >= result.sent:
                result.drain_seconds = last.seconds - result.traffic_seconds
                break
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(min(1.0, config.sample_seconds))
        # What was emitted by now reaches the consumer; then a little longer, for any repeat. (Payment
        # dwells of visits begun near the end fall due up to a linger later: those emitted after this
        # are stored, and not all of them received here.)
        emitted = result.samples[-1].scrape.interventions
        deadline = time.monotonic() + 30.0
        while len(result.interventions_seen) < emitted and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)
        await sample()
    finally:
        stop_receiving.set()
        await receiver
        await consumer.stop()
        await producer.stop()


# --- verdict


@dataclass(frozen=True)
class Verdict:
    first_half_max_backlog: int
    second_half_max_backlog: int
    lag_margin: int  # events: the margin in seconds of traffic times the rate
    lag_bounded: bool
    drained: bool
    rss_warm_mb: float  # the worker's RSS at the start of the second half
    rss_end_mb: float  # ... at the end of the traffic
    rss_slope_mb_per_min: float  # over the second half
    memory_flat: bool
    events_lost: int  # valid events sent and not stored
    interventions_lost: int  # received on the topic and not stored
    duplicates_downstream: int

    @property
    def passed(self) -> bool:
        return (
            self.lag_bounded
            and self.drained
            and self.memory_flat
            and self.events_lost == 0
            and self.interventions_lost == 0
            and self.duplicates_downstream == 0
        )


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute.

    >>> slope_per_minute([(0, 100.0), (30, 101.0), (60, 102.0)])
    2.0
    """
    if len(points) < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return 0.0
    return 60.0 * sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def judge(result: SoakResult, thresholds: Thresholds, warmup_seconds: float | None = None) -> Verdict:
    """The verdict on ``result``: the first ``warmup_seconds`` of traffic (half of it by default) are
    the first half, the rest the second."""
    traffic = [s for s in result.during_traffic() if s.seconds > 0]  # not the sample before it
    split = result.traffic_seconds / 2 if warmup_seconds is None else warmup_seconds
    first = [s for s in traffic if s.seconds < split]
    second = [s for s in traffic if s.seconds >= split]
    first_max = max((s.backlog for s in first), default=0)
    second_max = max((s.backlog for s in second), default=0)
    margin = int(thresholds.lag_margin_seconds * result.config.rate)
    slope = slope_per_minute([(s.seconds, s.worker_rss_mb) for s in second])
    duplicates = result.duplicate_rows + result.duplicate_interventions
    return Verdict(
        first_half_max_backlog=first_max,
        second_half_max_backlog=second_max,
        lag_margin=margin,
        lag_bounded=bool(second) and second_max <= first_max + margin,
        drained=result.drain_seconds is not None,
        rss_warm_mb=second[0].worker_rss_mb if second else 0.0,
        rss_end_mb=second[-1].worker_rss_mb if second else 0.0,
        rss_slope_mb_per_min=slope,
        memory_flat=bool(second) and slope < thresholds.rss_slope_mb_per_min,
        events_lost=result.lost,
        interventions_lost=result.interventions_not_stored,
        duplicates_downstream=duplicates,
    )


# --- report

TABLE_HEADER = (
    "| s | sent | processed/s | backlog | lag: worker / sink | event to processed, mean ms"
    " | interventions | users in the traffic | worker RSS MB | broker RSS MB | CPU %: worker / broker |\n"
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def format_row(previous: Sample | None, sample: Sample) -> str:
    """One row of the table over time; rates and the mean latency are over the interval since
    ``previous``."""
    s = sample.scrape
    if previous is None or sample.seconds <= previous.seconds:
        rate = latency = cpu = ""
    else:
        p, interval = previous.scrape, sample.seconds - previous.seconds
        rate = f"{(s.tracked - p.tracked) / interval:,.0f}"
        count = s.processing_count - p.processing_count
        latency = f"{1000 * (s.processing_sum - p.processing_sum) / count:,.0f}" if count else ""
        worker_cpu = 100 * (sample.worker_cpu_seconds - previous.worker_cpu_seconds) / interval
        broker_cpu = 100 * (sample.broker_cpu_seconds - previous.broker_cpu_seconds) / interval
        cpu = f"{worker_cpu:.0f} / {broker_cpu:.0f}"
    return (
        f"| {sample.seconds:.0f} | {sample.sent} | {rate} | {sample.backlog} | {s.worker_lag:.0f} /"
        f" {s.sink_lag:.0f} | {latency} | {s.interventions:.0f} | {sample.users}"
        f" | {sample.worker_rss_mb:.1f} | {sample.broker_rss_mb:.1f} | {cpu} |"
    )


def table(samples: list[Sample], rows: int | None = None) -> list[str]:
    """The table over time, every sample or about ``rows`` of them (evenly spaced, last included)."""
    step = 1 if rows is None or len(samples) <= rows else -(-len(samples) // rows)
    picked = samples[::step]
    if picked[-1] is not samples[-1]:
        picked.append(samples[-1])
    lines = TABLE_HEADER.split("\n")
    for i, sample in enumerate(picked):
        lines.append(format_row(picked[i - 1] if i else None, sample))
    return lines


def report(result: SoakResult, verdict: Verdict, thresholds: Thresholds, command: str) -> str:
    config = result.config
    traffic = result.during_traffic()
    valid = len(result.valid_ids)
    duration = result.traffic_seconds
    emitted = result.interventions_emitted
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {os.cpu_count()} cores, Python"
        f" {platform.python_version()}, one worker, {PARTITIONS} partitions, embedded Tansu broker and"
        f" chdb: `{command}`",
        "",
        f"{result.sent} messages in {duration:.0f}s ({result.sent / duration:,.0f}/s, {config.users} users,"
        f" {result.sent - valid} of them broken and dead-lettered); RSS and lag every"
        f" {config.sample_seconds:g}s ({len(traffic)} samples, {len(result.samples) - len(traffic)} more"
        " while draining):",
        "",
        *table(traffic, rows=13),
        "",
        "| events pushed | faults injected | events lost | duplicates downstream |",
        "| ---: | ---: | ---: | ---: |",
        f"| {valid} | 0 | {verdict.events_lost} | {verdict.duplicates_downstream} |",
        "",
        f"* **Lag bounded: {'yes' if verdict.lag_bounded else 'NO'}.** Largest backlog (events sent, not"
        f" yet validated, through the per-user agent and stored) {verdict.first_half_max_backlog} in the"
        f" first half, {verdict.second_half_max_backlog} in the second (allowed: the first's plus"
        f" {thresholds.lag_margin_seconds:g}s of traffic, {verdict.lag_margin}).",
        f"* **Drained: {'yes' if verdict.drained else 'NO'}**"
        + (
            f", backlog 0 {result.drain_seconds:.1f}s after the traffic stopped."
            if result.drain_seconds is not None
            else f", not within {config.drain_timeout:g}s."
        ),
        f"* **Memory flat: {'yes' if verdict.memory_flat else 'NO'}.** Worker RSS"
        f" {result.samples[0].worker_rss_mb:.0f} MB when ready, {verdict.rss_warm_mb:.0f} MB at half"
        f" time, {verdict.rss_end_mb:.0f} MB at the end: {verdict.rss_slope_mb_per_min:+.2f} MB/min over"
        f" the second half (allowed: under {thresholds.rss_slope_mb_per_min:g};"
        f" {_bytes_per_event(verdict.rss_slope_mb_per_min, config.rate):+,.0f} bytes per event)."
        f" Sink id window {config.dedup_window} per partition.",
        f"* Stored once: {valid - verdict.events_lost} of {valid} valid events in ClickHouse, rows"
        f" stored twice {result.duplicate_rows}; interventions emitted {emitted}, received"
        f" {len(result.interventions_seen)} distinct ids, {result.duplicate_interventions} delivered twice,"
        f" {len(result.interventions_stored)} stored ({result.interventions_not_stored} received and not"
        " stored).",
    ]
    return "\n".join(lines)


def _bytes_per_event(mb_per_min: float, rate: float) -> float:
    return mb_per_min * MB / 60.0 / rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults, limits = SoakConfig(), Thresholds()
    parser.add_argument("--rate", type=float, default=defaults.rate, help="events/s of live traffic")
    parser.add_argument("--minutes", type=float, default=defaults.seconds / 60, help="of traffic")
    parser.add_argument("--sample-seconds", type=float, default=defaults.sample_seconds)
    parser.add_argument("--users", type=int, default=defaults.users, help="the traffic's user population")
    parser.add_argument(
        "--dedup-window", type=int, default=defaults.dedup_window, help="FOREWARN_SINK_DEDUP_WINDOW"
    )
    parser.add_argument("--drain-timeout", type=float, default=defaults.drain_timeout)
    parser.add_argument(
        "--clickhouse-dsn",
        help="a ClickHouse server for the sink (its tables must be empty), to measure the worker's RSS"
        " without chdb's; default: chdb in the worker",
    )
    parser.add_argument("--lag-margin-seconds", type=float, default=limits.lag_margin_seconds)
    parser.add_argument("--max-rss-slope", type=float, default=limits.rss_slope_mb_per_min, help="MB/min")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--write-docs", action="store_true", help="put the figures into docs/benchmarks.md")
    args = parser.parse_args()
    config = SoakConfig(
        rate=args.rate,
        seconds=args.minutes * 60,
        sample_seconds=args.sample_seconds,
        users=args.users,
        dedup_window=args.dedup_window,
        seed=args.seed,
        drain_timeout=args.drain_timeout,
        clickhouse_dsn=args.clickhouse_dsn,
    )
    thresholds = Thresholds(args.lag_margin_seconds, args.max_rss_slope)
    workdir = Path(tempfile.mkdtemp(prefix="forewarn-soak-"))
    print(
        f"soak: {config.rate:g} events/s for {config.seconds:g}s, {config.users} users, samples every"
        f" {config.sample_seconds:g}s; files in {workdir}",
        flush=True,
    )
    broker = start_broker(log_path=workdir / "broker.log")
    try:
        result = run_soak(config, broker, workdir)
    finally:
        broker.stop()
    verdict = judge(result, thresholds)
    command = (
        f"python benchmarks/soak.py --rate {config.rate:g} --minutes {args.minutes:g}"
        f" --sample-seconds {config.sample_seconds:g}"
    )
    text = report(result, verdict, thresholds, command)
    publish(MARKERS, text, args.write_docs)
    print(f"\nverdict: {'PASS' if verdict.passed else 'FAIL'}")
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    sys.exit(main())
