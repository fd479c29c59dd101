"""Faust codecs: JSON on the wire through orjson, and the tables' values.

``orjson`` is registered as a Faust codec for the topics Forewarn writes (interventions, internal
events) and ``user_state`` for the per-user table, whose values decode straight into
:class:`~streams.domain.state.UserState` so that a recovered table holds the same objects as a live one.
``table_key`` is the tables' keys (JSON, as Faust writes them).

``product_issues`` and ``launch_profile`` hold a product's hot-issue counts and its launch profile
(:mod:`models.surge`) as JSON, and so do ``support_load`` and ``load_models``, the support-load
forecast's counts and forecasters (:mod:`streams.processes.support_load`). Every JSON value is read
back only if each of its fields has its declared type (:class:`DataclassCodec`).

``partition_models`` holds a partition's River models (:class:`models.learners.PartitionModels`) as a
checkpoint signed with the deployment's cluster secret (:mod:`streams.worker.checkpoints`): a record that
does not carry a valid tag is refused before it is decoded, so writing to the ``models`` changelog
topic is not enough to make a worker run anything.

Every table codec (:class:`TableCodec`) decodes a value it cannot read, or refuses, into a
:class:`Refused` instead of raising: Faust's table recovery stops on a decoding error without moving
past the record (a bad last record would keep the worker recovering forever). :class:`CheckedTable`
then leaves refused records out of the table, logs and counts them, and dead-letters them
(:data:`CHANGELOG_REFUSED`, the codec's reason at the head of the detail).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import faust
import orjson
from faust.serializers import codecs

from models.surge import LaunchProfile, ProductIssues
from streams.contracts import metrics
from streams.contracts.deadletters import DeadLetterQueue
from streams.contracts.typed import type_error
from streams.domain.state import UserState
from streams.processes.support_load import ModelsOf, SupportLoad
from streams.worker.checkpoints import MALFORMED, CheckpointRefused, open_sealed, seal

log = logging.getLogger(__name__)

# The dead-letter reason of a changelog record a table refused; the detail starts with the codec's
# reason (``unsigned: ...``, ``malformed: ...``).
CHANGELOG_REFUSED = "changelog_refused"


class OrjsonCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return orjson.dumps(obj)

    def _loads(self, s: bytes) -> Any:
        return orjson.loads(s)


@dataclass(frozen=True, slots=True)
class Refused:
    """What a table codec decodes a key or value it will not read into; ``reason`` is one of
    :mod:`streams.worker.checkpoints`' reasons (``malformed`` for anything that does not decode)."""

    reason: str
    detail: str


class TableCodec(codecs.Codec):
    """A table's keys or values: ``encode`` writes them, ``decode`` reads them back and may raise on a
    bad record; the codec returns that record as :class:`Refused` instead."""

    def __init__(self, encode: Callable[[Any], bytes], decode: Callable[[bytes], Any]) -> None:
        super().__init__()
        self.encode = encode
        self.decode = decode

    def _dumps(self, obj: Any) -> bytes:
        return self.encode(obj)

    def _loads(self, s: bytes) -> Any:
        try:
            return self.decode(s)
        except CheckpointRefused as refused:
            return Refused(refused.reason, refused.detail)
        except Exception as error:
            return Refused(MALFORMED, f"{type(error).__name__}: {str(error)[:200]}")


class DataclassCodec(TableCodec):
    """JSON of a dataclass, read back by its ``from_dict`` and refused unless every field, all the way
    down, has its declared type (:func:`streams.contracts.typed.type_error`): a value built from a record
    with, say, a string for a time would fail later in whatever reads it (a table's recovery callback, every
    round of the user's). orjson writes the dataclass's fields itself, five times faster than building
    the dict first (``to_dict``, which gives the same JSON): these values are written on every support
    question and every user's round."""

    def __init__(self, cls: Any) -> None:
        super().__init__(orjson.dumps, functools.partial(read_dataclass, cls))


def read_dataclass(cls: Any, raw: bytes) -> Any:
    value = cls.from_dict(orjson.loads(raw))
    if error := type_error(value, cls):
        raise TypeError(error)
    return value


class PartitionModelsCodec(TableCodec):
    """A partition's models as a checkpoint signed under ``secret`` (:mod:`streams.worker.checkpoints`)."""

    def __init__(self, secret: bytes) -> None:
        super().__init__(lambda models: seal(models, secret), lambda s: open_sealed(s, secret))


class CheckedTable(faust.Table):
    """A table whose changelog records are applied only when their key and value decoded: a
    :class:`Refused` one is logged (table, partition, offset, reason; never the key, which may be a
    user id), counted in ``forewarn_changelog_refused_total`` and queued to ``dead_letters`` (the
    record's original bytes, :data:`CHANGELOG_REFUSED`), and the key keeps what the records before it
    gave (nothing, for a partition's models: they start fresh).

    Faust applies a batch once per recovery (each offset once: a restart or a rebalance recovers, and
    dead-letters, a refused record again) and synchronously, so a dead letter is only queued here
    (:class:`streams.contracts.deadletters.DeadLetterQueue` sends it once the worker runs); nothing about it
    raises into the recovery."""

    dead_letters: DeadLetterQueue | None = None  # set by the app

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        super().apply_changelog_batch([event for event in batch if self._accepted(event)])

    def _accepted(self, event: Any) -> bool:
        refused = next((item for item in (event.key, event.value) if isinstance(item, Refused)), None)
        if refused is None:
            return True
        message = event.message
        detail = f"{refused.reason}: {refused.detail}"
        log.warning(
            "refused a %s changelog record (partition %s, offset %s): %s; not applied",
            self.name,
            message.partition,
            message.offset,
            detail,
        )
        metrics.CHANGELOG_REFUSED.labels(self.name, refused.reason).inc()
        if self.dead_letters is not None:
            try:
                # The message holds the record's bytes as read: only its event was decoded.
                self.dead_letters.put(message, CHANGELOG_REFUSED, detail, time.time())
            except Exception:  # nothing may raise into the recovery: its batch would not be applied
                log.exception("the dead letter of a refused %s changelog record was not queued", self.name)
        return False


def register(cluster_secret: bytes) -> None:
    """Register the codecs; ``cluster_secret`` signs and verifies model checkpoints."""
    codecs.register("orjson", OrjsonCodec())
    faust_json = codecs.get_codec("json")  # the tables' keys, byte for byte as Faust has always written them
    codecs.register("table_key", TableCodec(faust_json.dumps, faust_json.loads))
    codecs.register("user_state", DataclassCodec(UserState))
    codecs.register("partition_models", PartitionModelsCodec(cluster_secret))
    codecs.register("product_issues", DataclassCodec(ProductIssues))
    codecs.register("launch_profile", DataclassCodec(LaunchProfile))
    codecs.register("support_load", DataclassCodec(SupportLoad))
    codecs.register("load_models", DataclassCodec(ModelsOf))
