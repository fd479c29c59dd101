"""The demo's model figures against the traffic's ground truth (its users' latent types): pure functions
over what the worker published, so that ``forewarn demo`` prints them and the tests check them.

* :func:`roc_auc`: the ROC AUC of a score against a yes/no truth, by ranks (Mann-Whitney U), ties
  counted half;
* :func:`scores_by_type`: mean scores per latent user type;
* :func:`model_triggers` and :func:`trigger_truth`: the model-driven triggers of a policy, and per
  trigger how many fired and the share that went to the latent type it is meant for.

>>> roc_auc([0.9, 0.8, 0.3, 0.1], [True, False, True, False])
0.75
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from streams.domain.policy import MODEL_SIGNALS, Policy, TriggerPolicy

# The latent types (streams.tools.traffic.profile.USER_TYPES) each model-driven signal is meant to find:
# the chats of help-seekers and of users at risk are the ones planted with anger and frustration.
MEANT_FOR = {
    "churn_risk": ("at_risk",),
    "help_intent": ("help_seeker",),
    "purchase_hesitation": ("buyer",),
    "negative_emotion": ("help_seeker", "at_risk"),
}


def roc_auc(scores: Sequence[float], positive: Sequence[bool]) -> float | None:
    """The chance that a positive scores above a negative (ties count half): the area under the ROC
    curve, from the ranks of the scores. None without both positives and negatives.

    >>> roc_auc([0.2, 0.2, 0.2], [True, False, False]), roc_auc([0.1, 0.2], [True, True])
    (0.5, None)
    >>> roc_auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
    0.75
    """
    if len(scores) != len(positive):
        raise ValueError("scores and positive differ in length")
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):  # tied scores share the mean of their ranks (1-based)
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    positives = sum(1 for p in positive if p)
    negatives = len(positive) - positives
    if positives == 0 or negatives == 0:
        return None
    rank_sum = sum(rank for rank, p in zip(ranks, positive, strict=True) if p)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


@dataclass(frozen=True, slots=True)
class TypeScores:
    """The users of one latent type and the mean of each score over them."""

    user_type: str
    users: int
    means: dict[str, float]


def scores_by_type(rows: Iterable[tuple[str | None, dict[str, float]]]) -> list[TypeScores]:
    """Mean scores per latent type, by type name; ``rows`` are (the user's type, None if unknown, and
    their scores by name).

    >>> [s.means for s in scores_by_type([("buyer", {"churn": 0.1}), ("buyer", {"churn": 0.3}),
    ...                                   (None, {"churn": 0.5})])]
    [{'churn': 0.2}, {'churn': 0.5}]
    """
    grouped: dict[str, list[dict[str, float]]] = {}
    for user_type, scores in rows:
        grouped.setdefault(user_type or "unknown", []).append(scores)
    return [
        TypeScores(
            kind, len(members), {name: sum(m[name] for m in members) / len(members) for name in members[0]}
        )
        for kind, members in sorted(grouped.items())
    ]


def model_triggers(policy: Policy) -> list[TriggerPolicy]:
    """The enabled triggers of ``policy`` driven by a model's output
    (:data:`streams.domain.policy.MODEL_SIGNALS`), by name.

    >>> from streams.domain.policy import load_policy
    >>> [t.name for t in model_triggers(load_policy())]
    ['escalate_to_human', 'proactive_help', 'recommendation', 'retention_offer']
    """
    return sorted(
        (t for t in policy.triggers.values() if t.signal in MODEL_SIGNALS),
        key=lambda t: t.name,
    )


@dataclass(frozen=True, slots=True)
class TriggerTruth:
    """What one trigger did: ``fired`` interventions (decided, sent or held back), ``sent`` of them,
    their users by latent type, and the types it is meant for (empty if the demo does not know)."""

    trigger: str
    fired: int
    sent: int
    by_type: Counter[str]
    meant_for: tuple[str, ...]

    @property
    def precision(self) -> float | None:
        """The share of the fired interventions that went to a user of a type meant for."""
        if not self.meant_for or not self.fired:
            return None
        return sum(self.by_type[kind] for kind in self.meant_for) / self.fired


def trigger_truth(trigger: TriggerPolicy, decided: Iterable[tuple[str | None, bool]]) -> TriggerTruth:
    """``decided``: one (the user's latent type, whether it was sent) per intervention of ``trigger``.

    >>> from streams.domain.policy import load_policy
    >>> help_ = load_policy().triggers["proactive_help"]
    >>> truth = trigger_truth(help_, [("help_seeker", True), ("help_seeker", False), ("buyer", True)])
    >>> truth.fired, truth.sent, truth.meant_for, round(truth.precision, 2)
    (3, 2, ('help_seeker',), 0.67)
    """
    by_type: Counter[str] = Counter()
    sent = 0
    for user_type, was_sent in decided:
        by_type[user_type or "unknown"] += 1
        sent += was_sent
    return TriggerTruth(trigger.name, by_type.total(), sent, by_type, MEANT_FOR.get(trigger.signal, ()))
