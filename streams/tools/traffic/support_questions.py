# Chinese questions end with the full-width question mark: not a confusable character here.
# ruff: noqa: RUF001
"""Support questions about products (``support`` source), keyed by product: questions about launched
products come at ``support_question_rate`` per second over all products (Poisson), each product with a
steady mix of topics (drawn once per run); also for ``support_history_seconds`` before the start, so
that hot-issue detection (:mod:`models.surge`) has a baseline, and with an optional planted
:class:`~streams.tools.traffic.profile.Surge`: one topic of one product, more often for a while.

In its first 30 days a product is asked about as launches of its category are: the category's launch
pattern (:data:`LAUNCH_TOPICS`, per age bucket: setup and pairing first, battery and updates later)
over its steady mix, with noise of its own (:func:`launch_mix`), which the FAQ forecast
(:mod:`models.launch_faq`) learns from the category's earlier launches.

The ground truth: :meth:`SupportQuestions.topic_rate` (the rate of a topic at a time),
:meth:`SupportQuestions.true_mix` (a product's topic shares at an age) and
:meth:`SupportQuestions.surge_window` (when the surge runs). The steady questions and the surge's draw
from a random stream each, so that how often they are asked for does not change what is asked.

>>> import random
>>> from streams.processes.catalog import load_catalog
>>> from streams.tools.traffic.profile import Surge, TrafficProfile
>>> from streams.tools.traffic.schedule import Schedule
>>> start = 1_764_000_000.0
>>> profile = TrafficProfile(support_question_rate=1.0,
...                          surge=Surge("headphones-echo-buds", "pairing", 60.0, 60.0, 100.0))
>>> questions = SupportQuestions(Schedule(profile, seed=1, random=random.Random(1)), load_catalog())
>>> questions.due(start, start + 600)
>>> questions.surge_window(start), questions.schedule.stats.surge_questions > 10
((1764000060.0, 1764000120.0), True)
"""

from __future__ import annotations

import bisect
import random

from streams.contracts.events import SUPPORT_QUESTIONS
from streams.contracts.time import DAY
from streams.processes.catalog import Catalog, Product
from streams.tools.traffic.profile import Surge, TrafficProfile, launched_products, text_language
from streams.tools.traffic.schedule import Schedule

# Support question topics (the chat's intent ids) per product category, and what customers ask about
# each, in both languages; "{name}" is the product's name.
CATEGORY_TOPICS: dict[str, tuple[str, ...]] = {
    "phones": ("battery", "charging", "screen", "camera", "software_update"),
    "laptops": ("battery", "keyboard", "overheating", "wifi", "software_update"),
    "headphones": ("pairing", "battery", "noise_cancelling", "charging_case", "fit"),
    "appliances": ("suction", "filter", "noise", "battery", "app_setup"),
}
GENERIC_TOPICS = ("setup", "returns", "warranty")
# What a category's launches are asked about most in each age bucket (days 0-1, 1-3, 3-7, 7-14 and
# 14-30 since launch; models.surge.SurgeRules.age_buckets), first the most: weighted LAUNCH_WEIGHTS
# (times a per-product noise) over the product's steady mix, whose shares sum to 1.
LAUNCH_BUCKETS = (1.0, 3.0, 7.0, 14.0, 30.0)
LAUNCH_TOPICS: dict[str, tuple[tuple[str, ...], ...]] = {
    "phones": (
        ("setup", "charging", "returns"),
        ("setup", "camera", "charging"),
        ("camera", "battery", "screen"),
        ("software_update", "battery", "returns"),
        ("software_update", "battery", "warranty"),
    ),
    "laptops": (
        ("setup", "wifi", "keyboard"),
        ("wifi", "setup", "software_update"),
        ("software_update", "keyboard", "overheating"),
        ("overheating", "battery", "returns"),
        ("battery", "software_update", "warranty"),
    ),
    "headphones": (
        ("pairing", "setup", "charging_case"),
        ("pairing", "fit", "charging_case"),
        ("fit", "noise_cancelling", "returns"),
        ("battery", "noise_cancelling", "returns"),
        ("battery", "charging_case", "warranty"),
    ),
    "appliances": (
        ("app_setup", "setup", "noise"),
        ("app_setup", "suction", "returns"),
        ("suction", "filter", "noise"),
        ("filter", "returns", "battery"),
        ("filter", "battery", "warranty"),
    ),
}
LAUNCH_WEIGHTS = (1.5, 1.0, 0.6)
LAUNCH_NOISE = (0.4, 1.6)  # each launch's factor on each pattern weight, uniform

Mix = dict[str, tuple[float, tuple[str, ...], tuple[float, ...]]]  # product -> weight, topics, shares


def question_mix(catalog: Catalog, rng: random.Random) -> Mix:
    """Per product: its weight among products and its steady topic shares (drawn once)."""
    mix = {}
    for product in sorted(catalog.products.values(), key=lambda p: p.product_id):
        topics = CATEGORY_TOPICS.get(product.category, GENERIC_TOPICS)
        weights = [rng.uniform(0.2, 1.0) for _ in topics]
        shares = tuple(weight / sum(weights) for weight in weights)
        mix[product.product_id] = (rng.uniform(0.5, 2.0), topics, shares)
    return mix


def launch_mix(
    catalog: Catalog, mix: Mix, rng: random.Random
) -> dict[str, list[tuple[tuple[str, ...], tuple[float, ...]]]]:
    """Per product of a category with a launch pattern, per age bucket: its topics and their shares,
    the pattern's weights (each times a noise factor of the product's) over its steady mix."""
    found = {}
    for product in sorted(catalog.products.values(), key=lambda p: p.product_id):
        pattern = LAUNCH_TOPICS.get(product.category)
        if pattern is None or product.product_id not in mix:
            continue
        _, topics, shares = mix[product.product_id]
        buckets = []
        for focus in pattern:
            weights = dict(zip(topics, shares, strict=True))
            for topic, weight in zip(focus, LAUNCH_WEIGHTS, strict=True):
                weights[topic] = weights.get(topic, 0.0) + weight * rng.uniform(*LAUNCH_NOISE)
            total = sum(weights.values())
            buckets.append((tuple(weights), tuple(weight / total for weight in weights.values())))
        found[product.product_id] = buckets
    return found


def launch_bucket(age: float) -> int | None:
    """The age bucket of ``age`` seconds since launch (:data:`LAUNCH_BUCKETS`); None outside them."""
    if age < 0.0:
        return None
    index = bisect.bisect_right(LAUNCH_BUCKETS, age / DAY)
    return index if index < len(LAUNCH_BUCKETS) else None


QUESTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "battery": {
        "en": (
            "Why does my {name} battery drain so fast?",
            "Is it normal that the {name} gets hot while charging?",
            "How long should the {name} battery last?",
        ),
        "zh": ("{name}的电池为什么掉电这么快？", "{name}充电时发烫正常吗？", "{name}的电池能用多久？"),
    },
    "charging": {
        "en": (
            "My {name} charges very slowly, what can I do?",
            "Which charger works with the {name}?",
            "The {name} stops charging at 80%",
        ),
        "zh": ("{name}充电很慢怎么办？", "{name}用什么充电器？", "{name}充到80%就不充了"),
    },
    "screen": {
        "en": (
            "There is a green line on my {name} screen",
            "The {name} screen flickers at low brightness",
            "How do I replace the {name} screen?",
        ),
        "zh": ("{name}屏幕上有一条绿线", "{name}低亮度时屏幕闪烁", "{name}的屏幕怎么换？"),
    },
    "camera": {
        "en": (
            "Photos from the {name} are blurry",
            "The {name} camera app crashes",
            "How do I turn on night mode on the {name}?",
        ),
        "zh": ("{name}拍照很模糊", "{name}的相机闪退", "{name}怎么开夜景模式？"),
    },
    "software_update": {
        "en": (
            "The latest {name} update will not install",
            "After the update my {name} is slow",
            "When is the next {name} update?",
        ),
        "zh": ("{name}的新版本更新装不上", "{name}更新以后变卡了", "{name}下次什么时候更新？"),
    },
    "keyboard": {
        "en": (
            "Some keys on my {name} do not work",
            "How do I turn on the {name} keyboard backlight?",
            "The {name} keyboard types double letters",
        ),
        "zh": ("{name}有几个键不灵", "{name}的键盘背光怎么开？", "{name}键盘打字会重复"),
    },
    "overheating": {
        "en": (
            "My {name} gets very hot during video calls",
            "The {name} fan is always on",
            "Is it safe that the {name} is so hot?",
        ),
        "zh": ("{name}视频通话时很烫", "{name}风扇一直在转", "{name}这么烫安全吗？"),
    },
    "wifi": {
        "en": (
            "My {name} keeps losing Wi-Fi",
            "The {name} does not find my 5 GHz network",
            "Wi-Fi is slow on the {name} only",
        ),
        "zh": ("{name}总是断网", "{name}搜不到5G的无线网", "只有{name}上网很慢"),
    },
    "pairing": {
        "en": (
            "My {name} will not pair with my phone",
            "How do I pair the {name} with a laptop?",
            "The {name} keeps disconnecting",
        ),
        "zh": ("{name}连不上手机", "{name}怎么连接电脑？", "{name}老是断开连接"),
    },
    "noise_cancelling": {
        "en": (
            "Noise cancelling on the {name} makes a hissing sound",
            "How do I switch off noise cancelling on the {name}?",
            "The {name} noise cancelling is weak",
        ),
        "zh": ("{name}降噪有嘶嘶声", "{name}怎么关闭降噪？", "{name}降噪效果不好"),
    },
    "charging_case": {
        "en": (
            "The {name} case does not charge the earbuds",
            "What does the blinking light on the {name} case mean?",
            "Can I buy a new {name} case?",
        ),
        "zh": (
            "{name}充电盒充不了耳机",
            "{name}充电盒的灯一直闪是什么意思？",
            "{name}的充电盒可以单独买吗？",
        ),
    },
    "fit": {
        "en": (
            "The {name} falls out of my ears",
            "Which ear tips fit the {name}?",
            "The {name} hurts after an hour",
        ),
        "zh": ("{name}戴着容易掉", "{name}用哪种耳塞套？", "{name}戴一个小时耳朵疼"),
    },
    "suction": {
        "en": (
            "The {name} has lost its suction",
            "How do I clean the {name} brush?",
            "Suction drops after five minutes on the {name}",
        ),
        "zh": ("{name}吸力变小了", "{name}的滚刷怎么清理？", "{name}用五分钟吸力就下降"),
    },
    "filter": {
        "en": (
            "How often should I change the {name} filter?",
            "Where can I buy {name} filters?",
            "The {name} filter light stays on",
        ),
        "zh": ("{name}的滤网多久换一次？", "{name}的滤网在哪买？", "{name}滤网灯一直亮"),
    },
    "noise": {
        "en": (
            "The {name} is very loud",
            "My {name} makes a rattling noise",
            "Is there a quiet mode on the {name}?",
        ),
        "zh": ("{name}声音很大", "{name}有咔咔的响声", "{name}有静音模式吗？"),
    },
    "app_setup": {
        "en": (
            "The {name} does not show up in the app",
            "How do I connect the {name} to Wi-Fi?",
            "The app loses the {name} after an update",
        ),
        "zh": ("APP里找不到{name}", "{name}怎么连接无线网？", "APP更新后{name}连不上了"),
    },
    "setup": {
        "en": ("How do I set up the {name}?", "Where is the {name} manual?", "The {name} setup fails"),
        "zh": ("{name}怎么设置？", "{name}的说明书在哪？", "{name}设置失败"),
    },
    "returns": {
        "en": ("How do I return the {name}?", "Can I exchange my {name}?", "Where is my {name} refund?"),
        "zh": ("{name}怎么退货？", "{name}可以换货吗？", "{name}的退款什么时候到？"),
    },
    "warranty": {
        "en": (
            "Is my {name} still under warranty?",
            "How do I claim the {name} warranty?",
            "Does the warranty cover the {name} battery?",
        ),
        "zh": ("{name}还在保修期吗？", "{name}怎么保修？", "{name}的电池保修吗？"),
    },
}


class SupportQuestions:
    """The support questions asked so far, and the clocks of the steady ones and of the surge's.
    Raises ValueError for a surge that does not fit the profile or the catalog."""

    def __init__(self, schedule: Schedule, catalog: Catalog) -> None:
        self.schedule = schedule
        self.catalog = catalog
        profile = schedule.profile
        # One random stream for the steady questions, one for the surge's (str seeds are hashed: no
        # correlation with the seed's own stream).
        self.random = random.Random(f"{schedule.seed}:questions")
        self.surge_random = random.Random(f"{schedule.seed}:surge")
        self._mix = question_mix(catalog, self.random) if profile.support_question_rate > 0 else {}
        # Its own stream: the steady stream (and the traffic recorded from it) stays what it was.
        self._launch_mix = launch_mix(catalog, self._mix, random.Random(f"{schedule.seed}:launch"))
        self._next_question: float | None = None
        self._next_surge: float | None = None
        if profile.surge is not None:
            check_surge(profile.surge, profile, catalog)

    def topic_rate(self, product_id: str, topic: str, at: float) -> float:
        """The rate (questions per second) of ``topic`` on ``product_id`` at ``at``, the surge aside."""
        launched = [p.product_id for p in launched_products(self.catalog, at)]
        if product_id not in launched or product_id not in self._mix:
            return 0.0
        total = sum(self._mix[p][0] for p in launched)
        share = self.true_mix(product_id, at).get(topic, 0.0)
        return self.schedule.profile.support_question_rate * self._mix[product_id][0] / total * share

    def true_mix(self, product_id: str, at: float) -> dict[str, float]:
        """The topic shares of ``product_id``'s questions at ``at``: its launch bucket's in its first
        30 days, else its steady mix (empty without questions)."""
        if product_id not in self._mix:
            return {}
        topics, shares = self._topics(self.catalog.products[product_id], at)
        return dict(zip(topics, shares, strict=True))

    def _topics(self, product: Product, at: float) -> tuple[tuple[str, ...], tuple[float, ...]]:
        bucket = launch_bucket(at - product.launched_at)
        if bucket is not None and product.product_id in self._launch_mix:
            return self._launch_mix[product.product_id][bucket]
        _, topics, shares = self._mix[product.product_id]
        return topics, shares

    def surge_window(self, start: float | None) -> tuple[float, float] | None:
        """When the planted surge of traffic started at ``start`` runs (epoch seconds); None without
        one or before the start."""
        surge = self.schedule.profile.surge
        if surge is None or start is None:
            return None
        return start + surge.start, start + surge.start + surge.duration

    def due(self, start: float, now: float) -> None:
        """Ask the questions due by ``now`` of traffic started at ``start``: the steady ones, and the
        surge's extra ones. Two processes with a random stream each, so that how often this is called
        does not change what is asked."""
        profile, rng = self.schedule.profile, self.random
        if self._next_question is None:
            self._next_question = start - profile.support_history_seconds
            self._next_question += rng.expovariate(profile.support_question_rate)
        while self._next_question <= now:
            self._ask(self._next_question)
            self._next_question += rng.expovariate(profile.support_question_rate)
        window = self.surge_window(start)
        if window is None:
            return
        surge, (begin, end) = profile.surge, window
        assert surge is not None
        extra = (surge.factor - 1.0) * self.topic_rate(surge.product_id, surge.topic, begin)
        if self._next_surge is None:
            if extra <= 0:  # a configuration error, only known once the start is
                raise ValueError(f"surge: {surge.product_id!r} is not launched at the surge's start")
            self._next_surge = begin + self.surge_random.expovariate(extra)
        while self._next_surge <= min(now, end):
            self._ask(self._next_surge, self.catalog.products[surge.product_id], surge.topic)
            self._next_surge += self.surge_random.expovariate(extra)

    def _ask(self, time: float, product: Product | None = None, topic: str = "") -> None:
        """A steady question (a product and topic of the mix), or with ``product`` and ``topic`` a
        question of the planted surge (from the surge's own random stream)."""
        schedule = self.schedule
        if product is None:
            rng = self.random
            launched = launched_products(self.catalog, time)
            product = rng.choices(launched, weights=[self._mix[p.product_id][0] for p in launched])[0]
            topics, shares = self._topics(product, time)
            topic = rng.choices(topics, weights=shares)[0]
            schedule.stats.support_questions += 1
        else:
            rng = self.surge_random
            schedule.stats.surge_questions += 1
        text = rng.choice(QUESTIONS[topic][text_language(rng, schedule.profile)]).replace(
            "{name}", product.name
        )
        user = f"u{rng.randrange(schedule.profile.users):05d}"
        # Keyed by product, not user: a product's questions then stay in order on one partition, as
        # hot-issue detection counts them per product.
        schedule.send_process(
            SUPPORT_QUESTIONS, product.product_id, time, "question_asked", user,
            id_prefix="q" if rng is self.random else "qs",
            product_id=product.product_id, text=text, topic=topic,
        )  # fmt: skip


def check_surge(surge: Surge, profile: TrafficProfile, catalog: Catalog) -> None:
    """Raise ValueError if ``surge`` names no product of ``catalog`` or no topic of its category, or
    cannot be planted with ``profile`` (no steady questions to multiply)."""
    product = catalog.product(surge.product_id)
    if product is None:
        raise ValueError(f"surge: {surge.product_id!r} is not a product of the catalog")
    topics = CATEGORY_TOPICS.get(product.category, GENERIC_TOPICS)
    if surge.topic not in topics:
        raise ValueError(f"surge: {surge.topic!r} is not a topic of {product.category} ({', '.join(topics)})")
    if surge.factor <= 1.0 or surge.duration <= 0.0 or surge.start < 0.0:
        raise ValueError("surge: factor must be above 1, duration above 0 and start not negative")
    if profile.support_question_rate <= 0.0:
        raise ValueError("surge: needs support_question_rate above 0 (it multiplies a topic's rate)")
