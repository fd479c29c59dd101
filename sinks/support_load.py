"""The support-load forecast read back from ClickHouse (``support_load_forecast``, ``support_load_actual``):
the latest forecast per channel by hour, for ``forewarn forecast``, and a forecast made ahead of a
slot against what came, for the demo.

:func:`hourly` sums the latest forecast's 15-minute slots into hours and sets the agents each hour
needs against the agents on shift; :func:`format_forecast` prints them.

>>> slots = [("chat", 1_764_579_600_000 + k * 900_000, 7.0, 2, 6.0) for k in range(8)]
>>> print(format_forecast(hourly(slots)))
chat (6 contacts per agent per hour)
| hour (UTC) | contacts | agents needed | on shift | |
| --- | ---: | ---: | ---: | --- |
| 2025-12-01 09:00 | 28.0 | 5 | 2 | short 3 |
| 2025-12-01 10:00 | 28.0 | 5 | 2 | short 3 |
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from streams.processes.support_load import agents_needed

HOUR_MS = 3_600_000
SLOT_MS = 900_000


@dataclass(frozen=True, slots=True)
class HourPlan:
    """One channel's forecast for one hour: contacts, agents needed and on shift."""

    channel: str
    hour: int  # epoch ms of the hour's start (UTC)
    contacts: float
    agents_needed: int
    agents_on_shift: int
    contacts_per_agent_hour: float

    @property
    def status(self) -> str:
        """``short N`` (agents missing), ``idle N`` (agents more than needed) or ``ok``."""
        gap = self.agents_needed - self.agents_on_shift
        return f"short {gap}" if gap > 0 else f"idle {-gap}" if gap < 0 else "ok"


def latest_forecast(store: Any, channel: str | None = None) -> list[tuple[Any, ...]]:
    """The latest forecast of each channel (or of ``channel``): rows of (channel, slot start in epoch
    ms, forecast, agents on shift, contacts per agent per hour), by channel and slot."""
    where = "" if channel is None else " WHERE channel = {channel:String}"
    return store.query(
        "SELECT channel, toUnixTimestamp64Milli(slot_start), any(forecast), any(agents_on_shift),"
        " any(contacts_per_agent_hour) FROM support_load_forecast"
        " WHERE (channel, made_at) IN (SELECT channel, max(made_at) FROM support_load_forecast"
        + where
        + " GROUP BY channel) GROUP BY channel, slot_start ORDER BY channel, slot_start",
        {"channel": channel or ""},
    )


def hourly(rows: Sequence[tuple[Any, ...]]) -> list[HourPlan]:
    """The slots of :func:`latest_forecast` as whole hours (an hour only partly covered by the
    forecast, at either end, is left out): contacts summed, ``ceil(contacts / contacts per agent per
    hour)`` agents needed, the most agents on shift in any of its slots (the policy sets them per hour)."""
    slots: dict[tuple[str, int], list[tuple[float, int, float]]] = {}
    for channel, start, forecast, on_shift, per_agent in rows:
        hour = int(start) // HOUR_MS * HOUR_MS
        slots.setdefault((channel, hour), []).append((float(forecast), int(on_shift), float(per_agent)))
    plans = []
    for (channel, hour), values in sorted(slots.items()):
        if len(values) < HOUR_MS // SLOT_MS:
            continue
        contacts = sum(value[0] for value in values)
        per_agent = values[0][2]
        plans.append(
            HourPlan(
                channel,
                hour,
                contacts,
                agents_needed(contacts, per_agent),
                max(value[1] for value in values),
                per_agent,
            )
        )
    return plans


def format_forecast(plans: Sequence[HourPlan]) -> str:
    """A table per channel of its hours (``forewarn forecast``)."""
    if not plans:
        return "no forecast yet (support_load_forecast is empty: no contacts counted, or no slot closed)"
    lines: list[str] = []
    channel = None
    for plan in plans:
        if plan.channel != channel:
            channel = plan.channel
            if lines:
                lines.append("")
            lines += [
                f"{channel} ({plan.contacts_per_agent_hour:g} contacts per agent per hour)",
                "| hour (UTC) | contacts | agents needed | on shift | |",
                "| --- | ---: | ---: | ---: | --- |",
            ]
        hour = datetime.fromtimestamp(plan.hour / 1000, UTC).strftime("%Y-%m-%d %H:%M")
        needed, on_shift = plan.agents_needed, plan.agents_on_shift
        lines.append(f"| {hour} | {plan.contacts:.1f} | {needed} | {on_shift} | {plan.status} |")
    return "\n".join(lines)


def forecast_against_actual(
    store: Any, channel: str, slot_start_ms: int, ahead_minutes: int
) -> tuple[float, int, float] | None:
    """The forecast of ``channel``'s slot made at least ``ahead_minutes`` before it starts (the latest
    such), its horizon in minutes, and the contacts counted in the slot; None when either is missing."""
    rows = store.query(
        "SELECT argMin(forecast, horizon_minutes), min(horizon_minutes), count() FROM support_load_forecast"
        " WHERE channel = {channel:String} AND toUnixTimestamp64Milli(slot_start) = {slot:Int64}"
        " AND horizon_minutes >= {ahead:UInt16}",
        {"channel": channel, "slot": slot_start_ms, "ahead": ahead_minutes},
    )
    actual = store.query(
        "SELECT any(contacts), count() FROM support_load_actual WHERE channel = {channel:String}"
        " AND toUnixTimestamp64Milli(slot_start) = {slot:Int64}",
        {"channel": channel, "slot": slot_start_ms},
    )
    if not rows or not rows[0][2] or not actual or not actual[0][1]:
        return None
    return float(rows[0][0]), int(rows[0][1]), float(actual[0][0])
