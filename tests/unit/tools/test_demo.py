"""The demo's pure parts: its figures against the ground truth (ROC AUC, scores per latent type, the
model-driven triggers), its replayed history's schedule and size, and how it keeps the history's
decisions apart from the live ones. The demo itself runs in tests/integration/test_observability.py."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import orjson
import pytest

from streams.contracts.settings import Settings
from streams.contracts.time import DAY
from streams.domain.policy import load_policy
from streams.tools.demo import DEMO_POLICY, DEMO_USERS, HISTORY_DAYS, _Tally, demo_contacts, demo_profile
from streams.tools.demo_truth import model_triggers, roc_auc, scores_by_type, trigger_truth
from streams.tools.traffic.generator import TrafficGenerator
from streams.tools.traffic.history import HistoryPlan, plan_history, replay_history
from streams.tools.traffic.profile import TrafficProfile
from streams.tools.traffic.schedule import Outgoing

END = 1_790_000_000.0


def pairwise_auc(scores: list[float], positive: list[bool]) -> float:
    """The definition: over every (positive, negative) pair, 1 if the positive scores higher, 1/2 on a tie."""
    pairs = [
        (a > b) + 0.5 * (a == b)
        for a, p in zip(scores, positive, strict=True)
        if p
        for b, q in zip(scores, positive, strict=True)
        if not q
    ]
    return sum(pairs) / len(pairs)


def test_roc_auc_is_the_share_of_pairs_ranked_right_ties_counting_half() -> None:
    rng = random.Random(4)
    for _ in range(300):
        n = rng.randint(2, 40)
        scores = [round(rng.random(), 1) for _ in range(n)]  # rounded: many ties
        positive = [rng.random() < 0.3 for _ in range(n)]
        if any(positive) and not all(positive):
            assert roc_auc(scores, positive) == pytest.approx(pairwise_auc(scores, positive), abs=1e-12)
        else:
            assert roc_auc(scores, positive) is None
    assert roc_auc([0.9, 0.8], [True, False]) == 1.0 and roc_auc([0.1, 0.8], [True, False]) == 0.0
    with pytest.raises(ValueError):
        roc_auc([0.1], [True, False])


def test_scores_by_type_averages_each_score_over_the_users_of_each_type() -> None:
    rows = [
        ("help_seeker", {"need_help": 0.8, "churn": 0.1}),
        ("help_seeker", {"need_help": 0.6, "churn": 0.3}),
        ("at_risk", {"need_help": 0.1, "churn": 0.9}),
        (None, {"need_help": 0.5, "churn": 0.5}),
    ]
    summary = {s.user_type: s for s in scores_by_type(rows)}
    assert list(summary) == ["at_risk", "help_seeker", "unknown"]
    assert summary["help_seeker"].users == 2
    assert summary["help_seeker"].means == pytest.approx({"need_help": 0.7, "churn": 0.2})
    assert summary["at_risk"].means == {"need_help": 0.1, "churn": 0.9}


def test_model_driven_triggers_come_from_the_policys_signals() -> None:
    """A trigger of a model's signal shows up by itself, under its own name; others do not."""
    policy = load_policy(
        text='[triggers.winback]\nsignal = "churn_risk"\nthreshold = 0.5\naction = "win_back"\n'
        'channels = ["email"]\npriority = 10\ntemplate = "winback_v1"\n'
        "[triggers.proactive_help]\nenabled = false\n"
    )
    names = [t.name for t in model_triggers(policy)]
    assert names == ["escalate_to_human", "recommendation", "retention_offer", "winback"]
    truth = trigger_truth(policy.triggers["winback"], [("at_risk", True), ("buyer", False), (None, False)])
    assert (truth.fired, truth.sent, truth.meant_for) == (3, 1, ("at_risk",))
    assert truth.precision == pytest.approx(1 / 3) and truth.by_type["unknown"] == 1
    assert trigger_truth(policy.triggers["winback"], []).precision is None


def decision(trigger: str, user: str, event_time: str, kind: str = "emitted", iid: str = "i1") -> dict:
    return {
        "trigger": trigger,
        "intervention_id": iid,
        "user_id": user,
        "decision": kind,
        "reason": "" if kind == "emitted" else "cooldown",
        "event_time": event_time,
    }


def test_the_tally_keeps_the_historys_decisions_apart_from_the_live_ones() -> None:
    live_from = 1_795_492_173.0  # 2026-11-24T03:49:33Z
    tally = _Tally(30.0, live_from)
    tally.decision(decision("proactive_help", "u1", "2026-11-20T10:00:00.000Z", iid="old"))
    tally.decision(decision("proactive_help", "u2", "2026-11-24T03:49:34.000Z", iid="new"))
    tally.decision(decision("proactive_help", "u3", "2026-11-24T03:49:35.000Z", "suppressed", iid="held"))
    assert tally.history == {"proactive_help": {"old": "sent"}}
    assert tally.decided["proactive_help"] == {"new": "sent", "held": "cooldown"}
    assert tally.users == {"old": "u1", "new": "u2", "held": "u3"}


def session_of(message: Outgoing) -> str | None:
    """The session id of a clickstream message; None for others and for the deliberately broken ones."""
    try:
        value = orjson.loads(message.value)
    except orjson.JSONDecodeError:
        return None
    return value.get("session_id") if message.topic == "clickstream" and isinstance(value, dict) else None


class FakeProducer:
    """Takes what replay_history sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.flushed = False

    async def send(self, topic: str, value: bytes, key: bytes) -> None:
        self.sent.append((topic, value))

    async def flush(self) -> None:
        self.flushed = True


def test_the_history_is_in_the_past_of_the_plan_and_the_live_part_comes_after() -> None:
    plan = plan_history(days=3, users=300, end=END)
    assert plan == HistoryPlan(END - 3 * DAY, END, 300 / (2 * DAY))
    policy = load_policy(text=DEMO_POLICY)
    profile = demo_profile(plan.sessions_per_second, policy, 3.0)
    profile.users = 300
    generator = TrafficGenerator(profile, seed=3, start=plan.start)
    producer, steps = FakeProducer(), []
    asyncio.run(
        replay_history(
            producer, generator, Settings.from_env({}), plan, lambda t, sent: steps.append((t, sent))
        )
    )
    history = [m for _, sent in steps for m in sent]
    assert producer.flushed and len(producer.sent) == len(history)
    assert steps[-1][0] == plan.end and [t for t, _ in steps] == sorted(t for t, _ in steps)
    times = [m.event_time for m in history]
    assert times == sorted(times) and times[-1] <= plan.end
    # Support questions begin before the history, for the 8 days hot-issue detection needs; the rest in it.
    assert min(m.event_time for m in history if m.topic != "support") >= plan.start
    assert min(times) >= plan.start - profile.support_history_seconds
    assert abs(generator.stats.sessions - plan.sessions) < 4 * plan.sessions**0.5  # Poisson
    sessions = {session_of(m) for m in history}

    live_start = plan.end + 40.0  # the live part starts once the worker has read the history
    generator.resume(live_start, sessions_per_second=20.0)
    live = generator.due(live_start + 30.0)
    assert min(m.event_time for m in live) > plan.end
    new = [m for m in live if session_of(m) not in sessions | {None}]
    assert new and min(m.event_time for m in new) >= live_start
    assert Counter(m.topic for m in live)["clickstream"] > 300  # the live rate, not the history's


def test_the_default_history_is_small_enough_to_replay_in_about_a_minute() -> None:
    """The demo's worker spends some 1.3 ms of CPU a message (models, sink and timer ticks included):
    its history, with the support contacts of the load forecast (about 4,400), must stay near 40,000
    messages, and give each of the 4 partitions' models well past min_examples (500) to learn: a
    session gives the intent model 1 to 3 examples."""
    plan = plan_history(HISTORY_DAYS, DEMO_USERS, END)
    assert plan is not None
    policy = load_policy(text=DEMO_POLICY)
    profile = demo_profile(plan.sessions_per_second, policy, HISTORY_DAYS)
    profile.contacts = demo_contacts(plan.end)  # as the demo's (run_demo)
    generator = TrafficGenerator(profile, seed=7, start=plan.start)
    clock, messages = plan.start, 0
    while clock < plan.end:
        clock = min(plan.end, clock + 6 * 3600)
        messages += len(generator.due(clock))
    assert 20_000 < messages < 45_000
    assert generator.stats.sessions > 2 * 4 * 500
    assert len(generator.seen_users()) > 0.95 * DEMO_USERS  # nearly every user has a history
    assert 2 * policy.models.churn_horizon <= HISTORY_DAYS * DAY  # the horizon passes twice


def test_the_demo_profile_plants_hesitating_carts_and_fast_drifting_at_risk_users() -> None:
    profile = demo_profile(20.0, load_policy(text=DEMO_POLICY), HISTORY_DAYS)
    hesitation = load_policy(text=DEMO_POLICY).triggers["recommendation"].params["hesitation"]
    assert profile.cart_hesitation_share > 0 and profile.cart_hesitation_seconds[0] > hesitation
    assert profile.behaviour["at_risk"].session_factor < TrafficProfile().behaviour["at_risk"].session_factor
