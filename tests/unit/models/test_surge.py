"""Hot issues (models.surge): silent on steady traffic, quick and single on a planted surge, a launch
prior that knows what launches of the category always bring, and state that restores exactly."""

from __future__ import annotations

import itertools
import json
import math
import random
import time as clock

import orjson
import pytest

from models.surge import (
    CategoryIssues,
    HotIssue,
    LaunchProfile,
    ProductInfo,
    ProductIssues,
    Question,
    SurgeRules,
    normalise,
    observe,
    poisson_tail,
    rising,
)
from streams.worker.codec import DataclassCodec

HOUR = 3600.0
DAY = 86400.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
RULES = SurgeRules()

# Steady traffic: five mature products, six topics each, questions per hour from 0.2 to 8.
TOPIC_RATES = {"billing": 0.2, "shipping": 0.7, "returns": 1.5, "battery": 3.0, "app": 5.0, "setup": 8.0}
PRODUCTS = [ProductInfo(f"speaker-{n}", "speakers", T0 - 400 * DAY + n * DAY) for n in range(5)]
STEADY_DAYS = 21.0

SURGE_PRODUCT, SURGE_TOPIC = "speaker-2", "battery"
SURGE_AT, SURGE_FACTOR, SURGE_HOURS = T0 + 10.3 * DAY, 8.0, 2.0
SURGE_TEXT = "Battery drains overnight after update 2.1!"
# The stated detection bound for this surge (3/h to 24/h for 2 h): 75 min of event time. Over 50
# seeds the delay had median 35 min, 90th percentile 53, maximum 73; this seed's is 42. Evidence
# comes faster on a busier topic: see test_detection_delay.
MAX_DELAY = 75 * 60.0


def texts(topic: str) -> list[str]:
    return [f"Question {n} about {topic}?" for n in range(8)]


def poisson_times(rng: random.Random, rate_per_hour: float, start: float, end: float) -> list[float]:
    times, now = [], start
    while rate_per_hour > 0:
        now += rng.expovariate(rate_per_hour / HOUR)
        if now >= end:
            return times
        times.append(now)
    return times


def steady(seed: int, days: float = STEADY_DAYS) -> list[Question]:
    rng = random.Random(seed)
    found = []
    for product in PRODUCTS:
        for topic, rate in TOPIC_RATES.items():
            pool = texts(topic)
            for at in poisson_times(rng, rate, T0, T0 + days * DAY):
                found.append(Question(product.product_id, topic, rng.choice(pool), at, ""))
    return found


def planted(seed: int, topic: str = SURGE_TOPIC) -> list[Question]:
    """The surge: ``topic`` on ``SURGE_PRODUCT`` at ``SURGE_FACTOR`` times its rate for 2 h."""
    rng = random.Random(seed)
    extra = (SURGE_FACTOR - 1.0) * TOPIC_RATES[topic]
    times = poisson_times(rng, extra, SURGE_AT, SURGE_AT + SURGE_HOURS * HOUR)
    return [Question(SURGE_PRODUCT, topic, SURGE_TEXT, at, "") for at in times]


def numbered(questions: list[Question]) -> list[Question]:
    ordered = sorted(questions, key=lambda q: (q.event_time, q.product_id, q.topic or "", q.text))
    return [Question(q.product_id, q.topic, q.text, q.event_time, f"e{n}") for n, q in enumerate(ordered)]


def run(
    questions: list[Question],
    catalog: dict[str, ProductInfo],
    with_launches: bool = False,
    state: CategoryIssues | None = None,
    rules: SurgeRules = RULES,
) -> tuple[list[HotIssue], CategoryIssues]:
    state = CategoryIssues() if state is None else state
    launches = list(catalog.values()) if with_launches else None
    alerts = []
    for question in questions:
        alerts += observe(state, question, catalog[question.product_id], launches, rules)
    return alerts, state


STEADY_CATALOG = {product.product_id: product for product in PRODUCTS}


@pytest.fixture(scope="module")
def surge_run() -> tuple[list[Question], list[HotIssue], CategoryIssues]:
    questions = numbered(steady(seed=7) + planted(seed=8))
    alerts, state = run(questions, STEADY_CATALOG)
    return questions, alerts, state


def test_poisson_tail_is_the_exact_tail_for_integer_counts() -> None:
    for expected in (0.3, 2.0, 11.5, 40.0):
        for observed in (1, 3, 8, 20, 60):
            exact = 1.0 - sum(
                math.exp(-expected + i * math.log(expected) - math.lgamma(i + 1)) for i in range(observed)
            )
            assert poisson_tail(observed, expected) == pytest.approx(exact, rel=1e-9, abs=1e-15)
    # Monotone between integers: a larger decayed count is never less surprising.
    values = [poisson_tail(k / 10, 2.0) for k in range(1, 120)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_question_keys_are_normalised_and_chinese_is_kept() -> None:
    assert normalise("  Why won't it   PAIR?!  ") == "why won t it pair"
    assert normalise("耳机\uff0c无法配对\uff01(v2.1)") == "耳机 无法配对 v2 1"
    # Full-width letters, ideographic space, full-width digits.
    assert normalise("\uff21\uff22\uff23\u3000\uff11\uff12\uff13") == "abc 123"
    assert len(normalise("word " * 50)) <= 80
    state = CategoryIssues()
    product = ProductInfo("p", "c", None)
    observe(state, Question("p", None, "Where is my ORDER??", T0, "e1"), product, None)
    observe(state, Question("p", None, "where is my order", T0 + 60, "e2"), product, None)
    assert list(state.products["p"].topics) == ["where is my order"]  # no intent: the key is the topic
    assert state.products["p"].topics["where is my order"].short.value(T0 + 60) > 1.9


def test_steady_poisson_traffic_raises_no_alert() -> None:
    """Budget: zero false alarms here; over seeds 0-19 (about 0.5M questions, 2100 product-days)
    the module docstring's defaults gave none either."""
    questions = numbered(steady(seed=3))
    alerts, state = run(questions, STEADY_CATALOG)
    assert len(questions) > 40_000
    assert alerts == []
    # Not silent by construction: the same state flags a burst on a quiet topic.
    end = questions[-1].event_time
    burst = [Question("speaker-0", "billing", "Charged twice", end + 60 * n, f"b{n}") for n in range(8)]
    fired, _ = run(burst, STEADY_CATALOG, state=state)
    assert [(alert.product_id, alert.topic) for alert in fired] == [("speaker-0", "billing")]


def test_a_planted_surge_alerts_once_quickly_on_the_right_product_and_topic(surge_run) -> None:
    _, alerts, _ = surge_run
    assert [(alert.product_id, alert.topic) for alert in alerts] == [(SURGE_PRODUCT, SURGE_TOPIC)]
    alert = alerts[0]
    delay = alert.detected_at - SURGE_AT
    assert 0.0 < delay < MAX_DELAY, delay
    assert alert.observed >= RULES.min_ratio * alert.expected
    assert alert.p_value < RULES.alpha
    # The baseline left the surge out: it expected about the steady rate over the short window.
    steady_expected = TOPIC_RATES[SURGE_TOPIC] / HOUR * RULES.short_tau
    assert alert.expected == pytest.approx(steady_expected, rel=0.25)
    assert alert.top_questions[0][0] == normalise(SURGE_TEXT)
    assert not alert.launch_prior_used
    wire = alert.to_wire(wall=SURGE_AT + 3600)
    assert wire["schema"] == 1 and wire["decided_at"] == "2026-01-11T08:12:00.000Z"
    assert wire["topic"] == SURGE_TOPIC and wire["rule"] == RULES.describe()
    assert wire["top_questions"][0]["text"] == normalise(SURGE_TEXT)
    assert json.loads(json.dumps(wire)) == wire


@pytest.mark.parametrize(("topic", "bound"), [("setup", 35.0), ("app", 50.0)])
def test_detection_delay(topic: str, bound: float) -> None:
    """An 8x surge is caught sooner on a busier topic. Bounds in minutes, from 50 seeds each
    (median / 90th percentile / maximum): 8/h 18.5 / 28 / 32; 5/h 25.5 / 39 / 47. Not asserted: at
    1.5/h the median is 56 and 2 of 50 surges were missed (21 extra questions over 2 h can stay
    within chance at alpha 1e-4)."""
    product = {SURGE_PRODUCT: STEADY_CATALOG[SURGE_PRODUCT]}
    background = [q for q in steady(seed=21, days=12.0) if q.product_id == SURGE_PRODUCT]
    alerts, _ = run(numbered(background + planted(seed=22, topic=topic)), product)
    assert [alert.topic for alert in alerts] == [topic]
    assert 0.0 < alerts[0].detected_at - SURGE_AT < bound * 60.0


def steady_then_burst(topic_rate: float, burst: int, spacing: float, hours: float = 30.0) -> list[Question]:
    """A regular question every ``1 / topic_rate`` hours for ``hours`` on one topic, then (instead)
    ``burst`` more ``spacing`` seconds apart."""
    every = HOUR / topic_rate
    found = [
        Question("p", "app", "app crash", T0 + n * every, f"s{n}") for n in range(int(hours * topic_rate))
    ]
    start = T0 + hours * HOUR
    return found + [Question("p", "app", "app crash", start + n * spacing, f"b{n}") for n in range(burst)]


def test_the_surge_does_not_mask_itself() -> None:
    """The baseline leaves the short window out (L - S): the burst's own questions barely move the
    expectation they are tested against, even on a product with only 30 h of history."""
    product = {"p": ProductInfo("p", "c", None)}
    alerts, _ = run(steady_then_burst(3.0, burst=20, spacing=30.0), product)
    assert len(alerts) == 1
    history = 30 * HOUR + (alerts[0].detected_at - T0 - 30 * HOUR)
    steady_expected = 3.0 / HOUR * RULES.short_tau * -math.expm1(-history / RULES.short_tau)
    assert alerts[0].expected == pytest.approx(steady_expected, rel=0.08)


def test_large_topics_must_double_not_wobble() -> None:
    """At 200/h a rise to 280/h is far beyond chance (p < alpha) but not a hot issue: ``min_ratio``
    (2) asks for the rate to double. A rise to 500/h alerts."""
    product = {"p": ProductInfo("p", "c", None)}
    questions = steady_then_burst(200.0, burst=560, spacing=HOUR / 280)  # then 280/h for 2 h
    quiet, state = run(questions, product)
    assert quiet == []
    observed = state.products["p"].topics["app"].short.value(questions[-1].event_time)
    expected = 200.0 / HOUR * RULES.short_tau
    assert poisson_tail(observed, expected) < RULES.alpha and observed < RULES.min_ratio * expected
    loud, _ = run(steady_then_burst(200.0, burst=1000, spacing=HOUR / 500), product)  # 500/h for 2 h
    assert len(loud) == 1 and loud[0].observed >= RULES.min_ratio * loud[0].expected


def test_a_topic_never_seen_needs_about_six_questions_at_once() -> None:
    """The expectation's floor (0.5): five questions on a new topic at once are p = 1.7e-4, not yet
    an alert; the sixth is (a floor of 0 would alert on any five)."""
    product = ProductInfo("p", "c", None)
    state = CategoryIssues()
    for n in range(48):  # two days of another topic, so the warm-up is over
        observe(state, Question("p", "billing", "refund", T0 + n * HOUR, f"s{n}"), product, None)
    start = T0 + 48 * HOUR
    fired = [
        len(observe(state, Question("p", "noise", "buzzing noise", start, f"b{n}"), product, None))
        for n in range(6)
    ]
    assert fired == [0, 0, 0, 0, 0, 1]


def test_a_surge_that_comes_back_after_cooling_down_alerts_again(surge_run) -> None:
    questions, _, _ = surge_run
    again = SURGE_AT + 2 * DAY
    second = [
        Question(SURGE_PRODUCT, SURGE_TOPIC, SURGE_TEXT, at, f"s{n}")
        for n, at in enumerate(poisson_times(random.Random(9), 21.0, again, again + 2 * HOUR))
    ]
    alerts, _ = run(numbered(questions + second), STEADY_CATALOG)
    assert [alert.detected_at > again for alert in alerts] == [False, True]
    assert alerts[0].alert_id != alerts[1].alert_id


def test_rising_lists_the_planted_question_first(surge_run) -> None:
    questions, _, _ = surge_run
    # Replay up to an hour into the surge, then ask.
    upto = [q for q in questions if q.event_time <= SURGE_AT + HOUR]
    _, state = run(upto, STEADY_CATALOG)
    top = rising(state, SURGE_PRODUCT, SURGE_AT + HOUR, k=5)
    assert top[0].text == normalise(SURGE_TEXT) and top[0].topic == SURGE_TOPIC
    assert top[0].ratio > 3.0
    assert [item.score for item in top] == sorted((item.score for item in top), reverse=True)
    # The other products have nothing of the kind.
    for product in PRODUCTS:
        if product.product_id != SURGE_PRODUCT:
            assert all(item.score < 4.0 for item in rising(state, product.product_id, SURGE_AT + HOUR))
    assert rising(state, "unknown", SURGE_AT) == []


def test_state_round_trips_through_json_with_identical_decisions(surge_run) -> None:
    questions, alerts, _ = surge_run
    half = next(n for n, q in enumerate(questions) if q.event_time >= SURGE_AT + 10 * 60)
    first, state = run(questions[:half], STEADY_CATALOG)
    restored = CategoryIssues.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
    second, _ = run(questions[half:], STEADY_CATALOG, state=restored)
    assert [a.to_wire(0.0) for a in first + second] == [a.to_wire(0.0) for a in alerts]


# Launch prior: four earbuds launched 40 days apart. For each, questions fall from 60/h to 3/h over
# the first days, "setup" is 70% of them at launch and fades to 20%; four other topics share the rest.
LAUNCHES = [ProductInfo(f"buds-{n}", "earbuds", T0 + 40 * n * DAY) for n in range(4)]
LAUNCH_CATALOG = {product.product_id: product for product in LAUNCHES}
NEW = LAUNCHES[-1]
NEW_TOPIC, NEW_TOPIC_AT = "overheating", NEW.launched_at + 2 * DAY  # in the 1-3 day bucket


def launch_traffic(product: ProductInfo, seed: int, days: float = 21.0) -> list[Question]:
    rng = random.Random(seed)
    others = ["shipping", "battery", "app", "returns"]
    found, step = [], HOUR / 4  # piecewise-constant rates over 15-minute slices
    assert product.launched_at is not None
    for slice_ in range(int(days * DAY / step)):
        start = product.launched_at + slice_ * step
        age_days = slice_ * step / DAY
        total = 3.0 + 57.0 * math.exp(-age_days / 1.5)
        setup = 0.2 + 0.5 * math.exp(-age_days / 2.0)
        rates = {"setup": total * setup} | {topic: total * (1 - setup) / len(others) for topic in others}
        for topic, rate in rates.items():
            for at in poisson_times(rng, rate, start, start + step):
                found.append(
                    Question(product.product_id, topic, f"{topic} question {rng.randrange(6)}", at, "")
                )
    return found


def planted_new_topic(seed: int) -> list[Question]:
    rng = random.Random(seed)
    times = poisson_times(rng, 10.0, NEW_TOPIC_AT, NEW_TOPIC_AT + 3 * HOUR)
    return [Question(NEW.product_id, NEW_TOPIC, "Case gets hot while charging", at, "") for at in times]


@pytest.fixture(scope="module")
def launch_questions() -> list[Question]:
    found = []
    for n, product in enumerate(LAUNCHES):
        found += launch_traffic(product, seed=100 + n)
    return numbered(found + planted_new_topic(seed=200))


def test_launch_prior_expects_setup_but_flags_a_new_topic(launch_questions) -> None:
    alerts, state = run(launch_questions, LAUNCH_CATALOG, with_launches=True)
    later = [alert for alert in alerts if alert.product_id != LAUNCHES[0].product_id]
    # The first launch has no earlier one to learn from; every later one does, and alerts only on
    # the planted topic, once, within its first hour, with the prior in use.
    assert [(alert.product_id, alert.topic) for alert in later] == [(NEW.product_id, NEW_TOPIC)]
    assert later[0].launch_prior_used
    assert 0.0 < later[0].detected_at - NEW_TOPIC_AT < HOUR
    assert {alert.topic for alert in alerts if alert.product_id == LAUNCHES[0].product_id} >= {"setup"}
    # The prior was there to use: every launch's first-day profile is dominated by setup.
    for product in LAUNCHES:
        profile = state.profiles[product.product_id]
        assert profile.buckets[0]["setup"] / profile.totals[0] > 0.55


def test_without_the_prior_the_same_launch_raises_false_alerts_on_setup(launch_questions) -> None:
    alerts, _ = run(launch_questions, LAUNCH_CATALOG, with_launches=False)
    by_product = {p.product_id: {a.topic for a in alerts if a.product_id == p.product_id} for p in LAUNCHES}
    assert "setup" in by_product[NEW.product_id]
    assert all("setup" in topics for topics in by_product.values())
    assert NEW_TOPIC in by_product[NEW.product_id]  # the real issue is still found, among the noise
    assert not any(alert.launch_prior_used for alert in alerts)


def test_the_launch_prior_is_only_for_earlier_launches_of_the_category(launch_questions) -> None:
    # The earlier launches' profiles are all in the state, but the catalog handed over says the
    # first belongs to another category and the second launched after the new product; the third is
    # left out, and the new product itself is listed: none of them may serve as its prior.
    early = [q for q in launch_questions if q.event_time < NEW.launched_at]
    own = [q for q in launch_questions if q.product_id == NEW.product_id and q.event_time < NEW_TOPIC_AT]
    _, state = run(early, LAUNCH_CATALOG, with_launches=True)
    assert set(state.profiles) == {product.product_id for product in LAUNCHES[:3]}
    assert NEW.launched_at is not None
    catalog = [
        ProductInfo(LAUNCHES[0].product_id, "headphones", LAUNCHES[0].launched_at),
        ProductInfo(LAUNCHES[1].product_id, "earbuds", NEW.launched_at + DAY),
        NEW,
    ]
    alerts = []
    for question in own:
        alerts += observe(state, question, NEW, catalog)
    assert {alert.topic for alert in alerts} >= {"setup"}  # as with no prior at all
    assert not any(alert.launch_prior_used for alert in alerts)
    # With the third launch listed the prior is back, and setup is expected.
    _, state = run(early, LAUNCH_CATALOG, with_launches=True)
    alerts = []
    for question in own:
        alerts += observe(state, question, NEW, [*catalog, LAUNCHES[2]])
    assert alerts == []


def test_bounds_hold() -> None:
    rules = SurgeRules(
        max_products=6, max_topics=5, max_questions=8, max_profiles=3, max_prior_topics=4, warmup=0.0
    )
    rng = random.Random(11)
    catalog = {f"p{n}": ProductInfo(f"p{n}", "c", T0 + n * HOUR) for n in range(20)}
    state = CategoryIssues()
    now = T0
    for n in range(6000):
        now += rng.expovariate(1 / 30.0)
        product = catalog[f"p{rng.randrange(20)}"]
        question = Question(
            product.product_id, f"t{rng.randrange(30)}", f"text {rng.randrange(100)}", now, str(n)
        )
        observe(state, question, product, list(catalog.values()), rules)
        assert len(state.products) <= rules.max_products
        assert len(state.profiles) <= rules.max_profiles
        for counts in state.products.values():
            assert len(counts.topics) <= rules.max_topics
            assert len(counts.questions) <= rules.max_questions
        for profile in state.profiles.values():
            assert all(len(bucket) <= rules.max_prior_topics for bucket in profile.buckets)
            assert all(
                sum(b.values()) == pytest.approx(t)
                for b, t in zip(profile.buckets, profile.totals, strict=True)
            )
    # The launches kept are the latest ones.
    assert sorted(state.profiles) == sorted(sorted(catalog, key=lambda k: catalog[k].launched_at)[-3:])


def test_a_question_for_another_product_is_refused() -> None:
    with pytest.raises(ValueError, match="observed as"):
        observe(CategoryIssues(), Question("a", "t", "x", T0, "e"), ProductInfo("b", "c", None), None)


def test_observe_cost(surge_run) -> None:
    """Reported figure (not a benchmark): microseconds per observe on the steady + surge run."""
    questions, _, _ = surge_run
    started = clock.perf_counter()
    run(questions, STEADY_CATALOG)
    per_question = (clock.perf_counter() - started) / len(questions) * 1e6
    print(f"\n{per_question:.1f} us per observe over {len(questions)} questions")
    assert per_question < 5_000  # only guards against a pathological slowdown


def test_the_workers_codec_writes_what_to_dict_gives_and_reads_it_back() -> None:
    """The tables' codec serialises the dataclasses directly (faster); it must be the to_dict JSON."""
    state, product = CategoryIssues(), ProductInfo("p1", "phones", 1.7e9)
    for n in range(300):
        topic = "battery" if n % 3 else None
        observe(
            state, Question("p1", topic, f"question {n % 40}", 1.7e9 + 60 * n, f"q{n}"), product, [product]
        )
    for cls, value in ((ProductIssues, state.products["p1"]), (LaunchProfile, state.profiles["p1"])):
        codec = DataclassCodec(cls)
        raw = codec.dumps(value)
        assert raw == orjson.dumps(value.to_dict())
        assert codec.loads(raw) == value
