"""The latest FAQ forecast of a product, read from ClickHouse (``launch_faq_latest``, made by
``sinks/schema/0010_launch_faq.sql`` over ``launch_faq_forecast``), and its rendering for
``forewarn faq --product ID``.

:func:`latest_forecast` reads one product's rows (one per age bucket and topic, :mod:`models.launch_faq`
via ``sinks.rows.launch_faq_rows``); :func:`format_forecast` prints them per bucket:

>>> from datetime import UTC, datetime
>>> made = datetime(2026, 3, 1, tzinfo=UTC)
>>> launched = datetime(2026, 3, 10, 9, tzinfo=UTC)
>>> rows = [
...     ForecastRow(made, "phone-aster-4", "phones", launched, 1.0, "0-1", 0, 1, "setup", 0.41, 20.5,
...                 ["how do i set up the aster 3"], ["phone-aster-2", "phone-aster-3"], 50.0, ""),
...     ForecastRow(made, "phone-aster-4", "phones", launched, 1.0, "1-3", 1, 0, "", 0.0, 0.0, [], [], 0.0,
...                 "no_questions"),
... ]
>>> print(format_forecast(rows))
FAQ forecast for phone-aster-4 (phones), launch 2026-03-10 09:00 UTC, made 2026-03-01 00:00 UTC
expected volume x1 of the earlier launches
<BLANKLINE>
days 0-1: about 50 questions, from phone-aster-2, phone-aster-3
  1. setup                      20.5 (41%)  e.g. "how do i set up the aster 3"
days 1-3: no forecast (no_questions)
>>> print(format_forecast([]))
no FAQ forecast stored for this product (one is made from faq_ahead_days before its launch)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

COLUMNS = (
    "made_at",
    "product_id",
    "category",
    "launched_at",
    "volume",
    "bucket",
    "bucket_index",
    "rank",
    "topic",
    "share",
    "expected_count",
    "examples",
    "based_on",
    "bucket_questions",
    "reason",
)


@dataclass(frozen=True, slots=True)
class ForecastRow:
    """One row of ``launch_faq_latest``: a topic of a bucket (rank 0: the bucket has none, see reason)."""

    made_at: datetime
    product_id: str
    category: str
    launched_at: datetime
    volume: float
    bucket: str
    bucket_index: int
    rank: int
    topic: str
    share: float
    expected_count: float
    examples: list[str]
    based_on: list[str]
    bucket_questions: float
    reason: str


def latest_forecast(store: Any, product_id: str) -> list[ForecastRow]:
    """The rows of ``product_id``'s latest forecast, by bucket and rank (empty: none stored), read
    through a :class:`sinks.clickhouse.ClickHouseStore`."""
    rows = store.query(
        f"SELECT {', '.join(COLUMNS)} FROM launch_faq_latest WHERE product_id = {{product:String}}"
        " ORDER BY bucket_index, rank",
        {"product": product_id},
    )
    return [ForecastRow(*row) for row in rows]


def _when(value: datetime) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC"


def format_forecast(rows: Sequence[ForecastRow]) -> str:
    """The forecast per bucket: its topics with expected count, share and an example question."""
    if not rows:
        return "no FAQ forecast stored for this product (one is made from faq_ahead_days before its launch)"
    first = rows[0]
    lines = [
        f"FAQ forecast for {first.product_id} ({first.category}), launch {_when(first.launched_at)},"
        f" made {_when(first.made_at)}",
        f"expected volume x{first.volume:g} of the earlier launches",
        "",
    ]
    bucket = None
    for row in rows:
        if row.bucket != bucket:
            bucket = row.bucket
            if row.rank == 0:
                lines.append(f"days {row.bucket}: no forecast ({row.reason})")
                continue
            few = f" [{row.reason}]" if row.reason else ""
            lines.append(
                f"days {row.bucket}: about {row.bucket_questions:.0f} questions, from"
                f" {', '.join(row.based_on)}{few}"
            )
        example = f'  e.g. "{row.examples[0]}"' if row.examples else ""
        lines.append(f"  {row.rank}. {row.topic:<24s} {row.expected_count:6.1f} ({row.share:.0%}){example}")
    return "\n".join(lines)
