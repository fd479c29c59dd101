"""Model quality and cost: the online intent and churn models against batch and no-skill baselines.

    pip install -e '.[bench]' && python benchmarks/models.py [--users 20000] [--days 24] [--write-docs]

1. A seeded synthetic stream (:mod:`streams.tools.traffic.generator`: buyers, help-seekers, browsers and
at-risk users
   whose activity decays after bad deliveries) of ``--users`` users over ``--days`` days, a session per
   user every two days on average, runs through the worker's per-user path in-process
   (:class:`streams.tools.simulation.InProcessPartition`: the same rounds, timers and models as the worker),
   its users split over ``--partitions`` partitions by a hash of the user id, one process and one set
   of models per partition, as workers shard them. The churn horizon is ``--horizon`` days.
2. Online: every example learned is recorded with the prediction made for it when its features were
   taken, before its label was known (progressive validation with delayed labels). Churn ROC AUC and
   log loss, intent macro F1 and accuracy, over all examples and over the second half (halves by the
   time the features were taken: see :func:`split`).
3. Batch baselines (scikit-learn), on the same examples: trained on the first half, scored on the
   second half: logistic regression and histogram gradient boosting.
4. No-skill baselines on the second half: churn, a constant (AUC 0.5; log loss of the first half's
   base rate); intent, the first half's majority class, and a guess drawn from its class shares.
5. The chat as intent features: the intent model replayed over the same examples in the order they
   were learned, predicting each before learning it, once with the ``c_`` features and once with them
   zeroed (:func:`conversation_figures`; a share of the sessions chat, ``conversation_share``).
6. Cost: microseconds per event spent in :func:`streams.domain.prediction.observe` (features, labels, predict,
   learn), beside the rest of the round (validation, state, triggers, contact policy).

``--write-docs`` puts the figures into docs/benchmarks.md between the model-benchmark markers.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import sys
import time
import zlib
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import numpy as np  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from benchmarks.readme import publish  # noqa: E402
from models.features import CONVERSATION_FEATURES, FEATURE_NAMES, INTENTS  # noqa: E402
from models.learners import PartitionModels, intent_model  # noqa: E402
from streams.domain import prediction, rounds  # noqa: E402
from streams.domain.policy import load_policy  # noqa: E402
from streams.domain.prediction import CHURNED  # noqa: E402
from streams.domain.rounds import Round  # noqa: E402
from streams.tools.simulation import InProcessPartition  # noqa: E402
from streams.tools.traffic.generator import TrafficGenerator  # noqa: E402
from streams.tools.traffic.profile import TrafficProfile  # noqa: E402

DAY = 86400.0
START = 1_760_000_000.0
MARKERS = ("<!-- model-benchmark:start -->", "<!-- model-benchmark:end -->")


@dataclass
class Example:
    model: str
    x: list[float]
    label: str
    predicted: dict[str, float]
    taken_at: float  # event time the features were taken (and the online prediction made)


@dataclass
class PartitionRun:
    examples: list[Example] = field(default_factory=list)
    events: int = 0
    round_seconds: float = 0.0  # whole rounds, observe included
    observe_seconds: float = 0.0
    users: int = 0
    types: Counter[str] = field(default_factory=Counter)
    drifts: dict[str, int] = field(default_factory=dict)


def run_partition(args: argparse.Namespace, partition: int) -> PartitionRun:
    """One partition's users and models, over the whole stream (in its own process)."""
    policy = load_policy(text=f'experiments = []\n[models]\nchurn_horizon = "{args.horizon:g}d"\n')
    profile = TrafficProfile(
        sessions_per_second=args.users / (args.gap_days * DAY),
        users=args.users,
        subscription_share=0.3,
        preferences_share=0.3,
        conversation_share=0.3,
    )
    traffic = TrafficGenerator(profile, seed=args.seed, start=START)
    result = PartitionRun()

    def record(done: Round) -> None:
        for learned in done.model.learned:
            snapshot = learned.snapshot
            x = list(snapshot.x)  # the features in the order of FEATURE_NAMES
            example = Example(learned.model, x, learned.label, snapshot.predicted, snapshot.taken_at)
            result.examples.append(example)

    # Time spent in streams.domain.prediction.observe, inside the rounds: features, labels, predict, learn.
    observe = prediction.observe

    def timed_observe(*arguments, **keywords):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            return observe(*arguments, **keywords)
        finally:
            result.observe_seconds += time.perf_counter() - started

    rounds.observe = timed_observe
    models = PartitionModels()
    simulated = InProcessPartition(policy, models, on_round=record)
    clock, end = START, START + args.days * DAY
    while clock < end:
        clock += 600.0
        for message in traffic.due(clock):
            if zlib.crc32(message.key) % args.partitions != partition and message.topic != "logistics":
                continue
            if message.topic == "logistics" and _user_partition(message.value, args.partitions) != partition:
                continue
            started = time.perf_counter()
            simulated.feed(message)
            result.round_seconds += time.perf_counter() - started
            result.events += 1
    result.users = len(simulated.users)
    result.types = Counter(traffic.user_type(user) for user in simulated.users)
    result.drifts = {name: model.drifts for name, model in models.by_name().items()}
    return result


def _user_partition(value: bytes, partitions: int) -> int:
    # Logistics messages are keyed by shipment; the worker re-keys them by user.
    match = re.search(rb'"user_id":"([^"]+)"', value)
    return -1 if match is None else zlib.crc32(match.group(1)) % partitions


# --- metrics


def split(examples: list[Example]) -> tuple[list[Example], list[Example]]:
    """The first and second half by the time the features were taken. (By label time, a churned
    example, labelled a horizon after its features, would sit among non-churned ones taken a horizon
    later: anything that drifts with time would then tell the label.)"""
    ordered = sorted(examples, key=lambda example: example.taken_at)
    half = len(ordered) // 2
    return ordered[:half], ordered[half:]


def churn_figures(examples: list[Example], seed: int) -> list[tuple[str, float, float, str]]:
    """(what, ROC AUC, log loss, note) on the second half."""
    first, second = split(examples)
    y1 = np.array([example.label == CHURNED for example in first])
    y2 = np.array([example.label == CHURNED for example in second])
    online_all = np.array([example.predicted[CHURNED] for example in examples])
    online = np.array([example.predicted[CHURNED] for example in second])
    rows = [
        (
            "online, progressive (all examples)",
            roc_auc_score([e.label == CHURNED for e in examples], online_all),
            log_loss([e.label == CHURNED for e in examples], np.clip(online_all, 1e-6, 1 - 1e-6)),
            "predicted when the features were taken",
        ),
        ("online, progressive", roc_auc_score(y2, online), log_loss(y2, np.clip(online, 1e-6, 1 - 1e-6)), ""),
    ]
    x1, x2 = np.array([e.x for e in first]), np.array([e.x for e in second])
    for name, model in batch_models(seed):
        model.fit(x1, y1)
        p = model.predict_proba(x2)[:, 1]
        rows.append(
            (
                f"batch {name}",
                roc_auc_score(y2, p),
                log_loss(y2, np.clip(p, 1e-6, 1 - 1e-6)),
                "",
            )
        )
    base = float(y1.mean())
    rows.append(("no skill: first half's churn rate", 0.5, log_loss(y2, np.full(len(y2), base)), ""))
    return rows


def intent_figures(examples: list[Example], seed: int) -> list[tuple[str, float, float]]:
    """(what, macro F1, accuracy) on the second half."""
    first, second = split(examples)
    y1 = [example.label for example in first]
    y2 = [example.label for example in second]

    def guess(example: Example) -> str:
        return max(example.predicted, key=example.predicted.__getitem__)

    def scores(truth: list[str], guesses: list[str]) -> tuple[float, float]:
        return (
            f1_score(truth, guesses, average="macro", labels=list(INTENTS), zero_division=0),
            accuracy_score(truth, guesses),
        )

    rows = [
        (
            "online, progressive (all examples)",
            *scores([e.label for e in examples], [guess(e) for e in examples]),
        ),
        ("online, progressive", *scores(y2, [guess(e) for e in second])),
    ]
    x1, x2 = np.array([e.x for e in first]), np.array([e.x for e in second])
    for name, model in batch_models(seed):
        model.fit(x1, y1)
        rows.append((f"batch {name}", *scores(y2, list(model.predict(x2)))))
    shares = Counter(y1)
    majority = shares.most_common(1)[0][0]
    rows.append((f"no skill: majority class ({majority})", *scores(y2, [majority] * len(y2))))
    draw = random.Random(seed)
    labels, weights = zip(*shares.items(), strict=True)
    drawn = draw.choices(labels, weights=weights, k=len(y2))
    rows.append(("no skill: drawn from the class shares", *scores(y2, drawn)))
    return rows


def conversation_figures(examples: list[Example]) -> list[tuple[str, float, float]]:
    """(what, macro F1, accuracy) on the second half of the intent model replayed over ``examples`` in
    the order they were learned (predicted, then learned: progressive validation), with the chat's
    ``c_`` features and with them zeroed, the same examples otherwise (a zeroed feature is one the
    scaler keeps at 0: the model as it was before the chat's features)."""
    chat = [FEATURE_NAMES.index(name) for name in CONVERSATION_FEATURES]
    second = {id(example) for example in split(examples)[1]}
    rows = []
    for what, zeroed in (("with the chat's c_ features", False), ("without them (zeroed)", True)):
        model, truth, guesses = intent_model(), [], []
        for example in examples:
            x = np.array(example.x)
            if zeroed:
                x[chat] = 0.0
            proba = model.predict_proba_values(x)
            model.learn_values(x, example.label, proba)
            if id(example) in second:
                truth.append(example.label)
                guesses.append(max(proba, key=proba.__getitem__))
        rows.append(
            (
                f"online, replayed, {what}",
                f1_score(truth, guesses, average="macro", labels=list(INTENTS), zero_division=0),
                accuracy_score(truth, guesses),
            )
        )
    return rows


def batch_models(seed: int) -> list[tuple[str, object]]:
    return [
        (
            "logistic regression, trained on the first half",
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        ),
        ("gradient boosting, trained on the first half", HistGradientBoostingClassifier(random_state=seed)),
    ]


# --- report


def report(args: argparse.Namespace, runs: list[PartitionRun], seconds: float) -> str:
    # From the warm-up's end to a horizon before the stream's: any example taken then can be labelled
    # either way before the stream ends (a later one could only be found not churned).
    measured = (START + args.warmup_days * DAY, START + (args.days - args.horizon) * DAY)
    examples = [e for run in runs for e in run.examples if measured[0] <= e.taken_at < measured[1]]
    churn = [example for example in examples if example.model == "churn"]
    intent = [example for example in examples if example.model == "intent"]
    events = sum(run.events for run in runs)
    observe_us = sum(run.observe_seconds for run in runs) / events * 1e6
    rest_us = sum(run.round_seconds - run.observe_seconds for run in runs) / events * 1e6
    types = sum((run.types for run in runs), Counter())
    labels = Counter(example.label for example in intent)
    churned = sum(example.label == CHURNED for example in churn)
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {os.cpu_count()} cores,"
        f" Python {platform.python_version()}:"
        f" `python benchmarks/models.py --users {args.users} --days {args.days:g} --warmup-days"
        f" {args.warmup_days:g} --horizon {args.horizon:g}"
        f" --partitions {args.partitions} --seed {args.seed}` ({seconds:.0f} s).",
        "",
        f"Stream: {sum(run.users for run in runs):,} users ("
        + ", ".join(f"{kind} {count:,}" for kind, count in sorted(types.items(), key=str))
        + f"), {events:,} events over {args.days:g} days, {args.partitions} partitions (a model set each).",
        f"Examples measured (features taken from day {args.warmup_days:g}"
        f" to day {args.days - args.horizon:g}):"
        f" intent {len(intent):,} ("
        + ", ".join(f"{label} {labels[label]:,}" for label in INTENTS)
        + f"); churn {len(churn):,} ({churned:,} churned within {args.horizon:g} days)."
        + " Drifts detected: "
        + ", ".join(f"{name} {sum(run.drifts.get(name, 0) for run in runs)}" for name in ("intent", "churn"))
        + ".",
        "",
        "Churn (second half of the examples by the time the features were taken, unless said):",
        "",
        "| model | ROC AUC | log loss | |",
        "| --- | ---: | ---: | --- |",
    ]
    for what, auc, loss, note in churn_figures(churn, args.seed):
        lines.append(f"| {what} | {auc:.3f} | {loss:.4f} | {note} |")
    lines += [
        "",
        "Intent (purchase, need_help, browse, leave; second half unless said):",
        "",
        "| model | macro F1 | accuracy |",
        "| --- | ---: | ---: |",
    ]
    for what, f1, accuracy in intent_figures(intent, args.seed):
        lines.append(f"| {what} | {f1:.3f} | {accuracy:.3f} |")
    with_chat = sum(any(e.x[FEATURE_NAMES.index(n)] for n in CONVERSATION_FEATURES) for e in intent)
    lines += [
        "",
        f"Intent with and without the chat ({with_chat:,} of the examples had a chat in their session;"
        " second half):",
        "",
        "| model | macro F1 | accuracy |",
        "| --- | ---: | ---: |",
    ]
    for what, f1, accuracy in conversation_figures(intent):
        lines.append(f"| {what} | {f1:.3f} | {accuracy:.3f} |")
    lines += [
        "",
        f"Cost per event: {observe_us:.0f} µs in the models (features, labels, predict, learn) beside"
        f" {rest_us:.0f} µs for the rest of the round (validation, state, triggers, contact policy);"
        f" ratio {observe_us / rest_us:.1f}.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--days", type=float, default=42.0)
    parser.add_argument("--gap-days", type=float, default=2.0, help="mean days between a user's sessions")
    parser.add_argument("--horizon", type=float, default=7.0, help="churn horizon, days")
    parser.add_argument(
        "--warmup-days",
        type=float,
        default=21.0,
        help="days the models learn before examples are measured: every user starts with the stream,"
        " so until then their histories (4-week visit rates, tenure) are all young",
    )
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--write-docs", action="store_true", help="put the figures into docs/benchmarks.md")
    args = parser.parse_args()
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=min(args.partitions, os.cpu_count() or 1)) as pool:
        runs = list(pool.map(run_partition, [args] * args.partitions, range(args.partitions)))
    text = report(args, runs, time.perf_counter() - started)
    publish(MARKERS, text, args.write_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
