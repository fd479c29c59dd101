"""The triggers: when a user's state calls for a proactive intervention.

Both are pure functions of the state and the time, and both mark what they fired in the state, so
replaying an event or a timer tick never fires the same intervention twice.

* ``payment_assist``: the user has been on the payment page for ``dwell_seconds`` (event time) without
  paying or leaving. Checked before each of the user's events is applied, and by the timer sweep's
  ticks when the user sends nothing more. Its event time is the moment the threshold was crossed.
* ``delay_notice``: a shipment's ETA is more than ``slip_seconds`` past its promised ETA, or it hit an
  exception. A further slip of ``slip_seconds`` past the ETA already told is told again.

>>> from streams.events import Event
>>> from streams.state import UserState, apply_event
>>> rules = TriggerRules(dwell_seconds=60.0, slip_seconds=3600.0)
>>> state = UserState("u1")
>>> apply_event(state, Event("e1", "payment_page_view", "clickstream", 1000.0, "u1", {}))
>>> check_payment_dwell(state, now=1030.0, rules=rules)
[]
>>> [i.trigger for i in check_payment_dwell(state, now=1075.0, rules=rules)]
['payment_assist']
>>> check_payment_dwell(state, now=1200.0, rules=rules)  # already sent for this visit
[]
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from streams.clock import PartitionClocks
from streams.events import LOGISTICS, Event
from streams.interventions import DELAY_NOTICE, PAYMENT_ASSIST, Intervention, intervention_id, iso_time
from streams.state import Shipment, UserState, apply_event


@dataclass(frozen=True, slots=True)
class TriggerRules:
    dwell_seconds: float = 120.0
    slip_seconds: float = 7200.0
    session_gap: float = 1800.0


def payment_dwell_deadline(state: UserState, rules: TriggerRules) -> float | None:
    """When the pending payment-dwell intervention falls due, or None if none is pending."""
    if state.payment_entered_at is None or state.payment_assist_sent:
        return None
    return state.payment_entered_at + rules.dwell_seconds


# A tick not yet answered is not sent again for this long (wall seconds).
TICK_RESEND_SECONDS = 5.0


@dataclass(slots=True)
class _PendingDwell:
    partition: int
    deadline: float  # event time at which the dwell falls due
    last_event_time: float  # the user's, for a partition whose clock has not seen an event yet


class PendingDwells:
    """The users whose payment dwell has yet to fire, so that the timer sweep looks at those few rather
    than at the whole per-user table.

    :meth:`track` after every change of a user's state keeps it current; :meth:`rebuild` after a
    rebalance makes it again from the table it now holds. :meth:`due` says which users to tick: on an
    active partition, past their deadline by that partition's clock, and not ticked within
    :data:`TICK_RESEND_SECONDS` (the tick may still be on its way); :meth:`answered` when a tick arrived.

    >>> from streams.clock import PartitionClocks
    >>> from streams.events import Event
    >>> rules = TriggerRules(dwell_seconds=60.0)
    >>> state = UserState("u1", partition=2)
    >>> apply_event(state, Event("e1", "payment_page_view", "clickstream", 1000.0, "u1", {}))
    >>> pending, clocks = PendingDwells(rules), PartitionClocks()
    >>> pending.track(state)
    >>> clocks.observe(2, event_time=1000.0, wall=0.0)
    >>> pending.due(clocks, active={2}, wall=30.0)
    []
    >>> pending.due(clocks, active={2}, wall=61.0)
    [('u1', 2, 1061.0)]
    >>> pending.due(clocks, active={2}, wall=62.0)  # ticked a second ago
    []
    >>> _ = check_payment_dwell(state, now=1061.0, rules=rules); pending.track(state); len(pending)
    0
    """

    def __init__(self, rules: TriggerRules) -> None:
        self.rules = rules
        self._pending: dict[str, _PendingDwell] = {}
        self._ticked: dict[str, float] = {}  # user -> wall time of the last tick sent, not yet answered

    def __len__(self) -> int:
        return len(self._pending)

    def track(self, state: UserState) -> None:
        deadline = payment_dwell_deadline(state, self.rules)
        if deadline is None:
            self._pending.pop(state.user_id, None)
            self._ticked.pop(state.user_id, None)
        else:
            self._pending[state.user_id] = _PendingDwell(state.partition, deadline, state.last_event_time)

    def rebuild(self, states: Iterable[UserState]) -> None:
        self._pending.clear()
        self._ticked.clear()
        for state in states:
            self.track(state)

    def answered(self, user_id: str) -> None:
        self._ticked.pop(user_id, None)

    def due(self, clocks: PartitionClocks, active: set[int], wall: float) -> list[tuple[str, int, float]]:
        """(user, partition, event-time now) of every user to tick now; marks them ticked."""
        due = []
        for user_id, pending in self._pending.items():
            if pending.partition not in active:
                continue  # a standby copy, or a partition that moved: its active owner sweeps it
            now = clocks.now(pending.partition, wall)
            if now is None:  # no event on this partition since start: resume from the user's time
                clocks.observe(pending.partition, pending.last_event_time, wall)
                now = pending.last_event_time
            if now >= pending.deadline and wall - self._ticked.get(user_id, -math.inf) > TICK_RESEND_SECONDS:
                due.append((user_id, pending.partition, now))
                self._ticked[user_id] = wall
        return due


def check_payment_dwell(state: UserState, now: float, rules: TriggerRules) -> list[Intervention]:
    deadline = payment_dwell_deadline(state, rules)
    if deadline is None or now < deadline:
        return []
    state.payment_assist_sent = True
    assert state.payment_entered_at is not None and state.payment_anchor_id is not None
    evidence = {
        "page": state.current_page,
        "entered_payment_page_at": iso_time(state.payment_entered_at),
        "threshold_seconds": rules.dwell_seconds,
        "cart_value": state.cart_value,
        "session_id": state.session_id,
        "session_events": state.session_events,
    }
    return [
        Intervention(
            intervention_id=intervention_id(PAYMENT_ASSIST, state.user_id, state.payment_anchor_id),
            trigger=PAYMENT_ASSIST,
            action="offer_payment_help",
            user_id=state.user_id,
            event_time=deadline,
            reason=f"on the payment page for {rules.dwell_seconds:g}s without completing payment",
            source_event_id=state.payment_anchor_id,
            evidence=evidence,
        )
    ]


def check_shipment(state: UserState, event: Event, rules: TriggerRules) -> list[Intervention]:
    """After a logistics event was applied: a delay notice if its shipment now calls for one."""
    shipment = state.open_shipments.get(event.attrs["shipment_id"])
    if shipment is None or shipment.updated_at != event.event_time:
        return []  # delivered, closed, or the event was older than what the state already holds
    slip = shipment.eta - shipment.promised_eta
    if shipment.status == "exception" and not shipment.exception_notified:
        shipment.exception_notified = True
        shipment.notified_eta = shipment.eta
        reason = f"shipment exception {shipment.exception_code}"
    elif slip > rules.slip_seconds and (
        shipment.notified_eta is None or shipment.eta - shipment.notified_eta >= rules.slip_seconds
    ):
        shipment.notified_eta = shipment.eta
        reason = f"ETA slipped {slip / 3600:.1f}h past the promised ETA"
    else:
        return []
    return [_delay_notice(state, shipment, event, reason, rules)]


def _delay_notice(
    state: UserState, shipment: Shipment, event: Event, reason: str, rules: TriggerRules
) -> Intervention:
    slip = shipment.eta - shipment.promised_eta
    contacted_at = state.support_contacts.get(shipment.order_id)
    evidence = {
        "shipment_id": shipment.shipment_id,
        "order_id": shipment.order_id,
        "status": shipment.status,
        "promised_eta": iso_time(shipment.promised_eta),
        "eta": iso_time(shipment.eta),
        "slip_seconds": round(slip, 3),
        "threshold_seconds": rules.slip_seconds,
        "exception_code": shipment.exception_code,
        "carrier": event.attrs.get("carrier"),
        # Whether the customer had already asked about this order: the notice was meant to come first.
        "support_contacted_before": contacted_at is not None and contacted_at <= event.event_time,
    }
    return Intervention(
        intervention_id=intervention_id(
            DELAY_NOTICE, state.user_id, f"{shipment.shipment_id}\x1f{event.event_id}"
        ),
        trigger=DELAY_NOTICE,
        action="notify_delay",
        user_id=state.user_id,
        event_time=event.event_time,
        reason=reason,
        source_event_id=event.event_id,
        evidence=evidence,
    )


def process_event(state: UserState, event: Event, rules: TriggerRules) -> list[Intervention]:
    """One event of the user: dwell that fell due before it, then the event, then what it triggers."""
    interventions = check_payment_dwell(state, now=max(event.event_time, state.last_event_time), rules=rules)
    apply_event(state, event, rules.session_gap)
    if event.source == LOGISTICS:
        interventions += check_shipment(state, event, rules)
    return interventions
