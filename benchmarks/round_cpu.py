"""CPU per event of the behaviour round with the models, this checkout against another in the same run.

    python benchmarks/round_cpu.py [--users 1500] [--days 4] [--repeats 3] [--against ../main]

A seeded synthetic stream (:mod:`streams.tools.traffic.generator`, as :mod:`benchmarks.models` makes it:
``--users`` users, a session every two days each, subscriptions and preferences on) of ``--days`` days runs
through
the worker's per-user path in-process (:class:`streams.tools.simulation.InProcessPartition`: validation,
timers, :func:`streams.domain.rounds.run_round` with one partition's models). The first half of the stream
warms the states and models up untimed; over the second half the process's CPU time
(``time.process_time``) is measured, for the whole path, for :func:`streams.domain.prediction.observe` within
it (features, labels, learning, prediction), and for the learning within that
(:meth:`models.learners.MonitoredClassifier.learn_values`, or ``learn_one`` in a checkout before it),
per event.

Each measurement runs in a process of its own, with the code of one checkout: this one, and with
``--against`` another (the code before a change), alternately, ``--repeats`` times each, so that both
see the same load on the machine. The figures are the medians; the ratio is this checkout's to the other.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAY = 86400.0
START = 1_760_000_000.0


def measure(users: int, days: float, seed: int) -> dict[str, float]:
    """CPU µs per event over the second half of the stream, in this process (its code on sys.path)."""
    from models.learners import MonitoredClassifier, PartitionModels
    from streams.domain import rounds
    from streams.domain.policy import load_policy
    from streams.tools.simulation import InProcessPartition
    from streams.tools.traffic.generator import TrafficGenerator
    from streams.tools.traffic.profile import TrafficProfile

    profile = TrafficProfile(
        sessions_per_second=users / (2 * DAY), users=users, subscription_share=0.3, preferences_share=0.3
    )
    traffic = TrafficGenerator(profile, seed=seed, start=START)
    messages, clock = [], START
    while clock < START + days * DAY:
        clock += 600.0
        messages.extend(traffic.due(clock))
    seconds_in = {"observe": 0.0, "learn": 0.0}

    def timed(name: str, function):  # type: ignore[no-untyped-def]
        def run(*arguments, **keywords):  # type: ignore[no-untyped-def]
            started = time.process_time()
            try:
                return function(*arguments, **keywords)
            finally:
                seconds_in[name] += time.process_time() - started

        return run

    rounds.observe = timed("observe", rounds.observe)
    # The round learns through learn_values where it exists (learn_one before it did).
    learning = "learn_values" if hasattr(MonitoredClassifier, "learn_values") else "learn_one"
    setattr(MonitoredClassifier, learning, timed("learn", getattr(MonitoredClassifier, learning)))
    partition = InProcessPartition(load_policy(), PartitionModels())
    half = len(messages) // 2
    for message in messages[:half]:
        partition.feed(message)
    seconds_in.update(observe=0.0, learn=0.0)
    started = time.process_time()
    for message in messages[half:]:
        partition.feed(message)
    seconds = time.process_time() - started
    events = len(messages) - half
    return {
        "events": events,
        "round_us": seconds / events * 1e6,
        "observe_us": seconds_in["observe"] / events * 1e6,
        "learn_us": seconds_in["learn"] / events * 1e6,
    }


def run_child(checkout: Path, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", str(checkout), "--users", str(args.users)]
    command += ["--days", str(args.days), "--seed", str(args.seed)]
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1500)
    parser.add_argument("--days", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--against", type=Path, help="another checkout, measured alternately with this one")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        sys.path.insert(0, str(args.child))
        print(json.dumps(measure(args.users, args.days, args.seed)))
        return 0
    checkouts = {"this": ROOT} | ({} if args.against is None else {"against": args.against.resolve()})
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in checkouts}
    for _ in range(args.repeats):
        for name, checkout in checkouts.items():
            runs[name].append(run_child(checkout, args))
    medians = {}
    for name, checkout in checkouts.items():
        figures = ("round_us", "observe_us", "learn_us")
        round_us, observe_us, learn_us = (statistics.median(run[f] for run in runs[name]) for f in figures)
        medians[name] = (round_us, observe_us)
        each = ", ".join("/".join(f"{run[f]:.0f}" for f in figures) for run in runs[name])
        print(
            f"{name} ({checkout}): {runs[name][0]['events']:,} events timed; CPU per event: round"
            f" {round_us:.1f} µs, of which observe {observe_us:.1f} µs, of which learning {learn_us:.1f} µs"
            f" (round/observe/learning of each run: {each})"
        )
    if "against" in medians:
        (this_round, this_observe), (other_round, other_observe) = medians["this"], medians["against"]
        ratios = f"round {this_round / other_round:.2f}, observe {this_observe / other_observe:.2f}"
        print(f"ratio this/against: {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
