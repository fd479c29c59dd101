"""Checks shared by every contract that reads names and time zones: events, the policy, service points.

>>> bool(IDENTIFIER.match("payment_dwell")), bool(IDENTIFIER.match("Payment"))
(True, False)
>>> check_timezone("Asia/Shanghai"), check_timezone("Mars/Olympus")
(True, False)
"""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# A name in the policy and on the wire (triggers, channels, arms): lower-case, digits and _.
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def check_timezone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone this machine knows."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
