"""Emotion of a customer's chat message (placeholder until the emotion model's branch is merged).

A minimal stand-in with the API of the emotion model: :data:`EMOTIONS`, :data:`NEGATIVE`,
:func:`language_of`, :func:`lexicon_scores`, :func:`keyword_emotion` and :class:`EmotionModel`
(``predict_proba_one``, ``predict_one``, ``learn_one``, ``examples``).

>>> keyword_emotion("This is ridiculous, I am furious"), keyword_emotion("thanks, great help")
('anger', 'satisfaction')
>>> model = EmotionModel()
>>> model.predict_one("still waiting, nothing works")
'frustration'
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

EMOTIONS = ("anger", "frustration", "satisfaction", "neutral")
NEGATIVE = frozenset({"anger", "frustration"})
NEUTRAL = "neutral"
_TOKEN = re.compile(r"\w+")
_LEXICON = {
    "anger": ("furious", "ridiculous", "angry", "unacceptable", "scam", "worst", "愤怒", "太差", "骗"),
    "frustration": ("still", "waiting", "again", "nothing", "works", "why", "annoying", "还没", "怎么"),
    "satisfaction": ("thanks", "thank", "great", "perfect", "love", "helpful", "谢谢", "很好", "满意"),
}


def language_of(text: str) -> str:
    """``zh`` when the text holds CJK characters, else ``en``."""
    return "zh" if any("\u4e00" <= char <= "\u9fff" for char in text) else "en"


def lexicon_scores(text: str) -> dict[str, float]:
    """Hits of each emotion's words in ``text``."""
    lowered = text.lower()
    tokens = set(_TOKEN.findall(lowered))
    return {
        emotion: float(sum(1 for word in words if word in tokens or (not word.isascii() and word in lowered)))
        for emotion, words in _LEXICON.items()
    } | {NEUTRAL: 0.0}


def keyword_emotion(text: str) -> str:
    """The emotion with the most lexicon hits; neutral without any."""
    scores = lexicon_scores(text)
    best = max(EMOTIONS, key=scores.__getitem__)
    return best if scores[best] > 0 else NEUTRAL


@dataclass
class EmotionModel:
    """Token counts per emotion over the lexicon's prior (a multinomial naive Bayes)."""

    counts: dict[str, dict[str, float]] = field(default_factory=lambda: {e: {} for e in EMOTIONS})
    totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(EMOTIONS, 0.0))
    examples: int = 0

    def _tokens(self, text: str) -> list[str]:
        return _TOKEN.findall(text.lower())[:64]

    def predict_proba_one(self, text: str) -> dict[str, float]:
        prior = lexicon_scores(text)
        logits = {}
        for emotion in EMOTIONS:
            counts, total = self.counts[emotion], self.totals[emotion]
            logit = 2.0 * prior[emotion] + (0.5 if emotion == NEUTRAL else 0.0)
            for token in self._tokens(text):
                logit += math.log((counts.get(token, 0.0) + 0.1) / (total + 10.0)) - math.log(0.1 / 10.0)
            logits[emotion] = logit
        top = max(logits.values())
        weights = {emotion: math.exp(value - top) for emotion, value in logits.items()}
        norm = sum(weights.values())
        return {emotion: weight / norm for emotion, weight in weights.items()}

    def predict_one(self, text: str) -> str:
        proba = self.predict_proba_one(text)
        return max(EMOTIONS, key=proba.__getitem__)

    def learn_one(self, text: str, emotion: str) -> None:
        counts = self.counts[emotion]
        for token in self._tokens(text):
            counts[token] = counts.get(token, 0.0) + 1.0
            self.totals[emotion] += 1.0
        self.examples += 1
