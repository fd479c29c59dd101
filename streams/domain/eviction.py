"""Which users' state the worker may drop, and when: the idle horizon.

A user's state is read by windows of event time: a trigger's dwell, cooldown or activity baseline, a
contact cap, the churn label's horizon, the offer rule's price sensitivity, an order request's
idempotency. Once a user has been idle (no input, no contact made or pending: :func:`last_activity`)
for longer than the longest of them (:func:`idle_horizon`), nothing reads what their state holds any
more, and the worker evicts them (:func:`evicted`):

* a user holding no lasting fact is deleted (a tombstone in the changelog, so a recovery forgets them
  too, and with it their timers and pending writes), and starts fresh if they come back;
* a user holding facts no window ends (:func:`lasting_facts`: contact preferences, an opt-out among
  them; subscriptions; registered devices; CRM attributes) is trimmed to those facts (:func:`trim`):
  their features, contact history, sessions, pending examples and everything else the clickstream
  built go, the facts stay. These come from the business's own systems, not from the clickstream, so
  their number is that of real customers.

A trimmed state is marked (``trimmed_at``) and has no idle deadline, so it is not ticked again for
idleness; the next round of the user (an event, or a timer's tick: a renewal reminder) or their next
repair or order request clears the mark (:func:`mark_active`), and the user is evicted again once idle
past the horizon after it. Memory is then set by the users active within the horizon, plus the
lasting facts of real customers, not by every user id ever seen.

>>> from streams.contracts.events import Event
>>> from streams.domain.policy import load_policy
>>> from streams.domain.state import UserState, apply_event
>>> policy = load_policy()
>>> idle_horizon(policy) / 86400, longest_window(policy)[0]  # the packaged policy: 90 days
(90.0, 'offers: abandoned payments (price sensitivity)')
>>> state = UserState("u1")
>>> apply_event(state, Event("e1", "page_view", "clickstream", 1000.0, "u1", {"page": "/"}))
>>> eviction_deadline(state, horizon=60.0), evictable(state, 60.0, now=1059.0), evictable(state, 60.0, 1060.0)
(1060.0, False, True)
>>> evicted(state, now=1060.0) is None  # nothing lasting: deleted
True
>>> apply_event(state, Event("e2", "preferences_updated", "preferences", 1001.0, "u1", {"opt_out": True}))
>>> lasting_facts(state), eviction_deadline(state, horizon=60.0)
(['preferences'], 1061.0)
>>> kept = evicted(state, now=1061.0)
>>> kept.preferences.opt_out, kept.sessions, kept.trimmed_at, eviction_deadline(kept, horizon=60.0)
(True, 0, 1061.0, None)
"""

from __future__ import annotations

from streams.domain.activity import BASELINE
from streams.domain.policy import SIGNALS, Policy
from streams.domain.state import PRICE_SENSITIVITY_WINDOW, CrmAttributes, Preferences, UserState
from streams.processes.orders import IDEMPOTENCY_WINDOW
from streams.processes.tickets import DeviceBook


def state_windows(policy: Policy, session_gap: float = 0.0) -> dict[str, float]:
    """Every window (seconds of event time) over which something reads a user's state, by what reads
    it: each enabled trigger's durations (dwell, slip, renewal lead, activity horizons, hesitation) and
    cooldown, each contact cap's window, the models' churn horizon and publishing interval, the
    session gap, and the windows fixed in the code (the model features' four-week counts, the offer
    rule's price sensitivity, order idempotency).

    >>> from streams.domain.policy import load_policy
    >>> windows = state_windows(load_policy(), session_gap=1800.0)
    >>> windows["trigger renewal_reminder within"] / 86400, windows["contact cap email"] / 86400
    (7.0, 7.0)
    >>> windows["models: churn label horizon"] / 86400, windows["sessions: gap"]
    (30.0, 1800.0)
    """
    windows: dict[str, float] = {}
    for trigger in policy.triggers.values():
        for param, (kind, _) in SIGNALS[trigger.signal].items():
            if kind == "duration":
                windows[f"trigger {trigger.name} {param}"] = trigger.params[param]
        windows[f"trigger {trigger.name} cooldown"] = trigger.cooldown
    for cap in policy.contact.caps:
        windows[f"contact cap {cap.channel}"] = cap.window
    windows["models: churn label horizon"] = policy.models.churn_horizon
    windows["models: score publishing interval"] = policy.models.publish_interval
    windows["models: activity and four-week feature counts"] = BASELINE
    windows["offers: abandoned payments (price sensitivity)"] = PRICE_SENSITIVITY_WINDOW
    windows["order requests: idempotency"] = IDEMPOTENCY_WINDOW
    windows["sessions: gap"] = session_gap
    return windows


def longest_window(policy: Policy, session_gap: float = 0.0) -> tuple[str, float]:
    """The longest of :func:`state_windows`: (what needs it, seconds)."""
    return max(state_windows(policy, session_gap).items(), key=lambda item: item[1])


def idle_horizon(policy: Policy, configured: float = 0.0, session_gap: float = 0.0) -> float:
    """How long (event time) a user may be idle before their state is dropped: ``configured``
    (``FOREWARN_USER_IDLE_SECONDS``) when above 0, else the longest window the policy and the code
    need (:func:`longest_window`).

    >>> from streams.domain.policy import load_policy
    >>> idle_horizon(load_policy(), configured=3.0)
    3.0
    """
    return configured if configured > 0 else longest_window(policy, session_gap)[1]


def lasting_facts(state: UserState) -> list[str]:
    """What the user's state holds that no window ends: why it is trimmed rather than deleted."""
    facts = []
    if state.preferences != Preferences():
        facts.append("preferences")
    if state.subscriptions:
        facts.append("subscriptions")
    if state.devices.devices:
        facts.append("devices")
    if state.crm != CrmAttributes():
        facts.append("crm")
    return facts


def last_activity(state: UserState) -> float:
    """The event time of the user's latest input (a behaviour event, an order or a repair request:
    process inputs leave ``last_event_time`` alone) or contact (caps and cooldowns count from it: a
    renewal reminder sent to an idle user), or the release of an intervention deferred by quiet hours
    (a contact still to be decided)."""
    return max(
        state.last_event_time,
        state.orders.newest,
        *state.devices.requests.values(),
        *state.last_contact_by_trigger.values(),
        *(deferred.release_at for deferred in state.deferred),
        0.0,
    )


def eviction_deadline(state: UserState, horizon: float) -> float | None:
    """When (event time) the user's state may be evicted unless they are active again; None: not
    while it is trimmed (:func:`trim`) and nothing happened since (:func:`mark_active`). Called for every
    event (:class:`streams.domain.triggers.PendingTimers`): a few comparisons."""
    if state.trimmed_at is not None:
        return None
    return last_activity(state) + horizon


def evictable(state: UserState, horizon: float, now: float) -> bool:
    """Whether the user's state may be evicted at ``now`` (the partition's event-time clock)."""
    deadline = eviction_deadline(state, horizon)
    return deadline is not None and deadline <= now


def trim(state: UserState, now: float) -> UserState:
    """The state kept of a user holding lasting facts once idle past the horizon at ``now``: those
    facts alone, taken over from ``state`` (which is dropped), marked trimmed at ``now``.

    What is kept, and why:

    * ``user_id``, and ``partition``: where the timer sweep sends the user's ticks (renewal reminders);
    * ``preferences``, whole: the opt-out and the channels are obeyed whenever a trigger fires, the
      time zone places quiet hours, and ``updated_at`` keeps an older preferences event arriving later
      from overriding a newer one;
    * ``subscriptions``, whole: what a renewal reminder is for, ``reminded_for`` so that a renewal is
      reminded of once (never twice, never late), and ``updated_at`` and ``event_id`` for the latest
      snapshot to win and for the reminder to name its source;
    * the registered devices with their service history (``devices.devices``): a repair request,
      however late, gets a ticket with the device and its past tickets, and the request ids in that
      history keep a redelivered request from being ticketed twice. The book's recent request ids
      (``devices.requests``) go: they are for redeliveries, which come within seconds, and a ticket's
      id is derived from user and request anyway;
    * ``crm``, whole (``updated_at``: the latest update wins);
    * ``last_event_time``, the user's event-time clock: a later round decides no earlier than it, the
      ``crm_sync`` record of a round is dated by it, and an event arriving after the trim but timed
      before it finds the user idle past the horizon still.

    Everything else goes, none of it read past the horizon: features, scores, pending examples,
    sessions and activity, the contact history (caps and cooldowns are shorter than the horizon, which
    counts from the latest contact), shipments, offer history, recent event ids and decided
    interventions (redeliveries come within seconds), recent order decisions (their idempotency window
    is shorter), feedback tags and the fingerprint of the last ``crm_sync`` record (the next record
    tells the CRM the tags as they are then).
    """
    return UserState(
        state.user_id,
        partition=state.partition,
        last_event_time=state.last_event_time,
        preferences=state.preferences,
        subscriptions=state.subscriptions,
        devices=DeviceBook(devices=state.devices.devices),
        crm=state.crm,
        trimmed_at=now,
    )


def evicted(state: UserState, now: float) -> UserState | None:
    """What is left of a user evicted at ``now``: None when their state holds no lasting fact (it is
    deleted), else their lasting facts (:func:`trim`)."""
    return trim(state, now) if lasting_facts(state) else None


def mark_active(state: UserState) -> None:
    """The user is active again after a trim (a round, a repair or order request): their state may
    hold more than lasting facts again, so it has an idle deadline again (:func:`eviction_deadline`)."""
    # A mark, not a comparison of event times: an event timed before the trim that arrives after it (a
    # late or replayed one) changes the state as much as a new one.
    state.trimmed_at = None
