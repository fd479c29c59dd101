"""Hostile and broken input for the consumers, in families whose expected outcome is known.

Every generator takes a ``random.Random``: the property tests (``tests/reliability/test_fuzz.py``) hand it
Hypothesis's (``st.randoms()``, so failures shrink and runs are derandomized), the integration test a
seeded one, so both draw from the same families. A :class:`Sample` is one message as a producer would
send it to a source topic, with what the worker must do with it: ``"ok"`` (accept it), a dead-letter
reason (:data:`streams.contracts.events.DEAD_LETTER_REASONS`), or ``None`` when only "a known reason or
accepted" can be said (arbitrary bytes, several mutations at once).

Families (``Sample.family``):

* ``good``: valid events of every type of every source, with hostile but valid content: zero-width,
  right-to-left, emoji (with ZWJ and skin-tone modifiers), NUL and control characters, combining marks
  and CJK in text; printable non-ASCII ids of 1 and 128 characters; amounts from 0 and 5e-324 to the
  maximum; times as epoch ms and as ISO 8601 in every offset from -14:00 to +14:00, with and without
  fractions, at the contract's edges (2000-01-01, 2100-01-01, just short of the future-skew bound);
  unknown fields of any JSON (nested up to 400 deep, dropped); optional fields null; whitespace around
  the document.
* ``missing_field``, ``wrong_type``, ``invalid_value``, ``unknown_event_type``, ``unsupported_schema``,
  ``unknown_product``: one field of a valid event made wrong (left out or null; a value of the wrong
  JSON type, booleans where numbers go, floats where integers go; a value out of its range: empty and
  129-character ids, zero-width or control characters in ids, 1,025-character text, negative or
  too-large amounts, far-past (year 1) and far-future (9999, 10000) times, epoch ms beyond int64's
  seconds, times without a zone, events beyond the future skew; an unknown type; schema 2, "1", true,
  null; a product the catalog does not know).
* ``malformed_json``: truncated documents, invalid UTF-8, lone surrogates (escaped and raw),
  ``NaN``/``Infinity``/``1e400`` literals, nesting beyond orjson's depth limit (1,024), trailing
  garbage, a byte-order mark, an empty message, a tombstone (no value).
* ``oversized``: a string beyond ``max_event_bytes``. ``not_an_object``: arrays, scalars, null.
* ``duplicate_key``: a field given twice (the last one wins, as in orjson).
* ``chaos`` (expected ``None``): arbitrary bytes, and valid events with several mutations at once.

``SOURCE_TOPICS`` names the topic of each source as the worker's defaults do; ``LABELS`` and
``STOCK`` are the feedback-correction and stock contracts, which have their own parsers.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import available_timezones

import orjson

from streams.contracts.events import (
    CLICKSTREAM,
    DEFAULT_MAX_FUTURE_SKEW,
    FEEDBACK_STATUSES,
    FIELDS_BY_SOURCE,
    MAX_AMOUNT,
    MAX_EVENT_TIME,
    MAX_ORDER_ITEMS,
    MESSAGE_ROLES,
    MIN_EVENT_TIME,
    SUBSCRIPTION_STATUSES,
    SUPPORT_QUESTIONS,
    TICKET_STATUSES,
    _boolean,
    _channel_name,
    _channel_switches,
    _csat_score,
    _feedback_status,
    _labels,
    _latitude,
    _longitude,
    _message_role,
    _message_text,
    _non_negative,
    _order_items,
    _positive_int,
    _subscription_status,
    _ticket_status,
    _timezone,
    _uuid,
    check_identifier,
    check_text,
    parse_time,
)
from streams.contracts.feedback import CATEGORIES
from streams.contracts.registry import SOURCE_TOPICS as REGISTRY_SOURCE_TOPICS
from streams.contracts.validation import MAX_ID_LENGTH, MAX_TEXT_LENGTH
from streams.processes.catalog import load_catalog

LABELS = "labels"  # feedback_labels: models.tagger.parse_label
STOCK = "stock"  # stock: streams.processes.orders.parse_stock
# The default topic of each contract: the sources' from the registry, and the two with parsers of their own.
SOURCE_TOPICS = {
    **{source: topic.default for source, topic in REGISTRY_SOURCE_TOPICS.items()},
    LABELS: "feedback_labels",
    STOCK: "stock",
}
MAX_BYTES = 65536  # the worker's default max_event_bytes
OK = "ok"
COMMON = ("event_type", "event_id", "event_time", "user_id")
CATALOG = load_catalog()
PRODUCTS = sorted(CATALOG.products)
SKUS = sorted(CATALOG.skus)

# Valid in text fields: zero-width (space, joiner, non-joiner, BOM as text), right-to-left marks and
# overrides, emoji with ZWJ and modifiers, NUL and controls, combining marks, CJK, a non-BMP letter.
HOSTILE_TEXT = (
    "\u200b",
    "\u200c\u200d",
    "\ufeff",
    "\u202e\u0645\u0631\u062d\u0628\u0627\u202c",
    "\u200f\u05e9\u05dc\u05d5\u05dd",
    "\U0001f469\u200d\U0001f4bb",
    "\U0001f44d\U0001f3fd",
    "\U0001f1e9\U0001f1ea",
    "\x00",
    "\x1b[31m",
    "\r\n\t",
    "e\u0301\u0301\u0301",
    "\u8fd9\u4e2a\u8033\u673a\u592a\u8d35\u4e86",
    "\U00010348",
    "'; DROP TABLE events; --",
    "{{template}} %s %n",
    "\\u0000",
    " ",
    "price",
)
# Printable (str.isprintable) and so valid in ids, though not ASCII.
PRINTABLE_ODD = (
    "\U0001f469\u200d",  # not printable on its own: filtered below
    "\U0001f44d",
    "\u00e9",
    "\u4e2d",
    "\u0645",
    "\u05e9",
    "\U00010348",
    "\u00a0",  # not printable: filtered below
    " ",
    "'",
    '"',
    "\\",
    "/",
    "%",
)
PRINTABLE_ODD = tuple(piece for piece in PRINTABLE_ODD if piece.isprintable())
NOT_PRINTABLE = ("\u200b", "\u202e", "\n", "\x00", "\x7f", "\u00a0", "\ufeff", "\U000e0001")
_ZONES_WANTED = (
    "UTC",
    "Etc/GMT+12",
    "Etc/GMT-14",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    "America/St_Johns",
    "Europe/Berlin",
    "Asia/Shanghai",
    "America/Los_Angeles",
)
ZONES = tuple(zone for zone in _ZONES_WANTED if zone in available_timezones()) or ("UTC",)
BAD_ZONES = (
    "Mars/Olympus",
    "../etc/passwd",
    "America",
    "America/",
    "Europe/Berlin\x00",
    "utc ",
    "",
    "Z" * 65,
)
BAD_IDS = (
    "",
    "x" * (MAX_ID_LENGTH + 1),
    "\U0001f44d" * (MAX_ID_LENGTH + 1),
    *(f"id{c}x" for c in NOT_PRINTABLE),
)
JUNK_SCALARS = (
    None,
    True,
    False,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    1.7976931348623157e308,
    -5e-324,
    -0.0,
    "",
)
MIN_MS = round(MIN_EVENT_TIME * 1000)
MAX_MS = round(MAX_EVENT_TIME * 1000)
# Times that are never valid: far past and far future, as epoch ms and as ISO 8601.
BAD_MS = (
    MIN_MS - 1,
    MAX_MS + 1,
    0,
    -1,
    -62_135_596_800_000,  # 0001-01-01
    253_402_300_799_999,  # 9999-12-31
    2**63 - 1,
    -(2**63),
    2**64 - 1,
)
BAD_ISO = (
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59.999999-14:00",
    "10000-01-01T00:00:00Z",
    "1999-12-31T23:59:59.999Z",
    "2100-01-01T00:00:00.001Z",
    "2026-11-24T10:00:00",  # no zone
    "2026-11-24",
    "2026-02-30T00:00:00Z",
    "2026-11-24T24:00:01Z",
    "2026-06-30T23:59:60Z",
    "2026-11-24T10:00:00+24:00",
    "tomorrow",
    "",
    "1764000000000",
    "2026-11-24T10:00:00.000000000000000000000000000Z",
)


@dataclass(frozen=True, slots=True)
class Sample:
    """One message for a source topic and what the worker must do with it."""

    source: str  # a key of SOURCE_TOPICS
    family: str
    raw: bytes | None
    expected: str | None  # OK, a dead-letter reason, or None: any known reason, or accepted

    @property
    def topic(self) -> str:
        return SOURCE_TOPICS[self.source]


# --- valid values


def _pick(rnd: random.Random, values: Any) -> Any:
    return values[rnd.randrange(len(values))]


def printable_id(rnd: random.Random, prefix: str = "") -> str:
    """A valid id: printable, 1-128 characters, often not ASCII, sometimes exactly 128 long."""
    body = prefix + "".join(
        _pick(rnd, PRINTABLE_ODD) if rnd.random() < 0.3 else _pick(rnd, "abcXYZ019-_.:")
        for _ in range(rnd.randrange(0 if prefix else 1, 12))
    )
    if rnd.random() < 0.1:
        body = (body + "\U0001f44d" * MAX_ID_LENGTH)[:MAX_ID_LENGTH]
    return body[:MAX_ID_LENGTH]


def hostile_text(rnd: random.Random, limit: int = MAX_TEXT_LENGTH) -> str:
    """Valid text: pieces of :data:`HOSTILE_TEXT`, sometimes filled up to the limit exactly."""
    text = "".join(_pick(rnd, HOSTILE_TEXT) for _ in range(rnd.randrange(0, 8)))
    if rnd.random() < 0.1:
        text = (text + "\U0001f4a9" * limit)[:limit]
    return text[:limit]


def amount(rnd: random.Random) -> float | int:
    return _pick(rnd, (0, 0.0, -0.0, 5e-324, 19.99, 1, MAX_AMOUNT, int(MAX_AMOUNT), rnd.uniform(0, 1e6)))


def iso(seconds: float, rnd: random.Random) -> str:
    """``seconds`` as ISO 8601 in a random offset (-14:00..+14:00), with or without a fraction."""
    offset = timezone(timedelta(minutes=rnd.randrange(-14 * 60, 14 * 60 + 1)))
    moment = datetime.fromtimestamp(seconds, UTC).astimezone(offset)
    text = moment.isoformat(sep=_pick(rnd, "T "), timespec=_pick(rnd, ("seconds", "milliseconds", "auto")))
    return text.replace("+00:00", "Z") if rnd.random() < 0.5 else text


def good_time(rnd: random.Random, low_ms: int, high_ms: int) -> int | str:
    """A valid time between ``low_ms`` and ``high_ms``: epoch ms, or ISO 8601 (to the millisecond)."""
    ms = _pick(rnd, (low_ms, high_ms, rnd.randrange(low_ms, high_ms + 1)))
    return ms if rnd.random() < 0.5 else iso(ms / 1000.0, rnd)


def good_value(rnd: random.Random, check: Callable[..., Any], name: str, now_ms: int) -> Any:
    """A valid value for the field checked by ``check``."""
    if check is check_identifier:
        return printable_id(rnd)
    if check is check_text:
        return hostile_text(rnd)
    if check is _non_negative:
        return amount(rnd)
    if check is _positive_int:
        return _pick(rnd, (1, 1_000_000, rnd.randrange(1, 10)))
    if check is _csat_score:
        return _pick(rnd, (1, 5, 1.0, 4.5, rnd.randrange(1, 6)))
    if check is _boolean:
        return rnd.random() < 0.5
    if check is _channel_switches:
        names = ("chat", "email", "sms", "push", "x", "whatsapp_2")
        return {_pick(rnd, names): rnd.random() < 0.5 for _ in range(rnd.randrange(0, 5))}
    if check is _timezone:
        return _pick(rnd, ZONES)
    if check is _uuid:
        value = uuid.UUID(int=rnd.getrandbits(128))
        return _pick(rnd, (str(value), str(value).upper(), f"{{{value}}}", value.hex, f"urn:uuid:{value}"))
    if check is _subscription_status:
        return _pick(rnd, SUBSCRIPTION_STATUSES)
    if check is _ticket_status:
        return _pick(rnd, TICKET_STATUSES)
    if check is _feedback_status:
        return _pick(rnd, FEEDBACK_STATUSES)
    if check is _latitude:
        return _pick(rnd, (-90, 90, 0.0, 52.52, rnd.uniform(-90, 90)))
    if check is _longitude:
        return _pick(rnd, (-180, 180, -0.0, 13.4, rnd.uniform(-180, 180)))
    if check is _order_items:
        # Any shape the contract takes; unknown SKUs and odd quantities are the order's rejection.
        count = _pick(rnd, (1, 2, 3, MAX_ORDER_ITEMS))
        quantities = (1, 2, 2.0, 0, -1, 1.5, 1e308, -0.0, 10**18, 1000)
        return [
            {
                "sku": _pick(rnd, SKUS) if rnd.random() < 0.7 else printable_id(rnd),
                "quantity": _pick(rnd, quantities),
            }
            for _ in range(count)
        ]
    if check is _message_role:
        return _pick(rnd, MESSAGE_ROLES)
    if check is _message_text:  # not blank
        return hostile_text(rnd, MAX_TEXT_LENGTH - 1) + _pick(rnd, ("x", "\u6012", "!"))
    if check is _channel_name:
        return _pick(rnd, ("chat", "app", "phone", "human_queue", "c" * 64))
    if check is _labels:
        return [printable_id(rnd) for _ in range(_pick(rnd, (0, 1, 3, 32)))]
    if check is parse_time:
        return good_time(rnd, MIN_MS, MAX_MS)
    raise AssertionError(f"no generator for {name} ({check})")


def good_fields(rnd: random.Random, source: str, now_ms: int, event_id: str, user_id: str) -> dict[str, Any]:
    """A valid event of ``source`` as a dict, every optional field there or not (or null)."""
    event_type = _pick(rnd, sorted(FIELDS_BY_SOURCE[source]))
    skew_ms = round(DEFAULT_MAX_FUTURE_SKEW * 1000) - 60_000  # a minute short of the future bound
    fields: dict[str, Any] = {
        "event_id": event_id,
        "event_type": event_type,
        "event_time": good_time(rnd, MIN_MS, now_ms + skew_ms),
        "user_id": user_id,
    }
    if rnd.random() < 0.3:
        fields["schema"] = 1
    spec = dict(FIELDS_BY_SOURCE[source][event_type])
    if source == CLICKSTREAM:
        spec["session_id"] = (check_identifier, False)
    for name, (check, required) in spec.items():
        roll = rnd.random()
        if required or roll < 0.6:
            fields[name] = good_value(rnd, check, name, now_ms)
        elif roll < 0.7:
            fields[name] = None  # null reads as absent
    if source == SUPPORT_QUESTIONS:
        fields["product_id"] = _pick(rnd, PRODUCTS)
    if rnd.random() < 0.3:
        fields[f"x_{rnd.randrange(100)}"] = junk(rnd)  # unknown fields are dropped
    return fields


def junk(rnd: random.Random, depth: int = 0) -> Any:
    """Any JSON value: scalars at their edges, strings, lists and objects, sometimes deeply nested."""
    roll = rnd.random()
    if roll < 0.05 and depth == 0:
        return nested(rnd.randrange(1, 250), rnd)
    if roll < 0.5 or depth > 3:
        return _pick(rnd, (*JUNK_SCALARS, hostile_text(rnd)))
    if roll < 0.75:
        return [junk(rnd, depth + 1) for _ in range(rnd.randrange(0, 4))]
    return {hostile_text(rnd, 20): junk(rnd, depth + 1) for _ in range(rnd.randrange(0, 4))}


def nested(depth: int, rnd: random.Random | None = None) -> Any:
    """Lists and objects nested ``depth`` deep (orjson writes at most 254 levels; see
    :func:`nested_bytes` for deeper)."""
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if rnd is None or level % 2 else {"k": value}
    return value


def nested_bytes(depth: int) -> bytes:
    """A JSON array nested ``depth`` deep (orjson reads at most 1,024 levels)."""
    return b"[" * depth + b"]" * depth


def with_field(raw: bytes, name: str, value: bytes) -> bytes:
    """``raw`` (a JSON object) with one more field whose value is the JSON text ``value``."""
    return raw[:-1] + b',"' + name.encode() + b'":' + value + b"}"


# --- wrong values, with the reason each must be dead-lettered with


def wrong_type_value(rnd: random.Random, check: Callable[..., Any]) -> Any:
    """A value of the wrong JSON type for ``check`` (booleans where numbers go, floats for integers)."""
    if check in (
        check_identifier,
        check_text,
        _timezone,
        _uuid,
        _subscription_status,
        _ticket_status,
        _feedback_status,
        _message_role,
        _message_text,
        _channel_name,
    ):
        return _pick(rnd, (7, 0, 1.5, True, False, [], ["a"], {}, {"a": "b"}, nested(50)))
    if check in (_non_negative, _csat_score, _latitude, _longitude):
        return _pick(rnd, ("9.99", "NaN", "Infinity", True, False, [], {}, [1]))
    if check is _positive_int:
        return _pick(rnd, (2.0, 1.5, "3", True, False, [1], 1e300))
    if check is _boolean:
        return _pick(rnd, (0, 1, "true", "false", [], {}))
    if check is _channel_switches:
        return _pick(rnd, (["chat"], "chat", 1, True))
    if check is _order_items:
        return _pick(
            rnd, ({"sku": "a", "quantity": 1}, "SKU-1", 3, [["SKU-1", 1]], [{"sku": 5, "quantity": 1}])
        )
    if check is _labels:
        return _pick(rnd, ("vip", 1, {"a": 1}, [5], [["vip"]]))
    if check is parse_time:
        return _pick(rnd, (1.764e12, 1764000000000.5, True, False, [2026, 11, 24], {"ms": 1}))
    raise AssertionError(check)


def invalid_value(rnd: random.Random, check: Callable[..., Any], name: str, now_ms: int) -> Any:
    """A value of the right JSON type but out of its range for ``check``."""
    if check is check_identifier:
        return _pick(rnd, BAD_IDS)
    if check is check_text:
        return _pick(rnd, ("x" * (MAX_TEXT_LENGTH + 1), "\u4e2d" * (MAX_TEXT_LENGTH + 1)))
    if check is _non_negative:
        return _pick(rnd, (-0.01, -1, -(2**63), MAX_AMOUNT * 1.01, 1.7e308, 2**64 - 1, 10**13))
    if check is _positive_int:
        return _pick(rnd, (0, -1, 1_000_001, 2**63 - 1, 2**64 - 1, -(2**63)))
    if check is _csat_score:
        return _pick(rnd, (0, 0.99, 5.01, 6, -1e308, 1e308))
    if check is _channel_switches:
        return _pick(rnd, ({"Chat": True}, {"chat": 1}, {"": True}, {f"c{i}": True for i in range(17)}))
    if check is _timezone:
        return _pick(rnd, BAD_ZONES)
    if check is _uuid:
        return _pick(rnd, ("not-a-uuid", "", "0" * 33, "0" * 31, "g" * 32, "{" + "0" * 31))
    if check is _subscription_status:
        return _pick(rnd, ("ACTIVE", "paused", "", "active "))
    if check in (_ticket_status, _feedback_status):  # dead-lettered as unknown_status (see mutate)
        return _pick(rnd, ("ACCEPTED", "escalated", "", "resolved "))
    if check is _message_role:
        return _pick(rnd, ("bot", "Customer", "", "agent "))
    if check is _message_text:
        return _pick(rnd, (" ", "\n\t ", "x" * (MAX_TEXT_LENGTH + 1)))
    if check is _channel_name:
        return _pick(rnd, ("Chat", "live chat", "c" * 65, ""))
    if check is _latitude:
        return _pick(rnd, (90.0001, -91, 1e308, -1e308))
    if check is _longitude:
        return _pick(rnd, (180.5, -181, 1e308))
    if check is _order_items:
        return _pick(
            rnd, ([], [{"sku": "SKU-1", "quantity": 1}] * (MAX_ORDER_ITEMS + 1), [{"sku": "", "quantity": 1}])
        )
    if check is _labels:
        return _pick(rnd, (["vip"] * 33, [""], ["a\u200bb"]))
    if check is parse_time:
        return _pick(rnd, BAD_MS + BAD_ISO)
    raise AssertionError(f"{name}: {check} has no invalid value of the right type")


def _checks(source: str, event_type: str) -> dict[str, tuple[Callable[..., Any], bool]]:
    spec = dict(FIELDS_BY_SOURCE[source][event_type])
    if source == CLICKSTREAM:
        spec = {"session_id": (check_identifier, False), **spec}
    return spec


def mutate(
    rnd: random.Random, source: str, fields: dict[str, Any], now_ms: int, event_type: str | None = None
) -> tuple[str, dict[str, Any]]:
    """One field of a valid event made wrong; returns the reason it must be dead-lettered with."""
    event_type = event_type or fields["event_type"]
    spec = _checks(source, event_type)
    kind = _pick(
        rnd, ("missing_field", "wrong_type", "invalid_value", "unknown_event_type", "unsupported_schema")
    )
    out = dict(fields)
    if kind == "missing_field":
        required = [*COMMON, *(name for name, (_, need) in spec.items() if need)]
        name = _pick(rnd, required)
        if rnd.random() < 0.5:
            out.pop(name, None)
        else:
            out[name] = None
        return kind, out
    if kind == "unknown_event_type":
        others = [t for s, types in FIELDS_BY_SOURCE.items() if s != source for t in types]
        out["event_type"] = _pick(
            rnd, ("teleport", "", "PAGE_VIEW", "page_view ", "\U0001f47e", "x" * 5000, *others)
        )
        if out["event_type"] in FIELDS_BY_SOURCE[source]:  # a type of this source too: not wrong
            out["event_type"] = "teleport"
        return kind, out
    if kind == "unsupported_schema":
        out["schema"] = _pick(rnd, (2, 0, -1, "1", True, 1.5, [1], {"v": 1}, 2**64 - 1))
        return kind, out
    if kind == "wrong_type":
        name = _pick(rnd, [*COMMON, *spec])
        if name == "event_type":
            out[name] = _pick(rnd, (5, True, ["page_view"], {"t": 1}))
        elif name in ("event_id", "user_id"):
            out[name] = wrong_type_value(rnd, check_identifier)
        elif name == "event_time":
            out[name] = wrong_type_value(rnd, parse_time)
        else:
            out[name] = wrong_type_value(rnd, spec[name][0])
        return kind, out
    # invalid_value: a field whose checker has a wrong value of the right type
    candidates = ["event_id", "event_time", "user_id", "future"] + [
        name for name, (check, _) in spec.items() if check is not _boolean
    ]
    name = _pick(rnd, candidates)
    if name == "future":
        out["event_time"] = now_ms + round(DEFAULT_MAX_FUTURE_SKEW * 1000) + _pick(rnd, (3_600_000, 10**9))
    elif name in ("event_id", "user_id"):
        out[name] = invalid_value(rnd, check_identifier, name, now_ms)
    elif name == "event_time":
        out[name] = invalid_value(rnd, parse_time, name, now_ms)
    else:
        out[name] = invalid_value(rnd, spec[name][0], name, now_ms)
        if spec[name][0] in (_ticket_status, _feedback_status):
            kind = "unknown_status"
    return kind, out


# --- whole messages


def event_sample(rnd: random.Random, source: str, now_ms: int, index: int, *, chaos: bool = True) -> Sample:
    """A message for ``source``: valid, one field wrong, broken bytes, or (``chaos``) anything."""
    event_id = printable_id(rnd, f"e{index}-")
    user_id = printable_id(rnd, f"u{index % 7}-") if rnd.random() < 0.9 else printable_id(rnd)
    fields = good_fields(rnd, source, now_ms, event_id, user_id)
    roll = rnd.random()
    if roll < 0.35:
        if source == SUPPORT_QUESTIONS and rnd.random() < 0.25:
            fields["product_id"] = printable_id(rnd, "no-such-product-")
            return Sample(source, "unknown_product", orjson.dumps(fields), "unknown_product")
        return Sample(source, "good", _good_bytes(rnd, fields), OK)
    if roll < 0.7:
        reason, broken = mutate(rnd, source, fields, now_ms)
        return Sample(source, reason, orjson.dumps(broken), reason)
    if roll < 0.9 or not chaos:
        return raw_sample(rnd, source, fields, "user_id")
    if rnd.random() < 0.5:
        return Sample(source, "chaos", rnd.randbytes(rnd.randrange(0, 200)), None)
    event_type = fields["event_type"]
    for _ in range(rnd.randrange(2, 5)):
        _, fields = mutate(rnd, source, fields, now_ms, event_type)
    return Sample(source, "chaos", orjson.dumps(fields), None)


def _good_bytes(rnd: random.Random, fields: dict[str, Any]) -> bytes:
    raw = orjson.dumps(fields)
    roll = rnd.random()
    if roll < 0.1:
        return b" \n\t" + raw + b"\r\n "
    if roll < 0.2:  # nested below orjson's limit in a field the contract does not know: dropped
        return with_field(raw, "x_deep", nested_bytes(rnd.randrange(100, 1023)))
    return raw


def raw_sample(rnd: random.Random, source: str, fields: dict[str, Any], string_key: str) -> Sample:
    """A valid document broken at the byte level (``string_key``: a string field to break inside)."""
    raw = orjson.dumps(fields)
    kind = rnd.randrange(12)
    marker = f'"{string_key}":"'.encode()
    at = raw.index(marker) + len(marker)
    if kind == 0:
        return Sample(source, "malformed_json", raw[: rnd.randrange(0, len(raw))], "malformed_json")
    if kind == 1:
        bad = _pick(rnd, (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x80"))
        return Sample(source, "malformed_json", raw[:at] + bad + raw[at:], "malformed_json")
    if kind == 2:
        bad = _pick(rnd, (rb"\ud800", rb"\udfff", rb"\ud83d\u0041", rb"\uDC00\uD800", rb"\u12G", rb"\x41"))
        return Sample(source, "malformed_json", raw[:at] + bad + raw[at:], "malformed_json")
    if kind == 3:
        literal = _pick(
            rnd,
            (b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"nan", b"01", b"+1", b"1" + b"0" * 400),
        )
        return Sample(source, "malformed_json", with_field(raw, "x_n", literal), "malformed_json")
    if kind == 4:  # beyond orjson's depth limit, in a field the contract does not even know
        deep = nested_bytes(_pick(rnd, (1024, 1100, 5000)))
        return Sample(source, "malformed_json", with_field(raw, "x_deep", deep), "malformed_json")
    if kind == 5:
        garbage = _pick(rnd, (b"x", b"\x00", b"{}", b",", b"\xef\xbb\xbf"))
        return Sample(source, "malformed_json", raw + garbage, "malformed_json")
    if kind == 6:
        prefix = _pick(rnd, (b"\xef\xbb\xbf", b"\x00", b"//", b"\xff\xfe"))
        return Sample(source, "malformed_json", prefix + raw, "malformed_json")
    if kind == 7:
        return Sample(source, "malformed_json", _pick(rnd, (b"", None, b" ", b"\n")), "malformed_json")
    if kind == 8:
        filler = _pick(rnd, ("x", "\U0001f4a9", "\u200b")) * MAX_BYTES
        return Sample(source, "oversized", orjson.dumps({**fields, "x_big": filler}), "oversized")
    if kind == 9:
        value = _pick(
            rnd,
            (b"[]", b"null", b"42", b'"event"', b"true", b"[" + raw + b"]", nested_bytes(1000)),
        )
        return Sample(source, "not_an_object", value, "not_an_object")
    if kind == 10:  # the same key twice: orjson keeps the last
        again = _pick(rnd, ((b"5", "wrong_type"), (b'""', "invalid_value"), (b"null", "missing_field")))
        return Sample(source, "duplicate_key", with_field(raw, string_key, again[0]), again[1])
    # numbers too large for int64 (read as floats), or for a float at all, where a string goes
    literal, reason = _pick(
        rnd,
        (
            (b"18446744073709551616", "wrong_type"),
            (b"-9223372036854775809", "wrong_type"),
            (b"1e308", "wrong_type"),
            (b"1" + b"0" * 400, "malformed_json"),
        ),
    )
    return Sample(source, reason, raw[: at - 1] + literal + raw[_string_end(raw, at) :], reason)


def _string_end(raw: bytes, start: int) -> int:
    """The index just past the JSON string whose first character is at ``start``."""
    index = start
    while raw[index : index + 1] != b'"':
        index += 2 if raw[index : index + 1] == b"\\" else 1
    return index + 1


def good_label(rnd: random.Random, now_ms: int, index: int) -> dict[str, Any]:
    return {
        "feedback_id": printable_id(rnd, f"f{index}-"),
        "text": hostile_text(rnd, MAX_TEXT_LENGTH - 1) + "x",  # not blank
        "tags": rnd.sample(CATEGORIES, rnd.randrange(1, len(CATEGORIES) + 1)),
        "labelled_by": printable_id(rnd, "ana"),
        "labelled_at": good_time(rnd, MIN_MS, MAX_MS),
    }


def label_sample(rnd: random.Random, now_ms: int, index: int) -> Sample:
    """A feedback correction: valid, one field wrong, or broken bytes."""
    fields = good_label(rnd, now_ms, index)
    roll = rnd.random()
    if roll < 0.35:
        return Sample(LABELS, "good", orjson.dumps(fields), OK)
    if roll < 0.7:
        name, value, reason = _pick(
            rnd,
            (
                ("feedback_id", None, "missing_field"),
                ("text", 5, "wrong_type"),
                ("text", " \u3000\n", "invalid_value"),  # blank
                ("text", "x" * (MAX_TEXT_LENGTH + 1), "invalid_value"),
                ("tags", [], "invalid_value"),
                ("tags", ["shipping"], "invalid_value"),
                ("tags", ["pricing", "pricing"], "invalid_value"),
                ("tags", "pricing", "wrong_type"),
                ("tags", [1], "wrong_type"),
                ("tags", None, "missing_field"),
                ("labelled_by", "a\u200bb", "invalid_value"),
                ("labelled_at", _pick(rnd, BAD_MS + BAD_ISO), "invalid_value"),
                ("labelled_at", 1.7e12, "wrong_type"),
                ("labelled_at", None, "missing_field"),
                ("schema", 2, "unsupported_schema"),
            ),
        )
        return Sample(LABELS, reason, orjson.dumps({**fields, name: value}), reason)
    return raw_sample(rnd, LABELS, fields, "feedback_id")


def stock_sample(rnd: random.Random, now_ms: int, index: int) -> Sample:
    """A stock level: valid, one field wrong, or broken bytes."""
    fields = {
        "sku": _pick(rnd, SKUS) if rnd.random() < 0.8 else printable_id(rnd),
        "available": _pick(rnd, (0, 1, 2**63 - 1, 2**64 - 1, 5.0, 1e15)),
        "as_of": good_time(rnd, MIN_MS, MAX_MS),
    }
    roll = rnd.random()
    if roll < 0.35:
        return Sample(STOCK, "good", orjson.dumps(fields), OK)
    if roll < 0.7:
        name, value, reason = _pick(
            rnd,
            (
                ("sku", None, "missing_field"),
                ("sku", 5, "wrong_type"),
                ("sku", "", "invalid_value"),
                ("sku", "a\nb", "invalid_value"),
                ("available", True, "wrong_type"),
                ("available", "5", "wrong_type"),
                ("available", -1, "invalid_value"),
                ("available", 1.5, "invalid_value"),
                ("available", 1.7e308, OK),  # a whole number, if an absurd one
                ("as_of", _pick(rnd, BAD_MS + BAD_ISO), "invalid_value"),
                ("as_of", None, "missing_field"),
            ),
        )
        return Sample(
            STOCK, reason if reason != OK else "good", orjson.dumps({**fields, name: value}), reason
        )
    return raw_sample(rnd, STOCK, fields, "sku")


def any_sample(rnd: random.Random, source: str, now_ms: int, index: int, *, chaos: bool = True) -> Sample:
    if source == LABELS:
        return label_sample(rnd, now_ms, index)
    if source == STOCK:
        return stock_sample(rnd, now_ms, index)
    return event_sample(rnd, source, now_ms, index, chaos=chaos)
