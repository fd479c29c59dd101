"""The triggers: when a user's state calls for a proactive intervention.

Each signal is a pure function of the state and the time; its thresholds, the trigger's name, action,
template and offer come from the policy (:mod:`streams.domain.policy`). Each marks what it fired in the
state, so replaying an event or a timer tick never fires the same intervention twice. What fires is a
candidate: the contact policy (:mod:`streams.domain.contact`) decides whether and how it is sent.

* ``payment_dwell`` (default trigger ``payment_assist``): the user has been on the payment page for
  ``dwell`` (event time) without paying or leaving. Checked before each of the user's events is
  applied, and by the timer sweep's ticks when the user sends nothing more. Its event time is the
  moment the threshold was crossed. Its offer (a discount) is included only where
  :func:`offer_for` finds the user's history says coupons work for them.
* ``shipment_delay`` (default trigger ``delay_notice``): a shipment's ETA is more than ``slip`` past its
  promised ETA, or it hit an exception. A further slip of ``slip`` past the ETA already told is told
  again.
* ``negative_emotion`` (default trigger ``escalate_to_human``): a customer's chat messages turned
  negative and stayed so for ``messages`` messages, or turned negative while they have an open problem
  (:func:`open_problem`); once per negative episode.

>>> from streams.contracts.events import Event
>>> from streams.domain.policy import load_policy
>>> from streams.domain.state import UserState, apply_event
>>> policy = load_policy(text='[triggers.payment_assist]\\ndwell = "60s"\\n')
>>> state = UserState("u1")
>>> apply_event(state, Event("e1", "payment_page_view", "clickstream", 1000.0, "u1", {}))
>>> check_payment_dwell(state, now=1030.0, policy=policy)
[]
>>> [(i.trigger, i.offer) for i in check_payment_dwell(state, now=1075.0, policy=policy)]
[('payment_assist', None)]
>>> check_payment_dwell(state, now=1200.0, policy=policy)  # already sent for this visit
[]
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from models.features import NEED_HELP, PURCHASE
from models.health import Scores
from streams.contracts.events import CONVERSATIONS, CUSTOMER, LOGISTICS, SUBSCRIPTIONS, Event
from streams.contracts.interventions import Intervention, intervention_id
from streams.contracts.time import DAY, iso_time, to_millis
from streams.domain.clock import PartitionClocks
from streams.domain.eviction import eviction_deadline
from streams.domain.policy import Offer, Policy, TriggerPolicy
from streams.domain.state import (
    Shipment,
    Subscription,
    UserState,
    apply_event,
    recent_abandoned_payments,
    record_emotion,
)
from streams.processes.catalog import Catalog


def payment_dwell_deadline(state: UserState, policy: Policy) -> float | None:
    """When the pending payment-dwell intervention falls due, or None if none is pending."""
    trigger = policy.for_signal("payment_dwell")
    if trigger is None or state.payment_entered_at is None or state.payment_assist_sent:
        return None
    return state.payment_entered_at + trigger.params["dwell"]


def renewal_deadline(subscription: Subscription, trigger: TriggerPolicy) -> float | None:
    """When the renewal reminder falls due, or None: not active, or already reminded (or missed)."""
    if subscription.status != "active" or subscription.reminded_for == subscription.renews_at:
        return None
    return subscription.renews_at - trigger.params["within"]


def decline_deadline(state: UserState, trigger: TriggerPolicy) -> float | None:
    """When the user's activity falls below the trigger's share of their baseline, if it has not yet
    fired since their last visit."""
    if trigger.name in state.decline_fired:
        return None
    params = trigger.params
    return state.activity.decline_at(
        params["ratio"], params["short"], params["baseline"], params["min_visits"]
    )


def next_deadline(state: UserState, policy: Policy) -> float | None:
    """The earliest event time at which a timer of this user falls due: a payment dwell, a renewal
    reminder, an activity decline, or the end of the quiet hours that deferred an intervention.
    None: nothing pending."""
    deadlines = [deferred.release_at for deferred in state.deferred]
    deadlines.append(payment_dwell_deadline(state, policy))
    renewal = policy.for_signal("renewal_due")
    if renewal is not None:
        deadlines += [
            renewal_deadline(subscription, renewal) for subscription in state.subscriptions.values()
        ]
    deadlines += [decline_deadline(state, trigger) for trigger in policy.all_for_signal("activity_decline")]
    deadlines.append(state.pending.deadline(policy.models.churn_horizon))  # labels due by time alone
    return min((deadline for deadline in deadlines if deadline is not None), default=None)


def next_tick(state: UserState, policy: Policy, idle_horizon: float | None) -> float | None:
    """When the user next needs a tick: a timer falling due (:func:`next_deadline`) or, with an
    ``idle_horizon``, the moment their state may be dropped
    (:func:`streams.domain.eviction.eviction_deadline`).
    None: nothing pending."""
    deadlines = [next_deadline(state, policy)]
    if idle_horizon is not None:
        deadlines.append(eviction_deadline(state, idle_horizon))
    return min((deadline for deadline in deadlines if deadline is not None), default=None)


# A tick not yet answered is sent again after this long (wall seconds): it may have been lost with a
# partition that moved.
TICK_RESEND_SECONDS = 5.0
# The heaps are compacted when they hold more than twice as many entries as users pending, plus this.
COMPACT_SLACK = 1024
# Ticks sent and not yet answered, at most: users falling due together (a burst of a million ids
# reaching the idle horizon at once) are ticked at the pace track_users answers, a sweep taking only
# what this leaves room for, so a timer falling due meanwhile waits behind this many ticks at most, and
# no tick waits long enough in the topic to be sent again (TICK_RESEND_SECONDS).
MAX_TICKS_IN_FLIGHT = 1000


@dataclass(slots=True)
class _Pending:
    partition: int
    deadline: float  # event time at which the earliest timer falls due
    # The deadline of the user's live entry in the heap, at or before ``deadline``: a deadline that
    # moves later (the churn label's, on every click) is not pushed again but filed again when its
    # entry comes up, so the heap holds about one entry per user rather than one per event.
    queued: float


class PendingTimers:
    """The users with a timer pending (:func:`next_deadline`), and with an ``idle_horizon`` those whose
    state may be dropped once idle that long (:func:`next_tick`), in a heap per partition by deadline,
    so that the timer sweep takes only the users due rather than looking at every user.

    :meth:`track` after every change of a user's state keeps it current; :meth:`rebuild` after a
    rebalance makes it again from the table it now holds. :meth:`due` says which users to tick: on an
    active partition, past their deadline by that partition's clock (a partition whose clock has seen
    no event since the worker started starts from the latest event time of its users); a tick not
    answered (:meth:`answered`) within :data:`TICK_RESEND_SECONDS` is sent again. At most
    :data:`MAX_TICKS_IN_FLIGHT` ticks are unanswered at a time; users due beyond stay due.

    >>> from streams.contracts.events import Event
    >>> from streams.domain.policy import load_policy
    >>> policy = load_policy(text='[triggers.payment_assist]\\ndwell = "60s"\\n')
    >>> state = UserState("u1", partition=2)
    >>> apply_event(state, Event("e1", "payment_page_view", "clickstream", 1000.0, "u1", {}))
    >>> pending, clocks = PendingTimers(policy), PartitionClocks()
    >>> pending.track(state)
    >>> clocks.observe(2, event_time=1000.0, wall=5000.0)
    >>> pending.due(clocks, active={2}, wall=5030.0)
    []
    >>> pending.due(clocks, active={2}, wall=5061.0)
    [('u1', 2, 1061.0)]
    >>> pending.due(clocks, active={2}, wall=5062.0)  # ticked a second ago
    []
    >>> pending.answered("u1"); _ = check_payment_dwell(state, now=1061.0, policy=policy)
    >>> pending.track(state); len(pending)
    0
    """

    def __init__(self, policy: Policy, idle_horizon: float | None = None) -> None:
        self.policy = policy
        self.idle_horizon = idle_horizon
        self._pending: dict[str, _Pending] = {}
        self._heaps: dict[int, list[tuple[float, str]]] = {}  # partition -> (deadline, user); stale ok
        self._latest: dict[int, float] = {}  # partition -> latest event time of a user tracked there
        self._ticked: dict[str, float] = {}  # user -> wall time of the tick sent, not yet answered
        self._entries = 0  # in all heaps, stale ones included

    def __len__(self) -> int:
        return len(self._pending)

    def track(self, state: UserState) -> None:
        user, partition = state.user_id, state.partition
        self._latest[partition] = max(self._latest.get(partition, 0.0), state.last_event_time)
        deadline = next_tick(state, self.policy, self.idle_horizon)
        if deadline is None:
            self._pending.pop(user, None)
            self._ticked.pop(user, None)
            return
        current = self._pending.get(user)
        if current is not None and current.partition == partition and current.queued <= deadline:
            current.deadline = deadline  # its entry comes up first (or it was ticked, and is resent)
            return
        self._pending[user] = _Pending(partition, deadline, deadline)
        self._push(partition, deadline, user)

    def _push(self, partition: int, deadline: float, user: str) -> None:
        heapq.heappush(self._heaps.setdefault(partition, []), (deadline, user))
        self._entries += 1
        if self._entries > 2 * len(self._pending) + COMPACT_SLACK:
            self._compact()

    def _compact(self) -> None:
        """Drop the stale entries. An entry goes stale when its user's timer moves earlier (a payment
        dwell before a churn label's deadline) or is answered, and leaves its heap only when its
        deadline comes: for a churn label, ``churn_horizon`` (30 days) of event time later. Without
        this the heaps would grow with the traffic, by about one entry per dwell or tick."""
        self._entries = 0
        for partition, heap in self._heaps.items():
            live = [
                (queued, user)
                for queued, user in heap
                if (pending := self._pending.get(user)) is not None
                and (pending.partition, pending.queued) == (partition, queued)
            ]
            heapq.heapify(live)
            heap[:] = live
            self._entries += len(live)

    def rebuild(self, states: Iterable[UserState]) -> None:
        for table in (self._pending, self._heaps, self._latest, self._ticked):
            table.clear()
        self._entries = 0
        for state in states:
            self.track(state)

    def answered(self, user_id: str) -> None:
        """A tick arrived: the user's state is decided now; the next :meth:`track` files it again."""
        self._ticked.pop(user_id, None)
        self._pending.pop(user_id, None)

    def due(
        self,
        clocks: PartitionClocks,
        active: set[int],
        wall: float,
        in_flight: int = MAX_TICKS_IN_FLIGHT,
        catching_up: Collection[int] = (),
    ) -> list[tuple[str, int, float]]:
        """(user, partition, event-time now) of the users to tick now; marks them ticked. Users are
        taken while fewer than ``in_flight`` ticks are unanswered, shared among the partitions; the
        others stay due for a later call. The clocks of the partitions ``catching_up`` stay at their
        watermarks (:meth:`PartitionClocks.now`)."""
        due: list[tuple[str, int, float]] = []
        room = in_flight - len(self._ticked)
        share = -(-room // len(active)) if active and room > 0 else 0  # rounded up
        for partition in sorted(active):
            heap = self._heaps.get(partition)
            if not heap:
                continue
            behind = partition in catching_up
            now = clocks.now(partition, wall, catching_up=behind)
            if now is None:  # no event on this partition since start: resume from its users' time
                clocks.observe(partition, self._latest.get(partition, 0.0), wall)
                now = clocks.now(partition, wall, catching_up=behind)
                assert now is not None
            taken = 0
            while heap and heap[0][0] <= now and taken < share and len(self._ticked) < in_flight:
                queued, user = heapq.heappop(heap)
                self._entries -= 1
                pending = self._pending.get(user)
                if pending is None or (pending.partition, pending.queued) != (partition, queued):
                    continue  # stale: the user's timer moved earlier, or went
                if pending.deadline > now:  # moved later since it was queued: file it again
                    pending.queued = pending.deadline
                    self._push(partition, pending.deadline, user)
                    continue
                due.append((user, partition, now))
                self._ticked[user] = wall
                taken += 1
        for user, sent in list(self._ticked.items()):
            pending = self._pending.get(user)
            if pending is None:
                del self._ticked[user]
            elif wall - sent > TICK_RESEND_SECONDS and pending.partition in active:
                now = clocks.now(pending.partition, wall, catching_up=pending.partition in catching_up)
                due.append((user, pending.partition, pending.deadline if now is None else now))
                self._ticked[user] = wall
        return due


def offer_for(state: UserState, offer: Offer | None, now: float) -> tuple[dict[str, Any] | None, str]:
    """The offer to include for this user, and why (or why not).

    ``coupon_user_or_price_sensitive``: a coupon on one of their orders, or a discount offer of ours
    they accepted (coupon user); or at least ``min_abandoned_payments`` payment-page visits left unpaid
    in the last 90 days (price sensitive). Users who buy anyway keep the margin.

    >>> from streams.domain.policy import Offer
    >>> rule = Offer("discount", 10.0, "coupon_user_or_price_sensitive", min_abandoned_payments=2)
    >>> offer_for(UserState("u1"), rule, now=0.0)
    (None, 'no coupon use or price sensitivity in the history')
    >>> offer_for(UserState("u1", coupon_orders=1), rule, now=0.0)
    ({'kind': 'discount', 'percent': 10.0}, 'coupon user')
    """
    if offer is None:
        return None, ""
    terms = {"kind": offer.kind, "percent": offer.percent}
    if offer.eligible == "always":
        return terms, "offered to everyone"
    if state.coupon_orders or state.accepted_discounts:
        return terms, "coupon user"
    if recent_abandoned_payments(state, now) >= offer.min_abandoned_payments:
        return terms, "price sensitive"
    return None, "no coupon use or price sensitivity in the history"


def _candidate(
    trigger: TriggerPolicy,
    state: UserState,
    anchor: str,
    event_time: float,
    reason: str,
    source_event_id: str,
    evidence: dict[str, Any],
    offer: dict[str, Any] | None = None,
) -> Intervention:
    return Intervention(
        intervention_id=intervention_id(trigger.name, state.user_id, anchor),
        trigger=trigger.name,
        action=trigger.action,
        user_id=state.user_id,
        event_time=event_time,
        reason=reason,
        source_event_id=source_event_id,
        evidence=evidence,
        template=trigger.template,
        offer=offer,
    )


def check_payment_dwell(state: UserState, now: float, policy: Policy) -> list[Intervention]:
    deadline = payment_dwell_deadline(state, policy)
    if deadline is None or now < deadline:
        return []
    trigger = policy.for_signal("payment_dwell")
    assert trigger is not None and state.payment_entered_at is not None
    assert state.payment_anchor_id is not None
    state.payment_assist_sent = True
    offer, offer_reason = offer_for(state, trigger.offer, deadline)
    evidence = {
        "page": state.current_page,
        "entered_payment_page_at": iso_time(state.payment_entered_at),
        "threshold_seconds": trigger.params["dwell"],
        "cart_value": state.cart_value,
        "session_id": state.session_id,
        "session_events": state.session_events,
        "offer_reason": offer_reason,
    }
    reason = f"on the payment page for {trigger.params['dwell']:g}s without completing payment"
    return [
        _candidate(
            trigger,
            state,
            state.payment_anchor_id,
            deadline,
            reason,
            state.payment_anchor_id,
            evidence,
            offer,
        )
    ]


def check_shipment(state: UserState, event: Event, policy: Policy) -> list[Intervention]:
    """After a logistics event was applied: a delay notice if its shipment now calls for one."""
    trigger = policy.for_signal("shipment_delay")
    shipment = state.open_shipments.get(event.attrs["shipment_id"])
    if trigger is None or shipment is None or shipment.updated_at != event.event_time:
        return []  # no such trigger, delivered, closed, or older than what the state already holds
    threshold = trigger.params["slip"]
    slip = shipment.eta - shipment.promised_eta
    if shipment.status == "exception" and not shipment.exception_notified:
        shipment.exception_notified = True
        shipment.notified_eta = shipment.eta
        reason = f"shipment exception {shipment.exception_code}"
    elif slip > threshold and (
        shipment.notified_eta is None or shipment.eta - shipment.notified_eta >= threshold
    ):
        shipment.notified_eta = shipment.eta
        reason = f"ETA slipped {slip / 3600:.1f}h past the promised ETA"
    else:
        return []
    return [_delay_notice(trigger, state, shipment, event, reason)]


def _delay_notice(
    trigger: TriggerPolicy, state: UserState, shipment: Shipment, event: Event, reason: str
) -> Intervention:
    contacted_at = state.support_contacts.get(shipment.order_id)
    evidence = {
        "shipment_id": shipment.shipment_id,
        "order_id": shipment.order_id,
        "status": shipment.status,
        "promised_eta": iso_time(shipment.promised_eta),
        "eta": iso_time(shipment.eta),
        "slip_seconds": round(shipment.eta - shipment.promised_eta, 3),
        "threshold_seconds": trigger.params["slip"],
        "exception_code": shipment.exception_code,
        "carrier": event.attrs.get("carrier"),
        # Whether the customer had already asked about this order: the notice was meant to come first.
        "support_contacted_before": contacted_at is not None and contacted_at <= event.event_time,
    }
    anchor = f"{shipment.shipment_id}\x1f{event.event_id}"
    return _candidate(trigger, state, anchor, event.event_time, reason, event.event_id, evidence)


# A service ticket is taken as still open this long after it was created (tickets have no closing
# event yet).
OPEN_TICKET_WINDOW = 14 * DAY


def open_problem(state: UserState, now: float, session_gap: float = 1800.0) -> dict[str, Any] | None:
    """The user's open problem at ``now``, if any, as the escalation's evidence names it: a shipment late
    now (an exception, or its ETA past the promised one), a service ticket created within
    :data:`OPEN_TICKET_WINDOW`, or a failed payment in the current web session.

    >>> state = UserState("u1")
    >>> open_problem(state, now=100.0) is None
    True
    >>> state.open_shipments["s1"] = Shipment("s1", "o1", 50.0, 90.0, "delayed", 60.0)
    >>> open_problem(state, now=100.0)
    {'kind': 'late_shipment', 'shipment_id': 's1', 'order_id': 'o1', 'status': 'delayed'}
    """
    for shipment in state.open_shipments.values():
        if shipment.exception_code is not None or shipment.eta > shipment.promised_eta:
            return {
                "kind": "late_shipment",
                "shipment_id": shipment.shipment_id,
                "order_id": shipment.order_id,
                "status": shipment.status,
            }
    ticketed = [at for at in state.devices.requests.values() if now - OPEN_TICKET_WINDOW <= at <= now]
    if ticketed:
        return {"kind": "open_ticket", "ticketed_at": iso_time(max(ticketed))}
    session = state.features.session
    if session.payment_failures and now - session.last_at <= session_gap:
        return {
            "kind": "failed_payment",
            "failures": session.payment_failures,
            "session_id": state.session_id,
        }
    return None


def check_escalation(
    state: UserState, event: Event, policy: Policy, session_gap: float = 1800.0
) -> list[Intervention]:
    """After a customer's chat message and its emotion were recorded: a hand-over to a human when the
    emotion has been negative for the trigger's ``messages`` customer messages, or is negative at all
    while the user has an open problem. Once per negative episode (the message that turned it)."""
    conversation = state.conversation
    if event.attrs.get("role") != CUSTOMER or conversation.negative_since is None:
        return []
    fired = []
    problem = None
    for trigger in policy.all_for_signal("negative_emotion"):
        anchor = f"{conversation.session_id}\x1f{conversation.negative_since}"
        if state.model_fired.get(trigger.name) == anchor:
            continue
        needed = trigger.params["messages"]
        problem = problem or open_problem(state, event.event_time, session_gap)
        if conversation.negative_run < needed and problem is None:
            continue
        state.model_fired[trigger.name] = anchor
        evidence = {
            "emotions": [
                {**message, "at": iso_time(message["at"])}
                for message in conversation.recent[-max(int(needed), conversation.negative_run) :]
            ],
            "negative_messages": conversation.negative_run,
            "messages_threshold": needed,
            "level": round(conversation.level, 4),
            "trend": round(conversation.trend, 4),
            "open_problem": problem,
            "session_id": conversation.session_id,
            "channel": conversation.channel,
            "asked_about": conversation.asked_product,
        }
        if conversation.negative_run >= needed:
            reason = f"negative emotion for {conversation.negative_run} customer messages"
        else:
            reason = f"negative emotion with an open problem ({problem['kind']})"
        fired.append(_candidate(trigger, state, anchor, event.event_time, reason, event.event_id, evidence))
    return fired


def check_renewals(state: UserState, now: float, policy: Policy) -> list[Intervention]:
    """Renewal reminders due at ``now``: within ``within`` of an active subscription's renewal date.
    A renewal date already passed is marked missed rather than reminded late."""
    trigger = policy.for_signal("renewal_due")
    if trigger is None:
        return []
    fired = []
    for subscription_id, subscription in state.subscriptions.items():
        deadline = renewal_deadline(subscription, trigger)
        if deadline is None or now < deadline:
            continue
        subscription.reminded_for = subscription.renews_at
        if now >= subscription.renews_at:
            continue
        at = max(deadline, subscription.updated_at)
        days = (subscription.renews_at - at) / DAY
        evidence = {
            "subscription_id": subscription_id,
            "plan": subscription.plan,
            "renews_at": iso_time(subscription.renews_at),
            "within_seconds": trigger.params["within"],
        }
        reason = f"subscription {subscription.plan} renews in {days:.1f} days"
        anchor = f"{subscription_id}\x1f{to_millis(subscription.renews_at)}"
        fired.append(_candidate(trigger, state, anchor, at, reason, subscription.event_id, evidence))
    return fired


def check_declines(state: UserState, now: float, policy: Policy) -> list[Intervention]:
    """Activity-decline triggers due at ``now``: the user's visits over ``short`` fell below ``ratio``
    of their own ``baseline`` rate; once per trigger until they visit again."""
    fired = []
    for trigger in policy.all_for_signal("activity_decline"):
        when = decline_deadline(state, trigger)
        if when is None or now < when:
            continue
        state.decline_fired.append(trigger.name)
        params = trigger.params
        short, baseline = state.activity.rates(when, params["short"], params["baseline"])
        evidence = {
            "last_visit": iso_time(state.activity.at),
            "visits_per_day_short": round(short * DAY, 4),
            "visits_per_day_baseline": round(baseline * DAY, 4),
            "ratio": params["ratio"],
            "short_seconds": params["short"],
            "baseline_seconds": params["baseline"],
        }
        reason = f"visits fell below {params['ratio']:g} of the user's own baseline"
        anchor = f"{to_millis(state.activity.at)}"  # one decline per last visit
        fired.append(
            _candidate(trigger, state, anchor, when, reason, state.last_visit_event_id or "", evidence)
        )
    return fired


def suggestion(state: UserState, catalog: Catalog | None) -> dict[str, Any] | None:
    """When the session's browsing and searches point at another category than the product the chat
    asked about: what to suggest instead and why (the recommendation's evidence); else None.

    The session's trail (:attr:`models.features.SessionFeatures.trail`) names its category: the one
    most viewed and searched; the suggestion is that category's newest product in ``catalog``.

    >>> from streams.processes.catalog import parse_catalog
    >>> launch = "2026-01-01T00:00:00Z"
    >>> catalog = parse_catalog({"products": [
    ...     {"product_id": "ph1", "category": "phones", "name": "Ph1", "launched_at": launch},
    ...     {"product_id": "lp1", "category": "laptops", "name": "Lp1", "launched_at": launch}],
    ...     "skus": []}, source="example")
    >>> state = UserState("u1")
    >>> state.conversation.asked_product, state.features.session.trail = "ph1", {"laptops": [5, 2]}
    >>> found = suggestion(state, catalog)
    >>> found["suggested"], found["why"][:68]
    ('lp1', 'the session viewed category laptops 5 times and searched it 2 times,')
    """
    asked, session = state.conversation.asked_product, state.features.session
    if (
        catalog is None
        or asked is None
        or state.conversation.asked_at < session.started_at
        or not session.trail
    ):
        return None
    category, (views, searches) = max(session.trail.items(), key=lambda item: sum(item[1]))
    asked_category = catalog.category_of(asked)
    launches = catalog.launches(category)
    if asked_category == category or not launches:
        return None
    suggested = launches[-1].product_id
    why = (
        f"the session viewed category {category} {views} times and searched it {searches} times, not"
        f" {asked_category or 'the one asked about'}; {suggested} is its newest product"
    )
    return {"asked_about": asked, "suggested": suggested, "category": category, "why": why}


def check_predictions(
    state: UserState,
    scores: Scores | None,
    now: float,
    policy: Policy,
    catalog: Catalog | None = None,
) -> list[Intervention]:
    """Model-driven triggers after an event was scored (:func:`streams.domain.prediction.observe`), once the
    model behind each has learned ``min_examples`` examples:

    * ``churn_risk``: churn probability at least ``threshold``; once per visit;
    * ``help_intent``: need-help intent at least ``threshold`` in a web session that has not yet
      reached support; once per session;
    * ``purchase_hesitation``: purchase intent at least ``threshold`` while items have sat in the cart
      for ``hesitation`` without a checkout; once per session. When the chat asked about a product
      other than the session's browsing points at, its evidence names the suggestion
      (:func:`suggestion`, from ``catalog``).
    """
    if scores is None:
        return []
    session = state.features.session
    open_session = session.intent is None and state.session_id is not None
    session_anchor = f"{state.session_id}\x1f{state.sessions}"
    fired = []

    def fire(trigger: TriggerPolicy, anchor: str, reason: str, evidence: dict[str, Any]) -> None:
        if state.model_fired.get(trigger.name) == anchor:
            return
        state.model_fired[trigger.name] = anchor
        evidence = {
            **evidence,
            "intent": scores.intent,
            "churn": scores.churn,
            "health": scores.health,
            "threshold": trigger.params["threshold"],
        }
        source = state.last_visit_event_id or ""
        fired.append(_candidate(trigger, state, anchor, now, reason, source, evidence))

    for trigger in policy.all_for_signal("churn_risk"):
        params = trigger.params
        if state.last_visit_event_id is None:  # once per visit: a user who never visited has none
            break
        if scores.churn_examples >= params["min_examples"] and scores.churn >= params["threshold"]:
            anchor = state.last_visit_event_id or ""
            fire(trigger, anchor, f"churn risk {scores.churn:.2f}", {"examples": scores.churn_examples})
    for trigger in policy.all_for_signal("help_intent"):
        params, p = trigger.params, scores.intent.get(NEED_HELP, 0.0)
        if open_session and scores.intent_examples >= params["min_examples"] and p >= params["threshold"]:
            evidence = {"help_views": session.help_views, "searches": session.searches}
            fire(trigger, session_anchor, f"need-help intent {p:.2f}", evidence)
    for trigger in policy.all_for_signal("purchase_hesitation"):
        params, p = trigger.params, scores.intent.get(PURCHASE, 0.0)
        waiting = None if session.first_cart_at is None else now - session.first_cart_at
        if (
            open_session
            and not session.checkout
            and waiting is not None
            and waiting >= params["hesitation"]
            and scores.intent_examples >= params["min_examples"]
            and p >= params["threshold"]
        ):
            evidence = {"cart_adds": session.cart_adds, "cart_waiting_seconds": round(waiting, 3)}
            evidence |= suggestion(state, catalog) or {}
            fire(trigger, session_anchor, f"purchase intent {p:.2f}, cart waiting {waiting:.0f}s", evidence)
    return fired


def check_timers(state: UserState, now: float, policy: Policy) -> list[Intervention]:
    """The timer-driven triggers due at ``now`` (event time), for a user who may have gone silent."""
    return (
        check_payment_dwell(state, now, policy)
        + check_renewals(state, now, policy)
        + check_declines(state, now, policy)
    )


def process_event(
    state: UserState,
    event: Event,
    policy: Policy,
    session_gap: float = 1800.0,
    emotion: dict[str, float] | None = None,
) -> list[Intervention]:
    """One event of the user: timers that fell due before it, then the event, then what it triggers.
    ``emotion``: of a customer's chat message, a probability per emotion
    (:func:`streams.domain.prediction.message_emotion`)."""
    interventions = check_timers(state, max(event.event_time, state.last_event_time), policy)
    apply_event(state, event, session_gap)
    if event.source == CONVERSATIONS:
        if emotion is not None:
            record_emotion(state.conversation, event, emotion)
            interventions += check_escalation(state, event, policy, session_gap)
    elif event.source == LOGISTICS:
        interventions += check_shipment(state, event, policy)
    elif event.source == SUBSCRIPTIONS:  # a renewal already within its reminder window
        interventions += check_renewals(state, event.event_time, policy)
    return interventions
