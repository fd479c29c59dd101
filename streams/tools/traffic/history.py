"""A replayed history: weeks of the synthetic traffic, in event time before the live part, produced at
full speed through the broker, so that the models have learned, and churn labels have come due, by the
time the live traffic starts (``forewarn demo``).

The history is the same generator's traffic (:class:`~streams.tools.traffic.generator.TrafficGenerator`)
at a slower session rate: :func:`plan_history` spreads it so that each of ``users`` users visits every
``gap_days`` days on average, from ``days`` before ``end`` up to ``end``. The generator is made with
``start=plan.start`` and ``sessions_per_second=plan.sessions_per_second``; :func:`replay_history`
produces its messages in event-time order, a :data:`REPLAY_STEP` of event time at a time, and the
live part then carries on with :meth:`TrafficGenerator.resume
<streams.tools.traffic.generator.TrafficGenerator.resume>` at the live rate. Since every event is
stamped in the past, the partitions' event-time clocks (:mod:`streams.domain.clock`) follow the data,
and the timers due within the history (session ends, churn horizons, payment dwell) fire at their
event times while the worker catches up.

>>> plan = plan_history(days=21, users=1000, end=1_790_000_000.0)
>>> plan.end - plan.start == 21 * DAY, round(plan.sessions_per_second * DAY), round(plan.sessions)
(True, 500, 10500)
>>> plan_history(days=0, users=1000, end=1_790_000_000.0) is None
True
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from streams.contracts.settings import Settings
from streams.contracts.time import DAY, MINUTE
from streams.tools.traffic.generator import TrafficGenerator
from streams.tools.traffic.runner import traffic_topics
from streams.tools.traffic.schedule import Outgoing

VISIT_GAP_DAYS = 2.0  # a session per user every two days on average, as in benchmarks/models.py
REPLAY_STEP = 5 * MINUTE  # event time asked of the generator at a time


@dataclass(frozen=True, slots=True)
class HistoryPlan:
    """``start`` to ``end`` (epoch seconds) of event time, at ``sessions_per_second``."""

    start: float
    end: float
    sessions_per_second: float

    @property
    def sessions(self) -> float:
        """The number of sessions expected (Poisson arrivals at the rate over the span)."""
        return self.sessions_per_second * (self.end - self.start)


def plan_history(days: float, users: int, end: float, gap_days: float = VISIT_GAP_DAYS) -> HistoryPlan | None:
    """``days`` of history up to ``end`` (the live part starts then or later), a session per user every
    ``gap_days`` days on average; None for no history (``days`` 0)."""
    if days <= 0:
        return None
    return HistoryPlan(end - days * DAY, end, users / (gap_days * DAY))


async def replay_history(
    producer: AIOKafkaProducer,
    generator: TrafficGenerator,
    settings: Settings,
    plan: HistoryPlan,
    on_step: Callable[[float, list[Outgoing]], None],
    pace: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Produce ``generator``'s messages from ``plan.start`` to ``plan.end`` of event time, as fast as
    the broker takes them, calling ``on_step(event time reached, sent)`` after each step. ``pace``, if
    given, is awaited before each step: it may hold the replay while the worker is behind. Everything
    is flushed before it returns."""
    topics = traffic_topics(settings)
    clock = plan.start
    while clock < plan.end:
        if pace is not None:
            await pace()
        clock = min(plan.end, clock + REPLAY_STEP)
        sent = generator.due(clock)
        for outgoing in sent:
            await producer.send(topics[outgoing.topic], value=outgoing.value, key=outgoing.key)
        on_step(clock, sent)
    await producer.flush()
