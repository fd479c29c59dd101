"""Service tickets: a repair request becomes a ticket with the device's details and service history,
dispatched to the nearest service point that is open and repairs the device's category.

**Service points** are read from a JSON file (the ``service_points_file`` setting; empty: the
packaged sample ``streams/processes/data/service_points.json``; the comments below explain, JSON has none)::

    {
      "service_points": [
        {"id": "sp-ber-mitte", "name": "Berlin Mitte Repair Centre",
         "latitude": 52.5219, "longitude": 13.4132,   // WGS 84 degrees
         "categories": ["phones", "laptops"],         // device categories repaired there (exact match)
         "radius_km": 40,                              // farthest customer it serves (> 0)
         "status": "open",                             // "open" or "closed" (closed: never dispatched to)
         "opening_hours": {                            // optional; absent: open whenever status is open
           "timezone": "Europe/Berlin",                // IANA zone the hours are local to
           "hours": {"mon": ["09:00-18:00"], "sat": ["10:00-14:00"]}}}  // days left out: closed
      ]
    }

An opening interval is ``HH:MM-HH:MM`` in local wall-clock time, start inclusive and end exclusive,
end after start (``24:00`` may end a day; an interval never wraps past midnight). Unknown fields are
refused; every mistake raises :class:`ServicePointError` (a ``ValueError``) naming file, entry and field.

**Distance** is the great-circle distance on a sphere of the IUGG mean Earth radius, 6371.0088 km
(haversine): within about 0.5 % of the ellipsoidal distance, ample for choosing a repair shop.

**Dispatch** (:func:`nearest_point`): among the points that repair the category, are open at the
request's event time (status ``open`` and, if they have opening hours, within them in their own time
zone) and lie within ``min(point radius_km, dispatch_max_km)`` of the customer, the nearest; points
at the same distance (to 1e-9 km) are ranked by id, so the choice never depends on file order. When
no point qualifies the ticket is still created, for manual dispatch, with the reason
(:data:`MANUAL_REASONS`) of the most specific failure: no point repairs the category at all
(``no_service_point_for_category``), some do but none is open (``no_service_point_open``), some are
open but all are too far (``no_service_point_in_range``); or the device is not registered to the
user (``unknown_device``).

**Devices** come from ``device_registered`` events and are kept per user in a :class:`DeviceBook`
(part of the user's state), with each device's last :data:`MAX_HISTORY` tickets.
:func:`open_ticket` is idempotent: a request id already ticketed for the user (in a device's history
or among the book's last :data:`MAX_REMEMBERED_REQUESTS` request ids) yields ``None``, and a ticket's
id is a UUIDv5 of user and request id, so even a request replayed after it was forgotten gets the same
ticket id.

>>> from streams.contracts.events import Event
>>> points = [
...     ServicePoint("sp-a", "A", 52.52, 13.40, frozenset({"phones"}), radius_km=50.0),
...     ServicePoint("sp-b", "B", 52.40, 13.05, frozenset({"phones", "laptops"}), radius_km=50.0),
... ]
>>> book = DeviceBook()
>>> register(book, Event("r1", "device_registered", "devices", 1.76e9, "u1",
...                      {"device_id": "d1", "category": "phones", "model": "Aster 3"}))
>>> request = Event("q1", "repair_requested", "service_requests", 1.77e9, "u1",
...                 {"request_id": "req-1", "device_id": "d1", "fault": "cracked screen",
...                  "latitude": 52.50, "longitude": 13.35})
>>> ticket = open_ticket(book, request, points, max_km=150.0)
>>> ticket.dispatch.point_id, ticket.dispatch.distance_km, ticket.dispatch.manual_reason
('sp-a', 4.0, '')
>>> open_ticket(book, request, points, max_km=150.0) is None  # redelivered: nothing new
True
>>> laptop = Event("q2", "repair_requested", "service_requests", 1.77e9, "u1",
...                {"request_id": "req-2", "device_id": "d9", "fault": "no power",
...                 "latitude": 52.50, "longitude": 13.35})
>>> open_ticket(book, laptop, points, max_km=150.0).to_wire(1.77e9)["manual_reason"]
'unknown_device'
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from streams.contracts.events import Event
from streams.contracts.time import iso_time, seconds_of_day
from streams.contracts.validation import MAX_ID_LENGTH, check_timezone, is_id
from streams.processes.catalog import (
    entry_list,
    entry_where,
    identifier,
    no_unknown_fields,
    number,
    read_json_document,
    text,
)

TICKET_SCHEMA = 1
# Fixed namespace: changing it changes every ticket id, so it is part of the tickets contract.
TICKET_NAMESPACE = uuid.UUID("3b8e6f0a-9c1d-4e25-8a7b-5d2f1c0e9b46")
PACKAGED_SERVICE_POINTS = "data/service_points.json"  # beside this package's modules
EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius
TIE_KM = 1e-9  # distances closer than this are equal: the point id decides

UNKNOWN_DEVICE = "unknown_device"
NO_POINT_FOR_CATEGORY = "no_service_point_for_category"
NO_POINT_OPEN = "no_service_point_open"
NO_POINT_IN_RANGE = "no_service_point_in_range"
# Why a ticket is left for manual dispatch (a bounded set: usable as a metric label).
MANUAL_REASONS = (UNKNOWN_DEVICE, NO_POINT_FOR_CATEGORY, NO_POINT_OPEN, NO_POINT_IN_RANGE)

# Bounds that keep one user's state small whatever the input does.
MAX_DEVICES = 20  # per user; beyond it the oldest registration is dropped
MAX_HISTORY = 10  # past tickets kept per device, the latest by event time
MAX_REMEMBERED_REQUESTS = 50  # request ids ticketed, per user, for idempotency
MAX_HISTORY_FAULT = 200  # characters of a past ticket's fault kept in the history

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # datetime.weekday() order
STATUSES = ("open", "closed")
_POINT_FIELDS = {"id", "name", "latitude", "longitude", "categories", "radius_km", "status", "opening_hours"}
_HOURS_FIELDS = {"timezone", "hours"}
_INTERVAL = re.compile(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$")


class ServicePointError(ValueError):
    """A mistake in the service-point file; the message names the file, the entry and the field."""


# --- service points


@dataclass(frozen=True, slots=True)
class OpeningHours:
    """Weekly opening hours in local wall-clock time of ``timezone``.

    ``hours[day]``: ``(start, end)`` seconds after local midnight, start inclusive, end exclusive.
    """

    timezone: str
    hours: dict[str, tuple[tuple[int, int], ...]]

    def is_open(self, at: float) -> bool:
        local = datetime.fromtimestamp(at, ZoneInfo(self.timezone))
        second = seconds_of_day(local)
        intervals = self.hours.get(DAYS[local.weekday()], ())
        return any(start <= second < end for start, end in intervals)


@dataclass(frozen=True, slots=True)
class ServicePoint:
    point_id: str
    name: str
    latitude: float
    longitude: float
    categories: frozenset[str]
    radius_km: float
    status: str = "open"
    opening_hours: OpeningHours | None = None  # None: open whenever the status is open

    def is_open(self, at: float) -> bool:
        """Open at ``at`` (epoch seconds): status open and, if it has hours, within them."""
        if self.status != "open":
            return False
        return self.opening_hours is None or self.opening_hours.is_open(at)


def load_service_points(path: str = "") -> list[ServicePoint]:
    """The service points in the JSON file ``path``; empty: the packaged sample."""
    data, source = read_json_document(
        path, PACKAGED_SERVICE_POINTS, what="service-point", error=ServicePointError
    )
    return parse_service_points(data, source)


def parse_service_points(data: Any, source: str) -> list[ServicePoint]:
    """Validate the decoded JSON of a service-point file; ``source`` names it in error messages."""
    error = ServicePointError
    if not isinstance(data, dict):
        raise error(f"{source}: the file must be a JSON object with a 'service_points' list")
    no_unknown_fields(data, {"service_points"}, source, error)
    points: list[ServicePoint] = []
    seen: set[str] = set()
    for index, entry in enumerate(entry_list(data, "service_points", source, error)):
        where = entry_where(source, "service_points", index, entry, "id", error)
        no_unknown_fields(entry, _POINT_FIELDS, where, error)
        point_id = identifier(entry, "id", where, error)
        if point_id in seen:
            raise error(f"{where}: field 'id': {point_id!r} is listed twice")
        seen.add(point_id)
        latitude = number(entry, "latitude", where, error)
        longitude = number(entry, "longitude", where, error)
        if not -90.0 <= latitude <= 90.0:
            raise error(f"{where}: field 'latitude' must be between -90 and 90")
        if not -180.0 <= longitude <= 180.0:
            raise error(f"{where}: field 'longitude' must be between -180 and 180")
        categories = entry.get("categories")
        if (
            not isinstance(categories, list)
            or not categories
            or not all(is_id(category) for category in categories)
        ):
            raise error(
                f"{where}: field 'categories' must be a non-empty list of device categories"
                f" (1-{MAX_ID_LENGTH} printable characters each)"
            )
        radius = number(entry, "radius_km", where, error)
        if radius <= 0:
            raise error(f"{where}: field 'radius_km' must be greater than 0")
        status = entry.get("status", "open")
        if status not in STATUSES:
            raise error(f"{where}: field 'status' must be 'open' or 'closed'")
        hours = entry.get("opening_hours")
        points.append(
            ServicePoint(
                point_id=point_id,
                name=text(entry, "name", where, error),
                latitude=latitude,
                longitude=longitude,
                categories=frozenset(categories),
                radius_km=radius,
                status=status,
                opening_hours=None if hours is None else _opening_hours(hours, where),
            )
        )
    return points


def _opening_hours(value: Any, where: str) -> OpeningHours:
    error = ServicePointError
    where = f"{where}: field 'opening_hours'"
    if not isinstance(value, dict):
        raise error(f"{where} must be an object with 'timezone' and 'hours'")
    no_unknown_fields(value, _HOURS_FIELDS, where, error)
    zone = value.get("timezone")
    if not isinstance(zone, str) or not zone or not check_timezone(zone):
        raise error(f"{where}: 'timezone' must be an IANA time zone such as 'Europe/Berlin'")
    days = value.get("hours")
    if not isinstance(days, dict) or not days:
        raise error(f"{where}: 'hours' must map days (mon..sun) to lists of 'HH:MM-HH:MM'")
    hours: dict[str, tuple[tuple[int, int], ...]] = {}
    for day, intervals in days.items():
        if day not in DAYS:
            raise error(f"{where}: {day!r} is not a day (use {', '.join(DAYS)})")
        if not isinstance(intervals, list):
            raise error(f"{where}: hours.{day} must be a list of 'HH:MM-HH:MM'")
        hours[day] = tuple(_interval(item, f"{where}: hours.{day}") for item in intervals)
    if not any(hours.values()):
        raise error(f"{where}: no opening time at all (a point that never opens should be 'closed')")
    return OpeningHours(zone, hours)


def _interval(value: Any, where: str) -> tuple[int, int]:
    match = _INTERVAL.match(value) if isinstance(value, str) else None
    if match is not None:
        h1, m1, h2, m2 = (int(part) for part in match.groups())
        start, end = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60
        if h1 < 24 and m1 < 60 and m2 < 60 and (h2 < 24 or (h2, m2) == (24, 0)) and start < end:
            return start, end
    raise ServicePointError(
        f"{where}: {value!r} is not 'HH:MM-HH:MM' with the end after the start (24:00 at the latest)"
    )


# --- dispatch


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two points in degrees (haversine, mean Earth radius).

    >>> round(great_circle_km(48.8566, 2.3522, 51.5074, -0.1278), 1)  # Paris - London
    343.6
    """
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlambda = phi2 - phi1, math.radians(lon2 - lon1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    # min(): rounding can push h a hair above 1 for antipodal points, outside asin's domain.
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True, slots=True)
class Dispatch:
    """The assigned point (id, name, distance rounded to 0.1 km), or a manual-dispatch reason."""

    point_id: str | None = None
    name: str | None = None
    distance_km: float | None = None
    manual_reason: str = ""  # one of MANUAL_REASONS when no point is assigned

    @property
    def assigned(self) -> bool:
        return self.point_id is not None

    @property
    def kind(self) -> str:
        """``assigned`` (to a service point) or ``manual``: the ticket's ``dispatch`` on the wire."""
        return "assigned" if self.assigned else "manual"

    def service_point(self) -> dict[str, Any] | None:
        if self.point_id is None:
            return None
        return {"id": self.point_id, "name": self.name, "distance_km": self.distance_km}


def nearest_point(
    points: Iterable[ServicePoint],
    category: str,
    latitude: float,
    longitude: float,
    at: float,
    max_km: float,
) -> Dispatch:
    """The nearest point open at ``at`` (epoch seconds) that repairs ``category`` and lies within
    ``min(its radius_km, max_km)``; ties by point id. Else a manual dispatch with the reason of the
    most specific failure (category, then open, then range)."""
    covering = [point for point in points if category in point.categories]
    if not covering:
        return Dispatch(manual_reason=NO_POINT_FOR_CATEGORY)
    open_points = [point for point in covering if point.is_open(at)]
    if not open_points:
        return Dispatch(manual_reason=NO_POINT_OPEN)
    in_range = []
    for point in open_points:
        distance = great_circle_km(latitude, longitude, point.latitude, point.longitude)
        if distance <= min(point.radius_km, max_km):
            in_range.append((distance, point))
    if not in_range:
        return Dispatch(manual_reason=NO_POINT_IN_RANGE)
    nearest = min(distance for distance, _ in in_range)
    distance, point = min(
        ((d, p) for d, p in in_range if d - nearest <= TIE_KM), key=lambda pair: pair[1].point_id
    )
    return Dispatch(point.point_id, point.name, round(distance, 1))


# --- devices and their history (per user, in the user's state)


@dataclass
class Device:
    device_id: str
    category: str
    model: str
    serial: str | None = None
    purchased_at: float | None = None  # epoch seconds
    warranty_until: float | None = None
    registered_at: float = 0.0  # event time of the registration applied (the latest wins)
    # Past tickets, oldest first: {ticket_id, request_id, created_at, fault, service_point_id, dispatch}.
    history: list[dict[str, Any]] = field(default_factory=list)

    def summary(self, at: float) -> dict[str, Any]:
        """The device as a ticket shows it (times ISO 8601); ``in_warranty`` at ``at``, None if unknown."""
        return {
            "device_id": self.device_id,
            "category": self.category,
            "model": self.model,
            "serial": self.serial,
            "purchased_at": _iso_or_none(self.purchased_at),
            "warranty_until": _iso_or_none(self.warranty_until),
            "in_warranty": None if self.warranty_until is None else at <= self.warranty_until,
        }


@dataclass
class DeviceBook:
    """A user's devices by id, and the request ids ticketed lately (id -> event time)."""

    devices: dict[str, Device] = field(default_factory=dict)
    requests: dict[str, float] = field(default_factory=dict)

    def has_request(self, request_id: str) -> bool:
        if request_id in self.requests:
            return True
        return any(
            entry["request_id"] == request_id for device in self.devices.values() for entry in device.history
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeviceBook:
        devices = {key: Device(**value) for key, value in data.get("devices", {}).items()}
        return cls(devices=devices, requests=dict(data.get("requests", {})))


def register(book: DeviceBook, event: Event) -> None:
    """Apply a ``device_registered`` event. For a known device the latest event time wins (optional
    fields the event leaves out keep their value) and its history is kept; an older registration is
    ignored. Beyond :data:`MAX_DEVICES` the device registered longest ago is dropped."""
    if event.event_type != "device_registered":
        raise ValueError(f"register() takes device_registered events, not {event.event_type!r}")
    attrs, time = event.attrs, event.event_time
    device_id = attrs["device_id"]
    device = book.devices.get(device_id)
    if device is None:
        device = book.devices[device_id] = Device(device_id, attrs["category"], attrs["model"])
    elif time < device.registered_at:
        return  # an older registration than the one applied
    device.category, device.model, device.registered_at = attrs["category"], attrs["model"], time
    device.serial = attrs.get("serial", device.serial)
    device.purchased_at = attrs.get("purchased_at", device.purchased_at)
    device.warranty_until = attrs.get("warranty_until", device.warranty_until)
    while len(book.devices) > MAX_DEVICES:
        oldest = min(book.devices.values(), key=lambda d: (d.registered_at, d.device_id))
        del book.devices[oldest.device_id]


# --- tickets


def ticket_id(user_id: str, request_id: str) -> str:
    """Deterministic id: a UUIDv5 of user and request id (a redelivered request gets the same id)."""
    return str(uuid.uuid5(TICKET_NAMESPACE, f"ticket\x1f{user_id}\x1f{request_id}"))


@dataclass(slots=True)
class Ticket:
    ticket_id: str
    request_id: str
    user_id: str
    created_at: float  # event time of the request
    device_id: str
    device: Device | None  # None: not registered to the user (manual dispatch)
    history: list[dict[str, Any]]  # the device's tickets recorded before this one, oldest first
    fault: str
    latitude: float
    longitude: float
    dispatch: Dispatch
    source_event_id: str

    def to_wire(self, decided_at_wall: float) -> dict[str, Any]:
        """The documented JSON contract of the ``tickets`` topic (schema 1)."""
        return {
            "schema": TICKET_SCHEMA,
            "ticket_id": self.ticket_id,
            "request_id": self.request_id,
            "user_id": self.user_id,
            "created_at": iso_time(self.created_at),
            "decided_at": iso_time(decided_at_wall),
            "device_id": self.device_id,
            "device": None if self.device is None else self.device.summary(self.created_at),
            "history": [{**entry, "created_at": iso_time(entry["created_at"])} for entry in self.history],
            "fault": self.fault,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "dispatch": self.dispatch.kind,
            "service_point": self.dispatch.service_point(),
            "manual_reason": self.dispatch.manual_reason,
            "source_event_id": self.source_event_id,
        }


def open_ticket(
    book: DeviceBook, event: Event, points: Sequence[ServicePoint], max_km: float
) -> Ticket | None:
    """The ticket for a ``repair_requested`` event, or ``None`` if its request id was ticketed already.

    The ticket carries a copy of the device and of the device's tickets recorded before this one (by
    event time, at most :data:`MAX_HISTORY`); then the ticket joins that history. A device unknown to
    the user gets a manual ticket (``unknown_device``) and joins no history.
    """
    if event.event_type != "repair_requested":
        raise ValueError(f"open_ticket() takes repair_requested events, not {event.event_type!r}")
    attrs, time = event.attrs, event.event_time
    request_id = attrs["request_id"]
    if book.has_request(request_id):
        return None
    device = book.devices.get(attrs["device_id"])
    if device is None:
        dispatch, history, snapshot = Dispatch(manual_reason=UNKNOWN_DEVICE), [], None
    else:
        dispatch = nearest_point(points, device.category, attrs["latitude"], attrs["longitude"], time, max_km)
        history = [dict(entry) for entry in device.history]
        snapshot = Device(**{**asdict(device), "history": []})
    ticket = Ticket(
        ticket_id=ticket_id(event.user_id, request_id),
        request_id=request_id,
        user_id=event.user_id,
        created_at=time,
        device_id=attrs["device_id"],
        device=snapshot,
        history=history,
        fault=attrs["fault"],
        latitude=attrs["latitude"],
        longitude=attrs["longitude"],
        dispatch=dispatch,
        source_event_id=event.event_id,
    )
    if device is not None:
        device.history.append(
            {
                "ticket_id": ticket.ticket_id,
                "request_id": request_id,
                "created_at": time,
                "fault": ticket.fault[:MAX_HISTORY_FAULT],
                "service_point_id": dispatch.point_id,
                "dispatch": dispatch.kind,
            }
        )
        device.history.sort(key=lambda entry: (entry["created_at"], entry["ticket_id"]))  # late ones too
        del device.history[:-MAX_HISTORY]
    _remember(book.requests, request_id, time, MAX_REMEMBERED_REQUESTS)
    return ticket


def _remember(mapping: dict[str, Any], key: str, value: Any, limit: int) -> None:
    mapping.pop(key, None)
    mapping[key] = value
    while len(mapping) > limit:  # dicts keep insertion order: drop the oldest
        del mapping[next(iter(mapping))]


def _iso_or_none(seconds: float | None) -> str | None:
    return None if seconds is None else iso_time(seconds)
