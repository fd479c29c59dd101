"""The intent and churn models: River pipelines that measure themselves as they learn.

A :class:`MonitoredClassifier` wraps a River pipeline with progressive validation: the probabilities
it is given at :meth:`~MonitoredClassifier.learn_one` are the ones it predicted for the example when
the example was taken, before any label was known, and they update the model-health metrics before
the model learns the example. Labels come late (:mod:`streams.domain.prediction`), so each example is
predicted once when its features are taken and learned once when its label arrives, and never predicted again
after it was learned. An ADWIN detector watches each example's loss for drift.

:class:`PartitionModels` holds the two models of one stream partition: each partition learns from its
own users and its models move with it (a changelog-backed table keyed by partition, checkpointed
periodically; see :mod:`streams.worker.app`).

>>> models = PartitionModels()
>>> x = {"searches": 1.0}
>>> before = models.churn.predict_proba_one(x)
>>> drifted = models.churn.learn_one(x, True, before)
>>> models.churn.examples
1
>>> sorted(models.intent.predict_proba_one(x))  # every class, even before any was seen
['browse', 'leave', 'need_help', 'purchase']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from river import compose, drift, linear_model, metrics, optim, preprocessing, utils

from models.emotion import EmotionModel
from models.features import CHURN_HISTORY, FEATURE_NAMES, INTENTS
from models.linear_arrays import LinearArrays, read_pipeline
from models.tagger import CORRECTION_MEMORY, FeedbackTagger
from streams.contracts.feedback import EmotionCorrection

_FEATURES = frozenset(FEATURE_NAMES)
# What the intent model reads: the user's history for churn left out (on the model benchmark's stream it
# cost intent 0.006 of macro F1: more to scale and learn, nothing the session does not tell).
INTENT_FEATURES = tuple(name for name in FEATURE_NAMES if name not in CHURN_HISTORY)
QUALITY_WINDOW = 5000  # examples in the rolling quality metrics
PROBABILITY_FLOOR = 1e-6  # log loss of a certain wrong prediction stays finite


def churn_pipeline() -> compose.Pipeline:
    # AdaGrad: the rare churned examples keep a usable step size (best in benchmarks/models.py).
    return preprocessing.StandardScaler() | linear_model.LogisticRegression(optimizer=optim.AdaGrad(0.05))


def intent_pipeline() -> compose.Pipeline:
    return preprocessing.StandardScaler() | linear_model.SoftmaxRegression(optimizer=optim.SGD(0.02), l2=1e-4)


@dataclass
class MonitoredClassifier:
    """A River pipeline with progressive-validation metrics, drift detection and counts.

    ``classes``: the labels; a binary model has ``(False, True)`` and its probabilities are of True.
    ``features``: the features it reads, of :data:`~models.features.FEATURE_NAMES` (all of them by
    default); vectors are given over all of them, in that order, and it takes its own.

    Examples over the models' features (:data:`~models.features.FEATURE_NAMES`) are learned, and
    vectors of them scored, by numpy arrays read from the pipeline once
    (:mod:`models.linear_arrays`), which then hold the live parameters; the pipeline, the form a
    checkpoint keeps, gets them back (:meth:`river_pipeline`) when pickled, and before River itself
    learns or scores a dict of other features. The arrays are not part of a checkpoint.
    """

    name: str
    pipeline: compose.Pipeline  # River's objects: current only through river_pipeline()
    classes: tuple[Any, ...]
    examples: int = 0
    drifts: int = 0
    # Quality over the last QUALITY_WINDOW examples, each scored by the prediction made before learning.
    rolling: dict[str, Any] = field(default_factory=dict)
    detector: drift.ADWIN = field(default_factory=drift.ADWIN)
    features: tuple[str, ...] = FEATURE_NAMES
    # The live parameters as arrays (None: not read yet, or a pipeline they cannot stand for), whether
    # they were read, and whether they learned what the pipeline has not yet been given.
    _arrays: LinearArrays | None = field(default=None, init=False, repr=False, compare=False)
    _read: bool = field(default=False, init=False, repr=False, compare=False)
    _pipeline_behind: bool = field(default=False, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        """What a checkpoint holds: the pipeline with everything learned, and no arrays (whose numpy
        classes a checkpoint may not name: :data:`streams.worker.checkpoints.ALLOWED`)."""
        self.river_pipeline()
        state = dict(self.__dict__)
        for private in ("_arrays", "_read", "_pipeline_behind", "_columns", "_reads"):
            state.pop(private, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A checkpoint written before models chose their features read all of them."""
        self.__dict__.update({"features": FEATURE_NAMES, **state})
        self._arrays, self._read, self._pipeline_behind = None, False, False
        self._columns, self._reads = _columns(self.features), frozenset(self.features)

    def __post_init__(self) -> None:
        self._columns, self._reads = _columns(self.features), frozenset(self.features)
        if not self.rolling:
            if self.binary:
                self.rolling = {
                    "roc_auc": metrics.RollingROCAUC(window_size=QUALITY_WINDOW),
                    "log_loss": utils.Rolling(metrics.LogLoss, window_size=QUALITY_WINDOW),
                }
            else:
                self.rolling = {
                    "accuracy": utils.Rolling(metrics.Accuracy, window_size=QUALITY_WINDOW),
                    "macro_f1": utils.Rolling(metrics.MacroF1, window_size=QUALITY_WINDOW),
                }

    @property
    def binary(self) -> bool:
        return self.classes == (False, True)

    def river_pipeline(self) -> compose.Pipeline:
        """The River pipeline with everything learned so far (the arrays' parameters written back)."""
        if self._pipeline_behind and self._arrays is not None:
            self._arrays.write(self.pipeline)
        self._pipeline_behind = False
        return self.pipeline

    def predict_proba_one(self, x: dict[str, float]) -> dict[Any, float]:
        """A probability for every class (uniform before the model has learned anything)."""
        if x.keys() == _FEATURES:
            return self.predict_proba_values(np.array([x[name] for name in FEATURE_NAMES]))
        return self._river_proba(x)

    def predict_proba_values(self, values: np.ndarray) -> dict[Any, float]:
        """:meth:`predict_proba_one` of the features ``values`` (float64, in the order of
        :data:`~models.features.FEATURE_NAMES`)."""
        arrays = self._live()
        if arrays is None:
            return self._river_proba(self._named(values.tolist()))
        return arrays.predict_proba_one(values if self._columns is None else values[self._columns])

    def predict_proba_many(self, matrix: np.ndarray) -> np.ndarray:
        """The probabilities of every row of ``matrix`` (feature vectors as in
        :meth:`predict_proba_values`): ``(rows, len(classes))``, columns in the order of ``classes``."""
        arrays = self._live()
        if arrays is None:
            rows = [self._river_proba(self._named(row)) for row in matrix.tolist()]
            return np.array([[proba[label] for label in self.classes] for proba in rows]).reshape(
                -1, len(self.classes)
            )
        return arrays.predict_proba_many(matrix if self._columns is None else matrix[:, self._columns])

    def _live(self) -> LinearArrays | None:
        if not self._read:
            self._arrays, self._read = read_pipeline(self.pipeline, self.features, self.classes), True
        return self._arrays

    def _named(self, values: Sequence[float]) -> dict[str, float]:
        """The features this model reads, by name, of a vector over all of them."""
        named = dict(zip(FEATURE_NAMES, values, strict=True))
        return named if self._columns is None else {name: named[name] for name in self.features}

    def _own(self, x: dict[str, float]) -> dict[str, float]:
        """``x`` less the models' features this model does not read."""
        if self._columns is None:
            return x
        return {name: value for name, value in x.items() if name in self._reads or name not in _FEATURES}

    def _river_proba(self, x: dict[str, float]) -> dict[Any, float]:
        proba = self.river_pipeline().predict_proba_one(self._own(x))
        if self.binary:
            p = float(proba.get(True, 0.5))
            return {False: 1.0 - p, True: p}
        full = {label: float(proba.get(label, 0.0)) for label in self.classes}
        total = sum(full.values())
        if total <= 0.0:
            return dict.fromkeys(self.classes, 1.0 / len(self.classes))
        return {label: p / total for label, p in full.items()}

    def learn_values(self, values: Sequence[float], y: Any, predicted: dict[Any, float]) -> bool:
        """Score ``predicted`` (made before any label was known) against ``y``, then learn the example
        of features ``values`` (in the order of :data:`~models.features.FEATURE_NAMES`) and ``y``.
        Returns whether the loss stream drifted."""
        loss = self._score(y, predicted)
        arrays = self._live()
        if arrays is None:
            self.pipeline.learn_one(self._named(values), y)
        else:
            vector = np.array(values, dtype=np.float64)
            arrays.learn_one(vector if self._columns is None else vector[self._columns], y)
            self._pipeline_behind = True
        return self._learned(loss)

    def learn_one(self, x: dict[str, float], y: Any, predicted: dict[Any, float]) -> bool:
        """:meth:`learn_values` of the features ``x`` by name (any names: River learns those that
        are not exactly the models' features)."""
        if x.keys() == _FEATURES:
            return self.learn_values([x[name] for name in FEATURE_NAMES], y, predicted)
        loss = self._score(y, predicted)
        self.river_pipeline().learn_one(self._own(x), y)
        self._arrays, self._read = None, False  # read again, with what River learned
        return self._learned(loss)

    def _score(self, y: Any, predicted: dict[Any, float]) -> float:
        """Update the quality metrics with the prediction made before the label; the example's loss."""
        if self.binary:
            p = predicted.get(True, 0.5)
            self.rolling["roc_auc"].update(y, p)
            self.rolling["log_loss"].update(y, p)
            return -math.log(max(PROBABILITY_FLOOR, p if y else 1.0 - p))
        guess = max(predicted, key=predicted.__getitem__)
        for metric in self.rolling.values():
            metric.update(y, guess)
        return float(guess != y)

    def _learned(self, loss: float) -> bool:
        self.examples += 1
        self.detector.update(loss)
        if self.detector.drift_detected:
            self.drifts += 1
            return True
        return False

    def quality(self) -> dict[str, float]:
        """The rolling quality metrics (NaN until they can be computed)."""
        values = {}
        for name, metric in self.rolling.items():
            try:
                values[name] = float(metric.get())
            except (ZeroDivisionError, ValueError):
                values[name] = math.nan
        return values


def churn_model() -> MonitoredClassifier:
    return MonitoredClassifier("churn", churn_pipeline(), (False, True))


def intent_model() -> MonitoredClassifier:
    return MonitoredClassifier("intent", intent_pipeline(), INTENTS, features=INTENT_FEATURES)


def _columns(features: tuple[str, ...]) -> np.ndarray | None:
    """Where ``features`` sit in a vector over all of :data:`~models.features.FEATURE_NAMES`; None for
    all of them."""
    if features == FEATURE_NAMES:
        return None
    return np.array([FEATURE_NAMES.index(name) for name in features], dtype=np.intp)


@dataclass
class PartitionModels:
    """The models of one stream partition: intent and churn learn from its users; the feedback tagger
    and the emotion model of chat messages learn every correction (each goes to every partition), so
    all partitions tag and read emotions alike."""

    intent: MonitoredClassifier = field(default_factory=intent_model)
    churn: MonitoredClassifier = field(default_factory=churn_model)
    tagger: FeedbackTagger = field(default_factory=FeedbackTagger)
    # Checkpoints written: of two copies of a partition's models, the one with more is the later.
    checkpoints: int = 0
    emotion: EmotionModel = field(default_factory=EmotionModel)
    # The keys of the latest emotion corrections learned (EmotionCorrection.key), oldest first.
    emotion_corrections: dict[int, None] = field(default_factory=dict)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A checkpoint written before the tagger or the emotion model existed gets a fresh one."""
        defaults = {"tagger": FeedbackTagger, "emotion": EmotionModel, "emotion_corrections": dict}
        state = {**{name: make() for name, make in defaults.items() if name not in state}, **state}
        self.__dict__.update(state)

    def learn_emotion_correction(self, correction: EmotionCorrection) -> bool:
        """Learn a message's corrected emotion unless it was learned among the last CORRECTION_MEMORY
        (a correction replayed after a restore from a checkpoint); whether it was.

        >>> from streams.contracts.feedback import EmotionCorrection
        >>> models = PartitionModels()
        >>> correction = EmotionCorrection("m1", "it broke again", "frustration", "ana", 1.7e9)
        >>> models.learn_emotion_correction(correction), models.learn_emotion_correction(correction)
        (True, False)
        >>> models.emotion.examples
        1
        """
        key = correction.key
        if key in self.emotion_corrections:
            return False
        self.emotion.learn_one(correction.text, correction.emotion)
        self.emotion_corrections[key] = None
        if len(self.emotion_corrections) > CORRECTION_MEMORY:
            del self.emotion_corrections[next(iter(self.emotion_corrections))]
        return True

    def by_name(self) -> dict[str, MonitoredClassifier]:
        return {self.intent.name: self.intent, self.churn.name: self.churn}
