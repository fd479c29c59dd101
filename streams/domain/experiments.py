"""Experiment arms: each user's arm is a pure function of the user and the experiment.

A SHA-256 of ``experiment`` and ``user_id`` gives a number in [0, 1); the arms' shares, in the order the
policy lists them, split that interval. No table is needed, every worker agrees, and a user stays in
their arm for as long as the experiment's name and shares stay the same.

>>> from streams.domain.policy import Experiment
>>> experiment = Experiment("exp", ("payment_assist",), (("treatment", 0.9), ("holdout", 0.1)))
>>> assign_arm("u1", experiment) == assign_arm("u1", experiment)
True
>>> arms = [assign_arm(f"u{i}", experiment) for i in range(10_000)]
>>> 0.08 < arms.count("holdout") / len(arms) < 0.12
True
"""

from __future__ import annotations

import hashlib

from streams.domain.policy import Experiment


def bucket(user_id: str, experiment: str) -> float:
    """The user's uniform draw in [0, 1) for ``experiment``."""
    digest = hashlib.sha256(f"{experiment}\x1f{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_arm(user_id: str, experiment: Experiment) -> str:
    draw = bucket(user_id, experiment.name)
    upper = 0.0
    for arm, share in experiment.arms:
        upper += share
        if draw < upper:
            return arm
    return experiment.arms[-1][0]  # shares sum to 1 up to rounding
