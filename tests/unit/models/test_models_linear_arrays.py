"""The numpy arrays learn what River's pipelines learn: side by side over random streams (constant
features, features never non-zero, a rare class that comes late, extreme values), the scaler's
statistics are River's bit for bit, the weights and predictions River's within rounding, and a
checkpoint taken mid-stream goes on learning identically."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from river import compose, linear_model, optim, preprocessing

import models.learners as learners
from models.features import FEATURE_NAMES, INTENTS, LEAVE
from models.learners import INTENT_FEATURES, MonitoredClassifier, churn_pipeline, intent_pipeline
from models.linear_arrays import read_pipeline
from streams.worker.checkpoints import open_sealed, seal

EXAMPLES = 2000
RELATIVE = 1e-9  # weights, accumulated squares: River's within this, relative
PROBABILITY = 1e-9  # predictions: River's within this
NEVER = FEATURE_NAMES.index("s_payment_failures")  # 0 in every example
CONSTANT = FEATURE_NAMES.index("tenure_days")  # 3.0 in every example: no variance
LATE = FEATURE_NAMES.index("coupon_user")  # constant for a while, then varies
RARE = FEATURE_NAMES.index("cancelled")  # non-zero in 1 % of the examples


def _vector(draw: random.Random, step: int) -> list[float]:
    scale = draw.choice((1.0, 1.0, 1.0, 10.0, 1e4))
    values = [0.0 if draw.random() < 0.3 else draw.gauss(0.5, 1.0) * scale for _ in FEATURE_NAMES]
    if draw.random() < 0.01:  # an outlier
        values[draw.randrange(len(values))] = draw.choice((1e8, -1e8, 1e-9))
    values[NEVER], values[CONSTANT] = 0.0, 3.0
    values[LATE] = 1.0 if step < EXAMPLES // 3 else float(draw.random() < 0.5)
    values[RARE] = float(draw.random() < 0.01)
    return values


def _label(values: list[float], step: int, binary: bool) -> Any:
    if binary:  # about one in eight True
        return values[30] + values[23] > 1.6
    if step > EXAMPLES // 2 and values[29] > 1.9:  # a class that comes late, and rarely
        return LEAVE
    return INTENTS[int(abs(values[29]) * 10) % (2 if step < 200 else 3)]


def stream(seed: int, binary: bool, count: int = EXAMPLES) -> list[tuple[list[float], Any]]:
    draw = random.Random(seed)
    examples = []
    for step in range(count):
        values = _vector(draw, step)
        examples.append((values, _label(values, step, binary)))
    return examples


def _softmax_adagrad() -> compose.Pipeline:
    model = linear_model.SoftmaxRegression(optimizer=optim.AdaGrad(0.1), l2=1e-3)
    return preprocessing.StandardScaler() | model


def _logistic_sgd() -> compose.Pipeline:
    model = linear_model.LogisticRegression(
        optimizer=optim.SGD(0.05), loss=optim.losses.Log(weight_pos=3.0), l2=1e-3, clip_gradient=0.5
    )
    return preprocessing.StandardScaler() | model


PIPELINES: dict[str, tuple[Callable[[], compose.Pipeline], bool]] = {
    "intent": (intent_pipeline, False),
    "churn": (churn_pipeline, True),
    "softmax_adagrad_l2": (_softmax_adagrad, False),
    "logistic_sgd_l2_clipped": (_logistic_sgd, True),
}


def _classes(binary: bool) -> tuple[Any, ...]:
    return (False, True) if binary else INTENTS


def _close(ours: dict, rivers: dict) -> None:
    assert list(ours) == list(rivers)
    a, b = np.array(list(ours.values()), dtype=float), np.array(list(rivers.values()), dtype=float)
    np.testing.assert_allclose(a, b, rtol=RELATIVE, atol=1e-300)


def assert_same_parameters(ours: compose.Pipeline, rivers: compose.Pipeline) -> None:
    """The parameters of two pipelines of the same shape: the scaler's identical, the rest within
    RELATIVE."""
    (scaler, model), (river_scaler, river_model) = ours.steps.values(), rivers.steps.values()
    assert dict(scaler.counts) == dict(river_scaler.counts)
    assert dict(scaler.means) == dict(river_scaler.means) and dict(scaler.vars) == dict(river_scaler.vars)
    if isinstance(model, linear_model.LogisticRegression):
        _close(model._weights.to_dict(), river_model._weights.to_dict())
        assert model.intercept == pytest.approx(river_model.intercept, rel=RELATIVE)
        optimizers = [(model.optimizer, river_model.optimizer)]
    else:
        assert list(model.weights) == list(river_model.weights)  # the classes, in River's order
        for label, weights in river_model.weights.items():
            _close(model.weights[label], weights)
        assert list(model.optimizers) == list(river_model.optimizers)
        optimizers = [
            (model.optimizers[label], river_model.optimizers[label]) for label in river_model.optimizers
        ]
    for optimizer, river_optimizer in optimizers:
        assert optimizer.n_iterations == river_optimizer.n_iterations
        if isinstance(river_optimizer, optim.AdaGrad):
            _close(optimizer.g2, river_optimizer.g2)


def assert_same_predictions(
    model: MonitoredClassifier, river: compose.Pipeline, probes: list[list[float]]
) -> None:
    reference = MonitoredClassifier("reference", river, model.classes)
    for values in probes:
        ours = model.predict_proba_values(np.array(values))
        theirs = reference._river_proba(dict(zip(FEATURE_NAMES, values, strict=True)))
        assert list(ours) == list(theirs)
        assert max(abs(ours[label] - theirs[label]) for label in theirs) <= PROBABILITY


@pytest.mark.parametrize("name", list(PIPELINES))
def test_the_arrays_learn_what_river_learns(name: str) -> None:
    factory, binary = PIPELINES[name]
    river, model = factory(), MonitoredClassifier(name, factory(), _classes(binary))
    examples = stream(len(name), binary)
    probes = [values for values, _ in stream(99, binary, 40)]
    probes += [[value * 1e6 for value in values] for values in probes[:3]]  # logits past the clamps
    for step, (values, label) in enumerate(examples):
        river.learn_one(dict(zip(FEATURE_NAMES, values, strict=True)), label)
        model.learn_values(values, label, model.predict_proba_values(np.array(values)))
        if step in (0, 1, 2, EXAMPLES // 3 + 1, EXAMPLES // 2 + 50) or step % 1000 == 999:
            assert_same_predictions(model, river, probes)
    assert_same_parameters(copy.deepcopy(model).river_pipeline(), river)
    assert_same_predictions(model, river, probes)
    if not binary:
        assert list(river.steps["SoftmaxRegression"].weights)[-1] == LEAVE  # it came late


def test_the_arrays_are_the_live_parameters_and_the_pipeline_gets_them_when_river_is_used(
    monkeypatch,
) -> None:
    """Learning moves the arrays in place (no reading the pipeline again before the next score);
    a checkpoint mid-stream, or River learning a dict of other features, first gets everything the
    arrays learned, and what follows is learned alike by the restored copy and by River."""
    reads = []
    monkeypatch.setattr(learners, "read_pipeline", lambda *args: reads.append(args) or read_pipeline(*args))
    examples = stream(7, False)
    river, model = intent_pipeline(), learners.intent_model()

    def read(values: list[float]) -> dict[str, float]:  # what the intent model reads of them
        return {
            name: value for name, value in zip(FEATURE_NAMES, values, strict=True) if name in INTENT_FEATURES
        }

    for values, label in examples[: EXAMPLES // 2]:
        river.learn_one(read(values), label)
        model.learn_values(values, label, model.predict_proba_values(np.array(values)))
    assert len(reads) == 1  # read once, at the first prediction
    secret = b"a cluster secret of 16+ bytes"
    restored = open_sealed(seal(learners.PartitionModels(intent=model), secret), secret).intent
    assert_same_parameters(restored.pipeline, river)
    # River itself learns an example of other features: after what the arrays learned.
    other = {"s_events": 2.0, "not_a_feature": 1.0}
    river.learn_one(other, LEAVE)
    for each in (model, restored):
        each.learn_one(other, LEAVE, {LEAVE: 1.0})
    for values, label in examples[EXAMPLES // 2 :]:
        river.learn_one(read(values), label)
        for each in (model, restored):
            each.learn_values(values, label, each.predict_proba_values(np.array(values)))
    assert model.examples == restored.examples == EXAMPLES + 1
    assert_same_parameters(model.river_pipeline(), river)
    probes = [np.array(values) for values, _ in examples[:50]]
    assert [restored.predict_proba_values(x) for x in probes] == [
        model.predict_proba_values(x) for x in probes
    ]
    assert restored.quality() == model.quality()


def test_a_pipeline_the_arrays_cannot_stand_for_learns_and_scores_by_river() -> None:
    """Another optimiser (Adam) or a learning-rate schedule: River learns and scores it, as before."""
    for pipeline in (
        preprocessing.StandardScaler() | linear_model.LogisticRegression(optimizer=optim.Adam()),
        preprocessing.StandardScaler()
        | linear_model.SoftmaxRegression(optimizer=optim.SGD(optim.schedulers.InverseScaling(0.1))),
    ):
        assert read_pipeline(pipeline, FEATURE_NAMES, INTENTS) is None
    river = preprocessing.StandardScaler() | linear_model.LogisticRegression(optimizer=optim.Adam())
    model = MonitoredClassifier("churn", copy.deepcopy(river), (False, True))
    for values, label in stream(3, True, 200):
        river.learn_one(dict(zip(FEATURE_NAMES, values, strict=True)), label)
        model.learn_values(values, label, model.predict_proba_values(np.array(values)))
    probes = [values for values, _ in stream(4, True, 20)]
    assert_same_predictions(model, river, probes)
