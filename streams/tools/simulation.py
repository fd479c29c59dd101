"""The worker's per-user path for one partition, in-process and without Kafka.

:class:`InProcessPartition` does what ``track_users`` and the timer sweep do for the users of one
partition (:mod:`streams.worker.app`), with the same functions: validate a raw message, tick the users whose
timers fell due before it, run the user's round (:func:`streams.domain.rounds.run_round`) with the
partition's models, and file the user's next timer. Time is event time only. The model benchmark and
the model-quality tests run long seeded streams through it: months of traffic in seconds.

>>> from streams.domain.policy import load_policy
>>> from streams.tools.traffic.generator import TrafficGenerator
>>> from streams.tools.traffic.profile import TrafficProfile
>>> from models.learners import PartitionModels
>>> partition = InProcessPartition(load_policy(), PartitionModels())
>>> traffic = TrafficGenerator(TrafficProfile(sessions_per_second=1.0), seed=3, start=1_764_000_000.0)
>>> rounds = [partition.feed(message) for message in traffic.due(1_764_000_000.0 + 600)]
>>> partition.users and all(r is not None for r in rounds)
True
"""

from __future__ import annotations

from collections.abc import Callable

from models.learners import PartitionModels
from streams.contracts.events import InvalidEvent, parse_event
from streams.contracts.time import to_millis
from streams.domain.clock import PartitionClocks
from streams.domain.policy import Policy
from streams.domain.rounds import Round, run_round
from streams.domain.state import UserState
from streams.domain.triggers import PendingTimers
from streams.tools.traffic.schedule import Outgoing

PARTITION = 0


class InProcessPartition:
    def __init__(
        self,
        policy: Policy,
        models: PartitionModels | None,
        *,
        session_gap: float = 1800.0,
        on_round: Callable[[Round], None] | None = None,
    ) -> None:
        self.policy = policy
        self.models = models
        self.session_gap = session_gap
        self.on_round = on_round  # sees every round, the ticks' included
        self.users: dict[str, UserState] = {}
        self.timers = PendingTimers(policy)
        self.clocks = PartitionClocks()
        self.rejected = 0

    def feed(self, message: Outgoing) -> Round | None:
        """One raw message; None when it is rejected (as ingest would dead-letter it)."""
        try:
            event = parse_event(message.value, message.topic)
        except InvalidEvent:
            self.rejected += 1
            return None
        self.advance(event.event_time)
        state = self.users.setdefault(event.user_id, UserState(event.user_id, partition=PARTITION))
        return self._round(state, event.to_wire(), tick=False)

    def advance(self, now: float) -> None:
        """Tick every user whose timer fell due by ``now`` (event time), as the sweep would."""
        self.clocks.observe(PARTITION, now, wall=now)
        for user_id, _, tick_now in self.timers.due(self.clocks, {PARTITION}, wall=now):
            self.timers.answered(user_id)
            self._round(self.users[user_id], {"user_id": user_id, "now": to_millis(tick_now)}, tick=True)

    def _round(self, state: UserState, value: dict, *, tick: bool) -> Round:
        done = run_round(
            state, value, tick=tick, policy=self.policy, models=self.models, session_gap=self.session_gap
        )
        self.timers.track(state)
        if self.on_round is not None:
            self.on_round(done)
        return done
