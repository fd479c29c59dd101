"""FAQ forecast for a launch: the question topics a new product will be asked about, per age bucket,
learnt from the category's earlier launches.

:func:`forecast` reads the launch profiles hot-issue detection keeps (:class:`models.surge.LaunchProfile`:
per earlier launch, its questions per topic in each age bucket, days 0-1, 1-3, 3-7, 7-14 and 14-30
since launch, and a few example questions per topic) and gives, for each bucket, the ``top_k`` topics
with their expected count and examples (:class:`LaunchForecast`).

**Method.** Only launches made before the product and, of each, only the buckets it has completed
by ``now`` (a bucket still filling would understate its counts) are used. A topic's share in a
bucket is its mean share over those launches (each launch weighs the same, however big it was);
launches with at least ``min_questions`` questions in the bucket are used, or, when none has that
many, every launch with any (the bucket is then marked ``few_questions``). The expected count is
the share times the bucket's expected volume: the mean of those launches' questions in the bucket
times the product's ``volume`` (its expected question volume relative to the earlier launches'
mean; the catalog's ``expected_volume``, 1.0 when not given). A bucket without a basis has no
topics and a ``reason`` (``no_earlier_launch``, ``no_questions``).

:func:`in_window` says when a product has a forecast (from ``ahead_days`` before its launch to
``prior_days``, 30, after); :func:`forecast_match` says whether a surging topic was forecast.

>>> from models.surge import LaunchProfile, ProductInfo
>>> DAY = 86400.0
>>> def profile(launched_at, first_day, later):
...     buckets = [dict(first_day), dict(later), dict(later), dict(later), dict(later)]
...     return LaunchProfile(launched_at, buckets, [sum(b.values()) for b in buckets],
...                          {"pairing": ["how do i pair"], "battery": ["battery drains fast"]})
>>> profiles = {"buds-1": profile(0.0, {"pairing": 30, "battery": 10}, {"battery": 40, "pairing": 10}),
...             "buds-2": profile(100 * DAY, {"pairing": 45, "battery": 15}, {"battery": 50})}
>>> earlier = [ProductInfo("buds-1", "earbuds", 0.0), ProductInfo("buds-2", "earbuds", 100 * DAY)]
>>> new = ProductInfo("buds-3", "earbuds", 200 * DAY)
>>> made = forecast(new, earlier, profiles, now=190 * DAY, volume=2.0)
>>> [(t.topic, round(t.expected, 1)) for t in made.buckets[0].topics]  # days 0-1
[('pairing', 75.0), ('battery', 25.0)]
>>> [(t.topic, round(t.expected, 1), t.examples) for t in made.buckets[4].topics]  # days 14-30
[('battery', 90.0, ('battery drains fast',)), ('pairing', 10.0, ('how do i pair',))]
>>> forecast(ProductInfo("buds-1", "earbuds", 0.0), earlier, profiles, now=0.0).reason
'no_earlier_launch'
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from models.surge import LaunchProfile, ProductInfo, SurgeRules
from streams.contracts.time import DAY, iso_time

LAUNCH_FAQ_SCHEMA = 1
FORECAST_NAMESPACE = uuid.UUID("4f0c2a9e-6d1b-5e83-a7c4-2b9e8d5f1a36")
NO_EARLIER_LAUNCH = "no_earlier_launch"  # no launch of the category before the product has a profile
NO_QUESTIONS = "no_questions"  # earlier launches, but none completed the bucket with a question
FEW_QUESTIONS = "few_questions"  # made from launches with fewer than min_questions in the bucket


@dataclass(frozen=True, slots=True)
class FaqRules:
    """The parameters of :func:`forecast` and :func:`in_window`.

    ``ahead_days``: a product has a forecast from this many days before its launch (the worker's
    ``faq_ahead_days`` setting); ``top_k`` topics per bucket, each with up to ``examples`` example
    questions; ``min_questions``: an earlier launch's bucket with fewer is used only when no launch
    has that many. The buckets and the 30 days after launch are the surge rules' (``age_buckets``).
    """

    ahead_days: float = 14.0
    top_k: int = 5
    examples: int = 3
    min_questions: float = 20.0
    surge: SurgeRules = field(default_factory=SurgeRules)

    @property
    def edges(self) -> tuple[float, ...]:
        """The buckets' edges in days since launch: (0, 1, 3, 7, 14, 30)."""
        return (0.0, *self.surge.age_buckets)


@dataclass(frozen=True, slots=True)
class ForecastTopic:
    """One expected topic of a bucket: its rank (1 first), share and expected count, examples."""

    rank: int
    topic: str
    share: float  # mean share of the bucket's questions over the launches used
    expected: float  # share x the bucket's expected volume
    examples: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BucketForecast:
    """The forecast of one age bucket, ``start``-``end`` days since launch."""

    index: int
    start: float
    end: float
    topics: tuple[ForecastTopic, ...]
    volume: float  # expected questions in the bucket
    based_on: tuple[str, ...]  # the earlier launches used
    questions: float  # their questions in the bucket, the evidence behind it
    reason: str = ""  # why there are no topics, or FEW_QUESTIONS; empty: a full basis

    @property
    def label(self) -> str:
        """``0-1``, ``1-3``, ... (days since launch)."""
        return f"{self.start:g}-{self.end:g}"

    def to_wire(self) -> dict[str, Any]:
        return {
            "bucket": self.label,
            "index": self.index,
            "expected_questions": round(self.volume, 3),
            "based_on": list(self.based_on),
            "questions": round(self.questions, 3),
            "reason": self.reason,
            "topics": [
                {
                    "rank": topic.rank,
                    "topic": topic.topic,
                    "share": round(topic.share, 4),
                    "expected_count": round(topic.expected, 3),
                    "examples": list(topic.examples),
                }
                for topic in self.topics
            ],
        }


@dataclass(frozen=True, slots=True)
class LaunchForecast:
    """A product's FAQ forecast as made at ``made_at`` (event time): one :class:`BucketForecast` per
    age bucket. ``reason`` is NO_EARLIER_LAUNCH when nothing could be learnt, else empty."""

    product_id: str
    category: str
    launched_at: float
    made_at: float
    volume: float  # the product's expected volume relative to the earlier launches' mean
    buckets: tuple[BucketForecast, ...]
    reason: str = ""

    @property
    def forecast_id(self) -> str:
        """Deterministic: a UUIDv5 of the product, the event-time day it was made and its basis (the
        launches and buckets used, the volume), so a replay, or a remake the same day, repeats it."""
        day = int(self.made_at // DAY)
        basis = ";".join(f"{b.index}:{','.join(b.based_on)}" for b in self.buckets)
        return str(
            uuid.uuid5(FORECAST_NAMESPACE, f"{self.product_id}\x1f{day}\x1f{basis}\x1f{self.volume:g}")
        )

    def bucket_at(self, age: float) -> BucketForecast | None:
        """The bucket of ``age`` seconds since launch; None outside the 30 days."""
        days = age / DAY
        return next((b for b in self.buckets if b.start <= days < b.end), None)

    def to_wire(self, wall: float) -> dict[str, Any]:
        """The ``launch_faq_forecasts`` record (schema 1); ``wall`` is when the worker made it."""
        return {
            "schema": LAUNCH_FAQ_SCHEMA,
            "forecast_id": self.forecast_id,
            "product_id": self.product_id,
            "category": self.category,
            "launched_at": iso_time(self.launched_at),
            "made_at": iso_time(self.made_at),
            "decided_at": iso_time(wall),
            "volume": self.volume,
            "reason": self.reason,
            "buckets": [bucket.to_wire() for bucket in self.buckets],
        }


def in_window(product: ProductInfo, now: float, rules: FaqRules | None = None) -> bool:
    """Whether ``product`` has a forecast at ``now``: from ``ahead_days`` before its launch until
    ``prior_days`` (30) after it.

    >>> product = ProductInfo("p", "phones", launched_at=100 * 86400.0)
    >>> [in_window(product, day * 86400.0) for day in (85, 86, 100, 129, 130)]
    [False, True, True, True, False]
    """
    rules = rules or FaqRules()
    if product.launched_at is None:
        return False
    days = (now - product.launched_at) / DAY
    return -rules.ahead_days <= days < rules.surge.prior_days


def _bucket(
    index: int,
    start: float,
    end: float,
    launches: list[tuple[ProductInfo, LaunchProfile]],
    volume: float,
    rules: FaqRules,
) -> BucketForecast:
    with_questions = [(p, profile) for p, profile in launches if profile.totals[index] > 0]
    if not with_questions:
        return BucketForecast(index, start, end, (), 0.0, (), 0.0, NO_QUESTIONS)
    enough = [(p, profile) for p, profile in with_questions if profile.totals[index] >= rules.min_questions]
    used = enough or with_questions
    shares: dict[str, float] = {}
    for _, profile in used:
        total = profile.totals[index]
        for topic, count in profile.buckets[index].items():
            shares[topic] = shares.get(topic, 0.0) + count / total / len(used)
    questions = sum(profile.totals[index] for _, profile in used)
    expected_volume = volume * questions / len(used)
    ranked = sorted(shares.items(), key=lambda item: (-item[1], item[0]))[: rules.top_k]
    topics = []
    for rank, (topic, share) in enumerate(ranked, 1):
        examples: list[str] = []
        for _, profile in reversed(used):  # the latest launch's wording first
            for example in profile.examples.get(topic, ()):
                if example not in examples and len(examples) < rules.examples:
                    examples.append(example)
        topics.append(ForecastTopic(rank, topic, share, share * expected_volume, tuple(examples)))
    based_on = tuple(p.product_id for p, _ in used)
    return BucketForecast(
        index,
        start,
        end,
        tuple(topics),
        expected_volume,
        based_on,
        questions,
        "" if enough else FEW_QUESTIONS,
    )


def forecast(
    product: ProductInfo,
    launches: Sequence[ProductInfo],
    profiles: Mapping[str, LaunchProfile],
    now: float,
    rules: FaqRules | None = None,
    volume: float | None = None,
) -> LaunchForecast:
    """The FAQ forecast of ``product`` at ``now`` (event time, epoch s).

    ``launches``: the category's products (the catalog's; those launched before ``product``, with a
    profile in ``profiles``, are used); ``volume``: the product's expected question volume relative to
    the earlier launches' mean (None: 1.0). Pure: the profiles are only read.
    """
    rules = rules or FaqRules()
    if product.launched_at is None:
        raise ValueError(f"product {product.product_id!r} has no launch date")
    volume = 1.0 if volume is None else float(volume)
    earlier = []
    for launch in sorted(launches, key=lambda p: (p.launched_at or 0.0, p.product_id)):
        profile = profiles.get(launch.product_id)
        if (
            profile is not None
            and launch.category == product.category
            and launch.launched_at is not None
            and launch.launched_at < product.launched_at
        ):
            earlier.append((launch, profile))
    edges = rules.edges
    buckets = []
    for index, (start, end) in enumerate(pairwise(edges)):
        complete = [
            (launch, profile)
            for launch, profile in earlier
            if index < len(profile.totals) and launch.launched_at + end * DAY <= now  # type: ignore[operator]
        ]
        if not earlier:
            buckets.append(BucketForecast(index, start, end, (), 0.0, (), 0.0, NO_EARLIER_LAUNCH))
        else:
            buckets.append(_bucket(index, start, end, complete, volume, rules))
    return LaunchForecast(
        product.product_id,
        product.category,
        product.launched_at,
        now,
        volume,
        tuple(buckets),
        "" if earlier else NO_EARLIER_LAUNCH,
    )


def forecast_match(made: LaunchForecast, topic: str, at: float) -> dict[str, Any] | None:
    """What a ``hot_issues`` alert says of its topic at event time ``at``: ``{"forecast": true/false,
    "rank", "expected", "bucket"}`` (rank and expected count in the bucket's forecast; None when not
    named), or None when ``at`` is outside the 30 days or the bucket has no forecast.

    >>> topic = ForecastTopic(1, "pairing", 0.6, 12.0, ())
    >>> bucket = BucketForecast(0, 0, 1, (topic,), 20.0, ("o",), 40.0)
    >>> made = LaunchForecast("p", "c", 0.0, 0.0, 1.0, (bucket,))
    >>> forecast_match(made, "pairing", 3600.0), forecast_match(made, "battery", 3600.0)["forecast"]
    ({'forecast': True, 'rank': 1, 'expected': 12.0, 'bucket': '0-1'}, False)
    """
    bucket = made.bucket_at(at - made.launched_at)
    if bucket is None or not bucket.topics:
        return None
    found = next((t for t in bucket.topics if t.topic == topic), None)
    return {
        "forecast": found is not None,
        "rank": None if found is None else found.rank,
        "expected": None if found is None else round(found.expected, 3),
        "bucket": bucket.label,
    }
