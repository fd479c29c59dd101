"""The online models: exact features, labels on the right snapshot, no leakage, checkpoints that
restore exactly, and model-driven triggers."""

from __future__ import annotations

import math
import random

import orjson
import pytest
from river import metrics, stats

from models.examples import SNAPSHOT_AT
from models.features import BROWSE, LEAVE, NEED_HELP, PURCHASE, UserFeatures, bucket_of, learn_event
from models.health import Scores, health_score
from models.learners import PartitionModels
from models.stats import DecayedCount, EWMean, MeanVar
from streams.contracts.events import Event
from streams.domain.policy import ModelRules, PolicyError, load_policy
from streams.domain.prediction import CHURNED, observe, vector
from streams.domain.state import UserState, apply_event
from streams.domain.triggers import check_predictions
from streams.tools.simulation import InProcessPartition
from streams.tools.traffic.generator import TrafficGenerator
from streams.tools.traffic.profile import TrafficProfile
from streams.worker.codec import DataclassCodec, PartitionModelsCodec

DAY = 86400.0
RULES = ModelRules(churn_horizon=10 * DAY)


def click(user: str, event_id: str, kind: str, time: float, session: str | None = "s1", **attrs) -> Event:
    if session is not None:
        attrs["session_id"] = session
    return Event(event_id, kind, "clickstream", time, user, attrs)


def turn(state: UserState, event: Event | None, models: PartitionModels | None, now: float):
    if event is not None:
        apply_event(state, event)
    return observe(state, event, models, RULES, now)


# --- statistics and features, exact


def test_statistics_agree_with_river_and_hand_computation() -> None:
    values = [0.5, 2.0, 3.5, 3.5, 10.0]
    ours, river_var = MeanVar(), stats.Var()
    fast, river_ew = EWMean(0.5), stats.EWMean(fading_factor=0.5)
    for value in values:
        ours.update(value)
        river_var.update(value)
        fast.update(value)
        river_ew.update(value)
    assert ours.mean == pytest.approx(3.9, abs=1e-12)
    assert ours.variance == pytest.approx(river_var.get(), abs=1e-12)
    assert ours.variance == pytest.approx(sum((v - 3.9) ** 2 for v in values) / 4, abs=1e-12)
    assert fast.mean == pytest.approx(river_ew.get(), abs=1e-12)
    # EWMA by hand: 0.5, then 1.25, 2.375, 2.9375, 6.46875
    assert fast.mean == pytest.approx(6.46875, abs=1e-12)
    count = DecayedCount(tau=DAY)
    for time in (0.0, DAY, 2 * DAY):
        count.update(time)
    assert count.value(2 * DAY) == pytest.approx(1 + math.exp(-1) + math.exp(-2), abs=1e-12)
    assert count.rate(3 * DAY) == pytest.approx(count.value(2 * DAY) * math.exp(-1) / DAY, abs=1e-18)


def test_features_of_a_session_are_exact() -> None:
    features = UserFeatures()
    events = [
        click("u1", "e1", "page_view", 1000.0, page="/c/phones", category="phones"),
        click("u1", "e2", "page_view", 1009.0, page="/p/sku-001", category="cases"),
        click("u1", "e3", "search", 1012.0, query="Refund policy"),
        click("u1", "e4", "page_view", 1015.0, page="/help/returns", category="help"),
        click("u1", "e5", "add_to_cart", 1030.0, sku="sku-001", quantity=2, price=12.5),
    ]
    for event in events:
        learn_event(features, event, session_number=1)
    session = features.session
    assert (session.events, session.category_views, session.product_views, session.help_views) == (5, 1, 1, 1)
    assert (session.searches, session.cart_adds, session.cart_value, session.first_cart_at) == (
        1,
        1,
        25.0,
        1030.0,
    )
    expected: dict[str, float] = {}
    for token in ("c:phones", "c:cases", "t:phones>cases", "q:refund", "q:policy", "c:help", "t:cases>help"):
        expected[bucket_of(token)] = expected.get(bucket_of(token), 0.0) + 1.0
    assert session.hashed == expected
    gaps = [9.0, 3.0, 3.0, 15.0]
    assert features.dwell.n == 4
    assert features.dwell.mean == pytest.approx(sum(math.log1p(g) for g in gaps) / 4, abs=1e-12)
    assert features.events.value(1030.0) == pytest.approx(
        sum(math.exp(-(1030.0 - e.event_time) / DAY) for e in events), abs=1e-12
    )
    # Feedback: scores 5, 1 scaled to 1.0, 0.0; level EWMA(0.3) = 0.3*0 + 0.7*1 = 0.7; trend = 0.5 - 0.9.
    for index, score in enumerate((5, 1)):
        learn_event(
            features, click("u1", f"f{index}", "feedback", 2000.0 + index, session=None, score=score), 1
        )
    assert features.satisfaction.mean == pytest.approx(0.7)
    assert features.satisfaction_trend() == pytest.approx(0.5 - 0.9)
    # The next visit ends the session: depth is log(1 + 7 events).
    ended = learn_event(features, click("u1", "e9", "page_view", 9000.0, session="s2", page="/"), 2)
    assert ended is session and features.depth.mean == pytest.approx(math.log1p(7))
    assert features.session.events == 1 and features.session.started_at == 9000.0


def test_delivery_problems_and_health_score() -> None:
    features = UserFeatures()
    attrs = {"shipment_id": "sh1", "order_id": "o1", "promised_eta": 5000.0, "eta": 20000.0}
    learn_event(features, Event("l1", "delayed", "logistics", 100.0, "u1", attrs), 0)
    learn_event(features, Event("l2", "in_transit", "logistics", 200.0, "u1", attrs), 0)
    assert features.delivery_problems.value(100.0) == 1.0 and features.last_delivery_problem_at == 100.0
    assert health_score(0.0, None) == 100 and health_score(1.0, None) == 0
    assert health_score(0.5, 1.0) == 65 and health_score(0.5, 0.0) == 35


# --- labels


def test_intent_examples_are_the_snapshots_before_the_label_event() -> None:
    state, models = UserState("u1"), PartitionModels()
    kinds = [
        "page_view",
        "search",
        "page_view",
        "add_to_cart",
        "page_view",
        "page_view",
        "search",
        "page_view",
    ]
    for index, kind in enumerate(kinds):
        attrs = (
            {"page": "/p/x"} if kind == "page_view" else {"query": "q"} if kind == "search" else {"sku": "s"}
        )
        turn(state, click("u1", f"e{index}", kind, 100.0 + 10 * index, **attrs), models, 100.0 + 10 * index)
    assert [round(math.expm1(s.features()["s_events"])) for s in state.pending.intent] == list(SNAPSHOT_AT)
    snapshots = list(state.pending.intent)
    done = turn(state, click("u1", "e9", "order_completed", 200.0, order_id="o1"), models, 200.0)
    assert [(learned.model, learned.label) for learned in done.learned] == [("intent", PURCHASE)] * 3
    assert [learned.delay for learned in done.learned] == [200.0 - s.taken_at for s in snapshots]
    # The label event is in no snapshot: the last one was taken at the 8th event, before the order.
    assert all(s.features()["orders_month"] == 0.0 for s in snapshots)
    assert state.pending.intent == [] and models.intent.examples == 3
    # Later events of a session that showed its intent keep no snapshot.
    turn(state, click("u1", "e10", "page_view", 210.0, page="/"), models, 210.0)
    assert state.pending.intent == []


@pytest.mark.parametrize(
    ("kinds", "label"),
    [(["page_view", "page_view"], BROWSE), (["page_view", "add_to_cart"], LEAVE)],
)
def test_a_session_that_ends_without_an_order_or_a_contact(kinds: list[str], label: str) -> None:
    state, models = UserState("u1"), PartitionModels()
    for index, kind in enumerate(kinds):
        attrs = {"page": "/c/a"} if kind == "page_view" else {"sku": "s1", "price": 5.0}
        turn(state, click("u1", f"e{index}", kind, 100.0 + index, **attrs), models, 100.0 + index)
    assert state.pending.session_ends_at == 101.0 + 1800.0
    assert turn(state, None, models, 1900.0).learned == []  # not yet
    done = turn(state, None, models, 1901.0)  # the timer: the session ended
    assert [(learned.model, learned.label) for learned in done.learned] == [("intent", label)]
    # The user's next visit does not label that session again (and holds its churn example: not churned).
    done = turn(state, click("u1", "e5", "page_view", 5000.0, session="s2", page="/"), models, 5000.0)
    assert done.learned == [] and len(state.pending.stayed) == 1


def test_the_next_visit_labels_a_session_whose_end_was_not_yet_ticked() -> None:
    state, models = UserState("u1"), PartitionModels()
    turn(state, click("u1", "e1", "page_view", 100.0, page="/c/a"), models, 100.0)
    done = turn(state, click("u1", "e2", "support_contact", 200.0, session="s2"), models, 200.0)
    # s1 ended (new session id) as browsing; s2 itself showed need-help at its first event: no snapshot.
    assert [(learned.model, learned.label) for learned in done.learned] == [("intent", BROWSE)]
    assert [snapshot.taken_at for snapshot in state.pending.stayed] == [100.0]  # not churned: held
    assert state.pending.intent == [] and state.features.session.intent == NEED_HELP


def test_churn_labels_come_from_the_horizon_the_next_visit_or_a_cancellation() -> None:
    state, models = UserState("u1"), PartitionModels()
    turn(state, click("u1", "e1", "page_view", 0.0, page="/"), models, 0.0)
    turn(state, click("u1", "e2", "page_view", 60.0, page="/a"), models, 60.0)  # same session: replaced
    assert state.pending.churn is not None and state.pending.churn.taken_at == 60.0
    assert state.pending.deadline(RULES.churn_horizon) == 60.0 + 1800.0  # the session's end comes first
    done = turn(state, None, models, 60.0 + 10 * DAY - 1)
    assert [(learned.model, learned.label) for learned in done.learned] == [("intent", BROWSE)]
    assert state.pending.deadline(RULES.churn_horizon) == 60.0 + 10 * DAY
    done = turn(state, None, models, 60.0 + 10 * DAY)
    assert [(learned.model, learned.label) for learned in done.learned] == [("churn", CHURNED)]
    assert state.pending.churn is None
    # Back after churning: a new example, labelled by the cancellation that follows.
    turn(state, click("u1", "e3", "page_view", 20 * DAY, session="s2", page="/"), models, 20 * DAY)
    cancel = Event(
        "b1",
        "subscription_updated",
        "subscriptions",
        20 * DAY + 5,
        "u1",
        {"subscription_id": "sub1", "plan": "pro", "status": "cancelled", "renews_at": 40 * DAY},
    )
    done = turn(state, cancel, models, 20 * DAY + 5)
    assert [(learned.model, learned.label) for learned in done.learned] == [("churn", CHURNED)]
    assert models.churn.examples == 2


def test_a_label_that_leaked_would_be_learned_perfectly_and_here_is_not() -> None:
    """Every session looks the same until its last event, which is the label (order or support
    contact, a coin flip). A model shown the label event would be right every time; ours must be at
    chance, since the snapshots hold only what came before the label."""
    draw = random.Random(3)
    models, leaked = PartitionModels(), PartitionModels()
    for user_index in range(1500):
        user = f"u{user_index}"
        state = UserState(user)
        start = 1000.0 * user_index
        for step in range(3):
            event = click(user, f"{user}-{step}", "page_view", start + step, page="/c/a")
            turn(state, event, models, start + step)
        label_kind = draw.choice(["order_completed", "support_contact"])
        attrs = {"order_id": "o"} if label_kind == "order_completed" else {}
        done = turn(state, click(user, f"{user}-label", label_kind, start + 5, **attrs), models, start + 5)
        label = PURCHASE if label_kind == "order_completed" else NEED_HELP
        assert [learned.label for learned in done.learned] == [label, label]  # after events 1 and 3
        # The control: the features as they stand after the label event, as a leaking pipeline would
        # keep them.
        x = vector(state, start + 5)
        leaked.intent.learn_one(x, label, leaked.intent.predict_proba_one(x))
    assert models.intent.examples == 1500 * 2
    assert leaked.intent.quality()["accuracy"] > 0.95  # what leakage looks like
    assert 0.4 < models.intent.quality()["accuracy"] < 0.6  # ours: a coin flip, as it must be


# --- checkpoints


def _learned_models(seed: int) -> tuple[PartitionModels, list[dict[str, float]]]:
    draw = random.Random(seed)
    models = PartitionModels()
    xs = []
    for _ in range(400):
        x = {"a": draw.random(), "b": draw.random(), "c": float(draw.randrange(3))}
        label = PURCHASE if x["a"] > 0.5 else BROWSE
        models.intent.learn_one(x, label, models.intent.predict_proba_one(x))
        models.churn.learn_one(x, x["b"] > 0.7, models.churn.predict_proba_one(x))
        xs.append(x)
    return models, xs


def test_checkpoint_then_restore_gives_identical_predictions_and_learning() -> None:
    codec = PartitionModelsCodec(b"a cluster secret")
    models, xs = _learned_models(5)
    restored = codec.loads(codec.dumps(models))
    for x in xs[:50]:
        assert restored.intent.predict_proba_one(x) == models.intent.predict_proba_one(x)
        assert restored.churn.predict_proba_one(x) == models.churn.predict_proba_one(x)
    assert restored.intent.quality() == models.intent.quality()
    assert restored.churn.examples == models.churn.examples == 400
    for x in xs[:30]:  # both go on learning the same
        for copy in (models, restored):
            copy.churn.learn_one(x, True, copy.churn.predict_proba_one(x))
    assert [restored.churn.predict_proba_one(x) for x in xs] == [
        models.churn.predict_proba_one(x) for x in xs
    ]


def test_a_users_features_and_pending_examples_survive_the_changelog_codec() -> None:
    state, models = UserState("u1"), PartitionModels()
    turn(state, click("u1", "e1", "search", 100.0, query="warranty claim"), models, 100.0)
    turn(state, click("u1", "e2", "feedback", 150.0, session=None, score=2), models, 150.0)
    codec = DataclassCodec(UserState)
    restored = codec.loads(codec.dumps(state))
    assert restored == state
    assert vector(restored, 300.0) == vector(state, 300.0)
    checkpoints = PartitionModelsCodec(b"a cluster secret")
    twin = checkpoints.loads(checkpoints.dumps(models))
    assert observe(restored, None, twin, RULES, 3000.0) == observe(state, None, models, RULES, 3000.0)


# --- scores and model-driven triggers


def _scores(**overrides) -> Scores:
    values = {
        "intent": {PURCHASE: 0.1, NEED_HELP: 0.8, BROWSE: 0.05, LEAVE: 0.05},
        "churn": 0.2,
        "health": 80,
        "satisfaction": None,
        "scored_at": 0.0,
        "event_id": "e1",
        "intent_examples": 1000,
        "churn_examples": 1000,
    }
    return Scores(**{**values, **overrides})


def test_scores_are_published_when_they_move() -> None:
    before = _scores()
    assert _scores().moved(None, 0.05)
    assert not _scores(churn=0.24).moved(before, 0.05)
    assert _scores(churn=0.26).moved(before, 0.05)
    assert _scores(satisfaction=0.4).moved(before, 0.05)
    # At most once per interval of event time, however much they moved.
    assert not _scores(churn=0.9, scored_at=299.0).moved(before, 0.05, interval=300.0)
    assert _scores(churn=0.9, scored_at=300.0).moved(before, 0.05, interval=300.0)
    moved_intent = {PURCHASE: 0.2, NEED_HELP: 0.7, BROWSE: 0.05, LEAVE: 0.05}
    assert _scores(intent=moved_intent).moved(before, 0.05)


def test_model_triggers_fire_once_past_threshold_and_warm_up() -> None:
    policy = load_policy(text="experiments = []\n")
    state = UserState("u1")
    apply_event(state, click("u1", "e1", "page_view", 100.0, page="/help/returns", category="help"))
    learn_event(state.features, click("u1", "e1", "page_view", 100.0, page="/help/returns"), state.sessions)
    assert check_predictions(state, _scores(intent_examples=10), 100.0, policy) == []  # warming up
    fired = check_predictions(state, _scores(), 100.0, policy)
    assert [i.trigger for i in fired] == ["proactive_help"]
    assert fired[0].evidence["intent"][NEED_HELP] == 0.8
    assert check_predictions(state, _scores(), 101.0, policy) == []  # once per session
    risky = check_predictions(state, _scores(churn=0.9), 102.0, policy)
    assert [i.trigger for i in risky] == ["retention_offer"]
    assert check_predictions(UserState("u3"), _scores(churn=0.9), 102.0, policy) == []  # never visited
    # Purchase intent with a cart waiting, no checkout.
    buyer = UserState("u2")
    for event in (
        click("u2", "b1", "page_view", 100.0, page="/p/a"),
        click("u2", "b2", "add_to_cart", 110.0, sku="a", price=10.0),
    ):
        apply_event(buyer, event)
        learn_event(buyer.features, event, buyer.sessions)
    keen = _scores(intent={PURCHASE: 0.8, NEED_HELP: 0.1, BROWSE: 0.05, LEAVE: 0.05})
    assert check_predictions(buyer, keen, 150.0, policy) == []  # 40 s in the cart: not yet hesitating
    assert [i.trigger for i in check_predictions(buyer, keen, 171.0, policy)] == ["recommendation"]


def test_the_models_section_of_the_policy_is_checked() -> None:
    policy = load_policy(text='[models]\nchurn_horizon = "14d"\npublish_delta = 0.1\n')
    assert policy.models == ModelRules(14 * DAY, 0.1, 300.0)
    with pytest.raises(PolicyError, match=r"\[models\]: field 'churn_horizon' must be a duration"):
        load_policy(text='[models]\nchurn_horizon = "soon"\n', name="ops.toml")
    with pytest.raises(PolicyError, match="field 'horizon' is not known"):
        load_policy(text='[models]\nhorizon = "14d"\n', name="ops.toml")


def test_scores_wire_form_is_json() -> None:
    wire = _scores(scored_at=1_764_000_000.0).to_wire("u1")
    assert orjson.loads(orjson.dumps(wire))["scored_at"] == "2025-11-24T16:00:00.000Z"


# --- quality on a seeded stream with a ground truth


def _auc(labels: list[bool], scores: list[float]) -> float:
    """Exact ROC AUC (Mann-Whitney), ties counted half."""
    ranked = sorted(zip(scores, labels, strict=True))
    positives = sum(labels)
    negatives = len(labels) - positives
    rank_sum, index = 0.0, 0
    while index < len(ranked):
        end = index
        while end < len(ranked) and ranked[end][0] == ranked[index][0]:
            end += 1
        average_rank = (index + end + 1) / 2  # ranks index+1 .. end
        rank_sum += average_rank * sum(1 for _, label in ranked[index:end] if label)
        index = end
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def test_auc_helper_is_exact() -> None:
    assert _auc([False, True], [0.1, 0.9]) == 1.0 and _auc([True, False], [0.1, 0.9]) == 0.0
    assert _auc([False, True, False, True], [0.5, 0.5, 0.2, 0.8]) == 0.875


def test_the_models_beat_no_skill_on_a_seeded_stream_with_latent_user_types() -> None:
    """Buyers, help-seekers, browsers and at-risk users (streams.tools.traffic.generator), a session per user
    a day, through the worker's per-user path (streams.tools.simulation); every example is scored by the
    prediction made when its features were taken (progressive validation)."""
    start, day, horizon, warmup, days = 1_760_000_000.0, DAY, 4.0, 10.0, 20.0
    policy = load_policy(text=f'experiments = []\n[models]\nchurn_horizon = "{horizon:g}d"\n')
    users = 800
    profile = TrafficProfile(sessions_per_second=users / day, users=users, subscription_share=0.3)
    traffic = TrafficGenerator(profile, seed=11, start=start)
    measured: list = []

    def record(done) -> None:
        for learned in done.model.learned:
            taken = learned.snapshot.taken_at
            if start + warmup * day <= taken < start + (days - horizon) * day:
                measured.append(learned)

    partition = InProcessPartition(policy, PartitionModels(), on_round=record)
    clock = start
    while clock < start + days * day:
        clock += 600.0
        for message in traffic.due(clock):
            partition.feed(message)

    churn = [learned for learned in measured if learned.model == "churn"]
    labels = [learned.label == CHURNED for learned in churn]
    auc = _auc(labels, [learned.snapshot.predicted[CHURNED] for learned in churn])
    intent = [learned for learned in measured if learned.model == "intent"]
    truth = [learned.label for learned in intent]
    guesses = [
        max(s.predicted, key=s.predicted.__getitem__) for s in (learned.snapshot for learned in intent)
    ]
    majority = max(set(truth), key=truth.count)
    macro_f1, no_skill = metrics.MacroF1(), metrics.MacroF1()
    for label, guess in zip(truth, guesses, strict=True):
        macro_f1.update(label, guess)
        no_skill.update(label, majority)
    assert sum(labels) >= 50 and len(intent) >= 5000  # enough to judge
    assert auc >= 0.65, auc  # no skill: 0.5
    assert macro_f1.get() >= no_skill.get() + 0.25, (macro_f1.get(), no_skill.get())
