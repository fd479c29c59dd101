# Chinese text is written with full-width punctuation: these are not confusable characters.
# ruff: noqa: RUF001
"""The emotion model of chat messages: the bilingual lexicon with negation and intensity, the keyword
baseline, the online model that starts from the lexicon and learns corrections, untrusted text, and
checkpoints through the workers' restricted unpickler."""

from __future__ import annotations

import io
import pickle
import random
import time

import pytest

from models.emotion import (
    EMOTIONS,
    MAX_CHARS,
    NEGATIVE,
    EmotionModel,
    keyword_emotion,
    language_of,
    lexicon_emotion,
    lexicon_scores,
)
from streams.tools.traffic.conversations import conversation_corpus
from streams.worker.checkpoints import ModelsUnpickler


def test_languages_by_script() -> None:
    assert language_of("我的订单怎么还没到") == "zh"
    assert language_of("Where is my order?") == "en"
    assert language_of("我的iPhone屏幕碎了") == "mixed"
    assert language_of("") == language_of("123 !!!") == "en"
    assert language_of("ＡＰＰ") == "en"  # full-width letters are Latin letters


@pytest.mark.parametrize(
    ("plain", "negated"),
    [
        ("I'm happy with it", "I'm not happy with it"),
        ("满意", "不满意"),
        ("这次很满意", "这次不是很满意"),
        ("The service was helpful", "The service was not helpful at all"),
        ("好用", "不好用"),
    ],
)
def test_a_negated_satisfaction_term_is_frustration(plain: str, negated: str) -> None:
    assert lexicon_emotion(plain) == "satisfaction"
    assert lexicon_emotion(negated) == "frustration"
    assert lexicon_scores(negated)["satisfaction"] == 0.0


@pytest.mark.parametrize(
    ("plain", "negated"),
    [
        ("The box was damaged", "The box was not damaged"),
        ("我很担心", "我不担心"),
        ("It is bad", "It is not bad"),
    ],
)
def test_a_negated_negative_term_is_no_longer_negative(plain: str, negated: str) -> None:
    assert lexicon_emotion(plain) in NEGATIVE
    scores = lexicon_scores(negated)
    assert scores["frustration"] == scores["anger"] == 0.0 and scores["satisfaction"] > 0.0


def test_a_negator_reaches_a_few_units_only() -> None:
    # 不知道 is masked: the 不 of "do not know" does not turn 怎么还 (still not) over.
    assert lexicon_emotion("不知道怎么还没到") == "frustration"
    # Too far: the negator's reach ends before the term.
    assert lexicon_emotion("no idea why the parcel in the end is so late") == "frustration"
    # The clause ends the negator's reach.
    assert lexicon_scores("No, thanks a lot")["satisfaction"] > 0.0


def test_intensity_raises_the_emotion() -> None:
    for mild, strong in [
        ("I'm frustrated", "I'm extremely frustrated"),
        ("满意", "非常满意"),
        ("太慢", "太慢了!!!"),
        ("This is ridiculous", "This is RIDICULOUS"),
    ]:
        emotions = NEGATIVE if lexicon_emotion(mild) in NEGATIVE else {lexicon_emotion(mild)}
        weaker, stronger = lexicon_scores(mild), lexicon_scores(strong)
        assert sum(stronger[e] for e in emotions) > sum(weaker[e] for e in emotions), (mild, strong)
    # Emphasis pushes frustration over into anger.
    assert lexicon_emotion("Still waiting for my order") == "frustration"
    assert lexicon_emotion("STILL WAITING for my order!!!") == "anger"


def test_chinese_english_and_mixed_messages() -> None:
    assert lexicon_emotion("物流太慢了，等了一个星期") == "frustration"
    assert lexicon_emotion("你们这是骗子吧，太过分了") == "anger"
    assert lexicon_emotion("收到了，非常满意，谢谢") == "satisfaction"
    assert lexicon_emotion("请问这款耳机有黑色的吗") == "neutral"
    assert lexicon_emotion("快递到了吗") == "neutral"  # 快递 is a courier, not 快 (fast)
    assert lexicon_emotion("这个order怎么还没到") == "frustration"
    assert lexicon_emotion("Echo Buds 的 battery 很好, thanks") == "satisfaction"
    assert lexicon_emotion("Does the Aster 3 come in blue?") == "neutral"


def test_the_keyword_baseline_ignores_negation_and_intensity() -> None:
    assert keyword_emotion("not happy at all") == "satisfaction"
    assert keyword_emotion("不是很满意") == "satisfaction"
    assert keyword_emotion("Where is my parcel?") == "neutral"
    assert keyword_emotion("I'm worried it got lost") == "frustration"
    assert keyword_emotion("Scam! Worst shop ever") == "anger"


def test_before_learning_the_model_predicts_the_lexicon() -> None:
    model = EmotionModel()
    for text in ["not happy at all", "太过分了!!!", "谢谢", "请问什么时候发货"]:
        proba = model.predict_proba_one(text)
        assert set(proba) == set(EMOTIONS) and abs(sum(proba.values()) - 1.0) < 1e-9
        assert model.predict_one(text) == lexicon_emotion(text)
    assert model.examples == 0


def test_learning_moves_predictions() -> None:
    model = EmotionModel()
    text = "The Lumen 15 keeps me waiting forever"  # "waiting": frustration, but mild
    before = model.predict_proba_one(text)["anger"]
    for _ in range(40):
        model.learn_one(text, "anger")
        model.learn_one("When will the Lumen 15 ship?", "neutral")
    assert model.examples == 80
    assert model.predict_proba_one(text)["anger"] > before + 0.3
    assert model.predict_one(text) == "anger"


def test_an_unknown_emotion_is_refused() -> None:
    model = EmotionModel()
    for emotion in ["happy", "", "ANGER", None]:
        with pytest.raises(ValueError, match="unknown emotion"):
            model.learn_one("hello", emotion)  # type: ignore[arg-type]
    assert model.examples == 0


def test_any_text_is_read_within_bounded_work() -> None:
    model = EmotionModel()
    model.learn_one("thanks", "satisfaction")
    rng = random.Random(3)
    garbage = [
        "",
        "\x00\ud800\udfff\u202e",
        "".join(chr(rng.randrange(0x110000)) for _ in range(5000)),
        "!" * 100_000,
        "不" * 1_000_000,
        "not " * 500_000,
        "😡" * 10_000,
    ]
    for text in garbage:
        start = time.perf_counter()
        proba = model.predict_proba_one(text)
        assert abs(sum(proba.values()) - 1.0) < 1e-9
        assert time.perf_counter() - start < 0.5
        model.learn_one(text, "neutral")
    # Past MAX_CHARS nothing counts.
    assert lexicon_scores("ok " * MAX_CHARS + "angry") == lexicon_scores("ok")


def test_a_model_round_trips_through_the_checkpoints_restricted_unpickler() -> None:
    model = EmotionModel()
    for text, emotion in [("太慢了", "frustration"), ("thanks!", "satisfaction"), ("scam", "anger")]:
        model.learn_one(text, emotion)
    restored = ModelsUnpickler(io.BytesIO(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))).load()
    assert isinstance(restored, EmotionModel) and restored.examples == 3
    for text in ["太慢了", "thanks!", "not bad", "什么破玩意"]:
        assert restored.predict_proba_one(text) == model.predict_proba_one(text)
    restored.learn_one("ok", "neutral")  # and it goes on learning


def macro_f1(truth: list[str], predicted: list[str]) -> float:
    scores = []
    for emotion in EMOTIONS:
        tp = sum(t == p == emotion for t, p in zip(truth, predicted, strict=True))
        wrong = sum((t == emotion) != (p == emotion) for t, p in zip(truth, predicted, strict=True))
        scores.append(2 * tp / (2 * tp + wrong) if tp + wrong else 0.0)
    return sum(scores) / len(scores)


def test_the_model_beats_the_keyword_baseline_before_and_after_corrections() -> None:
    """On a seeded corpus: the lexicon alone (negation, intensity) beats the keywords in every language,
    and the model that learned 600 corrections beats both on messages it did not learn."""
    corpus = conversation_corpus(seed=21, size=1000)
    learned, held_out = corpus[:600], corpus[600:]
    model = EmotionModel()
    before = [model.predict_one(m.text) for m in held_out]
    for message in learned:
        model.learn_one(message.text, message.emotion)
    after = [model.predict_one(m.text) for m in held_out]
    keywords = [keyword_emotion(m.text) for m in held_out]
    truth = [m.emotion for m in held_out]
    for language in ("zh", "en", "mixed"):
        at = [i for i, m in enumerate(held_out) if m.language == language]
        assert len(at) > 50
        f1 = {
            name: macro_f1([truth[i] for i in at], [predicted[i] for i in at])
            for name, predicted in [("keywords", keywords), ("lexicon", before), ("learned", after)]
        }
        assert f1["keywords"] < f1["lexicon"] < f1["learned"], (language, f1)
    assert macro_f1(truth, after) > macro_f1(truth, keywords) + 0.1
