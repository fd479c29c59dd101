"""Gradual deployment of a trigger: ``mode = "shadow"`` decides and records without sending, ``mode =
"percent"`` is live for a sticky hashed share of users and shadow for the rest (docs/policy.md)."""

from __future__ import annotations

import pytest

from streams.contracts.interventions import Intervention
from streams.domain.contact import decide
from streams.domain.experiments import assign_arm, bucket, rollout_live
from streams.domain.policy import PolicyError, load_policy
from streams.domain.state import UserState

NOON = 1_764_028_800.0 + 12 * 3600  # 2025-11-25T12:00:00Z
MIDNIGHT_PLUS_2H = 1_764_028_800.0 + 2 * 3600  # quiet hours


def policy(extra: str) -> object:
    return load_policy(text='experiments = []\n[triggers.delay_notice]\ncooldown = "0s"\n' + extra)


def candidate(trigger: str, ident: str, user: str = "u1", at: float = NOON) -> Intervention:
    return Intervention(f"{trigger}-{ident}", trigger, "x", user, at, "why", "e1")


def decided(decisions: list) -> list[tuple[str, str, str]]:
    return [(d.intervention.trigger, d.decision, d.reason) for d in decisions]


# --- policy


def test_modes_are_read_with_their_defaults() -> None:
    loaded = policy(
        '[triggers.payment_assist]\nmode = "shadow"\n[triggers.renewal_reminder]\nmode = "percent"\n'
        "percent = 12.5\n"
    )
    triggers = loaded.triggers
    assert (triggers["delay_notice"].mode, triggers["delay_notice"].percent) == ("live", 100.0)
    assert triggers["payment_assist"].mode == "shadow"
    assert (triggers["renewal_reminder"].mode, triggers["renewal_reminder"].percent) == ("percent", 12.5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[triggers.delay_notice]\nmode = "canary"\n',
            "ops.toml: trigger 'delay_notice': field 'mode' must be one of live, shadow, percent,"
            " got 'canary'",
        ),
        (
            '[triggers.delay_notice]\nmode = "percent"\n',
            "ops.toml: trigger 'delay_notice': field 'percent' is required",
        ),
        (
            '[triggers.delay_notice]\nmode = "percent"\npercent = 101\n',
            "ops.toml: trigger 'delay_notice': field 'percent' must be between 0 and 100, got 101",
        ),
        (
            '[triggers.delay_notice]\nmode = "percent"\npercent = "10%"\n',
            "ops.toml: trigger 'delay_notice': field 'percent' must be a number, got '10%'",
        ),
        (
            "[triggers.delay_notice]\npercent = 10\n",
            "ops.toml: trigger 'delay_notice': field 'percent' is read only with mode = \"percent\","
            " and the mode is 'live'",
        ),
        (
            '[triggers.delay_notice]\nmode = "shadow"\npercent = 10\n',
            "field 'percent' is read only with mode = \"percent\", and the mode is 'shadow'",
        ),
    ],
)
def test_invalid_rollouts_name_file_trigger_and_field(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as error:
        load_policy(text=text, name="ops.toml")
    assert message in str(error.value)


# --- shadow


def test_a_shadow_trigger_records_what_it_would_do_and_sends_nothing() -> None:
    shadow = policy('mode = "shadow"\n')
    state = UserState("u1")
    [decision] = decide([candidate("delay_notice", "1")], state, shadow, NOON)
    assert (decision.decision, decision.reason) == ("shadow", "emitted")
    assert decision.detail == "shadow: would have been sent on chat"
    assert decision.to_wire(NOON)["decision"] == "shadow"
    # No contact recorded: no cap or cooldown consumed, no offer remembered; decided once only.
    assert state.contacts == {} and state.last_contact_by_trigger == {} and state.recent_interventions == []
    assert state.decided == ["delay_notice-1"] and state.deferred == []
    assert decide([candidate("delay_notice", "1")], state, shadow, NOON + 1) == []


def test_shadow_consumes_no_cap_so_live_triggers_decide_as_without_it() -> None:
    shadow = policy('[triggers.payment_assist]\nmode = "shadow"\n')
    live_only, with_shadow = UserState("u1"), UserState("u1")
    for i in range(5):  # chat: 3 a day; each live one alternates with a shadow one
        at = NOON + i * 60
        decide([candidate("payment_assist", str(i), at=at)], with_shadow, shadow, at)
        a = decided(decide([candidate("delay_notice", str(i), at=at)], live_only, shadow, at))
        b = decided(decide([candidate("delay_notice", str(i), at=at)], with_shadow, shadow, at))
        assert a == b
    assert live_only.contacts == with_shadow.contacts
    # The shadow one says what it would meet: the caps filled by the live trigger.
    [last] = decide([candidate("payment_assist", "x", at=NOON + 600)], with_shadow, shadow, NOON + 600)
    assert (last.decision, last.reason) == ("shadow", "frequency_cap")


def test_shadow_reports_the_live_reason_it_would_have_had() -> None:
    shadow = policy('mode = "shadow"\n[triggers.payment_assist]\nmode = "shadow"\n')
    state = UserState("u1")
    # Quiet hours: would have been deferred, but a shadow decision is final and keeps nothing waiting.
    [night] = decide([candidate("delay_notice", "n", at=MIDNIGHT_PLUS_2H)], state, shadow, MIDNIGHT_PLUS_2H)
    assert (night.decision, night.reason, night.release_at) == ("shadow", "deferred", None)
    assert state.deferred == [] and night.detail.startswith("shadow: quiet hours in UTC until ")
    state.preferences.opt_out = True
    [out] = decide([candidate("delay_notice", "o")], state, shadow, NOON)
    assert (out.decision, out.reason) == ("shadow", "opted_out")


def test_a_shadow_candidate_never_supersedes_a_live_one() -> None:
    # delay_notice (priority 90) in shadow, payment_assist (80) live, firing in one round.
    mixed = policy('mode = "shadow"\n')
    state = UserState("u1")
    decisions = decide([candidate("payment_assist", "1"), candidate("delay_notice", "1")], state, mixed, NOON)
    assert decided(decisions) == [("delay_notice", "shadow", "emitted"), ("payment_assist", "emitted", "")]
    # The other way round the shadow one is told it would have been superseded.
    flipped = policy('[triggers.payment_assist]\nmode = "shadow"\n')
    decisions = decide(
        [candidate("payment_assist", "2"), candidate("delay_notice", "2")], UserState("u1"), flipped, NOON
    )
    assert decided(decisions) == [("delay_notice", "emitted", ""), ("payment_assist", "shadow", "superseded")]


# --- percent


def test_percent_is_sticky_near_its_share_and_independent_of_the_arms() -> None:
    ten = policy('mode = "percent"\npercent = 10\n').triggers["delay_notice"]
    twenty = policy('mode = "percent"\npercent = 20\n').triggers["delay_notice"]
    users = [f"user-{i}" for i in range(10_000)]
    live = {user for user in users if rollout_live(user, ten)}
    assert 900 <= len(live) <= 1100
    assert live == {user for user in users if rollout_live(user, ten)}  # the same users every time
    wider = {user for user in users if rollout_live(user, twenty)}
    assert live < wider and 1850 <= len(wider) <= 2150  # raising the share keeps everyone in it
    # Not the experiment's draw: the holdout arm is cut across by the rollout share.
    experiment = load_policy().experiments[0]
    holdout = {user for user in users if assign_arm(user, experiment) == "holdout"}
    assert 0.06 < len(live & holdout) / len(holdout) < 0.14
    assert all(rollout_live(user, ten) == (bucket(user, "rollout:delay_notice") < 0.1) for user in users[:50])
    # 0 and 100 are all or nothing.
    none = policy('mode = "percent"\npercent = 0\n').triggers["delay_notice"]
    every = policy('mode = "percent"\npercent = 100\n').triggers["delay_notice"]
    assert not any(rollout_live(user, none) for user in users[:1000])
    assert all(rollout_live(user, every) for user in users[:1000])


def test_percent_sends_to_its_share_and_shadows_the_rest() -> None:
    ten = policy('mode = "percent"\npercent = 10\n')
    kinds: dict[str, int] = {}
    for i in range(2_000):
        user = f"user-{i}"
        state = UserState(user)
        [decision] = decide([candidate("delay_notice", "1", user)], state, ten, NOON)
        kinds[decision.decision] = kinds.get(decision.decision, 0) + 1
        if decision.decision == "shadow":
            assert decision.detail == "percent 10: not in the rollout share: would have been sent on chat"
            assert state.contacts == {}
        else:
            assert decision.decision == "emitted" and state.contacts == {"chat": [NOON]}
            assert rollout_live(user, ten.triggers["delay_notice"])
    assert set(kinds) == {"emitted", "shadow"} and 150 <= kinds["emitted"] <= 250
