"""Value metrics of proactive interventions: each arm of an experiment against its holdout arm.

ClickHouse computes the per-arm aggregates (the ``value_by_arm`` view, ``sinks/schema/0002_policy.sql``);
this module turns them into rates, uplifts and 95% confidence intervals, and renders them. The control
is the arm named ``holdout`` (it gets nothing); every other arm of the same trigger and experiment is
compared with it. Rates are intent-to-treat: their denominator is every final decision of the arm.

The statistics are plain functions of counts and sums, so they can be checked by hand:

>>> control = ArmTotals("holdout", decisions=800, converted=80, revenue=4000.0, revenue_sq=280000.0)
>>> treated = ArmTotals("treatment", decisions=3200, converted=480, revenue=24000.0, revenue_sq=1344000.0)
>>> uplift = proportion_difference(treated.converted, treated.decisions, control.converted, control.decisions)
>>> print(uplift.render(percent=True))
+5.0 pp [+2.6, +7.4]
>>> mean_difference(treated.revenue, treated.revenue_sq, treated.decisions,
...                 control.revenue, control.revenue_sq, control.decisions).render()
'+2.50 [+1.09, +3.91]'
>>> proportion_difference(0, 0, 3, 10) is None  # an empty arm has no rate
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

HOLDOUT = "holdout"
# Two-sided 95% normal quantile.
Z95 = 1.959963984540054

COLUMNS = (
    "decisions",
    "users",
    "emitted",
    "delivered",
    "responded",
    "accepted",
    "resolved_automatically",
    "escalated",
    "complained",
    "converted",
    "revenue",
    "revenue_sq",
    "churn_observable",
    "churned",
)


@dataclass(frozen=True, slots=True)
class ArmTotals:
    """One arm's row of ``value_by_arm``: counts of final decisions with each flag, revenue sums."""

    arm: str
    decisions: int = 0
    users: int = 0
    emitted: int = 0
    delivered: int = 0
    responded: int = 0
    accepted: int = 0
    resolved_automatically: int = 0
    escalated: int = 0
    complained: int = 0
    converted: int = 0
    revenue: float = 0.0
    revenue_sq: float = 0.0
    churn_observable: int = 0
    churned: int = 0


@dataclass(frozen=True, slots=True)
class Estimate:
    """A point estimate with its 95% confidence interval."""

    value: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def covers(self, truth: float) -> bool:
        return self.low <= truth <= self.high

    def render(self, percent: bool = False) -> str:
        """``+5.0 pp [+2.6, +7.4]`` for a difference of rates, ``+2.50 [+1.21, +3.79]`` for a mean."""
        if percent:
            return f"{self.value * 100:+.1f} pp [{self.low * 100:+.1f}, {self.high * 100:+.1f}]"
        return f"{self.value:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, or None when there is nothing to divide by.

    >>> ratio(1, 4), ratio(3, 0)
    (0.25, None)
    """
    return numerator / denominator if denominator > 0 else None


def proportion_difference(
    successes_a: int, n_a: int, successes_b: int, n_b: int, z: float = Z95
) -> Estimate | None:
    """Difference of proportions a - b with its Wald interval; None if either arm is empty.

    >>> proportion_difference(12, 100, 30, 100).render(percent=True)
    '-18.0 pp [-29.0, -7.0]'
    """
    if n_a <= 0 or n_b <= 0:
        return None
    p_a, p_b = successes_a / n_a, successes_b / n_b
    error = math.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
    return Estimate(p_a - p_b, p_a - p_b - z * error, p_a - p_b + z * error)


def sample_variance(total: float, total_sq: float, n: int) -> float:
    """Unbiased variance from a sum and a sum of squares (clamped at 0 against rounding).

    >>> sample_variance(6.0, 14.0, 3)  # 1, 2, 3
    1.0
    """
    if n < 2:
        return 0.0
    return max(0.0, (total_sq - total * total / n) / (n - 1))


def mean_difference(
    total_a: float, total_sq_a: float, n_a: int, total_b: float, total_sq_b: float, n_b: int, z: float = Z95
) -> Estimate | None:
    """Difference of means a - b with a Welch standard error; None unless both arms have 2 values.

    >>> mean_difference(10.0, 50.0, 2, 2.0, 2.0, 2).render()  # (5, 5) against (1, 1)
    '+4.00 [+4.00, +4.00]'
    """
    if n_a < 2 or n_b < 2:
        return None
    difference = total_a / n_a - total_b / n_b
    error = math.sqrt(
        sample_variance(total_a, total_sq_a, n_a) / n_a + sample_variance(total_b, total_sq_b, n_b) / n_b
    )
    return Estimate(difference, difference - z * error, difference + z * error)


@dataclass(frozen=True, slots=True)
class ArmValue:
    """One non-holdout arm and, where the trigger has a holdout arm, what it changed."""

    totals: ArmTotals
    response_rate: float | None  # responded / delivered
    adoption_rate: float | None  # accepted / emitted
    automation_share: float | None  # resolved_automatically / (resolved_automatically + escalated)
    complaint_rate: float | None  # complained / decisions
    conversion_rate: float | None
    revenue_per_decision: float | None
    churn_rate: float | None  # churned / churn_observable
    complaint_difference: Estimate | None = None  # this arm - holdout
    problem_prevention: float | None = None  # 1 - complaint rate / holdout complaint rate
    conversion_uplift: Estimate | None = None
    revenue_uplift: Estimate | None = None
    churn_difference: Estimate | None = None


@dataclass(frozen=True, slots=True)
class TriggerValue:
    trigger: str
    experiment: str
    holdout: ArmTotals | None
    arms: tuple[ArmValue, ...]


def arm_value(arm: ArmTotals, holdout: ArmTotals | None) -> ArmValue:
    """Rates of ``arm`` and, against ``holdout`` if there is one, the differences."""
    value = ArmValue(
        totals=arm,
        response_rate=ratio(arm.responded, arm.delivered),
        adoption_rate=ratio(arm.accepted, arm.emitted),
        automation_share=ratio(arm.resolved_automatically, arm.resolved_automatically + arm.escalated),
        complaint_rate=ratio(arm.complained, arm.decisions),
        conversion_rate=ratio(arm.converted, arm.decisions),
        revenue_per_decision=ratio(arm.revenue, arm.decisions),
        churn_rate=ratio(arm.churned, arm.churn_observable),
    )
    if holdout is None:
        return value
    holdout_complaints = ratio(holdout.complained, holdout.decisions)
    return replace(
        value,
        complaint_difference=proportion_difference(
            arm.complained, arm.decisions, holdout.complained, holdout.decisions
        ),
        problem_prevention=(
            1 - value.complaint_rate / holdout_complaints
            if value.complaint_rate is not None and holdout_complaints
            else None
        ),
        conversion_uplift=proportion_difference(
            arm.converted, arm.decisions, holdout.converted, holdout.decisions
        ),
        revenue_uplift=mean_difference(
            arm.revenue, arm.revenue_sq, arm.decisions, holdout.revenue, holdout.revenue_sq, holdout.decisions
        ),
        churn_difference=proportion_difference(
            arm.churned, arm.churn_observable, holdout.churned, holdout.churn_observable
        ),
    )


def compare_arms(rows: Sequence[tuple[Any, ...]]) -> list[TriggerValue]:
    """``value_by_arm`` rows (trigger, experiment, arm, then :data:`COLUMNS`) to comparisons.

    >>> rows = [("delay_notice", "q4", "holdout", 800, 800, 0, 0, 0, 0, 0, 0, 240, 80, 4e3, 2.8e5, 640, 128),
    ...         ("delay_notice", "q4", "treatment", 3200, 3200, 3000, 2900, 1400, 900, 600, 200, 384, 480,
    ...          2.4e4, 1.344e6, 2560, 256)]
    >>> [value] = compare_arms(rows)
    >>> value.holdout.decisions, value.arms[0].totals.arm, round(value.arms[0].problem_prevention, 2)
    (800, 'treatment', 0.6)
    """
    groups: dict[tuple[str, str], list[ArmTotals]] = {}
    for trigger, experiment, arm, *numbers in rows:
        totals = ArmTotals(
            arm,
            **{
                name: float(number) if name in ("revenue", "revenue_sq") else int(number)
                for name, number in zip(COLUMNS, numbers, strict=True)
            },
        )
        groups.setdefault((trigger, experiment), []).append(totals)
    values = []
    for (trigger, experiment), arms in sorted(groups.items()):
        holdout = next((arm for arm in arms if arm.arm == HOLDOUT), None)
        others = tuple(
            arm_value(arm, holdout) for arm in sorted(arms, key=lambda a: a.arm) if arm is not holdout
        )
        values.append(TriggerValue(trigger, experiment, holdout, others))
    return values


def value_report(store: Any) -> list[TriggerValue]:
    """Read ``value_by_arm`` through a :class:`sinks.clickhouse.ClickHouseStore` and compare the arms."""
    rows = store.query(f"SELECT trigger, experiment, arm, {', '.join(COLUMNS)} FROM value_by_arm")
    return compare_arms(rows)


# --- rendering

NA = "n/a"


def _percent(value: float | None) -> str:
    return NA if value is None else f"{value * 100:.1f}%"


def _money(value: float | None) -> str:
    return NA if value is None else f"{value:.2f}"


def _share_of(rate: float | None, count: int) -> str:
    return NA if rate is None else f"{_percent(rate)} of {count}"


def _estimate(value: Estimate | None, percent: bool = True) -> str:
    return NA if value is None else value.render(percent=percent)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def _arm_lines(value: ArmValue, holdout: ArmTotals | None) -> list[str]:
    arm = value.totals
    control = arm_value(holdout, None) if holdout is not None else None

    def held(attribute: str, render: Callable[[float | None], str]) -> str:
        # The holdout's own rate, rendered like the arm's.
        return render(getattr(control, attribute)) if control is not None else NA

    rows: list[tuple[str, ...]] = [
        ("metric", arm.arm or "(no arm)", HOLDOUT, "difference [95% CI]"),
        (
            "decisions (users)",
            f"{arm.decisions} ({arm.users})",
            f"{holdout.decisions} ({holdout.users})" if holdout else NA,
            "",
        ),
        ("emitted", str(arm.emitted), str(holdout.emitted) if holdout else NA, ""),
        ("reach response rate (responded / delivered)", _percent(value.response_rate), "", ""),
        ("adoption rate (accepted / emitted)", _percent(value.adoption_rate), "", ""),
    ]
    if arm.complained or (holdout is not None and holdout.complained):
        rows += [
            (
                "complaint rate (7 days)",
                _percent(value.complaint_rate),
                held("complaint_rate", _percent),
                _estimate(value.complaint_difference),
            ),
            ("problem prevention (1 - complaint rate ratio)", _percent(value.problem_prevention), "", ""),
        ]
    rows += [
        (
            "conversion rate (7 days)",
            _percent(value.conversion_rate),
            held("conversion_rate", _percent),
            _estimate(value.conversion_uplift),
        ),
        (
            "revenue per decision (7 days)",
            _money(value.revenue_per_decision),
            held("revenue_per_decision", _money),
            _estimate(value.revenue_uplift, percent=False),
        ),
        (
            "churn rate (28 days, observable)",
            _share_of(value.churn_rate, arm.churn_observable),
            _share_of(control.churn_rate, holdout.churn_observable) if control and holdout else NA,
            _estimate(value.churn_difference),
        ),
        ("automation share (resolved / (resolved + escalated))", _percent(value.automation_share), "", ""),
    ]
    return _table(rows)


def format_report(values: Sequence[TriggerValue]) -> str:
    """The comparisons as text: one table per trigger, experiment and non-holdout arm."""
    if not values:
        return "no final decisions yet: value_by_arm is empty"
    blocks = []
    for value in values:
        title = value.trigger + (
            f" / experiment {value.experiment}" if value.experiment else " / no experiment"
        )
        if not value.arms:
            blocks.append(f"{title}: only the holdout arm has decisions ({value.holdout.decisions})")
            continue
        for arm in value.arms:
            name = arm.totals.arm or "(no arm)"
            heading = f"{title}: {name} vs {HOLDOUT}" if value.holdout else f"{title}: {name}, no holdout arm"
            blocks.append("\n".join([heading, *_arm_lines(arm, value.holdout)]))
    return "\n\n".join(blocks)
