"""Support load: contacts per 15-minute slot of one channel, forecast online with daily and weekly
seasonality and the known calendar (campaigns, launches).

:class:`LoadForecaster` is a multiplicative double-seasonal exponential smoothing model (Holt-Winters
with two seasons, level * slot of the day * day of the week) times a calendar factor:

    expected(t) = level * daily[slot of day(t)] * weekly[day of week(t)] * campaign(t) * launch(t)

``campaign(t)`` is ``1 + uplift`` while a campaign of the channel runs: the uplift the campaign stated,
else the uplift learned from earlier campaigns' slots (``campaign_uplift``, which starts at
:data:`CAMPAIGN_PRIOR`); ``launch(t)`` is ``1 + launch_uplift * weight``, ``weight`` the calendar's launch
weight (1 on launch day, decaying). :meth:`LoadForecaster.learn_one` takes one closed slot's count;
the seasonal parts learn from the count with the calendar taken out, the uplifts from what the seasonal
parts leave unexplained. Daily and weekly factors are kept at a mean of 1, their scale in ``level``
(contacts per slot). Times are UTC: the seasons are UTC's slots and days.

Everything is plain numbers and lists: :meth:`LoadForecaster.to_dict` is JSON, for a Faust table.
Measured against seasonal-naive and a moving average by ``benchmarks/support_load.py``
(docs/benchmarks.md).

>>> WEEK = 7 * 86400
>>> model = LoadForecaster()
>>> start = 1_764_547_200.0  # a Monday 00:00 UTC
>>> for k in range(3 * WEEK // 900):  # three weeks: busy 08:00-20:00, quiet at night
...     t = start + k * 900
...     busy = 8 <= (t % 86400) / 3600 < 20
...     model.learn_one(t, 12.0 if busy else 2.0)
>>> now = start + 3 * WEEK
>>> [round(x, 1) for x in model.forecast([now + 3 * 3600, now + 12 * 3600])]
[2.0, 12.2]
>>> campaign = Calendar(campaign=True, stated_uplift=0.5)
>>> round(model.forecast([now + 12 * 3600], [campaign])[0], 1)
18.4
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

SLOT_SECONDS = 900.0  # 15 minutes
SLOTS_PER_DAY = 96
DAY_SECONDS = 86400.0
DAYS_PER_WEEK = 7
WEEK_SLOTS = SLOTS_PER_DAY * DAYS_PER_WEEK
MONDAY_EPOCH_OFFSET = 3  # 1970-01-01 was a Thursday: day 0 of the epoch is weekday 3 (Monday = 0)
CAMPAIGN_PRIOR = 0.25  # the uplift of a campaign that states none, before any campaign was seen
MIN_SCALE = 0.25  # contacts per slot: the level the updates are scaled by, at least (a quiet start)
MAX_UPLIFT = 10.0  # uplifts are kept within [-0.9, MAX_UPLIFT]: one odd slot must not blow them up


@dataclass(frozen=True, slots=True)
class Calendar:
    """What the calendar says about one slot of a channel.

    ``campaign``: a campaign on the channel runs in the slot; ``stated_uplift``: the largest uplift
    the running campaigns stated (None: none stated, the learned uplift is used); ``launch``: the
    launch weight, 1.0 on a launch's day and decaying with its age (0.0: no recent launch).
    """

    campaign: bool = False
    stated_uplift: float | None = None
    launch: float = 0.0


QUIET = Calendar()


def slot_of_day(t: float) -> int:
    """The 15-minute slot of the UTC day ``t`` (epoch seconds) falls in, 0-95."""
    return int((t % DAY_SECONDS) // SLOT_SECONDS)


def day_of_week(t: float) -> int:
    """The UTC weekday of ``t``, Monday 0 to Sunday 6."""
    return (int(t // DAY_SECONDS) + MONDAY_EPOCH_OFFSET) % DAYS_PER_WEEK


@dataclass(slots=True)
class LoadForecaster:
    """Online forecaster of one channel's contacts per slot (see the module).

    ``alpha``: how fast the level follows; ``gamma_daily``: the slot-of-day factors (each learns once a
    day); ``gamma_weekly``: the weekday factors (each learns every slot of its day); ``eta``: the
    uplifts. The learned state is the remaining fields.
    """

    alpha: float = 0.002
    gamma_daily: float = 0.15
    gamma_weekly: float = 0.01
    eta: float = 0.05
    level: float = 0.0  # contacts per slot, calendar and seasons taken out
    daily: list[float] = field(default_factory=lambda: [1.0] * SLOTS_PER_DAY)
    weekly: list[float] = field(default_factory=lambda: [1.0] * DAYS_PER_WEEK)
    campaign_uplift: float = CAMPAIGN_PRIOR
    launch_uplift: float = 0.0
    learned: int = 0  # slots learned
    campaign_slots: int = 0  # slots learned while a campaign that stated no uplift ran
    # Per weekday, the sum of the squared daily factors of its slots learned: until it is large, the
    # weekday's factor is a (weighted) running mean of what it saw rather than a smoothed one.
    weekly_weight: list[float] = field(default_factory=lambda: [0.0] * DAYS_PER_WEEK)

    def seasonal(self, t: float) -> float:
        """The expected contacts of the slot at ``t`` without the calendar."""
        return self.level * self.daily[slot_of_day(t)] * self.weekly[day_of_week(t)]

    def _factors(self, x: Calendar) -> tuple[float, float]:
        campaign = 1.0
        if x.campaign:
            campaign += self.campaign_uplift if x.stated_uplift is None else x.stated_uplift
        return campaign, 1.0 + self.launch_uplift * x.launch

    def predict_one(self, t: float, x: Calendar = QUIET) -> float:
        """The expected contacts of the slot starting at ``t`` (epoch seconds), under calendar ``x``."""
        campaign, launch = self._factors(x)
        return max(0.0, self.seasonal(t) * campaign * launch)

    def forecast(self, starts: Sequence[float], calendars: Sequence[Calendar] | None = None) -> list[float]:
        """The expected contacts of the slots starting at ``starts``, each under its calendar."""
        if calendars is None:
            return [self.predict_one(t) for t in starts]
        return [self.predict_one(t, x) for t, x in zip(starts, calendars, strict=True)]

    def learn_one(self, t: float, y: float, x: Calendar = QUIET) -> None:
        """Learn that the slot starting at ``t`` had ``y`` contacts under calendar ``x``."""
        campaign, launch = self._factors(x)
        if self.learned == 0:
            self.level = y / (campaign * launch)
        self.learned += 1
        s, d = slot_of_day(t), day_of_week(t)
        daily, weekly = self.daily[s], self.weekly[d]
        base = self.level * daily * weekly
        scale = max(self.level, MIN_SCALE)
        # The uplifts, from what the seasons leave unexplained (in contacts, scaled by the level, so a
        # quiet night slot weighs as little as it tells).
        if x.campaign and x.stated_uplift is None:
            # A running mean over the first campaign slots (a campaign is rare: a few dozen slots).
            self.campaign_slots += 1
            rate = max(self.eta, 1.0 / (1 + self.campaign_slots))
            error = y - base * campaign * launch
            self.campaign_uplift = _bounded(self.campaign_uplift + rate * error / scale)
            campaign = 1.0 + self.campaign_uplift
        if x.launch > 0.0:
            error = y - base * campaign * launch
            self.launch_uplift = _bounded(self.launch_uplift + self.eta * x.launch * error / scale)
            launch = 1.0 + self.launch_uplift * x.launch
        # The seasons and the level, from the count with the calendar taken out. Each starts as a
        # running mean of what it saw (rate 1/n) and smooths at its own rate once it has seen enough.
        plain = y / (campaign * launch)
        error = plain - base
        self.level = max(0.0, self.level + max(self.alpha, 1.0 / self.learned) * error)
        daily_rate = max(self.gamma_daily, 1.0 / (1 + (self.learned - 1) // SLOTS_PER_DAY))
        self.daily[s] = max(0.0, daily + daily_rate * error / (scale * weekly if weekly > 0 else scale))
        # A weekday's factor from its slots weighted by their daily factor (a quiet night slot's ratio
        # to the level says little about the weekday), from the second week on: in the first, each
        # weekday is seen once, while the level is still a running mean, and would take its errors.
        if self.learned > WEEK_SLOTS:
            self.weekly_weight[d] += daily * daily
            weekly_rate = max(self.gamma_weekly, 1.0 / max(self.weekly_weight[d], 1.0))
            self.weekly[d] = max(0.0, weekly + weekly_rate * error * daily / scale)
        # Mean 1 for each season, their scale moved into the level (the forecast is unchanged).
        self.level *= _normalise(self.daily) * _normalise(self.weekly)

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "gamma_daily": self.gamma_daily,
            "gamma_weekly": self.gamma_weekly,
            "eta": self.eta,
            "level": self.level,
            "daily": list(self.daily),
            "weekly": list(self.weekly),
            "campaign_uplift": self.campaign_uplift,
            "launch_uplift": self.launch_uplift,
            "learned": self.learned,
            "campaign_slots": self.campaign_slots,
            "weekly_weight": list(self.weekly_weight),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadForecaster:
        model = cls(**data)
        if (len(model.daily), len(model.weekly), len(model.weekly_weight)) != (96, 7, 7):
            raise ValueError("a load forecaster has 96 daily and 7 weekly factors")
        return model


def _bounded(uplift: float) -> float:
    return min(MAX_UPLIFT, max(-0.9, uplift))


def _normalise(factors: list[float]) -> float:
    """Scale ``factors`` to a mean of 1 (all zero: back to 1); returns the mean they had."""
    mean = sum(factors) / len(factors)
    if mean <= 0.0:
        factors[:] = [1.0] * len(factors)
        return 1.0
    if abs(mean - 1.0) > 1e-12:
        for index, value in enumerate(factors):
            factors[index] = value / mean
    return mean
