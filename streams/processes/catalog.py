"""The product catalog: products (with their category and launch date) and the SKUs sold.

Orders are checked against it (:mod:`streams.processes.orders`: known SKU, price, per-order quantity limit),
and the hot-issue priors read the launches of a category from it. It is read from a JSON file (the
``catalog_file`` setting; empty: the packaged sample ``streams/processes/data/catalog.json``; the comments
below explain, JSON has none)::

    {
      "currency": "EUR",                       // optional: ISO 4217 code of the prices
      "products": [
        {"product_id": "phone-a3", "category": "phones", "name": "Aster 3",
         "launched_at": "2025-03-04T09:00:00+01:00",  // ISO 8601 with a time zone
         "expected_volume": 1.5}               // optional, > 0: support questions expected, relative
      ],                                       // to the mean of the category's earlier launches
      "skus": [
        {"sku": "SKU-A3-128-BLK", "product_id": "phone-a3", "name": "Aster 3 128 GB black",
         "price": 499.0,                       // per unit, >= 0
         "max_quantity": 3}                    // optional: most units of this SKU in one order
      ]
    }

Ids and categories are 1-128 printable characters and are matched exactly (``phones`` is not
``Phones``). Unknown fields are refused, so a misspelt ``max_quantiy`` does not silently lift a limit:
every mistake raises :class:`CatalogError` (a ``ValueError``) naming the file, the entry and the field.

>>> catalog = parse_catalog(
...     {
...         "currency": "EUR",
...         "products": [
...             {"product_id": "p2", "category": "phones", "name": "P2",
...              "launched_at": "2026-02-01T00:00:00Z"},
...             {"product_id": "p1", "category": "phones", "name": "P1",
...              "launched_at": "2025-05-01T00:00:00+02:00"},
...         ],
...         "skus": [{"sku": "SKU-P2", "product_id": "p2", "name": "P2 black", "price": 10.5}],
...     },
...     source="example.json",
... )
>>> catalog.sku("SKU-P2").price, catalog.category_of("p2"), catalog.category_of("nope")
(10.5, 'phones', None)
>>> [product.product_id for product in catalog.launches("phones")]
['p1', 'p2']
>>> [product.product_id for product in catalog.earlier_launches("p2")]
['p1']
>>> try:
...     parse_catalog({"products": [], "skus": [{"sku": "SKU-X", "product_id": "p9", "name": "X",
...                                              "price": 1}]}, source="example.json")
... except CatalogError as error:
...     print(error)
example.json: skus[0] ('SKU-X'): field 'product_id': 'p9' is not a product of the catalog
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Any

from streams.contracts.validation import MAX_ID_LENGTH, is_id, is_number

PACKAGED_CATALOG = "data/catalog.json"  # beside this module

_TOP_FIELDS = {"currency", "products", "skus"}
_PRODUCT_FIELDS = {"product_id", "category", "name", "launched_at", "expected_volume"}
_SKU_FIELDS = {"sku", "product_id", "name", "price", "max_quantity"}


class CatalogError(ValueError):
    """A mistake in the catalog file; the message names the file, the entry and the field."""


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    category: str
    name: str
    launched_at: float  # epoch seconds
    # Support questions expected, relative to the mean of the category's earlier launches (the FAQ
    # forecast's counts scale by it, models.launch_faq); None: as many as their mean.
    expected_volume: float | None = None


@dataclass(frozen=True, slots=True)
class Sku:
    sku: str
    product_id: str
    name: str
    price: float  # per unit, in the catalog's currency
    max_quantity: int | None = None  # most units of this SKU in one order; None: no limit


@dataclass(slots=True)
class Catalog:
    products: dict[str, Product] = field(default_factory=dict)
    skus: dict[str, Sku] = field(default_factory=dict)
    currency: str = ""  # ISO 4217 code of the prices; empty when the file does not say

    def sku(self, sku: str) -> Sku | None:
        return self.skus.get(sku)

    def product(self, product_id: str) -> Product | None:
        return self.products.get(product_id)

    def category_of(self, product_id: str) -> str | None:
        product = self.products.get(product_id)
        return product.category if product is not None else None

    def categories(self) -> list[str]:
        return sorted({product.category for product in self.products.values()})

    def launches(self, category: str) -> list[Product]:
        """The products of ``category`` by launch date (then id, so equal dates have a fixed order)."""
        found = [product for product in self.products.values() if product.category == category]
        return sorted(found, key=lambda product: (product.launched_at, product.product_id))

    def earlier_launches(self, product_id: str) -> list[Product]:
        """Products of the same category launched strictly before ``product_id``, oldest first."""
        product = self.products.get(product_id)
        if product is None:
            return []
        return [p for p in self.launches(product.category) if p.launched_at < product.launched_at]


def load_catalog(path: str = "") -> Catalog:
    """The catalog in the JSON file ``path``; empty: the packaged sample."""
    data, source = read_json_document(path, PACKAGED_CATALOG, what="catalog", error=CatalogError)
    return parse_catalog(data, source)


def parse_catalog(data: Any, source: str) -> Catalog:
    """Validate the decoded JSON of a catalog file; ``source`` names the file in error messages."""
    if not isinstance(data, dict):
        raise CatalogError(f"{source}: the catalog must be a JSON object with 'products' and 'skus'")
    no_unknown_fields(data, _TOP_FIELDS, source, CatalogError)
    currency = data.get("currency", "")
    if not isinstance(currency, str) or not (
        currency == "" or (len(currency) == 3 and currency.isascii() and currency.isupper())
    ):
        raise CatalogError(f"{source}: field 'currency' must be a 3-letter ISO 4217 code such as 'EUR'")
    catalog = Catalog(currency=currency)
    for index, entry in enumerate(entry_list(data, "products", source, CatalogError)):
        where = entry_where(source, "products", index, entry, "product_id", CatalogError)
        no_unknown_fields(entry, _PRODUCT_FIELDS, where, CatalogError)
        product = Product(
            product_id=identifier(entry, "product_id", where, CatalogError),
            category=identifier(entry, "category", where, CatalogError),
            name=text(entry, "name", where, CatalogError),
            launched_at=iso_seconds(entry, "launched_at", where, CatalogError),
            expected_volume=None
            if "expected_volume" not in entry
            else number(entry, "expected_volume", where, CatalogError),
        )
        if product.expected_volume is not None and product.expected_volume <= 0:
            raise CatalogError(f"{where}: field 'expected_volume' must be more than 0")
        if product.product_id in catalog.products:
            raise CatalogError(f"{where}: field 'product_id': {product.product_id!r} is listed twice")
        catalog.products[product.product_id] = product
    for index, entry in enumerate(entry_list(data, "skus", source, CatalogError)):
        where = entry_where(source, "skus", index, entry, "sku", CatalogError)
        no_unknown_fields(entry, _SKU_FIELDS, where, CatalogError)
        sku = identifier(entry, "sku", where, CatalogError)
        if sku in catalog.skus:
            raise CatalogError(f"{where}: field 'sku': {sku!r} is listed twice")
        product_id = identifier(entry, "product_id", where, CatalogError)
        if product_id not in catalog.products:
            raise CatalogError(f"{where}: field 'product_id': {product_id!r} is not a product of the catalog")
        price = number(entry, "price", where, CatalogError)
        if price < 0:
            raise CatalogError(f"{where}: field 'price' must not be negative")
        limit = entry.get("max_quantity")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise CatalogError(f"{where}: field 'max_quantity' must be a whole number of at least 1")
        catalog.skus[sku] = Sku(sku, product_id, text(entry, "name", where, CatalogError), price, limit)
    return catalog


# --- reading and checking JSON documents (shared with streams.processes.tickets)


def read_json_document(path: str, packaged: str, *, what: str, error: type[ValueError]) -> tuple[Any, str]:
    """The decoded JSON of ``path``, or of the packaged file ``packaged`` (relative to this package)
    when ``path`` is empty; with the name to use in error messages."""
    if path:
        source = path
        try:
            with open(path, encoding="utf-8") as handle:
                raw = handle.read()
        except OSError as problem:
            raise error(f"{path}: cannot read the {what} file: {problem.strerror}") from None
    else:
        source = f"streams/{packaged}"
        raw = resources.files(__package__).joinpath(packaged).read_text(encoding="utf-8")
    try:
        return json.loads(raw), source
    except json.JSONDecodeError as problem:
        raise error(f"{source}: not valid JSON: {problem}") from None


def entry_list(data: dict[str, Any], name: str, source: str, error: type[ValueError]) -> list[Any]:
    entries = data.get(name)
    if not isinstance(entries, list):
        raise error(f"{source}: field {name!r} must be a list")
    return entries


def entry_where(source: str, name: str, index: int, entry: Any, key: str, error: type[ValueError]) -> str:
    """``file: skus[3] ('SKU-X')``: the entry named by position and, when it has one, by id."""
    if not isinstance(entry, dict):
        raise error(f"{source}: {name}[{index}] must be an object")
    label = entry.get(key)
    return f"{source}: {name}[{index}]" + (f" ({label!r})" if isinstance(label, str) else "")


def no_unknown_fields(entry: dict[str, Any], known: set[str], where: str, error: type[ValueError]) -> None:
    unknown = sorted(set(entry) - known)
    if unknown:
        raise error(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})")


def identifier(entry: dict[str, Any], name: str, where: str, error: type[ValueError]) -> str:
    """A required id: 1-128 printable characters (the rule event fields follow)."""
    value = entry.get(name)
    if not is_id(value):
        raise error(f"{where}: field {name!r} must be 1-{MAX_ID_LENGTH} printable characters")
    return value


def text(entry: dict[str, Any], name: str, where: str, error: type[ValueError]) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or not value.strip():
        raise error(f"{where}: field {name!r} must be a non-empty string")
    return value


def number(entry: dict[str, Any], name: str, where: str, error: type[ValueError]) -> float:
    value = entry.get(name)
    if not is_number(value) or not math.isfinite(value):
        raise error(f"{where}: field {name!r} must be a finite number")
    return float(value)


def iso_seconds(entry: dict[str, Any], name: str, where: str, error: type[ValueError]) -> float:
    """An ISO 8601 time with a time zone, as epoch seconds."""
    value = entry.get(name)
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise error(f"{where}: field {name!r} must be an ISO 8601 time with a time zone")
    return parsed.timestamp()
