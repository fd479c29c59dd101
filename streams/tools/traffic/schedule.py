"""The event-time schedule every source of the synthetic traffic sends into, with the ids, the counts
(:class:`TrafficStats`) and the ground truth each message carries (:class:`Outgoing`).

Sources send messages for any time from now on (a shipment's updates minutes later, a rating an hour
later); :meth:`Schedule.due` hands them out in event-time order once their time has come. Messages of
the same time keep the order they were sent in.

The behaviour traffic (sessions, shipments, preferences, subscriptions) takes its ids and its order
from one sequence (:meth:`Schedule.next_id`); the process traffic (devices, repairs, order requests,
comments, support questions, CRM attributes) has id counters and an order of its own
(:meth:`Schedule.process_id`), so that turning it on leaves the behaviour traffic byte for byte as it
was. A ``malformed_share`` of the behaviour messages is followed by a broken copy.

>>> import random
>>> from streams.tools.traffic.profile import TrafficProfile
>>> schedule = Schedule(TrafficProfile(), seed=3, random=random.Random(3))
>>> schedule.send("clickstream", 10.0, "page_view", "u00001", page="/")
'3-1'
>>> schedule.send_process("crm", "u00001", 5.0, "crm_attributes", "u00001", tier="gold")
'p3-1'
>>> [(m.topic, m.event_time) for m in schedule.due(20.0)], schedule.stats.events
([('crm', 5.0), ('clickstream', 10.0)], 2)
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from dataclasses import dataclass, field

import orjson

from streams.tools.traffic.profile import TrafficProfile


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str  # the source ("clickstream", "logistics", ... streams.contracts.events) or FEEDBACK_LABELS
    key: bytes  # user id; shipment id (logistics), product id (support), feedback id (labels)
    value: bytes  # the JSON event
    event_time: float
    # Ground truth: the intervention this message leads to. "payment_assist" on the payment page view
    # of a visit that lingers (due one dwell threshold later), "delay_notice" on a delay or exception.
    expects: str | None = None


@dataclass
class TrafficStats:
    events: int = 0
    sessions: int = 0
    payment_sessions: int = 0
    lingering_payments: int = 0
    orders: int = 0
    delayed_shipments: int = 0
    exception_shipments: int = 0
    malformed: int = 0
    preferences: int = 0
    subscriptions: int = 0
    feedback: int = 0
    support_in_session: int = 0
    cancellations: int = 0
    churned_users: int = 0
    devices: int = 0  # device registrations
    repair_requests: int = 0  # distinct request ids
    repair_redeliveries: int = 0  # requests sent a second time
    order_requests: int = 0  # distinct request ids
    order_duplicates: int = 0
    commented_feedback: int = 0
    labels: int = 0  # corrections on FEEDBACK_LABELS
    support_questions: int = 0  # steady ones (history included)
    surge_questions: int = 0  # the planted surge's extra questions
    crm_updates: int = 0
    chat_messages: int = 0  # on conversations, the agent's included


@dataclass(order=True)
class _Scheduled:
    time: float
    sequence: int
    # 0 for the behaviour traffic; process messages count here instead of taking sequence numbers,
    # so that turning them on leaves the behaviour traffic's ids and order as they were.
    side: int
    outgoing: Outgoing = field(compare=False)


@dataclass
class Schedule:
    """The messages sent and not yet due, with the id counters and the counts of one traffic run.

    ``random`` is the seed's own stream: the behaviour traffic's sources draw from it, and so does the
    choice of the messages to break."""

    profile: TrafficProfile
    seed: int
    random: random.Random
    stats: TrafficStats = field(default_factory=TrafficStats)
    sequence: int = field(default=0, init=False)  # of the behaviour traffic: its ids and its order
    _heap: list[_Scheduled] = field(default_factory=list, init=False, repr=False)
    # Orders the process messages of the same time and sequence in the heap.
    _process_sequence: int = field(default=0, init=False, repr=False)
    _ids: Counter[str] = field(default_factory=Counter, init=False, repr=False)  # process ids, by prefix

    def due(self, now: float) -> list[Outgoing]:
        """Every message whose event time has come by ``now``, in event-time order, taken out."""
        out = []
        while self._heap and self._heap[0].time <= now:
            out.append(heapq.heappop(self._heap).outgoing)
        return out

    # --- the behaviour traffic

    def next_id(self) -> str:
        """A new id of the behaviour traffic (events, sessions, orders, shipments)."""
        self.sequence += 1
        return f"{self.seed}-{self.sequence}"

    def push(self, topic: str, key: str, time: float, event: dict, expects: str | None = None) -> None:
        """Schedule ``event`` at ``time``, and a broken copy of it for ``malformed_share`` of them."""
        self.sequence += 1
        value = orjson.dumps(event)
        outgoing = Outgoing(topic, key.encode(), value, time, expects)
        heapq.heappush(self._heap, _Scheduled(time, self.sequence, 0, outgoing))
        self.stats.events += 1
        if self.profile.malformed_share and self.random.random() < self.profile.malformed_share:
            self.sequence += 1
            broken = Outgoing(topic, key.encode(), _broken(event, self.random), time)
            heapq.heappush(self._heap, _Scheduled(time, self.sequence, 0, broken))
            self.stats.malformed += 1

    def send(
        self,
        topic: str,
        time: float,
        event_type: str,
        user: str,
        /,
        expects: str | None = None,
        **fields: object,
    ) -> str:
        """Schedule an event of the behaviour traffic about ``user`` (keyed by them); returns its id."""
        event = {
            "event_id": self.next_id(),
            "event_type": event_type,
            "event_time": round(time * 1000),
            "user_id": user,
            **fields,
        }
        self.push(topic, user, time, event, expects)
        return event["event_id"]

    # --- the process traffic

    def process_id(self, prefix: str) -> str:
        """A new id: one counter per prefix, so that the support questions (asked as ``due`` is called)
        and the session-driven messages (made as sessions start) do not shift each other's ids."""
        self._ids[prefix] += 1
        return f"{prefix}{self.seed}-{self._ids[prefix]}"

    def push_process(self, topic: str, key: str, time: float, value: dict) -> None:
        """Schedule a message of the process traffic at ``time``, after the behaviour messages sent
        so far for that time."""
        self._process_sequence += 1
        outgoing = Outgoing(topic, key.encode(), orjson.dumps(value), time)
        heapq.heappush(self._heap, _Scheduled(time, self.sequence, self._process_sequence, outgoing))
        self.stats.events += 1

    def send_process(
        self,
        source: str,
        key: str,
        time: float,
        event_type: str,
        user: str,
        /,
        id_prefix: str = "p",
        **fields: object,
    ) -> str:
        """Schedule an event of the process traffic about ``user``, keyed by ``key``; returns its id."""
        event_id = self.process_id(id_prefix)
        event = {
            "event_id": event_id,
            "event_type": event_type,
            "event_time": round(time * 1000),
            "user_id": user,
            **fields,
        }
        self.push_process(source, key, time, event)
        return event_id


def _broken(event: dict, rng: random.Random) -> bytes:
    """One of the ways input goes wrong, derived from a valid event."""
    kind = rng.randrange(5)
    if kind == 0:
        return orjson.dumps(event)[:-7]  # truncated JSON
    if kind == 1:
        return orjson.dumps({k: v for k, v in event.items() if k != "user_id"})  # missing field
    if kind == 2:
        return orjson.dumps({**event, "event_time": "not a time"})  # invalid value
    if kind == 3:
        return orjson.dumps({**event, "event_type": "teleported"})  # unknown type
    return orjson.dumps({**event, "user_id": 12345})  # wrong type
