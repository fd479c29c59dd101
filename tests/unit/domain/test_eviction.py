"""Users idle past the idle horizon leave the worker (streams/domain/eviction.py): how the horizon is derived
from the policy, which users the sweep picks and when, and end to end through a worker on the RocksDB
store: idle users gone (API, changelog tombstone, timers), active users and users with lasting facts
kept."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from streams.contracts.events import Event
from streams.contracts.interventions import Intervention
from streams.contracts.typed import type_error
from streams.domain.clock import PartitionClocks
from streams.domain.eviction import (
    evictable,
    evicted,
    eviction_deadline,
    idle_horizon,
    lasting_facts,
    longest_window,
    state_windows,
)
from streams.domain.policy import load_policy
from streams.domain.rounds import run_round
from streams.domain.state import Subscription, UserState, apply_event, record_contact
from streams.domain.triggers import PendingTimers, next_tick
from streams.processes.catalog import load_catalog
from streams.processes.run import References, run_process
from streams.processes.tickets import load_service_points
from tests.support.faults import read_topic
from tests.support.harness import StartWorker, metric, produce, worker_env
from tests.unit.api.test_api import TOKENS, USER_ROUTE, call, path_of, write_tokens

DAY = 86400.0


def visit(state: UserState, event_id: str, at: float, kind: str = "page_view", **attrs) -> None:
    attrs = {"session_id": f"s-{event_id}", "page": "/home", **attrs}
    apply_event(state, Event(event_id, kind, "clickstream", at, state.user_id, attrs))


# --- the horizon ------------------------------------------------------------------------------------


def test_the_horizon_is_the_longest_window_of_the_loaded_policy() -> None:
    packaged = load_policy()
    windows = state_windows(packaged)
    # Every enabled trigger's cooldown and durations, every cap, the labels, the fixed windows.
    assert windows["trigger reengagement cooldown"] == 30 * DAY
    assert windows["trigger feature_tip baseline"] == 28 * DAY
    assert windows["trigger payment_assist dwell"] == 120.0
    assert windows["contact cap chat"] == DAY
    assert windows["models: churn label horizon"] == 30 * DAY
    assert idle_horizon(packaged) == 90 * DAY == max(windows.values())

    # An operator's longer window sets it; a disabled trigger's windows do not count.
    longer = load_policy(text='[models]\nchurn_horizon = "120d"\n')
    assert longest_window(longer) == ("models: churn label horizon", 120 * DAY)
    cooldown = load_policy(text='[triggers.feature_tip]\ncooldown = "200d"\n')
    assert idle_horizon(cooldown) == 200 * DAY
    disabled = load_policy(text='[triggers.feature_tip]\ncooldown = "200d"\nenabled = false\n')
    assert "trigger feature_tip cooldown" not in state_windows(disabled)
    assert idle_horizon(disabled) == 90 * DAY
    # A setting above 0 wins, even below what the policy needs (the worker warns).
    assert idle_horizon(packaged, configured=5.0) == 5.0


# --- which users, when ------------------------------------------------------------------------------


def test_lasting_facts_are_kept_and_process_inputs_and_contacts_count_as_activity() -> None:
    state = UserState("u1")
    visit(state, "e1", 1000.0)
    assert lasting_facts(state) == [] and evictable(state, 100.0, now=1100.0)
    assert evicted(state, now=1100.0) is None  # nothing lasting: deleted
    state.orders.newest = 1050.0  # an order request decided later: its idempotency needs the state
    assert not evictable(state, 100.0, now=1100.0) and evictable(state, 100.0, now=1150.0)
    state.last_contact_by_trigger["renewal_reminder"] = 1080.0  # a contact: caps count from it
    assert not evictable(state, 100.0, now=1150.0) and evictable(state, 100.0, now=1180.0)
    state.subscriptions["sub1"] = Subscription("pro", "active", 1e6, 1000.0, "s1")
    state.crm.tier = "gold"
    # Idle past the horizon, lasting facts or not: those are what is left of the user.
    assert lasting_facts(state) == ["subscriptions", "crm"] and evictable(state, 100.0, now=1180.0)
    kept = evicted(state, now=1180.0)
    assert kept is not None and kept.trimmed_at == 1180.0 and kept.crm.tier == "gold"


def test_the_sweep_ticks_idle_users_once_past_the_horizon_and_drops_their_timers() -> None:
    policy = load_policy(text='[triggers.payment_assist]\ndwell = "1h"\n')
    pending, clocks = PendingTimers(policy, idle_horizon=60.0), PartitionClocks()
    users = (UserState(user, partition=0) for user in ("idle", "pay", "on", "opt"))
    idle, lingering, active, opted_out = users
    visit(idle, "i1", 1000.0)
    visit(lingering, "p1", 1000.0, kind="payment_page_view")  # a dwell timer, due in an hour
    visit(active, "a1", 1000.0)
    visit(opted_out, "o1", 1000.0)
    opt_out = Event("o2", "preferences_updated", "preferences", 1000.0, "opt", {"opt_out": True})
    apply_event(opted_out, opt_out)
    for state in (idle, lingering, active, opted_out):
        pending.track(state)
    clocks.observe(0, event_time=1000.0, wall=1000.0)

    assert pending.due(clocks, {0}, wall=1059.0) == []
    visit(active, "a2", 1030.0)  # active again: their deadline moves on
    pending.track(active)
    due = pending.due(clocks, {0}, wall=1060.0)
    # The lingering user goes at the horizon, before their dwell: their timer goes with them. The
    # opted-out user is due too: trimmed to their preferences, which have no timer and no idle deadline.
    assert sorted(user for user, _, _ in due) == ["idle", "opt", "pay"] and all(
        now == 1060.0 for *_, now in due
    )
    for user, _, now in due:
        state = {"idle": idle, "pay": lingering, "opt": opted_out}[user]
        assert evictable(state, 60.0, now)
        pending.answered(user)  # what track_users does after deleting or trimming them
        kept = evicted(state, now)
        assert (kept is None) == (user != "opt")
        if kept is not None:
            pending.track(kept)
    assert pending.due(clocks, {0}, wall=1089.0) == []
    assert [user for user, _, _ in pending.due(clocks, {0}, wall=1090.0)] == ["on"]
    pending.answered("on")
    assert len(pending) == 0 and pending.due(clocks, {0}, wall=1e9) == []


def test_a_burst_of_idle_users_is_ticked_at_the_pace_ticks_are_answered() -> None:
    pending, clocks = PendingTimers(load_policy(), idle_horizon=60.0), PartitionClocks()
    for partition in (0, 1):
        for n in range(25):
            state = UserState(f"u{partition}-{n}", partition=partition)
            visit(state, f"e{partition}-{n}", 1000.0)
            pending.track(state)
        clocks.observe(partition, event_time=1000.0, wall=1000.0)
    first = pending.due(clocks, {0, 1}, wall=1100.0, in_flight=20)
    assert sorted(partition for _, partition, _ in first) == [0] * 10 + [1] * 10  # shared
    assert pending.due(clocks, {0, 1}, wall=1101.0, in_flight=20) == []  # none answered yet
    for user, _, _ in first[:15]:
        pending.answered(user)
    second = pending.due(clocks, {0, 1}, wall=1102.0, in_flight=20)
    assert len(second) == 15
    for user, _, _ in first[15:] + second:
        pending.answered(user)
    last = pending.due(clocks, {0, 1}, wall=1103.0, in_flight=20)
    everyone = {f"u{partition}-{n}" for partition in (0, 1) for n in range(25)}
    assert len(last) == 15 and {user for user, _, _ in first + second + last} == everyone


# --- trimming a user who holds lasting facts --------------------------------------------------------

NINETY_DAYS = 90 * DAY
T0 = 1_767_268_800.0  # 2026-01-01 12:00 UTC: the reminders below fall in the day, outside quiet hours
POLICY = load_policy(text="experiments = []")
REFERENCES = References(load_catalog(), load_service_points(), dispatch_max_km=150.0)


def wire(event_id: str, kind: str, source: str, at: float, user: str, **attrs) -> dict:
    return Event(event_id, kind, source, at, user, attrs).to_wire()


def tick(state: UserState, at: float) -> list[tuple[str, str, str]]:
    done = run_round(state, {"user_id": state.user_id, "now": int(at * 1000)}, tick=True, policy=POLICY)
    return [(d.intervention.trigger, d.decision, d.reason) for d in done.decisions]


def repair(user: str, request_id: str, at: float) -> Event:
    attrs = {
        "request_id": request_id,
        "device_id": "d1",
        "fault": "cracked",
        "latitude": 52.5,
        "longitude": 13.4,
    }
    return Event(f"q-{request_id}", "repair_requested", "service_requests", at, user, attrs)


def feed(state: UserState, *values: dict) -> None:
    for value in values:
        run_round(state, value, tick=False, policy=POLICY)


def subscriber(user: str, *, opted_out: bool = False) -> UserState:
    """A user with a browsing history, a subscription renewing in 100 days and, if ``opted_out``, an
    opt-out."""
    state = UserState(user, partition=3)
    renewal = {"subscription_id": "sub1", "plan": "pro", "status": "active", "renews_at": T0 + 100 * DAY}
    feed(
        state,
        *(
            wire(f"{user}-c{n}", kind, "clickstream", T0 + n, user, page="/p", session_id="s1")
            for n, kind in enumerate(("page_view", "payment_page_view", "page_view"))
        ),
        wire(f"{user}-s", "subscription_updated", "subscriptions", T0, user, **renewal),
    )
    if opted_out:
        feed(state, wire(f"{user}-o", "preferences_updated", "preferences", T0, user, opt_out=True))
    return state


def test_a_trim_keeps_exactly_the_lasting_facts() -> None:
    state = subscriber("u1", opted_out=True)
    state.preferences.timezone = "Europe/Berlin"
    device = {"device_id": "d1", "category": "phones", "model": "Aster 3", "serial": "SN1"}
    run_process(state, Event("r1", "device_registered", "devices", T0, "u1", device), REFERENCES, None)
    first = run_process(state, repair("u1", "req-1", T0 + 5), REFERENCES, None).ticket
    crm = {"tier": "gold", "segments": ["b2b"]}
    run_process(state, Event("c1", "crm_attributes", "crm", T0, "u1", crm), REFERENCES, None)
    record_contact(state, Intervention("i1", "delay_notice", "notify_delay", "u1", T0, "late", "e1"), T0)
    state.feedback_tags["late"], state.crm_synced, state.orders.newest = T0, "f1", T0
    before = UserState.from_dict(orjson.loads(orjson.dumps(state)))
    fresh = UserState("u1").to_dict()
    # What the clickstream, the contact policy and the processes built is there before the trim...
    built = {name for name, value in before.to_dict().items() if value != fresh[name]}
    assert {"features", "contacts", "recent_interventions", "recent_event_ids", "abandoned_payments"} <= built
    assert {"sessions", "activity", "feedback_tags", "crm_synced", "orders", "events_seen"} <= built

    kept = evicted(state, now=T0 + NINETY_DAYS)
    # ...and only the lasting facts after it: preferences (the opt-out, the time zone), the
    # subscription (with its reminder state), the devices with their service history, the CRM's
    # attributes; the book's recent request ids go.
    assert kept is not None
    left = {name for name, value in kept.to_dict().items() if value != fresh[name]}
    assert left == {
        "partition",
        "last_event_time",
        "preferences",
        "subscriptions",
        "devices",
        "crm",
        "trimmed_at",
    }
    assert (kept.partition, kept.last_event_time, kept.trimmed_at) == (3, T0 + 2, T0 + NINETY_DAYS)
    assert kept.preferences == before.preferences and kept.preferences.opt_out
    assert kept.subscriptions == before.subscriptions and kept.crm == before.crm
    assert kept.devices.devices == before.devices.devices and kept.devices.requests == {}
    # A later repair request gets the device and its history; the old request, redelivered, no ticket.
    assert first is not None
    later = run_process(kept, repair("u1", "req-2", T0 + 200 * DAY), REFERENCES, None).ticket
    assert later is not None and later.device is not None and later.device.serial == "SN1"
    assert [entry["ticket_id"] for entry in later.history] == [first.ticket_id]
    assert run_process(kept, repair("u1", "req-1", T0 + 5), REFERENCES, None).ticket is None
    # The changelog record decodes with its types; one written before the field existed decodes too.
    record = orjson.loads(orjson.dumps(evicted(before, now=T0 + NINETY_DAYS)))
    assert type_error(UserState.from_dict(record), UserState) is None
    del record["trimmed_at"]
    assert UserState.from_dict(record).trimmed_at is None


def test_a_trimmed_user_has_no_idle_deadline_until_they_are_active_again() -> None:
    state = subscriber("u1", opted_out=True)
    pending = PendingTimers(POLICY, idle_horizon=NINETY_DAYS)
    kept = evicted(state, now=T0 + NINETY_DAYS)
    assert kept is not None and eviction_deadline(kept, NINETY_DAYS) is None
    assert not evictable(kept, NINETY_DAYS, now=1e12)
    pending.track(kept)  # the renewal reminder's timer, and nothing else
    assert next_tick(kept, POLICY, NINETY_DAYS) == T0 + 93 * DAY and len(pending) == 1
    # A tick sent again while the trimming one was on its way: nothing due, still trimmed.
    assert tick(kept, T0 + NINETY_DAYS) == [] and kept.trimmed_at == T0 + NINETY_DAYS
    # Lasting facts arriving (a CRM update, a device) are no activity: still trimmed.
    crm = Event("c1", "crm_attributes", "crm", T0 + 91 * DAY, "u1", {"tier": "gold"})
    device = {"device_id": "d1", "category": "phones", "model": "Aster 3"}
    for fact in (crm, Event("r1", "device_registered", "devices", T0 + 91 * DAY, "u1", device)):
        run_process(kept, fact, REFERENCES, None)
    assert eviction_deadline(kept, NINETY_DAYS) is None and lasting_facts(kept)[-2:] == ["devices", "crm"]

    # A new event gives a deadline again, even one timed before the trim that arrives after it.
    late = evicted(subscriber("late", opted_out=True), now=T0 + 100 * DAY)
    assert late is not None
    feed(late, wire("late-1", "page_view", "clickstream", T0 + 10, "late", page="/"))
    assert eviction_deadline(late, NINETY_DAYS) == T0 + 10 + NINETY_DAYS  # so evicted again at once
    assert evictable(late, NINETY_DAYS, now=T0 + 100 * DAY) and late.preferences.opt_out
    back = T0 + 120 * DAY
    feed(kept, wire("u1-back", "page_view", "clickstream", back, "u1", page="/"))
    assert kept.trimmed_at is None and eviction_deadline(kept, NINETY_DAYS) == back + NINETY_DAYS
    # So does a repair request.
    again = evicted(kept, now=back + NINETY_DAYS)
    assert again is not None and eviction_deadline(again, NINETY_DAYS) is None
    run_process(again, repair("u1", "req-9", back + 100 * DAY), REFERENCES, None)
    assert eviction_deadline(again, NINETY_DAYS) == back + 100 * DAY + NINETY_DAYS


def test_a_trimmed_subscriber_is_reminded_once_and_an_opt_out_holds() -> None:
    reminded = evicted(subscriber("sub"), now=T0 + NINETY_DAYS)
    opted_out = evicted(subscriber("opt", opted_out=True), now=T0 + NINETY_DAYS)
    assert reminded is not None and opted_out is not None
    due = T0 + 93 * DAY  # 7 days before the renewal
    assert tick(reminded, due) == [("renewal_reminder", "emitted", "")]
    assert tick(opted_out, due) == [("renewal_reminder", "suppressed", "opted_out")]
    # The reminder is a contact: kept for the horizon after it (caps count it), then trimmed again, and
    # the renewal is not reminded of twice.
    assert eviction_deadline(reminded, NINETY_DAYS) == due + NINETY_DAYS
    assert tick(reminded, due + DAY) == []
    reminded = evicted(reminded, now=due + NINETY_DAYS)
    assert reminded is not None and reminded.contacts == {} and reminded.subscriptions["sub1"].reminded_for
    assert next_tick(reminded, POLICY, NINETY_DAYS) is None
    # The opted-out user's suppressed reminder leaves no contact: trimmed again at once, still opted out.
    assert evictable(opted_out, NINETY_DAYS, now=due)
    opted_out = evicted(opted_out, now=due)
    assert opted_out is not None and opted_out.preferences.opt_out and opted_out.decided == []
    assert next_tick(opted_out, POLICY, NINETY_DAYS) is None


# --- end to end -------------------------------------------------------------------------------------

HORIZON = 3.0


def clicks(user: str, at_ms: int, *kinds: str) -> list[tuple[str, bytes, bytes]]:
    return [
        (
            "clickstream",
            user.encode(),
            orjson.dumps(
                {
                    "event_id": f"{user}-{at_ms}-{n}",
                    "event_type": kind,
                    "event_time": at_ms + n,
                    "user_id": user,
                    "session_id": f"{user}-s",
                    "page": "/home",
                }
            ),
        )
        for n, kind in enumerate(kinds)
    ]


@pytest.mark.integration
def test_a_worker_evicts_idle_users_and_keeps_the_others(
    broker, tmp_path: Path, start_worker: StartWorker
) -> None:
    """On the RocksDB store (the test extra installs rocksdict), with a 3 s horizon and a 4 s dwell:
    the idle users (one of them lingering on the payment page) are deleted: 404 from the API, a
    tombstone last in the changelog, and the lingering user's dwell never fires. The idle opted-out
    user is trimmed, once: the API shows their opt-out and no history, and so does the last changelog
    record. A user active all along stays whole."""
    env = worker_env(
        broker.bootstrap,
        tmp_path,
        dwell="4s",
        FOREWARN_STORE="rocksdb://",
        FOREWARN_USER_IDLE_SECONDS=str(HORIZON),
        FOREWARN_API_TOKENS_FILE=str(write_tokens(tmp_path / "api-tokens.json")),
    )
    worker = start_worker(env)
    idle, lingering, active, opted_out = "ev-idle", "ev-pay", "ev-active", "ev-opt"

    def read(user: str) -> tuple[int, dict]:
        status, _, body = call(worker.web_port, "GET", path_of(USER_ROUTE, user), TOKENS["crm-read"])
        return status, body

    def status(user: str) -> int:
        return read(user)[0]

    def evictions() -> tuple[float, float]:
        text = worker.metrics()
        name = "forewarn_users_evicted_total"
        return metric(text, name, how="deleted"), metric(text, name, how="trimmed")

    try:
        start = int(time.time() * 1000)
        preferences = orjson.dumps(
            {
                "event_id": "ev-opt-pref",
                "event_type": "preferences_updated",
                "event_time": start,
                "user_id": opted_out,
                "opt_out": True,
            }
        )
        asyncio.run(
            produce(
                broker.bootstrap,
                clicks(idle, start, "page_view")
                + clicks(lingering, start, "page_view", "payment_page_view")
                + clicks(opted_out, start, "page_view")
                + [("preferences", opted_out.encode(), preferences)],
            )
        )
        evicted_by = time.monotonic() + 30
        while time.monotonic() < evicted_by and evictions() < (2, 1):
            now = int(time.time() * 1000)
            asyncio.run(produce(broker.bootstrap, clicks(active, now, "page_view")))
            time.sleep(0.5)
        assert evictions() == (2, 1)
        assert status(idle) == status(lingering) == 404
        code, body = read(opted_out)
        view = body["state"]
        assert code == 200 and view["preferences"]["opt_out"] is True
        assert (view["events_seen"], view["sessions"], body["recent_interventions"]) == (0, 0, [])
        # Past the lingering user's dwell: no payment help for them (their timer went with their state).
        while time.time() * 1000 < start + 5000:
            asyncio.run(produce(broker.bootstrap, clicks(active, int(time.time() * 1000), "page_view")))
            time.sleep(0.5)
        assert status(active) == 200 and status(opted_out) == 200
        assert evictions() == (2, 1)  # the trimmed user is not ticked again
        assert metric(worker.metrics(), "forewarn_interventions_total", trigger="payment_assist") == 0
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
    # The changelog ends each evicted user with a tombstone: a restarted worker does not bring them back.
    last: dict[str, bytes | None] = {}
    for message in asyncio.run(read_topic(broker.bootstrap, "forewarn-users-changelog")):
        last[orjson.loads(message.key)] = message.value
    assert last[idle] is None and last[lingering] is None
    assert last[active] is not None and last[opted_out] is not None
    trimmed = UserState.from_dict(orjson.loads(last[opted_out]))
    assert trimmed.trimmed_at is not None and trimmed.preferences.opt_out
    assert (trimmed.events_seen, trimmed.recent_event_ids, trimmed.features) == (
        0,
        [],
        UserState("").features,
    )
