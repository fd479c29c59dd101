"""Web sessions (``clickstream`` source): a session browses and searches (help-seekers on help pages),
some contact support, some fill a cart, some go to the payment page; of those, a share lingers there
(longer than the demo's dwell threshold) before paying or leaving. With ``cart_hesitation_share`` on, some
carts wait while their user browses on for a minute or two before the checkout (or not): the
hesitation the ``purchase_hesitation`` signal looks for. Every order is shipped
(:mod:`streams.tools.traffic.logistics`). How much of each a session does is its user's latent type's
behaviour (:class:`~streams.tools.traffic.profile.UserBehaviour`).

The ground truth: the payment page view of a visit that lingers carries ``expects="payment_assist"``
(:class:`~streams.tools.traffic.schedule.Outgoing`), and
:class:`~streams.tools.traffic.schedule.TrafficStats` counts sessions, payments and orders.
"""

from __future__ import annotations

from streams.contracts.events import CLICKSTREAM
from streams.contracts.interventions import PAYMENT_ASSIST
from streams.tools.traffic.feedback import Feedback
from streams.tools.traffic.logistics import Shipments
from streams.tools.traffic.population import Population
from streams.tools.traffic.schedule import Schedule

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
SUPPORT_FEEDBACK_SCORES = (2, 5)  # what a help-seeker's support contact is rated


class WebSessions:
    """Plays users' web sessions: browsing, support contacts, carts and checkouts."""

    def __init__(
        self, schedule: Schedule, population: Population, feedback: Feedback, shipments: Shipments
    ) -> None:
        self.schedule = schedule
        self.population = population
        self.feedback = feedback
        self.shipments = shipments

    def session(self, time: float, user: str) -> float:
        """Send the session ``user`` (seen already) starts at ``time``; returns when it ends."""
        schedule = self.schedule
        rng, profile = schedule.random, schedule.profile
        behaviour = self.population.behaviour(user)
        session = f"s{schedule.next_id()}"
        # A user drifting away browses less: their sessions get shorter as their engagement falls.
        steps = max(1, round(rng.randint(*behaviour.browse_steps) * self.population.engagement(user) ** 0.5))
        for _ in range(steps):
            if rng.random() < behaviour.help_share:
                if rng.random() < 0.3:
                    self._click(time, user, session, "search", query=rng.choice(HELP_QUERIES))
                else:
                    page = f"/help/{rng.choice(HELP_TOPICS)}"
                    self._click(time, user, session, "page_view", page=page, category="help")
                time += rng.uniform(*profile.think_seconds)
                continue
            category = rng.choice(CATEGORIES)
            if rng.random() < 0.3:
                self._click(time, user, session, "search", query=rng.choice(QUERIES))
            elif rng.random() < 0.5:
                self._click(time, user, session, "page_view", page=f"/c/{category}", category=category)
            else:
                sku = f"sku-{rng.randrange(500):03d}"
                self._click(time, user, session, "page_view", page=f"/p/{sku}", category=category)
            time += rng.uniform(*profile.think_seconds)
        if rng.random() < behaviour.support_share:
            self._click(
                time,
                user,
                session,
                "support_contact",
                reason=rng.choice(SUPPORT_REASONS),
                channel="chat",
            )
            schedule.stats.support_in_session += 1
            if rng.random() < behaviour.support_feedback_share:
                # Rated a little later (a minute by default), outside the session (no session_id).
                score = rng.randint(*SUPPORT_FEEDBACK_SCORES)
                self.feedback.rate(time + profile.support_feedback_delay, user, score)
            time += rng.uniform(*profile.think_seconds)
        if rng.random() < behaviour.cart_share:
            cart = 0.0
            for _ in range(rng.randint(1, 3)):
                price = round(rng.uniform(5, 800), 2)
                cart += price
                self._click(
                    time,
                    user,
                    session,
                    "add_to_cart",
                    sku=f"sku-{rng.randrange(500):03d}",
                    quantity=1,
                    price=price,
                )
                time += rng.uniform(*profile.think_seconds)
            if profile.cart_hesitation_share and rng.random() < profile.cart_hesitation_share:
                time = self._hesitate(time, user, session)
            if rng.random() < profile.checkout_share:
                time = self._checkout(time, user, session, round(cart, 2))
        return time

    def _click(
        self,
        time: float,
        user: str,
        session: str,
        event_type: str,
        expects: str | None = None,
        **fields: object,
    ) -> None:
        self.schedule.send(CLICKSTREAM, time, event_type, user, expects=expects, **fields, session_id=session)

    def _hesitate(self, time: float, user: str, session: str) -> float:
        """Browse on with a full cart for ``cart_hesitation_seconds`` before deciding: product pages
        ``cart_hesitation_step`` seconds apart, the last one past the wait."""
        rng, profile = self.schedule.random, self.schedule.profile
        until = time + rng.uniform(*profile.cart_hesitation_seconds)
        while time < until:
            time += rng.uniform(*profile.cart_hesitation_step)
            sku, category = f"sku-{rng.randrange(500):03d}", rng.choice(CATEGORIES)
            self._click(time, user, session, "page_view", page=f"/p/{sku}", category=category)
        return time + rng.uniform(*profile.think_seconds)

    def _checkout(self, time: float, user: str, session: str, cart: float) -> float:
        schedule = self.schedule
        rng, profile = schedule.random, schedule.profile
        schedule.stats.payment_sessions += 1
        self._click(time, user, session, "checkout_start", cart_value=cart)
        time += rng.uniform(*profile.think_seconds)
        lingers = rng.random() < profile.payment_linger_share
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
            schedule.stats.lingering_payments += 1
            time += rng.uniform(*profile.linger_seconds)
            if rng.random() < profile.give_up_share * self.population.effect(user, "give_up"):
                # gives up and browses on
                self._click(time, user, session, "page_view", page="/", category="home")
                return time
        else:
            time += rng.uniform(*profile.pay_seconds)
        order = f"o{schedule.next_id()}"
        self._click(time, user, session, "payment_completed", order_id=order, amount=cart)
        self._click(time + 0.5, user, session, "order_completed", order_id=order, amount=cart)
        schedule.stats.orders += 1
        self.shipments.ship(time + 1.0, user, order)
        return time + 0.5
