# Chinese text is written with full-width punctuation: these are not confusable characters.
# ruff: noqa: RUF001, RUF002, RUF003
"""Emotion of customer chat messages in Chinese, English and both at once.

A customer's message ("Where is my order?? I've waited two weeks!!", "不是很满意", "这个order怎么还没到")
gets one of :data:`EMOTIONS`: ``anger``, ``frustration`` (which includes anxiety and worry),
``satisfaction`` or ``neutral``. :data:`NEGATIVE` are the two a human agent may need to take over.

**The lexicon** (:data:`LEXICON`) is a table of English and Chinese words and phrases per emotion,
each with a weight. :func:`lexicon_scores` reads a text with it: English by words (the longest phrase
of the table first), Chinese, written without spaces, by the longest entry of the table at each
character. A **negator** (:data:`NEGATORS`: "not", "不", "没有", "不是"...) up to
:data:`NEGATION_WINDOW` units before a term turns it over: a negated satisfaction term ("not happy",
"不满意") counts as frustration, a negated negative term ("not bad", "没有问题") mostly as
satisfaction, the rest neutral. An **intensifier** (:data:`INTENSIFIERS`: "very", "非常", "太"...) scales
the term after it; exclamation marks, repeated ``??`` and words in capitals raise the negative
emotions, and push part of the frustration over into anger. A few words that contain an emotion term
but carry none are masked (:data:`MASKED`: 快递 is a courier, 不知道 is "do not know").

:func:`keyword_emotion` is the keyword-only baseline: the same word lists, matched as they are (no
negation, no intensity, no masks), the emotion with the most hits wins.

**The model** (:class:`EmotionModel`) learns online from corrections. Its features are the four
lexicon scores, a constant, and the message's tokens (English words, pairs of adjacent Chinese
characters, a token per step of emphasis) hashed into a fixed number of buckets, so the feature space
stays fixed whatever it reads; a River ``SoftmaxRegression`` learns them. Before it has learned anything it
predicts what the lexicon says; as corrections arrive, its prediction moves from the lexicon's to the
classifier's: the classifier's share is ``examples / (examples + blend_examples)``.

Texts are untrusted: only the first :data:`MAX_CHARS` characters are read, so any text costs at most
that much work.

>>> lexicon_emotion("Thank you, the new headphones work great")
'satisfaction'
>>> lexicon_emotion("I'm not happy at all"), lexicon_emotion("不是很满意")
('frustration', 'frustration')
>>> lexicon_emotion("The box was damaged"), lexicon_emotion("没有问题了，谢谢")
('frustration', 'satisfaction')
>>> lexicon_scores("Not bad")  # a negated negative term: mostly satisfaction
{'anger': 0.0, 'frustration': 0.0, 'satisfaction': 0.56, 'neutral': 0.24}
>>> lexicon_emotion("Where is my refund?? This is RIDICULOUS!!!")
'anger'
>>> language_of("这个order怎么还没到"), language_of("我的订单到了吗"), language_of("Where is it?")
('mixed', 'zh', 'en')
>>> model = EmotionModel()
>>> model.predict_one("The Echo Buds are a steal")  # not in the lexicon: neutral
'neutral'
>>> for _ in range(30):
...     model.learn_one("The Echo Buds are a steal", "satisfaction")
...     model.learn_one("When does the Echo Buds ship?", "neutral")
>>> model.predict_one("Echo Buds are a steal!"), model.examples
('satisfaction', 60)
"""

from __future__ import annotations

import math
import re
import unicodedata
import zlib

from river import base, linear_model, optim

from models.text import IDEOGRAPH, SEGMENT, language, longest_matches

EMOTIONS = ("anger", "frustration", "satisfaction", "neutral")
NEGATIVE = frozenset({"anger", "frustration"})

MAX_CHARS = 2000  # of a message, the characters read: the rest is ignored
IDEOGRAPH_LETTERS = 3  # language_of: a Chinese character weighs as much as this many Latin letters
MIXED_SHARE = 0.15  # language_of: a text is mixed when each script has more than this share

# The lexicon: per emotion, its terms and their weights (1.0: a plain, clear word). English terms are
# lower-case words or phrases (apostrophes dropped: "doesnt"); Chinese terms are matched anywhere.
LEXICON: dict[str, dict[str, float]] = {
    "anger": {
        "angry": 1.2, "furious": 1.5, "ridiculous": 1.2, "unacceptable": 1.3, "outrageous": 1.4,
        "scam": 1.5, "rip off": 1.3, "disgusting": 1.3, "worst": 1.0, "hate": 1.0, "pathetic": 1.3,
        "incompetent": 1.4, "liar": 1.4, "lied": 1.2, "cheated": 1.4, "fraud": 1.5, "crooks": 1.3,
        "lawyer": 1.2, "report you": 1.3, "never again": 1.2, "sick of": 1.2, "fed up": 1.1,
        "joke": 0.8, "garbage": 1.2, "shameful": 1.2, "disgrace": 1.3, "wtf": 1.3, "unbelievable": 1.0,
        "my money back": 0.8,
        "生气": 1.2, "气死": 1.5, "愤怒": 1.4, "过分": 1.2, "太过分": 1.5, "骗子": 1.5, "欺骗": 1.3,
        "垃圾": 1.2, "离谱": 1.2, "坑人": 1.3, "忍无可忍": 1.5, "受够了": 1.3, "恶心": 1.2,
        "无耻": 1.4, "投诉": 1.0, "差劲": 1.0, "最差": 1.0, "骗人": 1.3, "什么破": 1.2, "破玩意": 1.3,
        "再也不": 1.1, "骗钱": 1.4, "曝光": 1.2, "气人": 1.2, "火大": 1.3,
    },
    "frustration": {
        "frustrated": 1.2, "frustrating": 1.2, "annoying": 1.0, "annoyed": 1.0, "disappointed": 1.1,
        "disappointing": 1.0, "upset": 1.0, "worried": 1.0, "anxious": 1.0, "nervous": 0.8,
        "concerned": 0.8, "confused": 0.8, "confusing": 0.8, "stuck": 0.8, "still waiting": 1.1,
        "still not": 0.9, "waiting": 0.5, "late": 0.7, "delayed": 0.8, "broken": 0.8,
        "not working": 1.0, "doesnt work": 1.0, "stopped working": 1.0, "never arrived": 1.1,
        "hasnt arrived": 1.0, "no response": 1.0, "nobody": 0.8, "no one": 0.8, "again": 0.4,
        "problem": 0.5, "issue": 0.4, "bad": 0.8, "terrible": 1.0, "awful": 1.0, "slow": 0.6,
        "urgent": 0.8, "asap": 0.7, "hurry": 0.6, "unhappy": 1.1, "wrong": 0.6, "missing": 0.6,
        "damaged": 0.8, "hassle": 0.8, "useless": 0.9, "cant find": 0.7, "tired of": 1.0,
        "unfortunately": 0.5,
        "失望": 1.1, "着急": 1.0, "急": 0.6, "担心": 1.0, "焦虑": 1.0, "烦": 0.9, "郁闷": 1.0,
        "崩溃": 1.2, "无语": 1.0, "难过": 1.0, "还没": 0.8, "怎么还": 1.0, "一直": 0.4, "等了": 0.7,
        "没收到": 1.0, "没人": 0.9, "没有人": 0.9, "不回": 0.8, "坏了": 0.8, "问题": 0.4,
        "太慢": 1.0, "慢": 0.5, "麻烦": 0.6, "难用": 0.9, "不好": 0.8, "糟糕": 1.0, "闹心": 1.0,
        "不放心": 1.0, "催": 0.6, "到底": 0.7, "又": 0.3, "延迟": 0.7, "不能用": 1.0, "用不了": 1.0,
        "破损": 0.8, "错了": 0.6, "头疼": 1.0, "不行": 0.8, "不太行": 0.9, "找不到": 0.7, "心累": 1.1,
    },
    "satisfaction": {
        "thanks": 0.9, "thank you": 1.0, "thx": 0.8, "great": 1.0, "happy": 1.0, "satisfied": 1.1,
        "love": 1.1, "perfect": 1.2, "awesome": 1.2, "excellent": 1.2, "amazing": 1.2,
        "helpful": 1.0, "appreciate": 1.0, "good": 0.7, "nice": 0.7, "works now": 1.1, "solved": 1.0,
        "resolved": 1.0, "pleased": 1.0, "glad": 1.0, "wonderful": 1.2, "fantastic": 1.2,
        "recommend": 0.9, "quick": 0.6, "fast": 0.6, "smooth": 0.7, "brilliant": 1.1, "impressed": 1.0,
        "appreciated": 1.0,
        "谢谢": 1.0, "感谢": 1.0, "满意": 1.1, "好评": 1.1, "不错": 0.9, "喜欢": 1.0, "太好了": 1.2,
        "完美": 1.2, "赞": 1.0, "棒": 1.0, "给力": 1.1, "解决了": 1.0, "开心": 1.0, "辛苦了": 0.9,
        "好用": 0.9, "很好": 0.9, "挺好": 0.8, "放心": 0.8, "高兴": 1.0, "惊喜": 1.1, "靠谱": 1.0,
        "推荐": 0.8, "专业": 0.7, "及时": 0.7,
    },
    "neutral": {
        "how": 0.3, "how long": 0.3, "what": 0.3, "when": 0.3, "which": 0.3, "where": 0.2, "can i": 0.4,
        "do you": 0.4, "is there": 0.4, "could you": 0.3, "please": 0.2, "hello": 0.3, "hi": 0.3,
        "请问": 0.6, "吗": 0.3, "怎么": 0.3, "多少": 0.4, "哪": 0.3, "能不能": 0.3, "可以": 0.3,
        "想问": 0.5, "咨询": 0.6, "你好": 0.4, "有没有": 0.4, "是否": 0.4,
    },
}  # fmt: skip
# Words that contain an emotion term but carry none, matched whole so their parts are not read; they
# also end a negator's reach (不知道怎么还没到: the 不 of 不知道 does not negate 怎么还).
MASKED = frozenset(
    {
        "快递", "不知道", "不过", "不用", "不客气", "没关系", "好的", "好像", "还好", "问题是",
        "有个问题", "一个问题", "几个问题", "不到", "再不", "好不好", "行不行", "是不是", "垃圾袋", "急救",
        "no problem at all",
        "good morning", "good afternoon", "good evening", "no worries",
    }
)  # fmt: skip
# A negator turns over the next emotion term of its clause if at most NEGATION_WINDOW units (English
# words, Chinese words of the lexicon or single characters) come between.
NEGATORS = frozenset(
    {
        "not", "no", "never", "dont", "doesnt", "didnt", "isnt", "wasnt", "arent", "werent", "cant",
        "cannot", "wont", "hasnt", "havent", "hardly", "without",
        "不", "没", "没有", "不是", "不太", "并不", "并没有", "别", "毫不", "一点也不", "从不", "不怎么",
    }
)  # fmt: skip
NEGATION_WINDOW = 3
# An intensifier scales the next emotion term within NEGATION_WINDOW units by its factor; one after a
# term ("at all", "whatsoever") scales the term before it.
INTENSIFIERS: dict[str, float] = {
    "very": 1.5, "really": 1.4, "so": 1.4, "extremely": 1.8, "totally": 1.6, "absolutely": 1.7,
    "completely": 1.6, "super": 1.5, "incredibly": 1.7, "too": 1.3, "such": 1.3, "truly": 1.4,
    "非常": 1.6, "太": 1.5, "很": 1.2, "特别": 1.5, "真的": 1.4, "真": 1.3, "超": 1.5, "超级": 1.6,
    "极其": 1.8, "十分": 1.5, "实在": 1.5, "简直": 1.7, "根本": 1.5, "相当": 1.4, "好": 1.2,
}  # fmt: skip
AFTER_INTENSIFIERS: dict[str, float] = {"at all": 1.6, "whatsoever": 1.6, "极了": 1.6, "死了": 1.5}
# Emphasis over the whole message: each "!" (up to 3), a run of 2+ "?" and each word of 3+ capitals
# (up to 2) is one step. Each step raises anger by ANGER_STEP and frustration by FRUSTRATION_STEP of
# themselves, moves SPILL_STEP of the frustration over to anger, and raises satisfaction by
# SATISFACTION_STEP ("Thanks!!").
ANGER_STEP, FRUSTRATION_STEP, SPILL_STEP, SATISFACTION_STEP = 0.3, 0.1, 0.2, 0.15
# A negated negative term counts this share of its weight as satisfaction, the rest as neutral ("not
# bad" is mild praise, "not worried" mostly plain); a negated satisfaction term all of it as frustration.
NEGATED_NEGATIVE_SHARE = 0.7
# lexicon_proba: the neutral evidence every message has (a message without any term is neutral), and
# how sharply the scores divide the probability.
NEUTRAL_PRIOR = 0.3
SHARPNESS = 2.0

EMPHASIS = "<emphasis>"  # the token of a step of emphasis: no word has angle brackets

_TERMS: dict[str, str | None] = {term: emotion for emotion, terms in LEXICON.items() for term in terms}
_WEIGHTS: dict[str, float] = {term: weight for terms in LEXICON.values() for term, weight in terms.items()}
_TERMS.update(dict.fromkeys(MASKED))
_UNITS = set(_TERMS) | NEGATORS | set(INTENSIFIERS) | set(AFTER_INTENSIFIERS)
_CLAUSE_BREAK = re.compile(r"[.,;:!?()\[\]{}\"\n\r\t。，；：！？、（）【】“”…~]+")
_CAPS_WORD = re.compile(r"\b[A-Z]{3,}\b")
_LONGEST_ZH = max(len(unit) for unit in _UNITS if IDEOGRAPH.match(unit))
_LONGEST_EN = max(unit.count(" ") + 1 for unit in _UNITS if not IDEOGRAPH.match(unit))
# The first word or character of the lexicon's longer entries: only there is a longer match tried.
_PHRASE_STARTS = frozenset(
    unit.split(" ")[0] if " " in unit else unit[0]
    for unit in _UNITS
    if " " in unit or (IDEOGRAPH.match(unit) and len(unit) > 1)
)


def _normalise(text: str) -> str:
    # NFKC folds full-width letters and punctuation (ＯＫ, ！) into ASCII; capped first, so any text
    # costs at most MAX_CHARS characters of work.
    return unicodedata.normalize("NFKC", text[:MAX_CHARS])


def language_of(text: str) -> str:
    """``"zh"``, ``"en"`` or ``"mixed"``: :func:`models.text.language` with an ideograph weighing
    :data:`IDEOGRAPH_LETTERS` letters (about what a Chinese character carries of an English word) and
    ``mixed`` while each script has more than :data:`MIXED_SHARE`; a text with neither script is ``en``.
    (Feedback counts letters one for one: there, "The 快递 never came" is English; in a chat it is a
    mixed message.)

    >>> language_of("我的iPhone屏幕碎了"), language_of("The 快递 never came"), language_of("???")
    ('mixed', 'mixed', 'en')
    >>> language_of("请问订单#12345什么时候能到"), language_of("Is the Aster 3 in stock?")
    ('zh', 'en')
    """
    found = language(text[:MAX_CHARS], ideograph_letters=IDEOGRAPH_LETTERS, majority=1.0 - MIXED_SHARE)
    return "en" if found == "other" else found


def _read(text: str) -> tuple[dict[str, float], list[str]]:
    """The lexicon scores of ``text`` and its tokens: lower-case words, the pairs of adjacent
    characters of each run of ideographs (the character itself for a run of one), and
    :data:`EMPHASIS` once per step of emphasis."""
    text = _normalise(text)
    scores = dict.fromkeys(EMOTIONS, 0.0)
    found: list[str] = []
    for clause in _CLAUSE_BREAK.split(text.lower()):
        pieces = [(zh, word.replace("'", "").replace("\u2019", "")) for zh, word in SEGMENT.findall(clause)]
        for zh, word in pieces:
            if word:
                found.append(word)
            elif len(zh) == 1:
                found.append(zh)
            else:
                found.extend(zh[i : i + 2] for i in range(len(zh) - 1))
        negated, boost, reach = False, 1.0, 0  # reach: units left for a negator or an intensifier
        last: tuple[str, float] | None = None  # the clause's last term: emotion and amount
        for unit in longest_matches(
            ((bool(zh), zh or word) for zh, word in pieces), _UNITS, _LONGEST_EN, _LONGEST_ZH, _PHRASE_STARTS
        ):
            if unit in NEGATORS:
                negated, reach = True, NEGATION_WINDOW + 1
            elif unit in INTENSIFIERS:
                boost, reach = boost * INTENSIFIERS[unit], max(reach, NEGATION_WINDOW + 1)
            elif unit in AFTER_INTENSIFIERS:
                if last is not None:
                    scores[last[0]] += last[1] * (AFTER_INTENSIFIERS[unit] - 1.0)
            elif unit in _TERMS:
                emotion = _TERMS[unit]
                if emotion is not None:
                    amount = _WEIGHTS[unit] * boost
                    if negated and emotion == "satisfaction":
                        emotion = "frustration"
                    elif negated and emotion in NEGATIVE:
                        scores["neutral"] += amount * (1.0 - NEGATED_NEGATIVE_SHARE)
                        amount, emotion = amount * NEGATED_NEGATIVE_SHARE, "satisfaction"
                    scores[emotion] += amount
                    last = (emotion, amount)
                negated, boost, reach = False, 1.0, 0  # a mask ends a negator's reach too
            else:
                reach -= 1
                if reach <= 0:
                    negated, boost = False, 1.0
    steps = min(text.count("!"), 3) + ("??" in text) + min(len(_CAPS_WORD.findall(text)), 2)
    found.extend([EMPHASIS] * steps)
    if steps:
        spill = scores["frustration"] * SPILL_STEP * steps
        scores["anger"] = scores["anger"] * (1.0 + ANGER_STEP * steps) + spill
        scores["frustration"] = scores["frustration"] * (1.0 + FRUSTRATION_STEP * steps) - spill
        scores["satisfaction"] *= 1.0 + SATISFACTION_STEP * steps
    return {emotion: round(max(score, 0.0), 6) for emotion, score in scores.items()}, found


def lexicon_scores(text: str) -> dict[str, float]:
    """The evidence of ``text`` for each of :data:`EMOTIONS` (0 or more), by the lexicon with negation
    and intensity (see the module's description).

    >>> lexicon_scores("not happy")
    {'anger': 0.0, 'frustration': 1.0, 'satisfaction': 0.0, 'neutral': 0.0}
    >>> lexicon_scores("非常满意!")["satisfaction"] > lexicon_scores("满意")["satisfaction"]
    True
    """
    return _read(text)[0]


def lexicon_proba(scores: dict[str, float]) -> dict[str, float]:
    """Probabilities of :data:`EMOTIONS` from :func:`lexicon_scores`: a softmax of ``SHARPNESS`` times
    the scores, neutral given ``NEUTRAL_PRIOR`` more.

    >>> lexicon_proba(dict.fromkeys(EMOTIONS, 0.0))["neutral"] > 0.25
    True
    """
    logits = {e: SHARPNESS * (s + (NEUTRAL_PRIOR if e == "neutral" else 0.0)) for e, s in scores.items()}
    top = max(logits.values())
    exp = {e: math.exp(v - top) for e, v in logits.items()}
    total = sum(exp.values())
    return {e: v / total for e, v in exp.items()}


def lexicon_emotion(text: str) -> str:
    """The emotion the lexicon alone gives ``text``: the most probable by :func:`lexicon_proba`."""
    proba = lexicon_proba(lexicon_scores(text))
    return max(EMOTIONS, key=proba.__getitem__)


def keyword_emotion(text: str) -> str:
    """The keyword-only baseline: the emotion of :data:`LEXICON` (neutral's excepted) with the most
    terms found in ``text``, matched as they are (no negation, no intensity, no masks); on a tie the one
    found first; ``neutral`` when none is found.

    >>> keyword_emotion("not happy at all"), keyword_emotion("Where is my parcel?")
    ('satisfaction', 'neutral')
    """
    text = _normalise(text).lower()
    words = [
        (m.start(), m.group(2).replace("'", "").replace("\u2019", ""))
        for m in SEGMENT.finditer(text)
        if m.group(2)
    ]
    hits: dict[str, list[int]] = {}  # emotion -> where each of its terms was found
    for match in _KEYWORDS_ZH.finditer(text):
        hits.setdefault(_KEYWORDS[match.group()], []).append(match.start())
    for size in range(1, _LONGEST_EN + 1):
        for i in range(len(words) - size + 1):
            emotion = _KEYWORDS.get(" ".join(word for _, word in words[i : i + size]))
            if emotion:
                hits.setdefault(emotion, []).append(words[i][0])
    found = [(-len(at), min(at), emotion) for emotion, at in hits.items()]
    return min(found)[2] if found else "neutral"


# keyword_emotion's word lists: every term of the lexicon but neutral's.
_KEYWORDS = {
    term: emotion for emotion in ("anger", "frustration", "satisfaction") for term in LEXICON[emotion]
}
_KEYWORDS_ZH = re.compile(
    "|".join(sorted((t for t in _KEYWORDS if IDEOGRAPH.match(t)), key=len, reverse=True))
)


BUCKETS = 2048  # hashed token features
BLEND_EXAMPLES = 30  # corrections after which the classifier has half the say
LEARNING_RATE = 0.5


def bucket_of(token: str, buckets: int = BUCKETS) -> int:
    """The feature bucket of a token: CRC-32, the same in every process (unlike ``hash``)."""
    return zlib.crc32(token.encode("utf-8", "surrogatepass")) % buckets


_BUCKET_CACHE: dict[tuple[str, int], int] = {}  # the buckets of tokens seen lately: most recur
_BUCKET_CACHE_SIZE = 65536


def _bucket(token: str, buckets: int) -> int:
    key = (token, buckets)
    bucket = _BUCKET_CACHE.get(key)
    if bucket is None:
        if len(_BUCKET_CACHE) >= _BUCKET_CACHE_SIZE:
            _BUCKET_CACHE.clear()
        bucket = _BUCKET_CACHE[key] = bucket_of(token, buckets)
    return bucket


class EmotionModel:
    """An online emotion classifier of chat messages, seeded by the lexicon.

    Parameters
    ----------
    buckets
        How many hashed token features.
    blend_examples
        The classifier's share of a prediction is ``examples / (examples + blend_examples)``; the rest
        is the lexicon's (:func:`lexicon_proba`). With nothing learned, the prediction is the lexicon's.
    learning_rate
        Of the SGD optimiser of the ``SoftmaxRegression``.
    classifier
        Another River classifier to learn the features instead (the benchmark compares naive Bayes);
        a checkpoint holds only what :mod:`streams.worker.checkpoints` allows, the default's classes.

    Examples
    --------
    >>> model = EmotionModel()
    >>> model.predict_one("物流太慢了，等了一个星期"), model.examples
    ('frustration', 0)
    >>> proba = model.predict_proba_one("Thanks, it works now")
    >>> max(proba, key=proba.get), round(sum(proba.values()), 6)
    ('satisfaction', 1.0)
    >>> model.learn_one("Meh", "happy")
    Traceback (most recent call last):
    ...
    ValueError: unknown emotion 'happy'; expected one of anger, frustration, satisfaction, neutral
    """

    def __init__(
        self,
        buckets: int = BUCKETS,
        blend_examples: int = BLEND_EXAMPLES,
        learning_rate: float = LEARNING_RATE,
        classifier: base.Classifier | None = None,
    ) -> None:
        self.buckets = buckets
        self.blend_examples = blend_examples
        if classifier is None:
            classifier = linear_model.SoftmaxRegression(optimizer=optim.SGD(learning_rate))
            for emotion in EMOTIONS:  # every class from the start: an early prediction covers all four
                classifier.weights[emotion]
        self.classifier = classifier
        self.examples = 0

    def features(self, text: str) -> tuple[dict[str, float], dict[str | int, float]]:
        """The lexicon scores of ``text`` and the classifier's features: the scores, a constant, and
        the hashed tokens' counts, L2-normalised (a long message does not outweigh a short one)."""
        scores, found = _read(text)
        x: dict[str | int, float] = {f"lexicon_{emotion}": score for emotion, score in scores.items()}
        x["bias"] = 1.0
        counts: dict[int, float] = {}
        buckets = self.buckets
        for token in found:
            bucket = _bucket(token, buckets)
            counts[bucket] = counts.get(bucket, 0.0) + 1.0
        norm = math.sqrt(sum(c * c for c in counts.values())) or 1.0
        for bucket, count in counts.items():
            x[bucket] = count / norm
        return scores, x

    def _blend(self, scores: dict[str, float], x: dict[str | int, float]) -> dict[str, float]:
        proba = lexicon_proba(scores)
        if not self.examples:
            return proba
        share = self.examples / (self.examples + self.blend_examples)
        learned = self.classifier.predict_proba_one(x)
        return {e: (1.0 - share) * proba[e] + share * learned.get(e, 0.0) for e in EMOTIONS}

    def predict_proba_one(self, text: str) -> dict[str, float]:
        """The probability of each of :data:`EMOTIONS` for ``text`` (they sum to 1)."""
        return self._blend(*self.features(text))

    def predict_one(self, text: str) -> str:
        """The most probable emotion of ``text``."""
        proba = self.predict_proba_one(text)
        return max(EMOTIONS, key=proba.__getitem__)

    def learn_one(self, text: str, emotion: str) -> None:
        """Learn that ``text`` expresses ``emotion`` (a correction); raises ValueError for an emotion
        not in :data:`EMOTIONS`."""
        if emotion not in EMOTIONS:
            raise ValueError(f"unknown emotion {emotion!r}; expected one of {', '.join(EMOTIONS)}")
        self.classifier.learn_one(self.features(text)[1], emotion)
        self.examples += 1
