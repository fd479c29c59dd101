"""The service-desk and teams simulator: seeded and order-independent, updates sent only when due, the
known bad updates and duplicates, and a ground truth that Forewarn's own checks agree with."""

from __future__ import annotations

from typing import Any

import orjson

from streams.contracts.events import FEEDBACK_UPDATES, TICKET_UPDATES, InvalidEvent, parse_event
from streams.processes.desk import (
    DeskBook,
    apply_feedback_update,
    apply_ticket_update,
    remember_feedback,
    remember_ticket,
)
from streams.tools.service_desk import MANUAL_POINT, DeskProfile, ServiceDesk, exact_quantile, point_factor

T0 = 1_780_999_200.0  # 2026-06-09T10:00:00Z, when the tickets and feedback below were made
FAR = 3e9  # every update due
HOUR = 3600.0


def ticket(n: int, point: str | None = "sp-a") -> dict[str, Any]:
    return {
        "ticket_id": f"00000000-0000-5000-8000-{n:012d}",
        "user_id": f"u{n % 7}",
        "created_at": "2026-06-09T10:00:00.000Z",
        "dispatch": "assigned" if point else "manual",
        "service_point": {"id": point, "name": point, "distance_km": 1.0} if point else None,
    }


def tagged(n: int, teams: list[str]) -> dict[str, Any]:
    return {
        "feedback_id": f"f{n}",
        "user_id": f"u{n % 7}",
        "event_time": "2026-06-09T10:00:00.000Z",
        "teams": teams,
    }


def sent(desk: ServiceDesk, now: float = FAR) -> list[tuple[str, str, str]]:
    return [(planned.topic, planned.event["event_id"], planned.expect) for planned in desk.due(now)]


def test_a_seed_gives_the_same_updates_whatever_order_the_tickets_come_in() -> None:
    tickets = [ticket(n, point) for n in range(40) for point in ["sp-a" if n % 3 else None]]
    first, second, other = ServiceDesk(seed=5), ServiceDesk(seed=5), ServiceDesk(seed=6)
    for item in tickets:
        first.take_ticket(item)
        other.take_ticket(item)
    for item in reversed(tickets):
        second.take_ticket(item)
    second.take_ticket(tickets[0])  # seen before: ignored
    assert sorted(sent(first)) == sorted(sent(second))
    assert first.truth() == second.truth()
    assert sorted(sent(other)) != sorted(sent(ServiceDesk(seed=5)) or sent(first))


def test_updates_are_sent_when_their_time_has_come_in_time_order() -> None:
    desk = ServiceDesk(seed=1, profile=DeskProfile(bad=0.0, duplicate=0.0))
    desk.take_ticket(ticket(1))
    created = T0
    assert desk.due(created) == []
    first = desk.due(created + 1000 * HOUR)
    times = [planned.time for planned in first]
    assert times == sorted(times) and first and desk.due(created + 1000 * HOUR) == []
    assert all(planned.event["event_time"] <= "2026-08-20" for planned in first)


def test_every_planned_update_is_valid_or_refused_for_the_reason_it_expects() -> None:
    """The simulator's known bad updates and duplicates, put through Forewarn's own contract and checks."""
    desk = ServiceDesk(seed=3, profile=DeskProfile(bad=0.5, duplicate=0.3, cancel=0.3))
    books: dict[str, DeskBook] = {}
    for n in range(60):
        item = ticket(n, "sp-a" if n % 4 else None)
        desk.take_ticket(item)
        remember_ticket(
            books.setdefault(item["user_id"], DeskBook()), item["ticket_id"], T0, item["dispatch"], ""
        )
    for n in range(20):
        item = tagged(n, ["product", "marketing"][: 1 + n % 2])
        desk.take_feedback(item)
        remember_feedback(
            books.setdefault(item["user_id"], DeskBook()), item["feedback_id"], T0, item["teams"]
        )
    outcomes: dict[str, int] = {}
    for planned in desk.due(FAR):
        source = TICKET_UPDATES if planned.topic == "ticket_updates" else FEEDBACK_UPDATES
        try:
            event = parse_event(orjson.dumps(planned.event), source)
            apply = apply_ticket_update if source == TICKET_UPDATES else apply_feedback_update
            got = "" if apply(books[event.user_id], event) is not None else "duplicate"
        except InvalidEvent as error:
            got = error.reason
        assert got == planned.expect, planned
        outcomes[got] = outcomes.get(got, 0) + 1
    assert set(outcomes) == {
        "",
        "duplicate",
        "unknown_ticket",
        "out_of_order",
        "unknown_status",
        "invalid_transition",
    }
    assert outcomes == {kind: count for kind, count in desk.truth()["sent"].items()}


def test_the_truth_is_what_was_sent_per_point_and_team() -> None:
    profile = DeskProfile(bad=0.0, duplicate=0.0, cancel=0.0, reopen=0.0, acknowledge=1.0)
    desk = ServiceDesk(seed=2, profile=profile)
    for n in range(30):
        desk.take_ticket(ticket(n, ["sp-a", "sp-b", None][n % 3]))
    desk.take_feedback(tagged(1, ["product"]))
    planned = desk.due(FAR)
    truth = desk.truth()
    assert set(truth["points"]) == {"sp-a", "sp-b", MANUAL_POINT}
    firsts: dict[str, list[float]] = {}
    for item in planned:
        if item.topic == "ticket_updates" and item.event["status"] == "accepted":
            firsts.setdefault(item.event["service_point_id"], []).append(item.time - T0)
    for point, values in firsts.items():
        assert truth["points"][point]["first_response_p50"] == exact_quantile(values, 0.5)
        assert truth["points"][point]["responded"] == truth["points"][point]["tickets"] == 10
    # The manual queue is slower by manual_factor, on average: the known delays per point.
    assert profile.manual_factor * point_factor(MANUAL_POINT) > point_factor("sp-a") / 2
    assert truth["teams"]["product"]["feedback"] == 1
    # Nothing sent yet: no response in the truth.
    fresh = ServiceDesk(seed=2, profile=profile)
    fresh.take_ticket(ticket(1))
    assert fresh.truth()["points"]["sp-a"]["responded"] == 0


def test_scaled_profiles_keep_their_shares() -> None:
    fast = DeskProfile().scaled(1 / 3600)
    assert (
        fast.first_response == 4.0
        and fast.ack_delay["product"] == 36.0
        and fast.reopen == DeskProfile().reopen
    )
