"""Support-load forecast: the online forecaster against seasonal-naive and a moving average.

    python benchmarks/support_load.py [--weeks 8] [--seed 7] [--write-docs]

1. A seeded series of ``--weeks`` weeks of contacts per channel (chat, phone, email) drawn from the
   demo traffic's shape (:class:`streams.tools.traffic.contacts.ContactShape`: daily and weekly
   seasonality), with two campaigns (neither states its uplift: the model learns it from the first)
   and a launch, counted in 15-minute slots.
2. Every slot is learned as it closes (:class:`models.load_forecast.LoadForecaster` with the calendar
   of :func:`streams.processes.support_load.calendar`), and after each, forecasts are made 1 h, 6 h and
   24 h ahead (the slot starting that long after the end of the last closed slot) by the model, River's
   ``HoltWinters`` with the weekly season, seasonal-naive (the same slot a week before) and a moving
   average (the mean of the last hour's four slots), measured on the same slots from week 3 on: MAE, and
   MAPE over the slots with contacts.
3. Staffing: for each hour, the agents each method would have planned (``ceil(contacts / contacts per
   agent per hour)``, the default policy's ``[staffing]``) from its forecast made that far ahead
   (the hour whose last slot starts 1 h, 6 h, 24 h after the forecast), against the agents the actual
   contacts needed: agent-hours short and idle.
4. Cost: CPU µs per slot learned.

``--write-docs`` puts the figures into docs/benchmarks.md between the support-load markers.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from river import time_series

from benchmarks.readme import publish
from models.load_forecast import SLOT_SECONDS, LoadForecaster
from streams.contracts.time import DAY
from streams.domain.policy import load_policy
from streams.processes.support_load import Campaign, agents_needed, calendar
from streams.tools.traffic.contacts import ContactShape, PlantedCampaign, contact_times

MARKERS = ("<!-- support-load-benchmark:start -->", "<!-- support-load-benchmark:end -->")
START = 1_767_571_200.0  # Monday 2026-01-05 00:00 UTC
CHANNELS = ("chat", "phone", "email")
HORIZONS = {"1 h": 4, "6 h": 24, "24 h": 96}  # slots ahead
METHODS = ("model", "River HoltWinters", "seasonal-naive", "moving average")
# River's Holt-Winters with the weekly season (one season only; additive: a count of 0 breaks the
# multiplicative one), tuned on this series: the best of alpha 0.03-0.1, gamma 0.2-0.3.
HOLT_WINTERS = {"alpha": 0.03, "beta": 0.001, "gamma": 0.2, "seasonality": 7 * 96}
WARMUP_WEEKS = 2
# A contact centre's volume (the demo's traffic is smaller): at a few contacts per slot, Poisson noise
# swamps every method's error and the median beats the mean under MAE.
PER_HOUR = {"chat": 60.0, "phone": 30.0, "email": 12.0}


def planted(start: float) -> tuple[tuple[PlantedCampaign, ...], tuple[float, ...]]:
    """Two campaigns (weeks 3 and 6) and a launch (week 5)."""
    day = DAY
    campaigns = (
        PlantedCampaign(
            "spring-sale",
            "Spring sale",
            start + 17 * day + 8 * 3600,
            start + 19 * day,
            ("chat", "phone"),
            1.2,
        ),
        PlantedCampaign(
            "loyalty-week", "Loyalty week", start + 38 * day + 9 * 3600, start + 40 * day + 18 * 3600, (), 0.9
        ),
    )
    return campaigns, (start + 30 * day + 10 * 3600,)


def series(weeks: int, seed: int) -> tuple[dict[str, list[int]], ContactShape]:
    campaigns, launches = planted(START)
    shape = ContactShape(per_hour=PER_HOUR, campaigns=campaigns, launches=launches)
    rng = random.Random(seed)
    slots = weeks * 7 * 96
    counts: dict[str, list[int]] = {}
    for channel in CHANNELS:
        row = [0] * slots
        for t in contact_times(shape, channel, START, START + slots * SLOT_SECONDS, rng):
            row[int((t - START) // SLOT_SECONDS)] += 1
        counts[channel] = row
    return counts, shape


def run(weeks: int, seed: int) -> dict:
    counts, shape = series(weeks, seed)
    campaigns = [
        Campaign(c.campaign_id, c.name, c.starts_at, c.ends_at, list(c.channels), []) for c in shape.campaigns
    ]
    launches = list(shape.launches)
    staffing = load_policy().staffing
    slots = len(counts["chat"])
    first_measured = WARMUP_WEEKS * 7 * 96
    errors = {(m, h): [0.0, 0, 0.0, 0] for m in METHODS for h in HORIZONS}  # abs sum, n, ape sum, n>0
    staff = {(m, h): [0, 0] for m in METHODS for h in HORIZONS}  # short, idle agent-hours
    hours_measured: dict[str, int] = defaultdict(int)
    learn_cpu, learned = 0.0, 0
    for channel in CHANNELS:
        y = counts[channel]
        cph = staffing.of(channel).contacts_per_agent_hour
        model = LoadForecaster()
        holt_winters = time_series.HoltWinters(**HOLT_WINTERS)
        for m in range(1, slots):  # slot m-1 closed; forecasts made at the start of slot m
            t = START + (m - 1) * SLOT_SECONDS
            started = time.process_time()
            model.learn_one(t, y[m - 1], calendar(t, channel, campaigns, launches))
            learn_cpu += time.process_time() - started
            learned += 1
            holt_winters.learn_one(y[m - 1])
            made_at = START + m * SLOT_SECONDS
            recent = sum(y[max(0, m - 4) : m]) / min(4, m)
            ahead = holt_winters.forecast(horizon=100) if m >= first_measured - 100 else []
            for horizon, k in HORIZONS.items():
                target = m + k
                if target >= slots or target < first_measured:
                    continue

                def predict(
                    slot: int, method: str, model=model, channel=channel, y=y, last=recent, ahead=ahead, m=m
                ) -> float:
                    if method == "model":
                        at = START + slot * SLOT_SECONDS
                        return model.predict_one(at, calendar(at, channel, campaigns, launches))
                    if method == "River HoltWinters":
                        return max(0.0, ahead[slot - m])
                    if method == "seasonal-naive":
                        return float(y[slot - 7 * 96])
                    return last

                actual = y[target]
                for method in METHODS:
                    forecast = predict(target, method)
                    cell = errors[method, horizon]
                    cell[0] += abs(forecast - actual)
                    cell[1] += 1
                    if actual > 0:
                        cell[2] += abs(forecast - actual) / actual
                        cell[3] += 1
                # The hour whose last slot is the target: staffed from this forecast.
                if (target + 1) % 4 == 0 and k >= 4:
                    hour = range(target - 3, target + 1)
                    needed = agents_needed(sum(y[s] for s in hour), cph)
                    hours_measured[horizon] += 1
                    for method in METHODS:
                        planned = agents_needed(sum(predict(s, method) for s in hour), cph)
                        staff[method, horizon][0] += max(0, needed - planned)
                        staff[method, horizon][1] += max(0, planned - needed)
            del made_at
    return {
        "errors": errors,
        "staff": staff,
        "hours": dict(hours_measured),
        "us_per_slot": learn_cpu / learned * 1e6,
        "contacts": {channel: sum(counts[channel]) for channel in CHANNELS},
        "slots": slots,
    }


def report(args: argparse.Namespace, result: dict, seconds: float) -> str:
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    contacts = ", ".join(f"{c} {n:,}" for c, n in result["contacts"].items())
    lines = [
        f"Measured {day} on Python {platform.python_version()}: `python benchmarks/support_load.py"
        f" --weeks {args.weeks} --seed {args.seed}` ({seconds:.0f} s).",
        "",
        f"Series: {args.weeks} weeks of 15-minute slots, {contacts} contacts; two campaigns (weeks 3 and 6,"
        " +120% on chat and phone, +90% on all), a launch (week 5, +80% decaying over a week); measured from"
        f" week {WARMUP_WEEKS + 1} on, the three channels together.",
        "",
        "| horizon | method | MAE (contacts/slot) | vs. seasonal-naive | MAPE | agent-hours short | idle |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    errors, staff = result["errors"], result["staff"]
    for horizon in HORIZONS:
        naive = errors["seasonal-naive", horizon][0] / errors["seasonal-naive", horizon][1]
        for method in METHODS:
            total, n, ape, positive = errors[method, horizon]
            mae = total / n
            short, idle = staff[method, horizon]
            lines.append(
                f"| {horizon} | {method} | {mae:.2f} | {mae / naive:.2f} | {100 * ape / positive:.0f}% |"
                f" {short:,} | {idle:,} |"
            )
    hours = result["hours"]
    lines += [
        "",
        f"Agent-hours over {hours['1 h']:,} channel-hours. Cost: {result['us_per_slot']:.0f} µs of CPU per"
        " slot learned (calendar included).",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weeks", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--write-docs", action="store_true", help="put the figures into docs/benchmarks.md")
    args = parser.parse_args()
    started = time.perf_counter()
    result = run(args.weeks, args.seed)
    publish(MARKERS, report(args, result, time.perf_counter() - started), args.write_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
