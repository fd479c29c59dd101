# Chinese questions end with the full-width question mark: not a confusable character here.
# ruff: noqa: RUF001
"""Synthetic web and logistics traffic, seeded and deterministic, with a known ground truth.

Sessions start at a steady rate (Poisson arrivals). A session browses and searches, some fill a cart,
some go to the payment page; of those, a share lingers there (longer than the demo's dwell threshold)
before paying or leaving. Every order becomes a shipment: created, in transit, then delivered on time,
or delayed (ETA hours past the promise), or hit by an exception; some customers whose delivery is late
contact support about it, and some rate the delivery (a ``feedback`` score). A share of deliberately
broken messages can be mixed in.

Each user has a latent type (:data:`USER_TYPES`, drawn when the user is first seen, with the profile's
``user_types`` shares), the ground truth for intent and churn models: ``buyer`` (fills a cart most
sessions), ``help_seeker`` (help pages and searches, contacts support in the session), ``browser``
(short sessions, rarely buys) and ``at_risk`` (loses interest: churns, cancels its subscription).
:data:`USER_BEHAVIOUR` says how each type behaves. Users have an engagement in (0, 1], the chance that
they take a session when picked; it falls after each session of an ``at_risk`` user and after late
deliveries, and a user whose engagement falls below ``churn_engagement`` never comes back.

:meth:`TrafficGenerator.due` returns every message whose event time has come, in event-time order, so
calling it with the wall clock streams live traffic, and with a fast-moving clock replays it quickly.
No user has two sessions at once, so :class:`TrafficStats` counts exactly the interventions the
pipeline should emit: one ``payment_assist`` per lingering payment, one ``delay_notice`` per delayed or
exception shipment.

**Process traffic** (issue 5), off by default: new users' devices (``devices``) and CRM attributes
(``crm``) before their first session; later repair requests (``service_requests``), planted near a
service point, far from every point or for an unregistered device; order requests from the chat
(``order_requests``) with planted faults (unknown SKU, bad quantity, over the SKU's limit); comments
on feedback events (:mod:`models.feedback_corpus`) with their true tags, and corrections of some on
:data:`FEEDBACK_LABELS`; support questions about products (``support``) with steady topic mixes, a
history before the start and an optional planted :class:`Surge`. Some requests are sent twice with
the same request id. Each feature draws from a random stream of its own, so with all of them off the
stream is byte for byte what it was before they existed. The ground truth: :meth:`~TrafficGenerator.
expected_tickets`, :meth:`~TrafficGenerator.expected_orders`, :meth:`~TrafficGenerator.feedback_truth`,
:meth:`~TrafficGenerator.surge_window` (and :class:`TrafficStats`).

>>> generator = TrafficGenerator(TrafficProfile(sessions_per_second=2.0), seed=1, start=1_000.0)
>>> messages = generator.due(1_000.0 + 600)
>>> sorted({m.topic for m in messages}), generator.stats.sessions > 1000
(['clickstream', 'logistics'], True)
>>> all(a.event_time <= b.event_time for a, b in zip(messages, messages[1:]))
True
>>> start = 1_764_000_000.0  # 2025-11-24
>>> profile = TrafficProfile(sessions_per_second=2.0, devices_share=0.5, repair_share=0.5,
...                          order_request_share=0.2, support_question_rate=0.5,
...                          surge=Surge("headphones-echo-buds", "pairing", 60.0, 60.0, 100.0))
>>> generator = TrafficGenerator(profile, seed=1, start=start)
>>> messages = generator.due(start + 600)
>>> sorted({m.topic for m in messages})
['clickstream', 'devices', 'logistics', 'order_requests', 'service_requests', 'support']
>>> sum(generator.expected_orders().values()) == generator.stats.order_requests > 100
True
>>> generator.stats.surge_questions > 10, generator.surge_window() == (start + 60, start + 120)
(True, True)
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from models.feedback_corpus import texts_in
from streams.contracts.events import (
    CLICKSTREAM,
    CRM,
    DEVICES,
    LOGISTICS,
    ORDER_REQUESTS,
    PREFERENCES,
    SERVICE_REQUESTS,
    SUBSCRIPTIONS,
    SUPPORT,
)
from streams.contracts.interventions import DELAY_NOTICE, PAYMENT_ASSIST, RENEWAL_REMINDER
from streams.contracts.settings import SETTINGS_DOC
from streams.contracts.time import iso_time
from streams.processes.catalog import Catalog, Product, load_catalog
from streams.processes.orders import INVALID_QUANTITY, QUANTITY_LIMIT, UNKNOWN_SKU
from streams.processes.tickets import (
    EARTH_RADIUS_KM,
    UNKNOWN_DEVICE,
    ServicePoint,
    load_service_points,
    nearest_point,
)

CATEGORIES = ("phones", "laptops", "headphones", "watches", "cameras", "tablets", "speakers")
QUERIES = (
    "wireless earbuds",
    "noise cancelling",
    "usb-c charger",
    "4k camera",
    "smart watch strap",
    "gaming laptop",
    "phone case",
    "bluetooth speaker",
    "tablet stylus",
)
HELP_QUERIES = (
    "refund policy",
    "track my order",
    "return label",
    "warranty claim",
    "reset password",
    "cancel order",
    "contact support",
)
HELP_TOPICS = ("returns", "shipping", "warranty", "account", "payment")  # help pages: /help/<topic>
SUPPORT_REASONS = ("returns", "warranty", "account", "payment", "shipping")  # in-session contacts
EXCEPTIONS = ("address_not_found", "damaged", "customs_hold", "recipient_absent")
TIMEZONES = (
    "UTC",
    "Europe/London",
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Australia/Sydney",
)
HOUR = 3600.0
DAY = 24 * HOUR
RENEWAL_NOTICE_DAYS = 7  # the default policy's renewal_reminder `within`

USER_TYPES = ("buyer", "help_seeker", "browser", "at_risk")


@dataclass(frozen=True, slots=True)
class UserBehaviour:
    """How users of one latent type behave. Shares are per session unless said otherwise."""

    browse_steps: tuple[int, int]  # page views and searches before the cart (or leaving)
    help_share: float  # of the browse steps, those on help pages or help searches
    cart_share: float  # sessions that add to the cart (checkout_share of those pay, as for everyone)
    support_share: float  # sessions with a support contact (in the session) at the end of browsing
    support_feedback_share: float  # of those contacts, the ones rated a minute later (score 2-5)
    session_factor: float  # engagement is multiplied by this after each session
    late_delivery_factor: float  # ... and by this after each delayed or exception shipment
    on_time_scores: tuple[int, int]  # feedback score range after an on-time delivery
    late_scores: tuple[int, int]  # ... after a late one
    cancels_subscription: bool = False  # cancels once disengaged (engagement below cancel_engagement)


USER_BEHAVIOUR: dict[str, UserBehaviour] = {
    "buyer": UserBehaviour(
        browse_steps=(2, 6),
        help_share=0.0,
        cart_share=0.8,
        support_share=0.03,
        support_feedback_share=0.0,
        session_factor=1.0,
        late_delivery_factor=0.85,
        on_time_scores=(4, 5),
        late_scores=(1, 3),
    ),
    "help_seeker": UserBehaviour(
        browse_steps=(2, 6),
        help_share=0.75,
        cart_share=0.1,
        support_share=0.6,
        support_feedback_share=0.5,
        session_factor=1.0,
        late_delivery_factor=0.85,
        on_time_scores=(4, 5),
        late_scores=(1, 3),
    ),
    "browser": UserBehaviour(
        browse_steps=(1, 4),
        help_share=0.0,
        cart_share=0.12,
        support_share=0.03,
        support_feedback_share=0.0,
        session_factor=1.0,
        late_delivery_factor=0.85,
        on_time_scores=(4, 5),
        late_scores=(1, 3),
    ),
    "at_risk": UserBehaviour(
        browse_steps=(1, 6),
        help_share=0.0,
        cart_share=0.35,
        support_share=0.15,
        support_feedback_share=0.0,
        session_factor=0.9,
        late_delivery_factor=0.3,
        on_time_scores=(3, 5),
        late_scores=(1, 2),
        cancels_subscription=True,
    ),
}
SUPPORT_FEEDBACK_SCORES = (2, 5)  # what a help-seeker's support contact is rated

# --- process traffic (issue 5): devices, repairs, orders from the chat, feedback comments and their
# corrections, support questions about products, CRM attributes.

FEEDBACK_LABELS = "feedback_labels"  # Outgoing.topic of corrections to feedback tags (models.tagger)
PROCESS_TOPICS = (DEVICES, SERVICE_REQUESTS, ORDER_REQUESTS, CRM, SUPPORT, FEEDBACK_LABELS)
DISPATCH_MAX_KM = float(SETTINGS_DOC["dispatch_max_km"][0])  # the worker's default
LANGUAGES = ("en", "zh")

# What customers say is wrong with a device, per category (the catalog's), in both languages.
FAULTS: dict[str, dict[str, tuple[str, ...]]] = {
    "phones": {
        "en": (
            "Cracked screen after a drop",
            "Battery drains within a few hours",
            "Does not charge any more",
            "Camera shows only a black picture",
            "Speaker crackles during calls",
        ),
        "zh": (
            "摔了一下屏幕碎了",
            "电池几个小时就没电",
            "充不进电了",
            "相机打开是黑屏",
            "通话时扬声器有杂音",
        ),
    },
    "laptops": {
        "en": (
            "Several keyboard keys are stuck",
            "Does not power on",
            "Overheats and shuts down",
            "The hinge is broken",
            "Wi-Fi keeps dropping",
        ),
        "zh": ("键盘有几个键卡住了", "开不了机", "发热严重会自动关机", "屏幕转轴断了", "无线网络总是断开"),
    },
    "headphones": {
        "en": (
            "No sound from the left earbud",
            "Will not pair any more",
            "The charging case does not charge",
            "Noise cancelling hisses",
            "The touch controls do not respond",
        ),
        "zh": ("左耳没有声音", "无法配对了", "充电盒充不进电", "降噪有嘶嘶声", "触控没有反应"),
    },
    "appliances": {
        "en": (
            "The motor stopped working",
            "Suction is very weak",
            "Makes a loud grinding noise",
            "Battery does not hold a charge",
            "Display shows error E4",
        ),
        "zh": ("电机不转了", "吸力很弱", "有很大的摩擦声", "电池充不满", "屏幕显示错误E4"),
    },
}
GENERIC_FAULTS = {
    "en": ("Stopped working", "Does not switch on", "Broken on arrival"),
    "zh": ("坏了", "开不了机", "收到就是坏的"),
}
# Places at least 150 km from every packaged service point: repair requests from there find none.
FAR_PLACES = (
    ("Madrid", 40.4168, -3.7038),
    ("Rome", 41.9028, 12.4964),
    ("Warsaw", 52.2297, 21.0122),
    ("Stockholm", 59.3293, 18.0686),
    ("Lisbon", 38.7223, -9.1393),
    ("Vienna", 48.2082, 16.3738),
)
NEAR_KM = (0.3, 12.0)  # how far from the chosen service point a "near" repair request comes from
ADDRESS_REFS = ("home", "work", "parents", "locker-1")
TIERS = ("bronze", "silver", "gold", "platinum")
TIER_WEIGHTS = (0.5, 0.3, 0.15, 0.05)
SEGMENTS = ("newsletter", "b2b", "student", "loyalty")
REVIEWERS = ("ana", "bo", "chen", "dee", "li")

# Support question topics (the chat's intent ids) per product category, and what customers ask about
# each, in both languages; "{name}" is the product's name.
CATEGORY_TOPICS: dict[str, tuple[str, ...]] = {
    "phones": ("battery", "charging", "screen", "camera", "software_update"),
    "laptops": ("battery", "keyboard", "overheating", "wifi", "software_update"),
    "headphones": ("pairing", "battery", "noise_cancelling", "charging_case", "fit"),
    "appliances": ("suction", "filter", "noise", "battery", "app_setup"),
}
GENERIC_TOPICS = ("setup", "returns", "warranty")
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


@dataclass(frozen=True, slots=True)
class Surge:
    """A planted hot issue: during ``duration`` seconds from ``start`` seconds after the traffic's
    start, questions about ``topic`` on ``product_id`` come ``factor`` times as often as usual."""

    product_id: str
    topic: str
    start: float
    duration: float
    factor: float


@dataclass(frozen=True, slots=True)
class RepairTruth:
    """A repair request as planted: ``near`` a service point repairing the device's category, ``far``
    from every point, or for a device ``unregistered`` to the user (``category`` is then None)."""

    request_id: str
    user_id: str
    device_id: str
    category: str | None
    latitude: float
    longitude: float
    event_time: float
    planted: str
    redelivered: bool  # sent again later with the same request_id (idempotency)


@dataclass(frozen=True, slots=True)
class OrderTruth:
    """An order request as planted: ``accepted``, or the rejection reason (streams.processes.orders) of the
    one faulty line it holds."""

    request_id: str
    user_id: str
    items: tuple[tuple[str, float], ...]  # (sku, quantity)
    event_time: float  # as sent (ms)
    planted: str
    duplicated: bool  # sent again later with the same request_id


@dataclass(frozen=True, slots=True)
class FeedbackTruth:
    """A commented feedback event: its true tags (models.feedback_corpus) and whether a correction
    with them was sent on ``feedback_labels``."""

    feedback_id: str
    user_id: str
    product_id: str
    text: str
    language: str
    tags: tuple[str, ...]
    event_time: float  # of the feedback event
    labelled_at: float | None  # when the correction is sent; None: not corrected

    @property
    def labelled(self) -> bool:
        return self.labelled_at is not None


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str  # the source ("clickstream", "logistics", ... streams.contracts.events) or FEEDBACK_LABELS
    key: bytes  # user id; shipment id (logistics), product id (support), feedback id (labels)
    value: bytes  # the JSON event
    event_time: float
    # Ground truth: the intervention this message leads to. "payment_assist" on the payment page view
    # of a visit that lingers (due one dwell threshold later), "delay_notice" on a delay or exception.
    expects: str | None = None


@dataclass
class TrafficProfile:
    sessions_per_second: float = 5.0
    users: int = 5000
    # Shares of the latent user types (USER_TYPES) and how each behaves (browse steps, cart share,
    # support contacts, engagement, feedback scores).
    user_types: dict[str, float] = field(
        default_factory=lambda: {"buyer": 0.3, "help_seeker": 0.2, "browser": 0.35, "at_risk": 0.15}
    )
    behaviour: dict[str, UserBehaviour] = field(default_factory=lambda: dict(USER_BEHAVIOUR))
    think_seconds: tuple[float, float] = (1.0, 5.0)
    checkout_share: float = 0.7  # of the sessions that add to the cart, the ones that reach payment
    payment_linger_share: float = 0.15  # of those, the ones that linger on the payment page
    linger_seconds: tuple[float, float] = (40.0, 90.0)  # above the demo's 30 s dwell threshold
    pay_seconds: tuple[float, float] = (3.0, 15.0)  # how long the others take to pay
    shipment_step_seconds: tuple[float, float] = (3.0, 15.0)  # between logistics updates
    shipment_delay_share: float = 0.2
    shipment_exception_share: float = 0.05
    delay_hours: tuple[float, float] = (3.0, 30.0)  # above the default 2 h slip threshold
    complaint_share: float = 0.3  # of late shipments, customers who contact support about it
    feedback_share: float = 0.4  # of delivered shipments, the ones the customer rates
    support_feedback_delay: float = 60.0  # seconds from an in-session support contact to its rating
    churn_engagement: float = 0.05  # a user whose engagement falls below this never comes back
    cancel_engagement: float = 0.15  # below this, users of a type that cancels cancel their subscription
    give_up_share: float = 0.5  # of lingering payment visits, the ones that end without paying
    malformed_share: float = 0.0  # extra broken messages, per valid one
    # Users who visit the preference centre before their first session: they give a time zone, and
    # some of them opt out of proactive contact or turn e-mail off.
    preferences_share: float = 0.0
    opt_out_share: float = 0.05  # of those
    no_email_share: float = 0.2  # of those
    # Users whose subscription snapshot the billing system sends before their first session, renewing
    # 0-30 days later; those renewing within RENEWAL_NOTICE_DAYS are due a reminder at once.
    subscription_share: float = 0.0
    # A planted effect for measuring uplift: users for whom ``treated`` is true (not in a holdout) are
    # helped by Forewarn's interventions: they complain and give up less, by these factors.
    treated: Callable[[str], bool] | None = None
    treated_complaint_factor: float = 0.4
    treated_give_up_factor: float = 0.5
    # --- process traffic. Each feature is off while its share (or rate) is 0, as by default, and draws
    # from a random stream of its own, so the traffic above stays byte for byte what it is without it.
    catalog: Catalog | None = None  # products, SKUs and categories; None: the packaged sample
    service_points: list[ServicePoint] | None = None  # None: the packaged sample
    text_zh_share: float = 0.3  # faults, comments and questions in Chinese; the others in English
    # New users who register 1-2 devices (products of the catalog) before their first session; a share
    # of them asks the chat for a repair of one later, mostly near a service point repairing its
    # category, some far from every point, some for a device not registered to them; some requests
    # are sent twice with the same request_id.
    devices_share: float = 0.0
    repair_share: float = 0.0  # of those users
    repair_after_seconds: tuple[float, float] = (10.0, 60.0)  # after the registration
    repair_far_share: float = 0.1  # of repair requests
    repair_unregistered_share: float = 0.05  # of repair requests
    repair_redelivery_share: float = 0.1  # of repair requests
    # Sessions ending with an order asked in the chat: SKUs of the catalog within their limits; some
    # with one faulty line planted (unknown SKU, zero/negative/fractional quantity, over the SKU's
    # limit); some sent twice with the same request_id.
    order_request_share: float = 0.0
    order_unknown_sku_share: float = 0.08
    order_bad_quantity_share: float = 0.08
    order_over_limit_share: float = 0.04
    order_duplicate_share: float = 0.1
    # Feedback events with a comment from models.feedback_corpus (its score close to the event's) about
    # a product; a share of them is corrected on FEEDBACK_LABELS with the true tags a little later.
    feedback_comment_share: float = 0.0
    label_share: float = 0.0  # of the commented feedback
    label_after_seconds: tuple[float, float] = (5.0, 60.0)
    # Support questions about launched products (Poisson, per second over all products), each product
    # with a steady mix of topics; also for support_history_seconds before the start (so that
    # hot-issue detection has a baseline), and with an optional planted surge.
    support_question_rate: float = 0.0
    support_history_seconds: float = 0.0
    surge: Surge | None = None
    # New users whose CRM attributes (tier, lifetime value, sometimes segments) are sent before their
    # first session; crm_update_share of them get an update (more spent, maybe a tier up) later.
    crm_share: float = 0.0
    crm_update_share: float = 0.25
    crm_update_after_seconds: tuple[float, float] = (10.0, 120.0)


@dataclass
class TrafficStats:
    events: int = 0
    sessions: int = 0
    payment_sessions: int = 0
    lingering_payments: int = 0
    orders: int = 0
    delayed_shipments: int = 0
    exception_shipments: int = 0
    malformed: int = 0
    preferences: int = 0
    subscriptions: int = 0
    feedback: int = 0
    support_in_session: int = 0
    cancellations: int = 0
    churned_users: int = 0
    devices: int = 0  # device registrations
    repair_requests: int = 0  # distinct request ids
    repair_redeliveries: int = 0  # requests sent a second time
    order_requests: int = 0  # distinct request ids
    order_duplicates: int = 0
    commented_feedback: int = 0
    labels: int = 0  # corrections on FEEDBACK_LABELS
    support_questions: int = 0  # steady ones (history included)
    surge_questions: int = 0  # the planted surge's extra questions
    crm_updates: int = 0


@dataclass(order=True)
class _Scheduled:
    time: float
    sequence: int
    # 0 for the behaviour traffic; process messages count here instead of taking sequence numbers,
    # so that turning them on leaves the behaviour traffic's ids and order as they were.
    side: int
    outgoing: Outgoing = field(compare=False)


class TrafficGenerator:
    def __init__(self, profile: TrafficProfile, seed: int = 7, start: float | None = None) -> None:
        self.profile = profile
        self.seed = seed
        self.random = random.Random(seed)
        self.stats = TrafficStats()
        self._heap: list[_Scheduled] = []
        self._sequence = 0
        self._next_session = start
        self._busy_until: dict[str, float] = {}  # user -> end of their current session
        self._types: dict[str, str] = {}  # users who have had a session -> their latent type
        self._engagement: dict[str, float] = {}  # user -> engagement, if below 1
        self._churned: dict[str, float] = {}  # user -> when their engagement fell below churn_engagement
        self._subscriptions: dict[str, dict[str, object]] = {}  # user -> their subscription snapshot
        self._cancelled: set[str] = set()  # users whose subscription was cancelled
        unknown = set(profile.user_types) - set(USER_TYPES)
        if unknown or sum(profile.user_types.values()) <= 0:
            raise ValueError(f"user_types must give positive shares of {', '.join(USER_TYPES)}")
        # Process traffic: one random stream per feature (str seeds are hashed, so they do not
        # correlate with the seed's own stream), and its own id counter.
        self._rng = {
            name: random.Random(f"{seed}:{name}")
            for name in ("devices", "orders", "feedback", "questions", "surge", "crm")
        }
        self._process_sequence = 0  # orders process messages of the same time and sequence in the heap
        self._ids: Counter[str] = Counter()
        self._start = start
        self.catalog = profile.catalog if profile.catalog is not None else load_catalog()
        self.service_points = (
            profile.service_points if profile.service_points is not None else load_service_points()
        )
        self._repairs: list[RepairTruth] = []
        self._orders: list[OrderTruth] = []
        self._feedback_truth: dict[str, FeedbackTruth] = {}
        self._crm: dict[str, dict[str, object]] = {}
        self._mix = self._question_mix() if profile.support_question_rate > 0 else {}
        self._next_question: float | None = None
        self._next_surge: float | None = None
        if profile.surge is not None:
            _check_surge(profile.surge, profile, self.catalog)

    def user_type(self, user: str) -> str | None:
        """The latent type of ``user``; None for a user not seen yet."""
        return self._types.get(user)

    def engagement(self, user: str) -> float:
        """The chance that ``user`` takes a session when picked, in (0, 1]; 1.0 for a new user."""
        return self._engagement.get(user, 1.0)

    def churned(self, user: str) -> bool:
        """Whether ``user``'s engagement fell below the profile's ``churn_engagement``: no more sessions."""
        return user in self._churned

    def due(self, now: float) -> list[Outgoing]:
        """Start the sessions due by ``now`` and return every message whose event time has come."""
        if self._next_session is None:
            self._next_session = now
        if self._start is None:
            self._start = self._next_session
        while self._next_session <= now:
            self._start_session(self._next_session)
            self._next_session += self.random.expovariate(self.profile.sessions_per_second)
        if self.profile.support_question_rate > 0:
            self._questions_due(now)
        out = []
        while self._heap and self._heap[0].time <= now:
            out.append(heapq.heappop(self._heap).outgoing)
        return out

    # --- scheduling

    def _id(self) -> str:
        self._sequence += 1
        return f"{self.seed}-{self._sequence}"

    def _push(self, topic: str, key: str, time: float, event: dict, expects: str | None = None) -> None:
        self._sequence += 1
        value = orjson.dumps(event)
        outgoing = Outgoing(topic, key.encode(), value, time, expects)
        heapq.heappush(self._heap, _Scheduled(time, self._sequence, 0, outgoing))
        self.stats.events += 1
        if self.profile.malformed_share and self.random.random() < self.profile.malformed_share:
            self._sequence += 1
            broken = Outgoing(topic, key.encode(), self._broken(event), time)
            heapq.heappush(self._heap, _Scheduled(time, self._sequence, 0, broken))
            self.stats.malformed += 1

    def _click(
        self,
        time: float,
        user: str,
        session: str | None,
        event_type: str,
        expects: str | None = None,
        **fields: object,
    ) -> str:
        """Send one clickstream event; returns its event id."""
        event = {
            "event_id": self._id(),
            "event_type": event_type,
            "event_time": round(time * 1000),
            "user_id": user,
            **fields,
        }
        if session is not None:
            event["session_id"] = session
        self._push(CLICKSTREAM, user, time, event, expects)
        return event["event_id"]

    def _between(self, bounds: tuple[float, float]) -> float:
        return self.random.uniform(*bounds)

    def _feedback(self, time: float, user: str, score: int, **fields: object) -> None:
        profile = self.profile
        comment = None
        if profile.feedback_comment_share and self._rng["feedback"].random() < profile.feedback_comment_share:
            comment = self._comment(score, time)
            fields = {**fields, "comment": comment[0], "product_id": comment[3]}
        feedback_id = self._click(time, user, None, "feedback", score=score, **fields)
        self.stats.feedback += 1
        if comment is not None:
            self._commented(time, user, feedback_id, *comment)

    def _free_user(self, time: float) -> str:
        """A user not in a session, picked with a chance proportional to their engagement."""
        for _ in range(50):
            user = f"u{self.random.randrange(self.profile.users):05d}"
            if user in self._churned or self._busy_until.get(user, 0.0) >= time:
                continue
            if self.random.random() < self.engagement(user):
                return user
        return f"u{self.profile.users + self._sequence:05d}"  # population saturated: a new user

    def _behaviour(self, user: str) -> UserBehaviour:
        return self.profile.behaviour[self._types[user]]

    def _start_session(self, time: float) -> None:
        profile = self.profile
        self.stats.sessions += 1
        user = self._free_user(time)
        if user not in self._types:
            shares = profile.user_types
            self._types[user] = self.random.choices(list(shares), weights=list(shares.values()))[0]
            if self.random.random() < profile.preferences_share:
                self._preferences(time, user)
            if self.random.random() < profile.subscription_share:
                self._subscription(time, user)
            self._first_seen(time, user)
        behaviour = self._behaviour(user)
        session = f"s{self._id()}"
        # A user drifting away browses less: their sessions get shorter as their engagement falls.
        steps = max(1, round(self.random.randint(*behaviour.browse_steps) * self.engagement(user) ** 0.5))
        for _ in range(steps):
            if self.random.random() < behaviour.help_share:
                if self.random.random() < 0.3:
                    self._click(time, user, session, "search", query=self.random.choice(HELP_QUERIES))
                else:
                    page = f"/help/{self.random.choice(HELP_TOPICS)}"
                    self._click(time, user, session, "page_view", page=page, category="help")
                time += self._between(profile.think_seconds)
                continue
            category = self.random.choice(CATEGORIES)
            if self.random.random() < 0.3:
                self._click(time, user, session, "search", query=self.random.choice(QUERIES))
            elif self.random.random() < 0.5:
                self._click(time, user, session, "page_view", page=f"/c/{category}", category=category)
            else:
                sku = f"sku-{self.random.randrange(500):03d}"
                self._click(time, user, session, "page_view", page=f"/p/{sku}", category=category)
            time += self._between(profile.think_seconds)
        if self.random.random() < behaviour.support_share:
            self._click(
                time,
                user,
                session,
                "support_contact",
                reason=self.random.choice(SUPPORT_REASONS),
                channel="chat",
            )
            self.stats.support_in_session += 1
            if self.random.random() < behaviour.support_feedback_share:
                # Rated a little later (a minute by default), outside the session (no session_id).
                score = self.random.randint(*SUPPORT_FEEDBACK_SCORES)
                self._feedback(time + profile.support_feedback_delay, user, score)
            time += self._between(profile.think_seconds)
        if self.random.random() < behaviour.cart_share:
            cart = 0.0
            for _ in range(self.random.randint(1, 3)):
                price = round(self.random.uniform(5, 800), 2)
                cart += price
                self._click(
                    time,
                    user,
                    session,
                    "add_to_cart",
                    sku=f"sku-{self.random.randrange(500):03d}",
                    quantity=1,
                    price=price,
                )
                time += self._between(profile.think_seconds)
            if self.random.random() < profile.checkout_share:
                time = self._checkout(time, user, session, round(cart, 2))
        if profile.order_request_share and self._rng["orders"].random() < profile.order_request_share:
            self._order_request(time + self._rng["orders"].uniform(*profile.think_seconds), user)
        self._busy_until[user] = time + 1.0
        self._disengage(user, behaviour.session_factor, time)

    def _checkout(self, time: float, user: str, session: str, cart: float) -> float:
        profile = self.profile
        self.stats.payment_sessions += 1
        self._click(time, user, session, "checkout_start", cart_value=cart)
        time += self._between(profile.think_seconds)
        lingers = self.random.random() < profile.payment_linger_share
        self._click(
            time,
            user,
            session,
            "payment_page_view",
            expects=PAYMENT_ASSIST if lingers else None,
            page="/checkout/payment",
            cart_value=cart,
        )
        if lingers:
            self.stats.lingering_payments += 1
            time += self._between(profile.linger_seconds)
            if self.random.random() < profile.give_up_share * self._effect(user, "give_up"):
                # gives up and browses on
                self._click(time, user, session, "page_view", page="/", category="home")
                return time
        else:
            time += self._between(profile.pay_seconds)
        order = f"o{self._id()}"
        self._click(time, user, session, "payment_completed", order_id=order, amount=cart)
        self._click(time + 0.5, user, session, "order_completed", order_id=order, amount=cart)
        self.stats.orders += 1
        self._ship(time + 1.0, user, order)
        return time + 0.5

    def _ship(self, time: float, user: str, order: str) -> None:
        profile = self.profile
        shipment = f"sh{self._id()}"
        promised = time + 48 * HOUR
        base = {
            "shipment_id": shipment,
            "order_id": order,
            "user_id": user,
            "promised_eta": iso_time(promised),
            "carrier": "fastpost",
        }

        def send(at: float, event_type: str, expects: str | None = None, **fields: object) -> None:
            event = {
                "event_id": self._id(),
                "event_type": event_type,
                "event_time": iso_time(at),
                **base,
                **fields,
            }
            self._push(LOGISTICS, shipment, at, event, expects)

        time += self._between(profile.shipment_step_seconds)
        send(time, "shipment_created", eta=iso_time(promised))
        time += self._between(profile.shipment_step_seconds)
        send(time, "in_transit", eta=iso_time(promised), location="hub-1")
        draw = self.random.random()
        late = False
        if draw < profile.shipment_delay_share:
            time += self._between(profile.shipment_step_seconds)
            send(
                time,
                "delayed",
                expects=DELAY_NOTICE,
                eta=iso_time(promised + self._between(profile.delay_hours) * HOUR),
                detail="carrier backlog",
            )
            self.stats.delayed_shipments += 1
            late = True
        elif draw < profile.shipment_delay_share + profile.shipment_exception_share:
            time += self._between(profile.shipment_step_seconds)
            send(time, "exception", expects=DELAY_NOTICE, exception_code=self.random.choice(EXCEPTIONS))
            self.stats.exception_shipments += 1
            late = True
        if late:
            self._disengage(user, self._behaviour(user).late_delivery_factor, time)
        if late and self.random.random() < profile.complaint_share * self._effect(user, "complaint"):
            contact_at = time + self._between(profile.shipment_step_seconds)
            # Outside any web session, so it does not end the one the user may be in.
            self._click(
                contact_at, user, None, "support_contact", reason="delivery", order_id=order, channel="chat"
            )
        time += 2 * self._between(profile.shipment_step_seconds)
        send(time, "delivered")
        if self.random.random() < profile.feedback_share:
            behaviour = self._behaviour(user)
            score = self.random.randint(*(behaviour.late_scores if late else behaviour.on_time_scores))
            rated_at = time + 3 * self._between(profile.shipment_step_seconds)
            self._feedback(rated_at, user, score, order_id=order)

    def _disengage(self, user: str, factor: float, time: float) -> None:
        """Multiply ``user``'s engagement by ``factor`` at ``time``: they may churn, and cancel."""
        if factor >= 1.0 or user in self._churned:
            return
        profile = self.profile
        engagement = self.engagement(user) * factor
        self._engagement[user] = engagement
        if engagement < profile.churn_engagement:
            self._churned[user] = time
            self.stats.churned_users += 1
        if (
            self._behaviour(user).cancels_subscription
            and (user in self._churned or engagement < profile.cancel_engagement)
            and user in self._subscriptions
            and user not in self._cancelled
        ):
            self._cancelled.add(user)
            self._push_subscription(time, user, {**self._subscriptions[user], "status": "cancelled"})
            self.stats.cancellations += 1

    def _preferences(self, time: float, user: str) -> None:
        profile = self.profile
        fields: dict[str, object] = {"timezone": self.random.choice(TIMEZONES)}
        if self.random.random() < profile.opt_out_share:
            fields["opt_out"] = True
        if self.random.random() < profile.no_email_share:
            fields["channels"] = {"email": False}
        event = {
            "event_id": self._id(),
            "event_type": "preferences_updated",
            "event_time": round(time * 1000),
            "user_id": user,
            **fields,
        }
        self._push(PREFERENCES, user, time, event)
        self.stats.preferences += 1

    def _subscription(self, time: float, user: str) -> None:
        renews_at = time + self.random.uniform(0.0, 30.0) * DAY
        snapshot = {
            "subscription_id": f"sub-{user}",
            "plan": self.random.choice(("basic", "pro")),
            "status": "active",
            "renews_at": iso_time(renews_at),
        }
        self._subscriptions[user] = snapshot
        due = renews_at - time <= RENEWAL_NOTICE_DAYS * DAY
        self._push_subscription(time, user, snapshot, RENEWAL_REMINDER if due else None)
        self.stats.subscriptions += 1

    def _push_subscription(
        self, time: float, user: str, snapshot: dict[str, object], expects: str | None = None
    ) -> None:
        event = {
            "event_id": self._id(),
            "event_type": "subscription_updated",
            "event_time": round(time * 1000),
            "user_id": user,
            **snapshot,
        }
        self._push(SUBSCRIPTIONS, user, time, event, expects)

    # --- process traffic (issue 5). Every draw comes from the feature's own random stream
    # (self._rng), never from self.random, and ids from a counter of their own: with every share at 0
    # nothing here runs, and with some on the behaviour traffic keeps its ids, times and order.

    def _process_id(self, prefix: str) -> str:
        """A new id: one counter per prefix, so that the support questions (asked as ``due`` is called)
        and the session-driven messages (made as sessions start) do not shift each other's ids."""
        self._ids[prefix] += 1
        return f"{prefix}{self.seed}-{self._ids[prefix]}"

    def _push_process(self, topic: str, key: str, time: float, value: dict) -> None:
        self._process_sequence += 1
        outgoing = Outgoing(topic, key.encode(), orjson.dumps(value), time)
        heapq.heappush(self._heap, _Scheduled(time, self._sequence, self._process_sequence, outgoing))
        self.stats.events += 1

    def _process_event(
        self,
        source: str,
        key: str,
        time: float,
        event_type: str,
        user: str,
        /,
        id_prefix: str = "p",
        **fields: object,
    ) -> str:
        event_id = self._process_id(id_prefix)
        event = {
            "event_id": event_id,
            "event_type": event_type,
            "event_time": round(time * 1000),
            "user_id": user,
            **fields,
        }
        self._push_process(source, key, time, event)
        return event_id

    def _language(self, rng: random.Random) -> str:
        return "zh" if rng.random() < self.profile.text_zh_share else "en"

    def _launched(self, time: float) -> list[Product]:
        """The catalog's products launched by ``time`` (all of them if none was)."""
        products = sorted(self.catalog.products.values(), key=lambda p: p.product_id)
        return [p for p in products if p.launched_at <= time] or products

    def _first_seen(self, time: float, user: str) -> None:
        """What the other systems send about a new user before their first session."""
        profile = self.profile
        if profile.crm_share and self._rng["crm"].random() < profile.crm_share:
            self._crm_update(time, user)
            if self._rng["crm"].random() < profile.crm_update_share:
                self._crm_update(time + self._rng["crm"].uniform(*profile.crm_update_after_seconds), user)
        if profile.devices_share and self._rng["devices"].random() < profile.devices_share:
            self._register_devices(time, user)

    def _crm_update(self, time: float, user: str) -> None:
        rng = self._rng["crm"]
        held = self._crm.get(user)
        if held is None:
            tier = rng.choices(TIERS, weights=TIER_WEIGHTS)[0]
            value = round(rng.lognormvariate(5.5, 1.0), 2)
        else:  # a later update: more spent, and sometimes a tier up
            rank = TIERS.index(held["tier"])
            tier = TIERS[min(rank + (rng.random() < 0.3), len(TIERS) - 1)]
            value = round(held["lifetime_value"] + rng.uniform(20.0, 500.0), 2)
        attributes: dict[str, object] = {"tier": tier, "lifetime_value": value}
        if rng.random() < 0.3:
            attributes["segments"] = sorted(rng.sample(SEGMENTS, rng.randint(1, 2)))
        self._crm[user] = attributes
        self._process_event(CRM, user, time, "crm_attributes", user, **attributes)
        self.stats.crm_updates += 1

    def _register_devices(self, time: float, user: str) -> None:
        rng, profile = self._rng["devices"], self.profile
        owned = []
        for product in rng.sample(self._launched(time), rng.randint(1, 2)):
            device_id = self._process_id("dev-")
            purchased = max(product.launched_at, time - rng.uniform(7.0, 600.0) * DAY)
            self._process_event(
                DEVICES,
                user,
                time,
                "device_registered",
                user,
                device_id=device_id,
                category=product.category,
                model=product.name,
                serial=f"SN{rng.randrange(10**9):09d}",
                purchased_at=iso_time(purchased),
                warranty_until=iso_time(purchased + 730 * DAY),
            )
            owned.append((device_id, product.category))
            self.stats.devices += 1
        if profile.repair_share and rng.random() < profile.repair_share:
            self._repair(time + rng.uniform(*profile.repair_after_seconds), user, rng.choice(owned))

    def _repair(self, time: float, user: str, device: tuple[str, str]) -> None:
        rng, profile = self._rng["devices"], self.profile
        device_id, category = device
        draw = rng.random()
        if draw < profile.repair_unregistered_share:
            planted, device_id, known = "unregistered", self._process_id("dev-"), None
        elif draw < profile.repair_unregistered_share + profile.repair_far_share:
            planted, known = "far", category
        else:
            planted, known = "near", category
        if planted == "far":
            _, latitude, longitude = rng.choice(FAR_PLACES)
        else:
            covering = [p for p in self.service_points if category in p.categories] or self.service_points
            latitude, longitude = _offset(rng.choice(covering), rng.uniform(*NEAR_KM), rng.uniform(0, 360))
        faults = FAULTS.get(category, GENERIC_FAULTS)[self._language(rng)]
        request = {
            "request_id": self._process_id("rq-"),
            "device_id": device_id,
            "fault": rng.choice(faults),
            "latitude": latitude,
            "longitude": longitude,
        }
        self._process_event(SERVICE_REQUESTS, user, time, "repair_requested", user, **request)
        self.stats.repair_requests += 1
        again = rng.random() < profile.repair_redelivery_share
        if again:  # the chat sends it again: a new event, the same request
            self._process_event(
                SERVICE_REQUESTS, user, time + rng.uniform(1.0, 5.0), "repair_requested", user, **request
            )
            self.stats.repair_redeliveries += 1
        sent_at = round(time * 1000) / 1000  # the event time as sent (ms): what dispatch sees
        self._repairs.append(
            RepairTruth(
                request["request_id"], user, device_id, known, latitude, longitude, sent_at, planted, again
            )
        )

    def _order_request(self, time: float, user: str) -> None:
        """An order the user asks the chat for: valid lines, with at most one faulty line planted."""
        rng, profile, catalog = self._rng["orders"], self.profile, self.catalog
        launched = {p.product_id for p in self._launched(time)}
        skus = [
            sku for sku in sorted(catalog.skus.values(), key=lambda s: s.sku) if sku.product_id in launched
        ]
        lines: list[tuple[str, float]] = []
        for sku in rng.sample(skus, min(len(skus), rng.randint(1, 3))):
            # Within the SKU's limit, and each SKU once, so that only a planted line is refused.
            lines.append((sku.sku, float(rng.randint(1, min(2, sku.max_quantity or 2)))))
        draw = rng.random()
        planted, bad = "accepted", None
        bounds = (
            profile.order_unknown_sku_share,
            profile.order_bad_quantity_share,
            profile.order_over_limit_share,
        )
        limited = [sku for sku in skus if sku.max_quantity is not None]
        if draw < bounds[0]:
            planted, bad = UNKNOWN_SKU, (f"SKU-GONE-{rng.randrange(1000):03d}", 1.0)
        elif draw < bounds[0] + bounds[1]:
            planted, bad = INVALID_QUANTITY, (rng.choice(skus).sku, rng.choice((0.0, -1.0, 1.5, 0.5, -3.0)))
        elif draw < sum(bounds) and limited:
            sku = rng.choice(limited)
            planted, bad = QUANTITY_LIMIT, (sku.sku, float(sku.max_quantity + rng.randint(1, 3)))
        if bad is not None:
            lines = [line for line in lines if line[0] != bad[0]]  # the bad line is the SKU's only one
            lines.insert(rng.randint(0, len(lines)), bad)
        request = {
            "request_id": self._process_id("or-"),
            "items": [{"sku": sku, "quantity": int(q) if q.is_integer() else q} for sku, q in lines],
            "address_ref": rng.choice(ADDRESS_REFS),
        }
        self._process_event(ORDER_REQUESTS, user, time, "order_requested", user, **request)
        self.stats.order_requests += 1
        again = rng.random() < profile.order_duplicate_share
        if again:
            self._process_event(
                ORDER_REQUESTS, user, time + rng.uniform(1.0, 5.0), "order_requested", user, **request
            )
            self.stats.order_duplicates += 1
        sent_at = round(time * 1000) / 1000
        self._orders.append(OrderTruth(request["request_id"], user, tuple(lines), sent_at, planted, again))

    def _comment(self, score: int, time: float) -> tuple[str, tuple[str, ...], str, str]:
        """A labelled comment (text, tags, language, product) in keeping with the feedback's score."""
        rng = self._rng["feedback"]
        language = self._language(rng)
        for _ in range(30):  # the corpus scores each text; take one within a point of the user's
            text, tags, corpus_score = texts_in(rng, 1, language)[0]
            if abs(corpus_score - score) <= 1:
                break
        product = rng.choice(self._launched(time))
        return text, tags, language, product.product_id

    def _commented(
        self,
        time: float,
        user: str,
        feedback_id: str,
        text: str,
        tags: tuple[str, ...],
        language: str,
        product: str,
    ) -> None:
        rng, profile = self._rng["feedback"], self.profile
        labelled_at = None
        if profile.label_share and rng.random() < profile.label_share:
            labelled_at = time + rng.uniform(*profile.label_after_seconds)
            label = {
                "schema": 1,
                "feedback_id": feedback_id,
                "text": text,
                "tags": list(tags),
                "labelled_by": rng.choice(REVIEWERS),
                "labelled_at": round(labelled_at * 1000),
            }
            self._push_process(FEEDBACK_LABELS, feedback_id, labelled_at, label)
            self.stats.labels += 1
        self._feedback_truth[feedback_id] = FeedbackTruth(
            feedback_id, user, product, text, language, tags, time, labelled_at
        )
        self.stats.commented_feedback += 1

    # --- support questions

    def _question_mix(self) -> dict[str, tuple[float, tuple[str, ...], tuple[float, ...]]]:
        """Per product: its weight among products and its steady topic shares (drawn once)."""
        rng = self._rng["questions"]
        mix = {}
        for product in sorted(self.catalog.products.values(), key=lambda p: p.product_id):
            topics = CATEGORY_TOPICS.get(product.category, GENERIC_TOPICS)
            weights = [rng.uniform(0.2, 1.0) for _ in topics]
            shares = tuple(weight / sum(weights) for weight in weights)
            mix[product.product_id] = (rng.uniform(0.5, 2.0), topics, shares)
        return mix

    def topic_rate(self, product_id: str, topic: str, at: float) -> float:
        """The steady rate (questions per second) of ``topic`` on ``product_id`` at ``at``."""
        launched = [p.product_id for p in self._launched(at)]
        if product_id not in launched or product_id not in self._mix:
            return 0.0
        weight, topics, shares = self._mix[product_id]
        total = sum(self._mix[p][0] for p in launched)
        share = shares[topics.index(topic)] if topic in topics else 0.0
        return self.profile.support_question_rate * weight / total * share

    def _ask(self, time: float, product: Product | None = None, topic: str = "") -> None:
        """A steady question (a product and topic of the mix), or with ``product`` and ``topic`` a
        question of the planted surge (from the surge's own random stream)."""
        if product is None:
            rng = self._rng["questions"]
            launched = self._launched(time)
            product = rng.choices(launched, weights=[self._mix[p.product_id][0] for p in launched])[0]
            _, topics, shares = self._mix[product.product_id]
            topic = rng.choices(topics, weights=shares)[0]
            self.stats.support_questions += 1
        else:
            rng = self._rng["surge"]
            self.stats.surge_questions += 1
        text = rng.choice(QUESTIONS[topic][self._language(rng)]).replace("{name}", product.name)
        user = f"u{rng.randrange(self.profile.users):05d}"
        # Keyed by product, not user: a product's questions then stay in order on one partition, as
        # hot-issue detection counts them per product.
        self._process_event(
            SUPPORT, product.product_id, time, "question_asked", user,
            id_prefix="q" if rng is self._rng["questions"] else "qs",
            product_id=product.product_id, text=text, topic=topic,
        )  # fmt: skip

    def _questions_due(self, now: float) -> None:
        """Ask the questions due by ``now``: the steady ones, and the surge's extra ones. Two processes
        with a random stream each, so that how often ``due`` is called does not change what is asked."""
        profile, rng = self.profile, self._rng["questions"]
        if self._next_question is None:
            self._next_question = self._start - profile.support_history_seconds
            self._next_question += rng.expovariate(profile.support_question_rate)
        while self._next_question <= now:
            self._ask(self._next_question)
            self._next_question += rng.expovariate(profile.support_question_rate)
        window = self.surge_window()
        if window is None:
            return
        surge, (begin, end) = profile.surge, window
        assert surge is not None
        extra = (surge.factor - 1.0) * self.topic_rate(surge.product_id, surge.topic, begin)
        if self._next_surge is None:
            if extra <= 0:  # a configuration error, only known once the start is
                raise ValueError(f"surge: {surge.product_id!r} is not launched at the surge's start")
            self._next_surge = begin + self._rng["surge"].expovariate(extra)
        while self._next_surge <= min(now, end):
            self._ask(self._next_surge, self.catalog.products[surge.product_id], surge.topic)
            self._next_surge += self._rng["surge"].expovariate(extra)

    # --- ground truth of the process traffic

    def seen_users(self) -> list[str]:
        """Every user who has had a session, in the order they were first seen."""
        return list(self._types)

    def repairs(self, until: float = math.inf) -> list[RepairTruth]:
        """Every distinct repair request sent (first) by ``until``, as planted."""
        return [repair for repair in self._repairs if repair.event_time <= until]

    def expected_ticket(
        self, repair: RepairTruth, points: list[ServicePoint] | None = None, max_km: float = DISPATCH_MAX_KM
    ) -> str:
        """``assigned`` or the manual-dispatch reason the registry's rule (streams.processes.tickets) gives a
        repair: an unregistered device is ``unknown_device``; else the nearest point open at the
        request's time that repairs the category within reach decides."""
        if repair.category is None:
            return UNKNOWN_DEVICE
        dispatch = nearest_point(
            self.service_points if points is None else points,
            repair.category,
            repair.latitude,
            repair.longitude,
            repair.event_time,
            max_km,
        )
        return "assigned" if dispatch.assigned else dispatch.manual_reason

    def expected_tickets(
        self,
        points: list[ServicePoint] | None = None,
        max_km: float = DISPATCH_MAX_KM,
        until: float = math.inf,
    ) -> Counter[str]:
        """The tickets of the requests sent by ``until``, one per request id (a redelivered request is
        not a ticket again): how many are ``assigned`` and how many are manual, by reason."""
        return Counter(self.expected_ticket(repair, points, max_km) for repair in self.repairs(until))

    def orders(self, until: float = math.inf) -> list[OrderTruth]:
        """Every distinct order request sent (first) by ``until``, as planted."""
        return [order for order in self._orders if order.event_time <= until]

    def expected_orders(self, until: float = math.inf) -> Counter[str]:
        """One decision per request id sent by ``until``: ``accepted``, or rejected by reason."""
        return Counter(order.planted for order in self.orders(until))

    def feedback_truth(self, until: float = math.inf) -> dict[str, FeedbackTruth]:
        """The commented feedback sent by ``until``, by feedback id (the feedback event's id): the
        comment's true tags, its language, and when it is corrected (if it is)."""
        return {key: truth for key, truth in self._feedback_truth.items() if truth.event_time <= until}

    def crm_attributes(self, user: str) -> dict[str, object] | None:
        """The latest CRM attributes sent for ``user``; None if none were."""
        return self._crm.get(user)

    def surge_window(self) -> tuple[float, float] | None:
        """When the planted surge runs (epoch seconds); None without one or before the start."""
        surge = self.profile.surge
        if surge is None or self._start is None:
            return None
        return self._start + surge.start, self._start + surge.start + surge.duration

    def _effect(self, user: str, behaviour: str) -> float:
        """How much of ``behaviour`` (complaint, give_up) a treated user keeps; 1 for the others."""
        profile = self.profile
        if profile.treated is None or not profile.treated(user):
            return 1.0
        return (
            profile.treated_complaint_factor if behaviour == "complaint" else profile.treated_give_up_factor
        )

    def _broken(self, event: dict) -> bytes:
        """One of the ways input goes wrong, derived from a valid event."""
        kind = self.random.randrange(5)
        if kind == 0:
            return orjson.dumps(event)[:-7]  # truncated JSON
        if kind == 1:
            return orjson.dumps({k: v for k, v in event.items() if k != "user_id"})  # missing field
        if kind == 2:
            return orjson.dumps({**event, "event_time": "not a time"})  # invalid value
        if kind == 3:
            return orjson.dumps({**event, "event_type": "teleported"})  # unknown type
        return orjson.dumps({**event, "user_id": 12345})  # wrong type


def _offset(point: ServicePoint, km: float, bearing: float) -> tuple[float, float]:
    """The place ``km`` from ``point`` towards ``bearing`` (degrees from north) on the great circle,
    to 5 decimals (about a metre)."""
    delta, theta = km / EARTH_RADIUS_KM, math.radians(bearing)
    phi1, lambda1 = math.radians(point.latitude), math.radians(point.longitude)
    phi2 = math.asin(math.sin(phi1) * math.cos(delta) + math.cos(phi1) * math.sin(delta) * math.cos(theta))
    lambda2 = lambda1 + math.atan2(
        math.sin(theta) * math.sin(delta) * math.cos(phi1), math.cos(delta) - math.sin(phi1) * math.sin(phi2)
    )
    return round(math.degrees(phi2), 5), round((math.degrees(lambda2) + 540.0) % 360.0 - 180.0, 5)


def _check_surge(surge: Surge, profile: TrafficProfile, catalog: Catalog) -> None:
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
