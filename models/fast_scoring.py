"""The intent and churn pipelines' probabilities computed with numpy from River's fitted parameters.

River scores one dict at a time in Python: the scaler builds a scaled dict, then each class takes a
dot product over dicts. :func:`compile_pipeline` reads a fitted ``StandardScaler | LogisticRegression``
or ``StandardScaler | SoftmaxRegression`` pipeline into arrays over a fixed feature order once, and
:class:`LinearScorer` computes from them, for one vector or a matrix of them (several users), what
the pipeline's ``predict_proba_one`` gives, as :class:`models.learners.MonitoredClassifier` reports it
(a probability for every class, in its order), the same up to rounding in the last bits:

* the scaler maps a feature to ``(x - mean) / var ** 0.5``, and to 0 when its variance is 0 (a
  feature seen once, constant, or never seen: River's defaults are mean 0 and variance 0). Such a
  feature adds nothing to any dot product, so only the columns with a variance are kept;
* logistic regression: ``sigmoid(w · z + intercept)``, 0 below -30 and 1 above 30 as River's sigmoid;
* softmax regression: a weight vector per class learned (no intercept), softmax over those classes;
  a class never learned has probability 0, and before any class was learned every class has the
  same probability.

The arrays are a copy of the parameters at compile time: they must be compiled again after the
pipeline learns (:class:`~models.learners.MonitoredClassifier` does it on its next prediction).

>>> from river import compose, linear_model, preprocessing
>>> names = ("a", "b", "c")
>>> pipeline = preprocessing.StandardScaler() | linear_model.LogisticRegression()
>>> for x, y in [({"a": 1.0, "b": 0.0, "c": 5.0}, True), ({"a": 0.0, "b": 1.0, "c": 5.0}, False)]:
...     pipeline.learn_one(x, y)
>>> scorer = compile_pipeline(pipeline, names, (False, True))
>>> x = {"a": 0.3, "b": 2.0, "c": 7.0}  # "c" never varied: it adds nothing
>>> fast = scorer.predict_proba_one(np.array([x[name] for name in names]))
>>> abs(fast[True] - pipeline.predict_proba_one(x)[True]) < 1e-12
True
>>> scorer.predict_proba_many(np.array([[0.3, 2.0, 7.0], [1.0, 0.0, 5.0]])).shape  # a row per vector
(2, 2)
>>> intent = compile_pipeline(preprocessing.StandardScaler() | linear_model.SoftmaxRegression(), names,
...                           ("buy", "leave"))
>>> intent.predict_proba_one(np.zeros(3))  # nothing learned: uniform
{'buy': 0.5, 'leave': 0.5}
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from river import compose, linear_model, optim, preprocessing

SIGMOID_CLAMP = 30.0  # River's sigmoid gives exactly 0 or 1 beyond this logit


@dataclass(frozen=True, slots=True)
class LinearScorer:
    """A fitted scaler and linear model as arrays over the columns that have a variance.

    ``columns``: positions, in the feature order, of the features with a variance (None: all of them);
    ``weights``: a row per output of the linear model (the logistic regression's one, or one per
    class the softmax regression learned, ``learned`` naming them, in River's order)."""

    classes: tuple[Any, ...]  # the probabilities' order (False, True for a binary model)
    columns: np.ndarray | None
    means: np.ndarray
    stds: np.ndarray
    weights: np.ndarray  # (outputs, columns kept)
    intercept: float  # the logistic regression's; 0 for softmax
    learned: tuple[Any, ...]  # softmax: the classes with weights, in the rows' order; () for logistic

    @property
    def binary(self) -> bool:
        return not self.learned and self.classes == (False, True)

    def predict_proba_one(self, values: np.ndarray) -> dict[Any, float]:
        """A probability for every class of one feature vector (float64, in the feature order)."""
        kept = values if self.columns is None else values[self.columns]
        logits = (self.weights @ ((kept - self.means) / self.stds)).tolist()
        if self.binary:
            p = _sigmoid(logits[0] + self.intercept)
            return {False: 1.0 - p, True: p}
        if not self.learned:
            return dict.fromkeys(self.classes, 1.0 / len(self.classes))
        # River's softmax, then MonitoredClassifier's renormalisation over its own classes.
        maximum = max(logits)
        exps = [math.exp(logit - maximum) for logit in logits]
        total = 0.0
        for each in exps:
            total += each
        proba = {label: each / total for label, each in zip(self.learned, exps, strict=True)}
        full = [proba.get(label, 0.0) for label in self.classes]
        norm = sum(full)
        if norm <= 0.0:
            return dict.fromkeys(self.classes, 1.0 / len(self.classes))
        return {label: p / norm for label, p in zip(self.classes, full, strict=True)}

    def predict_proba_many(self, matrix: np.ndarray) -> np.ndarray:
        """The probabilities of every row of ``matrix`` (vectors in the feature order): an array of
        ``(rows, len(classes))``, columns in the order of ``classes``."""
        matrix = np.asarray(matrix, dtype=np.float64)
        kept = matrix if self.columns is None else matrix[:, self.columns]
        logits = ((kept - self.means) / self.stds) @ self.weights.T
        rows = len(matrix)
        if self.binary:
            z = logits[:, 0] + self.intercept
            with np.errstate(over="ignore"):
                p = 1.0 / (1.0 + np.exp(-z))
            p = np.where(z < -SIGMOID_CLAMP, 0.0, np.where(z > SIGMOID_CLAMP, 1.0, p))
            return np.column_stack([1.0 - p, p])
        uniform = np.full((rows, len(self.classes)), 1.0 / len(self.classes))
        if not self.learned:
            return uniform
        exps = np.exp(logits - logits.max(axis=1, keepdims=True))
        proba = exps / exps.sum(axis=1, keepdims=True)
        full = np.zeros((rows, len(self.classes)))
        for row, label in enumerate(self.learned):
            if label in self.classes:
                full[:, self.classes.index(label)] = proba[:, row]
        norm = full.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(norm > 0.0, full / norm, uniform)


def _sigmoid(z: float) -> float:
    if z < -SIGMOID_CLAMP:
        return 0.0
    if z > SIGMOID_CLAMP:
        return 1.0
    return 1 / (1 + math.exp(-z))


def compile_pipeline(
    pipeline: compose.Pipeline, names: Sequence[str], classes: tuple[Any, ...]
) -> LinearScorer | None:
    """The :class:`LinearScorer` of ``pipeline`` as fitted now, over the features ``names`` (in that
    order); None for a pipeline of another shape (it is then scored by River)."""
    steps = list(pipeline.steps.values())
    if len(steps) != 2:
        return None
    scaler, model = steps
    if type(scaler) is not preprocessing.StandardScaler or not scaler.with_std:
        return None
    if getattr(scaler, "window_size", None) is not None:  # a rolling scaler keeps other statistics
        return None
    variances = _read(scaler.vars, names)
    kept = variances != 0.0  # River scales a feature of no variance to 0
    columns = None if kept.all() else np.flatnonzero(kept)
    means, stds = _read(scaler.means, names), np.sqrt(variances)
    if (
        type(model) is linear_model.LogisticRegression
        and type(model.loss) is optim.losses.Log
        and type(model.initializer) is optim.initializers.Zeros
        and classes == (False, True)
    ):
        learned: tuple[Any, ...] = ()
        intercept = model.intercept
        # The weights themselves (the ``weights`` property copies them into a dict first).
        weights = _read(model._weights, names).reshape(1, len(names))
    elif type(model) is linear_model.SoftmaxRegression:
        learned, intercept = tuple(model.weights), 0.0
        weights = np.empty((len(learned), len(names)))
        for row, label in enumerate(learned):
            weights[row] = _read(model.weights[label], names)
    else:
        return None
    if columns is not None:
        means, stds, weights = means[columns], stds[columns], weights[:, columns]
    return LinearScorer(classes, columns, means, stds, weights, intercept, learned)


def _read(values: Any, names: Sequence[str]) -> np.ndarray:
    """``values[name]`` for every name, 0 for one it does not have, as an array. ``.get``, not ``[]``:
    River's statistics and weights are defaultdicts, and reading one must not add a feature to it."""
    if isinstance(values, dict) and len(values) == len(names) and tuple(values) == tuple(names):
        # Every name, in order (as learned from the models' vectors): the values as they are.
        return np.fromiter(values.values(), np.float64, len(names))
    return np.fromiter(map(values.get, names, itertools.repeat(0.0)), np.float64, len(names))
