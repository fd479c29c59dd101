"""Users idle past the idle horizon leave the worker (streams/eviction.py): how the horizon is derived
from the policy, which users the sweep picks and when, and end to end through a worker on the RocksDB
store: idle users gone (API, changelog tombstone, timers), active users and users with lasting facts
kept."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from faults import read_topic
from harness import produce, worker_env
from test_api import TOKENS, USER_ROUTE, call, path_of, write_tokens
from test_model_pipeline import metric

from streams.clock import PartitionClocks
from streams.events import Event
from streams.eviction import evictable, idle_horizon, lasting_facts, longest_window, state_windows
from streams.policy import load_policy
from streams.state import UserState, apply_event
from streams.triggers import PendingTimers
from streams.worker_process import WorkerProcess

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


def test_lasting_facts_keep_a_user_and_process_inputs_count_as_activity() -> None:
    state = UserState("u1")
    visit(state, "e1", 1000.0)
    assert lasting_facts(state) == [] and evictable(state, 100.0, now=1100.0)
    state.orders.newest = 1050.0  # an order request decided later: its idempotency needs the state
    assert not evictable(state, 100.0, now=1100.0) and evictable(state, 100.0, now=1150.0)
    state.subscriptions["sub1"] = None  # type: ignore[assignment]  # any subscription at all
    state.crm.tier = "gold"
    assert lasting_facts(state) == ["subscriptions", "crm"] and not evictable(state, 100.0, now=1e12)


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
    # The lingering user goes at the horizon, before their dwell: their timer goes with them.
    assert sorted(user for user, _, _ in due) == ["idle", "pay"] and all(now == 1060.0 for *_, now in due)
    for user, _, now in due:
        assert evictable({"idle": idle, "pay": lingering}[user], 60.0, now)
        pending.answered(user)  # what track_users does after deleting them
    assert pending.due(clocks, {0}, wall=1089.0) == []
    assert [user for user, _, _ in pending.due(clocks, {0}, wall=1090.0)] == ["on"]
    # The opted-out user has no deadline at all; nothing else is left.
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
def test_a_worker_evicts_idle_users_and_keeps_the_others(broker, tmp_path: Path) -> None:
    """On the RocksDB store (the test extra installs rocksdict), with a 3 s horizon and a 4 s dwell:
    the idle users (one of them lingering on the payment page) are evicted: 404 from the API, a
    tombstone last in the changelog, and the lingering user's dwell never fires. A user active all
    along and an opted-out one stay."""
    env = worker_env(
        broker.bootstrap,
        tmp_path,
        dwell="4s",
        FOREWARN_STORE="rocksdb://",
        FOREWARN_USER_IDLE_SECONDS=str(HORIZON),
        FOREWARN_API_TOKENS_FILE=str(write_tokens(tmp_path / "api-tokens.json")),
    )
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    idle, lingering, active, opted_out = "ev-idle", "ev-pay", "ev-active", "ev-opt"

    def status(user: str) -> int:
        return call(worker.web_port, "GET", path_of(USER_ROUTE, user), TOKENS["crm-read"])[0]

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
        while time.monotonic() < evicted_by and metric(worker.metrics(), "forewarn_users_evicted_total") < 2:
            now = int(time.time() * 1000)
            asyncio.run(produce(broker.bootstrap, clicks(active, now, "page_view")))
            time.sleep(0.5)
        assert metric(worker.metrics(), "forewarn_users_evicted_total") == 2
        assert status(idle) == status(lingering) == 404
        # Past the lingering user's dwell: no payment help for them (their timer went with their state).
        while time.time() * 1000 < start + 5000:
            asyncio.run(produce(broker.bootstrap, clicks(active, int(time.time() * 1000), "page_view")))
            time.sleep(0.5)
        assert status(active) == 200 and status(opted_out) == 200
        assert metric(worker.metrics(), "forewarn_users_evicted_total") == 2
        assert metric(worker.metrics(), "forewarn_interventions_total", trigger="payment_assist") == 0
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
    # The changelog ends each evicted user with a tombstone: a restarted worker does not bring them back.
    last: dict[str, bytes | None] = {}
    for message in asyncio.run(read_topic(broker.bootstrap, "forewarn-users-changelog")):
        last[orjson.loads(message.key)] = message.value
    assert last[idle] is None and last[lingering] is None
    assert last[active] is not None and last[opted_out] is not None
