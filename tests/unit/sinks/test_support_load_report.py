"""``forewarn forecast``: the latest forecast summed into hours, agents needed against on shift, and the
sink's rows of a forecast record (no ClickHouse needed)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from sinks.clickhouse import ClickHouseStore
from sinks.rows import SUPPORT_LOAD_ACTUAL, SUPPORT_LOAD_FORECAST, support_load_rows
from sinks.support_load import format_forecast, hourly, latest_forecast
from streams.processes.support_load import ChannelForecast, SlotActual, SlotForecast
from streams.tools.cli import main

HOUR_MS = 3_600_000
START = 1_764_579_600_000  # 2025-12-01 09:00 UTC


def slot(channel: str, k: int, forecast: float, on_shift: int) -> tuple:
    return (channel, START + k * 900_000, forecast, on_shift, 6.0)


def test_hours_sum_their_slots_and_partial_hours_are_left_out() -> None:
    rows = [slot("chat", k, 3.0, 2) for k in range(1, 9)] + [slot("email", k, 1.0, 1) for k in range(4)]
    plans = hourly(rows)
    # chat: slots 1-8 cover 09:15-11:00: only 10:00-11:00 is whole.
    assert [(p.channel, p.hour - START, p.contacts, p.agents_needed) for p in plans] == [
        ("chat", HOUR_MS, 12.0, 2),
        ("email", 0, 4.0, 1),
    ]
    assert [p.status for p in plans] == ["ok", "ok"]


def test_short_and_idle_hours_are_flagged() -> None:
    plans = hourly(
        [slot("phone", k, 9.0, 3) for k in range(4)] + [slot("phone", k, 0.5, 3) for k in range(4, 8)]
    )
    assert [p.status for p in plans] == ["short 3", "idle 2"]
    text = format_forecast(plans)
    assert text.splitlines()[0] == "phone (6 contacts per agent per hour)"
    assert "| 2025-12-01 09:00 | 36.0 | 6 | 3 | short 3 |" in text
    assert "| 2025-12-01 10:00 | 2.0 | 1 | 3 | idle 2 |" in text
    assert format_forecast([]).startswith("no forecast yet")


def test_the_query_names_the_channel_only_when_asked() -> None:
    asked = []

    class Store:
        def query(self, sql: str, parameters: dict) -> list:
            asked.append((sql, parameters))
            return []

    latest_forecast(Store())
    latest_forecast(Store(), "chat")
    assert "{channel:String}" not in asked[0][0] and "{channel:String}" in asked[1][0]
    assert asked[1][1] == {"channel": "chat"}


def test_a_forecast_record_is_a_row_per_slot() -> None:
    forecast = ChannelForecast(
        1_764_579_600.0, "chat", 6.0, [SlotForecast(1_764_579_600.0 + 900 * k, 2.5, 2, 3) for k in (1, 2)]
    )
    rows, unreadable = support_load_rows(orjson.dumps(forecast.to_wire()), [], 0, 7)
    assert unreadable == [] and len(rows) == 2
    assert rows[0] == (START, "chat", START + 900_000, 15, 2.5, 2, 3, 6.0, 0, 7)
    assert SUPPORT_LOAD_FORECAST.row_id(rows[1]) == f"{START}:chat:{START + 1_800_000}"
    assert SUPPORT_LOAD_FORECAST.user_index is None and SUPPORT_LOAD_ACTUAL.user_index is None
    actual = orjson.dumps(SlotActual(1_764_579_600.0, "phone", 4).to_wire(1_764_580_000.0))
    assert SUPPORT_LOAD_ACTUAL.to_row(actual, [], 1, 3)[:3] == (START, "phone", 4)


def test_forewarn_forecast_prints_the_latest_forecast_by_hour_and_fails_when_there_is_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dsn = f"chdb://{tmp_path / 'ch'}"
    monkeypatch.setenv("FOREWARN_CLICKHOUSE_DSN", dsn)
    assert main(["forecast"]) == 1
    assert capsys.readouterr().out.startswith("no forecast yet")
    made = START / 1000 - 900
    older = ChannelForecast(
        made - 900, "chat", 6.0, [SlotForecast(made + 900 * k, 1.0, 1, 1) for k in range(1, 5)]
    )
    latest = ChannelForecast(
        made, "chat", 6.0, [SlotForecast(made + 900 * k, 4.5, 3, 2) for k in range(1, 9)]
    )
    rows = [
        row
        for offset, forecast in enumerate((older, latest))
        for row in support_load_rows(orjson.dumps(forecast.to_wire()), [], 0, offset)[0]
    ]
    store = ClickHouseStore(dsn)
    try:
        store.apply_schema()
        store.insert(SUPPORT_LOAD_FORECAST.table, SUPPORT_LOAD_FORECAST.columns, rows, token="forecast-cli")
    finally:
        store.close()
    assert main(["forecast", "--channel", "chat"]) == 0
    printed = capsys.readouterr().out
    # The latest forecast only (18 contacts an hour, 3 agents needed against 2): two whole hours.
    assert "| 2025-12-01 09:00 | 18.0 | 3 | 2 | short 1 |" in printed
    assert "| 2025-12-01 10:00 | 18.0 | 3 | 2 | short 1 |" in printed
    assert "| 1.0 |" not in printed and "| 4.0 |" not in printed
    assert main(["forecast", "--channel", "email"]) == 1
