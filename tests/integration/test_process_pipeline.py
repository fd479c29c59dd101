"""The business processes through a real broker and worker: repair requests become dispatched (or
manual) tickets, order requests become commands or rejections once per request id (checked against a
stock topic), feedback is tagged and corrections reach every partition's tagger, a planted surge of
support questions raises one hot-issue alert, CRM attributes come back on ``crm_sync``, and an erasure
leaves no trace of the user in the worker's table or in ClickHouse. ClickHouse holds pseudonyms only.
A launch to come gets a FAQ forecast learnt from an earlier launch's first day."""

from __future__ import annotations

import asyncio
import re
import time
from importlib import resources
from pathlib import Path

import clickhouse_connect
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.contracts.deadletters import read_dead_letter_headers
from streams.contracts.privacy import Pseudonymizer
from streams.contracts.time import iso_time
from tests.support.harness import (
    StartWorker,
    consume_all,
    consume_events,
    event_bytes,
    produce,
    read_until,
    rows,
    traces,
    worker_env,
)

pytestmark = pytest.mark.integration
HOUR_MS = 3_600_000
KEY = "process-pipeline-test-key-0123456789"
ERASED = "user-to-erase-4711"  # distinctive: "no trace" searches every string column for it

POINTS = {
    "service_points": [
        {
            "id": "sp-near",
            "name": "Near",
            "latitude": 52.52,
            "longitude": 13.40,
            "categories": ["phones"],
            "radius_km": 50,
            "status": "open",
        },
        {
            "id": "sp-far",
            "name": "Far",
            "latitude": 52.40,
            "longitude": 13.05,
            "categories": ["phones", "laptops"],
            "radius_km": 50,
            "status": "open",
        },
    ]
}


def message(kafka_topic: str, user: str, event_id: str, event_type: str, at_ms: int, **fields: object):
    value = event_bytes(event_id=event_id, event_type=event_type, event_time=at_ms, user_id=user, **fields)
    return (kafka_topic, user.encode(), value)


def metric(text: str, name: str) -> float:
    found = re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.MULTILINE)
    return sum(float(value) for value in found)


async def create_stock(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic("stock", 1, 1)])
    finally:
        await admin.close()


def test_processes_end_to_end(broker, tmp_path: Path, start_worker: StartWorker) -> None:
    now_ms = int(time.time() * 1000)
    points_file = tmp_path / "points.json"
    points_file.write_bytes(orjson.dumps(POINTS))
    # The packaged catalog and two launches of phones: one 70 days ago, one in 5 days (FAQ forecast).
    catalog = orjson.loads(resources.files("streams.processes").joinpath("data/catalog.json").read_bytes())
    for product_id, days in (("phone-nova-1", -70), ("phone-nova-2", 5)):
        launched = iso_time(now_ms / 1000 + days * 86400)
        catalog["products"].append(
            {"product_id": product_id, "category": "phones", "name": product_id, "launched_at": launched}
        )
    catalog_file = tmp_path / "catalog.json"
    catalog_file.write_bytes(orjson.dumps(catalog))
    env = worker_env(
        broker.bootstrap,
        tmp_path,
        FOREWARN_SERVICE_POINTS_FILE=str(points_file),
        FOREWARN_PSEUDONYM_KEY=KEY,
        FOREWARN_CATALOG_FILE=str(catalog_file),
    )
    pseudonym = Pseudonymizer(KEY.encode())
    asyncio.run(create_stock(broker.bootstrap))
    stock = orjson.dumps({"sku": "SKU-AST2-128-BLU", "available": 1, "as_of": now_ms - 1000})
    asyncio.run(produce(broker.bootstrap, [("stock", b"SKU-AST2-128-BLU", stock)]))

    at = now_ms - 10_000
    requests = [
        message(
            "devices",
            "pa",
            "dev-1",
            "device_registered",
            at - 1000,
            device_id="d1",
            category="phones",
            model="Aster 2",
        ),
        message(
            "devices",
            "pb",
            "dev-2",
            "device_registered",
            at - 1000,
            device_id="d2",
            category="appliances",
            model="Fridge",
        ),
    ]
    repair = {"fault": "cracked screen", "latitude": 52.50, "longitude": 13.35}
    requests += [
        message(
            "service_requests",
            "pa",
            "sr-1",
            "repair_requested",
            at,
            request_id="r1",
            device_id="d1",
            **repair,
        ),
        message(
            "service_requests",
            "pa",
            "sr-1b",
            "repair_requested",
            at + 1,
            request_id="r1",
            device_id="d1",
            **repair,
        ),  # redelivered by the chat: no second ticket
        message(
            "service_requests",
            "pa",
            "sr-2",
            "repair_requested",
            at + 2,
            request_id="r2",
            device_id="d9",
            **repair,
        ),
        message(
            "service_requests",
            "pb",
            "sr-3",
            "repair_requested",
            at + 3,
            request_id="r3",
            device_id="d2",
            **repair,
        ),
        message(
            "service_requests",
            "pa",
            "sr-4",
            "repair_requested",
            at + 4,
            request_id="r4",
            device_id="d1",
            fault="no sound",
            latitude=-33.87,
            longitude=151.21,
        ),
    ]
    order = {"address_ref": "home"}
    requests += [
        message(
            "order_requests",
            "pa",
            "or-1",
            "order_requested",
            at,
            request_id="o1",
            items=[{"sku": "SKU-AST2-64-BLK", "quantity": 2}],
            **order,
        ),
        message(
            "order_requests",
            "pa",
            "or-1b",
            "order_requested",
            at + 1,
            request_id="o1",
            items=[{"sku": "SKU-AST2-64-BLK", "quantity": 2}],
            **order,
        ),
        message(
            "order_requests",
            "pa",
            "or-2",
            "order_requested",
            at + 2,
            request_id="o2",
            items=[{"sku": "SKU-NOPE", "quantity": 1}],
            **order,
        ),
        message(
            "order_requests",
            "pa",
            "or-3",
            "order_requested",
            at + 3,
            request_id="o3",
            items=[{"sku": "SKU-AST2-64-BLK", "quantity": 0}],
            **order,
        ),
        message(
            "order_requests",
            "pa",
            "or-4",
            "order_requested",
            at + 4,
            request_id="o4",
            items=[{"sku": "SKU-AST2-128-BLU", "quantity": 2}],
            **order,
        ),
        message(
            "order_requests",
            "pb",
            "or-5",
            "order_requested",
            at + 5,
            request_id="o1",
            items=[{"sku": "SKU-AST2-64-BLK", "quantity": 1}],
            **order,
        ),
        message("crm_updates", "pa", "crm-1", "crm_attributes", at, tier="gold", lifetime_value=1234.5),
        message(
            "clickstream",
            "pc",
            "fb-1",
            "feedback",
            at,
            score=1,
            comment="The price is far too expensive",
            product_id="phone-aster-2",
        ),
        message("clickstream", "pc", "fb-2", "feedback", at + 1, score=2, comment="快递太慢了，等了一个星期"),  # noqa: RUF001 (Chinese punctuation)
    ]
    corrections = [
        (
            "feedback_labels",
            b"fb-x1",
            orjson.dumps(
                {
                    "feedback_id": "fb-x1",
                    "text": "the widget wobbles",
                    "tags": ["quality"],
                    "labelled_by": "qa",
                    "labelled_at": now_ms,
                }
            ),
        ),
        (
            "feedback_labels",
            b"fb-x2",
            orjson.dumps(
                {
                    "feedback_id": "fb-x2",
                    "text": "好看又好用",
                    "tags": ["praise"],
                    "labelled_by": "qa",
                    "labelled_at": now_ms,
                }
            ),
        ),
    ]
    # Support questions: three days of steady billing and shipping questions about a product launched
    # long ago, then a burst of a topic it never had.
    questions = []
    start = now_ms - 73 * HOUR_MS
    for step in range(3 * 36):
        for topic in ("billing", "shipping"):
            questions.append(
                message(
                    "support_questions",
                    f"q{step % 7}",
                    f"q-{topic}-{step}",
                    "question_asked",
                    start + step * 2 * HOUR_MS // 3,
                    product_id="phone-aster-2",
                    text=f"question about {topic}",
                    topic=topic,
                )
            )
    for step in range(15):
        questions.append(
            message(
                "support_questions",
                f"q{step % 7}",
                f"q-battery-{step}",
                "question_asked",
                now_ms - HOUR_MS + step * 80_000,
                product_id="phone-aster-2",
                text="Battery drains overnight",
                topic="battery_drain",
            )
        )
    # The earlier launch's first day: a setup question an hour (too few to surge), kept in its launch
    # profile, which the next launch's FAQ forecast learns from.
    for step in range(24):
        questions.insert(
            0,
            message(
                "support_questions",
                f"q{step % 7}",
                f"q-nova-{step}",
                "question_asked",
                now_ms - 70 * 24 * HOUR_MS + HOUR_MS // 2 + step * HOUR_MS,
                product_id="phone-nova-1",
                text=f"How do I set up the Nova {step % 3}?",
                topic="setup",
            ),
        )
    # The user to erase: activity, an order and feedback.
    erased = [
        message("clickstream", ERASED, "e-1", "page_view", at, page="/", session_id="se"),
        message("clickstream", ERASED, "e-2", "feedback", at + 1, score=5, comment="love it, great product"),
        message(
            "order_requests",
            ERASED,
            "e-3",
            "order_requested",
            at + 2,
            request_id="oe",
            items=[{"sku": "SKU-AST2-64-BLK", "quantity": 1}],
            **order,
        ),
    ]

    worker = start_worker(env)
    try:
        # Devices first: a repair request must find its device in the user's state. Once the registrations
        # are on the internal events topic, the user's later events come after them on the same partition.
        devices, others = requests[:2], requests[2:]
        asyncio.run(produce(broker.bootstrap, devices))
        asyncio.run(consume_events(broker.bootstrap, until=2, settle=0))
        asyncio.run(produce(broker.bootstrap, others + corrections + questions + erased))
        tickets = [
            orjson.loads(m.value)
            for m in asyncio.run(consume_all(broker.bootstrap, "tickets", until=4, timeout=60))
        ]
        commands = [
            orjson.loads(m.value)
            for m in asyncio.run(consume_all(broker.bootstrap, "order_commands", until=3, timeout=30))
        ]
        rejections = [
            orjson.loads(m.value)
            for m in asyncio.run(consume_all(broker.bootstrap, "order_rejections", until=3, timeout=30))
        ]
        tagged = [
            orjson.loads(m.value)
            for m in asyncio.run(consume_all(broker.bootstrap, "feedback_tagged", until=3, timeout=30))
        ]
        alerts = [
            orjson.loads(m.value)
            for m in asyncio.run(consume_all(broker.bootstrap, "hot_issues", until=1, timeout=30, settle=3.0))
        ]
        synced = [
            orjson.loads(m.value)
            for m in asyncio.run(
                read_until(broker.bootstrap, "crm_sync", lambda ms: len(ms) >= 2, timeout=30)
            )
        ]
        forecasts = [
            orjson.loads(m.value)
            for m in asyncio.run(
                read_until(
                    broker.bootstrap,
                    "launch_faq_forecasts",
                    lambda ms: any(b'"phone-nova-1"]' in m.value for m in ms),
                    timeout=30,
                )
            )
        ]

        # The service desk and the marketing team answer (ticket_updates, feedback_updates): good updates,
        # one delivered twice, and one of each kind the checks refuse.
        by_id = {ticket["request_id"]: ticket["ticket_id"] for ticket in tickets}

        def desk(event_id: str, request: str, status: str, at_ms: int, point: str = "sp-near"):
            return message(
                "ticket_updates",
                "pa",
                event_id,
                "ticket_updated",
                at_ms,
                ticket_id=by_id.get(request, "00000000-0000-5000-8000-000000000000"),
                status=status,
                service_point_id=point,
            )

        updates = [
            desk("tu-1", "r1", "accepted", at + 1000),
            desk("tu-1", "r1", "accepted", at + 1000),  # delivered twice: taken once, no dead letter
            desk("tu-2", "r1", "resolved", at + 4000),
            desk("tu-3", "r2", "accepted", at + 2000, point="sp-far"),  # a manual ticket gets its point
            desk("tu-4", "nope", "accepted", at + 2000),  # unknown_ticket
            desk("tu-5", "r2", "resolved", at - 5000, point="sp-far"),  # out_of_order: before the ticket
            desk("tu-6", "r1", "on_site", at + 5000),  # invalid_transition: after resolved
            desk("tu-7", "r1", "escalated", at + 5000),  # unknown_status
            message(
                "feedback_updates",
                "pc",
                "fu-1",
                "feedback_updated",
                at + 3000,
                feedback_id="fb-1",
                status="acknowledged",
                team="marketing",  # pricing feedback goes to marketing
            ),
        ]
        asyncio.run(produce(broker.bootstrap, updates))
        progress = [
            orjson.loads(m.value)
            for m in asyncio.run(consume_all(broker.bootstrap, "ticket_progress", until=3, timeout=30))
        ]
        feedback_progress = asyncio.run(
            consume_all(broker.bootstrap, "feedback_progress", until=1, timeout=30)
        )
        refused = asyncio.run(
            read_until(broker.bootstrap, "dead_letters", lambda ms: len(ms) >= 4, timeout=30)
        )

        # Support load: a campaign, and one that ends before it starts (dead-lettered); then phone
        # contacts later than every question, one user's (in order on one partition), the last one in
        # a later slot, and a question in that slot on each partition of the questions (every input
        # partition heard from lately has its clock: the earliest closes slots), so that event time
        # closes the slots of the others.
        campaign = {"campaign_id": "cmp-1", "name": "Sale", "starts_at": now_ms, "channels": ["phone"]}
        asyncio.run(
            produce(
                broker.bootstrap,
                [
                    ("campaigns", b"cmp-1", orjson.dumps({**campaign, "ends_at": now_ms + 6 * HOUR_MS})),
                    ("campaigns", b"cmp-2", orjson.dumps({**campaign, "ends_at": now_ms - HOUR_MS})),
                ],
            )
        )
        load_at = now_ms - 30 * 60_000
        contact_times = [load_at, load_at + 600_000, load_at + 600_000, now_ms + 30 * 60_000]
        contacts = [
            message("clickstream", "pl", f"sc-{n}", "support_contact", contact_at, channel="phone")
            for n, contact_at in enumerate(contact_times)
        ]
        closing = [
            message(
                "support_questions",
                f"q{key}",
                f"q-close-{key}",
                "question_asked",
                contact_times[-1],
                product_id="laptop-lumen-13",
                text="question about billing",
                topic="billing",
            )
            for key in range(7)
        ]
        asyncio.run(produce(broker.bootstrap, contacts + closing))
        asyncio.run(
            read_until(
                broker.bootstrap,
                "support_load_forecasts",
                lambda ms: any(orjson.loads(m.value)["channel"] == "phone" for m in ms),
                timeout=30,
            )
        )

        # Everything of the user to erase is out; now the erasure.
        asyncio.run(
            produce(
                broker.bootstrap,
                [
                    message(
                        "erasure_requests",
                        ERASED,
                        "er-1",
                        "erasure_requested",
                        now_ms,
                        request_id="gdpr-1",
                        requested_by="dpo",
                    )
                ],
            )
        )
        erasures = asyncio.run(consume_all(broker.bootstrap, "erasures", until=1, timeout=30))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and metric(worker.metrics(), "forewarn_erasures_total") < 1:
            time.sleep(0.5)
        final_metrics = worker.metrics()
        learned = metric(final_metrics, "forewarn_feedback_corrections_learned_total")
        dead_letters = metric(final_metrics, "forewarn_dead_letters_total")
        campaigns = metric(final_metrics, "forewarn_campaigns_total")
    finally:
        assert worker.stop() == 0

    # Every message was valid (none failed in processing either) but the four refused updates and the
    # campaign that ends before it starts.
    assert dead_letters == 5 and campaigns == 1
    assert sorted(read_dead_letter_headers(m.headers).reason for m in refused) == [
        "invalid_transition",
        "out_of_order",
        "unknown_status",
        "unknown_ticket",
    ]
    assert [(p["ticket_id"], p["status"], p["first_response"]) for p in progress] == [
        (by_id["r1"], "accepted", True),
        (by_id["r1"], "resolved", False),
        (by_id["r2"], "accepted", True),
    ]
    assert [orjson.loads(m.value)["status"] for m in feedback_progress] == ["acknowledged"]
    assert metric(final_metrics, "forewarn_department_updates_total") == 4
    assert 'forewarn_process_duplicates_total{source="ticket_updates"} 1.0' in final_metrics
    # Tickets: dispatched to the nearest point, or manual with the most specific reason; once per request.
    by_request = {ticket["request_id"]: ticket for ticket in tickets}
    assert len(tickets) == 4 and set(by_request) == {"r1", "r2", "r3", "r4"}
    assert (by_request["r1"]["dispatch"], by_request["r1"]["service_point"]["id"]) == ("assigned", "sp-near")
    assert by_request["r2"]["manual_reason"] == "unknown_device"
    assert by_request["r3"]["manual_reason"] == "no_service_point_for_category"
    assert by_request["r4"]["manual_reason"] == "no_service_point_in_range"
    assert [entry["request_id"] for entry in by_request["r4"]["history"]] == ["r1"]
    assert by_request["r4"]["device"]["model"] == "Aster 2"

    # Orders: one command per request id and user, rejections with their reasons.
    assert sorted((c["user_id"], c["request_id"]) for c in commands) == [
        ("pa", "o1"),
        ("pb", "o1"),
        (ERASED, "oe"),
    ]
    assert {r["request_id"]: r["reason"] for r in rejections} == {
        "o2": "unknown_sku",
        "o3": "invalid_quantity",
        "o4": "out_of_stock",
    }

    # Feedback: tagged in both languages; every correction learned by each of the 4 partitions.
    tags = {item["feedback_id"]: item for item in tagged}
    assert "pricing" in tags["fb-1"]["tags"] and tags["fb-1"]["sentiment"] < 0
    assert "delivery" in tags["fb-2"]["tags"] and tags["fb-2"]["language"] == "zh"
    assert learned == 2 * 4

    # Hot issues: the planted burst, once; nothing for the steady topics.
    assert [(a["product_id"], a["topic"]) for a in alerts] == [("phone-aster-2", "battery_drain")]
    assert alerts[0]["forecast"] is None  # aster-2 launched long ago: no launch window
    # FAQ forecasts: nova-2, launching in 5 days, learns its first day from nova-1's; nova-1 had no
    # earlier launch with a profile when it launched.
    learnt = [f for f in forecasts if f["product_id"] == "phone-nova-2" and f["buckets"][0]["topics"]]
    first_day = learnt[-1]["buckets"][0]
    assert (first_day["based_on"], first_day["questions"], first_day["reason"]) == (["phone-nova-1"], 24, "")
    assert first_day["topics"][0] | {"examples": None} == {
        "rank": 1, "topic": "setup", "share": 1.0, "expected_count": 24.0, "examples": None
    }  # fmt: skip
    assert sorted(first_day["topics"][0]["examples"]) == [f"how do i set up the nova {n}" for n in range(3)]
    assert {f["reason"] for f in forecasts if f["product_id"] == "phone-nova-1"} == {"no_earlier_launch"}

    # CRM: the tier came back as a tag; the feedback topics too.
    by_user = {record["user_id"]: record for record in synced}
    assert "tier:gold" in by_user["pa"]["tags"]
    assert {"feedback:pricing", "feedback:delivery"} <= set(by_user["pc"]["tags"])

    # Erasure: the worker's state is gone (a tombstone is the last changelog record for the user).
    [erasure] = [orjson.loads(m.value) for m in erasures]
    assert (erasure["user_id"], erasure["state_removed"]) == (ERASED, True)
    changelog = asyncio.run(consume_all(broker.bootstrap, "forewarn-users-changelog", timeout=10))
    last = [m for m in changelog if m.key == f'"{ERASED}"'.encode()][-1]
    assert last.value is None

    dsn = env["FOREWARN_CLICKHOUSE_DSN"]
    # ClickHouse: pseudonyms only, and the processes' rows.
    assert rows(dsn, "SELECT count() FROM tickets WHERE user_id = 'pa'") == [(0,)]
    assert rows(dsn, f"SELECT count() FROM tickets WHERE user_id = '{pseudonym('pa')}'") == [(3,)]
    assert rows(dsn, "SELECT dispatch, manual_reason, count() FROM tickets GROUP BY ALL ORDER BY ALL") == [
        ("assigned", "", 1),
        ("manual", "no_service_point_for_category", 1),
        ("manual", "no_service_point_in_range", 1),
        ("manual", "unknown_device", 1),
    ]
    assert rows(dsn, "SELECT count() FROM order_commands FINAL") == [(2,)]  # pe's is erased
    assert rows(dsn, "SELECT reason FROM order_rejections FINAL ORDER BY reason") == [
        ("invalid_quantity",),
        ("out_of_stock",),
        ("unknown_sku",),
    ]
    assert rows(dsn, "SELECT product_id, topic FROM hot_issues") == [("phone-aster-2", "battery_drain")]
    assert rows(dsn, "SELECT count() FROM support_questions") == [(len(questions) + len(closing),)]
    assert rows(dsn, "SELECT forecast FROM hot_issues") == [(None,)]
    latest = "SELECT bucket, rank, topic, based_on, reason FROM launch_faq_latest WHERE product_id = '{}'"
    assert rows(dsn, latest.format("phone-nova-2"))[:2] == [
        ("0-1", 1, "setup", ["phone-nova-1"], ""),
        ("1-3", 0, "", [], "no_questions"),
    ]
    top = rows(dsn, "SELECT question FROM rising_questions WHERE product_id = 'phone-aster-2' LIMIT 1")
    assert top == [("battery drains overnight",)]
    assert rows(dsn, "SELECT request_id, requested_by FROM erasures") == [("gdpr-1", "dpo")]
    # Cross-department response: the updates taken in, folded per ticket and per service point.
    assert rows(dsn, "SELECT count() FROM ticket_updates FINAL") == [(3,)]
    assert rows(dsn, "SELECT count() FROM ticket_updates WHERE user_id = 'pa'") == [(0,)]
    assert rows(
        dsn,
        "SELECT service_point_id, tickets, responded_tickets, resolved_tickets, automatic_share"
        " FROM department_weekly_tickets WHERE responded_tickets > 0 ORDER BY service_point_id",
    ) == [("sp-far", 1, 1, 0, 0.0), ("sp-near", 1, 1, 1, 1.0)]
    assert rows(
        dsn, "SELECT round(first_response_hours * 3600) FROM ticket_response WHERE status = 'resolved'"
    ) == [(1.0,)]
    assert rows(
        dsn, "SELECT team, status FROM feedback_response WHERE feedback_id = 'fb-1' AND team = 'marketing'"
    ) == [("marketing", "acknowledged")]
    # Support load: the phone contacts of the closed slots, and 96-slot forecasts 15 min to 24 h ahead.
    assert rows(dsn, "SELECT sum(contacts) FROM support_load_actual FINAL WHERE channel = 'phone'") == [(3,)]
    assert rows(
        dsn,
        "SELECT min(horizon_minutes), max(horizon_minutes), count() % 96 FROM support_load_forecast FINAL"
        " WHERE channel = 'phone'",
    ) == [(15, 1440, 0)]
    assert rows(dsn, "SELECT reason FROM dead_letters WHERE source_topic = 'campaigns'") == [
        ("invalid_value",)
    ]
    client = clickhouse_connect.get_client(dsn=dsn)
    try:
        assert traces(client, [ERASED, pseudonym(ERASED)]) == {}
        # The others' rows are all there.
        assert traces(client, [pseudonym("pa")])
    finally:
        client.close()


def last_state(bootstrap: str, user: str) -> dict | None:
    """The user's latest record in the worker's changelog (None: a tombstone)."""
    changelog = asyncio.run(consume_all(bootstrap, "forewarn-users-changelog", timeout=10))
    [*_, last] = [m for m in changelog if m.key == orjson.dumps(user)]
    return None if last.value is None else orjson.loads(last.value)


def test_erasure_holds_tags_reach_the_crm_and_a_bad_correction_is_dead_lettered(
    broker,
    tmp_path: Path,
    start_worker: StartWorker,
) -> None:
    """Events of an erased user that were in flight do not bring their state back (one they send later
    does); a coupon order changes the CRM's tags without moving the scores; a correction that fails in
    the tagger is dead-lettered and the next one is learned by every partition."""
    env = worker_env(broker.bootstrap, tmp_path, FOREWARN_PSEUDONYM_KEY=KEY)
    at = int(time.time() * 1000) - 60_000
    correction = {"feedback_id": "fb-ok", "text": "way too pricey", "tags": ["pricing"], "labelled_by": "qa"}
    worker = start_worker(env)
    try:
        asyncio.run(
            produce(
                broker.bootstrap,
                [
                    message("clickstream", ERASED, "g-1", "page_view", at, page="/", session_id="s"),
                    message("clickstream", "coupon", "c-1", "page_view", at, page="/", session_id="s"),
                    message(
                        "clickstream",
                        "coupon",
                        "c-2",
                        "order_completed",
                        at + 1000,
                        order_id="o",
                        coupon_code="X",
                    ),
                    # Not a correction ingest_labels would send: the tagger's parse fails on it.
                    ("forewarn-labels", b"fb-bad", orjson.dumps({"feedback_id": "fb-bad"})),
                ],
            )
        )
        asyncio.run(read_until(broker.bootstrap, "user_scores", lambda ms: len(ms) >= 2, timeout=30))
        erasure = message(
            "erasure_requests",
            ERASED,
            "g-er",
            "erasure_requested",
            at + 2000,
            request_id="r",
            requested_by="dpo",
        )
        asyncio.run(produce(broker.bootstrap, [erasure]))
        asyncio.run(consume_all(broker.bootstrap, "erasures", until=1, timeout=30, settle=0))
        # In flight when the erasure was handled: timed before it.
        late = [
            message("clickstream", ERASED, "g-2", "page_view", at + 3000, page="/", session_id="s"),
            message(
                "order_requests",
                ERASED,
                "g-3",
                "order_requested",
                at + 3000,
                request_id="late",
                items=[{"sku": "SKU-AST2-64-BLK", "quantity": 1}],
                address_ref="home",
            ),
        ]
        asyncio.run(produce(broker.bootstrap, late))
        asyncio.run(consume_events(broker.bootstrap, until=6, settle=0))
        back_at = int(time.time() * 1000) + 1000  # the user comes back after the erasure
        back = message("clickstream", ERASED, "g-4", "page_view", back_at, page="/", session_id="t")
        label = ("feedback_labels", b"fb-ok", orjson.dumps({**correction, "labelled_at": back_at}))
        asyncio.run(produce(broker.bootstrap, [back, label]))
        scores = asyncio.run(
            read_until(
                broker.bootstrap, "user_scores", lambda ms: any(b'"g-4"' in m.value for m in ms), timeout=30
            )
        )
        synced = [
            orjson.loads(m.value)
            for m in asyncio.run(
                read_until(broker.bootstrap, "crm_sync", lambda ms: len(ms) >= 3, timeout=30)
            )
        ]
        dead = asyncio.run(read_until(broker.bootstrap, "dead_letters", lambda ms: len(ms) >= 1, timeout=30))
        deadline = time.monotonic() + 30
        while (
            time.monotonic() < deadline
            and metric(worker.metrics(), "forewarn_feedback_corrections_learned_total") < 4
        ):
            time.sleep(0.5)
        final_metrics = worker.metrics()
    finally:
        assert worker.stop() == 0

    assert any(b'"g-4"' in m.value for m in scores)
    # The erased user's state holds only what they sent after the erasure: no late page view, no order.
    state = last_state(broker.bootstrap, ERASED)
    assert state is not None and state["events_seen"] == 1 and state["orders"]["decided"] == {}
    assert asyncio.run(consume_all(broker.bootstrap, "order_commands", timeout=3)) == []
    # The coupon order made the user a coupon user for the CRM; the scores had not moved.
    coupon = [record["tags"] for record in synced if record["user_id"] == "coupon"]
    assert len(coupon) == 2 and "coupon_user" not in coupon[0] and "coupon_user" in coupon[1]
    # The bad correction: dead-lettered, and the agent went on (the good one reached all 4 partitions).
    [letter] = dead
    info = read_dead_letter_headers(letter.headers)
    assert (info.source_topic, info.reason) == ("forewarn-labels", "invalid_internal")
    assert metric(final_metrics, "forewarn_feedback_corrections_learned_total") == 4
    assert metric(final_metrics, "forewarn_dead_letters_total") == 1
