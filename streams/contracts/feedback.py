"""Feedback categories, the teams they route to, and the ``feedback_labels`` contract: a person's
correction of a feedback's tags, or of a chat message's emotion.

The ``feedback_labels`` contract (schema 1), one JSON object per correction:

* ``feedback_id``: the tagged feedback's id (the feedback event's ``event_id``), 1-128 characters;
* ``text``: the feedback text (required: every partition learns from the correction itself);
* ``tags``: the right categories, 1-6 distinct names of :data:`CATEGORIES`;
* ``labelled_by``: who corrected it, 1-128 characters;
* ``labelled_at``: when, ISO 8601 with a time zone or epoch milliseconds;
* ``schema``: optional, ``1``.

An emotion correction (``"kind": "emotion"``; a record without ``kind`` is a tag correction) has
``message_id`` (the ``conversations`` message's ``event_id``), ``text`` (the message's text: every
partition's emotion model learns from the correction itself, and no worker keeps customers' texts),
``emotion`` (one of :data:`EMOTIONS`), ``labelled_by`` and ``labelled_at``.

>>> correction = parse_label(b'{"feedback_id": "e1", "text": "too pricey", "tags": ["pricing"],'
...                          b' "labelled_by": "ana", "labelled_at": "2026-11-24T10:00:00Z"}')
>>> correction.tags, teams_of(correction.tags)
(('pricing',), ('marketing',))
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from streams.contracts.events import InvalidEvent, parse_time, read_json_object
from streams.contracts.time import to_millis
from streams.contracts.validation import MAX_ID_LENGTH, MAX_TEXT_LENGTH

FEEDBACK_LABEL_SCHEMA = 1

# The emotions of a customer's chat message (models.emotion.EMOTIONS, which this contract names).
EMOTIONS = ("anger", "frustration", "satisfaction", "neutral")
TAGS_KIND, EMOTION_KIND = "tags", "emotion"
CATEGORIES = ("pricing", "delivery", "quality", "usability", "feature_request", "praise")
PRODUCT, MARKETING = "product", "marketing"
TEAMS = (PRODUCT, MARKETING)
# Who acts on a category. Marketing owns what customers pay and what they say about the brand: price
# perception, promotions and coupons are its levers, and praise is its material (reviews, testimonials,
# referral campaigns). Product owns the experience itself: the goods (quality), the app and the device
# (usability), what to build next (feature_request) and fulfilment, whose carriers and promised
# delivery times are set by the product and operations side, not by campaigns (delivery).
ROUTES = {
    "pricing": MARKETING,
    "delivery": PRODUCT,
    "quality": PRODUCT,
    "usability": PRODUCT,
    "feature_request": PRODUCT,
    "praise": MARKETING,
}


@dataclass(slots=True)
class Correction:
    """A person's correction of a feedback's tags, from ``feedback_labels`` (see :func:`parse_label`)."""

    feedback_id: str
    text: str
    tags: tuple[str, ...]
    labelled_by: str
    labelled_at: float  # epoch seconds

    @property
    def label_id(self) -> str:
        """The id its record is keyed by: the feedback's."""
        return self.feedback_id

    @property
    def key(self) -> int:
        """Identifies the correction for replay detection: the same feedback relabelled later is new."""
        raw = f"{self.feedback_id}\x1f{to_millis(self.labelled_at)}\x1f{self.labelled_by}".encode()
        return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big")

    def to_wire(self) -> dict[str, Any]:
        """The ``feedback_labels`` contract, with ``labelled_at`` in epoch ms (for the internal topic
        that broadcasts corrections to every partition; :func:`parse_label` reads it back)."""
        return {
            "schema": FEEDBACK_LABEL_SCHEMA,
            "feedback_id": self.feedback_id,
            "text": self.text,
            "tags": list(self.tags),
            "labelled_by": self.labelled_by,
            "labelled_at": to_millis(self.labelled_at),
        }


@dataclass(slots=True)
class EmotionCorrection:
    """A person's correction of a chat message's emotion, from ``feedback_labels`` (``"kind":
    "emotion"``, see :func:`parse_label`)."""

    message_id: str
    text: str
    emotion: str
    labelled_by: str
    labelled_at: float  # epoch seconds

    @property
    def key(self) -> int:
        """Identifies the correction for replay detection: the same message relabelled later is new."""
        raw = f"emotion\x1f{self.message_id}\x1f{to_millis(self.labelled_at)}\x1f{self.labelled_by}".encode()
        return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big")

    @property
    def label_id(self) -> str:
        """The id its record is keyed by: the message's."""
        return self.message_id

    def to_wire(self) -> dict[str, Any]:
        """The ``feedback_labels`` contract of an emotion correction, ``labelled_at`` in epoch ms."""
        return {
            "schema": FEEDBACK_LABEL_SCHEMA,
            "kind": EMOTION_KIND,
            "message_id": self.message_id,
            "text": self.text,
            "emotion": self.emotion,
            "labelled_by": self.labelled_by,
            "labelled_at": to_millis(self.labelled_at),
        }


def _string(data: dict[str, Any], name: str, limit: int) -> str:
    value = data.get(name)
    if value is None:
        raise InvalidEvent("missing_field", f"field {name!r} is required")
    if not isinstance(value, str):
        raise InvalidEvent("wrong_type", f"field {name!r} must be a string, got {type(value).__name__}")
    if not value.strip() or len(value) > limit or (limit == MAX_ID_LENGTH and not value.isprintable()):
        raise InvalidEvent("invalid_value", f"field {name!r} must be 1-{limit} characters, not blank")
    return value


def parse_label(raw: bytes, *, max_bytes: int = 65536) -> Correction | EmotionCorrection:
    """Validate one ``feedback_labels`` message (the contract is in the module docstring).

    Raises :class:`streams.contracts.events.InvalidEvent` with a reason of ``DEAD_LETTER_REASONS``.

    >>> correction = parse_label(b'{"feedback_id": "e1", "text": "too pricey", "tags": ["pricing"],'
    ...                          b' "labelled_by": "ana", "labelled_at": "2026-11-24T10:00:00Z"}')
    >>> correction.tags, correction.labelled_at
    (('pricing',), 1795514400.0)
    >>> try:
    ...     parse_label(b'{"feedback_id": "e1", "text": "x", "tags": ["shipping"], "labelled_by": "ana",'
    ...                 b' "labelled_at": 1795514400000}')
    ... except InvalidEvent as error:
    ...     print(error.reason, "-", error.detail)
    invalid_value - field 'tags' holds 'shipping', not a category
    >>> parse_label(b'{"kind": "emotion", "message_id": "m1", "text": "still nothing", "emotion":'
    ...             b' "frustration", "labelled_by": "ana", "labelled_at": 1795514400000}').emotion
    'frustration'
    """
    data = read_json_object(raw, max_bytes)
    kind = data.get("kind", TAGS_KIND)
    if kind == EMOTION_KIND:
        return _emotion_correction(data)
    if kind != TAGS_KIND:
        raise InvalidEvent("invalid_value", f"field 'kind' must be {TAGS_KIND} or {EMOTION_KIND}")
    feedback_id = _string(data, "feedback_id", MAX_ID_LENGTH)
    text = _string(data, "text", MAX_TEXT_LENGTH)
    tags = data.get("tags")
    if tags is None:
        raise InvalidEvent("missing_field", "field 'tags' is required")
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise InvalidEvent("wrong_type", "field 'tags' must be a list of category names")
    if not 1 <= len(tags) <= len(CATEGORIES):
        raise InvalidEvent("invalid_value", f"field 'tags' must hold 1-{len(CATEGORIES)} categories")
    for tag in tags:
        if tag not in ROUTES:
            raise InvalidEvent("invalid_value", f"field 'tags' holds {tag[:64]!r}, not a category")
    if len(set(tags)) != len(tags):
        raise InvalidEvent("invalid_value", "field 'tags' repeats a category")
    labelled_by = _string(data, "labelled_by", MAX_ID_LENGTH)
    labelled_at = _labelled_at(data)
    ordered = tuple(c for c in CATEGORIES if c in tags)
    return Correction(feedback_id, text, ordered, labelled_by, labelled_at)


def _labelled_at(data: dict[str, Any]) -> float:
    if data.get("labelled_at") is None:
        raise InvalidEvent("missing_field", "field 'labelled_at' is required")
    return parse_time("labelled_at", data["labelled_at"])


def _emotion_correction(data: dict[str, Any]) -> EmotionCorrection:
    message_id = _string(data, "message_id", MAX_ID_LENGTH)
    text = _string(data, "text", MAX_TEXT_LENGTH)
    emotion = _string(data, "emotion", MAX_ID_LENGTH)
    if emotion not in EMOTIONS:
        raise InvalidEvent("invalid_value", f"field 'emotion' must be one of {', '.join(EMOTIONS)}")
    labelled_by = _string(data, "labelled_by", MAX_ID_LENGTH)
    return EmotionCorrection(message_id, text, emotion, labelled_by, _labelled_at(data))


def teams_of(tags: Iterable[str]) -> tuple[str, ...]:
    """The teams the tags route to, in :data:`TEAMS` order.

    >>> teams_of(["praise", "delivery"])
    ('product', 'marketing')
    """
    routed = {ROUTES[tag] for tag in tags}
    return tuple(team for team in TEAMS if team in routed)
