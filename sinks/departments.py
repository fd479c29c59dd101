"""Cross-department response times and the end-to-end automation share, week by week, for
``forewarn report``.

ClickHouse folds the updates into one row per ticket and per feedback and team (the
``ticket_response`` and ``feedback_response`` views, ``sinks/schema/0011_department_updates.sql``) and
counts the cases of automation (``automation_share``); this module reads them per week (Monday to
Sunday, UTC), compares the latest week with data against the mean of the :data:`TREND_WEEKS` weeks
before it, and renders them. A figure a week has no data for (no ticket resolved) is ``None`` and is
left out of the mean; a trend needs the latest week's figure and at least one earlier week's.

>>> weeks = [WeekFigures("2026-11-02", first_response_p50=4.0),
...          WeekFigures("2026-11-09", first_response_p50=6.0),
...          WeekFigures("2026-11-16", first_response_p50=2.5)]
>>> trend = figure_trend(weeks, "first_response_p50")
>>> trend.value, trend.baseline, round(trend.change, 3)
(2.5, 5.0, -0.5)
>>> format_trend(trend, hours=True)
'2.5 h (previous weeks 5.0 h, -50%)'
>>> automation_share([("interventions", 8, 10), ("tickets", 6, 8), ("orders", 1, 2)])
0.75
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

TREND_WEEKS = 4  # the latest week is compared with the mean of this many weeks before it
ACK_DAYS = 3  # feedback acknowledged within this many days (the department_weekly_feedback view's 3)
NA = "n/a"


@dataclass(frozen=True, slots=True)
class WeekFigures:
    """One week's figures over every service point and team. Hours, and shares from 0 to 1; ``None``
    when the week has nothing to measure them on."""

    week: str  # its Monday, ISO date
    tickets: int = 0
    first_response_p50: float | None = None
    first_response_p90: float | None = None
    resolution_p50: float | None = None
    resolution_p90: float | None = None
    reopen_rate: float | None = None
    automatic_dispatch: float | None = None
    feedback: int = 0
    acknowledged_in_time: float | None = None
    automated: int = 0
    cases: int = 0

    @property
    def automation(self) -> float | None:
        return self.automated / self.cases if self.cases else None


@dataclass(frozen=True, slots=True)
class Trend:
    """The latest week's figure against the mean of the weeks before it (``change``: relative)."""

    value: float | None
    baseline: float | None

    @property
    def change(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return (self.value - self.baseline) / self.baseline


def automation_share(kinds: Sequence[tuple[str, int, int]]) -> float | None:
    """The end-to-end automation share of ``(kind, automated, cases)`` rows: every kind's cases handled
    without a person over all cases (docs/operations.md); None without cases."""
    cases = sum(int(count) for _, _, count in kinds)
    return sum(int(done) for _, done, _ in kinds) / cases if cases else None


def figure_trend(weeks: Sequence[WeekFigures], name: str, trend_weeks: int = TREND_WEEKS) -> Trend:
    """The figure ``name`` (a :class:`WeekFigures` field or property) of the last of ``weeks`` (oldest
    first) against the mean of the ``trend_weeks`` before it that have it."""
    if not weeks:
        return Trend(None, None)
    earlier = [getattr(week, name) for week in weeks[-1 - trend_weeks : -1]]
    known = [value for value in earlier if value is not None]
    return Trend(getattr(weeks[-1], name), sum(known) / len(known) if known else None)


def _value(value: float | None, hours: bool) -> str:
    if value is None:
        return NA
    return f"{value:.1f} h" if hours else f"{value * 100:.1f}%"


def format_trend(trend: Trend, hours: bool = False) -> str:
    """``value (previous weeks baseline, ±change%)``; hours or a share (as a percentage)."""
    text = _value(trend.value, hours)
    if trend.baseline is None:
        return f"{text} (no earlier week)"
    change = trend.change
    shown = NA if change is None else f"{change * 100:+.0f}%"
    return f"{text} (previous weeks {_value(trend.baseline, hours)}, {shown})"


# (label, figure, in hours)
FIGURES = (
    ("time to first response p50", "first_response_p50", True),
    ("time to first response p90", "first_response_p90", True),
    ("time to resolution p50", "resolution_p50", True),
    ("time to resolution p90", "resolution_p90", True),
    ("reopen rate", "reopen_rate", False),
    ("tickets dispatched automatically", "automatic_dispatch", False),
    ("feedback acknowledged in time", "acknowledged_in_time", False),
    ("end-to-end automation share", "automation", False),
)


@dataclass(frozen=True, slots=True)
class DepartmentReport:
    """The weeks read (oldest first), and the latest week per service point, team and kind of case."""

    weeks: list[WeekFigures]
    points: list[
        tuple[Any, ...]
    ]  # service_point_id, tickets, auto share, first p50, p90, resol p50, p90, reopen
    teams: list[tuple[Any, ...]]  # team, feedback, acknowledged in time share, first response p50
    kinds: list[tuple[str, int, int]]  # kind, automated, cases
    ack_days: int = ACK_DAYS


def format_department_report(report: DepartmentReport) -> str:
    """The report as text: the latest week's figures with their trend, then per service point, team and
    kind of case."""
    if not report.weeks:
        return "Cross-department response: no tickets, feedback or cases stored yet."
    latest = report.weeks[-1]
    lines = [
        f"Cross-department response, week of {latest.week} against the mean of up to {TREND_WEEKS} weeks"
        f" before it ({latest.tickets} tickets, {latest.feedback} feedback, {latest.cases} cases):"
    ]
    for label, name, hours in FIGURES:
        if name == "acknowledged_in_time":
            label = f"feedback acknowledged within {report.ack_days} days"
        lines.append(f"  {label}: {format_trend(figure_trend(report.weeks, name), hours)}")
    if report.points:
        lines.append(
            "per service point: tickets, automatic, first response p50/p90, resolution p50/p90, reopen"
        )
        for point, tickets, auto, first50, first90, res50, res90, reopen in report.points:
            lines.append(
                f"  {point or '(none yet)'}: {tickets}, {_value(auto, False)},"
                f" {_value(first50, True)}/{_value(first90, True)},"
                f" {_value(res50, True)}/{_value(res90, True)},"
                f" {_value(reopen, False)}"
            )
    if report.teams:
        lines.append(f"per team: feedback, acknowledged within {report.ack_days} days, first response p50")
        for team, count, share, first50 in report.teams:
            lines.append(f"  {team}: {count}, {_value(share, False)}, {_value(first50, True)}")
    if report.kinds:
        parts = [f"{kind} {done}/{cases}" for kind, done, cases in report.kinds]
        lines.append(f"automation by kind (automated/cases): {', '.join(parts)}")
    return "\n".join(lines)


def _number(value: Any) -> float | None:
    """A ClickHouse figure: NULL and NaN (a quantile of nothing) are None."""
    if value is None:
        return None
    number = float(value)
    return None if number != number else number


_TICKET_WEEKS = """
SELECT toString(week), count(), quantileExactIf(0.5)(first_response_hours, responded),
    quantileExactIf(0.9)(first_response_hours, responded),
    quantileExactIf(0.5)(resolution_hours, resolution_hours IS NOT NULL),
    quantileExactIf(0.9)(resolution_hours, resolution_hours IS NOT NULL),
    if(countIf(ever_resolved) > 0, countIf(reopened) / countIf(ever_resolved), NULL),
    countIf(dispatch = 'assigned') / count()
FROM ticket_response WHERE week >= toDate({start:String}) AND week <= toDate({end:String}) GROUP BY week
"""
_FEEDBACK_WEEKS = """
SELECT toString(week), count(), countIf(acknowledged AND first_response_hours <= {hours:Float64}) / count()
FROM feedback_response WHERE week >= toDate({start:String}) AND week <= toDate({end:String}) GROUP BY week
"""
_CASES_WEEKS = """
SELECT toString(week), sum(automated), sum(cases) FROM automation_share
WHERE week >= toDate({start:String}) AND week <= toDate({end:String}) GROUP BY week
"""
_LATEST = """
SELECT toString(greatest(
    (SELECT max(toMonday(created_at)) FROM tickets), (SELECT max(toMonday(event_time)) FROM feedback_tags),
    (SELECT max(toMonday(event_time)) FROM interventions)))
"""


def department_report(
    store: Any, ack_days: int = ACK_DAYS, trend_weeks: int = TREND_WEEKS
) -> DepartmentReport:
    """Read the views through a :class:`sinks.clickhouse.ClickHouseStore`: the latest week with a
    ticket, feedback or intervention, and the ``trend_weeks`` before it."""
    [(latest,)] = store.query(_LATEST)
    if latest is None or str(latest) <= "1970-01-05":  # nothing stored: greatest() of empty maxima
        return DepartmentReport([], [], [], [], ack_days)
    period = {"end": str(latest), "start": _monday_before(str(latest), trend_weeks)}
    weeks: dict[str, dict[str, Any]] = {}
    for week, tickets, f50, f90, r50, r90, reopen, auto in store.query(_TICKET_WEEKS, period):
        weeks.setdefault(week, {}).update(
            tickets=int(tickets),
            first_response_p50=_number(f50),
            first_response_p90=_number(f90),
            resolution_p50=_number(r50),
            resolution_p90=_number(r90),
            reopen_rate=_number(reopen),
            automatic_dispatch=_number(auto),
        )
    for week, count, share in store.query(_FEEDBACK_WEEKS, {**period, "hours": ack_days * 24.0}):
        weeks.setdefault(week, {}).update(feedback=int(count), acknowledged_in_time=_number(share))
    for week, automated, cases in store.query(_CASES_WEEKS, period):
        weeks.setdefault(week, {}).update(automated=int(automated), cases=int(cases))
    figures = [WeekFigures(week, **values) for week, values in sorted(weeks.items())]
    latest_week = {"week": str(latest), "hours": ack_days * 24.0}
    points = [
        (point, int(tickets), *(_number(value) for value in rest))
        for point, tickets, *rest in store.query(
            "SELECT service_point_id, tickets, automatic_share, first_response_p50_hours,"
            " first_response_p90_hours, resolution_p50_hours, resolution_p90_hours, reopen_rate"
            " FROM department_weekly_tickets WHERE week = toDate({week:String}) ORDER BY service_point_id",
            latest_week,
        )
    ]
    teams = [
        (team, int(count), _number(share), _number(p50))
        for team, count, share, p50 in store.query(
            "SELECT team, count(),"
            " countIf(acknowledged AND first_response_hours <= {hours:Float64}) / count(),"
            " quantileExactIf(0.5)(first_response_hours, acknowledged) FROM feedback_response"
            " WHERE week = toDate({week:String}) GROUP BY team ORDER BY team",
            latest_week,
        )
    ]
    kinds = [
        (kind, int(automated), int(cases))
        for kind, automated, cases in store.query(
            "SELECT kind, sum(automated), sum(cases) FROM automation_share WHERE week = toDate({week:String})"
            " GROUP BY kind ORDER BY kind",
            latest_week,
        )
    ]
    return DepartmentReport(figures, points, teams, kinds, ack_days)


def _monday_before(monday: str, weeks: int) -> str:
    """The ISO date ``weeks`` weeks before ``monday``.

    >>> _monday_before("2026-11-30", 4)
    '2026-11-02'
    """
    return (date.fromisoformat(monday) - timedelta(weeks=weeks)).isoformat()
