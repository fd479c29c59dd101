"""Kafka messages to ClickHouse rows, one pure function per table.

Each function takes the message's value, headers, partition and offset, and returns the row in the
order of its table's ``COLUMNS``; a value it cannot read raises ``ValueError`` (or ``KeyError``,
``TypeError``). A table whose messages may hold several rows (``forewarn-events``: envelopes of events)
also has a ``to_rows`` function giving the message's rows in a list.

>>> import orjson
>>> value = orjson.dumps({"event_id": "e1", "event_type": "page_view", "source": "clickstream",
...     "event_time": 1764000000000, "user_id": "u1", "attrs": {"page": "/", "session_id": "s1"}})
>>> event_row(value, [], 2, 40)[:6]
('e1', 'clickstream', 'page_view', 1764000000000, 'u1', 's1')
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson

from models.emotion import lexicon_emotion
from streams.contracts.deadletters import read_dead_letter_headers
from streams.contracts.envelopes import ENVELOPE_VERSION
from streams.contracts.events import CONVERSATIONS
from streams.contracts.registry import TOPICS
from streams.contracts.time import iso_millis
from streams.domain.contact import DECISION_KINDS

if TYPE_CHECKING:
    from streams.contracts.settings import Settings

Headers = Sequence[tuple[str, bytes]]


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def canonical_uuid(text: Any) -> str:
    """``str(UUID(text))``, the lower-case hyphenated form the ids' row ids are compared in (what
    ``toString`` of a ClickHouse UUID gives): ``text`` itself when it is already in that form, as
    Forewarn writes its ids, without parsing it. Raises ``ValueError`` for a string that is no UUID,
    ``TypeError`` for anything else (UUID itself would raise AttributeError).

    >>> canonical_uuid("0B8A6128-0B8A-5EE9-BFAB-18E8F49F0582")
    '0b8a6128-0b8a-5ee9-bfab-18e8f49f0582'
    """
    if text.__class__ is not str:
        raise TypeError(f"a UUID must be a string, not {type(text).__name__}")
    if _CANONICAL_UUID.fullmatch(text):
        return text
    return str(UUID(text))


@dataclass(frozen=True, slots=True)
class UnreadableItem:
    """An item of a message that gives no row (an event of an envelope that cannot be read): why, its
    JSON, which is dead-lettered in its place (None: the whole message is), and which item of the
    message it is (counted from 1; 0: the whole message), which its dead letter says."""

    detail: str
    value: bytes | None
    item: int = 0


# A message's rows, and the items of it that give none.
RowsOf = Callable[[bytes, Headers, int, int], tuple[list[tuple[Any, ...]], list[UnreadableItem]]]


def event_row(value: bytes, headers: Headers, partition: int, offset: int) -> tuple[Any, ...]:
    """The row of a single event (:meth:`streams.contracts.events.Event.to_wire`)."""
    return _event_row(orjson.loads(value), partition, offset)


def event_rows(
    value: bytes, headers: Headers, partition: int, offset: int
) -> tuple[list[tuple[Any, ...]], list[UnreadableItem]]:
    """The rows of a ``forewarn-events`` message: one per event of an envelope
    (:mod:`streams.contracts.envelopes`),
    in order, each with the message's partition and offset; and an :class:`UnreadableItem` for each
    event that cannot be read as a row (its neighbours are read). A single event (the form before
    envelopes) is an envelope of one. A message that is neither raises ``ValueError``, ``KeyError`` or
    ``TypeError``.

    >>> envelope = b'{"envelope": 1, "events": [%s, {"event_id": "e2"}]}' % orjson.dumps({"event_id": "e1",
    ...     "event_type": "page_view", "source": "clickstream", "event_time": 1764000000000,
    ...     "user_id": "u1", "attrs": {"page": "/"}})
    >>> [first], [second] = event_rows(envelope, [], 2, 40)
    >>> first[0], first[-2:], second
    ('e1', (2, 40), UnreadableItem(detail="KeyError('attrs')", value=b'{"event_id":"e2"}', item=2))
    """
    data = orjson.loads(value)
    if data.__class__ is not dict:
        raise TypeError(f"expected a JSON object, got {type(data).__name__}")
    if "envelope" not in data:
        return [_event_row(data, partition, offset)], []
    version, items = data["envelope"], data.get("events")
    if version.__class__ is not int or version != ENVELOPE_VERSION:
        raise ValueError(f"unsupported envelope {str(version)[:32]!r} (expected {ENVELOPE_VERSION})")
    if items.__class__ is not list:
        raise TypeError("field 'events' of an envelope must be a list")
    rows: list[tuple[Any, ...]] = []
    unreadable: list[UnreadableItem] = []
    for number, item in enumerate(items, 1):
        try:
            rows.append(_event_row(item, partition, offset))
        except (KeyError, TypeError, ValueError) as error:
            unreadable.append(UnreadableItem(repr(error)[:300], orjson.dumps(item), number))
    return rows, unreadable


def _event_row(data: Any, partition: int, offset: int) -> tuple[Any, ...]:
    """An event's row; ``TypeError`` where a field the row needs is not of its type (so that no row
    fails later, at its pseudonym or its insert)."""
    attrs = data["attrs"]
    event_id, source, event_type = data["event_id"], data["source"], data["event_type"]
    user_id = data["user_id"]
    if not (
        attrs.__class__ is dict
        and event_id.__class__ is str
        and source.__class__ is str
        and event_type.__class__ is str
        and user_id.__class__ is str
    ):
        raise TypeError("an event's attrs must be an object, its ids, source and type strings")
    if source == CONVERSATIONS:
        attrs = stored_message(attrs)
    return (
        event_id,
        source,
        event_type,
        int(data["event_time"]),
        user_id,
        attrs.get("session_id", ""),
        attrs.get("order_id", ""),
        attrs.get("shipment_id", ""),
        attrs.get("page", ""),
        orjson.dumps(attrs).decode(),
        partition,
        offset,
    )


def stored_message(attrs: dict[str, Any]) -> dict[str, Any]:
    """What ClickHouse keeps of a chat message's fields: not its text (a customer's words are not
    analytics), but its length and the emotion its words read as (the lexicon's,
    :func:`models.emotion.lexicon_emotion`), beside the role, channel, session, product and intent.

    >>> stored = stored_message({"session_id": "c1", "role": "customer", "channel": "chat",
    ...                          "text": "I am furious", "product_id": "p1"})
    >>> "text" in stored, stored["role"], stored["emotion"], stored["text_chars"]
    (False, 'customer', 'anger', 12)
    """
    text = attrs.get("text")
    kept = {name: value for name, value in attrs.items() if name != "text"}
    if text.__class__ is not str:
        raise TypeError("a message's text must be a string")
    return {**kept, "emotion": lexicon_emotion(text), "text_chars": len(text)}


def intervention_row(value: bytes, headers: Headers, partition: int, offset: int) -> tuple[Any, ...]:
    data = orjson.loads(value)
    return (
        data["intervention_id"],
        data["trigger"],
        data["action"],
        data["channel"],
        data["user_id"],
        iso_millis(data["event_time"]),
        iso_millis(data["decided_at"]),
        data["reason"],
        data["source_event_id"],
        orjson.dumps(data["evidence"]).decode(),
        partition,
        offset,
    )


def decision_row(value: bytes, headers: Headers, partition: int, offset: int) -> tuple[Any, ...]:
    """A contact-policy decision (the ``decisions`` topic, schema 1).

    The intervention id is normalized to the canonical lower-case form, so that the row id the sink
    remembers equals ``toString(intervention_id)`` read back from ClickHouse.

    >>> value = orjson.dumps({"intervention_id": "0B8A6128-0B8A-5EE9-BFAB-18E8F49F0582",
    ...     "decision": "suppressed", "reason": "holdout", "detail": "", "trigger": "delay_notice",
    ...     "action": "notify_delay", "channel": "chat", "priority": 80, "experiment": "q4",
    ...     "arm": "holdout", "offer": None, "user_id": "u1", "event_time": "2026-11-24T03:49:32.102Z",
    ...     "decided_at": "2026-11-24T03:49:33.260Z", "source_event_id": "l2", "order_id": "o1"})
    >>> row = decision_row(value, [], 0, 7)
    >>> DECISIONS.row_id(row), row[10], row[12]
    ('0b8a6128-0b8a-5ee9-bfab-18e8f49f0582:suppressed', '', 1795492172102)
    """
    data = orjson.loads(value)
    decision = data["decision"]
    if decision not in DECISION_KINDS:
        raise ValueError(f"unknown decision {decision!r}")
    offer = data.get("offer")
    return (
        canonical_uuid(data["intervention_id"]),
        decision,
        data["reason"],
        data.get("detail", ""),
        data["trigger"],
        data["action"],
        data["channel"],
        int(data["priority"]),
        data.get("experiment", ""),
        data.get("arm", ""),
        "" if offer is None else orjson.dumps(offer).decode(),
        data["user_id"],
        iso_millis(data["event_time"]),
        iso_millis(data["decided_at"]),
        data.get("source_event_id", ""),
        data.get("order_id", ""),
        partition,
        offset,
    )


def score_row(value: bytes, headers: Headers, partition: int, offset: int) -> tuple[Any, ...]:
    """A user's published scores (the ``user_scores`` topic, schema 1)."""
    data = orjson.loads(value)
    intent = data["intent"]
    return (
        data["user_id"],
        iso_millis(data["scored_at"]),
        data["event_id"],
        float(intent["purchase"]),
        float(intent["need_help"]),
        float(intent["browse"]),
        float(intent["leave"]),
        max(intent, key=intent.__getitem__),
        float(data["churn"]),
        int(data["health"]),
        data["satisfaction"],
        int(data["intent_examples"]),
        int(data["churn_examples"]),
        partition,
        offset,
    )


# A dead letter's payload is read for its user id up to this size (larger ones: only their beginning is
# searched), so that a huge rejected message costs no more than a bounded parse.
PAYLOAD_USER_PARSE_BYTES = 1 << 20
PAYLOAD_USER_SEARCH_BYTES = 64 << 10
# "user_id": "<a JSON string>", the JSON string's escapes included; linear (the alternatives are disjoint).
_USER_ID_MEMBER = re.compile(rb'"user_id"\s*:\s*("(?:[^"\\]|\\.)*")')


def payload_user_id(payload: bytes) -> str:
    """The user a dead letter's payload belongs to: its ``user_id`` member when the payload is a JSON
    object whose ``user_id`` is a string; when it is not JSON (cut, malformed) or larger than 1 MiB,
    the first member ``"user_id": "<string>"`` found in its first 64 KiB; else ``""`` (nobody). Never
    raises.

    An erasure deletes the dead letters whose (pseudonymised) user id is the erased one, exactly: a
    payload merely containing the id elsewhere (another field, another user's message) is not theirs.

    >>> payload_user_id(b'{"event_type": "page_view", "user_id": "u1"}')
    'u1'
    >>> payload_user_id(b'{"user_id": "u\\\\u00e9", "event_type": ')  # cut: read by the member alone
    'ué'
    >>> payload_user_id(b'{"user_id": 42}'), payload_user_id(b'["u1"]'), payload_user_id(b"\\xff")
    ('', '', '')
    """
    if len(payload) <= PAYLOAD_USER_PARSE_BYTES:
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            pass  # not JSON: searched below
        else:
            user = data.get("user_id") if isinstance(data, dict) else None
            return user if isinstance(user, str) else ""
    member = _USER_ID_MEMBER.search(payload, 0, PAYLOAD_USER_SEARCH_BYTES)
    if member is None:
        return ""
    try:
        user = orjson.loads(member.group(1))
    except orjson.JSONDecodeError:  # an invalid escape or invalid UTF-8 inside the string
        return ""
    return user if isinstance(user, str) else ""


def dead_letter_row(value: bytes, headers: Headers, partition: int, offset: int) -> tuple[Any, ...]:
    """A dead letter: what it says of its source, its payload (the original message, or its first
    bytes when that was too large: :func:`streams.contracts.deadletters.dead_letter_record`), the original's
    size and SHA-256 (from the headers; of the payload for a dead letter that does not say), and the
    user it names (:func:`payload_user_id`), pseudonymised by the sink like every user id."""
    info = read_dead_letter_headers(headers)
    payload = value or b""
    original_bytes = len(payload) if info.original_bytes is None else info.original_bytes
    original_sha256 = info.original_sha256
    if not original_sha256 and original_bytes == len(payload):
        original_sha256 = hashlib.sha256(payload).hexdigest()
    return (
        info.source_topic,
        info.source_partition,
        info.source_offset,
        info.reason,
        info.source_item,
        info.detail,
        round(info.rejected_at * 1000),
        payload,
        len(payload),
        original_bytes,
        original_sha256,
        payload_user_id(payload),
        partition,
        offset,
    )


@dataclass(frozen=True, slots=True)
class TableSpec:
    table: str
    columns: tuple[str, ...]
    to_row: Callable[[bytes, Headers, int, int], tuple[Any, ...]]
    # The row's natural id: a row position, and the same as a ClickHouse expression over the table.
    id_index: int | tuple[int, ...]
    id_sql: str
    # The user id and the row's time (epoch ms): user ids are pseudonymised before they are stored
    # (streams.contracts.privacy), and rows of an erased user from before the erasure are not stored again.
    user_index: int | None = None
    time_index: int | None = None
    # For messages that hold several rows: their rows, in order, and an UnreadableItem for each item
    # that gives none (the sink dead-letters it alone). None: one message, one row (to_row).
    to_rows: RowsOf | None = None

    def row_id(self, row: tuple[Any, ...]) -> str:
        if isinstance(self.id_index, int):
            return str(row[self.id_index])
        return ":".join(str(row[index]) for index in self.id_index)


EVENTS = TableSpec(
    "events",
    (
        "event_id",
        "source",
        "event_type",
        "event_time",
        "user_id",
        "session_id",
        "order_id",
        "shipment_id",
        "page",
        "attrs",
        "kafka_partition",
        "kafka_offset",
    ),
    event_row,
    id_index=0,
    id_sql="event_id",
    user_index=4,
    time_index=3,
    to_rows=event_rows,
)
INTERVENTIONS = TableSpec(
    "interventions",
    (
        "intervention_id",
        "trigger",
        "action",
        "channel",
        "user_id",
        "event_time",
        "decided_at",
        "reason",
        "source_event_id",
        "evidence",
        "kafka_partition",
        "kafka_offset",
    ),
    intervention_row,
    id_index=0,
    id_sql="toString(intervention_id)",
    user_index=4,
    time_index=5,
)
DEAD_LETTERS = TableSpec(
    "dead_letters",
    (
        "source_topic",
        "source_partition",
        "source_offset",
        "reason",
        "source_item",
        "detail",
        "rejected_at",
        "payload",
        "payload_bytes",
        "original_bytes",
        "original_sha256",
        "user_id",
        "kafka_partition",
        "kafka_offset",
    ),
    dead_letter_row,
    # The reason and the item too, as in the table's ORDER BY: one message can be refused by two
    # consumers (an agent and the sink), each with its own reason, and an envelope event by event.
    id_index=(0, 1, 2, 3, 4),
    id_sql="concat(source_topic, ':', toString(source_partition), ':', toString(source_offset), ':', reason,"
    " ':', toString(source_item))",
    # The payload is bytes, so the pseudonymisation leaves it as it is (the original message).
    user_index=11,
    time_index=6,
)
DECISIONS = TableSpec(
    "decisions",
    (
        "intervention_id",
        "decision",
        "reason",
        "detail",
        "trigger",
        "action",
        "channel",
        "priority",
        "experiment",
        "arm",
        "offer",
        "user_id",
        "event_time",
        "decided_at",
        "source_event_id",
        "order_id",
        "kafka_partition",
        "kafka_offset",
    ),
    decision_row,
    # A deferred intervention has a second, final decision later: the id is the pair.
    id_index=(0, 1),
    id_sql="concat(toString(intervention_id), ':', decision)",
    user_index=11,
    time_index=12,
)
SCORES = TableSpec(
    "user_scores",
    (
        "user_id",
        "scored_at",
        "event_id",
        "intent_purchase",
        "intent_need_help",
        "intent_browse",
        "intent_leave",
        "top_intent",
        "churn",
        "health",
        "satisfaction",
        "intent_examples",
        "churn_examples",
        "kafka_partition",
        "kafka_offset",
    ),
    score_row,
    # Two scores of a user can share an event time (a late event, two events in one millisecond): the
    # event scored tells them apart.
    id_index=(0, 1, 2),
    id_sql="concat(user_id, ':', toString(toUnixTimestamp64Milli(scored_at)), ':', event_id)",
    user_index=0,
    time_index=1,
)


def ticket_row(value: bytes, headers: Headers, partition: int, offset: int) -> tuple[Any, ...]:
    """A service ticket (the ``tickets`` topic, schema 1, :mod:`streams.processes.tickets`)."""
    data = orjson.loads(value)
    device = data.get("device") or {}
    point = data.get("service_point") or {}
    return (
        canonical_uuid(data["ticket_id"]),
        data["request_id"],
        data["user_id"],
        iso_millis(data["created_at"]),
        iso_millis(data["decided_at"]),
        data["device_id"],
        device.get("category", ""),
        device.get("model", ""),
        len(data.get("history", [])),
        data["fault"],
        float(data["latitude"]),
        float(data["longitude"]),
        data["dispatch"],
        point.get("id", ""),
        point.get("distance_km"),
        data.get("manual_reason", ""),
        value.decode(),
        partition,
        offset,
    )


def order_command_row(value: bytes, headers: Headers, partition: int, offset: int) -> tuple[Any, ...]:
    """An order command (the ``order_commands`` topic, schema 1, :mod:`streams.processes.orders`)."""
    data = orjson.loads(value)
    items = data["items"]
    return (
        canonical_uuid(data["command_id"]),
        data["request_id"],
        data["user_id"],
        iso_millis(data["requested_at"]),
        iso_millis(data["decided_at"]),
        len(items),
        sum(int(item["quantity"]) for item in items),
        float(data["total"]),
        int(len(data.get("stock_checked", [])) == len(items)),
        value.decode(),
        partition,
        offset,
    )


def order_rejection_row(value: bytes, headers: Headers, partition: int, offset: int) -> tuple[Any, ...]:
    """A refused order request (the ``order_rejections`` topic, schema 1)."""
    data = orjson.loads(value)
    return (
        data["request_id"],
        data["user_id"],
        iso_millis(data["requested_at"]),
        iso_millis(data["decided_at"]),
        data["reason"],
        orjson.dumps(data.get("problems", [])).decode(),
        partition,
        offset,
    )


def feedback_row(value: bytes, headers: Headers, partition: int, offset: int) -> tuple[Any, ...]:
    """Tagged feedback (the ``feedback_tagged`` topic, schema 1, :mod:`models.tagger`)."""
    data = orjson.loads(value)
    tags = list(data["tags"])
    score = data.get("score")
    return (
        data["feedback_id"],
        data["user_id"],
        data.get("product_id") or "",
        iso_millis(data["event_time"]),
        iso_millis(data["tagged_at"]),
        data["language"],
        tags,
        tags[0] if tags else "",
        float(data["confidence"]),
        list(data["teams"]),
        float(data["sentiment"]),
        data["sentiment_label"],
        None if score is None else float(score),
        data["text"],
        partition,
        offset,
    )


def question_row(value: bytes, headers: Headers, partition: int, offset: int) -> tuple[Any, ...]:
    """A support question as hot-issue detection counted it (the internal questions topic)."""
    data = orjson.loads(value)
    return (
        data["question_id"],
        data["user_id"],
        data["product_id"],
        data["category"],
        data["topic"],
        data["question"],
        int(data["event_time"]),
        partition,
        offset,
    )


def hot_issue_row(value: bytes, headers: Headers, partition: int, offset: int) -> tuple[Any, ...]:
    """A hot-issue alert (the ``hot_issues`` topic, schema 1, :mod:`models.surge`)."""
    data = orjson.loads(value)
    return (
        canonical_uuid(data["alert_id"]),
        data["product_id"],
        data["category"],
        data["topic"],
        float(data["observed"]),
        float(data["expected"]),
        float(data["statistic"]),
        int(bool(data["launch_prior_used"])),
        _forecast_hit(data.get("forecast")),
        iso_millis(data["detected_at"]),
        iso_millis(data["decided_at"]),
        value.decode(),
        partition,
        offset,
    )


def _forecast_hit(forecast: Any) -> int | None:
    """The alert's ``forecast`` field as the ``forecast`` column: 1 named by the launch's FAQ forecast,
    0 not named, None (NULL) no forecast (an alert from before the field, too)."""
    if forecast is None:
        return None
    return int(bool(forecast["forecast"]))


def launch_faq_rows(
    value: bytes, headers: Headers, partition: int, offset: int
) -> tuple[list[tuple[Any, ...]], list[UnreadableItem]]:
    """The rows of a FAQ forecast (the ``launch_faq_forecasts`` topic, schema 1,
    :mod:`models.launch_faq`): one per bucket and topic, by rank; a bucket without topics gives one
    row of rank 0 with its reason, so that every bucket of a forecast is stored."""
    data = orjson.loads(value)
    head = (
        canonical_uuid(data["forecast_id"]),
        iso_millis(data["made_at"]),
        iso_millis(data["decided_at"]),
        data["product_id"],
        data["category"],
        iso_millis(data["launched_at"]),
        float(data["volume"]),
    )
    rows = []
    for bucket in data["buckets"]:
        common = (bucket["bucket"], int(bucket["index"]))
        basis = ([str(p) for p in bucket["based_on"]], float(bucket["expected_questions"]), bucket["reason"])
        topics = bucket["topics"] or [None]
        for topic in topics:
            if topic is None:
                found: tuple[Any, ...] = (0, "", 0.0, 0.0, [])
            else:
                found = (
                    int(topic["rank"]),
                    topic["topic"],
                    float(topic["share"]),
                    float(topic["expected_count"]),
                    [str(example) for example in topic["examples"]],
                )
            rows.append((*head, *common, *found, *basis, partition, offset))
    return rows, []


def launch_faq_row(value: bytes, headers: Headers, partition: int, offset: int) -> tuple[Any, ...]:
    """The first row of a FAQ forecast (:func:`launch_faq_rows` gives them all)."""
    return launch_faq_rows(value, headers, partition, offset)[0][0]


def audit_row(value: bytes, headers: Headers, partition: int, offset: int) -> tuple[Any, ...]:
    """One API call (the ``api_audit`` topic, schema 1, :mod:`streams.api.server`)."""
    data = orjson.loads(value)
    return (
        canonical_uuid(data["audit_id"]),
        iso_millis(data["at"]),
        data["caller"],
        data["method"],
        data["route"],
        data["user_id"],
        data["scope"],
        int(data["status"]),
        data["result"],
        data.get("detail", ""),
        partition,
        offset,
    )


def ticket_update_row(value: bytes, headers: Headers, partition: int, offset: int) -> tuple[Any, ...]:
    """A ticket update taken in (the ``ticket_progress`` topic, schema 1, :mod:`streams.processes.desk`)."""
    data = orjson.loads(value)
    return (
        data["update_id"],
        canonical_uuid(data["ticket_id"]),
        data["user_id"],
        data["status"],
        data["previous_status"],
        iso_millis(data["updated_at"]),
        iso_millis(data["ticket_created_at"]),
        data["dispatch"],
        data["service_point_id"],
        data.get("technician", ""),
        data.get("note", ""),
        int(bool(data["first_response"])),
        int(data["reopens"]),
        partition,
        offset,
    )


def feedback_update_row(value: bytes, headers: Headers, partition: int, offset: int) -> tuple[Any, ...]:
    """A feedback update taken in (the ``feedback_progress`` topic, schema 1,
    :mod:`streams.processes.desk`)."""
    data = orjson.loads(value)
    return (
        data["update_id"],
        data["feedback_id"],
        data["user_id"],
        data["team"],
        data["status"],
        data["previous_status"],
        iso_millis(data["updated_at"]),
        iso_millis(data["feedback_at"]),
        int(bool(data["routed"])),
        data.get("note", ""),
        int(bool(data["first_response"])),
        partition,
        offset,
    )


def support_load_rows(
    value: bytes, headers: Headers, partition: int, offset: int
) -> tuple[list[tuple[Any, ...]], list[UnreadableItem]]:
    """The rows of one channel's support-load forecast (the ``support_load`` topic,
    :meth:`streams.processes.support_load.ChannelForecast.to_wire`): one per 15-minute slot."""
    data = orjson.loads(value)
    made_at, channel = iso_millis(data["made_at"]), data["channel"]
    per_agent = float(data["contacts_per_agent_hour"])
    rows = []
    for slot_start, forecast, needed, on_shift in data["slots"]:
        start = iso_millis(slot_start)
        rows.append(
            (
                made_at,
                channel,
                start,
                (start - made_at) // 60_000,
                float(forecast),
                int(needed),
                int(on_shift),
                per_agent,
                partition,
                offset,
            )
        )
    return rows, []


def support_load_row(value: bytes, headers: Headers, partition: int, offset: int) -> tuple[Any, ...]:
    """The first row of :func:`support_load_rows` (the spec's single-row form)."""
    return support_load_rows(value, headers, partition, offset)[0][0]


def support_load_actual_row(value: bytes, headers: Headers, partition: int, offset: int) -> tuple[Any, ...]:
    """One channel's contacts in one closed slot (the ``support_load_actuals`` topic)."""
    data = orjson.loads(value)
    return (
        iso_millis(data["slot_start"]),
        data["channel"],
        int(data["contacts"]),
        iso_millis(data["closed_at"]),
        partition,
        offset,
    )


def _spec(
    table: str,
    columns: str,
    to_row: Callable[[bytes, Headers, int, int], tuple[Any, ...]],
    *,
    id_column: str | tuple[str, ...],
    id_sql: str,
    user_column: str | None,
    time_column: str,
) -> TableSpec:
    """A spec whose row ends with kafka_partition and kafka_offset, with its id, user and time named
    by column."""
    names = (*columns.split(), "kafka_partition", "kafka_offset")
    id_index = (
        names.index(id_column)
        if isinstance(id_column, str)
        else tuple(names.index(name) for name in id_column)
    )
    return TableSpec(
        table,
        names,
        to_row,
        id_index=id_index,
        id_sql=id_sql,
        user_index=None if user_column is None else names.index(user_column),
        time_index=names.index(time_column),
    )


TICKETS = _spec(
    "tickets",
    "ticket_id request_id user_id created_at decided_at device_id device_category device_model"
    " prior_tickets fault latitude longitude dispatch service_point_id distance_km manual_reason ticket",
    ticket_row,
    id_column="ticket_id",
    id_sql="toString(ticket_id)",
    user_column="user_id",
    time_column="created_at",
)
ORDER_COMMANDS = _spec(
    "order_commands",
    "command_id request_id user_id requested_at decided_at items units total stock_checked command",
    order_command_row,
    id_column="command_id",
    id_sql="toString(command_id)",
    user_column="user_id",
    time_column="requested_at",
)
ORDER_REJECTIONS = _spec(
    "order_rejections",
    "request_id user_id requested_at decided_at reason problems",
    order_rejection_row,
    # Request ids are the customer's, unique per user: the pseudonym is part of the id.
    id_column=("user_id", "request_id"),
    id_sql="concat(user_id, ':', request_id)",
    user_column="user_id",
    time_column="requested_at",
)
FEEDBACK_TAGS = _spec(
    "feedback_tags",
    "feedback_id user_id product_id event_time tagged_at language tags top_tag confidence teams"
    " sentiment sentiment_label csat text",
    feedback_row,
    id_column="feedback_id",
    id_sql="feedback_id",
    user_column="user_id",
    time_column="event_time",
)
SUPPORT_QUESTIONS = _spec(
    "support_questions",
    "question_id user_id product_id category topic question event_time",
    question_row,
    id_column="question_id",
    id_sql="question_id",
    user_column="user_id",
    time_column="event_time",
)
HOT_ISSUES = _spec(
    "hot_issues",
    "alert_id product_id category topic observed expected statistic launch_prior_used forecast detected_at"
    " decided_at alert",
    hot_issue_row,
    id_column="alert_id",
    id_sql="toString(alert_id)",
    user_column=None,
    time_column="detected_at",
)
LAUNCH_FAQ_FORECAST = _spec(
    "launch_faq_forecast",
    "forecast_id made_at decided_at product_id category launched_at volume bucket bucket_index rank topic"
    " share expected_count examples based_on bucket_questions reason",
    launch_faq_row,
    id_column=("forecast_id", "bucket_index", "rank"),
    id_sql="concat(toString(forecast_id), ':', toString(bucket_index), ':', toString(rank))",
    user_column=None,
    time_column="made_at",
)
LAUNCH_FAQ_FORECAST = replace(LAUNCH_FAQ_FORECAST, to_rows=launch_faq_rows)
API_AUDIT = _spec(
    "api_audit",
    "audit_id at caller method route user_id scope status result detail",
    audit_row,
    id_column="audit_id",
    id_sql="toString(audit_id)",
    user_column="user_id",
    time_column="at",
)

TICKET_UPDATES = _spec(
    "ticket_updates",
    "update_id ticket_id user_id status previous_status updated_at ticket_created_at dispatch"
    " service_point_id technician note first_response reopens",
    ticket_update_row,
    id_column="update_id",
    id_sql="update_id",
    user_column="user_id",
    time_column="updated_at",
)
FEEDBACK_UPDATES = _spec(
    "feedback_updates",
    "update_id feedback_id user_id team status previous_status updated_at feedback_at routed note"
    " first_response",
    feedback_update_row,
    id_column="update_id",
    id_sql="update_id",
    user_column="user_id",
    time_column="updated_at",
)
# The support-load forecast: no user data (counts per channel and slot), so no user column.
SUPPORT_LOAD_FORECAST = _spec(
    "support_load_forecast",
    "made_at channel slot_start horizon_minutes forecast agents_needed agents_on_shift"
    " contacts_per_agent_hour",
    support_load_row,
    id_column=("made_at", "channel", "slot_start"),
    id_sql="concat(toString(toUnixTimestamp64Milli(made_at)), ':', channel, ':',"
    " toString(toUnixTimestamp64Milli(slot_start)))",
    user_column=None,
    time_column="made_at",
)
SUPPORT_LOAD_FORECAST = dataclasses.replace(SUPPORT_LOAD_FORECAST, to_rows=support_load_rows)
SUPPORT_LOAD_ACTUAL = _spec(
    "support_load_actual",
    "slot_start channel contacts closed_at",
    support_load_actual_row,
    id_column=("slot_start", "channel"),
    id_sql="concat(toString(toUnixTimestamp64Milli(slot_start)), ':', channel)",
    user_column=None,
    time_column="slot_start",
)

# Every table the sink stores a topic in, by name (the registry names each topic's table).
TABLE_SPECS = {
    spec.table: spec
    for spec in (
        EVENTS,
        INTERVENTIONS,
        DEAD_LETTERS,
        DECISIONS,
        SCORES,
        TICKETS,
        ORDER_COMMANDS,
        ORDER_REJECTIONS,
        FEEDBACK_TAGS,
        SUPPORT_QUESTIONS,
        HOT_ISSUES,
        LAUNCH_FAQ_FORECAST,
        API_AUDIT,
        TICKET_UPDATES,
        FEEDBACK_UPDATES,
        SUPPORT_LOAD_FORECAST,
        SUPPORT_LOAD_ACTUAL,
    )
}


def sink_specs(settings: Settings) -> dict[str, TableSpec]:
    """Topic -> the table the ClickHouse sink stores it in (``table`` in the topic registry,
    :mod:`streams.contracts.registry`): what a worker's sink consumes, and what ``forewarn doctor``
    expects to find in ClickHouse.

    >>> from streams.contracts.settings import Settings
    >>> sink_specs(Settings.from_env({"FOREWARN_TOPIC_SCORES": "scores"}))["scores"].table
    'user_scores'
    """
    return {topic.name_in(settings): TABLE_SPECS[topic.table] for topic in TOPICS.values() if topic.table}
