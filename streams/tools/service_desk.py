"""A simulated service desk and product and marketing teams: they consume ``tickets`` and
``feedback_tagged`` and answer on ``ticket_updates`` and ``feedback_updates``, as the real departments
would, with delays that are known per service point and team (their ground truth).

It stands in for the other departments in the demo (``forewarn demo`` checks the response times
ClickHouse measures against :meth:`ServiceDesk.truth`), like the example notifier for the outcomes.

Every ticket gets, from a generator seeded with the run's seed and the ticket's id (so a run is
reproducible whatever order the tickets come in): ``accepted`` after an exponential delay of mean
``first_response`` times the point's factor (:func:`point_factor`; a manual ticket is handled by the
dispatchers' queue, :data:`MANUAL_POINT`, ``manual_factor`` slower), then ``technician_assigned``,
``on_site`` and ``resolved``, each after a delay of mean ``step`` times the factor; a share ``cancel``
is cancelled after it is accepted instead, a share ``reopen`` of the resolved is reopened and resolved
again. Each team a feedback was routed to acknowledges it with probability ``acknowledge``, after a
delay of mean ``ack_delay`` of the team, then plans or declines it.

Known bad updates ride along (their share ``bad`` of tickets, each with one): an update for a ticket
that does not exist (``unknown_ticket``), one timed before its ticket (``out_of_order``), one with an
unknown status (``unknown_status``), and for a cancelled ticket a ``resolved`` after the cancellation
(``invalid_transition``); and a share ``duplicate`` of updates is sent twice. An update is sent once
its time has come (never timed in the future), so updates of tickets in the past are sent at once.

>>> desk = ServiceDesk(seed=3, profile=DeskProfile(bad=0.0, duplicate=0.0, reopen=0.0, cancel=0.0))
>>> desk.take_ticket({"ticket_id": "3f0c5f44-1d2e-5c8a-9a8b-0d6c3b1e2f10", "user_id": "u1",
...                   "created_at": "2026-11-02T10:00:00.000Z", "dispatch": "assigned",
...                   "service_point": {"id": "sp-a", "name": "A", "distance_km": 2.0}})
>>> [(planned.event["status"], planned.expect) for planned in desk.due(now=2e9)]
[('accepted', ''), ('technician_assigned', ''), ('on_site', ''), ('resolved', '')]
>>> desk.due(now=2e9)  # each once
[]
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from streams.contracts.settings import Settings
from streams.contracts.time import HOUR, iso_time
from streams.contracts.topics import for_the_broker
from streams.tools.broker_wait import wait_for_topics
from streams.tools.example_clients import example_clients
from streams.tools.signals import stopped_by_signals

log = logging.getLogger(__name__)

DAY = 24 * HOUR
MANUAL_POINT = "desk-dispatch"  # where a manual ticket is handled: the dispatchers' queue
# Every update id is a UUIDv5 in this namespace of the run's seed, the ticket or feedback and the step.
UPDATE_NAMESPACE = uuid.UUID("6a1f3c2e-8d4b-5e7a-9c0f-2b3d4e5f6a7b")


@dataclass(frozen=True, slots=True)
class DeskProfile:
    """How fast and how well the departments answer. Delays in seconds (means of exponentials)."""

    first_response: float = 4 * HOUR  # at a point of factor 1
    step: float = 8 * HOUR  # between the later steps of a ticket
    manual_factor: float = 3.0
    cancel: float = 0.05  # of the tickets: cancelled once accepted
    reopen: float = 0.15  # of the resolved: reopened, then resolved again
    acknowledge: float = 0.9  # of each team's feedback: answered at all
    ack_delay: dict[str, float] = field(
        default_factory=lambda: {"product": 1.5 * DAY, "marketing": 2.5 * DAY}
    )
    default_ack_delay: float = 2 * DAY  # a team not in ack_delay
    decline: float = 0.3  # of the acknowledged: declined; the rest planned
    bad: float = 0.05  # of the tickets: one bad update besides its good ones
    duplicate: float = 0.1  # of the good updates: sent twice

    def scaled(self, factor: float) -> DeskProfile:
        """The same departments with every delay times ``factor`` (the demo's live minute needs seconds)."""
        return DeskProfile(
            first_response=self.first_response * factor,
            step=self.step * factor,
            manual_factor=self.manual_factor,
            cancel=self.cancel,
            reopen=self.reopen,
            acknowledge=self.acknowledge,
            ack_delay={team: delay * factor for team, delay in self.ack_delay.items()},
            default_ack_delay=self.default_ack_delay * factor,
            decline=self.decline,
            bad=self.bad,
            duplicate=self.duplicate,
        )


def point_factor(point_id: str) -> float:
    """How slow a service point is against the profile's delays: 0.5, 1, 1.5 or 2, fixed by its id
    (the dispatchers' queue of manual tickets: see ``manual_factor``).

    >>> point_factor("sp-ber-mitte")
    2.0
    """
    return 0.5 + (zlib.crc32(point_id.encode()) % 4) * 0.5


@dataclass(order=True, slots=True)
class Planned:
    """An update to send at ``time``; ``expect``: "" for a good one, ``duplicate`` for one sent again,
    else the dead-letter reason Forewarn should give it."""

    time: float
    order: int
    topic: str = field(compare=False)  # "ticket_updates" or "feedback_updates"
    event: dict[str, Any] = field(compare=False)
    expect: str = field(compare=False, default="")
    item: str = field(compare=False, default="")  # the ticket id, or feedback id and team


@dataclass(slots=True)
class TicketTruth:
    created_at: float
    point: str
    first_response: float | None = None  # seconds after creation, once the first update was sent
    resolved_at: float | None = None  # the latest resolution sent
    status: str = "open"  # the latest good status sent
    reopened: bool = False


@dataclass(slots=True)
class FeedbackTruth:
    given_at: float
    first_response: float | None = None  # seconds after the feedback, once the team's first was sent


def exact_quantile(values: list[float], level: float) -> float | None:
    """ClickHouse's ``quantileExact``: the element at ``level * n`` of the sorted values.

    >>> exact_quantile([3.0, 1.0, 2.0, 4.0], 0.5), exact_quantile([], 0.5)
    (3.0, None)
    """
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(level * len(ordered)))]


class ServiceDesk:
    """The departments' answers, planned as tickets and feedback are taken and sent as they fall due
    (:meth:`due`), with what was sent kept as the ground truth (:meth:`truth`)."""

    def __init__(self, seed: int = 7, profile: DeskProfile | None = None) -> None:
        self.seed = seed
        self.profile = profile or DeskProfile()
        self.pending: list[Planned] = []
        self.count = 0
        self.tickets: dict[str, TicketTruth] = {}
        self.feedback: dict[tuple[str, str], FeedbackTruth] = {}
        self.sent: Counter[str] = Counter()  # by expect ("" good, duplicate, dead-letter reasons)

    def _rng(self, item: str) -> random.Random:
        return random.Random(f"{self.seed}\x1f{item}")

    def _update_id(self, item: str, step: int) -> str:
        return str(uuid.uuid5(UPDATE_NAMESPACE, f"{self.seed}\x1f{item}\x1f{step}"))

    def _plan(self, at: float, topic: str, event: dict[str, Any], expect: str, item: str) -> None:
        self.count += 1
        heapq.heappush(self.pending, Planned(at, self.count, topic, event, expect, item))

    def take_ticket(self, ticket: dict[str, Any]) -> None:
        """Plan the updates of one ticket (a record of the ``tickets`` topic); a ticket seen before is
        ignored."""
        ticket_id, user_id = ticket["ticket_id"], ticket["user_id"]
        if ticket_id in self.tickets:
            return
        created = datetime.fromisoformat(ticket["created_at"]).timestamp()
        point = (ticket.get("service_point") or {}).get("id") or MANUAL_POINT
        self.tickets[ticket_id] = TicketTruth(created, point)
        profile, rng = self.profile, self._rng(ticket_id)
        factor = point_factor(point) * (profile.manual_factor if point == MANUAL_POINT else 1.0)
        at = created + rng.expovariate(1.0 / (profile.first_response * factor))
        steps = ["accepted"]
        if rng.random() < profile.cancel:
            steps.append("cancelled")
        else:
            steps += ["technician_assigned", "on_site", "resolved"]
            if rng.random() < profile.reopen:
                steps += ["reopened", "on_site", "resolved"]
        times = [at]
        for _ in steps[1:]:
            at += rng.expovariate(1.0 / (profile.step * factor))
            times.append(at)

        def update(number: int, status: str, when: float) -> dict[str, Any]:
            return {
                "event_id": self._update_id(ticket_id, number),
                "event_type": "ticket_updated",
                "event_time": iso_time(when),
                "user_id": user_id,
                "ticket_id": ticket_id,
                "status": status,
                "service_point_id": point,
            }

        for number, (status, when) in enumerate(zip(steps, times, strict=True)):
            good = update(number, status, when)
            self._plan(when, "ticket_updates", good, "", ticket_id)
            if rng.random() < profile.duplicate:
                self._plan(when, "ticket_updates", good, "duplicate", ticket_id)
        if rng.random() < profile.bad:
            self._plan_bad(rng, ticket_id, created, steps, times, update)

    def _plan_bad(
        self,
        rng: random.Random,
        ticket_id: str,
        created: float,
        steps: list[str],
        times: list[float],
        update: Callable[[int, str, float], dict[str, Any]],
    ) -> None:
        """One bad update of the ticket, of a kind drawn from those its steps allow."""
        kinds = ["unknown_ticket", "out_of_order", "unknown_status"]
        if steps[-1] == "cancelled":
            kinds.append("invalid_transition")
        kind = rng.choice(kinds)
        number, last = 100, times[-1]
        if kind == "unknown_ticket":
            bad = {**update(number, "accepted", last), "ticket_id": str(uuid.UUID(int=rng.getrandbits(128)))}
        elif kind == "out_of_order":
            bad = update(number, "accepted", created - 60.0)
            last = max(created, times[0])  # sent with the first good one, timed before the ticket
        elif kind == "unknown_status":
            bad = update(number, "escalated", last)
        else:
            bad = update(number, "resolved", last)
        self._plan(last, "ticket_updates", bad, kind, ticket_id)

    def take_feedback(self, tagged: dict[str, Any]) -> None:
        """Plan each routed team's answer to one tagged feedback (a ``feedback_tagged`` record)."""
        feedback_id, user_id = tagged["feedback_id"], tagged["user_id"]
        given = datetime.fromisoformat(tagged["event_time"]).timestamp()
        profile = self.profile
        for team in tagged.get("teams", []):
            key = (feedback_id, team)
            if key in self.feedback:
                continue
            self.feedback[key] = FeedbackTruth(given)
            rng = self._rng(f"{feedback_id}\x1f{team}")
            if rng.random() >= profile.acknowledge:
                continue
            mean = profile.ack_delay.get(team, profile.default_ack_delay)
            acknowledged = given + rng.expovariate(1.0 / mean)
            decided = acknowledged + rng.expovariate(1.0 / mean)
            then = "declined" if rng.random() < profile.decline else "planned"
            for number, (status, when) in enumerate((("acknowledged", acknowledged), (then, decided))):
                event = {
                    "event_id": self._update_id(f"{feedback_id}\x1f{team}", number),
                    "event_type": "feedback_updated",
                    "event_time": iso_time(when),
                    "user_id": user_id,
                    "feedback_id": feedback_id,
                    "status": status,
                    "team": team,
                }
                self._plan(when, "feedback_updates", event, "", f"{feedback_id}\x1f{team}")
                if rng.random() < profile.duplicate:
                    self._plan(when, "feedback_updates", event, "duplicate", f"{feedback_id}\x1f{team}")

    def due(self, now: float) -> list[Planned]:
        """The updates whose time has come by ``now``, in time order, each once; recorded as sent."""
        ready = []
        while self.pending and self.pending[0].time <= now:
            planned = heapq.heappop(self.pending)
            self._record(planned)
            ready.append(planned)
        return ready

    def _record(self, planned: Planned) -> None:
        self.sent[planned.expect] += 1
        if planned.expect:
            return
        event, at = planned.event, planned.time
        if planned.topic == "ticket_updates":
            truth = self.tickets[planned.item]
            if truth.first_response is None:
                truth.first_response = at - truth.created_at
            truth.status = event["status"]
            truth.reopened |= event["status"] == "reopened"
            if event["status"] == "resolved":
                truth.resolved_at = at
        else:
            feedback = self.feedback[(event["feedback_id"], event["team"])]
            if feedback.first_response is None:
                feedback.first_response = at - feedback.given_at

    def truth(self, ack_days: float = 3.0) -> dict[str, Any]:
        """What was sent, as ClickHouse should measure it: per service point the tickets, first response
        p50 and p90 and resolution p50 (seconds), reopened and ever resolved counts; per team the
        feedback, and the share acknowledged within ``ack_days``; the updates sent by kind."""
        points: dict[str, dict[str, Any]] = {}
        for truth in self.tickets.values():
            entry = points.setdefault(
                truth.point, {"tickets": 0, "first": [], "resolution": [], "reopened": 0}
            )
            entry["tickets"] += 1
            if truth.first_response is not None:
                entry["first"].append(truth.first_response)
            if truth.status == "resolved" and truth.resolved_at is not None:
                entry["resolution"].append(truth.resolved_at - truth.created_at)
            entry["reopened"] += truth.reopened
        teams: dict[str, list[int]] = {}
        for (_, team), feedback in self.feedback.items():
            counts = teams.setdefault(team, [0, 0])
            counts[0] += 1
            counts[1] += feedback.first_response is not None and feedback.first_response <= ack_days * DAY
        return {
            "points": {
                point: {
                    "tickets": entry["tickets"],
                    "responded": len(entry["first"]),
                    "first_response_p50": exact_quantile(entry["first"], 0.5),
                    "first_response_p90": exact_quantile(entry["first"], 0.9),
                    "resolved": len(entry["resolution"]),
                    "resolution_p50": exact_quantile(entry["resolution"], 0.5),
                    "reopened": entry["reopened"],
                }
                for point, entry in sorted(points.items())
            },
            "teams": {
                team: {"feedback": n, "acknowledged_in_time": k} for team, (n, k) in sorted(teams.items())
            },
            "sent": dict(self.sent),
        }


async def respond(
    bootstrap: str | list[str],
    settings: Settings,
    stop: asyncio.Event,
    desk: ServiceDesk,
) -> ServiceDesk:
    """Until ``stop``: take every ticket and tagged feedback and send the departments' updates as they
    fall due (by the wall clock). Returns ``desk``, whose :meth:`ServiceDesk.truth` is what was sent."""
    consumer, producer = example_clients(
        bootstrap, settings, "example-service-desk", settings.topic_tickets, settings.topic_feedback_tagged
    )
    topics = {
        "ticket_updates": settings.topic_ticket_updates,
        "feedback_updates": settings.topic_feedback_updates,
    }
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            for messages in batches.values():
                for message in messages:
                    record = orjson.loads(message.value)
                    if message.topic == settings.topic_tickets:
                        desk.take_ticket(record)
                    else:
                        desk.take_feedback(record)
            for planned in desk.due(time.time()):
                event = planned.event
                await producer.send(
                    topics[planned.topic], value=orjson.dumps(event), key=event["user_id"].encode()
                )
            await producer.flush()
            if batches:
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()
    return desk


def serve_service_desk(settings: Settings, seed: int = 7) -> int:
    """``forewarn service-desk``: :func:`respond` with the default profile against ``settings``' broker
    until SIGTERM or SIGINT, after waiting for the broker and its topics; logs what it sent at the end.
    Returns 0, the exit code of a clean stop."""
    return asyncio.run(_serve(settings, seed))


async def _serve(settings: Settings, seed: int) -> int:
    stop = asyncio.Event()
    desk = ServiceDesk(seed=seed)
    topics = {
        settings.topic_tickets,
        settings.topic_feedback_tagged,
        settings.topic_ticket_updates,
        settings.topic_feedback_updates,
    }
    with stopped_by_signals(stop):
        if await wait_for_topics(settings, topics, stop):
            settings = await for_the_broker(settings)
            log.info(
                "answering %s and %s (seed %d)", settings.topic_tickets, settings.topic_feedback_tagged, seed
            )
            await respond(settings.bootstrap_servers, settings, stop, desk)
    sent = ", ".join(f"{kind or 'good'} {count}" for kind, count in sorted(desk.sent.items())) or "none"
    log.info("stopped; updates sent: %s", sent)
    return 0
