"""The FAQ forecast for a launch (models.launch_faq) and the example questions launch profiles keep."""

from __future__ import annotations

import orjson
import pytest

from models.launch_faq import (
    FEW_QUESTIONS,
    NO_EARLIER_LAUNCH,
    NO_QUESTIONS,
    FaqRules,
    forecast,
    forecast_match,
    in_window,
)
from models.surge import CategoryIssues, LaunchProfile, ProductInfo, Question, SurgeRules, observe
from streams.contracts.time import DAY

CATEGORY = "earbuds"


def profile(
    launched_at: float, buckets: list[dict[str, float]], examples: dict | None = None
) -> LaunchProfile:
    return LaunchProfile(launched_at, buckets, [sum(b.values()) for b in buckets], examples or {})


def same(bucket: dict[str, float]) -> list[dict[str, float]]:
    return [dict(bucket) for _ in range(5)]


def launch(product_id: str, day: float) -> ProductInfo:
    return ProductInfo(product_id, CATEGORY, day * DAY)


def test_only_earlier_launches_and_their_completed_buckets_are_used() -> None:
    old, recent, later = launch("old", 0), launch("recent", 95), launch("later", 300)
    new = launch("new", 100)
    profiles = {
        "old": profile(0.0, same({"pairing": 40, "battery": 10})),
        # Five days old at the forecast: its 0-1 and 1-3 buckets are complete, 3-7 still filling.
        "recent": profile(95 * DAY, [{"fit": 40}, {"fit": 40}, {"fit": 30}, {}, {}]),
        "later": profile(300 * DAY, same({"returns": 1000})),  # after the product: never used
    }
    made = forecast(new, [old, recent, later, new], profiles, now=100 * DAY)
    assert [b.based_on for b in made.buckets] == [("old", "recent"), ("old", "recent")] + [("old",)] * 3
    assert [t.topic for t in made.buckets[0].topics] == ["fit", "pairing", "battery"]
    assert [t.topic for t in made.buckets[2].topics] == ["pairing", "battery"]
    assert all("returns" not in [t.topic for t in b.topics] for b in made.buckets)
    first = made.buckets[0]
    assert [round(t.share, 3) for t in first.topics] == [0.5, 0.4, 0.1]
    assert first.volume == pytest.approx(45.0) and first.questions == 90.0  # the mean of 50 and 40
    assert [round(t.expected, 1) for t in first.topics] == [22.5, 18.0, 4.5]
    assert [(b.label, b.reason) for b in made.buckets] == [
        ("0-1", ""), ("1-3", ""), ("3-7", ""), ("7-14", ""), ("14-30", "")
    ]  # fmt: skip


def test_counts_scale_with_the_products_expected_volume() -> None:
    profiles = {"old": profile(0.0, same({"pairing": 30, "battery": 10}))}
    plain = forecast(launch("new", 100), [launch("old", 0)], profiles, now=100 * DAY)
    double = forecast(launch("new", 100), [launch("old", 0)], profiles, now=100 * DAY, volume=2.0)
    assert [t.expected for t in plain.buckets[0].topics] == [30.0, 10.0]
    assert [t.expected for t in double.buckets[0].topics] == [60.0, 20.0]
    assert double.forecast_id != plain.forecast_id


def test_without_an_earlier_launch_the_forecast_is_empty_with_its_reason() -> None:
    made = forecast(launch("first", 10), [launch("first", 10)], {}, now=0.0)
    assert made.reason == NO_EARLIER_LAUNCH
    assert [(b.topics, b.reason) for b in made.buckets] == [((), NO_EARLIER_LAUNCH)] * 5
    # An earlier launch whose buckets are still to come, or were never asked about: no questions.
    profiles = {"old": profile(0.0, [{"pairing": 5}, {}, {}, {}, {}])}
    made = forecast(launch("new", 100), [launch("old", 0)], profiles, now=100 * DAY)
    assert made.reason == "" and [b.reason for b in made.buckets] == [FEW_QUESTIONS] + [NO_QUESTIONS] * 4


def test_few_questions_are_used_only_when_no_launch_has_enough() -> None:
    rules = FaqRules(min_questions=20)
    profiles = {
        "a": profile(0.0, [{"pairing": 30}, {"fit": 3}, {}, {}, {}]),
        "b": profile(10 * DAY, [{"battery": 4}, {"battery": 2}, {}, {}, {}]),
    }
    made = forecast(launch("new", 100), [launch("a", 0), launch("b", 10)], profiles, 100 * DAY, rules)
    assert made.buckets[0].based_on == ("a",) and made.buckets[0].reason == ""
    assert [t.topic for t in made.buckets[0].topics] == ["pairing"]
    assert made.buckets[1].based_on == ("a", "b") and made.buckets[1].reason == FEW_QUESTIONS
    assert [(t.topic, t.share) for t in made.buckets[1].topics] == [("battery", 0.5), ("fit", 0.5)]


def test_top_k_and_examples_latest_launch_first() -> None:
    many = {f"topic{n}": float(10 + n) for n in range(8)}
    profiles = {
        "a": profile(0.0, same(many), {"topic7": ["a1", "a2", "shared"]}),
        "b": profile(50 * DAY, same(many), {"topic7": ["b1", "shared"]}),
    }
    made = forecast(launch("new", 100), [launch("a", 0), launch("b", 50)], profiles, 100 * DAY)
    topics = made.buckets[0].topics
    assert [t.topic for t in topics] == ["topic7", "topic6", "topic5", "topic4", "topic3"]
    assert [t.rank for t in topics] == [1, 2, 3, 4, 5]
    assert topics[0].examples == ("b1", "shared", "a1") and topics[1].examples == ()


def test_the_forecast_id_is_per_day_and_basis() -> None:
    profiles = {"old": profile(0.0, same({"pairing": 30}))}
    products = [launch("old", 0), launch("new", 100)]

    def made(now: float) -> str:
        return forecast(products[1], products, profiles, now).forecast_id

    assert made(90 * DAY) == made(90.9 * DAY) != made(91 * DAY)
    wire = forecast(products[1], products, profiles, 90 * DAY).to_wire(wall=5.0)
    assert wire["forecast_id"] == made(90 * DAY) and wire["schema"] == 1
    assert [b["bucket"] for b in wire["buckets"]] == ["0-1", "1-3", "3-7", "7-14", "14-30"]
    assert wire["buckets"][0]["topics"][0] == {
        "rank": 1, "topic": "pairing", "share": 1.0, "expected_count": 30.0, "examples": []
    }  # fmt: skip
    assert orjson.loads(orjson.dumps(wire)) == wire


def test_the_window_runs_from_ahead_days_before_launch_to_30_days_after() -> None:
    product = launch("new", 100)
    rules = FaqRules(ahead_days=7)
    assert not in_window(product, 92.9 * DAY, rules)
    assert in_window(product, 93 * DAY, rules) and in_window(product, 129.9 * DAY, rules)
    assert not in_window(product, 130 * DAY, rules)
    assert not in_window(ProductInfo("x", CATEGORY, None), 0.0)


def test_forecast_match_says_whether_and_where_the_topic_was_forecast() -> None:
    profiles = {"old": profile(0.0, [{"pairing": 30, "fit": 10}, {"battery": 30}, {}, {}, {}])}
    made = forecast(launch("new", 100), [launch("old", 0)], profiles, 100 * DAY)
    at = 100.5 * DAY
    assert forecast_match(made, "fit", at) == {"forecast": True, "rank": 2, "expected": 10.0, "bucket": "0-1"}
    assert forecast_match(made, "battery", at) == {
        "forecast": False, "rank": None, "expected": None, "bucket": "0-1"
    }  # fmt: skip
    assert forecast_match(made, "battery", 102 * DAY)["forecast"] is True
    assert forecast_match(made, "battery", 105 * DAY) is None  # 3-7: no questions, no forecast
    assert forecast_match(made, "battery", 99 * DAY) is None  # before the launch


def test_launch_profiles_keep_a_few_example_questions_per_topic() -> None:
    rules = SurgeRules(max_examples=2, max_prior_topics=3)
    state, product = CategoryIssues(), ProductInfo("buds", CATEGORY, 0.0)
    asked = [("pairing", "Won't PAIR!"), ("pairing", "won't pair"), ("pairing", "How to pair?"),
             ("pairing", "Pairing fails"), ("fit", "Falls out"), ("battery", "Dies fast"),
             ("case", "Case?")]  # fmt: skip
    for n, (topic, text) in enumerate(asked):
        observe(state, Question("buds", topic, text, 3600.0 + n, f"q{n}"), product, None, rules)
    kept = state.profiles["buds"].examples
    # One key per normalised question, the first ones; at most max_prior_topics topics: "case" took
    # the counter of "fit" (space-saving), and with it the place of its examples.
    assert kept == {"pairing": ["won t pair", "how to pair"], "battery": ["dies fast"], "case": ["case"]}


def test_an_example_topic_no_bucket_counts_gives_its_place() -> None:
    rules = SurgeRules(max_prior_topics=2)
    kept = LaunchProfile(0.0, [{"pairing": 3.0, "fit": 1.0}], [4.0], {"gone": ["x"], "pairing": ["p"]})
    kept.add_example("fit", "falls out", rules)
    assert kept.examples == {"pairing": ["p"], "fit": ["falls out"]}


def test_a_profile_stored_before_examples_still_loads_and_round_trips() -> None:
    old = {"launched_at": 5.0, "buckets": [{"pairing": 2.0}], "totals": [2.0]}
    loaded = LaunchProfile.from_dict(old)
    assert loaded.examples == {} and loaded.buckets == [{"pairing": 2.0}]
    loaded.examples["pairing"] = ["how to pair"]
    again = LaunchProfile.from_dict(orjson.loads(orjson.dumps(loaded.to_dict())))
    assert again == loaded
