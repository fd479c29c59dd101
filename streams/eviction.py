"""Which users' state the worker may drop, and when: the idle horizon.

A user's state is read by windows of event time: a trigger's dwell, cooldown or activity baseline, a
contact cap, the churn label's horizon, the offer rule's price sensitivity, an order request's
idempotency. Once a user has been idle for longer than the longest of them (:func:`idle_horizon`),
nothing reads what their state holds any more: the worker deletes it (a tombstone in the changelog, so
a recovery forgets them too, and with it their timers and pending writes), and a user who comes back
starts fresh. Memory is then set by the users active within the horizon, not by every user id ever
seen.

Some facts have no window: a user's contact preferences (an opt-out must not be forgotten), the
devices registered to them (a repair request years later needs the device), their subscriptions and
the CRM's attributes. A user holding any of them is kept (:func:`lasting_facts`); these come from
the business's own systems, not from the clickstream, so their number is that of real customers.

>>> from streams.events import Event
>>> from streams.policy import load_policy
>>> from streams.state import UserState, apply_event
>>> policy = load_policy()
>>> idle_horizon(policy) / 86400, longest_window(policy)[0]  # the packaged policy: 90 days
(90.0, 'offers: abandoned payments (price sensitivity)')
>>> state = UserState("u1")
>>> apply_event(state, Event("e1", "page_view", "clickstream", 1000.0, "u1", {"page": "/"}))
>>> eviction_deadline(state, horizon=60.0), evictable(state, 60.0, now=1059.0), evictable(state, 60.0, 1060.0)
(1060.0, False, True)
>>> apply_event(state, Event("e2", "preferences_updated", "preferences", 1001.0, "u1", {"opt_out": True}))
>>> lasting_facts(state), eviction_deadline(state, horizon=60.0)
(['preferences'], None)
"""

from __future__ import annotations

from streams.activity import BASELINE
from streams.orders import IDEMPOTENCY_WINDOW
from streams.policy import SIGNALS, Policy
from streams.state import PRICE_SENSITIVITY_WINDOW, CrmAttributes, Preferences, UserState


def state_windows(policy: Policy, session_gap: float = 0.0) -> dict[str, float]:
    """Every window (seconds of event time) over which something reads a user's state, by what reads
    it: each enabled trigger's durations (dwell, slip, renewal lead, activity horizons, hesitation) and
    cooldown, each contact cap's window, the models' churn horizon and publishing interval, the
    session gap, and the windows fixed in the code (the model features' four-week counts, the offer
    rule's price sensitivity, order idempotency).

    >>> from streams.policy import load_policy
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

    >>> from streams.policy import load_policy
    >>> idle_horizon(load_policy(), configured=3.0)
    3.0
    """
    return configured if configured > 0 else longest_window(policy, session_gap)[1]


def lasting_facts(state: UserState) -> list[str]:
    """What the user's state holds that no window ends: why it is never dropped for idleness."""
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
    """The event time of the user's latest input: a behaviour event, an order or a repair request
    (process inputs leave ``last_event_time`` alone)."""
    return max(state.last_event_time, state.orders.newest, *state.devices.requests.values(), 0.0)


def eviction_deadline(state: UserState, horizon: float) -> float | None:
    """When (event time) the user's state may be dropped unless they are active again; None: never
    (:func:`lasting_facts`)."""
    if lasting_facts(state):
        return None
    return last_activity(state) + horizon


def evictable(state: UserState, horizon: float, now: float) -> bool:
    """Whether the user's state may be dropped at ``now`` (the partition's event-time clock)."""
    deadline = eviction_deadline(state, horizon)
    return deadline is not None and deadline <= now
