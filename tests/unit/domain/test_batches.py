"""The rounds of a batch (an envelope's events), as the per-user agent runs them: each user's state
taken once and kept as before the batch, a failing round undone alone, the same decisions as one round
at a time."""

from __future__ import annotations

import orjson
import pytest

from models.learners import PartitionModels
from streams.contracts.events import CLICKSTREAM, Event
from streams.domain import batches
from streams.domain.batches import BatchRounds
from streams.domain.policy import load_policy
from streams.domain.rounds import run_round
from streams.domain.state import UserState
from streams.worker.statewrites import StateWrites

NOON = 1_764_072_000.0
POLICY = load_policy(text='experiments = []\n[triggers.payment_assist]\ndwell = "60s"\n')


def click(event_id: str, user: str, kind: str, at: float) -> Event:
    return Event(event_id, kind, CLICKSTREAM, at, user, {"session_id": f"s-{user}", "page": "/"})


def traffic() -> list[Event]:
    """Three users' interleaved sessions: a page, the payment page left alone, then a page view past the
    dwell."""
    events = []
    for i, user in enumerate(["a", "b", "c"]):
        events.append(click(f"{user}1", user, "page_view", NOON - 10 + i))
    for i, user in enumerate(["a", "b", "c"]):
        events.append(click(f"{user}2", user, "payment_page_view", NOON + i))
    for i, user in enumerate(["a", "b", "c"]):
        events.append(click(f"{user}3", user, "page_view", NOON + 90 + i))
    return events


def test_a_batch_decides_as_one_round_at_a_time_and_keeps_the_states_before_it() -> None:
    store: dict[str, UserState] = {"a": UserState("a", events_seen=7)}
    one_by_one = {user: UserState(user) for user in "abc"}
    one_by_one["a"].events_seen = 7
    expected = []
    for event in traffic():
        done = run_round(one_by_one[event.user_id], event, tick=False, policy=POLICY)
        expected += [(d.intervention.intervention_id, d.decision) for d in done.decisions]

    batch = BatchRounds(store.get, POLICY, partition=3)
    for event in traffic():
        batch.play(event)
    decided = [
        (d.intervention.intervention_id, d.decision)
        for _, played in batch.outcomes()
        for d in played.done.decisions
    ]
    assert decided == expected and len(decided) == 3
    assert [played.position for _, played in batch.outcomes()] == list(range(9))
    # The stored user's state before the batch, as the changelog would hold it; the new users had none.
    assert orjson.loads(batch.users["a"].before)["events_seen"] == 7
    assert batch.users["b"].before is None and not batch.users["b"].existed
    assert {user.state.partition for user in batch.users.values()} == {3}
    restored = batch.restore()
    assert restored["a"] is not None and restored["a"].events_seen == 7 and restored["b"] is None


def test_a_failing_round_is_undone_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    real = batches.run_round

    def failing(state: UserState, step: object, **kwargs: object):  # the second event of b fails
        if isinstance(step, Event) and step.event_id == "b2":
            state.events_seen += 1000  # half-applied before it raised
            raise RuntimeError("a bug")
        return real(state, step, **kwargs)

    monkeypatch.setattr(batches, "run_round", failing)
    batch = BatchRounds(lambda user_id: None, POLICY, PartitionModels())
    for event in traffic():
        batch.play(event)
    [failure] = batch.failures
    assert failure.step.event_id == "b2" and isinstance(failure.error, RuntimeError)
    b = batch.users["b"]
    # Rebuilt from before the batch with the rounds that did not fail: b1, b3; nothing of b2.
    assert b.rebuilt and [played.step.event_id for played in b.rounds] == ["b1", "b3"]
    assert b.state.events_seen == 2 and "b2" not in b.state.recent_event_ids
    # The other users are untouched.
    assert [p.step.event_id for p in batch.users["a"].rounds] == ["a1", "a2", "a3"]
    assert batch.users["a"].state.events_seen == 3


def test_an_event_delivered_again_in_a_later_batch_counts_once() -> None:
    store: dict[str, UserState] = {}
    first = BatchRounds(store.get, POLICY)
    for event in traffic()[:4]:  # a1, b1, c1, a2
        first.play(event)
    store.update({user_id: user.state for user_id, user in first.users.items()})
    again = BatchRounds(store.get, POLICY)
    for event in traffic():  # the first four again, regrouped in another envelope
        again.play(event)
    assert again.duplicates == 4
    assert {user_id: user.state.events_seen for user_id, user in again.users.items()} == {
        "a": 3,
        "b": 3,
        "c": 3,
    }


def test_a_commit_during_the_batch_writes_its_users_as_before_it() -> None:
    writes = StateWrites()
    writes.changed("a")  # changed by an earlier batch, not written yet
    writes.changed("z")
    batch = BatchRounds({"a": UserState("a", events_seen=7)}.get, POLICY)
    for event in traffic():
        batch.play(event)
    for user_id, user in batch.users.items():
        writes.begin(user_id, user.before)
    taken = dict(writes.take())
    assert taken["z"] is None  # its current state
    assert orjson.loads(taken["a"])["events_seen"] == 7  # as before the batch, and still marked
    assert "b" not in taken and dict(writes.take()).keys() == {"a"}
    writes.end()
    assert writes.take() == [("a", None)]
