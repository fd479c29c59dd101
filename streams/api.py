"""The CRM/ERP API, served by every worker's Faust web server (setting ``web_port``).

Routes (``Authorization: Bearer <token>``, scopes in :mod:`streams.auth`; JSON in, JSON out):

=======  ====================================  =================  ==========================================
method   route                                 scope              answer
=======  ====================================  =================  ==========================================
GET      ``/api/v1/users/{user_id}``           read:scores        200 the user's view; 404 unknown user
PUT      ``/api/v1/users/{user_id}/preferences``  write:preferences  202 ``{"event_id"}``
POST     ``/api/v1/users/{user_id}/erasure``   admin              202 ``{"request_id", "event_id"}``
POST     ``/api/v1/crm/{user_id}``             admin              202 ``{"event_id"}``
=======  ====================================  =================  ==========================================

* **GET** answers ``{"schema": 1, "user_id", "scores", "state", "recent_interventions"}``: ``scores`` is
  the ``user_scores`` contract (:meth:`models.health.Scores.to_wire`) or null; ``state`` holds
  ``preferences`` (opt_out, channels, timezone, updated_at), ``subscriptions`` (by id: plan, status,
  renews_at, updated_at), ``crm`` (tier, lifetime_value, segments, updated_at), ``feedback_tags`` (tag ->
  time), ``sessions``, ``events_seen`` and ``last_event_time``; ``recent_interventions`` the latest ones
  (intervention_id, trigger, action, channel, at), newest last. Times are ISO 8601 UTC, null for never.
* **PUT preferences** takes ``{"opt_out"?, "channels"?, "timezone"?}`` (at least one). The body becomes a
  ``preferences_updated`` event (event_id a new UUID, event_time now) checked by
  :func:`streams.events.parse_event`, the one place events are validated, and those very bytes are
  produced to the ``preferences`` topic; the answer comes once the broker has acknowledged them. The
  change reaches the user's state through the pipeline, like any other preferences event (202, not 200).
* **POST erasure** takes ``{"request_id"?}`` (or no body; a UUID is made when absent): an
  ``erasure_requested`` event with ``requested_by`` the token's name, to ``erasure_requests``. Give
  your own ``request_id`` to retry safely.
* **POST crm** takes ``{"tier"?, "lifetime_value"?, "segments"?}`` (at least one): a ``crm_attributes``
  event to ``crm_updates``.
* Errors answer ``{"error": "<detail>"}``: 400 invalid body or user id (the validation's detail), 401
  with ``WWW-Authenticate``, 403, 404, 405 (a route, another method; ``Allow`` says which), 413 body over
  ``max_event_bytes``, 503 (``Retry-After``) while the worker rebalances or the broker does not answer.
  Unknown fields in a body are refused (400), not dropped: a misspelt field must not look accepted.

**Audit.** Every call under ``/api/``, allowed or refused (401s included), writes exactly one record to
the ``api_audit`` topic (setting ``topic_api_audit``), keyed by the subject user id, and the answer is
given only once the broker has acknowledged it (else 503). Record (schema 1)::

    {"schema": 1, "audit_id": "<uuid4>", "at": "2026-11-24T10:00:00.250Z", "caller": "crm-prod",
     "method": "PUT", "route": "/api/v1/users/{user_id}/preferences", "user_id": "u1",
     "scope": "write:preferences", "status": 202, "result": "ok", "detail": "event 6f1d..."}

``caller`` is the token's name (also when it lacks the scope: 403), "" when unauthenticated (401, or
no route); ``route`` the route template, never the raw path (``/api/{unmatched}`` for a path that is no
route); ``user_id`` the subject as given (at most 128 characters; "" when there is none): the ClickHouse
sink pseudonymises it; ``scope`` the scope the route requires ("" for no route); ``status`` the HTTP
status answered; ``result`` one of :data:`RESULTS` (``ok`` 2xx, ``unauthorized`` 401, ``forbidden``
403, ``not_found`` 404, ``invalid`` other 4xx, ``error`` 5xx); ``detail`` short (200 characters at
most). Tokens and ``Authorization`` headers never appear in a record, a response or a log line.

**Routing.** A user's state lives on the worker that holds their partition of the ``users`` table, the
partition of their id in the internal events topic (keyed by the raw id bytes). A GET reaching another
worker is forwarded over HTTP to the holder (its ``canonical_url``, from the group's assignment), with
the ``Authorization`` header and :data:`FORWARDED_HEADER`, and the holder's answer is relayed (status,
body, ``WWW-Authenticate``). Calls are authenticated before forwarding (a refused call never leaves the
first worker) and audited where they are finally handled: the holder audits a forwarded call, the
forwarding worker does not (unless the holder could not be reached: then it audits its own 503). A
forwarded call is never forwarded again: a holder that lost the partition meanwhile answers 503.
Faust's ``app.table_route`` is not used: it hashes the table's JSON-serialized key (``"u1"`` with
quotes), not the raw bytes the events topic is keyed by, so it would send most users' reads to the
wrong worker, and it relays neither the request body nor the response headers. Writes need no routing:
any worker produces them. Faust's unauthenticated ``/table/`` views are turned off (they would show any
user's state without a token).

>>> from streams.auth import Caller
>>> done = command(PREFERENCES_ROUTE, "u1", b'{"opt_out": true}', Caller("crm", frozenset()),
...                now=1764000000.0, new_id=lambda: "e-1")
>>> done.source, done.key, done.reply.status, done.reply.body
('preferences', b'u1', 202, {'event_id': 'e-1'})
>>> command(PREFERENCES_ROUTE, "u1", b'{"timezone": "Mars/Base"}', Caller("crm", frozenset()),
...         now=1764000000.0)
Traceback (most recent call last):
...
streams.api.ApiError: 400 invalid_value: field 'timezone' is not an IANA time zone
>>> record = audit_record(route=PREFERENCES_ROUTE.template, method="PUT", user_id="u1",
...     scope=PREFERENCES_ROUTE.scope, caller="crm", reply=done.reply, at=1764000000.0, audit_id="a-1")
>>> record["route"], record["status"], record["result"], record["at"]
('/api/v1/users/{user_id}/preferences', 202, 'ok', '2025-11-24T16:00:00.000Z')
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson
from aiokafka.partitioner import murmur2
from yarl import URL

from streams import metrics
from streams.auth import ADMIN, READ_SCORES, WRITE_PREFERENCES, Caller, Refusal, authorize, load_tokens
from streams.config import Settings
from streams.events import (
    CRM,
    ERASURE,
    FIELDS_BY_SOURCE,
    MAX_ID_LENGTH,
    PREFERENCES,
    SCHEMA_VERSION,
    InvalidEvent,
    check_identifier,
    parse_event,
    to_millis,
)
from streams.interventions import iso_time
from streams.state import UserState

log = logging.getLogger(__name__)

API_SCHEMA = 1
AUDIT_SCHEMA = 1
RESULTS = ("ok", "unauthorized", "forbidden", "invalid", "not_found", "error")
# Set on a call one worker forwards to another; a call carrying it is never forwarded again.
FORWARDED_HEADER = "X-Forewarn-Forwarded-By"
UNMATCHED = "/api/{unmatched}"  # the audit's route for a path under /api/ that is no route
MAX_DETAIL = 200
SEND_TIMEOUT = 15.0  # seconds to wait for the broker's acknowledgement before answering 503
FORWARD_TIMEOUT = 10.0
# What the catch-all view answers (404 or 405, audited); aiohttp answers other methods itself.
ANY_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Route:
    """One API route: ``source`` is the kind of event it produces (None: a read)."""

    method: str
    template: str
    scope: str
    source: str | None = None
    event_type: str = ""

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(self.template)))

    @property
    def body_fields(self) -> tuple[str, ...]:
        """What a caller may send: the event's fields, less those the server sets."""
        if self.source is None:
            return ()
        return tuple(
            name for name in FIELDS_BY_SOURCE[self.source][self.event_type] if name != "requested_by"
        )


USER_ROUTE = Route("GET", "/api/v1/users/{user_id}", READ_SCORES)
PREFERENCES_ROUTE = Route(
    "PUT", "/api/v1/users/{user_id}/preferences", WRITE_PREFERENCES, PREFERENCES, "preferences_updated"
)
ERASURE_ROUTE = Route("POST", "/api/v1/users/{user_id}/erasure", ADMIN, ERASURE, "erasure_requested")
CRM_ROUTE = Route("POST", "/api/v1/crm/{user_id}", ADMIN, CRM, "crm_attributes")
ROUTES = (USER_ROUTE, PREFERENCES_ROUTE, ERASURE_ROUTE, CRM_ROUTE)


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer: status, JSON body, headers, and the short detail the audit keeps."""

    status: int
    body: dict[str, Any]
    detail: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def result(self) -> str:
        return result_of(self.status)


class ApiError(Exception):
    """A call answered with an error status; ``detail`` is shown to the caller and audited."""

    def __init__(self, status: int, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {detail}")
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})

    def reply(self) -> Reply:
        return Reply(self.status, {"error": self.detail}, self.detail, self.headers)


@dataclass(frozen=True, slots=True)
class Command:
    """An event to produce (``value``: the bytes validated) and the answer once the broker has it."""

    source: str
    key: bytes
    value: bytes
    reply: Reply


def result_of(status: int) -> str:
    """The audit's ``result`` of an HTTP status."""
    if 200 <= status < 300:
        return "ok"
    return {401: "unauthorized", 403: "forbidden", 404: "not_found"}.get(
        status, "invalid" if 400 <= status < 500 else "error"
    )


def refused(refusal: Refusal) -> Reply:
    return Reply(
        refusal.status, {"error": refusal.detail}, refusal.detail, {"WWW-Authenticate": refusal.challenge}
    )


def unavailable(detail: str) -> ApiError:
    return ApiError(503, detail, {"Retry-After": "1"})


def check_user_id(user_id: str) -> str:
    """A user id from a path, checked as an event's ``user_id`` is (400 otherwise)."""
    try:
        return check_identifier("user_id", user_id)
    except InvalidEvent as error:
        raise ApiError(400, f"{error.reason}: {error.detail}") from None


def _iso(seconds: float | None) -> str | None:
    return iso_time(seconds) if seconds else None  # 0.0: never


def user_view(user_id: str, state: UserState) -> dict[str, Any]:
    """The GET answer for a known user (documented above)."""
    preferences, crm = state.preferences, state.crm
    return {
        "schema": API_SCHEMA,
        "user_id": user_id,
        "scores": None if state.scores is None else state.scores.to_wire(user_id),
        "state": {
            "preferences": {
                "opt_out": preferences.opt_out,
                "channels": dict(preferences.channels),
                "timezone": preferences.timezone,
                "updated_at": _iso(preferences.updated_at),
            },
            "subscriptions": {
                key: {
                    "plan": item.plan,
                    "status": item.status,
                    "renews_at": _iso(item.renews_at),
                    "updated_at": _iso(item.updated_at),
                }
                for key, item in state.subscriptions.items()
            },
            "crm": {
                "tier": crm.tier,
                "lifetime_value": crm.lifetime_value,
                "segments": list(crm.segments),
                "updated_at": _iso(crm.updated_at),
            },
            "feedback_tags": {tag: _iso(at) for tag, at in state.feedback_tags.items()},
            "sessions": state.sessions,
            "events_seen": state.events_seen,
            "last_event_time": _iso(state.last_event_time),
        },
        "recent_interventions": [{**item, "at": _iso(item["at"])} for item in state.recent_interventions],
    }


def user_reply(user_id: str, state: UserState | None) -> Reply:
    if state is None:
        return Reply(404, {"error": "unknown user"}, "unknown user")
    return Reply(200, user_view(user_id, state), "")


def read_body(raw: bytes, *, allow_empty: bool = False) -> dict[str, Any]:
    """A request body: a JSON object (400 otherwise); an empty body is ``{}`` when ``allow_empty``."""
    if not raw.strip() and allow_empty:
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


def command(
    route: Route,
    user_id: str,
    raw_body: bytes,
    caller: Caller,
    *,
    now: float,
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    max_bytes: int = 65536,
) -> Command:
    """The event a write route produces, validated by :func:`streams.events.parse_event` (400 with its
    detail otherwise)."""
    assert route.source is not None, route
    erasure = route.source == ERASURE
    body = read_body(raw_body, allow_empty=erasure)
    allowed = route.body_fields
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(unknown)[:80]}; allowed: {', '.join(allowed)}")
    nulls = sorted(name for name, value in body.items() if value is None)
    if nulls:  # the event contract reads null as absent: leave a field out to keep its value
        raise ApiError(400, f"field(s) {', '.join(nulls)} must not be null; leave them out instead")
    event_id = new_id()
    event: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "event_id": event_id,
        "event_type": route.event_type,
        "event_time": to_millis(now),
        "user_id": user_id,
        **body,
    }
    answer: dict[str, Any] = {"event_id": event_id}
    if erasure:
        event["request_id"] = body["request_id"] if "request_id" in body else new_id()
        event["requested_by"] = caller.name
        answer = {"request_id": event["request_id"], "event_id": event_id}
    elif not body:
        raise ApiError(400, f"nothing to update: give at least one of {', '.join(allowed)}")
    raw = orjson.dumps(event)
    try:
        parse_event(raw, route.source, max_bytes=max_bytes, now=now)
    except InvalidEvent as error:
        raise ApiError(400, f"{error.reason}: {error.detail}") from None
    detail = f"event {event_id}" + (f" request {event['request_id']}" if erasure else "")
    return Command(route.source, user_id.encode(), raw, Reply(202, answer, detail[:MAX_DETAIL]))


def no_route(method: str, path: str) -> tuple[Reply, str, str]:
    """What a call under /api/ that no route takes gets: the reply (405 when the path is a route's, with
    ``Allow``; 404 otherwise), the route template to audit and the subject user id."""
    matched = [(route, found) for route in ROUTES if (found := route.pattern.fullmatch(path))]
    if not matched:
        return Reply(404, {"error": "no such API route"}, "no such API route"), UNMATCHED, ""
    allow = ", ".join(sorted({route.method for route, _ in matched}))
    detail = f"method {method[:16]} not allowed; allowed: {allow}"
    route, found = matched[0]
    return Reply(405, {"error": detail}, detail, {"Allow": allow}), route.template, found["user_id"]


def audit_record(
    *,
    route: str,
    method: str,
    user_id: str,
    scope: str,
    caller: str,
    reply: Reply,
    at: float,
    audit_id: str,
) -> dict[str, Any]:
    """The audit record of one call (the contract is documented above)."""
    return {
        "schema": AUDIT_SCHEMA,
        "audit_id": audit_id,
        "at": iso_time(at),
        "caller": caller,
        "method": method,
        "route": route,
        "user_id": user_id[:MAX_ID_LENGTH],
        "scope": scope,
        "status": reply.status,
        "result": reply.result,
        "detail": reply.detail[:MAX_DETAIL],
    }


def user_partition(user_id: str, partitions: int) -> int:
    """The user's partition of the events topic and of the ``users`` table: what the producer's default
    partitioner (murmur2, as Kafka's Java client) gives for the raw id bytes.

    >>> user_partition("u1", 4), user_partition("alice", 4)
    (0, 1)
    """
    return (murmur2(user_id.encode()) & 0x7FFFFFFF) % partitions


def owner_of(metadata: Mapping[str, Mapping[str, Sequence[int]]], topic: str, partition: int) -> str | None:
    """The URL of the worker holding ``partition`` of ``topic`` actively, from the group's assignment
    (``{url: {topic: [partition, ...]}}``, as ``app.router.table_metadata`` gives it)."""
    for url, topics in metadata.items():
        if partition in topics.get(topic, ()):
            return url
    return None


def same_node(url: str, other: str) -> bool:
    """Whether two canonical URLs name the same web server (host and port)."""
    a, b = URL(url), URL(other)
    return (a.host, a.port) == (b.host, b.port)


# --- the web layer: thin views over the functions above ------------------------------------------------


class _Api:
    """What the views share: the tokens, the topics, the table, and the handling of a call."""

    def __init__(self, app: Any, settings: Settings, users: Any, topics: dict[str, Any], audit: Any) -> None:
        self.app = app
        self.settings = settings
        self.users = users
        self.topics = topics
        self.audit_topic = audit
        self.tokens = load_tokens(settings.api_tokens_file)

    async def handle(self, view: Any, request: Any, route: Route | None) -> Any:
        method = request.method
        if route is None or method != route.method:
            reply, template, user_id = no_route(method, request.path)
            return await self._finish(view, reply, template, method, user_id, "", "")
        user_id = request.match_info.get("user_id", "")
        verdict = authorize(request.headers.get("Authorization"), route.scope, self.tokens)
        caller = verdict.name  # "" unless the token is known
        if isinstance(verdict, Refusal):
            reply = refused(verdict)
        else:
            try:
                check_user_id(user_id)
                if route.source is None:
                    answer = await self._read_user(view, request, user_id)
                    if not isinstance(answer, Reply):  # the holder's answer: it audited the call
                        metrics.API_FORWARDED.labels(route.template).inc()
                        return answer
                    reply = answer
                else:
                    raw = await _read_limited(request, self.settings.max_event_bytes)
                    done = command(
                        route, user_id, raw, verdict, now=time.time(), max_bytes=self.settings.max_event_bytes
                    )
                    if not await self._send(self.topics[done.source], done.key, done.value):
                        raise unavailable("the broker did not acknowledge the event; retry")
                    reply = done.reply
            except ApiError as error:
                reply = error.reply()
            except Exception:  # a bug: answered and audited, never the request's headers in the log
                log.exception("API %s %s failed", method, route.template)
                reply = Reply(500, {"error": "internal error"}, "internal error")
        return await self._finish(view, reply, route.template, method, user_id, route.scope, caller)

    async def _read_user(self, view: Any, request: Any, user_id: str) -> Any:
        """The user's reply when this worker holds them, else the holder's answer (forwarded)."""
        app = self.app
        if app.rebalancing or app.in_recovery:
            raise unavailable("the workers are rebalancing; retry")
        partition = user_partition(user_id, self.settings.partitions)
        changelog = self.users.changelog_topic.get_topic_name()
        owner = owner_of(app.router.table_metadata(self.users.name), changelog, partition)
        here = str(app.conf.canonical_url)
        if owner is None:
            raise unavailable("no worker holds the user's partition yet; retry")
        if same_node(owner, here):
            return user_reply(user_id, self.users.get(user_id))
        if FORWARDED_HEADER in request.headers:
            raise unavailable("the user's partition is moving between workers; retry")
        return await self._forward(view, request, owner, here)

    async def _forward(self, view: Any, request: Any, owner: str, here: str) -> Any:
        import aiohttp

        url = URL(owner).join(request.rel_url)
        headers = {"Authorization": request.headers.get("Authorization", ""), FORWARDED_HEADER: here}
        try:
            async with self.app.http_client.request(
                request.method, url, headers=headers, timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT)
            ) as response:
                body = await response.read()
                relayed = {
                    name: response.headers[name]
                    for name in ("WWW-Authenticate", "Retry-After", "Allow")
                    if name in response.headers
                }
                return view.bytes(
                    body, content_type=response.content_type, status=response.status, headers=relayed
                )
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("API: the worker at %s holding the partition did not answer: %r", owner, error)
            raise unavailable("the worker holding the user's partition did not answer; retry") from None

    async def _send(self, topic: Any, key: bytes | None, value: bytes) -> bool:
        """Produce and wait for the broker's acknowledgement; False when it does not come in time."""
        try:
            sent = await asyncio.wait_for(topic.send(key=key, value=value, force=True), SEND_TIMEOUT)
            await asyncio.wait_for(sent, SEND_TIMEOUT)
            return True
        except Exception as error:
            log.error("API: producing to %s failed: %r", topic.get_topic_name(), error)
            return False

    async def _finish(
        self, view: Any, reply: Reply, route: str, method: str, user_id: str, scope: str, caller: str
    ) -> Any:
        record = audit_record(
            route=route,
            method=method,
            user_id=user_id,
            scope=scope,
            caller=caller,
            reply=reply,
            at=time.time(),
            audit_id=str(uuid.uuid4()),
        )
        key = record["user_id"].encode() or None
        if not await self._send(self.audit_topic, key, orjson.dumps(record)):
            # Unaudited, the call's answer is not given (an event it produced may have gone out).
            log.error("API: audit record %s not written; answering 503", record["audit_id"])
            reply = unavailable("the audit is unavailable; retry").reply()
        metrics.API_REQUESTS.labels(route, str(reply.status)).inc()
        return view.bytes(
            orjson.dumps(reply.body),
            content_type="application/json",
            status=reply.status,
            headers=dict(reply.headers),
        )


async def _read_limited(request: Any, limit: int) -> bytes:
    """The request body, 413 past ``limit`` bytes (read in chunks: never more than that in memory)."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"the body is larger than {limit} bytes")
    body = bytearray()
    while chunk := await request.content.read(65536):
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"the body is larger than {limit} bytes")
    return bytes(body)


def register_api(app: Any, settings: Settings, users: Any) -> None:
    """Add the API's routes to ``app`` (before it starts), with the topics it produces to. Reads the
    tokens file now: an invalid one raises :class:`streams.auth.TokenFileError`."""
    from faust.web import View

    if "web" in vars(app):
        raise RuntimeError("register_api must run before anything creates app.web")
    # Faust's /table/ views would show any user's state to anyone who can reach the port.
    app.conf.web_tables_enabled = False
    topics = {
        source: app.topic(settings.source_topics[source], key_serializer="raw", value_serializer="raw")
        for source in (PREFERENCES, CRM, ERASURE)
    }
    audit = app.topic(settings.topic_api_audit, key_serializer="raw", value_serializer="raw")
    api = _Api(app, settings, users, topics, audit)
    if not api.tokens:
        log.warning("API: no tokens configured (api_tokens_file is empty): every API call is refused")

    class ApiView(View):
        route: ClassVar[Route | None] = None

        def get_methods(self) -> set[str]:  # what Faust registers the view for
            return {self.route.method} if self.route is not None else set(ANY_METHODS)

        async def dispatch(self, request: Any) -> Any:
            return await api.handle(self, request, self.route)

    for index, route in enumerate(ROUTES):
        view = type(f"ApiRoute{index}", (ApiView,), {"route": route})
        app.page(route.template, name=f"forewarn_api_{index}")(view)
    # Last: whatever the routes above do not take under /api/ (another method, no such path) is
    # answered 405 or 404 here, and audited.
    app.page("/api/{unmatched:.*}", name="forewarn_api_unmatched")(type("ApiUnmatched", (ApiView,), {}))
