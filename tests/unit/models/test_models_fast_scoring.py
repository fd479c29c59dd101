"""Scoring from River's fitted parameters with numpy is River's scoring; the models' features as a
fixed-order vector: each value under its name, snapshots kept as lists, older dict snapshots still read."""

from __future__ import annotations

import copy
import math
import pickle
import random

import numpy as np
import orjson
import pytest

from models.features import FEATURE_NAMES, INTENTS, PURCHASE
from models.learners import MonitoredClassifier, PartitionModels
from streams.contracts.events import Event
from streams.domain.policy import ModelRules
from streams.domain.prediction import observe, vector
from streams.domain.state import UserState, apply_event
from streams.worker.checkpoints import open_sealed, seal
from streams.worker.codec import DataclassCodec, Refused

TOLERANCE = 1e-12
UNSEEN = FEATURE_NAMES[::7]  # in no example learned: River's scaler knows neither mean nor variance
CONSTANT = "tenure_days"  # the same in every example learned: no variance


def _vector(draw: random.Random) -> list[float]:
    scale = draw.choice((1.0, 1.0, 10.0, 1e4))
    return [0.0 if draw.random() < 0.3 else draw.gauss(0.5, 1.0) * scale for _ in FEATURE_NAMES]


def _river(model: MonitoredClassifier, values: list[float]) -> dict:
    """What MonitoredClassifier gave from River's own predict_proba_one."""
    return model._river_proba(dict(zip(FEATURE_NAMES, values, strict=True)))


def _assert_scores_are_rivers(model: MonitoredClassifier, vectors: list[list[float]]) -> None:
    many = model.predict_proba_many(np.array(vectors))
    assert many.shape == (len(vectors), len(model.classes))
    for row, values in zip(many, vectors, strict=True):
        river = _river(model, values)
        fast = model.predict_proba_values(np.array(values))
        assert list(fast) == list(river) == list(model.classes)
        assert max(abs(fast[label] - river[label]) for label in river) <= TOLERANCE
        assert max(abs(row[i] - river[label]) for i, label in enumerate(model.classes)) <= TOLERANCE
        assert model.predict_proba_one(dict(zip(FEATURE_NAMES, values, strict=True))) == fast


@pytest.mark.parametrize("name", ["intent", "churn"])
def test_fast_probabilities_are_rivers_before_and_while_the_model_learns(name: str) -> None:
    draw = random.Random(f"fast:{name}")
    model: MonitoredClassifier = getattr(PartitionModels(), name)
    vectors = [_vector(draw) for _ in range(60)]
    # Huge, all of one sign: logits beyond the clamp at 30, where River gives exactly 0 or 1.
    vectors += [[sign * abs(value) * 1e6 for value in values] for sign in (1, -1) for values in vectors[:4]]
    _assert_scores_are_rivers(model, vectors)  # nothing learned: uniform, or 0.5
    assert model.predict_proba_values(np.array(vectors[0])) == dict.fromkeys(
        model.classes, 1.0 / len(model.classes)
    )
    for step in range(400):
        x = dict(zip(FEATURE_NAMES, _vector(draw), strict=True))
        for unseen in UNSEEN:
            del x[unseen]
        x[CONSTANT] = 3.0
        if model.binary:
            label = x["s_cart_adds"] + x["s_events"] > 1.0
        else:  # two classes first: the others have no weights yet (probability 0)
            label = INTENTS[int(abs(x["s_searches"]) * 10) % (2 if step < 100 else len(INTENTS))]
        model.learn_one(x, label, model.predict_proba_one(x))
        if step in (0, 1, 99, 100, 399):  # the arrays are read again after each learning
            _assert_scores_are_rivers(model, vectors)
    fast = model.predict_proba_values(np.array(vectors[1]))
    assert len(set(fast.values())) > 1  # it learned something
    if model.binary:  # logits past River's clamp give exactly 0 or 1, as River's do
        assert {0.0, 1.0} <= set(model.predict_proba_many(np.array(vectors))[:, 1].tolist())


def test_a_checkpoint_holds_no_scoring_arrays_and_scores_the_same_after_restoring() -> None:
    draw, models = random.Random(3), PartitionModels()
    for _ in range(50):
        x = dict(zip(FEATURE_NAMES, _vector(draw), strict=True))
        models.intent.learn_one(x, PURCHASE, models.intent.predict_proba_one(x))
        models.churn.learn_one(x, x["s_events"] > 0.5, models.churn.predict_proba_one(x))
    values = np.array(_vector(draw))
    before = (models.intent.predict_proba_values(values), models.churn.predict_proba_values(values))
    assert models.intent._arrays is not None and models.churn._arrays is not None
    # The arrays would name numpy's and our scorer's classes, which a checkpoint may not.
    assert b"numpy" not in pickle.dumps(models) and b"linear_arrays" not in pickle.dumps(models)
    secret = b"a cluster secret of 16+ bytes"
    restored = open_sealed(seal(models, secret), secret)
    assert restored.intent._arrays is None
    assert (
        restored.intent.predict_proba_values(values),
        restored.churn.predict_proba_values(values),
    ) == before


def _click(state: UserState, event_id: str, kind: str, time: float, models: PartitionModels, **attrs):
    event = Event(event_id, kind, "clickstream", time, "u1", {"session_id": "s1", **attrs})
    apply_event(state, event)
    return observe(state, event, models, ModelRules(), time)


def test_each_feature_value_is_under_its_name() -> None:
    state, models = UserState("u1"), PartitionModels()
    pages = ["/p/1", "/p/2", "/p/3", "/help/returns", "/help/x", "/c/phones"]
    for index, page in enumerate(pages):
        _click(state, f"v{index}", "page_view", 100.0 + index, models, page=page)
    for index in range(4):
        _click(state, f"s{index}", "search", 110.0 + index, models, query="refund")
    _click(state, "c1", "add_to_cart", 120.0, models, sku="s1", price=9.0, quantity=2)
    _click(state, "f1", "payment_failed", 121.0, models)
    x = vector(state, 180.0)
    assert list(x) == list(FEATURE_NAMES)
    assert (x["s_product_views"], x["s_help_views"], x["s_category_views"], x["s_searches"]) == (3, 2, 1, 4)
    assert (x["s_cart_adds"], x["s_payment_failures"], x["s_checkout"]) == (1.0, 1.0, 0.0)
    assert x["s_events"] == math.log1p(12) and x["s_cart_value"] == math.log1p(18.0)
    assert x["s_minutes"] == math.log1p(21.0 / 60) and x["s_idle_minutes"] == math.log1p(59.0 / 60)
    assert x["satisfaction"] == 0.5 and x["open_shipments"] == 0.0


def test_snapshots_are_feature_lists_and_records_of_the_older_dict_form_still_load() -> None:
    state, models = UserState("u1"), PartitionModels()
    _click(state, "e1", "search", 100.0, models, query="warranty claim")
    snapshot = state.pending.churn
    assert snapshot is not None and len(snapshot.x) == len(FEATURE_NAMES)
    assert snapshot.features() == vector(state, 100.0)
    codec = DataclassCodec(UserState)
    record = orjson.loads(codec.dumps(state))
    older = copy.deepcopy(record)  # as written when snapshots kept their non-zero features by name
    for kept in [older["pending"]["churn"], *older["pending"]["intent"]]:
        kept["x"] = {name: value for name, value in zip(FEATURE_NAMES, kept["x"], strict=True) if value}
    assert codec.loads(orjson.dumps(older)) == state
    # Another number of features (another version's): they could only be learned under the wrong
    # names, so the example is dropped and the rest of the state loads.
    other = copy.deepcopy(record)
    other["pending"]["churn"]["x"] = [1.0, 2.0]
    loaded = codec.loads(orjson.dumps(other))
    assert isinstance(loaded, UserState) and loaded.pending.churn is None
    assert loaded.pending.intent == state.pending.intent
    for bad in (
        [*snapshot.x[:-1], "1.0"],
        {"not_a_feature": 1.0},
        {"s_events": "many"},
    ):
        broken = copy.deepcopy(record)
        broken["pending"]["churn"]["x"] = bad
        assert isinstance(codec.loads(orjson.dumps(broken)), Refused), bad
