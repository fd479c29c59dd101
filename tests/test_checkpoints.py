"""Nothing a table's changelog holds runs code or stops a worker: model checkpoints are signed with the
cluster secret and unpickled only into the models' classes (streams/checkpoints.py), and every table
codec refuses what it cannot read instead of failing the table's recovery (streams/codec.py)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from prometheus_client import REGISTRY

from models.learners import PartitionModels
from streams.checkpoints import HEADER, TAG_BYTES, CheckpointRefused, checkpoint_key, open_sealed, seal
from streams.codec import CheckedTable, PartitionModelsCodec, Refused, UserStateCodec
from streams.state import UserState

SECRET = b"the cluster secret of this test"


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
    users = UserStateCodec()
    assert users.loads(users.dumps(UserState("u1"))) == UserState("u1")
    for bad in (b'{"user_id": "u1", "events_', b"[1, 2]", b'{"unknown_field": 1}', b"\xff"):
        assert users.loads(bad).reason == "malformed", bad


def refused_count(table: str, reason: str) -> float:
    labels = {"table": table, "reason": reason}
    return REGISTRY.get_sample_value("forewarn_changelog_refused_total", labels) or 0.0


def record(key: Any, value: Any, offset: int, partition: int = 2) -> Any:
    """A changelog event as Faust's recovery hands it to a table: decoded key and value, raw message."""
    raw = None if value is None else b"raw"
    message = SimpleNamespace(partition=partition, offset=offset, value=raw, key=b"raw")
    return SimpleNamespace(key=key, value=value, message=message)


def test_a_checked_table_applies_only_what_decoded_and_logs_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = faust.App("checked-table-test", store="memory://")
    table = CheckedTable(app, name="users", partitions=4)
    before = refused_count("users", "malformed"), refused_count("users", "bad_signature")
    batch = [
        record("u1", UserState("u1"), 10),
        record("u2", UserState("u2"), 11),
        record("u1", Refused("malformed", "JSONDecodeError: unexpected end"), 12),  # u1 keeps offset 10's
        record(Refused("malformed", "UnicodeDecodeError"), UserState("u3"), 13),
        record("u4", Refused("bad_signature", "the tag does not verify"), 14),
    ]
    with caplog.at_level(logging.WARNING, logger="streams.codec"):
        table.apply_changelog_batch(batch)
    assert dict(table.data) == {"u1": UserState("u1"), "u2": UserState("u2")}
    assert refused_count("users", "malformed") - before[0] == 2
    assert refused_count("users", "bad_signature") - before[1] == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "streams.codec"]
    assert lines[0] == (
        "refused a users changelog record (partition 2, offset 12): malformed: JSONDecodeError: unexpected"
        " end; not applied"
    )
    assert len(lines) == 3 and not any("u4" in line for line in lines)  # the key may be a user id
