"""The producers' wire contracts against the sink's row functions and the ClickHouse schema.

Each record is made by the code that emits it (``to_wire`` of a ticket, an order command or rejection,
tagged feedback and a hot-issue alert, :func:`streams.processes.run.question_record`,
:func:`streams.api.server.audit_record`), read by its table's row function, pseudonymised as the sink does it
and inserted into an embedded ClickHouse built from the migrations; then read back. A field renamed on
either side, a type the column refuses, or a raw user id left in a JSON column fails here."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from models.launch_faq import forecast
from models.surge import CategoryIssues, LaunchProfile, ProductInfo, Question, SurgeRules, observe
from models.tagger import FeedbackTagger, tag_feedback
from sinks.clickhouse import ClickHouseStore
from sinks.rows import (
    API_AUDIT,
    FEEDBACK_TAGS,
    HOT_ISSUES,
    LAUNCH_FAQ_FORECAST,
    ORDER_COMMANDS,
    ORDER_REJECTIONS,
    SUPPORT_QUESTIONS,
    TICKETS,
    TableSpec,
)
from streams.api.server import PREFERENCES_ROUTE, Reply, audit_record
from streams.contracts.events import Event
from streams.contracts.privacy import Pseudonymizer, pseudonymize_row
from streams.processes.catalog import load_catalog
from streams.processes.orders import (
    OrderCommand,
    OrderLedger,
    OrderRejection,
    StockLevels,
    decide_order,
    parse_stock,
)
from streams.processes.run import question_record
from streams.processes.tickets import DeviceBook, load_service_points, open_ticket, register

T0 = 1_781_000_000.0  # 2026-06-09, a Tuesday: Berlin Mitte is open at noon
WALL = T0 + 2.5
USER = "user-李-42"  # non-ASCII: JSON columns may hold it escaped or not
PSEUDONYMIZE = Pseudonymizer(b"rows-contracts-test-key-0123456789")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClickHouseStore]:
    store = ClickHouseStore(f"chdb://{tmp_path / 'ch'}")
    store.apply_schema()
    yield store
    store.close()


def stored(store: ClickHouseStore, spec: TableSpec, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Insert the records as the sink does (row function, pseudonym) and read the table back."""
    rows = []
    for offset, record in enumerate(records):
        row = spec.to_row(orjson.dumps(record), [], 3, offset)
        assert len(row) == len(spec.columns)
        if spec.user_index is not None:
            row = pseudonymize_row(row, spec.user_index, PSEUDONYMIZE)
        assert spec.time_index is None or isinstance(row[spec.time_index], int)
        rows.append(row)
    store.insert(spec.table, spec.columns, rows, token=f"{spec.table}-test")
    columns = ", ".join(spec.columns)
    result = store.query(f"SELECT {columns} FROM {spec.table} ORDER BY kafka_offset")
    assert len(result) == len(records)
    return [dict(zip(spec.columns, values, strict=True)) for values in result]


def no_raw_user(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        for value in row.values():
            assert USER not in str(value) and "\\u674e" not in str(value)


def event(event_id: str, event_type: str, source: str, at: float, **attrs: Any) -> Event:
    return Event(event_id, event_type, source, at, USER, attrs)


def test_tickets(store: ClickHouseStore) -> None:
    book, points = DeviceBook(), load_service_points()
    register(
        book,
        event("d", "device_registered", "devices", T0 - 99, device_id="d1", category="phones", model="A2"),
    )
    repair = {"fault": "cracked screen", "latitude": 52.52, "longitude": 13.41}
    tickets = [
        open_ticket(
            book,
            event(
                f"s{n}",
                "repair_requested",
                "service_requests",
                T0 + n,
                request_id=f"r{n}",
                device_id=device,
                **repair,
            ),
            points,
            150.0,
        )
        for n, device in enumerate(["d1", "d1", "d9"])
    ]
    wires = [ticket.to_wire(WALL) for ticket in tickets if ticket is not None]
    rows = stored(store, TICKETS, wires)
    assert [(r["dispatch"], r["service_point_id"], r["manual_reason"]) for r in rows] == [
        ("assigned", "sp-ber-mitte", ""),
        ("assigned", "sp-ber-mitte", ""),
        ("manual", "", "unknown_device"),
    ]
    assert [r["prior_tickets"] for r in rows] == [0, 1, 0]
    assert rows[0]["device_category"] == "phones" and rows[0]["device_model"] == "A2"
    assert rows[2]["device_category"] == "" and rows[2]["distance_km"] is None
    assert 0 < rows[0]["distance_km"] < 2
    assert rows[0]["user_id"] == PSEUDONYMIZE(USER) and rows[0]["request_id"] == "r0"
    assert orjson.loads(rows[0]["ticket"])["user_id"] == PSEUDONYMIZE(USER)
    assert rows[1]["created_at"].timestamp() == pytest.approx(T0 + 1)
    no_raw_user(rows)


def test_order_commands_and_rejections(store: ClickHouseStore) -> None:
    catalog, stock, ledger = load_catalog(), StockLevels(), OrderLedger()
    stock.apply(parse_stock(b'{"sku": "SKU-AST2-64-BLK", "available": 5, "as_of": 1780000000000}'))
    decided = [
        decide_order(
            ledger,
            event(
                f"o{n}",
                "order_requested",
                "order_requests",
                T0 + n,
                request_id=f"r{n}",
                items=items,
                address_ref="home",
            ),
            catalog,
            stock,
        )
        for n, items in enumerate(
            [
                [{"sku": "SKU-AST2-64-BLK", "quantity": 2}, {"sku": "SKU-ECHO1-BLK", "quantity": 1.0}],
                [{"sku": "SKU-AST2-64-BLK", "quantity": 2}],
                [{"sku": "SKU-NOPE", "quantity": 1}, {"sku": "SKU-AST2-64-BLK", "quantity": 9}],
            ]
        )
    ]
    commands = [d.to_wire(WALL) for d in decided if isinstance(d, OrderCommand)]
    rejections = [d.to_wire(WALL) for d in decided if isinstance(d, OrderRejection)]
    rows = stored(store, ORDER_COMMANDS, commands)
    assert [(r["items"], r["units"], r["total"], r["stock_checked"]) for r in rows] == [
        (2, 3, 2 * 299.0 + 149.0, 0),  # the Echo line had no stock level
        (1, 2, 598.0, 1),
    ]
    assert orjson.loads(rows[0]["command"])["command_id"] == str(rows[0]["command_id"])
    no_raw_user(rows)
    [rejection] = stored(store, ORDER_REJECTIONS, rejections)
    assert rejection["reason"] == "unknown_sku" and rejection["user_id"] == PSEUDONYMIZE(USER)
    assert [p["reason"] for p in orjson.loads(rejection["problems"])] == [
        "unknown_sku",
        "quantity_limit",
        "out_of_stock",
    ]
    assert ORDER_REJECTIONS.row_id(tuple(rejection.values())) == f"{PSEUDONYMIZE(USER)}:r2"


def test_feedback_tagged(store: ClickHouseStore) -> None:
    tagger = FeedbackTagger()
    feedback = [
        event("f1", "feedback", "clickstream", T0, score=1.0, comment="far too expensive", product_id="p7"),
        event("f2", "feedback", "clickstream", T0 + 1, score=2.0, comment="快递太慢了", order_id="o1"),
    ]
    wires = [tag_feedback(tagger, item).to_wire(WALL) for item in feedback]
    rows = stored(store, FEEDBACK_TAGS, wires)
    assert [r["feedback_id"] for r in rows] == ["f1", "f2"]
    assert rows[0]["product_id"] == "p7" and rows[1]["product_id"] == ""
    assert rows[0]["top_tag"] == "pricing" and rows[0]["tags"][0] == "pricing"
    assert rows[1]["language"] == "zh" and "delivery" in rows[1]["tags"]
    assert [r["csat"] for r in rows] == [1.0, 2.0] and rows[0]["sentiment"] < 0
    assert rows[0]["confidence"] == pytest.approx(wires[0]["confidence"], abs=1e-6)
    assert rows[0]["teams"] == wires[0]["teams"] and rows[0]["text"] == "far too expensive"
    no_raw_user(rows)


def test_support_questions_and_hot_issues(store: ClickHouseStore) -> None:
    catalog = load_catalog()
    launched = catalog.product("phone-aster-4").launched_at
    asked = [
        event(
            f"q{n}",
            "question_asked",
            "support",
            launched + 3600 + 60 * n,
            product_id="phone-aster-4",
            text="Battery drains overnight!",
            **({"topic": "battery"} if n % 2 else {}),
        )
        for n in range(12)
    ]
    records = [question_record(item, catalog, SurgeRules()) for item in asked]
    rows = stored(store, SUPPORT_QUESTIONS, records)
    assert rows[0]["topic"] == rows[0]["question"] == "battery drains overnight"
    assert rows[1]["topic"] == "battery" and rows[1]["category"] == "phones"
    assert rows[3]["event_time"].timestamp() == pytest.approx(launched + 3600 + 180)
    no_raw_user(rows)

    state, product = CategoryIssues(), catalog.product("phone-aster-4")
    alerts = []
    for record in records:  # as the worker's observe_question takes them
        question = Question(
            record["product_id"],
            record["topic"],
            record["text"],
            record["event_time"] / 1000,
            record["question_id"],
        )
        alerts += observe(state, question, product, None)
    assert alerts
    [row] = stored(store, HOT_ISSUES, [alerts[0].to_wire(WALL)])
    assert (row["product_id"], row["category"], row["launch_prior_used"]) == ("phone-aster-4", "phones", 0)
    assert row["observed"] >= 5 and row["statistic"] < 1e-4 and row["expected"] > 0
    assert str(row["alert_id"]) == alerts[0].alert_id
    assert orjson.loads(row["alert"])["top_questions"]
    assert row["forecast"] is None  # not made through observe_question: no forecast field given
    named = replace(
        alerts[0], alert_id=str(uuid.uuid4()), forecast={"forecast": True, "rank": 2, "expected": 3.5}
    )
    row = HOT_ISSUES.to_row(orjson.dumps(named.to_wire(WALL)), [], 3, 1)
    store.insert(HOT_ISSUES.table, HOT_ISSUES.columns, [row], token="hot-issues-forecast-test")
    [(forecast_column, alert)] = store.query(
        f"SELECT forecast, alert FROM hot_issues WHERE alert_id = '{named.alert_id}'"
    )
    row = {"forecast": forecast_column, "alert": alert}
    assert row["forecast"] == 1 and orjson.loads(row["alert"])["forecast"]["rank"] == 2


def test_launch_faq_forecast(store: ClickHouseStore) -> None:
    """A forecast's rows (one per bucket and topic, rank 0 for a bucket without topics), and the view
    of each product's latest forecast that ``forewarn faq`` reads."""
    catalog = load_catalog()
    old, new = catalog.product("phone-aster-3"), catalog.product("phone-aster-4")
    buckets = [{"setup": 30.0, "camera": 10.0}, {"battery": 5.0}, {}, {}, {}]
    profiles = {
        old.product_id: LaunchProfile(
            old.launched_at, buckets, [sum(b.values()) for b in buckets], {"setup": ["how do i set up"]}
        )
    }
    launches = [ProductInfo(p.product_id, p.category, p.launched_at) for p in (old, new)]
    made = [forecast(launches[1], launches, profiles, new.launched_at - days * 86400) for days in (3, 2)]
    rows = []
    for offset, wire in enumerate(item.to_wire(WALL) for item in made):
        found, unreadable = LAUNCH_FAQ_FORECAST.to_rows(orjson.dumps(wire), [], 1, offset)
        assert not unreadable and all(len(row) == len(LAUNCH_FAQ_FORECAST.columns) for row in found)
        rows += found
    assert len({LAUNCH_FAQ_FORECAST.row_id(row) for row in rows}) == len(rows) == 2 * (2 + 1 + 3)
    store.insert(LAUNCH_FAQ_FORECAST.table, LAUNCH_FAQ_FORECAST.columns, rows, token="faq-test")
    latest = store.query(
        "SELECT toString(forecast_id), bucket, rank, topic, expected_count, examples, based_on, reason"
        " FROM launch_faq_latest WHERE product_id = 'phone-aster-4' ORDER BY bucket_index, rank"
    )
    assert {row[0] for row in latest} == {made[1].forecast_id}
    assert latest[:3] == [
        (made[1].forecast_id, "0-1", 1, "setup", 30.0, ["how do i set up"], ["phone-aster-3"], ""),
        (made[1].forecast_id, "0-1", 2, "camera", 10.0, [], ["phone-aster-3"], ""),
        (made[1].forecast_id, "1-3", 1, "battery", 5.0, [], ["phone-aster-3"], "few_questions"),
    ]
    assert [(row[1], row[2], row[7]) for row in latest[3:]] == [
        ("3-7", 0, "no_questions"), ("7-14", 0, "no_questions"), ("14-30", 0, "no_questions")
    ]  # fmt: skip


def test_api_audit(store: ClickHouseStore) -> None:
    records = [
        audit_record(
            route=PREFERENCES_ROUTE.template,
            method="PUT",
            user_id=USER,
            scope=PREFERENCES_ROUTE.scope,
            caller="crm",
            reply=Reply(202, {}, "accepted"),
            at=T0,
            audit_id=f"{n:08d}-0000-4000-8000-000000000000",
        )
        for n in range(2)
    ]
    records[1]["user_id"] = ""  # a call without a subject (unauthenticated, unmatched route)
    rows = stored(store, API_AUDIT, records)
    assert rows[0]["user_id"] == PSEUDONYMIZE(USER) and rows[1]["user_id"] == ""
    assert (rows[0]["status"], rows[0]["result"], rows[0]["caller"], rows[0]["detail"]) == (
        202,
        records[0]["result"],
        "crm",
        "accepted",
    )
    assert rows[0]["route"] == PREFERENCES_ROUTE.template and rows[0]["at"].timestamp() == T0
    no_raw_user(rows)
