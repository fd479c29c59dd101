"""Chat conversations: the ``conversations`` contract, the emotion trajectory in the user's state, the
``escalate_to_human`` trigger through the contact policy, emotion corrections, and what ClickHouse keeps."""

from __future__ import annotations

import math
import pickle
from types import SimpleNamespace

import orjson
import pytest

from models.emotion import EmotionModel
from models.features import CONVERSATION_FEATURES, FEATURE_NAMES, TOPICS, topic_of
from models.health import Scores
from models.learners import PartitionModels
from sinks.rows import event_rows
from streams.contracts.events import CONVERSATIONS, InvalidEvent, parse_event
from streams.contracts.feedback import EmotionCorrection, parse_label
from streams.contracts.internal import read_correction
from streams.domain.contact import decide
from streams.domain.policy import load_policy
from streams.domain.prediction import vector
from streams.domain.rounds import StateSnapshot, run_round
from streams.domain.state import MAX_RECENT_MESSAGES, Shipment, UserState
from streams.domain.triggers import check_predictions
from streams.processes.catalog import load_catalog
from streams.worker.agents.users import learn_correction

T = 1_764_000_000_000  # 2025-11-24T16:00:00Z in epoch ms: 16:00 UTC, outside the quiet hours
POLICY = load_policy(text="experiments = []")
ANGRY, CALM, GLAD = "This is ridiculous!!", "Where is my order?", "Thanks, that helps a lot"


def message(event_id: str, text: str, *, at: int = 0, role: str = "customer", **fields: object) -> dict:
    """A ``conversations`` message in its wire form (what the user agent reads), ``at`` seconds after T."""
    attrs = {"session_id": "c1", "role": role, "text": text, "channel": "chat", **fields}
    return {
        "schema": 1,
        "event_id": event_id,
        "event_type": "message",
        "source": CONVERSATIONS,
        "event_time": T + at * 1000,
        "user_id": "u1",
        "attrs": attrs,
    }


def chat(state: UserState, *texts: str, role: str = "customer", start: int = 0) -> list:
    """The decisions of the rounds of ``texts`` as the user's messages, 10 s apart."""
    decisions = []
    for number, text in enumerate(texts):
        event = message(f"m{start + number}", text, at=start + 10 * number, role=role)
        decisions += run_round(state, event, tick=False, policy=POLICY).decisions
    return decisions


# --- the contract


def raw(**fields: object) -> bytes:
    base = {"event_id": "m1", "event_type": "message", "event_time": T, "user_id": "u1", "session_id": "c1"}
    return orjson.dumps({**base, "role": "customer", "text": "hi", "channel": "chat", **fields})


def test_a_message_with_its_optional_fields_is_accepted() -> None:
    event = parse_event(raw(product_id="phone-a3", intent_id="where_is_my_order", extra=1), CONVERSATIONS)
    assert (event.source, event.event_type, event.event_id) == (CONVERSATIONS, "message", "m1")
    assert event.attrs == {
        "session_id": "c1",
        "role": "customer",
        "text": "hi",
        "channel": "chat",
        "product_id": "phone-a3",
        "intent_id": "where_is_my_order",
    }


@pytest.mark.parametrize(
    ("fields", "reason", "detail"),
    [
        ({"session_id": None}, "missing_field", "field 'session_id' is required for message"),
        ({"text": None}, "missing_field", "field 'text' is required for message"),
        ({"channel": None}, "missing_field", "field 'channel' is required for message"),
        ({"role": "bot"}, "invalid_value", "field 'role' must be one of customer, agent, human"),
        ({"text": "   "}, "invalid_value", "field 'text' must not be blank"),
        ({"text": "x" * 1025}, "invalid_value", "field 'text' is longer than 1024 characters"),
        ({"text": 3}, "wrong_type", "field 'text' must be a string, got int"),
        (
            {"channel": "Chat room"},
            "invalid_value",
            "field 'channel' must be a lower-case name such as 'chat'",
        ),
        ({"product_id": ""}, "invalid_value", "field 'product_id' must be 1-128 printable characters"),
        ({"event_type": "typing"}, "unknown_event_type", "'typing' is not a conversations event type"),
    ],
)
def test_a_bad_message_is_refused_with_a_bounded_reason(fields: dict, reason: str, detail: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw(**fields), CONVERSATIONS)
    assert (caught.value.reason, caught.value.detail) == (reason, detail)


# --- the emotion trajectory in the user's state


def test_the_trajectory_counts_the_negative_run_and_keeps_no_text() -> None:
    state = UserState("u1")
    chat(state, GLAD, CALM, ANGRY, ANGRY)
    conversation = state.conversation
    assert (conversation.messages, conversation.scored, conversation.emotion) == (4, 4, "anger")
    assert (conversation.negative_run, conversation.negative_since) == (2, "m2")
    assert conversation.trend < 0 and conversation.level < conversation.slow
    assert [m["emotion"] for m in conversation.recent] == ["satisfaction", "neutral", "anger", "anger"]
    assert ANGRY not in orjson.dumps(state).decode()  # the text is read, never kept
    chat(state, GLAD, start=100)
    assert (conversation.negative_run, conversation.negative_since) == (0, None)


def test_the_trajectory_is_bounded_and_an_agents_messages_do_not_count() -> None:
    state = UserState("u1")
    chat(state, *[ANGRY] * (MAX_RECENT_MESSAGES + 5))
    chat(state, ANGRY, ANGRY, role="agent", start=1000)
    conversation = state.conversation
    assert len(conversation.recent) == MAX_RECENT_MESSAGES
    assert conversation.negative_run == conversation.messages == MAX_RECENT_MESSAGES + 5


def test_a_new_chat_session_resets_the_run_and_the_product_asked() -> None:
    state = UserState("u1")
    run_round(state, message("m1", ANGRY, product_id="p1"), tick=False, policy=POLICY)
    later = message("m2", CALM, at=3600)
    later["attrs"]["session_id"] = "c2"
    run_round(state, later, tick=False, policy=POLICY)
    assert (state.conversation.session_id, state.conversation.messages) == ("c2", 1)
    assert (state.conversation.asked_product, state.conversation.negative_run) == (None, 0)
    assert state.conversation.scored == 2  # the trajectory itself goes on


def test_a_state_written_before_conversations_loads_and_one_with_them_round_trips() -> None:
    state = UserState("u1")
    chat(state, ANGRY, ANGRY)
    data = orjson.loads(orjson.dumps(state))
    assert UserState.from_dict(data) == state
    old = {key: value for key, value in data.items() if key != "conversation"}
    loaded = UserState.from_dict(old)
    assert loaded.conversation.scored == 0 and loaded.events_seen == 2
    assert StateSnapshot(state).restore() == state


# --- the trigger, through the contact policy


def escalations(decisions: list) -> list:
    return [d for d in decisions if d.intervention.trigger == "escalate_to_human"]


def test_three_negative_customer_messages_escalate_once_to_the_human_queue() -> None:
    state = UserState("u1")
    assert escalations(chat(state, CALM, ANGRY, ANGRY)) == []
    [decision] = escalations(chat(state, ANGRY, start=30))
    intervention = decision.intervention
    assert (decision.decision, intervention.channel, intervention.action) == (
        "emitted",
        "human_queue",
        "escalate_to_human",
    )
    evidence = intervention.evidence
    assert [m["emotion"] for m in evidence["emotions"]] == ["anger"] * 3
    assert evidence["negative_messages"] == 3 and evidence["open_problem"] is None
    assert ANGRY not in orjson.dumps(evidence).decode()
    assert intervention.source_event_id == "m30"
    assert escalations(chat(state, ANGRY, ANGRY, start=40)) == []  # once per negative episode
    chat(state, GLAD, start=60)
    assert escalations(chat(state, ANGRY, ANGRY, ANGRY, start=70))  # a new episode


def test_negative_messages_of_the_agent_or_a_human_never_escalate() -> None:
    state = UserState("u1")
    assert escalations(chat(state, ANGRY, ANGRY, ANGRY, ANGRY, role="agent")) == []
    assert escalations(chat(state, ANGRY, ANGRY, ANGRY, role="human", start=100)) == []


def late_shipment(state: UserState) -> None:
    promised = T / 1000 - 3600
    state.open_shipments["sh1"] = Shipment("sh1", "o1", promised, promised + 7200, "delayed", promised)


def open_ticket(state: UserState) -> None:
    state.devices.requests["r1"] = T / 1000 - 86400


def failed_payment(state: UserState) -> None:
    failure = {"schema": 1, "event_id": "c0", "event_type": "payment_failed", "source": "clickstream"}
    failure |= {"event_time": T - 60_000, "user_id": "u1", "attrs": {"session_id": "s1"}}
    run_round(state, failure, tick=False, policy=POLICY)


@pytest.mark.parametrize(
    ("problem", "kind"),
    [(late_shipment, "late_shipment"), (open_ticket, "open_ticket"), (failed_payment, "failed_payment")],
)
def test_one_negative_message_escalates_at_once_with_an_open_problem(problem, kind: str) -> None:
    state = UserState("u1")
    problem(state)
    assert escalations(chat(state, GLAD, CALM)) == []  # not negative: no hand-over, problem or not
    [decision] = escalations(chat(state, ANGRY, start=20))
    assert decision.decision == "emitted"
    assert decision.intervention.evidence["open_problem"]["kind"] == kind
    assert decision.intervention.reason == f"negative emotion with an open problem ({kind})"


def test_without_a_problem_one_negative_message_is_not_enough() -> None:
    state = UserState("u1")
    open_ticket(state)
    state.devices.requests["r1"] = T / 1000 - 30 * 86400  # a ticket of a month ago is not open
    assert escalations(chat(state, ANGRY)) == []


def test_the_escalation_obeys_the_contact_policy() -> None:
    state = UserState("u1")
    state.preferences.opt_out = True
    [decision] = escalations(chat(state, ANGRY, ANGRY, ANGRY))
    assert (decision.decision, decision.reason) == ("suppressed", "opted_out")
    allowed = UserState("u1")
    allowed.preferences.channels["human_queue"] = False
    [decision] = escalations(chat(allowed, ANGRY, ANGRY, ANGRY))
    assert (decision.decision, decision.reason) == ("suppressed", "channel_opted_out")
    [decision] = decide([decision.intervention], UserState("u1"), POLICY, now=T / 1000)
    assert decision.decision == "emitted"


def test_the_messages_parameter_sets_the_run_needed() -> None:
    policy = load_policy(text="experiments = []\n[triggers.escalate_to_human]\nmessages = 1\n")
    state = UserState("u1")
    decisions = run_round(state, message("m1", ANGRY), tick=False, policy=policy).decisions
    assert [d.intervention.trigger for d in decisions] == ["escalate_to_human"]


# --- emotions read by the partition's model, corrections through the labels topic


def test_the_round_reads_the_emotion_with_the_partitions_model() -> None:
    models = PartitionModels()
    text = "The Echo Buds came in a blue box"  # neutral to the lexicon
    for _ in range(40):
        models.emotion.learn_one(text, "anger")
    state = UserState("u1")
    run_round(state, message("m1", text), tick=False, policy=POLICY, models=models)
    assert state.conversation.emotion == "anger"
    run_round(state, message("m2", text, at=10), tick=False, policy=POLICY)  # no models: the lexicon
    assert state.conversation.emotion == "neutral"


def correction_bytes(**fields: object) -> bytes:
    base = {"kind": "emotion", "message_id": "m1", "text": "The Echo Buds came in a blue box"}
    return orjson.dumps({**base, "emotion": "satisfaction", "labelled_by": "ana", "labelled_at": T, **fields})


def test_an_emotion_correction_is_read_from_the_labels_topics() -> None:
    correction = parse_label(correction_bytes())
    assert isinstance(correction, EmotionCorrection)
    assert read_correction(orjson.dumps(correction.to_wire())) == correction
    assert correction.label_id == "m1"
    for fields, reason in [
        ({"emotion": "joy"}, "invalid_value"),
        ({"text": None}, "missing_field"),
        ({"message_id": 5}, "wrong_type"),
        ({"kind": "mood"}, "invalid_value"),
    ]:
        with pytest.raises(InvalidEvent) as caught:
            parse_label(correction_bytes(**fields))
        assert caught.value.reason == reason, fields


def test_a_correction_trains_the_partitions_emotion_model_once() -> None:
    models = PartitionModels()
    learned = []
    ctx = SimpleNamespace(models=SimpleNamespace(of=lambda partition: models, learned=learned.append))
    text = "The Echo Buds came in a blue box"
    assert models.emotion.predict_one(text) == "neutral"
    for number in range(40):
        correction = parse_label(correction_bytes(message_id=f"m{number}"))
        learn_correction(ctx, 3, correction)
        learn_correction(ctx, 3, correction)  # replayed: not learned again
    assert models.emotion.examples == 40 and learned == [3] * 40
    assert models.emotion.predict_one(text) == "satisfaction"
    assert models.tagger.examples == PartitionModels().tagger.examples  # the tagger learned nothing


def test_a_checkpoint_written_before_the_emotion_model_gets_a_fresh_one() -> None:
    models = PartitionModels()
    state = dict(models.__dict__)
    del state["emotion"], state["emotion_corrections"]
    restored = PartitionModels.__new__(PartitionModels)
    restored.__setstate__(state)
    assert isinstance(restored.emotion, EmotionModel) and restored.emotion_corrections == {}
    assert pickle.loads(pickle.dumps(models)).emotion.examples == 0


# --- what ClickHouse keeps


def test_clickhouse_keeps_the_role_and_emotion_of_a_message_not_its_text() -> None:
    envelope = orjson.dumps({"envelope": 1, "events": [message("m1", ANGRY, product_id="p1")]})
    [row], unreadable = event_rows(envelope, [], 0, 7)
    assert unreadable == []
    attrs = orjson.loads(row[9])
    assert ANGRY not in row[9] and "text" not in attrs
    assert (attrs["role"], attrs["emotion"], attrs["text_chars"], attrs["product_id"]) == (
        "customer",
        "anger",
        len(ANGRY),
        "p1",
    )


# --- the conversation in the intent model's features, and in the recommendation


def click(event_id: str, kind: str, at: int, **attrs: object) -> dict:
    return {
        "schema": 1,
        "event_id": event_id,
        "event_type": kind,
        "source": "clickstream",
        "event_time": T + at * 1000,
        "user_id": "u1",
        "attrs": {"session_id": "s1", **attrs},
    }


def test_the_chat_of_the_session_is_one_block_of_intent_features() -> None:
    names = list(FEATURE_NAMES)
    block = [name for name in names if name.startswith("c_")]
    assert block == list(CONVERSATION_FEATURES)
    assert names[names.index(block[0]) : names.index(block[-1]) + 1] == block  # contiguous
    state = UserState("u1")
    run_round(
        state, click("c1", "page_view", 0, page="/c/phones", category="phones"), tick=False, policy=POLICY
    )
    quiet = vector(state, T / 1000)
    assert [quiet[name] for name in block] == [0.0] * len(block)
    chat = message("m1", ANGRY, at=10, product_id="phone-aster-3", intent_id="where_is_my_order")
    run_round(state, chat, tick=False, policy=POLICY)
    run_round(state, message("m2", ANGRY, at=20, role="agent"), tick=False, policy=POLICY)
    x = vector(state, T / 1000 + 20)
    assert x["c_messages"] == pytest.approx(math.log1p(1))  # the customer's only
    assert x["c_product_asked"] == 1.0 and x["c_negative"] > 0.5
    assert x[topic_of("where_is_my_order")] == 1.0 and sum(x[name] for name in TOPICS) == 1.0
    # A new web session starts without the chat of the one before.
    run_round(state, click("c2", "page_view", 4000, page="/", session_id="s2"), tick=False, policy=POLICY)
    assert [vector(state, T / 1000 + 4000)[name] for name in block] == [0.0] * len(block)


def hesitating(state: UserState, asked: str | None) -> list:
    """The recommendation's evidence for a session that viewed laptops and searched for them, with the
    chat asking about ``asked``."""
    steps = [
        click("c1", "page_view", 0, page="/c/laptops", category="laptops"),
        click("c2", "page_view", 5, page="/p/lp", category="laptops"),
        click("c3", "search", 8, query="light laptop"),
        click("c4", "page_view", 9, page="/c/phones", category="phones"),
        click("c5", "add_to_cart", 10, sku="SKU-1", price=10.0),
    ]
    if asked is not None:
        steps.append(message("m1", CALM, at=20, product_id=asked))
    for step in steps:
        run_round(state, step, tick=False, policy=POLICY)
    scores = Scores(
        {"purchase": 0.9, "need_help": 0.1, "browse": 0.0, "leave": 0.0}, 0.1, 90, None, 0.0, "", 900, 900
    )
    catalog = load_catalog()
    return [i.evidence for i in check_predictions(state, scores, T / 1000 + 100, POLICY, catalog)]


def test_the_recommendation_names_what_the_browsing_points_at_when_the_chat_asked_another() -> None:
    [evidence] = hesitating(UserState("u1"), "phone-aster-3")
    catalog = load_catalog()
    newest = catalog.launches("laptops")[-1].product_id
    assert (evidence["asked_about"], evidence["suggested"], evidence["category"]) == (
        "phone-aster-3",
        newest,
        "laptops",
    )
    assert evidence["why"].startswith("the session viewed category laptops 2 times and searched it 1 times")
    [plain] = hesitating(UserState("u1"), None)
    assert "suggested" not in plain
    laptop = next(p.product_id for p in catalog.products.values() if p.category == "laptops")
    [same] = hesitating(UserState("u1"), laptop)
    assert "suggested" not in same  # asked about what the browsing points at: nothing to add
