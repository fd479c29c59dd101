"""The synthetic traffic is deterministic, valid where it should be, and its ground truth is exact."""

from __future__ import annotations

import itertools
from collections import Counter

from streams.events import InvalidEvent, parse_event
from streams.policy import load_policy
from streams.state import UserState
from streams.traffic import TrafficGenerator, TrafficProfile
from streams.triggers import check_payment_dwell, process_event

START = 1_764_000_000.0


def drain(generator: TrafficGenerator, seconds: float) -> list:
    """Every message of the sessions started in ``seconds``, including their later steps."""
    messages = generator.due(START + seconds)
    generator.profile.sessions_per_second = 1e-9  # no new sessions: let the started ones finish
    return messages + generator.due(START + 10 * 24 * 3600)


def test_same_seed_same_traffic() -> None:
    first = drain(TrafficGenerator(TrafficProfile(), seed=5, start=START), 120)
    second = drain(TrafficGenerator(TrafficProfile(), seed=5, start=START), 120)
    other = drain(TrafficGenerator(TrafficProfile(), seed=6, start=START), 120)
    assert first == second and first != other


def test_messages_come_in_event_time_order_and_not_before_their_time() -> None:
    generator = TrafficGenerator(TrafficProfile(sessions_per_second=10), seed=2, start=START)
    clock, seen = START, []
    for _ in range(300):
        clock += 0.5
        batch = generator.due(clock)
        assert all(message.event_time <= clock for message in batch)
        seen.extend(batch)
    assert seen and all(a.event_time <= b.event_time for a, b in itertools.pairwise(seen))


def test_ground_truth_matches_what_the_triggers_decide() -> None:
    profile = TrafficProfile(sessions_per_second=20, malformed_share=0.02, subscription_share=0.2)
    generator = TrafficGenerator(profile, seed=11, start=START)
    messages = drain(generator, 600)
    # The demo's threshold, below the profile's linger time.
    rules = load_policy(text='[triggers.payment_assist]\ndwell = "30s"\n')
    states: dict[str, UserState] = {}
    fired: Counter[str] = Counter()
    fired_by: set[tuple[str, str]] = set()  # (trigger, source event id)
    marked: set[tuple[str, str]] = set()  # what the messages say they lead to
    invalid = 0
    for message in messages:
        try:
            event = parse_event(message.value, message.topic)
        except InvalidEvent:
            invalid += 1
            assert message.expects is None
            continue
        if message.expects:
            marked.add((message.expects, event.event_id))
        state = states.setdefault(event.user_id, UserState(event.user_id))
        for intervention in process_event(state, event, rules):
            fired[intervention.trigger] += 1
            fired_by.add((intervention.trigger, intervention.source_event_id))
    for state in states.values():  # the timer sweep, long after the end
        for intervention in check_payment_dwell(state, START + 1e7, rules):
            fired[intervention.trigger] += 1
            fired_by.add((intervention.trigger, intervention.source_event_id))

    stats = generator.stats
    assert stats.lingering_payments > 100 and stats.delayed_shipments > 100 and stats.malformed > 100
    assert fired["payment_assist"] == stats.lingering_payments
    assert fired["delay_notice"] == stats.delayed_shipments + stats.exception_shipments
    assert 0 < fired["renewal_reminder"] < stats.subscriptions
    assert invalid == stats.malformed
    # Each message marked with what it leads to is the source of exactly that intervention.
    assert marked == fired_by and len(marked) == sum(fired.values())
    assert len(messages) == stats.events + stats.malformed


def test_shares_follow_the_profile() -> None:
    generator = TrafficGenerator(TrafficProfile(sessions_per_second=20), seed=3, start=START)
    drain(generator, 1200)
    stats = generator.stats
    assert abs(stats.sessions / 1200 - 20) < 1.5
    assert abs(stats.lingering_payments / stats.payment_sessions - 0.15) < 0.03
    late = stats.delayed_shipments / stats.orders
    assert abs(late - 0.2) < 0.03
    assert stats.malformed == 0


def test_the_planted_effect_lowers_complaints_and_give_ups_of_treated_users_only() -> None:
    def treated(user: str) -> bool:
        return user < "u02500"  # half of the population

    profile = TrafficProfile(sessions_per_second=20, treated=treated)
    messages = drain(TrafficGenerator(profile, seed=4, start=START), 1200)
    late: Counter[bool] = Counter()
    complained: Counter[bool] = Counter()
    for message in messages:
        event = parse_event(message.value, message.topic)
        group = treated(event.user_id)
        if event.event_type in ("delayed", "exception"):
            late[group] += 1
        elif event.event_type == "support_contact":
            complained[group] += 1
    assert min(late.values()) > 500
    assert abs(complained[True] / late[True] - 0.3 * 0.4) < 0.04
    assert abs(complained[False] / late[False] - 0.3) < 0.05


def test_preferences_come_before_a_users_first_session_and_are_valid() -> None:
    profile = TrafficProfile(sessions_per_second=20, preferences_share=1.0)
    generator = TrafficGenerator(profile, seed=8, start=START)
    events = [parse_event(m.value, m.topic) for m in drain(generator, 600)]
    first_event = {}
    for event in events:
        first_event.setdefault(event.user_id, event)
    assert {e.event_type for e in first_event.values()} == {"preferences_updated"}
    preferences = [e for e in events if e.event_type == "preferences_updated"]
    assert len(preferences) == len(first_event) == generator.stats.preferences
    assert 0.02 < sum(e.attrs.get("opt_out", False) for e in preferences) / len(preferences) < 0.08
    assert 0.15 < sum("channels" in e.attrs for e in preferences) / len(preferences) < 0.25
