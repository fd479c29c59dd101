"""``forewarn traffic``: the synthetic traffic of :mod:`streams.tools.traffic.generator`, streamed into a
real broker.

It is the demo's traffic (web, logistics, preferences, subscriptions and every process: devices and
repairs, orders from the chat, commented feedback and its corrections, support questions with eight
days of history, CRM attributes; a little malformed input; the planted effect the value report
measures) at the generator's default pace, which is slower than the demo's: shipment updates 3-15 s
apart, ratings a minute after a support contact, repairs and CRM updates up to minutes later. It
produces to ``FOREWARN_BROKER_URL`` with the broker security settings, waits for the broker and the
topics if they are not there yet (``forewarn topics`` creates them), logs what it sent every
:data:`REPORT_SECONDS`, and stops on SIGTERM or SIGINT, or after ``--duration`` seconds.

The demo streams with the same loop (:func:`stream_traffic`) and the same kinds of traffic
(:func:`process_traffic_profile`). Like the example notifier (``forewarn notifier``), it waits for the
broker with :func:`streams.tools.broker_wait.wait_for_topics` and stops with
:func:`streams.tools.signals.stopped_by_signals`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer

from streams.contracts.interventions import PAYMENT_ASSIST
from streams.contracts.settings import Settings
from streams.contracts.time import DAY, HOUR
from streams.domain.experiments import assign_arm
from streams.domain.policy import HOLDOUT, Policy, load_policy
from streams.tools.broker_wait import wait_for_topics
from streams.tools.signals import stopped_by_signals
from streams.tools.traffic.contacts import CAMPAIGNS, ContactShape, PlantedCampaign
from streams.tools.traffic.feedback import FEEDBACK_LABELS
from streams.tools.traffic.generator import TrafficGenerator
from streams.tools.traffic.profile import TrafficProfile
from streams.tools.traffic.schedule import Outgoing

log = logging.getLogger(__name__)

TICK_SECONDS = 0.1  # how often the generator is asked for the messages due
REPORT_SECONDS = 10.0  # how often the runner logs what it sent
# Support questions: about 430 a day over all products, with eight days of them before the start, since
# hot-issue detection (models.surge) watches a product only after a day of its questions, and the
# rising_questions view compares the last day with the week before it.
QUESTION_RATE = 0.005
QUESTION_HISTORY = 8 * DAY


def traffic_topics(settings: Settings) -> dict[str, str]:
    """The topic each kind of the generator's messages (``Outgoing.topic``) is produced to.

    >>> topics = traffic_topics(Settings.from_env({"FOREWARN_TOPIC_LOGISTICS": "shipments"}))
    >>> topics["logistics"], topics["feedback_labels"]
    ('shipments', 'feedback_labels')
    """
    return {
        **settings.source_topics,
        FEEDBACK_LABELS: settings.topic_feedback_labels,
        CAMPAIGNS: settings.topic_campaigns,
    }


def process_traffic_profile(
    sessions_per_second: float, policy: Policy, start: float | None = None
) -> TrafficProfile:
    """Every kind of traffic on, at the generator's default pace. Lingering payment visits stay on the
    page past ``policy``'s payment dwell (a third more, up to three times it), and the users outside
    the holdout arm of its ``payment_assist`` experiment are the treated ones of the planted effect.
    Support contacts come with one campaign on chat and phone, from an hour after ``start`` (now when
    None) for two hours, announced at once.

    >>> profile = process_traffic_profile(5.0, load_policy(text='[triggers.payment_assist]\\ndwell = "30s"'))
    >>> profile.linger_seconds, profile.devices_share > 0, profile.support_history_seconds / DAY
    ((40.0, 90.0), True, 8.0)
    """
    dwell = policy.for_signal("payment_dwell")
    experiment = policy.experiment_of(PAYMENT_ASSIST)
    profile = TrafficProfile(
        sessions_per_second=sessions_per_second,
        malformed_share=0.005,
        preferences_share=0.5,
        subscription_share=0.2,
        treated=None if experiment is None else (lambda user: assign_arm(user, experiment) != HOLDOUT),
        devices_share=0.3,
        repair_share=0.4,
        order_request_share=0.1,
        conversation_share=0.2,
        feedback_comment_share=0.8,
        label_share=0.3,
        support_question_rate=QUESTION_RATE,
        support_history_seconds=QUESTION_HISTORY,
        crm_share=0.3,
    )
    begins = (time.time() if start is None else start) + HOUR
    sale = PlantedCampaign("traffic-sale", "Sale", begins, begins + 2 * HOUR, ("chat", "phone"))
    profile.contacts = ContactShape(campaigns=(sale,))
    if dwell is not None:
        seconds = float(dwell.params["dwell"])
        profile.linger_seconds = (seconds * 4 / 3, seconds * 3)
    return profile


async def stream_traffic(
    producer: AIOKafkaProducer,
    generator: TrafficGenerator,
    settings: Settings,
    stop: asyncio.Event,
    until: float,
    on_tick: Callable[[float, list[Outgoing]], None],
) -> None:
    """Until ``stop`` is set or the wall clock reaches ``until``: every :data:`TICK_SECONDS`, send the
    messages the generator has due to their topics (:func:`traffic_topics`) and call ``on_tick(now,
    sent)``. Everything sent is flushed before it returns."""
    topics = traffic_topics(settings)
    while not stop.is_set() and time.time() < until:
        now = time.time()
        sent = generator.due(now)
        for outgoing in sent:
            await producer.send(topics[outgoing.topic], value=outgoing.value, key=outgoing.key)
        on_tick(now, sent)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TICK_SECONDS)
    await producer.flush()


@dataclass
class _Progress:
    """What the runner has sent, logged every REPORT_SECONDS with the rate since the last line."""

    started: float
    by_topic: Counter[str] = field(default_factory=Counter)
    reported_at: float = 0.0
    reported_total: int = 0

    def __post_init__(self) -> None:
        self.reported_at = self.started

    def tick(self, now: float, sent: list[Outgoing]) -> None:
        self.by_topic.update(outgoing.topic for outgoing in sent)
        if now - self.reported_at >= REPORT_SECONDS:
            self.report(now)

    def report(self, now: float) -> None:
        total = self.by_topic.total()
        rate = (total - self.reported_total) / max(now - self.reported_at, 1e-9)
        shown = ", ".join(f"{topic} {count}" for topic, count in self.by_topic.most_common())
        log.info(
            "%.0f events/s over the last %.0f s; %d sent in %.0f s (%s)",
            rate,
            now - self.reported_at,
            total,
            now - self.started,
            shown or "none",
        )
        self.reported_at, self.reported_total = now, total


def run_traffic(settings: Settings, sessions_per_second: float, duration: float, seed: int | None) -> int:
    """``forewarn traffic``: stream until SIGTERM or SIGINT, or for ``duration`` seconds (0: no end)
    from the first message. Returns the exit code, 0 for a clean stop. ``seed`` None: a new one each
    run (logged), so that a restarted generator does not replay ids the sink would drop as duplicates."""
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    return asyncio.run(_run_traffic(settings, sessions_per_second, duration, seed))


async def _run_traffic(settings: Settings, sessions_per_second: float, duration: float, seed: int) -> int:
    stop = asyncio.Event()
    with stopped_by_signals(stop):
        if not await wait_for_topics(settings, set(traffic_topics(settings).values()), stop):
            return 0
        profile = process_traffic_profile(sessions_per_second, load_policy(settings.policy_file))
        generator = TrafficGenerator(profile, seed=seed)
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            acks="all",
            linger_ms=20,
            **settings.aiokafka_security(),
        )
        await producer.start()
        progress = _Progress(time.time())
        log.info(
            "streaming %g sessions/s (seed %d) to %s%s",
            sessions_per_second,
            seed,
            settings.broker_url,
            f" for {duration:g} s" if duration > 0 else " until stopped",
        )
        try:
            until = progress.started + duration if duration > 0 else math.inf
            await stream_traffic(producer, generator, settings, stop, until, progress.tick)
        finally:
            await producer.stop()
        progress.report(time.time())
    return 0
