"""The shadow section of ``forewarn report`` (``sinks.report.shadow_report``) on hand-built rows in the
embedded ClickHouse: what a shadow trigger would have sent, at what rate, to whom, and how its would-be
targets then behaved against everyone else active in the period."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from sinks.clickhouse import ClickHouseStore, batch_token
from sinks.report import Behaviour, format_shadow_report, shadow_report
from sinks.rows import DECISIONS, EVENTS, decision_row, event_row
from streams.contracts.events import Event
from streams.contracts.time import iso_time
from streams.tools.cli import main

DAY = 86_400_000  # ms
T0 = int(datetime(2026, 9, 1, tzinfo=UTC).timestamp() * 1000)
NAMESPACE = uuid.UUID("6a0c3f4e-1b2d-4e5f-8a9b-0c1d2e3f4a5b")


class Rows:
    """Events and decisions, written through the sink's own row functions."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.decisions: list[tuple[Any, ...]] = []

    def event(self, source: str, event_type: str, day: float, user: str, **attrs: Any) -> None:
        event = Event(f"e{len(self.events)}", event_type, source, (T0 + day * DAY) / 1000, user, attrs)
        self.events.append(event_row(orjson.dumps(event.to_wire()), [], 0, len(self.events)))

    def click(self, event_type: str, day: float, user: str, **attrs: Any) -> None:
        self.event("clickstream", event_type, day, user, **attrs)

    def decide(self, trigger: str, decision: str, reason: str, user: str, day: float) -> None:
        at = (T0 + day * DAY) / 1000
        wire = {
            "schema": 1,
            "intervention_id": str(uuid.uuid5(NAMESPACE, f"{trigger}{user}{day}")),
            "decision": decision,
            "reason": reason,
            "detail": "",
            "trigger": trigger,
            "action": "x",
            "channel": "email",
            "priority": 60,
            "experiment": "",
            "arm": "",
            "offer": None,
            "user_id": user,
            "event_time": iso_time(at),
            "decided_at": iso_time(at),
            "source_event_id": "",
            "order_id": "",
        }
        self.decisions.append(decision_row(orjson.dumps(wire), [], 1, len(self.decisions)))

    def store(self, store: ClickHouseStore) -> None:
        for table, spec, rows, partition in (
            ("events", EVENTS, self.events, 0),
            ("decisions", DECISIONS, self.decisions, 1),
        ):
            token = batch_token(table, [(partition, rows[0][-1], rows[-1][-1])])
            store.insert(table, spec.columns, rows, token)


def planted() -> Rows:
    rows = Rows()
    shadow = "retention_offer"
    # Would-be targets (a shadow decision with reason emitted or deferred), from their first one:
    rows.decide(shadow, "shadow", "emitted", "u1", 1)
    rows.click("support_contact", 1 + 7, "u1", reason="billing")  # at t + 7 days exactly: counts
    rows.click("order_completed", 3, "u1", order_id="o1", amount=30)
    rows.click("page_view", 40, "u1", page="/")  # after 28 days: but active at +2 and +7: not churned
    rows.decide(shadow, "shadow", "deferred", "u2", 1)
    rows.click("page_view", 1, "u2", page="/")  # at t itself: does not count; nothing after: churned
    rows.decide(shadow, "shadow", "emitted", "u3", 5)
    rows.decide(shadow, "shadow", "emitted", "u3", 6)  # a second one: u3 counts from the first
    rows.click("feedback", 5.04, "u3", score=1)  # a bad score: a complaint
    rows.event("subscriptions", "subscription_updated", 10, "u3", subscription_id="s3", plan="pro",
               status="cancelled", renews_at=T0 + 40 * DAY)  # fmt: skip
    rows.click("page_view", 12, "u3", page="/")  # active, but cancelled: churned
    rows.decide(shadow, "shadow", "emitted", "u5", 50)
    rows.click("page_view", 51, "u5", page="/")
    rows.click("order_completed", 57.01, "u5", order_id="o5")  # after t + 7 days: not a conversion
    # Not a target: a shadow decision it would not have sent (cooldown). With everyone else active:
    rows.decide(shadow, "shadow", "cooldown", "u4", 2)
    rows.click("page_view", 2, "u4", page="/")
    rows.click("payment_completed", 4, "u4", order_id="o4")  # converted
    rows.click("page_view", 20, "u4", page="/")
    rows.click("page_view", 3, "u6", page="/")  # nothing after: churned
    rows.decide("delay_notice", "emitted", "", "u6", 3)  # a live decision: not in the shadow report
    rows.click("page_view", 4, "u7", page="/")
    rows.click("feedback", 5, "u7", score=4)  # a good score: no complaint
    rows.click("support_contact", 4 + 7.01, "u7")  # after the follow-up: no complaint; active: no churn
    rows.click("page_view", 45, "u8", page="/")  # churn not observable yet
    rows.click("page_view", 60, "u8", page="/")  # the latest event: the period's end
    rows.click("page_view", 0.5, "u9", page="/")  # before the period: not active in it
    # A second shadow trigger that would have sent nothing.
    rows.decide("recommendation", "shadow", "superseded", "u1", 1)
    # CRM segments, the latest naming segments wins; u3 has a tier only.
    rows.event("crm", "crm_attributes", 0, "u1", segments=["b2b", "vip"])
    rows.event("crm", "crm_attributes", 0.5, "u1", segments=["vip"])
    rows.event("crm", "crm_attributes", 0.7, "u1", tier="gold")
    rows.event("crm", "crm_attributes", 0, "u2", segments=["price_sensitive", "vip"])
    rows.event("crm", "crm_attributes", 0, "u3", tier="silver")
    rows.event("crm", "crm_attributes", 0, "u5", segments=["price_sensitive"])
    rows.event("crm", "crm_attributes", 0, "u4", segments=["b2b"])  # not a target
    return rows


@pytest.fixture(scope="module")
def dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("shadow") / "ch"
    store = ClickHouseStore(f"chdb://{path}")
    try:
        store.apply_schema()
        planted().store(store)
    finally:
        store.close()  # chdb holds one path per process
    return f"chdb://{path}"


@pytest.fixture
def store(dsn: str) -> Iterator[ClickHouseStore]:
    store = ClickHouseStore(dsn)
    yield store
    store.close()


def test_what_a_shadow_trigger_would_have_sent_to_whom_and_how_they_behaved(store: ClickHouseStore) -> None:
    recommendation, offer = shadow_report(store)  # by name
    assert offer.trigger == "retention_offer" and recommendation.trigger == "recommendation"
    assert (offer.decisions, offer.users, offer.targets) == (6, 5, 4)
    assert offer.by_reason == (("emitted", 4), ("cooldown", 1), ("deferred", 1))
    assert offer.would_send == 5 and offer.days == 59.0  # from the first shadow decision to the last event
    assert offer.per_day == pytest.approx(5 / 59)
    assert offer.active_users == 8 and offer.per_thousand_active == pytest.approx(625.0)
    assert offer.segments == (("price_sensitive", 2), ("vip", 2))
    # (users, complained, converted, churn_observable, churned)
    assert offer.target_behaviour == Behaviour(4, 2, 1, 3, 2)
    assert offer.other_behaviour == Behaviour(4, 0, 1, 3, 1)
    difference = offer.difference("churned")
    assert difference is not None and difference.value == pytest.approx(2 / 3 - 1 / 3)
    # Would have sent nothing: no targets, and everyone active is "everyone else".
    assert (recommendation.would_send, recommendation.targets, recommendation.segments) == (0, 0, ())
    assert recommendation.target_behaviour == Behaviour()
    assert recommendation.other_behaviour.users == 8
    # Shadow decisions are not final decisions of the value metrics.
    assert store.query("SELECT count() FROM intervention_value") == [(1,)]


def test_the_period_can_be_the_last_days(store: ClickHouseStore) -> None:
    [offer] = shadow_report(store, days=10)
    assert (offer.trigger, offer.decisions, offer.targets, offer.days) == ("retention_offer", 1, 1, 10.0)
    assert offer.active_users == 2  # u5 and u8
    assert offer.target_behaviour == Behaviour(users=1)  # u5: not converted, churn not observable
    assert shadow_report(store, days=0.001) == []


def test_no_shadow_decisions_no_section(tmp_path: Path) -> None:
    store = ClickHouseStore(f"chdb://{tmp_path / 'ch'}")
    try:
        store.apply_schema()
        assert shadow_report(store) == []
        assert format_shadow_report([]) == ""
    finally:
        store.close()


def test_forewarn_report_prints_the_shadow_section(
    dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FOREWARN_CLICKHOUSE_DSN", dsn)
    assert main(["report"]) == 0
    out = capsys.readouterr().out
    section = out[out.index("Shadow triggers") :]
    for line in (
        "retention_offer: shadow decisions over 59.0 days (6 decisions, 5 users)",
        "would have sent 5 (emitted 4, deferred 1) to 4 users: 0.08 per day, 625.0 per 1,000 active users"
        " (8 active)",
        "would not have sent: cooldown 1",
        "top segments of those users: price_sensitive 2 (50.0%), vip 2 (50.0%)",
        "recommendation: shadow decisions over 59.0 days (1 decisions, 1 users)",
        "would not have sent: superseded 1",
    ):
        assert line in section, line
    offer = section[section.index("retention_offer") :]
    rows = {line.split("  ")[0]: line.split() for line in offer.splitlines()}
    assert rows["complaint rate (7 days)"][4:] == ["50.0%", "0.0%", "+50.0", "pp", "[+1.0,", "+99.0]"]
    # The policy's churn horizon (30 days by default): u1 was active within it after its decision.
    assert "churn rate (30 days, observable)" in rows
