"""Per-user state, kept in a changelog-backed Faust table, and how one event updates it.

The state holds only what the triggers and the contact policy need: the current session, the page the
user is on and since when (dwell), whether they are on the payment page, their open shipments, which
orders they have contacted support about; their contact preferences, when and how they were last
contacted, interventions deferred by quiet hours, and the little history the offer rule reads (coupon
orders, discount offers accepted, payment pages left without paying).

>>> from streams.contracts.events import Event
>>> state = UserState("u1")
>>> apply_event(state, Event("e1", "payment_page_view", "clickstream", 100.0, "u1", {"page": "/pay"}))
>>> state.current_page, state.payment_entered_at, state.payment_anchor_id
('/pay', 100.0, 'e1')
>>> apply_event(state, Event("e2", "payment_completed", "clickstream", 130.0, "u1", {"order_id": "o1"}))
>>> state.payment_entered_at is None
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from models.emotion import NEGATIVE as NEGATIVE_EMOTIONS
from models.examples import PendingExamples
from models.features import UserFeatures
from models.health import Scores
from streams.contracts.events import (
    CLICKSTREAM,
    CONVERSATIONS,
    CUSTOMER,
    LOGISTICS,
    OUTCOMES,
    PREFERENCES,
    SUBSCRIPTIONS,
    Event,
)
from streams.contracts.interventions import Intervention
from streams.contracts.time import DAY
from streams.domain.activity import Activity
from streams.processes.desk import DeskBook
from streams.processes.orders import OrderLedger
from streams.processes.tickets import DeviceBook

PAYMENT_PAGE = "/checkout/payment"
# Bounds that keep one user's state small whatever the input does.
MAX_OPEN_SHIPMENTS = 50
MAX_REMEMBERED_ORDERS = 20
MAX_CONTACTS_PER_CHANNEL = 50  # above any sensible frequency cap
MAX_REMEMBERED_OFFERS = 20
MAX_ABANDONED_PAYMENTS = 10
MAX_DEFERRED = 20
MAX_SUBSCRIPTIONS = 10
MAX_RECENT_INTERVENTIONS = 10  # what the CRM API shows of a user's recent interventions
# A redelivered event (replayed after a crash or a rebalance, or re-sent by a producer) is recognised
# within the user's last this many events: a replay covers the seconds since the last commit.
MAX_RECENT_EVENT_IDS = 16
MAX_DECIDED = 20  # interventions finally decided, remembered so that a replay is not decided again
MAX_RECENT_MESSAGES = 8  # customer messages' emotions kept (no text) for the escalation's evidence
# The emotion trajectory's averages of the signed score (satisfaction minus anger and frustration):
# the level, and a fast and a slow one whose difference is the trend (as feedback's satisfaction).
EMOTION_LEVEL_ALPHA, EMOTION_FAST_ALPHA, EMOTION_SLOW_ALPHA = 0.3, 0.5, 0.1


@dataclass
class Shipment:
    shipment_id: str
    order_id: str
    promised_eta: float
    eta: float
    status: str
    updated_at: float
    exception_code: str | None = None
    # The ETA the last delay notice told the user about, so a further slip can be told again.
    notified_eta: float | None = None
    exception_notified: bool = False


@dataclass
class Preferences:
    """What the user told the ``preferences`` topic; the latest event (by event time) wins."""

    opt_out: bool = False
    channels: dict[str, bool] = field(default_factory=dict)  # a channel not listed is allowed
    timezone: str | None = None
    updated_at: float = 0.0

    def allows(self, channel: str) -> bool:
        """Whether the user accepts ``channel`` (opt-out is a rule of its own)."""
        return self.channels.get(channel, True)


@dataclass
class Subscription:
    plan: str
    status: str
    renews_at: float
    updated_at: float
    event_id: str  # of the snapshot applied
    reminded_for: float | None = None  # the renewal date a reminder was sent for (or missed)


@dataclass
class CrmAttributes:
    """What the CRM/ERP told us about the customer (``crm_updates``); fields left out keep their
    value, and the latest event (by event time) wins."""

    tier: str | None = None
    lifetime_value: float | None = None
    segments: list[str] = field(default_factory=list)
    updated_at: float = 0.0


@dataclass
class Deferred:
    """An intervention held back by quiet hours, decided again at ``release_at`` (event time)."""

    release_at: float
    intervention: Intervention


@dataclass
class Conversation:
    """The user's chat: the current chat session (its customer messages, the product and topic asked
    about) and the emotion trajectory of their customer messages. No text is kept: each message's
    emotion is read as it arrives (:func:`streams.domain.prediction.message_emotion`)."""

    session_id: str | None = None
    channel: str | None = None
    started_at: float = 0.0
    last_at: float = 0.0
    messages: int = 0  # customer messages in the chat session
    asked_product: str | None = None  # the latest product a message of the session named
    asked_at: float = 0.0
    topic: str | None = None  # the chat's latest intent id in the session
    # The trajectory over every customer message scored: the signed score's EWMA (level) and its fast and
    # slow EWMAs (trend = fast - slow), each starting at the first score.
    scored: int = 0
    level: float = 0.0
    fast: float = 0.0
    slow: float = 0.0
    emotion: str | None = None  # of the latest customer message, with its probability
    probability: float = 0.0
    # Customer messages since the emotion turned negative (0: the latest is not negative), and the message
    # that turned it (the episode an escalation fires once for).
    negative_run: int = 0
    negative_since: str | None = None
    # The latest customer messages' emotions, newest last: {message_id, emotion, probability, at}.
    recent: list[dict[str, Any]] = field(default_factory=list)

    @property
    def trend(self) -> float:
        """Recent emotion minus the longer-run level (-2..2): below 0, getting worse."""
        return self.fast - self.slow


@dataclass
class UserState:
    user_id: str
    # Partition of the user in the internal events topic: the timer sweep sends ticks there.
    partition: int = -1
    last_event_time: float = 0.0
    last_click_time: float = 0.0
    events_seen: int = 0
    session_id: str | None = None
    sessions: int = 0  # visits so far: a new number marks a new session
    session_start: float = 0.0
    session_events: int = 0
    current_page: str | None = None
    page_entered_at: float = 0.0
    cart_value: float | None = None
    # Set while the user is on the payment page: since when, and the event that brought them there.
    payment_entered_at: float | None = None
    payment_anchor_id: str | None = None
    payment_assist_sent: bool = False
    open_shipments: dict[str, Shipment] = field(default_factory=dict)
    # Delivered shipments (id -> time): late events about them must not reopen them.
    closed_shipments: dict[str, float] = field(default_factory=dict)
    # Orders the user contacted support about (order id -> time), for delay-notice evidence.
    support_contacts: dict[str, float] = field(default_factory=dict)
    preferences: Preferences = field(default_factory=Preferences)
    # Contact history for caps and cooldowns (event times): per channel, and per trigger the latest.
    contacts: dict[str, list[float]] = field(default_factory=dict)
    last_contact_by_trigger: dict[str, float] = field(default_factory=dict)
    deferred: list[Deferred] = field(default_factory=list)
    # History for offers: orders placed with a coupon, discount offers emitted (intervention id ->
    # offer kind) and accepted, payment-page visits left without paying (times).
    coupon_orders: int = 0
    offers_sent: dict[str, str] = field(default_factory=dict)
    accepted_discounts: int = 0
    abandoned_payments: list[float] = field(default_factory=list)
    # Lifecycle: subscriptions by id, visits decayed over a week and four weeks, and the decline
    # triggers that fired since activity last recovered.
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    activity: Activity = field(default_factory=Activity)
    decline_fired: list[str] = field(default_factory=list)
    last_visit_event_id: str | None = None
    # Prediction (streams.domain.prediction): features, examples waiting for their labels, the scores last
    # published, and the model-driven triggers fired (trigger -> what it fired for: a visit, a session).
    features: UserFeatures = field(default_factory=UserFeatures)
    pending: PendingExamples = field(default_factory=PendingExamples)
    scores: Scores | None = None
    model_fired: dict[str, str] = field(default_factory=dict)
    # The CRM's attributes, the tags of the user's latest tagged feedback (tag -> event time), and their
    # latest interventions ({intervention_id, trigger, action, channel, at}), newest last, for the API.
    crm: CrmAttributes = field(default_factory=CrmAttributes)
    feedback_tags: dict[str, float] = field(default_factory=dict)
    recent_interventions: list[dict[str, Any]] = field(default_factory=list)
    # The ids of the user's latest events, newest last: an event delivered again is not applied again.
    recent_event_ids: list[str] = field(default_factory=list)
    # Interventions finally decided (emitted or suppressed), newest last: a trigger that fires again for
    # the same anchor (an old event replayed, a session switching back) is not decided a second time.
    decided: list[str] = field(default_factory=list)
    crm_synced: str = ""  # fingerprint of the last crm_sync record sent (streams.processes.run)
    # Processes: the user's devices and their service history, and the order requests decided lately.
    devices: DeviceBook = field(default_factory=DeviceBook)
    orders: OrderLedger = field(default_factory=OrderLedger)
    # The user's recent tickets and tagged feedback, for the departments' updates (records written
    # before it existed decode to an empty book).
    desk: DeskBook = field(default_factory=DeskBook)
    # When (event time) the state was trimmed to the user's lasting facts, idle past the horizon
    # (streams.domain.eviction); None since the user was active again, or never trimmed. Records written
    # before the field existed decode to None.
    trimmed_at: float | None = None
    # The chat conversation: its session and the emotion trajectory (records written before it existed
    # decode to an empty one).
    conversation: Conversation = field(default_factory=Conversation)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UserState:
        values = dict(data)
        values["open_shipments"] = {
            key: Shipment(**shipment) for key, shipment in values.get("open_shipments", {}).items()
        }
        if "preferences" in values:
            values["preferences"] = Preferences(**values["preferences"])
        values["subscriptions"] = {
            key: Subscription(**item) for key, item in values.get("subscriptions", {}).items()
        }
        if "activity" in values:
            values["activity"] = Activity(**values["activity"])
        if "features" in values:
            values["features"] = UserFeatures.from_dict(values["features"])
        if "pending" in values:
            values["pending"] = PendingExamples.from_dict(values["pending"])
        if values.get("scores") is not None:
            values["scores"] = Scores(**values["scores"])
        if "crm" in values:
            values["crm"] = CrmAttributes(**values["crm"])
        if "devices" in values:
            values["devices"] = DeviceBook.from_dict(values["devices"])
        if "orders" in values:
            values["orders"] = OrderLedger.from_dict(values["orders"])
        if "desk" in values:
            values["desk"] = DeskBook.from_dict(values["desk"])
        if "conversation" in values:
            values["conversation"] = Conversation(**values["conversation"])
        values["deferred"] = [
            Deferred(item["release_at"], Intervention.from_dict(item["intervention"]))
            for item in values.get("deferred", [])
        ]
        return cls(**values)


def _remember(mapping: dict[str, Any], key: str, value: Any, limit: int) -> None:
    mapping.pop(key, None)
    mapping[key] = value
    while len(mapping) > limit:  # dicts keep insertion order: drop the oldest
        del mapping[next(iter(mapping))]


def first_delivery(state: UserState, event_id: str) -> bool:
    """Whether ``event_id`` is new to the user, remembering it if so. At-least-once delivery means an
    event can arrive twice (a replay of what was not committed before a crash, a producer's retry);
    applied twice, it would count twice in the state and the models.

    >>> state = UserState("u1")
    >>> first_delivery(state, "e1"), first_delivery(state, "e2"), first_delivery(state, "e1")
    (True, True, False)
    """
    if event_id in state.recent_event_ids:
        return False
    state.recent_event_ids.append(event_id)
    del state.recent_event_ids[:-MAX_RECENT_EVENT_IDS]
    return True


def apply_event(state: UserState, event: Event, session_gap: float = 1800.0) -> None:
    """Update ``state`` with one validated event (event-time semantics; late events are tolerated).

    A new session starts when the event's ``session_id`` changes or after ``session_gap`` seconds
    without events.
    """
    time = event.event_time
    state.events_seen += 1
    if event.source == CLICKSTREAM:
        _apply_clickstream(state, event, time, session_gap)
    elif event.source == LOGISTICS:
        _apply_logistics(state, event, time)
    elif event.source == PREFERENCES:
        _apply_preferences(state.preferences, event.attrs, time)
    elif event.source == OUTCOMES:
        _apply_outcome(state, event)
    elif event.source == SUBSCRIPTIONS:
        _apply_subscription(state, event, time)
    elif event.source == CONVERSATIONS:
        _apply_message(state.conversation, event, time)
    state.last_event_time = max(state.last_event_time, time)


def _apply_clickstream(state: UserState, event: Event, time: float, session_gap: float) -> None:
    attrs = event.attrs
    late = time < state.page_entered_at  # an event older than the page the user is on now
    # Older than the user's latest click: they have moved on since, so it says nothing of where they are
    # now (a payment page read after the payment that left it must not start a dwell).
    overtaken = time < state.last_click_time
    session_id = attrs.get("session_id")
    new_session = (session_id is not None and session_id != state.session_id) or (
        state.session_events == 0 or time - state.last_click_time > session_gap
    )
    if new_session and not late:  # a late event of an earlier session is not a new visit
        state.activity.learn_one(time)
        state.sessions += 1
        state.last_visit_event_id = event.event_id
        state.decline_fired.clear()  # back: a later decline is a new episode
        state.session_id = session_id
        state.session_start = time
        state.session_events = 0
        state.cart_value = None
        _leave_payment_page(state, abandoned_at=time)
    state.session_events += 1
    state.last_click_time = max(state.last_click_time, time)

    kind = event.event_type
    if kind == "support_contact" and "order_id" in attrs:
        _remember(state.support_contacts, attrs["order_id"], time, MAX_REMEMBERED_ORDERS)
    if late:
        return
    if kind == "add_to_cart" and "price" in attrs:
        state.cart_value = (state.cart_value or 0.0) + attrs["price"] * attrs.get("quantity", 1)
    elif kind in ("checkout_start", "payment_page_view") and "cart_value" in attrs:
        state.cart_value = attrs["cart_value"]

    if kind == "order_completed" and "coupon_code" in attrs:
        state.coupon_orders += 1
    if overtaken and kind in ("payment_page_view", "page_view"):
        return
    if kind == "payment_page_view":
        page = attrs.get("page", PAYMENT_PAGE)
        if state.payment_entered_at is None:  # a reload keeps the dwell running
            state.payment_entered_at = time
            state.payment_anchor_id = event.event_id
            state.payment_assist_sent = False
        _enter_page(state, page, time)
    elif kind == "page_view":
        _leave_payment_page(state, abandoned_at=time)
        _enter_page(state, attrs["page"], time)
    elif kind in ("payment_completed", "order_completed"):
        _leave_payment_page(state)
        state.cart_value = None


def _apply_message(conversation: Conversation, event: Event, time: float) -> None:
    """A chat message: a new chat session resets the session's counts and the negative run (yesterday's
    anger is not today's); a message naming a product sets the product asked about."""
    attrs = event.attrs
    if attrs["session_id"] != conversation.session_id:
        conversation.session_id = attrs["session_id"]
        conversation.started_at = time
        conversation.messages = 0
        conversation.asked_product = None
        conversation.topic = None
        conversation.negative_run = 0
        conversation.negative_since = None
    conversation.channel = attrs["channel"]
    conversation.last_at = max(conversation.last_at, time)
    if "product_id" in attrs and time >= conversation.asked_at:
        conversation.asked_product = attrs["product_id"]
        conversation.asked_at = time
    if "intent_id" in attrs:
        conversation.topic = attrs["intent_id"]
    if attrs["role"] == CUSTOMER:
        conversation.messages += 1


def record_emotion(conversation: Conversation, event: Event, proba: dict[str, float]) -> None:
    """A customer message's emotion (``proba``: a probability per emotion of
    :data:`models.emotion.EMOTIONS`) joins the trajectory, after the message was applied.

    >>> conversation = Conversation()
    >>> for i, emotion in enumerate(["neutral", "anger", "frustration"]):
    ...     message = Event(f"m{i}", "message", "conversations", 10.0 * i, "u1", {})
    ...     record_emotion(conversation, message, {emotion: 0.9, "neutral": 0.1} if i else {emotion: 1.0})
    >>> conversation.emotion, conversation.negative_run, conversation.negative_since, conversation.trend < 0
    ('frustration', 2, 'm1', True)
    """
    emotion = max(proba, key=proba.__getitem__)
    score = proba.get("satisfaction", 0.0) - sum(proba.get(name, 0.0) for name in NEGATIVE_EMOTIONS)
    if conversation.scored == 0:
        conversation.level = conversation.fast = conversation.slow = score
    else:
        for name, alpha in (
            ("level", EMOTION_LEVEL_ALPHA),
            ("fast", EMOTION_FAST_ALPHA),
            ("slow", EMOTION_SLOW_ALPHA),
        ):
            setattr(conversation, name, alpha * score + (1.0 - alpha) * getattr(conversation, name))
    conversation.scored += 1
    conversation.emotion, conversation.probability = emotion, round(proba[emotion], 4)
    if emotion in NEGATIVE_EMOTIONS:
        if conversation.negative_run == 0:
            conversation.negative_since = event.event_id
        conversation.negative_run += 1
    else:
        conversation.negative_run = 0
        conversation.negative_since = None
    conversation.recent.append(
        {
            "message_id": event.event_id,
            "emotion": emotion,
            "probability": conversation.probability,
            "at": event.event_time,
        }
    )
    del conversation.recent[:-MAX_RECENT_MESSAGES]


# Payment-page visits left unpaid within this long tell price sensitivity (offers, models).
PRICE_SENSITIVITY_WINDOW = 90 * DAY


def recent_abandoned_payments(state: UserState, now: float) -> int:
    """Payment-page visits the user left unpaid within :data:`PRICE_SENSITIVITY_WINDOW` before ``now``."""
    return sum(1 for t in state.abandoned_payments if now - PRICE_SENSITIVITY_WINDOW <= t <= now)


def _remember_time(times: list[float], time: float, limit: int) -> None:
    times.append(time)
    times.sort()  # late events land in their place
    del times[:-limit]


def record_contact(state: UserState, intervention: Intervention, time: float) -> None:
    """An intervention was emitted at ``time`` (event time): for caps, cooldowns and offer history."""
    _remember_time(state.contacts.setdefault(intervention.channel, []), time, MAX_CONTACTS_PER_CHANNEL)
    state.last_contact_by_trigger[intervention.trigger] = time
    state.recent_interventions.append(
        {
            "intervention_id": intervention.intervention_id,
            "trigger": intervention.trigger,
            "action": intervention.action,
            "channel": intervention.channel,
            "at": time,
        }
    )
    del state.recent_interventions[:-MAX_RECENT_INTERVENTIONS]
    if intervention.offer is not None:
        _remember(
            state.offers_sent, intervention.intervention_id, intervention.offer["kind"], MAX_REMEMBERED_OFFERS
        )


def _apply_preferences(preferences: Preferences, attrs: dict[str, Any], time: float) -> None:
    if time < preferences.updated_at:
        return  # an older change than the one applied: the latest wins
    preferences.updated_at = time
    if "opt_out" in attrs:
        preferences.opt_out = attrs["opt_out"]
    if "channels" in attrs:
        preferences.channels.update(attrs["channels"])
    if "timezone" in attrs:
        preferences.timezone = attrs["timezone"]


def _apply_subscription(state: UserState, event: Event, time: float) -> None:
    attrs = event.attrs
    current = state.subscriptions.get(attrs["subscription_id"])
    if current is not None and time < current.updated_at:
        return  # an older snapshot than the one applied: the latest wins
    reminded = current.reminded_for if current is not None else None
    subscription = Subscription(
        attrs["plan"], attrs["status"], attrs["renews_at"], time, event.event_id, reminded
    )
    _remember(state.subscriptions, attrs["subscription_id"], subscription, MAX_SUBSCRIPTIONS)


def _apply_outcome(state: UserState, event: Event) -> None:
    if event.event_type == "accepted" and state.offers_sent.get(event.attrs["intervention_id"]) == "discount":
        state.accepted_discounts += 1


def _enter_page(state: UserState, page: str, time: float) -> None:
    if page != state.current_page:
        state.current_page = page
        state.page_entered_at = time


def _leave_payment_page(state: UserState, abandoned_at: float | None = None) -> None:
    """Off the payment page; ``abandoned_at``: left without paying (browsed on, or a new session)."""
    if abandoned_at is not None and state.payment_entered_at is not None:
        _remember_time(state.abandoned_payments, abandoned_at, MAX_ABANDONED_PAYMENTS)
    state.payment_entered_at = None
    state.payment_anchor_id = None
    state.payment_assist_sent = False


def _apply_logistics(state: UserState, event: Event, time: float) -> None:
    attrs = event.attrs
    shipment_id = attrs["shipment_id"]
    if shipment_id in state.closed_shipments:
        return
    if event.event_type == "delivered":
        state.open_shipments.pop(shipment_id, None)
        _remember(state.closed_shipments, shipment_id, time, MAX_OPEN_SHIPMENTS)
        return
    shipment = state.open_shipments.get(shipment_id)
    if shipment is None:
        shipment = Shipment(
            shipment_id=shipment_id,
            order_id=attrs["order_id"],
            promised_eta=attrs["promised_eta"],
            eta=attrs.get("eta", attrs["promised_eta"]),
            status=event.event_type,
            updated_at=time,
        )
        state.open_shipments[shipment_id] = shipment
        while len(state.open_shipments) > MAX_OPEN_SHIPMENTS:
            del state.open_shipments[next(iter(state.open_shipments))]
    elif time < shipment.updated_at:
        return  # an older update than the one applied: the newer ETA stands
    shipment.promised_eta = attrs["promised_eta"]
    if "eta" in attrs:
        shipment.eta = attrs["eta"]
    shipment.status = event.event_type
    shipment.updated_at = time
    if event.event_type == "exception":
        shipment.exception_code = attrs["exception_code"]
