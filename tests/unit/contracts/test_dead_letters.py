"""Dead letters of any input: bounded records (unit), sent until the broker takes them, internal topics
checked like any input, and one worker fed messages of 1, 5 and 20 MB and foreign records on its
internal topics (integration)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest

from models.surge import SurgeRules
from sinks.rows import DEAD_LETTERS, dead_letter_row
from streams.contracts import metrics
from streams.contracts.deadletters import (
    MAX_DETAIL_CHARS,
    MAX_KEY_BYTES,
    MAX_RECORD_BYTES,
    MAX_VALUE_BYTES,
    DeadLetterSender,
    StopRequested,
    dead_letter_headers,
    dead_letter_record,
    message_dead_letter,
    read_dead_letter_headers,
)
from streams.contracts.events import Event, InvalidEvent, parse_event
from streams.contracts.feedback import Correction
from streams.contracts.internal import (
    INVALID_INTERNAL,
    read_correction,
    read_question,
    read_tick,
    read_wire_event,
)
from streams.processes.catalog import load_catalog
from streams.processes.run import question_record
from streams.worker.agents.users import track_batch
from streams.worker.guard import each_event
from tests.support.harness import StartWorker, consume_all, metric, produce, rows, worker_env

MB = 1_000_000
T = 1_764_000_000.0


def record_size(letter) -> int:
    return (
        len(letter.key or b"")
        + len(letter.value or b"")
        + sum(len(name) + len(value) for name, value in letter.headers)
    )


# --- the record


def test_a_message_within_the_bounds_is_kept_whole_with_its_size_and_hash() -> None:
    value = b'{"event_id": "e1"'
    letter = dead_letter_record(b"u1", value, "clickstream", 2, 40, "malformed_json", "truncated", T)
    assert (letter.key, letter.value) == (b"u1", value)
    info = read_dead_letter_headers(letter.headers)
    assert (info.reason, info.source_topic, info.source_partition, info.source_offset) == (
        "malformed_json",
        "clickstream",
        2,
        40,
    )
    assert info.original_bytes == len(value) and info.original_sha256 == hashlib.sha256(value).hexdigest()
    assert "forewarn.dlq.original_key_bytes" not in dict(letter.headers)


@pytest.mark.parametrize("size", [MAX_VALUE_BYTES + 1, 1_000_131, 20 * MB])
def test_an_oversized_message_is_cut_and_says_how_long_it_was(size: int) -> None:
    value = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    key = b"k" * (MAX_KEY_BYTES * 3)
    detail = "d" * (MAX_DETAIL_CHARS * 50)
    letter = dead_letter_record(key, value, "t" * 5000, 0, 30, "oversized", detail, T)
    assert letter.value == value[:MAX_VALUE_BYTES] and letter.key == key[:MAX_KEY_BYTES]
    assert record_size(letter) <= MAX_RECORD_BYTES < 1_000_000  # Faust's and Kafka's default limits
    headers = dict(letter.headers)
    assert headers["forewarn.dlq.original_bytes"] == str(size).encode()
    assert headers["forewarn.dlq.original_sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert headers["forewarn.dlq.original_key_bytes"] == str(len(key)).encode()
    assert headers["forewarn.dlq.original_key_sha256"] == hashlib.sha256(key).hexdigest().encode()
    assert len(read_dead_letter_headers(letter.headers).detail) == MAX_DETAIL_CHARS

    # Stored in ClickHouse: the part kept, its length, and the original's size and hash.
    row = dict(zip(DEAD_LETTERS.columns, dead_letter_row(letter.value, letter.headers, 1, 9), strict=True))
    assert row["payload"] == value[:MAX_VALUE_BYTES] and row["payload_bytes"] == MAX_VALUE_BYTES
    assert row["original_bytes"] == size
    assert row["original_sha256"] == hashlib.sha256(value).hexdigest()


def test_a_dead_letter_of_someone_else_is_measured_from_its_payload() -> None:
    headers = dead_letter_headers("clickstream", 0, 1, "malformed_json", "", T)
    row = dict(zip(DEAD_LETTERS.columns, dead_letter_row(b"{oops", headers, 0, 5), strict=True))
    assert (row["original_bytes"], row["original_sha256"]) == (5, hashlib.sha256(b"{oops").hexdigest())
    # A size that does not match the payload and no hash: the hash is not made up from the payload.
    cut = [*headers, ("forewarn.dlq.original_bytes", b"9000"), ("forewarn.dlq.original_sha256", b"zz")]
    row = dict(zip(DEAD_LETTERS.columns, dead_letter_row(b"{oops", cut, 0, 5), strict=True))
    assert (row["original_bytes"], row["original_sha256"]) == (9000, "")


# --- sending


def message(offset: int = 7) -> SimpleNamespace:
    return SimpleNamespace(key=b"u1", value=b"x" * (2 * MB), topic="clickstream", partition=0, offset=offset)


def test_a_failed_send_is_tried_again_until_the_broker_takes_it() -> None:
    sent, attempts, sleeps = [], [], []

    async def send(topic, key, value, headers) -> None:
        attempts.append(topic)
        if len(attempts) < 4:
            raise RuntimeError("MessageSizeTooLargeError or the broker away")
        sent.append((topic, key, value, headers))

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    failures = metrics.DEAD_LETTER_SEND_FAILURES._value.get()
    oversized = metrics.DEAD_LETTERS.labels("oversized")._value.get()
    sender = DeadLetterSender("dead_letters", send, stopping=lambda: False, sleep=sleep, max_backoff=0.3)
    asyncio.run(sender.send(message(), "oversized", "big", T))
    [(topic, key, value, headers)] = sent
    assert (topic, key, len(value)) == ("dead_letters", b"u1", MAX_VALUE_BYTES)
    assert dict(headers)["forewarn.dlq.original_bytes"] == str(2 * MB).encode()
    assert sleeps == [0.1, 0.2, 0.3]
    assert metrics.DEAD_LETTER_SEND_FAILURES._value.get() == failures + 3
    assert metrics.DEAD_LETTERS.labels("oversized")._value.get() == oversized + 1


def test_a_stopping_worker_gives_up_the_send_instead_of_waiting() -> None:
    async def never(topic, key, value, headers) -> None:
        await asyncio.sleep(3600)  # the broker does not answer

    sender = DeadLetterSender("dead_letters", never, stopping=lambda: True, attempt_timeout=0.05)
    started = time.monotonic()
    with pytest.raises(StopRequested):
        asyncio.run(sender.send(message(), "oversized", "big", T))
    assert time.monotonic() - started < 1


# --- the agents' guard


class FakeStream:
    """What :func:`streams.worker.guard.each_event` uses of a Faust stream, its events and its app's
    consumer."""

    def __init__(self, count: int) -> None:
        self.abandoned: list[int] = []
        self.acked: list[int] = []
        consumer = SimpleNamespace(abandon=lambda message: self.abandoned.append(message.offset))
        app = SimpleNamespace(consumer=consumer)
        self.events_ = [SimpleNamespace(app=app, message=message(offset)) for offset in range(count)]

    def noack(self) -> FakeStream:
        return self

    async def events(self):
        for event in self.events_:
            yield event

    async def ack(self, event) -> None:
        self.acked.append(event.message.offset)


def test_whatever_an_agent_raises_the_event_is_dead_lettered_and_the_agent_goes_on() -> None:
    stream = FakeStream(5)
    failures = []

    async def handle(event) -> None:
        offset = event.message.offset
        if offset == 1:
            raise KeyError("a bug")
        if offset == 3:
            raise StopRequested  # its dead letter could not be sent before the worker stopped

    async def on_error(failed, error: Exception) -> None:
        failures.append((failed.offset, type(error).__name__))

    asyncio.run(each_event(stream, handle, on_error))
    assert failures == [(1, "KeyError")]
    assert stream.acked == [0, 1, 2, 4]  # the failed one after its dead letter
    assert stream.abandoned == [3]  # never acknowledged: read again after the restart


def test_each_event_refused_in_an_envelope_is_its_own_dead_letter() -> None:
    """The worker dead-letters each refused event of an envelope with its position in the envelope
    (header source_item, from 1), so the two below are two rows of dead_letters, not one kept twice
    (same topic, partition, offset and reason); a whole message says no item."""
    sent = []

    async def dead_letter(message, reason: str, detail: str, rejected_at: float) -> None:
        sent.append(message_dead_letter(message, reason, detail, rejected_at))

    value = b'{"envelope": 1, "events": [{"event_id": "x"}, [1]]}'
    message = SimpleNamespace(topic="forewarn-events", partition=2, offset=40, key=b"u1", value=value)
    settings = SimpleNamespace(topic_events="forewarn-events", topic_labels="forewarn-labels")
    ctx = SimpleNamespace(dead_letter=dead_letter, settings=settings, took=lambda message: None)
    asyncio.run(track_batch(ctx, [SimpleNamespace(message=message)]))
    infos = [read_dead_letter_headers(letter.headers) for letter in sent]
    assert [(i.reason, i.source_offset, i.source_item) for i in infos] == [
        (INVALID_INTERNAL, 40, 1),
        (INVALID_INTERNAL, 40, 2),
    ]
    rows = [dead_letter_row(letter.value, letter.headers, 0, offset) for offset, letter in enumerate(sent)]
    assert len({DEAD_LETTERS.row_id(row) for row in rows}) == 2
    whole = message_dead_letter(message, "malformed_json", "", T)
    assert read_dead_letter_headers(whole.headers).source_item == 0
    assert "forewarn.dlq.source_item" not in dict(whole.headers)


# --- internal topics


def refused(read, *args) -> str:
    with pytest.raises(InvalidEvent) as caught:
        read(*args)
    assert caught.value.reason == INVALID_INTERNAL
    return caught.value.detail


@pytest.mark.parametrize("read", [read_wire_event, read_tick, read_correction])
@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"[1,2,3]", "not_an_object"),
        (b"\xff{", "malformed_json"),
        (None, "malformed_json"),
        (b'{"schema": 2}', "unsupported_schema"),
        (b"{}", "missing_field"),
        (b'"' + b"x" * (3 * 65536) + b'"', "oversized"),
    ],
)
def test_foreign_records_of_internal_topics_are_refused(read, raw: bytes | None, why: str) -> None:
    assert refused(read, raw).startswith(why + ":")


def test_internal_records_read_back_as_written() -> None:
    raw = (
        b'{"event_id": "e1", "event_type": "delayed", "event_time": "2026-11-24T10:00:00.250Z",'
        b' "user_id": "u1", "shipment_id": "s1", "order_id": "o1", "promised_eta": 1764100000000,'
        b' "eta": "2026-11-26T10:00:00Z", "unknown": [1]}'
    )
    event = parse_event(raw, "logistics")
    assert read_wire_event(orjson.dumps(event.to_wire())) == Event.from_wire(event.to_wire())
    assert read_tick(orjson.dumps({"user_id": "u1", "now": 1764000000123})) == {
        "user_id": "u1",
        "now": 1764000000123,
    }
    correction = Correction("f1", "too pricey", ("pricing",), "ana", T)
    assert read_correction(orjson.dumps(correction.to_wire())) == correction

    catalog = load_catalog("")
    product = next(iter(catalog.products))
    question = parse_event(
        orjson.dumps(
            {
                "event_id": "q1",
                "event_type": "question_asked",
                "event_time": 1764000000000,
                "user_id": "u1",
                "product_id": product,
                "text": "does it fit?",
            }
        ),
        "support",
    )
    record = question_record(question, catalog, SurgeRules())
    assert read_question(orjson.dumps(record), catalog.category_of) == record


def test_an_internal_record_of_the_wrong_shape_is_refused_with_what_is_wrong() -> None:
    wire = parse_event(
        b'{"event_id": "e1", "event_type": "page_view", "event_time": 1764000000000, "user_id": "u1",'
        b' "page": "/"}',
        "clickstream",
    ).to_wire()
    assert refused(read_wire_event, orjson.dumps({**wire, "source": "elsewhere"})).startswith("invalid_value")
    assert refused(read_wire_event, orjson.dumps({**wire, "attrs": [1]})).startswith("wrong_type")
    assert refused(read_wire_event, orjson.dumps({**wire, "event_time": "soon"})).startswith("invalid_value")
    assert refused(read_wire_event, orjson.dumps({**wire, "attrs": {}})).startswith("missing_field")
    assert refused(read_tick, b'{"user_id": "u1", "now": true}').startswith("wrong_type")
    question = {"question_id": "q1", "user_id": "u1", "product_id": "nope", "category": "c", "topic": "t"}
    question |= {"text": "x", "event_time": 1764000000000}
    assert "not of category" in refused(read_question, orjson.dumps(question), lambda product: None)


# --- through a worker


def page_view(event_id: str, pad: int = 0) -> bytes:
    event = {
        "event_id": event_id,
        "event_type": "page_view",
        "event_time": int(time.time() * 1000),
        "user_id": "u1",
        "session_id": "s1",
        "page": "/",
    }
    raw = orjson.dumps(event)
    return raw if not pad else raw[:-1] + b', "pad": "' + b"x" * (pad - len(raw) - 11) + b'"}'


@pytest.mark.integration
def test_messages_of_any_size_and_foreign_internal_records_never_stop_a_worker(
    broker,
    tmp_path: Path,
    start_worker: StartWorker,
) -> None:
    dsn = f"chdb://{tmp_path / 'clickhouse'}"
    worker = start_worker(worker_env(broker.bootstrap, tmp_path, dsn))
    # 1,000,131 bytes: under the producers' default request limit, over what a dead letter could hold.
    oversized = [page_view("big-1", 1_000_131), page_view("big-5", 5 * MB), page_view("big-20", 20 * MB)]
    assert [len(raw) for raw in oversized] == [1_000_131, 5 * MB, 20 * MB]
    valid = [f"v{i}" for i in range(4)]
    # One user, so one partition: every oversized message between two valid events.
    clickstream = [("clickstream", b"u1", page_view(valid[0]))]
    for raw, after in zip(oversized, valid[1:], strict=True):
        clickstream += [("clickstream", b"u1", raw), ("clickstream", b"u1", page_view(after))]
    junk = b"[1,2,3]"
    internal = [
        ("forewarn-events", b"u1", junk),
        ("forewarn-events", b"u2", b"\x00" * (2 * MB)),
        ("forewarn-ticks", b"u1", junk),
        ("forewarn-labels", b"f1", junk),
        ("forewarn-questions", b"c1", junk),
    ]
    # The sink reads two of those topics too: events and support_questions cannot be made of them.
    expected = {
        "oversized": 3,
        INVALID_INTERNAL: 5,
        "unreadable_events": 2,
        "unreadable_support_questions": 1,
    }
    try:
        asyncio.run(produce(broker.bootstrap, clickstream + internal, max_request_size=25 * MB))
        dead = asyncio.run(
            consume_all(
                broker.bootstrap, "dead_letters", until=sum(expected.values()), timeout=40, settle=0.5
            )
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # every dead letter and valid event stored by the sink
            text = worker.metrics()
            if metric(text, "forewarn_sink_rows_total", table="dead_letters") >= len(dead) and metric(
                text, "forewarn_sink_rows_total", table="events"
            ) >= len(valid):
                break
            time.sleep(0.2)
        started = time.monotonic()
        code = worker.stop(timeout=10)
        stop_seconds = time.monotonic() - started
    finally:
        worker.stop()
    log = worker.log_text()
    assert code == 0 and stop_seconds < 10, (code, stop_seconds, log[-3000:])
    assert "Crashed reason" not in log and "wait_empty" not in log, log[-3000:]

    infos = [(read_dead_letter_headers(m.headers), m) for m in dead]
    assert {reason: sum(1 for i, _ in infos if i.reason == reason) for reason in expected} == expected
    assert len(dead) == sum(expected.values())
    assert all(len(m.value) <= MAX_VALUE_BYTES for m in dead)
    cut = sorted((i.original_bytes, i.original_sha256, m.value) for i, m in infos if i.reason == "oversized")
    assert [(size, sha) for size, sha, _ in cut] == sorted(
        (len(raw), hashlib.sha256(raw).hexdigest()) for raw in oversized
    )
    assert all(len(value) == MAX_VALUE_BYTES for *_, value in cut)
    internal_details = sorted(i.detail.split(":")[0] for i, _ in infos if i.reason == INVALID_INTERNAL)
    assert internal_details == ["not_an_object"] * 4 + ["oversized"], internal_details
    assert metric(text, "forewarn_dead_letters_total", reason="oversized") == 3
    assert metric(text, "forewarn_dead_letters_total", reason=INVALID_INTERNAL) == 5
    assert metric(text, "forewarn_dead_letters_total", reason="processing_error") == 0

    stored = rows(
        dsn, "SELECT reason, original_bytes, original_sha256, payload_bytes FROM dead_letters FINAL"
    )
    assert sorted((b, s, p) for r, b, s, p in stored if r == "oversized") == [
        (size, sha, MAX_VALUE_BYTES) for size, sha, _ in cut
    ]
    assert sorted(r for r, *_ in stored) == sorted(reason for reason, n in expected.items() for _ in range(n))
    # The valid events around the oversized ones were processed.
    assert sorted(r[0] for r in rows(dsn, "SELECT event_id FROM events FINAL")) == valid
