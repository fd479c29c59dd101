"""Hot issues: support topics whose question rate surges on a product, found ahead of time.

One :class:`CategoryIssues` holds a product category's state (the worker keeps one per category in a
table; it is plain data: :meth:`CategoryIssues.to_dict` / :meth:`CategoryIssues.from_dict` give JSON).
:func:`observe` takes one support question and returns the alerts it raises; :func:`rising` lists the
questions of a product rising most right now.

**Topic.** A question's ``topic`` (the chat's intent id) when given, else its *question key*:
:func:`normalise` of the text (NFKC, case-folded, every run of characters that are neither letters nor
digits collapsed to one space, so Chinese characters stay) cut to ``key_chars`` (80). The key is also
the question's identity for the rising questions.

**Method**, in short: per (product, topic) two counts decay in event time, a short one ``S`` (half-life
1 h) and a long one; the baseline is the long count minus the short one, so the questions being
tested are left out of their own expectation. While a product is young (``prior_days``, 30, since its
launch) the expectation blends in what earlier launches of the category asked at the same age. A
topic **surges** when the one-sided Poisson tail ``P(N >= S)`` of its expectation is under ``alpha``
(1e-4), ``S >= min_count`` (5) and ``S >= min_ratio * expected`` (2); it alerts once until it has
cooled down (``cooldown``, 6 h, and no longer significant at ``rearm_alpha``, 0.01), and an alert's
id is stable under replay. A product watched from the middle of its life waits ``warmup`` (1 day).
The state is bounded (products, topics, questions, launch profiles: :class:`SurgeRules`).

The formulas, the launch prior, the bounds and the detection delays measured by
``tests/unit/models/test_surge.py``: docs/processes.md, "Hot issues in detail".

>>> HOUR = 3600.0
>>> state, rules = CategoryIssues(), SurgeRules()
>>> product = ProductInfo("buds-2", "earbuds", launched_at=None)
>>> def ask(n, time, topic, text):
...     return observe(state, Question("buds-2", topic, text, time, f"q{n}"), product, None, rules)
>>> alerts = [a for n in range(3 * 48) for a in ask(n, n * 1800.0, "billing", "Refund please")]
>>> alerts  # three days of a question every half hour: steady
[]
>>> burst = [a for n in range(12) for a in ask(1000 + n, 72 * HOUR + n * 150.0, "pairing",
...                                             "Buds won't pair!")]
>>> [(a.topic, round(a.observed, 1), a.expected, a.detected_at - 72 * HOUR) for a in burst]
[('pairing', 5.6, 0.5, 750.0)]
>>> [(r.text, r.topic) for r in rising(state, "buds-2", 72 * HOUR + 1800.0, k=1)]
[('buds won t pair', 'pairing')]
"""

from __future__ import annotations

import bisect
import math
import unicodedata
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from models.stats import DecayedCount
from streams.contracts.time import DAY, HOUR, iso_time

HOT_ISSUES_SCHEMA = 1
HOT_ISSUE_NAMESPACE = uuid.UUID("9d4b7e21-3f6a-4c58-b0e2-7a1c5d8f3e64")
NO_TEXT = "(no text)"  # the key of a question whose text has no letter or digit


@dataclass(frozen=True, slots=True)
class SurgeRules:
    """The parameters of :func:`observe` (see the module docstring for what each does)."""

    short_half_life: float = HOUR
    baseline_half_life: float = 7 * DAY
    alpha: float = 1e-4
    min_count: float = 5.0
    min_ratio: float = 2.0
    min_expected: float = 0.5
    rearm_alpha: float = 0.01
    cooldown: float = 6 * HOUR
    warmup: float = DAY
    min_history: float = 3 * HOUR
    prior_days: float = 30.0
    age_buckets: tuple[float, ...] = (1.0, 3.0, 7.0, 14.0, 30.0)  # upper edges, days since launch
    prior_strength: float = 200.0
    min_prior_questions: float = 20.0
    max_products: int = 500
    max_topics: int = 200
    max_questions: int = 200
    max_profiles: int = 50
    max_prior_topics: int = 50
    max_examples: int = 3  # example questions (keys) a launch profile keeps per topic
    key_chars: int = 80

    @property
    def short_tau(self) -> float:
        return self.short_half_life / math.log(2.0)

    @property
    def baseline_tau(self) -> float:
        return self.baseline_half_life / math.log(2.0)

    def describe(self) -> str:
        """The rule as the alerts name it."""
        return (
            f"poisson_tail p<{self.alpha:g}, observed>={self.min_count:g}, "
            f"observed>={self.min_ratio:g}x expected"
        )


@dataclass(frozen=True, slots=True)
class ProductInfo:
    """A product as the catalog tells it (``streams.processes.catalog.Product`` has the same attributes)."""

    product_id: str
    category: str
    launched_at: float | None  # epoch seconds; None: unknown


@dataclass(frozen=True, slots=True)
class Question:
    """One support question (``support`` / ``question_asked``); ``topic`` is the chat's intent id."""

    product_id: str
    topic: str | None
    text: str
    event_time: float
    event_id: str


@dataclass(frozen=True, slots=True)
class HotIssue:
    """A topic surging on a product: one alert for the ``hot_issues`` topic."""

    alert_id: str
    product_id: str
    category: str
    topic: str
    observed: float  # the topic's short (decayed) count
    expected: float  # what the baseline (and launch prior) predicted for it
    p_value: float
    rule: str
    top_questions: tuple[tuple[str, float], ...]  # (question key, short count), most asked first
    first_seen: float  # when the topic was first asked about on this product (state's memory)
    detected_at: float  # event time of the question that tipped it
    window_start: float  # detected_at minus the short time constant: the window the count is over
    event_id: str
    launch_prior_used: bool
    # Whether the launch's FAQ forecast named the topic (models.launch_faq.forecast_match); None: the
    # product is not in a launch window, or there is no forecast for its age.
    forecast: dict[str, Any] | None = None

    def to_wire(self, wall: float) -> dict[str, Any]:
        """The ``hot_issues`` record (schema 1); ``wall`` is when the worker decided (epoch s)."""
        return {
            "schema": HOT_ISSUES_SCHEMA,
            "alert_id": self.alert_id,
            "product_id": self.product_id,
            "category": self.category,
            "topic": self.topic,
            "observed": round(self.observed, 3),
            "expected": round(self.expected, 3),
            "statistic": self.p_value,  # one-sided Poisson tail p-value
            "rule": self.rule,
            "top_questions": [{"text": text, "count": round(count, 3)} for text, count in self.top_questions],
            "first_seen": iso_time(self.first_seen),
            "detected_at": iso_time(self.detected_at),
            "decided_at": iso_time(wall),
            "event_id": self.event_id,
            "launch_prior_used": self.launch_prior_used,
            "forecast": self.forecast,
        }


@dataclass(frozen=True, slots=True)
class Rising:
    """A question rising on a product now (:func:`rising`)."""

    text: str  # the normalised question
    topic: str
    observed: float  # short count
    expected: float
    ratio: float  # observed / expected
    score: float  # -log10 of the Poisson tail p-value: what they are sorted by


def _decayed(data: dict[str, float]) -> DecayedCount:
    return DecayedCount(**data)


@dataclass(slots=True)
class TopicStats:
    short: DecayedCount
    long: DecayedCount
    first_seen: float
    last_seen: float
    alerted_at: float | None = None  # hot since then, until cooled down

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TopicStats:
        return cls(
            _decayed(data["short"]), _decayed(data["long"]), data["first_seen"], data["last_seen"],
            data["alerted_at"],
        )  # fmt: skip


@dataclass(slots=True)
class QuestionStats:
    topic: str
    short: DecayedCount
    long: DecayedCount

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuestionStats:
        return cls(data["topic"], _decayed(data["short"]), _decayed(data["long"]))


@dataclass(slots=True)
class ProductIssues:
    """One product's counts: all its questions, per topic, per question (key: normalised text)."""

    started: float  # its first question seen: the start of its exposure
    last_seen: float
    short: DecayedCount
    long: DecayedCount
    topics: dict[str, TopicStats] = field(default_factory=dict)
    questions: dict[str, QuestionStats] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "last_seen": self.last_seen,
            "short": asdict(self.short),
            "long": asdict(self.long),
            "topics": {key: stats.to_dict() for key, stats in self.topics.items()},
            "questions": {key: stats.to_dict() for key, stats in self.questions.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProductIssues:
        return cls(
            data["started"],
            data["last_seen"],
            _decayed(data["short"]),
            _decayed(data["long"]),
            {key: TopicStats.from_dict(value) for key, value in data["topics"].items()},
            {key: QuestionStats.from_dict(value) for key, value in data["questions"].items()},
        )


@dataclass(slots=True)
class LaunchProfile:
    """A product's question counts per age bucket (since launch) per topic, for later launches, and a
    few example questions (keys, :func:`question_key`) per topic, the first ones asked, for the FAQ
    forecast (:mod:`models.launch_faq`). A profile stored before examples were kept loads without."""

    launched_at: float
    buckets: list[dict[str, float]]  # one per age bucket: topic -> questions (space-saving)
    totals: list[float]  # per bucket: the sum of its counters
    examples: dict[str, list[str]] = field(default_factory=dict)  # topic -> up to max_examples keys

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LaunchProfile:
        examples = {topic: list(keys) for topic, keys in data.get("examples", {}).items()}
        return cls(
            data["launched_at"], [dict(bucket) for bucket in data["buckets"]], list(data["totals"]), examples
        )

    def add_example(self, topic: str, key: str, rules: SurgeRules) -> None:
        """Keep ``key`` as an example of ``topic`` while it has fewer than ``max_examples``; at most
        ``max_prior_topics`` topics have examples, a topic no bucket counts any more giving its place."""
        kept = self.examples.get(topic)
        if kept is None:
            if len(self.examples) >= rules.max_prior_topics:
                counted = {name for bucket in self.buckets for name in bucket}
                gone = next((name for name in self.examples if name not in counted), None)
                if gone is None:
                    return
                del self.examples[gone]
            kept = self.examples[topic] = []
        if len(kept) < rules.max_examples and key not in kept:
            kept.append(key)

    def share(self, bucket: int, topic: str, min_questions: float) -> float | None:
        """The topic's share of the bucket's questions; None with fewer than ``min_questions``."""
        if bucket >= len(self.totals) or self.totals[bucket] < min_questions:
            return None
        return self.buckets[bucket].get(topic, 0.0) / self.totals[bucket]


@dataclass(slots=True)
class CategoryIssues:
    """The hot-issue state of one product category: its products and its launches' profiles."""

    products: dict[str, ProductIssues] = field(default_factory=dict)
    profiles: dict[str, LaunchProfile] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "products": {key: product.to_dict() for key, product in self.products.items()},
            "profiles": {key: profile.to_dict() for key, profile in self.profiles.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CategoryIssues:
        return cls(
            {key: ProductIssues.from_dict(value) for key, value in data.get("products", {}).items()},
            {key: LaunchProfile.from_dict(value) for key, value in data.get("profiles", {}).items()},
        )


def normalise(text: str, limit: int = 80) -> str:
    r"""Case-folded NFKC text with every run of non-letters/digits as one space, cut to ``limit``.

    >>> normalise("  How do I PAIR my earbuds?? "), normalise("耳机\uff0c无法配对\uff01"), normalise("?!")
    ('how do i pair my earbuds', '耳机 无法配对', '')
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    # isalnum is true for CJK ideographs too, so Chinese stays while punctuation of either width goes.
    cleaned = "".join(char if char.isalnum() else " " for char in folded)
    return " ".join(cleaned.split())[:limit].rstrip()


def question_key(text: str, rules: SurgeRules) -> str:
    return normalise(text, rules.key_chars) or NO_TEXT


def poisson_tail(observed: float, expected: float) -> float:
    """``P(N >= observed)`` for ``N ~ Poisson(expected)``: the regularised lower incomplete gamma
    function ``P(observed, expected)``, exact for an integer ``observed`` and smooth between.

    >>> exact = 1 - sum(math.exp(-0.5) * 0.5**i / math.factorial(i) for i in range(5))
    >>> abs(poisson_tail(5, 0.5) - exact) < 1e-15, f"{exact:.3g}"
    (True, '0.000172')
    >>> poisson_tail(0, 3.0), poisson_tail(2.0, 0.0)
    (1.0, 0.0)
    """
    if observed <= 0.0:
        return 1.0
    if expected <= 0.0:
        return 0.0
    a, x = observed, expected
    log_front = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:  # series for P, accurate for the small tails that matter here
        term = total = 1.0 / a
        n = 1
        while abs(term) > abs(total) * 1e-15 and n < 100_000:
            term *= x / (a + n)
            total += term
            n += 1
        return min(1.0, math.exp(log_front + math.log(total)))
    # Continued fraction for Q = 1 - P (modified Lentz), as in Numerical Recipes' gcf.
    tiny = 1e-300
    b = x + 1.0 - a
    c, d = 1.0 / tiny, 1.0 / b
    h = d
    for i in range(1, 100_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return max(0.0, -math.expm1(log_front + math.log(h)))


def _own_expected(
    short: DecayedCount, long: DecayedCount, history: float, now: float, rules: SurgeRules
) -> float:
    """The expected short count from the counts' own baseline ``L - S`` (0 before ``min_history``)."""
    if history < rules.min_history:
        return 0.0
    ts, tl = short.tau, long.tau
    recent = short.value(now)
    baseline = max(0.0, long.value(now) - recent)
    window = -ts * math.expm1(-history / ts)
    exposure = -tl * math.expm1(-history / tl) - window
    return baseline / exposure * window if exposure > 0.0 else 0.0


def _bucket(age: float, rules: SurgeRules) -> int | None:
    """The age bucket of ``age`` seconds since launch, None outside them (or past ``prior_days``)."""
    days = age / DAY
    if days < 0.0 or days >= rules.prior_days:
        return None
    index = bisect.bisect_right(rules.age_buckets, days)
    return index if index < len(rules.age_buckets) else None


def _prior_share(
    state: CategoryIssues, product: ProductInfo, launches: list[ProductInfo], bucket: int, topic: str,
    rules: SurgeRules,
) -> float | None:  # fmt: skip
    """The topic's average share in ``bucket`` over the earlier launches of the category that have a
    profile with enough questions there; None if none has."""
    assert product.launched_at is not None
    shares, seen = [], set()
    for earlier in launches:
        if (
            earlier.product_id in seen
            or earlier.category != product.category
            or earlier.launched_at is None
            or earlier.launched_at >= product.launched_at  # the product itself too
        ):
            continue
        seen.add(earlier.product_id)
        profile = state.profiles.get(earlier.product_id)
        share = None if profile is None else profile.share(bucket, topic, rules.min_prior_questions)
        if share is not None:
            shares.append(share)
    return sum(shares) / len(shares) if shares else None


def _product(state: CategoryIssues, product_id: str, time: float, rules: SurgeRules) -> ProductIssues:
    found = state.products.get(product_id)
    if found is None:
        if len(state.products) >= rules.max_products:
            # Drop the least recently asked-about tenth at once: one sort per many insertions.
            by_recency = sorted(state.products, key=lambda key: state.products[key].last_seen)
            for key in by_recency[: max(1, rules.max_products // 10)]:
                del state.products[key]
        found = state.products[product_id] = ProductIssues(
            started=time,
            last_seen=time,
            short=DecayedCount(rules.short_tau),
            long=DecayedCount(rules.baseline_tau),
        )
    found.started = min(found.started, time)
    found.last_seen = max(found.last_seen, time)
    return found


def _topic(product: ProductIssues, topic: str, time: float, rules: SurgeRules) -> TopicStats:
    found = product.topics.get(topic)
    if found is None:
        if len(product.topics) >= rules.max_topics:
            by_recency = sorted(product.topics, key=lambda key: product.topics[key].last_seen)
            for key in by_recency[: max(1, rules.max_topics // 10)]:
                del product.topics[key]
        found = product.topics[topic] = TopicStats(
            DecayedCount(rules.short_tau), DecayedCount(rules.baseline_tau), time, time
        )
    found.first_seen = min(found.first_seen, time)
    found.last_seen = max(found.last_seen, time)
    return found


def _count_question(product: ProductIssues, key: str, topic: str, time: float, rules: SurgeRules) -> None:
    found = product.questions.get(key)
    if found is None:
        if len(product.questions) >= rules.max_questions:
            # The weakest by long count go, so steady and rising questions keep their slots.
            by_weight = sorted(product.questions, key=lambda k: product.questions[k].long.value(time))
            for weak in by_weight[: max(1, rules.max_questions // 10)]:
                del product.questions[weak]
        found = product.questions[key] = QuestionStats(
            topic, DecayedCount(rules.short_tau), DecayedCount(rules.baseline_tau)
        )
    found.topic = topic
    found.short.update(time)
    found.long.update(time)


def _count_launch(
    state: CategoryIssues, product: ProductInfo, bucket: int, topic: str, key: str, rules: SurgeRules
) -> None:
    assert product.launched_at is not None
    profile = state.profiles.get(product.product_id)
    if profile is None:
        if len(state.profiles) >= rules.max_profiles:
            oldest = min(state.profiles, key=lambda key: state.profiles[key].launched_at)
            if state.profiles[oldest].launched_at > product.launched_at:
                return  # older than every kept launch: the latest ones make the better prior
            del state.profiles[oldest]
        buckets = len(rules.age_buckets)
        profile = state.profiles[product.product_id] = LaunchProfile(
            product.launched_at, [{} for _ in range(buckets)], [0.0] * buckets
        )
    if bucket >= len(profile.buckets):
        return  # the rules' buckets changed since the profile was made
    counters = profile.buckets[bucket]
    if topic not in counters and len(counters) >= rules.max_prior_topics:
        smallest = min(counters, key=counters.__getitem__)  # space-saving: inherit its count
        counters[topic] = counters.pop(smallest)
        counters[topic] += 1.0
    else:
        counters[topic] = counters.get(topic, 0.0) + 1.0
    profile.totals[bucket] += 1.0
    profile.add_example(topic, key, rules)


def _top_questions(
    product: ProductIssues, topic: str, now: float, limit: int = 5
) -> tuple[tuple[str, float], ...]:
    found = [
        (key, stats.short.value(now)) for key, stats in product.questions.items() if stats.topic == topic
    ]
    found.sort(key=lambda item: (-item[1], item[0]))
    return tuple(found[:limit])


def alert_id(product_id: str, topic: str, window_start: float) -> str:
    """Deterministic: a UUIDv5 of product, topic and the window's start (ms), so a replay repeats it."""
    return str(uuid.uuid5(HOT_ISSUE_NAMESPACE, f"{product_id}\x1f{topic}\x1f{round(window_start * 1000)}"))


def observe(
    state: CategoryIssues,
    question: Question,
    product: ProductInfo,
    launches: list[ProductInfo] | None,
    rules: SurgeRules | None = None,
) -> list[HotIssue]:
    """Count one question of ``product`` in ``state`` and return the alert it raises, if any.

    ``launches`` are the products of the category (the catalog's; only those launched before
    ``product`` are used); None or empty: no launch prior. Events may come a little out of order.
    """
    rules = rules or SurgeRules()
    if question.product_id != product.product_id:
        raise ValueError(f"question of {question.product_id!r} observed as {product.product_id!r}")
    time = question.event_time
    key = question_key(question.text, rules)
    topic = question.topic if question.topic else key

    counts = _product(state, product.product_id, time, rules)
    stats = _topic(counts, topic, time, rules)
    before = stats.short.value(time)
    for count in (stats.short, stats.long, counts.short, counts.long):
        count.update(time)
    _count_question(counts, key, topic, time, rules)
    age = None if product.launched_at is None else time - product.launched_at
    bucket = None if age is None else _bucket(age, rules)
    if bucket is not None:
        _count_launch(state, product, bucket, topic, key, rules)

    history = time - counts.started
    expected = _own_expected(stats.short, stats.long, history, time, rules)
    prior = None
    if bucket is not None and launches:
        prior = _prior_share(state, product, launches, bucket, topic, rules)
    if prior is not None:
        recent_all = counts.short.value(time)
        own_evidence = max(0.0, counts.long.value(time) - recent_all)
        weight = own_evidence / (own_evidence + rules.prior_strength)
        expected = weight * expected + (1.0 - weight) * prior * recent_all
    expected = max(expected, rules.min_expected)

    if (
        stats.alerted_at is not None
        and time - stats.alerted_at >= rules.cooldown
        and poisson_tail(before, expected) >= rules.rearm_alpha
    ):
        stats.alerted_at = None  # cooled down: the next surge is a new alert
    young = bucket is not None
    if stats.alerted_at is not None or (not young and history < rules.warmup):
        return []
    observed = stats.short.value(time)
    if observed < rules.min_count or observed < rules.min_ratio * expected:
        return []
    p_value = poisson_tail(observed, expected)
    if p_value >= rules.alpha:
        return []
    stats.alerted_at = time
    window_start = time - stats.short.tau
    return [
        HotIssue(
            alert_id=alert_id(product.product_id, topic, window_start),
            product_id=product.product_id,
            category=product.category,
            topic=topic,
            observed=observed,
            expected=expected,
            p_value=p_value,
            rule=rules.describe(),
            top_questions=_top_questions(counts, topic, time),
            first_seen=stats.first_seen,
            detected_at=time,
            window_start=window_start,
            event_id=question.event_id,
            launch_prior_used=prior is not None,
        )
    ]


def rising(
    state: CategoryIssues, product_id: str, now: float, k: int = 10, rules: SurgeRules | None = None
) -> list[Rising]:
    """The product's ``k`` questions most above their own baseline at ``now`` (event time), by score.

    Each tracked question is scored like a topic against its own baseline (``L - S``, the launch
    prior is not used); only those above their expected count are listed. Pure: ``state`` is unchanged.
    """
    rules = rules or SurgeRules()
    counts = state.products.get(product_id)
    if counts is None:
        return []
    history = now - counts.started
    found = []
    for text, stats in counts.questions.items():
        observed = stats.short.value(now)
        expected = max(_own_expected(stats.short, stats.long, history, now, rules), rules.min_expected)
        if observed <= expected:
            continue
        score = -math.log10(max(poisson_tail(observed, expected), 1e-300))
        found.append(Rising(text, stats.topic, observed, expected, observed / expected, score))
    found.sort(key=lambda item: (-item.score, -item.observed, item.text))
    return found[:k]
