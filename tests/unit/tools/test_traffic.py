"""The synthetic traffic is deterministic, valid where it should be, and its ground truth is exact."""

from __future__ import annotations

import hashlib
import itertools
import random
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import orjson
import pytest

from models.feedback_corpus import CATEGORIES as CORPUS_CATEGORIES
from streams.contracts.events import (
    CLICKSTREAM,
    CONVERSATIONS,
    CRM_UPDATES,
    DEVICES,
    LOGISTICS,
    ORDER_REQUESTS,
    SERVICE_REQUESTS,
    SUBSCRIPTIONS,
    SUPPORT_QUESTIONS,
    Event,
    InvalidEvent,
    parse_event,
)
from streams.contracts.feedback import Correction, parse_label
from streams.contracts.time import DAY, HOUR
from streams.domain.policy import load_policy
from streams.domain.state import UserState
from streams.domain.triggers import check_payment_dwell, check_timers, process_event
from streams.processes.catalog import load_catalog
from streams.processes.orders import (
    INVALID_QUANTITY,
    QUANTITY_LIMIT,
    UNKNOWN_SKU,
    OrderLedger,
    OrderRejection,
    decide_order,
)
from streams.processes.tickets import UNKNOWN_DEVICE, DeviceBook, great_circle_km, open_ticket, register
from streams.tools.traffic.clickstream import HELP_QUERIES, QUERIES, SUPPORT_REASONS
from streams.tools.traffic.crm import TIERS
from streams.tools.traffic.feedback import FEEDBACK_LABELS
from streams.tools.traffic.generator import PROCESS_TOPICS, TrafficGenerator
from streams.tools.traffic.profile import USER_TYPES, Surge, TrafficProfile
from streams.tools.traffic.repairs import DISPATCH_MAX_KM
from streams.tools.traffic.schedule import Outgoing
from streams.tools.traffic.support_questions import (
    CATEGORY_TOPICS,
    LAUNCH_TOPICS,
    launch_bucket,
    launch_mix,
    question_mix,
)

START = 1_764_000_000.0


def drain(generator: TrafficGenerator, seconds: float) -> list:
    """Every message of the sessions started in ``seconds``, including their later steps."""
    messages = generator.due(START + seconds)
    generator.profile.sessions_per_second = 1e-9  # no new sessions: let the started ones finish
    return messages + generator.due(START + 10 * 24 * 3600)


def digest(messages: list[Outgoing]) -> str:
    """A short fingerprint of every field of every message, in order."""
    hashed = hashlib.sha256()
    for m in messages:
        for part in (m.topic.encode(), m.key, m.value, repr(m.event_time).encode(), repr(m.expects).encode()):
            hashed.update(part + b"\0")
    return hashed.hexdigest()[:16]


def test_the_default_stream_is_unchanged() -> None:
    """Recorded before the process traffic (devices, repairs, orders, ...) was added: with its shares
    at their defaults (off) the stream is byte for byte what it was, so seeded results still hold."""
    default = drain(TrafficGenerator(TrafficProfile(), seed=5, start=START), 120)
    assert (len(default), digest(default)) == (3532, "1b7118d4290f0961")
    profile = TrafficProfile(
        sessions_per_second=20, malformed_share=0.02, preferences_share=0.5, subscription_share=0.2
    )
    busy = drain(TrafficGenerator(profile, seed=11, start=START), 120)
    assert (len(busy), digest(busy)) == (16407, "f442de1d373535e9")


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


# --- process traffic: devices, repairs, orders, feedback, support questions, CRM attributes

PROCESS_PROFILE = {
    "sessions_per_second": 20.0,
    "devices_share": 0.3,
    "repair_share": 0.5,
    "order_request_share": 0.1,
    "conversation_share": 0.2,
    "feedback_comment_share": 0.6,
    "label_share": 0.3,
    "support_question_rate": 0.2,
    "support_history_seconds": 2 * HOUR,
    "surge": Surge("headphones-echo-buds", "pairing", 300.0, 120.0, 40.0),
    "crm_share": 0.3,
}


def drain_processes(generator: TrafficGenerator, seconds: float) -> list[Outgoing]:
    """Sessions for ``seconds``, then an hour more for their later steps (repairs, labels, CRM
    updates) with the support questions going on."""
    messages = generator.due(START + seconds)
    generator.profile.sessions_per_second = 1e-9
    return messages + generator.due(START + seconds + HOUR)


@dataclass
class ProcessRun:
    generator: TrafficGenerator
    messages: list[Outgoing]
    events: list[tuple[Outgoing, Event]]  # every message but the labels, parsed
    labels: list[tuple[Outgoing, Correction]]

    def of(self, topic: str) -> list[Event]:
        return [event for message, event in self.events if message.topic == topic]


@pytest.fixture(scope="module")
def process_run() -> ProcessRun:
    """Ten minutes of busy traffic with every process feature on (about 12000 sessions)."""
    generator = TrafficGenerator(TrafficProfile(**PROCESS_PROFILE), seed=13, start=START)
    messages = drain_processes(generator, 600)
    events, labels = [], []
    for message in messages:
        if message.topic == FEEDBACK_LABELS:
            labels.append((message, parse_label(message.value)))
        else:
            events.append((message, parse_event(message.value, message.topic)))
    return ProcessRun(generator, messages, events, labels)


def test_process_traffic_is_valid_counted_and_in_order(process_run: ProcessRun) -> None:
    run, stats = process_run, process_run.generator.stats
    assert {m.topic for m in run.messages} == {CLICKSTREAM, LOGISTICS, *PROCESS_TOPICS}
    assert all(a.event_time <= b.event_time for a, b in itertools.pairwise(run.messages))
    assert len(run.messages) == stats.events and stats.malformed == 0
    for message, event in run.events:  # the message's time is the event's
        assert message.event_time == pytest.approx(event.event_time, abs=1e-3)
    assert len(run.of(DEVICES)) == stats.devices > 1000
    assert len(run.of(SERVICE_REQUESTS)) == stats.repair_requests + stats.repair_redeliveries
    assert len(run.of(ORDER_REQUESTS)) == stats.order_requests + stats.order_duplicates
    assert len(run.of(CRM_UPDATES)) == stats.crm_updates
    assert len(run.of(CONVERSATIONS)) == stats.chat_messages > 1000
    assert len(run.of(SUPPORT_QUESTIONS)) == stats.support_questions + stats.surge_questions
    assert len(run.labels) == stats.labels > 100
    commented = [e for e in run.of(CLICKSTREAM) if e.event_type == "feedback" and "comment" in e.attrs]
    assert len(commented) == stats.commented_feedback > 500


def test_process_traffic_leaves_the_behaviour_traffic_as_it_is() -> None:
    """Every process feature on: take away the process topics and the comments on feedback, and the
    rest is byte for byte the stream without them (they draw from random streams of their own)."""
    profile = TrafficProfile(**{**PROCESS_PROFILE, "surge": None})
    plain = drain_processes(
        TrafficGenerator(TrafficProfile(sessions_per_second=20.0), seed=4, start=START), 300
    )
    busy = drain_processes(TrafficGenerator(profile, seed=4, start=START), 300)
    behaviour = []
    for message in busy:
        if message.topic in PROCESS_TOPICS:
            continue
        data = orjson.loads(message.value)
        if data["event_type"] == "feedback" and "comment" in data:
            del data["comment"], data["product_id"]
            message = Outgoing(
                message.topic, message.key, orjson.dumps(data), message.event_time, message.expects
            )
        behaviour.append(message)
    assert len(busy) > len(behaviour) and behaviour == plain
    again = drain_processes(TrafficGenerator(TrafficProfile(**{**PROCESS_PROFILE, "surge": None}), seed=4,
                                             start=START), 300)  # fmt: skip
    assert again == busy


def test_devices_are_registered_before_the_first_session(process_run: ProcessRun) -> None:
    run, generator = process_run, process_run.generator
    catalog = generator.catalog
    served = set().union(*(point.categories for point in generator.service_points))
    first_click: dict[str, float] = {}
    for event in run.of(CLICKSTREAM):
        first_click.setdefault(event.user_id, event.event_time)
    owners: defaultdict[str, list[Event]] = defaultdict(list)
    for event in run.of(DEVICES):
        owners[event.user_id].append(event)
    for user, devices in owners.items():
        assert 1 <= len(devices) <= 2 and all(d.event_time == first_click[user] for d in devices)
        for device in devices:
            attrs = device.attrs
            assert attrs["category"] in set(catalog.categories()) & served
            assert attrs["model"] in {
                p.name for p in catalog.products.values() if p.category == attrs["category"]
            }
            assert attrs["purchased_at"] <= device.event_time < attrs["warranty_until"]
    # In the order of the messages, each user's registrations come before their first click.
    seen_click, early = set(), 0
    for message, event in run.events:
        if message.topic == CLICKSTREAM:
            seen_click.add(event.user_id)
        elif message.topic == DEVICES:
            assert event.user_id not in seen_click
            early += 1
    assert early == generator.stats.devices
    users = len(generator.seen_users())
    assert abs(len(owners) / users - 0.3) < 0.03


def test_repairs_follow_the_plan_and_their_ground_truth_is_what_dispatch_gives(
    process_run: ProcessRun,
) -> None:
    run, generator = process_run, process_run.generator
    repairs = {repair.request_id: repair for repair in generator.repairs()}
    assert len(repairs) == generator.stats.repair_requests > 400
    owned = {(e.user_id, e.attrs["device_id"]): e for e in run.of(DEVICES)}
    sent: defaultdict[str, list[Event]] = defaultdict(list)
    for event in run.of(SERVICE_REQUESTS):
        sent[event.attrs["request_id"]].append(event)
    assert set(sent) == set(repairs)
    languages: Counter[str] = Counter()
    for request_id, copies in sent.items():
        repair, first = repairs[request_id], copies[0]
        assert len(copies) == (2 if repair.redelivered else 1)
        assert len({c.event_id for c in copies}) == len(copies)  # a new event, the same request
        assert all(c.attrs == first.attrs and c.user_id == first.user_id for c in copies)
        assert (first.user_id, first.event_time, first.attrs["device_id"]) == (
            repair.user_id, repair.event_time, repair.device_id,
        )  # fmt: skip
        languages["zh" if any("\u4e00" <= ch <= "\u9fff" for ch in first.attrs["fault"]) else "en"] += 1
        registration = owned.get((repair.user_id, repair.device_id))
        nearest = min(
            great_circle_km(repair.latitude, repair.longitude, p.latitude, p.longitude)
            for p in generator.service_points
        )
        if repair.planted == "unregistered":
            assert registration is None and repair.category is None
            assert generator.expected_ticket(repair) == UNKNOWN_DEVICE
            continue
        assert registration is not None and registration.event_time < repair.event_time
        assert registration.attrs["category"] == repair.category
        if repair.planted == "far":
            assert nearest > DISPATCH_MAX_KM and generator.expected_ticket(repair) != "assigned"
        else:
            assert nearest <= 12.0
    planted = Counter(repair.planted for repair in repairs.values())
    assert abs(planted["far"] / len(repairs) - 0.1) < 0.04
    assert abs(planted["unregistered"] / len(repairs) - 0.05) < 0.03
    assert abs(generator.stats.repair_redeliveries / len(repairs) - 0.1) < 0.04
    assert abs(languages["zh"] / len(repairs) - 0.3) < 0.06
    # What the documented dispatch makes of the messages, idempotency included, is the ground truth.
    books: defaultdict[str, DeviceBook] = defaultdict(DeviceBook)
    made: Counter[str] = Counter()
    for message, event in run.events:
        if message.topic == DEVICES:
            register(books[event.user_id], event)
        elif message.topic == SERVICE_REQUESTS:
            ticket = open_ticket(books[event.user_id], event, generator.service_points, DISPATCH_MAX_KM)
            if ticket is not None:
                made[ticket.dispatch.manual_reason or "assigned"] += 1
    expected = generator.expected_tickets()
    assert made == expected and sum(expected.values()) == len(repairs)
    assert expected["assigned"] > len(repairs) / 2 and expected[UNKNOWN_DEVICE] == planted["unregistered"]


def test_order_requests_are_refused_for_exactly_the_planted_faults(process_run: ProcessRun) -> None:
    run, generator = process_run, process_run.generator
    orders = {order.request_id: order for order in generator.orders()}
    assert len(orders) == generator.stats.order_requests > 800
    ledgers: defaultdict[str, OrderLedger] = defaultdict(OrderLedger)
    decided: Counter[str] = Counter()
    duplicates = 0
    for event in run.of(ORDER_REQUESTS):
        order = orders[event.attrs["request_id"]]
        assert event.user_id == order.user_id
        assert [(i["sku"], i["quantity"]) for i in event.attrs["items"]] == list(order.items)
        decision = decide_order(ledgers[event.user_id], event, generator.catalog, None)
        if decision is None:
            duplicates += 1
            continue
        decided[decision.reason if isinstance(decision, OrderRejection) else "accepted"] += 1
        assert (decision.reason if isinstance(decision, OrderRejection) else "accepted") == order.planted
    assert decided == generator.expected_orders()
    assert duplicates == generator.stats.order_duplicates == sum(o.duplicated for o in orders.values())
    shares = {reason: count / len(orders) for reason, count in decided.items()}
    assert abs(shares[UNKNOWN_SKU] - 0.08) < 0.03 and abs(shares[INVALID_QUANTITY] - 0.08) < 0.03
    assert abs(shares[QUANTITY_LIMIT] - 0.04) < 0.02 and shares["accepted"] > 0.75
    quantities = {i["quantity"] for e in run.of(ORDER_REQUESTS) for i in e.attrs["items"]}
    assert {0.0, -1.0, 1.5} <= quantities  # zero, negative and fractional quantities are among them


def test_feedback_comments_carry_their_true_tags_and_some_are_corrected(process_run: ProcessRun) -> None:
    run, generator = process_run, process_run.generator
    truth = generator.feedback_truth()
    feedback = [e for e in run.of(CLICKSTREAM) if e.event_type == "feedback"]
    commented = [e for e in feedback if "comment" in e.attrs]
    assert abs(len(commented) / len(feedback) - 0.6) < 0.04
    assert {e.event_id for e in commented} == set(truth)
    scores: defaultdict[str, list[float]] = defaultdict(list)
    for event in commented:
        known = truth[event.event_id]
        assert (event.attrs["comment"], event.attrs["product_id"], event.user_id) == (
            known.text, known.product_id, known.user_id,
        )  # fmt: skip
        assert generator.catalog.product(known.product_id) is not None
        assert known.tags and set(known.tags) <= set(CORPUS_CATEGORIES)
        for tag in known.tags:
            scores[tag].append(event.attrs["score"])
    languages = Counter(known.language for known in truth.values())
    assert abs(languages["zh"] / len(truth) - 0.3) < 0.05
    # Comments are in keeping with the score the user gave: praise high, quality complaints low.
    means = {tag: statistics.mean(values) for tag, values in scores.items()}
    assert min(means["praise"], means["feature_request"]) > 3.5
    assert max(means[tag] for tag in ("pricing", "delivery", "quality", "usability")) < 3.0
    times = {e.event_id: e.event_time for e in commented}
    corrected = set()
    for message, correction in run.labels:
        known = truth[correction.feedback_id]
        assert message.key == correction.feedback_id.encode() and known.labelled
        assert (correction.text, correction.tags) == (known.text, known.tags)
        assert 5.0 <= correction.labelled_at - times[correction.feedback_id] <= 60.0
        assert correction.labelled_at == pytest.approx(message.event_time, abs=1e-3)
        corrected.add(correction.feedback_id)
    assert corrected == {k for k, v in truth.items() if v.labelled}
    assert abs(len(corrected) / len(truth) - 0.3) < 0.05


def test_support_questions_have_steady_topic_mixes_and_the_planted_surge(process_run: ProcessRun) -> None:
    run, generator = process_run, process_run.generator
    questions = run.of(SUPPORT_QUESTIONS)
    catalog = generator.catalog
    keys = {m.key for m in run.messages if m.topic == SUPPORT_QUESTIONS}
    assert keys <= {p.encode() for p in catalog.products}
    history = [q for q in questions if q.event_time < START]
    assert history and min(q.event_time for q in history) < START - 1.9 * HOUR
    chinese = 0
    for question in questions:
        product = catalog.products[question.attrs["product_id"]]
        assert product.launched_at <= question.event_time
        assert question.attrs["topic"] in generator.true_mix(product.product_id, question.event_time)
        assert product.name in question.attrs["text"]
        chinese += any("\u4e00" <= char <= "\u9fff" for char in question.attrs["text"])
    assert abs(chinese / len(questions) - generator.profile.text_zh_share) < 0.04
    begin, end = generator.surge_window()
    assert (begin, end) == (START + 300.0, START + 420.0)
    surge = generator.profile.surge

    def pair(q: Event) -> bool:
        return (q.attrs["product_id"], q.attrs["topic"]) == (surge.product_id, surge.topic)

    inside = [q for q in questions if pair(q) and begin <= q.event_time <= end]
    outside = [q for q in questions if pair(q) and not begin <= q.event_time <= end]
    rate = generator.topic_rate(surge.product_id, surge.topic, begin)
    steady = rate * (end - begin)
    assert len(inside) - steady == pytest.approx(generator.stats.surge_questions, abs=4 * steady**0.5 + 1)
    expected = surge.factor * steady  # the steady ones plus (factor - 1) times as many
    assert abs(len(inside) - expected) < 4 * expected**0.5
    # Outside the window the topic keeps its steady rate, from 2 h before the start to the last call.
    span = (START + 600 + HOUR) - (START - 2 * HOUR) - (end - begin)
    assert abs(len(outside) - rate * span) < 4 * (rate * span) ** 0.5 + 2
    # Steady mixes: the busiest other product's topic shares before the start match those after it.
    busiest = Counter(
        q.attrs["product_id"] for q in questions if q.attrs["product_id"] != surge.product_id
    ).most_common(1)[0][0]
    topics = CATEGORY_TOPICS[catalog.products[busiest].category]
    rates = {topic: generator.topic_rate(busiest, topic, START) for topic in topics}
    of_busiest = [q for q in questions if q.attrs["product_id"] == busiest]
    for counts in (
        Counter(q.attrs["topic"] for q in of_busiest if q.event_time < START),
        Counter(q.attrs["topic"] for q in of_busiest if q.event_time >= START),
    ):
        n = sum(counts.values())
        assert n > 100
        for topic in topics:
            share = rates[topic] / sum(rates.values())
            assert abs(counts[topic] / n - share) < 4 * (share * (1 - share) / n) ** 0.5


def test_a_surge_must_name_a_product_and_topic_of_the_catalog() -> None:
    with pytest.raises(ValueError, match="not a product"):
        TrafficGenerator(TrafficProfile(support_question_rate=1.0, surge=Surge("nope", "pairing", 0, 60, 5)))
    with pytest.raises(ValueError, match="not a topic"):
        TrafficGenerator(
            TrafficProfile(support_question_rate=1.0, surge=Surge("headphones-echo-2", "screen", 0, 60, 5))
        )
    with pytest.raises(ValueError, match="factor"):
        TrafficGenerator(
            TrafficProfile(support_question_rate=1.0, surge=Surge("headphones-echo-2", "pairing", 0, 60, 1))
        )
    with pytest.raises(ValueError, match="support_question_rate"):
        TrafficGenerator(TrafficProfile(surge=Surge("headphones-echo-2", "pairing", 0, 60, 5)))
    # Echo Two is launched on 2026-01-27: at START it is not on sale yet.
    early = TrafficProfile(support_question_rate=1.0, surge=Surge("headphones-echo-2", "pairing", 0, 60, 5))
    with pytest.raises(ValueError, match="not launched"):
        TrafficGenerator(early, start=START).due(START + 10)


def test_crm_attributes_for_some_new_users_and_updates_that_only_grow(process_run: ProcessRun) -> None:
    run, generator = process_run, process_run.generator
    updates: defaultdict[str, list[Event]] = defaultdict(list)
    for event in run.of(CRM_UPDATES):
        updates[event.user_id].append(event)
    first_click: dict[str, float] = {}
    for event in run.of(CLICKSTREAM):
        first_click.setdefault(event.user_id, event.event_time)
    assert abs(len(updates) / len(generator.seen_users()) - 0.3) < 0.03
    later = 0
    for user, events in updates.items():
        assert events[0].event_time == first_click[user] and len(events) <= 2
        for event in events:
            assert event.attrs["tier"] in TIERS and event.attrs["lifetime_value"] > 0
        if len(events) == 2:
            later += 1
            old, new = (e.attrs for e in events)
            assert new["lifetime_value"] > old["lifetime_value"]
            assert TIERS.index(new["tier"]) - TIERS.index(old["tier"]) in (0, 1)
        assert generator.crm_attributes(user) == events[-1].attrs
    assert abs(later / len(updates) - 0.25) < 0.05 and later == generator.stats.crm_updates - len(updates)


def test_ground_truth_up_to_a_time_is_what_was_sent_by_then(process_run: ProcessRun) -> None:
    """The demo stops the traffic at some point: the ground truth then covers what was sent by it."""
    run, generator = process_run, process_run.generator
    until = START + 300.0
    sent_by = [event for message, event in run.events if message.event_time <= until]
    requests = {e.attrs["request_id"] for e in sent_by if e.source == SERVICE_REQUESTS}
    assert {repair.request_id for repair in generator.repairs(until)} == requests
    assert 0 < sum(generator.expected_tickets(until=until).values()) == len(requests)
    assert len(requests) < len(generator.repairs())
    orders = {e.attrs["request_id"] for e in sent_by if e.source == ORDER_REQUESTS}
    assert {order.request_id for order in generator.orders(until)} == orders
    assert 0 < sum(generator.expected_orders(until).values()) == len(orders) < len(generator.orders())
    commented = {e.event_id for e in sent_by if e.event_type == "feedback" and "comment" in e.attrs}
    assert set(generator.feedback_truth(until)) == commented
    labelled = {c.feedback_id for m, c in run.labels if m.event_time <= until}
    assert labelled == {
        k
        for k, v in generator.feedback_truth().items()
        if v.labelled_at is not None and v.labelled_at <= until
    }


def test_process_traffic_does_not_depend_on_how_often_it_is_asked_for() -> None:
    """The demo calls ``due`` ten times a second, a replay once: the traffic is the same."""
    surge = Surge("headphones-echo-buds", "pairing", 30.0, 30.0, 200.0)
    profile = {**PROCESS_PROFILE, "surge": surge, "support_history_seconds": 600.0}
    once = TrafficGenerator(TrafficProfile(**profile), seed=6, start=START).due(START + 120)
    often = TrafficGenerator(TrafficProfile(**profile), seed=6, start=START)
    polled = [m for step in range(1, 1201) for m in often.due(START + step / 10)]
    assert polled == once and often.stats.surge_questions > 10


def test_support_contacts_are_rated_after_the_profiles_delay() -> None:
    profile = TrafficProfile(
        sessions_per_second=20, user_types={"help_seeker": 1.0}, support_feedback_delay=8.0
    )
    events = [
        parse_event(m.value, m.topic) for m in drain(TrafficGenerator(profile, seed=2, start=START), 60)
    ]
    contacts = {(e.user_id, round(e.event_time * 1000)) for e in events if e.event_type == "support_contact"}
    rated = [e for e in events if e.event_type == "feedback" and "order_id" not in e.attrs]
    assert len(rated) > 100
    for event in rated:  # 8 s later, to the millisecond (times are sent in whole ms)
        at = round((event.event_time - 8.0) * 1000)
        assert any((event.user_id, at + d) in contacts for d in (-1, 0, 1))


def test_hesitating_carts_wait_while_their_user_browses_on() -> None:
    """With ``cart_hesitation_share`` on, that share of the carts sees product pages for at least
    ``cart_hesitation_seconds`` after the last item added, before the checkout (or the session's end):
    the wait the ``purchase_hesitation`` signal looks for. Off (the default), no cart waits that long."""

    def waits(share: float) -> list[float]:
        profile = TrafficProfile(
            sessions_per_second=5, user_types={"buyer": 1.0}, cart_hesitation_share=share
        )
        events = [
            parse_event(m.value, m.topic) for m in drain(TrafficGenerator(profile, seed=4, start=START), 120)
        ]
        sessions: dict[str, list] = defaultdict(list)
        for event in events:
            if event.source == CLICKSTREAM and "session_id" in event.attrs:
                sessions[event.attrs["session_id"]].append(event)
        found = []
        for clicks in sessions.values():
            carts = [e.event_time for e in clicks if e.event_type == "add_to_cart"]
            if carts:
                after = [e for e in clicks if e.event_time > carts[-1] and e.event_type == "page_view"]
                checkout = [e.event_time for e in clicks if e.event_type == "checkout_start"]
                browsed = [e.event_time for e in after if not checkout or e.event_time <= checkout[0]]
                found.append(max(browsed, default=carts[-1]) - carts[-1])
        return found

    hesitating, default = waits(0.5), waits(0.0)
    assert len(hesitating) > 200 and len(default) > 200
    share = sum(w >= 70.0 for w in hesitating) / len(hesitating)
    assert 0.4 < share < 0.6
    assert max(default) < 70.0


def test_chats_carry_their_users_planted_emotions_and_needs(process_run: ProcessRun) -> None:
    """Every customer message of a chat has its truth; help-seekers and users at risk write negative
    messages far more than browsers and buyers do; a buyer's need may be another product than the one
    asked about; agents' messages have no truth."""
    run, generator = process_run, process_run.generator
    truth = {message.message_id: message for message in generator.chat_truth()}
    messages = run.of(CONVERSATIONS)
    customers = [event for event in messages if event.attrs["role"] == "customer"]
    assert {event.event_id for event in customers} == set(truth)
    assert {event.attrs["role"] for event in messages} == {"customer", "agent"}
    for event in customers:
        planted = truth[event.event_id]
        assert (planted.user_id, planted.product_id, planted.need) == (
            event.user_id,
            event.attrs["product_id"],
            event.attrs["intent_id"],
        )
        assert generator.user_type(event.user_id) == planted.user_type
    negative = Counter()
    for planted in truth.values():
        negative[planted.user_type, planted.emotion in ("anger", "frustration")] += 1
    share = {kind: negative[kind, True] / max(1, negative[kind, True] + negative[kind, False]) for kind in
             ("help_seeker", "at_risk", "buyer", "browser")}  # fmt: skip
    assert share["at_risk"] == 1.0 and share["help_seeker"] > 0.5
    assert share["buyer"] == share["browser"] == 0.0
    assert any(p.needed_product_id != p.product_id for p in truth.values() if p.user_type == "buyer")


def test_launches_share_their_categorys_age_pattern_with_noise_of_their_own() -> None:
    """Each launch's first 30 days follow the category's pattern (its top topic in each age bucket is
    one of the pattern's, most of its top three are), with shares of its own; after them its steady mix."""
    catalog = load_catalog()
    mix = question_mix(catalog, random.Random(1))
    launches = launch_mix(catalog, mix, random.Random(2))
    for category, pattern in LAUNCH_TOPICS.items():
        products = catalog.launches(category)
        for bucket, focus in enumerate(pattern):
            mixes = [dict(zip(*launches[p.product_id][bucket], strict=True)) for p in products]
            for shares in mixes:
                assert sum(shares.values()) == pytest.approx(1.0)
                ranked = sorted(shares, key=shares.__getitem__, reverse=True)
                assert ranked[0] in focus and len(set(ranked[:3]) & set(focus)) >= 2, (category, bucket)
            assert mixes[0] != mixes[1]  # noise per launch
    assert [launch_bucket(days * DAY) for days in (0, 0.99, 1, 6.5, 29.9, 30, -1)] == [
        0,
        0,
        1,
        2,
        4,
        None,
        None,
    ]
    generator = TrafficGenerator(TrafficProfile(support_question_rate=1.0), seed=3, start=START)
    product = catalog.products["appliance-breeze-air"]  # 20 days old at START
    young = generator.true_mix(product.product_id, product.launched_at + 0.5 * DAY)
    assert "app_setup" in sorted(young, key=young.__getitem__)[-3:]
    steady = generator.true_mix(product.product_id, product.launched_at + 40 * DAY)
    assert set(steady) == set(CATEGORY_TOPICS["appliances"]) and young != steady
