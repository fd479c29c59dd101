"""The framework's floor: what a Faust worker costs per event before Forewarn does any work.

    python benchmarks/faust_floor.py --bootstrap HOST:PORT --topics clickstream,logistics --count N
                                     --mode iterate|iterate-tuned|rekey-table --result FILE [--partitions 4]
    python benchmarks/faust_floor.py --compare [--count 50000] [--repeat 3] [--modes iterate,iterate-tuned]

Run by ``benchmarks/pipeline.py`` as a child process (a Faust worker owns its process's event loop),
against the same broker and the same messages as the pipeline, so the pipeline's figures can be read
against two baselines measured in the same run besides the bare aiokafka consumer:

* ``iterate``: one agent over the source topics that only counts the events (Faust's per-event
  machinery: fetch, conductor, stream, acks, commits);
* ``iterate-tuned``: the same agent in an app with the worker's changes to that machinery
  (:func:`streams.worker.transport.use_transport`, :func:`streams.worker.transport.use_lean_sensors`), its
  fetches waiting as long as Faust's do (``--fetch-max-wait-ms``, Faust's 1500 by default) so that the two
  differ only in the per-record work;
* ``rekey-table``: the shape of Forewarn's pipeline with none of its work: one agent re-keys every
  event by its ``user_id`` onto a second topic (``acks=all``, the worker's producer linger), and a second
  agent writes each event into a changelog-backed table keyed by user, as ``ingest`` and
  ``track_users`` do (the value is the event's bytes: no state, no models, no triggers, no sink).

It writes one JSON object to ``--result``: events, seconds from the first event seen to the last,
and the process's CPU seconds over the same span (all threads).

``--compare`` measures on its own: it starts an embedded broker, produces ``--count`` events of the
pipeline benchmark's traffic, runs each of ``--modes`` in turn ``--repeat`` times over them and prints
each run's CPU µs and events/s, the modes alternating so that the machine's load falls on all alike.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import faust
import orjson
from faust.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from streams.tools.broker import free_port
from streams.worker.transport import use_lean_sensors, use_transport

MODES = ("iterate", "iterate-tuned", "rekey-table")


def build_app(args: argparse.Namespace, datadir: str) -> faust.App:
    app = faust.App(
        f"forewarn-floor-{args.mode}-{os.getpid()}",  # a group of its own: nothing committed yet
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        datadir=datadir,
        topic_partitions=args.partitions,
        web_port=free_port(),
        broker_rebalance_timeout=3,
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger_ms=args.linger_ms,
        key_serializer="raw",
        value_serializer="raw",
    )
    if args.mode == "iterate-tuned":
        use_transport(
            app, SimpleNamespace(fetch_max_wait_ms=args.fetch_max_wait_ms, broker_verify_end_offsets=False)
        )
        use_lean_sensors(app)
    source = app.topic(*args.topics.split(","), value_serializer="raw")
    rekeyed = app.topic(f"forewarn-floor-{os.getpid()}", partitions=args.partitions, value_serializer="raw")
    table = app.Table("users", default=None, partitions=args.partitions, value_type=bytes)
    seen = {"events": 0, "started": 0.0, "cpu": 0.0}

    def count() -> None:
        if seen["events"] == 0:
            seen["started"], seen["cpu"] = time.perf_counter(), time.process_time()
        seen["events"] += 1
        if seen["events"] == args.count:
            result = {
                "mode": args.mode,
                "events": args.count,
                "seconds": time.perf_counter() - seen["started"],
                "cpu_seconds": time.process_time() - seen["cpu"],
            }
            Path(args.result).write_bytes(orjson.dumps(result))  # Faust's worker takes over stdout
            os._exit(0)  # the figure is out; a clean Faust shutdown would only add seconds

    @app.agent(source)
    async def first(stream: faust.StreamT) -> None:
        async for event in stream.events():
            if args.mode != "rekey-table":
                count()
                continue
            try:
                user_id = orjson.loads(event.message.value).get("user_id", "")
            except (orjson.JSONDecodeError, AttributeError):  # the few broken messages: any key does
                user_id = ""
            await rekeyed.send(key=str(user_id).encode(), value=event.message.value)

    if args.mode == "rekey-table":

        @app.agent(rekeyed)
        async def second(stream: faust.StreamT) -> None:
            async for event in stream.events():
                table[event.message.key.decode()] = event.message.value
                count()

    return app


def compare(args: argparse.Namespace) -> int:
    """``--compare``: the modes over the same messages on an embedded broker, alternating."""
    import asyncio

    from benchmarks.pipeline import PARTITIONS, faust_floor, produce, replayed_traffic
    from streams.contracts.settings import Settings
    from streams.contracts.topics import ensure_topics
    from streams.tools.broker import start_broker
    from streams.tools.worker_launcher import EMBEDDED_BROKER_ENV

    broker = start_broker()
    try:
        env = {
            "FOREWARN_BROKER_URL": broker.url,
            "FOREWARN_PARTITIONS": str(PARTITIONS),
            **EMBEDDED_BROKER_ENV,
        }
        settings = Settings.from_env(env)
        asyncio.run(ensure_topics(settings))
        topics = settings.source_topics
        asyncio.run(produce(broker.bootstrap, topics, replayed_traffic(args.count, seed=7)))
        print(
            f"{args.count} events, {PARTITIONS} partitions: CPU µs/event (all threads), events/s", flush=True
        )
        for round_ in range(1, args.repeat + 1):
            for mode in args.modes.split(","):
                floor = faust_floor(broker.bootstrap, list(topics.values()), args.count, mode, args.linger_ms)
                print(
                    f"  run {round_} {mode:<14} {floor.cpu_micros:6.1f} µs"
                    f"  {floor.events / floor.seconds:8,.0f}/s",
                    flush=True,
                )
    finally:
        broker.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", action="store_true", help="start a broker, produce, run --modes")
    parser.add_argument("--modes", default="iterate,iterate-tuned", help="--compare: comma-separated modes")
    parser.add_argument("--repeat", type=int, default=3, help="--compare: runs of each mode")
    parser.add_argument("--bootstrap")
    parser.add_argument("--topics", help="comma-separated source topics")
    parser.add_argument("--count", type=int, default=50_000, help="events to read before stopping")
    parser.add_argument("--mode", choices=MODES)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--linger-ms", type=int, default=5)
    parser.add_argument("--fetch-max-wait-ms", type=int, default=1500, help="iterate-tuned's fetch wait")
    parser.add_argument("--result", help="file to write the JSON result to")
    args = parser.parse_args()
    if args.compare:
        return compare(args)
    if not (args.bootstrap and args.topics and args.mode and args.result):
        parser.error("--bootstrap, --topics, --mode and --result are required without --compare")
    with tempfile.TemporaryDirectory(prefix="forewarn-floor-") as datadir:
        app = build_app(args, datadir)
        sys.argv = [sys.argv[0]]  # Faust's worker parses the command line too
        Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
    return 1  # the worker stopped before it counted every event


if __name__ == "__main__":
    sys.exit(main())
