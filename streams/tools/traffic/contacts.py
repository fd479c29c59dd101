"""Support contacts per channel with daily and weekly seasonality, planted campaigns that raise them,
and a launch: the traffic the support-load forecast (:mod:`streams.processes.support_load`) learns from.

:class:`ContactShape` is the ground truth, the rate of contacts per channel at any time:

    rate(channel, t) = per_hour[channel] * daily(hour of day) * weekly[weekday] * campaigns * launch

``daily`` is two bumps (late morning, mid afternoon) over a night floor; ``weekly`` runs from Monday's
1.2 down to Sunday's 0.5; a campaign multiplies its channels by ``1 + uplift`` while it runs; a launch
by ``1 + launch_uplift * exp(-age / 7 days)`` for 30 days. :class:`ContactTraffic` draws the contacts
(``support_contact`` events on ``clickstream``, with their ``channel``) as a Poisson process of that
rate, on a random stream of its own, and publishes each campaign on the ``campaigns`` topic
``announce`` seconds before it starts. ``benchmarks/support_load.py`` draws its series from the same
shape.

>>> shape = ContactShape(per_hour={"chat": 10.0})
>>> monday_11h = 1_764_547_200.0 + 11 * 3600
>>> [round(shape.rate("chat", t) * 3600, 1) for t in (monday_11h, monday_11h + 16 * 3600)]
[13.8, 1.3]
>>> campaign = PlantedCampaign("c1", "Winter sale", monday_11h, monday_11h + 3600, ("chat",), uplift=1.0)
>>> shape = ContactShape(per_hour={"chat": 10.0}, campaigns=(campaign,))
>>> round(shape.rate("chat", monday_11h) * 3600, 1)
27.6
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from streams.contracts.events import CLICKSTREAM
from streams.contracts.time import DAY, HOUR, iso_time

if TYPE_CHECKING:  # the schedule's module reads the profile, which reads this one
    from streams.tools.traffic.schedule import Schedule

CAMPAIGNS = "campaigns"  # the Outgoing topic of campaign announcements (traffic_topics maps it)
WEEKLY = (1.2, 1.1, 1.05, 1.0, 0.95, 0.6, 0.5)  # Monday .. Sunday
MONDAY_EPOCH_OFFSET = 3  # 1970-01-01 was a Thursday


def daily_profile(hour: float) -> float:
    """The relative contact rate at ``hour`` (0-24, UTC) of the day: a night floor and two bumps."""
    morning = math.exp(-(((hour - 11.0) / 2.2) ** 2))
    afternoon = 0.8 * math.exp(-(((hour - 15.5) / 2.5) ** 2))
    evening = 0.35 * math.exp(-(((hour - 20.0) / 1.5) ** 2))
    return 0.12 + morning + afternoon + evening


@dataclass(frozen=True, slots=True)
class PlantedCampaign:
    """A campaign of the traffic: it raises ``channels`` by ``1 + uplift`` from ``starts_at`` to
    ``ends_at``; published ``announce`` seconds before it starts (its message states the uplift only
    when ``stated``)."""

    campaign_id: str
    name: str
    starts_at: float
    ends_at: float
    channels: tuple[str, ...] = ()
    uplift: float = 1.0
    announce: float = DAY
    stated: bool = False

    def message(self) -> dict[str, object]:
        """Its message on the ``campaigns`` topic."""
        message: dict[str, object] = {
            "campaign_id": self.campaign_id,
            "name": self.name,
            "starts_at": iso_time(self.starts_at),
            "ends_at": iso_time(self.ends_at),
            "channels": list(self.channels),
        }
        if self.stated:
            message["expected_uplift"] = self.uplift
        return message


@dataclass(frozen=True, slots=True)
class ContactShape:
    """The true contact rate per channel (see the module); ``launches``: launch times, each raising every
    channel by ``launch_uplift`` on its day, decaying over a week."""

    per_hour: dict[str, float] = field(default_factory=lambda: {"chat": 16.0, "phone": 8.0, "email": 4.0})
    campaigns: tuple[PlantedCampaign, ...] = ()
    launches: tuple[float, ...] = ()
    launch_uplift: float = 0.8

    def rate(self, channel: str, t: float) -> float:
        """Contacts per second on ``channel`` at ``t`` (epoch seconds)."""
        weekday = (int(t // DAY) + MONDAY_EPOCH_OFFSET) % 7
        base = self.per_hour.get(channel, 0.0) / HOUR * daily_profile((t % DAY) / HOUR) * WEEKLY[weekday]
        for campaign in self.campaigns:
            if campaign.starts_at <= t < campaign.ends_at and (
                not campaign.channels or channel in campaign.channels
            ):
                base *= 1.0 + campaign.uplift
        for launched in self.launches:
            if 0.0 <= t - launched < 30 * DAY:
                base *= 1.0 + self.launch_uplift * math.exp(-(t - launched) / (7 * DAY))
        return base

    def peak_rate(self, channel: str) -> float:
        """An upper bound of :meth:`rate` (for drawing by thinning)."""
        bound = self.per_hour.get(channel, 0.0) / HOUR * 1.6 * max(WEEKLY) * (1.0 + self.launch_uplift)
        for campaign in self.campaigns:
            bound *= 1.0 + max(0.0, campaign.uplift)
        return bound


def contact_times(
    shape: ContactShape, channel: str, start: float, end: float, rng: random.Random
) -> list[float]:
    """The contacts of ``channel`` from ``start`` to ``end``, a Poisson process of ``shape``'s rate.

    >>> times = contact_times(ContactShape(), "chat", 0.0, 7 * DAY, random.Random(1))
    >>> 500 < len(times) < 1500, times == sorted(times)
    (True, True)
    """
    peak = shape.peak_rate(channel)
    if peak <= 0:
        return []
    times, t = [], start
    while True:
        t += rng.expovariate(peak)
        if t >= end:
            return times
        if rng.random() * peak < shape.rate(channel, t):
            times.append(t)


class ContactTraffic:
    """The contacts of ``shape`` and its campaigns' announcements, sent into a traffic ``schedule``
    (:class:`streams.tools.traffic.schedule.Schedule`) as its ``due`` is asked up to a time."""

    def __init__(self, schedule: Schedule | None, shape: ContactShape, seed: int) -> None:
        self.schedule = schedule
        self.shape = shape
        self.random = random.Random(f"{seed}:contacts")
        self._until: float | None = None
        self._announced: set[str] = set()
        self.sent: dict[str, int] = {}  # contacts sent per channel

    def due(self, start: float, now: float) -> None:
        """Send the contacts from where the last call ended (``start`` the first time) up to ``now``,
        and every campaign to be announced by ``now``."""
        begin = start if self._until is None else self._until
        if now <= begin:
            return
        schedule = self.schedule
        assert schedule is not None, "a ContactTraffic without a schedule only answers slot_truth"
        for campaign in self.shape.campaigns:
            announce_at = campaign.starts_at - campaign.announce
            if campaign.campaign_id not in self._announced and announce_at <= now:
                self._announced.add(campaign.campaign_id)
                at = max(begin, announce_at)
                schedule.push_process(CAMPAIGNS, campaign.campaign_id, at, campaign.message())
        for channel in self.shape.per_hour:
            for t in contact_times(self.shape, channel, begin, now, self.random):
                user = f"c{self.random.randrange(5000):05d}"
                schedule.send_process(
                    CLICKSTREAM, user, t, "support_contact", user, id_prefix="sc", channel=channel
                )
                self.sent[channel] = self.sent.get(channel, 0) + 1
        self._until = now

    def slot_truth(self, channel: str, slot_start: float, slot_seconds: float = 900.0) -> float:
        """The expected contacts of ``channel`` in the slot (the rate integrated, by the minute)."""
        step = slot_seconds / 15
        return sum(self.shape.rate(channel, slot_start + (i + 0.5) * step) * step for i in range(15))
