"""The ``forewarn`` command.

forewarn demo [--duration S]   the whole pipeline on this machine: embedded broker, chdb, traffic
forewarn broker                the embedded Kafka broker (Tansu, in memory) until stopped, for workers by hand
forewarn worker                a worker (agents, timers, ClickHouse sink) against FOREWARN_* settings
forewarn worker --processes N  N workers (without their sinks) and one sink, as processes of one supervisor
forewarn sink                  the ClickHouse sink alone (workers with FOREWARN_SINK_IN_WORKER=false)
forewarn topics                create the topics with their partition counts
forewarn schema                apply the ClickHouse schema migrations
forewarn config                print the settings table (Markdown)
forewarn report [--days N]     print the value metrics of interventions (each arm against the holdout),
                               what shadow triggers would have done, and the cross-department response
                               times and automation share of the latest week against the weeks before
forewarn faq --product ID      print the latest FAQ forecast of a launch: topics, counts, examples per age
forewarn forecast [--channel C]  print the support-load forecast: each hour of the next 24 h, contacts,
                               agents needed and on shift, per channel
forewarn doctor                check the broker, the topics and ClickHouse, and say what is wrong
forewarn traffic               stream synthetic web, logistics and process traffic into the broker
forewarn notifier              the example notifier: consume interventions, report outcomes
forewarn service-desk          the simulated service desk and teams: answer tickets and feedback
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from streams.contracts.settings import PREFIX, Settings, settings_table


def preflight(command: str, settings: Settings) -> list[str]:
    """What is wrong with the files ``command`` reads (policy, catalog, tokens, keys, ...), one line
    each; checked before anything connects, by the checks ``forewarn doctor`` runs."""
    from streams.tools.doctor import FILE_CHECKS, failures, policy_check, pseudonym_key_check, tls_check

    checks = {
        "worker": FILE_CHECKS,
        "sink": (pseudonym_key_check, tls_check),
        "traffic": (policy_check,),
    }.get(command, ())
    return [
        f"{check.name}: {check.message}" + (f" -> {check.hint}" if check.hint else "")
        for check in failures(check(settings) for check in checks)
    ]


def run_processes(settings: Settings, processes: int, loglevel: str) -> int:
    """``forewarn worker --processes N`` (:mod:`streams.run.supervisor`): the topics made first (the
    children would race to), the layout checked against their partitions, then the supervisor."""
    from streams.contracts.topics import ensure_topics
    from streams.run.supervisor import Supervisor, layout_problems, worker_children

    partitions = asyncio.run(ensure_topics(settings))[settings.topic_events]
    errors, warnings = layout_problems(settings, processes, partitions)
    for warning in warnings:
        print(f"forewarn: warning: {warning}", file=sys.stderr)
    if errors:
        for error in errors:
            print(f"forewarn: {error}", file=sys.stderr)
        return 2
    children = worker_children(settings, processes, loglevel)
    for child in children:  # Faust makes a worker's data directory, not its parents
        if data_dir := child.env.get(f"{PREFIX}DATA_DIR"):
            Path(data_dir).mkdir(parents=True, exist_ok=True)
    return Supervisor(children).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="forewarn", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run a worker")
    worker.add_argument("--loglevel", default="info", choices=["crit", "error", "warn", "info", "debug"])
    worker.add_argument(
        "--processes",
        type=int,
        default=1,
        help="worker processes under one supervisor, plus one sink process (default 1: this process)",
    )
    commands.add_parser("sink", help="run the ClickHouse sink alone, until stopped")
    demo = commands.add_parser("demo", help="run the whole pipeline on the embedded default")
    demo.add_argument("--duration", type=float, default=60.0, help="seconds of traffic (default 60)")
    demo.add_argument("--sessions-per-second", type=float, default=20.0, help="new web sessions per second")
    demo.add_argument("--workdir", default="var/demo", help="where the demo keeps its data and logs")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument(
        "--metrics-port", type=int, default=0, help="the worker's /metrics port (default: a free one)"
    )
    history = demo.add_mutually_exclusive_group()
    history.add_argument(
        "--history-days",
        type=float,
        default=14.0,
        help="days of synthetic history replayed at full speed before the live part, for the models to"
        " learn from (default 14)",
    )
    history.add_argument(
        "--no-history",
        action="store_const",
        const=0.0,
        dest="history_days",
        help="no history: models start empty",
    )
    broker = commands.add_parser("broker", help="run the embedded Kafka broker (Tansu) until stopped")
    broker.add_argument("--port", type=int, default=9092, help="its port on 127.0.0.1 (default 9092)")
    broker.add_argument(
        "--compat-port",
        type=int,
        default=9093,
        help="port for clients on librdkafka before 2.2, e.g. Debian bookworm's kcat (default 9093; 0: none)",
    )
    commands.add_parser("topics", help="create the topics")
    commands.add_parser("schema", help="apply the ClickHouse schema")
    commands.add_parser("config", help="print the settings table")
    report = commands.add_parser(
        "report", help="print the value metrics of interventions (arms against holdout) and shadow triggers"
    )
    report.add_argument(
        "--days",
        type=float,
        default=None,
        help="shadow decisions of the last DAYS before the latest event (default: since the first one)",
    )
    report.add_argument(
        "--ack-days",
        type=int,
        default=3,
        help="cross-department figures: feedback acknowledged within DAYS counts as in time (default 3)",
    )
    faq = commands.add_parser(
        "faq", help="print the latest FAQ forecast of a product launching or launched lately"
    )
    faq.add_argument("--product", required=True, help="the product id (the catalog's)")
    forecast = commands.add_parser(
        "forecast", help="print the latest support-load forecast per hour: contacts, agents needed, on shift"
    )
    forecast.add_argument("--channel", default=None, help="one channel (chat, phone, email, other)")
    commands.add_parser("doctor", help="check the broker, topics and ClickHouse; exit 1 if anything is wrong")
    traffic = commands.add_parser("traffic", help="stream synthetic traffic into the broker until stopped")
    traffic.add_argument("--sessions-per-second", type=float, default=5.0, help="new web sessions per second")
    traffic.add_argument("--duration", type=float, default=0.0, help="seconds (0: until stopped)")
    traffic.add_argument("--seed", type=int, default=None, help="default: a new one each run")
    notifier = commands.add_parser("notifier", help="the example notifier, until stopped")
    notifier.add_argument("--seed", type=int, default=7)
    desk = commands.add_parser("service-desk", help="the simulated service desk and teams, until stopped")
    desk.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "config":
        print(settings_table())
        return 0
    if args.command == "demo":
        from streams.tools.demo import run_demo

        return run_demo(
            args.duration,
            args.sessions_per_second,
            args.workdir,
            args.seed,
            args.metrics_port,
            args.history_days,
        )
    if args.command == "broker":
        from streams.tools.broker import serve_broker

        return serve_broker(args.port, args.compat_port)
    try:
        settings = Settings.from_env()
    except ValueError as error:  # a FOREWARN_* value that is not valid: say which, no traceback
        print(f"forewarn: {error}", file=sys.stderr)
        return 2
    problems = preflight(args.command, settings)
    if problems:  # said before connecting anywhere: a bad file is not a broker problem
        for problem in problems:
            print(f"forewarn: {problem}", file=sys.stderr)
        return 2
    from aiokafka.errors import KafkaConnectionError

    try:
        if args.command in ("worker", "sink"):  # the notifier asks once the broker answers (it waits)
            from streams.contracts.topics import for_the_broker

            try:
                settings = asyncio.run(for_the_broker(settings))
            except ValueError as error:  # what was set does not fit with the embedded broker's values
                print(f"forewarn: {error}", file=sys.stderr)
                return 2
        return run_command(args, settings)
    except KafkaConnectionError:  # said in words, as `forewarn doctor` would
        from streams.tools.doctor import unreachable_reason

        servers = settings.bootstrap_servers
        print(
            f"forewarn: cannot reach the Kafka broker at {', '.join(servers)}: {unreachable_reason(servers)}"
            f" -> start it, or set {PREFIX}BROKER_URL",
            file=sys.stderr,
        )
        return 2


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run a command that reads the settings."""
    if args.command == "worker" and args.processes != 1:
        return run_processes(settings, args.processes, args.loglevel)
    if args.command == "worker":
        from streams.run.worker import run_worker

        run_worker(settings, args.loglevel)
    elif args.command == "sink":
        from streams.run.sink import serve_sink

        return serve_sink(settings)
    elif args.command == "topics":
        from streams.contracts.topics import ensure_topics

        for topic, partitions in asyncio.run(ensure_topics(settings)).items():
            print(f"{topic}: {partitions} partitions")
    elif args.command == "schema":
        from sinks.clickhouse import ClickHouseStore

        store = ClickHouseStore(settings.clickhouse_dsn)
        applied = store.apply_schema(settings.clickhouse_cluster)
        print(f"schema version {store.schema_version()} (applied now: {applied or 'none'})")
    elif args.command == "doctor":
        from streams.tools.doctor import run_doctor

        return run_doctor(settings)
    elif args.command == "traffic":
        from streams.tools.traffic.runner import run_traffic

        return run_traffic(settings, args.sessions_per_second, args.duration, args.seed)
    elif args.command == "notifier":
        from streams.tools.notifier import serve_notifier

        return serve_notifier(settings, args.seed)
    elif args.command == "service-desk":
        from streams.tools.service_desk import serve_service_desk

        return serve_service_desk(settings, args.seed)
    elif args.command == "report":
        from sinks.clickhouse import ClickHouseStore
        from sinks.departments import department_report, format_department_report
        from sinks.report import format_report, format_shadow_report, shadow_report, value_report
        from streams.domain.policy import load_policy

        # Churn after a would-be send is read over the policy's churn horizon, as the model labels it.
        horizon = load_policy(settings.policy_file).models.churn_horizon
        store = ClickHouseStore(settings.clickhouse_dsn)
        try:
            # Idempotent: the views may be newer than the worker that wrote the data.
            store.apply_schema(settings.clickhouse_cluster)
            print(format_report(value_report(store)))
            shadows = shadow_report(store, args.days, churn_horizon=horizon)
            if shadows:
                print("\nShadow triggers: what they would have done (sent nothing)\n")
                print(format_shadow_report(shadows, churn_horizon=horizon))
            # Cross-department response times and the automation share (sinks.departments).
            print()
            print(format_department_report(department_report(store, ack_days=args.ack_days)))
        finally:
            store.close()
    elif args.command == "faq":
        from sinks.clickhouse import ClickHouseStore
        from sinks.faq import format_forecast, latest_forecast

        store = ClickHouseStore(settings.clickhouse_dsn)
        try:
            store.apply_schema(settings.clickhouse_cluster)  # idempotent: the view may be newer
            rows = latest_forecast(store, args.product)
            print(format_forecast(rows))
        finally:
            store.close()
        return 0 if rows else 1
    elif args.command == "forecast":
        from sinks.clickhouse import ClickHouseStore
        from sinks.support_load import format_forecast, hourly, latest_forecast

        store = ClickHouseStore(settings.clickhouse_dsn)
        try:
            store.apply_schema(settings.clickhouse_cluster)
            plans = hourly(latest_forecast(store, args.channel))
            print(format_forecast(plans))
        finally:
            store.close()
        return 0 if plans else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
