# Chinese text is written with full-width punctuation: these are not confusable characters.
# ruff: noqa: RUF001, RUF002
"""Customer chat messages in Chinese, English and both at once, with their emotion planted: a labelled
corpus for the emotion model (:mod:`models.emotion`) and the chats of the synthetic users.

Each customer message is a sentence template of :data:`CUSTOMER` (per need, emotion and language) with
its slots filled (the product, its kind, a number of days, an order number), sometimes opened with a
greeting (:data:`OPENINGS`) or followed by a second sentence of its emotion (:data:`FOLLOW_UPS`). They are
written as customers write, and on purpose not only in the lexicon's words, so that the emotion is
not always where a keyword list looks:

* negation: "not happy with the {product}", "不是很满意" are frustration; "wasn't damaged at all",
  "没有破损" satisfaction;
* emphasis without an angry word: "WHERE IS MY ORDER??? {days} days!!!" is anger;
* mild frustration in plain words: "This is the third time I'm asking", "重启了好几次还是不行";
* neutral questions with emotion words in them: "Is the {product}'s noise cancelling good?",
  "这个{noun}好不好用？", "麻烦帮我看一下，谢谢", "Thanks in advance".

:func:`conversation_corpus` draws ``size`` labelled messages from a seed; :func:`chat_messages` gives
a user's chat about a product, the customer's emotion and need planted by their latent type
(:data:`streams.tools.traffic.profile.USER_TYPES`), with the agent's replies. A message's language is
what :func:`models.emotion.language_of` reads in it: a Chinese sentence naming an English product
(``Echo Buds的电池``) is mixed.

>>> corpus = conversation_corpus(seed=3, size=400)
>>> corpus[1].text, corpus[1].emotion, corpus[1].language
("Hi, thanks, that's really helpful, I'll order the Echo One", 'satisfaction', 'en')
>>> sorted({m.language for m in corpus}), sorted({m.emotion for m in corpus})
(['en', 'mixed', 'zh'], ['anger', 'frustration', 'neutral', 'satisfaction'])
>>> conversation_corpus(seed=3, size=400) == corpus
True
>>> import random
>>> from streams.processes.catalog import load_catalog
>>> aster = load_catalog().product("phone-aster-3")
>>> for message in chat_messages(random.Random(4), "help_seeker", aster, language="en"):
...     print(message.role, message.emotion, message.need, message.text)
customer frustration delivery This is the third time I'm asking about order #49753
agent None delivery Let me check order #49753 for you.
customer anger delivery Cancel everything. Your shipping is a total disgrace. Absolutely not acceptable.
agent None delivery Sorry for the wait, I've asked the courier for an update.
customer anger delivery 6 days! Are you kidding me?
agent None delivery Sorry for the wait, I've asked the courier for an update.
customer anger delivery WHERE IS MY ORDER??? 6 days!!! Never again.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from models.emotion import language_of
from streams.processes.catalog import Product, load_catalog
from streams.tools.traffic.profile import USER_TYPES

LANGUAGES = ("zh", "en", "mixed")  # planted: the language a template is written in
NEEDS = ("delivery", "fault", "refund", "product_info")
# The corpus' shares of planted emotions and languages.
EMOTION_SHARES = {"anger": 0.15, "frustration": 0.3, "satisfaction": 0.2, "neutral": 0.35}
LANGUAGE_SHARES = {"zh": 0.4, "en": 0.4, "mixed": 0.2}
OPENING_SHARE = 0.25  # messages opened with a greeting

# What customers call a product of each category, in English and Chinese.
NOUNS = {
    "phones": ("phone", "手机"),
    "laptops": ("laptop", "电脑"),
    "headphones": ("headset", "耳机"),
    "appliances": ("device", "机器"),
}

# CUSTOMER[need][emotion][language]: sentence templates. Slots: {product} (its name), {other} (another
# product's name), {noun} (what the product is, in the template's language), {days}, {order}.
CUSTOMER: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "delivery": {
        "neutral": {
            "en": (
                "When will my order {order} arrive?",
                "Can you tell me where my package is? Order {order}",
                "Has the {product} I ordered shipped yet?",
                "What is the tracking number for order {order}?",
                "Can I change the delivery address for order {order}?",
                "Is it possible to pick up the {product} from a store?",
                "Could you check the status of order {order}?",
                "Will the {product} arrive before the weekend?",
            ),
            "zh": (
                "请问订单{order}什么时候能到？",
                "我的快递到哪里了？",
                "能帮我查一下物流吗，订单号{order}",
                "可以改一下收货地址吗？",
                "{noun}发货了吗？",
                "快递一般几天能到？",
                "订单{order}现在到哪一步了？",
                "周末之前能送到吗？",
            ),
            "mixed": (
                "请问我的order {order}什么时候到？",
                "tracking number能发我一下吗？",
                "我的{product}发货了吗？",
                "delivery address可以改吗？",
                "{product}大概几号能送到？",
                "可以送到我office吗？",
                "物流用的是哪家courier？",
            ),
        },
        "frustration": {
            "en": (
                "My order {order} still hasn't arrived, it's been {days} days",
                "I've been waiting {days} days for my {noun}, any update?",
                "The tracking hasn't moved since last week",
                "This is the third time I'm asking about order {order}",
                "The courier says delivered but I never got it",
                "Any news on my parcel? It's been {days} days.",
                "I'm worried my {product} got lost",
                "It's been {days} days and the tracking still says processing",
                "I'm getting anxious, the {noun} was a gift and it's not here yet",
                "Why does my order {order} keep getting pushed back?",
            ),
            "zh": (
                "订单{order}怎么还没到，已经等了{days}天了",
                "物流信息{days}天没更新了",
                "我已经问了三遍了，快递到底在哪",
                "显示已签收但是我根本没收到",
                "等了{days}天还没发货，有点着急",
                "都{days}天了还不到？",
                "物流一直显示运输中，不知道什么时候能到，很焦虑",
                "说好三天到的，现在{days}天了",
                "快递员电话一直打不通，好郁闷",
            ),
            "mixed": (
                "我的order已经等了{days}天了还没到",
                "tracking一直没更新，有点担心",
                "说是delivered了但是我没收到",
                "这个package到底什么时候到啊",
                "order {order}还是没有消息，好着急",
                "courier说送了但其实没送到，怎么回事",
                "已经第三次问了，我的parcel呢",
                "等了{days}天了，still nothing",
            ),
        },
        "anger": {
            "en": (
                "This is ridiculous, {days} days and still no {noun}!",
                "WHERE IS MY ORDER??? {days} days!!!",
                "Your delivery service is a joke. I want my money back",
                "I'm sick of waiting, cancel order {order} now!",
                "Worst delivery ever and nobody answers",
                "{days} days! Are you kidding me?",
                "Cancel everything. Your shipping is a total disgrace",
            ),
            "zh": (
                "{days}天了还没到，你们太过分了！",
                "什么破物流，气死我了",
                "再不到我就投诉了！！",
                "你们到底有没有人管？！等了{days}天！！！",
                "你们的客服都是摆设吗？！",
                "发货慢得离谱，再也不在你们家买了！",
            ),
            "mixed": (
                "等了{days}天，这是什么service！太离谱了",
                "你们的delivery简直是垃圾",
                "order {order}再不到我就投诉！！！",
                "WHAT？？等了{days}天还没发货！！",
                "你们的customer service根本没人理，气死了",
                "这是我见过最差的delivery！",
            ),
        },
        "satisfaction": {
            "en": (
                "Got my {product} today, thanks for the quick delivery!",
                "The package arrived early, great service",
                "Delivered on time, thank you",
                "The parcel wasn't damaged at all, well packed",
                "Not bad, it only took {days} days",
                "Arrived a day early, really pleased",
                "The courier was friendly and the box was in perfect shape",
            ),
            "zh": (
                "收到了，物流很快，谢谢！",
                "{noun}已经到了，包装完好，满意",
                "快递小哥很给力，点赞",
                "没有破损，很好",
                "比预计早到了一天，好评",
                "包装很用心，东西完好无损",
            ),
            "mixed": (
                "package收到了，谢谢！",
                "delivery很快，赞一个",
                "{product}今天到了，very happy",
                "包裹没有任何damage，很满意",
                "delivery比预计快，thanks！",
                "{noun}收到了，packaging很好",
            ),
        },
    },
    "fault": {
        "neutral": {
            "en": (
                "How do I reset my {product}?",
                "Is there a firmware update for the {product}?",
                "Where can I find the manual for the {noun}?",
                "Does the warranty cover the battery of the {product}?",
                "Which charger does the {product} use?",
                "Can I use the {product} while it charges?",
            ),
            "zh": (
                "{noun}怎么恢复出厂设置？",
                "保修期是多久？",
                "请问{noun}的说明书在哪里下载？",
                "电池可以单独换吗？",
                "{noun}可以边充电边用吗？",
                "{product}用什么充电器？",
            ),
            "mixed": (
                "{product}怎么reset？",
                "warranty包括电池吗？",
                "请问有user manual吗？",
                "{product}支持fast charging吗？",
                "{product}的firmware怎么更新？",
                "请问{noun}的warranty是几年？",
                "{product}可以用USB-C充电吗？",
            ),
        },
        "frustration": {
            "en": (
                "My {product} stopped working after {days} days",
                "The {noun} keeps disconnecting, I tried everything",
                "I'm not happy with the {product}, the battery barely lasts",
                "I've restarted the {noun} five times and it still does the same thing",
                "The {product} is not as good as I expected",
                "{product} was fine until yesterday, now the battery is useless",
                "The {product} won't turn on anymore and I need it for work",
                "Every update makes the {noun} slower, not impressed",
                "The {product} overheats after ten minutes, is that normal? I'm a bit worried",
            ),
            "zh": (
                "{noun}用了{days}天就坏了",
                "这个{noun}一直断连，烦死了",
                "电池不太耐用，有点失望",
                "不是很满意，声音有杂音",
                "重启了好几次还是不行",
                "{noun}开不了机了，怎么办",
                "{noun}充不进电了，好烦",
                "更新以后{noun}变得好卡，心累",
                "{noun}用一会儿就发烫，有点担心",
            ),
            "mixed": (
                "我的{product}用了{days}天就坏了",
                "这个battery不太行",
                "bluetooth一直连不上，好烦",
                "{product}的screen有问题，不是很满意",
                "{product}的battery一天就没电了，有点失望",
                "{noun}总是disconnect，试了很多次还是不行",
                "{product}的screen一直闪，不太满意",
                "用了{days}天camera就不work了",
            ),
        },
        "anger": {
            "en": (
                "The {product} is garbage, it broke after {days} days!",
                "This is a joke. Second faulty {noun} in a row, absolutely unacceptable!!!",
                "You sold me a broken {noun} and nobody helps. Disgusting",
                "I'm furious, the {product} died while charging",
                "Third replacement and the {noun} is STILL broken!!",
                "Stop sending me scripted answers, the {product} is dead and I want it fixed!",
            ),
            "zh": (
                "什么破{noun}，{days}天就坏了！",
                "又坏了！！你们的质量太差劲了",
                "卖假货吧？骗子！",
                "气死了，刚买的{noun}就不能用了！！",
                "第三次换货还是坏的，你们到底行不行！！",
                "别再复制粘贴了，我要的是解决问题！",
            ),
            "mixed": (
                "这个{product}简直是garbage！",
                "第二次坏了，unacceptable！！",
                "what the hell，刚买就坏了，气死我了",
                "又是一个defective的{noun}，你们太过分了！",
                "{product}充电的时候直接黑屏，什么破quality！！",
            ),
        },
        "satisfaction": {
            "en": (
                "The reset worked, thank you so much!",
                "It works now, you've been very helpful",
                "Problem solved, the {product} is fine now",
                "Thanks, the replacement {noun} works perfectly",
                "The new firmware fixed it, brilliant",
                "All good now, the {noun} charges again. Much appreciated",
            ),
            "zh": (
                "按你说的做了，现在好了，谢谢",
                "问题解决了，太感谢了",
                "换了新的{noun}，没有问题了",
                "客服很专业，点赞",
                "更新固件以后好了，谢谢",
                "修好了，速度很快，很满意",
            ),
            "mixed": (
                "reset之后好了，thanks！",
                "问题solved了，谢谢",
                "新的{product}很好用，thank you",
                "按照你说的reset了，现在没问题了",
                "{product}修好了，service很专业",
                "{noun}换新之后perfect，谢谢",
            ),
        },
    },
    "refund": {
        "neutral": {
            "en": (
                "How do I return the {product}?",
                "What is your refund policy?",
                "How long does a refund take?",
                "Can I exchange the {noun} for another colour?",
                "Do I need the original box to return the {product}?",
                "Is return shipping free?",
            ),
            "zh": (
                "请问怎么申请退货？",
                "退款一般几天到账？",
                "可以换货吗？",
                "支持七天无理由退货吗？",
                "退货需要原包装吗？",
                "退货运费谁出？",
            ),
            "mixed": (
                "refund一般几天到账？",
                "请问return要怎么操作？",
                "{product}可以exchange吗？",
                "{product}的return policy是什么？",
                "请问refund会退到原来的card吗？",
            ),
        },
        "frustration": {
            "en": (
                "I returned the {product} {days} days ago and still no refund",
                "I'm still waiting for my refund, this is taking too long",
                "The refund form keeps giving me an error",
                "I was charged twice for order {order}",
                "Nobody replied to my return request",
                "Three emails and still no answer about my return",
                "The refund came out less than I paid, can you check?",
            ),
            "zh": (
                "退货{days}天了钱还没到账",
                "退款申请一直没人处理",
                "我被扣了两次钱",
                "退款流程太麻烦了",
                "我有点担心退款会不会到",
                "发了三封邮件都没人回复退货的事",
                "退款金额比我付的少，帮我查一下",
            ),
            "mixed": (
                "refund已经{days}天了还没到",
                "return申请一直没人回复",
                "我的money还没退回来",
                "refund怎么还没到账，已经{days}天了",
                "return的label一直打印不出来，好烦",
                "为什么我被charge了两次？",
            ),
        },
        "anger": {
            "en": (
                "I want my money back NOW!",
                "This is a scam, you took my money and sent nothing!",
                "Refund me or I'm calling my lawyer",
                "Unacceptable, {days} days and no refund!!!",
                "You charged me twice and now you ignore me? Unbelievable!",
                "I'll dispute this with my bank, you're a bunch of crooks",
            ),
            "zh": (
                "你们这是骗钱吧！马上退款！",
                "退款拖了{days}天，太过分了！！",
                "再不退款我就去消协投诉！",
                "骗子公司，还我钱！",
                "扣了我两次钱还不理人，太气人了！",
                "我要去银行投诉你们！",
            ),
            "mixed": (
                "马上refund！你们太过分了！",
                "这就是scam，还我钱！！",
                "refund拖了{days}天，我要投诉！",
                "再不refund我就找lawyer！",
                "拿了钱不发货，你们就是骗子！！",
            ),
        },
        "satisfaction": {
            "en": (
                "Got the refund, thanks for sorting it out",
                "Refund received, very quick, thank you",
                "Thanks, the exchange went smoothly",
                "Refund arrived today, all sorted",
                "Quick and easy return, I'm impressed",
            ),
            "zh": (
                "退款收到了，谢谢",
                "换货很顺利，满意",
                "退款很及时，给力",
                "退款今天到账了，谢谢处理",
                "退货很方便，给你们点赞",
            ),
            "mixed": (
                "refund收到了，谢谢！",
                "exchange很顺利，thanks",
                "refund已经到账了，处理得很快",
                "return很方便，满意",
            ),
        },
    },
    "product_info": {
        "neutral": {
            "en": (
                "Does the {product} come in black?",
                "What is the battery life of the {product}?",
                "Is the {product} in stock?",
                "What's the difference between the {product} and the {other}?",
                "Is the {product}'s sound quality good?",
                "Do you ship the {product} abroad?",
                "Is there a student discount on the {product}?",
                "Is the {product} waterproof?",
                "Does the {product} come with a charger?",
                "Which one lasts longer, the {product} or the {other}?",
            ),
            "zh": (
                "{product}有黑色的吗？",
                "这款{noun}续航多久？",
                "{product}有现货吗？",
                "{product}和{other}有什么区别？",
                "请问有优惠吗？",
                "这个{noun}好不好用？",
                "{product}防水吗？",
                "{product}带充电器吗？",
                "{product}和{other}哪个续航长？",
            ),
            "mixed": (
                "{product}有white的吗？",
                "这个{noun}的battery life多久？",
                "{product}和{other}哪个好？",
                "有没有discount？",
                "{product}支持wireless charging吗？",
                "{noun}有student discount吗？",
                "{product}的保修包括screen吗？",
            ),
        },
        "frustration": {
            "en": (
                "I can't find the {product} anywhere on your site, so confusing",
                "Why is the {product} always out of stock?",
                "The {product} page keeps crashing when I try to order",
                "Every time I check, the {product} is sold out. Annoying",
            ),
            "zh": (
                "{product}怎么一直缺货？",
                "找了半天也找不到{noun}在哪买",
                "每次来看{product}都缺货，好烦",
                "下单页面一直报错，买不了",
            ),
            "mixed": (
                "{product}怎么一直out of stock？",
                "网站上找不到{product}的specs，好麻烦",
            ),
        },
        "satisfaction": {
            "en": (
                "I love my {product}, thinking of buying another one",
                "Thanks, that's really helpful, I'll order the {product}",
                "Not bad at all, the {product} is cheaper than I thought",
                "Bought the {product} last month and it's been fantastic",
                "Your advice was spot on, the {product} is exactly what I wanted",
            ),
            "zh": (
                "{product}用着很好，想再买一个",
                "谢谢，解答得很清楚，我下单了",
                "价格还不错，我买了",
                "上个月买的{product}特别好用",
                "听你们的建议买了{product}，正是我想要的",
            ),
            "mixed": (
                "{product}很nice，想再买一个",
                "thanks，我去下单了",
                "{product}的sound quality真的很棒",
                "上次买的{product}很好用，推荐给朋友了",
            ),
        },
    },
}
# A buyer who asks about one product while needing another says so in a later message.
SWITCH: dict[str, tuple[str, ...]] = {
    "en": ("Actually, what I really need is a {noun}. Is the {product} any good?",),
    "zh": ("其实我更想要一个{noun}，{product}怎么样？",),
    "mixed": ("其实我需要的是{noun}，{product}怎么样？",),
}
OPENINGS = {"en": ("Hi, ", "Hello, "), "zh": ("你好，", "您好，", "亲，"), "mixed": ("Hi，", "hello，")}
# A second sentence in keeping with the message's emotion, often negated or emphatic.
FOLLOW_UPS: dict[str, dict[str, tuple[str, ...]]] = {
    "neutral": {
        "en": ("Thanks in advance.", "No rush.", "Just curious.", "I'm not in a hurry."),
        "zh": ("麻烦帮我看一下，谢谢。", "不着急。", "随便问问。", "先谢谢了。"),
        "mixed": ("thanks in advance", "不急，just asking", "先谢谢了"),
    },
    "frustration": {
        "en": (
            "Please help.",
            "Not happy about this.",
            "Not very impressed so far.",
            "Honestly a bit disappointed.",
        ),
        "zh": ("麻烦尽快处理。", "说实话不太满意。", "体验不是很好。", "有点失望。"),
        "mixed": ("please help", "真的不太happy", "not very satisfied说实话"),
    },
    "anger": {
        "en": ("NOT happy at all!!", "Absolutely not acceptable.", "Never again.", "I want a manager NOW!"),
        "zh": ("一点也不满意！！", "太让人生气了！", "我要找你们经理！！"),
        "mixed": ("一点都不happy！！", "我要找manager！！", "NOT acceptable！"),
    },
    "satisfaction": {
        "en": ("Have a nice day!", "No complaints at all.", "Not bad at all.", "Nothing to worry about now."),
        "zh": ("辛苦了！", "没什么可担心的了。", "完全没问题。", "一点都不麻烦。"),
        "mixed": ("have a nice day", "完全没有problem了", "没什么可担心的了，thanks"),
    },
}
FOLLOW_UP_SHARE = 0.3  # messages with a second sentence
# AGENT[need][language]: the agent's replies (a mixed chat gets them in Chinese).
AGENT: dict[str, dict[str, tuple[str, ...]]] = {
    "delivery": {
        "en": (
            "Let me check order {order} for you.",
            "Sorry for the wait, I've asked the courier for an update.",
        ),
        "zh": ("我帮您查一下订单{order}。", "抱歉让您久等了，已经在催快递了。"),
    },
    "fault": {
        "en": (
            "I'm sorry about that. Could you try a restart and tell me if it helps?",
            "I understand, I'm escalating this to our repair team now.",
        ),
        "zh": ("很抱歉，可以先试试重启吗？", "明白，我马上转给维修团队。"),
    },
    "refund": {
        "en": (
            "I've checked your return, the refund is on its way.",
            "Sorry, I'm passing this to our billing team.",
        ),
        "zh": ("已经帮您查了，退款正在处理。", "抱歉，我转给财务同事处理。"),
    },
    "product_info": {
        "en": (
            "Happy to help: the {product} is in stock and ships in 2 days.",
            "Here are the {product}'s details.",
        ),
        "zh": ("{product}有现货，两天内发货。", "这是{product}的详细介绍。"),
    },
}


@dataclass(frozen=True, slots=True)
class LabelledMessage:
    """A customer message and its planted emotion; ``language`` as :func:`models.emotion.language_of`
    reads it."""

    text: str
    emotion: str
    language: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a chat. ``emotion`` is the planted truth of a customer's message (None for the
    agent's); ``product_id`` the product the message is about; ``need`` what the customer needs (one
    of :data:`NEEDS`, or ``"none"`` for a browser) and ``needed_product_id`` the product that need is
    about."""

    role: str  # "customer" or "agent"
    text: str
    emotion: str | None
    language: str
    product_id: str
    need: str
    needed_product_id: str


def _slots(rng: random.Random) -> dict[str, str]:
    """The numbers a chat's messages share: how many days, the order."""
    return {"days": str(rng.randint(3, 15)), "order": f"#{rng.randrange(10000, 99999)}"}


def _fill(template: str, slots: dict[str, str], product: Product, other: Product, language: str) -> str:
    english, chinese = NOUNS.get(product.category, ("product", "产品"))
    noun = english if language == "en" else chinese
    return template.format(product=product.name, other=other.name, noun=noun, **slots)


def customer_message(
    rng: random.Random,
    emotion: str,
    need: str,
    language: str,
    product: Product,
    other: Product | None = None,
    slots: dict[str, str] | None = None,
    allowed: Callable[[str], bool] | None = None,
) -> str:
    """A customer's message with ``emotion`` about ``need`` in the planted ``language`` (zh, en, mixed),
    about ``product`` (and ``other`` where a template compares two), with the ``slots`` of its chat
    (drawn if None), from a template ``allowed`` accepts when there is one. ``need`` must have templates
    for ``emotion``: product questions are never angry.

    >>> from streams.processes.catalog import load_catalog
    >>> buds = load_catalog().product("headphones-echo-buds")
    >>> customer_message(random.Random(2), "frustration", "fault", "zh", buds)
    '这个耳机一直断连，烦死了，体验不是很好。'
    """
    slots = slots or _slots(rng)
    return _customer(rng, emotion, need, language, product, other or product, slots, allowed)[1]


def _customer(
    rng: random.Random,
    emotion: str,
    need: str,
    language: str,
    product: Product,
    other: Product,
    slots: dict[str, str],
    allowed: Callable[[str], bool] | None,
) -> tuple[str, str]:
    """:func:`customer_message`'s template and text."""
    templates = CUSTOMER[need][emotion][language]
    template = rng.choice([t for t in templates if allowed is None or allowed(t)] or templates)
    text = _fill(template, slots, product, other, language)
    if emotion != "anger" and rng.random() < OPENING_SHARE:
        lower = language == "en" and text[1:2].islower() and not text.startswith(product.name)
        text = rng.choice(OPENINGS[language]) + (text[0].lower() + text[1:] if lower else text)
    if rng.random() < FOLLOW_UP_SHARE:
        ended = text[-1] in "?？!！.。"
        if language == "en":
            text += ("" if ended else ".") + " " + rng.choice(FOLLOW_UPS[emotion]["en"])
        else:
            text += ("" if ended else "，") + rng.choice(FOLLOW_UPS[emotion][language])
    return template, text


def _draw(rng: random.Random, shares: dict[str, float]) -> str:
    return rng.choices(list(shares), weights=list(shares.values()))[0]


def _products(products: list[Product] | None) -> list[Product]:
    return products or sorted(load_catalog().products.values(), key=lambda p: p.product_id)


def conversation_corpus(
    seed: int,
    size: int,
    products: list[Product] | None = None,
    templates: Callable[[str], bool] | None = None,
) -> list[LabelledMessage]:
    """``size`` customer messages with planted emotions (:data:`EMOTION_SHARES`) in the languages of
    :data:`LANGUAGE_SHARES`, about ``products`` (default: the packaged catalog's); the same for the
    same seed. A tenth of the neutral ones is a buyer naming the product they really need
    (:data:`SWITCH`). ``templates`` (default: all) picks the templates of :data:`CUSTOMER` drawn from,
    where a cell keeps one: the benchmark scores the model on templates it never learned."""
    rng = random.Random(seed)
    products = _products(products)
    corpus = []
    for _ in range(size):
        emotion, language = _draw(rng, EMOTION_SHARES), _draw(rng, LANGUAGE_SHARES)
        product, other = rng.sample(products, 2) if len(products) > 1 else (products[0], products[0])
        if emotion == "neutral" and rng.random() < 0.1:
            text = _fill(rng.choice(SWITCH[language]), _slots(rng), product, other, language)
        else:
            need = rng.choice([need for need in NEEDS if emotion in CUSTOMER[need]])
            text = customer_message(rng, emotion, need, language, product, other, allowed=templates)
        corpus.append(LabelledMessage(text, emotion, language_of(text)))
    return corpus


# Help-seekers' and at-risk users' needs; how their emotion moves from one message to the next.
PROBLEMS = ("delivery", "fault", "refund")
ESCALATION = {"neutral": "frustration", "frustration": "anger", "anger": "anger"}


def chat_messages(
    rng: random.Random,
    user_type: str,
    product: Product,
    products: list[Product] | None = None,
    language: str | None = None,
) -> list[ChatMessage]:
    """The chat of a user of ``user_type`` about ``product``: customer messages, each but the last
    answered by the agent. ``products`` (default: the packaged catalog's) are where a buyer's real need
    is drawn from; ``language`` (zh, en, mixed; default drawn by :data:`LANGUAGE_SHARES`) is the
    customer's; the agent answers a mixed chat in Chinese.

    * ``help_seeker``: a delivery, fault or refund problem, 2-4 messages starting neutral (30%) or
      frustrated and escalating (half the time at each message) up to anger; a quarter end satisfied;
    * ``at_risk``: the same problems, 1-3 messages, frustrated or angry from the start, never satisfied;
    * ``buyer``: 1-3 neutral product questions, then 30% of them name another product they really
      need (:data:`SWITCH`), and 40% end satisfied;
    * ``browser``: 1-2 neutral product questions; need ``none``.
    """
    if user_type not in USER_TYPES:
        raise ValueError(f"unknown user type {user_type!r}")
    if language is not None and language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; expected one of {', '.join(LANGUAGES)}")
    language = language or _draw(rng, LANGUAGE_SHARES)
    others = [p for p in _products(products) if p.product_id != product.product_id] or [product]
    slots = _slots(rng)
    plan: list[tuple[str, str, Product]] = []  # per customer message: emotion, topic, product
    needed = product
    if user_type in ("help_seeker", "at_risk"):
        need = rng.choice(PROBLEMS)
        if user_type == "help_seeker":
            count, emotion = rng.randint(2, 4), "neutral" if rng.random() < 0.3 else "frustration"
        else:
            count, emotion = rng.randint(1, 3), rng.choice(("frustration", "anger"))
        for _ in range(count):
            plan.append((emotion, need, product))
            if rng.random() < 0.5:
                emotion = ESCALATION[emotion]
        if user_type == "help_seeker" and rng.random() < 0.25:
            plan[-1] = ("satisfaction", need, product)
    else:
        need = "product_info" if user_type == "buyer" else "none"
        count = rng.randint(1, 3) if user_type == "buyer" else rng.randint(1, 2)
        plan = [("neutral", "product_info", product) for _ in range(count)]
        if user_type == "buyer" and rng.random() < 0.3:
            needed = rng.choice(others)
            plan.append(("neutral", "switch", needed))
        if user_type == "buyer" and rng.random() < 0.4:
            plan.append(("satisfaction", "product_info", needed))
    messages: list[ChatMessage] = []
    agent_language = "en" if language == "en" else "zh"
    used: set[str] = set()  # templates of this chat so far: a customer does not repeat themselves
    replies = 0
    for i, (emotion, topic, about) in enumerate(plan):
        if topic == "switch":
            text = _fill(rng.choice(SWITCH[language]), slots, about, about, language)
        else:
            template, text = _customer(
                rng, emotion, topic, language, about, rng.choice(others), slots, lambda t: t not in used
            )
            used.add(template)
        messages.append(
            ChatMessage(
                "customer", text, emotion, language_of(text), about.product_id, need, needed.product_id
            )
        )
        if i < len(plan) - 1:  # the agent answers, with its next reply
            options = AGENT["product_info" if topic == "switch" else topic][agent_language]
            reply = _fill(options[min(replies, len(options) - 1)], slots, about, about, agent_language)
            replies += 1
            messages.append(
                ChatMessage(
                    "agent", reply, None, language_of(reply), about.product_id, need, needed.product_id
                )
            )
    return messages
