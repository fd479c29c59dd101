"""CRM attributes (``crm`` source): for ``crm_share`` of the new users, their tier, lifetime value and
sometimes segments, sent before their first session; ``crm_update_share`` of them get an update later
(more spent, maybe a tier up). :meth:`Crm.attributes` is the ground truth: the latest attributes sent.

>>> import random
>>> from streams.tools.traffic.profile import TrafficProfile
>>> from streams.tools.traffic.schedule import Schedule
>>> crm = Crm(Schedule(TrafficProfile(crm_share=1.0), seed=1, random=random.Random(1)))
>>> crm.first_seen(0.0, "u00001")
>>> crm.attributes("u00001")["tier"] in TIERS, crm.attributes("u00002")
(True, None)
"""

from __future__ import annotations

import random

from streams.contracts.events import CRM_UPDATES
from streams.tools.traffic.schedule import Schedule

TIERS = ("bronze", "silver", "gold", "platinum")
TIER_WEIGHTS = (0.5, 0.3, 0.15, 0.05)
SEGMENTS = ("newsletter", "b2b", "student", "loyalty")


class Crm:
    """The CRM attributes sent, by user."""

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self.random = random.Random(f"{schedule.seed}:crm")  # str seeds are hashed: no correlation
        self._attributes: dict[str, dict[str, object]] = {}

    def first_seen(self, time: float, user: str) -> None:
        """What the CRM sends about ``user``, new at ``time``: attributes for ``crm_share`` of them."""
        rng, profile = self.random, self.schedule.profile
        if profile.crm_share and rng.random() < profile.crm_share:
            self._update(time, user)
            if rng.random() < profile.crm_update_share:
                self._update(time + rng.uniform(*profile.crm_update_after_seconds), user)

    def attributes(self, user: str) -> dict[str, object] | None:
        """The latest CRM attributes sent for ``user``; None if none were."""
        return self._attributes.get(user)

    def _update(self, time: float, user: str) -> None:
        rng = self.random
        held = self._attributes.get(user)
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
        self._attributes[user] = attributes
        self.schedule.send_process(CRM_UPDATES, user, time, "crm_attributes", user, **attributes)
        self.schedule.stats.crm_updates += 1
