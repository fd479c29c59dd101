"""Preferences (``preferences`` source): what a user sets in the preference centre before their first
session, for ``preferences_share`` of the new users: a time zone, and for some an opt-out of proactive
contact or e-mail turned off.

>>> import random
>>> from streams.tools.traffic.profile import TrafficProfile
>>> from streams.tools.traffic.schedule import Schedule
>>> schedule = Schedule(TrafficProfile(opt_out_share=1.0), seed=1, random=random.Random(1))
>>> update_preferences(schedule, 0.0, "u00001")
>>> [message] = schedule.due(0.0)
>>> message.topic, b'"opt_out":true' in message.value, schedule.stats.preferences
('preferences', True, 1)
"""

from __future__ import annotations

from streams.contracts.events import PREFERENCES
from streams.tools.traffic.schedule import Schedule

TIMEZONES = (
    "UTC",
    "Europe/London",
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Australia/Sydney",
)


def update_preferences(schedule: Schedule, time: float, user: str) -> None:
    """Send ``user``'s preferences at ``time`` (drawn from the schedule's behaviour stream)."""
    rng, profile = schedule.random, schedule.profile
    fields: dict[str, object] = {"timezone": rng.choice(TIMEZONES)}
    if rng.random() < profile.opt_out_share:
        fields["opt_out"] = True
    if rng.random() < profile.no_email_share:
        fields["channels"] = {"email": False}
    schedule.send(PREFERENCES, time, "preferences_updated", user, **fields)
    schedule.stats.preferences += 1
