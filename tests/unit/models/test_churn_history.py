"""The user's history for churn (:data:`models.features.CHURN_HISTORY`): computed exactly on a small
hand-made history, read back from a state stored before it existed, and taken into the pending churn
example by the user's other events."""

from __future__ import annotations

import copy
import math

import numpy as np
import orjson
import pytest

from models.examples import MAX_STAYED
from models.features import CHURN_HISTORY, FEATURE_NAMES, UserFeatures
from models.learners import INTENT_FEATURES, MonitoredClassifier, PartitionModels
from streams.contracts.events import Event
from streams.domain.policy import ModelRules
from streams.domain.prediction import feature_values, observe, vector
from streams.domain.state import UserState, apply_event
from streams.worker.codec import DataclassCodec

HOUR, DAY = 3600.0, 86400.0
RULES = ModelRules(churn_horizon=10 * DAY)
SHIPMENT = {"shipment_id": "sh1", "order_id": "o1", "promised_eta": 5000.0, "eta": 90000.0}


def click(event_id: str, kind: str, time: float, session: str | None, **attrs) -> Event:
    if session is not None:
        attrs["session_id"] = session
    return Event(event_id, kind, "clickstream", time, "u1", attrs)


def delayed(event_id: str, time: float) -> Event:
    return Event(event_id, "delayed", "logistics", time, "u1", SHIPMENT)


def turn(state: UserState, event: Event, models: PartitionModels | None = None):
    apply_event(state, event)
    return observe(state, event, models, RULES, event.event_time)


def history(state: UserState, now: float) -> dict[str, float]:
    return {name: vector(state, now)[name] for name in CHURN_HISTORY}


def hand_made() -> UserState:
    """Three visits: three clicks with a cart and a rating of 2 after a late delivery (ended 3 hours
    before the next visit); a click, a support contact and a rating of 3 (ended 23 hours before the
    next); then one click. Ratings and contacts outside a web session count in the visit they fall in."""
    state = UserState("u1")
    turn(state, click("e1", "page_view", 0.0, "s1", page="/"))
    turn(state, click("e2", "page_view", 30.0, "s1", page="/p/a"))
    turn(state, click("e2b", "add_to_cart", 60.0, "s1", sku="a", price=10.0, quantity=1))
    turn(state, delayed("l1", 120.0))
    turn(state, click("e3", "feedback", 180.0, None, score=2))
    turn(state, click("e4", "page_view", 180.0 + 3 * HOUR, "s2", page="/"))
    turn(state, click("e5", "support_contact", 180.0 + 3 * HOUR + 30.0, None, reason="returns"))
    turn(state, click("e6", "feedback", 180.0 + 3 * HOUR + 60.0, None, score=3))
    turn(state, click("e7", "page_view", 240.0 + 26 * HOUR, "s3", page="/"))
    return state


def test_the_churn_history_of_a_hand_made_history_is_exact() -> None:
    state = hand_made()
    now = 240.0 + 26 * HOUR
    gaps = [math.log1p(3.0), math.log1p(23.0)]  # hours from a visit's last event to the next visit
    mean = sum(gaps) / 2
    std = math.sqrt(sum((gap - mean) ** 2 for gap in gaps))  # sample std of two values
    depths = [math.log1p(4), math.log1p(3)]  # events per visit
    recent_depth = 0.3 * depths[1] + 0.7 * depths[0]
    expected = {
        "visits_total": math.log1p(3),
        "gap_mean": mean,
        "gap_std": std,
        "gap_recent": 0.3 * gaps[1] + 0.7 * gaps[0],
        "gap_last": gaps[1],
        "gap_z": (gaps[1] - mean) / (std + 0.5),
        "depth_trend": recent_depth - sum(depths) / 2,
        "cart_share": 0.5,
        "problems_total": 1.0,
        "problems_week": math.exp(-(now - 120.0) / (7 * DAY)),
        "support_week": math.exp(-(now - 180.0 - 3 * HOUR - 30.0) / (7 * DAY)),
        "low_scores": 1.0,
        "mid_scores": 1.0,
        "score_last": 0.5,
    }
    assert history(state, now) == pytest.approx(expected, abs=1e-12)
    assert list(expected) == list(CHURN_HISTORY)


def test_a_new_user_has_a_neutral_history() -> None:
    state = UserState("u1")
    turn(state, click("e1", "page_view", 0.0, "s1", page="/"))
    assert history(state, 0.0) == {
        **dict.fromkeys(CHURN_HISTORY, 0.0),
        "visits_total": math.log1p(1),
        "score_last": 0.5,
    }


def test_a_state_stored_before_the_churn_history_still_loads() -> None:
    state = hand_made()
    models = PartitionModels()
    turn(state, click("e8", "page_view", 270.0 + 26 * HOUR, "s3", page="/c/a", category="a"), models)
    turn(state, click("e8b", "search", 300.0 + 26 * HOUR, "s3", query="case"), models)  # its 3rd event
    assert state.pending.churn is not None and state.pending.intent
    record = state.to_dict()
    # Its pending examples held the features of then: the history's were not among them.
    for snapshot in [record["pending"]["churn"], *record["pending"]["intent"]]:
        del snapshot["x"][-len(CHURN_HISTORY) :]
    new_fields = set(UserFeatures.__dataclass_fields__) - {
        "events",
        "orders",
        "support_contacts",
        "delivery_problems",
        "last_delivery_problem_at",
        "depth",
        "dwell",
        "satisfaction",
        "satisfaction_fast",
        "satisfaction_slow",
        "session",
    }
    for name in new_fields:
        del record["features"][name]
    restored = DataclassCodec(UserState).loads(orjson.dumps(record))
    assert isinstance(restored, UserState)  # not refused
    assert restored.features.gaps.n == 0 and restored.features.problems == 0
    assert restored.features.session == state.features.session
    # Examples of the features of then are dropped, not learned against the wrong names.
    assert restored.pending.churn is None and restored.pending.intent == []
    now = 300.0 + 26 * HOUR
    old = feature_values(restored, now)
    assert old[: -len(CHURN_HISTORY)] == feature_values(state, now)[: -len(CHURN_HISTORY)]
    # The history starts from what comes next: the next visit's gap is learned.
    turn(restored, click("e9", "page_view", now + 2 * HOUR, "s4", page="/"))
    assert restored.features.gaps.n == 1
    assert restored.features.gap_last == pytest.approx(math.log1p(2.0))


def test_a_delivery_problem_after_the_last_click_is_in_the_churn_example() -> None:
    state, models = UserState("u1"), PartitionModels()
    turn(state, click("e1", "page_view", 0.0, "s1", page="/"), models)
    turn(state, delayed("l1", 90.0), models)
    snapshot = state.pending.churn
    assert snapshot is not None and snapshot.taken_at == 0.0 and snapshot.session == 1  # its time kept
    features = snapshot.features()
    assert features["problems_total"] == 1.0 and features["delivery_problems_month"] == 1.0
    done = observe(state, None, models, RULES, 10 * DAY)  # the horizon counts from the click
    assert [learned.label for learned in done.learned if learned.model == "churn"] == ["churned"]


def test_an_example_known_not_churned_is_learned_once_its_horizon_has_passed() -> None:
    state, models = UserState("u1"), PartitionModels()
    turn(state, click("e1", "page_view", 0.0, "s1", page="/"), models)
    done = turn(state, click("e2", "page_view", 2 * DAY, "s2", page="/"), models)  # back in time
    assert [learned.model for learned in done.learned if learned.model == "churn"] == []
    assert [snapshot.taken_at for snapshot in state.pending.stayed] == [0.0]
    turn(state, click("e3", "page_view", 4 * DAY, "s3", page="/"), models)
    assert [snapshot.taken_at for snapshot in state.pending.stayed] == [0.0, 2 * DAY]
    observe(state, None, models, RULES, 4 * DAY + 1800.0)  # the last session's end: its intent
    # The timer comes for the oldest's horizon (the deadline), and learns it then, not before.
    assert state.pending.deadline(RULES.churn_horizon) == 10 * DAY
    assert observe(state, None, models, RULES, 10 * DAY - 1).learned == []
    done = observe(state, None, models, RULES, 10 * DAY)
    assert [(learned.label, learned.snapshot.taken_at, learned.delay) for learned in done.learned] == [
        ("stayed", 0.0, 10 * DAY)
    ]
    assert models.churn.examples == 1 and [snapshot.taken_at for snapshot in state.pending.stayed] == [
        2 * DAY
    ]
    # A visit after that horizon learns the next, and the churn example pending is of the last visit.
    done = turn(state, click("e4", "page_view", 13 * DAY, "s4", page="/"), models)
    learned = [(item.label, item.snapshot.taken_at) for item in done.learned if item.model == "churn"]
    assert learned == [("stayed", 2 * DAY)]
    assert [snapshot.taken_at for snapshot in state.pending.stayed] == [4 * DAY]
    assert state.pending.churn is not None and state.pending.churn.taken_at == 13 * DAY


def test_a_very_frequent_visitor_has_the_oldest_examples_learned_early() -> None:
    state, models = UserState("u1"), PartitionModels()
    for visit in range(MAX_STAYED + 2):
        turn(state, click(f"e{visit}", "page_view", visit * HOUR, f"s{visit}", page="/"), models)
    assert len(state.pending.stayed) == MAX_STAYED and models.churn.examples == 1
    assert state.pending.stayed[0].taken_at == HOUR
    restored = DataclassCodec(UserState).loads(DataclassCodec(UserState).dumps(state))
    assert restored.pending == state.pending


def test_the_intent_model_does_not_read_the_churn_history() -> None:
    models = PartitionModels()
    state = hand_made()
    values = np.array(feature_values(state, 100 * HOUR))
    for step in range(6):  # examples that vary, so that every feature has a scale
        example, label = values * (1 + step), ("browse", "leave")[step % 2]
        models.intent.learn_values(example.tolist(), label, models.intent.predict_proba_values(example))
        models.churn.learn_values(example.tolist(), step % 2 == 0, models.churn.predict_proba_values(example))
    other = values.copy()
    other[-len(CHURN_HISTORY) :] += 7.0
    assert models.intent.predict_proba_values(other) == models.intent.predict_proba_values(values)
    assert models.churn.predict_proba_values(other) != models.churn.predict_proba_values(values)
    assert set(models.intent.river_pipeline().steps["StandardScaler"].counts) == set(INTENT_FEATURES)
    # A model checkpointed before models chose their features reads all of them.
    older = copy.copy(models.churn.__getstate__())
    del older["features"]
    restored = MonitoredClassifier.__new__(MonitoredClassifier)
    restored.__setstate__(older)
    assert restored.features == FEATURE_NAMES
    assert restored.predict_proba_values(other) == models.churn.predict_proba_values(other)


def test_churn_is_scored_where_its_examples_are_taken_not_at_a_later_tick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At a click and at an event that updates the churn example the model is asked; at a tick (days
    after the visit: a state no example is taken of) the score stays as the activity left it."""
    state, models = UserState("u1"), PartitionModels()
    answers = iter([0.2, 0.3, 0.4, 0.99])

    def churn_model(values: np.ndarray) -> dict[bool, float]:
        p = next(answers)
        return {True: p, False: 1.0 - p}

    monkeypatch.setattr(models.churn, "predict_proba_values", churn_model)
    assert turn(state, click("e1", "page_view", 0.0, "s1", page="/"), models).scores.churn == 0.2
    assert turn(state, delayed("l1", 90.0), models).scores.churn == 0.3  # the example took it
    state.scores = turn(state, delayed("l2", 95.0), models).scores  # published: 0.4
    assert observe(state, None, models, RULES, 5 * DAY).scores.churn == 0.4  # not asked: 0.99 unread
