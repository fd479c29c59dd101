"""Checks shared by every contract that reads ids, numbers, names and time zones: events, stock,
the policy, the catalog and service points. Each caller says what is wrong in its own words (and
raises its own error); these say only whether a value is acceptable.

>>> is_id("u-1"), is_id(""), is_id("x" * 129), is_id("a" + chr(0)), is_id(7)
(True, False, False, False, False)
>>> is_number(2), is_number(2.5), is_number(True), is_number("2")
(True, True, False, False)
>>> bool(IDENTIFIER.match("payment_dwell")), bool(IDENTIFIER.match("Payment"))
(True, False)
>>> check_timezone("Asia/Shanghai"), check_timezone("Mars/Olympus")
(True, False)
"""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MAX_ID_LENGTH = 128  # of an id: a user, an event, a SKU, a product, a device category
MAX_TEXT_LENGTH = 1024  # of free text in an event

# A name in the policy and on the wire (triggers, channels, arms): lower-case, digits and _.
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def check_timezone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone this machine knows."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def is_id(value: Any) -> bool:
    """Whether ``value`` is an id: a string of 1 to :data:`MAX_ID_LENGTH` printable characters."""
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH and value.isprintable()


def is_number(value: Any) -> bool:
    """Whether ``value`` is a JSON number (possibly not finite): an int or a float, not a bool, though
    Python's bool is an int: true/false is not a number in any contract."""
    return isinstance(value, int | float) and not isinstance(value, bool)
