"""GET /api/v1/products/{product_id}/faq-forecast: a product's FAQ forecast, made from the launch
profiles on its category's partition (forwarded to the worker holding it), under ``read:forecasts``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from yarl import URL

from models.launch_faq import FaqRules
from models.surge import LaunchProfile
from streams.api.auth import token_entry, tokens_file_text
from streams.api.server import FAQ_ROUTE, ApiError, _Api, faq_reply
from streams.contracts.envelopes import user_partition
from streams.contracts.settings import Settings
from streams.contracts.time import DAY, iso_time
from streams.processes.catalog import load_catalog
from tests.unit.api.test_api import SECRET, FakeHttpClient, FakeTopic, audited, fake_request

TOKENS = {
    "planner": "planner-token-3c2e5b0a4f7e6f1d",
    "crm-read": "crm-read-token-6f1d3c2e5b0a4f7e",
    "ops-admin": "ops-admin-token-0c4e8d2b7a196f1d",
}
SCOPES = {"planner": ["read:forecasts"], "crm-read": ["read:scores"], "ops-admin": ["admin"]}
HERE, THERE = "http://worker-a:6066", "http://worker-b:6066"
CHANGELOG = "forewarn-launch-profiles-changelog"
PATH = "/api/v1/products/buds-3/faq-forecast"


def write_catalog(path: Path, now: float) -> Path:
    products = [
        ("buds-1", now - 200 * DAY, {}),
        ("buds-2", now - 100 * DAY, {}),
        ("buds-3", now + 3 * DAY, {"expected_volume": 2.0}),  # launching in three days
    ]
    data = {
        "products": [
            {"product_id": pid, "category": "earbuds", "name": pid, "launched_at": iso_time(at)} | extra
            for pid, at, extra in products
        ],
        "skus": [],
    }
    path.write_text(json.dumps(data))
    return path


def profiles(now: float) -> dict[str, LaunchProfile]:
    buckets = [{"pairing": 30.0, "fit": 10.0}, {"fit": 20.0}, {}, {}, {}]
    return {
        "buds-1": LaunchProfile(now - 200 * DAY, buckets, [40.0, 20.0, 0.0, 0.0, 0.0], {"pairing": ["pair"]}),
    }


def faq_api(tmp_path: Path, owned: set[int], here: str = HERE) -> _Api:
    now = time.time()
    tokens = tmp_path / "tokens.json"
    tokens.write_text(tokens_file_text([token_entry(n, TOKENS[n], SCOPES[n]) for n in TOKENS]))
    settings = Settings.from_env(
        {},
        api_tokens_file=str(tokens),
        partitions=4,
        catalog_file=str(write_catalog(tmp_path / "c.json", now)),
    )
    there = THERE if here == HERE else HERE
    metadata = {here: {CHANGELOG: sorted(owned)}, there: {CHANGELOG: sorted({0, 1, 2, 3} - owned)}}
    app = SimpleNamespace(
        rebalancing=False,
        in_recovery=False,
        router=SimpleNamespace(table_metadata=lambda name: metadata if name == "launch-profiles" else {}),
        conf=SimpleNamespace(canonical_url=URL(here)),
        http_client=FakeHttpClient(),
    )
    users = SimpleNamespace(name="users", changelog_topic=None, get=lambda key: None)
    table = SimpleNamespace(
        name="launch-profiles",
        changelog_topic=SimpleNamespace(get_topic_name=lambda: CHANGELOG),
        get=profiles(now).get,
    )
    return _Api(app, settings, users, {}, FakeTopic("api_audit"), SECRET, table)


CATEGORY_PARTITION = user_partition("earbuds", 4)


def test_the_reply_is_the_forecast_made_now_or_404(tmp_path: Path) -> None:
    now = 1_790_000_000.0
    catalog = load_catalog(str(write_catalog(tmp_path / "c.json", now)))
    found = profiles(now)
    reply = faq_reply("buds-3", catalog, found, now, FaqRules())
    assert reply.status == 200 and reply.body["product_id"] == "buds-3" and reply.body["volume"] == 2.0
    first = reply.body["buckets"][0]
    assert [(t["topic"], t["expected_count"]) for t in first["topics"]] == [("pairing", 60.0), ("fit", 20.0)]
    assert first["based_on"] == ["buds-1"] and reply.detail == f"forecast {reply.body['forecast_id']}"
    for product, now_at, detail in [
        ("nope", now, "product 'nope' is not in the catalog"),
        ("buds-3", now - 20 * DAY, "product 'buds-3' is not in its launch window: no FAQ forecast"),
        ("buds-2", now, "product 'buds-2' is not in its launch window: no FAQ forecast"),
    ]:
        with pytest.raises(ApiError) as raised:
            faq_reply(product, catalog, found, now_at, FaqRules())
        assert (raised.value.status, raised.value.detail) == (404, detail)


async def test_the_route_needs_read_forecasts_and_audits_no_user(tmp_path: Path) -> None:
    api = faq_api(tmp_path, owned={0, 1, 2, 3})
    statuses = {}
    for who in ("planner", "crm-read", "ops-admin"):
        answer = await api.handle(fake_request("GET", PATH, TOKENS[who]))
        statuses[who] = answer.status
        if answer.status == 200:
            body = orjson.loads(answer.body)
            assert body["product_id"] == "buds-3" and body["buckets"][0]["topics"][0]["topic"] == "pairing"
    assert statuses == {"planner": 200, "crm-read": 403, "ops-admin": 200}
    unknown = await api.handle(fake_request("GET", "/api/v1/products/nope/faq-forecast", TOKENS["planner"]))
    assert unknown.status == 404
    records = audited(api)
    assert [(r["route"], r["user_id"], r["scope"], r["status"]) for r in records] == [
        (FAQ_ROUTE.template, "", "read:forecasts", status) for status in (200, 403, 200, 404)
    ]
    assert all(key is None for key, _ in api.audit_topic.sent)  # no user: not keyed by one


async def test_a_worker_without_the_categorys_partition_forwards_the_read(tmp_path: Path) -> None:
    first = faq_api(tmp_path, owned={0, 1, 2, 3} - {CATEGORY_PARTITION})
    holder = faq_api(tmp_path, owned={CATEGORY_PARTITION}, here=THERE)
    first.app.http_client.holder = holder.handle
    answer = await first.handle(fake_request("GET", PATH, TOKENS["planner"]))
    assert answer.status == 200 and orjson.loads(answer.body)["product_id"] == "buds-3"
    [(method, url, headers)] = first.app.http_client.calls
    assert (method, str(url)) == ("GET", THERE + PATH) and "Authorization" not in headers
    assert audited(first)[0]["detail"].startswith(f"forwarded to {THERE}")
    assert audited(holder)[0]["detail"].startswith(f"forwarded from {HERE}")


async def test_a_worker_without_the_profiles_table_answers_503(tmp_path: Path) -> None:
    api: Any = faq_api(tmp_path, owned={0, 1, 2, 3})
    api.profiles = None
    answer = await api.handle(fake_request("GET", PATH, TOKENS["planner"]))
    assert answer.status == 503
