"""The contact policy at its edges: caps, cooldowns, quiet hours across time zones, deferral, preferences
arriving late, priority, experiment arms, and the offer rule."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from streams.contracts.events import OUTCOMES, PREFERENCES, Event
from streams.contracts.interventions import Intervention
from streams.domain.contact import decide, quiet_until, release_deferred
from streams.domain.experiments import assign_arm, bucket
from streams.domain.policy import load_policy
from streams.domain.state import UserState, apply_event, record_contact
from streams.domain.triggers import check_payment_dwell, offer_for

MIDNIGHT = 1_764_028_800.0  # 2025-11-25T00:00:00Z
NOON = MIDNIGHT + 12 * 3600
H = 3600.0
POLICY = load_policy(
    text="""experiments = []

[contact]
timezone = "UTC"
quiet_hours = ["21:00", "08:00"]

[triggers.delay_notice]
cooldown = "0s"
"""
)


def candidate(trigger: str = "delay_notice", ident: str = "i", at: float = NOON) -> Intervention:
    action = POLICY.triggers[trigger].action if trigger in POLICY.triggers else "x"
    return Intervention(f"{trigger}-{ident}", trigger, action, "u1", at, "why", "e1")


def one(state: UserState, intervention: Intervention, now: float, policy=POLICY) -> tuple[str, str, str]:
    [decision] = decide([intervention], state, policy, now)
    return decision.decision, decision.reason, decision.intervention.channel


def preferences(at: float, **fields: object) -> Event:
    return Event(f"p{at}", "preferences_updated", PREFERENCES, at, "u1", dict(fields))


def utc(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()


# --- frequency caps and cooldowns


def test_cap_exactly_reached_then_the_next_channel_then_nothing() -> None:
    state = UserState("u1")
    for i in range(3):  # chat: 3 per 24 h
        assert one(state, candidate(ident=str(i)), NOON + i) == ("emitted", "", "chat")
    assert one(state, candidate(ident="3"), NOON + 3) == ("emitted", "", "email")  # chat is full
    assert one(state, candidate(ident="4"), NOON + 4) == ("emitted", "", "email")
    [decision] = decide([candidate(ident="5")], state, POLICY, NOON + 5)  # email: 2 per 7 days
    assert (decision.decision, decision.reason) == ("suppressed", "frequency_cap")
    assert decision.detail == "chat: 3 in the last 86400s, cap 3; email: 2 in the last 604800s, cap 2"
    # The window is (now - 24 h, now]: a contact exactly 24 h old no longer counts.
    assert one(state, candidate(ident="6"), NOON + 24 * H - 0.001)[:2] == ("suppressed", "frequency_cap")
    assert one(state, candidate(ident="7"), NOON + 24 * H) == ("emitted", "", "chat")


def test_cooldown_edge() -> None:
    state = UserState("u1")
    assert one(state, candidate("payment_assist", "1"), NOON)[0] == "emitted"
    assert one(state, candidate("payment_assist", "2"), NOON + H - 0.001)[:2] == ("suppressed", "cooldown")
    assert one(state, candidate("payment_assist", "3"), NOON + H)[0] == "emitted"  # cooldown 1 h


# --- quiet hours


@pytest.mark.parametrize(
    ("now", "zone", "until"),
    [
        (utc(2025, 11, 25, 20, 59, 59), "UTC", None),
        (utc(2025, 11, 25, 21, 0, 0), "UTC", utc(2025, 11, 26, 8)),
        (utc(2025, 11, 26, 7, 59, 59), "UTC", utc(2025, 11, 26, 8)),
        (utc(2025, 11, 26, 8, 0, 0), "UTC", None),
        # One instant, 22:00 UTC: 23:00 in Berlin, 07:00 next morning in Tokyo, 17:00 in New York.
        (utc(2025, 11, 25, 22), "Europe/Berlin", utc(2025, 11, 26, 7)),
        (utc(2025, 11, 25, 22), "Asia/Tokyo", utc(2025, 11, 25, 23)),
        (utc(2025, 11, 25, 22), "America/New_York", None),
        # The night Berlin moves to summer time (02:00 -> 03:00): the quiet hours end at 08:00 CEST.
        (utc(2026, 3, 28, 22), "Europe/Berlin", utc(2026, 3, 29, 6)),
    ],
)
def test_quiet_hours_boundaries_across_time_zones(now: float, zone: str, until: float | None) -> None:
    assert quiet_until(now, zone, (21 * 3600, 8 * 3600)) == until


def test_a_window_within_one_day() -> None:
    lunch = (12 * 3600, 13 * 3600)
    assert quiet_until(NOON - 1, "UTC", lunch) is None
    assert quiet_until(NOON, "UTC", lunch) == NOON + H
    assert quiet_until(NOON + H, "UTC", lunch) is None


def test_quiet_hours_defer_suppress_or_ignore_as_the_trigger_says() -> None:
    night = utc(2025, 11, 25, 22)
    state = UserState("u1")
    [deferred] = decide([candidate("delay_notice", "1", night)], state, POLICY, night)
    assert (deferred.decision, deferred.reason, deferred.release_at) == (
        "deferred",
        "quiet_hours",
        utc(2025, 11, 26, 8),
    )
    assert [d.release_at for d in state.deferred] == [utc(2025, 11, 26, 8)]
    assert one(state, candidate("payment_assist", "2", night), night)[0] == "emitted"  # "ignore"
    strict = load_policy(text='experiments = []\n[triggers.delay_notice]\nquiet_hours = "suppress"\n')
    assert one(UserState("u1"), candidate("delay_notice", "3", night), night, strict)[:2] == (
        "suppressed",
        "quiet_hours",
    )
    tokyo = UserState("u1")
    apply_event(tokyo, preferences(night - 60, timezone="Asia/Tokyo"))
    [decision] = decide([candidate("delay_notice", "4", night)], tokyo, POLICY, night)
    assert decision.release_at == utc(2025, 11, 25, 23)  # 08:00 in Tokyo


def test_a_deferred_intervention_is_decided_again_when_the_quiet_hours_end() -> None:
    night, morning = utc(2025, 11, 25, 22), utc(2025, 11, 26, 8)
    state = UserState("u1")
    decide([candidate("delay_notice", "1", night)], state, POLICY, night)
    assert release_deferred(state, morning - 0.001) == [] and len(state.deferred) == 1
    [released] = release_deferred(state, morning)
    assert released.intervention_id == "delay_notice-1" and state.deferred == []
    assert one(state, released, morning) == ("emitted", "", "chat")


def test_preferences_changed_while_deferred_are_obeyed_at_release() -> None:
    night, morning = utc(2025, 11, 25, 22), utc(2025, 11, 26, 8)
    state = UserState("u1")
    decide([candidate("delay_notice", "1", night)], state, POLICY, night)
    apply_event(state, preferences(night + H, opt_out=True))
    [released] = release_deferred(state, morning)
    assert one(state, released, morning)[:2] == ("suppressed", "opted_out")


# --- preferences


def test_preferences_latest_wins_and_partial_updates_keep_the_rest() -> None:
    state = UserState("u1")
    apply_event(state, preferences(100.0, opt_out=True, channels={"email": False}))
    apply_event(state, preferences(50.0, opt_out=False))  # older than what is applied: ignored
    assert state.preferences.opt_out is True
    apply_event(state, preferences(200.0, channels={"chat": False}))
    assert (state.preferences.opt_out, state.preferences.channels) == (True, {"email": False, "chat": False})
    apply_event(state, preferences(300.0, opt_out=False))
    assert one(state, candidate(), NOON)[:2] == ("suppressed", "channel_opted_out")


def test_a_preference_arriving_after_a_decision_does_not_undo_it_but_governs_the_next() -> None:
    state = UserState("u1")
    [sent] = decide([candidate(ident="1")], state, POLICY, NOON)
    apply_event(state, preferences(NOON - 60, channels={"chat": False}))  # sent before, arrived after
    assert (sent.decision, sent.intervention.channel) == ("emitted", "chat")
    assert state.contacts == {"chat": [NOON]}  # still counts towards the chat cap
    assert one(state, candidate(ident="2"), NOON + 1) == ("emitted", "", "email")


def test_channel_preferences_choose_the_channel() -> None:
    state = UserState("u1")
    apply_event(state, preferences(1.0, channels={"chat": False}))
    assert one(state, candidate(), NOON) == ("emitted", "", "email")
    apply_event(state, preferences(2.0, channels={"email": False}))
    [decision] = decide([candidate(ident="2")], state, POLICY, NOON + 1)
    assert (decision.reason, decision.detail) == ("channel_opted_out", "the user turned off chat, email")


# --- priority and experiments


def test_one_contact_per_round_highest_priority_first() -> None:
    state = UserState("u1")
    decisions = decide([candidate("payment_assist"), candidate("delay_notice")], state, POLICY, NOON)
    assert [(d.intervention.trigger, d.decision, d.reason, d.priority) for d in decisions] == [
        ("delay_notice", "emitted", "", 90),
        ("payment_assist", "suppressed", "superseded", 80),
    ]
    assert decisions[1].detail == "delay_notice (higher priority) was sent in the same round"


def test_arms_are_stable_recorded_on_every_decision_and_the_holdout_gets_nothing() -> None:
    policy = load_policy(
        text='[[experiments]]\nname = "half"\ntriggers = ["delay_notice"]\n'
        "arms = { treatment = 0.5, holdout = 0.5 }\n[contact]\nquiet_hours = []\n"
    )
    [experiment] = policy.experiments
    outcomes = {}
    for index in range(2000):
        state = UserState(f"user-{index}")
        if index % 10 == 0:
            state.preferences.opt_out = True
        [decision] = decide([candidate(ident=str(index))], state, policy, NOON)
        arm = decision.intervention.arm
        assert decision.intervention.experiment == "half" and arm == assign_arm(f"user-{index}", experiment)
        if state.preferences.opt_out:
            assert decision.reason == "opted_out"  # the arm is recorded all the same
        elif arm == "holdout":
            assert (decision.decision, decision.reason) == ("suppressed", "holdout")
        else:
            assert decision.decision == "emitted"
        outcomes[index] = arm
    assert 0.45 < list(outcomes.values()).count("holdout") / len(outcomes) < 0.55
    # Another experiment draws independently of this one.
    same = sum(
        (bucket(f"user-{i}", "half") < 0.5) == (bucket(f"user-{i}", "other") < 0.5) for i in range(2000)
    )
    assert 0.45 < same / 2000 < 0.55


def test_a_trigger_removed_from_the_policy_is_suppressed_not_sent() -> None:
    decision = decide([candidate("retired_trigger")], UserState("u1"), POLICY, NOON)[0]
    assert (decision.decision, decision.reason) == ("suppressed", "disabled")


# --- the offer rule


def payment_visit(state: UserState, at: float) -> list[Intervention]:
    apply_event(state, Event(f"pay{at}", "payment_page_view", "clickstream", at, "u1", {"session_id": "s"}))
    return check_payment_dwell(state, at + 120.0, POLICY)


def test_no_discount_for_users_who_buy_anyway() -> None:
    [offer] = payment_visit(UserState("u1"), NOON)
    assert offer.offer is None
    assert offer.evidence["offer_reason"] == "no coupon use or price sensitivity in the history"


def test_discount_for_coupon_users() -> None:
    state = UserState("u1")
    apply_event(
        state,
        Event("o1", "order_completed", "clickstream", NOON - H, "u1", {"order_id": "o1", "coupon_code": "X"}),
    )
    [offer] = payment_visit(state, NOON)
    assert (
        offer.offer == {"kind": "discount", "percent": 10.0}
        and offer.evidence["offer_reason"] == "coupon user"
    )


def test_discount_for_users_who_accepted_one_of_ours() -> None:
    state = UserState("u1")
    earlier = Intervention(
        "iid-1", "payment_assist", "x", "u1", NOON - H, "r", "e", offer={"kind": "discount"}
    )
    earlier.channel = "chat"
    record_contact(state, earlier, NOON - H)
    uuid = "0b8a6128-0b8a-5ee9-bfab-18e8f49f0582"
    apply_event(state, Event("oc", "accepted", OUTCOMES, NOON - 1, "u1", {"intervention_id": uuid}))
    assert state.accepted_discounts == 0  # not one of ours
    state.offers_sent[uuid] = "discount"
    apply_event(state, Event("oc2", "accepted", OUTCOMES, NOON - 1, "u1", {"intervention_id": uuid}))
    assert state.accepted_discounts == 1
    assert offer_for(state, POLICY.triggers["payment_assist"].offer, NOON)[1] == "coupon user"


def test_discount_for_price_sensitive_users_within_90_days() -> None:
    rule = POLICY.triggers["payment_assist"].offer
    state = UserState("u1", abandoned_payments=[NOON - 91 * 86400, NOON - 86400])
    assert offer_for(state, rule, NOON)[0] is None  # one of the two is too old
    state.abandoned_payments.append(NOON - 60)
    assert offer_for(state, rule, NOON) == ({"kind": "discount", "percent": 10.0}, "price sensitive")


def test_leaving_the_payment_page_unpaid_counts_paying_does_not() -> None:
    state = UserState("u1")
    click = "clickstream"
    apply_event(state, Event("a", "payment_page_view", click, 100.0, "u1", {"session_id": "s"}))
    apply_event(state, Event("b", "page_view", click, 110.0, "u1", {"session_id": "s", "page": "/"}))
    apply_event(state, Event("c", "payment_page_view", click, 120.0, "u1", {"session_id": "s"}))
    apply_event(
        state, Event("d", "payment_completed", click, 130.0, "u1", {"session_id": "s", "order_id": "o"})
    )
    apply_event(state, Event("e", "payment_page_view", click, 140.0, "u1", {"session_id": "s"}))
    apply_event(
        state, Event("f", "page_view", click, 150.0, "u1", {"session_id": "t", "page": "/"})
    )  # new session
    assert state.abandoned_payments == [110.0, 150.0]
