"""Event-time clocks per partition, for timers that must fire when a user goes silent.

A partition's clock is the latest event time seen on it (its watermark). While the partition is idle
the clock moves on with the wall clock from there, so a lingering user is detected even when nothing
more arrives, yet a consumer catching up on old data judges dwell by the data's own time.

The clock never runs ahead of the wall clock: an event stamped in the future (a producer whose clock
is fast; the contract accepts up to ``FOREWARN_MAX_FUTURE_SKEW_SECONDS``) would otherwise fire the
timers of every user on its partition early.

>>> clock = PartitionClocks()
>>> clock.observe(0, event_time=40.0, wall=50.0)
>>> clock.observe(0, event_time=35.0, wall=51.0)  # late events do not move the clock back
>>> clock.now(0, wall=51.0), clock.now(0, wall=61.0), clock.now(1, wall=61.0)
(41.0, 51.0, None)
>>> clock.now(0, wall=61.0, catching_up=True)  # records wait to be read: no further than the data
40.0
>>> clock.observe(0, event_time=500.0, wall=62.0)  # from the future: held at the wall clock
>>> clock.now(0, wall=62.0), clock.now(0, wall=63.0)
(62.0, 63.0)
"""

from __future__ import annotations


class PartitionClocks:
    def __init__(self) -> None:
        # partition -> (watermark, wall time when it was last advanced)
        self._marks: dict[int, tuple[float, float]] = {}

    def observe(self, partition: int, event_time: float, wall: float) -> None:
        event_time = min(event_time, wall)
        mark = self._marks.get(partition)
        if mark is None or event_time > mark[0]:
            self._marks[partition] = (event_time, wall)

    def now(self, partition: int, wall: float, *, catching_up: bool = False) -> float | None:
        """The partition's event-time clock, or None before it has seen any event. While the partition
        is ``catching_up`` (records wait on it to be read) the clock stays at its watermark: what waits
        may be a user's next event, older than the wall clock would say, and a timer must not fire ahead
        of it (a payer's dwell would fire before their payment is read)."""
        mark = self._marks.get(partition)
        if mark is None:
            return None
        watermark, advanced_at = mark
        if catching_up:
            return watermark
        return watermark + max(0.0, wall - advanced_at)

    def forget(self, partitions: set[int]) -> None:
        """Drop partitions this worker no longer owns."""
        for partition in partitions:
            self._marks.pop(partition, None)
