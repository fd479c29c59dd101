"""Synthetic web and logistics traffic, seeded and deterministic, with a known ground truth: the
:class:`TrafficGenerator` that interleaves every source of :mod:`streams.tools.traffic`.

Sessions start at a steady rate (Poisson arrivals), each of a user of the seeded population
(:mod:`~streams.tools.traffic.population`) not in a session already. A new user's preferences,
subscription, CRM attributes and devices come first (:mod:`~streams.tools.traffic.preferences`,
:mod:`~streams.tools.traffic.subscriptions`, :mod:`~streams.tools.traffic.crm`,
:mod:`~streams.tools.traffic.repairs`); then the session (:mod:`~streams.tools.traffic.clickstream`),
with the shipments of its orders (:mod:`~streams.tools.traffic.logistics`) and the ratings
(:mod:`~streams.tools.traffic.feedback`), and sometimes an order asked in the chat
(:mod:`~streams.tools.traffic.order_requests`). Support questions about products
(:mod:`~streams.tools.traffic.support_questions`) come on a clock of their own. A share of
deliberately broken messages can be mixed in.

:meth:`TrafficGenerator.due` returns every message whose event time has come, in event-time order, so
calling it with the wall clock streams live traffic, and with a fast-moving clock replays it quickly.
No user has two sessions at once, so :class:`~streams.tools.traffic.schedule.TrafficStats` counts
exactly the interventions the pipeline should emit: one ``payment_assist`` per lingering payment, one
``delay_notice`` per delayed or exception shipment.

**Process traffic**, off by default: devices and repairs, order requests from the chat, chats during
sessions (:mod:`~streams.tools.traffic.chats`), comments on feedback and their corrections, support
questions with a history and an optional planted surge, CRM attributes. Each feature draws from a
random stream of its own, so with all of them off the stream is byte for byte what it was before they
existed. The ground truth: :meth:`~TrafficGenerator.expected_tickets`,
:meth:`~TrafficGenerator.expected_orders`, :meth:`~TrafficGenerator.feedback_truth`,
:meth:`~TrafficGenerator.chat_truth`, :meth:`~TrafficGenerator.surge_window` (and the stats).

>>> generator = TrafficGenerator(TrafficProfile(sessions_per_second=2.0), seed=1, start=1_000.0)
>>> messages = generator.due(1_000.0 + 600)
>>> sorted({m.topic for m in messages}), generator.stats.sessions > 1000
(['clickstream', 'logistics'], True)
>>> all(a.event_time <= b.event_time for a, b in zip(messages, messages[1:]))
True
>>> from streams.tools.traffic.profile import Surge
>>> start = 1_764_000_000.0  # 2025-11-24
>>> profile = TrafficProfile(sessions_per_second=2.0, devices_share=0.5, repair_share=0.5,
...                          order_request_share=0.2, support_question_rate=0.5,
...                          surge=Surge("headphones-echo-buds", "pairing", 60.0, 60.0, 100.0))
>>> generator = TrafficGenerator(profile, seed=1, start=start)
>>> messages = generator.due(start + 600)
>>> sorted({m.topic for m in messages})
['clickstream', 'devices', 'logistics', 'order_requests', 'service_requests', 'support']
>>> sum(generator.expected_orders().values()) == generator.stats.order_requests > 100
True
>>> generator.stats.surge_questions > 10, generator.surge_window() == (start + 60, start + 120)
(True, True)
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import Counter
from typing import Any

from streams.contracts.events import (
    CONVERSATIONS,
    CRM_UPDATES,
    DEVICES,
    ORDER_REQUESTS,
    SERVICE_REQUESTS,
    SUPPORT_QUESTIONS,
)
from streams.processes.catalog import load_catalog
from streams.processes.tickets import ServicePoint, load_service_points
from streams.tools.traffic.chats import Chats, ChatTruth
from streams.tools.traffic.clickstream import WebSessions
from streams.tools.traffic.contacts import ContactShape, ContactTraffic
from streams.tools.traffic.crm import Crm
from streams.tools.traffic.feedback import FEEDBACK_LABELS, Feedback, FeedbackTruth
from streams.tools.traffic.logistics import Shipments
from streams.tools.traffic.order_requests import OrderRequests, OrderTruth
from streams.tools.traffic.population import Population
from streams.tools.traffic.preferences import update_preferences
from streams.tools.traffic.profile import TrafficProfile
from streams.tools.traffic.repairs import DISPATCH_MAX_KM, Repairs, RepairTruth
from streams.tools.traffic.schedule import Outgoing, Schedule
from streams.tools.traffic.subscriptions import Subscriptions
from streams.tools.traffic.support_questions import SupportQuestions, check_surge

PROCESS_TOPICS = (
    DEVICES,
    SERVICE_REQUESTS,
    ORDER_REQUESTS,
    CRM_UPDATES,
    SUPPORT_QUESTIONS,
    FEEDBACK_LABELS,
    CONVERSATIONS,
)


class TrafficGenerator:
    """The traffic of ``profile``, seeded with ``seed``, from ``start`` (epoch seconds; None: the first
    ``due``'s time). Its sources are attributes, wired together here; the ground truth is asked of the
    generator."""

    def __init__(self, profile: TrafficProfile, seed: int = 7, start: float | None = None) -> None:
        self.profile = profile
        self.seed = seed
        self.random = random.Random(seed)
        self.schedule = Schedule(profile, seed, self.random)
        self.stats = self.schedule.stats
        self._next_session = start
        self._start = start
        self.subscriptions = Subscriptions(self.schedule)
        self.population = Population(self.schedule, cancel_subscription=self.subscriptions.cancel)
        self.catalog = profile.catalog if profile.catalog is not None else load_catalog()
        self.service_points = (
            profile.service_points if profile.service_points is not None else load_service_points()
        )
        self.feedback = Feedback(self.schedule, self.catalog)
        self.shipments = Shipments(self.schedule, self.population, self.feedback)
        self.web_sessions = WebSessions(self.schedule, self.population, self.feedback, self.shipments)
        self.crm = Crm(self.schedule)
        self.device_repairs = Repairs(self.schedule, self.catalog, self.service_points)
        self.order_requests = OrderRequests(self.schedule, self.catalog)
        self.support_questions = SupportQuestions(self.schedule, self.catalog)
        self.chats = Chats(self.schedule, self.catalog)
        self.contacts = ContactTraffic(self.schedule, profile.contacts or ContactShape(), seed)

    def due(self, now: float) -> list[Outgoing]:
        """Start the sessions due by ``now`` and return every message whose event time has come."""
        if self._next_session is None:
            self._next_session = now
        if self._start is None:
            self._start = self._next_session
        while self._next_session <= now:
            self._start_session(self._next_session)
            self._next_session += self.random.expovariate(self.profile.sessions_per_second)
        if self.profile.support_question_rate > 0:
            self.support_questions.due(self._start, now)
        if self.profile.contacts is not None:
            self.contacts.shape = self.profile.contacts
            self.contacts.due(self._start, now)
        return self.schedule.due(now)

    def resume(self, at: float, **changes: Any) -> None:
        """Go on as live traffic from ``at``, after a history replayed up to ``at`` or before, with
        ``changes`` to the profile (its fields: ``sessions_per_second``, a ``surge`` timed from ``at``,
        more ``users``...). Sessions start again from ``at`` (none in between); what the history
        scheduled for later (shipments on their way, ratings, repairs) still comes when its time does,
        and so do the steady support questions. Without a history, ``at`` is simply the start.

        >>> generator = TrafficGenerator(TrafficProfile(sessions_per_second=0.01), seed=1, start=0.0)
        >>> history, sessions = generator.due(86_400.0), generator.stats.sessions
        >>> generator.resume(100_000.0, sessions_per_second=2.0)
        >>> live = generator.due(100_060.0)
        >>> 500 < sessions < 1200, 90 < generator.stats.sessions - sessions < 150
        (True, True)
        """
        unknown = set(changes) - {f.name for f in dataclasses.fields(self.profile)}
        if unknown:
            raise ValueError(f"not fields of the traffic profile: {', '.join(sorted(unknown))}")
        if changes.get("surge") is not None:
            check_surge(changes["surge"], self.profile, self.catalog)
        for name, value in changes.items():  # the sources share the profile object
            setattr(self.profile, name, value)
        self._next_session = self._start = at

    def _start_session(self, time: float) -> None:
        profile, population = self.profile, self.population
        self.stats.sessions += 1
        user = population.pick(time)
        if population.meet(user):  # what the other systems send about a new user before the session
            if self.random.random() < profile.preferences_share:
                update_preferences(self.schedule, time, user)
            if self.random.random() < profile.subscription_share:
                self.subscriptions.subscribe(time, user)
            self.crm.first_seen(time, user)
            self.device_repairs.first_seen(time, user)
        self.chats.during_session(time, user, population.user_type(user) or "browser")
        end = self.web_sessions.session(time, user)
        self.order_requests.after_session(end, user)
        population.busy(user, end + 1.0)
        population.disengage(user, population.behaviour(user).session_factor, end)

    # --- ground truth: the population

    def user_type(self, user: str) -> str | None:
        """The latent type of ``user``; None for a user not seen yet."""
        return self.population.user_type(user)

    def engagement(self, user: str) -> float:
        """The chance that ``user`` takes a session when picked, in (0, 1]; 1.0 for a new user."""
        return self.population.engagement(user)

    def churned(self, user: str) -> bool:
        """Whether ``user``'s engagement fell below the profile's ``churn_engagement``: no more sessions."""
        return self.population.churned(user)

    def seen_users(self) -> list[str]:
        """Every user who has had a session, in the order they were first seen."""
        return self.population.seen_users()

    # --- ground truth: the process traffic

    def repairs(self, until: float = math.inf) -> list[RepairTruth]:
        """Every distinct repair request sent (first) by ``until``, as planted."""
        return self.device_repairs.repairs(until)

    def expected_ticket(
        self, repair: RepairTruth, points: list[ServicePoint] | None = None, max_km: float = DISPATCH_MAX_KM
    ) -> str:
        """``assigned`` or the manual-dispatch reason of ``repair`` (:meth:`Repairs.expected_ticket
        <streams.tools.traffic.repairs.Repairs.expected_ticket>`)."""
        return self.device_repairs.expected_ticket(repair, points, max_km)

    def expected_tickets(
        self,
        points: list[ServicePoint] | None = None,
        max_km: float = DISPATCH_MAX_KM,
        until: float = math.inf,
    ) -> Counter[str]:
        """The tickets of the requests sent by ``until``, one per request id (a redelivered request is
        not a ticket again): how many are ``assigned`` and how many are manual, by reason."""
        return self.device_repairs.expected_tickets(points, max_km, until)

    def orders(self, until: float = math.inf) -> list[OrderTruth]:
        """Every distinct order request sent (first) by ``until``, as planted."""
        return self.order_requests.orders(until)

    def expected_orders(self, until: float = math.inf) -> Counter[str]:
        """One decision per request id sent by ``until``: ``accepted``, or rejected by reason."""
        return self.order_requests.expected(until)

    def feedback_truth(self, until: float = math.inf) -> dict[str, FeedbackTruth]:
        """The commented feedback sent by ``until``, by feedback id (the feedback event's id): the
        comment's true tags, its language, and when it is corrected (if it is)."""
        return self.feedback.truth(until)

    def chat_truth(self, until: float = math.inf) -> list[ChatTruth]:
        """The customer chat messages sent by ``until``, as planted: emotion, the user's type and need,
        the product named and the product needed."""
        return self.chats.truth(until)

    def crm_attributes(self, user: str) -> dict[str, object] | None:
        """The latest CRM attributes sent for ``user``; None if none were."""
        return self.crm.attributes(user)

    def topic_rate(self, product_id: str, topic: str, at: float) -> float:
        """The steady rate (questions per second) of ``topic`` on ``product_id`` at ``at``."""
        return self.support_questions.topic_rate(product_id, topic, at)

    def true_mix(self, product_id: str, at: float) -> dict[str, float]:
        """The topic shares of ``product_id``'s support questions at ``at`` (its launch's in its first
        30 days): :meth:`SupportQuestions.true_mix`."""
        return self.support_questions.true_mix(product_id, at)

    def surge_window(self) -> tuple[float, float] | None:
        """When the planted surge runs (epoch seconds); None without one or before the start."""
        return self.support_questions.surge_window(self._start)
