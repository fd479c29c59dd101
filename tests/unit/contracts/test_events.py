"""Validation of the event contract: every accepted shape, every rejection reason."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.contracts.events import (
    CLICKSTREAM,
    CLICKSTREAM_FIELDS,
    DEAD_LETTER_REASONS,
    LOGISTICS,
    LOGISTICS_FIELDS,
    Event,
    InvalidEvent,
    parse_event,
)

T = 1_764_000_000_000  # 2025-11-24T16:00:00Z in epoch ms
SAMPLE = {
    "page": "/p/1",
    "query": "q",
    "sku": "s1",
    "order_id": "o1",
    "exception_code": "damaged",
    "eta": T,
    "score": 4,
}
SHIPMENT = {"shipment_id": "sh1", "order_id": "o1", "promised_eta": T}


def event(**fields: object) -> bytes:
    return orjson.dumps({"event_id": "e1", "event_time": T, "user_id": "u1", **fields})


def rejected(raw: bytes, source: str = CLICKSTREAM, **options: object) -> tuple[str, str]:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw, source, **options)
    return caught.value.reason, caught.value.detail


@pytest.mark.parametrize("event_type", sorted(CLICKSTREAM_FIELDS))
def test_every_clickstream_type_with_its_required_fields(event_type: str) -> None:
    required = {name: SAMPLE[name] for name, (_, need) in CLICKSTREAM_FIELDS[event_type].items() if need}
    parsed = parse_event(event(event_type=event_type, session_id="s1", **required), CLICKSTREAM)
    assert (parsed.event_type, parsed.source, parsed.user_id, parsed.event_time) == (
        event_type,
        CLICKSTREAM,
        "u1",
        T / 1000,
    )
    assert parsed.attrs == {"session_id": "s1", **required}


@pytest.mark.parametrize("event_type", sorted(LOGISTICS_FIELDS))
def test_every_logistics_type_with_its_required_fields(event_type: str) -> None:
    required = {
        name: SAMPLE.get(name, SHIPMENT.get(name))
        for name, (_, need) in LOGISTICS_FIELDS[event_type].items()
        if need
    }
    parsed = parse_event(event(event_type=event_type, **required), LOGISTICS)
    assert parsed.attrs["promised_eta"] == T / 1000 and parsed.attrs["shipment_id"] == "sh1"


@pytest.mark.parametrize(
    ("fields", "source", "reason", "detail"),
    [
        ({"event_type": "page_view"}, CLICKSTREAM, "missing_field", "field 'page' is required for page_view"),
        (
            {"event_type": "delayed", **SHIPMENT},
            LOGISTICS,
            "missing_field",
            "field 'eta' is required for delayed",
        ),
        (
            {"event_type": "search", "query": 7},
            CLICKSTREAM,
            "wrong_type",
            "field 'query' must be a string, got int",
        ),
        (
            {"event_type": "add_to_cart", "sku": "s", "price": "9"},
            CLICKSTREAM,
            "wrong_type",
            "field 'price' must be a number, got str",
        ),
        (
            {"event_type": "add_to_cart", "sku": "s", "price": True},
            CLICKSTREAM,
            "wrong_type",
            "field 'price' must be a number, got bool",
        ),
        (
            {"event_type": "add_to_cart", "sku": "s", "quantity": 1.5},
            CLICKSTREAM,
            "wrong_type",
            "field 'quantity' must be an integer, got float",
        ),
        (
            {"event_type": "add_to_cart", "sku": "s", "quantity": 0},
            CLICKSTREAM,
            "invalid_value",
            "field 'quantity' must be between 1 and 1000000",
        ),
        (
            {"event_type": "add_to_cart", "sku": "s", "price": -1},
            CLICKSTREAM,
            "invalid_value",
            "field 'price' must not be negative",
        ),
        (
            {"event_type": "add_to_cart", "sku": ["s"]},
            CLICKSTREAM,
            "wrong_type",
            "field 'sku' must be a string, got list",
        ),
        (
            {"event_type": "search", "query": "q" * 1025},
            CLICKSTREAM,
            "invalid_value",
            "field 'query' is longer than 1024 characters",
        ),
        ({"event_type": 5}, CLICKSTREAM, "wrong_type", "field 'event_type' must be a string"),
        (
            {"event_type": "teleport"},
            CLICKSTREAM,
            "unknown_event_type",
            "'teleport' is not a clickstream event type",
        ),
        (
            {"event_type": "page_view"},
            LOGISTICS,
            "unknown_event_type",
            "'page_view' is not a logistics event type",
        ),
        (
            {"event_type": "search", "query": "q", "schema": 2},
            CLICKSTREAM,
            "unsupported_schema",
            "schema 2 is not supported (expected 1)",
        ),
    ],
)
def test_rejections_name_the_reason_and_the_field(
    fields: dict, source: str, reason: str, detail: str
) -> None:
    assert rejected(event(**fields), source) == (reason, detail)


def test_feedback_carries_a_satisfaction_score_from_1_to_5() -> None:
    parsed = parse_event(
        event(event_type="feedback", score=4, comment="fast delivery", order_id="o1"), CLICKSTREAM
    )
    assert parsed.event_type == "feedback"
    assert parsed.attrs == {"score": 4.0, "comment": "fast delivery", "order_id": "o1"}
    assert isinstance(parsed.attrs["score"], float)
    for score in (1, 5, 2.5):
        assert parse_event(event(event_type="feedback", score=score), CLICKSTREAM).attrs["score"] == score


@pytest.mark.parametrize(
    ("score", "reason", "detail"),
    [
        (0, "invalid_value", "field 'score' must be between 1 and 5"),
        (6, "invalid_value", "field 'score' must be between 1 and 5"),
        (0.99, "invalid_value", "field 'score' must be between 1 and 5"),
        ("5", "wrong_type", "field 'score' must be a number, got str"),
        (True, "wrong_type", "field 'score' must be a number, got bool"),
        (None, "missing_field", "field 'score' is required for feedback"),
    ],
)
def test_feedback_score_rejections(score: object, reason: str, detail: str) -> None:
    assert rejected(event(event_type="feedback", score=score)) == (reason, detail)


def test_feedback_score_must_be_finite() -> None:
    check, required = CLICKSTREAM_FIELDS["feedback"]["score"]  # JSON itself cannot carry these
    assert required
    for value in (math.inf, -math.inf, math.nan):
        with pytest.raises(InvalidEvent) as caught:
            check("score", value)
        assert caught.value.reason == "invalid_value"


def test_common_fields() -> None:
    assert rejected(orjson.dumps({"event_type": "search", "query": "q"})) == (
        "missing_field",
        "field 'event_id' is required",
    )
    assert rejected(event(event_type="search", query="q", user_id=None)) == (
        "missing_field",
        "field 'user_id' is required",
    )
    assert rejected(event(event_type="search", query="q", user_id=42))[0] == "wrong_type"
    assert rejected(event(event_type="search", query="q", user_id=""))[0] == "invalid_value"
    assert rejected(event(event_type="search", query="q", event_id="x" * 129))[0] == "invalid_value"
    assert rejected(event(event_type="search", query="q", user_id="a\nb"))[0] == "invalid_value"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2025-11-24T16:00:00Z", T / 1000),
        ("2025-11-24T16:00:00.250Z", T / 1000 + 0.25),
        ("2025-11-25T00:00:00+08:00", T / 1000),
        (T, T / 1000),
    ],
)
def test_event_time_formats(value: object, seconds: float) -> None:
    assert (
        parse_event(event(event_type="search", query="q", event_time=value), CLICKSTREAM).event_time
        == seconds
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2025-11-24T16:00:00", "invalid_value"),  # no zone
        ("yesterday", "invalid_value"),
        ("1990-01-01T00:00:00Z", "invalid_value"),
        ("2200-01-01T00:00:00Z", "invalid_value"),
        (-5, "invalid_value"),
        (1.5e12, "wrong_type"),  # epoch ms must be an integer
        (True, "wrong_type"),
        ({"t": 1}, "wrong_type"),
    ],
)
def test_bad_event_times(value: object, reason: str) -> None:
    assert rejected(event(event_type="search", query="q", event_time=value))[0] == reason


def test_future_skew_is_bounded_by_now() -> None:
    raw = event(event_type="search", query="q")
    assert parse_event(raw, CLICKSTREAM, now=T / 1000 - 3600, max_future_skew=7200).event_time == T / 1000
    assert rejected(raw, now=T / 1000 - 3600, max_future_skew=1800) == (
        "invalid_value",
        "field 'event_time' is too far in the future",
    )


def test_size_is_checked_before_parsing() -> None:
    assert rejected(b"{" * 70_000, max_bytes=65_536)[0] == "oversized"
    assert rejected(event(event_type="search", query="q"), max_bytes=10) == (
        "oversized",
        "message is 93 bytes, the limit is 10",
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "malformed_json"),
        (b"{not json", "malformed_json"),
        (b"[" * 5000 + b"]" * 5000, "malformed_json"),  # deeper than orjson allows
        (b'{"a": NaN}', "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b"[1, 2]", "not_an_object"),
        (b'"text"', "not_an_object"),
        (b"12", "not_an_object"),
        (b"null", "not_an_object"),
    ],
)
def test_not_json_objects(raw: bytes, reason: str) -> None:
    assert rejected(raw)[0] == reason


def test_no_value_at_all() -> None:
    assert rejected(None)[0] == "malformed_json"  # a tombstone


def test_unknown_fields_are_dropped() -> None:
    parsed = parse_event(event(event_type="search", query="q", email="a@b.c", ip="1.2.3.4"), CLICKSTREAM)
    assert parsed.attrs == {"query": "q"}


def test_wire_round_trip_keeps_times_exact() -> None:
    original = parse_event(event(event_type="delayed", eta=T + 3_600_000, **SHIPMENT), LOGISTICS)
    wire = original.to_wire()
    assert (
        wire["event_time"] == T
        and wire["attrs"]["eta"] == T + 3_600_000
        and wire["attrs"]["promised_eta"] == T
    )
    assert Event.from_wire(orjson.loads(orjson.dumps(wire))) == original


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "event_id",
        "event_type",
        "event_time",
        "user_id",
        "schema",
        "page",
        "query",
        "sku",
        "quantity",
        "price",
        "order_id",
        "shipment_id",
        "promised_eta",
        "eta",
        "exception_code",
        "session_id",
        "cart_value",
        "score",
    ]
)
event_types = st.sampled_from([*CLICKSTREAM_FIELDS, *LOGISTICS_FIELDS, "other"])


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200), source=st.sampled_from([CLICKSTREAM, LOGISTICS]))
def test_any_bytes_either_parse_or_are_rejected_with_a_known_reason(raw: bytes, source: str) -> None:
    try:
        parse_event(raw, source)
    except InvalidEvent as error:
        assert error.reason in DEAD_LETTER_REASONS


@settings(max_examples=300, deadline=None)
@given(
    fields=st.dictionaries(
        field_names, json_values | st.just(T) | st.just("2025-11-24T16:00:00Z"), max_size=10
    ),
    event_type=event_types,
    source=st.sampled_from([CLICKSTREAM, LOGISTICS]),
)
def test_any_object_either_parses_or_is_rejected_with_a_known_reason(
    fields: dict, event_type: str, source: str
) -> None:
    raw = orjson.dumps({"event_type": event_type, **fields})
    try:
        parsed = parse_event(raw, source)
    except InvalidEvent as error:
        assert error.reason in DEAD_LETTER_REASONS
    else:
        assert (
            parsed.event_type == event_type
            and Event.from_wire(parsed.to_wire()).attrs.keys() == parsed.attrs.keys()
        )
