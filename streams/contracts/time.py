"""Time on the wire: epoch seconds inside Forewarn, ISO 8601 UTC with milliseconds or epoch
milliseconds in the contracts.

>>> iso_time(1764000000.5)
'2025-11-24T16:00:00.500Z'
>>> iso_millis("2025-11-24T16:00:00.500Z"), to_millis(1764000000.5)
(1764000000500, 1764000000500)
"""

from __future__ import annotations

from datetime import UTC, datetime

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0


def seconds_of_day(local: datetime) -> float:
    """Seconds since midnight of ``local``'s own clock (wall-clock time in its time zone).

    >>> seconds_of_day(datetime(2026, 11, 24, 7, 30, 15, 500000))
    27015.5
    """
    return local.hour * HOUR + local.minute * MINUTE + local.second + local.microsecond / 1e6


def to_millis(seconds: float) -> int:
    """Epoch seconds to integer epoch milliseconds."""
    return round(seconds * 1000)


def iso_time(seconds: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds, the contracts' time format."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_millis(iso: str) -> int:
    """An ISO 8601 time of the contracts (as :func:`iso_time` writes) to epoch milliseconds."""
    return round(datetime.fromisoformat(iso).timestamp() * 1000)
