"""When the worker makes FAQ forecasts (streams.processes.run.due_forecasts) and what a hot-issue alert
says of them (observe_question's ``forecast`` field)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from models.launch_faq import FaqRules
from models.surge import LaunchProfile, ProductIssues, SurgeRules
from streams.contracts.time import DAY
from streams.processes.catalog import Catalog, CatalogError, parse_catalog
from streams.processes.run import due_forecasts, observe_question

T0 = 1_780_012_800.0  # a midnight UTC: forecasts are made once per UTC day


def iso(day: float) -> str:
    return datetime.fromtimestamp(T0 + day * DAY, UTC).isoformat()


def catalog() -> Catalog:
    products = [
        ("old", "earbuds", 0.0, None),
        ("mid", "earbuds", 89.5, None),
        ("new", "earbuds", 100.0, 2.0),
        ("phone", "phones", 95.0, None),
    ]
    return parse_catalog(
        {
            "products": [
                {"product_id": pid, "category": category, "name": pid, "launched_at": iso(day)}
                | ({} if volume is None else {"expected_volume": volume})
                for pid, category, day, volume in products
            ],
            "skus": [],
        },
        source="test.json",
    )


def old_profile() -> LaunchProfile:
    buckets = [{"pairing": 10.0, "fit": 5.0}, {"battery": 30.0}, {"battery": 30.0}, {}, {}]
    return LaunchProfile(T0, buckets, [sum(b.values()) for b in buckets], {"pairing": ["how to pair"]})


def test_forecasts_are_made_in_the_window_once_a_day_and_when_the_basis_grows() -> None:
    products, rules = catalog(), FaqRules(ahead_days=14)
    profiles = {"old": old_profile(), "mid": LaunchProfile(T0 + 89.5 * DAY, [{}] * 5, [0.0] * 5)}
    made: dict[str, str] = {}

    def due(day: float) -> list[tuple[str, tuple[str, ...]]]:
        found = due_forecasts("earbuds", T0 + day * DAY, products, profiles, made, rules)
        return [(f.product_id, f.buckets[0].based_on) for f in found]

    assert due(70.0) == []  # old launched long ago, mid and new more than 14 days ahead
    assert due(76.0) == [("mid", ("old",))]  # 13.5 days ahead
    assert due(86.2) == [("mid", ("old",)), ("new", ("old",))]
    assert due(86.9) == []  # the same day, the same basis
    assert due(90.1) == [("mid", ("old",)), ("new", ("old",))]  # the next day
    # Once mid's first day is done, new's basis grows: a new forecast the same day.
    assert due(90.55) == [("new", ("old",))]
    assert made["new"].endswith("old:5,mid:1")  # the launches before new and their completed buckets
    assert due(130.1) == []  # 30 days after new's launch
    [forecast] = due_forecasts("earbuds", T0 + 95 * DAY, products, profiles, {}, rules)[1:]
    assert forecast.volume == 2.0 and forecast.buckets[0].topics[0].expected == 20.0  # 2 x 15 x 10/15


def ask(
    value_topic: str, n: int, at: float, products: Catalog, counts: dict, profiles: dict, product: str = "new"
) -> list:
    alerts = []
    for i in range(n):
        question = {
            "question_id": f"{product}-{value_topic}-{at}-{i}",
            "product_id": product,
            "category": products.category_of(product),
            "topic": value_topic,
            "text": f"{value_topic} problem",
            "event_time": round((at + i * 20.0) * 1000),
        }
        alerts += observe_question(question, products, counts, profiles, SurgeRules(), FaqRules())
    return alerts


def test_hot_issues_say_whether_the_launchs_forecast_named_their_topic() -> None:
    products = catalog()
    counts: dict[str, ProductIssues] = {}
    profiles = {"old": old_profile()}
    at = T0 + 100.2 * DAY  # new is 0.2 days old: days 0-1, pairing first and fit second
    [pairing] = ask("pairing", 8, at, products, counts, profiles)
    assert pairing.forecast == {"forecast": True, "rank": 1, "expected": 20.0, "bucket": "0-1"}
    assert pairing.to_wire(0.0)["forecast"] == pairing.forecast
    [other] = ask("charging_case", 8, at + 3600, products, counts, profiles)
    assert other.forecast == {"forecast": False, "rank": None, "expected": None, "bucket": "0-1"}
    # A product out of any launch window (old, ten weeks on): no forecast.
    counts_old: dict[str, ProductIssues] = {}
    ask("steady", 200, T0 + 70 * DAY - 5 * DAY, products, counts_old, profiles, product="old")
    alerts = ask("pairing", 12, T0 + 70 * DAY, products, counts_old, profiles, product="old")
    assert alerts and all(alert.forecast is None for alert in alerts)


def test_the_catalogs_expected_volume_is_optional_and_positive() -> None:
    assert (
        catalog().product("new").expected_volume == 2.0 and catalog().product("old").expected_volume is None
    )
    entry = {"product_id": "p", "category": "c", "name": "P", "launched_at": iso(0)}
    for bad in (0, -1.5, "2", float("inf")):
        with pytest.raises(CatalogError, match="expected_volume"):
            parse_catalog({"products": [entry | {"expected_volume": bad}], "skus": []}, source="t.json")
