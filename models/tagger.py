# Chinese text is written with full-width punctuation: these are not confusable characters.
# ruff: noqa: RUF002
"""The feedback tagger: free-text feedback in Chinese and English, tagged online into categories.

A feedback comment ("The courier came three days late", "物流太慢了，等了一个星期") gets one or more of
:data:`CATEGORIES`, each routed to a team (:data:`ROUTES`). :class:`FeedbackTagger` is one binary
River ``LogisticRegression`` per category on shared features (:func:`features`: the counts of
:func:`models.text.tokens`, L2-normalised, so a long comment does not outweigh a short one):
multi-label, since "late and the box was crushed" is about delivery and quality at once.

**Features, bounded.** A feature is a token of :func:`models.text.tokens` (a word, two adjacent words,
a Chinese character or two adjacent characters). The 1,848 tokens of the seed (:func:`vocabulary`)
keep a weight each, by name; every other token, the unbounded part (whatever people write and
correct), is hashed into one of :data:`BUCKETS` (4,096) buckets, tokens sharing a bucket sharing
its weight (the hashing trick, with a sign per token: :func:`bucket_of`). Each of the six classifiers
thus holds at most 1,848 + 4,096 weights, whatever it reads. The hash is BLAKE2b, the same in every
process, partition and restart (Python's ``hash`` is salted per process), and the seed's tokens
are never hashed, so the seeded tagger is exactly what it was with one weight per token.

**Seed.** Before any correction the tagger knows :data:`KEYWORD_RULES`: at construction it learns
:func:`seed_examples`, every keyword of a category alone and in each of the :data:`SEED_TEMPLATES`
of its language (``"the {k}"``, ``"这个{k}"`` ...) labelled with that category only, the categories
interleaved, :data:`SEED_PASSES` times over. Template words occur with every category, so they learn
about nothing; a keyword's words and characters learn its category and against the others. The seed
is deterministic, so every partition's tagger starts the same; it is computed once per process and
copied.

**Corrections.** People correct tags on ``feedback_labels``; :func:`parse_label` validates one and
:meth:`FeedbackTagger.learn_correction` learns it (once: a replayed correction is skipped, among the
last :data:`CORRECTION_MEMORY`). Every partition's tagger learns every correction, so they stay the
same. A checkpoint written before the features were hashed is restored with the weights of its
tokens outside the vocabulary folded into their buckets.

**Why logistic regression.** Measured on :mod:`models.feedback_corpus` (the held-out sets and the 300
corrections of ``tests/unit/models/test_tagger.py``), against River's naive Bayes models on the same tokens
and seed. Top-tag accuracy / micro-F1, English then Chinese:

=====================  ===========================  ===========================  ==========  =======
model                  seeded                       after 300 corrections        predict     pickled
=====================  ===========================  ===========================  ==========  =======
LogisticRegression,    0.868/0.774, 0.927/0.852     0.990/0.955, 0.995/0.968     ~30 µs      163 kB
SGD(2.0) (chosen)
same, SGD(0.5)         0.637/0.570, 0.858/0.773     0.968/0.871, 0.995/0.914     ~30 µs      163 kB
same, AdaGrad(0.5)     0.785/0.699, 0.917/0.824     0.990/0.910, 1.000/0.920     ~35 µs      311 kB
MultinomialNB          0.835/0.399, 0.910/0.570     0.980/0.785, 0.998/0.834     ~1 ms       276 kB
ComplementNB           0.838/0.394, 0.905/0.551     0.980/0.768, 0.998/0.826     15-24 ms    427 kB
BernoulliNB            0.860/0.779, 0.902/0.828     0.980/0.794, 0.998/0.850     20-35 ms    198 kB
=====================  ===========================  ===========================  ==========  =======

Naive Bayes picks the top tag about as well but its probabilities are near 0 or 1, so a threshold
for a second tag fails (micro-F1); Complement and Bernoulli naive Bayes also score their whole
vocabulary at each prediction. AdaGrad keeps a sum of squared gradients per weight (twice the
size) and learns two to five times slower. A high SGD rate lets a few corrections teach a phrase
the rules lack (one to three, see the tests); the price is that one wrong correction moves the tags
as much. (The table was measured with one weight per token, before hashing; sizes are of a freshly
seeded tagger in River's own pickle.)

**Why 4,096 buckets.** The tagger is pickled into each partition's checkpoint
(:class:`models.learners.PartitionModels`), one Kafka record, which must stay under Faust's
``producer_max_request_size`` and Kafka's ``message.max.bytes`` (about 1 MB). With one weight per
token it grew without bound: 7 MB after 2,048 corrections of random text. Hashed, it is pickled
compactly (:meth:`FeedbackTagger.__getstate__`: 8 bytes per vocabulary weight, 10 per bucket learned)
and measured at 114 kB seeded, 180 kB after the 300 corrections of the tests, and 376 kB once every
bucket of every classifier has learned (after about 1,000 corrections of random text; the replay
memory, 16 kB, included): the worst case, whatever is corrected. The whole ``PartitionModels`` is
then at most 729 kB, the intent and churn models with their quality windows full taking 353 kB.
Measured: top-tag accuracy / micro-F1 on the tests' held-out sets, English then Chinese; "taught",
the share of 300 made-up phrases, each corrected three times amid filler words from a 20,000-word
vocabulary, that a new text holding the phrase is tagged with; the tagger pickled, all buckets learned:

=========================  ===========================  ===========================  ======  =========
features                   seeded                       after 300 corrections        taught  worst case
=========================  ===========================  ===========================  ======  =========
one weight per token       0.868/0.774, 0.927/0.852     0.990/0.955, 0.995/0.968     0.993   unbounded
vocabulary + 4,096 (kept)  0.868/0.774, 0.927/0.852     0.990/0.952, 0.995/0.969     0.900   376 kB
vocabulary + 8,192         0.868/0.774, 0.927/0.852     0.990/0.955, 0.995/0.968     0.957   622 kB
all hashed, 8,192          0.833/0.744, 0.903/0.835     0.990/0.950, 0.995/0.960     0.843   510 kB
all hashed, 16,384         0.860/0.769, 0.923/0.847     0.990/0.950, 0.995/0.961     0.900   1,002 kB
=========================  ===========================  ===========================  ======  =========

Hashing the seed's own tokens too costs the rules accuracy, and by luck: over ten hash salts, the
seeded English accuracy with 8,192 buckets ranged from 0.79 to 0.88 and up to three keywords alone
lost their category. 8,192 buckets beside the vocabulary would put the worst-case checkpoint at about
975 kB, over the limit's margin; 4,096 keep the rules' behaviour exactly and learn what the tests'
corrections teach as well as one weight per token, at the price of less room for many distinct new
phrases (0.90 taught against 0.99). Hashing costs about 6 µs more per prediction (31 µs against 25
on the held-out texts) and 9 µs more per correction learned (60 µs against 51): the digest of a
token, cached (:data:`DIGEST_CACHE`) as words recur, and integer keys.

The ``feedback_labels`` contract (schema 1), one JSON object per correction:

* ``feedback_id``: the tagged feedback's id (the feedback event's ``event_id``), 1-128 characters;
* ``text``: the feedback text (required: every partition learns from the correction itself);
* ``tags``: the right categories, 1-6 distinct names of :data:`CATEGORIES`;
* ``labelled_by``: who corrected it, 1-128 characters;
* ``labelled_at``: when, ISO 8601 with a time zone or epoch milliseconds;
* ``schema``: optional, ``1``.

The ``feedback_tagged`` contract (schema 1): see :meth:`TaggedFeedback.to_wire`.

>>> tagger = FeedbackTagger()
>>> tagger.predict_one("The courier came three days late").tags
('delivery',)
>>> tagger.predict_one("这个太贵了，不值这个价").tags
('pricing',)
>>> unknown = tagger.predict_one("Total highway robbery")  # no rule knows the phrase
>>> unknown.tags, unknown.confidence < 0.2  # the top category all the same, with a low confidence
(('usability',), True)
>>> for _ in range(2):
...     tagger.learn_one("Total highway robbery", ["pricing"])
>>> tagging = tagger.predict_one("That was highway robbery")
>>> tagging.tags, tagging.examples
(('pricing',), 2)
"""

from __future__ import annotations

import copy
import functools
import hashlib
import math
import pickle
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from river import linear_model, optim, utils

from models.text import language, sentiment, sentiment_label, tokens
from streams.contracts.events import (
    MAX_ID_LENGTH,
    MAX_TEXT_LENGTH,
    Event,
    InvalidEvent,
    parse_time,
    read_json_object,
    to_millis,
)
from streams.contracts.interventions import iso_time

FEEDBACK_TAGGED_SCHEMA = 1
FEEDBACK_LABEL_SCHEMA = 1

CATEGORIES = ("pricing", "delivery", "quality", "usability", "feature_request", "praise")
PRODUCT, MARKETING = "product", "marketing"
TEAMS = (PRODUCT, MARKETING)
# Who acts on a category. Marketing owns what customers pay and what they say about the brand: price
# perception, promotions and coupons are its levers, and praise is its material (reviews, testimonials,
# referral campaigns). Product owns the experience itself: the goods (quality), the app and the device
# (usability), what to build next (feature_request) and fulfilment, whose carriers and promised
# delivery times are set by the product and operations side, not by campaigns (delivery).
ROUTES = {
    "pricing": MARKETING,
    "delivery": PRODUCT,
    "quality": PRODUCT,
    "usability": PRODUCT,
    "feature_request": PRODUCT,
    "praise": MARKETING,
}

# The rules the tagger is seeded with: per category, English and Chinese keywords and phrases. English
# entries are matched as words (tokens), Chinese ones through their characters and character pairs.
KEYWORD_RULES: dict[str, dict[str, tuple[str, ...]]] = {
    "pricing": {
        "en": (
            "price", "prices", "pricing", "expensive", "overpriced", "cheap", "cheaper", "discount",
            "coupon", "cost", "costs", "fee", "fees", "charge", "charged", "pay", "money", "worth",
            "value for money", "sale", "promotion", "deal", "refund", "bill", "billing",
            "subscription", "price increase", "too much", "afford", "budget",
        ),
        "zh": (
            "价格", "价钱", "贵", "太贵", "便宜", "优惠", "优惠券", "打折", "折扣", "降价", "涨价",
            "性价比", "划算", "收费", "钱", "退款", "差价", "运费", "付款", "扣费", "会员价", "原价",
            "促销", "值", "不值", "花钱", "报价", "账单",
        ),
    },
    "delivery": {
        "en": (
            "delivery", "deliver", "delivered", "shipping", "shipped", "ship", "shipment", "courier",
            "late", "delayed", "delay", "arrived", "arrive", "package", "tracking", "carrier",
            "driver", "postman", "dispatch", "on time", "days late", "never arrived", "lost in the mail",
            "waiting", "pickup", "address", "warehouse", "express",
        ),
        "zh": (
            "快递", "物流", "送货", "配送", "发货", "到货", "快递员", "延迟", "慢", "太慢", "送到",
            "没到", "还没到", "收到", "派送", "丢件", "取件", "上门", "送错", "地址", "运输", "等了",
            "迟到", "顺丰", "仓库", "催",
        ),
    },
    "quality": {
        "en": (
            "quality", "broken", "broke", "defective", "faulty", "cracked", "scratched", "scratch",
            "damaged", "stopped working", "poor quality", "cheap material", "plastic", "battery",
            "leaks", "leaking", "smell", "durable", "material", "build quality", "fragile", "peeling",
            "stitching", "loose", "malfunction", "not working", "dead on arrival", "wore out",
        ),
        "zh": (
            "质量", "坏了", "坏", "破损", "做工", "次品", "瑕疵", "掉色", "异味", "划痕", "开裂",
            "故障", "电池", "不耐用", "耐用", "劣质", "假货", "材料", "粗糙", "漏水", "失灵", "碎了",
            "裂", "断了", "没电", "发热", "质感",
        ),
    },
    "usability": {
        "en": (
            "confusing", "complicated", "hard to use", "difficult", "interface", "ui", "navigate",
            "navigation", "menu", "settings", "button", "buttons", "setup", "set up", "instructions",
            "manual", "intuitive", "user friendly", "easy to use", "app", "website", "log in", "login",
            "password", "layout", "find", "figure out", "steps",
        ),
        "zh": (
            "界面", "操作", "难用", "不好用", "好用", "复杂", "找不到", "设置", "按钮", "说明书",
            "安装", "登录", "不方便", "方便", "繁琐", "麻烦", "菜单", "上手", "步骤", "页面",
            "字太小", "看不清", "使用", "教程", "连接", "卡顿", "闪退",
        ),
    },
    "feature_request": {
        "en": (
            "feature", "please add", "add", "would be nice", "would be great", "wish", "option",
            "support", "could you", "can you", "suggestion", "suggest", "request", "would love",
            "it would help", "missing", "need a way", "allow", "let me", "should have", "hope",
            "plan to", "future update", "integrate", "customize", "setting for",
        ),
        "zh": (
            "希望", "建议", "增加", "加个", "添加", "功能", "能不能", "可以加", "支持", "要是有",
            "如果能", "就好了", "新功能", "选项", "以后", "出个", "定制", "更新", "期待", "需求",
            "什么时候", "考虑",
        ),
    },
    "praise": {
        "en": (
            "great", "love", "excellent", "amazing", "awesome", "perfect", "thank you", "thanks",
            "happy", "recommend", "best", "fantastic", "wonderful", "satisfied", "five stars",
            "5 stars", "impressed", "brilliant", "good job", "well done", "pleased", "delighted",
            "exactly as described", "highly recommend", "superb", "outstanding",
        ),
        "zh": (
            "好评", "喜欢", "棒", "满意", "推荐", "感谢", "谢谢", "完美", "赞", "优秀", "很好",
            "开心", "惊喜", "五星", "点赞", "回购", "不错", "太好了", "漂亮", "好看", "值得购买",
            "服务好", "耐心",
        ),
    },
}  # fmt: skip

# The seed: every keyword alone and in each short template of its language (see seed_examples).
SEED_TEMPLATES = {
    "en": ("{k}", "the {k}", "it is {k}", "about the {k} really", "{k} again this time"),
    "zh": ("{k}", "{k}了", "这个{k}", "觉得{k}", "又是{k}的问题"),
}
# Passes over the seed. Measured (top-tag accuracy en/zh on the tests' held-out sets): one pass
# 0.755/0.910, two 0.868/0.927, three 0.887/0.912, four 0.892/0.907: past two, English gains what
# Chinese loses, for twice the start-up time.
SEED_PASSES = 2
# SGD step and the intercept's, measured on models/feedback_corpus (the table in the module docstring).
LEARNING_RATE = 2.0
INTERCEPT_RATE = 0.1
# A category is a tag from this probability on; the top category is a tag whatever its probability.
# Below 0.5 because a second category in a comment is usually said in fewer words than the first.
THRESHOLD = 0.4
# Corrections remembered to skip replays (a partition restored from a checkpoint sees again the
# corrections since): ids of the last CORRECTION_MEMORY corrections, as 64-bit hashes (16 kB pickled).
CORRECTION_MEMORY = 2048
# Buckets of the hashed features (the tokens outside vocabulary()), per category classifier: what bounds
# the tagger's size. Measured in the module docstring; at most 65,536 (bucket numbers pickle as 16 bits).
BUCKETS = 2**12
# Digests of recent tokens kept per process: words recur, and a cached digest costs a fifth of a new one.
DIGEST_CACHE = 2**14
SCORE_DIGITS = 4  # probabilities on the wire
# The tagger's checkpoint layout (FeedbackTagger.__getstate__); a state without it is the layout before
# the features were hashed.
STATE_FORMAT = 2


def seed_examples() -> list[tuple[str, tuple[str, ...]]]:
    """The seed ``(text, (category,))`` in the order it is learned: the examples of each category
    (English keywords then Chinese, each keyword in every template) taken in turn across categories,
    so no category is learned as one block.

    >>> examples = seed_examples()
    >>> examples[:3]
    [('price', ('pricing',)), ('delivery', ('delivery',)), ('quality', ('quality',))]
    >>> len(examples) == len(SEED_TEMPLATES["en"]) * sum(
    ...     len(rules["en"]) + len(rules["zh"]) for rules in KEYWORD_RULES.values()
    ... )
    True
    """
    by_category = {
        category: [
            template.replace("{k}", keyword)
            for lang in ("en", "zh")
            for keyword in rules[lang]
            for template in SEED_TEMPLATES[lang]
        ]
        for category, rules in KEYWORD_RULES.items()
    }
    longest = max(len(texts) for texts in by_category.values())
    return [
        (texts[i], (category,))
        for i in range(longest)
        for category, texts in by_category.items()
        if i < len(texts)
    ]


@functools.cache
def vocabulary() -> frozenset[str]:
    """The tokens of the seed (:func:`seed_examples`): the features kept by name, one weight each.

    >>> len(vocabulary()), "too much" in vocabulary(), "zh:太贵" in vocabulary(), "pricey" in vocabulary()
    (1848, True, True, False)
    """
    return frozenset(name for text, _ in seed_examples() for name in tokens(text))


@functools.lru_cache(maxsize=DIGEST_CACHE)
def _digest(name: str) -> int:
    # blake2b, not hash(): str hashes are salted per process, and every partition, restart and version
    # must put a token in the same bucket. surrogatepass: any str encodes, deterministically.
    raw = name.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little")


def bucket_of(name: str, buckets: int = BUCKETS) -> tuple[int, float]:
    """The bucket of a token outside :func:`vocabulary` and the sign its value is added with: the
    first 8 bytes of the BLAKE2b digest of its UTF-8, read little-endian, modulo ``buckets``; the sign
    is the digest's top bit, so that tokens sharing a bucket cancel out on average instead of adding up.

    >>> bucket_of("highway robbery"), bucket_of("kudos"), bucket_of("kudos", 2**16)
    ((600, 1.0), (3013, -1.0), (27589, -1.0))
    """
    digest = _digest(name)
    return digest % buckets, -1.0 if digest >> 63 else 1.0


def features(text: str, buckets: int = BUCKETS) -> dict[str | int, float]:
    """The token counts of ``text`` (:func:`models.text.tokens`) divided by their L2 norm: a token of
    :func:`vocabulary` by its name, any other summed into its bucket (:func:`bucket_of`) with its sign.

    >>> {name: round(value, 4) for name, value in features("late late").items()}  # 2 and 1 over sqrt(5)
    {'late': 0.8944, 773: -0.4472}
    >>> {name: round(value, 4) for name, value in features("Pricey parcel, late").items()}
    {2060: 0.5, 822: -0.5, 3966: 0.5, 'late': 0.5}
    """
    counts = tokens(text)
    norm = math.sqrt(sum(c * c for c in counts.values())) or 1.0
    known = vocabulary()
    x: dict[str | int, float] = {}
    for name, count in counts.items():
        if name in known:
            x[name] = count / norm
        else:  # bucket_of, inlined: this runs for most tokens of every text
            digest = _digest(name)
            bucket = digest % buckets
            x[bucket] = x.get(bucket, 0.0) + (-count if digest >> 63 else count) / norm
    return x


def _classifier() -> linear_model.LogisticRegression:
    return linear_model.LogisticRegression(optimizer=optim.SGD(LEARNING_RATE), intercept_lr=INTERCEPT_RATE)


def _learn(classifiers: dict[str, Any], text: str, tags: Iterable[str], buckets: int = BUCKETS) -> None:
    x = features(text, buckets)
    wanted = set(tags)
    for category, model in classifiers.items():
        model.learn_one(x, category in wanted)


@functools.cache
def _seeded() -> bytes:
    """The seeded classifiers, pickled: computed once per process, each tagger unpickles a copy."""
    classifiers = {category: _classifier() for category in CATEGORIES}
    examples = seed_examples()
    for _ in range(SEED_PASSES):
        for text, tags in examples:
            _learn(classifiers, text, tags)
    return pickle.dumps(classifiers, protocol=pickle.HIGHEST_PROTOCOL)


@dataclass(slots=True)
class Tagging:
    """The tags of one text: the categories with probability at least the threshold, and always the
    most probable one (first); ``confidence`` is the top category's probability; ``examples`` the
    corrections the tagger had learned."""

    tags: tuple[str, ...]
    confidence: float
    scores: dict[str, float]
    examples: int


@dataclass(slots=True)
class Correction:
    """A person's correction of a feedback's tags, from ``feedback_labels`` (see :func:`parse_label`)."""

    feedback_id: str
    text: str
    tags: tuple[str, ...]
    labelled_by: str
    labelled_at: float  # epoch seconds

    @property
    def key(self) -> int:
        """Identifies the correction for replay detection: the same feedback relabelled later is new."""
        raw = f"{self.feedback_id}\x1f{to_millis(self.labelled_at)}\x1f{self.labelled_by}".encode()
        return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big")

    def to_wire(self) -> dict[str, Any]:
        """The ``feedback_labels`` contract, with ``labelled_at`` in epoch ms (for the internal topic
        that broadcasts corrections to every partition; :func:`parse_label` reads it back)."""
        return {
            "schema": FEEDBACK_LABEL_SCHEMA,
            "feedback_id": self.feedback_id,
            "text": self.text,
            "tags": list(self.tags),
            "labelled_by": self.labelled_by,
            "labelled_at": to_millis(self.labelled_at),
        }


class FeedbackTagger:
    """Multi-label tagger of feedback text: one River logistic regression per category.

    ``seeded=False`` starts from nothing (for measuring what the seed is worth). ``buckets``: the
    bucket count of its hashed features (:data:`BUCKETS`); a tagger restored from a checkpoint keeps
    the count it was written with, so that its weights stay where its tokens hash.
    """

    def __init__(self, threshold: float = THRESHOLD, *, seeded: bool = True) -> None:
        self.threshold = threshold
        self.buckets = BUCKETS
        if seeded:
            self.classifiers: dict[str, Any] = pickle.loads(_seeded())
            self.seed_examples = len(seed_examples())
        else:
            self.classifiers = {category: _classifier() for category in CATEGORIES}
            self.seed_examples = 0
        self.examples = 0  # corrections learned
        # Keys of the last CORRECTION_MEMORY corrections learned, oldest first (a dict keeps order).
        self.recent: dict[int, None] = {}

    def learn_one(self, text: str, tags: Iterable[str]) -> None:
        """Learn that ``text`` has exactly ``tags`` (every other category is learned as absent)."""
        _learn(self.classifiers, text, tags, self.buckets)
        self.examples += 1

    def learn_correction(self, correction: Correction) -> bool:
        """Learn a correction unless it was learned among the last CORRECTION_MEMORY; whether it was."""
        key = correction.key
        if key in self.recent:
            return False
        self.learn_one(correction.text, correction.tags)
        self.recent[key] = None
        if len(self.recent) > CORRECTION_MEMORY:
            del self.recent[next(iter(self.recent))]
        return True

    def predict_proba_one(self, text: str) -> dict[str, float]:
        """The probability of each category, independently (they need not sum to 1)."""
        x = features(text, self.buckets)
        return {
            category: float(model.predict_proba_one(x)[True]) for category, model in self.classifiers.items()
        }

    def predict_one(self, text: str) -> Tagging:
        scores = self.predict_proba_one(text)
        top = max(CATEGORIES, key=scores.__getitem__)
        others = sorted(
            (c for c in CATEGORIES if c != top and scores[c] >= self.threshold),
            key=scores.__getitem__,
            reverse=True,
        )
        return Tagging((top, *others), scores[top], scores, self.examples)

    def __getstate__(self) -> dict[str, Any]:
        """The checkpoint form: per category the River model without its weights, the weights of the
        vocabulary as one array (names once for all), those of the buckets as two arrays (bucket,
        weight) of the buckets learned; the replay memory as one array. 8 bytes per vocabulary weight
        and 10 per bucket learned instead of 12 to 17 in River's own pickle."""
        names = tuple(sorted(vocabulary()))
        models = {}
        for category, model in self.classifiers.items():
            weights = model._weights.to_dict()
            learned = sorted(key for key in weights if isinstance(key, int))
            shell = copy.copy(model)  # shares all but the weights, which are written as arrays
            shell._weights = utils.VectorDict(None)
            models[category] = (
                shell,
                array("d", [weights.get(name, 0.0) for name in names]),
                array("H", learned),
                array("d", [weights[bucket] for bucket in learned]),
            )
        return {
            "format": STATE_FORMAT,
            "threshold": self.threshold,
            "buckets": self.buckets,
            "seed_examples": self.seed_examples,
            "examples": self.examples,
            "recent": array("Q", self.recent),
            "names": names,
            "models": models,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint; one written before the features were hashed (weights by token name,
        without bound) has the weights of the tokens outside the vocabulary folded into their buckets."""
        if "format" not in state:
            self.__dict__.update(state)
            self.buckets = BUCKETS
        elif (found := state["format"]) != STATE_FORMAT:  # a later version's: refuse rather than misread
            raise ValueError(f"tagger checkpoint format {found!r}; this version reads {STATE_FORMAT}")
        else:
            self.threshold, self.buckets = state["threshold"], state["buckets"]
            self.seed_examples, self.examples = state["seed_examples"], state["examples"]
            self.recent = dict.fromkeys(state["recent"])
            self.classifiers = {}
            for category, (shell, named, learned, hashed) in state["models"].items():
                weights = {name: w for name, w in zip(state["names"], named, strict=True) if w}
                weights.update(zip(learned, hashed, strict=True))
                shell._weights = utils.VectorDict(weights)
                self.classifiers[category] = shell
        for model in self.classifiers.values():
            _fold(model, self.buckets)


def _fold(model: linear_model.LogisticRegression, buckets: int) -> None:
    """Move the weights of named tokens outside :func:`vocabulary` into their buckets, with their
    signs (what the tagger would have learned had it hashed them; exact unless tokens collide)."""
    weights = model._weights.to_dict()
    known = vocabulary()
    stray = [name for name in weights if isinstance(name, str) and name not in known]
    if not stray:
        return
    for name in stray:
        bucket, sign = bucket_of(name, buckets)
        weights[bucket] = weights.get(bucket, 0.0) + sign * weights.pop(name)
    model._weights = utils.VectorDict(weights)


# --- the feedback_labels topic


def _string(data: dict[str, Any], name: str, limit: int) -> str:
    value = data.get(name)
    if value is None:
        raise InvalidEvent("missing_field", f"field {name!r} is required")
    if not isinstance(value, str):
        raise InvalidEvent("wrong_type", f"field {name!r} must be a string, got {type(value).__name__}")
    if not value.strip() or len(value) > limit or (limit == MAX_ID_LENGTH and not value.isprintable()):
        raise InvalidEvent("invalid_value", f"field {name!r} must be 1-{limit} characters, not blank")
    return value


def parse_label(raw: bytes, *, max_bytes: int = 65536) -> Correction:
    """Validate one ``feedback_labels`` message (the contract is in the module docstring).

    Raises :class:`streams.contracts.events.InvalidEvent` with a reason of ``DEAD_LETTER_REASONS``.

    >>> correction = parse_label(b'{"feedback_id": "e1", "text": "too pricey", "tags": ["pricing"],'
    ...                          b' "labelled_by": "ana", "labelled_at": "2026-11-24T10:00:00Z"}')
    >>> correction.tags, correction.labelled_at
    (('pricing',), 1795514400.0)
    >>> try:
    ...     parse_label(b'{"feedback_id": "e1", "text": "x", "tags": ["shipping"], "labelled_by": "ana",'
    ...                 b' "labelled_at": 1795514400000}')
    ... except InvalidEvent as error:
    ...     print(error.reason, "-", error.detail)
    invalid_value - field 'tags' holds 'shipping', not a category
    """
    data = read_json_object(raw, max_bytes)
    feedback_id = _string(data, "feedback_id", MAX_ID_LENGTH)
    text = _string(data, "text", MAX_TEXT_LENGTH)
    tags = data.get("tags")
    if tags is None:
        raise InvalidEvent("missing_field", "field 'tags' is required")
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise InvalidEvent("wrong_type", "field 'tags' must be a list of category names")
    if not 1 <= len(tags) <= len(CATEGORIES):
        raise InvalidEvent("invalid_value", f"field 'tags' must hold 1-{len(CATEGORIES)} categories")
    for tag in tags:
        if tag not in ROUTES:
            raise InvalidEvent("invalid_value", f"field 'tags' holds {tag[:64]!r}, not a category")
    if len(set(tags)) != len(tags):
        raise InvalidEvent("invalid_value", "field 'tags' repeats a category")
    labelled_by = _string(data, "labelled_by", MAX_ID_LENGTH)
    if data.get("labelled_at") is None:
        raise InvalidEvent("missing_field", "field 'labelled_at' is required")
    labelled_at = parse_time("labelled_at", data["labelled_at"])
    ordered = tuple(c for c in CATEGORIES if c in tags)
    return Correction(feedback_id, text, ordered, labelled_by, labelled_at)


# --- the feedback_tagged topic


def teams_of(tags: Iterable[str]) -> tuple[str, ...]:
    """The teams the tags route to, in :data:`TEAMS` order.

    >>> teams_of(["praise", "delivery"])
    ('product', 'marketing')
    """
    routed = {ROUTES[tag] for tag in tags}
    return tuple(team for team in TEAMS if team in routed)


@dataclass(slots=True)
class TaggedFeedback:
    """One feedback comment, tagged (see :func:`tag_feedback`)."""

    feedback_id: str
    user_id: str
    product_id: str | None
    order_id: str | None
    text: str
    language: str
    tags: tuple[str, ...]
    scores: dict[str, float]
    confidence: float
    sentiment: float
    sentiment_label: str
    teams: tuple[str, ...]
    score: float  # the CSAT score the user gave, 1-5
    event_time: float
    examples: int = 0

    def to_wire(self, wall: float) -> dict[str, Any]:
        """The ``feedback_tagged`` contract (schema 1), one JSON object per tagged comment:

        * ``feedback_id``: the feedback event's ``event_id`` (what a correction names);
        * ``user_id``, ``product_id`` (or null), ``order_id`` (or null): from the feedback event;
        * ``text``: the comment; ``language``: ``zh``, ``en``, ``mixed`` or ``other``;
        * ``tags``: its categories, the most probable first; ``scores``: every category's probability
          (4 decimals); ``confidence``: the first tag's probability;
        * ``sentiment``: -1 to 1, text and CSAT blended; ``sentiment_label``: ``negative``,
          ``neutral`` or ``positive`` (:mod:`models.text`);
        * ``teams``: the teams the tags route to (``product``, ``marketing``);
        * ``score``: the CSAT score, 1-5;
        * ``examples``: corrections the tagger had learned when it tagged this (model maturity);
        * ``event_time``: the feedback's time, ``tagged_at``: when it was tagged (``wall``), ISO 8601 UTC.
        """
        return {
            "schema": FEEDBACK_TAGGED_SCHEMA,
            "feedback_id": self.feedback_id,
            "user_id": self.user_id,
            "product_id": self.product_id,
            "order_id": self.order_id,
            "text": self.text,
            "language": self.language,
            "tags": list(self.tags),
            "scores": {category: round(p, SCORE_DIGITS) for category, p in self.scores.items()},
            "confidence": round(self.confidence, SCORE_DIGITS),
            "sentiment": self.sentiment,
            "sentiment_label": self.sentiment_label,
            "teams": list(self.teams),
            "score": self.score,
            "examples": self.examples,
            "event_time": iso_time(self.event_time),
            "tagged_at": iso_time(wall),
        }


def tag_feedback(tagger: FeedbackTagger, event: Event) -> TaggedFeedback | None:
    """Tag a clickstream ``feedback`` event's comment; None when there is nothing to tag (no comment,
    or one without a word, a digit or an ideograph, such as "👍" or "...").

    Raises ValueError for an event that is not feedback (a wiring error, not bad input).

    >>> event = Event("e9", "feedback", "clickstream", 1764000000.0, "u1",
    ...               {"score": 1.0, "comment": "物流太慢了，等了一个星期", "product_id": "p7"})
    >>> tagged = tag_feedback(FeedbackTagger(), event)
    >>> tagged.tags, tagged.teams, tagged.language, tagged.sentiment_label
    (('delivery',), ('product',), 'zh', 'negative')
    >>> tagged.to_wire(1764000001.5)["tagged_at"]
    '2025-11-24T16:00:01.500Z'
    """
    if event.event_type != "feedback":
        raise ValueError(f"tag_feedback takes feedback events, not {event.event_type!r}")
    text = event.attrs.get("comment")
    if not text or not tokens(text):
        return None
    tagging = tagger.predict_one(text)
    score = event.attrs["score"]
    value = sentiment(text, score)
    return TaggedFeedback(
        feedback_id=event.event_id,
        user_id=event.user_id,
        product_id=event.attrs.get("product_id"),
        order_id=event.attrs.get("order_id"),
        text=text,
        language=language(text),
        tags=tagging.tags,
        scores=tagging.scores,
        confidence=tagging.confidence,
        sentiment=value,
        sentiment_label=sentiment_label(value),
        teams=teams_of(tagging.tags),
        score=score,
        event_time=event.event_time,
        examples=tagging.examples,
    )
