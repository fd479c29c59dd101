"""A user's published scores, and the 0-100 customer health score.

``health = 100 * (1 - churn)`` for a user who never gave feedback, else
``health = 100 * (0.7 * (1 - churn) + 0.3 * satisfaction)``, rounded, where ``churn`` is the churn
model's probability and ``satisfaction`` is the user's feedback level (an EWMA of their scores scaled
to 0-1) plus its trend (a fast EWMA minus a slow one), clamped to 0-1. Churn risk carries most of the
weight because it is what the score is for (who needs attention); a falling satisfaction lowers it
before the churn model has seen the user drift away.

>>> health_score(churn=0.2, satisfaction=None)
80
>>> health_score(churn=0.2, satisfaction=0.25)  # unhappy: 0.7 * 0.8 + 0.3 * 0.25
64
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.features import UserFeatures
from streams.contracts.time import iso_time

SCORES_SCHEMA = 1

CHURN_WEIGHT = 0.7


def satisfaction_of(features: UserFeatures) -> float | None:
    """Feedback level plus trend, 0-1; None for a user who never gave feedback."""
    if features.satisfaction.n == 0:
        return None
    return min(1.0, max(0.0, features.satisfaction.mean + features.satisfaction_trend()))


def health_score(churn: float, satisfaction: float | None) -> int:
    if satisfaction is None:
        return round(100 * (1.0 - churn))
    return round(100 * (CHURN_WEIGHT * (1.0 - churn) + (1.0 - CHURN_WEIGHT) * satisfaction))


@dataclass
class Scores:
    """What the models say of a user now: intent distribution, churn probability, health."""

    intent: dict[str, float]
    churn: float
    health: int
    satisfaction: float | None
    scored_at: float  # event time
    event_id: str  # the event scored; "" for a timer tick (with scored_at, the score's identity)
    intent_examples: int  # how much the models behind these scores had learned
    churn_examples: int

    def moved(self, before: Scores | None, delta: float, interval: float = 0.0) -> bool:
        """Whether to publish these scores: they differ enough from ``before`` (the last published),
        at least ``interval`` (event time) after it."""
        if before is None:
            return True
        if self.scored_at - before.scored_at < interval:
            return False
        if before.satisfaction != self.satisfaction:
            return True
        if abs(self.churn - before.churn) >= delta:
            return True
        return any(abs(p - before.intent.get(label, 0.0)) >= delta for label, p in self.intent.items())

    def to_wire(self, user_id: str) -> dict[str, Any]:
        """The documented JSON contract of the ``user_scores`` topic (schema 1)."""
        return {
            "schema": SCORES_SCHEMA,
            "user_id": user_id,
            "scored_at": iso_time(self.scored_at),
            "event_id": self.event_id,
            "intent": self.intent,
            "churn": self.churn,
            "health": self.health,
            "satisfaction": self.satisfaction,
            "intent_examples": self.intent_examples,
            "churn_examples": self.churn_examples,
        }
