"""Event contracts (schema version 1) and their validation.

Producers send one JSON object per Kafka message. Every event carries:

* ``event_id``: a producer-chosen unique id (1-128 characters),
* ``event_type``: one of the types below for the topic it is sent to,
* ``event_time``: when it happened, as ISO 8601 with a time zone (``2026-11-24T10:00:00.250Z``)
  or as integer epoch milliseconds; all processing uses this time, never arrival time,
* ``user_id``: the customer the event belongs to,
* ``schema``: optional, ``1`` when present.

Type-specific fields are listed per source (the kind of topic the event came from: its topic in
:data:`streams.contracts.registry.SOURCE_TOPICS`) in :data:`FIELDS_BY_SOURCE`.
Unknown fields are dropped: Forewarn keeps only what a trigger needs.

:func:`parse_event` turns the raw bytes of one message into an :class:`Event`, or raises
:class:`InvalidEvent` whose ``reason`` is one of :data:`DEAD_LETTER_REASONS` (a bounded set, so it
can be a metric label) and whose ``detail`` says exactly what is wrong.

>>> event = parse_event(
...     b'{"event_id": "e1", "event_type": "payment_page_view", "event_time": 1764000000000,'
...     b' "user_id": "u1", "session_id": "s1", "page": "/checkout/payment"}',
...     source="clickstream",
... )
>>> event.event_type, event.event_time, event.attrs["page"]
('payment_page_view', 1764000000.0, '/checkout/payment')
>>> try:
...     parse_event(b'{"event_id": "e2"}', source="clickstream")
... except InvalidEvent as error:
...     print(error.reason, "-", error.detail)
missing_field - field 'event_type' is required
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from streams.contracts.time import DAY, to_millis
from streams.contracts.validation import (
    IDENTIFIER,
    MAX_ID_LENGTH,
    MAX_TEXT_LENGTH,
    check_timezone,
    is_id,
    is_number,
)

SCHEMA_VERSION = 1
# The sources: an event's ``source`` is the kind of topic it came from. Each constant is named as the
# setting of its topic (CRM_UPDATES: ``topic_crm_updates``, streams.contracts.registry); the values are
# on the wire and in ClickHouse, so the few older, shorter ones stay ("crm", "erasure", "support").
CLICKSTREAM = "clickstream"
LOGISTICS = "logistics"
PREFERENCES = "preferences"
OUTCOMES = "outcomes"
SUBSCRIPTIONS = "subscriptions"
CONVERSATIONS = "conversations"
# Behaviour and business state: these update the user's state, features, triggers and models.
SOURCES = (CLICKSTREAM, LOGISTICS, PREFERENCES, OUTCOMES, SUBSCRIPTIONS, CONVERSATIONS)
# Process inputs: requests from the chat and records from other systems (streams.processes.run).
SERVICE_REQUESTS = "service_requests"
DEVICES = "devices"
ORDER_REQUESTS = "order_requests"
CRM_UPDATES = "crm"
ERASURE_REQUESTS = "erasure"
SUPPORT_QUESTIONS = "support"
# Cross-department response: what the service desk and the product and marketing teams did with a
# ticket or a feedback (streams.processes.desk).
TICKET_UPDATES = "ticket_updates"
FEEDBACK_UPDATES = "feedback_updates"
PROCESS_SOURCES = (
    SERVICE_REQUESTS,
    DEVICES,
    ORDER_REQUESTS,
    CRM_UPDATES,
    ERASURE_REQUESTS,
    SUPPORT_QUESTIONS,
    TICKET_UPDATES,
    FEEDBACK_UPDATES,
)
MAX_ORDER_ITEMS = 100
SUBSCRIPTION_STATUSES = ("active", "past_due", "cancelled")
# The statuses of a ticket update (from the service desk) and of a feedback update (from a team); the
# order they may follow is streams.processes.desk's state machine.
TICKET_STATUSES = ("accepted", "technician_assigned", "on_site", "resolved", "reopened", "cancelled")
FEEDBACK_STATUSES = ("acknowledged", "planned", "shipped", "declined")
# Who wrote a chat message: the customer, the automated agent, or a human agent.
CUSTOMER = "customer"
MESSAGE_ROLES = (CUSTOMER, "agent", "human")

# Event times outside this window are rejected rather than allowed to poison per-user clocks. In UTC:
# a naive datetime here would move the bounds with the worker's local time zone.
MIN_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
MAX_EVENT_TIME = datetime(2100, 1, 1, tzinfo=UTC).timestamp()
DEFAULT_MAX_FUTURE_SKEW = DAY

CSAT_MIN, CSAT_MAX = 1, 5  # the range of a feedback event's satisfaction score
# The largest amount (price, cart value, order amount, revenue, lifetime value) accepted: beyond any real
# one in any currency. Unbounded, a price of 1e308 times a quantity overflows to infinity in the cart
# value, and one such event turns the features, then the partition's models, to NaN for every user.
MAX_AMOUNT = 1e12

DEAD_LETTER_REASONS = (
    "oversized",
    "malformed_json",
    "not_an_object",
    "unsupported_schema",
    "missing_field",
    "wrong_type",
    "invalid_value",
    "unknown_event_type",
    "unknown_product",  # a support question about a product the catalog does not know
    # a record of an internal topic not as Forewarn writes it (streams.contracts.internal)
    "invalid_internal",
    "changelog_refused",  # a table's changelog record refused at recovery (streams.worker.codec.CheckedTable)
    # ticket and feedback updates (streams.processes.desk)
    "unknown_status",  # a status not in TICKET_STATUSES / FEEDBACK_STATUSES
    "unknown_ticket",  # an update for a ticket the user's state does not hold
    "unknown_feedback",  # an update for a feedback the user's state does not hold
    "out_of_order",  # timed before the ticket or feedback was created, or before its latest update
    "invalid_transition",  # a status the state machine does not allow after the current one
)


class InvalidEvent(ValueError):
    """A message that cannot be accepted; ``reason`` is one of :data:`DEAD_LETTER_REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class Event:
    """A validated event. Times are float epoch seconds; ``attrs`` holds the type-specific fields."""

    event_id: str
    event_type: str
    source: str
    event_time: float
    user_id: str
    attrs: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        """The normalized JSON form used on Forewarn's internal topics (times in epoch ms)."""
        return {
            "schema": SCHEMA_VERSION,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "source": self.source,
            "event_time": to_millis(self.event_time),
            "user_id": self.user_id,
            "attrs": {k: to_millis(v) if k in TIME_FIELDS else v for k, v in self.attrs.items()},
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Event:
        attrs = data["attrs"]
        return cls(
            event_id=data["event_id"],
            event_type=data["event_type"],
            source=data["source"],
            event_time=data["event_time"] / 1000.0,
            user_id=data["user_id"],
            attrs={k: v / 1000.0 if k in TIME_FIELDS else v for k, v in attrs.items()},
        )


# --- field checkers: each returns the normalized value or raises InvalidEvent(wrong_type/invalid_value)


def check_identifier(name: str, value: Any) -> str:
    """``value`` of the field ``name`` as an id: a string of 1 to MAX_ID_LENGTH printable characters."""
    if not isinstance(value, str):
        raise InvalidEvent("wrong_type", f"field {name!r} must be a string, got {type(value).__name__}")
    if not is_id(value):
        raise InvalidEvent("invalid_value", f"field {name!r} must be 1-{MAX_ID_LENGTH} printable characters")
    return value


def check_text(name: str, value: Any) -> str:
    """``value`` of the field ``name`` as free text: a string of at most MAX_TEXT_LENGTH characters."""
    if not isinstance(value, str):
        raise InvalidEvent("wrong_type", f"field {name!r} must be a string, got {type(value).__name__}")
    if len(value) > MAX_TEXT_LENGTH:
        raise InvalidEvent("invalid_value", f"field {name!r} is longer than {MAX_TEXT_LENGTH} characters")
    return value


def _number(name: str, value: Any) -> float:
    if not is_number(value):
        raise InvalidEvent("wrong_type", f"field {name!r} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise InvalidEvent("invalid_value", f"field {name!r} must be finite")
    return float(value)


def _non_negative(name: str, value: Any) -> float:
    """An amount: a number from 0 to :data:`MAX_AMOUNT`."""
    number = _number(name, value)
    if number < 0:
        raise InvalidEvent("invalid_value", f"field {name!r} must not be negative")
    if number > MAX_AMOUNT:
        raise InvalidEvent("invalid_value", f"field {name!r} must be at most {MAX_AMOUNT:.0e}")
    return number


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEvent("wrong_type", f"field {name!r} must be an integer, got {type(value).__name__}")
    if not 0 < value <= 1_000_000:
        raise InvalidEvent("invalid_value", f"field {name!r} must be between 1 and 1000000")
    return value


def _csat_score(name: str, value: Any) -> float:
    """A satisfaction (CSAT) score: a number from 1 to 5."""
    score = _number(name, value)
    if not CSAT_MIN <= score <= CSAT_MAX:
        raise InvalidEvent("invalid_value", f"field {name!r} must be between {CSAT_MIN} and {CSAT_MAX}")
    return score


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidEvent("wrong_type", f"field {name!r} must be true or false, got {type(value).__name__}")
    return value


def _channel_switches(name: str, value: Any) -> dict[str, bool]:
    """``{"chat": true, "email": false}``: which channels the user accepts."""
    if not isinstance(value, dict):
        raise InvalidEvent("wrong_type", f"field {name!r} must be an object of channel: true/false")
    if len(value) > 16:
        raise InvalidEvent("invalid_value", f"field {name!r} lists more than 16 channels")
    for channel, allowed in value.items():
        if not IDENTIFIER.match(channel) or not isinstance(allowed, bool):
            raise InvalidEvent("invalid_value", f"field {name!r} must map channel names to true/false")
    return dict(value)


def _timezone(name: str, value: Any) -> str:
    text = check_text(name, value)
    if len(text) > 64 or not check_timezone(text):
        raise InvalidEvent("invalid_value", f"field {name!r} is not an IANA time zone")
    return text


def _uuid(name: str, value: Any) -> str:
    text = check_text(name, value)
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise InvalidEvent("invalid_value", f"field {name!r} is not a UUID") from None


def _ticket_status(name: str, value: Any) -> str:
    return _status(name, value, TICKET_STATUSES)


def _feedback_status(name: str, value: Any) -> str:
    return _status(name, value, FEEDBACK_STATUSES)


def _status(name: str, value: Any, statuses: tuple[str, ...]) -> str:
    text = check_text(name, value)
    if text not in statuses:
        raise InvalidEvent("unknown_status", f"field {name!r} must be one of {', '.join(statuses)}")
    return text


def _subscription_status(name: str, value: Any) -> str:
    text = check_text(name, value)
    if text not in SUBSCRIPTION_STATUSES:
        raise InvalidEvent(
            "invalid_value", f"field {name!r} must be one of {', '.join(SUBSCRIPTION_STATUSES)}"
        )
    return text


def _message_role(name: str, value: Any) -> str:
    text = check_text(name, value)
    if text not in MESSAGE_ROLES:
        raise InvalidEvent("invalid_value", f"field {name!r} must be one of {', '.join(MESSAGE_ROLES)}")
    return text


def _message_text(name: str, value: Any) -> str:
    """A message's text: 1 to MAX_TEXT_LENGTH characters, not blank."""
    text = check_text(name, value)
    if not text.strip():
        raise InvalidEvent("invalid_value", f"field {name!r} must not be blank")
    return text


def _channel_name(name: str, value: Any) -> str:
    """A channel's name (``chat``, ``app``, ``phone``): lower-case letters, digits and ``_``."""
    text = check_text(name, value)
    if len(text) > 64 or not IDENTIFIER.match(text):
        raise InvalidEvent("invalid_value", f"field {name!r} must be a lower-case name such as 'chat'")
    return text


def _latitude(name: str, value: Any) -> float:
    number = _number(name, value)
    if not -90.0 <= number <= 90.0:
        raise InvalidEvent("invalid_value", f"field {name!r} must be between -90 and 90")
    return number


def _longitude(name: str, value: Any) -> float:
    number = _number(name, value)
    if not -180.0 <= number <= 180.0:
        raise InvalidEvent("invalid_value", f"field {name!r} must be between -180 and 180")
    return number


def _order_items(name: str, value: Any) -> list[dict[str, Any]]:
    """``[{"sku": "SKU-1", "quantity": 2}, ...]``. Only the shape is checked here: a quantity that is
    not a positive whole number, or an unknown SKU, is the order's rejection (streams.processes.orders), a
    business answer the chat can give the customer, not a dead letter."""
    if not isinstance(value, list):
        raise InvalidEvent("wrong_type", f"field {name!r} must be a list of {{sku, quantity}} objects")
    if not 0 < len(value) <= MAX_ORDER_ITEMS:
        raise InvalidEvent("invalid_value", f"field {name!r} must hold 1-{MAX_ORDER_ITEMS} items")
    items = []
    for index, item in enumerate(value):
        where = f"{name}[{index}]"
        if not isinstance(item, dict):
            raise InvalidEvent("wrong_type", f"field {where!r} must be an object")
        sku = check_identifier(f"{where}.sku", required_field(item, "sku"))
        quantity = required_field(item, "quantity")
        if not is_number(quantity):
            raise InvalidEvent("wrong_type", f"field {where + '.quantity'!r} must be a number")
        if not math.isfinite(quantity):
            raise InvalidEvent("invalid_value", f"field {where + '.quantity'!r} must be finite")
        items.append({"sku": sku, "quantity": quantity})
    return items


def _labels(name: str, value: Any) -> list[str]:
    """A short list of identifiers (segments, tags)."""
    if not isinstance(value, list):
        raise InvalidEvent("wrong_type", f"field {name!r} must be a list of names")
    if len(value) > 32:
        raise InvalidEvent("invalid_value", f"field {name!r} holds more than 32 names")
    return [check_identifier(name, item) for item in value]


def parse_time(name: str, value: Any) -> float:
    """ISO 8601 with a time zone, or integer epoch milliseconds, to float epoch seconds."""
    if isinstance(value, bool):
        raise InvalidEvent("wrong_type", f"field {name!r} must be ISO 8601 text or epoch milliseconds")
    if isinstance(value, int):
        seconds = value / 1000.0
    elif isinstance(value, str):
        if len(value) > 40:
            raise InvalidEvent("invalid_value", f"field {name!r} is not an ISO 8601 time")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidEvent("invalid_value", f"field {name!r} is not an ISO 8601 time") from None
        if parsed.tzinfo is None:
            raise InvalidEvent("invalid_value", f"field {name!r} must carry a time zone")
        seconds = parsed.timestamp()
    else:
        raise InvalidEvent("wrong_type", f"field {name!r} must be ISO 8601 text or epoch milliseconds")
    if seconds < MIN_EVENT_TIME or seconds > MAX_EVENT_TIME:
        raise InvalidEvent("invalid_value", f"field {name!r} is outside 2000-01-01..2100-01-01")
    return seconds


Checker = Callable[[str, Any], Any]

# Type-specific fields: name -> (checker, required).
_PAGE = {"page": (check_text, True), "category": (check_text, False)}
CLICKSTREAM_FIELDS: dict[str, dict[str, tuple[Checker, bool]]] = {
    "page_view": _PAGE,
    "search": {"query": (check_text, True)},
    "add_to_cart": {
        "sku": (check_identifier, True),
        "quantity": (_positive_int, False),
        "price": (_non_negative, False),
    },
    "remove_from_cart": {"sku": (check_identifier, True)},
    "checkout_start": {"cart_value": (_non_negative, False)},
    "payment_page_view": {"page": (check_text, False), "cart_value": (_non_negative, False)},
    "payment_completed": {
        "order_id": (check_identifier, True),
        "amount": (_non_negative, False),
        "coupon_code": (check_identifier, False),
    },
    "payment_failed": {"reason": (check_text, False)},
    "order_completed": {
        "order_id": (check_identifier, True),
        "amount": (_non_negative, False),
        "coupon_code": (check_identifier, False),
    },
    "support_contact": {
        "reason": (check_text, False),
        "order_id": (check_identifier, False),
        "channel": (check_text, False),
    },
    # A satisfaction score the user gave (after a delivery, a support contact, ...).
    "feedback": {
        "score": (_csat_score, True),
        "comment": (check_text, False),
        "order_id": (check_identifier, False),
        "product_id": (check_identifier, False),
    },
}
_SHIPMENT = {
    "shipment_id": (check_identifier, True),
    "order_id": (check_identifier, True),
    "promised_eta": (parse_time, True),
    "carrier": (check_text, False),
    "location": (check_text, False),
}
LOGISTICS_FIELDS: dict[str, dict[str, tuple[Checker, bool]]] = {
    "shipment_created": {**_SHIPMENT, "eta": (parse_time, False)},
    "in_transit": {**_SHIPMENT, "eta": (parse_time, False)},
    "eta_changed": {**_SHIPMENT, "eta": (parse_time, True)},
    "delayed": {**_SHIPMENT, "eta": (parse_time, True), "detail": (check_text, False)},
    "exception": {
        **_SHIPMENT,
        "exception_code": (check_identifier, True),
        "detail": (check_text, False),
        "eta": (parse_time, False),
    },
    "delivered": {**_SHIPMENT},
}
PREFERENCES_FIELDS: dict[str, dict[str, tuple[Checker, bool]]] = {
    # Fields left out keep their earlier value; the latest event (by event time) wins.
    "preferences_updated": {
        "opt_out": (_boolean, False),
        "channels": (_channel_switches, False),
        "timezone": (_timezone, False),
    },
}
_OUTCOME = {"intervention_id": (_uuid, True), "channel": (check_text, False)}
# What the notifier reports back about an intervention.
OUTCOMES_FIELDS: dict[str, dict[str, tuple[Checker, bool]]] = {
    "delivered": _OUTCOME,
    "opened": _OUTCOME,
    "clicked": _OUTCOME,
    "accepted": _OUTCOME,
    "converted": {**_OUTCOME, "revenue": (_non_negative, False)},
    "dismissed": _OUTCOME,
    "escalated": _OUTCOME,  # handed to a human agent
    "resolved": _OUTCOME,  # closed by the automated agent
}
# The subscription as it now stands (a snapshot, latest event time wins), from the billing system.
SUBSCRIPTIONS_FIELDS: dict[str, dict[str, tuple[Checker, bool]]] = {
    "subscription_updated": {
        "subscription_id": (check_identifier, True),
        "plan": (check_identifier, True),
        "status": (_subscription_status, True),
        "renews_at": (parse_time, True),
    },
}
# A repair request from the chat: becomes a service ticket (streams.processes.tickets).
SERVICE_REQUEST_FIELDS: dict[str, dict[str, tuple[Checker, bool]]] = {
    "repair_requested": {
        "request_id": (check_identifier, True),
        "device_id": (check_identifier, True),
        "fault": (check_text, True),
        "latitude": (_latitude, True),
        "longitude": (_longitude, True),
    },
}
# A device the user owns, from the product registration or ERP system; the user is its owner.
DEVICES_FIELDS: dict[str, dict[str, tuple[Checker, bool]]] = {
    "device_registered": {
        "device_id": (check_identifier, True),
        "category": (check_identifier, True),
        "model": (check_text, True),
        "serial": (check_identifier, False),
        "purchased_at": (parse_time, False),
        "warranty_until": (parse_time, False),
    },
}
# An order the customer asked the chat for: becomes an order command or a rejection
# (streams.processes.orders).
ORDER_REQUEST_FIELDS: dict[str, dict[str, tuple[Checker, bool]]] = {
    "order_requested": {
        "request_id": (check_identifier, True),
        "items": (_order_items, True),
        "address_ref": (check_identifier, True),
    },
}
# Attributes the CRM/ERP keeps about the customer; fields left out keep their value, latest wins.
CRM_UPDATES_FIELDS: dict[str, dict[str, tuple[Checker, bool]]] = {
    "crm_attributes": {
        "tier": (check_identifier, False),
        "lifetime_value": (_non_negative, False),
        "segments": (_labels, False),
    },
}
# The right to erasure: every trace of the user goes (streams.contracts.erasure, sinks.erasure).
ERASURE_REQUESTS_FIELDS: dict[str, dict[str, tuple[Checker, bool]]] = {
    "erasure_requested": {"request_id": (check_identifier, True), "requested_by": (check_text, True)},
}
# A question a customer asked support about a product (the chat's intent as ``topic`` when it has one).
SUPPORT_QUESTIONS_FIELDS: dict[str, dict[str, tuple[Checker, bool]]] = {
    "question_asked": {
        "product_id": (check_identifier, True),
        "text": (check_text, True),
        "topic": (check_identifier, False),
    },
}
# A message of a chat conversation (the customer's, the automated agent's or a human agent's): the
# customer's emotion and what they asked about reach their round (streams.domain.conversation).
CONVERSATIONS_FIELDS: dict[str, dict[str, tuple[Checker, bool]]] = {
    "message": {
        "session_id": (check_identifier, True),
        "role": (_message_role, True),
        "text": (_message_text, True),
        "channel": (_channel_name, True),
        "product_id": (check_identifier, False),  # the product asked about
        "intent_id": (check_identifier, False),  # the chat's intent id
    },
}
# What the service desk did with a ticket (``event_id``: the update's id, ``event_time``: when it
# happened, ``user_id``: the ticket's user, as on the tickets topic). streams.processes.desk.
TICKET_UPDATES_FIELDS: dict[str, dict[str, tuple[Checker, bool]]] = {
    "ticket_updated": {
        "ticket_id": (_uuid, True),
        "status": (_ticket_status, True),
        "service_point_id": (check_identifier, True),
        "technician": (check_identifier, False),
        "note": (check_text, False),
    },
}
# What a team (product, marketing) did with a tagged feedback (``user_id``: the feedback's user).
FEEDBACK_UPDATES_FIELDS: dict[str, dict[str, tuple[Checker, bool]]] = {
    "feedback_updated": {
        "feedback_id": (check_identifier, True),
        "status": (_feedback_status, True),
        "team": (check_identifier, True),
        "note": (check_text, False),
    },
}
FIELDS_BY_SOURCE = {
    CLICKSTREAM: CLICKSTREAM_FIELDS,
    LOGISTICS: LOGISTICS_FIELDS,
    PREFERENCES: PREFERENCES_FIELDS,
    OUTCOMES: OUTCOMES_FIELDS,
    SUBSCRIPTIONS: SUBSCRIPTIONS_FIELDS,
    CONVERSATIONS: CONVERSATIONS_FIELDS,
    SERVICE_REQUESTS: SERVICE_REQUEST_FIELDS,
    DEVICES: DEVICES_FIELDS,
    ORDER_REQUESTS: ORDER_REQUEST_FIELDS,
    CRM_UPDATES: CRM_UPDATES_FIELDS,
    ERASURE_REQUESTS: ERASURE_REQUESTS_FIELDS,
    SUPPORT_QUESTIONS: SUPPORT_QUESTIONS_FIELDS,
    TICKET_UPDATES: TICKET_UPDATES_FIELDS,
    FEEDBACK_UPDATES: FEEDBACK_UPDATES_FIELDS,
}
# Common fields on every clickstream event besides the type-specific ones.
_CLICKSTREAM_COMMON = {"session_id": (check_identifier, False)}
TIME_FIELDS = frozenset({"promised_eta", "eta", "renews_at", "purchased_at", "warranty_until"})


def required_field(data: Mapping[str, Any], name: str) -> Any:
    """The field ``name`` of ``data``; absent or null is ``missing_field``."""
    if name not in data or data[name] is None:
        raise InvalidEvent("missing_field", f"field {name!r} is required")
    return data[name]


def read_json_object(raw: bytes | None, max_bytes: int = 65536) -> dict[str, Any]:
    """The envelope every JSON contract shares: a message of at most ``max_bytes`` holding a JSON
    object of schema 1 (``schema`` absent or ``1``); else :class:`InvalidEvent`."""
    if raw is None:
        raise InvalidEvent("malformed_json", "message has no value")
    if len(raw) > max_bytes:
        raise InvalidEvent("oversized", f"message is {len(raw)} bytes, the limit is {max_bytes}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidEvent("malformed_json", str(error)[:200]) from None
    if not isinstance(data, dict):
        raise InvalidEvent("not_an_object", f"expected a JSON object, got {type(data).__name__}")
    schema = data.get("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION or isinstance(schema, bool):
        raise InvalidEvent("unsupported_schema", f"schema {schema!r} is not supported (expected 1)")
    return data


def parse_event(
    raw: bytes,
    source: str,
    *,
    max_bytes: int = 65536,
    now: float | None = None,
    max_future_skew: float = DEFAULT_MAX_FUTURE_SKEW,
) -> Event:
    """Validate the raw bytes of one message from ``source`` (``clickstream`` or ``logistics``).

    ``now`` (epoch seconds) bounds how far in the future ``event_time`` may be; ``None`` skips that check.
    """
    return event_from_object(
        read_json_object(raw, max_bytes), source, now=now, max_future_skew=max_future_skew
    )


def event_from_object(
    data: Mapping[str, Any],
    source: str,
    *,
    now: float | None = None,
    max_future_skew: float = DEFAULT_MAX_FUTURE_SKEW,
) -> Event:
    """The checks of :func:`parse_event` past the envelope: ``data`` (a JSON object's fields) as an
    event of ``source``, or :class:`InvalidEvent`."""
    event_type = required_field(data, "event_type")
    if not isinstance(event_type, str):
        raise InvalidEvent("wrong_type", "field 'event_type' must be a string")
    known = FIELDS_BY_SOURCE[source]
    spec = known.get(event_type)
    if spec is None:
        raise InvalidEvent("unknown_event_type", f"{event_type[:64]!r} is not a {source} event type")

    event_id = check_identifier("event_id", required_field(data, "event_id"))
    event_time = parse_time("event_time", required_field(data, "event_time"))
    if now is not None and event_time > now + max_future_skew:
        raise InvalidEvent("invalid_value", "field 'event_time' is too far in the future")
    user_id = check_identifier("user_id", required_field(data, "user_id"))

    attrs: dict[str, Any] = {}
    checks = {**_CLICKSTREAM_COMMON, **spec} if source == CLICKSTREAM else spec
    for name, (check, required) in checks.items():
        value = data.get(name)
        if value is None:
            if required:
                raise InvalidEvent("missing_field", f"field {name!r} is required for {event_type}")
            continue
        attrs[name] = check(name, value)
    return Event(event_id, event_type, source, event_time, user_id, attrs)
