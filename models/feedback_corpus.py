# Chinese text is written with full-width punctuation: these are not confusable characters.
# ruff: noqa: RUF001, RUF002
"""Labelled customer feedback in Chinese and English, generated from a seed.

The feedback tagger (:mod:`models.tagger`) is measured on these texts, the synthetic traffic sends
them as the comments of feedback events, and the tests train and score the tagger on them. They are
short, realistic comments written per category as sentence templates with slots (product, how many
days, an amount ...), and they are deliberately *not* the tagger's keyword list:

* most sentences say the thing in other words than the rules ("took forever", "等了一个星期");
* :data:`ABSENT_PHRASES` lists, per category and language, phrases that appear in the texts but in
  no keyword rule (slang such as "rip off", "智商税", names such as "parcel", "驿站"): only
  corrections can teach them;
* about a quarter of the texts join two sentences of different categories (two tags), some open or
  close with noise ("Hi,", "说实话，", an order number), and some use negation ("not worth it",
  "没收到").

Each text comes with its tags and a CSAT score (1-5) in keeping with it: complaints score low,
requests middling, praise high.

>>> import random
>>> texts = feedback_texts(random.Random(3), 3)
>>> for text, tags, score in texts:  # doctest: +ELLIPSIS
...     print(tags, score, text)
('feature_request',) 3 能不能支持微信支付
('usability', 'feature_request') 3 Unintuitive interface, feels like it is from 2005, but need a way ...
('delivery',) 1 亲，到的时候箱子都压扁了
>>> feedback_texts(random.Random(3), 3) == texts  # the same seed, the same texts
True
"""

from __future__ import annotations

import random

CATEGORIES = ("pricing", "delivery", "quality", "usability", "feature_request", "praise")
LANGUAGES = ("en", "zh")
TWO_TAG_SHARE = 0.25
NOISE_SHARE = 0.3

# Phrases the texts use that no keyword rule holds (tests check this against models.tagger).
ABSENT_PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "pricing": {"en": ("pricey", "rip off", "highway robbery"), "zh": ("肉疼", "智商税", "割韭菜")},
    "delivery": {"en": ("parcel", "doorstep", "in transit"), "zh": ("包裹", "驿站", "签收")},
    "quality": {"en": ("flimsy", "wobbly", "fell apart"), "zh": ("掉漆", "起球", "松动")},
    "usability": {"en": ("clunky", "unintuitive", "too many clicks"), "zh": ("看不懂", "太绕", "不习惯")},
    "feature_request": {"en": ("dark mode", "export", "integration"), "zh": ("夜间模式", "导出", "语音控制")},
    "praise": {"en": ("kudos", "top notch", "exceeded my expectations"), "zh": ("给力", "yyds", "绝了")},
}

# Slot vocabularies: {product}, {n} (a small count), {day}, {amount}, and per-category words.
SLOTS: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "product": (
            "blender", "headphones", "phone case", "kettle", "vacuum", "backpack", "charger",
            "desk lamp", "coffee machine", "smart watch", "air fryer", "keyboard",
        ),
        "n": ("two", "three", "four", "five", "eight", "ten", "2", "3", "6"),
        "day": ("Monday", "Tuesday", "Friday", "the weekend", "my birthday"),
        "amount": ("$80", "$120", "$45", "200 dollars", "90 bucks"),
        "pricey": ("pricey", "overpriced", "steep", "costly", "expensive"),
        "ripoff": ("rip off", "highway robbery", "scam", "joke"),
        "parcel": ("parcel", "package", "order", "box"),
        "courier": ("courier", "driver", "delivery guy", "postman"),
        "broke": ("fell apart", "stopped working", "broke", "cracked", "died"),
        "flimsy": ("flimsy", "wobbly", "fragile", "cheaply made"),
        "clunky": ("clunky", "unintuitive", "confusing", "awkward"),
        "wish": ("dark mode", "a timer", "an export option", "integration with my calendar", "a family plan"),
        "praise": ("top notch", "brilliant", "amazing", "fantastic", "superb"),
    },
    "zh": {
        "product": (
            "耳机", "手机壳", "电水壶", "吸尘器", "背包", "充电器", "台灯", "咖啡机", "手表", "空气炸锅",
            "键盘",
        ),
        "n": ("两", "三", "四", "五", "七", "十", "3", "6"),
        "day": ("周一", "周五", "周末", "双十一"),
        "amount": ("三百多", "五百块", "八十块", "一千多"),
        "pricey": ("太贵了", "贵得离谱", "价格虚高", "死贵"),
        "ripoff": ("智商税", "割韭菜", "坑人", "抢钱"),
        "parcel": ("包裹", "快递", "东西", "货"),
        "courier": ("快递员", "送货的", "小哥", "司机"),
        "broke": ("坏了", "掉漆", "起球", "松动", "裂开了"),
        "flimsy": ("很廉价", "松松垮垮", "一碰就晃", "很单薄"),
        "clunky": ("太绕", "看不懂", "不习惯", "乱七八糟"),
        "wish": ("夜间模式", "导出功能", "语音控制", "定时功能", "家庭共享"),
        "praise": ("给力", "yyds", "绝了", "太棒了", "超赞"),
    },
}  # fmt: skip

# Per category and language: sentence templates. Slots are filled from SLOTS.
TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "pricing": {
        "en": (
            "The {product} is way too {pricey} for what it is",
            "Paid {amount} for this, total {ripoff}",
            "Found the same {product} much cheaper in another shop",
            "Not worth the money at all",
            "Why did it cost {amount} more after I put it in my cart",
            "The coupon code did not work at checkout",
            "A bit {pricey} compared to other brands",
            "I was charged twice for one order",
            "The price went up again, {amount} is a lot",
            "Shipping fee costs more than the {product} itself",
        ),
        "zh": (
            "这个{product}{pricey}，不值这个价",
            "价格比别家高了不少",
            "同样的{product}别的店便宜一百多",
            "刚买完就降价了，能不能退差价",
            "优惠券用不了，结算的时候没有减",
            "{amount}买这个有点肉疼",
            "纯属{ripoff}，不推荐",
            "又涨价了，这是{ripoff}吧",
            "性价比太低了",
            "运费比东西还贵",
            "扣了两次钱，到现在没退",
        ),
    },
    "delivery": {
        "en": (
            "The {courier} came {n} days late and the box was crushed",
            "My {parcel} still has not arrived after {n} days",
            "Tracking has not updated since {day}",
            "Shipping took forever, ordered on {day} and it came {n} days later",
            "The {courier} left my {parcel} at the wrong door",
            "{parcel} was left on my doorstep in the rain",
            "Stuck in transit for {n} days",
            "It was supposed to arrive by {day} but never showed up",
            "The {courier} never called and just left",
            "Still waiting for my {parcel} to ship",
        ),
        "zh": (
            "物流太慢了，等了一个星期",
            "快递{n}天了还没到",
            "{parcel}被放在驿站也没人通知我",
            "{courier}态度很差，直接扔门口",
            "显示已签收但是我根本没收到",
            "下单{n}天才发货",
            "说好的送货上门，结果让我自己去取",
            "物流信息一直不更新",
            "到的时候箱子都压扁了",
            "{day}下的单，{parcel}到现在还在路上",
        ),
    },
    "quality": {
        "en": (
            "The {product} {broke} after {n} days",
            "Cheap plastic, it cracked the first time I used it",
            "Feels {flimsy}, not what I expected",
            "Battery drains in a couple of hours",
            "Arrived with a scratch on the screen",
            "The stitching came loose after one wash",
            "It leaks every time I use it",
            "Strange smell from the {product}, poor materials",
            "The power switch does not work on mine",
            "Paint is peeling off already",
        ),
        "zh": (
            "{product}用了{n}天就{broke}",
            "做工很粗糙，有明显的划痕",
            "质量太差了，一碰就掉漆",
            "洗了一次就起球",
            "电池不耐用，半天就没电",
            "有一股很大的味道，散不掉",
            "螺丝松动，用着晃来晃去",
            "收到的是次品，开关失灵",
            "材料{flimsy}，感觉一摔就碎",
            "{product}漏水，根本没法用",
        ),
    },
    "usability": {
        "en": (
            "The app is {clunky} and hard to navigate",
            "Took me ages to find the settings",
            "The setup instructions make no sense",
            "Too many clicks just to change my address",
            "{clunky} interface, feels like it is from 2005",
            "I cannot figure out how to pair the {product} with my phone",
            "Checkout keeps asking me to log in again",
            "The menu is hidden and the icons are tiny",
            "Controls are {clunky}, I keep pressing the wrong thing",
            "Really not easy to use for older people",
        ),
        "zh": (
            "这个app太难用了",
            "界面太复杂，找不到设置在哪",
            "说明书{clunky}",
            "操作很繁琐，点好几次才能下单",
            "每次都要重新登录，很麻烦",
            "按钮太小了，老人根本用不了",
            "菜单藏得太深了",
            "连接手机的步骤{clunky}",
            "新版本改得{clunky}",
            "字太小看不清，不方便",
        ),
    },
    "feature_request": {
        "en": (
            "Would be great if you added {wish}",
            "Please add {wish}",
            "I wish the {product} had {wish}",
            "Can you support Apple Pay",
            "It would help to have {wish}",
            "Any plans to let me share the account with my family",
            "Let me choose a delivery slot on {day}",
            "A bigger size option would be nice",
            "Need a way to pause my subscription",
            "Really hoping for {wish} in the next version",
        ),
        "zh": (
            "希望能加个{wish}",
            "建议增加{wish}",
            "能不能支持微信支付",
            "要是有{wish}就好了",
            "希望出个大号的",
            "可以加一个多语言设置吗",
            "什么时候支持分期付款",
            "希望以后能和家人共享账号",
            "如果有{wish}就更好了",
            "{product}要是能加上{wish}就完美了",
        ),
    },
    "praise": {
        "en": (
            "Absolutely love this {product}",
            "{praise} customer service, thank you",
            "Best purchase I have made this year",
            "Works perfectly, would recommend to friends",
            "{praise}, really impressed",
            "Five stars, exactly as described",
            "My kids love the {product}",
            "This {product} exceeded my expectations",
            "Not bad at all, pleasantly surprised",
            "Kudos to the whole team, thanks so much",
        ),
        "zh": (
            "非常满意，会推荐给朋友",
            "东西很好，{praise}",
            "太喜欢了，五星好评",
            "超出预期，赞一个",
            "客服很耐心，谢谢",
            "{praise}，买了不后悔",
            "第二次回购了，一如既往的好",
            "{product}包装精美，送人很有面子",
            "{praise}，强烈推荐",
            "用了一个月，很开心",
        ),
    },
}

NOISE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # (openings, endings)
    "en": (
        ("Hi, ", "Honestly, ", "Well, ", "FYI: ", "Order #{order}: ", "Hello team, "),
        ("!", "...", " lol", " :(", " Thx"),
    ),
    "zh": (("说实话，", "客服你好，", "嗯，", "订单{order}：", "亲，"), ("。", "！", "～", "……", "哎")),
}  # fmt: skip
JOINERS = {"en": (", and ", ". Also ", ", but "), "zh": ("，而且", "，另外", "，不过")}
SCORES = {
    "pricing": (1, 2, 3),
    "delivery": (1, 2, 2, 3),
    "quality": (1, 1, 2),
    "usability": (2, 2, 3),
    "feature_request": (3, 4),
    "praise": (4, 5, 5),
}


def _sentence(rng: random.Random, category: str, lang: str) -> str:
    template = rng.choice(TEMPLATES[category][lang])
    slots = SLOTS[lang]
    # Each slot of the template is filled once, in order, with the rng: the same seed, the same text.
    filled = template
    while "{" in filled:
        start = filled.index("{")
        name = filled[start + 1 : filled.index("}", start)]
        filled = filled.replace("{" + name + "}", rng.choice(slots[name]), 1)
    return filled[0].upper() + filled[1:]


def _join(rng: random.Random, lang: str, first: str, second: str) -> str:
    joiner = rng.choice(JOINERS[lang])
    if lang == "en" and not second.startswith("I "):
        second = second[0].lower() + second[1:]
    return first + joiner + second


def feedback_texts(
    rng: random.Random, n: int, zh_share: float = 0.5
) -> list[tuple[str, tuple[str, ...], int]]:
    """``n`` labelled comments ``(text, tags, score)``, Chinese with probability ``zh_share``.

    Tags are in :data:`CATEGORIES` order; two-tag texts (:data:`TWO_TAG_SHARE`) join sentences of two
    categories, and their score is the lower of the two categories' draws.
    """
    texts = []
    for _ in range(n):
        lang = "zh" if rng.random() < zh_share else "en"
        first = rng.choice(CATEGORIES)
        text = _sentence(rng, first, lang)
        categories = [first]
        if rng.random() < TWO_TAG_SHARE:
            second = rng.choice([c for c in CATEGORIES if c != first])
            text = _join(rng, lang, text, _sentence(rng, second, lang))
            categories.append(second)
        if rng.random() < NOISE_SHARE:
            openings, endings = NOISE[lang]
            order = str(rng.randrange(10_000, 99_999))
            if rng.random() < 0.5:
                opening = rng.choice(openings).replace("{order}", order)
                text = opening + (text if text.startswith("I ") else text[0].lower() + text[1:])
            else:
                text += rng.choice(endings)
        score = min(rng.choice(SCORES[category]) for category in categories)
        tags = tuple(c for c in CATEGORIES if c in categories)
        texts.append((text, tags, score))
    return texts


def texts_in(rng: random.Random, n: int, lang: str) -> list[tuple[str, tuple[str, ...], int]]:
    """``n`` labelled comments all in ``lang`` (``"en"`` or ``"zh"``)."""
    return feedback_texts(rng, n, zh_share=1.0 if lang == "zh" else 0.0)
