"""One round of a user, as the agent runs it: events and ticks in, decisions out; a failed round undone."""

from __future__ import annotations

import pytest

from streams.contracts.events import CLICKSTREAM, Event
from streams.domain import rounds
from streams.domain.policy import load_policy
from streams.domain.rounds import StateSnapshot, run_round
from streams.domain.state import UserState

NOON = 1_764_072_000.0  # 2025-11-25T12:00:00Z
POLICY = load_policy(text='experiments = []\n[triggers.payment_assist]\ndwell = "60s"\n')


def wire(event_id: str, event_type: str, at: float, **attrs: object) -> dict:
    return Event(event_id, event_type, CLICKSTREAM, at, "u1", {"session_id": "s1", **attrs}).to_wire()


def tick(at: float) -> dict:
    return {"user_id": "u1", "now": round(at * 1000)}


def test_an_event_round_fires_what_fell_due_before_it_and_decides_at_its_time() -> None:
    state = UserState("u1")
    first = run_round(state, wire("p", "payment_page_view", NOON), tick=False, policy=POLICY)
    assert first.decisions == [] and first.event is not None and first.event.event_id == "p"
    later = run_round(state, wire("v", "page_view", NOON + 90, page="/"), tick=False, policy=POLICY)
    [decision] = later.decisions
    assert (decision.intervention.trigger, decision.intervention.event_time, decision.decision) == (
        "payment_assist",
        NOON + 60,
        "emitted",
    )
    assert state.last_contact_by_trigger == {"payment_assist": NOON + 90}  # decided at the event's time


def test_a_tick_round_fires_timers_and_releases_deferred_interventions() -> None:
    state = UserState("u1")
    run_round(state, wire("p", "payment_page_view", NOON), tick=False, policy=POLICY)
    assert run_round(state, tick(NOON + 59), tick=True, policy=POLICY).decisions == []
    done = run_round(state, tick(NOON + 61), tick=True, policy=POLICY)
    assert done.event is None and [d.intervention.trigger for d in done.decisions] == ["payment_assist"]
    night = 1_764_108_000.0  # 22:00 UTC: quiet hours, a delay notice is deferred to 08:00
    delayed = Event(
        "l1",
        "delayed",
        "logistics",
        night,
        "u1",
        {"shipment_id": "sh", "order_id": "o", "promised_eta": night, "eta": night + 86400},
    )
    [deferred] = run_round(state, delayed.to_wire(), tick=False, policy=POLICY).decisions
    assert deferred.decision == "deferred" and deferred.release_at == night + 10 * 3600
    [released] = run_round(state, tick(night + 10 * 3600), tick=True, policy=POLICY).decisions
    assert (released.intervention.intervention_id, released.decision) == (
        deferred.intervention.intervention_id,
        "emitted",
    )


def test_a_late_event_is_decided_at_the_users_latest_time() -> None:
    state = UserState("u1")
    run_round(state, wire("a", "page_view", NOON, page="/"), tick=False, policy=POLICY)
    run_round(state, wire("p", "payment_page_view", NOON + 10), tick=False, policy=POLICY)
    late = run_round(state, wire("old", "search", NOON - 100, query="q"), tick=False, policy=POLICY)
    assert late.decisions == [] and state.last_event_time == NOON + 10


def test_a_failed_round_is_undone_from_its_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    state = UserState("u1")
    run_round(state, wire("p", "payment_page_view", NOON), tick=False, policy=POLICY)
    before = state.to_dict()
    snapshot = StateSnapshot(state)

    def broken(*args: object) -> list:
        raise RuntimeError("a bug in the contact policy")

    monkeypatch.setattr(rounds, "decide", broken)
    with pytest.raises(RuntimeError):
        run_round(state, wire("v", "page_view", NOON + 90, page="/"), tick=False, policy=POLICY)
    assert state.to_dict() != before  # the round had started to change the state
    restored = snapshot.restore()
    assert restored is not None and restored.to_dict() == before


def test_an_event_delivered_again_changes_nothing_and_decides_nothing() -> None:
    from models.learners import PartitionModels

    state, models = UserState("u1"), PartitionModels()
    cart = wire("c1", "add_to_cart", NOON, sku="SKU-1", price=10.0, quantity=1)
    first = run_round(state, cart, tick=False, policy=POLICY, models=models)
    before = StateSnapshot(state).serialized
    again = run_round(state, cart, tick=False, policy=POLICY, models=models)
    assert not first.duplicate and again.duplicate
    assert (again.decisions, again.event, again.model.learned) == ([], None, [])
    assert StateSnapshot(state).serialized == before  # not counted twice: events, cart value, features
    assert state.events_seen == 1 and state.features.session.cart_adds == 1


def test_an_intervention_is_never_decided_twice_even_when_its_event_comes_back_later() -> None:
    """A session switch leaves the payment page; the payment-page view coming back after it (from
    beyond the duplicate window: here the window is emptied) would fire the same dwell again."""
    policy = load_policy(text='experiments = []\n[triggers.payment_assist]\ndwell = "60s"\n')
    state = UserState("u1")

    def event(event_id: str, event_type: str, at: float, session: str) -> dict:
        attrs = {"session_id": session, **({"query": "q"} if event_type == "search" else {})}
        return Event(event_id, event_type, CLICKSTREAM, at, "u1", attrs).to_wire()

    decided = []
    for message in (
        event("e1", "payment_page_view", NOON, "A"),
        event("e2", "search", NOON + 200, "A"),
        event("e3", "search", NOON + 300, "B"),  # another tab: session B
        event("e1", "payment_page_view", NOON, "A"),
        event("e4", "search", NOON + 400, "A"),
    ):
        state.recent_event_ids.clear()  # as if e1 had left the window of recent ids
        decided += [
            d.intervention.intervention_id
            for d in run_round(state, message, tick=False, policy=policy).decisions
        ]
    assert len(decided) == len(set(decided)) >= 1
