"""The seeded chat messages: a labelled corpus the same for the same seed, in Chinese, English and both,
with the hard cases planted; and chats whose customer emotions and needs follow the user's type."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from models.emotion import EMOTIONS, NEGATIVE, language_of
from streams.processes.catalog import load_catalog
from streams.tools.traffic.conversations import (
    CUSTOMER,
    LANGUAGES,
    NEEDS,
    ChatMessage,
    chat_messages,
    conversation_corpus,
)
from streams.tools.traffic.profile import USER_TYPES

CATALOG = load_catalog()
PRODUCTS = sorted(CATALOG.products.values(), key=lambda p: p.product_id)


def test_the_corpus_is_the_same_for_the_same_seed_and_not_for_another() -> None:
    assert conversation_corpus(11, 300) == conversation_corpus(11, 300)
    assert conversation_corpus(11, 300) != conversation_corpus(12, 300)
    assert conversation_corpus(11, 50) == conversation_corpus(11, 300)[:50]


def test_the_corpus_holds_every_language_and_emotion_with_its_language_as_read() -> None:
    corpus = conversation_corpus(5, 2000)
    languages, emotions = Counter(m.language for m in corpus), Counter(m.emotion for m in corpus)
    assert set(languages) == set(LANGUAGES) and min(languages.values()) > 300
    assert set(emotions) == set(EMOTIONS) and min(emotions.values()) > 200
    assert all(m.language == language_of(m.text) for m in corpus)
    assert len({m.text for m in corpus}) > 1000  # varied, not a handful of sentences


def test_the_hard_cases_are_planted() -> None:
    texts = {m.text: m.emotion for m in conversation_corpus(5, 3000)}

    def emotions_of(fragment: str) -> set[str]:
        return {emotion for text, emotion in texts.items() if fragment in text}

    assert emotions_of("not happy") <= NEGATIVE and emotions_of("not happy")  # negated praise
    assert emotions_of("不是很满意") == {"frustration"}
    assert emotions_of("wasn't damaged at all") == {"satisfaction"}  # negated complaint
    assert emotions_of("WHERE IS MY ORDER") == {"anger"}  # emphasis, no angry word
    assert emotions_of("重启了好几次还是不行") == {"frustration"}  # plain words
    assert emotions_of("Thanks in advance") == {"neutral"}  # courtesy in a question


def test_every_template_fills() -> None:
    rng = random.Random(1)
    for need in NEEDS:
        for emotion, languages in CUSTOMER[need].items():
            assert emotion in EMOTIONS
            for language, templates in languages.items():
                assert language in LANGUAGES and templates
                for template in templates:
                    template.format(product="P", other="O", noun="N", days=rng.randint(3, 15), order="#1")


def chats(user_type: str, count: int = 200) -> list[list[ChatMessage]]:
    rng = random.Random(user_type)
    return [chat_messages(rng, user_type, rng.choice(PRODUCTS), PRODUCTS) for _ in range(count)]


def customer(chat: list[ChatMessage]) -> list[ChatMessage]:
    return [m for m in chat if m.role == "customer"]


def test_chats_alternate_customer_and_agent_and_say_what_they_are_about() -> None:
    for user_type in USER_TYPES:
        for chat in chats(user_type, 50):
            assert chat[0].role == chat[-1].role == "customer"
            assert [m.role for m in chat[::2]] == ["customer"] * len(chat[::2])
            assert all(m.role == "agent" and m.emotion is None for m in chat[1::2])
            assert all(m.emotion in EMOTIONS for m in customer(chat))
            assert all(CATALOG.product(m.product_id) and CATALOG.product(m.needed_product_id) for m in chat)
            assert len({m.need for m in chat}) == 1
    assert chats("buyer", 1) == chats("buyer", 1)  # seeded


def test_help_seekers_escalate_from_frustration_to_anger() -> None:
    escalated = 0
    for chat in chats("help_seeker"):
        messages = customer(chat)
        assert 2 <= len(messages) <= 4 and messages[0].need in ("delivery", "fault", "refund")
        order = {"neutral": 0, "frustration": 1, "anger": 2}
        levels = [order[m.emotion] for m in messages if m.emotion != "satisfaction"]
        assert levels and levels == sorted(levels)  # never calmer, short of being satisfied
        escalated += levels[0] < levels[-1]
    assert escalated > 50


@pytest.mark.parametrize(
    ("user_type", "allowed", "needs"),
    [
        ("at_risk", NEGATIVE, {"delivery", "fault", "refund"}),
        ("buyer", {"neutral", "satisfaction"}, {"product_info"}),
        ("browser", {"neutral"}, {"none"}),
    ],
)
def test_emotions_and_needs_are_planted_per_type(user_type: str, allowed: set[str], needs: set[str]) -> None:
    found = [m for chat in chats(user_type) for m in customer(chat)]
    assert {m.emotion for m in found} == set(allowed)
    assert {m.need for m in found} == needs


def test_some_buyers_ask_about_one_product_and_need_another() -> None:
    switched = [chat for chat in chats("buyer") if chat[0].needed_product_id != chat[0].product_id]
    assert 20 < len(switched) < 120
    for chat in switched:  # the chat ends by naming the product they need
        assert any(m.product_id == chat[0].needed_product_id for m in customer(chat)[1:])


def test_a_chat_keeps_its_language_and_the_agent_answers_in_it() -> None:
    aster = CATALOG.product("phone-aster-3")
    zh = chat_messages(random.Random(3), "help_seeker", aster, PRODUCTS, language="zh")
    assert all(m.language in ("zh", "mixed") for m in zh)
    en = chat_messages(random.Random(3), "help_seeker", aster, PRODUCTS, language="en")
    assert all(m.language == "en" for m in en)
    with pytest.raises(ValueError, match="unknown user type"):
        chat_messages(random.Random(3), "shopper", aster)
    with pytest.raises(ValueError, match="unknown language"):
        chat_messages(random.Random(3), "buyer", aster, language="fr")
