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

from streams.domain.contact import DEFERRED, EMITTED, SHADOW

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


# --- shadow decisions: what a trigger deployed in shadow would have done

# Shadow reasons of what would have been sent: at once, or when the user's quiet hours ended.
WOULD_SEND = (EMITTED, DEFERRED)
FOLLOW_UP = 7 * 86_400.0  # s: the window after a would-be send in which complaints and conversions count
CHURN_HORIZON = 28 * 86_400.0  # s: no activity for this long after it, or a cancellation in it: churned
TOP_SEGMENTS = 5


@dataclass(frozen=True, slots=True)
class Behaviour:
    """What a group of users did after their reference time t: flags counted once per user."""

    users: int = 0
    complained: int = 0  # a support contact, or feedback scored 1 or 2, in (t, t + follow-up]
    converted: int = 0  # an order_completed or payment_completed in (t, t + follow-up]
    churn_observable: int = 0  # users whose churn horizon has passed by the latest event
    churned: int = 0  # among those: no clickstream event in (t, t + horizon], or a cancellation in it

    @property
    def complaint_rate(self) -> float | None:
        return ratio(self.complained, self.users)

    @property
    def conversion_rate(self) -> float | None:
        return ratio(self.converted, self.users)

    @property
    def churn_rate(self) -> float | None:
        return ratio(self.churned, self.churn_observable)


@dataclass(frozen=True, slots=True)
class ShadowValue:
    """One trigger's shadow decisions in the period, and how its would-be targets behaved.

    ``targets`` are the users it would have sent to (a shadow decision with reason ``emitted`` or
    ``deferred``), each from their first such decision in the period; ``others`` are the users active
    (a clickstream event) in the period who are not targets, each from their first event in it. The
    comparison is descriptive: the trigger chose its targets, so differences are not its effect.
    """

    trigger: str
    decisions: int  # shadow decisions
    by_reason: tuple[tuple[str, int], ...]  # would-be reason -> decisions, most first
    users: int  # distinct users with a shadow decision
    targets: int  # distinct users it would have sent to
    days: float  # the period's length, at least one day
    active_users: int  # distinct users with a clickstream event in the period
    segments: tuple[tuple[str, int], ...]  # the targets' most common CRM segments: (segment, users)
    target_behaviour: Behaviour
    other_behaviour: Behaviour

    @property
    def would_send(self) -> int:
        return sum(count for reason, count in self.by_reason if reason in WOULD_SEND)

    @property
    def per_day(self) -> float:
        return self.would_send / self.days

    @property
    def per_thousand_active(self) -> float | None:
        return None if not self.active_users else 1000 * self.would_send / self.active_users

    def difference(self, flag: str) -> Estimate | None:
        """Targets minus everyone else for ``complained``, ``converted`` or ``churned``."""
        a, b = self.target_behaviour, self.other_behaviour
        if flag == "churned":
            return proportion_difference(a.churned, a.churn_observable, b.churned, b.churn_observable)
        return proportion_difference(getattr(a, flag), a.users, getattr(b, flag), b.users)


def _ms(value: Any) -> int:
    return round(value.timestamp() * 1000)


_PERIOD = "event_time >= fromUnixTimestamp64Milli({start:Int64}, 'UTC')" + (
    " AND event_time <= fromUnixTimestamp64Milli({end:Int64}, 'UTC')"
)
_SHADOW = f"decisions FINAL WHERE decision = '{SHADOW}' AND {_PERIOD}"
_WOULD_SEND = f"reason IN ('{EMITTED}', '{DEFERRED}')"

# For one trigger: its targets from their first would-be send, everyone else active from their first
# clickstream event, then each one's events after that time (the sparse flags joined with the window as a
# join condition, as in 0002's intervention_value).
_BEHAVIOUR_SQL = f"""
WITH
    targets AS
    (
        SELECT user_id, min(event_time) AS t FROM {_SHADOW}
            AND trigger = {{trigger:String}} AND {_WOULD_SEND}
        GROUP BY user_id
    ),
    others AS
    (
        SELECT user_id, min(event_time) AS t FROM events
        WHERE source = 'clickstream' AND {_PERIOD} AND user_id NOT IN (SELECT user_id FROM targets)
        GROUP BY user_id
    ),
    cohort AS
    (
        SELECT user_id, t, t + toIntervalMillisecond({{window:Int64}}) AS t_end, target
        FROM
        (
            SELECT user_id, t, 1 AS target FROM targets
            UNION ALL
            SELECT user_id, t, 0 AS target FROM others
        )
    ),
    later AS
    (
        SELECT user_id, event_time, source, event_type, attrs FROM events
        WHERE user_id IN (SELECT user_id FROM cohort)
            AND event_time > fromUnixTimestamp64Milli({{start:Int64}}, 'UTC')
            AND event_time <= fromUnixTimestamp64Milli({{end:Int64}}, 'UTC')
                + toIntervalMillisecond({{window:Int64}})
            AND source IN ('clickstream', 'subscriptions')
    ),
    flags AS
    (
        SELECT
            c.user_id AS user_id,
            max(e.source = 'clickstream'
                AND e.event_time <= c.t + toIntervalMillisecond({{follow_up:Int64}})
                AND (e.event_type = 'support_contact'
                    OR (e.event_type = 'feedback' AND JSONExtractFloat(e.attrs, 'score') <= 2)))
                AS complained,
            max(e.source = 'clickstream' AND e.event_type IN ('order_completed', 'payment_completed')
                AND e.event_time <= c.t + toIntervalMillisecond({{follow_up:Int64}})) AS converted,
            max(e.source = 'clickstream'
                AND e.event_time <= c.t + toIntervalMillisecond({{horizon:Int64}})) AS active,
            max(e.event_type = 'subscription_updated' AND JSONExtractString(e.attrs, 'status') = 'cancelled'
                AND e.event_time <= c.t + toIntervalMillisecond({{horizon:Int64}})) AS cancelled
        FROM cohort AS c
        INNER JOIN later AS e ON e.user_id = c.user_id AND e.event_time > c.t AND e.event_time <= c.t_end
        GROUP BY c.user_id
    )
SELECT
    c.target AS target,
    count() AS users,
    sum(f.complained) AS complained,
    sum(f.converted) AS converted,
    countIf(c.t + toIntervalMillisecond({{horizon:Int64}}) <= fromUnixTimestamp64Milli({{end:Int64}}, 'UTC'))
        AS churn_observable,
    countIf(c.t + toIntervalMillisecond({{horizon:Int64}}) <= fromUnixTimestamp64Milli({{end:Int64}}, 'UTC')
        AND (f.active = 0 OR f.cancelled = 1)) AS churned
FROM cohort AS c
LEFT JOIN flags AS f ON f.user_id = c.user_id
GROUP BY target
"""

# The targets' CRM segments: each user's latest crm_attributes event that names segments, up to the end.
_SEGMENTS_SQL = f"""
WITH
    targets AS (SELECT DISTINCT trigger, user_id FROM {_SHADOW} AND {_WOULD_SEND}),
    latest AS
    (
        SELECT user_id, argMax(JSONExtract(attrs, 'segments', 'Array(String)'), event_time) AS segments
        FROM events
        WHERE source = 'crm' AND event_type = 'crm_attributes' AND JSONHas(attrs, 'segments')
            AND event_time <= fromUnixTimestamp64Milli({{end:Int64}}, 'UTC')
            AND user_id IN (SELECT user_id FROM targets)
        GROUP BY user_id
    )
SELECT t.trigger AS trigger, segment, count() AS users
FROM targets AS t
INNER JOIN latest AS l ON l.user_id = t.user_id
ARRAY JOIN l.segments AS segment
GROUP BY trigger, segment
ORDER BY trigger, users DESC, segment
LIMIT {TOP_SEGMENTS} BY trigger
"""


def shadow_report(
    store: Any,
    days: float | None = None,
    follow_up: float = FOLLOW_UP,
    churn_horizon: float = CHURN_HORIZON,
) -> list[ShadowValue]:
    """Every trigger with shadow decisions in the period, read through a
    :class:`sinks.clickhouse.ClickHouseStore`.

    The period ends at the latest event stored (the data's "now", so a replay reads the same) and covers
    the last ``days`` before it, or, without ``days``, starts at the first shadow decision. Rates per day
    divide by the period's length, at least one day. ``follow_up`` and ``churn_horizon`` are seconds.
    """
    [(last_event, last_decision, first_shadow)] = store.query(
        "SELECT (SELECT max(event_time) FROM events), (SELECT max(event_time) FROM decisions),"
        " (SELECT min(event_time) FROM decisions WHERE decision = 'shadow')"
    )
    if first_shadow is None or _ms(first_shadow) <= 0:
        return []
    end = max(_ms(last_event), _ms(last_decision))
    start = _ms(first_shadow) if days is None else end - int(days * 86_400_000)
    period = {"start": start, "end": end}
    counts: dict[str, list[tuple[str, int, int]]] = {}
    for trigger, reason, decisions, users in store.query(
        f"SELECT trigger, reason, count(), uniqExact(user_id) FROM {_SHADOW}"
        " GROUP BY trigger, reason ORDER BY trigger, count() DESC, reason",
        period,
    ):
        counts.setdefault(trigger, []).append((reason, int(decisions), int(users)))
    if not counts:
        return []
    reach = {
        trigger: (int(users), int(targets))
        for trigger, users, targets in store.query(
            f"SELECT trigger, uniqExact(user_id), uniqExactIf(user_id, {_WOULD_SEND}) FROM {_SHADOW}"
            " GROUP BY trigger",
            period,
        )
    }
    [(active,)] = store.query(
        f"SELECT uniqExact(user_id) FROM events WHERE source = 'clickstream' AND {_PERIOD}", period
    )
    segments: dict[str, list[tuple[str, int]]] = {}
    for trigger, segment, users in store.query(_SEGMENTS_SQL, period):
        segments.setdefault(trigger, []).append((segment, int(users)))
    values = []
    window = int(max(follow_up, churn_horizon) * 1000)
    for trigger, reasons in sorted(counts.items()):
        groups = {
            int(target): Behaviour(*(int(number) for number in numbers))
            for target, *numbers in store.query(
                _BEHAVIOUR_SQL,
                {
                    **period,
                    "trigger": trigger,
                    "window": window,
                    "follow_up": int(follow_up * 1000),
                    "horizon": int(churn_horizon * 1000),
                },
            )
        }
        users, targets = reach.get(trigger, (0, 0))
        values.append(
            ShadowValue(
                trigger=trigger,
                decisions=sum(count for _, count, _ in reasons),
                by_reason=tuple((reason, count) for reason, count, _ in reasons),
                users=users,
                targets=targets,
                days=max(1.0, (end - start) / 86_400_000),
                active_users=int(active),
                segments=tuple(segments.get(trigger, ())),
                target_behaviour=groups.get(1, Behaviour()),
                other_behaviour=groups.get(0, Behaviour()),
            )
        )
    return values


def _days(seconds: float) -> str:
    return f"{seconds / 86_400:g} days"


def format_shadow_report(
    values: Sequence[ShadowValue], follow_up: float = FOLLOW_UP, churn_horizon: float = CHURN_HORIZON
) -> str:
    """The shadow decisions as text: per trigger, what it would have sent, at what rate, to whom, and
    how its would-be targets behaved against everyone else active in the period."""
    blocks = []
    for value in values:
        would = [f"{reason} {count}" for reason, count in value.by_reason if reason in WOULD_SEND]
        held = [
            f"{reason or '(none)'} {count}" for reason, count in value.by_reason if reason not in WOULD_SEND
        ]
        per_thousand = value.per_thousand_active
        lines = [
            f"{value.trigger}: shadow decisions over {value.days:.1f} days"
            f" ({value.decisions} decisions, {value.users} users)",
            f"would have sent {value.would_send} ({', '.join(would) or 'none'}) to {value.targets} users:"
            f" {value.per_day:.2f} per day,"
            f" {NA if per_thousand is None else f'{per_thousand:.1f}'} per 1,000 active users"
            f" ({value.active_users} active)",
        ]
        if held:
            lines.append(f"would not have sent: {', '.join(held)}")
        if value.segments:
            shares = [
                f"{segment} {users} ({_percent(ratio(users, value.targets))})"
                for segment, users in value.segments
            ]
            lines.append(f"top segments of those users: {', '.join(shares)}")
        a, b = value.target_behaviour, value.other_behaviour
        rows: list[tuple[str, ...]] = [
            ("after the shadow decision", "would-be targets", "everyone else active", "difference [95% CI]"),
            ("users", str(a.users), str(b.users), ""),
            (
                f"complaint rate ({_days(follow_up)})",
                _percent(a.complaint_rate),
                _percent(b.complaint_rate),
                _estimate(value.difference("complained")),
            ),
            (
                f"conversion rate ({_days(follow_up)})",
                _percent(a.conversion_rate),
                _percent(b.conversion_rate),
                _estimate(value.difference("converted")),
            ),
            (
                f"churn rate ({_days(churn_horizon)}, observable)",
                _share_of(a.churn_rate, a.churn_observable),
                _share_of(b.churn_rate, b.churn_observable),
                _estimate(value.difference("churned")),
            ),
        ]
        blocks.append("\n".join([*lines, *_table(rows)]))
    return "\n\n".join(blocks)
