"""``forewarn demo``: the whole pipeline on one machine with nothing else installed.

It starts the embedded Tansu broker and a ``forewarn worker`` (ClickHouse embedded through chdb) under
the default policy (a shorter payment dwell, so that a minute shows it), streams synthetic web,
logistics and preference traffic into the broker, runs the example notifier (:mod:`streams.notifier`)
that reports outcomes back, shows progress against the traffic's ground truth, and at the end reads a
summary and the value metrics back from ClickHouse. The traffic has a planted effect: users outside
the holdout arm complain and give up less (:class:`streams.traffic.TrafficProfile`), so the value
report has a true uplift to find. Ctrl-C or the end of ``--duration`` stops everything it started, by
PID.
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
from collections.abc import Callable
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.broker import start_broker
from streams.config import Settings
from streams.contact import EMITTED
from streams.experiments import assign_arm
from streams.interventions import PAYMENT_ASSIST, TRIGGERS
from streams.notifier import run_notifier
from streams.policy import HOLDOUT, Policy, load_policy
from streams.traffic import Outgoing, TrafficGenerator, TrafficProfile
from streams.worker_process import EMBEDDED_BROKER_ENV, WorkerProcess

MARKER = ".forewarn-demo"
DEMO_POLICY = """# The demo's policy: the packaged default, with a payment dwell a one-minute demo can show.
[triggers.payment_assist]
dwell = "30s"
"""


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
        self.due: Counter[str] = Counter()
        # trigger -> intervention id -> its latest decision ("sent", "deferred" or the reason held back)
        self.decided: dict[str, dict[str, str]] = {trigger: {} for trigger in TRIGGERS}
        self.dead_letters: Counter[str] = Counter()
        self.outcomes = 0
        self.examples: dict[str, dict] = {}
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

    def decision(self, decision: dict) -> None:
        label = "sent" if decision["decision"] == EMITTED else decision["reason"]
        if decision["decision"] == "deferred":
            label = "deferred"
        self.decided.setdefault(decision["trigger"], {})[decision["intervention_id"]] = label


async def _watch(bootstrap: str, settings: Settings, tally: _Tally, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        settings.topic_decisions,
        settings.topic_interventions,
        settings.topic_dead_letters,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )
    await consumer.start()
    try:
        while not stop.is_set():
            for tp, messages in (await consumer.getmany(timeout_ms=300)).items():
                for message in messages:
                    if tp.topic == settings.topic_decisions:
                        tally.decision(orjson.loads(message.value))
                    elif tp.topic == settings.topic_interventions:
                        intervention = orjson.loads(message.value)
                        tally.examples.setdefault(intervention["trigger"], intervention)
                    else:
                        reason = dict(message.headers).get("forewarn.dlq.reason", b"?").decode()
                        tally.dead_letters[reason] += 1
    finally:
        await consumer.stop()


def _progress(tally: _Tally, elapsed: float, duration: float) -> str:
    parts = []
    for trigger in TRIGGERS:
        labels = Counter(tally.decided[trigger].values())
        shown = ", ".join(f"{count} {label}" for label, count in labels.most_common())
        parts.append(f"{trigger} {len(tally.decided[trigger])}/{tally.due[trigger]} decided ({shown or '-'})")
    return (
        f"[{elapsed:4.0f}s/{duration:.0f}s] events {tally.sent:6d} ({tally.sent / max(elapsed, 1):4.0f}/s)"
        f" | {' | '.join(parts)} | dead letters {sum(tally.dead_letters.values())}"
    )


async def _stream(
    bootstrap: str, settings: Settings, policy: Policy, generator: TrafficGenerator, duration: float
) -> _Tally:
    dwell = policy.for_signal("payment_dwell")
    tally = _Tally(dwell.params["dwell"] if dwell else float("inf"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    watcher = asyncio.create_task(_watch(bootstrap, settings, tally, stop))
    notifier = asyncio.create_task(run_notifier(bootstrap, settings, stop))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10)
    await producer.start()
    topics = settings.source_topics
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
        if not stop.is_set():  # let the last events, and their outcomes, through before stopping
            await asyncio.sleep(4)
    finally:
        stop.set()
        await producer.stop()
        await watcher
        tally.outcomes = sum((await notifier).values())
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
    tally.advance(time.time())
    print(("\n" if interactive else "") + _progress(tally, time.time() - started, duration))
    return tally


def _scores_by_type(rows: list[tuple], user_type: Callable[[str], str | None]) -> list[str]:
    """The latest scores, averaged per latent user type of the traffic (its ground truth)."""
    grouped: dict[str, list[tuple]] = {}
    for user, *scores in rows:
        grouped.setdefault(user_type(user) or "unknown", []).append(tuple(scores))
    lines = [
        "    type          users  purchase  need_help  browse  leave   churn  health",
    ]
    for kind, members in sorted(grouped.items()):
        means = [sum(values) / len(values) for values in zip(*members, strict=True)]
        lines.append(
            f"    {kind:12s} {len(members):6d}    {means[0]:.2f}      {means[1]:.2f}     {means[2]:.2f}"
            f"    {means[3]:.2f}    {means[4]:.2f}   {means[5]:5.1f}"
        )
    return lines


def _summary(dsn: str, tally: _Tally, user_type: Callable[[str], str | None]) -> str:
    from sinks.clickhouse import ClickHouseStore
    from sinks.report import format_report, value_report

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
        decisions = store.query(
            "SELECT trigger, decision, reason, count() FROM decisions FINAL"
            " GROUP BY ALL ORDER BY trigger, decision, count() DESC"
        )
        outcomes = store.query(
            "SELECT outcome, count() FROM intervention_outcomes FINAL GROUP BY 1 ORDER BY 2 DESC"
        )
        dead = store.query("SELECT reason, count() FROM dead_letters FINAL GROUP BY reason ORDER BY 2 DESC")
        minutes = store.query(
            "SELECT minute, sum(events) FROM events_per_minute GROUP BY minute ORDER BY minute"
        )
        scores = store.query(
            "SELECT user_id, intent_purchase, intent_need_help, intent_browse, intent_leave, churn, health"
            " FROM user_scores_latest FINAL"
        )
        scored = store.query(
            "SELECT count(), max(intent_examples), max(churn_examples) FROM user_scores FINAL"
        )[0]
        value = format_report(value_report(store))
    finally:
        store.close()
    lines = [f"\nRead back from ClickHouse ({dsn}):", f"  events stored: {stored}"]
    lines += [f"    {source:12s} {kind:20s} {count}" for source, kind, count in by_type]
    lines.append(
        "  events per minute (materialized view): "
        + ", ".join(f"{minute:%H:%M} {count}" for minute, count in minutes)
    )
    lines.append("  interventions sent, by trigger:")
    lines += [
        f"    {trigger:16s} {count:6d}   mean event-time-to-decision {lag} ms"
        for trigger, count, lag in triggers
    ] or ["    none"]
    lines.append("  contact-policy decisions:")
    lines += [
        f"    {trigger:16s} {decision:10s} {reason or '-':18s} {count}"
        for trigger, decision, reason, count in decisions
    ] or ["    none"]
    lines.append(f"  outcomes reported by the example notifier ({tally.outcomes} sent):")
    lines += [f"    {outcome:20s} {count}" for outcome, count in outcomes] or ["    none"]
    lines.append("  dead letters by reason:")
    lines += [f"    {reason:20s} {count}" for reason, count in dead] or ["    none"]
    for trigger, example in sorted(tally.examples.items()):
        offer, evidence = (orjson.dumps(example[key]).decode() for key in ("offer", "evidence"))
        lines.append(
            f"  example {trigger}: {example['reason']}; channel {example['channel']}, offer {offer};"
            f" evidence {evidence}"
        )
    lines.append(
        f"  user scores: {scored[0]} published for {len(scores)} users; the models of a partition had"
        f" learned up to {scored[1]} intent and {scored[2]} churn examples (a churn label needs"
        " the user back in a later visit, a cancellation, or the 30-day horizon)"
    )
    lines.append("  latest scores by the traffic's latent user type (its ground truth), means:")
    lines += _scores_by_type(scores, user_type) if scores else ["    none"]
    lines += ["", "Value metrics (forewarn report), treatment against holdout:", value]
    return "\n".join(lines)


def run_demo(duration: float, sessions_per_second: float, workdir: str, seed: int) -> int:
    # The worker logs to its own file; the demo's own Kafka clients need not narrate their group joins.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    root = Path(workdir).resolve()
    _prepare(root)
    policy_file = root / "policy.toml"
    policy_file.write_text(DEMO_POLICY)
    policy = load_policy(str(policy_file))
    broker = start_broker(log_path=root / "broker.log")
    dsn = f"chdb://{root / 'clickhouse'}"
    env = {
        "FOREWARN_BROKER_URL": broker.url,
        "FOREWARN_CLICKHOUSE_DSN": dsn,
        "FOREWARN_DATA_DIR": str(root / "worker"),
        "FOREWARN_PARTITIONS": "4",
        "FOREWARN_POLICY_FILE": str(policy_file),
        **EMBEDDED_BROKER_ENV,
    }
    settings = Settings.from_env(env)
    experiment = policy.experiment_of(PAYMENT_ASSIST)
    worker = WorkerProcess(env, root / "worker.log")
    try:
        print(f"Forewarn demo: embedded Kafka (Tansu) on {broker.bootstrap}, ClickHouse (chdb) in {dsn}")
        worker.start(timeout=60)
        print(
            f"worker ready (pid {worker.pid}, log {worker.log_path},"
            f" metrics http://127.0.0.1:{worker.metrics_port}/metrics); policy: default with {policy_file};"
            f" streaming {duration:.0f}s of traffic; 'x/y decided': decisions made / interventions the"
            " traffic's ground truth makes due"
        )
        generator = TrafficGenerator(
            # Logistics steps a few seconds apart, so that a one-minute demo shows delays too.
            TrafficProfile(
                sessions_per_second=sessions_per_second,
                shipment_step_seconds=(1.0, 4.0),
                malformed_share=0.005,
                preferences_share=0.5,
                subscription_share=0.2,
                treated=None
                if experiment is None
                else (lambda user: assign_arm(user, experiment) != HOLDOUT),
            ),
            seed=seed,
        )
        tally = asyncio.run(_stream(broker.bootstrap, settings, policy, generator, duration))
    except (RuntimeError, TimeoutError) as error:  # the worker did not start: say why, stop the rest
        raise SystemExit(str(error)) from None
    finally:
        if worker.running():
            print("stopping the worker (it flushes the ClickHouse sink and commits) ...")
        worker.stop()
        broker.stop()
    print(_summary(dsn, tally, generator.user_type))
    return 0
