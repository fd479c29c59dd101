"""The intent and churn pipelines as numpy arrays that learn and score what River's objects would.

River learns and scores one dict at a time in Python: the scaler updates and builds a scaled dict,
then each class takes a dot product and an optimiser step over dicts. :func:`read_pipeline` reads a
``StandardScaler | LogisticRegression`` or ``StandardScaler | SoftmaxRegression`` pipeline (SGD or
AdaGrad at a constant learning rate) into arrays over a fixed feature order; :class:`LinearArrays`
then learns an example given as a vector in that order with River's arithmetic, vectorised, and
scores vectors from the live arrays; :meth:`LinearArrays.write` puts what it learned back into the
River objects, which stay the persisted form (:mod:`streams.worker.checkpoints`).

Every step is River's arithmetic, vectorised: the scaler's statistics are River's bit for bit, the
weights River's within rounding (``tests/unit/models/test_models_linear_arrays.py``); the arithmetic, step by
step: docs/prediction.md, "The models as arrays".

>>> from river import compose, linear_model, preprocessing
>>> names = ("a", "b", "c")
>>> river = preprocessing.StandardScaler() | linear_model.LogisticRegression()
>>> arrays = read_pipeline(river, names, (False, True))
>>> for x, y in [({"a": 1.0, "b": 0.0, "c": 5.0}, True), ({"a": 0.0, "b": 1.0, "c": 5.0}, False)]:
...     river.learn_one(x, y)
...     arrays.learn_one(np.array([x[name] for name in names]), y)
>>> x = {"a": 0.3, "b": 2.0, "c": 7.0}  # "c" never varied: it adds nothing
>>> fast = arrays.predict_proba_one(np.array([x[name] for name in names]))
>>> abs(fast[True] - river.predict_proba_one(x)[True]) < 1e-12
True
>>> arrays.predict_proba_many(np.array([[0.3, 2.0, 7.0], [1.0, 0.0, 5.0]])).shape  # a row per vector
(2, 2)
>>> copy = preprocessing.StandardScaler() | linear_model.LogisticRegression()
>>> arrays.write(copy)  # what the arrays learned, as River's objects
>>> copy.predict_proba_one(x) == river.predict_proba_one(x)
True
>>> intent = read_pipeline(preprocessing.StandardScaler() | linear_model.SoftmaxRegression(), names,
...                        ("buy", "leave"))
>>> intent.predict_proba_one(np.zeros(3))  # nothing learned: uniform
{'buy': 0.5, 'leave': 0.5}
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from river import compose, linear_model, optim, preprocessing

SIGMOID_CLAMP = 30.0  # River's sigmoid gives exactly 0 or 1 beyond this logit
LOG_LOSS_TAIL = 18.0  # beyond this margin River's log loss gradient takes its asymptotes
PROBA_CLAMP = 1e-15  # River clamps probabilities into [1e-15, 1 - 1e-15] in the cross-entropy gradient


@dataclass(slots=True)
class ArrayScaler:
    """River's ``StandardScaler`` (not windowed, with the standard deviation) over a feature order."""

    counts: np.ndarray  # float64: how many values each feature learned
    means: np.ndarray
    variances: np.ndarray
    stds: np.ndarray = field(init=False)  # variances ** 0.5, and 1 where the variance is 0
    constant: np.ndarray = field(init=False)  # positions of the features of variance 0: scaled to 0

    def __post_init__(self) -> None:
        self._derive()

    def _derive(self) -> None:
        self.constant = (self.variances == 0.0).nonzero()[0]
        self.stds = np.sqrt(self.variances)
        self.stds[self.constant] = 1.0

    def learn(self, values: np.ndarray) -> None:
        counts, means = self.counts, self.means
        counts += 1.0
        deviation = values - means
        means += deviation / counts
        self.variances += (deviation * (values - means) - self.variances) / counts
        self._derive()

    def scale(self, values: np.ndarray) -> np.ndarray:
        """The scaled vector."""
        scaled = (values - self.means) / self.stds
        if self.constant.size:
            scaled[self.constant] = 0.0
        return scaled

    def scale_rows(self, matrix: np.ndarray) -> np.ndarray:
        """The scaled vectors of a matrix of them (rows)."""
        scaled = (matrix - self.means) / self.stds
        scaled[:, self.constant] = 0.0
        return scaled

    @classmethod
    def read(cls, scaler: preprocessing.StandardScaler, names: Sequence[str]) -> ArrayScaler:
        return cls(_read(scaler.counts, names), _read(scaler.means, names), _read(scaler.vars, names))

    def write(self, scaler: preprocessing.StandardScaler, names: Sequence[str]) -> None:
        """The statistics into River's scaler, for the features that learned a value (River has no
        entry for the others)."""
        counts, means, variances = self.counts.tolist(), self.means.tolist(), self.variances.tolist()
        for at in self.seen():
            scaler.counts[names[at]] = int(counts[at])
            scaler.means[names[at]] = means[at]
            scaler.vars[names[at]] = variances[at]

    def seen(self) -> list[int]:
        """The positions of the features that learned a value."""
        return np.flatnonzero(self.counts).tolist()


@dataclass(slots=True)
class ArrayOptimizer:
    """River's SGD (``squares`` None) or AdaGrad at a constant learning rate, for the rows of a weight
    matrix: each row is what one River optimiser steps (SoftmaxRegression keeps one per class)."""

    learning_rate: float
    iterations: list[int]  # River's ``n_iterations`` of each row's optimiser
    squares: np.ndarray | None = None  # AdaGrad's accumulated squared gradients, a row per row
    eps: float = 0.0  # AdaGrad's

    def step(self, weights: np.ndarray, gradient: np.ndarray) -> None:
        if self.squares is None:
            weights -= self.learning_rate * gradient
        else:
            self.squares += gradient * gradient
            weights -= self.learning_rate / np.sqrt(self.squares + self.eps) * gradient
        self.iterations = [count + 1 for count in self.iterations]

    def add_row(self, width: int) -> None:
        self.iterations.append(0)
        if self.squares is not None:
            self.squares = np.vstack([self.squares, np.zeros(width)])

    @classmethod
    def read(
        cls, template: optim.base.Optimizer, rows: Sequence[optim.base.Optimizer], names: Sequence[str]
    ) -> ArrayOptimizer | None:
        """The optimisers of the rows, in order, and ``template``, what a new row starts as (None:
        optimisers these arrays cannot stand for)."""
        kind, every = type(template), [template, *rows]
        if kind not in (optim.SGD, optim.AdaGrad) or any(type(each) is not kind for each in every):
            return None
        if any(type(each.lr) is not optim.schedulers.Constant for each in every):
            return None
        rates = {each.lr.learning_rate for each in every}
        eps = {getattr(each, "eps", 0.0) for each in every}
        if len(rates) != 1 or len(eps) != 1:
            return None
        squares = None
        if kind is optim.AdaGrad:
            squares = np.array([_read(each.g2, names) for each in rows]).reshape(-1, len(names))
        return cls(float(rates.pop()), [each.n_iterations for each in rows], squares, float(eps.pop()))

    def write(self, row: int, optimizer: optim.base.Optimizer, names: Sequence[str], seen: list[int]) -> None:
        """Row ``row``'s state into its River optimiser (AdaGrad's for the features in ``seen``)."""
        optimizer.n_iterations = self.iterations[row]
        if self.squares is not None:
            squares = self.squares[row].tolist()
            optimizer.g2.update({names[at]: squares[at] for at in seen})


class LinearArrays(Protocol):
    """What :class:`LogisticArrays` and :class:`SoftmaxArrays` do."""

    classes: tuple[Any, ...]  # the probabilities' order (False, True for the logistic regression)

    def predict_proba_one(self, values: np.ndarray) -> dict[Any, float]:
        """A probability for every class of one feature vector (float64, in the feature order)."""
        ...

    def predict_proba_many(self, matrix: np.ndarray) -> np.ndarray:
        """The probabilities of every row of ``matrix`` (vectors in the feature order): an array of
        ``(rows, len(classes))``, columns in the order of ``classes``."""
        ...

    def learn_one(self, values: np.ndarray, y: Any) -> None:
        """Learn one example (a float64 vector in the feature order) as River's pipeline would."""
        ...

    def write(self, pipeline: compose.Pipeline) -> None:
        """Put the parameters into ``pipeline``, the River pipeline they were read from."""
        ...


@dataclass(slots=True)
class LogisticArrays:
    """``StandardScaler | LogisticRegression`` (log loss, zeros initialiser, no L1)."""

    names: tuple[str, ...]
    scaler: ArrayScaler
    weights: np.ndarray  # (1, features)
    intercept: float
    optimizer: ArrayOptimizer
    intercept_lr: float
    l2: float
    clip: float
    weight_pos: float
    weight_neg: float
    classes: tuple[Any, ...] = (False, True)

    def _logit(self, scaled: np.ndarray) -> float:
        return float(self.weights[0] @ scaled) + self.intercept

    def predict_proba_one(self, values: np.ndarray) -> dict[Any, float]:
        p = _sigmoid(self._logit(self.scaler.scale(values)))
        return {False: 1.0 - p, True: p}

    def predict_proba_many(self, matrix: np.ndarray) -> np.ndarray:
        z = self.scaler.scale_rows(np.asarray(matrix, dtype=np.float64)) @ self.weights[0] + self.intercept
        with np.errstate(over="ignore"):
            p = 1.0 / (1.0 + np.exp(-z))
        p = np.where(z < -SIGMOID_CLAMP, 0.0, np.where(z > SIGMOID_CLAMP, 1.0, p))
        return np.column_stack([1.0 - p, p])

    def learn_one(self, values: np.ndarray, y: Any) -> None:
        self.scaler.learn(values)
        scaled = self.scaler.scale(values)
        # River's optim.losses.Log.gradient of the logit, then clipped
        if y == 0:
            sign, weight = -1, self.weight_neg
        else:
            sign, weight = int(y), self.weight_pos
        margin = self._logit(scaled) * sign
        if margin > LOG_LOSS_TAIL:
            loss_gradient = weight * math.exp(-margin) * -sign
        elif margin < -LOG_LOSS_TAIL:
            loss_gradient = weight * -sign
        else:
            loss_gradient = weight * -sign / (math.exp(margin) + 1.0)
        loss_gradient = float(max(min(loss_gradient * 1.0, self.clip), -self.clip))  # sample weight 1
        gradient = scaled * loss_gradient
        if self.l2:
            gradient += self.l2 * self.weights[0]
        self.intercept -= self.intercept_lr * loss_gradient
        self.optimizer.step(self.weights, gradient.reshape(1, -1))

    @classmethod
    def read(cls, scaler: ArrayScaler, model: linear_model.LogisticRegression, names: tuple[str, ...]):
        if (
            type(model.loss) is not optim.losses.Log
            or type(model.initializer) is not optim.initializers.Zeros
            or model.l1 != 0
            or type(model.intercept_lr) is not optim.schedulers.Constant
        ):
            return None
        optimizer = ArrayOptimizer.read(model.optimizer, [model.optimizer], names)
        if optimizer is None:
            return None
        # The weights themselves (the ``weights`` property copies them into a dict first).
        weights = _read(model._weights, names).reshape(1, len(names))
        loss = model.loss
        return cls(
            names,
            scaler,
            weights,
            float(model.intercept),
            optimizer,
            float(model.intercept_lr.learning_rate),
            float(model.l2),
            float(model.clip_gradient),
            float(loss.weight_pos),
            float(loss.weight_neg),
        )

    def write(self, pipeline: compose.Pipeline) -> None:
        scaler, model = pipeline.steps.values()
        self.scaler.write(scaler, self.names)
        seen = self.scaler.seen()
        weights = self.weights[0].tolist()
        for at in seen:
            model._weights[self.names[at]] = weights[at]
        model.intercept = self.intercept
        self.optimizer.write(0, model.optimizer, self.names, seen)


@dataclass(slots=True)
class SoftmaxArrays:
    """``StandardScaler | SoftmaxRegression`` (cross-entropy without class weights)."""

    names: tuple[str, ...]
    scaler: ArrayScaler
    classes: tuple[Any, ...]  # the probabilities' order: MonitoredClassifier's classes
    learned: list[Any]  # the classes with a row of weights, in River's order
    weights: np.ndarray  # (learned, features)
    optimizer: ArrayOptimizer
    l2: float

    def _proba(self, scaled: np.ndarray) -> list[float]:
        """River's softmax of the learned classes' logits, in the order of ``learned``."""
        if not self.learned:
            return []
        logits = (self.weights @ scaled).tolist()
        maximum = max(logits)
        exps = [math.exp(logit - maximum) for logit in logits]
        total = 0.0
        for each in exps:
            total += each
        return [each / total for each in exps]

    def predict_proba_one(self, values: np.ndarray) -> dict[Any, float]:
        if not self.learned:
            return dict.fromkeys(self.classes, 1.0 / len(self.classes))
        # River's softmax, then MonitoredClassifier's renormalisation over its own classes.
        proba = dict(zip(self.learned, self._proba(self.scaler.scale(values)), strict=True))
        full = [proba.get(label, 0.0) for label in self.classes]
        norm = sum(full)
        if norm <= 0.0:
            return dict.fromkeys(self.classes, 1.0 / len(self.classes))
        return {label: p / norm for label, p in zip(self.classes, full, strict=True)}

    def predict_proba_many(self, matrix: np.ndarray) -> np.ndarray:
        matrix = np.asarray(matrix, dtype=np.float64)
        rows = len(matrix)
        uniform = np.full((rows, len(self.classes)), 1.0 / len(self.classes))
        if not self.learned:
            return uniform
        logits = self.scaler.scale_rows(matrix) @ self.weights.T
        exps = np.exp(logits - logits.max(axis=1, keepdims=True))
        proba = exps / exps.sum(axis=1, keepdims=True)
        full = np.zeros((rows, len(self.classes)))
        for row, label in enumerate(self.learned):
            if label in self.classes:
                full[:, self.classes.index(label)] = proba[:, row]
        norm = full.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(norm > 0.0, full / norm, uniform)

    def learn_one(self, values: np.ndarray, y: Any) -> None:
        self.scaler.learn(values)
        scaled = self.scaler.scale(values)
        # River's optim.losses.CrossEntropy.gradient of the probabilities predicted now.
        gradients = [min(max(p, PROBA_CLAMP), 1.0 - PROBA_CLAMP) for p in self._proba(scaled)]
        if y in self.learned:
            gradients[self.learned.index(y)] -= 1.0
        else:  # its first example: a row of zeros, learned from probability 0 (clamped)
            self.learned.append(y)
            self.weights = np.vstack([self.weights, np.zeros(len(self.names))])
            self.optimizer.add_row(len(self.names))
            gradients.append(PROBA_CLAMP - 1.0)
        gradient = np.multiply.outer(np.array(gradients), scaled)
        if self.l2:
            gradient += self.l2 * self.weights
        self.optimizer.step(self.weights, gradient)

    @classmethod
    def read(
        cls,
        scaler: ArrayScaler,
        model: linear_model.SoftmaxRegression,
        names: tuple[str, ...],
        classes: tuple[Any, ...],
    ):
        if type(model.loss) is not optim.losses.CrossEntropy or model.loss.class_weight:
            return None
        learned = list(model.weights)
        # dict.get: the optimisers are a defaultdict, and reading one must not add a class to it.
        rows = [dict.get(model.optimizers, label) for label in learned]
        if any(each is None for each in rows):
            return None
        template = model.optimizer  # a class' optimiser starts as a copy of it: River never steps it
        if template.n_iterations or getattr(template, "g2", None):
            return None
        optimizer = ArrayOptimizer.read(template, rows, names)
        if optimizer is None:
            return None
        weights = np.array([_read(model.weights[label], names) for label in learned]).reshape(-1, len(names))
        return cls(names, scaler, classes, learned, weights, optimizer, float(model.l2))

    def write(self, pipeline: compose.Pipeline) -> None:
        scaler, model = pipeline.steps.values()
        self.scaler.write(scaler, self.names)
        seen = self.scaler.seen()
        for row, label in enumerate(self.learned):
            weights = self.weights[row].tolist()
            model.weights[label].update({self.names[at]: weights[at] for at in seen})
            self.optimizer.write(row, model.optimizers[label], self.names, seen)


def _sigmoid(z: float) -> float:
    if z < -SIGMOID_CLAMP:
        return 0.0
    if z > SIGMOID_CLAMP:
        return 1.0
    return 1 / (1 + math.exp(-z))


def read_pipeline(
    pipeline: compose.Pipeline, names: Sequence[str], classes: tuple[Any, ...]
) -> LinearArrays | None:
    """The :class:`LinearArrays` of ``pipeline`` as it stands, over the features ``names`` (in that
    order); None for a pipeline of another shape (it then learns and scores by River). Entries of
    River's dicts for features outside ``names`` are left out: a vector over ``names`` reads and
    moves none of them in River either."""
    names = tuple(names)
    steps = list(pipeline.steps.values())
    if len(steps) != 2:
        return None
    scaler, model = steps
    if type(scaler) is not preprocessing.StandardScaler or not scaler.with_std:
        return None
    if getattr(scaler, "window_size", None) is not None:  # a rolling scaler keeps other statistics
        return None
    arrays = ArrayScaler.read(scaler, names)
    if type(model) is linear_model.LogisticRegression and classes == (False, True):
        return LogisticArrays.read(arrays, model, names)
    if type(model) is linear_model.SoftmaxRegression:
        return SoftmaxArrays.read(arrays, model, names, classes)
    return None


def _read(values: Any, names: Sequence[str]) -> np.ndarray:
    """``values[name]`` for every name, 0 for one it does not have, as a float64 array. ``.get``, not
    ``[]``: River's statistics and weights are defaultdicts, and reading one must not add a feature."""
    if isinstance(values, dict) and len(values) == len(names) and tuple(values) == tuple(names):
        # Every name, in order (as learned from the models' vectors): the values as they are.
        return np.fromiter(values.values(), np.float64, len(names))
    return np.fromiter(map(values.get, names, itertools.repeat(0.0)), np.float64, len(names))
