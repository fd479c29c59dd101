"""Nothing a table's changelog holds runs code or stops a worker: model checkpoints are signed with the
cluster secret and unpickled only into the models' classes (streams/worker/checkpoints.py), and every table
codec refuses what it cannot read instead of failing the table's recovery (streams/worker/codec.py)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import pickle
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from models.learners import PartitionModels
from streams.api.server import user_partition
from streams.contracts.deadletters import DeadLetterQueue, DeadLetterSender, read_dead_letter_headers
from streams.domain.state import UserState
from streams.tools.worker_launcher import send_everything_policy
from streams.worker.checkpoints import HEADER, TAG_BYTES, CheckpointRefused, checkpoint_key, open_sealed, seal
from streams.worker.codec import CheckedTable, DataclassCodec, PartitionModelsCodec, Refused
from tests.support.harness import StartWorker, event_bytes, metric, produce, read_until, rows, worker_env

SECRET = b"the cluster secret of this test"
PUBLISH_EVERY_SCORE = '\n[models]\npublish_delta = 0.0\npublish_interval = "0s"\n'


class Exploit:
    """Unpickled, it creates ``marker``: what a forged checkpoint would make a worker run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def signed(payload: bytes, secret: bytes = SECRET) -> bytes:
    """``payload`` with a valid header and tag: what only a holder of ``secret`` can write."""
    return HEADER + hmac.new(checkpoint_key(secret), HEADER + payload, hashlib.sha256).digest() + payload


def refusal(raw: bytes) -> str:
    with pytest.raises(CheckpointRefused) as refused:
        open_sealed(raw, SECRET)
    assert SECRET.decode() not in str(refused.value)
    return refused.value.reason


def learned_models() -> PartitionModels:
    models = PartitionModels()
    for index in range(300):
        x = {"a": index % 7 / 7, "b": index % 3 / 3}
        models.intent.learn_one(
            x, "purchase" if x["a"] > 0.5 else "browse", models.intent.predict_proba_one(x)
        )
        models.churn.learn_one(x, x["b"] > 0.5, models.churn.predict_proba_one(x))
    models.tagger.learn_one("Total highway robbery", ["pricing"])
    return models


def test_a_signed_checkpoint_restores_models_that_predict_and_learn_identically() -> None:
    models = learned_models()
    restored = open_sealed(seal(models, SECRET), SECRET)
    probes = [{"a": i / 10, "b": (10 - i) / 10} for i in range(10)]
    for x in probes:
        assert restored.intent.predict_proba_one(x) == models.intent.predict_proba_one(x)
        assert restored.churn.predict_proba_one(x) == models.churn.predict_proba_one(x)
    assert restored.tagger.predict_proba_one("highway robbery") == models.tagger.predict_proba_one(
        "highway robbery"
    )
    assert restored.intent.quality() == models.intent.quality()
    for copy in (models, restored):
        for x in probes:
            copy.intent.learn_one(x, "leave", copy.intent.predict_proba_one(x))
    assert [restored.intent.predict_proba_one(x) for x in probes] == [
        models.intent.predict_proba_one(x) for x in probes
    ]


def test_forged_tampered_and_unsigned_checkpoints_are_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "exploited"
    exploit = pickle.dumps(Exploit(marker))
    genuine = seal(learned_models(), SECRET)
    tampered = bytearray(genuine)
    tampered[-100] ^= 1
    assert refusal(exploit) == "unsigned"  # the previous format: a plain pickle
    assert refusal(pickle.dumps(PartitionModels())) == "unsigned"
    assert refusal(HEADER + bytes(TAG_BYTES) + exploit) == "bad_signature"  # a made-up tag
    assert refusal(signed(exploit, b"another deployment's secret")) == "bad_signature"
    assert refusal(bytes(tampered)) == "bad_signature"
    assert refusal(genuine[:-1]) == "bad_signature"
    assert refusal(genuine[:20]) == "unsigned"
    assert refusal(b"") == "unsigned"
    # Even signed with this deployment's secret, a payload naming a global beyond the models' classes
    # is refused before anything is called.
    assert refusal(signed(exploit)) == "forbidden_class"
    assert refusal(signed(pickle.dumps({"models": None}))) == "malformed"
    assert refusal(signed(b"not a pickle")) == "malformed"
    assert not marker.exists()
    # The tag is over the header and the payload, under a key derived from the secret (never the
    # secret itself, which the API's forwarded calls are signed with).
    assert checkpoint_key(SECRET) != SECRET and len(checkpoint_key(SECRET)) == 32


def test_table_codecs_decode_what_they_refuse_into_refused(tmp_path: Path) -> None:
    marker = tmp_path / "exploited"
    models = PartitionModelsCodec(SECRET)
    assert isinstance(models.loads(models.dumps(PartitionModels())), PartitionModels)
    assert models.loads(pickle.dumps(Exploit(marker))).reason == "unsigned"
    assert models.loads(signed(pickle.dumps(Exploit(marker)))).reason == "forbidden_class"
    assert not marker.exists()
    users = DataclassCodec(UserState)
    assert users.loads(users.dumps(UserState("u1"))) == UserState("u1")
    for bad in (b'{"user_id": "u1", "events_', b"[1, 2]", b'{"unknown_field": 1}', b"\xff"):
        assert users.loads(bad).reason == "malformed", bad
    # JSON that builds a UserState, but with a value of the wrong type, however deep.
    wrong = users.loads(b'{"user_id": "u1", "contacts": {"chat": [1.0, "soon"]}}')
    assert wrong == Refused("malformed", "TypeError: contacts['chat'][1]: expected float, got 'str'")


def refused_count(table: str, reason: str) -> float:
    labels = {"table": table, "reason": reason}
    return REGISTRY.get_sample_value("forewarn_changelog_refused_total", labels) or 0.0


def record(key: Any, value: Any, offset: int, partition: int = 2) -> Any:
    """A changelog event as Faust's recovery hands it to a table: decoded key and value, the message
    with the record's bytes."""
    raw = None if value is None else f"raw value {offset}".encode()
    message = SimpleNamespace(
        topic="forewarn-users-changelog", partition=partition, offset=offset, value=raw, key=b"raw key"
    )
    return SimpleNamespace(key=key, value=value, message=message)


def dead_letter_queue(send: Any, **options: Any) -> DeadLetterQueue:
    return DeadLetterQueue(DeadLetterSender("dead_letters", send, stopping=lambda: False), **options)


async def never_called(*record: Any) -> None:
    raise AssertionError("nothing is sent before the queue's service runs")


def test_a_checked_table_applies_only_what_decoded_and_logs_counts_and_dead_letters_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = faust.App("checked-table-test", store="memory://")
    table = CheckedTable(app, name="users", partitions=4)
    sent: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []

    async def send(topic: str, key: bytes | None, value: bytes | None, headers: Any) -> None:
        sent.append((topic, key, value, headers))

    table.dead_letters = dead_letter_queue(send)
    before = refused_count("users", "malformed"), refused_count("users", "bad_signature")
    batch = [
        record("u1", UserState("u1"), 10),
        record("u2", UserState("u2"), 11),
        record("u1", Refused("malformed", "JSONDecodeError: unexpected end"), 12),  # u1 keeps offset 10's
        record(Refused("malformed", "UnicodeDecodeError"), UserState("u3"), 13),
        record("u4", Refused("bad_signature", "the tag does not verify"), 14),
    ]
    with caplog.at_level(logging.WARNING, logger="streams.worker.codec"):
        table.apply_changelog_batch(batch)
    assert dict(table.data) == {"u1": UserState("u1"), "u2": UserState("u2")}
    assert refused_count("users", "malformed") - before[0] == 2
    assert refused_count("users", "bad_signature") - before[1] == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "streams.worker.codec"]
    assert lines[0] == (
        "refused a users changelog record (partition 2, offset 12): malformed: JSONDecodeError: unexpected"
        " end; not applied"
    )
    assert len(lines) == 3 and not any("u4" in line for line in lines)  # the key may be a user id
    # Each refused record queued once, in order, with its own bytes; sent once the worker runs.
    assert table.dead_letters.waiting == 3 and not sent

    async def send_queued() -> None:
        for _ in range(3):
            await table.dead_letters.send_next()

    asyncio.run(send_queued())
    infos = [read_dead_letter_headers(headers) for *_, headers in sent]
    assert [(topic, key, value) for topic, key, value, _ in sent] == [
        ("dead_letters", b"raw key", f"raw value {offset}".encode()) for offset in (12, 13, 14)
    ]
    assert {(i.reason, i.source_topic, i.source_partition) for i in infos} == {
        ("changelog_refused", "forewarn-users-changelog", 2)
    }
    assert [(i.source_offset, i.detail) for i in infos] == [
        (12, "malformed: JSONDecodeError: unexpected end"),
        (13, "malformed: UnicodeDecodeError"),
        (14, "bad_signature: the tag does not verify"),
    ]
    assert table.dead_letters.pending_bytes == 0


def test_a_refused_record_whose_dead_letter_cannot_be_queued_never_fails_the_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Past the queue's bound a dead letter is logged and counted, not queued; whatever queueing
    raises is logged: the batch's good records are applied all the same."""
    app = faust.App("checked-table-bound-test", store="memory://")
    table = CheckedTable(app, name="users", partitions=4)
    table.dead_letters = dead_letter_queue(never_called, max_pending_bytes=600)  # room for one
    unsent = REGISTRY.get_sample_value("forewarn_dead_letters_unsent_total", {"reason": "changelog_refused"})
    broken = record("u5", Refused("malformed", "x"), 3)
    broken.message.value = "not bytes"  # dead_letter_record raises on it
    batch = [record("u1", Refused("malformed", "x"), 1), record("u2", Refused("malformed", "x"), 2), broken]
    with caplog.at_level(logging.WARNING, logger="streams"):
        table.apply_changelog_batch([*batch, record("u3", UserState("u3"), 4)])
    assert dict(table.data) == {"u3": UserState("u3")}
    assert table.dead_letters.waiting == 1
    after = REGISTRY.get_sample_value("forewarn_dead_letters_unsent_total", {"reason": "changelog_refused"})
    assert after - (unsent or 0.0) == 1
    text = caplog.text
    assert "dead letter of forewarn-users-changelog:2@2 (changelog_refused) not sent" in text
    assert "the dead letter of a refused users changelog record was not queued" in text


# --- through a real broker


async def produce_to_partitions(bootstrap: str, records: list[tuple[str, int, bytes, bytes]]) -> None:
    """Create the topics with 4 partitions (as the worker's tables have) and write each record to its
    partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 4, 1) for topic in sorted({r[0] for r in records})])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for topic, partition, key, value in records:
            await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()


def session(user: str, start_ms: int) -> list[tuple[str, bytes, bytes]]:
    """A page view, a search, an add to cart and the order that labels the intent snapshots taken after
    the first and the third event (models.examples.SNAPSHOT_AT): two examples for the user's partition."""
    kinds = [
        ("page_view", {"page": "/c/phones", "category": "phones"}),
        ("search", {"query": "phone case"}),
        ("add_to_cart", {"sku": "sku-1", "price": 19.9}),
        ("order_completed", {"order_id": f"{user}-o"}),
    ]
    return [
        (
            "clickstream",
            user.encode(),
            event_bytes(
                event_id=f"{user}-{step}",
                event_type=kind,
                event_time=start_ms + 1000 * step,
                user_id=user,
                session_id=f"{user}-s",
                **attrs,
            ),
        )
        for step, (kind, attrs) in enumerate(kinds)
    ]


@pytest.mark.integration
def test_forged_changelog_records_are_refused_and_their_partitions_start_fresh(
    broker,
    tmp_path: Path,
    start_worker: StartWorker,
) -> None:
    """Records written to the tables' changelogs before the worker starts, by someone without the
    cluster secret: a plain pickle that would run a command (the format before checkpoints were
    signed), one with a made-up signature, a users record that is not JSON (last on its partition: a
    record that fails to decode used to hold the table's recovery there for good) and one with a string
    for a time (it used to break the recovered users' timer index). The worker refuses each (a log
    line, the metric) and dead-letters it with its bytes (on the topic and in ClickHouse), runs nothing,
    and scores every partition's users, with fresh models where a checkpoint was forged."""
    marker = tmp_path / "exploited"
    exploit = pickle.dumps(Exploit(marker))
    forged = [
        ("forewarn-models-changelog", 0, b'"0"', exploit),
        ("forewarn-models-changelog", 1, b'"1"', HEADER + bytes(TAG_BYTES) + exploit),
        ("forewarn-users-changelog", 2, b'"ghost"', b'{"user_id": "ghost", "events_'),
        (
            "forewarn-users-changelog",
            3,
            b'"ghost"',
            b'{"user_id": "ghost", "partition": 3, "last_event_time": "soon"}',
        ),
    ]
    asyncio.run(produce_to_partitions(broker.bootstrap, forged))
    candidates = [f"forged-{index}" for index in range(64)]
    users = [user for p in range(4) for user in [u for u in candidates if user_partition(u, 4) == p][:2]]
    start_ms = int(time.time() * 1000) - 60_000
    events = [event for index, user in enumerate(users) for event in session(user, start_ms + index)]
    env = worker_env(broker.bootstrap, tmp_path, policy=send_everything_policy("2s") + PUBLISH_EVERY_SCORE)
    worker = start_worker(env)
    try:
        asyncio.run(produce(broker.bootstrap, events))
        scored = asyncio.run(
            read_until(broker.bootstrap, "user_scores", lambda found: len(found) >= len(events))
        )
        dead = asyncio.run(
            read_until(broker.bootstrap, "dead_letters", lambda found: len(found) >= len(forged), timeout=20)
        )
        deadline = time.monotonic() + 20
        while metric(worker.metrics(), "forewarn_sink_rows_total", table="dead_letters") < len(forged):
            assert time.monotonic() < deadline, "the sink did not store the dead letters"
            time.sleep(0.2)
        metrics = worker.metrics()
        log = worker.log_text()
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]

    assert not marker.exists()
    for table, partition, reason in [
        ("models", 0, "unsigned"),
        ("models", 1, "bad_signature"),
        ("users", 2, "malformed: JSONDecodeError"),
        ("users", 3, "malformed: TypeError: last_event_time: expected float, got 'str'"),
    ]:
        assert f"refused a {table} changelog record (partition {partition}, offset 0): {reason}" in log
    refused = {
        (table, reason): sample(metrics, "forewarn_changelog_refused_total", table=table, reason=reason)
        for table, reason in [("models", "unsigned"), ("models", "bad_signature"), ("users", "malformed")]
    }
    assert refused == {("models", "unsigned"): 1, ("models", "bad_signature"): 1, ("users", "malformed"): 2}
    assert "Traceback" not in log
    # Each refused record dead-lettered once, with its original bytes and the codec's reason first.
    infos = [(read_dead_letter_headers(m.headers), m) for m in dead]
    assert sorted(
        (i.source_topic, i.source_partition, i.source_offset, m.key, m.value) for i, m in infos
    ) == [(topic, partition, 0, key, value) for topic, partition, key, value in forged]
    assert all(i.reason == "changelog_refused" for i, _ in infos)
    heads = sorted((i.source_partition, i.detail.split(":")[0]) for i, _ in infos)
    assert heads == [(0, "unsigned"), (1, "bad_signature"), (2, "malformed"), (3, "malformed")]
    assert sample(metrics, "forewarn_dead_letters_total", reason="changelog_refused") == len(forged)
    stored = rows(
        f"chdb://{tmp_path / 'clickhouse'}",
        "SELECT source_topic, source_partition, source_offset, lower(hex(payload)) FROM dead_letters FINAL"
        " WHERE reason = 'changelog_refused'",
    )
    assert sorted(stored) == [(topic, partition, 0, value.hex()) for topic, partition, _, value in forged]
    # Every partition's users scored; each partition's models learned from its own two users, from 0.
    scores = [orjson.loads(m.value) for m in scored]
    assert {s["user_id"] for s in scores} == set(users)
    learned: dict[int, int] = {}
    for score in scores:
        p = user_partition(score["user_id"], 4)
        learned[p] = max(learned.get(p, 0), score["intent_examples"])
    assert learned == {p: 4 for p in range(4)}, learned


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for item in family.samples:
            if item.name == name and item.labels == labels:
                return item.value
    return 0.0
