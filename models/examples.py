"""Examples waiting for their labels: a user's feature snapshots, kept until the outcome is known.

Intent: during a web session, the features after its 1st, 3rd and 8th event (:data:`SNAPSHOT_AT`)
are kept with what the intent model predicted for them; the session's outcome labels them all: an
order (``purchase``), a support contact (``need_help``), or its end without either (``browse``, or
``leave`` with a cart or a checkout left behind). Each snapshot holds only the events before the one
that told the label, so the label never leaks into its own features.

Churn: the features after the user's latest activity (any clickstream event), with the churn
probability predicted then. It is labelled churned when ``churn_horizon`` passes without activity (a
timer) or the user cancels a subscription, and not churned when they come back in a later session
within the horizon; activity within the same session replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SNAPSHOT_AT = (1, 3, 8)  # session event counts after which an intent example is kept


@dataclass(slots=True)
class Snapshot:
    x: dict[str, float]  # the features, without the zeros
    predicted: dict[str, float]  # class -> probability, predicted when the snapshot was taken
    taken_at: float  # event time
    session: int = 0  # the user's session number then

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        return cls(**data)


@dataclass(slots=True)
class PendingExamples:
    intent: list[Snapshot] = field(default_factory=list)
    churn: Snapshot | None = None
    session_ends_at: float | None = None  # when the current session ends unless the user goes on

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PendingExamples:
        churn = data.get("churn")
        return cls(
            [Snapshot.from_dict(item) for item in data.get("intent", [])],
            None if churn is None else Snapshot.from_dict(churn),
            data.get("session_ends_at"),
        )

    def deadline(self, churn_horizon: float) -> float | None:
        """When a label falls due by time alone: the session's end, or the churn horizon."""
        deadlines = []
        if self.intent and self.session_ends_at is not None:
            deadlines.append(self.session_ends_at)
        if self.churn is not None:
            deadlines.append(self.churn.taken_at + churn_horizon)
        return min(deadlines, default=None)
