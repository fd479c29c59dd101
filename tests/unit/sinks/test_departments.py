"""Cross-department response times in ClickHouse: the progress records through the sink's row functions
into an embedded ClickHouse built from the migrations, the views per service point, team and week, the
automation share, erasure and retention of the new tables, and the report's figures and trend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from sinks.clickhouse import ClickHouseStore
from sinks.departments import (
    DepartmentReport,
    Trend,
    WeekFigures,
    automation_share,
    department_report,
    figure_trend,
    format_department_report,
    format_trend,
)
from sinks.erasure import erase_user
from sinks.retention import retention_plan
from sinks.rows import FEEDBACK_TAGS, FEEDBACK_UPDATES, TICKET_UPDATES, TICKETS, TableSpec
from streams.contracts.erasure import Erasure
from streams.contracts.events import Event
from streams.contracts.privacy import Pseudonymizer, pseudonymize_row, spec_tables
from streams.contracts.time import iso_time
from streams.processes.desk import (
    DeskBook,
    apply_feedback_update,
    apply_ticket_update,
    remember_feedback,
    remember_ticket,
)

MONDAY = 1_793_059_200.0  # 2026-10-26 00:00 UTC, a Monday
HOUR, DAY = 3600.0, 86400.0
PSEUDONYMIZE = Pseudonymizer(b"departments-test-key-0123456789ab")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClickHouseStore]:
    store = ClickHouseStore(f"chdb://{tmp_path / 'ch'}")
    store.apply_schema()
    yield store
    store.close()


def insert(
    store: ClickHouseStore, spec: TableSpec, records: list[dict[str, Any]], first_offset: int = 0
) -> None:
    rows = []
    for offset, record in enumerate(records, first_offset):
        row = spec.to_row(orjson.dumps(record), [], 0, offset)
        rows.append(pseudonymize_row(row, spec.user_index, PSEUDONYMIZE))
    store.insert(spec.table, spec.columns, rows, token=f"{spec.table}-{first_offset}")


def ticket_record(ticket_id: str, user: str, at: float, point: str | None) -> dict[str, Any]:
    """A ``tickets`` record as the sink reads it (the fields its row takes)."""
    return {
        "ticket_id": ticket_id,
        "request_id": f"r-{ticket_id[-4:]}",
        "user_id": user,
        "created_at": iso_time(at),
        "decided_at": iso_time(at),
        "device_id": "d1",
        "device": None,
        "history": [],
        "fault": "no power",
        "latitude": 52.5,
        "longitude": 13.4,
        "dispatch": "assigned" if point else "manual",
        "service_point": {"id": point, "name": point, "distance_km": 1.0} if point else None,
        "manual_reason": "" if point else "unknown_device",
    }


def uuid_of(n: int) -> str:
    return f"00000000-0000-5000-8000-{n:012d}"


# Tickets in the week of MONDAY: (ticket, user, created, dispatched point, [(status, hours after, point)]).
TICKETS_PLANNED = [
    (1, "u1", MONDAY, "sp-a", [("accepted", 2, "sp-a"), ("resolved", 10, "sp-a")]),
    (
        2,
        "u1",
        MONDAY + HOUR,
        "sp-a",
        [("accepted", 4, "sp-a"), ("resolved", 20, "sp-a"), ("reopened", 30, "sp-a")],
    ),
    (3, "u2", MONDAY + 2 * HOUR, "sp-a", []),
    (
        4,
        "u2",
        MONDAY + 3 * HOUR,
        None,
        [("accepted", 8, "sp-b"), ("on_site", 9, "sp-b"), ("resolved", 40, "sp-b")],
    ),
]


def progress_records() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Tickets and their progress records, made by the worker's own code (streams.processes.desk)."""
    tickets, progress = [], []
    books: dict[str, DeskBook] = {}
    for n, user, created, point, updates in TICKETS_PLANNED:
        book = books.setdefault(user, DeskBook())
        remember_ticket(book, uuid_of(n), created, "assigned" if point else "manual", point or "")
        tickets.append(ticket_record(uuid_of(n), user, created, point))
        for step, (status, hours, handler) in enumerate(updates):
            attrs = {"ticket_id": uuid_of(n), "status": status, "service_point_id": handler}
            event = Event(
                f"up-{n}-{step}", "ticket_updated", "ticket_updates", created + hours * HOUR, user, attrs
            )
            progress.append(apply_ticket_update(book, event).to_wire(created + hours * HOUR))
    return tickets, progress


def feedback_records() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    tagged, progress = [], []
    book = DeskBook()
    for feedback_id, teams, answers in [
        ("f1", ["product", "marketing"], [("product", "acknowledged", 1), ("marketing", "planned", 4)]),
        ("f2", ["product"], [("product", "acknowledged", 2.5), ("product", "declined", 5)]),
        ("f3", ["product"], []),
    ]:
        remember_feedback(book, feedback_id, MONDAY, teams)
        tagged.append(
            {
                "feedback_id": feedback_id,
                "user_id": "u3",
                "product_id": None,
                "event_time": iso_time(MONDAY),
                "tagged_at": iso_time(MONDAY),
                "language": "en",
                "tags": ["pricing"],
                "confidence": 0.9,
                "teams": teams,
                "sentiment": -0.5,
                "sentiment_label": "negative",
                "score": 2.0,
                "text": "too expensive",
            }
        )
        for step, (team, status, days) in enumerate(answers):
            attrs = {"feedback_id": feedback_id, "status": status, "team": team}
            event = Event(
                f"fu-{feedback_id}-{step}",
                "feedback_updated",
                "feedback_updates",
                MONDAY + days * DAY,
                "u3",
                attrs,
            )
            progress.append(apply_feedback_update(book, event).to_wire(MONDAY + days * DAY))
    return tagged, progress


def test_response_times_per_service_point_and_week(store: ClickHouseStore) -> None:
    tickets, progress = progress_records()
    insert(store, TICKETS, tickets)
    insert(store, TICKET_UPDATES, progress)
    insert(
        store, TICKET_UPDATES, progress[:2], first_offset=100
    )  # delivered twice: one row each when read FINAL
    rows = store.query(
        "SELECT toString(ticket_id), service_point_id, dispatch, status, first_response_hours,"
        " resolution_hours, reopened FROM ticket_response ORDER BY ticket_id"
    )
    assert rows == [
        (uuid_of(1), "sp-a", "assigned", "resolved", 2.0, 10.0, False),
        (uuid_of(2), "sp-a", "assigned", "reopened", 4.0, None, True),
        (uuid_of(3), "sp-a", "assigned", "open", None, None, False),
        (uuid_of(4), "sp-b", "manual", "resolved", 8.0, 40.0, False),  # its point from the desk's updates
    ]
    weekly = store.query(
        "SELECT toString(week), service_point_id, tickets, automatic_share, responded_tickets,"
        " first_response_p50_hours, first_response_p90_hours, resolved_tickets, resolution_p50_hours,"
        " reopen_rate"
        " FROM department_weekly_tickets ORDER BY service_point_id"
    )
    assert weekly == [
        ("2026-10-26", "sp-a", 3, 1.0, 2, 4.0, 4.0, 1, 10.0, 0.5),  # quantileExact: the upper of two
        ("2026-10-26", "sp-b", 1, 0.0, 1, 8.0, 8.0, 1, 40.0, 0.0),
    ]
    assert store.query("SELECT count() FROM ticket_updates FINAL") == [(len(progress),)]
    assert store.query("SELECT DISTINCT user_id FROM ticket_updates ORDER BY user_id") == sorted(
        [(PSEUDONYMIZE("u1"),), (PSEUDONYMIZE("u2"),)]
    )


def test_feedback_acknowledged_within_three_days_per_team(store: ClickHouseStore) -> None:
    tagged, progress = feedback_records()
    insert(store, FEEDBACK_TAGS, tagged)
    insert(store, FEEDBACK_UPDATES, progress)
    weekly = store.query(
        "SELECT team, feedback, acknowledged_feedback, acknowledged_within_3d, acknowledged_within_3d_share"
        " FROM department_weekly_feedback ORDER BY team"
    )
    # product: f1 in 1 day, f2 in 2.5 days, f3 never; marketing: f1 planned after 4 days (late).
    assert weekly == [("marketing", 1, 1, 0, 0.0), ("product", 3, 2, 2, 2 / 3)]
    statuses = store.query(
        "SELECT feedback_id, team, status FROM feedback_response ORDER BY feedback_id, team"
    )
    assert statuses == [
        ("f1", "marketing", "planned"),
        ("f1", "product", "acknowledged"),
        ("f2", "product", "declined"),
        ("f3", "product", "open"),
    ]


def test_the_automation_share_counts_each_kind_of_case(store: ClickHouseStore) -> None:
    tickets, _ = progress_records()
    insert(store, TICKETS, tickets)  # 3 dispatched automatically, 1 manually
    at = "2026-10-27 10:00:00"
    # Interventions: resolved by the agent; escalated; resolved then escalated; sent to the human queue;
    # only delivered (not concluded: not a case).
    cases = [
        (1, "chat", ["resolved"]),
        (2, "chat", ["escalated"]),
        (3, "chat", ["resolved", "escalated"]),
        (4, "human_queue", []),
        (5, "chat", ["delivered"]),
    ]
    for n, channel, outcomes in cases:
        store.client.command(
            "INSERT INTO interventions (intervention_id, trigger, action, channel, user_id, event_time,"
            " decided_at, reason, source_event_id, evidence, kafka_partition, kafka_offset)"
            f" VALUES ('{uuid_of(n)}', 't', 'a', '{channel}', 'p', '{at}', '{at}', '', '', '{{}}', 0, {n})"
        )
        for outcome in outcomes:
            store.client.command(
                "INSERT INTO intervention_outcomes (intervention_id, outcome, event_time, user_id, channel,"
                f" revenue, event_id) VALUES ('{uuid_of(n)}', '{outcome}', '{at}', 'p', '{channel}', 0,"
                f" 'e{n}{outcome}')"
            )
    store.client.command(
        "INSERT INTO order_commands (command_id, request_id, user_id, requested_at, decided_at, items, units,"
        " total, stock_checked, command, kafka_partition, kafka_offset)"
        f" VALUES ('{uuid_of(9)}', 'r', 'p', '{at}', '{at}', 1, 1, 10, 1, '{{}}', 0, 1)"
    )
    store.client.command(
        "INSERT INTO order_rejections (request_id, user_id, requested_at, decided_at, reason, problems,"
        f" kafka_partition, kafka_offset) VALUES ('r2', 'p', '{at}', '{at}', 'unknown_sku', '[]', 0, 1)"
    )
    kinds = store.query("SELECT kind, automated, cases FROM automation_share ORDER BY kind")
    assert kinds == [("interventions", 1, 4), ("orders", 1, 2), ("tickets", 3, 4)]
    assert automation_share(kinds) == 5 / 10
    report = department_report(store)
    assert report.kinds == kinds and report.weeks[-1].automation == 0.5


def test_the_report_reads_the_latest_week_against_the_weeks_before(store: ClickHouseStore) -> None:
    tickets, progress = progress_records()
    tagged, feedback = feedback_records()
    insert(store, TICKETS, tickets)
    insert(store, TICKET_UPDATES, progress)
    insert(store, FEEDBACK_TAGS, tagged)
    insert(store, FEEDBACK_UPDATES, feedback)
    # The week before: one ticket, first response after 8 hours.
    earlier = ticket_record(uuid_of(7), "u5", MONDAY - 7 * DAY, "sp-a")
    insert(store, TICKETS, [earlier], first_offset=50)
    book = DeskBook()
    remember_ticket(book, uuid_of(7), MONDAY - 7 * DAY, "assigned", "sp-a")
    update = Event(
        "e7",
        "ticket_updated",
        "ticket_updates",
        MONDAY - 7 * DAY + 8 * HOUR,
        "u5",
        {"ticket_id": uuid_of(7), "status": "accepted", "service_point_id": "sp-a"},
    )
    insert(store, TICKET_UPDATES, [apply_ticket_update(book, update).to_wire(0.0)], first_offset=50)
    report = department_report(store)
    assert [week.week for week in report.weeks] == ["2026-10-19", "2026-10-26"]
    latest = report.weeks[-1]
    assert (latest.tickets, latest.first_response_p50, latest.resolution_p90) == (4, 4.0, 40.0)
    assert latest.acknowledged_in_time == pytest.approx(2 / 4)  # of the 4 feedback x team pairs
    assert figure_trend(report.weeks, "first_response_p50") == Trend(4.0, 8.0)
    assert report.points[0][:3] == ("sp-a", 3, 1.0) and report.teams[1][:3] == ("product", 3, 2 / 3)
    assert department_report(store, ack_days=5).weeks[-1].acknowledged_in_time == pytest.approx(3 / 4)
    text = format_department_report(report)
    assert "week of 2026-10-26" in text
    assert "time to first response p50: 4.0 h (previous weeks 8.0 h, -50%)" in text
    # The week before has no feedback: no trend.
    assert "feedback acknowledged within 3 days: 50.0% (no earlier week)" in text


def test_an_empty_store_reports_nothing(store: ClickHouseStore) -> None:
    report = department_report(store)
    assert report.weeks == [] and "no tickets" in format_department_report(report)


def test_erasure_and_retention_cover_the_update_tables(store: ClickHouseStore) -> None:
    _, progress = progress_records()
    insert(store, TICKET_UPDATES, progress)
    _, feedback = feedback_records()
    insert(store, FEEDBACK_UPDATES, feedback)
    tables = spec_tables([TICKET_UPDATES, FEEDBACK_UPDATES])
    erasure = Erasure("req", "u1", "test", 0, 0, True, "e")
    deleted = erase_user(store, tables, erasure, PSEUDONYMIZE("u1"))
    assert deleted == {"ticket_updates": 5, "feedback_updates": 0}
    assert store.query(f"SELECT count() FROM ticket_updates WHERE user_id = '{PSEUDONYMIZE('u1')}'") == [(0,)]
    plan = retention_plan([TICKET_UPDATES, FEEDBACK_UPDATES], 365, {}, existing=set(store.tables()))
    assert plan["ticket_updates"] == ("updated_at", 365) and plan["feedback_updates"] == ("updated_at", 365)


# --- the report's logic, without ClickHouse


def test_the_trend_is_the_latest_week_against_the_mean_of_the_weeks_before() -> None:
    weeks = [WeekFigures(f"w{n}", reopen_rate=rate) for n, rate in enumerate([0.5, None, 0.1, 0.2, 0.3, 0.4])]
    trend = figure_trend(weeks, "reopen_rate")  # the 4 weeks before: None, 0.1, 0.2, 0.3 (w0 is too old)
    assert trend.value == 0.4 and trend.baseline == pytest.approx(0.2) and trend.change == pytest.approx(1.0)
    assert figure_trend(weeks, "reopen_rate", trend_weeks=5).baseline == pytest.approx(0.275)
    assert figure_trend(weeks[:1], "reopen_rate") == Trend(0.5, None)
    assert figure_trend([], "reopen_rate") == Trend(None, None)
    assert Trend(None, 2.0).change is None and Trend(1.0, 0.0).change is None
    assert format_trend(Trend(0.25, 0.2)) == "25.0% (previous weeks 20.0%, +25%)"
    assert format_trend(Trend(None, 3.0), hours=True) == "n/a (previous weeks 3.0 h, n/a)"
    assert WeekFigures("w", automated=3, cases=4).automation == 0.75 and WeekFigures("w").automation is None
    assert automation_share([]) is None


def test_the_report_text_names_every_figure() -> None:
    report = DepartmentReport(
        [WeekFigures("2026-10-26", tickets=2, first_response_p50=1.5, automated=1, cases=2)],
        [("", 1, 0.0, None, None, None, None, None)],
        [("product", 2, 0.5, 30.0)],
        [("tickets", 1, 2)],
        ack_days=5,
    )
    text = format_department_report(report)
    for label in (
        "time to first response p50",
        "time to resolution p90",
        "reopen rate",
        "tickets dispatched automatically",
        "feedback acknowledged within 5 days",
        "end-to-end automation share: 50.0%",
    ):
        assert label in text, label
    assert "(none yet): 1, 0.0%" in text and "product: 2, 50.0%, 30.0 h" in text and "tickets 1/2" in text
