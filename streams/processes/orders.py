"""Orders from the conversation: an ``order_requested`` event becomes an order command for the order
system, or a rejection the chat can explain to the customer.

**Validation** (:func:`validate_order`), line by line: the SKU is in the catalog (``unknown_sku``),
the quantity is a positive whole number up to :data:`MAX_QUANTITY` (``invalid_quantity``; ``2.0``
counts as 2, ``2.5`` does not). Lines of the same SKU are then merged (quantities summed), and each
SKU's merged quantity must be at most the catalog's ``max_quantity`` for it (``quantity_limit``) and,
when stock levels are given and hold a level for the SKU, at most the units available
(``out_of_stock``). A SKU without a stock record is not checked; the command lists the SKUs that
were (``stock_checked``). Every problem is reported, ordered by line (a merged SKU's problem is
reported at its first line), and the rejection's ``reason`` is the first one.

**Stock** (:class:`StockLevels`) is the latest available quantity per SKU from the ``stock`` topic,
one JSON object per message (:func:`parse_stock`)::

    {"sku": "SKU-AST3-128-BLK", "available": 12, "as_of": "2026-03-01T10:00:00Z"}

``available`` is a whole number >= 0; ``as_of`` is ISO 8601 with a time zone or epoch milliseconds;
a level older than the one held is ignored. Stock is a snapshot from the stock system: an accepted
order does not reserve units here (the order system does).

**Idempotency**: each user's :class:`OrderLedger` remembers the outcome of their recent request ids,
the last :data:`MAX_LEDGER_ENTRIES` within :data:`IDEMPOTENCY_WINDOW` (30 days) of event time before
the newest request decided. :func:`decide_order` returns ``None`` for a request id already decided,
so nothing is emitted again, even if the redelivered request differs. Beyond the window a replayed
request is decided again, but its command id (a UUIDv5 of user and request id) is the same, so the
order system can still recognise it.

>>> from streams.processes.catalog import parse_catalog
>>> from streams.contracts.events import Event
>>> catalog = parse_catalog({
...     "currency": "EUR",
...     "products": [{"product_id": "p1", "category": "phones", "name": "P1",
...                   "launched_at": "2026-01-01T00:00:00Z"}],
...     "skus": [{"sku": "SKU-1", "product_id": "p1", "name": "P1", "price": 10.0, "max_quantity": 3}],
... }, source="example")
>>> stock = StockLevels()
>>> stock.apply(parse_stock(b'{"sku": "SKU-1", "available": 5, "as_of": 1767225600000}'))
>>> def request(request_id, items):
...     return Event("e-" + request_id, "order_requested", "order_requests", 1.77e9, "u1",
...                  {"request_id": request_id, "items": items, "address_ref": "home"})
>>> ledger = OrderLedger()
>>> command = decide_order(ledger, request("r1", [{"sku": "SKU-1", "quantity": 1},
...                                               {"sku": "SKU-1", "quantity": 2.0}]), catalog, stock)
>>> command.items[0]["quantity"], command.total, command.stock_checked
(3, 30.0, ['SKU-1'])
>>> decide_order(ledger, request("r1", [{"sku": "SKU-1", "quantity": 1}]), catalog, stock) is None
True
>>> rejection = decide_order(ledger, request("r2", [{"sku": "SKU-9", "quantity": 1},
...                                                 {"sku": "SKU-1", "quantity": 4}]), catalog, stock)
>>> rejection.reason, [problem["reason"] for problem in rejection.problems]
('unknown_sku', ['unknown_sku', 'quantity_limit'])
"""

from __future__ import annotations

import math
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from streams.contracts.events import Event, InvalidEvent, check_identifier, parse_time, read_json_object
from streams.contracts.time import DAY, iso_time
from streams.contracts.validation import is_number
from streams.processes.catalog import Catalog

ORDER_SCHEMA = 1
# Fixed namespace: changing it changes every command id, so it is part of the order_commands contract.
ORDER_NAMESPACE = uuid.UUID("a4c7e2d9-1f3b-4a68-b5e0-7d9c2f4a1e83")
MAX_QUANTITY = 1_000_000  # units of one line, as the clickstream's quantities

UNKNOWN_SKU = "unknown_sku"
INVALID_QUANTITY = "invalid_quantity"
QUANTITY_LIMIT = "quantity_limit"
OUT_OF_STOCK = "out_of_stock"
# Why an order is rejected (a bounded set: usable as a metric label).
REJECTION_REASONS = (UNKNOWN_SKU, INVALID_QUANTITY, QUANTITY_LIMIT, OUT_OF_STOCK)

MAX_LEDGER_ENTRIES = 200  # request ids remembered per user
IDEMPOTENCY_WINDOW = 30 * DAY  # event time before the newest request decided


# --- stock


@dataclass(slots=True)
class StockLevel:
    available: int
    as_of: float  # epoch seconds


@dataclass(slots=True)
class StockLevels:
    """The latest available units per SKU. ``present``: a stock topic exists (set by the caller, and
    by the first level applied); while it is false no order is stock-checked."""

    levels: dict[str, StockLevel] = field(default_factory=dict)
    present: bool = False

    def apply(self, message: dict[str, Any]) -> None:
        """One parsed stock message (:func:`parse_stock`); a level older than the one held is ignored."""
        self.present = True
        held = self.levels.get(message["sku"])
        if held is not None and message["as_of"] < held.as_of:
            return
        self.levels[message["sku"]] = StockLevel(message["available"], message["as_of"])

    def available(self, sku: str) -> int | None:
        """Units available, or None when the SKU has no stock record (or no stock topic is present)."""
        level = self.levels.get(sku) if self.present else None
        return level.available if level is not None else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StockLevels:
        levels = {sku: StockLevel(**level) for sku, level in data.get("levels", {}).items()}
        return cls(levels=levels, present=data.get("present", False))


def parse_stock(raw: bytes, *, max_bytes: int = 65536) -> dict[str, Any]:
    """A ``stock`` message as ``{"sku", "available" (int), "as_of" (epoch seconds)}``, or
    :class:`~streams.contracts.events.InvalidEvent` with a reason from ``DEAD_LETTER_REASONS``."""
    data = read_json_object(raw, max_bytes)
    for name in ("sku", "available", "as_of"):
        if data.get(name) is None:
            raise InvalidEvent("missing_field", f"field {name!r} is required")
    sku = check_identifier("sku", data["sku"])
    available = data["available"]
    if not is_number(available):
        raise InvalidEvent("wrong_type", "field 'available' must be a whole number")
    if not math.isfinite(available) or available != int(available) or available < 0:
        raise InvalidEvent("invalid_value", "field 'available' must be a whole number >= 0")
    return {"sku": sku, "available": int(available), "as_of": parse_time("as_of", data["as_of"])}


# --- validation


def command_id(user_id: str, request_id: str) -> str:
    """Deterministic id: a UUIDv5 of user and request id (a replayed request gets the same id)."""
    return str(uuid.uuid5(ORDER_NAMESPACE, f"order\x1f{user_id}\x1f{request_id}"))


@dataclass(slots=True)
class OrderCommand:
    command_id: str
    request_id: str
    user_id: str
    items: list[dict[str, Any]]  # merged by SKU: {sku, product_id, quantity, unit_price, line_total}
    total: float
    currency: str  # the catalog's; empty when it names none
    address_ref: str
    requested_at: float  # event time of the request
    stock_checked: list[str]  # SKUs whose quantity was checked against a stock level
    source_event_id: str

    def to_wire(self, decided_at_wall: float) -> dict[str, Any]:
        """The documented JSON contract of the ``order_commands`` topic (schema 1)."""
        return {
            "schema": ORDER_SCHEMA,
            "command_id": self.command_id,
            "request_id": self.request_id,
            "user_id": self.user_id,
            "items": [dict(item) for item in self.items],
            "total": self.total,
            "currency": self.currency,
            "address_ref": self.address_ref,
            "requested_at": iso_time(self.requested_at),
            "decided_at": iso_time(decided_at_wall),
            "stock_checked": list(self.stock_checked),
            "source_event_id": self.source_event_id,
        }


@dataclass(slots=True)
class OrderRejection:
    request_id: str
    user_id: str
    reason: str  # the first problem's
    problems: list[dict[str, Any]]  # {index, sku, reason, detail}, by line
    address_ref: str
    requested_at: float
    source_event_id: str

    def to_wire(self, decided_at_wall: float) -> dict[str, Any]:
        """The documented JSON contract of the ``order_rejections`` topic (schema 1)."""
        return {
            "schema": ORDER_SCHEMA,
            "request_id": self.request_id,
            "user_id": self.user_id,
            "reason": self.reason,
            "problems": [dict(problem) for problem in self.problems],
            "address_ref": self.address_ref,
            "requested_at": iso_time(self.requested_at),
            "decided_at": iso_time(decided_at_wall),
            "source_event_id": self.source_event_id,
        }


def validate_order(
    event: Event, catalog: Catalog, stock: StockLevels | None
) -> OrderCommand | OrderRejection:
    """Check an ``order_requested`` event against the catalog and, if given, the stock levels."""
    attrs = event.attrs
    problems: list[dict[str, Any]] = []
    merged: dict[str, int] = {}  # SKU -> units of its valid lines, in order of first appearance
    first_line: dict[str, int] = {}
    for index, item in enumerate(attrs["items"]):
        sku, quantity = item["sku"], item["quantity"]
        first_line.setdefault(sku, index)
        if catalog.sku(sku) is None:
            problems.append(_problem(index, sku, UNKNOWN_SKU, f"{sku!r} is not in the catalog"))
            continue
        if not (0 < quantity <= MAX_QUANTITY and float(quantity).is_integer()):
            detail = f"quantity {quantity!r} is not a whole number from 1 to {MAX_QUANTITY}"
            problems.append(_problem(index, sku, INVALID_QUANTITY, detail))
            continue
        merged[sku] = merged.get(sku, 0) + int(quantity)
    checked = []
    for sku, quantity in merged.items():
        index, limit = first_line[sku], catalog.skus[sku].max_quantity
        if limit is not None and quantity > limit:
            detail = f"{quantity} units requested, at most {limit} per order"
            problems.append(_problem(index, sku, QUANTITY_LIMIT, detail))
        available = stock.available(sku) if stock is not None else None
        if available is not None:
            checked.append(sku)
            if quantity > available:
                detail = f"{quantity} units requested, {available} available"
                problems.append(_problem(index, sku, OUT_OF_STOCK, detail))
    if problems:
        problems.sort(key=lambda problem: problem["index"])  # stable: line checks before merged ones
        return OrderRejection(
            attrs["request_id"],
            event.user_id,
            problems[0]["reason"],
            problems,
            attrs["address_ref"],
            event.event_time,
            event.event_id,
        )
    items = []
    for sku, quantity in merged.items():
        entry = catalog.skus[sku]
        items.append(
            {
                "sku": sku,
                "product_id": entry.product_id,
                "quantity": quantity,
                "unit_price": entry.price,
                "line_total": round(entry.price * quantity, 2),  # to the cent
            }
        )
    return OrderCommand(
        command_id=command_id(event.user_id, attrs["request_id"]),
        request_id=attrs["request_id"],
        user_id=event.user_id,
        items=items,
        total=round(sum(item["line_total"] for item in items), 2),
        currency=catalog.currency,
        address_ref=attrs["address_ref"],
        requested_at=event.event_time,
        stock_checked=checked,
        source_event_id=event.event_id,
    )


def _problem(index: int, sku: str, reason: str, detail: str) -> dict[str, Any]:
    return {"index": index, "sku": sku, "reason": reason, "detail": detail}


# --- idempotency


@dataclass
class OrderLedger:
    """A user's recent order decisions: request id -> {status, id, reason, at (event time)}."""

    decided: dict[str, dict[str, Any]] = field(default_factory=dict)
    newest: float = 0.0  # event time of the newest request decided

    def outcome(self, request_id: str) -> dict[str, Any] | None:
        return self.decided.get(request_id)

    def record(self, request_id: str, outcome: dict[str, Any], window: float = IDEMPOTENCY_WINDOW) -> None:
        """Remember ``outcome``; then forget what lies beyond the window and the entry bound."""
        self.decided[request_id] = outcome
        self.newest = max(self.newest, outcome["at"])
        horizon = self.newest - window
        for key in [key for key, value in self.decided.items() if value["at"] < horizon]:
            del self.decided[key]
        while len(self.decided) > MAX_LEDGER_ENTRIES:  # the oldest by event time goes first
            oldest = min(self.decided, key=lambda key: (self.decided[key]["at"], key))
            del self.decided[oldest]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OrderLedger:
        decided = {key: dict(value) for key, value in data.get("decided", {}).items()}
        return cls(decided=decided, newest=data.get("newest", 0.0))


def decide_order(
    ledger: OrderLedger,
    event: Event,
    catalog: Catalog,
    stock: StockLevels | None,
    window: float = IDEMPOTENCY_WINDOW,
) -> OrderCommand | OrderRejection | None:
    """The decision on an ``order_requested`` event, or ``None`` if its request id was decided already
    (within the ledger's window): a duplicate, nothing is emitted again."""
    if event.event_type != "order_requested":
        raise ValueError(f"decide_order() takes order_requested events, not {event.event_type!r}")
    request_id = event.attrs["request_id"]
    if ledger.outcome(request_id) is not None:
        return None
    decision = validate_order(event, catalog, stock)
    if isinstance(decision, OrderCommand):
        outcome = {"status": "accepted", "id": decision.command_id, "reason": "", "at": event.event_time}
    else:
        outcome = {"status": "rejected", "id": "", "reason": decision.reason, "at": event.event_time}
    ledger.record(request_id, outcome, window)
    return decision
