"""From conversation to process: what one process input does to a user's state and what it starts.

The inputs come from the chat and from other systems, keyed by user like the behaviour events, so
they are handled where the user's state lives (``track_users`` in :mod:`streams.worker.agents.users`):

* ``devices``: a device registered to the user (:func:`streams.processes.tickets.register`);
* ``service_requests``: a repair request becomes a ticket with the device's info and service history,
  dispatched to the nearest open service point (:func:`streams.processes.tickets.open_ticket`);
* ``order_requests``: an order request becomes an order command or a rejection, once per request id
  (:func:`streams.processes.orders.decide_order`);
* ``crm_updates``: the CRM's attributes of the customer (tier, lifetime value, segments);
* ``ticket_updates`` and ``feedback_updates``: what the service desk did with one of the user's tickets,
  or a team with their tagged feedback, checked against the user's recent tickets and feedback and
  passed on as progress records (:mod:`streams.processes.desk`).

Erasure requests (``erasure_requested``) are not a round: the agent deletes the user's state;
:func:`erasure_record` is what it then tells the sink. Support questions are not per user either: they
are counted per product category (:func:`question_record`, :mod:`models.surge`).

Out to the CRM (``crm_sync``) go the user's health score and tags whenever either changes
(:func:`crm_sync_record`).

>>> from streams.processes.catalog import load_catalog
>>> from streams.contracts.events import Event
>>> from streams.processes.tickets import load_service_points
>>> from streams.domain.state import UserState
>>> references = References(load_catalog(), load_service_points(), dispatch_max_km=150.0)
>>> state = UserState("u1")
>>> crm = Event("c1", "crm_attributes", "crm", 100.0, "u1", {"tier": "gold", "lifetime_value": 1200.0})
>>> run_process(state, crm, references, stock=None).emitted()
[]
>>> state.crm.tier, crm_sync_record(state, 100.0)["tags"]
('gold', ['tier:gold'])
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, replace
from typing import Any

import orjson

from models.launch_faq import FaqRules, LaunchForecast, forecast, forecast_match, in_window
from models.surge import (
    CategoryIssues,
    HotIssue,
    LaunchProfile,
    ProductIssues,
    Question,
    SurgeRules,
    observe,
    question_key,
)
from models.tagger import FeedbackTagger, TaggedFeedback, tag_feedback
from streams.contracts.events import (
    CLICKSTREAM,
    CRM_UPDATES,
    DEVICES,
    FEEDBACK_UPDATES,
    ORDER_REQUESTS,
    SERVICE_REQUESTS,
    TICKET_UPDATES,
    Event,
    InvalidEvent,
)
from streams.contracts.time import DAY, iso_time, to_millis
from streams.domain.eviction import mark_active
from streams.domain.state import CrmAttributes, UserState, recent_abandoned_payments
from streams.processes.catalog import Catalog
from streams.processes.desk import (
    FeedbackProgress,
    TicketProgress,
    apply_feedback_update,
    apply_ticket_update,
    remember_feedback,
    remember_ticket,
)
from streams.processes.orders import OrderCommand, OrderRejection, StockLevels, decide_order
from streams.processes.tickets import ServicePoint, Ticket, open_ticket, register

MAX_FEEDBACK_TAGS = 12  # the tags of a user's latest feedback, and older ones up to this many


@dataclass(frozen=True, slots=True)
class References:
    """What processes read besides the user's state: reference data loaded at start."""

    catalog: Catalog
    service_points: list[ServicePoint]
    dispatch_max_km: float


@dataclass(slots=True)
class ProcessRound:
    ticket: Ticket | None = None
    order: OrderCommand | OrderRejection | None = None
    progress: TicketProgress | FeedbackProgress | None = None  # a department's update accepted
    duplicate: bool = False  # a request or update id already handled: nothing new is emitted

    def emitted(self) -> list[Ticket | OrderCommand | OrderRejection | TicketProgress | FeedbackProgress]:
        return [item for item in (self.ticket, self.order, self.progress) if item is not None]


def run_process(
    state: UserState, event: Event, references: References, stock: StockLevels | None
) -> ProcessRound:
    """Apply one process input to ``state``; returns what it starts. ``stock``: None when there is no
    stock topic (orders are then not checked against stock). A department's update that its checks
    refuse raises :class:`InvalidEvent` before it changes anything (:mod:`streams.processes.desk`)."""
    done = ProcessRound()
    if event.source == DEVICES:
        register(state.devices, event)
    elif event.source == SERVICE_REQUESTS:
        done.ticket = open_ticket(state.devices, event, references.service_points, references.dispatch_max_km)
        done.duplicate = done.ticket is None
        if done.ticket is not None:
            dispatch = done.ticket.dispatch
            remember_ticket(
                state.desk,
                done.ticket.ticket_id,
                done.ticket.created_at,
                dispatch.kind,
                dispatch.point_id or "",
            )
        mark_active(
            state
        )  # a request is activity (streams.domain.eviction.last_activity); a registration is not
    elif event.source == ORDER_REQUESTS:
        done.order = decide_order(state.orders, event, references.catalog, stock)
        done.duplicate = done.order is None
        mark_active(state)
    elif event.source == CRM_UPDATES:
        apply_crm(state.crm, event.attrs, event.event_time)
    elif event.source == TICKET_UPDATES:
        done.progress = apply_ticket_update(state.desk, event)
        done.duplicate = done.progress is None
    elif event.source == FEEDBACK_UPDATES:
        done.progress = apply_feedback_update(state.desk, event)
        done.duplicate = done.progress is None
    else:
        raise ValueError(f"{event.source!r} is not a process input")
    # The user's event-time clock (last_event_time) is left alone: it is the behaviour's, and another
    # system's timestamps must not move the moment the user's next click is judged at.
    return done


def apply_crm(crm: CrmAttributes, attrs: dict[str, Any], time: float) -> None:
    """The CRM's attributes; fields left out keep their value, an older update than the one applied
    is ignored (the latest by event time wins)."""
    if time < crm.updated_at:
        return
    crm.updated_at = time
    if "tier" in attrs:
        crm.tier = attrs["tier"]
    if "lifetime_value" in attrs:
        crm.lifetime_value = attrs["lifetime_value"]
    if "segments" in attrs:
        crm.segments = list(attrs["segments"])


def tag_user_feedback(state: UserState, event: Event, tagger: FeedbackTagger) -> TaggedFeedback | None:
    """Tag a feedback event's comment and remember its tags on the user (for ``crm_sync``); None for
    any other event, or feedback without a comment."""
    if event.event_type != "feedback" or event.source != CLICKSTREAM:
        return None
    tagged = tag_feedback(tagger, event)
    if tagged is None:
        return None
    remember_feedback(state.desk, tagged.feedback_id, event.event_time, list(tagged.teams))
    for tag in tagged.tags:
        state.feedback_tags.pop(tag, None)
        state.feedback_tags[tag] = event.event_time
    while len(state.feedback_tags) > MAX_FEEDBACK_TAGS:
        del state.feedback_tags[next(iter(state.feedback_tags))]
    return tagged


# Health bands for the CRM's tags, on the 0-100 health score (docs/prediction.md).
HEALTH_BANDS = ((40, "health:at_risk"), (70, "health:watch"), (101, "health:healthy"))


def user_tags(state: UserState, now: float) -> list[str]:
    """The tags the CRM gets: health band, feedback topics, offer history, CRM tier, sorted."""
    tags = {f"feedback:{tag}" for tag in state.feedback_tags}
    if state.scores is not None:
        tags.add(next(name for bound, name in HEALTH_BANDS if state.scores.health < bound))
    if state.coupon_orders or state.accepted_discounts:
        tags.add("coupon_user")
    if recent_abandoned_payments(state, now) >= 2:
        tags.add("price_sensitive")
    if state.crm.tier:
        tags.add(f"tier:{state.crm.tier}")
    return sorted(tags)


def crm_sync_record(state: UserState, now: float) -> dict[str, Any] | None:
    """What goes to ``crm_sync`` for the user, or None when it is what was sent last (the state keeps
    a fingerprint of the last record sent). Called after every round: the unchanged case returns
    before the record is built."""
    scores = state.scores
    health = None if scores is None else scores.health
    tags = user_tags(state, now)
    # Rounded churn would resend on every small move: the fingerprint is health and tags only.
    fingerprint = hashlib.sha256(orjson.dumps([health, tags])).hexdigest()[:16]
    if fingerprint == state.crm_synced:
        return None
    state.crm_synced = fingerprint
    return {
        "schema": 1,
        "user_id": state.user_id,
        "health": health,
        "churn": None if scores is None else round(scores.churn, 4),
        "top_intent": None if scores is None else max(scores.intent, key=scores.intent.__getitem__),
        "tags": tags,
        "synced_at": iso_time(now),
    }


def question_record(event: Event, catalog: Catalog, rules: SurgeRules) -> dict[str, Any]:
    """A support question as hot-issue detection takes it: with the product's category (the key it is
    counted under) and its topic (the chat's intent, or the question's key, its normalised text).
    A product the catalog does not know is refused (``unknown_product``): hot-issue state is kept per
    product, and ids from bad input must not grow it."""
    attrs = event.attrs
    category = catalog.category_of(attrs["product_id"])
    if category is None:
        raise InvalidEvent("unknown_product", f"product {attrs['product_id'][:64]!r} is not in the catalog")
    question = question_key(attrs["text"], rules)
    return {
        "schema": 1,
        "question_id": event.event_id,
        "user_id": event.user_id,
        "product_id": attrs["product_id"],
        "category": category,
        "topic": attrs.get("topic") or question,  # as models.surge.observe reads it
        "question": question,
        "text": attrs["text"],
        "event_time": to_millis(event.event_time),
    }


def observe_question(
    value: dict[str, Any],
    catalog: Catalog,
    counts: MutableMapping[str, ProductIssues],
    profiles: MutableMapping[str, LaunchProfile],
    rules: SurgeRules,
    faq_rules: FaqRules | None = None,
) -> list[HotIssue]:
    """Count one question (a :func:`question_record`) and return the alerts it raises.

    The worker keeps the hot-issue state per product (``counts``) and per launched product
    (``profiles``), two tables, not one value per category: a category's whole state could be
    megabytes, rewritten to the changelog on every question. Here the category's state is assembled
    from them (this product's counts, the launch profiles of the category's products) and what the
    question changed is written back. An alert on a product in its launch window says whether its
    FAQ forecast named the topic (:func:`models.launch_faq.forecast_match`, ``faq_rules``)."""
    category, product_id = value["category"], value["product_id"]
    product = catalog.product(product_id)
    if product is None:
        raise ValueError(f"product {product_id!r} of category {category!r} is not in the catalog")
    launches = catalog.launches(category)
    state = CategoryIssues()
    if (stored := counts.get(product_id)) is not None:
        state.products[product_id] = stored
    for launch in launches:
        if (profile := profiles.get(launch.product_id)) is not None:
            state.profiles[launch.product_id] = profile
    question = Question(
        product_id, value["topic"], value["text"], value["event_time"] / 1000.0, value["question_id"]
    )
    alerts = observe(state, question, product, launches, rules)
    counts[product_id] = state.products[product_id]
    if product_id in state.profiles:  # a young product: its launch profile counted the question
        profiles[product_id] = state.profiles[product_id]
    faq_rules = faq_rules or FaqRules(surge=rules)
    for number, alert in enumerate(alerts):
        if in_window(product, alert.detected_at, faq_rules):
            made = forecast(
                product, launches, state.profiles, alert.detected_at, faq_rules, product.expected_volume
            )
            alerts[number] = replace(alert, forecast=forecast_match(made, alert.topic, alert.detected_at))
    return alerts


def due_forecasts(
    category: str,
    now: float,
    catalog: Catalog,
    profiles: Mapping[str, LaunchProfile],
    made: MutableMapping[str, str],
    rules: FaqRules,
) -> list[LaunchForecast]:
    """The FAQ forecasts (:mod:`models.launch_faq`) to send after a question of ``category`` at event
    time ``now``: one for each product of the category in its launch window (launching within
    ``ahead_days`` or launched in the last 30 days, :func:`models.launch_faq.in_window`), made once
    per event-time day and again the same day when its basis grows (an earlier launch completes an
    age bucket). ``made`` remembers, per product, the day and basis of the last one sent (memory
    only: after a restart or a rebalance one is sent again, with the same forecast id); the profiles
    are read only when one is due.

    Run where the category's questions are counted: every launch profile of a category is on its
    partition, so a product with no question yet (a launch to come) gets its forecast there too."""
    launches = catalog.launches(category)
    edges = rules.edges[1:]
    due: list[LaunchForecast] = []
    for product in launches:
        if not in_window(product, now, rules):
            continue
        # From the catalog alone, so that a question that makes nothing new reads no profile.
        basis = [
            f"{launch.product_id}:{sum(launch.launched_at + edge * DAY <= now for edge in edges)}"
            for launch in launches
            if launch.launched_at < product.launched_at
        ]
        key = f"{int(now // DAY)}|{','.join(basis)}"
        if made.get(product.product_id) == key:
            continue
        made[product.product_id] = key
        due.append(forecast(product, launches, profiles, now, rules, product.expected_volume))
    return due
