"""Forewarn's internal topics read back: what the agents wrote there, checked like any other input.

Only the worker writes ``forewarn-events``, ``forewarn-ticks``, ``forewarn-labels`` and
``forewarn-questions``, but anyone with access to the broker can too, and a worker of another version
may write another form: an agent that took their records on trust would crash on the first one of
another shape. So each record is read through its contract's parser (the events' and corrections' own,
:func:`streams.contracts.events.event_from_object`, :func:`streams.contracts.feedback.parse_label`) or,
for ticks and questions, a check of every field the agent reads; whatever fails is refused with the reason
:data:`INVALID_INTERNAL` and a detail that starts with the contract's reason (``not_an_object:
expected a JSON object, got list``).

>>> read_tick(b'{"user_id": "u1", "now": 1764000000000}')
{'user_id': 'u1', 'now': 1764000000000}
>>> try:
...     read_wire_event(b"[1,2,3]")
... except InvalidEvent as error:
...     print(error.reason, "-", error.detail)
invalid_internal - not_an_object: expected a JSON object, got list
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from streams.contracts.events import (
    FIELDS_BY_SOURCE,
    Event,
    InvalidEvent,
    check_identifier,
    check_text,
    event_from_object,
    parse_time,
    read_json_object,
    required_field,
)
from streams.contracts.feedback import Correction, EmotionCorrection, parse_label
from streams.contracts.time import to_millis

INVALID_INTERNAL = "invalid_internal"
# A record of an internal topic is an accepted input re-serialized: at most its envelope and the
# longer form of a few numbers larger than the input (FOREWARN_MAX_EVENT_BYTES) it came from.
DEFAULT_MAX_BYTES = 2 * 65536


@contextmanager
def internal_refusal() -> Iterator[None]:
    """Any refusal of the contract's parser as :data:`INVALID_INTERNAL`, its reason kept in the detail."""
    try:
        yield
    except InvalidEvent as error:
        raise InvalidEvent(INVALID_INTERNAL, f"{error.reason}: {error.detail}") from None


def read_wire_event(raw: bytes | None, max_bytes: int = DEFAULT_MAX_BYTES) -> Event:
    """A ``forewarn-events`` record (:meth:`streams.contracts.events.Event.to_wire`) as its event: the
    contract's checks over its fields, the type-specific ones taken from ``attrs`` (the event time is not held
    against the clock again: it was when the event came in)."""
    with internal_refusal():
        return wire_event_from_object(read_json_object(raw, max_bytes))


def wire_event_from_object(data: dict[str, Any]) -> Event:
    """The checks of :func:`read_wire_event` past the JSON: ``data`` as an event, or
    :class:`InvalidEvent` with the contract's reason."""
    source, attrs = required_field(data, "source"), required_field(data, "attrs")
    if not isinstance(source, str) or source not in FIELDS_BY_SOURCE:
        raise InvalidEvent("invalid_value", f"field 'source' is not a source: {str(source)[:64]!r}")
    if not isinstance(attrs, dict):
        raise InvalidEvent("wrong_type", "field 'attrs' must be an object")
    common = {name: data.get(name) for name in ("event_id", "event_type", "event_time", "user_id")}
    return event_from_object({**attrs, **common}, source)


def read_tick(raw: bytes | None, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, Any]:
    """A ``forewarn-ticks`` record: ``{"user_id": ..., "now": epoch ms}``, as the sweep writes it."""
    with internal_refusal():
        data = read_json_object(raw, max_bytes)
        user_id = check_identifier("user_id", required_field(data, "user_id"))
        now = parse_time("now", required_field(data, "now"))
        return {"user_id": user_id, "now": to_millis(now)}


def read_correction(raw: bytes | None, max_bytes: int = DEFAULT_MAX_BYTES) -> Correction | EmotionCorrection:
    """A ``forewarn-labels`` record: a correction in its contract's form (:meth:`Correction.to_wire`,
    :meth:`EmotionCorrection.to_wire`)."""
    with internal_refusal():
        if raw is None:
            raise InvalidEvent("malformed_json", "message has no value")
        return parse_label(raw, max_bytes=max_bytes)


def read_question(
    raw: bytes | None, category_of: Callable[[str], str | None], max_bytes: int = DEFAULT_MAX_BYTES
) -> dict[str, Any]:
    """A ``forewarn-questions`` record (:func:`streams.processes.run.question_record`), every field hot-issue
    counting reads checked, its product known to the catalog (``category_of``) under its category."""
    with internal_refusal():
        data = read_json_object(raw, max_bytes)
        question = {
            name: check_identifier(name, required_field(data, name)) for name in ("question_id", "user_id")
        }
        question |= {
            name: check_text(name, required_field(data, name))
            for name in ("product_id", "category", "topic", "text")
        }
        question["event_time"] = to_millis(parse_time("event_time", required_field(data, "event_time")))
        if category_of(question["product_id"]) != question["category"]:
            raise InvalidEvent(
                "invalid_value",
                f"product {question['product_id'][:64]!r} is not of category {question['category'][:64]!r}",
            )
        return {**data, **question}
