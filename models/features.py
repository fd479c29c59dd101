"""Per-user features, updated by every event of the user.

:class:`UserFeatures` lives in the user's state (:class:`streams.domain.state.UserState`), so it moves and
recovers with the user's partition through the table's changelog. It holds what the intent and churn
models read beyond what the state already keeps (visits, offers, shipments):

* interaction frequency: events decayed over a day (:class:`~models.stats.DecayedCount`);
* session depth (events per session) and dwell (seconds between clicks) as running means and
  variances of their logarithms (:class:`~models.stats.MeanVar`);
* orders, support contacts and delivery problems (a delay or an exception) decayed over four weeks;
* satisfaction: scores of ``feedback`` events (1-5, scaled to 0-1) as a level (an EWMA) and a trend
  (a fast EWMA minus a slow one);
* the current session (:class:`SessionFeatures`): what it viewed, searched and put in the cart, and
  its trajectory: search terms, page categories and category transitions, hashed into
  :data:`HASH_BUCKETS` buckets so the feature space stays fixed whatever users type;
* the chat during the session (the ``c_`` features): the customer's messages, whether they asked
  about a product, and the chat's intent ids hashed into :data:`TOPIC_BUCKETS` buckets of their own
  (the emotion's negative level comes from the user's state:
  :func:`streams.domain.prediction.feature_values`);
* the user's history for churn (:data:`CHURN_HISTORY`): the gaps between visits (their logarithms:
  a running mean and variance, a recent EWMA, the last one), session depth's recent EWMA, visits
  that put something in the cart, delivery problems ever and over a week, support contacts over a
  week, low and middling feedback scores and the latest one.

>>> from streams.contracts.events import Event
>>> features = UserFeatures()
>>> view = Event("e1", "page_view", "clickstream", 100.0, "u1", {"page": "/c/phones", "category": "phones"})
>>> learn_event(features, view, session_number=1) is None  # the first session: none ended
True
>>> features.session.category_views, features.session.hashed == {bucket_of("c:phones"): 1.0}
(1, True)
>>> search = Event("e2", "search", "clickstream", 130.0, "u1", {"query": "Refund policy"})
>>> _ = learn_event(features, search, session_number=1)
>>> features.session.searches, features.session.events, features.dwell.n
(1, 2, 1)
>>> ended = learn_event(features, view, session_number=2)  # the next visit closes this one
>>> ended.events, features.session.events, features.depth.n
(2, 1, 1)
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass, field

from models.stats import DecayedCount, EWMean, MeanVar
from streams.contracts.events import CLICKSTREAM, CONVERSATIONS, CUSTOMER, LOGISTICS, Event
from streams.contracts.time import DAY, HOUR

# Trajectory tokens (search terms, categories, transitions) are hashed into this many buckets.
HASH_BUCKETS = 16
MAX_QUERY_TOKENS = 8
HASHED = tuple(f"h{bucket:02d}" for bucket in range(HASH_BUCKETS))  # the hashed buckets' feature names
TOPIC_BUCKETS = 4  # the chat's intent ids are hashed into this many buckets
TOPICS = tuple(f"c_topic{bucket}" for bucket in range(TOPIC_BUCKETS))
# The conversation's features, one block (benchmarks/models.py compares the intent model with and
# without them).
CONVERSATION_FEATURES = ("c_messages", "c_product_asked", "c_negative", *TOPICS)
MAX_TRAIL_CATEGORIES = 8  # categories of a session whose views and searches are counted by name
CHURN_HISTORY = (
    "visits_total",
    "gap_mean",
    "gap_std",
    "gap_recent",
    "gap_last",
    "gap_z",
    "depth_trend",
    "cart_share",
    "problems_total",
    "problems_week",
    "support_week",
    "low_scores",
    "mid_scores",
    "score_last",
)
# What the intent and churn models read, in the order of the vectors that hold them (the values are made
# by streams.domain.prediction.feature_values, in this order).
FEATURE_NAMES = (
    "visits_week",
    "visits_month",
    "visit_trend",
    "days_since_visit",
    "tenure_days",
    "events_day",
    "orders_month",
    "support_month",
    "delivery_problems_month",
    "delivery_problem_recent",
    "late_shipments",
    "open_shipments",
    "depth_mean",
    "depth_std",
    "dwell_mean",
    "dwell_std",
    "satisfaction",
    "satisfaction_trend",
    "feedback_given",
    "coupon_user",
    "abandoned_payments",
    "subscriber",
    "cancelled",
    "s_events",
    "s_minutes",
    "s_idle_minutes",
    "s_product_views",
    "s_category_views",
    "s_help_views",
    "s_searches",
    "s_cart_adds",
    "s_cart_value",
    "s_checkout",
    "s_payment_page",
    "s_payment_failures",
    *CONVERSATION_FEATURES,
    *HASHED,
    # The user's history for churn: cadence (gaps between visits against their own norm), lifetime
    # visits and delivery problems, recent problems, session depth's trend, feedback's trajectory.
    *CHURN_HISTORY,
)
PURCHASE, NEED_HELP, BROWSE, LEAVE = "purchase", "need_help", "browse", "leave"
INTENTS = (PURCHASE, NEED_HELP, BROWSE, LEAVE)
# Events that tell a session's intent as they happen; a session ending without one was browsing, or
# (with a cart or a checkout left behind) leaving.
INTENT_OF_EVENT = {"order_completed": PURCHASE, "payment_completed": PURCHASE, "support_contact": NEED_HELP}
HELP_CATEGORY = "help"
_TOKEN = re.compile(r"\w+")


def bucket_of(token: str) -> str:
    """The hashed feature a trajectory token counts towards (stable across processes and runs).

    >>> bucket_of("q:refund") == bucket_of("q:refund"), bucket_of("q:refund")
    (True, 'h00')
    """
    return f"h{zlib.crc32(token.encode()) % HASH_BUCKETS:02d}"


def topic_of(intent_id: str) -> str:
    """The ``c_topic`` feature a chat intent id counts towards (stable across processes and runs).

    >>> topic_of("where_is_my_order") == topic_of("where_is_my_order")
    True
    """
    return TOPICS[zlib.crc32(f"i:{intent_id}".encode()) % TOPIC_BUCKETS]


@dataclass
class SessionFeatures:
    """The current session. ``number`` is the user's session count (``UserState.sessions``)."""

    number: int = 0
    started_at: float = 0.0
    last_at: float = 0.0
    events: int = 0
    product_views: int = 0
    category_views: int = 0
    help_views: int = 0
    searches: int = 0
    cart_adds: int = 0
    cart_value: float = 0.0
    first_cart_at: float | None = None
    checkout: bool = False
    payment_page: bool = False
    payment_failures: int = 0
    last_category: str | None = None
    hashed: dict[str, float] = field(default_factory=dict)
    # The intent the session showed (an order, a support contact), once it has.
    intent: str | None = None
    # Its trail by category name: category -> [views, searches naming it] (the recommendation's why).
    trail: dict[str, list[int]] = field(default_factory=dict)
    # The chat during the session: the customer's messages, whether a message named a product, and
    # the chat's intent ids by c_topic bucket.
    messages: int = 0
    product_asked: bool = False
    topics: dict[str, float] = field(default_factory=dict)

    def ended_intent(self) -> str:
        """The label of a session that ended: the intent it showed, else leave (a cart or a checkout
        left behind) or browse."""
        if self.intent is not None:
            return self.intent
        return LEAVE if self.cart_adds or self.checkout or self.payment_page else BROWSE


def _decayed_day() -> DecayedCount:
    return DecayedCount(DAY)


def _decayed_month() -> DecayedCount:
    return DecayedCount(28 * DAY)


def _decayed_week() -> DecayedCount:
    return DecayedCount(7 * DAY)


def _recent() -> EWMean:
    return EWMean(0.3)


@dataclass
class UserFeatures:
    events: DecayedCount = field(default_factory=_decayed_day)
    orders: DecayedCount = field(default_factory=_decayed_month)
    support_contacts: DecayedCount = field(default_factory=_decayed_month)
    delivery_problems: DecayedCount = field(default_factory=_decayed_month)
    last_delivery_problem_at: float | None = None
    depth: MeanVar = field(default_factory=MeanVar)  # log(1 + events per session)
    dwell: MeanVar = field(default_factory=MeanVar)  # log(1 + seconds between clicks in a session)
    satisfaction: EWMean = field(default_factory=lambda: EWMean(0.3))
    satisfaction_fast: EWMean = field(default_factory=lambda: EWMean(0.5))
    satisfaction_slow: EWMean = field(default_factory=lambda: EWMean(0.1))
    session: SessionFeatures = field(default_factory=SessionFeatures)
    # History for churn. Records written before these existed read back with these defaults.
    gaps: MeanVar = field(default_factory=MeanVar)  # log(1 + hours between visits)
    gaps_recent: EWMean = field(default_factory=_recent)  # the same, recent visits weighing most
    gap_last: float = 0.0  # the same, of the gap before the current visit
    depth_recent: EWMean = field(default_factory=_recent)  # log(1 + events per session), recent
    cart_sessions: int = 0  # sessions ended with something put in the cart
    problems: int = 0  # delivery problems ever
    problems_week: DecayedCount = field(default_factory=_decayed_week)
    support_week: DecayedCount = field(default_factory=_decayed_week)
    low_scores: int = 0  # feedback scores 1-2
    mid_scores: int = 0  # feedback scores of 3
    score_last: float | None = None  # the latest feedback score, scaled to 0-1

    @classmethod
    def from_dict(cls, data: dict) -> UserFeatures:
        history = {
            name: kind(**data[name])
            for name, kind in (
                ("gaps", MeanVar),
                ("gaps_recent", EWMean),
                ("depth_recent", EWMean),
                ("problems_week", DecayedCount),
                ("support_week", DecayedCount),
            )
            if name in data
        }
        counts = {
            name: data[name]
            for name in ("gap_last", "cart_sessions", "problems", "low_scores", "mid_scores", "score_last")
            if name in data
        }
        return cls(
            events=DecayedCount(**data["events"]),
            orders=DecayedCount(**data["orders"]),
            support_contacts=DecayedCount(**data["support_contacts"]),
            delivery_problems=DecayedCount(**data["delivery_problems"]),
            last_delivery_problem_at=data["last_delivery_problem_at"],
            depth=MeanVar(**data["depth"]),
            dwell=MeanVar(**data["dwell"]),
            satisfaction=EWMean(**data["satisfaction"]),
            satisfaction_fast=EWMean(**data["satisfaction_fast"]),
            satisfaction_slow=EWMean(**data["satisfaction_slow"]),
            session=SessionFeatures(**data["session"]),
            **history,
            **counts,
        )

    def satisfaction_trend(self) -> float:
        """Recent satisfaction minus the longer-run level (-1..1); 0 without feedback."""
        return self.satisfaction_fast.mean - self.satisfaction_slow.mean


def learn_event(features: UserFeatures, event: Event, session_number: int) -> SessionFeatures | None:
    """Update ``features`` with one event; ``session_number`` is the user's session count after the
    event was applied to their state (a new number: the event started a visit). Returns the session
    that the event ended, if it did."""
    time = event.event_time
    if event.source == LOGISTICS:
        if event.event_type in ("delayed", "exception"):
            features.delivery_problems.update(time)
            features.problems_week.update(time)
            features.problems += 1
            features.last_delivery_problem_at = max(features.last_delivery_problem_at or 0.0, time)
        return None
    if event.source == CONVERSATIONS:
        _learn_message(features.session, event)
        return None
    if event.source != CLICKSTREAM:
        return None
    features.events.update(time)
    ended = None
    session = features.session
    if session_number != session.number:
        if session.events:
            features.depth.update(math.log1p(session.events))
            features.depth_recent.update(math.log1p(session.events))
            features.cart_sessions += session.cart_adds > 0
            if time > session.last_at:
                gap = math.log1p((time - session.last_at) / HOUR)
                features.gaps.update(gap)
                features.gaps_recent.update(gap)
                features.gap_last = gap
            ended = session
        session = features.session = SessionFeatures(number=session_number, started_at=time, last_at=time)
    elif time > session.last_at:
        features.dwell.update(math.log1p(time - session.last_at))
    session.events += 1
    session.last_at = max(session.last_at, time)
    _learn_click(features, session, event)
    return ended


def _count(session: SessionFeatures, token: str) -> None:
    bucket = bucket_of(token)
    session.hashed[bucket] = session.hashed.get(bucket, 0.0) + 1.0


def _learn_message(session: SessionFeatures, event: Event) -> None:
    """A chat message during the session (in the web session open now, or the next one's first)."""
    attrs = event.attrs
    if "product_id" in attrs:
        session.product_asked = True
    if "intent_id" in attrs:
        topic = topic_of(attrs["intent_id"])
        session.topics[topic] = session.topics.get(topic, 0.0) + 1.0
    if attrs["role"] == CUSTOMER:
        session.messages += 1


def _trail(session: SessionFeatures, category: str, column: int) -> None:
    counts = session.trail.get(category)
    if counts is None:
        if len(session.trail) >= MAX_TRAIL_CATEGORIES:
            return  # the session's first categories are its trail
        counts = session.trail[category] = [0, 0]
    counts[column] += 1


def _learn_click(features: UserFeatures, session: SessionFeatures, event: Event) -> None:
    kind, attrs, time = event.event_type, event.attrs, event.event_time
    intent = INTENT_OF_EVENT.get(kind)
    if intent is not None and session.intent is None:
        session.intent = intent
    if kind == "page_view":
        category = attrs.get("category")
        page = attrs["page"]
        if category == HELP_CATEGORY or page.startswith("/help"):
            session.help_views += 1
            category = category or HELP_CATEGORY
        elif page.startswith("/p/"):
            session.product_views += 1
        else:
            session.category_views += 1
        if category:
            _count(session, f"c:{category}")
            if category != HELP_CATEGORY:
                _trail(session, category, 0)
            if session.last_category and session.last_category != category:
                _count(session, f"t:{session.last_category}>{category}")
            session.last_category = category
    elif kind == "search":
        session.searches += 1
        tokens = _TOKEN.findall(attrs["query"].lower())[:MAX_QUERY_TOKENS]
        for token in tokens:
            _count(session, f"q:{token}")
        for category in session.trail:  # a search naming a category the session viewed
            if category in tokens or category.rstrip("s") in tokens:
                _trail(session, category, 1)
    elif kind == "add_to_cart":
        session.cart_adds += 1
        session.cart_value += attrs.get("price", 0.0) * attrs.get("quantity", 1)
        if session.first_cart_at is None:
            session.first_cart_at = time
    elif kind == "checkout_start":
        session.checkout = True
    elif kind == "payment_page_view":
        session.payment_page = True
    elif kind == "payment_failed":
        session.payment_failures += 1
    elif kind == "order_completed":
        features.orders.update(time)
    elif kind == "support_contact":
        features.support_contacts.update(time)
        features.support_week.update(time)
    elif kind == "feedback":
        features.low_scores += attrs["score"] <= 2
        features.mid_scores += attrs["score"] == 3
        score = features.score_last = (attrs["score"] - 1.0) / 4.0
        for average in (features.satisfaction, features.satisfaction_fast, features.satisfaction_slow):
            average.update(score)
