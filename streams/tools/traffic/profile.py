"""What the synthetic traffic is made of: the :class:`TrafficProfile` (rates and shares of every source),
the latent user types and how each behaves (:data:`USER_TYPES`, :class:`UserBehaviour`), and a planted
hot issue in the support questions (:class:`Surge`).

Every source module of :mod:`streams.tools.traffic` reads its settings from the one profile, so a profile
is written as a flat set of keywords:

>>> profile = TrafficProfile(sessions_per_second=2.0, devices_share=0.5, repair_share=0.5)
>>> profile.user_types["buyer"], profile.behaviour["at_risk"].cancels_subscription
(0.3, True)
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from streams.processes.catalog import Catalog, Product
from streams.processes.tickets import ServicePoint
from streams.tools.traffic.contacts import ContactShape

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


@dataclass(frozen=True, slots=True)
class Surge:
    """A planted hot issue: during ``duration`` seconds from ``start`` seconds after the traffic's
    start, questions about ``topic`` on ``product_id`` come ``factor`` times as often as usual."""

    product_id: str
    topic: str
    start: float
    duration: float
    factor: float


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
    support_feedback_delay: float = 60.0  # seconds from an in-session support contact to its rating
    churn_engagement: float = 0.05  # a user whose engagement falls below this never comes back
    cancel_engagement: float = 0.15  # below this, users of a type that cancels cancel their subscription
    give_up_share: float = 0.5  # of lingering payment visits, the ones that end without paying
    # Of the sessions that fill a cart, those whose user then browses on (product pages cart_hesitation_step
    # apart) for cart_hesitation_seconds before the checkout or not; off by default (it draws from the
    # behaviour traffic's stream only when on, so the default traffic stays as it was).
    cart_hesitation_share: float = 0.0
    cart_hesitation_seconds: tuple[float, float] = (70.0, 150.0)  # above the default 60 s hesitation
    cart_hesitation_step: tuple[float, float] = (15.0, 40.0)
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
    # --- process traffic. Each feature is off while its share (or rate) is 0, as by default, and draws
    # from a random stream of its own, so the traffic above stays byte for byte what it is without it.
    catalog: Catalog | None = None  # products, SKUs and categories; None: the packaged sample
    service_points: list[ServicePoint] | None = None  # None: the packaged sample
    text_zh_share: float = 0.3  # faults, comments and questions in Chinese; the others in English
    # New users who register 1-2 devices (products of the catalog) before their first session; a share
    # of them asks the chat for a repair of one later, mostly near a service point repairing its
    # category, some far from every point, some for a device not registered to them; some requests
    # are sent twice with the same request_id.
    devices_share: float = 0.0
    repair_share: float = 0.0  # of those users
    repair_after_seconds: tuple[float, float] = (10.0, 60.0)  # after the registration
    repair_far_share: float = 0.1  # of repair requests
    repair_unregistered_share: float = 0.05  # of repair requests
    repair_redelivery_share: float = 0.1  # of repair requests
    # Sessions ending with an order asked in the chat: SKUs of the catalog within their limits; some
    # with one faulty line planted (unknown SKU, zero/negative/fractional quantity, over the SKU's
    # limit); some sent twice with the same request_id.
    order_request_share: float = 0.0
    # Sessions during which the user chats (conversations): messages by their latent type, with
    # planted emotions, needs and products (streams.tools.traffic.chats).
    conversation_share: float = 0.0
    order_unknown_sku_share: float = 0.08
    order_bad_quantity_share: float = 0.08
    order_over_limit_share: float = 0.04
    order_duplicate_share: float = 0.1
    # Feedback events with a comment from models.feedback_corpus (its score close to the event's) about
    # a product; a share of them is corrected on FEEDBACK_LABELS with the true tags a little later.
    feedback_comment_share: float = 0.0
    label_share: float = 0.0  # of the commented feedback
    label_after_seconds: tuple[float, float] = (5.0, 60.0)
    # Support questions about launched products (Poisson, per second over all products), each product
    # with a steady mix of topics; also for support_history_seconds before the start (so that
    # hot-issue detection has a baseline), and with an optional planted surge.
    support_question_rate: float = 0.0
    support_history_seconds: float = 0.0
    surge: Surge | None = None
    # Support contacts per channel with daily and weekly seasonality and planted campaigns, on their own
    # clock from the start (streams.tools.traffic.contacts); None: none.
    contacts: ContactShape | None = None
    # New users whose CRM attributes (tier, lifetime value, sometimes segments) are sent before their
    # first session; crm_update_share of them get an update (more spent, maybe a tier up) later.
    crm_share: float = 0.0
    crm_update_share: float = 0.25
    crm_update_after_seconds: tuple[float, float] = (10.0, 120.0)


# --- shared by the sources of process traffic (repairs, order requests, comments, support questions)

LANGUAGES = ("en", "zh")


def text_language(rng: random.Random, profile: TrafficProfile) -> str:
    """The language of a fault, comment or question: ``zh`` for ``profile.text_zh_share`` of them."""
    return "zh" if rng.random() < profile.text_zh_share else "en"


def launched_products(catalog: Catalog, time: float) -> list[Product]:
    """The catalog's products launched by ``time`` (all of them if none was), by product id."""
    products = sorted(catalog.products.values(), key=lambda p: p.product_id)
    return [p for p in products if p.launched_at <= time] or products
