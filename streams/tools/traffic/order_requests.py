"""Orders asked in the chat (``order_requests`` source) with their ground truth: ``order_request_share``
of the sessions end with one, SKUs of the catalog within their limits; some with one faulty line
planted (unknown SKU, zero/negative/fractional quantity, over the SKU's limit); some sent twice with the
same request id.

:meth:`OrderRequests.orders` is the ground truth of each request (:class:`OrderTruth`), and
:meth:`OrderRequests.expected` the decisions the order process (:mod:`streams.processes.orders`) should
take. Order requests draw from a random stream of their own.

>>> import random
>>> from streams.processes.catalog import load_catalog
>>> from streams.tools.traffic.profile import TrafficProfile
>>> from streams.tools.traffic.schedule import Schedule
>>> profile = TrafficProfile(order_request_share=1.0, order_unknown_sku_share=1.0)
>>> orders = OrderRequests(Schedule(profile, seed=1, random=random.Random(1)), load_catalog())
>>> orders.after_session(1_764_000_000.0, "u00001")
>>> orders.expected()
Counter({'unknown_sku': 1})
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

from streams.contracts.events import ORDER_REQUESTS
from streams.processes.catalog import Catalog
from streams.processes.orders import INVALID_QUANTITY, QUANTITY_LIMIT, UNKNOWN_SKU
from streams.tools.traffic.profile import launched_products
from streams.tools.traffic.schedule import Schedule

ADDRESS_REFS = ("home", "work", "parents", "locker-1")


@dataclass(frozen=True, slots=True)
class OrderTruth:
    """An order request as planted: ``accepted``, or the rejection reason (streams.processes.orders) of
    the one faulty line it holds."""

    request_id: str
    user_id: str
    items: tuple[tuple[str, float], ...]  # (sku, quantity)
    event_time: float  # as sent (ms)
    planted: str
    duplicated: bool  # sent again later with the same request_id


class OrderRequests:
    """The order requests sent, with their ground truth."""

    def __init__(self, schedule: Schedule, catalog: Catalog) -> None:
        self.schedule = schedule
        self.catalog = catalog
        self.random = random.Random(f"{schedule.seed}:orders")  # str seeds are hashed: no correlation
        self._orders: list[OrderTruth] = []

    def after_session(self, time: float, user: str) -> None:
        """For ``order_request_share`` of the sessions (ended at ``time``): ``user`` asks the chat for an
        order a moment later."""
        rng, profile = self.random, self.schedule.profile
        if profile.order_request_share and rng.random() < profile.order_request_share:
            self._request(time + rng.uniform(*profile.think_seconds), user)

    def orders(self, until: float = math.inf) -> list[OrderTruth]:
        """Every distinct order request sent (first) by ``until``, as planted."""
        return [order for order in self._orders if order.event_time <= until]

    def expected(self, until: float = math.inf) -> Counter[str]:
        """One decision per request id sent by ``until``: ``accepted``, or rejected by reason."""
        return Counter(order.planted for order in self.orders(until))

    def _request(self, time: float, user: str) -> None:
        """An order the user asks the chat for: valid lines, with at most one faulty line planted."""
        rng, schedule, catalog = self.random, self.schedule, self.catalog
        profile = schedule.profile
        launched = {p.product_id for p in launched_products(catalog, time)}
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
            "request_id": schedule.process_id("or-"),
            "items": [{"sku": sku, "quantity": int(q) if q.is_integer() else q} for sku, q in lines],
            "address_ref": rng.choice(ADDRESS_REFS),
        }
        schedule.send_process(ORDER_REQUESTS, user, time, "order_requested", user, **request)
        schedule.stats.order_requests += 1
        again = rng.random() < profile.order_duplicate_share
        if again:
            schedule.send_process(
                ORDER_REQUESTS, user, time + rng.uniform(1.0, 5.0), "order_requested", user, **request
            )
            schedule.stats.order_duplicates += 1
        sent_at = round(time * 1000) / 1000
        self._orders.append(OrderTruth(request["request_id"], user, tuple(lines), sent_at, planted, again))
