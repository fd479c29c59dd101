"""Dead letters: rejected input keeps its original bytes; why it was rejected travels in headers.

This follows the Kafka Connect convention, so any Kafka tool can inspect or replay a dead letter
(``kcat -C -t dead_letters -f '%h %s\\n'``).

A dead letter fits any broker, whatever it rejects: :func:`dead_letter_record` keeps the original
value whole up to :data:`MAX_VALUE_BYTES` and the key up to :data:`MAX_KEY_BYTES`, else their first
bytes, and always says how long the original value was and its SHA-256 (for a key cut short, the
same of the key); the detail is cut at :data:`MAX_DETAIL_CHARS`. So the whole record stays under
:data:`MAX_RECORD_BYTES`, far below the 1 MB Kafka and Faust's producer accept by default.

>>> headers = dead_letter_headers("clickstream", 3, 17, "missing_field", "field 'user_id' is required", 1.5)
>>> info = read_dead_letter_headers(headers)
>>> info.reason, info.source_topic, info.source_partition, info.source_offset
('missing_field', 'clickstream', 3, 17)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import mode

from streams.contracts import metrics

log = logging.getLogger(__name__)

HEADER_PREFIX = "forewarn.dlq."
# A value up to this size is kept whole: four times FOREWARN_MAX_EVENT_BYTES' default, so every message
# refused for its content (not its size) can be replayed from its dead letter.
MAX_VALUE_BYTES = 256 * 1024
MAX_KEY_BYTES = 1024  # keys are user ids, product categories, feedback ids: at most 128 characters
MAX_DETAIL_CHARS = 1000
MAX_SOURCE_TOPIC_CHARS = 255  # Kafka's own limit on topic names is 249
MAX_SOURCE_ITEM = 2**32 - 1  # the dead_letters table's source_item is a UInt32
# The value, the key, the headers (each bounded above) and Kafka's record overhead.
MAX_RECORD_BYTES = MAX_VALUE_BYTES + MAX_KEY_BYTES + 8 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class DeadLetterInfo:
    reason: str
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int
    rejected_at: float
    original_bytes: int | None  # None: the header is missing (a dead letter written by someone else)
    original_sha256: str  # "" when missing or not a SHA-256
    # Which item of the source message was refused (an event of an envelope): its position, counted
    # from 1; 0 for the whole message (and for dead letters that do not say).
    source_item: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead letter as it is sent: key, value (both possibly cut short) and headers."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    def size(self) -> int:
        """Its bytes: key, value and headers."""
        return len(self.key or b"") + len(self.value or b"") + sum(len(n) + len(v) for n, v in self.headers)


def dead_letter_record(
    key: bytes | None,
    value: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    reason: str,
    detail: str,
    rejected_at: float,
    item: int = 0,
) -> DeadLetter:
    """The dead letter of the message ``key``/``value`` read at ``topic``/``partition``/``offset`` (with
    ``item``, of that item of the message: :func:`dead_letter_headers`): its
    bytes (whole up to the bounds, else their first bytes), the headers of :func:`dead_letter_headers`,
    and the original value's size and SHA-256 (``original_bytes``, ``original_sha256``; for a key cut
    short ``original_key_bytes`` and ``original_key_sha256`` too). Never larger than
    :data:`MAX_RECORD_BYTES`.

    >>> letter = dead_letter_record(b"u1", b"x" * 300_000, "clickstream", 0, 30, "oversized", "big", 1.5)
    >>> len(letter.value), dict(letter.headers)["forewarn.dlq.original_bytes"]
    (262144, b'300000')
    """
    headers = dead_letter_headers(topic, partition, offset, reason, detail, rejected_at, item)
    headers += _measured("original", value or b"")
    if key is not None and len(key) > MAX_KEY_BYTES:
        headers += _measured("original_key", key)
        key = key[:MAX_KEY_BYTES]
    if value is not None and len(value) > MAX_VALUE_BYTES:
        value = value[:MAX_VALUE_BYTES]
    return DeadLetter(key, value, headers)


def message_dead_letter(
    message: Any, reason: str, detail: str, rejected_at: float, value: bytes | None = None, item: int = 0
) -> DeadLetter:
    """:func:`dead_letter_record` of a Kafka message (``key``, ``value``, ``topic``, ``partition``,
    ``offset``), or with ``value`` and ``item`` of the part of it refused (an event of an envelope,
    counted from 1), where it was read. A ``message`` that is itself such a part may say which in its
    own ``item`` (:class:`streams.worker.agents.users.Part`)."""
    return dead_letter_record(
        message.key,
        message.value if value is None else value,
        message.topic,
        message.partition,
        message.offset,
        reason,
        detail,
        rejected_at,
        item or getattr(message, "item", 0),
    )


def message_source(message: Any) -> str:
    """Where a Kafka message was read, as the log names it: ``topic:partition@offset``."""
    return f"{message.topic}:{message.partition}@{message.offset}"


def _measured(name: str, data: bytes) -> list[tuple[str, bytes]]:
    """The headers ``<name>_bytes`` and ``<name>_sha256``: how long ``data`` is, and its SHA-256."""
    return [
        (f"{HEADER_PREFIX}{name}_bytes", str(len(data)).encode()),
        (f"{HEADER_PREFIX}{name}_sha256", hashlib.sha256(data).hexdigest().encode()),
    ]


def dead_letter_headers(
    topic: str, partition: int, offset: int, reason: str, detail: str, rejected_at: float, item: int = 0
) -> list[tuple[str, bytes]]:
    """The headers saying why and where a message was refused; with ``item`` (from 1), which item of it
    was (``source_item``: two events refused in one envelope are two dead letters, not one again)."""
    values = {
        "reason": reason,
        "detail": detail[:MAX_DETAIL_CHARS],
        "source_topic": topic[:MAX_SOURCE_TOPIC_CHARS],
        "source_partition": str(partition),
        "source_offset": str(offset),
        "rejected_at": repr(rejected_at),
    }
    if item:
        values["source_item"] = str(item)
    return [(HEADER_PREFIX + name, value.encode()) for name, value in values.items()]


def read_dead_letter_headers(headers: Iterable[tuple[str, bytes]]) -> DeadLetterInfo:
    values = {
        name[len(HEADER_PREFIX) :]: value.decode("utf-8", "replace")
        for name, value in headers
        if name.startswith(HEADER_PREFIX)
    }
    return DeadLetterInfo(
        reason=values.get("reason", "unknown")[:64],
        detail=values.get("detail", "")[:MAX_DETAIL_CHARS],
        source_topic=values.get("source_topic", "")[:256],
        source_partition=_number(values.get("source_partition"), int, -1),
        source_offset=_number(values.get("source_offset"), int, -1),
        rejected_at=_number(values.get("rejected_at"), float, 0.0),
        original_bytes=_number(values.get("original_bytes"), int, None),
        original_sha256=sha if _SHA256.match(sha := values.get("original_sha256", "")) else "",
        source_item=max(0, min(_number(values.get("source_item"), int, 0), MAX_SOURCE_ITEM)),
    )


def _number(text: str | None, kind: type, default: float | None) -> Any:
    """Headers written by anyone else may hold anything: read leniently, never raise."""
    try:
        return kind(text)
    except (TypeError, ValueError):
        return default


class StopRequested(Exception):
    """The worker stops before a dead letter could be sent: its message is not acknowledged, and is
    read again after the restart."""


class DeadLetterSender:
    """Sends dead letters (:func:`dead_letter_record`), each until the broker has acknowledged it.

    ``send(topic, key, value, headers)`` sends one record and raises if it was not acknowledged. A
    failed send (the broker away, the topic refused, no answer within ``attempt_timeout``) is logged,
    counted by ``forewarn_dead_letter_send_failures_total`` and tried again after a back-off doubling
    up to ``max_backoff`` seconds: a message is never acknowledged without its dead letter. Once
    ``stopping()`` says the worker stops, a failed send raises :class:`StopRequested` instead, so
    that the worker can stop; nothing else is raised."""

    def __init__(
        self,
        topic: str,
        send: Callable[[str, bytes | None, bytes | None, list[tuple[str, bytes]]], Awaitable[None]],
        *,
        stopping: Callable[[], bool],
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        max_backoff: float = 5.0,
        attempt_timeout: float = 5.0,
    ) -> None:
        self.topic = topic
        self._send = send
        self._stopping = stopping
        self._sleep = sleep
        self.max_backoff = max_backoff
        self.attempt_timeout = attempt_timeout

    async def send(
        self,
        message: Any,
        reason: str,
        detail: str,
        rejected_at: float,
        value: bytes | None = None,
        item: int = 0,
    ) -> None:
        """Dead-letter ``message`` (a Kafka message: ``key``, ``value``, ``topic``, ``partition``,
        ``offset``), or with ``value`` and ``item`` the part of it refused (:func:`message_dead_letter`),
        with ``reason`` and ``detail``; counted by ``forewarn_dead_letters_total``."""
        letter = message_dead_letter(message, reason, detail, rejected_at, value, item)
        await self.send_letter(letter, reason, message_source(message))

    async def send_letter(self, letter: DeadLetter, reason: str, source: str) -> None:
        """Send ``letter`` (of :func:`dead_letter_record`, with ``reason``; ``source`` names its message
        in the log: ``topic:partition@offset``), as :meth:`send` does."""
        await send_until_taken(
            lambda: self._send(self.topic, letter.key, letter.value, letter.headers),
            f"dead letter of {source}",
            stopping=self._stopping,
            sleep=self._sleep,
            failed=metrics.DEAD_LETTER_SEND_FAILURES.inc,
            max_backoff=self.max_backoff,
            attempt_timeout=self.attempt_timeout,
        )
        metrics.DEAD_LETTERS.labels(reason).inc()


async def send_until_taken(
    send: Callable[[], Awaitable[Any]],
    what: str,
    *,
    stopping: Callable[[], bool],
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    failed: Callable[[], Any] = lambda: None,
    max_backoff: float = 5.0,
    attempt_timeout: float = 5.0,
) -> None:
    """``send()`` until it returns: a failed try (whatever the client raises, or no answer within
    ``attempt_timeout``) is logged (naming ``what``), reported to ``failed`` and tried again after a
    back-off doubling up to ``max_backoff`` seconds. Once ``stopping()`` says the worker stops, a failed
    try raises :class:`StopRequested` instead, so that the worker can stop and read the message again
    after its restart; nothing else is raised. A try cut off by its timeout may have been delivered:
    trying again may deliver a record twice (at least once; stored once)."""
    backoff = 0.1
    while True:
        try:
            # Bounded, so that a worker stopping while the broker is away is not held up for the
            # client's own timeout.
            await asyncio.wait_for(send(), attempt_timeout)
            return
        except Exception as error:  # whatever the client raises: not known to be delivered
            failed()
            if stopping():
                log.warning("%s not sent (%r); stopping: it is read again after the restart", what, error)
                raise StopRequested from error
            log.warning("%s not sent (%r); trying again in %.1f s", what, error, backoff)
            await sleep(backoff)
            backoff = min(2 * backoff, max_backoff)


@dataclass(frozen=True, slots=True)
class QueuedDeadLetter:
    letter: DeadLetter
    reason: str
    source: str  # its message, for the log: topic:partition@offset
    size: int  # DeadLetter.size: what it holds in memory


class DeadLetterQueue(mode.Service):
    """Dead letters of records read where nothing may wait for the broker (a table's changelog at
    recovery, which Faust applies synchronously): :meth:`put` builds a message's dead letter
    (:func:`dead_letter_record`) and queues it at once; the service, once started, sends the queued ones
    in order through ``sender`` (:meth:`DeadLetterSender.send_letter`: each until the broker takes it).

    At most ``max_pending_bytes`` of dead letters wait: past that :meth:`put` logs the message it could
    not queue and counts it in ``forewarn_dead_letters_unsent_total{reason}``, so that a flood of
    records written to a changelog cannot take the worker's memory. Those still queued when the worker
    stops are not sent: their records are refused again, and queued again, at the next recovery that
    reads them."""

    def __init__(
        self, sender: DeadLetterSender, *, max_pending_bytes: int = 64 * 1024 * 1024, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.sender = sender
        self.max_pending_bytes = max_pending_bytes
        self.pending_bytes = 0
        self._queue: asyncio.Queue[QueuedDeadLetter] = asyncio.Queue()

    @property
    def waiting(self) -> int:
        """How many dead letters wait to be sent."""
        return self._queue.qsize()

    def put(self, message: Any, reason: str, detail: str, rejected_at: float) -> bool:
        """Queue the dead letter of ``message`` (a Kafka message, as :meth:`DeadLetterSender.send`
        takes it); False when it was not queued (too many bytes wait already)."""
        source = message_source(message)
        letter = message_dead_letter(message, reason, detail, rejected_at)
        size = letter.size()
        if self.pending_bytes + size > self.max_pending_bytes:
            log.warning(
                "dead letter of %s (%s) not sent: %d bytes of dead letters wait to be sent already",
                source,
                reason,
                self.pending_bytes,
            )
            metrics.DEAD_LETTERS_UNSENT.labels(reason).inc()
            return False
        self._queue.put_nowait(QueuedDeadLetter(letter, reason, source, size))
        self.pending_bytes += size
        return True

    async def send_next(self) -> None:
        """Wait for a queued dead letter and send it (raises :class:`StopRequested` if the worker stops
        before the broker took it)."""
        queued = await self._queue.get()
        try:
            await self.sender.send_letter(queued.letter, queued.reason, queued.source)
        finally:
            self.pending_bytes -= queued.size

    @mode.Service.task
    async def _send_queued(self) -> None:
        with contextlib.suppress(StopRequested):
            while not self.should_stop:
                await self.send_next()
