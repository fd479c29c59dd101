"""Value metrics of interventions, computed by ClickHouse (``sinks/schema/0002_policy.sql``) and reported
by ``sinks/report.py``, against the embedded engine.

A seeded synthetic experiment with a planted truth (4000 ``delay_notice`` decisions, 80/20 treatment and
holdout by hashing the user) goes in through the sink's own row functions. The per-arm counts must equal
what a plain Python reading of the metric definitions finds in the same data, the report's confidence
intervals must cover the planted effects, and a hand-built set of decisions pins every window edge.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from random import Random
from typing import Any

import orjson
import pytest

from sinks.clickhouse import ClickHouseStore, batch_token, migrations
from sinks.report import HOLDOUT, compare_arms, format_report, value_report
from sinks.rows import DECISIONS, EVENTS, decision_row, event_row
from streams.contracts.events import Event
from streams.contracts.time import iso_millis, iso_time
from streams.tools.cli import main

# One fixed draw. The interval test checks four 95% intervals, so about one seed in five would see one
# miss the planted truth by chance; exactness is pinned by the count and edge tests, not by that one.
SEED = 1
TRIGGER = "delay_notice"
EXPERIMENT = "proactive_2026q4"
TREATMENT = "treatment"
DAY = 86_400_000  # ms
T0 = int(datetime(2026, 9, 1, tzinfo=UTC).timestamp() * 1000)
NOW = T0 + 60 * DAY  # the latest event time in the data: later events have not arrived yet
NAMESPACE = uuid.UUID("2f0c8c7e-3a1b-4d55-9a2e-5b8f1c0d6e47")


@dataclass(frozen=True, slots=True)
class Planted:
    complaint: float
    conversion: float
    churn: float


PLANTED = {
    TREATMENT: Planted(complaint=0.12, conversion=0.15, churn=0.10),
    HOLDOUT: Planted(0.30, 0.10, 0.20),
}
AMOUNT = (20.0, 80.0)  # order amounts are uniform: mean 50
# Outcome probabilities of an emitted intervention (delivered first; the rest only when delivered).
P_DELIVERED, P_OPENED, P_ACCEPTED, P_RESOLVED, P_ESCALATED = 0.95, 0.6, 0.3, 0.7, 0.2


@dataclass(slots=True)
class Ev:
    event_id: str
    source: str
    event_type: str
    ms: int
    user_id: str
    attrs: dict[str, Any]


@dataclass
class Dataset:
    decisions: list[dict[str, Any]] = field(default_factory=list)
    events: list[Ev] = field(default_factory=list)
    # Per final decision, what was planted: {"complained", "converted", "churned"}.
    planted: dict[str, dict[str, bool]] = field(default_factory=dict)

    def event(self, source: str, event_type: str, ms: int, user: str, **attrs: Any) -> None:
        if ms <= NOW:  # what happens after NOW is not in the data yet
            self.events.append(Ev(f"e{len(self.events)}", source, event_type, ms, user, attrs))

    def subscription(self, user: str, ms: int, status: str, renews_at: int) -> None:
        self.event(
            "subscriptions",
            "subscription_updated",
            ms,
            user,
            subscription_id=f"s-{user}",
            plan="pro",
            status=status,
            renews_at=renews_at,
        )

    def click(self, event_type: str, ms: int, user: str, **attrs: Any) -> None:
        self.event("clickstream", event_type, ms, user, **attrs)

    def outcome(self, intervention: str, outcome: str, ms: int, user: str, **attrs: Any) -> None:
        self.event("outcomes", outcome, ms, user, intervention_id=intervention, channel="chat", **attrs)

    def decide(
        self,
        intervention: str,
        decision: str,
        reason: str,
        arm: str,
        user: str,
        t: int,
        order: str,
        decided_at: int,
    ) -> None:
        """A decision message per the ``decisions`` contract (schema 1)."""
        self.decisions.append(
            {
                "schema": 1,
                "intervention_id": intervention,
                "decision": decision,
                "reason": reason,
                "detail": "chat: 3 in the last 24h, cap 3" if reason == "frequency_cap" else "",
                "trigger": TRIGGER,
                "action": "notify_delay",
                "channel": "chat",
                "priority": 80,
                "experiment": EXPERIMENT,
                "arm": arm,
                "offer": {"kind": "discount", "percent": 10} if decision == "emitted" else None,
                "user_id": user,
                "event_time": iso_time(t / 1000),
                "decided_at": iso_time(decided_at / 1000),
                "source_event_id": f"l-{order or intervention}",
                "order_id": order,
            }
        )


def arm_of(user: str) -> str:
    """20% of users are held out, by hashing: stable per user across decisions."""
    digest = hashlib.sha256(f"{EXPERIMENT}:{user}".encode()).digest()
    return HOLDOUT if int.from_bytes(digest[:8], "big") % 100 < 20 else TREATMENT


def add_decision(data: Dataset, rng: Random, user: str, t: int, order: str) -> None:
    """One delay notice: the policy's decision(s), and what the user and the notifier did around it."""
    arm = arm_of(user)
    planted = PLANTED[arm]
    intervention = str(uuid.uuid5(NAMESPACE, f"{user}:{order}"))
    data.event(
        "logistics",
        "delayed",
        t,
        user,
        shipment_id=f"sh-{order}",
        order_id=order,
        promised_eta=(t - 3_600_000) / 1000,
        eta=(t + DAY) / 1000,
    )
    if arm == HOLDOUT:
        decision, reason = "suppressed", "holdout"
    else:
        draw = rng.random()
        decision, reason = (
            ("emitted", "")
            if draw < 0.90
            else ("suppressed", "frequency_cap")
            if draw < 0.96
            else ("suppressed", "opted_out")
        )
    decided_at = t + 1_000
    if decision == "emitted" and rng.random() < 0.1:  # quiet hours: deferred first, emitted in the morning
        data.decide(intervention, "deferred", "quiet_hours", arm, user, t, order, decided_at)
        decided_at = t + 6 * 3_600_000
    data.decide(intervention, decision, reason, arm, user, t, order, decided_at)

    complains = rng.random() < planted.complaint
    converts = rng.random() < planted.conversion
    churns = rng.random() < planted.churn
    # Churn by silence needs no clickstream event at all in the 28 days, so only users who neither
    # complain nor buy go silent; the others churn by cancelling.
    silent = churns and not complains and not converts and rng.random() < 0.6
    data.planted[intervention] = {"complained": complains, "converted": converts, "churned": churns}

    for _ in range(rng.randint(1, 2)):  # earlier activity, which says nothing about churn
        data.click("page_view", t - rng.randint(1, 2 * DAY), user, page="/orders")
    if rng.random() < 0.05:  # a complaint before the notice: not caused by it, not counted
        data.click("support_contact", t - rng.randint(1, DAY), user, reason="delivery", order_id=order)
    amount = round(rng.uniform(*AMOUNT), 2)
    if complains:
        at = t + 7 * DAY if rng.random() < 0.05 else t + rng.randint(1, 7 * DAY)  # the edge counts
        about = {"order_id": order} if rng.random() < 0.8 else {}
        data.click("support_contact", at, user, reason="delivery", channel="chat", **about)
    if converts:
        data.click(
            "order_completed", t + rng.randint(1, 7 * DAY), user, order_id=f"{order}-next", amount=amount
        )
    if churns and not silent:
        data.subscription(user, t + rng.randint(1, 28 * DAY), "cancelled", t + 30 * DAY)
    if not silent:
        for _ in range(rng.randint(1, 3)):
            data.click("page_view", t + rng.randint(1, 28 * DAY), user, page="/")
        # Clickstream that must not count as a complaint or a conversion of this decision.
        if rng.random() < 0.1:
            data.click(
                "support_contact", t + rng.randint(1, 7 * DAY), user, reason="delivery", order_id=f"{order}-x"
            )
        if rng.random() < 0.1:
            data.click("support_contact", t + rng.randint(1, 7 * DAY), user, reason="billing", order_id=order)
        if rng.random() < 0.05:
            data.click("support_contact", t + 7 * DAY + 1, user, reason="delivery", order_id=order)
        if rng.random() < 0.05:
            late = t + 7 * DAY + rng.randint(1, 10 * DAY)
            data.click("order_completed", late, user, order_id=f"{order}-late", amount=amount)
        if rng.random() < 0.1:
            data.subscription(user, t + rng.randint(1, 28 * DAY), "past_due", t + 30 * DAY)

    if decision == "emitted":
        if rng.random() < P_DELIVERED:
            data.outcome(intervention, "delivered", decided_at + 2_000, user)
            opened, accepted = rng.random() < P_OPENED, rng.random() < P_ACCEPTED
            if opened:
                for _ in range(1 + (rng.random() < 0.1)):  # a notifier may report twice
                    data.outcome(intervention, "opened", decided_at + 60_000, user)
                if rng.random() < 0.5:
                    data.outcome(intervention, "clicked", decided_at + 90_000, user)
            if accepted:
                data.outcome(intervention, "accepted", decided_at + 120_000, user)
                if converts:
                    data.outcome(intervention, "converted", decided_at + 180_000, user, revenue=amount)
            elif rng.random() < 0.2:
                data.outcome(intervention, "dismissed", decided_at + 120_000, user)
            if rng.random() < P_RESOLVED:
                data.outcome(intervention, "resolved", decided_at + 300_000, user)
            if rng.random() < P_ESCALATED:
                data.outcome(intervention, "escalated", decided_at + 240_000, user)
    elif reason == "frequency_cap" and rng.random() < 0.5:
        # A notifier that reports on what it was never given: nothing of it may count.
        for outcome in ("delivered", "opened", "accepted", "resolved"):
            data.outcome(intervention, outcome, decided_at + 60_000, user)


def generate(seed: int = SEED, decisions: int = 4000, repeat_users: int = 200) -> Dataset:
    rng = Random(seed)
    data = Dataset()
    # Users with two notices get them more than 35 days apart, so that no window of one covers what
    # the other planted: the planted rates are then exactly what the definitions measure.
    for index in range(repeat_users):
        first = T0 + rng.randint(0, 10 * DAY)
        add_decision(data, rng, f"r{index}", first, f"o-r{index}-1")
        add_decision(data, rng, f"r{index}", first + rng.randint(36 * DAY, 40 * DAY), f"o-r{index}-2")
    for index in range(decisions - 2 * repeat_users):
        # Up to NOW - 8 days: every 7-day window is complete, 28-day ones only for the first 32 days.
        add_decision(data, rng, f"u{index}", T0 + rng.randint(0, 52 * DAY), f"o-u{index}")
    for index in range(20):  # deferred, with no final decision yet: not in the metrics
        user = f"u{index}"
        data.decide(
            str(uuid.uuid5(NAMESPACE, f"pending{index}")),
            "deferred",
            "quiet_hours",
            arm_of(user),
            user,
            NOW - DAY,
            "",
            NOW - DAY + 1_000,
        )
    for index in range(30):  # traffic of users without notices; the last event defines NOW
        data.click("page_view", T0 + rng.randint(0, 60 * DAY - 1), f"bg{index}", page="/")
    data.click("page_view", NOW, "bg0", page="/")
    return data


# --- the metrics' definitions, read plainly in Python


def final_decisions(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One final decision per intervention: emitted wins over suppressed, then the latest."""
    chosen: dict[str, dict[str, Any]] = {}
    for decision in decisions:
        if decision["decision"] == "deferred":
            continue
        key = (decision["decision"] == "emitted", decision["decided_at"])
        current = chosen.get(decision["intervention_id"])
        if current is None or key > (current["decision"] == "emitted", current["decided_at"]):
            chosen[decision["intervention_id"]] = decision
    return list(chosen.values())


def expected_values(data: Dataset) -> dict[str, dict[str, Any]]:
    """Per final decision, the flags of ``intervention_value``."""
    by_user: dict[str, list[Ev]] = defaultdict(list)
    outcomes: dict[str, set[str]] = defaultdict(set)
    for event in data.events:
        by_user[event.user_id].append(event)
        if event.source == "outcomes":
            outcomes[event.attrs["intervention_id"]].add(event.event_type)
    latest = max(event.ms for event in data.events)
    values = {}
    for decision in final_decisions(data.decisions):
        t, order = iso_millis(decision["event_time"]), decision["order_id"]
        seen = outcomes[decision["intervention_id"]] if decision["decision"] == "emitted" else set()
        week = [
            e for e in by_user[decision["user_id"]] if t < e.ms <= t + 7 * DAY and e.source == "clickstream"
        ]
        month = [e for e in by_user[decision["user_id"]] if t < e.ms <= t + 28 * DAY]
        orders = [e for e in week if e.event_type == "order_completed"]
        values[decision["intervention_id"]] = {
            "arm": decision["arm"],
            "user_id": decision["user_id"],
            "emitted": decision["decision"] == "emitted",
            "delivered": "delivered" in seen,
            "responded": bool(seen & {"opened", "clicked", "accepted", "converted"}),
            "accepted": "accepted" in seen,
            "resolved_automatically": "resolved" in seen and "escalated" not in seen,
            "escalated": "escalated" in seen,
            "complained": any(
                e.event_type == "support_contact"
                and e.attrs.get("reason") == "delivery"
                and (order == "" or e.attrs.get("order_id", "") in ("", order))
                for e in week
            ),
            "converted": bool(orders),
            "revenue": sum(e.attrs.get("amount", 0.0) for e in orders),
            "churned": not any(e.source == "clickstream" for e in month)
            or any(
                e.source == "subscriptions"
                and e.event_type == "subscription_updated"
                and e.attrs.get("status") == "cancelled"
                for e in month
            ),
            "churn_observable": t + 28 * DAY <= latest,
        }
    return values


FLAGS = (
    "emitted",
    "delivered",
    "responded",
    "accepted",
    "resolved_automatically",
    "escalated",
    "complained",
    "converted",
)


def expected_by_arm(values: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    arms: dict[str, dict[str, Any]] = {}
    for value in values.values():
        arm = arms.setdefault(
            value["arm"],
            {
                "decisions": 0,
                "users": set(),
                **dict.fromkeys(FLAGS, 0),
                "revenue": 0.0,
                "revenue_sq": 0.0,
                "churn_observable": 0,
                "churned": 0,
            },
        )
        arm["decisions"] += 1
        arm["users"].add(value["user_id"])
        for flag in FLAGS:
            arm[flag] += value[flag]
        arm["revenue"] += value["revenue"]
        arm["revenue_sq"] += value["revenue"] ** 2
        arm["churn_observable"] += value["churn_observable"]
        arm["churned"] += value["churn_observable"] and value["churned"]
    for arm in arms.values():
        arm["users"] = len(arm["users"])
    return arms


# --- loading through the sink's row functions


def insert_events(store: ClickHouseStore, events: list[Ev], first_offset: int = 0, batch: int = 5000) -> None:
    rows = [
        event_row(
            orjson.dumps(
                Event(e.event_id, e.event_type, e.source, e.ms / 1000, e.user_id, e.attrs).to_wire()
            ),
            [],
            0,
            first_offset + index,
        )
        for index, e in enumerate(events)
    ]
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        token = batch_token("events", [(0, chunk[0][-1], chunk[-1][-1])])
        store.insert("events", EVENTS.columns, chunk, token)


def decision_rows(decisions: list[dict[str, Any]], first_offset: int = 0) -> list[tuple[Any, ...]]:
    return [decision_row(orjson.dumps(d), [], 1, first_offset + i) for i, d in enumerate(decisions)]


def insert_decisions(store: ClickHouseStore, decisions: list[dict[str, Any]], first_offset: int = 0) -> None:
    rows = decision_rows(decisions, first_offset)
    store.insert(
        "decisions", DECISIONS.columns, rows, batch_token("decisions", [(1, rows[0][-1], rows[-1][-1])])
    )


def new_store(path: Path) -> ClickHouseStore:
    store = ClickHouseStore(f"chdb://{path}")
    store.apply_schema()
    return store


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate()


@pytest.fixture(scope="module")
def loaded_dsn(tmp_path_factory: pytest.TempPathFactory, dataset: Dataset) -> str:
    """The dataset stored once for the module; closed again, since chdb holds one path per process."""
    path = tmp_path_factory.mktemp("value") / "ch"
    store = new_store(path)
    try:
        insert_events(store, dataset.events)
        insert_decisions(store, dataset.decisions)
    finally:
        store.close()
    return f"chdb://{path}"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClickHouseStore]:
    """An empty store with the schema, for one test."""
    store = new_store(tmp_path / "ch")
    yield store
    store.close()


@pytest.fixture
def loaded(loaded_dsn: str) -> Iterator[ClickHouseStore]:
    store = ClickHouseStore(loaded_dsn)
    yield store
    store.close()


BY_ARM_COLUMNS = (
    "decisions",
    "users",
    *FLAGS,
    "revenue",
    "revenue_sq",
    "churn_observable",
    "churned",
)


def test_the_generator_plants_what_the_definitions_measure(dataset: Dataset) -> None:
    """Guards the planted truth used below: no noise event leaks into another decision's window."""
    values = expected_values(dataset)
    assert len(values) == 4000 and len({v["user_id"] for v in values.values()}) == 3800
    for intervention, value in values.items():
        planted = dataset.planted[intervention]
        assert value["complained"] == planted["complained"] and value["converted"] == planted["converted"]
        if value["churn_observable"]:
            assert value["churned"] == planted["churned"]


def test_value_by_arm_equals_the_definitions_read_in_python(
    loaded: ClickHouseStore, dataset: Dataset
) -> None:
    store = loaded
    expected = expected_by_arm(expected_values(dataset))
    rows = store.query(f"SELECT arm, {', '.join(BY_ARM_COLUMNS)} FROM value_by_arm ORDER BY arm")
    assert [row[0] for row in rows] == [HOLDOUT, TREATMENT]
    for arm, *numbers in rows:
        got = dict(zip(BY_ARM_COLUMNS, numbers, strict=True))
        want = expected[arm]
        for money in ("revenue", "revenue_sq"):
            assert got.pop(money) == pytest.approx(want.pop(money), rel=1e-9), (arm, money)
        assert got == want, arm
    # The synthetic experiment is what it says: both arms are large and a part of it is not observable.
    holdout, treatment = expected[HOLDOUT], expected[TREATMENT]
    assert 700 < holdout["decisions"] < 900 and holdout["emitted"] == holdout["delivered"] == 0
    assert 0 < treatment["churn_observable"] < treatment["decisions"]


def test_the_report_recovers_the_planted_effects(loaded: ClickHouseStore) -> None:
    [value] = value_report(loaded)
    assert (value.trigger, value.experiment, value.holdout.arm) == (TRIGGER, EXPERIMENT, HOLDOUT)
    [treated] = value.arms
    assert treated.totals.arm == TREATMENT
    t, h = PLANTED[TREATMENT], PLANTED[HOLDOUT]
    mean_amount = sum(AMOUNT) / 2
    for name, estimate, truth in [
        ("complaint rate difference", treated.complaint_difference, t.complaint - h.complaint),
        ("conversion uplift", treated.conversion_uplift, t.conversion - h.conversion),
        ("revenue per decision uplift", treated.revenue_uplift, (t.conversion - h.conversion) * mean_amount),
        ("churn rate difference", treated.churn_difference, t.churn - h.churn),
    ]:
        assert estimate is not None, name
        assert estimate.covers(truth), (name, estimate, truth)
        assert estimate.excludes_zero(), (name, estimate)
    # Rates without an interval: within a few standard errors (all below 0.01 here) of the truth.
    assert treated.problem_prevention == pytest.approx(1 - t.complaint / h.complaint, abs=0.08)
    assert treated.response_rate == pytest.approx(1 - (1 - P_OPENED) * (1 - P_ACCEPTED), abs=0.04)
    # Emitted 90% of the time; the caps and opt-outs are in the denominator, never in the numerator.
    assert treated.adoption_rate == pytest.approx(P_DELIVERED * P_ACCEPTED, abs=0.04)
    automatic = P_RESOLVED * (1 - P_ESCALATED)
    assert treated.automation_share == pytest.approx(automatic / (automatic + P_ESCALATED), abs=0.04)


def test_forewarn_report_prints_the_figures(
    loaded_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ClickHouseStore(loaded_dsn)
    try:
        [value] = value_report(store)
    finally:
        store.close()
    monkeypatch.setenv("FOREWARN_CLICKHOUSE_DSN", loaded_dsn)
    treated = value.arms[0]
    assert main(["report"]) == 0
    out = capsys.readouterr().out
    assert f"{TRIGGER} / experiment {EXPERIMENT}: {TREATMENT} vs {HOLDOUT}" in out
    for figure in (
        f"{treated.totals.decisions} ({treated.totals.users})",
        f"{value.holdout.decisions} ({value.holdout.users})",
        treated.complaint_difference.render(percent=True),
        treated.conversion_uplift.render(percent=True),
        treated.revenue_uplift.render(),
        treated.churn_difference.render(percent=True),
        f"{treated.problem_prevention * 100:.1f}%",
        f"{treated.automation_share * 100:.1f}%",
    ):
        assert figure in out, figure


def test_the_report_says_na_where_there_is_nothing_to_compare() -> None:
    rows = [
        # A trigger in no experiment: rates, but no holdout to compare with.
        ("payment_assist", "", "", 10, 9, 10, 8, 4, 2, 1, 1, 0, 1, 30.0, 900.0, 0, 0),
        ("renewal_reminder", "q1", HOLDOUT, 5, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0.0, 0, 0),
    ]
    lines = format_report(compare_arms(rows)).splitlines()
    assert lines[0] == "payment_assist / no experiment: (no arm), no holdout arm"
    cells = {label: rest for label, *rest in (re.split(r" {2,}", line) for line in lines[3:12])}
    assert cells["reach response rate (responded / delivered)"] == ["50.0%"]
    assert cells["conversion rate (7 days)"] == ["10.0%", "n/a", "n/a"]
    assert cells["churn rate (28 days, observable)"] == ["n/a", "n/a", "n/a"]  # nothing observable yet
    assert "complaint rate (7 days)" not in cells  # no complaints: no prevention rate to speak of
    assert lines[-1] == "renewal_reminder / experiment q1: only the holdout arm has decisions (5)"
    assert format_report([]).startswith("no final decisions yet")


# --- window edges, by hand


def test_window_edges_and_what_does_not_count(store: ClickHouseStore) -> None:
    data = Dataset()
    t = T0 + 10 * DAY
    ids: dict[str, str] = {}

    def case(
        name: str,
        *,
        arm: str = TREATMENT,
        decision: str = "emitted",
        reason: str = "",
        at: int = t,
        order: str = "o1",
    ) -> tuple[str, str]:
        user, intervention = f"user-{name}", str(uuid.uuid5(NAMESPACE, name))
        ids[name] = intervention
        data.decide(intervention, decision, reason, arm, user, at, order, at + 1_000)
        return user, intervention

    user, _ = case("complaint at 7 days")
    data.click("support_contact", t + 7 * DAY, user, reason="delivery", order_id="o1")
    user, _ = case("complaint 1 ms after 7 days")
    data.click("support_contact", t + 7 * DAY + 1, user, reason="delivery", order_id="o1")
    # Later than the other cases: the events read start after the earliest decision anyway.
    user, _ = case("complaint before or at the decision", at=t + DAY)
    data.click("support_contact", t + DAY - 1, user, reason="delivery", order_id="o1")
    data.click("support_contact", t + DAY, user, reason="delivery", order_id="o1")
    case("another user's complaint")
    data.click("support_contact", t + DAY, "someone-else", reason="delivery", order_id="o1")
    user, _ = case("complaint about another order")
    data.click("support_contact", t + DAY, user, reason="delivery", order_id="o2")
    user, _ = case("complaint about no order")
    data.click("support_contact", t + DAY, user, reason="delivery")
    user, _ = case("decision about no order", order="")
    data.click("support_contact", t + DAY, user, reason="delivery", order_id="o9")
    user, _ = case("billing complaint")
    data.click("support_contact", t + DAY, user, reason="billing", order_id="o1")
    user, intervention = case("capped", decision="suppressed", reason="frequency_cap")
    for outcome in ("delivered", "opened", "accepted", "resolved"):
        data.outcome(intervention, outcome, t + 60_000, user)
    user, intervention = case("holdout", arm=HOLDOUT, decision="suppressed", reason="holdout")
    data.outcome(intervention, "delivered", t + 60_000, user)
    user, intervention = case("escalated")
    for outcome in ("delivered", "resolved", "escalated"):
        data.outcome(intervention, outcome, t + 60_000, user)
    user, intervention = case("resolved")
    for outcome in ("delivered", "opened", "opened", "dismissed", "resolved"):
        data.outcome(intervention, outcome, t + 60_000, user)
    user, _ = case("orders at and after 7 days")
    data.click("order_completed", t + 7 * DAY, user, order_id="o5", amount=12.5)
    data.click("order_completed", t + 7 * DAY + 1, user, order_id="o6", amount=99.0)
    user, _ = case("order without an amount")
    data.click("order_completed", t + 1, user, order_id="o7")
    user, _ = case("active at 28 days")
    data.click("page_view", t + 28 * DAY, user, page="/")
    user, _ = case("active only at the decision", at=t + DAY)
    data.click("page_view", t + DAY, user, page="/")
    user, _ = case("active 1 ms after 28 days")
    data.click("page_view", t + 28 * DAY + 1, user, page="/")

    user, _ = case("cancelled")
    data.click("page_view", t + DAY, user, page="/")
    data.subscription(user, t + 5 * DAY, "cancelled", t + 30 * DAY)
    user, _ = case("cancelled 1 ms after 28 days")
    data.click("page_view", t + DAY, user, page="/")
    data.subscription(user, t + 28 * DAY + 1, "cancelled", t + 30 * DAY)
    user, _ = case("past due")
    data.click("page_view", t + DAY, user, page="/")
    data.subscription(user, t + 5 * DAY, "past_due", t + 30 * DAY)
    user, intervention = case("deferred, then emitted")
    data.decisions.insert(-1, {**data.decisions[-1], "decision": "deferred", "reason": "quiet_hours"})
    user, intervention = case("deferred only", decision="deferred", reason="quiet_hours")
    user, intervention = case("emitted and suppressed")
    data.decide(intervention, "suppressed", "cooldown", TREATMENT, user, t, "o1", t + 5_000)
    case("observable at the edge", at=NOW - 28 * DAY)
    case("not observable by 1 ms", at=NOW - 28 * DAY + 1)
    data.click("page_view", NOW, "bg0", page="/")

    insert_events(store, data.events)
    insert_decisions(store, data.decisions)
    # Upstream re-processing beyond the sink's window stores an order twice: counted once (FINAL).
    insert_events(store, [e for e in data.events if e.event_type == "order_completed"], first_offset=10_000)
    columns = ("decision", *FLAGS[1:], "revenue", "churned", "churn_observable")
    got = {
        row[0]: dict(zip(columns, row[1:], strict=True))
        for row in store.query(
            f"SELECT toString(intervention_id), {', '.join(columns)} FROM intervention_value"
        )
    }
    name_of = {intervention: name for name, intervention in ids.items()}
    got = {name_of[intervention]: value for intervention, value in got.items()}
    assert "deferred only" not in got and len(got) == len(ids) - 1
    expected_values_by_hand = {
        "complaint at 7 days": {"complained": 1},
        "complaint 1 ms after 7 days": {"complained": 0},
        "complaint before or at the decision": {"complained": 0},
        "another user's complaint": {"complained": 0},
        "complaint about another order": {"complained": 0},
        "complaint about no order": {"complained": 1},
        "decision about no order": {"complained": 1},
        "billing complaint": {"complained": 0},
        "capped": {
            "decision": "suppressed",
            "delivered": 0,
            "responded": 0,
            "accepted": 0,
            "resolved_automatically": 0,
        },
        "holdout": {"decision": "suppressed", "delivered": 0},
        "escalated": {"delivered": 1, "responded": 0, "resolved_automatically": 0, "escalated": 1},
        "resolved": {
            "delivered": 1,
            "responded": 1,
            "accepted": 0,
            "resolved_automatically": 1,
            "escalated": 0,
        },
        "orders at and after 7 days": {"converted": 1, "revenue": 12.5},
        "order without an amount": {"converted": 1, "revenue": 0.0},
        "active at 28 days": {"churned": 0},
        "active only at the decision": {"churned": 1},
        "active 1 ms after 28 days": {"churned": 1},
        "cancelled": {"churned": 1},
        "cancelled 1 ms after 28 days": {"churned": 0},
        "past due": {"churned": 0},
        "deferred, then emitted": {"decision": "emitted"},
        "emitted and suppressed": {"decision": "emitted"},
        "observable at the edge": {"churn_observable": 1},
        "not observable by 1 ms": {"churn_observable": 0},
    }
    for name, flags in expected_values_by_hand.items():
        assert {key: got[name][key] for key in flags} == flags, name
    # And the Python reading of the definitions agrees with the views on every row and column.
    reference = expected_values(data)
    for name, value in got.items():
        want = reference[ids[name]]
        assert value["revenue"] == want["revenue"], name
        assert {k: bool(value[k]) for k in ("churned", "churn_observable", *FLAGS[1:])} == {
            k: want[k] for k in ("churned", "churn_observable", *FLAGS[1:])
        }, name


# --- schema and idempotence


def test_0002_applies_on_top_of_0001_and_again(tmp_path: Path) -> None:
    store = ClickHouseStore(f"chdb://{tmp_path / 'ch'}")
    try:
        # A database made by the previous release: 0001 only, recorded as applied.
        [core] = [m for m in migrations() if m.version == 1]
        store.client.command(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String,"
            " applied_at DateTime DEFAULT now()) ENGINE = ReplacingMergeTree ORDER BY version"
        )
        for statement in core.statements():
            store.client.command(statement)
        store.client.insert("schema_migrations", [[1, core.name]], column_names=["version", "name"])
        later = [m.version for m in migrations() if m.version > 1]
        assert store.apply_schema() == later and store.apply_schema() == []
        assert store.schema_version() == later[-1]
        [policy] = [m for m in migrations() if m.version == 2]
        for statement in policy.statements():  # a start that died half-way through re-runs the file
            store.client.command(statement)
        tables = {
            row[0] for row in store.query("SELECT name FROM system.tables WHERE database = currentDatabase()")
        }
        assert {"decisions", "intervention_outcomes", "intervention_value", "value_by_arm"} <= tables
        assert store.query("SELECT count() FROM value_by_arm") == [(0,)]
    finally:
        store.close()


def test_a_retried_decisions_batch_is_stored_once(store: ClickHouseStore, dataset: Dataset) -> None:
    decisions = dataset.decisions[:500]
    assert any(d["decision"] == "deferred" for d in decisions)
    rows = decision_rows(decisions, first_offset=100)
    token = batch_token("decisions", [(1, 100, 599)])
    store.insert("decisions", DECISIONS.columns, rows, token)
    store.insert("decisions", DECISIONS.columns, rows, token)  # the retry after an unseen success
    assert store.query("SELECT count() FROM decisions") == [(500,)]
    assert store.stored_offsets("decisions") == {1: 599}
    # The sink remembers ids as DECISIONS.row_id; ClickHouse must give the same ones back.
    stored = store.recent_ids("decisions", DECISIONS.id_sql, 1, 0)
    assert sorted(stored) == sorted(DECISIONS.row_id(row) for row in rows)
    assert len(set(stored)) == 500  # a deferred and a final row of one intervention are two ids
