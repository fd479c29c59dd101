"""One round of a user: a message (an event, or a timer tick) updates their state and yields the
contact-policy decisions, as one pure function the agent calls (``track_users`` in
:mod:`streams.worker.app`).

* An event: interventions deferred until before its time are released, the event is applied and its
  triggers (and the timers that fell due before it) fire; everything is decided at the event's time
  (never earlier than the user's latest event).
* A tick (the timer sweep's, carrying the partition's event-time ``now``): the deferred interventions
  and the timers due by then.
* An event the user has applied already (delivered again: at-least-once) does nothing: the round is
  marked ``duplicate`` (:func:`streams.domain.state.first_delivery`).
* A user whose state was trimmed to their lasting facts (:mod:`streams.domain.eviction`) is active again
  after an event, or a tick with a timer due (a renewal reminder); a tick with none due (sent again
  while the tick that trimmed them was on its way) leaves them trimmed.

A round that raises leaves the state half-updated; :class:`StateSnapshot` lets the agent put back the
state as it was, so that the table in memory and its changelog never disagree.

>>> from streams.domain.policy import load_policy
>>> policy = load_policy(text='experiments = []\\n[triggers.payment_assist]\\ndwell = "60s"\\n')
>>> state = UserState("u1")
>>> page = {"schema": 1, "event_id": "e1", "event_type": "payment_page_view", "source": "clickstream",
...         "event_time": 43_200_000, "user_id": "u1", "attrs": {}}
>>> run_round(state, page, tick=False, policy=policy).decisions
[]
>>> [(d.intervention.trigger, d.decision) for d in run_round(
...     state, {"user_id": "u1", "now": 43_261_000}, tick=True, policy=policy).decisions]
[('payment_assist', 'emitted')]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from models.learners import PartitionModels
from streams.contracts.events import Event
from streams.domain.contact import Decision, decide, release_deferred
from streams.domain.eviction import mark_active
from streams.domain.policy import Policy
from streams.domain.prediction import ModelRound, message_emotion, observe
from streams.domain.state import UserState, first_delivery
from streams.domain.triggers import check_predictions, check_timers, next_deadline, process_event
from streams.processes.catalog import Catalog


@dataclass(slots=True)
class Round:
    decisions: list[Decision]
    event: Event | None  # the event applied; None for a tick
    model: ModelRound  # the user's scores, and the examples the models learned
    duplicate: bool = False  # the event was applied already (delivered again): nothing was done


def run_round(
    state: UserState,
    value: Event | dict[str, Any],
    *,
    tick: bool,
    policy: Policy,
    models: PartitionModels | None = None,
    session_gap: float = 1800.0,
    catalog: Catalog | None = None,
) -> Round:
    """Apply one message (an event or its wire form, or a tick ``{"user_id", "now"}`` in epoch ms).

    ``models``: the intent and churn models of the user's partition, which learn and score here
    (:func:`streams.domain.prediction.observe`); None: features only, no scores, no model-driven triggers.
    ``catalog``: what a recommendation suggests from (:func:`streams.domain.triggers.suggestion`)."""
    if tick:
        now = value["now"] / 1000.0
        assert isinstance(value, dict)
        if state.trimmed_at is not None:
            due = next_deadline(state, policy)
            if due is None or due > now:  # a tick sent again while the one that trimmed them was on its way
                return Round([], None, ModelRound())
            mark_active(state)  # a renewal reminder: what it decides is kept for the horizon
        candidates = release_deferred(state, now) + check_timers(state, now, policy)
        model = observe(state, None, models, policy.models, now, session_gap)
        return Round(decide(candidates, state, policy, now), None, model)
    event = value if isinstance(value, Event) else Event.from_wire(value)
    if not first_delivery(state, event.event_id):
        return Round([], None, ModelRound(), duplicate=True)
    mark_active(state)
    now = max(event.event_time, state.last_event_time)
    emotion = message_emotion(event, models)
    candidates = release_deferred(state, now) + process_event(state, event, policy, session_gap, emotion)
    model = observe(state, event, models, policy.models, now, session_gap)
    candidates += check_predictions(state, model.scores, now, policy, catalog)
    return Round(decide(candidates, state, policy, now), event, model)


class StateSnapshot:
    """The serialized form of a state before a round, to put back if the round fails.

    >>> state = UserState("u1", events_seen=3)
    >>> snapshot = StateSnapshot(state)
    >>> state.events_seen = 99; state.contacts["chat"] = [1.0]
    >>> restored = snapshot.restore()
    >>> restored.events_seen, restored.contacts, StateSnapshot(None).restore()
    (3, {}, None)
    """

    def __init__(self, state: UserState | None) -> None:
        self.serialized = None if state is None else orjson.dumps(state)  # as the changelog holds it

    def restore(self) -> UserState | None:
        return None if self.serialized is None else UserState.from_dict(orjson.loads(self.serialized))
