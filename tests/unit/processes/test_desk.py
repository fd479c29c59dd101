"""Ticket and feedback updates: their contracts, the state machine, the checks' reasons and idempotency
(streams.processes.desk, streams.contracts.events)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from models.tagger import FeedbackTagger
from streams.contracts.events import (
    FEEDBACK_STATUSES,
    FEEDBACK_UPDATES,
    TICKET_STATUSES,
    TICKET_UPDATES,
    Event,
    InvalidEvent,
    parse_event,
)
from streams.contracts.typed import type_error
from streams.domain.state import UserState
from streams.processes import desk
from streams.processes.catalog import load_catalog
from streams.processes.desk import (
    FEEDBACK_TRANSITIONS,
    OPEN,
    TICKET_TRANSITIONS,
    DeskBook,
    apply_feedback_update,
    apply_ticket_update,
    remember_feedback,
    remember_ticket,
)
from streams.processes.run import References, run_process, tag_user_feedback
from streams.processes.tickets import load_service_points

T0 = 1_781_000_000.0
TICKET = "3f0c5f44-1d2e-5c8a-9a8b-0d6c3b1e2f10"


def ticket_update(update_id: str, status: str, at: float, ticket: str = TICKET, **extra: Any) -> Event:
    attrs = {"ticket_id": ticket, "status": status, "service_point_id": "sp-a", **extra}
    return Event(update_id, "ticket_updated", TICKET_UPDATES, at, "u1", attrs)


def feedback_update(update_id: str, status: str, at: float, team: str = "product") -> Event:
    attrs = {"feedback_id": "f1", "status": status, "team": team}
    return Event(update_id, "feedback_updated", FEEDBACK_UPDATES, at, "u1", attrs)


def book_with_ticket() -> DeskBook:
    book = DeskBook()
    remember_ticket(book, TICKET, T0, "assigned", "sp-a")
    return book


def reason(call: Any) -> str:
    with pytest.raises(InvalidEvent) as refused:
        call()
    return refused.value.reason


# --- contracts


def raw(source: str, **fields: Any) -> bytes:
    event_type = "ticket_updated" if source == TICKET_UPDATES else "feedback_updated"
    return orjson.dumps(
        {"event_id": "up1", "event_type": event_type, "event_time": 1781000000000, "user_id": "u1", **fields}
    )


def test_the_update_contracts_parse_and_refuse_with_their_reasons() -> None:
    good = parse_event(
        raw(
            TICKET_UPDATES,
            ticket_id=TICKET.upper(),
            status="on_site",
            service_point_id="sp-a",
            technician="t7",
        ),
        TICKET_UPDATES,
    )
    assert good.attrs == {
        "ticket_id": TICKET,
        "status": "on_site",
        "service_point_id": "sp-a",
        "technician": "t7",
    }
    feedback = parse_event(
        raw(FEEDBACK_UPDATES, feedback_id="f1", status="shipped", team="product"), FEEDBACK_UPDATES
    )
    assert feedback.attrs == {"feedback_id": "f1", "status": "shipped", "team": "product"}

    def refused(source: str, **fields: Any) -> str:
        return reason(lambda: parse_event(raw(source, **fields), source))

    assert (
        refused(TICKET_UPDATES, ticket_id=TICKET, status="escalated", service_point_id="sp-a")
        == "unknown_status"
    )
    assert refused(FEEDBACK_UPDATES, feedback_id="f1", status="resolved", team="product") == "unknown_status"
    assert (
        refused(TICKET_UPDATES, ticket_id="T-1", status="accepted", service_point_id="sp-a")
        == "invalid_value"
    )
    assert refused(TICKET_UPDATES, status="accepted", service_point_id="sp-a") == "missing_field"
    assert refused(FEEDBACK_UPDATES, feedback_id="f1", status="planned") == "missing_field"
    assert refused(TICKET_UPDATES, ticket_id=TICKET, status=3, service_point_id="sp-a") == "wrong_type"


# --- the state machine


def test_every_status_has_its_transitions_and_the_final_ones_none() -> None:
    assert set(TICKET_TRANSITIONS) == {OPEN, *TICKET_STATUSES}
    assert set(FEEDBACK_TRANSITIONS) == {OPEN, *FEEDBACK_STATUSES}
    assert all(targets <= set(TICKET_STATUSES) for targets in TICKET_TRANSITIONS.values())
    assert TICKET_TRANSITIONS["cancelled"] == frozenset() and TICKET_TRANSITIONS["resolved"] == {"reopened"}
    assert "reopened" not in TICKET_TRANSITIONS[OPEN]  # only a resolved ticket can be reopened
    assert FEEDBACK_TRANSITIONS["shipped"] == FEEDBACK_TRANSITIONS["declined"] == frozenset()


def test_a_ticket_goes_through_its_life_with_a_reopen() -> None:
    book = book_with_ticket()
    steps = ["accepted", "technician_assigned", "on_site", "resolved", "reopened", "on_site", "resolved"]
    made = [
        apply_ticket_update(book, ticket_update(f"u{n}", status, T0 + 60 * n))
        for n, status in enumerate(steps)
    ]
    assert [progress.previous_status for progress in made] == [OPEN, *steps[:-1]]
    assert [progress.first_response for progress in made] == [True] + [False] * 6
    assert [progress.reopens for progress in made] == [0, 0, 0, 0, 1, 1, 1]
    assert made[0].ticket_created_at == T0 and made[0].dispatch == "assigned"
    wire = made[-1].to_wire(T0 + 999)
    assert wire["status"] == "resolved" and wire["updated_at"] == "2026-06-09T10:19:20.000Z"
    assert book.tickets[TICKET].status == "resolved"


@pytest.mark.parametrize(
    ("before", "status"),
    [
        (["accepted", "cancelled"], "resolved"),
        (["resolved"], "on_site"),
        ([], "reopened"),
        (["cancelled"], "reopened"),
    ],
)
def test_a_status_the_machine_does_not_allow_is_an_invalid_transition(before: list[str], status: str) -> None:
    book = book_with_ticket()
    for n, step in enumerate(before):
        apply_ticket_update(book, ticket_update(f"b{n}", step, T0 + n))
    kept = book.to_dict()
    assert (
        reason(lambda: apply_ticket_update(book, ticket_update("x", status, T0 + 100)))
        == "invalid_transition"
    )
    assert book.to_dict() == kept  # refused: nothing changed


def test_updates_for_unknown_tickets_and_out_of_order_ones_are_refused() -> None:
    book = book_with_ticket()
    other = "00000000-0000-5000-8000-000000000000"
    assert (
        reason(lambda: apply_ticket_update(book, ticket_update("a", "accepted", T0, ticket=other)))
        == "unknown_ticket"
    )
    assert reason(lambda: apply_ticket_update(book, ticket_update("b", "accepted", T0 - 1))) == "out_of_order"
    apply_ticket_update(book, ticket_update("c", "accepted", T0 + 50))
    assert (
        reason(lambda: apply_ticket_update(book, ticket_update("d", "resolved", T0 + 49))) == "out_of_order"
    )
    assert (
        apply_ticket_update(book, ticket_update("e", "resolved", T0 + 50)) is not None
    )  # equal times are fine


def test_a_repeated_update_id_is_taken_once_and_not_refused() -> None:
    book = book_with_ticket()
    assert apply_ticket_update(book, ticket_update("a", "accepted", T0 + 1)) is not None
    apply_ticket_update(book, ticket_update("b", "cancelled", T0 + 2))
    kept = book.to_dict()
    # Redelivered after later updates: no progress, no refusal (not an out-of-order or invalid transition).
    assert apply_ticket_update(book, ticket_update("a", "accepted", T0 + 1)) is None
    assert book.to_dict() == kept


def test_feedback_is_answered_per_team() -> None:
    book = DeskBook()
    remember_feedback(book, "f1", T0, ["product"])
    ack = apply_feedback_update(book, feedback_update("p1", "acknowledged", T0 + 3600))
    assert (ack.previous_status, ack.first_response, ack.routed, ack.feedback_at) == (OPEN, True, True, T0)
    marketing = apply_feedback_update(book, feedback_update("m1", "planned", T0 + 60, team="marketing"))
    assert marketing.first_response and not marketing.routed  # passed on: taken, marked not routed
    assert (
        apply_feedback_update(book, feedback_update("p2", "shipped", T0 + 7200)).previous_status
        == "acknowledged"
    )
    assert apply_feedback_update(book, feedback_update("p2", "shipped", T0 + 7200)) is None
    assert (
        reason(lambda: apply_feedback_update(book, feedback_update("p3", "planned", T0 + 9000)))
        == "invalid_transition"
    )
    assert reason(
        lambda: apply_feedback_update(book, feedback_update("m2", "shipped", T0 + 30, "marketing"))
    ) == ("out_of_order")
    assert (
        reason(lambda: apply_feedback_update(book, feedback_update("x", "planned", T0 - 5, "legal")))
        == "out_of_order"
    )
    unknown = Event(
        "y",
        "feedback_updated",
        FEEDBACK_UPDATES,
        T0,
        "u1",
        {"feedback_id": "f9", "status": "planned", "team": "product"},
    )
    assert reason(lambda: apply_feedback_update(book, unknown)) == "unknown_feedback"


def test_the_book_is_bounded_and_survives_the_state_round_trip() -> None:
    book = DeskBook()
    for n in range(desk.MAX_TICKETS + 5):
        remember_ticket(book, f"t{n}", T0 + n, "manual", "")
    assert (
        len(book.tickets) == desk.MAX_TICKETS
        and "t0" not in book.tickets
        and f"t{desk.MAX_TICKETS + 4}" in book.tickets
    )
    for n in range(desk.MAX_UPDATE_IDS + 3):
        apply_ticket_update(
            book, ticket_update(f"u{n}", "technician_assigned", T0 + 100 + n, ticket=f"t{desk.MAX_TICKETS}")
        )
    assert len(book.tickets[f"t{desk.MAX_TICKETS}"].updates) == desk.MAX_UPDATE_IDS
    remember_feedback(book, "f1", T0, ["product", "marketing"])
    state = UserState("u1", desk=book)
    again = UserState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    assert again.desk == book
    assert type_error(again, UserState) is None  # what the users table's codec checks at recovery
    assert UserState.from_dict({"user_id": "u2"}).desk == DeskBook()  # a record from before the book


def test_the_processes_remember_tickets_and_feedback_and_take_their_updates() -> None:
    references = References(load_catalog(), load_service_points(), dispatch_max_km=150.0)
    state = UserState("u1")
    request = Event(
        "s1",
        "repair_requested",
        "service_requests",
        T0,
        "u1",
        {"request_id": "r1", "device_id": "d9", "fault": "no power", "latitude": 52.5, "longitude": 13.4},
    )
    ticket = run_process(state, request, references, stock=None).ticket
    assert state.desk.tickets[ticket.ticket_id].dispatch == "manual"
    update = ticket_update("up1", "accepted", T0 + 600, ticket=ticket.ticket_id)
    done = run_process(state, update, references, stock=None)
    assert done.emitted() == [done.progress] and done.progress.service_point_id == "sp-a"
    assert run_process(state, update, references, stock=None).duplicate
    comment = Event("f1", "feedback", "clickstream", T0, "u1", {"score": 1.0, "comment": "far too expensive"})
    tagged = tag_user_feedback(state, comment, FeedbackTagger())
    assert (
        state.desk.feedback["f1"].teams == list(tagged.teams) and state.desk.feedback["f1"].created_at == T0
    )
