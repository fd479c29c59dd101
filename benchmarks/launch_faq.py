"""The FAQ forecast for a launch against the category's all-time top topics, on seeded launches.

    python benchmarks/launch_faq.py [--seeds 5] [--launches 6] [--daily 40] [--write-docs]

1. Per seed, a synthetic catalog: ``--launches`` products in each category of the traffic's launch
   patterns (:data:`streams.tools.traffic.support_questions.LAUNCH_TOPICS`), one every ``--gap-days``
   days. Each product gets the traffic generator's topic mixes (:func:`question_mix`,
   :func:`launch_mix`: the category's age pattern with noise per launch in its first 30 days, its
   steady mix after) and about ``--daily`` questions a day times its weight (Poisson), from its launch
   until the category's latest launch is 30 days old.
2. Every question of a product's first 30 days goes through :func:`models.surge.observe`, which keeps
   the launch profiles (as the worker does); the latest launch of each category is held out.
3. The forecast (:func:`models.launch_faq.forecast`) for the held-out launch is made at its launch,
   from the earlier launches' profiles. Recall@5 per age bucket: the share of the held-out launch's
   actual top-5 topics in the bucket that the forecast's top 5 named.
4. Baselines, in the same run: the category's all-time top-5 topics (every question of the category
   before the held-out launch), and the earlier launches' top 5 over their whole first 30 days
   (launches, but no age buckets). The bucket's expected questions are compared with the actual ones,
   without ``expected_volume`` (1.0) and with the launch's true relative volume.

``--write-docs`` puts the figures into docs/benchmarks.md between the launch-FAQ markers.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from benchmarks.readme import publish  # noqa: E402
from models.launch_faq import FaqRules, forecast  # noqa: E402
from models.surge import CategoryIssues, ProductInfo, Question, SurgeRules, observe  # noqa: E402
from streams.contracts.time import DAY  # noqa: E402
from streams.processes.catalog import Catalog, Product  # noqa: E402
from streams.tools.traffic.support_questions import (  # noqa: E402
    LAUNCH_BUCKETS,
    LAUNCH_TOPICS,
    QUESTIONS,
    launch_bucket,
    launch_mix,
    question_mix,
)

MARKERS = ("<!-- launch-faq-benchmark:start -->", "<!-- launch-faq-benchmark:end -->")
T0 = 1_700_000_000.0
K = 5
LABELS = [f"{a:g}-{b:g}" for a, b in pairwise((0.0, *LAUNCH_BUCKETS))]


def top(counts: Counter[str] | dict[str, float], k: int = K) -> list[str]:
    return [topic for topic, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:k]]


def recall(named: list[str], actual: list[str]) -> float:
    return len(set(named) & set(actual)) / len(actual)


def run_seed(seed: int, args: argparse.Namespace) -> list[dict[str, object]]:
    """One seed's held-out launches: per category, the figures of each bucket."""
    catalog = Catalog()
    for category in sorted(LAUNCH_TOPICS):
        offset = random.Random(f"{seed}:{category}").uniform(0, args.gap_days) * DAY
        for n in range(args.launches):
            product_id = f"{category}-{n}"
            catalog.products[product_id] = Product(
                product_id, category, f"{category.title()} {n}", T0 + offset + n * args.gap_days * DAY
            )
    mix = question_mix(catalog, random.Random(f"{seed}:questions"))
    launches = launch_mix(catalog, mix, random.Random(f"{seed}:launch"))
    rng = random.Random(f"{seed}:asked")
    rules, faq_rules = SurgeRules(), FaqRules()
    found = []
    for category in sorted(LAUNCH_TOPICS):
        products = catalog.launches(category)
        held_out = products[-1]
        end = held_out.launched_at + 30 * DAY
        state, infos = (
            CategoryIssues(),
            [ProductInfo(p.product_id, category, p.launched_at) for p in products],
        )
        all_time: Counter[str] = Counter()  # every question of the category before the held-out launch
        first_month: Counter[str] = Counter()  # the earlier launches' first 30 days, pooled
        volume: dict[str, float] = {}
        for product, info in zip(products, infos, strict=True):
            weight, steady_topics, steady_shares = mix[product.product_id]
            volume[product.product_id] = weight
            day = 0
            while product.launched_at + day * DAY < end:
                at = product.launched_at + day * DAY
                bucket = launch_bucket(day * DAY)
                topics, shares = (
                    launches[product.product_id][bucket]
                    if bucket is not None
                    else (steady_topics, steady_shares)
                )
                asked = _poisson(rng, weight * args.daily)
                for n, topic in enumerate(rng.choices(topics, weights=shares, k=asked)):
                    time_ = at + (n + rng.random()) / (asked + 1) * DAY
                    if product is not held_out and time_ < held_out.launched_at:
                        all_time[topic] += 1
                        if bucket is not None:
                            first_month[topic] += 1
                    if bucket is not None:
                        text = rng.choice(QUESTIONS[topic]["en"]).replace("{name}", product.name)
                        question = Question(
                            product.product_id, topic, text, time_, f"{product.product_id}-{day}-{n}"
                        )
                        observe(state, question, info, None, rules)
                day += 1
        earlier_volume = sum(volume[p.product_id] for p in products[:-1]) / (len(products) - 1)
        true_volume = volume[held_out.product_id] / earlier_volume
        held = infos[-1]
        plain = forecast(held, infos, state.profiles, held.launched_at, faq_rules)
        scaled = forecast(held, infos, state.profiles, held.launched_at, faq_rules, volume=true_volume)
        actual = state.profiles[held.product_id]
        for index, label in enumerate(LABELS):
            truth = top(actual.buckets[index])
            named = [t.topic for t in plain.buckets[index].topics]
            found.append(
                {
                    "bucket": label,
                    "forecast": recall(named, truth),
                    "all_time": recall(top(all_time), truth),
                    "first_month": recall(top(first_month), truth),
                    "forecast_3": recall(named[:3], truth[:3]),
                    "all_time_3": recall(top(all_time, 3), truth[:3]),
                    "actual_questions": actual.totals[index],
                    "plain_questions": plain.buckets[index].volume,
                    "scaled_questions": scaled.buckets[index].volume,
                }
            )
    return found


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's, in steps of 30 for large means)."""
    count = 0
    while mean > 30:
        count += _poisson(rng, 30.0)
        mean -= 30
    limit, product = pow(2.718281828459045, -mean), rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def report(args: argparse.Namespace, rows: list[dict[str, object]], seconds: float) -> str:
    holdouts = len(rows) // len(LABELS)
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on Python {platform.python_version()}: `python"
        f" benchmarks/launch_faq.py --seeds {args.seeds} --launches {args.launches} --gap-days"
        f" {args.gap_days:g} --daily {args.daily:g}` ({seconds:.0f} s). {holdouts} held-out launches"
        f" ({len(LAUNCH_TOPICS)} categories x {args.seeds} seeds), each forecast at its launch from the"
        f" {args.launches - 1} earlier launches of its category.",
        "",
        "| days since launch | recall@5: forecast | all-time top 5 | first-30-days top 5 | forecast vs"
        " all-time | recall@3: forecast | all-time top 3 | questions: actual | expected (volume 1.0) | error"
        " | expected (true volume) | error |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    totals = {"forecast": 0.0, "all_time": 0.0, "first_month": 0.0, "forecast_3": 0.0, "all_time_3": 0.0}
    for label in [*LABELS, "all"]:
        of = [row for row in rows if label in ("all", row["bucket"])]

        def mean(key: str, of: list[dict[str, object]] = of) -> float:
            return sum(float(row[key]) for row in of) / len(of)  # type: ignore[arg-type]

        def error(key: str, of: list[dict[str, object]] = of) -> float:
            return sum(
                abs(float(row[key]) - float(row["actual_questions"])) / float(row["actual_questions"])  # type: ignore[arg-type]
                for row in of
            ) / len(of)

        if label == "all":
            totals = {key: mean(key) for key in totals}
        name = "**all buckets**" if label == "all" else label
        lines.append(
            f"| {name} | {mean('forecast'):.2f} | {mean('all_time'):.2f} | {mean('first_month'):.2f} |"
            f" {mean('forecast') / max(mean('all_time'), 1e-9):.2f}x | {mean('forecast_3'):.2f} |"
            f" {mean('all_time_3'):.2f} | {mean('actual_questions'):.0f} |"
            f" {mean('plain_questions'):.0f} | {error('plain_questions'):.0%} |"
            f" {mean('scaled_questions'):.0f} | {error('scaled_questions'):.0%} |"
        )
    lines += [
        "",
        f"Over all buckets the forecast names {totals['forecast']:.0%} of a launch's actual top-5 topics,"
        f" the category's all-time top 5 {totals['all_time']:.0%}, and the earlier launches' first 30 days"
        f" pooled {totals['first_month']:.0%}; of its top 3, the forecast's top 3 name"
        f" {totals['forecast_3']:.0%}, the all-time top 3 {totals['all_time_3']:.0%}. Errors are the mean"
        " absolute error of a bucket's expected questions relative to the actual ones.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--launches", type=int, default=6, help="launches per category")
    parser.add_argument("--gap-days", type=float, default=45.0, help="days between a category's launches")
    parser.add_argument("--daily", type=float, default=40.0, help="questions a day of a product of weight 1")
    parser.add_argument("--write-docs", action="store_true", help="put the figures into docs/benchmarks.md")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = [row for seed in range(args.seeds) for row in run_seed(seed, args)]
    publish(MARKERS, report(args, rows, time.perf_counter() - started), args.write_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
