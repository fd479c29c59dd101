"""Lifecycle triggers: renewal reminders and activity decline, fired by timers when the user is silent."""

from __future__ import annotations

import math

import pytest

from streams.contracts.events import CLICKSTREAM, SUBSCRIPTIONS, Event
from streams.contracts.interventions import Intervention, intervention_id
from streams.contracts.time import DAY
from streams.domain.activity import Activity
from streams.domain.clock import PartitionClocks
from streams.domain.contact import decide
from streams.domain.policy import load_policy
from streams.domain.state import Deferred, UserState, apply_event
from streams.domain.triggers import PendingTimers, check_timers, next_deadline, process_event
from streams.worker.codec import DataclassCodec

POLICY = load_policy()  # renewal 7 days ahead; feature_tip at 0.5, reengagement at 0.2 of the baseline
T0 = 1_760_000_000.0


def subscription(at: float, renews_at: float, status: str = "active", ident: str = "e") -> Event:
    attrs = {"subscription_id": "sub1", "plan": "pro", "status": status, "renews_at": renews_at}
    return Event(f"{ident}{at}", "subscription_updated", SUBSCRIPTIONS, at, "u1", attrs)


def visit(state: UserState, at: float) -> list[Intervention]:
    event = Event(f"v{at}", "page_view", CLICKSTREAM, at, "u1", {"session_id": f"s{at}", "page": "/"})
    return process_event(state, event, POLICY)


# --- the activity model


def test_decayed_visit_counts_by_hand() -> None:
    activity = Activity()
    activity.learn_one(0.0)
    activity.learn_one(7 * DAY)
    short, base = activity.rates(7 * DAY)
    assert short == pytest.approx((1 + math.exp(-1)) / (7 * DAY))
    assert base == pytest.approx((1 + math.exp(-0.25)) / (28 * DAY))
    activity.learn_one(3.5 * DAY)  # late: added with its weight as of 7 days
    assert activity.rates(7 * DAY)[0] == pytest.approx((1 + math.exp(-1) + math.exp(-0.5)) / (7 * DAY))
    assert (activity.first, activity.at) == (0.0, 7 * DAY)


def test_no_decline_without_a_baseline() -> None:
    activity = Activity()
    for day in range(3):
        activity.learn_one(day * DAY)
    assert activity.decline_at(0.5, min_visits=4) is None  # fewer than 4 decayed visits
    activity.learn_one(3 * DAY)
    when = activity.decline_at(0.5, min_visits=3)
    assert when is not None and when >= 28 * DAY  # and not before four weeks since the first visit


def test_decline_moment_is_exact_and_later_for_a_lower_ratio() -> None:
    activity = Activity()
    for index in range(30):
        activity.learn_one(index * DAY)
    tip, reengage = activity.decline_at(0.5), activity.decline_at(0.2)
    assert tip is not None and reengage is not None and 29 * DAY < tip < reengage
    for when, ratio in ((tip, 0.5), (reengage, 0.2)):
        short, base = activity.rates(when)
        assert short == pytest.approx(ratio * base)
        assert activity.rates(when - 60)[0] > ratio * activity.rates(when - 60)[1]


# --- renewal reminders


def test_renewal_reminder_falls_due_a_week_before_by_timer_once() -> None:
    state = UserState("u1")
    renews = T0 + 10 * DAY
    assert process_event(state, subscription(T0, renews), POLICY) == []
    deadline = renews - 7 * DAY
    assert next_deadline(state, POLICY) == deadline
    assert check_timers(state, deadline - 0.001, POLICY) == []
    [reminder] = check_timers(state, deadline, POLICY)
    assert (reminder.trigger, reminder.action, reminder.event_time) == (
        "renewal_reminder",
        "remind_renewal",
        deadline,
    )
    assert reminder.intervention_id == intervention_id(
        "renewal_reminder", "u1", f"sub1\x1f{round(renews * 1000)}"
    )
    assert reminder.source_event_id == f"e{T0}" and reminder.evidence["plan"] == "pro"
    assert check_timers(state, deadline + DAY, POLICY) == [] and next_deadline(state, POLICY) is None
    # Renewed: the next renewal date gets its own reminder.
    process_event(state, subscription(renews + 1, renews + 30 * DAY), POLICY)
    assert next_deadline(state, POLICY) == renews + 23 * DAY


def test_a_snapshot_inside_the_window_reminds_at_once() -> None:
    state = UserState("u1")
    [reminder] = process_event(state, subscription(T0, T0 + 3 * DAY), POLICY)
    assert reminder.event_time == T0 and reminder.reason == "subscription pro renews in 3.0 days"


@pytest.mark.parametrize(
    ("status", "renews_at"),
    [("cancelled", T0 + 3 * DAY), ("past_due", T0 + 3 * DAY), ("active", T0 - DAY)],
)
def test_no_reminder_for_inactive_or_past_renewals(status: str, renews_at: float) -> None:
    state = UserState("u1")
    assert process_event(state, subscription(T0, renews_at, status), POLICY) == []
    assert next_deadline(state, POLICY) is None  # nothing left pending for the timer either


def test_an_older_snapshot_does_not_override() -> None:
    state = UserState("u1")
    apply_event(state, subscription(T0, T0 + 20 * DAY, "cancelled"))
    apply_event(state, subscription(T0 - 60, T0 + 10 * DAY, "active", ident="old"))
    assert state.subscriptions["sub1"].status == "cancelled" and next_deadline(state, POLICY) is None


# --- activity decline


def regular_user() -> UserState:
    state = UserState("u1")
    for index in range(20):
        assert visit(state, T0 + index * 2 * DAY) == []
    return state


def test_decline_triggers_fire_in_order_when_silent_once_per_episode() -> None:
    state = regular_user()
    tip_at = state.activity.decline_at(0.5)
    assert next_deadline(state, POLICY) == tip_at
    assert check_timers(state, tip_at - 1, POLICY) == []
    [tip] = check_timers(state, tip_at, POLICY)
    assert (tip.trigger, tip.event_time, tip.source_event_id) == ("feature_tip", tip_at, f"v{T0 + 38 * DAY}")
    reengage_at = next_deadline(state, POLICY)
    assert reengage_at == state.activity.decline_at(0.2) > tip_at
    [reengage] = check_timers(state, reengage_at, POLICY)
    assert reengage.trigger == "reengagement" and next_deadline(state, POLICY) is None
    assert check_timers(state, reengage_at + 90 * DAY, POLICY) == []
    # Back, then silent again: a new episode, with new ids.
    for index in range(8):
        visit(state, reengage_at + index * DAY)
    again = check_timers(state, reengage_at + 200 * DAY, POLICY)
    assert [i.trigger for i in again] == ["feature_tip", "reengagement"]
    assert {i.intervention_id for i in again}.isdisjoint({tip.intervention_id, reengage.intervention_id})


def test_both_declines_due_at_once_send_only_the_higher_priority() -> None:
    state = regular_user()
    fired = check_timers(state, T0 + 400 * DAY, POLICY)
    assert [i.trigger for i in fired] == ["feature_tip", "reengagement"]
    quiet_free = load_policy(text="experiments = []\n[contact]\nquiet_hours = []\n")
    decisions = decide(fired, state, quiet_free, T0 + 400 * DAY)
    assert [(d.intervention.trigger, d.decision, d.reason) for d in decisions] == [
        ("reengagement", "emitted", ""),
        ("feature_tip", "suppressed", "superseded"),
    ]


# --- the timer index and the table codec


def test_the_timer_index_takes_only_the_due_users_and_skips_moved_timers() -> None:
    pending, clocks = PendingTimers(POLICY), PartitionClocks()
    states = []
    for index in range(1000):
        state = UserState(f"u{index}", partition=0)
        apply_event(state, subscription(T0, T0 + (8 + index) * DAY))  # deadlines a day apart
        state.user_id = f"u{index}"
        pending.track(state)
        states.append(state)
    clocks.observe(0, T0, wall=T0)
    assert pending.due(clocks, {0}, wall=T0 + DAY - 1) == []
    ticked = pending.due(clocks, {0}, wall=T0 + 3 * DAY)
    assert [user for user, _, _ in ticked] == ["u0", "u1", "u2"]
    for user, _, now in ticked:  # the ticks arrive, as in track_users
        pending.answered(user)
        assert [i.trigger for i in check_timers(states[int(user[1:])], now, POLICY)] == ["renewal_reminder"]
        pending.track(states[int(user[1:])])
    # u3's renewal moved a month on: its old deadline is skipped, the new one kept.
    apply_event(states[3], subscription(T0 + 1, T0 + 40 * DAY))
    pending.track(states[3])
    assert [user for user, _, _ in pending.due(clocks, {0}, wall=T0 + 5 * DAY)] == ["u4"]
    assert len(pending) == 1000 - 3


def test_the_whole_state_round_trips_through_the_table_codec() -> None:
    state = regular_user()
    apply_event(state, subscription(T0, T0 + 10 * DAY))
    state.preferences.timezone = "Europe/Berlin"
    state.deferred.append(
        Deferred(T0 + 5.0, Intervention("i1", "delay_notice", "notify_delay", "u1", T0, "r", "e"))
    )
    state.decline_fired.append("feature_tip")
    codec = DataclassCodec(UserState)
    assert codec._loads(codec._dumps(state)) == state
