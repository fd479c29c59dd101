"""Synthetic web and logistics traffic, seeded and deterministic, with a known ground truth.

Sessions start at a steady rate (Poisson arrivals). A session browses and searches, some fill a cart,
some go to the payment page; of those, a share lingers there (longer than the demo's dwell threshold)
before paying or leaving. Every order becomes a shipment: created, in transit, then delivered on time,
or delayed (ETA hours past the promise), or hit by an exception; some customers whose delivery is late
contact support about it, and some rate the delivery (a ``feedback`` score). A share of deliberately
broken messages can be mixed in.

Each user has a latent type (:data:`USER_TYPES`, drawn when the user is first seen, with the profile's
``user_types`` shares), the ground truth for intent and churn models: ``buyer`` (fills a cart most
sessions), ``help_seeker`` (help pages and searches, contacts support in the session), ``browser``
(short sessions, rarely buys) and ``at_risk`` (loses interest: churns, cancels its subscription).
:data:`USER_BEHAVIOUR` says how each type behaves. Users have an engagement in (0, 1], the chance that
they take a session when picked; it falls after each session of an ``at_risk`` user and after late
deliveries, and a user whose engagement falls below ``churn_engagement`` never comes back.

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
)
HELP_QUERIES = (
    "refund policy",
    "track my order",
    "return label",
    "warranty claim",
    "reset password",
    "cancel order",
    "contact support",
)
HELP_TOPICS = ("returns", "shipping", "warranty", "account", "payment")  # help pages: /help/<topic>
SUPPORT_REASONS = ("returns", "warranty", "account", "payment", "shipping")  # in-session contacts
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

USER_TYPES = ("buyer", "help_seeker", "browser", "at_risk")


@dataclass(frozen=True, slots=True)
class UserBehaviour:
    """How users of one latent type behave. Shares are per session unless said otherwise."""

    browse_steps: tuple[int, int]  # page views and searches before the cart (or leaving)
    help_share: float  # of the browse steps, those on help pages or help searches
    cart_share: float  # sessions that add to the cart (checkout_share of those pay, as for everyone)
    support_share: float  # sessions with a support contact (in the session) at the end of browsing
    support_feedback_share: float  # of those contacts, the ones rated a minute later (score 2-5)
    session_factor: float  # engagement is multiplied by this after each session
    late_delivery_factor: float  # ... and by this after each delayed or exception shipment
    on_time_scores: tuple[int, int]  # feedback score range after an on-time delivery
    late_scores: tuple[int, int]  # ... after a late one
    cancels_subscription: bool = False  # cancels once disengaged (engagement below cancel_engagement)


USER_BEHAVIOUR: dict[str, UserBehaviour] = {
    "buyer": UserBehaviour(
        browse_steps=(2, 6),
        help_share=0.0,
        cart_share=0.8,
        support_share=0.03,
        support_feedback_share=0.0,
        session_factor=1.0,
        late_delivery_factor=0.85,
        on_time_scores=(4, 5),
        late_scores=(1, 3),
    ),
    "help_seeker": UserBehaviour(
        browse_steps=(2, 6),
        help_share=0.75,
        cart_share=0.1,
        support_share=0.6,
        support_feedback_share=0.5,
        session_factor=1.0,
        late_delivery_factor=0.85,
        on_time_scores=(4, 5),
        late_scores=(1, 3),
    ),
    "browser": UserBehaviour(
        browse_steps=(1, 4),
        help_share=0.0,
        cart_share=0.12,
        support_share=0.03,
        support_feedback_share=0.0,
        session_factor=1.0,
        late_delivery_factor=0.85,
        on_time_scores=(4, 5),
        late_scores=(1, 3),
    ),
    "at_risk": UserBehaviour(
        browse_steps=(1, 6),
        help_share=0.0,
        cart_share=0.35,
        support_share=0.15,
        support_feedback_share=0.0,
        session_factor=0.9,
        late_delivery_factor=0.3,
        on_time_scores=(3, 5),
        late_scores=(1, 2),
        cancels_subscription=True,
    ),
}
SUPPORT_FEEDBACK_SCORES = (2, 5)  # what a help-seeker's support contact is rated


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
    # Shares of the latent user types (USER_TYPES) and how each behaves (browse steps, cart share,
    # support contacts, engagement, feedback scores).
    user_types: dict[str, float] = field(
        default_factory=lambda: {"buyer": 0.3, "help_seeker": 0.2, "browser": 0.35, "at_risk": 0.15}
    )
    behaviour: dict[str, UserBehaviour] = field(default_factory=lambda: dict(USER_BEHAVIOUR))
    think_seconds: tuple[float, float] = (1.0, 5.0)
    checkout_share: float = 0.7  # of the sessions that add to the cart, the ones that reach payment
    payment_linger_share: float = 0.15  # of those, the ones that linger on the payment page
    linger_seconds: tuple[float, float] = (40.0, 90.0)  # above the demo's 30 s dwell threshold
    pay_seconds: tuple[float, float] = (3.0, 15.0)  # how long the others take to pay
    shipment_step_seconds: tuple[float, float] = (3.0, 15.0)  # between logistics updates
    shipment_delay_share: float = 0.2
    shipment_exception_share: float = 0.05
    delay_hours: tuple[float, float] = (3.0, 30.0)  # above the default 2 h slip threshold
    complaint_share: float = 0.3  # of late shipments, customers who contact support about it
    feedback_share: float = 0.4  # of delivered shipments, the ones the customer rates
    churn_engagement: float = 0.05  # a user whose engagement falls below this never comes back
    cancel_engagement: float = 0.15  # below this, users of a type that cancels cancel their subscription
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
    feedback: int = 0
    support_in_session: int = 0
    cancellations: int = 0
    churned_users: int = 0


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
        self._types: dict[str, str] = {}  # users who have had a session -> their latent type
        self._engagement: dict[str, float] = {}  # user -> engagement, if below 1
        self._churned: dict[str, float] = {}  # user -> when their engagement fell below churn_engagement
        self._subscriptions: dict[str, dict[str, object]] = {}  # user -> their subscription snapshot
        self._cancelled: set[str] = set()  # users whose subscription was cancelled
        unknown = set(profile.user_types) - set(USER_TYPES)
        if unknown or sum(profile.user_types.values()) <= 0:
            raise ValueError(f"user_types must give positive shares of {', '.join(USER_TYPES)}")

    def user_type(self, user: str) -> str | None:
        """The latent type of ``user``; None for a user not seen yet."""
        return self._types.get(user)

    def engagement(self, user: str) -> float:
        """The chance that ``user`` takes a session when picked, in (0, 1]; 1.0 for a new user."""
        return self._engagement.get(user, 1.0)

    def churned(self, user: str) -> bool:
        """Whether ``user``'s engagement fell below the profile's ``churn_engagement``: no more sessions."""
        return user in self._churned

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

    def _feedback(self, time: float, user: str, score: int, **fields: object) -> None:
        self._click(time, user, None, "feedback", score=score, **fields)
        self.stats.feedback += 1

    def _free_user(self, time: float) -> str:
        """A user not in a session, picked with a chance proportional to their engagement."""
        for _ in range(50):
            user = f"u{self.random.randrange(self.profile.users):05d}"
            if user in self._churned or self._busy_until.get(user, 0.0) >= time:
                continue
            if self.random.random() < self.engagement(user):
                return user
        return f"u{self.profile.users + self._sequence:05d}"  # population saturated: a new user

    def _behaviour(self, user: str) -> UserBehaviour:
        return self.profile.behaviour[self._types[user]]

    def _start_session(self, time: float) -> None:
        profile = self.profile
        self.stats.sessions += 1
        user = self._free_user(time)
        if user not in self._types:
            shares = profile.user_types
            self._types[user] = self.random.choices(list(shares), weights=list(shares.values()))[0]
            if self.random.random() < profile.preferences_share:
                self._preferences(time, user)
            if self.random.random() < profile.subscription_share:
                self._subscription(time, user)
        behaviour = self._behaviour(user)
        session = f"s{self._id()}"
        # A user drifting away browses less: their sessions get shorter as their engagement falls.
        steps = max(1, round(self.random.randint(*behaviour.browse_steps) * self.engagement(user) ** 0.5))
        for _ in range(steps):
            if self.random.random() < behaviour.help_share:
                if self.random.random() < 0.3:
                    self._click(time, user, session, "search", query=self.random.choice(HELP_QUERIES))
                else:
                    page = f"/help/{self.random.choice(HELP_TOPICS)}"
                    self._click(time, user, session, "page_view", page=page, category="help")
                time += self._between(profile.think_seconds)
                continue
            category = self.random.choice(CATEGORIES)
            if self.random.random() < 0.3:
                self._click(time, user, session, "search", query=self.random.choice(QUERIES))
            elif self.random.random() < 0.5:
                self._click(time, user, session, "page_view", page=f"/c/{category}", category=category)
            else:
                sku = f"sku-{self.random.randrange(500):03d}"
                self._click(time, user, session, "page_view", page=f"/p/{sku}", category=category)
            time += self._between(profile.think_seconds)
        if self.random.random() < behaviour.support_share:
            self._click(
                time,
                user,
                session,
                "support_contact",
                reason=self.random.choice(SUPPORT_REASONS),
                channel="chat",
            )
            self.stats.support_in_session += 1
            if self.random.random() < behaviour.support_feedback_share:
                # Rated a minute later, outside the session (no session_id).
                self._feedback(time + 60.0, user, self.random.randint(*SUPPORT_FEEDBACK_SCORES))
            time += self._between(profile.think_seconds)
        if self.random.random() < behaviour.cart_share:
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
        self._disengage(user, behaviour.session_factor, time)

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
        if late:
            self._disengage(user, self._behaviour(user).late_delivery_factor, time)
        if late and self.random.random() < profile.complaint_share * self._effect(user, "complaint"):
            contact_at = time + self._between(profile.shipment_step_seconds)
            # Outside any web session, so it does not end the one the user may be in.
            self._click(
                contact_at, user, None, "support_contact", reason="delivery", order_id=order, channel="chat"
            )
        time += 2 * self._between(profile.shipment_step_seconds)
        send(time, "delivered")
        if self.random.random() < profile.feedback_share:
            behaviour = self._behaviour(user)
            score = self.random.randint(*(behaviour.late_scores if late else behaviour.on_time_scores))
            rated_at = time + 3 * self._between(profile.shipment_step_seconds)
            self._feedback(rated_at, user, score, order_id=order)

    def _disengage(self, user: str, factor: float, time: float) -> None:
        """Multiply ``user``'s engagement by ``factor`` at ``time``: they may churn, and cancel."""
        if factor >= 1.0 or user in self._churned:
            return
        profile = self.profile
        engagement = self.engagement(user) * factor
        self._engagement[user] = engagement
        if engagement < profile.churn_engagement:
            self._churned[user] = time
            self.stats.churned_users += 1
        if (
            self._behaviour(user).cancels_subscription
            and (user in self._churned or engagement < profile.cancel_engagement)
            and user in self._subscriptions
            and user not in self._cancelled
        ):
            self._cancelled.add(user)
            self._push_subscription(time, user, {**self._subscriptions[user], "status": "cancelled"})
            self.stats.cancellations += 1

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
        snapshot = {
            "subscription_id": f"sub-{user}",
            "plan": self.random.choice(("basic", "pro")),
            "status": "active",
            "renews_at": iso_time(renews_at),
        }
        self._subscriptions[user] = snapshot
        due = renews_at - time <= RENEWAL_NOTICE_DAYS * DAY
        self._push_subscription(time, user, snapshot, RENEWAL_REMINDER if due else None)
        self.stats.subscriptions += 1

    def _push_subscription(
        self, time: float, user: str, snapshot: dict[str, object], expects: str | None = None
    ) -> None:
        event = {
            "event_id": self._id(),
            "event_type": "subscription_updated",
            "event_time": round(time * 1000),
            "user_id": user,
            **snapshot,
        }
        self._push(SUBSCRIPTIONS, user, time, event, expects)

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
