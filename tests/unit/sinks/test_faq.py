"""``forewarn faq --product ID``: the latest FAQ forecast of a product, read from ClickHouse and printed
per age bucket (sinks.faq, streams.tools.cli)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from models.launch_faq import forecast
from models.surge import LaunchProfile, ProductInfo
from sinks.clickhouse import ClickHouseStore
from sinks.faq import latest_forecast
from sinks.rows import LAUNCH_FAQ_FORECAST
from streams.processes.catalog import load_catalog
from streams.tools.cli import main

DAY = 86400.0


def store_forecasts(dsn: str) -> None:
    catalog = load_catalog()
    products = [
        catalog.product(p) for p in ("headphones-echo-1", "headphones-echo-buds", "headphones-echo-2")
    ]
    launches = [ProductInfo(p.product_id, p.category, p.launched_at) for p in products]
    buckets = [{"pairing": 30.0, "fit": 10.0}, {"fit": 25.0}, {}, {}, {}]
    profiles = {
        launches[0].product_id: LaunchProfile(
            launches[0].launched_at, buckets, [40.0, 25.0, 0.0, 0.0, 0.0], {"pairing": ["how do i pair"]}
        )
    }
    held = launches[2]
    rows = []
    # Two forecasts of echo-2 (the later one counts twice as many: expected_volume 2) and one of
    # echo-buds, whose only earlier launch has its profile too.
    made = [
        forecast(held, launches, profiles, held.launched_at - 3 * DAY),
        forecast(held, launches, profiles, held.launched_at - 2 * DAY, volume=2.0),
        forecast(launches[1], launches, profiles, launches[1].launched_at - DAY),
    ]
    for offset, item in enumerate(made):
        rows += LAUNCH_FAQ_FORECAST.to_rows(orjson.dumps(item.to_wire(0.0)), [], 0, offset)[0]
    store = ClickHouseStore(dsn)
    try:
        store.apply_schema()
        store.insert(LAUNCH_FAQ_FORECAST.table, LAUNCH_FAQ_FORECAST.columns, rows, token="faq-cli-test")
        latest = latest_forecast(store, "headphones-echo-2")
        assert {row.made_at.timestamp() for row in latest} == {held.launched_at - 2 * DAY}
        assert [(row.bucket, row.rank, row.topic, row.expected_count) for row in latest[:3]] == [
            ("0-1", 1, "pairing", 60.0), ("0-1", 2, "fit", 20.0), ("1-3", 1, "fit", 50.0)
        ]  # fmt: skip
        assert latest_forecast(store, "phone-aster-4") == []
    finally:
        store.close()


def test_forewarn_faq_prints_the_latest_forecast_per_bucket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dsn = f"chdb://{tmp_path / 'ch'}"
    store_forecasts(dsn)
    monkeypatch.setenv("FOREWARN_CLICKHOUSE_DSN", dsn)
    assert main(["faq", "--product", "headphones-echo-2"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[:6] == [
        "FAQ forecast for headphones-echo-2 (headphones), launch 2026-01-27 11:00 UTC,"
        " made 2026-01-25 11:00 UTC",
        "expected volume x2 of the earlier launches",
        "",
        "days 0-1: about 80 questions, from headphones-echo-1",
        '  1. pairing                    60.0 (75%)  e.g. "how do i pair"',
        "  2. fit                        20.0 (25%)",
    ]
    assert "days 3-7: no forecast (no_questions)" in printed
    assert main(["faq", "--product", "phone-aster-4"]) == 1
    assert "no FAQ forecast stored" in capsys.readouterr().out
