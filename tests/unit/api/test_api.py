"""The CRM/ERP API (streams.api.server): its decisions as pure functions, the call handling against stand-ins
for Faust (no broker; a forward goes from one stand-in worker to another, or to a rogue), its HTTP
server on a port (what the parser refuses is audited, nothing but the API is served), and end to end
through real workers on the embedded broker: every route with each kind of token, one audit record per
call, a preferences change read back, reads forwarded (signed) between two workers, and a rogue member
of their consumer group."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from multidict import CIMultiDict
from yarl import URL

from models.health import Scores
from streams.api.auth import Caller, token_entry, tokens_file_text
from streams.api.forwarding import (
    ORIGIN_HEADER,
    SIGNATURE_HEADER,
    Forward,
    ReplayGuard,
    same_node,
)
from streams.api.server import (
    CRM_ROUTE,
    ERASURE_ROUTE,
    FORWARDED_FROM,
    FORWARDED_TO,
    PREFERENCES_ROUTE,
    RESULTS,
    UNMATCHED,
    UNPARSED,
    USER_ROUTE,
    Answer,
    ApiError,
    ApiServer,
    Reply,
    _Api,
    audit_record,
    check_user_id,
    command,
    no_route,
    owner_of,
    result_of,
    user_partition,
    user_reply,
)
from streams.contracts.events import Event, parse_event
from streams.contracts.interventions import Intervention
from streams.contracts.settings import Settings
from streams.domain.state import Subscription, UserState, apply_event, record_contact
from streams.tools.worker_launcher import free_port
from tests.support.harness import (
    StartWorker,
    assigned,
    consume_all,
    envelope_events,
    produce,
    read_until,
    rows,
    until,
    worker_env,
    worker_group,
)
from tests.support.rogue_worker import rogue_worker

NOW = 1_764_000_000.0
ADMIN = Caller("ops-admin", frozenset({"admin"}))
TOKENS = {
    "crm-read": "crm-read-token-6f1d3c2e5b0a4f7e",
    "crm-write": "crm-write-token-9a510c4e8d2b7a19",
    "ops-admin": "ops-admin-token-0c4e8d2b7a196f1d",
}
SCOPES = {"crm-read": ["read:scores"], "crm-write": ["write:preferences"], "ops-admin": ["admin"]}
WRONG = "not-a-configured-token-1234567890"
AUDIT_FIELDS = [
    "schema",
    "audit_id",
    "at",
    "caller",
    "method",
    "route",
    "user_id",
    "scope",
    "status",
    "result",
    "detail",
]


def ids(*values: str):
    queue = list(values)
    return lambda: queue.pop(0)


# --- pure decisions --------------------------------------------------------------------------------


def test_a_preferences_body_becomes_the_validated_event_produced() -> None:
    done = command(
        PREFERENCES_ROUTE,
        "u1",
        b'{"opt_out": true, "channels": {"email": false}, "timezone": "Europe/Berlin"}',
        Caller("crm-write", frozenset({"write:preferences"})),
        now=NOW,
        new_id=ids("ev-1"),
    )
    assert (done.source, done.key) == ("preferences", b"u1")
    assert done.reply == Reply(202, {"event_id": "ev-1"}, "event ev-1")
    # What is produced is what was validated: the ingest agent parses these same bytes.
    event = parse_event(done.value, "preferences")
    assert event == Event(
        "ev-1",
        "preferences_updated",
        "preferences",
        NOW,
        "u1",
        {"opt_out": True, "channels": {"email": False}, "timezone": "Europe/Berlin"},
    )


def test_an_erasure_names_the_caller_and_keeps_or_makes_the_request_id() -> None:
    given = command(ERASURE_ROUTE, "u2", b'{"request_id": "req-7"}', ADMIN, now=NOW, new_id=ids("ev-2"))
    assert given.reply.body == {"request_id": "req-7", "event_id": "ev-2"} and given.reply.status == 202
    event = parse_event(given.value, "erasure")
    assert (event.event_type, event.user_id, event.attrs) == (
        "erasure_requested",
        "u2",
        {"request_id": "req-7", "requested_by": "ops-admin"},
    )
    made = command(ERASURE_ROUTE, "u2", b"", ADMIN, now=NOW, new_id=ids("ev-3", "req-made"))
    assert made.reply.body == {"request_id": "req-made", "event_id": "ev-3"}
    assert parse_event(made.value, "erasure").attrs["request_id"] == "req-made"
    # The caller cannot name someone else as the requester.
    with pytest.raises(ApiError, match="unknown field\\(s\\) requested_by"):
        command(ERASURE_ROUTE, "u2", b'{"requested_by": "someone"}', ADMIN, now=NOW)


def test_a_crm_body_becomes_a_crm_attributes_event() -> None:
    done = command(
        CRM_ROUTE, "u3", b'{"tier": "gold", "lifetime_value": 1200.5, "segments": ["vip"]}', ADMIN, now=NOW
    )
    event = parse_event(done.value, "crm")
    assert (event.event_type, event.attrs) == (
        "crm_attributes",
        {"tier": "gold", "lifetime_value": 1200.5, "segments": ["vip"]},
    )
    assert str(uuid.UUID(event.event_id)) == event.event_id == done.reply.body["event_id"]
    assert event.event_time == NOW


@pytest.mark.parametrize(
    ("route", "body", "detail"),
    [
        (
            PREFERENCES_ROUTE,
            b'{"timezone": "Mars/Olympus"}',
            "invalid_value: field 'timezone' is not an IANA",
        ),
        (PREFERENCES_ROUTE, b'{"opt_out": "yes"}', "wrong_type: field 'opt_out' must be true or false"),
        (PREFERENCES_ROUTE, b'{"channels": {"Email!": true}}', "field 'channels' must map channel names"),
        (PREFERENCES_ROUTE, b'{"opt_ot": true}', "unknown field(s) opt_ot; allowed: opt_out, channels"),
        (PREFERENCES_ROUTE, b'{"user_id": "someone-else"}', "unknown field(s) user_id"),
        (PREFERENCES_ROUTE, b'{"timezone": null}', "field(s) timezone must not be null"),
        (PREFERENCES_ROUTE, b"{}", "nothing to update: give at least one of opt_out, channels, timezone"),
        (PREFERENCES_ROUTE, b"", "the body must be a JSON object"),
        (PREFERENCES_ROUTE, b"[true]", "the body must be a JSON object"),
        (PREFERENCES_ROUTE, b"{opt_out: true}", "the body must be a JSON object"),
        (CRM_ROUTE, b'{"lifetime_value": -5}', "invalid_value: field 'lifetime_value' must not be negative"),
        (CRM_ROUTE, b'{"segments": "vip"}', "field 'segments' must be a list"),
        (CRM_ROUTE, b"{}", "nothing to update: give at least one of tier, lifetime_value, segments"),
        (ERASURE_ROUTE, b'{"request_id": ""}', "invalid_value: field 'request_id' must be 1-128"),
        (ERASURE_ROUTE, b"[]", "the body must be a JSON object"),
    ],
)
def test_invalid_bodies_are_400_with_the_validation_detail(route, body: bytes, detail: str) -> None:
    with pytest.raises(ApiError) as raised:
        command(route, "u1", body, ADMIN, now=NOW)
    assert raised.value.status == 400
    assert detail in raised.value.detail
    assert raised.value.reply().result == "invalid"


def test_an_oversized_event_is_refused_by_the_same_limit_as_the_pipeline() -> None:
    body = orjson.dumps({"segments": [f"s{i:02d}" for i in range(30)]})
    assert command(CRM_ROUTE, "u1", body, ADMIN, now=NOW, max_bytes=4096).reply.status == 202
    with pytest.raises(ApiError, match="oversized"):
        command(CRM_ROUTE, "u1", body, ADMIN, now=NOW, max_bytes=200)


@pytest.mark.parametrize("user_id", ["x" * 129, "tab\there", "new\nline"])
def test_user_ids_are_checked_as_in_events(user_id: str) -> None:
    with pytest.raises(ApiError, match="invalid_value: field 'user_id' must be 1-128 printable") as raised:
        check_user_id(user_id)
    assert raised.value.status == 400
    with pytest.raises(ApiError, match="field 'user_id'"):
        command(PREFERENCES_ROUTE, user_id, b'{"opt_out": true}', ADMIN, now=NOW)
    assert check_user_id("user-42@shop") == "user-42@shop"


def known_user() -> UserState:
    state = UserState("u9")
    apply_event(state, Event("e1", "page_view", "clickstream", NOW, "u9", {"page": "/p", "session_id": "s1"}))
    apply_event(
        state, Event("e2", "preferences_updated", "preferences", NOW + 5, "u9", {"timezone": "Asia/Tokyo"})
    )
    state.subscriptions["sub-1"] = Subscription("pro", "active", NOW + 86400, NOW, "e3")
    state.crm.tier, state.crm.segments, state.crm.updated_at = "gold", ["vip"], NOW + 1
    state.feedback_tags["delivery"] = NOW + 2
    state.scores = Scores({"buy": 0.7, "browse": 0.3}, 0.25, 75, None, NOW + 5, "e2", 40, 12)
    record_contact(
        state,
        Intervention("iv-1", "payment_assist", "offer_help", "u9", NOW, "dwell", "e1", channel="chat"),
        NOW + 3,
    )
    return state


def test_the_user_view_shows_scores_state_and_interventions() -> None:
    state = known_user()
    reply = user_reply("u9", state)
    assert (reply.status, reply.result) == (200, "ok")
    assert reply.body == {
        "schema": 1,
        "user_id": "u9",
        "scores": state.scores.to_wire("u9"),
        "state": {
            "preferences": {
                "opt_out": False,
                "channels": {},
                "timezone": "Asia/Tokyo",
                "updated_at": "2025-11-24T16:00:05.000Z",
            },
            "subscriptions": {
                "sub-1": {
                    "plan": "pro",
                    "status": "active",
                    "renews_at": "2025-11-25T16:00:00.000Z",
                    "updated_at": "2025-11-24T16:00:00.000Z",
                }
            },
            "crm": {
                "tier": "gold",
                "lifetime_value": None,
                "segments": ["vip"],
                "updated_at": "2025-11-24T16:00:01.000Z",
            },
            "feedback_tags": {"delivery": "2025-11-24T16:00:02.000Z"},
            "sessions": 1,
            "events_seen": 2,
            "last_event_time": "2025-11-24T16:00:05.000Z",
        },
        "recent_interventions": [
            {
                "intervention_id": "iv-1",
                "trigger": "payment_assist",
                "action": "offer_help",
                "channel": "chat",
                "at": "2025-11-24T16:00:03.000Z",
            }
        ],
    }
    assert reply.body["scores"]["health"] == 75 and reply.body["scores"]["scored_at"].endswith("Z")
    assert state.recent_interventions[0]["at"] == NOW + 3  # the table's object is left as it was
    orjson.dumps(reply.body)  # JSON as it is
    assert user_reply("u9", None) == Reply(404, {"error": "unknown user"}, "unknown user")
    empty = user_reply("u0", UserState("u0")).body
    assert empty["scores"] is None and empty["state"]["last_event_time"] is None


def test_the_audit_record_follows_its_contract() -> None:
    reply = Reply(403, {"error": "x"}, "token 'crm-read' lacks scope 'admin' " + "y" * 300)
    record = audit_record(
        route=CRM_ROUTE.template,
        method="POST",
        user_id="u" * 300,
        scope="admin",
        caller="crm-read",
        reply=reply,
        at=NOW,
        audit_id="a-1",
    )
    assert list(record) == AUDIT_FIELDS
    assert record["schema"] == 1 and record["at"] == "2025-11-24T16:00:00.000Z"
    assert (record["route"], record["status"], record["result"]) == (
        "/api/v1/crm/{user_id}",
        403,
        "forbidden",
    )
    assert len(record["detail"]) == 200 and len(record["user_id"]) == 128


def test_results_of_statuses() -> None:
    got = {s: result_of(s) for s in (200, 202, 400, 401, 403, 404, 405, 413, 500, 503)}
    assert got == {
        200: "ok",
        202: "ok",
        400: "invalid",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "invalid",
        413: "invalid",
        500: "error",
        503: "error",
    }
    assert set(got.values()) == set(RESULTS)


def test_no_route_is_405_on_a_route_path_and_404_elsewhere() -> None:
    reply, route, user = no_route("DELETE", "/api/v1/users/u1")
    assert (reply.status, route, user, reply.headers) == (405, USER_ROUTE.template, "u1", {"Allow": "GET"})
    reply, route, user = no_route("GET", "/api/v1/users/u1/erasure")
    assert (reply.status, route, reply.headers["Allow"]) == (405, ERASURE_ROUTE.template, "POST")
    reply, route, user = no_route("GET", "/api/v1/users/u1/nothing")
    assert (reply.status, reply.result, route, user) == (404, "not_found", UNMATCHED, "")
    assert no_route("GET", "/api/v2/users/u1")[0].status == 404


def test_the_user_partition_is_the_producers_and_not_faust_table_routes() -> None:
    """The events topic is keyed by the raw id bytes, and the table's partitions are that topic's;
    Faust's table_route hashes the JSON-serialized key (with quotes), which differs for most users."""
    partitioner = DefaultPartitioner()
    users = [f"user-{i}" for i in range(1000)]
    all4 = [0, 1, 2, 3]
    assert all(user_partition(u, 4) == partitioner(u.encode(), all4, all4) for u in users)
    json_keyed = sum(user_partition(u, 4) != partitioner(orjson.dumps(u), all4, all4) for u in users)
    assert json_keyed > 600  # about 3 in 4


def test_the_owner_is_read_from_the_assignment() -> None:
    metadata = {
        "http://a:6066": {"forewarn-users-changelog": [0, 2]},
        "http://b:6066": {"forewarn-users-changelog": [1, 3], "other": [0]},
    }
    assert [owner_of(metadata, "forewarn-users-changelog", p) for p in range(4)] == [
        "http://a:6066",
        "http://b:6066",
        "http://a:6066",
        "http://b:6066",
    ]
    assert owner_of(metadata, "forewarn-users-changelog", 4) is None and owner_of({}, "x", 0) is None
    assert same_node("http://a:6066", "http://a:6066/") and not same_node("http://a:6066", "http://a:6067")


# --- the call handling, against stand-ins for Faust (no broker) -----------------------------------


@dataclass
class FakeTopic:
    name: str
    sent: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    fail: bool = False

    def get_topic_name(self) -> str:
        return self.name

    async def send(self, *, key: bytes | None, value: bytes, force: bool) -> Any:
        assert force  # never attached to an event being processed
        if self.fail:
            raise ConnectionError("broker down")
        self.sent.append((key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class FakeContent:
    def __init__(self, body: bytes) -> None:
        self.chunks = [body[i : i + 7] for i in range(0, len(body), 7)]

    async def read(self, size: int) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


def fake_request(method: str, path: str, token: str | None = None, body: bytes = b"", **headers: str) -> Any:
    all_headers = CIMultiDict(headers)
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    return SimpleNamespace(
        method=method,
        path=path,
        rel_url=URL(path),
        headers=all_headers,
        content=FakeContent(body),
        content_length=len(body),
        remote="10.0.0.9",
    )


class FakeHttpClient:
    """Sends a forwarded call to ``holder`` (an ``async (request) -> Answer``: another worker's
    :meth:`_Api.handle`, or a rogue's), keeping what it was sent."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, URL, dict[str, str]]] = []
        self.holder: Any = None

    def request(self, method: str, url: URL, *, headers: dict[str, str], timeout: Any, **options: Any) -> Any:
        assert options == {"allow_redirects": False}
        self.calls.append((method, url, headers))
        holder = self.holder

        class Context:
            async def __aenter__(self) -> Any:
                answer = await holder(fake_request(method, url.raw_path_qs, **headers))
                return SimpleNamespace(
                    status=answer.status,
                    headers=CIMultiDict(answer.headers),
                    content=FakeContent(answer.body),
                    content_length=len(answer.body),
                )

            async def __aexit__(self, *exc: Any) -> None:
                return None

        return Context()


HERE, THERE = "http://worker-a:6066", "http://worker-b:6066"
CHANGELOG = "forewarn-users-changelog"


SECRET = b"the cluster secret of the tests"


def fake_api(
    tmp_path: Path, states: dict[str, UserState], owned: set[int], here: str = HERE, secret: bytes = SECRET
) -> _Api:
    """A worker at ``here`` holding the ``owned`` partitions (the worker at the other URL the rest)."""
    path = tmp_path / "tokens.json"
    path.write_text(tokens_file_text([token_entry(n, TOKENS[n], SCOPES[n]) for n in TOKENS]))
    settings = Settings.from_env({}, api_tokens_file=str(path), partitions=4)
    there = THERE if here == HERE else HERE
    metadata = {here: {CHANGELOG: sorted(owned)}, there: {CHANGELOG: sorted({0, 1, 2, 3} - owned)}}
    app = SimpleNamespace(
        rebalancing=False,
        in_recovery=False,
        router=SimpleNamespace(table_metadata=lambda name: metadata if name == "users" else {}),
        conf=SimpleNamespace(canonical_url=URL(here)),
        http_client=FakeHttpClient(),
    )
    users = SimpleNamespace(
        name="users",
        changelog_topic=SimpleNamespace(get_topic_name=lambda: CHANGELOG),
        get=states.get,
    )
    topics = {source: FakeTopic(source) for source in ("preferences", "crm", "erasure")}
    return _Api(app, settings, users, topics, FakeTopic("api_audit"), secret)


def audited(api: _Api) -> list[dict[str, Any]]:
    return [orjson.loads(value) for _, value in api.audit_topic.sent]


# Status of each route for each caller: written out from the scopes, not computed.
EXPECTED_STATUS = {
    USER_ROUTE: {"crm-read": 200, "crm-write": 403, "ops-admin": 200, None: 401, WRONG: 401},
    PREFERENCES_ROUTE: {"crm-read": 403, "crm-write": 202, "ops-admin": 202, None: 401, WRONG: 401},
    ERASURE_ROUTE: {"crm-read": 403, "crm-write": 403, "ops-admin": 202, None: 401, WRONG: 401},
    CRM_ROUTE: {"crm-read": 403, "crm-write": 403, "ops-admin": 202, None: 401, WRONG: 401},
}
BODIES = {
    USER_ROUTE: b"",
    PREFERENCES_ROUTE: b'{"opt_out": true}',
    ERASURE_ROUTE: b'{"request_id": "req-1"}',
    CRM_ROUTE: b'{"tier": "gold"}',
}


def path_of(route, user: str) -> str:
    return route.template.replace("{user_id}", user)


async def test_every_call_is_answered_and_audited_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user = "u9"
    api = fake_api(tmp_path, {user: known_user()}, owned={0, 1, 2, 3})
    calls = []
    for route, statuses in EXPECTED_STATUS.items():
        for who, status in statuses.items():
            token = TOKENS.get(who, who) if who else None
            request = fake_request(route.method, path_of(route, user), token, BODIES[route])
            response = await api.handle(request)
            assert response.status == status, (route.template, who)
            calls.append((route, who, status, response))
    records = audited(api)
    assert len(records) == len(calls) == 20
    for (route, who, status, response), record in zip(calls, records, strict=True):
        caller = who if who in TOKENS else ""
        assert (record["caller"], record["method"], record["route"], record["user_id"]) == (
            caller,
            route.method,
            route.template,
            user,
        )
        assert (record["scope"], record["status"]) == (route.scope, status)
        assert record["result"] == {200: "ok", 202: "ok", 401: "unauthorized", 403: "forbidden"}[status]
        body = orjson.loads(response.body)
        if status == 401:
            assert response.headers["WWW-Authenticate"].startswith('Bearer realm="forewarn"')
        if status == 403:
            assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
            assert body == {"error": f"token {who!r} lacks scope {route.scope!r}"}
        if status == 200:
            assert body["user_id"] == user and body["state"]["preferences"]["timezone"] == "Asia/Tokyo"
    assert all(key == b"u9" for key, _ in api.audit_topic.sent)
    # Allowed writes produced one event each, refused ones nothing.
    produced = {name: len(topic.sent) for name, topic in api.topics.items()}
    assert produced == {"preferences": 2, "crm": 1, "erasure": 1}
    erasure = orjson.loads(api.topics["erasure"].sent[0][1])
    assert erasure["requested_by"] == "ops-admin" and erasure["request_id"] == "req-1"
    # No token in any log record, response or audit record.
    shown = [r.getMessage() for r in caplog.records] + [c[3].body.decode() for c in calls]
    shown += [value.decode() for _, value in api.audit_topic.sent]
    for secret in [*TOKENS.values(), WRONG]:
        assert not any(secret in text for text in shown)


async def test_errors_are_answered_and_audited_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    api = fake_api(tmp_path, {}, owned={0, 1, 2, 3})
    write, read = TOKENS["crm-write"], TOKENS["crm-read"]
    cases = [
        (fake_request("GET", "/api/v1/users/nobody", read), 404, "not_found"),
        (fake_request("PUT", "/api/v1/users/u1/preferences", write, b'{"opt_out": 1}'), 400, "invalid"),
        (fake_request("PUT", "/api/v1/users/u1/preferences", write, b"x" * 70000), 413, "invalid"),
        (fake_request("GET", "/api/v1/users/" + "x" * 200, read), 400, "invalid"),
        (fake_request("DELETE", "/api/v1/users/u1", read), 405, "invalid"),
        (fake_request("GET", "/api/v1/nothing", read), 404, "not_found"),
    ]
    for request, status, result in cases:
        response = await api.handle(request)
        assert response.status == status, request.path
        assert audited(api)[-1]["status"] == status and audited(api)[-1]["result"] == result
    records = audited(api)
    assert len(records) == len(cases)
    assert records[1]["detail"] == "wrong_type: field 'opt_out' must be true or false, got int"
    assert (records[4]["route"], records[4]["user_id"], records[4]["scope"]) == (
        USER_ROUTE.template,
        "u1",
        "",
    )
    assert (records[5]["route"], records[5]["user_id"], records[5]["caller"]) == (UNMATCHED, "", "")
    assert records[3]["user_id"] == "x" * 128
    assert api.topics["preferences"].sent == []

    # The broker does not take the event: 503, audited as an error.
    api.topics["crm"].fail = True
    admin = TOKENS["ops-admin"]
    response = await api.handle(fake_request("POST", "/api/v1/crm/u1", admin, b'{"tier": "a"}'))
    assert response.status == 503 and response.headers == {"Retry-After": "1"}
    assert audited(api)[-1]["result"] == "error" and audited(api)[-1]["caller"] == "ops-admin"
    # The audit cannot be written: the call's answer is not given.
    api.audit_topic.fail = True
    response = await api.handle(fake_request("GET", "/api/v1/users/u1", read))
    assert response.status == 503 and orjson.loads(response.body) == {
        "error": "the audit is unavailable; retry"
    }
    # A bug answers 500 and logs a traceback, never the header.
    api.audit_topic.fail = False
    api.users.get = lambda key: 1 / 0
    response = await api.handle(fake_request("GET", "/api/v1/users/u1", read))
    assert response.status == 500 and audited(api)[-1]["result"] == "error"
    assert any("ZeroDivisionError" in (r.exc_text or "") for r in caplog.records)
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "API GET /api/v1/users/{user_id} failed" in logged
    for secret in TOKENS.values():
        assert secret not in logged


def user_on(partitions: set[int], prefix: str) -> str:
    return next(u for i in range(100) if user_partition(u := f"{prefix}{i}", 4) in partitions)


READER = Caller("crm-read", frozenset({"read:scores"}))


async def test_a_read_for_another_workers_user_is_forwarded_signed_and_audited_by_both(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user = "u5"
    assert user_partition(user, 4) == 3
    a = fake_api(tmp_path, {}, owned={0, 1})
    b = fake_api(tmp_path, {user: known_user()}, owned={2, 3}, here=THERE)
    a.app.http_client.holder = b.handle
    read = TOKENS["crm-read"]
    response = await a.handle(fake_request("GET", f"/api/v1/users/{user}", read))
    assert response.status == 200 and orjson.loads(response.body)["user_id"] == user
    assert SIGNATURE_HEADER not in response.headers  # the client gets the answer, not the workers' signature
    [(method, url, headers)] = a.app.http_client.calls
    assert (method, str(url)) == ("GET", f"{THERE}/api/v1/users/{user}")
    # The caller's name and scopes travel, never the token.
    assert "Authorization" not in headers and not any(read in value for value in headers.values())
    assert (headers["X-Forewarn-Caller"], headers["X-Forewarn-Scopes"]) == ("crm-read", "read:scores")
    request_id = headers["X-Forewarn-Request-Id"]
    # Both workers audit it, told apart by the detail, joined by the request id.
    [first], [held] = audited(a), audited(b)
    assert (first["caller"], first["status"], first["detail"]) == (
        "crm-read",
        200,
        f"{FORWARDED_TO} {THERE} request {request_id}",
    )
    assert (held["caller"], held["status"], held["detail"]) == (
        "crm-read",
        200,
        f"{FORWARDED_FROM} {HERE} request {request_id}",
    )
    assert (
        first["route"] == held["route"] == USER_ROUTE.template and first["user_id"] == held["user_id"] == user
    )

    # The holder's refusals reach the client, with their detail in both records.
    nobody = user_on({2, 3}, "nobody-")
    response = await a.handle(fake_request("GET", f"/api/v1/users/{nobody}", read))
    assert response.status == 404 and orjson.loads(response.body) == {"error": "unknown user"}
    assert audited(a)[-1]["detail"].endswith(": unknown user") and audited(b)[-1]["result"] == "not_found"
    b.app.rebalancing = True
    response = await a.handle(fake_request("GET", f"/api/v1/users/{user}", read))
    assert response.status == 503 and response.headers == {"Retry-After": "1"}
    b.app.rebalancing = False
    # Refused before forwarding, and audited only where it was refused.
    response = await a.handle(fake_request("GET", f"/api/v1/users/{user}", WRONG))
    assert response.status == 401 and len(a.app.http_client.calls) == 3 and len(audited(b)) == 3
    # A forwarded call is never forwarded again: a does not hold the user (b's assignment is stale).
    stale = Forward(READER, "GET", f"/api/v1/users/{user}", THERE, HERE, "5e" * 16, int(time.time() * 1000))
    response = await a.handle(fake_request("GET", stale.path, **stale.headers(SECRET)))
    assert response.status == 503 and len(a.app.http_client.calls) == 3
    assert audited(a)[-1]["detail"] == (
        f"{FORWARDED_FROM} {THERE} request {'5e' * 16}: the user's partition is moving between workers; retry"
    )
    # While the group rebalances, or before any assignment, reads wait.
    a.app.rebalancing = True
    response = await a.handle(fake_request("GET", "/api/v1/users/u1", read))
    assert response.status == 503 and audited(a)[-1]["result"] == "error"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert not any(token in logged for token in TOKENS.values())


async def test_a_worker_takes_no_forward_that_a_worker_of_the_deployment_did_not_sign(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user = "u5"
    b = fake_api(tmp_path, {user: known_user()}, owned={2, 3}, here=THERE)
    path = f"/api/v1/users/{user}"
    good = Forward(READER, "GET", path, HERE, THERE, "ab" * 16, int(time.time() * 1000))
    signed = good.headers(SECRET)
    cases = {
        # The old forward: a marker and the caller's own token. The token is not a way in.
        "missing": {ORIGIN_HEADER: HERE, "Authorization": f"Bearer {TOKENS['ops-admin']}"},
        "bad signature": good.headers(b"a secret that is not the cluster's"),
        "sent more than 30 s": replace(good, sent_at=good.sent_at - 60_000).headers(SECRET),
        "sent to another worker": replace(good, target="http://rogue:6066").headers(SECRET),
        # Scopes or caller changed under a genuine signature.
        "bad signature ": {**signed, "X-Forewarn-Scopes": "admin"},
        "bad signature  ": {**signed, "X-Forewarn-Caller": "ops-admin"},
        "malformed header": {**signed, "X-Forewarn-Request-Id": "not-hex"},
    }
    for why, headers in cases.items():
        response = await b.handle(fake_request("GET", path, **headers))
        assert response.status == 401, why
        assert SIGNATURE_HEADER not in response.headers
        record = audited(b)[-1]
        assert (record["caller"], record["result"], record["route"]) == (
            "",
            "unauthorized",
            USER_ROUTE.template,
        )
        assert record["detail"].startswith(f"forward refused: {why.strip()}"), record["detail"]
    # Signed for another path (another user): refused.
    response = await b.handle(fake_request("GET", "/api/v1/users/someone-else", **signed))
    assert response.status == 401 and audited(b)[-1]["detail"] == "forward refused: bad signature"
    # The genuine forward is taken, once.
    response = await b.handle(fake_request("GET", path, **signed))
    assert response.status == 200 and SIGNATURE_HEADER in response.headers
    response = await b.handle(fake_request("GET", path, **signed))
    assert response.status == 401 and audited(b)[-1]["detail"] == "forward refused: replayed"
    # Only reads are forwarded: a signed write is refused (nothing produced).
    write = Forward(ADMIN, "PUT", f"{path}/preferences", HERE, THERE, "cd" * 16, good.sent_at)
    response = await b.handle(fake_request("PUT", write.path, b'{"opt_out": true}', **write.headers(SECRET)))
    assert response.status == 400 and b.topics["preferences"].sent == []
    assert len(audited(b)) == len(cases) + 4
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert TOKENS["ops-admin"] not in logged


def test_a_forward_id_is_taken_once_while_a_forward_could_be_fresh() -> None:
    guard = ReplayGuard()
    assert guard.first_time("a" * 32, 1000.0) and not guard.first_time("a" * 32, 1059.0)
    assert guard.first_time("b" * 32, 1059.0)
    # Past twice the skew a forward is refused as stale anyway: its id is forgotten.
    assert guard.first_time("a" * 32, 1061.0) and set(guard.seen) == {"a" * 32, "b" * 32}
    guard.first_time("c" * 32, 1120.0)
    assert set(guard.seen) == {"a" * 32, "c" * 32}


async def test_an_answer_not_signed_for_the_forward_is_not_relayed(tmp_path: Path) -> None:
    """A rogue member of the group, named the user's holder by the assignment, gets no token and its
    answers do not reach the client: an unsigned one, one signed under another secret, the forward's own
    signature reflected back, a genuine holder's answer to another forward."""
    user = "u5"
    a = fake_api(tmp_path, {}, owned={0, 1})
    holder = fake_api(tmp_path, {user: known_user()}, owned={2, 3}, here=THERE)
    forged = b'{"schema": 1, "user_id": "u5", "forged": true}'
    earlier = await holder.handle(
        fake_request(
            "GET",
            f"/api/v1/users/{user}",
            **Forward(
                READER, "GET", f"/api/v1/users/{user}", HERE, THERE, "ee" * 16, int(time.time() * 1000)
            ).headers(SECRET),
        )
    )
    received: list[dict[str, str]] = []

    def rogue(answer_of):
        async def answer(request: Any) -> Answer:
            received.append(dict(request.headers))
            return answer_of(request)

        return answer

    rogues = [
        lambda request: Answer(200, forged),
        lambda request: Answer(200, forged).signed(
            b"the rogue's own secret", request.headers["X-Forewarn-Request-Id"]
        ),
        lambda request: Answer(200, forged, {SIGNATURE_HEADER: request.headers[SIGNATURE_HEADER]}),
        lambda request: earlier,
        lambda request: Answer(200, b"[]").signed(SECRET, request.headers["X-Forewarn-Request-Id"]),
    ]
    for index, answer_of in enumerate(rogues):
        a.app.http_client.holder = rogue(answer_of)
        response = await a.handle(fake_request("GET", f"/api/v1/users/{user}", TOKENS["crm-read"]))
        assert (response.status, orjson.loads(response.body)) == (
            502,
            {"error": "the worker holding the user's partition gave no valid answer"},
        ), index
        record = audited(a)[-1]
        assert (record["caller"], record["status"], record["result"]) == ("crm-read", 502, "error")
        assert record["detail"].startswith(f"{FORWARDED_TO} {THERE} request ")
        assert record["detail"].endswith(": no valid answer")
    assert len(received) == len(rogues) and len(audited(a)) == len(rogues)
    assert not any(
        token in value for headers in received for value in headers.values() for token in TOKENS.values()
    )
    assert not any("Authorization" in headers for headers in received)


async def raw_http(port: int, data: bytes) -> tuple[int, bytes]:
    """Send ``data`` as it is; the status and body of the answer (the connection is closed after it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


FAUST_PAGES = [
    "/",
    "/router/",
    "/router/topics",
    "/router/users/",
    "/table/users/u9/",
    "/stats/",
    "/assignment/",
    "/graph/",
    "/performance/",
]


async def test_the_http_server_audits_what_its_parser_refuses_and_serves_only_the_api(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker's HTTP server (the real aiohttp one, on a port): oversized, malformed or strange
    requests are answered without quoting them and audited; nothing but the API is served."""
    caplog.set_level(logging.DEBUG)
    api = fake_api(tmp_path, {"u9": known_user()}, owned={0, 1, 2, 3})
    port = free_port()
    server = ApiServer(api, "127.0.0.1", port)
    await server.start()
    token = TOKENS["crm-read"]
    try:

        def request(line: str, *headers: str) -> bytes:
            return "\r\n".join([line, "Host: worker", *headers, "Connection: close", "", ""]).encode()

        answers = {
            "fine": await raw_http(
                port, request("GET /api/v1/users/u9 HTTP/1.1", f"Authorization: Bearer {token}")
            ),
            "long header": await raw_http(
                port, request("GET /api/v1/users/u9 HTTP/1.1", f"Authorization: Bearer {token}{'x' * 9000}")
            ),
            "long URL": await raw_http(port, request(f"GET /api/v1/users/{token}{'x' * 9000} HTTP/1.1")),
            "TRACE": await raw_http(
                port, request("TRACE /api/v1/users/u9 HTTP/1.1", f"Authorization: Bearer {token}")
            ),
            "PROPFIND": await raw_http(port, request("PROPFIND /api/v1/users/u9 HTTP/1.1")),
            "unknown method": await raw_http(port, request("FROBNICATE /api/v1/users/u9/x HTTP/1.1")),
            "bad method": await raw_http(port, request(f"G(E)T /api/v1/users/{token} HTTP/1.1")),
            "bad request line": await raw_http(port, f"{token} nonsense\r\n\r\n".encode()),
            "bad header": await raw_http(port, request("GET /api/v1/users/u9 HTTP/1.1", f"{token}")),
        }
        pages = [await raw_http(port, request(f"GET {page} HTTP/1.1")) for page in FAUST_PAGES]
    finally:
        await server.stop()
    statuses = {name: status for name, (status, _) in answers.items()}
    assert statuses == {
        "fine": 200,
        "long header": 400,
        "long URL": 400,
        "TRACE": 405,
        "PROPFIND": 405,
        "unknown method": 400,  # aiohttp's parser knows a fixed set of methods
        "bad method": 400,
        "bad request line": 400,
        "bad header": 400,
    }
    assert orjson.loads(answers["long header"][1]) == {
        "error": "a request line or header is longer than 8190 bytes"
    }
    assert all(status == 404 for status, _ in pages)
    records = audited(api)  # one per call under /api/ or unparsed; none for the pages outside /api/
    assert [(r["method"], r["route"], r["status"]) for r in records] == [
        ("GET", USER_ROUTE.template, 200),
        ("", UNPARSED, 400),
        ("", UNPARSED, 400),
        ("TRACE", USER_ROUTE.template, 405),
        ("PROPFIND", USER_ROUTE.template, 405),
        ("", UNPARSED, 400),
        ("", UNPARSED, 400),
        ("", UNPARSED, 400),
        ("", UNPARSED, 400),
    ]
    shown = [body.decode(errors="replace") for _, body in answers.values()]
    shown += [f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records]
    shown += [value.decode() for _, value in api.audit_topic.sent]
    assert not any(token in text for text in shown)


# --- end to end: real workers on the embedded broker ------------------------------------------------


def call(
    port: int, method: str, path: str, token: str | None = None, body: Any = None, **headers: str
) -> tuple[int, dict, Any]:
    """One HTTP call: status, headers, JSON body."""
    data = None if body is None else (body if isinstance(body, bytes) else orjson.dumps(body))
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method, headers=headers
    )
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, headers, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        status, headers, raw = error.code, dict(error.headers), error.read()
    try:
        return status, headers, orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return status, headers, raw.decode(errors="replace")


class Client:
    """Calls a worker's API and remembers each call, to check the audit against."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.calls: list[tuple[str, str, str, int]] = []  # caller, method, route template, status

    def __call__(
        self, method: str, route, user: str, who: str | None, body: Any = None, path: str = ""
    ) -> Any:
        token = TOKENS.get(who, who) if who else None
        status, headers, answer = call(self.port, method, path or path_of(route, user), token, body)
        # A call no route takes (another method, no such path) is answered without looking at its token.
        routed = route is not None and route.method == method
        caller = who if who in TOKENS and routed else ""
        self.calls.append((caller, method, route.template if route else UNMATCHED, status))
        return status, headers, answer

    def until(self, route, user: str, who: str, done, timeout: float = 30.0) -> Any:
        """GET until ``done(status, answer)``, by a deadline."""
        deadline = time.monotonic() + timeout
        while True:
            status, _, answer = self("GET", route, user, who)
            if done(status, answer) or time.monotonic() > deadline:
                return status, answer
            time.sleep(0.2)


def write_tokens(path: Path) -> Path:
    path.write_text(tokens_file_text([token_entry(name, TOKENS[name], SCOPES[name]) for name in TOKENS]))
    return path


def page_view(user: str, now_ms: int) -> tuple[str, bytes, bytes]:
    event = {
        "event_id": f"{user}-view",
        "event_type": "page_view",
        "event_time": now_ms,
        "user_id": user,
        "session_id": f"{user}-s",
        "page": "/home",
    }
    return "clickstream", user.encode(), orjson.dumps(event)


@pytest.mark.integration
def test_api_end_to_end(broker, tmp_path: Path, start_worker: StartWorker) -> None:
    tokens_file = write_tokens(tmp_path / "api-tokens.json")
    env = worker_env(
        broker.bootstrap,
        tmp_path,
        FOREWARN_API_TOKENS_FILE=str(tokens_file),
        FOREWARN_PSEUDONYM_KEY_FILE=str(tmp_path / "pseudonym.key"),
    )
    worker = start_worker(env)
    known, prefs, prefs_admin, erased, crm = "api-known", "api-pref", "api-pref-admin", "api-erase", "api-crm"
    try:
        client = Client(worker.web_port)
        # Before any event, the user is unknown.
        assert client("GET", USER_ROUTE, known, "crm-read")[0] == 404
        asyncio.run(produce(broker.bootstrap, [page_view(known, int(time.time() * 1000))]))
        status, view = client.until(USER_ROUTE, known, "crm-read", lambda s, a: s == 200)
        assert status == 200 and view["state"]["events_seen"] == 1 and view["state"]["sessions"] == 1

        # Every route, with each token, no token and a wrong one.
        answers = {}
        for who in ("crm-read", "crm-write", "ops-admin", None, WRONG):
            answers["GET", who] = client("GET", USER_ROUTE, known, who)
            answers["PUT", who] = client(
                "PUT",
                PREFERENCES_ROUTE,
                prefs if who == "crm-write" else prefs_admin,
                who,
                {"opt_out": True, "channels": {"email": False}, "timezone": "Europe/Berlin"},
            )
            answers["ERASE", who] = client("POST", ERASURE_ROUTE, erased, who, {"request_id": "req-e2e"})
            answers["CRM", who] = client(
                "POST", CRM_ROUTE, crm, who, {"tier": "gold", "lifetime_value": 99.5, "segments": ["vip"]}
            )
        expected = {
            "GET": EXPECTED_STATUS[USER_ROUTE],
            "PUT": EXPECTED_STATUS[PREFERENCES_ROUTE],
            "ERASE": EXPECTED_STATUS[ERASURE_ROUTE],
            "CRM": EXPECTED_STATUS[CRM_ROUTE],
        }
        got = {(kind, who): answer[0] for (kind, who), answer in answers.items()}
        assert got == {(kind, who): s for kind, statuses in expected.items() for who, s in statuses.items()}
        assert answers["GET", None][1]["WWW-Authenticate"] == 'Bearer realm="forewarn"'
        assert (
            answers["GET", WRONG][1]["WWW-Authenticate"] == 'Bearer realm="forewarn", error="invalid_token"'
        )
        assert answers["ERASE", "ops-admin"][2]["request_id"] == "req-e2e"

        # Refusals of the shape of a call.
        assert client("PUT", PREFERENCES_ROUTE, prefs, "crm-write", {"timezone": "Mars/Olympus"})[0] == 400
        assert client("DELETE", USER_ROUTE, known, "crm-read")[0] == 405
        assert client("GET", None, "", "crm-read", path="/api/v1/everything")[0] == 404
        # Methods no route has, and requests the HTTP parser refuses, are answered and audited too; the
        # token in an oversized header is neither logged nor echoed.
        assert [client(method, USER_ROUTE, known, "crm-read")[0] for method in ("TRACE", "PROPFIND")] == [
            405
        ] * 2
        oversized = call(worker.web_port, "GET", path_of(USER_ROUTE, known), TOKENS["crm-read"] + "x" * 9000)
        assert oversized[0] == 400 and TOKENS["crm-read"] not in str(oversized[2])
        malformed = asyncio.run(raw_http(worker.web_port, f"{TOKENS['ops-admin']} /api/\r\n\r\n".encode()))
        assert malformed[0] == 400 and TOKENS["ops-admin"].encode() not in malformed[1]
        client.calls += [("", "", UNPARSED, 400)] * 2
        # Faust's own pages are not served (the cluster's URLs, partitions, topics, any user's state).
        assert [call(worker.web_port, "GET", page)[0] for page in FAUST_PAGES] == [404] * len(FAUST_PAGES)

        # The preferences change reaches the user's state, read back through the API.
        status, view = client.until(
            USER_ROUTE, prefs, "crm-read", lambda s, a: s == 200 and a["state"]["preferences"]["opt_out"]
        )
        assert status == 200, view
        assert view["state"]["preferences"] | {"updated_at": None} == {
            "opt_out": True,
            "channels": {"email": False},
            "timezone": "Europe/Berlin",
            "updated_at": None,
        }
        metrics_text = worker.metrics()

        # The events produced: exactly those accepted, with the ids the API answered.
        produced = {
            topic: asyncio.run(consume_all(broker.bootstrap, topic, until=n, timeout=20, settle=1.0))
            for topic, n in (("preferences", 2), ("erasure_requests", 1), ("crm_updates", 1))
        }
        audit = asyncio.run(consume_all(broker.bootstrap, "api_audit", until=len(client.calls), settle=2.0))
        time.sleep(1.5)  # two sink flushes; the graceful stop stores and commits the rest
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]

    assert sorted(orjson.loads(m.value)["event_id"] for m in produced["preferences"]) == sorted(
        answers["PUT", who][2]["event_id"] for who in ("crm-write", "ops-admin")
    )
    [erasure] = [orjson.loads(m.value) for m in produced["erasure_requests"]]
    assert (erasure["user_id"], erasure["requested_by"], erasure["request_id"]) == (
        erased,
        "ops-admin",
        "req-e2e",
    )
    [crm_event] = [orjson.loads(m.value) for m in produced["crm_updates"]]
    assert crm_event["event_id"] == answers["CRM", "ops-admin"][2]["event_id"] and crm_event["tier"] == "gold"

    # One audit record per call, with the right caller, route, status and result.
    records = [orjson.loads(m.value) for m in audit]
    assert len(records) == len(client.calls), (len(records), len(client.calls))
    assert Counter((r["caller"], r["method"], r["route"], r["status"]) for r in records) == Counter(
        client.calls
    )
    assert len({r["audit_id"] for r in records}) == len(records)
    for message, record in zip(audit, records, strict=True):
        assert list(record) == AUDIT_FIELDS
        assert record["result"] == result_of(record["status"])
        assert message.key == (record["user_id"].encode() or None)
    results = Counter(r["result"] for r in records)
    assert results["unauthorized"] == 8 and results["forbidden"] == 6 and results["invalid"] == 6
    # ... and in ClickHouse, one row per call, the subjects pseudonymised by the sink. The calls about
    # the erased user (all on the erasure route) are left out: whether the erasure also removes the
    # audit of calls about the user is the privacy part's decision.
    stored = rows(
        env["FOREWARN_CLICKHOUSE_DSN"], "SELECT caller, method, route, status, user_id FROM api_audit"
    )
    kept = [call for call in client.calls if call[2] != ERASURE_ROUTE.template]
    assert Counter(row[:4] for row in stored if row[2] != ERASURE_ROUTE.template) == Counter(kept)
    assert len(kept) == len(client.calls) - 5
    assert not {row[4] for row in stored} & {known, prefs, prefs_admin, erased, crm}

    # No token in any record, event or log line of the worker.
    log_text = worker.log_text()
    everything = [m.value.decode() for m in audit] + [
        m.value.decode() for ms in produced.values() for m in ms
    ]
    for secret in [*TOKENS.values(), WRONG]:
        assert not any(secret in text for text in everything) and secret not in log_text
    assert 'forewarn_api_requests_total{route="/api/v1/crm/{user_id}",status="202"} 1.0' in metrics_text
    assert 'forewarn_api_requests_total{route="/api/v1/users/{user_id}",status="401"} 2.0' in metrics_text


@pytest.mark.integration
def test_reads_are_forwarded_to_the_worker_holding_the_user(broker, tmp_path: Path) -> None:
    """Two workers share the partitions; each answers for every user, forwarding to the other (signed,
    without the token) the users it does not hold, and both audit a forwarded call. Then a rogue member
    joins the group: the reads it is named holder of reach it with no token, its forged answers are not
    relayed (502) and the workers audit them; a forward the test sends without the secret is refused."""
    tokens_file = write_tokens(tmp_path / "api-tokens.json")
    # Users on every partition of the 4, so that each worker holds some and forwards some.
    users = [f"fw-user-{i}" for i in range(12)]
    assert {user_partition(u, 4) for u in users} == {0, 1, 2, 3}
    workers = worker_group(broker.bootstrap, tmp_path, ["a", "b"], FOREWARN_API_TOKENS_FILE=str(tokens_file))
    rogue = rogue_worker(broker.bootstrap, tmp_path, FOREWARN_API_TOKENS_FILE=str(tokens_file))
    a = workers[0]
    try:
        for worker in workers:
            worker.start()
        asyncio.run(produce(broker.bootstrap, [page_view(u, int(time.time() * 1000)) for u in users]))
        clients = [Client(worker.web_port) for worker in workers]
        for user in users:  # through worker a, once the group has settled and the events are in
            status, view = clients[0].until(USER_ROUTE, user, "crm-read", lambda s, a: s == 200, timeout=60)
            assert status == 200 and view["user_id"] == user
        answers = [client("GET", USER_ROUTE, user, "crm-read") for client in clients for user in users]
        refused = [client("GET", USER_ROUTE, user, WRONG) for client in clients for user in users[:4]]
        metrics_text = [worker.metrics() for worker in workers]
        held_by_a = next(user for user in users if user_partition(user, 4) in assigned(a, "active"))
        # The old way of forwarding, a marker and the caller's token, is refused (and audited).
        unsigned = call(
            a.web_port, "GET", path_of(USER_ROUTE, held_by_a), TOKENS["ops-admin"], **{ORIGIN_HEADER: "x"}
        )
        assert unsigned[0] == 401, unsigned
        clients[0].calls.append(("", "GET", USER_ROUTE.template, 401))

        # A rogue joins the group, and b leaves: the assignment is sticky (a member keeps what it
        # holds up to its share), so a keeps its partitions and the rogue is given b's.
        rogue.start()
        workers[1].stop()
        taken = until(lambda: assigned(rogue, "active"), 60, "the rogue to be assigned partitions")
        victims = [user for user in users if user_partition(user, 4) in taken]
        forged = []
        for user in victims:  # once a acts on the new assignment: 502
            deadline = time.monotonic() + 30
            while (answer := clients[0]("GET", USER_ROUTE, user, "crm-read"))[0] != 502:
                forged += [answer] if "forged" in str(answer[2]) else []
                assert time.monotonic() < deadline, answer
                time.sleep(0.2)
            assert answer[2] == {"error": "the worker holding the user's partition gave no valid answer"}
        calls = clients[0].calls + clients[1].calls
        audit = asyncio.run(consume_all(broker.bootstrap, "api_audit", until=len(calls), settle=2.0))
        events = asyncio.run(
            read_until(broker.bootstrap, "forewarn-events", lambda ms: len(envelope_events(ms)) >= len(users))
        )
    finally:
        rogue.stop(signal.SIGKILL)  # nothing of it to keep
        for worker in workers:
            worker.stop()

    assert forged == []  # no forged answer reached a client, whatever its status
    assert all(
        status == 200 and answer["user_id"] == user
        for (status, _, answer), user in zip(answers, users * 2, strict=True)
    )
    assert all(status == 401 for status, _, _ in refused)
    # Each worker forwarded some reads and answered some itself.
    for text in metrics_text:
        forwarded = [line for line in text.splitlines() if line.startswith("forewarn_api_forwarded_total{")]
        assert forwarded and float(forwarded[0].rsplit(" ", 1)[1]) > 0, forwarded
        assert 'forewarn_api_requests_total{route="/api/v1/users/{user_id}",status="200"}' in text
    # The rogue received reads, never a token or an Authorization header.
    received = [orjson.loads(line) for line in (tmp_path / "rogue-requests.jsonl").read_bytes().splitlines()]
    assert received and all("Authorization" not in r["headers"] for r in received)
    assert not any(token in str(r) for r in received for token in TOKENS.values())
    # One record per call where it came in, and one more where a forwarded call was answered, with the
    # request id joining the two; the rogue's 502s are audited where they came in.
    records = [orjson.loads(m.value) for m in audit]
    first = [r for r in records if not r["detail"].startswith(FORWARDED_FROM)]
    held = {r["detail"].split(" request ")[1].split(":")[0]: r for r in records if r not in first}
    assert Counter((r["caller"], r["route"], r["status"]) for r in first) == Counter(
        (c[0], c[2], c[3]) for c in calls
    )
    rogue_url = f":{rogue.web_port} request "
    for record in first:
        if record["detail"].startswith(FORWARDED_TO) and rogue_url not in record["detail"]:
            request_id = record["detail"].split(" request ")[1].split(":")[0]
            assert (held[request_id]["caller"], held[request_id]["status"]) == (
                record["caller"],
                record["status"],
            )
    by_rogue = [r for r in first if rogue_url in r["detail"]]
    assert len(by_rogue) >= len(victims) and all(r["status"] == 502 for r in by_rogue)
    # The routing key is right: each user's events are on the partition the API computes.
    assert {event["user_id"]: m.partition for m in events for event in envelope_events([m])} == {
        u: user_partition(u, 4) for u in users
    }
    for worker in [*workers, rogue]:
        for secret in [*TOKENS.values(), WRONG]:
            assert secret not in worker.log_text()
