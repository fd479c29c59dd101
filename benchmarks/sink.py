"""ClickHouse sink throughput into chdb, against a plain clickhouse-connect insert measured in the same run.

    python benchmarks/sink.py [--events 200000] [--batch-rows 20000] [--envelope-events 100]
                              [--repeat 3] [--write-docs]

In process, without a broker, both into one embedded ClickHouse (chdb) in a temporary directory:

1. Input: ``--events`` valid events of synthetic traffic (:mod:`streams.tools.traffic.generator`, as ingest
re-keys
   them: the orjson bytes of ``Event.to_wire()``), and one intervention and one decision per ten
   events (the contract classes' ``to_wire``, as track_users emits them): the bytes the sink reads
   from Kafka, as aiokafka ``ConsumerRecord``s spread over four partitions. The same events again as
   envelopes of ``--envelope-events`` events each (:func:`streams.contracts.envelopes.pack`, as ingest sends
   them to ``forewarn-events``).
2. Baseline (a): clickhouse-connect inserting the events table's rows, already built and already
   pseudonymised, as columns (``column_oriented``), in batches of ``--batch-rows``: what any writer
   into chdb pays at least.
3. Sink (b): :class:`sinks.consumer.ClickHouseSink` doing its own work on those records, table by
   table, in fetches of at most ``--batch-rows`` records: decode, row conversion (:mod:`sinks.rows`),
   pseudonym (:mod:`streams.contracts.privacy`), the erased-user check, de-duplication ids, batching, the
   insert through :class:`sinks.clickhouse.ClickHouseStore` with its deduplication token, and the offsets'
   bookkeeping. Only the Kafka commit is a stub (it costs a round trip per batch, not per row).
   The events are measured twice in the same run: one message per event, and in envelopes (rows/s
   counts events, i.e. rows, in both; a fetch takes ``--batch-rows`` rows' worth of messages).

Each figure is the best of ``--repeat`` runs, each into emptied tables (and with new offsets, so no
deduplication token repeats); CPU seconds (all threads: Python, and ClickHouse's own) are given per row
too, a figure less sensitive than wall time to whatever else runs on the machine.
Rows/s for (a) and (b), and the ratio b/a, are printed; the target for the events table is 100,000
rows/s. ``--profile`` writes a py-spy profile of the sink's events runs (py-spy must be installed).
``--write-docs`` puts the table into docs/benchmarks.md between the sink-benchmark markers.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from benchmarks.readme import BENCHMARKS, publish  # noqa: E402
from sinks.clickhouse import ClickHouseStore  # noqa: E402
from sinks.consumer import ClickHouseSink  # noqa: E402
from sinks.rows import DECISIONS, EVENTS, INTERVENTIONS, TableSpec  # noqa: E402
from streams.contracts.envelopes import pack  # noqa: E402
from streams.contracts.events import Event, InvalidEvent, parse_event  # noqa: E402
from streams.contracts.interventions import DELAY_NOTICE, PAYMENT_ASSIST, Intervention, intervention_id  # noqa: E402
from streams.contracts.privacy import Pseudonymizer, pseudonymize_row  # noqa: E402
from streams.domain.contact import EMITTED, Decision  # noqa: E402
from streams.tools.traffic.generator import TrafficGenerator  # noqa: E402
from streams.tools.traffic.profile import TrafficProfile  # noqa: E402

MARKERS = ("<!-- sink-benchmark:start -->", "<!-- sink-benchmark:end -->")
PARTITIONS = 4
TARGET_ROWS_PER_SECOND = 100_000  # the sink's target (docs/benchmarks.md "Performance"), events table
KEY = b"the sink benchmark's pseudonym key"


# --- input


def event_values(count: int, seed: int) -> list[bytes]:
    """``count`` valid events of synthetic traffic from the last hour, as the sink reads them."""
    start = time.time() - 3600.0
    generator = TrafficGenerator(TrafficProfile(sessions_per_second=100.0, malformed_share=0.0), seed, start)
    values: list[bytes] = []
    clock = start
    while len(values) < count:
        clock += 10.0
        for message in generator.due(clock):
            if message.topic not in ("clickstream", "logistics"):
                continue
            try:
                event = parse_event(message.value, message.topic)
            except InvalidEvent:
                continue
            values.append(orjson.dumps(event.to_wire()))
    return values[:count]


def intervention_values(events: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """An intervention and its decision for every tenth event, as track_users emits them."""
    interventions, decisions = [], []
    for index, value in enumerate(events[::10]):
        event = orjson.loads(value)
        trigger = (PAYMENT_ASSIST, DELAY_NOTICE)[index % 2]
        at = event["event_time"] / 1000
        intervention = Intervention(
            intervention_id(trigger, event["user_id"], event["event_id"]),
            trigger,
            "offer_help" if trigger == PAYMENT_ASSIST else "notify_delay",
            event["user_id"],
            at,
            "lingered on the payment page" if trigger == PAYMENT_ASSIST else "shipment late",
            event["event_id"],
            {"dwell_seconds": 42.5, "page": "/checkout/payment", "order_id": f"o-{index}"},
            template=f"{trigger}_v1",
            channel="chat",
            experiment="q4",
            arm="treatment",
        )
        interventions.append(orjson.dumps(intervention.to_wire(decided_at=at + 0.2)))
        decision = Decision(intervention, EMITTED, priority=50)
        decisions.append(orjson.dumps(decision.to_wire(decided_at=at + 0.2)))
    return interventions, decisions


def envelope_values(events: list[bytes], per_envelope: int) -> list[bytes]:
    """``events`` in envelopes of ``per_envelope`` events, as ingest packs them."""
    decoded = [Event.from_wire(orjson.loads(value)) for value in events]
    return [value for _, value in pack(decoded, max_events=per_envelope)]


def records(topic: str, values: list[bytes], base_offset: int) -> dict[TopicPartition, list[ConsumerRecord]]:
    """``values`` as aiokafka records, round-robin over the partitions, offsets from ``base_offset``."""
    found: dict[TopicPartition, list[ConsumerRecord]] = {}
    for index, value in enumerate(values):
        partition = index % PARTITIONS
        batch = found.setdefault(TopicPartition(topic, partition), [])
        offset = base_offset + len(batch)
        found[TopicPartition(topic, partition)].append(
            ConsumerRecord(topic, partition, offset, 0, 0, b"k", value, None, len(b"k"), len(value), [])
        )
    return found


def fetches(by_partition: dict[TopicPartition, list[ConsumerRecord]], size: int) -> list[tuple[Any, list]]:
    """The records as getmany would return them: at most ``size`` per fetch, a slice per partition."""
    share = max(1, size // len(by_partition))
    result = []
    position = dict.fromkeys(by_partition, 0)
    while any(position[tp] < len(batch) for tp, batch in by_partition.items()):
        for tp, batch in by_partition.items():
            if position[tp] < len(batch):
                result.append((tp, batch[position[tp] : position[tp] + share]))
                position[tp] += share
    return result


def empty(store: ClickHouseStore) -> None:
    """Every table emptied before a run: each run inserts into the same empty database, and merges of
    an earlier run's parts (background threads of this process) do not run during the next one."""
    for table, engine in store.tables().items():
        if engine.endswith("MergeTree") and table != "schema_migrations":
            store.client.command(f"TRUNCATE TABLE {table}")


def settle() -> None:
    """Collect, then freeze what lives now (the input, built in advance), so that the garbage
    collector's passes during the run scan what the run itself allocates, as in a worker, and not the
    whole input at once."""
    gc.collect()
    gc.freeze()


# --- (a) the baseline


def baseline(store: ClickHouseStore, rows: list[tuple[Any, ...]], batch_rows: int) -> tuple[float, float]:
    """Wall and CPU seconds clickhouse-connect takes to insert ``rows`` (built, as columns) in batches."""
    batches = [list(zip(*rows[i : i + batch_rows], strict=True)) for i in range(0, len(rows), batch_rows)]
    columns = list(EVENTS.columns)
    empty(store)
    settle()
    started, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        store.client.insert("events", batch, column_names=columns, column_oriented=True)
    return time.perf_counter() - started, time.process_time() - cpu


# --- (b) the sink


class StubConsumer:
    """What the sink asks of its consumer while storing: its assignment, a commit (a no-op), and, should
    an insert take over a second, polls with its partitions paused (nothing to fetch)."""

    def __init__(self, partitions: list[TopicPartition]) -> None:
        self.partitions = set(partitions)
        self.paused_partitions: set[TopicPartition] = set()
        self.commits = 0

    def assignment(self) -> set[TopicPartition]:
        return self.partitions

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits += 1

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused_partitions.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused_partitions.difference_update(partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_partitions)

    async def getmany(self, timeout_ms: int = 0, **_: Any) -> dict[TopicPartition, list]:
        await asyncio.sleep(timeout_ms / 1000)
        return {}


def new_sink(store: ClickHouseStore, specs: dict[str, TableSpec], batch_rows: int) -> ClickHouseSink:
    sink = ClickHouseSink(
        store,
        specs,
        bootstrap_servers=["unused:9092"],
        group_id="benchmark-sink",
        dead_letter_topic="dead_letters",
        pseudonymize=Pseudonymizer(KEY),
        batch_rows=batch_rows,
        flush_seconds=3600.0,  # batches close by size, as under load
    )
    partitions = [TopicPartition(topic, p) for topic in specs for p in range(PARTITIONS)]
    sink.consumer = StubConsumer(partitions)  # type: ignore[assignment]
    return sink


def interleaved(*streams: list[tuple[Any, list]]) -> list[tuple[Any, list]]:
    """The fetches of several topics merged as a consumer of all of them gets them: each stream's in
    order, spread evenly over the whole."""
    keyed = [
        ((index + 0.5) / len(stream), n, fetch)
        for n, stream in enumerate(streams)
        for index, fetch in enumerate(stream)
    ]
    return [fetch for *_, fetch in sorted(keyed, key=lambda item: item[:2])]


async def through_sink(sink: ClickHouseSink, batches: list[tuple[Any, list]]) -> tuple[float, float]:
    """Wall and CPU seconds the sink takes to store ``batches`` (taken, batched, inserted, offsets
    bookkept)."""
    settle()
    started, cpu = time.perf_counter(), time.process_time()
    for tp, messages in batches:  # as the run loop does with what getmany returns
        await sink._take(tp, messages)
        await sink._store_if_due()
    await sink.flush()
    return time.perf_counter() - started, time.process_time() - cpu


@dataclass
class Figure:
    what: str
    rows: int
    seconds: float  # wall, the best of the runs
    cpu_seconds: float  # CPU of that run, all threads: less sensitive than wall to other load

    @property
    def rate(self) -> float:
        return self.rows / self.seconds

    @property
    def cpu_micros(self) -> float:
        return self.cpu_seconds / self.rows * 1e6


def best(what: str, rows: int, runs: int, measure: Callable[[int], tuple[float, float]]) -> Figure:
    wall, cpu = min(measure(run) for run in range(runs))
    return Figure(what, rows, wall, cpu)


def run(args: argparse.Namespace) -> tuple[list[Figure], Figure]:
    print(f"building {args.events} events, their interventions and decisions ...", flush=True)
    events = event_values(args.events, args.seed)
    interventions, decisions = intervention_values(events)
    envelopes = envelope_values(events, args.envelope_events)
    # topic, spec, messages, the rows they hold, the figure's name
    tables = [
        ("forewarn-events", EVENTS, events, len(events), "events"),
        ("forewarn-events", EVENTS, envelopes, len(events), f"events, envelopes of {args.envelope_events}"),
        ("interventions", INTERVENTIONS, interventions, len(interventions), "interventions"),
        ("decisions", DECISIONS, decisions, len(decisions), "decisions"),
    ]
    # The three together into one sink, as a worker's sink gets them: each batch inserts into three
    # tables, and each insert costs ClickHouse about as much again whatever its rows (new parts, views).
    mix = [(topic, spec, values, rows) for topic, spec, values, rows, _ in tables[1:]]
    mix_rows = sum(rows for *_, rows in mix)
    pseudonymize = Pseudonymizer(KEY)
    with tempfile.TemporaryDirectory(prefix="forewarn-sink-benchmark-") as directory:
        store = ClickHouseStore(f"chdb://{Path(directory) / 'clickhouse'}")
        store.apply_schema()
        built = [
            pseudonymize_row(EVENTS.to_row(v, [], i % PARTITIONS, i), 4, pseudonymize)
            for i, v in enumerate(events)
        ]

        print("(a) clickhouse-connect, built columns into chdb ...", flush=True)
        base = best(
            "(a) clickhouse-connect insert, built columns",
            len(built),
            args.repeat,
            lambda _: baseline(store, built, args.batch_rows),
        )
        print(f"  {base.rate:,.0f} rows/s", flush=True)

        def measure(
            attempt: int, parts: list[tuple[str, TableSpec, list[bytes], int]]
        ) -> tuple[float, float]:
            """One run of the sink over ``parts`` (topic, spec, messages, rows), in fetches of at most
            ``--batch-rows`` rows' worth of messages (as Batcher.room sizes them), each topic's share of
            a fetch its share of the rows."""
            total = sum(rows for *_, rows in parts)
            streams = [
                fetches(
                    records(topic, values, base_offset=(attempt + 1) * 10_000_000),
                    max(1, args.batch_rows * len(values) // total),
                )
                for topic, _, values, _ in parts
            ]
            sink = new_sink(store, {topic: spec for topic, spec, *_ in parts}, args.batch_rows)
            empty(store)
            return asyncio.run(through_sink(sink, interleaved(*streams)))

        figures = []
        for topic, spec, values, rows, name in tables:
            print(f"(b) the sink, {name} ...", flush=True)
            figure = best(
                f"(b) sink: {name}",
                rows,
                args.repeat,
                lambda attempt, part=(topic, spec, values, rows): measure(attempt, [part]),
            )
            print(f"  {figure.rate:,.0f} rows/s", flush=True)
            figures.append(figure)
        print("(b) the sink, events in envelopes, interventions and decisions together ...", flush=True)
        figure = best(
            "(b) sink: events in envelopes + interventions + decisions",
            mix_rows,
            args.repeat,
            lambda attempt: measure(attempt, mix),
        )
        print(f"  {figure.rate:,.0f} rows/s", flush=True)
        figures.append(figure)
        store.close()
    return figures, base


def report(args: argparse.Namespace, figures: list[Figure], base: Figure) -> str:
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {os.cpu_count()} cores,"
        f" Python {platform.python_version()}, chdb in process, batches of {args.batch_rows} rows,"
        f" best of {args.repeat}:"
        f" `python benchmarks/sink.py --events {args.events} --batch-rows {args.batch_rows}"
        f" --envelope-events {args.envelope_events}`",
        "",
        "| what | rows | seconds | rows/s | vs. (a) | CPU µs per row |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for figure in [base, *figures]:
        lines.append(
            f"| {figure.what} | {figure.rows} | {figure.seconds:.2f} | {figure.rate:,.0f}"
            f" | {figure.rate / base.rate:.2f} | {figure.cpu_micros:.1f} |"
        )
    verdicts = ", ".join(
        f"{f.what.removeprefix('(b) sink: ')}: {'met' if f.rate >= TARGET_ROWS_PER_SECOND else 'NOT met'}"
        for f in figures
        if f.what.startswith("(b) sink: events")
    )
    lines += ["", f"Target for the events table: {TARGET_ROWS_PER_SECOND:,} rows/s ({verdicts})."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-rows", type=int, default=20000, help="the sink's FOREWARN_SINK_BATCH_ROWS")
    parser.add_argument("--envelope-events", type=int, default=100, help="events per envelope")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best counts")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", type=Path, help="write a py-spy profile (speedscope JSON) here")
    parser.add_argument("--write-docs", action="store_true", help="put the figures into docs/benchmarks.md")
    args = parser.parse_args()
    if args.write_docs:
        text = BENCHMARKS.read_text(encoding="utf-8")
        if not all(marker in text for marker in MARKERS):
            parser.error(f"docs/benchmarks.md has no {' ... '.join(MARKERS)} markers to write between")
    if args.profile:
        return profile(args)
    figures, base = run(args)
    text = report(args, figures, base)
    publish(MARKERS, text, args.write_docs)
    return 0


def profile(args: argparse.Namespace) -> int:
    """Run this benchmark under py-spy (without --profile) and write its profile to ``args.profile``."""
    command = [sys.executable, __file__, "--events", str(args.events), "--batch-rows", str(args.batch_rows)]
    command += ["--repeat", str(args.repeat), "--seed", str(args.seed)]
    command += ["--envelope-events", str(args.envelope_events)]
    py_spy = ["py-spy", "record", "--format", "speedscope", "-o", str(args.profile), "--rate", "200", "--"]
    return subprocess.call(py_spy + command)


if __name__ == "__main__":
    sys.exit(main())
