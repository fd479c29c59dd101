"""The rounds of a batch: every behaviour event of an envelope (or one timer tick), in order, each user's
state taken once and put back once, with no broker in sight.

The per-user agent hands an envelope's events to :class:`BatchRounds` one by one (:meth:`~BatchRounds.play`),
then sends every decision and intervention of the batch in one acknowledged send, and only then records
the states (:mod:`streams.worker.agents.users`). What it needs from a batch:

* Each user's state as before the batch (:attr:`UserRounds.before`, serialized once, at the user's
  first event in it): a commit during the send writes that (:class:`streams.worker.statewrites.StateWrites`),
  and a worker stopping during the send puts it back.
* A round that raises is dead-lettered alone: the user's state is rebuilt from before the batch and
  their earlier rounds of the batch played again (:attr:`BatchRounds.failures`), so their state and
  what they emit agree and the other users' rounds are untouched.
* The outputs of every round in order (:meth:`BatchRounds.outcomes`).

>>> from streams.contracts.events import Event
>>> from streams.domain.policy import load_policy
>>> policy = load_policy(text='experiments = []\\n[triggers.payment_assist]\\ndwell = "60s"\\n')
>>> def page(i, user, kind="page_view"):
...     return Event(f"e{i}", kind, "clickstream", 43_200 + i, user, {"session_id": "s", "page": "/"})
>>> batch = BatchRounds(lambda user_id: None, policy)
>>> for i, user in enumerate(["u1", "u2", "u1"]):
...     batch.play(page(i, user))
>>> [(user.state.user_id, len(user.rounds), user.before) for user in batch.users.values()]
[('u1', 2, None), ('u2', 1, None)]
>>> batch.play(page(0, "u1"))  # delivered again: the user's state knows it
>>> batch.duplicates
1
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from models.learners import PartitionModels
from streams.contracts.events import Event
from streams.domain.policy import Policy
from streams.domain.rounds import Round, run_round
from streams.domain.state import UserState
from streams.processes.catalog import Catalog
from streams.processes.run import TaggedFeedback, crm_sync_record, tag_user_feedback


@dataclass(slots=True)
class Played:
    """One round of a batch and what it emits besides its decisions."""

    step: Any  # the input: an Event, or a tick {"user_id", "now"}
    position: int  # its place in the batch
    origin: Any  # where the step came from (the agent's message), as given to play()
    done: Round
    tagged: TaggedFeedback | None
    sync: dict[str, Any] | None


@dataclass(slots=True)
class UserRounds:
    """A user's part of a batch: their state now, as before the batch, and their rounds in order."""

    state: UserState
    before: bytes | None  # serialized as the changelog holds it; None: the user was new
    existed: bool
    rounds: list[Played] = field(default_factory=list)
    rebuilt: bool = False  # a round failed: the state was rebuilt from before the batch


@dataclass(slots=True)
class Failure:
    step: Any
    position: int
    origin: Any
    error: Exception


class BatchRounds:
    """Plays the rounds of one batch of a partition (see the module).

    ``load(user_id)``: the user's stored state, or None. ``models``: the partition's, which learn and
    score here (None: features only). ``partition``: set on every state played. ``catalog``: what
    recommendations suggest from."""

    def __init__(
        self,
        load: Callable[[str], UserState | None],
        policy: Policy,
        models: PartitionModels | None = None,
        *,
        partition: int = 0,
        session_gap: float = 1800.0,
        catalog: Catalog | None = None,
    ) -> None:
        self._load = load
        self.catalog = catalog
        self.policy = policy
        self.models = models
        self.partition = partition
        self.session_gap = session_gap
        self.users: dict[str, UserRounds] = {}
        self.failures: list[Failure] = []
        self.duplicates = 0
        self._positions = 0

    def user(self, user_id: str) -> UserRounds:
        """The user's part of the batch, taken from the store at their first step."""
        user = self.users.get(user_id)
        if user is None:
            stored = self._load(user_id)
            before = None if stored is None else orjson.dumps(stored)
            state = stored or UserState(user_id)
            user = self.users[user_id] = UserRounds(state, before, stored is not None)
        return user

    def play(self, step: Event | dict[str, Any], origin: Any = None) -> None:
        """One round: ``step`` is an event, or a tick ``{"user_id", "now"}`` (epoch ms); ``origin`` is
        kept with its outcome or failure."""
        position = self._positions
        self._positions += 1
        user_id = step.user_id if isinstance(step, Event) else step["user_id"]
        user = self.user(user_id)
        try:
            played = self._round(user.state, step, position, origin)
        except Exception as error:
            self.failures.append(Failure(step, position, origin, error))
            self._rebuild(user)
            return
        if played is not None:
            user.rounds.append(played)

    def _round(
        self, state: UserState, step: Event | dict[str, Any], position: int, origin: Any
    ) -> Played | None:
        tick = not isinstance(step, Event)
        state.partition = self.partition
        done = run_round(
            state,
            step,
            tick=tick,
            policy=self.policy,
            models=self.models,
            session_gap=self.session_gap,
            catalog=self.catalog,
        )
        if done.duplicate:
            self.duplicates += 1
            return None
        tagged = None
        if done.event is not None and self.models is not None:
            tagged = tag_user_feedback(state, done.event, self.models.tagger)
        # After every round: an event can change the tags alone; None while health and tags stay put.
        sync = crm_sync_record(state, state.last_event_time)
        return Played(step, position, origin, done, tagged, sync)

    def _rebuild(self, user: UserRounds) -> None:
        """The user's state as before the batch, their rounds that did not fail played again."""
        user.rebuilt = True
        user.state = (
            UserState.from_dict(orjson.loads(user.before)) if user.before else UserState(user.state.user_id)
        )
        again, user.rounds = user.rounds, []
        for played in again:
            try:
                replayed = self._round(user.state, played.step, played.position, played.origin)
            except Exception as error:  # failed this time: dead-lettered too
                self.failures.append(Failure(played.step, played.position, played.origin, error))
                continue
            if replayed is not None:
                user.rounds.append(replayed)

    def outcomes(self) -> list[tuple[UserRounds, Played]]:
        """Every round kept, in the order of the batch."""
        rounds = [(user, played) for user in self.users.values() for played in user.rounds]
        rounds.sort(key=lambda pair: pair[1].position)
        return rounds

    def restore(self) -> dict[str, UserState | None]:
        """Each user's state as before the batch (None: there was none)."""
        return {
            user_id: UserState.from_dict(orjson.loads(user.before)) if user.before else None
            for user_id, user in self.users.items()
        }
