"""``forewarn demo``: the whole pipeline on one machine with nothing else installed.

It starts the embedded Tansu broker and a ``forewarn worker`` (ClickHouse embedded through chdb) under
the default policy (a shorter payment dwell, so that a minute shows it), streams synthetic web,
logistics and preference traffic into the broker, runs the example notifier (:mod:`streams.tools.notifier`)
that reports outcomes back, shows progress against the traffic's ground truth, and at the end reads a
summary and the value metrics back from ClickHouse. The traffic has a planted effect: users outside
the holdout arm complain and give up less (:class:`streams.tools.traffic.generator.TrafficProfile`), so the
value report has a true uplift to find. Ctrl-C or the end of ``--duration`` stops everything it started, by
PID.

The traffic also drives the processes: devices and repair requests (service tickets), order requests
from the chat, commented feedback and corrections of its tags, CRM attributes, and support questions
about products with eight days of history (hot-issue detection needs a baseline) and a planted surge
of one topic on one product. The summary reads each process's results back from ClickHouse against the
traffic's ground truth. User ids in ClickHouse are pseudonyms (:mod:`streams.contracts.privacy`): the demo
keeps the key in its directory and pseudonymises the traffic's user ids to compare.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.contracts.events import CRM_UPDATES, DEVICES, ORDER_REQUESTS, SERVICE_REQUESTS, SUPPORT_QUESTIONS
from streams.contracts.feedback import ROUTES
from streams.contracts.interventions import PAYMENT_ASSIST, TRIGGERS
from streams.contracts.privacy import Pseudonymizer, load_key
from streams.contracts.settings import Settings
from streams.contracts.time import DAY
from streams.domain.contact import EMITTED
from streams.domain.policy import Policy, load_policy
from streams.tools.broker import free_port, start_broker
from streams.tools.compat_listener import CompatListener
from streams.tools.notifier import run_notifier
from streams.tools.traffic.feedback import FEEDBACK_LABELS
from streams.tools.traffic.generator import TrafficGenerator
from streams.tools.traffic.profile import Surge, TrafficProfile
from streams.tools.traffic.runner import QUESTION_HISTORY, process_traffic_profile, stream_traffic
from streams.tools.traffic.schedule import Outgoing
from streams.tools.worker_launcher import EMBEDDED_BROKER_ENV, WorkerProcess

if TYPE_CHECKING:
    from sinks.clickhouse import ClickHouseStore

MARKER = ".forewarn-demo"
DEMO_POLICY = """# The demo's policy: the packaged default, with a payment dwell a one-minute demo can show.
[triggers.payment_assist]
dwell = "30s"
"""
# The traffic of `forewarn traffic` (streams.tools.traffic.runner), faster: logistics steps a few seconds
# apart, so that a one-minute demo shows delays too; ratings of support contacts, repairs, corrections and CRM
# updates come within seconds for the same reason.
DEMO_PACE = {
    "shipment_step_seconds": (1.0, 4.0),
    "support_feedback_delay": 8.0,
    "repair_after_seconds": (5.0, 20.0),
    "label_after_seconds": (3.0, 15.0),
    "crm_update_after_seconds": (5.0, 30.0),
}
# The planted hot issue: pairing questions about Echo Two, some 2 more a second for a while, against a
# steady rate of a few a day; rising far above its baseline, it is what the detector should report.
SURGE_PRODUCT, SURGE_TOPIC = "headphones-echo-2", "pairing"
SURGE_PER_SECOND = 2.0


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
        self.by_topic: Counter[str] = Counter()
        self.until = 0.0  # the traffic sent is everything with an event time up to here
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
        self.by_topic[outgoing.topic] += 1
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
    started = time.time()
    last_report = 0.0
    interactive = sys.stdout.isatty()

    def tick(now: float, sent: list[Outgoing]) -> None:
        nonlocal last_report
        for outgoing in sent:
            tally.sent_message(outgoing)
        tally.until = now
        tally.advance(now)
        elapsed = now - started
        if interactive or elapsed - last_report >= 5:
            line = _progress(tally, elapsed, duration)
            print("\r" + line if interactive else line, end="" if interactive else "\n", flush=True)
            last_report = elapsed

    try:
        await stream_traffic(producer, generator, settings, stop, started + duration, tick)
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


def _outcome_table(stored: Counter[str], expected: Counter[str], first: str) -> list[str]:
    """Stored against expected counts, ``first`` on top, then the rest by expected count."""
    keys = sorted(set(stored) | set(expected), key=lambda key: (key != first, -expected[key], key))
    lines = ["    outcome                        stored  expected"]
    lines += [f"    {key:30s} {stored[key]:6d}  {expected[key]:8d}" for key in keys]
    return lines


def _tickets(store: ClickHouseStore, generator: TrafficGenerator, tally: _Tally, max_km: float) -> list[str]:
    stored = Counter(
        dict(
            store.query(
                "SELECT if(dispatch = 'assigned', 'assigned', manual_reason), count() FROM tickets FINAL"
                " GROUP BY 1"
            )
        )
    )
    rows, requests = store.query("SELECT count(), uniqExact(user_id, request_id) FROM tickets FINAL")[0]
    points = store.query(
        "SELECT service_point_id, count(), round(avg(distance_km), 1) FROM tickets FINAL"
        " WHERE dispatch = 'assigned' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 4"
    )
    repairs = generator.repairs(tally.until)
    lines = [
        f"  service tickets: {rows} stored for {requests} request ids; {len(repairs)} repair requests sent"
        f" ({sum(r.redelivered for r in repairs)} of them twice), ground truth from the registry's rule:"
    ]
    expected = generator.expected_tickets(max_km=max_km, until=tally.until)
    lines += _outcome_table(stored, expected, "assigned")
    lines.append(
        "    busiest points: "
        + (", ".join(f"{point} {count} (mean {km} km)" for point, count, km in points) or "none")
    )
    return lines


def _orders(store: ClickHouseStore, generator: TrafficGenerator, tally: _Tally) -> list[str]:
    stored = Counter(dict(store.query("SELECT reason, count() FROM order_rejections FINAL GROUP BY 1")))
    stored["accepted"] = store.query("SELECT count() FROM order_commands FINAL")[0][0]
    orders = generator.orders(tally.until)
    lines = [
        f"  orders from the chat: {len(orders)} requests sent ({sum(o.duplicated for o in orders)} of them"
        " twice), against the planted faults:"
    ]
    return lines + _outcome_table(stored, generator.expected_orders(tally.until), "accepted")


def _feedback(store: ClickHouseStore, generator: TrafficGenerator, tally: _Tally) -> list[str]:
    truth = generator.feedback_truth(tally.until)
    rows = store.query("SELECT feedback_id, language, top_tag, teams FROM feedback_tags FINAL")
    corrections = sum(t.labelled_at is not None and t.labelled_at <= tally.until for t in truth.values())
    known = [
        (truth[feedback], language, top, teams)
        for feedback, language, top, teams in rows
        if feedback in truth
    ]

    def agreement(selected: list[tuple]) -> str:
        agreed = sum(top in true.tags for true, _, top, _ in selected)
        return f"{agreed / len(selected):.0%} of {len(selected)}" if selected else "-"

    lines = [
        f"  feedback tagged: {len(rows)} stored, {len(truth)} commented sent, {corrections} corrections"
        f" sent; top tag among the true tags: {agreement(known)}"
    ]
    languages = sorted({language for _, language, _, _ in known})
    lines.append(
        "    by language: "
        + (", ".join(f"{lang} {agreement([k for k in known if k[1] == lang])}" for lang in languages) or "-")
    )
    parts = []
    for team in sorted({team for _, _, _, teams in known for team in teams}):
        routed = [k for k in known if team in k[3]]
        right = sum(team in {ROUTES[tag] for tag in true.tags} for true, _, _, _ in routed)
        parts.append(f"{team} {len(routed)} (its team by the true tags for {right / len(routed):.0%})")
    lines.append("    routed to: " + (", ".join(parts) or "-"))
    return lines


def _hot_issues(store: ClickHouseStore, generator: TrafficGenerator, tally: _Tally) -> list[str]:
    surge, window = generator.profile.surge, generator.surge_window()
    alerts = store.query(
        "SELECT product_id, topic, observed, expected, statistic, toUnixTimestamp64Milli(detected_at)"
        " FROM hot_issues FINAL ORDER BY detected_at"
    )
    questions = tally.by_topic[SUPPORT_QUESTIONS]
    lines = [f"  hot issues ({questions} support questions sent, of them {QUESTION_HISTORY / DAY:.0f} days"
             " of history at the start):"]  # fmt: skip
    if surge is not None and window is not None:
        start = window[0] - surge.start
        lines.append(
            f"    planted: {surge.product_id} / {surge.topic} from +{surge.start:.0f}s to"
            f" +{surge.start + surge.duration:.0f}s, {generator.stats.surge_questions} extra questions"
        )
    else:
        start = tally.until
    for product, topic, observed, expected, statistic, detected in alerts:
        planted = surge is not None and (product, topic) == (surge.product_id, surge.topic)
        lines.append(
            f"    raised:  {product} / {topic} at {detected / 1000 - start:+.0f}s, observed {observed:.1f}"
            f" against {expected:.2f} expected, p = {statistic:.1e}"
            + ("  <- the planted surge" if planted else "  (not planted)")
        )
    if not alerts:
        lines.append("    raised:  none")
    if surge is not None:
        rising = store.query(
            "SELECT question, topic, last_day, daily_before, rise FROM rising_questions"
            " WHERE product_id = {product:String} LIMIT 5",
            {"product": surge.product_id},
        )
        lines.append(f"  top rising questions for {surge.product_id} (rising_questions view):")
        lines.append("    rise  last day  daily before  topic             question")
        lines += [
            f"    {rise:4.1f}  {last:8d}  {before:12.1f}  {topic:16s}  {question}"
            for question, topic, last, before, rise in rising
        ] or ["    none"]
    return lines


def _processes(
    store: ClickHouseStore, generator: TrafficGenerator, tally: _Tally, settings: Settings
) -> list[str]:
    sent = tally.by_topic
    lines = [
        "\nProcesses (tickets, orders, feedback, questions, CRM), read back from ClickHouse against the"
        " traffic's ground truth:",
        f"  sent: {sent[DEVICES]} device registrations, {sent[SERVICE_REQUESTS]} repair requests,"
        f" {sent[ORDER_REQUESTS]} order requests, {sent[FEEDBACK_LABELS]} tag corrections,"
        f" {sent[CRM_UPDATES]} CRM updates, {sent[SUPPORT_QUESTIONS]} support questions",
    ]
    sections: list[tuple[str, Callable[[], list[str]]]] = [
        ("tickets", lambda: _tickets(store, generator, tally, settings.dispatch_max_km)),
        ("orders", lambda: _orders(store, generator, tally)),
        ("feedback", lambda: _feedback(store, generator, tally)),
        ("hot issues", lambda: _hot_issues(store, generator, tally)),
    ]
    for name, section in sections:
        try:
            lines += section()
        except Exception as error:  # one missing table must not hide the other sections
            lines.append(f"  {name}: could not be read ({(str(error).splitlines() or [repr(error)])[0]})")
    return lines


def _summary(
    dsn: str,
    tally: _Tally,
    generator: TrafficGenerator,
    settings: Settings,
    pseudonymize: Callable[[str], str],
) -> str:
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
        processes = _processes(store, generator, tally, settings)
    finally:
        store.close()
    # ClickHouse holds pseudonyms: map the traffic's users to theirs to find their latent types.
    types = {pseudonymize(user): generator.user_type(user) for user in generator.seen_users()}
    raw = sum(generator.user_type(user) is not None for user, *_ in scores)  # should be none
    lines = [f"\nRead back from ClickHouse ({dsn}):", f"  events stored: {stored}"]
    lines += [f"    {source:16s} {kind:20s} {count}" for source, kind, count in by_type]
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
    lines.append(
        f"  user ids in user_scores_latest: {sum(user in types for user, *_ in scores)} pseudonyms of the"
        f" traffic's users, {raw} raw ids"
    )
    lines.append("  latest scores by the traffic's latent user type (its ground truth), means:")
    lines += _scores_by_type(scores, types.get) if scores else ["    none"]
    lines += processes
    lines += ["", "Value metrics (forewarn report), treatment against holdout:", value]
    return "\n".join(lines)


def run_demo(
    duration: float, sessions_per_second: float, workdir: str, seed: int, metrics_port: int = 0
) -> int:
    # The worker logs to its own file; the demo's own Kafka clients need not narrate their group joins.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    root = Path(workdir).resolve()
    _prepare(root)
    policy_file = root / "policy.toml"
    policy_file.write_text(DEMO_POLICY)
    policy = load_policy(str(policy_file))
    broker = start_broker(log_path=root / "broker.log")
    listener = CompatListener(broker.port, free_port()).start()  # for kcat on librdkafka before 2.2
    dsn = f"chdb://{root / 'clickhouse'}"
    env = {
        "FOREWARN_BROKER_URL": broker.url,
        "FOREWARN_CLICKHOUSE_DSN": dsn,
        "FOREWARN_DATA_DIR": str(root / "worker"),
        "FOREWARN_PARTITIONS": "4",
        "FOREWARN_POLICY_FILE": str(policy_file),
        "FOREWARN_PSEUDONYM_KEY_FILE": str(root / "pseudonym.key"),
        "FOREWARN_CLUSTER_SECRET_FILE": str(root / "cluster.key"),
        **EMBEDDED_BROKER_ENV,
    }
    settings = Settings.from_env(env)
    # Made here, before the worker starts and reads it: the demo pseudonymises with the same key.
    pseudonymize = Pseudonymizer(load_key(settings))
    worker = WorkerProcess(env, root / "worker.log")
    if metrics_port:  # a fixed port, for a Prometheus pointed at the demo (docs/operations.md "Operating it")
        worker.metrics_port = metrics_port
    try:
        print(f"Forewarn demo: embedded Kafka (Tansu) on {broker.bootstrap}, ClickHouse (chdb) in {dsn}")
        print(
            f"kcat (any librdkafka): kcat -b {listener.bootstrap} -C -t dead_letters -f '%h %s\\n'"
            f" (on {broker.bootstrap}: librdkafka 2.2 or later)"
        )
        worker.start(timeout=60)
        print(
            f"worker ready (pid {worker.pid}, log {worker.log_path},"
            f" metrics http://127.0.0.1:{worker.metrics_port}/metrics); policy: default with {policy_file};"
            f" streaming {duration:.0f}s of traffic; 'x/y decided': decisions made / interventions the"
            " traffic's ground truth makes due"
        )
        profile = dataclasses.replace(process_traffic_profile(sessions_per_second, policy), **DEMO_PACE)
        generator = TrafficGenerator(_with_surge(profile, seed, duration), seed=seed)
        surge = generator.profile.surge
        assert surge is not None
        print(
            f"support questions: {QUESTION_HISTORY / DAY:.0f} days of history go first (so the first"
            f" batch is large), then a planted surge: {surge.product_id} / {surge.topic}, about"
            f" {SURGE_PER_SECOND:g} more a second from +{surge.start:.0f}s for {surge.duration:.0f}s"
        )
        tally = asyncio.run(_stream(broker.bootstrap, settings, policy, generator, duration))
    except (RuntimeError, TimeoutError) as error:  # the worker did not start: say why, stop the rest
        raise SystemExit(str(error)) from None
    finally:
        if worker.running():
            print("stopping the worker (it flushes the ClickHouse sink and commits) ...")
        worker.stop()
        listener.stop()
        broker.stop()
    print(_summary(dsn, tally, generator, settings, pseudonymize))
    return 0


def _with_surge(profile: TrafficProfile, seed: int, duration: float) -> TrafficProfile:
    """``profile`` with the planted surge: SURGE_PER_SECOND more questions on the topic from a quarter
    into the demo, for half of it (at most 20 s). The topic's steady rate comes from the seed's topic
    mixes, which a generator draws first, so a probe with the same seed knows it."""
    rate = TrafficGenerator(profile, seed=seed).topic_rate(SURGE_PRODUCT, SURGE_TOPIC, time.time())
    start, length = min(10.0, duration / 4), min(20.0, duration / 2)
    return dataclasses.replace(
        profile, surge=Surge(SURGE_PRODUCT, SURGE_TOPIC, start, length, 1.0 + SURGE_PER_SECOND / rate)
    )
