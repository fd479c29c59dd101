"""Online statistics for per-user features, in a form that is plain data.

Per-user state lives in a changelog-backed table as JSON (:mod:`streams.domain.state`), so the statistics a
user's features are made of are small dataclasses rather than River objects: River's ``EWMean`` is a
Rust object that only pickles, and a pickled per-user table would make every changelog record a
trust boundary. The arithmetic is River's own, and the doctests check it against River:

* :class:`MeanVar`: a running mean and sample variance, Welford's update as in ``river.stats.Var``;
* :class:`EWMean`: an exponentially weighted mean, as ``river.stats.EWMean``;
* :class:`DecayedCount`: a count that decays with event time (time constant ``tau`` seconds), so
  ``rate(now)`` is events per second over about the last ``tau``; River's ``EWMean`` decays per
  update, not per second, and a user's rate must fall while they are silent.

>>> from river import stats
>>> ours, river_var = MeanVar(), stats.Var()
>>> for x in [3.0, 1.0, 4.0, 1.0, 5.0]:
...     ours.update(x); river_var.update(x)
>>> ours.mean == river_var.mean.get(), abs(ours.variance - river_var.get()) < 1e-12
(True, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class MeanVar:
    """Running mean and sample variance (ddof=1), Welford's method as in ``river.stats.Var``.

    >>> stat = MeanVar()
    >>> for x in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]:
    ...     stat.update(x)
    >>> stat.n, stat.mean, round(stat.variance, 4)
    (8, 5.0, 4.5714)
    """

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0  # sum of squared differences from the mean

    def update(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    @property
    def variance(self) -> float:
        return self.m2 / (self.n - 1) if self.n > 1 else 0.0

    @property
    def std(self) -> float:
        return math.sqrt(self.variance)


@dataclass
class EWMean:
    """Exponentially weighted mean: the first value, then ``alpha * x + (1 - alpha) * mean``, as
    ``river.stats.EWMean(fading_factor=alpha)``.

    >>> from river import stats
    >>> ours, theirs = EWMean(0.3), stats.EWMean(fading_factor=0.3)
    >>> for x in [1.0, 2.0, 4.0]:
    ...     ours.update(x); theirs.update(x)
    >>> round(ours.mean, 12) == round(theirs.get(), 12), ours.mean
    (True, 2.11)
    """

    alpha: float
    mean: float = 0.0
    n: int = 0

    def update(self, x: float) -> None:
        self.mean = x if self.n == 0 else self.alpha * x + (1.0 - self.alpha) * self.mean
        self.n += 1


@dataclass
class DecayedCount:
    """A count whose every unit decays by ``exp(-elapsed / tau)`` in event time.

    ``value(now)`` is ``sum exp(-(now - t_i) / tau)`` over the updates; ``rate(now)`` divides it by
    ``tau``: events per second over about the last ``tau``. An update older than the latest one is
    added with its weight as of the latest (late events are tolerated).

    >>> count = DecayedCount(tau=100.0)
    >>> count.update(0.0); count.update(100.0)
    >>> round(count.value(100.0), 6), round(count.value(200.0), 6)  # 1 + e^-1, then times e^-1
    (1.367879, 0.503215)
    >>> count.update(50.0)  # late: weight e^-0.5 as of t=100
    >>> round(count.value(100.0), 6)
    1.97441
    """

    tau: float
    count: float = 0.0
    at: float = 0.0

    def update(self, time: float, weight: float = 1.0) -> None:
        if time >= self.at:
            self.count = self.value(time) + weight
            self.at = time
        else:
            self.count += weight * math.exp(-(self.at - time) / self.tau)

    def value(self, now: float) -> float:
        return self.count * math.exp(-max(0.0, now - self.at) / self.tau)

    def rate(self, now: float) -> float:
        return self.value(now) / self.tau
