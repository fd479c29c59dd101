"""Orders from the conversation: validation against the catalog and stock, idempotency by request id,
and the catalog file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.contracts.events import DEAD_LETTER_REASONS, ORDER_REQUESTS, Event, InvalidEvent, parse_event
from streams.processes.catalog import CatalogError, load_catalog, parse_catalog
from streams.processes.orders import (
    IDEMPOTENCY_WINDOW,
    MAX_LEDGER_ENTRIES,
    REJECTION_REASONS,
    OrderCommand,
    OrderLedger,
    OrderRejection,
    StockLevels,
    command_id,
    decide_order,
    parse_stock,
    validate_order,
)
from tests.support import ROOT

DAY = 86400.0
T0 = 1.77e9
CATALOG = parse_catalog(
    {
        "currency": "EUR",
        "products": [  # out of launch order on purpose
            {
                "product_id": "p-case",
                "category": "phones",
                "name": "Case",
                "launched_at": "2025-06-01T10:00:00Z",
            },
            {
                "product_id": "p-phone",
                "category": "phones",
                "name": "Phone",
                "launched_at": "2025-03-01T10:00:00Z",
            },
        ],
        "skus": [
            {
                "sku": "SKU-PHONE",
                "product_id": "p-phone",
                "name": "Phone",
                "price": 499.99,
                "max_quantity": 3,
            },
            {"sku": "SKU-CASE", "product_id": "p-case", "name": "Case", "price": 19.9},
            {"sku": "SKU-CABLE", "product_id": "p-case", "name": "Cable", "price": 0.1},
        ],
    },
    source="test-catalog",
)


def order(
    items: list[dict[str, Any]], request_id: str = "req-1", user: str = "u1", time: float = T0
) -> Event:
    """Through the real event contract, so quantities arrive as the parser leaves them (2.0 stays 2.0)."""
    body = {
        "event_id": f"evt-{user}-{request_id}-{time}",
        "event_type": "order_requested",
        "event_time": round(time * 1000),
        "user_id": user,
        "request_id": request_id,
        "items": items,
        "address_ref": "addr-home",
    }
    return parse_event(orjson.dumps(body), ORDER_REQUESTS)


def stock_of(**levels: int) -> StockLevels:
    stock = StockLevels()
    for sku, available in levels.items():
        stock.apply(
            parse_stock(
                orjson.dumps({"sku": sku.replace("_", "-"), "available": available, "as_of": 1772362800000})
            )
        )
    return stock


def reasons(decision: OrderCommand | OrderRejection) -> list[tuple[int, str, str]]:
    assert isinstance(decision, OrderRejection), decision
    return [(p["index"], p["sku"], p["reason"]) for p in decision.problems]


# --- validation


def test_a_valid_order_becomes_a_priced_command() -> None:
    command = validate_order(
        order([{"sku": "SKU-PHONE", "quantity": 2}, {"sku": "SKU-CABLE", "quantity": 3}]), CATALOG, None
    )
    assert isinstance(command, OrderCommand)
    assert command.items == [
        {
            "sku": "SKU-PHONE",
            "product_id": "p-phone",
            "quantity": 2,
            "unit_price": 499.99,
            "line_total": 999.98,
        },
        {"sku": "SKU-CABLE", "product_id": "p-case", "quantity": 3, "unit_price": 0.1, "line_total": 0.3},
    ]
    assert command.total == 1000.28  # to the cent, not 1000.2800000000001
    assert command.command_id == command_id("u1", "req-1")
    wire = command.to_wire(T0 + 1.5)
    assert wire == {
        "schema": 1,
        "command_id": command.command_id,
        "request_id": "req-1",
        "user_id": "u1",
        "items": command.items,
        "total": 1000.28,
        "currency": "EUR",
        "address_ref": "addr-home",
        "requested_at": "2026-02-02T02:40:00.000Z",
        "decided_at": "2026-02-02T02:40:01.500Z",
        "stock_checked": [],
        "source_event_id": "evt-u1-req-1-1770000000.0",
    }
    assert orjson.loads(orjson.dumps(wire)) == wire


def test_unknown_sku() -> None:
    rejection = validate_order(order([{"sku": "SKU-NOPE", "quantity": 1}]), CATALOG, None)
    assert reasons(rejection) == [(0, "SKU-NOPE", "unknown_sku")]
    assert isinstance(rejection, OrderRejection) and rejection.reason == "unknown_sku"
    assert "SKU-NOPE" in rejection.problems[0]["detail"]


@pytest.mark.parametrize("quantity", [0, -1, 2.5, 0.5, -2.0, 1_000_001, 1e12])
def test_quantity_must_be_a_positive_whole_number(quantity: float) -> None:
    rejection = validate_order(order([{"sku": "SKU-CASE", "quantity": quantity}]), CATALOG, None)
    assert reasons(rejection) == [(0, "SKU-CASE", "invalid_quantity")]


def test_a_whole_float_quantity_counts_as_that_many() -> None:
    command = validate_order(order([{"sku": "SKU-CASE", "quantity": 2.0}]), CATALOG, None)
    assert isinstance(command, OrderCommand)
    assert command.items[0]["quantity"] == 2 and isinstance(command.items[0]["quantity"], int)


def test_quantity_limit_applies_to_the_merged_lines() -> None:
    assert isinstance(
        validate_order(order([{"sku": "SKU-PHONE", "quantity": 3}]), CATALOG, None), OrderCommand
    )
    one_line = validate_order(order([{"sku": "SKU-PHONE", "quantity": 4}]), CATALOG, None)
    assert reasons(one_line) == [(0, "SKU-PHONE", "quantity_limit")]
    # 2 + 2 split over lines does not get round the limit of 3; reported at the SKU's first line.
    split = validate_order(
        order(
            [
                {"sku": "SKU-CASE", "quantity": 1},
                {"sku": "SKU-PHONE", "quantity": 2},
                {"sku": "SKU-PHONE", "quantity": 2},
            ]
        ),
        CATALOG,
        None,
    )
    assert reasons(split) == [(1, "SKU-PHONE", "quantity_limit")]
    assert "4 units requested, at most 3" in split.problems[0]["detail"]


def test_duplicate_lines_are_merged() -> None:
    command = validate_order(
        order(
            [
                {"sku": "SKU-CASE", "quantity": 1},
                {"sku": "SKU-PHONE", "quantity": 1},
                {"sku": "SKU-CASE", "quantity": 4},
            ]
        ),
        CATALOG,
        stock_of(SKU_CASE=5),
    )
    assert isinstance(command, OrderCommand)
    assert [(item["sku"], item["quantity"], item["line_total"]) for item in command.items] == [
        ("SKU-CASE", 5, 99.5),
        ("SKU-PHONE", 1, 499.99),
    ]
    assert command.total == 599.49


def test_out_of_stock_counts_all_lines_of_the_sku() -> None:
    stock = stock_of(SKU_CASE=4)
    assert isinstance(
        validate_order(order([{"sku": "SKU-CASE", "quantity": 4}]), CATALOG, stock), OrderCommand
    )
    rejection = validate_order(
        order([{"sku": "SKU-CASE", "quantity": 3}, {"sku": "SKU-CASE", "quantity": 2}]), CATALOG, stock
    )
    assert reasons(rejection) == [(0, "SKU-CASE", "out_of_stock")]
    assert "5 units requested, 4 available" in rejection.problems[0]["detail"]
    sold_out = validate_order(order([{"sku": "SKU-CASE", "quantity": 1}]), CATALOG, stock_of(SKU_CASE=0))
    assert reasons(sold_out) == [(0, "SKU-CASE", "out_of_stock")]


def test_stock_is_checked_only_where_there_is_a_level() -> None:
    items = [{"sku": "SKU-CASE", "quantity": 50}, {"sku": "SKU-CABLE", "quantity": 50}]
    # No stock topic: nothing is stock-checked.
    absent = validate_order(order(items), CATALOG, None)
    assert isinstance(absent, OrderCommand) and absent.stock_checked == []
    # A stock topic with a level for the case only: the case is checked, the cable is not.
    plenty = validate_order(order(items), CATALOG, stock_of(SKU_CASE=80))
    assert isinstance(plenty, OrderCommand) and plenty.stock_checked == ["SKU-CASE"]
    assert plenty.to_wire(T0)["stock_checked"] == ["SKU-CASE"]
    short = validate_order(order(items), CATALOG, stock_of(SKU_CASE=10))
    assert reasons(short) == [(0, "SKU-CASE", "out_of_stock")]
    # Levels held while the caller says the stock topic is not present are not used.
    switched_off = stock_of(SKU_CASE=10)
    switched_off.present = False
    assert isinstance(validate_order(order(items), CATALOG, switched_off), OrderCommand)


def test_every_problem_is_reported_and_the_first_is_the_reason() -> None:
    rejection = validate_order(
        order(
            [
                {"sku": "SKU-PHONE", "quantity": 5},  # over the limit of 3 and the stock of 1
                {"sku": "SKU-NOPE", "quantity": 1},
                {"sku": "SKU-CASE", "quantity": 1.5},
            ]
        ),
        CATALOG,
        stock_of(SKU_PHONE=1),
    )
    assert reasons(rejection) == [
        (0, "SKU-PHONE", "quantity_limit"),
        (0, "SKU-PHONE", "out_of_stock"),
        (1, "SKU-NOPE", "unknown_sku"),
        (2, "SKU-CASE", "invalid_quantity"),
    ]
    assert isinstance(rejection, OrderRejection) and rejection.reason == "quantity_limit"
    wire = rejection.to_wire(T0 + 2)
    assert set(wire) == {
        "schema",
        "request_id",
        "user_id",
        "reason",
        "problems",
        "address_ref",
        "requested_at",
        "decided_at",
        "source_event_id",
    }
    assert wire["schema"] == 1 and wire["reason"] == "quantity_limit" and len(wire["problems"]) == 4
    assert set(wire["problems"][0]) == {"index", "sku", "reason", "detail"}
    assert {p["reason"] for p in wire["problems"]} <= set(REJECTION_REASONS)
    # The line problem of an earlier line comes first even though merged checks run last.
    late_line = validate_order(
        order([{"sku": "SKU-CASE", "quantity": 0}, {"sku": "SKU-PHONE", "quantity": 9}]), CATALOG, None
    )
    assert reasons(late_line) == [(0, "SKU-CASE", "invalid_quantity"), (1, "SKU-PHONE", "quantity_limit")]


# --- stock messages


def test_stock_levels_keep_the_latest_as_of() -> None:
    stock = StockLevels()
    assert not stock.present and stock.available("SKU-CASE") is None
    stock.apply(parse_stock(b'{"sku": "SKU-CASE", "available": 7, "as_of": "2026-03-01T10:00:00Z"}'))
    assert stock.present and stock.available("SKU-CASE") == 7
    stock.apply(parse_stock(b'{"sku": "SKU-CASE", "available": 3, "as_of": "2026-03-01T09:00:00Z"}'))  # older
    assert stock.available("SKU-CASE") == 7
    stock.apply(parse_stock(b'{"sku": "SKU-CASE", "available": 2, "as_of": 1772362800000}'))  # 11:00Z
    assert stock.available("SKU-CASE") == 2
    assert stock.available("SKU-CABLE") is None
    restored = StockLevels.from_dict(orjson.loads(orjson.dumps(stock.to_dict())))
    assert restored == stock


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "malformed_json"),
        (b"[1, 2]", "not_an_object"),
        (b'{"schema": 2, "sku": "S", "available": 1, "as_of": 1772362800000}', "unsupported_schema"),
        (b'{"available": 1, "as_of": 1772362800000}', "missing_field"),
        (b'{"sku": "S", "as_of": 1772362800000}', "missing_field"),
        (b'{"sku": 5, "available": 1, "as_of": 1772362800000}', "wrong_type"),
        (b'{"sku": "S", "available": "1", "as_of": 1772362800000}', "wrong_type"),
        (b'{"sku": "S", "available": true, "as_of": 1772362800000}', "wrong_type"),
        (b'{"sku": "S", "available": -1, "as_of": 1772362800000}', "invalid_value"),
        (b'{"sku": "S", "available": 1.5, "as_of": 1772362800000}', "invalid_value"),
        (b'{"sku": "", "available": 1, "as_of": 1772362800000}', "invalid_value"),
        (b'{"sku": "S", "available": 1, "as_of": "2026-03-01T10:00:00"}', "invalid_value"),
        (b'{"sku": "S", "available": 1, "as_of": [1]}', "wrong_type"),
        (b'{"sku": "' + b"S" * 70000 + b'", "available": 1, "as_of": 1}', "oversized"),
    ],
)
def test_bad_stock_messages_are_dead_letters(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_stock(raw)
    assert caught.value.reason == reason
    assert reason in DEAD_LETTER_REASONS


def test_a_whole_float_stock_level_is_accepted() -> None:
    assert parse_stock(b'{"sku": "S", "available": 4.0, "as_of": 1772362800000}') == {
        "sku": "S",
        "available": 4,
        "as_of": 1772362800.0,
    }


# --- idempotency


def test_the_same_request_is_decided_once() -> None:
    ledger = OrderLedger()
    first = decide_order(ledger, order([{"sku": "SKU-CASE", "quantity": 1}]), CATALOG, None)
    assert isinstance(first, OrderCommand)
    # Redelivered, even changed: nothing new.
    assert decide_order(ledger, order([{"sku": "SKU-CASE", "quantity": 1}]), CATALOG, None) is None
    assert decide_order(ledger, order([{"sku": "SKU-CASE", "quantity": 9}]), CATALOG, None) is None
    assert ledger.outcome("req-1") == {"status": "accepted", "id": first.command_id, "reason": "", "at": T0}
    # A rejection is remembered the same way.
    rejected = decide_order(ledger, order([{"sku": "SKU-NOPE", "quantity": 1}], "req-2"), CATALOG, None)
    assert isinstance(rejected, OrderRejection)
    assert decide_order(ledger, order([{"sku": "SKU-CASE", "quantity": 1}], "req-2"), CATALOG, None) is None
    assert ledger.outcome("req-2") == {"status": "rejected", "id": "", "reason": "unknown_sku", "at": T0}


def test_the_same_request_id_from_another_user_is_decided_on_its_own() -> None:
    ledgers = {"u1": OrderLedger(), "u2": OrderLedger()}
    one = decide_order(ledgers["u1"], order([{"sku": "SKU-CASE", "quantity": 1}], user="u1"), CATALOG, None)
    two = decide_order(ledgers["u2"], order([{"sku": "SKU-CASE", "quantity": 1}], user="u2"), CATALOG, None)
    assert isinstance(one, OrderCommand) and isinstance(two, OrderCommand)
    assert one.command_id != two.command_id
    assert (one.user_id, two.user_id) == ("u1", "u2")


def test_a_request_is_forgotten_after_the_window() -> None:
    items = [{"sku": "SKU-CASE", "quantity": 1}]
    ledger = OrderLedger()
    first = decide_order(ledger, order(items, "req-1", time=T0), CATALOG, None)
    decide_order(ledger, order(items, "req-2", time=T0 + 29 * DAY), CATALOG, None)
    assert decide_order(ledger, order(items, "req-1", time=T0), CATALOG, None) is None  # within 30 days
    decide_order(ledger, order(items, "req-3", time=T0 + 31 * DAY), CATALOG, None)
    assert ledger.outcome("req-1") is None and ledger.outcome("req-2") is not None
    assert IDEMPOTENCY_WINDOW == 30 * DAY
    # Replayed beyond the window it is decided again, with the same command id.
    again = decide_order(ledger, order(items, "req-1", time=T0), CATALOG, None)
    assert isinstance(again, OrderCommand) and isinstance(first, OrderCommand)
    assert again.command_id == first.command_id


def test_the_ledger_is_bounded_oldest_first() -> None:
    ledger = OrderLedger()
    items = [{"sku": "SKU-CASE", "quantity": 1}]
    # Decided out of order: req-0 is the oldest by event time though decided last.
    for i in range(1, MAX_LEDGER_ENTRIES + 1):
        decide_order(ledger, order(items, f"req-{i}", time=T0 + i), CATALOG, None)
    decide_order(ledger, order(items, "req-0", time=T0), CATALOG, None)
    assert len(ledger.decided) == MAX_LEDGER_ENTRIES
    assert ledger.outcome("req-0") is None and ledger.outcome("req-1") is not None


def test_the_ledger_survives_a_json_round_trip() -> None:
    ledger = OrderLedger()
    decide_order(ledger, order([{"sku": "SKU-CASE", "quantity": 1}]), CATALOG, None)
    decide_order(ledger, order([{"sku": "SKU-NOPE", "quantity": 1}], "req-2"), CATALOG, None)
    restored = OrderLedger.from_dict(orjson.loads(orjson.dumps(ledger.to_dict())))
    assert restored == ledger
    assert decide_order(restored, order([{"sku": "SKU-CASE", "quantity": 1}]), CATALOG, None) is None
    assert decide_order(restored, order([{"sku": "SKU-CASE", "quantity": 1}], "req-2"), CATALOG, None) is None


# --- the catalog file


def test_the_packaged_catalog_loads_and_is_consistent() -> None:
    catalog = load_catalog()
    raw = json.loads((ROOT / "streams/processes/data/catalog.json").read_text())
    assert len(catalog.products) == len(raw["products"]) >= 10
    assert len(catalog.skus) == len(raw["skus"]) >= 25
    product_ids = {product["product_id"] for product in raw["products"]}
    for entry in raw["skus"]:
        assert entry["product_id"] in product_ids, entry["sku"]
        assert entry["sku"].startswith("SKU-")
    assert catalog.currency == "EUR"
    assert len(catalog.categories()) >= 4
    for category in catalog.categories():
        launches = catalog.launches(category)
        assert len(launches) >= 2, category
        assert [p.launched_at for p in launches] == sorted(p.launched_at for p in launches)
        assert catalog.earlier_launches(launches[-1].product_id) == launches[:-1]
        dates = {p.launched_at for p in launches}
        assert len(dates) == len(launches)  # distinct dates: "earlier" is well defined
    # Every SKU can be ordered from the packaged catalog.
    first = next(iter(catalog.skus))
    assert isinstance(validate_order(order([{"sku": first, "quantity": 1}]), catalog, None), OrderCommand)


def test_catalog_lookups() -> None:
    assert CATALOG.category_of("p-case") == "phones" and CATALOG.category_of("p-none") is None
    assert CATALOG.product("p-none") is None and CATALOG.sku("SKU-NONE") is None
    assert [p.product_id for p in CATALOG.launches("phones")] == ["p-phone", "p-case"]
    assert CATALOG.launches("laptops") == [] and CATALOG.earlier_launches("p-phone") == []


def _catalog_file(tmp_path: Path, product: dict[str, Any], sku: dict[str, Any], **top: Any) -> str:
    base_product = {
        "product_id": "p1",
        "category": "phones",
        "name": "P1",
        "launched_at": "2025-01-01T00:00:00Z",
    }
    base_sku = {"sku": "SKU-1", "product_id": "p1", "name": "One", "price": 1.0}
    document = {"products": [{**base_product, **product}], "skus": [{**base_sku, **sku}], **top}
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("product", "sku", "where", "field"),
    [
        ({"launched_at": "2025-01-01T00:00:00"}, {}, "products[0] ('p1')", "'launched_at'"),
        ({"launched_at": "soon"}, {}, "products[0] ('p1')", "'launched_at'"),
        ({"category": ""}, {}, "products[0] ('p1')", "'category'"),
        ({"launch": "x"}, {}, "products[0] ('p1')", "unknown field 'launch'"),
        ({}, {"product_id": "p2"}, "skus[0] ('SKU-1')", "'product_id'"),
        ({}, {"price": -1}, "skus[0] ('SKU-1')", "'price'"),
        ({}, {"price": "1"}, "skus[0] ('SKU-1')", "'price'"),
        ({}, {"max_quantity": 0}, "skus[0] ('SKU-1')", "'max_quantity'"),
        ({}, {"max_quantity": 2.5}, "skus[0] ('SKU-1')", "'max_quantity'"),
        ({}, {"max_quantiy": 2}, "skus[0] ('SKU-1')", "unknown field 'max_quantiy'"),
        ({}, {"name": ""}, "skus[0] ('SKU-1')", "'name'"),
    ],
)
def test_mistakes_in_the_catalog_name_file_entry_and_field(
    tmp_path: Path, product: dict[str, Any], sku: dict[str, Any], where: str, field: str
) -> None:
    path = _catalog_file(tmp_path, product, sku)
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert str(caught.value).startswith(f"{path}: {where}: ")
    assert field in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_catalog_file_level_mistakes(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="currency"):
        load_catalog(_catalog_file(tmp_path, {}, {}, currency="euro"))
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("[", encoding="utf-8")
    with pytest.raises(CatalogError, match="not valid JSON"):
        load_catalog(str(tmp_path / "bad.json"))
    product = {"product_id": "p1", "category": "c", "name": "n", "launched_at": "2025-01-01T00:00:00Z"}
    with pytest.raises(CatalogError, match=r"products\[1\] \('p1'\): field 'product_id'"):
        parse_catalog({"products": [product, product], "skus": []}, "f.json")
    with pytest.raises(CatalogError, match="'skus' must be a list"):
        parse_catalog({"products": []}, "f.json")
    # Without a currency the command says so with an empty one.
    bare = load_catalog(_catalog_file(tmp_path, {}, {}))
    assert bare.currency == "" and bare.sku("SKU-1") is not None
