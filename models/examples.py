"""Examples waiting for their labels: a user's feature snapshots, kept until the outcome is known.

Intent: during a web session, the features after its 1st, 3rd and 8th event (:data:`SNAPSHOT_AT`)
are kept with what the intent model predicted for them; the session's outcome labels them all: an
order (``purchase``), a support contact (``need_help``), or its end without either (``browse``, or
``leave`` with a cart or a checkout left behind). Each snapshot holds only the events before the one
that told the label, so the label never leaks into its own features.

Churn: the features after the user's latest activity (any clickstream event), with the churn
probability predicted then; the user's other events (a delivery gone wrong) update its features, not
its time. It is labelled churned when ``churn_horizon`` passes without activity (a timer) or the user
cancels a subscription, and not churned when they come back in a later session within the horizon;
activity within the same session replaces it. An example known not churned waits in ``stayed`` until
the horizon has passed since it was taken, and is learned then, as a churned one is: learned as soon
as the user came back, the examples of the last horizon would all be of users who stayed, and the
model would learn that what changes with time (tenure, visits so far) tells staying from churning.

A snapshot's features are a list in the order of :data:`~models.features.FEATURE_NAMES`. Records
written when they were a dict of the features that were not 0 read back as that list:

>>> from models.features import FEATURE_NAMES
>>> old = Snapshot.from_dict({"x": {"s_events": 1.5}, "predicted": {"churned": 0.5}, "taken_at": 1.0})
>>> len(old.x) == len(FEATURE_NAMES), old.x[FEATURE_NAMES.index("s_events")], sum(old.x)
(True, 1.5, 1.5)

A pending snapshot written by a version with another list of features is dropped when the user's
state is read (its example is not learned), so the state itself still loads:

>>> record = {"x": [0.0] * 3, "predicted": {"churned": 0.5}, "taken_at": 1.0}
>>> PendingExamples.from_dict({"intent": [record], "churn": record})
PendingExamples(intent=[], churn=None, session_ends_at=None, stayed=[])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from models.features import FEATURE_NAMES

_FEATURES = frozenset(FEATURE_NAMES)
SNAPSHOT_AT = (1, 3, 8)  # session event counts after which an intent example is kept
# Examples known not churned held per user; past this, the oldest is learned before its horizon.
MAX_STAYED = 8


class OtherFeatures(ValueError):
    """A snapshot's features are a list of another length: another version's features."""


@dataclass
class Snapshot:
    x: list[float]  # the features, in the order of FEATURE_NAMES
    predicted: dict[str, float]  # class -> probability, predicted when the snapshot was taken
    taken_at: float  # event time
    session: int = 0  # the user's session number then

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        """A snapshot from its JSON; features of another count, or named but not the models', are a
        ValueError (a list of the wrong length would be learned against the wrong names)."""
        values = dict(data)
        x = values.get("x")
        if isinstance(x, dict):  # written before features were kept as a list: the non-zero ones by name
            unknown = x.keys() - _FEATURES
            if unknown:
                raise ValueError(f"snapshot features not the models': {sorted(map(str, unknown))[:3]}")
            values["x"] = [x.get(name, 0.0) for name in FEATURE_NAMES]
        elif isinstance(x, list) and len(x) != len(FEATURE_NAMES):
            raise OtherFeatures(f"snapshot of {len(x)} features, not {len(FEATURE_NAMES)}")
        return cls(**values)

    def features(self) -> dict[str, float]:
        """The features by name."""
        return dict(zip(FEATURE_NAMES, self.x, strict=True))


@dataclass
class PendingExamples:
    intent: list[Snapshot] = field(default_factory=list)
    churn: Snapshot | None = None
    session_ends_at: float | None = None  # when the current session ends unless the user goes on
    # Churn examples known not churned, oldest first, each learned once the horizon has passed since it
    # was taken (at most MAX_STAYED).
    stayed: list[Snapshot] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PendingExamples:
        churn = _current(data.get("churn"))
        intent = [snapshot for item in data.get("intent", []) if (snapshot := _current(item)) is not None]
        stayed = [snapshot for item in data.get("stayed", []) if (snapshot := _current(item)) is not None]
        return cls(intent, churn, data.get("session_ends_at"), stayed)

    def deadline(self, churn_horizon: float) -> float | None:
        """When a label falls due by time alone: the session's end, or the churn horizon."""
        deadlines = []
        if self.intent and self.session_ends_at is not None:
            deadlines.append(self.session_ends_at)
        if self.churn is not None:
            deadlines.append(self.churn.taken_at + churn_horizon)
        if self.stayed:
            deadlines.append(self.stayed[0].taken_at + churn_horizon)
        return min(deadlines, default=None)


def _current(data: dict[str, Any] | None) -> Snapshot | None:
    """The snapshot of ``data``; None for none, or for one of another version's features."""
    if data is None:
        return None
    try:
        return Snapshot.from_dict(data)
    except OtherFeatures:
        return None
