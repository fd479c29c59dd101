"""What the business processes (tickets, orders, feedback, hot issues, CRM sync) cost per item, against
the behaviour round in the same run.

    python benchmarks/processes.py [--hours 4] [--repeats 5] [--registry-sizes 1000,10000] [--write-docs]

In-process, no broker: a seeded synthetic stream (:mod:`streams.tools.traffic.generator` with devices, repair
and order requests, feedback comments, support questions and CRM attributes on, ``--hours`` of event time
from 2025-11-24 08:00 UTC) is parsed once, and each component is timed with
``time.perf_counter`` over all its items, ``--repeats`` times from the same starting state (set up
untimed); the figure is the median per item, in µs, and its inverse in items/s. Every figure is also
given as a ratio to the baseline measured first:

* **baseline**: :func:`streams.domain.rounds.run_round` on the stream's behaviour events (clickstream and
  logistics) with the partition's models (``PartitionModels()``, as the worker does): the states and
  models learn untimed over the first ``--warmup-hours``, then the rest of the stream is timed (event
  rounds only: timer ticks are rounds of their own);
* **tickets**: :func:`streams.processes.run.run_process` on repair requests (the users' devices registered
  first) against the packaged 12-point registry; and :func:`streams.processes.tickets.nearest_point` alone
  against synthetic registries of ``--registry-sizes`` points, to show how dispatch scales;
* **orders**: ``run_process`` on order requests against the packaged catalog, without stock and with
  a stock level for every SKU;
* **feedback**: :func:`streams.processes.run.tag_user_feedback` on the commented feedback events, English
  and Chinese apart, with the seeded tagger and after ``--corrections`` corrections;
  :meth:`models.tagger.FeedbackTagger.learn_correction` per correction; the checkpoint (pickled
  ``PartitionModels``: size, pickle and unpickle time) before and after the corrections;
* **hot issues**: :func:`streams.processes.run.question_record` (ingest), and :func:`models.surge.observe`
  per question through the worker's per-product split (:func:`streams.processes.run.observe_question`,
  mirrored here), beside the JSON of the product's counts (and a young product's launch profile) the
  worker writes to the changelog on every question: on the stream's steady questions, and on
  free-text questions that fill every bound of one product;
* **crm_sync**: :func:`streams.processes.run.crm_sync_record` per call on the baseline's users (with their
  CRM attributes and feedback tags), when the record changed and when it did not.

``--write-docs`` puts the table and what it says into docs/benchmarks.md between the process-benchmark
markers.
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import platform
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from benchmarks.readme import publish  # noqa: E402
from models.feedback_corpus import feedback_texts  # noqa: E402
from models.learners import PartitionModels  # noqa: E402
from models.surge import (  # noqa: E402
    LaunchProfile,
    ProductIssues,
    SurgeRules,
)
from models.tagger import FeedbackTagger  # noqa: E402
from streams.contracts.events import (  # noqa: E402
    CLICKSTREAM,
    CRM_UPDATES,
    DEVICES,
    LOGISTICS,
    ORDER_REQUESTS,
    SERVICE_REQUESTS,
    SUPPORT_QUESTIONS,
    Event,
    parse_event,
)
from streams.contracts.feedback import Correction  # noqa: E402
from streams.contracts.settings import SETTINGS_DOC  # noqa: E402
from streams.domain.policy import load_policy  # noqa: E402
from streams.domain.rounds import run_round  # noqa: E402
from streams.domain.state import UserState  # noqa: E402
from streams.processes.catalog import Catalog, load_catalog  # noqa: E402
from streams.processes.orders import StockLevels  # noqa: E402
from streams.processes.run import (  # noqa: E402
    References,
    crm_sync_record,
    observe_question,
    question_record,
    run_process,
    tag_user_feedback,
)
from streams.processes.tickets import OpeningHours, ServicePoint, load_service_points, nearest_point  # noqa: E402
from streams.tools.traffic.feedback import REVIEWERS  # noqa: E402
from streams.tools.traffic.generator import TrafficGenerator  # noqa: E402
from streams.tools.traffic.profile import TrafficProfile  # noqa: E402
from streams.tools.traffic.repairs import DISPATCH_MAX_KM  # noqa: E402
from streams.worker.codec import DataclassCodec  # noqa: E402

START = 1_763_971_200.0  # 2025-11-24 08:00 UTC: a Monday morning, service points open in Europe
HOUR = 3600.0
MARKERS = ("<!-- process-benchmark:start -->", "<!-- process-benchmark:end -->")
CHECKPOINT_SECONDS = float(SETTINGS_DOC["model_checkpoint_seconds"][0])
DEVICE_CATEGORIES = ("phones", "laptops", "headphones", "appliances")  # the packaged catalog's
# Time zones of the synthetic registry's opening hours (Europe, as the packaged points).
ZONES = ("Europe/Berlin", "Europe/Paris", "Europe/London", "Europe/Madrid", "Europe/Warsaw", "Europe/Rome")
# Their hours: weekdays 09:00-18:00 and Saturday mornings, local time (seconds after midnight).
WEEKDAY_HOURS = {day: ((9 * 3600, 18 * 3600),) for day in ("mon", "tue", "wed", "thu", "fri")} | {
    "sat": ((10 * 3600, 14 * 3600),)
}


# --- measuring


@dataclass
class Row:
    """One component: the seconds each repeat took for all its ``items``."""

    component: str
    items: int
    seconds: list[float]
    note: str = ""
    short: str = ""  # how the paragraph names it, if not by ``component``

    @property
    def us(self) -> float:
        """Median µs per item over the repeats."""
        return statistics.median(self.seconds) / self.items * 1e6

    @property
    def spread(self) -> float:
        """(slowest - fastest) / median of the repeats: how noisy the figure is."""
        median = statistics.median(self.seconds)
        return (max(self.seconds) - min(self.seconds)) / median if median else 0.0


@dataclass
class Size:
    what: str
    size: int  # bytes
    encode_us: float
    decode_us: float
    note: str = ""


@dataclass
class Results:
    baseline: Row
    rows: list[Row] = field(default_factory=list)
    sizes: list[Size] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # figures the paragraph quotes


def timed(run: Callable[[], None]) -> float:
    """Seconds ``run`` takes, after a collection so that garbage of the set-up is not billed to it."""
    gc.collect()
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def repeat(repeats: int, once: Callable[[], float]) -> list[float]:
    return [once() for _ in range(repeats)]


def median_us(repeats: int, run: Callable[[], object]) -> float:
    """Median µs of one call of ``run``: each of ``repeats`` samples times as many calls as take
    20 ms at least (as ``timeit`` does), so that one cold call does not make the figure."""
    number = 1
    while True:
        started = time.perf_counter()
        for _ in range(number):
            run()
        if time.perf_counter() - started >= 0.02:
            break
        number *= 2
    samples = []
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter()
        for _ in range(number):
            run()
        samples.append((time.perf_counter() - started) / number)
    return statistics.median(samples) * 1e6


# --- input


@dataclass
class Stream:
    """The synthetic stream, parsed, by what consumes it."""

    generator: TrafficGenerator
    behaviour: list[dict[str, Any]]  # wire form of clickstream and logistics events, in order
    by_source: dict[str, list[Event]]  # process inputs and support questions, parsed
    feedback: dict[str, list[Event]]  # commented feedback events by language


def make_stream(args: argparse.Namespace) -> Stream:
    profile = TrafficProfile(
        sessions_per_second=args.sessions_per_second,
        users=args.users,
        devices_share=0.5,
        repair_share=0.5,
        order_request_share=0.3,
        feedback_comment_share=1.0,
        support_question_rate=args.question_rate,
        crm_share=0.5,
    )
    generator = TrafficGenerator(profile, seed=args.seed, start=START)
    messages = []
    clock, end = START, START + args.hours * HOUR
    while clock < end:
        clock = min(end, clock + 600.0)
        messages.extend(generator.due(clock))
    behaviour: list[dict[str, Any]] = []
    by_source: dict[str, list[Event]] = {}
    for message in messages:
        if message.topic not in (
            CLICKSTREAM,
            LOGISTICS,
            DEVICES,
            SERVICE_REQUESTS,
            ORDER_REQUESTS,
            CRM_UPDATES,
            SUPPORT_QUESTIONS,
        ):
            continue  # corrections (feedback_labels) are made below, from the corpus
        event = parse_event(message.value, message.topic)
        if message.topic in (CLICKSTREAM, LOGISTICS):
            # As track_users gets it: the internal events topic's JSON, decoded.
            behaviour.append(orjson.loads(orjson.dumps(event.to_wire())))
        else:
            by_source.setdefault(event.source, []).append(event)
    truth = generator.feedback_truth()
    feedback: dict[str, list[Event]] = {"en": [], "zh": []}
    for value in behaviour:
        if value["event_type"] == "feedback" and value["event_id"] in truth:
            feedback[truth[value["event_id"]].language].append(Event.from_wire(value))
    return Stream(generator, behaviour, by_source, feedback)


def corrections(count: int, seed: int) -> list[Correction]:
    """``count`` corrections of comments from the corpus, as people send them (30% Chinese)."""
    rng = random.Random(f"{seed}:corrections")
    return [
        Correction(f"fb-{index}", text, tags, rng.choice(REVIEWERS), START + index)
        for index, (text, tags, _) in enumerate(feedback_texts(rng, count, zh_share=0.3))
    ]


def synthetic_registry(size: int, seed: int) -> list[ServicePoint]:
    """``size`` service points scattered over Europe: 1-4 device categories each, 20-80 km radius,
    5% closed, 60% with weekday opening hours in a European time zone (as the packaged points)."""
    rng = random.Random(f"{seed}:registry:{size}")
    points = []
    for index in range(size):
        hours = None
        if rng.random() < 0.6:
            hours = OpeningHours(rng.choice(ZONES), WEEKDAY_HOURS)
        points.append(
            ServicePoint(
                point_id=f"sp-{index:05d}",
                name=f"Service point {index}",
                latitude=round(rng.uniform(36.0, 60.0), 4),
                longitude=round(rng.uniform(-10.0, 30.0), 4),
                categories=frozenset(rng.sample(DEVICE_CATEGORIES, rng.randint(1, 4))),
                radius_km=float(rng.randint(20, 80)),
                status="closed" if rng.random() < 0.05 else "open",
                opening_hours=hours,
            )
        )
    return points


# --- baseline: the behaviour round


def measure_baseline(args: argparse.Namespace, stream: Stream) -> tuple[Row, dict[str, UserState], Any]:
    """run_round per behaviour event after a warm-up; returns the row, and the users and models as
    the last repeat left them."""
    policy = load_policy()
    warmup_until = (START + args.warmup_hours * HOUR) * 1000.0
    warmup = [value for value in stream.behaviour if value["event_time"] < warmup_until]
    measured = [value for value in stream.behaviour if value["event_time"] >= warmup_until]
    users: dict[str, UserState] = {}
    models = PartitionModels()

    def feed(values: Iterable[dict[str, Any]], users: dict[str, UserState], models: PartitionModels) -> None:
        for value in values:
            user_id = value["user_id"]
            state = users.get(user_id)
            if state is None:
                state = users[user_id] = UserState(user_id, partition=0)
            run_round(state, value, tick=False, policy=policy, models=models)

    print(f"baseline: warming up on {len(warmup):,} events ...", flush=True)
    feed(warmup, users, models)
    # The starting point of every repeat, as the changelogs would restore it.
    saved_users = {user_id: orjson.dumps(state) for user_id, state in users.items()}
    saved_models = pickle.dumps(models, protocol=pickle.HIGHEST_PROTOCOL)
    last: dict[str, Any] = {}

    def once() -> float:
        restored = {user_id: UserState.from_dict(orjson.loads(raw)) for user_id, raw in saved_users.items()}
        partition_models = pickle.loads(saved_models)
        seconds = timed(lambda: feed(measured, restored, partition_models))
        last.update(users=restored, models=partition_models)
        return seconds

    print(f"baseline: run_round on {len(measured):,} events x {args.repeats} ...", flush=True)
    seconds = repeat(args.repeats, once)
    note = (
        f"{len(measured):,} clickstream and logistics events after {args.warmup_hours:g} h of warm-up,"
        f" {len(last['users']):,} users"
    )
    row = Row("**baseline: behaviour round** (`run_round`, models on)", len(measured), seconds, note)
    return row, last["users"], last["models"]


# --- tickets


def measure_tickets(
    args: argparse.Namespace, stream: Stream, references: References, results: Results
) -> None:
    devices = stream.by_source[DEVICES]
    repairs = stream.by_source[SERVICE_REQUESTS]
    outcomes: Counter[str] = Counter()

    def registered() -> dict[str, UserState]:
        users: dict[str, UserState] = {}
        for event in devices:
            run_process(users.setdefault(event.user_id, UserState(event.user_id)), event, references, None)
        return users

    def once_devices() -> float:
        users = {event.user_id: UserState(event.user_id) for event in devices}

        def run() -> None:
            for event in devices:
                run_process(users[event.user_id], event, references, None)

        return timed(run)

    def once_repairs() -> float:
        users = registered()
        for event in repairs:
            users.setdefault(event.user_id, UserState(event.user_id))
        done = []

        def run() -> None:
            for event in repairs:
                done.append(run_process(users[event.user_id], event, references, None))

        seconds = timed(run)
        outcomes.clear()
        for item in done:
            ticket = item.ticket
            outcomes["duplicate" if ticket is None else ticket.dispatch.manual_reason or "assigned"] += 1
        return seconds

    results.rows.append(
        Row("tickets: device registration (`run_process`)", len(devices), repeat(args.repeats, once_devices))
    )
    row = Row("tickets: repair request (`run_process`, 12 packaged points)", len(repairs), [])
    row.seconds = repeat(args.repeats, once_repairs)
    row.note = ", ".join(f"{what} {count}" for what, count in sorted(outcomes.items()))
    results.rows.append(row)
    measure_dispatch(args, stream, references, results)


def measure_dispatch(
    args: argparse.Namespace, stream: Stream, references: References, results: Results
) -> None:
    """nearest_point alone, on the repair requests' places, categories and times, per registry size."""
    categories = {}
    for event in stream.by_source[DEVICES]:
        categories[event.attrs["device_id"]] = event.attrs["category"]
    calls = [
        (categories[e.attrs["device_id"]], e.attrs["latitude"], e.attrs["longitude"], e.event_time)
        for e in stream.by_source[SERVICE_REQUESTS]
        if e.attrs["device_id"] in categories
    ]
    registries = [("12 packaged points", references.service_points)]
    registries += [
        (f"{size:,} synthetic points", synthetic_registry(size, args.seed)) for size in args.registry_sizes
    ]
    scan: list[tuple[int, float]] = []
    for label, points in registries:
        # About the same work per size: fewer calls on a larger registry.
        count = max(20, min(len(calls) * 4, 400_000 // len(points)))
        chosen = [calls[index % len(calls)] for index in range(count)]
        assigned: Counter[str] = Counter()

        def run(
            points: list[ServicePoint] = points, chosen: list[tuple] = chosen, tally: Counter = assigned
        ) -> None:
            tally.clear()
            for category, latitude, longitude, at in chosen:
                dispatch = nearest_point(
                    points, category, latitude, longitude, at, references.dispatch_max_km
                )
                tally[dispatch.manual_reason or "assigned"] += 1

        row = Row(
            f"dispatch: `nearest_point`, {label}", count, repeat(args.repeats, lambda run=run: timed(run))
        )
        share = assigned["assigned"] / count
        row.note = f"{share:.0%} assigned"
        row.short = f"dispatch over {label}"
        results.rows.append(row)
        scan.append((len(points), row.us))
    results.facts["scan"] = scan


# --- orders


def measure_orders(
    args: argparse.Namespace, stream: Stream, references: References, results: Results
) -> None:
    orders = stream.by_source[ORDER_REQUESTS]
    rng = random.Random(f"{args.seed}:stock")
    stock = StockLevels(present=True)
    for sku in sorted(references.catalog.skus):
        # Mostly plenty, a tenth nearly sold out: some orders are refused for stock.
        available = rng.randint(0, 2) if rng.random() < 0.1 else rng.randint(20, 500)
        stock.apply({"sku": sku, "available": available, "as_of": START - HOUR})
    for label, levels in (("without stock", None), ("with stock levels", stock)):
        outcomes: Counter[str] = Counter()

        def once(levels: StockLevels | None = levels, outcomes: Counter = outcomes) -> float:
            users = {event.user_id: UserState(event.user_id) for event in orders}
            done = []

            def run() -> None:
                for event in orders:
                    done.append(run_process(users[event.user_id], event, references, levels))

            seconds = timed(run)
            outcomes.clear()
            for item in done:
                order = item.order
                outcomes["duplicate" if order is None else getattr(order, "reason", "accepted")] += 1
            return seconds

        row = Row(f"orders: order request (`run_process`, {label})", len(orders), repeat(args.repeats, once))
        row.note = ", ".join(f"{what} {count}" for what, count in sorted(outcomes.items()))
        results.rows.append(row)


# --- feedback


def measure_feedback(
    args: argparse.Namespace, stream: Stream, models: PartitionModels, results: Results
) -> None:
    learned = corrections(args.corrections, args.seed)
    seeded = pickle.dumps(models.tagger, protocol=pickle.HIGHEST_PROTOCOL)
    trained: dict[str, FeedbackTagger] = {}

    def once_learn() -> float:
        tagger = pickle.loads(seeded)

        def run() -> None:
            for correction in learned:
                tagger.learn_correction(correction)

        seconds = timed(run)
        trained["tagger"] = tagger
        return seconds

    def tag_rows(tagger: FeedbackTagger, when: str) -> None:
        for language in ("en", "zh"):
            events = stream.feedback[language]

            def once(events: list[Event] = events) -> float:
                users = {event.user_id: UserState(event.user_id) for event in events}

                def run() -> None:
                    for event in events:
                        tag_user_feedback(users[event.user_id], event, tagger)

                return timed(run)

            name = f"feedback: tag a comment (`tag_user_feedback`, {language}, {when})"
            chars = statistics.mean(len(event.attrs["comment"]) for event in events)
            results.rows.append(
                Row(name, len(events), repeat(args.repeats, once), f"{chars:.0f} characters on average")
            )

    checkpoint_before = checkpoint_size(models, args.repeats, "before corrections")
    tag_rows(models.tagger, "seeded")
    learn_row = Row(
        "feedback: learn a correction (`learn_correction`)",
        len(learned),
        repeat(args.repeats, once_learn),
        f"{len(learned):,} corrections from the corpus, from the seeded tagger",
    )
    results.rows.append(learn_row)
    models.tagger = trained["tagger"]
    tag_rows(models.tagger, f"after {len(learned):,} corrections")
    checkpoint_after = checkpoint_size(models, args.repeats, f"after {len(learned):,} corrections")
    results.sizes += [checkpoint_before, checkpoint_after]
    results.facts["checkpoint"] = (checkpoint_before, checkpoint_after)
    tagger_before = len(seeded)
    tagger_after = len(pickle.dumps(models.tagger, protocol=pickle.HIGHEST_PROTOCOL))
    results.facts["tagger"] = (tagger_before, tagger_after)
    checkpoint_before.note = f"the tagger {tagger_before / 1e3:,.0f} kB of it"
    checkpoint_after.note = f"the tagger {tagger_after / 1e3:,.0f} kB of it"


def checkpoint_size(models: PartitionModels, repeats: int, when: str) -> Size:
    """The partition's models as the ``partition_models`` codec pickles them (highest protocol; the
    checkpoint adds a 36-byte header and signature, streams/worker/checkpoints.py)."""
    raw = pickle.dumps(models, protocol=pickle.HIGHEST_PROTOCOL)
    return Size(
        f"checkpoint: `PartitionModels` pickled, {when}",
        len(raw),
        median_us(repeats, lambda: pickle.dumps(models, protocol=pickle.HIGHEST_PROTOCOL)),
        median_us(repeats, lambda: pickle.loads(raw)),
    )


# --- hot issues


@dataclass
class IssueRun:
    observe_seconds: float = 0.0
    json_seconds: float = 0.0
    written: int = 0  # changelog bytes: the product's counts, and a young product's launch profile
    alerts: int = 0
    counts: dict[str, ProductIssues] = field(default_factory=dict)
    profiles: dict[str, LaunchProfile] = field(default_factory=dict)


# The worker's codecs for the two hot-issue tables (streams.worker.codec).
COUNTS_CODEC = DataclassCodec(ProductIssues)
PROFILE_CODEC = DataclassCodec(LaunchProfile)


def run_questions(
    values: list[dict[str, Any]], catalog: Catalog, rules: SurgeRules, prefill: list[dict[str, Any]]
) -> IssueRun:
    """Observe ``values`` after ``prefill`` (untimed): per question, observe and the changelog JSON."""
    run = IssueRun()
    for value in prefill:
        observe_question(value, catalog, run.counts, run.profiles, rules)
    clock = time.perf_counter
    gc.collect()
    for value in values:
        started = clock()
        run.alerts += len(observe_question(value, catalog, run.counts, run.profiles, rules))
        observed = clock()
        # What the codecs write to the tables' changelogs for this question.
        product_id = value["product_id"]
        run.written += len(COUNTS_CODEC.dumps(run.counts[product_id]))
        profile = run.profiles.get(product_id)
        if profile is not None:
            run.written += len(PROFILE_CODEC.dumps(profile))
        run.observe_seconds += observed - started
        run.json_seconds += clock() - observed
    return run


def free_text_questions(
    catalog: Catalog, rules: SurgeRules, product_id: str, count: int, seed: int
) -> list[dict[str, Any]]:
    """Questions about one product, each with text never asked before (so each is a new topic and a
    new question key, 80 characters), a question every 5 s: they fill every bound of the product."""
    rng = random.Random(f"{seed}:free-text")
    words = [
        "".join(rng.choice("abcdefghiklmnoprstuvwy") for _ in range(rng.randint(3, 9))) for _ in range(400)
    ]
    name = catalog.products[product_id].name
    questions = []
    for index in range(count):
        text = f"Case {index}: my {name} " + " ".join(rng.choice(words) for _ in range(14)) + "?"
        event = Event(
            f"ft-{index}", "question_asked", SUPPORT_QUESTIONS, START + index * 5.0, f"u{index % 997:05d}",
            {"product_id": product_id, "text": text},
        )  # fmt: skip
        questions.append(question_record(event, catalog, rules))
    return questions


def measure_issues(
    args: argparse.Namespace, stream: Stream, references: References, results: Results
) -> None:
    catalog, rules = references.catalog, SurgeRules()
    events = stream.by_source[SUPPORT_QUESTIONS][: args.questions]
    results.rows.append(
        Row(
            "hot issues: `question_record` (ingest)",
            len(events),
            repeat(
                args.repeats,
                lambda: timed(lambda: [question_record(event, catalog, rules) for event in events]),
            ),
        )
    )
    steady = [question_record(event, catalog, rules) for event in events]
    filler = "phone-aster-3"  # a product launched two months before the stream: not young
    free = free_text_questions(
        catalog, rules, filler, args.free_questions + 2 * rules.max_questions, args.seed
    )
    prefill, free = free[: 2 * rules.max_questions], free[2 * rules.max_questions :]
    for label, where, values, before in (
        ("steady questions", "on steady questions", steady, []),
        ("free text at full bounds", "at full bounds", free, prefill),
    ):
        runs = [run_questions(values, catalog, rules, before) for _ in range(args.repeats)]
        last = runs[-1]
        per_question = last.written / len(values)
        biggest = max(last.counts.values(), key=lambda counts: len(counts.questions))
        shape = f"{len(biggest.topics)} topics, {len(biggest.questions)} questions"
        results.rows.append(
            Row(
                f"hot issues: `observe` per question, {label}",
                len(values),
                [run.observe_seconds for run in runs],
                f"worker's per-product split; {len(last.counts)} products, up to {shape};"
                f" {last.alerts} alerts",
            )
        )
        results.rows.append(
            Row(
                f"hot issues: changelog JSON per question, {label}",
                len(values),
                [run.json_seconds for run in runs],
                f"{per_question / 1e3:,.1f} kB written per question",
                f"the changelog JSON of a product's hot-issue counts {where}",
            )
        )
        raw = COUNTS_CODEC.dumps(biggest)
        size = Size(
            f"hot issues: one product's `ProductIssues` JSON, {label}",
            len(raw),
            median_us(args.repeats, lambda biggest=biggest: COUNTS_CODEC.dumps(biggest)),
            median_us(args.repeats, lambda raw=raw: COUNTS_CODEC.loads(raw)),
            shape,
        )
        results.sizes.append(size)
        results.facts[label] = (per_question, size, shape)
        for product_id, profile in last.profiles.items():
            raw = PROFILE_CODEC.dumps(profile)
            results.sizes.append(
                Size(
                    f"hot issues: `LaunchProfile` JSON of a young product ({product_id}), {label}",
                    len(raw),
                    median_us(args.repeats, lambda profile=profile: PROFILE_CODEC.dumps(profile)),
                    median_us(args.repeats, lambda raw=raw: PROFILE_CODEC.loads(raw)),
                    f"{sum(len(bucket) for bucket in profile.buckets)} topic counters",
                )
            )


# --- CRM


def measure_crm(
    args: argparse.Namespace,
    stream: Stream,
    references: References,
    users: dict[str, UserState],
    models: PartitionModels,
    results: Results,
) -> None:
    crm = stream.by_source.get(CRM_UPDATES, [])
    results.rows.append(
        Row(
            "crm: CRM attributes (`run_process`)",
            len(crm),
            repeat(
                args.repeats,
                lambda: timed(
                    lambda: [run_process(UserState(event.user_id), event, references, None) for event in crm]
                ),
            ),
        )
    )
    # The baseline's users, with what the CRM said of them and the tags of their feedback.
    for event in crm:
        if event.user_id in users:
            run_process(users[event.user_id], event, references, None)
    for events in stream.feedback.values():
        for event in events:
            if event.user_id in users:
                tag_user_feedback(users[event.user_id], event, models.tagger)
    states = list(users.values())
    tagged = sum(1 for state in states if state.feedback_tags or state.crm.tier)

    def once(changed: bool) -> float:
        if changed:
            for state in states:
                state.crm_synced = ""  # as if health or tags had moved since the last record sent
        return timed(lambda: [crm_sync_record(state, state.last_event_time) for state in states])

    results.rows.append(
        Row(
            "crm_sync: `crm_sync_record`, record changed",
            len(states),
            repeat(args.repeats, lambda: once(True)),
            f"{len(states):,} users of the baseline, {tagged:,} with a tier or feedback tags",
        )
    )
    results.rows.append(
        Row(
            "crm_sync: `crm_sync_record`, unchanged (nothing sent)",
            len(states),
            repeat(args.repeats, lambda: once(False)),
        )
    )


# --- report


def ratio(us: float, baseline: float) -> str:
    value = us / baseline
    return f"{value:.3f}x" if value < 0.1 else f"{value:.2f}x" if value < 10 else f"{value:.0f}x"


def report(args: argparse.Namespace, results: Results, seconds: float) -> str:
    base = results.baseline.us
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {os.cpu_count()} cores,"
        f" Python {platform.python_version()}:"
        f" `python benchmarks/processes.py --hours {args.hours:g} --warmup-hours {args.warmup_hours:g}"
        f" --repeats {args.repeats} --registry-sizes {','.join(str(size) for size in args.registry_sizes)}"
        f" --corrections {args.corrections} --seed {args.seed}` ({seconds:.0f} s). Median of"
        f" {args.repeats} repeats; spread is (slowest - fastest) / median.",
        "",
        "| component | items | µs/item | items/s | vs. round | spread | |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in [results.baseline, *results.rows]:
        lines.append(
            f"| {row.component} | {row.items:,} | {row.us:,.1f} | {1e6 / row.us:,.0f} |"
            f" {ratio(row.us, base)} | {row.spread:.0%} | {row.note} |"
        )
    lines += [
        "",
        "| size | bytes | encode µs | decode µs | |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for size in results.sizes:
        lines.append(
            f"| {size.what} | {size.size:,} | {size.encode_us:,.0f} | {size.decode_us:,.0f} | {size.note} |"
        )
    lines += ["", *paragraph(results)]
    return "\n".join(lines)


def row(results: Results, prefix: str) -> Row:
    return next(item for item in results.rows if item.component.startswith(prefix))


def paragraph(results: Results) -> list[str]:
    """What the figures say, from the figures (every comparison is computed, not assumed)."""
    base = results.baseline.us
    ticket = row(results, "tickets: repair request")
    tag_en = row(results, "feedback: tag a comment (`tag_user_feedback`, en, seeded")
    tag_zh = row(results, "feedback: tag a comment (`tag_user_feedback`, zh, seeded")
    tag_after = row(results, "feedback: tag a comment (`tag_user_feedback`, en, after")
    learn = row(results, "feedback: learn a correction")
    named = [
        ("a device registration", row(results, "tickets: device registration")),
        ("an order request", row(results, "orders: order request (`run_process`, with stock")),
        ("CRM attributes", row(results, "crm: CRM attributes")),
        ("a `crm_sync` record", row(results, "crm_sync: `crm_sync_record`, record changed")),
        ("a support question's `question_record`", row(results, "hot issues: `question_record`")),
    ]
    cheap = [f"{name} ({item.us:,.0f} µs)" for name, item in named if item.us < 0.1 * base]
    dearer = [f"{name} {ratio(item.us, base)}" for name, item in named if item.us >= 0.1 * base]
    first = (
        f"What the figures say, against the behaviour round ({base:,.0f} µs per event here, models included):"
    )
    if cheap:
        first += f" {_series(cheap)} cost under a tenth of a round each"
        first += f"; {_series(dearer)}." if dearer else "."
    over = [
        f"{item.short or item.component} ({ratio(item.us, base)})" for item in results.rows if item.us > base
    ]
    scan = sorted(results.facts["scan"])
    packaged = scan[0][1]
    first += (
        f" A repair request costs {ratio(ticket.us, base)} a round ({ticket.us:,.0f} µs, of which dispatch"
        f" over the 12 packaged points {packaged:,.0f} µs). Tagging a comment costs {ratio(tag_en.us, base)}"
        " a round"
        f" in English and {ratio(tag_zh.us, base)} in Chinese ({ratio(tag_after.us, base)} in English after"
        f" {results.facts['corrections']:,} corrections), learning a correction {ratio(learn.us, base)}"
        f" ({learn.us:,.0f} µs); every partition learns every correction, so with P partitions a correction"
        f" costs P times that across the workers."
    )
    if over:
        first += f" Of everything measured, only {_series(over)} cost more than a round."
    large_n, large_us = scan[-1]
    per_point = large_us / large_n  # µs per point: the cost is proportional to the registry's size
    sizes = ", ".join(f"{us:,.0f} µs at {n:,} points" for n, us in scan)
    second = (
        f"Dispatch is a linear scan of the registry: every point that repairs the category is tested for"
        f" its opening hours (a time-zone conversion) and every open one for its distance, about"
        f" {per_point:.2f} µs per point ({sizes}). So it costs a tenth of a round at about"
        f" {0.1 * base / per_point:,.0f} points and a whole round at about {base / per_point:,.0f};"
        " a registry larger than that would want its points indexed (by category and grid cell) before"
        " the scan."
    )
    before, after = results.facts["checkpoint"]
    tagger_before, tagger_after = results.facts["tagger"]
    core = after.encode_us / 1e6 / CHECKPOINT_SECONDS
    third = (
        f"The checkpoint: a partition's models pickle to {before.size / 1e3:,.0f} kB,"
        f" {tagger_before / 1e3:,.0f} kB of it the seeded tagger, and to {after.size / 1e3:,.0f} kB after"
        f" {results.facts['corrections']:,} corrections (the tagger {tagger_after / 1e3:,.0f} kB:"
        " new n-grams fill hashed buckets, so it never passes about 380 kB),"
        f" in {after.encode_us / 1000:,.1f} ms (unpickled in"
        f" {after.decode_us / 1000:,.1f} ms); written at most every {CHECKPOINT_SECONDS:g} s per partition"
        f" that learned, that is {core:.3%} of a core per partition."
    )
    observe_steady = row(results, "hot issues: `observe` per question, steady")
    json_steady = row(results, "hot issues: changelog JSON per question, steady")
    observe_full = row(results, "hot issues: `observe` per question, free text")
    json_full = row(results, "hot issues: changelog JSON per question, free text")
    _, steady_size, steady_shape = results.facts["steady questions"]
    full_written, full_size, full_shape = results.facts["free text at full bounds"]
    fourth = (
        f"Hot issues: `observe` costs {observe_steady.us:,.0f} µs per question on steady traffic"
        f" ({ratio(observe_steady.us, base)} a round) and {observe_full.us:,.0f} µs with free text filling"
        f" every bound ({ratio(observe_full.us, base)}). The worker then writes the product's whole counts"
        f" to the changelog on every question: {steady_size.size / 1e3:,.1f} kB at steady traffic"
        f" ({steady_shape}), encoded in {json_steady.us:,.0f} µs"
        f" ({_compare(json_steady.us, observe_steady.us)} `observe` itself), and"
        f" {full_size.size / 1e3:,.0f} kB at full bounds ({full_shape}), encoded in"
        f" {json_full.us:,.0f} µs: {ratio(observe_full.us + json_full.us, base)} a round per question in"
        f" all, and {full_written * 10 / 1e6:,.1f} MB/s of changelog at 10 questions/s on such a product."
    )
    return [first, "", second, "", third, "", fourth]


def _series(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _compare(us: float, other: float) -> str:
    factor = us / other
    if factor >= 1.5:
        return f"{factor:.0f} times" if factor >= 3 else f"{factor:.1f} times"
    return "about as much as" if factor > 0.67 else "less than"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=4.0, help="event time the stream spans")
    parser.add_argument(
        "--warmup-hours", type=float, default=3.0, help="of those, learned untimed before the baseline"
    )
    parser.add_argument("--sessions-per-second", type=float, default=1.0)
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--question-rate", type=float, default=1.0, help="support questions per second")
    parser.add_argument("--questions", type=int, default=5_000, help="steady questions measured")
    parser.add_argument("--free-questions", type=int, default=1_000, help="free-text questions measured")
    parser.add_argument("--corrections", type=int, default=1_000)
    parser.add_argument(
        "--registry-sizes",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[1_000, 10_000],
        help="synthetic service-point registries for dispatch alone (comma-separated; the last two fit"
        " the per-point cost)",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--write-docs", action="store_true", help="put the figures into docs/benchmarks.md")
    args = parser.parse_args()
    if len(args.registry_sizes) < 1:
        parser.error("--registry-sizes needs at least one size")
    if not 0 < args.warmup_hours < args.hours:
        parser.error("--warmup-hours must be between 0 and --hours")
    started = time.perf_counter()
    print("generating and parsing the stream ...", flush=True)
    stream = make_stream(args)
    references = References(load_catalog(), load_service_points(), dispatch_max_km=DISPATCH_MAX_KM)
    baseline, users, models = measure_baseline(args, stream)
    results = Results(baseline)
    results.facts["corrections"] = args.corrections
    print(f"  {baseline.us:,.0f} µs per event", flush=True)
    print("tickets and dispatch ...", flush=True)
    measure_tickets(args, stream, references, results)
    print("orders ...", flush=True)
    measure_orders(args, stream, references, results)
    print("feedback ...", flush=True)
    measure_feedback(args, stream, models, results)
    print("hot issues ...", flush=True)
    measure_issues(args, stream, references, results)
    print("crm ...", flush=True)
    measure_crm(args, stream, references, users, models, results)
    text = report(args, results, time.perf_counter() - started)
    publish(MARKERS, text, args.write_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
