"""Service tickets: great-circle distance, dispatch to the nearest open point, device history and
idempotency, and the service-point registry file."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.contracts.events import DEVICES, SERVICE_REQUESTS, Event, parse_event
from streams.processes.catalog import load_catalog
from streams.processes.tickets import (
    EARTH_RADIUS_KM,
    MANUAL_REASONS,
    MAX_DEVICES,
    MAX_HISTORY,
    DeviceBook,
    OpeningHours,
    ServicePoint,
    ServicePointError,
    great_circle_km,
    load_service_points,
    nearest_point,
    open_ticket,
    parse_service_points,
    register,
    ticket_id,
)

BERLIN = (52.5200, 13.4050)
MUNICH = (48.1351, 11.5820)
PARIS = (48.8566, 2.3522)
LONDON = (51.5074, -0.1278)
# 2026-03-02 is a Monday, 2026-03-01 a Sunday.
MONDAY_NOON_BERLIN = datetime.fromisoformat("2026-03-02T12:00:00+01:00").timestamp()
SUNDAY_NOON_BERLIN = datetime.fromisoformat("2026-03-01T12:00:00+01:00").timestamp()
WEEKDAYS = {day: ((9 * 3600, 18 * 3600),) for day in ("mon", "tue", "wed", "thu", "fri")}


def point(
    point_id: str,
    latitude: float,
    longitude: float,
    categories: tuple[str, ...] = ("phones",),
    radius_km: float = 100.0,
    status: str = "open",
    hours: OpeningHours | None = None,
) -> ServicePoint:
    return ServicePoint(
        point_id, point_id.upper(), latitude, longitude, frozenset(categories), radius_km, status, hours
    )


def device_event(device_id: str, time: float, user: str = "u1", **fields: Any) -> Event:
    body = {
        "event_id": f"reg-{device_id}-{time}",
        "event_type": "device_registered",
        "event_time": round(time * 1000),
        "user_id": user,
        "device_id": device_id,
        "category": "phones",
        "model": "Aster 3",
        **fields,
    }
    return parse_event(orjson.dumps(body), DEVICES)


def repair_event(
    request_id: str,
    device_id: str,
    time: float,
    location: tuple[float, float] = BERLIN,
    user: str = "u1",
    fault: str = "cracked screen",
) -> Event:
    body = {
        "event_id": f"evt-{request_id}",
        "event_type": "repair_requested",
        "event_time": round(time * 1000),
        "user_id": user,
        "request_id": request_id,
        "device_id": device_id,
        "fault": fault,
        "latitude": location[0],
        "longitude": location[1],
    }
    return parse_event(orjson.dumps(body), SERVICE_REQUESTS)


# --- distance


def test_great_circle_matches_known_city_distances() -> None:
    assert great_circle_km(*PARIS, *LONDON) == pytest.approx(343.5, abs=1.0)
    assert great_circle_km(*BERLIN, *MUNICH) == pytest.approx(504.0, abs=1.0)
    assert great_circle_km(*BERLIN, *MUNICH) == great_circle_km(*MUNICH, *BERLIN)
    assert great_circle_km(*BERLIN, *BERLIN) == 0.0
    # Half the circumference between antipodes (and no domain error from rounding).
    assert great_circle_km(0.0, 0.0, 0.0, 180.0) == pytest.approx(math.pi * EARTH_RADIUS_KM)
    # One degree of latitude is ~111.2 km anywhere.
    assert great_circle_km(10.0, 20.0, 11.0, 20.0) == pytest.approx(111.19, abs=0.01)


# --- dispatch


def test_the_nearest_of_several_points_is_chosen_whatever_the_order() -> None:
    points = [
        point("sp-potsdam", 52.3906, 13.0645),  # ~27 km from Berlin centre
        point("sp-mitte", 52.5219, 13.4132),  # ~0.6 km
        point("sp-spandau", 52.5351, 13.1990),  # ~14 km
        point("sp-munich", *MUNICH, radius_km=1000.0),
    ]
    for order in (points, points[::-1]):
        dispatch = nearest_point(order, "phones", *BERLIN, MONDAY_NOON_BERLIN, max_km=150.0)
        assert dispatch.point_id == "sp-mitte"
        assert dispatch.name == "SP-MITTE"
        assert dispatch.distance_km == round(great_circle_km(*BERLIN, 52.5219, 13.4132), 1) == 0.6
        assert dispatch.manual_reason == ""
        assert dispatch.service_point() == {"id": "sp-mitte", "name": "SP-MITTE", "distance_km": 0.6}


def test_exact_ties_are_broken_by_point_id() -> None:
    # Mirror images across the meridian: exactly the same distance from (0, 0).
    east, west = point("sp-z", 0.0, 1.0, radius_km=500.0), point("sp-a", 0.0, -1.0, radius_km=500.0)
    same_place = point("sp-m", 0.0, 1.0, radius_km=500.0)
    for order in ([east, west], [west, east], [east, same_place], [same_place, east]):
        expected = min(p.point_id for p in order)
        assert nearest_point(order, "phones", 0.0, 0.0, MONDAY_NOON_BERLIN, 500.0).point_id == expected
    # Not a tie: a point 1 m nearer wins although its id sorts later.
    nearer = point("sp-zz", 0.0, 0.99999, radius_km=500.0)
    assert nearest_point([west, nearer], "phones", 0.0, 0.0, MONDAY_NOON_BERLIN, 500.0).point_id == "sp-zz"


def test_a_category_no_point_repairs_is_left_for_manual_dispatch() -> None:
    points = [point("sp-1", *BERLIN, categories=("phones", "laptops"))]
    dispatch = nearest_point(points, "appliances", *BERLIN, MONDAY_NOON_BERLIN, 150.0)
    assert (dispatch.point_id, dispatch.manual_reason) == (None, "no_service_point_for_category")
    assert dispatch.service_point() is None and not dispatch.assigned
    # A point that repairs other things nearer does not stand in for one that repairs the category.
    points.append(point("sp-far", 52.40, 13.05, categories=("appliances",)))
    assert nearest_point(points, "appliances", *BERLIN, MONDAY_NOON_BERLIN, 150.0).point_id == "sp-far"


def test_a_closed_point_is_skipped_for_the_next_nearest_open_one() -> None:
    near_closed = point("sp-near", 52.5219, 13.4132, status="closed")
    farther = point("sp-far", 52.5351, 13.1990)
    dispatch = nearest_point([near_closed, farther], "phones", *BERLIN, MONDAY_NOON_BERLIN, 150.0)
    assert dispatch.point_id == "sp-far"
    only_closed = nearest_point([near_closed], "phones", *BERLIN, MONDAY_NOON_BERLIN, 150.0)
    assert (only_closed.point_id, only_closed.manual_reason) == (None, "no_service_point_open")


def test_opening_hours_are_read_in_the_points_own_time_zone() -> None:
    berlin_hours = OpeningHours("Europe/Berlin", WEEKDAYS)
    near = point("sp-near", 52.5219, 13.4132, hours=berlin_hours)
    always = point("sp-always", 52.5351, 13.1990)
    assert nearest_point([near, always], "phones", *BERLIN, MONDAY_NOON_BERLIN, 150.0).point_id == "sp-near"
    # Sunday: the point with hours is shut, the one without hours takes it.
    assert nearest_point([near, always], "phones", *BERLIN, SUNDAY_NOON_BERLIN, 150.0).point_id == "sp-always"
    sunday = nearest_point([near], "phones", *BERLIN, SUNDAY_NOON_BERLIN, 150.0)
    assert sunday.manual_reason == "no_service_point_open"

    # Tokyo is UTC+9: Monday 01:00 UTC is 10:00 there (open), Monday 10:00 UTC is 19:00 (closed). A
    # check in UTC would get both wrong.
    tokyo = point("sp-tokyo", 35.68, 139.69, hours=OpeningHours("Asia/Tokyo", WEEKDAYS))
    early_utc = datetime.fromisoformat("2026-03-02T01:00:00+00:00").timestamp()
    late_utc = datetime.fromisoformat("2026-03-02T10:00:00+00:00").timestamp()
    assert tokyo.is_open(early_utc) and not tokyo.is_open(late_utc)
    # Start inclusive, end exclusive.
    nine = datetime.fromisoformat("2026-03-02T09:00:00+09:00").timestamp()
    assert tokyo.is_open(nine) and not tokyo.is_open(nine + 9 * 3600) and tokyo.is_open(nine + 9 * 3600 - 1)


def test_points_out_of_range_by_their_radius_or_the_dispatch_limit() -> None:
    munich = point("sp-munich", *MUNICH, radius_km=600.0)  # ~504 km from Berlin
    # Within the point's radius but beyond the dispatch limit.
    dispatch = nearest_point([munich], "phones", *BERLIN, MONDAY_NOON_BERLIN, max_km=150.0)
    assert (dispatch.point_id, dispatch.manual_reason) == (None, "no_service_point_in_range")
    assert (
        nearest_point([munich], "phones", *BERLIN, MONDAY_NOON_BERLIN, max_km=600.0).point_id == "sp-munich"
    )
    # Within the dispatch limit but beyond the point's own radius.
    small = point("sp-potsdam", 52.3906, 13.0645, radius_km=10.0)  # ~27 km away
    assert nearest_point([small], "phones", *BERLIN, MONDAY_NOON_BERLIN, 150.0).manual_reason == (
        "no_service_point_in_range"
    )
    # The nearest point does not reach the customer; a farther one with a wider radius does.
    wide = point("sp-wide", 52.2, 12.9, radius_km=80.0)
    assert nearest_point([small, wide], "phones", *BERLIN, MONDAY_NOON_BERLIN, 150.0).point_id == "sp-wide"


def test_the_manual_reason_is_the_most_specific_failure() -> None:
    closed_near = point("sp-closed", 52.5219, 13.4132, status="closed")
    open_far = point("sp-munich", *MUNICH)
    other_category = point("sp-laptops", *BERLIN, categories=("laptops",))
    # Some point repairs phones and is open, but it is too far: range, not "open".
    dispatch = nearest_point(
        [closed_near, open_far, other_category], "phones", *BERLIN, MONDAY_NOON_BERLIN, 150.0
    )
    assert dispatch.manual_reason == "no_service_point_in_range"
    assert set(MANUAL_REASONS) == {
        "unknown_device",
        "no_service_point_for_category",
        "no_service_point_open",
        "no_service_point_in_range",
    }


# --- devices and tickets


def test_a_ticket_carries_the_device_and_its_earlier_tickets() -> None:
    book = DeviceBook()
    base = MONDAY_NOON_BERLIN
    register(
        book,
        device_event(
            "d1",
            base - 86400 * 100,
            serial="SN-1",
            warranty_until="2027-01-01T00:00:00Z",
            purchased_at=1740259200000,
        ),
    )
    points = [point("sp-mitte", 52.5219, 13.4132)]
    first = open_ticket(book, repair_event("req-1", "d1", base, fault="no sound"), points, 150.0)
    second = open_ticket(book, repair_event("req-2", "d1", base + 3600), points, 150.0)
    third = open_ticket(book, repair_event("req-3", "d1", base + 7200, location=MUNICH), points, 150.0)
    assert first is not None and second is not None and third is not None
    assert first.history == []
    assert [entry["request_id"] for entry in second.history] == ["req-1"]
    assert [entry["ticket_id"] for entry in third.history] == [first.ticket_id, second.ticket_id]
    assert third.history[0]["fault"] == "no sound"
    assert third.history[0]["service_point_id"] == "sp-mitte" and third.history[0]["dispatch"] == "assigned"
    # The third came from Munich: nothing in range, manual, and recorded so.
    assert third.dispatch.manual_reason == "no_service_point_in_range"
    assert book.devices["d1"].history[-1]["dispatch"] == "manual"

    wire = third.to_wire(base + 7300)
    assert set(wire) == {
        "schema",
        "ticket_id",
        "request_id",
        "user_id",
        "created_at",
        "decided_at",
        "device_id",
        "device",
        "history",
        "fault",
        "latitude",
        "longitude",
        "dispatch",
        "service_point",
        "manual_reason",
        "source_event_id",
    }
    assert wire["schema"] == 1 and wire["dispatch"] == "manual" and wire["service_point"] is None
    assert wire["created_at"] == "2026-03-02T13:00:00.000Z"
    assert wire["decided_at"] == "2026-03-02T13:01:40.000Z"
    assert wire["device"] == {
        "device_id": "d1",
        "category": "phones",
        "model": "Aster 3",
        "serial": "SN-1",
        "purchased_at": "2025-02-22T21:20:00.000Z",
        "warranty_until": "2027-01-01T00:00:00.000Z",
        "in_warranty": True,
    }
    assert wire["history"][0]["created_at"] == "2026-03-02T11:00:00.000Z"
    assert wire["source_event_id"] == "evt-req-3"
    assert orjson.loads(orjson.dumps(wire)) == wire  # plain JSON
    first_wire = first.to_wire(base)
    assert first_wire["dispatch"] == "assigned" and first_wire["manual_reason"] == ""
    assert first_wire["service_point"] == {"id": "sp-mitte", "name": "SP-MITTE", "distance_km": 0.6}


def test_history_is_bounded_and_keeps_the_latest() -> None:
    book = DeviceBook()
    register(book, device_event("d1", 1.7e9))
    tickets = [
        open_ticket(book, repair_event(f"req-{i}", "d1", 1.8e9 + i * 60), [], 150.0)
        for i in range(MAX_HISTORY + 2)
    ]
    last = tickets[-1]
    assert last is not None
    assert [entry["request_id"] for entry in last.history] == [f"req-{i}" for i in range(1, MAX_HISTORY + 1)]
    assert len(book.devices["d1"].history) == MAX_HISTORY
    # An old request forgotten by the history is still recognised by the request ids.
    assert open_ticket(book, repair_event("req-0", "d1", 1.8e9), [], 150.0) is None


def test_a_redelivered_request_makes_no_second_ticket() -> None:
    book = DeviceBook()
    register(book, device_event("d1", 1.7e9))
    request = repair_event("req-1", "d1", 1.8e9)
    ticket = open_ticket(book, request, [], 150.0)
    assert ticket is not None
    assert open_ticket(book, request, [], 150.0) is None
    assert len(book.devices["d1"].history) == 1
    # The id is derived, not random: the same request processed on a fresh book gets the same id, and
    # the same request id from another user another one.
    fresh = DeviceBook()
    register(fresh, device_event("d1", 1.7e9))
    again = open_ticket(fresh, request, [], 150.0)
    assert again is not None and again.ticket_id == ticket.ticket_id == ticket_id("u1", "req-1")
    assert ticket_id("u2", "req-1") != ticket.ticket_id


def test_an_unknown_device_still_gets_a_ticket_for_manual_dispatch() -> None:
    book = DeviceBook()
    register(book, device_event("d1", 1.7e9))
    points = [point("sp-mitte", 52.5219, 13.4132)]  # open, in range, repairs phones: not used
    request = repair_event("req-9", "d-unknown", MONDAY_NOON_BERLIN, fault="won't charge")
    ticket = open_ticket(book, request, points, 150.0)
    assert ticket is not None
    wire = ticket.to_wire(MONDAY_NOON_BERLIN)
    assert wire["dispatch"] == "manual" and wire["manual_reason"] == "unknown_device"
    assert wire["device"] is None and wire["history"] == [] and wire["service_point"] is None
    assert (wire["fault"], wire["latitude"], wire["longitude"]) == ("won't charge", *BERLIN)
    assert wire["device_id"] == "d-unknown" and wire["user_id"] == "u1"
    assert book.devices["d1"].history == []  # nothing was attached to another device
    assert open_ticket(book, request, points, 150.0) is None  # redelivered


def test_registration_latest_wins_history_kept_and_devices_bounded() -> None:
    book = DeviceBook()
    register(book, device_event("d1", 1000.0 + 1.7e9, model="Aster 2", serial="SN-1"))
    open_ticket(book, repair_event("req-1", "d1", 1.8e9), [], 150.0)
    register(book, device_event("d1", 2000.0 + 1.7e9, model="Aster 3"))  # serial left out: kept
    register(book, device_event("d1", 1500.0 + 1.7e9, model="stale"))  # older: ignored
    device = book.devices["d1"]
    assert (device.model, device.serial, device.registered_at) == ("Aster 3", "SN-1", 2000.0 + 1.7e9)
    assert [entry["request_id"] for entry in device.history] == ["req-1"]

    for i in range(2, MAX_DEVICES + 2):  # registered after d1 except d0, registered earliest
        register(book, device_event(f"d{i}", 1.7e9 + 3000.0 + i))
    register(book, device_event("d0", 1.7e9))
    assert len(book.devices) == MAX_DEVICES
    assert "d0" not in book.devices  # the oldest registration went: itself here
    register(book, device_event("d-new", 1.75e9))
    assert "d1" not in book.devices and "d-new" in book.devices


def test_device_book_survives_a_json_round_trip() -> None:
    book = DeviceBook()
    register(book, device_event("d1", 1.7e9, warranty_until="2027-01-01T00:00:00Z"))
    open_ticket(book, repair_event("req-1", "d1", 1.8e9), [], 150.0)
    open_ticket(book, repair_event("req-2", "d-unknown", 1.8e9), [], 150.0)
    restored = DeviceBook.from_dict(orjson.loads(orjson.dumps(book.to_dict())))
    assert restored == book
    # Idempotency survives: both the device history and the remembered request ids.
    assert open_ticket(restored, repair_event("req-1", "d1", 1.8e9), [], 150.0) is None
    assert open_ticket(restored, repair_event("req-2", "d-unknown", 1.8e9), [], 150.0) is None
    later = open_ticket(restored, repair_event("req-3", "d1", 1.9e9), [], 150.0)
    assert later is not None and [entry["request_id"] for entry in later.history] == ["req-1"]


def test_a_ticket_needs_a_repair_request() -> None:
    with pytest.raises(ValueError, match="repair_requested"):
        open_ticket(DeviceBook(), device_event("d1", 1.7e9), [], 150.0)


# --- the registry file


def test_the_packaged_service_points_load_and_fit_the_catalog() -> None:
    points = load_service_points()
    assert len(points) >= 10
    assert len({p.point_id for p in points}) == len(points)
    cities = {p.point_id.split("-")[1] for p in points}
    assert len(cities) >= 3
    assert [p.point_id for p in points if p.status == "closed"]
    assert any(p.opening_hours is not None for p in points)
    categories = set(load_catalog().categories())
    for p in points:
        assert p.categories <= categories, p.point_id
    # Every category is repaired somewhere.
    assert set().union(*(p.categories for p in points)) == categories
    # A phone in central Berlin on a Monday noon goes to a Berlin point; in Berlin on a Sunday the
    # point with weekday hours is shut but another with no hours takes it.
    monday = nearest_point(points, "phones", *BERLIN, MONDAY_NOON_BERLIN, 150.0)
    assert monday.point_id == "sp-ber-mitte"
    sunday = nearest_point(points, "phones", *BERLIN, SUNDAY_NOON_BERLIN, 150.0)
    assert sunday.point_id == "sp-ber-charlottenburg"
    # Laptops in Munich: the Munich laptop point is closed, and the open ones are in other cities.
    assert nearest_point(points, "laptops", *MUNICH, SUNDAY_NOON_BERLIN, 150.0).manual_reason == (
        "no_service_point_in_range"
    )
    # Appliances on a Sunday: every appliance point keeps weekday (or Saturday) hours.
    assert nearest_point(points, "appliances", *MUNICH, SUNDAY_NOON_BERLIN, 150.0).manual_reason == (
        "no_service_point_open"
    )
    assert (
        nearest_point(points, "appliances", *MUNICH, MONDAY_NOON_BERLIN, 150.0).point_id == "sp-muc-altstadt"
    )


def _write(tmp_path: Path, entry: dict[str, Any]) -> str:
    base = {
        "id": "sp-1",
        "name": "One",
        "latitude": 52.5,
        "longitude": 13.4,
        "categories": ["phones"],
        "radius_km": 30,
        "status": "open",
    }
    path = tmp_path / "points.json"
    path.write_text(json.dumps({"service_points": [{**base, **entry}]}), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"latitude": 95}, "field 'latitude'"),
        ({"longitude": "13"}, "field 'longitude'"),
        ({"categories": []}, "field 'categories'"),
        ({"radius_km": 0}, "field 'radius_km'"),
        ({"status": "shut"}, "field 'status'"),
        ({"radius": 30}, "unknown field 'radius'"),
        ({"opening_hours": {"timezone": "Mars/Olympus", "hours": {"mon": ["09:00-18:00"]}}}, "'timezone'"),
        ({"opening_hours": {"timezone": "UTC", "hours": {"monday": ["09:00-18:00"]}}}, "'monday'"),
        ({"opening_hours": {"timezone": "UTC", "hours": {"mon": ["18:00-09:00"]}}}, "hours.mon"),
        ({"opening_hours": {"timezone": "UTC", "hours": {"mon": ["9-18"]}}}, "hours.mon"),
        ({"opening_hours": {"timezone": "UTC", "hours": {"mon": []}}}, "no opening time"),
    ],
)
def test_mistakes_in_the_registry_name_file_entry_and_field(
    tmp_path: Path, entry: dict[str, Any], message: str
) -> None:
    path = _write(tmp_path, entry)
    with pytest.raises(ServicePointError) as caught:
        load_service_points(path)
    assert str(caught.value).startswith(f"{path}: service_points[0] ('sp-1')")
    assert message in str(caught.value)


def test_registry_file_level_mistakes(tmp_path: Path) -> None:
    with pytest.raises(ServicePointError, match="cannot read"):
        load_service_points(str(tmp_path / "missing.json"))
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(ServicePointError, match="not valid JSON"):
        load_service_points(str(broken))
    twice = {"id": "sp-1", "name": "x", "latitude": 0, "longitude": 0, "categories": ["a"], "radius_km": 1}
    with pytest.raises(ServicePointError, match=r"service_points\[1\] \('sp-1'\): field 'id'"):
        parse_service_points({"service_points": [twice, twice]}, "f.json")
    # Valid hours parse to seconds after midnight; 24:00 may close a day.
    (late,) = parse_service_points(
        {
            "service_points": [
                {
                    **twice,
                    "opening_hours": {"timezone": "UTC", "hours": {"fri": ["08:00-12:00", "13:00-24:00"]}},
                }
            ]
        },
        "f.json",
    )
    assert late.opening_hours is not None
    assert late.opening_hours.hours == {"fri": ((8 * 3600, 12 * 3600), (13 * 3600, 24 * 3600))}
