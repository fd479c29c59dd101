# Chinese text is written with full-width punctuation: these are not confusable characters.
# ruff: noqa: RUF002, RUF003
"""Text features for customer feedback in Chinese, English and both at once.

Feedback arrives as free text in Chinese, English or a mix (``这个app太难用了``). Chinese is not
written with spaces, so rather than segmenting words with a dictionary :func:`tokens` takes the
characters and the pairs of adjacent characters of each run of ideographs (character unigrams and
bigrams are a strong baseline for Chinese text classification and need no word list); English gives
lower-cased words and pairs of adjacent words. Text is first normalised with NFKC, so full-width
letters, digits and punctuation (``ＡＰＰ``, ``１２３``, ``，``) count as their ASCII forms.

Feature names, as counts:

* ``price``: a word (letters and digits; apostrophes dropped, so ``don't`` is ``dont``);
* ``too expensive``: two adjacent words, joined by a space (a word never holds one);
* ``zh:贵``, ``zh:太贵``: a character and two adjacent characters of a run of ideographs; the
  ``zh:`` prefix keeps them apart from words in any script.

Runs break at punctuation, at digits or Latin letters between ideographs, and at ideographs between
words: no pair spans two clauses or two scripts. Spaces and hyphens join words (``rip-off`` gives
``rip``, ``off`` and ``rip off``).

:func:`sentiment` reads the polarity of a text with a small bilingual lexicon (:data:`POSITIVE`,
:data:`NEGATIVE`, :data:`NEGATORS`, :data:`INTENSIFIERS`) and blends it with the satisfaction score
the user gave, when there is one; :func:`sentiment_label` names the result.

>>> language("物流太慢了，等了一个星期"), language("The courier was late"), language("这个app太难用了")
('zh', 'en', 'mixed')
>>> tokens("太贵了!")
{'zh:太': 1, 'zh:贵': 1, 'zh:了': 1, 'zh:太贵': 1, 'zh:贵了': 1}
>>> tokens("Way too expensive")
{'way': 1, 'too': 1, 'expensive': 1, 'way too': 1, 'too expensive': 1}
>>> sentiment("Not good at all"), sentiment("质量不好"), sentiment("不错", score=5)
(-0.333, -0.333, 0.75)
>>> sentiment_label(-0.333), sentiment_label(0.1), sentiment_label(0.75)
('negative', 'neutral', 'positive')
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Container, Iterable
from itertools import pairwise

ZH_PREFIX = "zh:"
# CJK Unified Ideographs with Extension A, the compatibility block and the supplementary planes
# (Extensions B-G). Kana and Hangul are not ideographs: Japanese or Korean text is "other".
CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
IDEOGRAPH = re.compile(f"[{CJK}]")
# A run of ideographs, or a word: letters/digits of any other script with inner apostrophes.
_WORD_CHAR = f"(?:(?![{CJK}])[^\\W_])"
SEGMENT = re.compile(f"(?P<zh>[{CJK}]+)|(?P<word>{_WORD_CHAR}+(?:['\u2019]{_WORD_CHAR}+)*)")
# Anything but letters, digits, ideographs, spaces, hyphens and apostrophes ends a clause.
_CLAUSE_BREAK = re.compile("[^\\w\\s\\-'\u2019]|_")
LATIN = re.compile("[a-zA-Z\u00c0-\u024f]")

# language(): the share of ideographs among ideographs and Latin letters. Three quarters or more of
# one script names the language; anything between is "mixed". Text whose letters are mostly in other
# scripts (kana, Cyrillic, ...) or that has no letters at all is "other".
LANGUAGE_MAJORITY = 0.75


def _normalise(text: str) -> str:
    # NFKC folds full-width forms (ＡＢＣ, １２３, ，。！) into ASCII, so they tokenize like the rest.
    return unicodedata.normalize("NFKC", text).lower()


def language(text: str, *, ideograph_letters: float = 1.0, majority: float = LANGUAGE_MAJORITY) -> str:
    """``"zh"``, ``"en"``, ``"mixed"`` or ``"other"``, from the share of CJK ideographs among
    ideographs and Latin letters, an ideograph weighing ``ideograph_letters`` letters: ``majority`` or
    more of one script names the language (see :data:`LANGUAGE_MAJORITY`).

    >>> language("我的iPhone屏幕碎了"), language("The 快递 never came")
    ('mixed', 'en')
    >>> language("ありがとう"), language("123")
    ('other', 'other')
    >>> language("The 快递 never came", ideograph_letters=3, majority=0.85)  # as a chat message is read
    'mixed'
    """
    text = unicodedata.normalize("NFKC", text)
    ideographs = len(IDEOGRAPH.findall(text))
    latin = len(LATIN.findall(text))
    other = sum(1 for char in text if char.isalpha()) - ideographs - latin
    known = ideographs + latin
    if known == 0 or other > known:
        return "other"
    share = ideographs * ideograph_letters / (ideographs * ideograph_letters + latin)
    if share >= majority:
        return "zh"
    if share <= 1.0 - majority:
        return "en"
    return "mixed"


def _segments(text: str) -> list[list[tuple[bool, str]]]:
    """Per clause, its segments in order: ``(True, run of ideographs)`` or ``(False, word)``."""
    clauses = []
    for clause in _CLAUSE_BREAK.split(_normalise(text)):
        found = [
            (match.lastgroup == "zh", match.group().replace("'", "").replace("\u2019", ""))
            for match in SEGMENT.finditer(clause)
        ]
        if found:
            clauses.append(found)
    return clauses


def tokens(text: str) -> dict[str, int]:
    """Feature counts of ``text``: words and word pairs, ideographs and ideograph pairs (``zh:``).

    >>> tokens("App闪退, can't log in")
    {'app': 1, 'zh:闪': 1, 'zh:退': 1, 'zh:闪退': 1, 'cant': 1, 'log': 1, 'in': 1, 'cant log': 1, 'log in': 1}
    """
    counts: dict[str, int] = {}
    for clause in _segments(text):
        words: list[str] = []  # the current run of adjacent words, for their pairs
        for is_zh, segment in clause:
            if is_zh:
                _add_pairs(counts, words)
                words = []
                for char in segment:
                    key = ZH_PREFIX + char
                    counts[key] = counts.get(key, 0) + 1
                for i in range(len(segment) - 1):
                    key = ZH_PREFIX + segment[i : i + 2]
                    counts[key] = counts.get(key, 0) + 1
            else:
                counts[segment] = counts.get(segment, 0) + 1
                words.append(segment)
        _add_pairs(counts, words)
    return counts


def _add_pairs(counts: dict[str, int], words: list[str]) -> None:
    for first, second in pairwise(words):
        key = f"{first} {second}"
        counts[key] = counts.get(key, 0) + 1


# --- sentiment

# A deliberately small lexicon: the words customers use most about shopping, delivery and products.
# Polarity +1 or -1 per entry; multi-word English entries and multi-character Chinese entries are
# matched before their parts, so "不错" (not bad: good) is positive rather than 不 + 错.
POSITIVE = frozenset(
    {
        # English
        "good", "great", "excellent", "amazing", "awesome", "perfect", "love", "loved",
        "happy", "satisfied", "recommend", "best", "fantastic", "wonderful", "nice", "fast", "quick",
        "easy", "helpful", "friendly", "thanks", "thank you", "worth", "reliable", "smooth", "on time",
        "impressed", "pleased", "solid", "intuitive", "affordable", "kudos", "top notch",
        # Chinese
        "好", "很好", "棒", "喜欢", "满意", "推荐", "感谢", "谢谢", "完美", "赞", "优秀", "不错",
        "快", "方便", "好用", "划算", "实惠", "值", "值得", "开心", "惊喜", "给力", "准时", "耐用",
        "精致", "流畅", "简单", "清楚", "没问题", "放心", "点赞", "好评",
    }
)  # fmt: skip
NEGATIVE = frozenset(
    {
        # English
        "bad", "terrible", "awful", "horrible", "poor", "worst", "hate", "broken", "late", "slow",
        "expensive", "overpriced", "disappointed", "disappointing", "useless", "confusing",
        "annoying", "defective", "damaged", "crushed", "lost", "never", "waste", "problem", "issue",
        "difficult", "hard", "angry", "frustrating", "flimsy", "rip off", "unhappy",
        "complicated", "crash", "crashes", "missing", "wrong", "refund",
        # Chinese
        "差", "很差", "太差", "坏", "坏了", "慢", "贵", "失望", "垃圾", "难用", "麻烦", "生气",
        "破损", "问题", "烂", "糟糕", "后悔", "退货", "退款", "差评", "不满", "投诉", "复杂",
        "难", "丢", "错", "延迟", "卡", "闪退", "劣质", "坑", "无语", "晚", "不值",
    }
)  # fmt: skip
# Words that contain a sentiment character but carry none, matched whole so that their parts are not
# read: 快递 is a courier, not 快 (fast); 晚上 is the evening, 无线 wireless, 信用卡 a credit card.
NEUTRAL = frozenset(
    {
        "快递", "尽快", "快点", "赶快", "晚上", "无线", "信用卡", "银行卡", "卡片", "不过", "不管",
        "不同", "不用", "不少", "不久", "差不多", "好像", "好几", "别人", "难道", "价值", "慢慢",
    }
)  # fmt: skip
# A negator reverses the next sentiment term of its clause if fewer than NEGATION_WINDOW units come
# between (English words; Chinese units are mostly single characters, about half a word, hence a
# longer window), and damps it:
# "not good" is milder than "bad" (see NEGATION_FACTOR).
NEGATORS = frozenset(
    {
        "not", "no", "dont", "doesnt", "didnt", "isnt", "wasnt", "arent", "werent", "cant",
        "cannot", "couldnt", "wont", "hardly", "nothing",
        "不", "没", "没有", "别", "未", "不是", "不太", "并不", "无",
    }
)  # fmt: skip
# An intensifier scales the next sentiment term within the same window by INTENSIFIER_FACTOR.
INTENSIFIERS = frozenset(
    {
        "very", "really", "so", "too", "extremely", "super", "totally", "absolutely", "incredibly",
        "很", "非常", "太", "特别", "真", "超", "超级", "极其", "十分", "相当",
    }
)  # fmt: skip
NEGATION_FACTOR = -0.5
INTENSIFIER_FACTOR = 1.5
NEGATION_WINDOW = 3
NEGATION_WINDOW_ZH = 5
# The CSAT score's share of the blend when the text has sentiment words too: the score is the user's
# own explicit rating, the lexicon a rough reading of a few words, so neither is trusted over the other.
SCORE_WEIGHT = 0.5
# |sentiment| below this is neutral: one plain sentiment word (0.5) or a CSAT of 2 or 4 (0.5) is
# polar, a 3 with a mild word either way (0.25) is polar too, a negated word (0.333) alone is polar.
NEUTRAL_BAND = 0.2

_LEXICON = POSITIVE | NEGATIVE | NEGATORS | INTENSIFIERS | NEUTRAL
_LONGEST_ZH = max(len(term) for term in _LEXICON if IDEOGRAPH.match(term))
_LONGEST_EN = max(term.count(" ") + 1 for term in _LEXICON)


def longest_matches(
    clause: Iterable[tuple[bool, str]],
    entries: Container[str],
    longest_en: int,
    longest_zh: int,
    starts: Container[str] | None = None,
) -> list[str]:
    """A clause's segments (``(True, run of ideographs)`` or ``(False, word)``) as units of a lexicon:
    at each place the longest of ``entries`` (English phrases of up to ``longest_en`` words, Chinese
    terms of up to ``longest_zh`` characters), else one word or one ideograph. ``starts``: the only
    words and characters a longer entry may begin with (None: any).

    >>> clause = [(False, "not"), (False, "bad"), (True, "非常满意")]
    >>> longest_matches(clause, {"not bad", "非常", "满意"}, longest_en=2, longest_zh=2)
    ['not bad', '非常', '满意']
    """
    units: list[str] = []
    words: list[str] = []

    def flush_words() -> None:
        i = 0
        while i < len(words):
            longest = min(longest_en, len(words) - i) if starts is None or words[i] in starts else 1
            for size in range(longest, 0, -1):
                phrase = " ".join(words[i : i + size])
                if size == 1 or phrase in entries:
                    units.append(phrase)
                    i += size
                    break
        words.clear()

    for is_zh, segment in clause:
        if not is_zh:
            words.append(segment)
            continue
        flush_words()
        i = 0
        while i < len(segment):
            longest = min(longest_zh, len(segment) - i) if starts is None or segment[i] in starts else 1
            for size in range(longest, 0, -1):
                if size == 1 or segment[i : i + size] in entries:
                    units.append(segment[i : i + size])
                    i += size
                    break
    flush_words()
    return units


def lexicon_polarity(text: str) -> tuple[float, int]:
    """The summed polarity of the sentiment terms of ``text`` (each +1 or -1, times NEGATION_FACTOR
    when negated and INTENSIFIER_FACTOR when intensified) and how many terms were found.

    >>> lexicon_polarity("Not very good, the courier was late")
    (-1.75, 2)
    """
    total, found = 0.0, 0
    for clause in _segments(text):
        factor, window = 1.0, 0
        for unit in longest_matches(clause, _LEXICON, _LONGEST_EN, _LONGEST_ZH):
            reach = NEGATION_WINDOW_ZH if IDEOGRAPH.match(unit) else NEGATION_WINDOW
            if unit in NEGATORS:
                factor, window = factor * NEGATION_FACTOR, reach
            elif unit in INTENSIFIERS:
                factor, window = factor * INTENSIFIER_FACTOR, reach
            elif unit in POSITIVE or unit in NEGATIVE:
                total += factor * (1.0 if unit in POSITIVE else -1.0)
                found += 1
                factor, window = 1.0, 0
            elif window:
                window -= 1
                if not window:
                    factor = 1.0
    return total, found


def sentiment(text: str, score: float | None = None) -> float:
    """Sentiment of ``text`` in [-1, 1], rounded to 3 decimals, blended with a 1-5 CSAT ``score``.

    The lexicon's reading is ``p / (|p| + 1)`` of the summed polarity ``p`` (:func:`lexicon_polarity`):
    one plain term is ±0.5, two agreeing terms ±0.667, never ±1. The score reads as ``(score - 3) / 2``.
    With both, ``SCORE_WEIGHT * score + (1 - SCORE_WEIGHT) * lexicon``; when the text has no lexicon
    term the score alone, and with neither 0.

    >>> sentiment("Great product, fast delivery"), sentiment("快递太慢了"), sentiment("ok", score=1)
    (0.667, -0.6, -1.0)
    >>> sentiment("The box was crushed", score=4)  # the words and the score disagree
    0.0
    """
    polarity, found = lexicon_polarity(text)
    lexical = polarity / (abs(polarity) + 1.0)
    if score is None:
        value = lexical if found else 0.0
    else:
        rated = max(-1.0, min(1.0, (score - 3.0) / 2.0))
        value = SCORE_WEIGHT * rated + (1.0 - SCORE_WEIGHT) * lexical if found else rated
    return round(value, 3)


def sentiment_label(value: float) -> str:
    """``"negative"`` below ``-NEUTRAL_BAND``, ``"positive"`` above ``NEUTRAL_BAND``, else ``"neutral"``.

    >>> sentiment_label(-0.2), sentiment_label(-0.25), sentiment_label(0.5)
    ('neutral', 'negative', 'positive')
    """
    if value < -NEUTRAL_BAND:
        return "negative"
    if value > NEUTRAL_BAND:
        return "positive"
    return "neutral"
