"""A user's activity, time-decayed over a short and a baseline horizon, and when it falls below a
fraction of its own baseline.

Each visit (a new session) adds 1 to two exponentially decayed counts, with time constants ``short``
(default 7 days) and ``baseline`` (28 days): ``S(t) = sum exp(-(t - t_i) / short)`` and likewise ``B``.
``S / short`` and ``B / baseline`` are visit rates over about the last week and the last four weeks.
Activity has *declined* when ``S / short < ratio * B / baseline``. While the user is silent both decay
and the short one faster, so the moment of decline has a closed form (:meth:`Activity.decline_at`):
a timer can fire at it even if the user never comes back.

>>> day = 86400.0
>>> activity = Activity()
>>> for visit in range(20):  # a visit every other day for 40 days
...     activity.learn_one(visit * 2 * day)
>>> [round(rate * day, 2) for rate in activity.rates(38 * day)]  # visits per day: last week, last 4
[0.57, 0.39]
>>> when = activity.decline_at(ratio=0.5, short=7 * day, baseline=28 * day)
>>> round((when - 38 * day) / day, 1)  # days of silence after the last visit
10.0
>>> short, base = activity.rates(when)
>>> abs(short - 0.5 * base) < 1e-12
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from streams.contracts.time import DAY

SHORT = 7 * DAY
BASELINE = 28 * DAY


@dataclass
class Activity:
    short: float = 0.0  # decayed visit count, time constant SHORT, as of ``at``
    base: float = 0.0  # decayed visit count, time constant BASELINE, as of ``at``
    at: float = 0.0
    first: float | None = None  # the first visit seen

    def _decayed(self, now: float, short: float, baseline: float) -> tuple[float, float]:
        elapsed = max(0.0, now - self.at)
        return self.short * math.exp(-elapsed / short), self.base * math.exp(-elapsed / baseline)

    def learn_one(self, time: float, short: float = SHORT, baseline: float = BASELINE) -> None:
        """One visit at ``time``. A visit older than the counts' time is added decayed to that time."""
        if self.first is None:
            self.first = time
        if time >= self.at:
            self.short, self.base = self._decayed(time, short, baseline)
            self.short, self.base, self.at = self.short + 1.0, self.base + 1.0, time
        else:  # late: its weight as of ``at``
            self.short += math.exp(-(self.at - time) / short)
            self.base += math.exp(-(self.at - time) / baseline)
        self.first = min(self.first, time)

    def rates(self, now: float, short: float = SHORT, baseline: float = BASELINE) -> tuple[float, float]:
        """Visits per second over about the last ``short`` and the last ``baseline``."""
        s, b = self._decayed(now, short, baseline)
        return s / short, b / baseline

    def decline_at(
        self, ratio: float, short: float = SHORT, baseline: float = BASELINE, min_visits: float = 0.0
    ) -> float | None:
        """When, with no further visit, the short rate falls below ``ratio`` times the baseline rate.

        None when there is no baseline yet: fewer than ``min_visits`` (decayed) in the baseline count
        at the last visit, or less than one baseline horizon since the first visit by then.
        """
        if self.first is None or self.base < min_visits or ratio <= 0.0:
            return None
        # short-rate / base-rate = (S / short) / (B / baseline) * exp(-d * (1/short - 1/baseline))
        now_ratio = (self.short / short) / (self.base / baseline)
        speed = 1.0 / short - 1.0 / baseline
        delay = max(0.0, math.log(now_ratio / ratio) / speed)
        return max(self.at + delay, self.first + baseline)
