"""Subscriptions (``subscriptions`` source): the billing system's snapshot of a user's subscription,
sent before their first session for ``subscription_share`` of the new users, and again, cancelled,
when a user of a type that cancels disengages (:class:`~streams.tools.traffic.population.Population`).

A subscription renews 0-30 days after the snapshot; a snapshot renewing within
:data:`RENEWAL_NOTICE_DAYS` is due a ``renewal_reminder`` at once (its ``Outgoing.expects``).

>>> import random
>>> from streams.tools.traffic.profile import TrafficProfile
>>> from streams.tools.traffic.schedule import Schedule
>>> subscriptions = Subscriptions(Schedule(TrafficProfile(), seed=1, random=random.Random(1)))
>>> subscriptions.subscribe(0.0, "u00001")
>>> subscriptions.cancel(60.0, "u00001")
>>> [m.value.count(b'"status":"cancelled"') for m in subscriptions.schedule.due(60.0)]
[0, 1]
"""

from __future__ import annotations

from streams.contracts.events import SUBSCRIPTIONS
from streams.contracts.interventions import RENEWAL_REMINDER
from streams.contracts.time import DAY, iso_time
from streams.tools.traffic.schedule import Schedule

RENEWAL_NOTICE_DAYS = 7  # the default policy's renewal_reminder `within`


class Subscriptions:
    """The subscription snapshots sent, by user, and the users whose subscription was cancelled."""

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self._snapshots: dict[str, dict[str, object]] = {}  # user -> their subscription snapshot
        self._cancelled: set[str] = set()  # users whose subscription was cancelled

    def subscribe(self, time: float, user: str) -> None:
        """Send ``user``'s active subscription at ``time``."""
        rng = self.schedule.random
        renews_at = time + rng.uniform(0.0, 30.0) * DAY
        snapshot = {
            "subscription_id": f"sub-{user}",
            "plan": rng.choice(("basic", "pro")),
            "status": "active",
            "renews_at": iso_time(renews_at),
        }
        self._snapshots[user] = snapshot
        due = renews_at - time <= RENEWAL_NOTICE_DAYS * DAY
        self._send(time, user, snapshot, RENEWAL_REMINDER if due else None)
        self.schedule.stats.subscriptions += 1

    def cancel(self, time: float, user: str) -> None:
        """Send ``user``'s subscription, cancelled, at ``time``; nothing if they have none or it is
        cancelled already."""
        if user in self._snapshots and user not in self._cancelled:
            self._cancelled.add(user)
            self._send(time, user, {**self._snapshots[user], "status": "cancelled"})
            self.schedule.stats.cancellations += 1

    def _send(self, time: float, user: str, snapshot: dict[str, object], expects: str | None = None) -> None:
        self.schedule.send(SUBSCRIPTIONS, time, "subscription_updated", user, expects=expects, **snapshot)
