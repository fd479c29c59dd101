"""A scripted input with a known answer: which interventions it must produce, and which of its
messages are broken and why. The expected ids are built from the contract (trigger, user, anchoring
event), not by running the triggers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import orjson

from streams.contracts.interventions import DELAY_NOTICE, PAYMENT_ASSIST, intervention_id

HOUR_MS = 3_600_000


@dataclass
class Scenario:
    messages: list[tuple[str, bytes, bytes]] = field(default_factory=list)  # topic, key, value
    expected: dict[str, tuple[str, str]] = field(default_factory=dict)  # intervention id -> (trigger, user)
    valid: int = 0
    broken: dict[bytes, str] = field(default_factory=dict)  # original bytes -> reason

    def add(self, topic: str, **event: object) -> str:
        self.messages.append((topic, str(event["user_id"]).encode(), orjson.dumps(event)))
        self.valid += 1
        return str(event["event_id"])

    def add_broken(self, topic: str, value: bytes, reason: str) -> None:
        self.messages.append((topic, b"broken", value))
        self.broken[value] = reason


def build(users: int, start_ms: int | None = None, tag: str = "a") -> Scenario:
    """``users`` users in four kinds by index: payer, lingerer, delayed shipment, on-time shipment."""
    now = start_ms if start_ms is not None else int(time.time() * 1000)
    scenario = Scenario()
    for index in range(users):
        user = f"{tag}-user-{index:05d}"
        kind = index % 4
        eid = f"{tag}-{index}"
        if kind in (0, 1):
            scenario.add(
                "clickstream",
                event_id=f"{eid}-view",
                event_type="page_view",
                event_time=now,
                user_id=user,
                session_id=f"{eid}-s",
                page="/p/phone",
            )
            anchor = scenario.add(
                "clickstream",
                event_id=f"{eid}-pay-page",
                event_type="payment_page_view",
                event_time=now + 100,
                user_id=user,
                session_id=f"{eid}-s",
            )
            if kind == 0:
                scenario.add(
                    "clickstream",
                    event_id=f"{eid}-paid",
                    event_type="payment_completed",
                    event_time=now + 600,
                    user_id=user,
                    session_id=f"{eid}-s",
                    order_id=f"{eid}-o",
                )
            else:
                scenario.expected[intervention_id(PAYMENT_ASSIST, user, anchor)] = (PAYMENT_ASSIST, user)
        else:
            shipment = {
                "shipment_id": f"{eid}-sh",
                "order_id": f"{eid}-o",
                "user_id": user,
                "promised_eta": now + 24 * HOUR_MS,
            }
            scenario.add(
                "logistics",
                event_id=f"{eid}-created",
                event_type="shipment_created",
                event_time=now,
                **shipment,
            )
            if kind == 2:
                delayed = scenario.add(
                    "logistics",
                    event_id=f"{eid}-delayed",
                    event_type="delayed",
                    event_time=now + 50,
                    eta=now + 27 * HOUR_MS,
                    **shipment,
                )
                anchor = f"{eid}-sh\x1f{delayed}"
                scenario.expected[intervention_id(DELAY_NOTICE, user, anchor)] = (DELAY_NOTICE, user)
            else:
                scenario.add(
                    "logistics",
                    event_id=f"{eid}-transit",
                    event_type="in_transit",
                    event_time=now + 50,
                    eta=now + 24 * HOUR_MS,
                    **shipment,
                )
                scenario.add(
                    "logistics",
                    event_id=f"{eid}-delivered",
                    event_type="delivered",
                    event_time=now + 90,
                    **shipment,
                )
    return scenario


def add_broken_messages(scenario: Scenario, now_ms: int) -> None:
    """One of each kind of bad input the contract rejects."""
    scenario.add_broken("clickstream", b'{"event_id": "x1", "event_type": ', "malformed_json")
    scenario.add_broken("clickstream", b'["not", "an", "object"]', "not_an_object")
    scenario.add_broken(
        "logistics",
        orjson.dumps({"event_id": "x3", "event_type": "delayed", "event_time": now_ms, "user_id": "u"}),
        "missing_field",
    )
    scenario.add_broken(
        "clickstream",
        orjson.dumps(
            {"event_id": "x4", "event_type": "search", "event_time": now_ms, "user_id": 42, "query": "q"}
        ),
        "wrong_type",
    )
    scenario.add_broken(
        "clickstream",
        orjson.dumps({"event_id": "x5", "event_type": "teleport", "event_time": now_ms, "user_id": "u"}),
        "unknown_event_type",
    )
    scenario.add_broken("logistics", b'{"pad": "' + b"x" * 70_000 + b'"}', "oversized")
    scenario.add_broken(
        "clickstream",
        orjson.dumps(
            {
                "event_id": "x7",
                "event_type": "page_view",
                "event_time": "yesterday",
                "user_id": "u",
                "page": "/",
            }
        ),
        "invalid_value",
    )
    scenario.add_broken("clickstream", orjson.dumps({"schema": 9, "event_id": "x8"}), "unsupported_schema")
