"""Per-user state updates and both triggers, on hand-computed examples."""

from __future__ import annotations

import orjson
import pytest

from models.examples import Snapshot
from models.features import FEATURE_NAMES
from streams.contracts.events import CLICKSTREAM, LOGISTICS, Event
from streams.contracts.interventions import DELAY_NOTICE, PAYMENT_ASSIST, intervention_id
from streams.contracts.time import iso_time
from streams.domain.clock import PartitionClocks
from streams.domain.contact import decide
from streams.domain.experiments import assign_arm
from streams.domain.policy import load_policy
from streams.domain.state import MAX_OPEN_SHIPMENTS, MAX_REMEMBERED_ORDERS, UserState, apply_event
from streams.domain.triggers import (
    COMPACT_SLACK,
    TICK_RESEND_SECONDS,
    PendingTimers,
    check_payment_dwell,
    process_event,
)

# The packaged default policy: payment dwell 120 s, ETA slip 2 h.
RULES = load_policy()
H = 3600.0
PROMISED = 1_000_000.0


def click(event_id: str, event_type: str, time: float, **attrs: object) -> Event:
    return Event(event_id, event_type, CLICKSTREAM, time, "u1", dict(attrs))


def ship(event_id: str, event_type: str, time: float, **attrs: object) -> Event:
    base = {"shipment_id": "sh1", "order_id": "o1", "promised_eta": PROMISED}
    return Event(event_id, event_type, LOGISTICS, time, "u1", {**base, **attrs})


def run(state: UserState, *events: Event) -> list:
    fired = []
    for event in events:
        fired += process_event(state, event, RULES)
    return fired


# --- state


def test_session_page_and_dwell_start() -> None:
    state = UserState("u1")
    apply_event(state, click("e1", "page_view", 100.0, page="/", session_id="s1"))
    apply_event(state, click("e2", "page_view", 130.0, page="/p/1", session_id="s1"))
    apply_event(state, click("e3", "search", 150.0, query="x", session_id="s1"))
    assert (state.session_id, state.session_start, state.session_events) == ("s1", 100.0, 3)
    assert (state.current_page, state.page_entered_at, state.last_event_time, state.events_seen) == (
        "/p/1",
        130.0,
        150.0,
        3,
    )


def test_new_session_on_new_id_and_after_the_gap() -> None:
    state = UserState("u1")
    apply_event(state, click("e1", "page_view", 100.0, page="/", session_id="s1"))
    apply_event(state, click("e2", "page_view", 200.0, page="/", session_id="s2"))
    assert (state.session_id, state.session_start, state.session_events) == ("s2", 200.0, 1)
    apply_event(state, click("e3", "page_view", 200.0 + 1800.0, page="/a"), session_gap=1800.0)
    assert state.session_start == 200.0  # exactly the gap: same session
    apply_event(state, click("e4", "page_view", 2000.0 + 1800.5, page="/b"), session_gap=1800.0)
    assert (state.session_start, state.session_events) == (3800.5, 1)


def test_payment_page_visit_lifecycle() -> None:
    state = UserState("u1")
    apply_event(state, click("p1", "payment_page_view", 100.0, cart_value=50.0))
    apply_event(state, click("p2", "payment_page_view", 160.0))  # a reload keeps the dwell running
    assert (state.payment_entered_at, state.payment_anchor_id, state.current_page, state.cart_value) == (
        100.0,
        "p1",
        "/checkout/payment",
        50.0,
    )
    apply_event(state, click("v1", "page_view", 170.0, page="/help"))  # leaving ends the visit
    assert (state.payment_entered_at, state.payment_anchor_id, state.current_page) == (None, None, "/help")
    apply_event(state, click("p3", "payment_page_view", 180.0))
    apply_event(state, click("c1", "order_completed", 190.0, order_id="o1"))
    assert state.payment_entered_at is None and state.cart_value is None


def test_cart_value_from_items_and_from_checkout() -> None:
    state = UserState("u1")
    apply_event(state, click("a1", "add_to_cart", 10.0, sku="s", price=12.5, quantity=2))
    apply_event(state, click("a2", "add_to_cart", 11.0, sku="t", price=5.0))
    assert state.cart_value == 30.0
    apply_event(state, click("c1", "checkout_start", 12.0, cart_value=28.0))
    assert state.cart_value == 28.0


def test_late_clickstream_event_does_not_move_the_page_back() -> None:
    state = UserState("u1")
    apply_event(state, click("e2", "page_view", 200.0, page="/new", session_id="s1"))
    apply_event(state, click("e1", "page_view", 150.0, page="/old", session_id="s1"))
    assert (state.current_page, state.page_entered_at, state.last_event_time, state.session_events) == (
        "/new",
        200.0,
        200.0,
        2,
    )


def test_a_payment_page_read_after_the_payment_starts_no_dwell() -> None:
    """Read out of order (a record read again after later ones): the payment already ended the visit."""
    state = UserState("u1")
    apply_event(state, click("v", "page_view", 100.0, page="/p/phone", session_id="s1"))
    apply_event(state, click("paid", "payment_completed", 700.0, order_id="o1", session_id="s1"))
    apply_event(state, click("pay", "payment_page_view", 200.0, session_id="s1"))
    assert state.payment_entered_at is None and state.current_page == "/p/phone"
    assert check_payment_dwell(state, 700.0 + 10 * H, RULES) == []
    assert state.session_events == 3


def test_shipment_lifecycle_and_late_updates() -> None:
    state = UserState("u1")
    apply_event(state, ship("l1", "shipment_created", 10.0))
    apply_event(state, ship("l3", "eta_changed", 30.0, eta=PROMISED + H))
    apply_event(state, ship("l2", "in_transit", 20.0, eta=PROMISED))  # older than what we hold: ignored
    shipment = state.open_shipments["sh1"]
    assert (shipment.eta, shipment.status, shipment.updated_at) == (PROMISED + H, "eta_changed", 30.0)
    apply_event(state, ship("l4", "exception", 40.0, exception_code="damaged"))
    assert (shipment.status, shipment.exception_code) == ("exception", "damaged")
    apply_event(state, ship("l5", "delivered", 50.0))
    assert state.open_shipments == {} and state.closed_shipments == {"sh1": 50.0}
    apply_event(state, ship("l6", "delayed", 60.0, eta=PROMISED + 9 * H))  # about a delivered shipment
    assert state.open_shipments == {}


def test_state_is_bounded() -> None:
    state = UserState("u1")
    for index in range(MAX_OPEN_SHIPMENTS + 5):
        apply_event(state, ship(f"l{index}", "shipment_created", float(index), shipment_id=f"sh{index}"))
        apply_event(state, click(f"c{index}", "support_contact", float(index), order_id=f"o{index}"))
    assert len(state.open_shipments) == MAX_OPEN_SHIPMENTS and "sh0" not in state.open_shipments
    assert (
        len(state.support_contacts) == MAX_REMEMBERED_ORDERS
        and f"o{MAX_OPEN_SHIPMENTS + 4}" in state.support_contacts
    )


def test_state_round_trips_through_json_as_the_table_codec_does() -> None:
    state = UserState("u1", partition=3)
    apply_event(state, click("p1", "payment_page_view", 100.0, session_id="s"))
    apply_event(state, ship("l1", "delayed", 110.0, eta=PROMISED + 3 * H))
    apply_event(state, click("c1", "support_contact", 120.0, order_id="o1"))
    assert UserState.from_dict(orjson.loads(orjson.dumps(state))) == state
    assert UserState.from_dict(state.to_dict()) == state


# --- payment dwell


def test_dwell_fires_exactly_at_the_threshold_once_per_visit() -> None:
    state = UserState("u1")
    apply_event(state, click("p1", "payment_page_view", 100.0))
    assert check_payment_dwell(state, 219.999, RULES) == []
    [fired] = check_payment_dwell(state, 220.0, RULES)
    assert (fired.trigger, fired.event_time, fired.source_event_id, fired.intervention_id) == (
        PAYMENT_ASSIST,
        220.0,
        "p1",
        intervention_id(PAYMENT_ASSIST, "u1", "p1"),
    )
    assert fired.evidence["entered_payment_page_at"] == iso_time(100.0)
    assert check_payment_dwell(state, 500.0, RULES) == []
    # Leave and come back: a new visit, a new anchor, a new id.
    run(state, click("v1", "page_view", 600.0, page="/"), click("p2", "payment_page_view", 610.0))
    [again] = check_payment_dwell(state, 730.0, RULES)
    assert again.intervention_id == intervention_id(PAYMENT_ASSIST, "u1", "p2") != fired.intervention_id


def test_dwell_due_before_a_later_event_fires_at_its_own_time() -> None:
    state = UserState("u1")
    fired = run(
        state, click("p1", "payment_page_view", 100.0), click("c1", "payment_completed", 300.0, order_id="o")
    )
    assert [(i.trigger, i.event_time) for i in fired] == [(PAYMENT_ASSIST, 220.0)]


def test_paying_in_time_fires_nothing() -> None:
    state = UserState("u1")
    fired = run(
        state, click("p1", "payment_page_view", 100.0), click("c1", "payment_completed", 219.0, order_id="o")
    )
    assert fired == [] and check_payment_dwell(state, 10_000.0, RULES) == []


def on_payment_page(user: str, partition: int, entered: float) -> UserState:
    state = UserState(user, partition=partition)
    apply_event(state, Event(f"{user}-p", "payment_page_view", CLICKSTREAM, entered, user, {}))
    return state


def test_sweep_ticks_only_due_users_of_active_partitions_and_not_again_while_a_tick_is_on_its_way() -> None:
    pending, clocks = PendingTimers(RULES), PartitionClocks()
    W = 10_000.0  # wall time: the events replayed are older
    due_soon = on_payment_page("a", 0, 100.0)
    later = on_payment_page("b", 0, 150.0)
    standby = on_payment_page("c", 1, 100.0)
    for state in (due_soon, later, standby):
        pending.track(state)
    clocks.observe(0, 200.0, wall=W + 0.0)
    clocks.observe(1, 200.0, wall=W + 0.0)
    assert pending.due(clocks, active={0}, wall=W + 19.999) == []
    assert pending.due(clocks, active={0}, wall=W + 20.0) == [("a", 0, 220.0)]  # exactly at the threshold
    assert pending.due(clocks, active={0}, wall=W + 20.0 + TICK_RESEND_SECONDS) == []  # "a" still on its way
    # A tick lost (its partition moved and back): sent again once the resend interval has passed.
    assert pending.due(clocks, active={0}, wall=W + 20.1 + TICK_RESEND_SECONDS) == [
        ("a", 0, pytest.approx(225.1))
    ]
    # A tick that arrives and finds nothing fired (its state moved meanwhile) files the user again.
    pending.answered("a")
    pending.track(due_soon)
    assert sorted(user for user, _, _ in pending.due(clocks, active={0, 1}, wall=W + 70.0)) == ["a", "b", "c"]


def test_sweep_forgets_users_whose_dwell_fired_or_who_left() -> None:
    pending = PendingTimers(RULES)
    fired, left = on_payment_page("a", 0, 100.0), on_payment_page("b", 0, 100.0)
    pending.track(fired)
    pending.track(left)
    assert len(pending) == 2
    check_payment_dwell(fired, 220.0, RULES)
    apply_event(left, Event("b-v", "page_view", CLICKSTREAM, 130.0, "b", {"page": "/"}))
    pending.track(fired)
    pending.track(left)
    assert len(pending) == 0


def test_sweep_index_is_rebuilt_from_the_table_after_a_rebalance() -> None:
    """A partition whose clock has seen no event since the worker started resumes from the user's own
    last event time, then moves on with the wall clock."""
    pending, clocks = PendingTimers(RULES), PartitionClocks()
    pending.track(on_payment_page("gone", 0, 100.0))
    recovered = [on_payment_page("a", 3, 100.0), UserState("idle", partition=3)]
    recovered[0].last_event_time = 150.0
    pending.rebuild(recovered)
    assert len(pending) == 1
    assert pending.due(clocks, active={0, 3}, wall=1000.0) == []  # clock starts at 150.0 now
    assert pending.due(clocks, active={0, 3}, wall=1070.0) == [("a", 3, 220.0)]


def test_replaying_events_does_not_fire_twice() -> None:
    state = UserState("u1")
    events = [click("p1", "payment_page_view", 100.0), click("s1", "search", 400.0, query="help")]
    assert len(run(state, *events)) == 1
    assert run(state, *events) == []


# --- shipment delay


def test_slip_exactly_at_the_threshold_does_not_fire_above_it_does() -> None:
    state = UserState("u1")
    assert (
        run(
            state, ship("l1", "shipment_created", 10.0), ship("l2", "eta_changed", 20.0, eta=PROMISED + 2 * H)
        )
        == []
    )
    [notice] = run(state, ship("l3", "eta_changed", 30.0, eta=PROMISED + 2 * H + 1))
    assert (notice.trigger, notice.action, notice.event_time, notice.source_event_id) == (
        DELAY_NOTICE,
        "notify_delay",
        30.0,
        "l3",
    )
    assert notice.intervention_id == intervention_id(DELAY_NOTICE, "u1", "sh1\x1fl3")
    assert notice.evidence["slip_seconds"] == 7201.0 and notice.evidence["eta"] == iso_time(
        PROMISED + 2 * H + 1
    )


def test_a_further_slip_is_told_again_only_past_the_threshold() -> None:
    state = UserState("u1")
    assert len(run(state, ship("l1", "delayed", 10.0, eta=PROMISED + 3 * H))) == 1
    assert run(state, ship("l2", "delayed", 20.0, eta=PROMISED + 4.5 * H)) == []  # 1.5 h more
    [again] = run(state, ship("l3", "delayed", 30.0, eta=PROMISED + 5 * H))  # 2 h past the ETA told
    assert again.reason == "ETA slipped 5.0h past the promised ETA"


def test_exception_fires_once_and_delivered_never() -> None:
    state = UserState("u1")
    [notice] = run(state, ship("l1", "exception", 10.0, exception_code="customs_hold"))
    assert notice.reason == "shipment exception customs_hold" and notice.evidence["status"] == "exception"
    assert run(state, ship("l2", "exception", 20.0, exception_code="customs_hold")) == []
    assert run(state, ship("l3", "delivered", 30.0), ship("l4", "delayed", 40.0, eta=PROMISED + 9 * H)) == []


def test_evidence_says_whether_the_customer_had_already_asked() -> None:
    asked, silent = UserState("u1"), UserState("u1")
    run(asked, click("c1", "support_contact", 5.0, order_id="o1", reason="delivery"))
    [told_late] = run(asked, ship("l1", "delayed", 10.0, eta=PROMISED + 3 * H))
    [told_first] = run(silent, ship("l1", "delayed", 10.0, eta=PROMISED + 3 * H))
    assert told_late.evidence["support_contacted_before"] is True
    assert told_first.evidence["support_contacted_before"] is False


def test_intervention_and_decision_wire_formats() -> None:
    state = UserState("u1")
    [notice] = run(state, ship("l1", "delayed", 1_764_000_000.5, eta=PROMISED + 3 * H))
    [decision] = decide([notice], state, RULES, now=1_764_000_000.5)  # 16:00 UTC: no quiet hours
    arm = assign_arm("u1", RULES.experiments[0])
    common = {
        "schema": 1,
        "intervention_id": intervention_id(DELAY_NOTICE, "u1", "sh1\x1fl1"),
        "trigger": "delay_notice",
        "action": "notify_delay",
        "channel": "chat",
        "experiment": "proactive_2026q4",
        "arm": arm,
        "offer": None,
        "user_id": "u1",
        "event_time": "2025-11-24T16:00:00.500Z",
        "decided_at": "2025-11-24T16:00:01.000Z",
        "source_event_id": "l1",
    }
    assert notice.to_wire(decided_at=1_764_000_001.0) == {
        **common,
        "template": "delay_notice_v1",
        "reason": "ETA slipped 3.0h past the promised ETA",
        "evidence": notice.evidence,
    }
    emitted = arm != "holdout"
    assert decision.to_wire(decided_at=1_764_000_001.0) == {
        **common,
        "decision": "emitted" if emitted else "suppressed",
        "reason": "" if emitted else "holdout",
        "detail": "" if emitted else "holdout arm of experiment proactive_2026q4",
        "priority": 90,
        "order_id": "o1",
    }


@pytest.mark.parametrize("trigger", [PAYMENT_ASSIST, DELAY_NOTICE])
def test_intervention_ids_differ_by_every_part(trigger: str) -> None:
    base = intervention_id(trigger, "u1", "a")
    assert base != intervention_id(trigger, "u2", "a") != intervention_id(trigger, "u1", "b")
    assert intervention_id("u1\x1fa", "", "") != intervention_id("u1", "a", "")  # no ambiguous joins


def test_sweep_heaps_stay_bounded_when_timers_move_earlier_again_and_again() -> None:
    """A churn label due 30 days on, and a payment dwell before it at every visit: each dwell leaves
    the 30-day entry behind, which would stay in the heap for 30 days of event time (found by the soak:
    about one entry per 17 events)."""
    pending = PendingTimers(RULES)
    for i in range(5000):
        user = f"u{i % 10}"
        state = on_payment_page(user, 0, 100.0 + i)
        state.pending.churn = Snapshot([0.0] * len(FEATURE_NAMES), {}, taken_at=100.0 + i)
        pending.track(state)  # the dwell, earlier than the churn label
        pending.answered(user)  # ticked
        state.payment_entered_at = None  # the dwell fired
        pending.track(state)  # filed again at the churn label's deadline
    assert len(pending) == 10
    assert sum(len(heap) for heap in pending._heaps.values()) <= 2 * len(pending) + COMPACT_SLACK


def test_a_partition_catching_up_fires_no_timer_ahead_of_the_events_waiting_on_it() -> None:
    """After a restart, a payer's payment page is in the table and their payment still waits to be read:
    the wall clock passing their dwell must not tick them while the partition is behind."""
    policy = load_policy(text='[triggers.payment_assist]\ndwell = "6s"\n')
    pending, clocks = PendingTimers(policy), PartitionClocks()
    payer = UserState("payer", partition=0)
    apply_event(payer, Event("p1", "payment_page_view", CLICKSTREAM, 100.0, "payer", {"page": "/pay"}))
    pending.track(payer)
    clocks.observe(0, event_time=100.0, wall=100.0)
    assert pending.due(clocks, {0}, wall=120.0, catching_up={0}) == []  # by the data: 100 s, not due
    clocks.observe(0, event_time=106.5, wall=121.0)  # the data itself passes the dwell
    assert [(user, now) for user, _, now in pending.due(clocks, {0}, wall=121.0, catching_up={0})] == [
        ("payer", 106.5)
    ]


def test_a_partition_caught_up_moves_its_clock_on_with_the_wall_clock() -> None:

    policy = load_policy(text='[triggers.payment_assist]\ndwell = "6s"\n')
    pending, clocks = PendingTimers(policy), PartitionClocks()
    lingerer = UserState("lingerer", partition=0)
    apply_event(lingerer, Event("l1", "payment_page_view", CLICKSTREAM, 100.0, "lingerer", {"page": "/pay"}))
    pending.track(lingerer)
    clocks.observe(0, event_time=100.0, wall=100.0)
    assert [user for user, _, _ in pending.due(clocks, {0}, wall=106.5)] == ["lingerer"]
