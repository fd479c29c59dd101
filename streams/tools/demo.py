"""``forewarn demo``: the whole pipeline on one machine with nothing else installed.

It starts the embedded Tansu broker and a ``forewarn worker`` (ClickHouse embedded through chdb) under
the default policy (shorter durations, so that a minute shows them: :data:`DEMO_POLICY`), replays two
weeks of synthetic history at full speed so that the models have learned
(:mod:`streams.tools.traffic.history`; ``--no-history`` leaves it out), then streams synthetic web,
logistics and preference traffic into the broker, runs the example notifier (:mod:`streams.tools.notifier`)
that reports outcomes back, shows progress against the traffic's ground truth, and at the end reads a
summary and the value metrics back from ClickHouse, with the model-driven triggers and the scores per
latent user type against the traffic's ground truth (:mod:`streams.tools.demo_truth`; how the history
is kept apart from the live part: docs/operations.md "The demo"). The traffic has a planted effect:
users outside the holdout arm complain and give up less
(:class:`streams.tools.traffic.generator.TrafficProfile`), so the value report has a true uplift to find.
Ctrl-C or the end of ``--duration`` stops everything it started, by PID.

The traffic also drives the processes: devices and repair requests (service tickets), order requests
from the chat, commented feedback and corrections of its tags, CRM attributes, and support questions
about products with eight days of history (hot-issue detection needs a baseline) and a planted surge
of one topic on one product, and three headphone launches dated from the demo's start
(:func:`demo_catalog`), the latest one's FAQ forecast learnt from the other two. The summary reads each
process's results back from ClickHouse against the traffic's ground truth. User ids in ClickHouse are
pseudonyms (:mod:`streams.contracts.privacy`): the demo keeps the key in its directory and
pseudonymises the traffic's user ids to compare.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import signal
import sys
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from streams.contracts.events import (
    CLICKSTREAM,
    CRM_UPDATES,
    DEVICES,
    LOGISTICS,
    ORDER_REQUESTS,
    PREFERENCES,
    SERVICE_REQUESTS,
    SUBSCRIPTIONS,
    SUPPORT_QUESTIONS,
)
from streams.contracts.feedback import ROUTES
from streams.contracts.interventions import PAYMENT_ASSIST, TRIGGERS
from streams.contracts.privacy import Pseudonymizer, load_key
from streams.contracts.settings import Settings
from streams.contracts.time import DAY, iso_time
from streams.domain.contact import EMITTED
from streams.domain.policy import Policy, load_policy
from streams.processes.catalog import Catalog, Product, load_catalog
from streams.tools.broker import free_port, start_broker
from streams.tools.compat_listener import CompatListener
from streams.tools.demo_truth import TriggerTruth, model_triggers, roc_auc, scores_by_type, trigger_truth
from streams.tools.notifier import run_notifier
from streams.tools.service_desk import MANUAL_POINT, DeskProfile, ServiceDesk, respond
from streams.tools.traffic.contacts import ContactShape, ContactTraffic, PlantedCampaign
from streams.tools.traffic.feedback import FEEDBACK_LABELS
from streams.tools.traffic.generator import TrafficGenerator
from streams.tools.traffic.history import VISIT_GAP_DAYS, HistoryPlan, plan_history, replay_history
from streams.tools.traffic.profile import Surge, TrafficProfile
from streams.tools.traffic.runner import QUESTION_HISTORY, process_traffic_profile, stream_traffic
from streams.tools.traffic.schedule import Outgoing
from streams.tools.worker_launcher import EMBEDDED_BROKER_ENV, WorkerProcess

if TYPE_CHECKING:
    from sinks.clickhouse import ClickHouseStore

MARKER = ".forewarn-demo"
# The packaged default, with a payment dwell and a cart hesitation a one-minute demo can show, and a
# churn horizon that its two weeks of history pass twice over: with a session every two days on
# average (VISIT_GAP_DAYS), a week without one is rare for an engaged user (benchmarks/models.py
# measures the churn model on the same horizon).
DEMO_POLICY = """# The demo's policy: the packaged default, with durations a one-minute demo can show.
[triggers.payment_assist]
dwell = "30s"

[triggers.recommendation]
hesitation = "20s"

[models]
churn_horizon = "7d"
"""
DEMO_USERS = 600  # every one of them visits in the history; most come back in the live minute
# The live part's sessions also bring new users (a third or so): the models meet users without a history,
# and devices are registered, and repairs asked, in the live part only. Not in the history: produced
# at full speed, topics are read in no set order between them, and a repair request read before the
# registration of its device (on another topic) would open a manual ticket the ground truth does not
# expect.
LIVE_NEW_USERS = 300
HISTORY_DAYS = 14.0
HISTORY_REPORT_SECONDS = 3.0  # how often the replay's progress is printed
CATCH_UP_LIMIT = 240.0  # the live part starts after this long even if the worker has not caught up
# The traffic of `forewarn traffic` (streams.tools.traffic.runner), faster: logistics steps a few seconds
# apart, so that a one-minute demo shows delays too; ratings of support contacts, repairs, corrections and CRM
# updates come within seconds for the same reason.
DEMO_PACE = {
    "shipment_step_seconds": (1.0, 4.0),
    "support_feedback_delay": 8.0,
    "repair_after_seconds": (5.0, 20.0),
    "label_after_seconds": (3.0, 15.0),
    "crm_update_after_seconds": (5.0, 30.0),
    # Some carts wait while their user browses on, past the demo's 20 s hesitation: recommendations.
    "cart_hesitation_share": 0.3,
    "cart_hesitation_seconds": (25.0, 50.0),
    "cart_hesitation_step": (5.0, 15.0),
}
# At-risk users drift away within the history's two weeks: engagement x0.75 a session (the default
# 0.9 takes the benchmark's six weeks to show; at 0.9 the churn model's ROC AUC against "is at-risk"
# after the history is about 0.64, at 0.75 about 0.78, measured in-process on the demo's traffic).
DEMO_AT_RISK_SESSION_FACTOR = 0.75
# The planted hot issue: pairing questions about Echo Two, some 2 more a second for a while, against a
# steady rate of a few a day; rising far above its baseline, it is what the detector should report.
SURGE_PRODUCT, SURGE_TOPIC = "headphones-echo-2", "pairing"
SURGE_PER_SECOND = 2.0
# The FAQ forecast of a launch (models.launch_faq): two headphone launches early in the support
# questions' history (days after the first question), learnt from, and one a day and a bit before the
# live part (days before it), whose forecast is shown against the traffic's true topic mix.
FAQ_EARLIER = (("headphones-echo-air", "Echo Air", 0.2), ("headphones-echo-sport", "Echo Sport", 1.0))
FAQ_PRODUCT, FAQ_PRODUCT_NAME, FAQ_PRODUCT_AGE = "headphones-echo-3", "Echo Three", 1.2


def demo_catalog(now: float, history_days: float) -> Catalog:
    """The packaged catalog with the demo's three headphone launches, dated from ``now`` (when the
    demo starts): the earlier two after the first support question (``history_days`` of history, or
    the questions' own eight days if longer), :data:`FAQ_PRODUCT` :data:`FAQ_PRODUCT_AGE` days before.

    >>> catalog = demo_catalog(1_790_000_000.0, 14.0)
    >>> [(p.product_id, round((1_790_000_000.0 - p.launched_at) / DAY, 1))
    ...  for p in catalog.launches("headphones")][-3:]
    [('headphones-echo-air', 13.8), ('headphones-echo-sport', 13.0), ('headphones-echo-3', 1.2)]
    >>> from streams.processes.catalog import parse_catalog
    >>> parse_catalog(orjson.loads(catalog_json(catalog)), "demo") == catalog  # the worker's file
    True
    """
    catalog = load_catalog()
    first_question = now - max(history_days * DAY, QUESTION_HISTORY)
    launches = [(pid, name, first_question + days * DAY) for pid, name, days in FAQ_EARLIER]
    launches.append((FAQ_PRODUCT, FAQ_PRODUCT_NAME, now - FAQ_PRODUCT_AGE * DAY))
    for product_id, name, launched_at in launches:
        catalog.products[product_id] = Product(product_id, "headphones", name, launched_at)
    return catalog


def catalog_json(catalog: Catalog) -> bytes:
    """``catalog`` as a catalog file (:mod:`streams.processes.catalog`), for the worker."""
    return orjson.dumps(
        {
            "currency": catalog.currency,
            "products": [
                {"product_id": p.product_id, "category": p.category, "name": p.name,
                 "launched_at": iso_time(p.launched_at)}
                | ({} if p.expected_volume is None else {"expected_volume": p.expected_volume})
                for p in catalog.products.values()
            ],
            "skus": [
                {"sku": k.sku, "product_id": k.product_id, "name": k.name, "price": k.price}
                | ({} if k.max_quantity is None else {"max_quantity": k.max_quantity})
                for k in catalog.skus.values()
            ],
        }
    )  # fmt: skip


# --- the support-load forecast's planted campaigns (streams.tools.traffic.contacts)

CAMPAIGN_HOURS = 6.0
CAMPAIGN_UPLIFT = 1.5  # 2.5 times the contacts on chat and phone while it runs; not stated in its message


def demo_contacts(end: float) -> ContactShape:
    """Support contacts for a history ending at ``end``: seasonal per channel, with two campaigns on
    chat and phone, the same hours a week apart, the second ending at least 2 hours before ``end`` (so
    that its peak is in the history, and forecast before it came). Neither states its uplift: the
    forecast learns it from the first.

    >>> shape = demo_contacts(1_767_571_200.0 + 14 * DAY + 5 * 3600)  # a Monday 05:00 UTC: Thursdays
    >>> [(c.campaign_id, (c.starts_at - 1_767_571_200.0) / DAY) for c in shape.campaigns]
    [('autumn-sale', 3.375), ('winter-sale', 10.375)]
    """
    # The latest Tuesday, Wednesday or Thursday at 09:00 UTC ending 2 hours before the history does:
    # mid-week, where the weekly season is near 1 (the history's one week of it has not taught it yet).
    start = (end // DAY) * DAY + 9 * 3600
    while start + CAMPAIGN_HOURS * 3600 > end - 2 * 3600 or (int(start // DAY) + 3) % 7 not in (1, 2, 3):
        start -= DAY
    hours = CAMPAIGN_HOURS * 3600
    campaigns = (
        PlantedCampaign("autumn-sale", "Autumn sale", start - 7 * DAY, start - 7 * DAY + hours,
                        ("chat", "phone"), CAMPAIGN_UPLIFT),
        PlantedCampaign("winter-sale", "Winter sale", start, start + hours,
                        ("chat", "phone"), CAMPAIGN_UPLIFT),
    )  # fmt: skip
    return ContactShape(campaigns=campaigns)


def demo_profile(sessions_per_second: float, policy: Policy, history_days: float) -> TrafficProfile:
    """The demo's traffic: every kind of it (:func:`process_traffic_profile`) at the demo's pace, over
    :data:`DEMO_USERS` users whose at-risk ones drift away faster; support questions' own history only
    for what the replayed history does not cover of the eight days hot-issue detection needs.

    >>> policy = load_policy(text=DEMO_POLICY)
    >>> profile = demo_profile(20.0, policy, 14.0)
    >>> profile.users, profile.support_history_seconds, profile.behaviour["at_risk"].session_factor
    (600, 0.0, 0.75)
    >>> profile.devices_share, demo_profile(20.0, policy, 0.0).devices_share  # see LIVE_NEW_USERS
    (0.0, 0.3)
    >>> demo_profile(20.0, policy, 0.0).support_history_seconds == QUESTION_HISTORY
    True
    """
    profile = dataclasses.replace(process_traffic_profile(sessions_per_second, policy), **DEMO_PACE)
    behaviour = dict(profile.behaviour)
    behaviour["at_risk"] = dataclasses.replace(
        behaviour["at_risk"], session_factor=DEMO_AT_RISK_SESSION_FACTOR
    )
    return dataclasses.replace(
        profile,
        users=DEMO_USERS,
        behaviour=behaviour,
        support_history_seconds=max(0.0, QUESTION_HISTORY - history_days * DAY),
        devices_share=0.0 if history_days > 0 else profile.devices_share,
    )


def live_changes(
    sessions_per_second: float, policy: Policy, surge: Surge, history_days: float
) -> dict[str, Any]:
    """What changes in the demo's traffic profile when the live part starts (after a history: more
    users, and the devices the history leaves out).

    >>> from streams.tools.traffic.profile import Surge
    >>> surge = Surge(SURGE_PRODUCT, SURGE_TOPIC, 10.0, 20.0, 50.0)
    >>> policy = load_policy(text=DEMO_POLICY)
    >>> sorted(live_changes(20.0, policy, surge, 14.0)), sorted(live_changes(20.0, policy, surge, 0.0))
    (['devices_share', 'sessions_per_second', 'surge', 'users'], ['sessions_per_second', 'surge'])
    """
    changes: dict[str, Any] = {"sessions_per_second": sessions_per_second, "surge": surge}
    if history_days > 0:
        changes["users"] = DEMO_USERS + LIVE_NEW_USERS
        changes["devices_share"] = process_traffic_profile(sessions_per_second, policy).devices_share
    return changes


def _prepare(workdir: Path) -> None:
    """Start from a clean demo directory; refuse to wipe a directory the demo did not make."""
    if workdir.exists():
        if any(workdir.iterdir()) and not (workdir / MARKER).exists():
            raise SystemExit(f"{workdir} exists and is not a demo directory; choose another --workdir")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / MARKER).touch()


class _Tally:
    """What the demo has seen go by, and what the traffic's ground truth says is due by now. Decisions
    on events before ``live_from`` (the replayed history's) are kept apart from the live ones."""

    def __init__(self, dwell_seconds: float, live_from: float = 0.0) -> None:
        self.dwell_seconds = dwell_seconds
        self.live_from = live_from
        self.sent = 0  # live messages
        self.replayed = 0  # history messages
        self.for_rounds = 0  # ... of them, those for users' rounds (ROUND_TOPICS)
        self.by_topic: Counter[str] = Counter()  # history and live
        self.until = 0.0  # the traffic sent is everything with an event time up to here
        self.due: Counter[str] = Counter()
        # trigger -> intervention id -> its latest decision ("sent", "deferred" or the reason held back)
        self.decided: dict[str, dict[str, str]] = {trigger: {} for trigger in TRIGGERS}
        self.history: dict[str, dict[str, str]] = {}  # the same, for the history's events
        self.users: dict[str, str] = {}  # intervention id -> user id
        self.dead_letters: Counter[str] = Counter()
        self.outcomes = 0
        self.desk: ServiceDesk | None = None  # the simulated departments, and what they sent
        self.examples: dict[str, dict] = {}
        # (event time it falls due, trigger); messages come in event-time order, so this stays sorted.
        self._waiting: deque[tuple[float, str]] = deque()

    def replayed_message(self, outgoing: Outgoing) -> None:
        self.replayed += 1
        self.for_rounds += outgoing.topic in ROUND_TOPICS
        self.by_topic[outgoing.topic] += 1

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
        live = datetime.fromisoformat(decision["event_time"]).timestamp() >= self.live_from
        self.users[decision["intervention_id"]] = decision["user_id"]
        (self.decided if live else self.history).setdefault(decision["trigger"], {})[
            decision["intervention_id"]
        ] = label


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


def _progress(tally: _Tally, elapsed: float, duration: float, models: list[str]) -> str:
    parts = []
    for trigger in TRIGGERS:
        labels = Counter(tally.decided[trigger].values())
        shown = ", ".join(f"{count} {label}" for label, count in labels.most_common())
        parts.append(f"{trigger} {len(tally.decided[trigger])}/{tally.due[trigger]} decided ({shown or '-'})")
    fired = ", ".join(f"{name} {len(tally.decided.get(name, {}))}" for name in models)
    return (
        f"[{elapsed:4.0f}s/{duration:.0f}s] events {tally.sent:6d} ({tally.sent / max(elapsed, 1):4.0f}/s)"
        f" | {' | '.join(parts)} | model-driven fired: {fired or '-'}"
        f" | dead letters {sum(tally.dead_letters.values())}"
    )


# The traffic's topics whose events all go through a user's round.
ROUND_TOPICS = frozenset({CLICKSTREAM, LOGISTICS, PREFERENCES, SUBSCRIPTIONS})
# Events that do not go through a user's round (forewarn_event_processing_seconds): support questions
# (their own agent) and process inputs (devices, repair and order requests, CRM attributes).
NOT_ROUNDS = frozenset(
    {"question_asked", "device_registered", "repair_requested", "order_requested", "crm_attributes"}
)
# The replay waits while more events than this wait for their user's round: a worker far behind would
# let its timer ticks wait past their resend time (streams.domain.triggers.TICK_RESEND_SECONDS) and
# send them again and again.
REPLAY_BACKLOG = 300
REPLAY_CHECK_EVERY = 150  # messages replayed between two looks at the worker's backlog


@dataclasses.dataclass
class WorkerFigures:
    """What the worker's Prometheus endpoint says: messages taken in (valid events and dead letters),
    consumer lag over every group and partition it reports, examples learned per model."""

    ingested: float = 0.0
    lag: float = 0.0
    examples: Counter[str] = dataclasses.field(default_factory=Counter)
    labels: Counter[str] = dataclasses.field(default_factory=Counter)  # "model label" -> examples
    for_users: float = 0.0  # valid events taken in that go through a user's round
    processed: float = 0.0  # ... and those the per-user agent has processed
    dead_letters: float = 0.0

    @property
    def backlog(self) -> float:
        """Events taken in and waiting for their user's round."""
        return max(0.0, self.for_users - self.processed)


def worker_figures(text: str) -> WorkerFigures:
    """Read :class:`WorkerFigures` from the Prometheus text exposition ``text``.

    >>> figures = worker_figures('forewarn_events_total{topic="clickstream",event_type="search"} 7.0\\n'
    ...     'forewarn_model_examples_total{model="churn",label="stayed"} 3.0\\n'
    ...     'forewarn_model_examples_total{model="churn",label="churned"} 1.0\\n'
    ...     'forewarn_consumer_lag_messages{group="g",topic="t",partition="0"} 2.0\\n')
    >>> figures.ingested, figures.lag, figures.examples["churn"], figures.backlog
    (7.0, 2.0, 4.0, 7.0)
    """
    figures = WorkerFigures()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ("forewarn_events_total", "forewarn_dead_letters_total"):
                figures.ingested += sample.value
                if sample.name == "forewarn_dead_letters_total":
                    figures.dead_letters += sample.value
                if sample.name == "forewarn_events_total" and sample.labels["event_type"] not in NOT_ROUNDS:
                    figures.for_users += sample.value
            elif sample.name == "forewarn_event_processing_seconds_count":
                figures.processed += sample.value
            elif sample.name == "forewarn_consumer_lag_messages":
                figures.lag += sample.value
            elif sample.name == "forewarn_model_examples_total":
                figures.examples[sample.labels["model"]] += sample.value
                figures.labels[f"{sample.labels['model']} {sample.labels['label']}"] += sample.value
    return figures


def _scrape(url: str) -> WorkerFigures | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return worker_figures(response.read().decode())
    except OSError:
        return None


def _history_line(tally: _Tally, plan: HistoryPlan, clock: float, figures: WorkerFigures | None) -> str:
    day, days = (clock - plan.start) / DAY, (plan.end - plan.start) / DAY
    line = f"[history] day {day:4.1f}/{days:.0f} replayed: {tally.replayed:6d} events sent"
    if figures is not None:
        examples = ", ".join(f"{model} {count:.0f}" for model, count in sorted(figures.examples.items()))
        line += (
            f"; worker took in {figures.ingested:.0f}, per-user backlog {figures.backlog:.0f};"
            f" examples learned: {examples or 'none yet'}"
        )
    return line


async def _replay(
    producer: AIOKafkaProducer,
    generator: TrafficGenerator,
    settings: Settings,
    plan: HistoryPlan,
    tally: _Tally,
    metrics_url: str,
    stop: asyncio.Event,
) -> WorkerFigures | None:
    """Replay the history, then wait until the worker has read it all (no lag, nothing more taken in
    for a second, at least one lag report after the last message); the worker's figures then."""
    clock = plan.start

    def step(now: float, sent: list[Outgoing]) -> None:
        nonlocal clock
        clock = tally.until = now
        for outgoing in sent:
            tally.replayed_message(outgoing)

    checked = 0

    async def pace() -> None:
        """Hold the replay while the worker's per-user agent is more than REPLAY_BACKLOG behind."""
        nonlocal checked
        if tally.replayed - checked < REPLAY_CHECK_EVERY:
            return
        checked = tally.replayed
        while not stop.is_set():
            figures = await asyncio.to_thread(_scrape, metrics_url)
            # Not yet through a user's round: the valid ones of what was replayed for them (an
            # estimate: dead letters of other topics and the notifier's outcomes make it lower).
            if (
                figures is None
                or tally.for_rounds - figures.dead_letters - figures.processed <= REPLAY_BACKLOG
            ):
                return
            await asyncio.sleep(0.2)

    started = time.time()
    producing = asyncio.create_task(replay_history(producer, generator, settings, plan, step, pace))
    figures, previous, produced_at = None, None, None
    while not stop.is_set() and time.time() - started < CATCH_UP_LIMIT:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(producing), HISTORY_REPORT_SECONDS)
        if producing.done() and produced_at is None:
            producing.result()  # its error, if it failed
            produced_at = time.time()
        figures = await asyncio.to_thread(_scrape, metrics_url)
        print(_history_line(tally, plan, clock, figures), flush=True)
        if (
            produced_at is not None
            and figures is not None
            and previous is not None
            and figures.lag == 0
            and figures.backlog == 0
            and figures.ingested == previous.ingested
            and time.time() - produced_at > 2 * HISTORY_REPORT_SECONDS
        ):
            break
        previous = figures
    if not producing.done():
        producing.cancel()
    print(f"[history] replayed {tally.replayed} events in {time.time() - started:.0f}s", flush=True)
    return figures


async def _stream(
    bootstrap: str,
    settings: Settings,
    policy: Policy,
    generator: TrafficGenerator,
    duration: float,
    sessions_per_second: float,
    plan: HistoryPlan | None,
    metrics_url: str,
) -> _Tally:
    dwell = policy.for_signal("payment_dwell")
    tally = _Tally(dwell.params["dwell"] if dwell else float("inf"), plan.end if plan else 0.0)
    models = [trigger.name for trigger in model_triggers(policy)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    watcher = asyncio.create_task(_watch(bootstrap, settings, tally, stop))
    # Outcomes at the interventions' event times: the history's are in the past (see run_notifier).
    notifier = asyncio.create_task(run_notifier(bootstrap, settings, stop, at_event_time=True))
    # The service desk and the teams answer tickets and feedback (streams.tools.service_desk); stopped
    # with the traffic, so that the worker takes in their last updates before it stops.
    desk_stop = asyncio.Event()
    desk = asyncio.create_task(
        respond(bootstrap, settings, desk_stop, ServiceDesk(seed=7, profile=DEMO_DESK))
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10)
    await producer.start()
    interactive = sys.stdout.isatty()
    try:
        if plan is not None:
            figures = await _replay(producer, generator, settings, plan, tally, metrics_url, stop)
            if figures is not None:
                print(
                    "[history] the models learned "
                    + ", ".join(f"{count:.0f} {model}" for model, count in sorted(figures.examples.items()))
                    + " examples ("
                    + ", ".join(f"{name} {count:.0f}" for name, count in sorted(figures.labels.items()))
                    + f") over the {settings.partitions} partitions (each partition's model fires its"
                    " triggers once it has learned min_examples, 500); interventions decided on it: "
                    + (", ".join(f"{t} {len(d)}" for t, d in sorted(tally.history.items())) or "none"),
                    flush=True,
                )
        started = time.time()
        history_days = 0.0 if plan is None else (plan.end - plan.start) / DAY
        surge = _surge(generator, duration, started)
        generator.resume(started, **live_changes(sessions_per_second, policy, surge, history_days))
        print(
            f"live: {duration:.0f}s of traffic at {sessions_per_second:g} sessions/s; a planted surge of"
            f" support questions: {surge.product_id} / {surge.topic}, about {SURGE_PER_SECOND:g} more a"
            f" second from +{surge.start:.0f}s for {surge.duration:.0f}s",
            flush=True,
        )
        last_report = 0.0

        def tick(now: float, sent: list[Outgoing]) -> None:
            nonlocal last_report
            for outgoing in sent:
                tally.sent_message(outgoing)
            tally.until = now
            tally.advance(now)
            elapsed = now - started
            if interactive or elapsed - last_report >= 5:
                line = _progress(tally, elapsed, duration, models)
                print("\r" + line if interactive else line, end="" if interactive else "\n", flush=True)
                last_report = elapsed

        if not stop.is_set():
            await stream_traffic(producer, generator, settings, stop, started + duration, tick)
        desk_stop.set()
        if not stop.is_set():  # let the last events, and their outcomes, through before stopping
            await asyncio.sleep(4)
    finally:
        stop.set()
        desk_stop.set()
        await producer.stop()
        await watcher
        tally.desk = await desk
        tally.outcomes = sum((await notifier).values())
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
    tally.advance(time.time())
    elapsed = time.time() - started
    print(("\n" if interactive else "") + _progress(tally, elapsed, duration, models))
    return tally


SCORE_COLUMNS = ("purchase", "need_help", "browse", "leave", "churn", "health")


def _scores_by_type(
    rows: list[tuple], at_clicks: list[tuple], user_type: Callable[[str], str | None]
) -> list[str]:
    """The latest scores, averaged per latent user type of the traffic (its ground truth), and the
    churn score's ROC AUC against "is at-risk": of the latest score, and of the latest score published
    on a click (``at_clicks``: user, churn), where the churn model takes its examples."""
    by_type = scores_by_type(
        (user_type(user), dict(zip(SCORE_COLUMNS, scores, strict=True))) for user, *scores in rows
    )
    lines = ["    type          users  " + "  ".join(f"{name:>9s}" for name in SCORE_COLUMNS)]
    for kind in by_type:
        cells = [
            f"{kind.means[name]:9.1f}" if name == "health" else f"{kind.means[name]:9.2f}"
            for name in SCORE_COLUMNS
        ]
        lines.append(f"    {kind.user_type:12s} {kind.users:6d}  " + "  ".join(cells))
    for what, pairs in (
        ("latest score", [(row[0], row[5]) for row in rows]),
        ("latest score published on a click", at_clicks),
    ):
        known = [
            (churn, user_type(user) == "at_risk") for user, churn in pairs if user_type(user) is not None
        ]
        auc = roc_auc([churn for churn, _ in known], [at_risk for _, at_risk in known])
        lines.append(
            f"    ROC AUC of the churn score ({what}) against 'is at-risk':"
            f" {'n/a' if auc is None else f'{auc:.3f}'} over {len(known)} users (0.5: no better than chance)"
        )
    return lines


def _model_triggers(tally: _Tally, policy: Policy, user_type: Callable[[str], str | None]) -> list[str]:
    """Per model-driven trigger: how many fired, live and in the history, and the share that went to
    the latent type it is meant for."""
    lines = [
        "  model-driven triggers against the traffic's ground truth (fired: decided, sent or held back;"
        " 'to it': the share that went to the latent type meant):",
        "    trigger           meant for     live fired   sent   to it   history fired   to it"
        "   live fired by type",
    ]
    for trigger in model_triggers(policy):
        truths = [
            trigger_truth(
                trigger,
                (
                    (user_type(tally.users[i]), label == "sent")
                    for i, label in decided.get(trigger.name, {}).items()
                ),
            )
            for decided in (tally.decided, tally.history)
        ]
        live, history = truths

        def share(truth: TriggerTruth) -> str:
            return "-" if truth.precision is None else f"{truth.precision:.0%}"

        lines.append(
            f"    {trigger.name:17s} {'+'.join(live.meant_for) or '-':12s} {live.fired:10d} {live.sent:6d}"
            f" {share(live):>7s} {history.fired:15d} {share(history):>7s}   "
            + (", ".join(f"{kind} {count}" for kind, count in live.by_type.most_common()) or "-")
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
        "SELECT product_id, topic, observed, expected, statistic, toUnixTimestamp64Milli(detected_at),"
        " forecast FROM hot_issues FINAL ORDER BY detected_at"
    )
    questions = tally.by_topic[SUPPORT_QUESTIONS]
    before = (
        "the replayed history"
        if tally.replayed
        else f"{QUESTION_HISTORY / DAY:.0f} days of history at the start"
    )
    lines = [f"  hot issues ({questions} support questions sent, of them {before}):"]
    if surge is not None and window is not None:
        start = window[0] - surge.start
        lines.append(
            f"    planted: {surge.product_id} / {surge.topic} from +{surge.start:.0f}s to"
            f" +{surge.start + surge.duration:.0f}s, {generator.stats.surge_questions} extra questions"
        )
    else:
        start = tally.until
    for product, topic, observed, expected, statistic, detected, forecast in alerts:
        planted = surge is not None and (product, topic) == (surge.product_id, surge.topic)
        launch = (
            "" if forecast is None else f", {'' if forecast else 'not '}named by its launch's FAQ forecast"
        )
        lines.append(
            f"    raised:  {product} / {topic} at {detected / 1000 - start:+.0f}s, observed {observed:.1f}"
            f" against {expected:.2f} expected, p = {statistic:.1e}{launch}"
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


def _departments(store: ClickHouseStore, tally: _Tally) -> list[str]:
    """The response times ClickHouse measured (the ticket_response and feedback_response views) against
    what the simulated service desk and teams sent (their ground truth), and their bad updates against
    the dead letters."""
    if tally.desk is None:
        return []
    truth = tally.desk.truth(ack_days=3)
    measured = {
        point: (tickets, responded, first, resolved, resolution, reopened)
        for point, tickets, responded, first, resolved, resolution, reopened in store.query(
            # A manual ticket no update reached yet has no point: the desk's queue has it.
            f"SELECT if(service_point_id = '', '{MANUAL_POINT}', service_point_id), count(),"
            " countIf(responded),"
            " quantileExactIf(0.5)(first_response_hours, responded) * 3600,"
            " countIf(resolution_hours IS NOT NULL),"
            " quantileExactIf(0.5)(resolution_hours, resolution_hours IS NOT NULL) * 3600, countIf(reopened)"
            " FROM ticket_response GROUP BY 1 ORDER BY 1"
        )
    }

    def seconds(value: float | None) -> str:
        return "-" if value is None or value != value else f"{value:.1f}s"

    sent = truth["sent"]
    lines = [
        "  cross-department response (the simulated service desk, demo delays in seconds; ClickHouse"
        " against what it sent, measured/truth; an update sent in the last seconds may not be taken in"
        " before the worker stops):",
        "    point                 tickets  responded  first response p50  resolved  resolution p50"
        "  reopened",
    ]
    for point, expected in truth["points"].items():
        tickets, responded, first, resolved, resolution, reopened = measured.get(
            point, (0, 0, None, 0, None, 0)
        )
        lines.append(
            f"    {point:20s}  {tickets:3d}/{expected['tickets']:<3d}"
            f"  {responded:4d}/{expected['responded']:<4d}"
            f"  {seconds(first):>8s}/{seconds(expected['first_response_p50']):<8s}"
            f"  {resolved:3d}/{expected['resolved']:<3d}"
            f"  {seconds(resolution):>7s}/{seconds(expected['resolution_p50']):<7s}"
            f"  {reopened}/{expected['reopened']}"
        )
    feedback = dict(
        (team, (count, acknowledged))
        for team, count, acknowledged in store.query(
            "SELECT team, count(), countIf(acknowledged AND first_response_hours <= 72)"
            " FROM feedback_response GROUP BY team"
        )
    )
    lines.append(
        "    feedback acknowledged within 3 days, measured/truth: "
        + (
            ", ".join(
                f"{team} {feedback.get(team, (0, 0))[1]}/{counts['acknowledged_in_time']} of"
                f" {feedback.get(team, (0, 0))[0]}/{counts['feedback']}"
                for team, counts in truth["teams"].items()
            )
            or "none"
        )
    )
    refused = dict(
        store.query(
            "SELECT reason, count() FROM dead_letters FINAL WHERE reason IN"
            " ('unknown_ticket', 'unknown_feedback', 'out_of_order', 'invalid_transition', 'unknown_status')"
            " GROUP BY reason"
        )
    )
    bad = {kind: count for kind, count in sent.items() if kind not in ("", "duplicate")}
    lines.append(
        f"    updates sent: {sent.get('', 0)} good, {sent.get('duplicate', 0)} again (taken once); bad ones"
        " dead-lettered/sent: "
        + (
            ", ".join(f"{kind} {refused.get(kind, 0)}/{count}" for kind, count in sorted(bad.items()))
            or "none"
        )
    )
    [(share,)] = store.query("SELECT sum(automated) / sum(cases) FROM automation_share")
    lines.append(f"    end-to-end automation share (automation_share view, history included): {share:.1%}")
    return lines


def _launch_faq(store: ClickHouseStore, generator: TrafficGenerator) -> list[str]:
    """The latest FAQ forecast of :data:`FAQ_PRODUCT` for its first two age buckets, against the topics
    the traffic gives it there (its true mix) and those asked, and what the category's all-time top
    five would have named."""
    from sinks.faq import latest_forecast

    product = generator.catalog.products[FAQ_PRODUCT]
    rows = latest_forecast(store, FAQ_PRODUCT)
    if not rows:
        return [f"  FAQ forecast for the launch of {FAQ_PRODUCT}: none stored"]
    asked_before = store.query(
        "SELECT topic FROM support_questions FINAL WHERE category = 'headphones' AND"
        " toUnixTimestamp64Milli(event_time) < {launch:Int64} GROUP BY topic ORDER BY count() DESC LIMIT 5",
        {"launch": round(product.launched_at * 1000)},
    )
    all_time = {topic for (topic,) in asked_before}
    lines = [
        f"  FAQ forecast for the launch of {FAQ_PRODUCT} ({FAQ_PRODUCT_AGE:g} days ago), learnt from"
        f" {', '.join(rows[0].based_on) or 'no earlier launch'} (launch_faq_latest):"
    ]
    for index, (start, end) in enumerate(((0.0, 1.0), (1.0, 3.0))):
        named = [row for row in rows if row.bucket_index == index and row.rank > 0]
        mix = generator.true_mix(FAQ_PRODUCT, product.launched_at + (start + end) / 2 * DAY)
        true_top = sorted(mix, key=mix.__getitem__, reverse=True)[:5]
        asked = store.query(
            "SELECT count() FROM support_questions FINAL WHERE product_id = {product:String}"
            " AND toUnixTimestamp64Milli(event_time) >= {start:Int64}"
            " AND toUnixTimestamp64Milli(event_time) < {end:Int64}",
            {
                "product": FAQ_PRODUCT,
                "start": round((product.launched_at + start * DAY) * 1000),
                "end": round((product.launched_at + end * DAY) * 1000),
            },
        )[0][0]
        hits = len({row.topic for row in named} & set(true_top))
        lines.append(
            f"    days {start:g}-{end:g}: forecast  "
            + (", ".join(f"{row.topic} {row.expected_count:.1f}" for row in named) or "none")
        )
        lines.append(
            f"              true top  {', '.join(true_top)} -> {hits} of {len(true_top)} named"
            f" (the category's all-time top 5: {len(all_time & set(true_top))}); {asked} asked so far"
        )
    return lines


def _support_load(store: ClickHouseStore, generator: TrafficGenerator) -> list[str]:
    """The planted campaign's peak hour on chat: the forecast made at least an hour before it, against
    the contacts counted and the traffic's expected count (with and without the campaign)."""
    from sinks.support_load import forecast_against_actual

    shape = generator.profile.contacts
    counted = store.query(
        "SELECT channel, sum(contacts), count() FROM support_load_actual FINAL"
        " GROUP BY channel ORDER BY channel"
    )
    lines = [
        "  support load: contacts counted per channel in closed 15-minute slots: "
        + (", ".join(f"{channel} {n} in {slots} slots" for channel, n, slots in counted) or "none")
    ]
    if shape is None or not shape.campaigns:
        return lines
    campaign = shape.campaigns[-1]
    truth = ContactTraffic(None, shape, 0)
    quiet = ContactTraffic(None, dataclasses.replace(shape, campaigns=()), 0)
    hours = [campaign.starts_at + k * 3600.0 for k in range(int(CAMPAIGN_HOURS))]

    def expected(traffic: ContactTraffic, hour: float) -> float:
        return sum(traffic.slot_truth("chat", hour + k * 900.0) for k in range(4))

    peak = max(hours, key=lambda hour: expected(truth, hour))
    # Each slot of the hour from the latest forecast made at least an hour before the hour started.
    found = [
        forecast_against_actual(store, "chat", round((peak + k * 900) * 1000), 60 + 15 * k) for k in range(4)
    ]
    when = datetime.fromtimestamp(peak, UTC).strftime("%a %H:%M UTC")
    lines.append(
        f"    planted: campaign {campaign.campaign_id!r} on chat and phone, {CAMPAIGN_HOURS:g} h, x"
        f"{1 + campaign.uplift:g} (its uplift not stated; the same campaign ran a week before); its peak"
        f" chat hour, {when}: {expected(truth, peak):.1f} contacts expected by the traffic"
        f" ({expected(quiet, peak):.1f} without the campaign)"
    )
    slots = [slot for slot in found if slot is not None]
    if len(slots) < len(found):
        lines.append("    no forecast made an hour or more before that hour, or its slots were not closed")
    else:
        forecast, actual = sum(slot[0] for slot in slots), sum(slot[2] for slot in slots)
        lines.append(
            "    forecast made an hour or more before the hour:"
            f" {forecast:.1f} contacts; counted: {actual:.0f}"
        )
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
        ("departments", lambda: _departments(store, tally)),
        ("FAQ forecast", lambda: _launch_faq(store, generator)),
        ("support load", lambda: _support_load(store, generator)),
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
    policy: Policy,
    pseudonymize: Callable[[str], str],
) -> str:
    from sinks.clickhouse import ClickHouseStore
    from sinks.report import format_report, value_report

    # The live part: events from the end of the replayed history on (everything without one).
    live = f"fromUnixTimestamp64Milli({round(tally.live_from * 1000)})"
    store = ClickHouseStore(dsn)
    try:
        by_type = store.query(
            "SELECT source, event_type, sum(events) FROM events_per_minute"
            f" WHERE minute >= toStartOfMinute({live}) GROUP BY ALL ORDER BY 1, 3 DESC"
        )
        stored, stored_live = store.query(f"SELECT count(), countIf(event_time >= {live}) FROM events FINAL")[
            0
        ]
        triggers = store.query(
            "SELECT trigger, count(), round(avg(toUnixTimestamp64Milli(decided_at)"
            " - toUnixTimestamp64Milli(event_time)))"
            f" FROM interventions FINAL WHERE event_time >= {live} GROUP BY trigger ORDER BY trigger"
        )
        decisions = store.query(
            f"SELECT trigger, decision, reason, count() FROM decisions FINAL WHERE event_time >= {live}"
            " GROUP BY ALL ORDER BY trigger, decision, count() DESC"
        )
        outcomes = store.query(
            f"SELECT outcome, count() FROM intervention_outcomes FINAL WHERE event_time >= {live}"
            " GROUP BY 1 ORDER BY 2 DESC"
        )
        dead = store.query("SELECT reason, count() FROM dead_letters FINAL GROUP BY reason ORDER BY 2 DESC")
        minutes = store.query(
            f"SELECT minute, sum(events) FROM events_per_minute WHERE minute >= toStartOfMinute({live})"
            " GROUP BY minute ORDER BY minute"
        )
        scores = store.query(
            "SELECT user_id, intent_purchase, intent_need_help, intent_browse, intent_leave, churn, health"
            " FROM user_scores_latest FINAL"
        )
        at_clicks = store.query(
            "SELECT s.user_id, argMax(s.churn, s.scored_at) FROM user_scores AS s"
            " INNER JOIN (SELECT event_id FROM events WHERE source = 'clickstream') AS e"
            " ON e.event_id = s.event_id GROUP BY s.user_id"
        )
        scored = store.query(
            f"SELECT count(), countIf(scored_at >= {live}), max(intent_examples), max(churn_examples)"
            " FROM user_scores FINAL"
        )[0]
        value = format_report(value_report(store))
        processes = _processes(store, generator, tally, settings)
    finally:
        store.close()
    # ClickHouse holds pseudonyms: map the traffic's users to theirs to find their latent types.
    types = {pseudonymize(user): generator.user_type(user) for user in generator.seen_users()}
    raw = sum(generator.user_type(user) is not None for user, *_ in scores)  # should be none
    history = tally.replayed > 0
    lines = [
        f"\nRead back from ClickHouse ({dsn})"
        + (", the live part only unless said (events from the end of the history on):" if history else ":"),
        f"  events stored: {stored_live}"
        + (f" (and {stored - stored_live} of the history)" if history else ""),
    ]
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
    lines.append(f"  outcomes reported by the example notifier ({tally.outcomes} sent, history included):")
    lines += [f"    {outcome:20s} {count}" for outcome, count in outcomes] or ["    none"]
    lines.append("  dead letters by reason" + (" (history included):" if history else ":"))
    lines += [f"    {reason:20s} {count}" for reason, count in dead] or ["    none"]
    for trigger, example in sorted(tally.examples.items()):
        offer, evidence = (orjson.dumps(example[key]).decode() for key in ("offer", "evidence"))
        lines.append(
            f"  example {trigger}: {example['reason']}; channel {example['channel']}, offer {offer};"
            f" evidence {evidence}"
        )
    # The decisions topic carries the traffic's own user ids.
    lines += _model_triggers(tally, policy, generator.user_type)
    lines.append(
        f"  user scores: {scored[0]} published ({scored[1]} in the live part) for {len(scores)} users; the"
        f" models of a partition had learned up to {scored[2]} intent and {scored[3]} churn examples (a churn"
        " label needs the user back in a later visit, a cancellation, or the"
        f" {policy.models.churn_horizon / DAY:g}-day horizon)"
    )
    lines.append(
        f"  user ids in user_scores_latest: {sum(user in types for user, *_ in scores)} pseudonyms of the"
        f" traffic's users, {raw} raw ids"
    )
    lines.append("  latest score of each user by the traffic's latent user type (its ground truth), means:")
    lines += _scores_by_type(scores, at_clicks, types.get) if scores else ["    none"]
    lines += processes
    lines += [
        "",
        "Value metrics (forewarn report), treatment against holdout"
        + (", history and live part:" if history else ":"),
        value,
    ]
    return "\n".join(lines)


def run_demo(
    duration: float,
    sessions_per_second: float,
    workdir: str,
    seed: int,
    metrics_port: int = 0,
    history_days: float = HISTORY_DAYS,
) -> int:
    # The worker logs to its own file; the demo's own Kafka clients need not narrate their group joins.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    root = Path(workdir).resolve()
    _prepare(root)
    policy_file = root / "policy.toml"
    policy_file.write_text(DEMO_POLICY)
    policy = load_policy(str(policy_file))
    catalog = demo_catalog(time.time(), history_days)
    (root / "catalog.json").write_bytes(catalog_json(catalog))
    broker = start_broker(log_path=root / "broker.log")
    listener = CompatListener(broker.port, free_port()).start()  # for kcat on librdkafka before 2.2
    dsn = f"chdb://{root / 'clickhouse'}"
    env = {
        "FOREWARN_BROKER_URL": broker.url,
        "FOREWARN_CLICKHOUSE_DSN": dsn,
        "FOREWARN_DATA_DIR": str(root / "worker"),
        "FOREWARN_PARTITIONS": "4",
        "FOREWARN_POLICY_FILE": str(policy_file),
        "FOREWARN_CATALOG_FILE": str(root / "catalog.json"),
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
        metrics_url = f"http://127.0.0.1:{worker.metrics_port}/metrics"
        print(
            f"worker ready (pid {worker.pid}, log {worker.log_path}, metrics {metrics_url});"
            f" policy: default with {policy_file}; 'x/y decided': decisions made / interventions the"
            " traffic's ground truth makes due"
        )
        # The history ends now, before the live part starts (once the worker has read it).
        plan = plan_history(history_days, DEMO_USERS, time.time())
        profile = demo_profile(
            plan.sessions_per_second if plan else sessions_per_second, policy, history_days
        )
        profile.catalog = catalog
        if plan is not None:
            profile.contacts = demo_contacts(plan.end)
        generator = TrafficGenerator(profile, seed=seed, start=plan.start if plan else None)
        if plan is None:
            print(
                f"no history (--no-history): support questions' {QUESTION_HISTORY / DAY:.0f} days of history"
                " go first (so the first batch is large); the models start from nothing"
            )
        else:
            print(
                f"history: {history_days:g} days of traffic of {DEMO_USERS} users (a session each every"
                f" {VISIT_GAP_DAYS:g} days on average, about {plan.sessions:.0f} sessions) replayed at full"
                " speed, event times in the past; then the live part"
            )
        tally = asyncio.run(
            _stream(
                broker.bootstrap,
                settings,
                policy,
                generator,
                duration,
                sessions_per_second,
                plan,
                metrics_url,
            )
        )
    except (RuntimeError, TimeoutError) as error:  # the worker did not start: say why, stop the rest
        raise SystemExit(str(error)) from None
    finally:
        if worker.running():
            print("stopping the worker (it flushes the ClickHouse sink and commits) ...")
        worker.stop()
        listener.stop()
        broker.stop()
    print(_summary(dsn, tally, generator, settings, policy, pseudonymize))
    return 0


# The demo's departments: tickets answered within seconds (the live part is a minute), feedback as the
# default profile answers it (days: the history's feedback is acknowledged in the past).
DEMO_DESK = DeskProfile(first_response=3.0, step=4.0)


def _surge(generator: TrafficGenerator, duration: float, start: float) -> Surge:
    """The planted surge: SURGE_PER_SECOND more questions on the topic from a quarter into the live
    part, for half of it (at most 20 s), against the topic's steady rate (from the seed's topic mixes)."""
    rate = generator.topic_rate(SURGE_PRODUCT, SURGE_TOPIC, start)
    begin, length = min(10.0, duration / 4), min(20.0, duration / 2)
    return Surge(SURGE_PRODUCT, SURGE_TOPIC, begin, length, 1.0 + SURGE_PER_SECOND / rate)
