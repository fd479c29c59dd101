"""Synthetic web and logistics traffic, seeded and deterministic, with a known ground truth.

Sessions start at a steady rate (Poisson arrivals). A session browses and searches, some fill a cart,
some go to the payment page; of those, a share lingers there (longer than the demo's dwell threshold)
before paying or leaving. Every order becomes a shipment: created, in transit, then delivered on time,
or delayed (ETA hours past the promise), or hit by an exception; some customers whose delivery is late
contact support about it. A share of deliberately broken messages can be mixed in.

:meth:`TrafficGenerator.due` returns every message whose event time has come, in event-time order, so
calling it with the wall clock streams live traffic, and with a fast-moving clock replays it quickly.
No user has two sessions at once, so :class:`TrafficStats` counts exactly the interventions the
pipeline should emit: one ``payment_assist`` per lingering payment, one ``delay_notice`` per delayed or
exception shipment.

>>> generator = TrafficGenerator(TrafficProfile(sessions_per_second=2.0), seed=1, start=1_000.0)
>>> messages = generator.due(1_000.0 + 600)
>>> sorted({m.topic for m in messages}), generator.stats.sessions > 1000
(['clickstream', 'logistics'], True)
>>> all(a.event_time <= b.event_time for a, b in zip(messages, messages[1:]))
True
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from streams.events import CLICKSTREAM, LOGISTICS, PREFERENCES, SUBSCRIPTIONS
from streams.interventions import DELAY_NOTICE, PAYMENT_ASSIST, RENEWAL_REMINDER, iso_time

CATEGORIES = ("phones", "laptops", "headphones", "watches", "cameras", "tablets", "speakers")
QUERIES = (
    "wireless earbuds",
    "noise cancelling",
    "usb-c charger",
    "4k camera",
    "smart watch strap",
    "gaming laptop",
    "phone case",
    "bluetooth speaker",
    "tablet stylus",
    "refund policy",
)
EXCEPTIONS = ("address_not_found", "damaged", "customs_hold", "recipient_absent")
TIMEZONES = (
    "UTC",
    "Europe/London",
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Australia/Sydney",
)
HOUR = 3600.0
DAY = 24 * HOUR
RENEWAL_NOTICE_DAYS = 7  # the default policy's renewal_reminder `within`


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str  # "clickstream" or "logistics"
    key: bytes  # user id (clickstream) or shipment id (logistics)
    value: bytes  # the JSON event
    event_time: float
    # Ground truth: the intervention this message leads to. "payment_assist" on the payment page view
    # of a visit that lingers (due one dwell threshold later), "delay_notice" on a delay or exception.
    expects: str | None = None


@dataclass
class TrafficProfile:
    sessions_per_second: float = 5.0
    users: int = 5000
    browse_steps: tuple[int, int] = (1, 6)
    think_seconds: tuple[float, float] = (1.0, 5.0)
    cart_share: float = 0.45  # sessions that add to the cart
    checkout_share: float = 0.7  # of those, the ones that reach the payment page
    payment_linger_share: float = 0.15  # of those, the ones that linger on the payment page
    linger_seconds: tuple[float, float] = (40.0, 90.0)  # above the demo's 30 s dwell threshold
    pay_seconds: tuple[float, float] = (3.0, 15.0)  # how long the others take to pay
    shipment_step_seconds: tuple[float, float] = (3.0, 15.0)  # between logistics updates
    shipment_delay_share: float = 0.2
    shipment_exception_share: float = 0.05
    delay_hours: tuple[float, float] = (3.0, 30.0)  # above the default 2 h slip threshold
    complaint_share: float = 0.3  # of late shipments, customers who contact support about it
    give_up_share: float = 0.5  # of lingering payment visits, the ones that end without paying
    malformed_share: float = 0.0  # extra broken messages, per valid one
    # Users who visit the preference centre before their first session: they give a time zone, and
    # some of them opt out of proactive contact or turn e-mail off.
    preferences_share: float = 0.0
    opt_out_share: float = 0.05  # of those
    no_email_share: float = 0.2  # of those
    # Users whose subscription snapshot the billing system sends before their first session, renewing
    # 0-30 days later; those renewing within RENEWAL_NOTICE_DAYS are due a reminder at once.
    subscription_share: float = 0.0
    # A planted effect for measuring uplift: users for whom ``treated`` is true (not in a holdout) are
    # helped by Forewarn's interventions: they complain and give up less, by these factors.
    treated: Callable[[str], bool] | None = None
    treated_complaint_factor: float = 0.4
    treated_give_up_factor: float = 0.5


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


@dataclass(order=True)
class _Scheduled:
    time: float
    sequence: int
    outgoing: Outgoing = field(compare=False)


class TrafficGenerator:
    def __init__(self, profile: TrafficProfile, seed: int = 7, start: float | None = None) -> None:
        self.profile = profile
        self.seed = seed
        self.random = random.Random(seed)
        self.stats = TrafficStats()
        self._heap: list[_Scheduled] = []
        self._sequence = 0
        self._next_session = start
        self._busy_until: dict[str, float] = {}  # user -> end of their current session
        self._seen: set[str] = set()  # users who have had a session

    def due(self, now: float) -> list[Outgoing]:
        """Start the sessions due by ``now`` and return every message whose event time has come."""
        if self._next_session is None:
            self._next_session = now
        while self._next_session <= now:
            self._start_session(self._next_session)
            self._next_session += self.random.expovariate(self.profile.sessions_per_second)
        out = []
        while self._heap and self._heap[0].time <= now:
            out.append(heapq.heappop(self._heap).outgoing)
        return out

    # --- scheduling

    def _id(self) -> str:
        self._sequence += 1
        return f"{self.seed}-{self._sequence}"

    def _push(self, topic: str, key: str, time: float, event: dict, expects: str | None = None) -> None:
        self._sequence += 1
        value = orjson.dumps(event)
        outgoing = Outgoing(topic, key.encode(), value, time, expects)
        heapq.heappush(self._heap, _Scheduled(time, self._sequence, outgoing))
        self.stats.events += 1
        if self.profile.malformed_share and self.random.random() < self.profile.malformed_share:
            self._sequence += 1
            broken = Outgoing(topic, key.encode(), self._broken(event), time)
            heapq.heappush(self._heap, _Scheduled(time, self._sequence, broken))
            self.stats.malformed += 1

    def _click(
        self,
        time: float,
        user: str,
        session: str | None,
        event_type: str,
        expects: str | None = None,
        **fields: object,
    ) -> None:
        event = {
            "event_id": self._id(),
            "event_type": event_type,
            "event_time": round(time * 1000),
            "user_id": user,
            **fields,
        }
        if session is not None:
            event["session_id"] = session
        self._push(CLICKSTREAM, user, time, event, expects)

    def _between(self, bounds: tuple[float, float]) -> float:
        return self.random.uniform(*bounds)

    def _free_user(self, time: float) -> str:
        for _ in range(20):
            user = f"u{self.random.randrange(self.profile.users):05d}"
            if self._busy_until.get(user, 0.0) < time:
                return user
        return f"u{self.profile.users + self._sequence:05d}"  # population saturated: a new user

    def _start_session(self, time: float) -> None:
        profile = self.profile
        self.stats.sessions += 1
        user = self._free_user(time)
        if user not in self._seen:
            self._seen.add(user)
            if self.random.random() < profile.preferences_share:
                self._preferences(time, user)
            if self.random.random() < profile.subscription_share:
                self._subscription(time, user)
        session = f"s{self._id()}"
        for _ in range(self.random.randint(*profile.browse_steps)):
            category = self.random.choice(CATEGORIES)
            if self.random.random() < 0.3:
                self._click(time, user, session, "search", query=self.random.choice(QUERIES))
            elif self.random.random() < 0.5:
                self._click(time, user, session, "page_view", page=f"/c/{category}", category=category)
            else:
                sku = f"sku-{self.random.randrange(500):03d}"
                self._click(time, user, session, "page_view", page=f"/p/{sku}", category=category)
            time += self._between(profile.think_seconds)
        if self.random.random() < profile.cart_share:
            cart = 0.0
            for _ in range(self.random.randint(1, 3)):
                price = round(self.random.uniform(5, 800), 2)
                cart += price
                self._click(
                    time,
                    user,
                    session,
                    "add_to_cart",
                    sku=f"sku-{self.random.randrange(500):03d}",
                    quantity=1,
                    price=price,
                )
                time += self._between(profile.think_seconds)
            if self.random.random() < profile.checkout_share:
                time = self._checkout(time, user, session, round(cart, 2))
        self._busy_until[user] = time + 1.0

    def _checkout(self, time: float, user: str, session: str, cart: float) -> float:
        profile = self.profile
        self.stats.payment_sessions += 1
        self._click(time, user, session, "checkout_start", cart_value=cart)
        time += self._between(profile.think_seconds)
        lingers = self.random.random() < profile.payment_linger_share
        self._click(
            time,
            user,
            session,
            "payment_page_view",
            expects=PAYMENT_ASSIST if lingers else None,
            page="/checkout/payment",
            cart_value=cart,
        )
        if lingers:
            self.stats.lingering_payments += 1
            time += self._between(profile.linger_seconds)
            if self.random.random() < profile.give_up_share * self._effect(user, "give_up"):
                # gives up and browses on
                self._click(time, user, session, "page_view", page="/", category="home")
                return time
        else:
            time += self._between(profile.pay_seconds)
        order = f"o{self._id()}"
        self._click(time, user, session, "payment_completed", order_id=order, amount=cart)
        self._click(time + 0.5, user, session, "order_completed", order_id=order, amount=cart)
        self.stats.orders += 1
        self._ship(time + 1.0, user, order)
        return time + 0.5

    def _ship(self, time: float, user: str, order: str) -> None:
        profile = self.profile
        shipment = f"sh{self._id()}"
        promised = time + 48 * HOUR
        base = {
            "shipment_id": shipment,
            "order_id": order,
            "user_id": user,
            "promised_eta": iso_time(promised),
            "carrier": "fastpost",
        }

        def send(at: float, event_type: str, expects: str | None = None, **fields: object) -> None:
            event = {
                "event_id": self._id(),
                "event_type": event_type,
                "event_time": iso_time(at),
                **base,
                **fields,
            }
            self._push(LOGISTICS, shipment, at, event, expects)

        time += self._between(profile.shipment_step_seconds)
        send(time, "shipment_created", eta=iso_time(promised))
        time += self._between(profile.shipment_step_seconds)
        send(time, "in_transit", eta=iso_time(promised), location="hub-1")
        draw = self.random.random()
        late = False
        if draw < profile.shipment_delay_share:
            time += self._between(profile.shipment_step_seconds)
            send(
                time,
                "delayed",
                expects=DELAY_NOTICE,
                eta=iso_time(promised + self._between(profile.delay_hours) * HOUR),
                detail="carrier backlog",
            )
            self.stats.delayed_shipments += 1
            late = True
        elif draw < profile.shipment_delay_share + profile.shipment_exception_share:
            time += self._between(profile.shipment_step_seconds)
            send(time, "exception", expects=DELAY_NOTICE, exception_code=self.random.choice(EXCEPTIONS))
            self.stats.exception_shipments += 1
            late = True
        if late and self.random.random() < profile.complaint_share * self._effect(user, "complaint"):
            contact_at = time + self._between(profile.shipment_step_seconds)
            # Outside any web session, so it does not end the one the user may be in.
            self._click(
                contact_at, user, None, "support_contact", reason="delivery", order_id=order, channel="chat"
            )
        time += 2 * self._between(profile.shipment_step_seconds)
        send(time, "delivered")

    def _preferences(self, time: float, user: str) -> None:
        profile = self.profile
        fields: dict[str, object] = {"timezone": self.random.choice(TIMEZONES)}
        if self.random.random() < profile.opt_out_share:
            fields["opt_out"] = True
        if self.random.random() < profile.no_email_share:
            fields["channels"] = {"email": False}
        event = {
            "event_id": self._id(),
            "event_type": "preferences_updated",
            "event_time": round(time * 1000),
            "user_id": user,
            **fields,
        }
        self._push(PREFERENCES, user, time, event)
        self.stats.preferences += 1

    def _subscription(self, time: float, user: str) -> None:
        renews_at = time + self.random.uniform(0.0, 30.0) * DAY
        event = {
            "event_id": self._id(),
            "event_type": "subscription_updated",
            "event_time": round(time * 1000),
            "user_id": user,
            "subscription_id": f"sub-{user}",
            "plan": self.random.choice(("basic", "pro")),
            "status": "active",
            "renews_at": iso_time(renews_at),
        }
        due = renews_at - time <= RENEWAL_NOTICE_DAYS * DAY
        self._push(SUBSCRIPTIONS, user, time, event, RENEWAL_REMINDER if due else None)
        self.stats.subscriptions += 1

    def _effect(self, user: str, behaviour: str) -> float:
        """How much of ``behaviour`` (complaint, give_up) a treated user keeps; 1 for the others."""
        profile = self.profile
        if profile.treated is None or not profile.treated(user):
            return 1.0
        return (
            profile.treated_complaint_factor if behaviour == "complaint" else profile.treated_give_up_factor
        )

    def _broken(self, event: dict) -> bytes:
        """One of the ways input goes wrong, derived from a valid event."""
        kind = self.random.randrange(5)
        if kind == 0:
            return orjson.dumps(event)[:-7]  # truncated JSON
        if kind == 1:
            return orjson.dumps({k: v for k, v in event.items() if k != "user_id"})  # missing field
        if kind == 2:
            return orjson.dumps({**event, "event_time": "not a time"})  # invalid value
        if kind == 3:
            return orjson.dumps({**event, "event_type": "teleported"})  # unknown type
        return orjson.dumps({**event, "user_id": 12345})  # wrong type
