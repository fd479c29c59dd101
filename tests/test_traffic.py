"""The synthetic traffic is deterministic, valid where it should be, and its ground truth is exact."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import orjson
import pytest

from streams.events import CLICKSTREAM, LOGISTICS, SUBSCRIPTIONS, Event, InvalidEvent, parse_event
from streams.policy import load_policy
from streams.state import UserState
from streams.traffic import (
    DAY,
    HELP_QUERIES,
    HOUR,
    QUERIES,
    SUPPORT_REASONS,
    USER_TYPES,
    Outgoing,
    TrafficGenerator,
    TrafficProfile,
)
from streams.triggers import check_payment_dwell, check_timers, process_event

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
        elif event.event_type == "support_contact" and event.attrs.get("reason") == "delivery":
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


# --- latent user types


@pytest.fixture(scope="module")
def busy_quarter_hour() -> tuple[TrafficGenerator, list[Event]]:
    """A quarter of an hour of busy traffic (about 18000 sessions of 5000 users), parsed."""
    generator = TrafficGenerator(TrafficProfile(sessions_per_second=20), seed=9, start=START)
    return generator, [parse_event(m.value, m.topic) for m in drain(generator, 900)]


def per_session_by_type(generator: TrafficGenerator, events: list[Event], kind: str) -> dict[str, float]:
    """How many ``kind`` events (in a session) the users of each type have per session."""
    sessions: defaultdict[str, set[str]] = defaultdict(set)
    counted: Counter[str] = Counter()
    for event in events:
        if "session_id" in event.attrs:
            user_type = generator.user_type(event.user_id)
            sessions[user_type].add(event.attrs["session_id"])
            counted[user_type] += event.event_type == kind
    assert set(sessions) == set(USER_TYPES) and min(len(s) for s in sessions.values()) > 1000
    return {user_type: counted[user_type] / len(sessions[user_type]) for user_type in USER_TYPES}


def test_user_types_follow_the_profiles_shares(
    busy_quarter_hour: tuple[TrafficGenerator, list[Event]],
) -> None:
    generator, events = busy_quarter_hour
    users = {event.user_id for event in events}
    assert len(users) > 4000
    types = Counter(generator.user_type(user) for user in users)
    assert set(types) == set(USER_TYPES)
    for user_type, share in generator.profile.user_types.items():
        assert abs(types[user_type] / len(users) - share) < 0.03, user_type
    assert generator.user_type("nobody") is None


def test_the_type_shares_are_the_profiles() -> None:
    profile = TrafficProfile(sessions_per_second=20, user_types={"browser": 1.0})
    generator = TrafficGenerator(profile, seed=3, start=START)
    events = [parse_event(m.value, m.topic) for m in drain(generator, 60)]
    assert {generator.user_type(event.user_id) for event in events} == {"browser"}
    with pytest.raises(ValueError, match="user_types"):
        TrafficGenerator(TrafficProfile(user_types={"shopper": 1.0}))


def test_help_seekers_read_help_and_contact_support_in_their_sessions(
    busy_quarter_hour: tuple[TrafficGenerator, list[Event]],
) -> None:
    generator, events = busy_quarter_hour
    contacts = per_session_by_type(generator, events, "support_contact")
    assert contacts["help_seeker"] > 0.5 and contacts["at_risk"] > 0.1
    assert (
        contacts["help_seeker"] > 10 * contacts["buyer"]
        and contacts["help_seeker"] > 10 * contacts["browser"]
    )
    in_session = [e for e in events if e.event_type == "support_contact" and "session_id" in e.attrs]
    assert len(in_session) == generator.stats.support_in_session
    assert {e.attrs["reason"] for e in in_session} == set(SUPPORT_REASONS)
    assert {e.attrs["channel"] for e in in_session} == {"chat"}
    assert not any("order_id" in e.attrs for e in in_session)
    # Help pages and help searches are the help-seekers'; the others look at products.
    help_steps: Counter[str] = Counter()
    for event in events:
        if event.attrs.get("category") == "help" or event.attrs.get("query") in HELP_QUERIES:
            assert event.attrs.get("page", "/help/").startswith("/help/")
            help_steps[generator.user_type(event.user_id)] += 1
    assert set(help_steps) == {"help_seeker"} and help_steps["help_seeker"] > 5000
    assert "refund policy" in HELP_QUERIES and "refund policy" not in QUERIES


def test_buyers_complete_orders_far_more_often_than_browsers(
    busy_quarter_hour: tuple[TrafficGenerator, list[Event]],
) -> None:
    generator, events = busy_quarter_hour
    orders = per_session_by_type(generator, events, "order_completed")
    assert orders["buyer"] > 0.4 and orders["buyer"] > 4 * orders["browser"]
    assert orders["buyer"] > 4 * orders["help_seeker"] and orders["at_risk"] > orders["browser"]
    # Browsers take fewer steps: at most 4 page views and searches, against up to 6.
    steps: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for event in events:
        if event.event_type in ("page_view", "search") and "session_id" in event.attrs:
            steps[generator.user_type(event.user_id)][event.attrs["session_id"]] += 1
    assert max(steps["browser"].values()) <= 5  # 4, and the page after giving up on a payment
    assert max(steps["buyer"].values()) >= 6


def test_feedback_is_valid_and_scores_are_lower_after_late_deliveries(
    busy_quarter_hour: tuple[TrafficGenerator, list[Event]],
) -> None:
    generator, events = busy_quarter_hour
    late_orders = {e.attrs["order_id"] for e in events if e.event_type in ("delayed", "exception")}
    delivered = {e.attrs["order_id"]: e.event_time for e in events if e.event_type == "delivered"}
    feedback = [e for e in events if e.event_type == "feedback"]
    assert len(feedback) == generator.stats.feedback
    assert not any("session_id" in e.attrs for e in feedback)
    scores: defaultdict[tuple[str, bool], list[float]] = defaultdict(list)
    after_support = []
    for event in feedback:
        score = event.attrs["score"]
        assert isinstance(score, float) and score == int(score) and 1 <= score <= 5
        order = event.attrs.get("order_id")
        if order is None:
            after_support.append(event)
            continue
        assert event.event_time > delivered[order]
        scores[generator.user_type(event.user_id), order in late_orders].append(score)
    rated = sum(len(s) for s in scores.values())
    assert abs(rated / len(delivered) - generator.profile.feedback_share) < 0.03
    for user_type in USER_TYPES:
        on_time, late = scores[user_type, False], scores[user_type, True]
        assert on_time and late
        assert min(on_time) >= (3 if user_type == "at_risk" else 4)
        assert max(late) <= (2 if user_type == "at_risk" else 3)
    on_time_mean = statistics.mean(itertools.chain(*(scores[t, False] for t in USER_TYPES)))
    late_mean = statistics.mean(itertools.chain(*(scores[t, True] for t in USER_TYPES)))
    assert on_time_mean > 4 and late_mean < 2.2
    # A help-seeker's support contact is rated (2-5) a minute later, outside the session.
    contacts = {
        (e.user_id, e.event_time + 60.0)
        for e in events
        if e.event_type == "support_contact" and "session_id" in e.attrs
    }
    assert after_support and {generator.user_type(e.user_id) for e in after_support} == {"help_seeker"}
    assert all(2 <= e.attrs["score"] <= 5 and (e.user_id, e.event_time) in contacts for e in after_support)


# --- engagement and churn


@dataclass
class LongRun:
    generator: TrafficGenerator
    session_starts: dict[str, tuple[str, float]] = field(default_factory=dict)  # session -> user, time
    churn_noticed: dict[str, float] = field(default_factory=dict)  # user -> clock they were churned at
    subscriptions: list[tuple[Outgoing, Event]] = field(default_factory=list)


@pytest.fixture(scope="module")
def two_months() -> LongRun:
    """60 days of quiet traffic: 2000 users, a session every 50 s, called every simulated hour."""
    profile = TrafficProfile(sessions_per_second=0.02, users=2000, subscription_share=0.3)
    run = LongRun(TrafficGenerator(profile, seed=21, start=START))
    clock, churned = START, 0
    while clock < START + 60 * DAY:
        clock += HOUR
        for message in run.generator.due(clock):
            if message.topic == SUBSCRIPTIONS:
                run.subscriptions.append((message, parse_event(message.value, message.topic)))
            elif message.topic == CLICKSTREAM:
                data = orjson.loads(message.value)
                if "session_id" in data:
                    run.session_starts.setdefault(data["session_id"], (data["user_id"], message.event_time))
        if run.generator.stats.churned_users > churned:
            churned = run.generator.stats.churned_users
            for user, _ in run.session_starts.values():
                if run.generator.churned(user):
                    run.churn_noticed.setdefault(user, clock)
    return run


def test_at_risk_users_churn_far_more_often_than_buyers(two_months: LongRun) -> None:
    generator = two_months.generator
    users: defaultdict[str, set[str]] = defaultdict(set)
    for user, _ in two_months.session_starts.values():
        users[generator.user_type(user)].add(user)
    assert min(len(u) for u in users.values()) > 200
    rate = {t: sum(generator.churned(u) for u in users[t]) / len(users[t]) for t in USER_TYPES}
    assert rate["at_risk"] > 0.15 and rate["at_risk"] > 10 * max(rate["buyer"], 0.001)
    assert generator.stats.churned_users == sum(generator.churned(u) for us in users.values() for u in us)
    for user_type, members in users.items():
        for user in members:
            engagement = generator.engagement(user)
            assert 0 < engagement <= 1 and generator.churned(user) == (engagement < 0.05)
            if user_type in ("help_seeker", "browser", "buyer"):
                assert engagement == 1.0 or engagement < 0.86  # only late deliveries lower it
    at_risk_engagement = statistics.mean(generator.engagement(u) for u in users["at_risk"])
    assert at_risk_engagement < 0.5 * statistics.mean(generator.engagement(u) for u in users["buyer"])


def test_churned_users_get_no_session_after_they_churned(two_months: LongRun) -> None:
    assert len(two_months.churn_noticed) > 50
    sessions_after = [
        (user, time)
        for user, time in two_months.session_starts.values()
        if user in two_months.churn_noticed and time > two_months.churn_noticed[user]
    ]
    assert sessions_after == []


def test_disengaged_at_risk_users_cancel_their_subscription_once(two_months: LongRun) -> None:
    generator = two_months.generator
    active: dict[str, Event] = {}
    cancelled: dict[str, Event] = {}
    for message, event in two_months.subscriptions:
        if event.attrs["status"] == "active":
            assert event.user_id not in active
            active[event.user_id] = event
            continue
        assert event.attrs["status"] == "cancelled" and message.expects is None
        assert event.user_id not in cancelled  # once
        cancelled[event.user_id] = event
        before = active[event.user_id]
        assert event.event_time > before.event_time
        for name in ("subscription_id", "plan", "renews_at"):
            assert event.attrs[name] == before.attrs[name]
        assert generator.user_type(event.user_id) == "at_risk" and generator.engagement(event.user_id) < 0.15
    assert len(cancelled) == generator.stats.cancellations > 20
    churned_subscribers = {
        user for user in active if generator.user_type(user) == "at_risk" and generator.churned(user)
    }
    assert churned_subscribers and churned_subscribers <= set(cancelled)


def test_a_subscription_cancelled_before_its_reminder_window_is_not_reminded(two_months: LongRun) -> None:
    policy = load_policy()
    cancelled = {e.user_id: e for _, e in two_months.subscriptions if e.attrs["status"] == "cancelled"}
    states: dict[str, UserState] = {}
    fired: set[str] = set()
    for _, event in two_months.subscriptions:
        if event.user_id in cancelled:
            state = states.setdefault(event.user_id, UserState(event.user_id))
            fired |= {i.source_event_id for i in process_event(state, event, policy)}
    for state in states.values():  # long after every renewal date
        fired |= {i.source_event_id for i in check_timers(state, START + 100 * DAY, policy)}
    early = 0
    for message, event in two_months.subscriptions:
        cancellation = cancelled.get(event.user_id)
        if cancellation is None or event is cancellation:
            continue
        window = event.attrs["renews_at"] - 7 * DAY
        if message.expects is not None:  # due when it came: reminded at once
            assert event.event_id in fired
        elif cancellation.event_time < window:
            early += 1
            assert event.event_id not in fired
    assert early >= 5
    assert not any(e.event_id in fired for e in cancelled.values())


def test_engagement_falls_with_late_deliveries() -> None:
    profile = TrafficProfile(sessions_per_second=20, shipment_delay_share=1.0, user_types={"buyer": 1.0})
    generator = TrafficGenerator(profile, seed=12, start=START)
    messages = drain(generator, 300)
    late: Counter[str] = Counter()
    for message in messages:
        if message.topic == LOGISTICS and b'"delayed"' in message.value:
            late[orjson.loads(message.value)["user_id"]] += 1
    assert late
    for user, count in late.items():
        assert generator.engagement(user) == pytest.approx(0.85**count)
