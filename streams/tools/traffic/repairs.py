"""Devices and repairs (``devices`` and ``service_requests`` sources) with their ground truth:
``devices_share`` of the new users register 1-2 devices (products of the catalog) before their first
session; ``repair_share`` of them ask the chat for a repair of one later, mostly near a service point
repairing its category, some far from every point (:data:`FAR_PLACES`), some for a device not
registered to them; some requests are sent twice with the same request id.

:meth:`Repairs.repairs` is the ground truth of each request (:class:`RepairTruth`), and
:meth:`Repairs.expected_tickets` the tickets dispatch (:mod:`streams.processes.tickets`) should open.
Devices and repairs draw from a random stream of their own.

>>> import random
>>> from streams.processes.catalog import load_catalog
>>> from streams.processes.tickets import load_service_points
>>> from streams.tools.traffic.profile import TrafficProfile
>>> from streams.tools.traffic.schedule import Schedule
>>> profile = TrafficProfile(devices_share=1.0, repair_share=1.0)
>>> schedule = Schedule(profile, seed=2, random=random.Random(2))
>>> repairs = Repairs(schedule, load_catalog(), load_service_points())
>>> repairs.first_seen(1_764_000_000.0, "u00001")
>>> [repair.planted for repair in repairs.repairs()], sum(repairs.expected_tickets().values())
(['near'], 1)
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

from streams.contracts.events import DEVICES, SERVICE_REQUESTS
from streams.contracts.settings import SETTINGS_DOC
from streams.contracts.time import DAY, iso_time
from streams.processes.catalog import Catalog
from streams.processes.tickets import (
    EARTH_RADIUS_KM,
    UNKNOWN_DEVICE,
    ServicePoint,
    nearest_point,
)
from streams.tools.traffic.profile import launched_products, text_language
from streams.tools.traffic.schedule import Schedule

DISPATCH_MAX_KM = float(SETTINGS_DOC["dispatch_max_km"][0])  # the worker's default

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


class Repairs:
    """The devices registered and the repair requests sent, with the requests' ground truth."""

    def __init__(self, schedule: Schedule, catalog: Catalog, service_points: list[ServicePoint]) -> None:
        self.schedule = schedule
        self.catalog = catalog
        self.service_points = service_points
        self.random = random.Random(f"{schedule.seed}:devices")  # str seeds are hashed: no correlation
        self._repairs: list[RepairTruth] = []

    def first_seen(self, time: float, user: str) -> None:
        """What the device registry gets about ``user``, new at ``time``: devices for ``devices_share``."""
        profile = self.schedule.profile
        if profile.devices_share and self.random.random() < profile.devices_share:
            self._register_devices(time, user)

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

    def _register_devices(self, time: float, user: str) -> None:
        rng, schedule = self.random, self.schedule
        profile = schedule.profile
        owned = []
        for product in rng.sample(launched_products(self.catalog, time), rng.randint(1, 2)):
            device_id = schedule.process_id("dev-")
            purchased = max(product.launched_at, time - rng.uniform(7.0, 600.0) * DAY)
            schedule.send_process(
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
            schedule.stats.devices += 1
        if profile.repair_share and rng.random() < profile.repair_share:
            self._repair(time + rng.uniform(*profile.repair_after_seconds), user, rng.choice(owned))

    def _repair(self, time: float, user: str, device: tuple[str, str]) -> None:
        rng, schedule = self.random, self.schedule
        profile = schedule.profile
        device_id, category = device
        draw = rng.random()
        if draw < profile.repair_unregistered_share:
            planted, device_id, known = "unregistered", schedule.process_id("dev-"), None
        elif draw < profile.repair_unregistered_share + profile.repair_far_share:
            planted, known = "far", category
        else:
            planted, known = "near", category
        if planted == "far":
            _, latitude, longitude = rng.choice(FAR_PLACES)
        else:
            covering = [p for p in self.service_points if category in p.categories] or self.service_points
            latitude, longitude = _offset(rng.choice(covering), rng.uniform(*NEAR_KM), rng.uniform(0, 360))
        faults = FAULTS.get(category, GENERIC_FAULTS)[text_language(rng, profile)]
        request = {
            "request_id": schedule.process_id("rq-"),
            "device_id": device_id,
            "fault": rng.choice(faults),
            "latitude": latitude,
            "longitude": longitude,
        }
        schedule.send_process(SERVICE_REQUESTS, user, time, "repair_requested", user, **request)
        schedule.stats.repair_requests += 1
        again = rng.random() < profile.repair_redelivery_share
        if again:  # the chat sends it again: a new event, the same request
            schedule.send_process(
                SERVICE_REQUESTS, user, time + rng.uniform(1.0, 5.0), "repair_requested", user, **request
            )
            schedule.stats.repair_redeliveries += 1
        sent_at = round(time * 1000) / 1000  # the event time as sent (ms): what dispatch sees
        self._repairs.append(
            RepairTruth(
                request["request_id"], user, device_id, known, latitude, longitude, sent_at, planted, again
            )
        )


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
