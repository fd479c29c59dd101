"""One user's turn with the models: update features, label what waited, predict, keep, publish.

:func:`observe` runs after the user's state took the event (or a timer tick) and does, in order:

1. update the user's features (:func:`models.features.learn_event`);
2. learn the examples whose labels are now known (:mod:`models.examples`), each scored first by the
   prediction made when it was taken (progressive validation with delayed labels);
3. predict intent and churn from the features as they now stand (:func:`feature_values`, a vector
   in the order of :data:`~models.features.FEATURE_NAMES`), and keep the snapshots that wait for
   labels, with their predictions; intent only after a click (the web session is what it is about);
4. make the user's scores (:class:`models.health.Scores`) and say whether they moved enough since
   those last published to publish them.

It never predicts an example after learning it: a snapshot is predicted when taken, and learned
once, when its label arrives. Without models (``models=None``) only the features are updated.

>>> from streams.contracts.events import Event
>>> from streams.domain.policy import ModelRules
>>> from streams.domain.state import UserState, apply_event
>>> from models.learners import PartitionModels
>>> state, models, rules = UserState("u1"), PartitionModels(), ModelRules()
>>> def click(event_id, kind, time, **attrs):
...     event = Event(event_id, kind, "clickstream", time, "u1", {"session_id": "s1", **attrs})
...     apply_event(state, event)
...     return observe(state, event, models, rules, time)
>>> turn = click("e1", "search", 100.0, query="refund")
>>> len(state.pending.intent), turn.publish, turn.scores.intent["need_help"]
(1, True, 0.25)
>>> turn = click("e2", "support_contact", 160.0)  # the session's label: the snapshot is learned
>>> [(learned.model, learned.label, learned.delay) for learned in turn.learned]
[('intent', 'need_help', 60.0)]
>>> state.pending.intent, models.intent.examples
([], 1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from models.emotion import lexicon_proba, lexicon_scores
from models.examples import MAX_STAYED, SNAPSHOT_AT, Snapshot
from models.features import FEATURE_NAMES, HASHED, TOPICS, learn_event
from models.health import Scores, health_score, satisfaction_of
from models.learners import MonitoredClassifier, PartitionModels
from streams.contracts.events import CLICKSTREAM, CONVERSATIONS, CUSTOMER, SUBSCRIPTIONS, Event
from streams.contracts.time import DAY
from streams.domain.policy import ModelRules
from streams.domain.state import UserState, recent_abandoned_payments

NO_COUNTS = (0.0,) * len(HASHED)  # a hashed bucket the session has not counted
NO_TOPICS = (0.0,) * len(TOPICS)
CHURNED = "churned"
STAYED = "stayed"


@dataclass(slots=True)
class Learned:
    """An example learned: by which model, with which label, how long after its snapshot."""

    model: str
    label: str
    delay: float  # event-time seconds from snapshot to label
    drift: bool  # the model's loss drifted with this example
    snapshot: Snapshot  # the example: its features and the prediction made for it before learning


@dataclass(slots=True)
class ModelRound:
    scores: Scores | None = None  # the user's scores now (None without models)
    publish: bool = False  # moved enough since last published: publish them
    learned: list[Learned] = field(default_factory=list)


def message_emotion(event: Event, models: PartitionModels | None) -> dict[str, float] | None:
    """The emotion of a customer's chat message, a probability per emotion: by the partition's emotion
    model, or without models by its lexicon alone (:func:`models.emotion.lexicon_proba`). None for any other
    event (an agent's or a human's message is not the customer's emotion).

    >>> message = Event("m1", "message", "conversations", 1.0, "u1", {"role": "customer",
    ...                 "text": "This is ridiculous, I am furious"})
    >>> max(proba := message_emotion(message, None), key=proba.get)
    'anger'
    >>> message.attrs["role"] = "agent"; message_emotion(message, None) is None
    True
    """
    if event.source != CONVERSATIONS or event.attrs.get("role") != CUSTOMER:
        return None
    text = event.attrs["text"]
    if models is None:
        return lexicon_proba(lexicon_scores(text))
    return models.emotion.predict_proba_one(text)


def feature_values(state: UserState, now: float) -> list[float]:
    """The features the models read, as of ``now`` (event time), in the order of
    :data:`~models.features.FEATURE_NAMES`."""
    features, session, activity = state.features, state.features.session, state.activity
    short, base = activity.rates(now)
    seen = activity.first is not None
    late = sum(
        1
        for shipment in state.open_shipments.values()
        if shipment.exception_code is not None or shipment.eta > shipment.promised_eta
    )
    problem_at = features.last_delivery_problem_at
    satisfaction = satisfaction_of(features)
    subscriptions = state.subscriptions.values()
    conversation = state.conversation  # its emotion counts while its chat is of this session
    chatting = conversation.scored > 0 and conversation.last_at >= session.started_at
    values = [
        short * DAY,  # visits_week
        base * DAY,  # visits_month
        math.log((short * DAY + 0.01) / (base * DAY + 0.01)),  # visit_trend
        math.log1p(max(0.0, now - activity.at) / DAY) if seen else 0.0,  # days_since_visit
        math.log1p(max(0.0, now - (activity.first or now)) / DAY),  # tenure_days
        math.log1p(features.events.value(now)),  # events_day
        features.orders.value(now),  # orders_month
        features.support_contacts.value(now),  # support_month
        features.delivery_problems.value(now),  # delivery_problems_month
        0.0 if problem_at is None else math.exp(-max(0.0, now - problem_at) / DAY),  # delivery_problem_recent
        float(late),  # late_shipments
        float(len(state.open_shipments)),  # open_shipments
        features.depth.mean,  # depth_mean
        features.depth.std,  # depth_std
        features.dwell.mean,  # dwell_mean
        features.dwell.std,  # dwell_std
        0.5 if satisfaction is None else satisfaction,  # satisfaction
        features.satisfaction_trend(),  # satisfaction_trend
        float(features.satisfaction.n > 0),  # feedback_given
        float(bool(state.coupon_orders or state.accepted_discounts)),  # coupon_user
        float(recent_abandoned_payments(state, now)),  # abandoned_payments
        float(any(s.status == "active" for s in subscriptions)),  # subscriber
        float(any(s.status == "cancelled" for s in subscriptions)),  # cancelled
        math.log1p(session.events),  # s_events
        math.log1p(max(0.0, session.last_at - session.started_at) / 60.0),  # s_minutes
        math.log1p(max(0.0, now - session.last_at) / 60.0),  # s_idle_minutes
        float(session.product_views),  # s_product_views
        float(session.category_views),  # s_category_views
        float(session.help_views),  # s_help_views
        float(session.searches),  # s_searches
        float(session.cart_adds),  # s_cart_adds
        math.log1p(session.cart_value),  # s_cart_value
        float(session.checkout),  # s_checkout
        float(session.payment_page),  # s_payment_page
        float(session.payment_failures),  # s_payment_failures
        math.log1p(session.messages),  # c_messages
        float(session.product_asked),  # c_product_asked
        max(0.0, -conversation.level) if chatting else 0.0,  # c_negative
    ]
    values.extend(map(session.topics.get, TOPICS, NO_TOPICS))
    values.extend(map(session.hashed.get, HASHED, NO_COUNTS))
    values.extend(_history(state, now))
    return values  # orjson writes floats that read back exactly: a snapshot holds what the model was shown


def _history(state: UserState, now: float) -> list[float]:
    """The features of :data:`~models.features.CHURN_HISTORY`, in its order."""
    features = state.features
    gaps, ended = features.gaps, features.depth.n
    last_gap = features.gap_last
    return [
        math.log1p(state.sessions),  # visits_total
        gaps.mean,  # gap_mean
        gaps.std,  # gap_std
        features.gaps_recent.mean,  # gap_recent
        last_gap,  # gap_last
        (last_gap - gaps.mean) / (gaps.std + 0.5) if gaps.n > 1 else 0.0,  # gap_z
        features.depth_recent.mean - features.depth.mean if ended else 0.0,  # depth_trend
        features.cart_sessions / ended if ended else 0.0,  # cart_share
        float(features.problems),  # problems_total
        features.problems_week.value(now),  # problems_week
        features.support_week.value(now),  # support_week
        float(features.low_scores),  # low_scores
        float(features.mid_scores),  # mid_scores
        0.5 if features.score_last is None else features.score_last,  # score_last
    ]


def vector(state: UserState, now: float) -> dict[str, float]:
    """The features the models read, as of ``now``, by name: :func:`feature_values` as a dict."""
    return dict(zip(FEATURE_NAMES, feature_values(state, now), strict=True))


def _learn(
    model: MonitoredClassifier, snapshot: Snapshot, label: str, now: float, learned: list[Learned]
) -> None:
    if model.binary:
        drifted = model.learn_values(snapshot.x, label == CHURNED, {True: snapshot.predicted[CHURNED]})
    else:
        drifted = model.learn_values(snapshot.x, label, snapshot.predicted)
    learned.append(Learned(model.name, label, max(0.0, now - snapshot.taken_at), drifted, snapshot))


def _label_intents(state: UserState, models: PartitionModels, label: str, now: float, out: list) -> None:
    for snapshot in state.pending.intent:
        _learn(models.intent, snapshot, label, now, out)
    state.pending.intent.clear()
    state.pending.session_ends_at = None


def _label_churn(state: UserState, models: PartitionModels, churned: bool, now: float, out: list) -> None:
    snapshot = state.pending.churn
    if snapshot is not None:
        _learn(models.churn, snapshot, CHURNED if churned else STAYED, now, out)
        state.pending.churn = None


def _hold_stayed(state: UserState, models: PartitionModels, now: float, out: list) -> None:
    """The user came back within the horizon: their churn example is not churned, and waits for its
    horizon to pass (:attr:`models.examples.PendingExamples.stayed`)."""
    pending = state.pending
    if pending.churn is not None:
        pending.stayed.append(pending.churn)
        pending.churn = None
    while len(pending.stayed) > MAX_STAYED:  # a very frequent visitor: the oldest is learned early
        _learn(models.churn, pending.stayed.pop(0), STAYED, now, out)


def _learn_stayed(state: UserState, models: PartitionModels, now: float, horizon: float, out: list) -> None:
    """Learn the examples known not churned whose horizon has passed."""
    stayed = state.pending.stayed
    while stayed and now >= stayed[0].taken_at + horizon:
        _learn(models.churn, stayed.pop(0), STAYED, now, out)


def observe(
    state: UserState,
    event: Event | None,
    models: PartitionModels | None,
    rules: ModelRules,
    now: float,
    session_gap: float = 1800.0,
) -> ModelRound:
    """After ``event`` (None: a timer tick at ``now``) was applied to ``state``: see the module."""
    ended = None if event is None else learn_event(state.features, event, state.sessions)
    if models is None:
        return ModelRound()
    learned: list[Learned] = []
    pending, session = state.pending, state.features.session
    clickstream = event is not None and event.source == CLICKSTREAM
    asked = event is not None and event.source == CONVERSATIONS and event.attrs.get("role") == CUSTOMER
    if event is None:  # a tick: labels that fell due by time alone
        if pending.intent and pending.session_ends_at is not None and now >= pending.session_ends_at:
            session.intent = session.ended_intent()
            _label_intents(state, models, session.intent, now, learned)
        if pending.churn is not None and now >= pending.churn.taken_at + rules.churn_horizon:
            _label_churn(state, models, True, now, learned)
    else:
        if ended is not None and pending.intent:
            _label_intents(state, models, ended.ended_intent(), now, learned)
        if session.intent is not None and pending.intent:
            _label_intents(state, models, session.intent, now, learned)
        if clickstream and pending.churn is not None and pending.churn.session != session.number:
            if now - pending.churn.taken_at < rules.churn_horizon:  # back in time
                _hold_stayed(state, models, now, learned)
            else:
                _label_churn(state, models, True, now, learned)
        if event.source == SUBSCRIPTIONS and event.attrs["status"] == "cancelled":
            _label_churn(state, models, True, now, learned)
    _learn_stayed(state, models, now, rules.churn_horizon, learned)

    x = feature_values(state, now)
    values = np.array(x)  # one array for both models
    # Intent is about the web session: only a click or the customer's chat message moves it (and
    # predicting costs most of the time).
    if clickstream or asked or state.scores is None:
        intent = models.intent.predict_proba_values(values)
    else:
        intent = state.scores.intent
    # Churn learns from the features after the user's latest activity (the example kept below): it is
    # asked only there, at a click or an event that updates that example. A tick long after the visit is
    # a state it never learned from (it answered near 1 there): the score stays as the activity left it.
    if clickstream or (event is not None and pending.churn is not None) or state.scores is None:
        churn = models.churn.predict_proba_values(values)[True]
    else:
        churn = state.scores.churn
    if clickstream:
        assert event is not None
        web_session = "session_id" in event.attrs  # support chats and feedback are not web sessions
        if web_session and session.intent is None and session.events in SNAPSHOT_AT:
            pending.intent.append(Snapshot(x, intent, now, session.number))
        if pending.intent:
            pending.session_ends_at = session.last_at + session_gap
        pending.churn = Snapshot(x, {CHURNED: churn}, now, session.number)
    elif event is not None and pending.churn is not None:
        # The user's other events (a delivery gone wrong minutes after the order) tell about their
        # latest activity: its example takes the features as they now stand, and keeps its time.
        pending.churn = Snapshot(x, {CHURNED: churn}, pending.churn.taken_at, pending.churn.session)
    satisfaction = satisfaction_of(state.features)
    scores = Scores(
        intent={label: round(p, 4) for label, p in intent.items()},
        churn=round(churn, 4),
        health=health_score(churn, satisfaction),
        satisfaction=None if satisfaction is None else round(satisfaction, 4),
        scored_at=now,
        event_id="" if event is None else event.event_id,
        intent_examples=models.intent.examples,
        churn_examples=models.churn.examples,
    )
    publish = scores.moved(state.scores, rules.publish_delta, rules.publish_interval)
    if publish:
        state.scores = scores
    return ModelRound(scores, publish, learned)
