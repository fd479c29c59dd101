"""Experiment arms and rollout shares: each user's arm, and whether a trigger deployed to a share of users
is live for them, are pure functions of the user and the experiment (or trigger).

A SHA-256 of ``experiment`` and ``user_id`` gives a number in [0, 1); the arms' shares, in the order the
policy lists them, split that interval. No table is needed, every worker agrees, and a user stays in
their arm for as long as the experiment's name and shares stay the same.

>>> from streams.domain.policy import LIVE, PERCENT, Experiment, TriggerPolicy
>>> experiment = Experiment("exp", ("payment_assist",), (("treatment", 0.9), ("holdout", 0.1)))
>>> assign_arm("u1", experiment) == assign_arm("u1", experiment)
True
>>> arms = [assign_arm(f"u{i}", experiment) for i in range(10_000)]
>>> 0.08 < arms.count("holdout") / len(arms) < 0.12
True

A trigger with ``mode = "percent"`` is live for the users whose draw, salted with ``rollout:`` and the
trigger's name (an experiment's name cannot hold ``:``, so no experiment shares the salt), is below its
share; the draw is independent of the experiment arms. Raising the share keeps everyone already in it.

>>> from streams.domain.policy import load_policy
>>> policy = load_policy(text='[triggers.delay_notice]\\nmode = "percent"\\npercent = 10\\n')
>>> live = [rollout_live(f"u{i}", policy.triggers["delay_notice"]) for i in range(10_000)]
>>> 0.09 < sum(live) / len(live) < 0.11
True
>>> rollout_live("u1", policy.triggers["payment_assist"])  # mode live (the default)
True
"""

from __future__ import annotations

import hashlib

from streams.domain.policy import LIVE, PERCENT, Experiment, TriggerPolicy


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


def rollout_live(user_id: str, trigger: TriggerPolicy) -> bool:
    """Whether ``trigger`` acts for ``user_id`` (sends), or only records what it would have done (shadow)."""
    if trigger.mode == LIVE:
        return True
    if trigger.mode == PERCENT:
        return bucket(user_id, f"rollout:{trigger.name}") < trigger.percent / 100.0
    return False
