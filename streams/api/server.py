"""The CRM/ERP API, served by every worker's HTTP server (setting ``web_port``), which serves nothing else.

Routes (``Authorization: Bearer <token>``, scopes in :mod:`streams.api.auth`; JSON in, JSON out):

=======  ====================================  =================  ==========================================
method   route                                 scope              answer
=======  ====================================  =================  ==========================================
GET      ``/api/v1/users/{user_id}``           read:scores        200 the user's view; 404 unknown user
PUT      ``/api/v1/users/{user_id}/preferences``  write:preferences  202 ``{"event_id"}``
POST     ``/api/v1/users/{user_id}/erasure``   admin              202 ``{"request_id", "event_id"}``
POST     ``/api/v1/crm/{user_id}``             admin              202 ``{"event_id"}``
GET      ``/api/v1/products/{product_id}/faq-forecast``  read:forecasts  200 the FAQ forecast; 404 none
=======  ====================================  =================  ==========================================

* **GET** answers the user's scores (the ``user_scores`` contract), state and recent interventions
  (:func:`user_view`); a read reaching a worker that does not hold the user's partition is forwarded,
  signed, to the one that does (:mod:`streams.api.forwarding`).
* **GET faq-forecast** answers a product's FAQ forecast (:func:`faq_reply`, :mod:`models.launch_faq`),
  made at the call from the launch profiles on the partition of the product's category (forwarded
  alike to the worker holding it); 404 for a product the catalog does not know or outside its launch
  window.
* **PUT preferences**, **POST erasure** and **POST crm** turn their body into an event
  (:func:`command`), validated by :func:`streams.contracts.events.parse_event` and produced to its
  source topic; the answer (202) comes once the broker has acknowledged it.
* Errors answer ``{"error": "<detail>"}``; unknown fields in a body are refused (400), not dropped.
  A path outside ``/api/`` is 404: :class:`ApiServer` replaces Faust's web server.
* Every call under ``/api/`` writes one record to ``api_audit`` (:func:`audit_record`), acknowledged
  before the answer.

Each route's body and answer, the errors, the audit record field by field and the routing of reads
between workers: docs/api.md, "Requests, answers and records in detail".

>>> from streams.api.auth import Caller
>>> done = command(PREFERENCES_ROUTE, "u1", b'{"opt_out": true}', Caller("crm", frozenset()),
...                now=1764000000.0, new_id=lambda: "e-1")
>>> done.source, done.key, done.reply.status, done.reply.body
('preferences', b'u1', 202, {'event_id': 'e-1'})
>>> command(PREFERENCES_ROUTE, "u1", b'{"timezone": "Mars/Base"}', Caller("crm", frozenset()),
...         now=1764000000.0)
Traceback (most recent call last):
...
streams.api.server.ApiError: 400 invalid_value: field 'timezone' is not an IANA time zone
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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from mode import Service
from yarl import URL

from models.launch_faq import FaqRules, forecast, in_window
from models.surge import LaunchProfile
from streams.api.auth import (
    ADMIN,
    READ_FORECASTS,
    READ_SCORES,
    WRITE_PREFERENCES,
    Caller,
    Refusal,
    allows,
    authorize,
    load_tokens,
)
from streams.api.forwarding import (
    SIGNATURE_HEADER,
    Forward,
    ForwardRefused,
    ReplayGuard,
    answer_is_signed,
    is_forward,
    read_forward,
    same_node,
    sign_answer,
)
from streams.contracts import metrics
from streams.contracts.envelopes import user_partition
from streams.contracts.events import (
    CRM_UPDATES,
    ERASURE_REQUESTS,
    FIELDS_BY_SOURCE,
    PREFERENCES,
    SCHEMA_VERSION,
    InvalidEvent,
    check_identifier,
    parse_event,
)
from streams.contracts.privacy import load_cluster_secret
from streams.contracts.settings import Settings
from streams.contracts.time import iso_time, to_millis
from streams.contracts.validation import MAX_ID_LENGTH
from streams.domain.state import UserState
from streams.processes.catalog import Catalog, load_catalog

log = logging.getLogger(__name__)

API_SCHEMA = 1
AUDIT_SCHEMA = 1
RESULTS = ("ok", "unauthorized", "forbidden", "invalid", "not_found", "error")
UNMATCHED = "/api/{unmatched}"  # the audit's route for a path under /api/ that is no route
UNPARSED = "{unparsed}"  # the audit's route for a request the HTTP parser refused (its path unknown)
MAX_DETAIL = 200
MAX_METHOD = 16  # characters of a method kept in the audit (a method is any token the client sends)
SEND_TIMEOUT = 15.0  # seconds to wait for the broker's acknowledgement before answering 503
FORWARD_TIMEOUT = 10.0
MAX_ANSWER_BYTES = 1 << 20  # of a forwarded read's answer (a user's view is a few kB)
FORWARDED_TO, FORWARDED_FROM = "forwarded to", "forwarded from"  # how a forwarded call's details start
# What the HTTP parser's refusals are answered and audited with: a fixed detail by kind, never the
# parser's own message, which quotes the offending bytes (a header holding a token, say).
UNPARSED_DETAILS = {
    "LineTooLong": "a request line or header is longer than 8190 bytes",
    "BadHttpMethod": "malformed method",
    "BadStatusLine": "malformed request line",
    "InvalidHeader": "malformed header",
    "InvalidURLError": "malformed URL",
}


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
    def subject(self) -> str:
        """What the path names: ``user_id``, or ``product_id`` (a call with no user subject)."""
        return re.findall(r"\{(\w+)\}", self.template)[0]

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
ERASURE_ROUTE = Route("POST", "/api/v1/users/{user_id}/erasure", ADMIN, ERASURE_REQUESTS, "erasure_requested")
CRM_ROUTE = Route("POST", "/api/v1/crm/{user_id}", ADMIN, CRM_UPDATES, "crm_attributes")
FAQ_ROUTE = Route("GET", "/api/v1/products/{product_id}/faq-forecast", READ_FORECASTS)
ROUTES = (USER_ROUTE, PREFERENCES_ROUTE, ERASURE_ROUTE, CRM_ROUTE, FAQ_ROUTE)


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


def check_product_id(product_id: str) -> str:
    """A product id from a path, checked as an event's ``product_id`` is (400 otherwise)."""
    try:
        return check_identifier("product_id", product_id)
    except InvalidEvent as error:
        raise ApiError(400, f"{error.reason}: {error.detail}") from None


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


def faq_reply(
    product_id: str,
    catalog: Catalog,
    profiles: Mapping[str, LaunchProfile],
    now: float,
    rules: FaqRules,
) -> Reply:
    """The FAQ forecast of ``product_id`` made at ``now`` from the launch profiles (``profiles``: by
    product id, the ``launch-profiles`` table): the ``launch_faq_forecasts`` record, ``decided_at`` the
    call's time. 404 for a product the catalog does not know, or outside its
    launch window (from ``faq_ahead_days`` before its launch to 30 days after)."""
    product = catalog.product(product_id)
    if product is None:
        raise ApiError(404, f"product {product_id!r} is not in the catalog")
    if not in_window(product, now, rules):
        raise ApiError(404, f"product {product_id!r} is not in its launch window: no FAQ forecast")
    made = forecast(
        product, catalog.launches(product.category), profiles, now, rules, product.expected_volume
    )
    return Reply(200, made.to_wire(now), f"forecast {made.forecast_id}")


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
    """The event a write route produces, validated by :func:`streams.contracts.events.parse_event` (400 with
    its detail otherwise)."""
    assert route.source is not None, route
    erasure = route.source == ERASURE_REQUESTS
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


def match_route(method: str, path: str) -> tuple[Route | None, str]:
    """The route a call takes and its subject, the id its path names (None and "" when it takes none).

    >>> match_route("GET", "/api/v1/users/u1")[1], match_route("TRACE", "/api/v1/users/u1")
    ('u1', (None, ''))
    >>> match_route("GET", "/api/v1/products/p1/faq-forecast")[1]
    'p1'
    """
    for route in ROUTES:
        found = route.pattern.fullmatch(path)
        if found and route.method == method:
            return route, found[route.subject]
    return None, ""


def audited_user(route: Route, subject: str) -> str:
    """The user a call is audited under: its subject when that is a user, else none."""
    return subject if route.subject == "user_id" else ""


def no_route(method: str, path: str) -> tuple[Reply, str, str]:
    """What a call under /api/ that no route takes gets: the reply (405 when the path is a route's, with
    ``Allow``; 404 otherwise), the route template to audit and the subject user id."""
    matched = [(route, found) for route in ROUTES if (found := route.pattern.fullmatch(path))]
    if not matched:
        return Reply(404, {"error": "no such API route"}, "no such API route"), UNMATCHED, ""
    allow = ", ".join(sorted({route.method for route, _ in matched}))
    detail = f"method {method[:MAX_METHOD]} not allowed; allowed: {allow}"
    route, found = matched[0]
    return (
        Reply(405, {"error": detail}, detail, {"Allow": allow}),
        route.template,
        audited_user(route, found[route.subject]),
    )


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
        "method": method[:MAX_METHOD],
        "route": route,
        "user_id": user_id[:MAX_ID_LENGTH],
        "scope": scope,
        "status": reply.status,
        "result": reply.result,
        "detail": reply.detail[:MAX_DETAIL],
    }


def owner_of(metadata: Mapping[str, Mapping[str, Sequence[int]]], topic: str, partition: int) -> str | None:
    """The URL of the worker holding ``partition`` of ``topic`` actively, from the group's assignment
    (``{url: {topic: [partition, ...]}}``, as ``app.router.table_metadata`` gives it)."""
    for url, topics in metadata.items():
        if partition in topics.get(topic, ()):
            return url
    return None


def unparsed_reply(error: BaseException) -> Reply:
    """The answer to a request the HTTP parser refused (``error``, its exception): 400 with a fixed
    detail by the kind of error, never the error's own text."""
    kinds = [kind.__name__ for kind in type(error).__mro__]
    detail = next((UNPARSED_DETAILS[kind] for kind in kinds if kind in UNPARSED_DETAILS), "malformed request")
    return Reply(400, {"error": detail}, detail)


def forwarded_detail(direction: str, url: str, request_id: str, detail: str) -> str:
    """The audit detail of a forwarded call, on either side (``direction``: :data:`FORWARDED_TO` or
    :data:`FORWARDED_FROM`), the request id joining the two records.

    >>> forwarded_detail(FORWARDED_FROM, "http://a:6066", "9f" * 16, "unknown user")[:40]
    'forwarded from http://a:6066 request 9f9'
    """
    head = f"{direction} {url[:80]} request {request_id}"
    return f"{head}: {detail}" if detail else head


@dataclass(frozen=True, slots=True)
class Answer:
    """What a call is answered: status, JSON body bytes, headers."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def response(self) -> web.Response:
        return web.Response(
            body=self.body, status=self.status, headers=dict(self.headers), content_type="application/json"
        )

    def signed(self, secret: bytes, request_id: str) -> Answer:
        """This answer with its signature for forward ``request_id`` (:mod:`streams.api.forwarding`)."""
        signature = sign_answer(secret, request_id, self.status, self.body, self.headers.get("Retry-After"))
        return replace(self, headers={**self.headers, SIGNATURE_HEADER: signature})


NOT_FOUND = Answer(404, b'{"error":"not found"}')  # any path outside /api/: there is nothing else


# --- the web layer: thin handling over the functions above --------------------------------------------


class _Api:
    """What the handling of a call needs: the tokens, the cluster secret, the topics, the table."""

    def __init__(
        self,
        app: Any,
        settings: Settings,
        users: Any,
        topics: dict[str, Any],
        audit: Any,
        secret: bytes,
        profiles: Any = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.users = users
        self.profiles = profiles  # the launch-profiles table (None: FAQ forecasts not served)
        self.catalog: Catalog = load_catalog(settings.catalog_file)
        self.faq_rules = FaqRules(ahead_days=settings.faq_ahead_days)
        self.topics = topics
        self.audit_topic = audit
        self.secret = secret
        self.tokens = load_tokens(settings.api_tokens_file)
        self.replays = ReplayGuard()

    async def handle(self, request: Any) -> Answer:
        """Answer and audit one call under /api/ (an aiohttp request)."""
        method, path = request.method, request.path
        route, subject = match_route(method, path)
        if route is None:
            reply, template, user_id = no_route(method, path)
            return await self._finish(reply, template, method, user_id, "", "")
        if is_forward(request.headers):
            return await self._take_forward(request, route, subject)
        user_id = audited_user(route, subject)
        verdict = authorize(request.headers.get("Authorization"), route.scope, self.tokens)
        if isinstance(verdict, Refusal):
            reply = refused(verdict)
        else:
            reply = await self._serve(request, route, subject, verdict, None)
        return await self._finish(reply, route.template, method, user_id, route.scope, verdict.name)

    async def unparsed(self, error: BaseException) -> Answer:
        """Answer and audit a request the HTTP parser refused (nothing of it is known for sure)."""
        return await self._finish(unparsed_reply(error), UNPARSED, "", "", "", "")

    async def _take_forward(self, request: Any, route: Route, subject: str) -> Answer:
        """Answer a call that claims to come from another worker: a signed forward of a read, answered
        signed, or a refusal (never signed)."""
        method, user_id = request.method, audited_user(route, subject)
        try:
            forward = read_forward(
                request.headers,
                method,
                request.rel_url.raw_path_qs,
                self.secret,
                here=str(self.app.conf.canonical_url),
                now=time.time(),
                seen=self.replays,
            )
        except ForwardRefused as refusal:
            log.warning("API: %s (from %s)", refusal.detail, request.remote)
            reply = Reply(401, {"error": refusal.detail}, refusal.detail)
            return await self._finish(reply, route.template, method, user_id, route.scope, "")
        caller = forward.caller
        if route.source is not None:
            reply = Reply(400, {"error": "only reads are forwarded"}, "only reads are forwarded")
        elif not allows(caller.scopes, route.scope):
            detail = f"token {caller.name!r} lacks scope {route.scope!r}"
            reply = Reply(403, {"error": detail}, detail)
        else:
            reply = await self._serve(request, route, subject, caller, forward)
        reply = replace(
            reply, detail=forwarded_detail(FORWARDED_FROM, forward.origin, forward.request_id, reply.detail)
        )
        answer = await self._finish(reply, route.template, method, user_id, route.scope, caller.name)
        return answer.signed(self.secret, forward.request_id)

    async def _serve(
        self, request: Any, route: Route, subject: str, caller: Caller, forward: Forward | None
    ) -> Reply:
        """The reply to an allowed call (``forward``: the signed forward it came as, if it did)."""
        user_id = subject
        try:
            if route is FAQ_ROUTE:
                return await self._read_faq(request, check_product_id(subject), caller, forward)
            check_user_id(user_id)
            if route.source is None:
                return await self._read_user(request, user_id, caller, forward)
            raw = await _read_limited(
                request.content,
                request.content_length,
                self.settings.max_event_bytes,
                ApiError(413, f"the body is larger than {self.settings.max_event_bytes} bytes"),
            )
            done = command(
                route, user_id, raw, caller, now=time.time(), max_bytes=self.settings.max_event_bytes
            )
            if not await self._send(self.topics[done.source], done.key, done.value):
                raise unavailable("the broker did not acknowledge the event; retry")
            return done.reply
        except ApiError as error:
            return error.reply()
        except HttpProcessingError as error:  # a body the HTTP parser refused (chunks, length)
            return unparsed_reply(error)
        except Exception:  # a bug: answered and audited, never the request's headers in the log
            log.exception("API %s %s failed", request.method, route.template)
            return Reply(500, {"error": "internal error"}, "internal error")

    async def _read_user(self, request: Any, user_id: str, caller: Caller, forward: Forward | None) -> Reply:
        """The user's reply when this worker holds them, else the holder's answer to a signed forward
        (a call that came as a forward is not forwarded again)."""
        partition = user_partition(user_id, self.settings.partitions)
        return await self._read_on(
            self.users,
            partition,
            "the user's partition",
            request,
            caller,
            forward,
            lambda: user_reply(user_id, self.users.get(user_id)),
        )

    async def _read_faq(
        self, request: Any, product_id: str, caller: Caller, forward: Forward | None
    ) -> Reply:
        """The product's FAQ forecast, made where its category's launch profiles are (the partition of
        the category on the questions topic), or that worker's answer to a signed forward."""
        if self.profiles is None:
            raise unavailable("this worker does not serve FAQ forecasts")
        category = self.catalog.category_of(product_id)
        if category is None:
            raise ApiError(404, f"product {product_id!r} is not in the catalog")
        # The partition of the category on the questions topic (ingest keys questions by it).
        partition = user_partition(category, self.settings.partitions)
        profiles = self.profiles
        return await self._read_on(
            profiles,
            partition,
            "the category's partition",
            request,
            caller,
            forward,
            lambda: faq_reply(product_id, self.catalog, profiles, time.time(), self.faq_rules),
        )

    async def _read_on(
        self,
        table: Any,
        partition: int,
        held: str,
        request: Any,
        caller: Caller,
        forward: Forward | None,
        answer: Callable[[], Reply],
    ) -> Reply:
        """``answer()`` when this worker holds ``partition`` of ``table`` (``held`` names it in errors),
        else the holder's answer to a signed forward (a call that came as a forward is not forwarded
        again)."""
        app = self.app
        if app.rebalancing or app.in_recovery:
            raise unavailable("the workers are rebalancing; retry")
        changelog = table.changelog_topic.get_topic_name()
        owner = owner_of(app.router.table_metadata(table.name), changelog, partition)
        here = str(app.conf.canonical_url)
        if owner is None:
            raise unavailable(f"no worker holds {held} yet; retry")
        if same_node(owner, here):
            return answer()
        if forward is not None:
            raise unavailable(f"{held} is moving between workers; retry")
        route, _ = match_route(request.method, request.path)
        metrics.API_FORWARDED.labels(route.template if route else UNMATCHED).inc()
        forward = Forward(
            caller,
            request.method,
            request.rel_url.raw_path_qs,
            here,
            owner,
            uuid.uuid4().hex,
            int(time.time() * 1000),
        )
        return await self._forward(forward)

    async def _forward(self, forward: Forward) -> Reply:
        """Send ``forward`` to its target; its answer when it is signed for it, else 502."""
        owner, request_id = forward.target, forward.request_id
        sent = forwarded_detail(FORWARDED_TO, owner, request_id, "")
        url = URL(str(URL(owner).origin()) + forward.path, encoded=True)
        invalid = ApiError(502, "the worker holding the user's partition gave no valid answer")
        try:
            async with self.app.http_client.request(
                forward.method,
                url,
                headers=forward.headers(self.secret),
                timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT),
                allow_redirects=False,
            ) as response:
                body = await _read_limited(
                    response.content, response.content_length, MAX_ANSWER_BYTES, invalid
                )
                status, headers = response.status, response.headers
            if not answer_is_signed(self.secret, request_id, status, body, headers):
                log.warning(
                    "API: the answer of %s to forward %s (status %s) is not signed for it by a worker of"
                    " this deployment: refused (does it share the cluster secret?)",
                    owner,
                    request_id,
                    status,
                )
                raise invalid
            data = orjson.loads(body)
            if not isinstance(data, dict):
                raise invalid
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("API: the worker at %s holding the partition did not answer: %r", owner, error)
            detail = "the worker holding the user's partition did not answer; retry"
            return Reply(503, {"error": detail}, f"{sent}: no answer", {"Retry-After": "1"})
        except (ApiError, orjson.JSONDecodeError):
            return Reply(invalid.status, {"error": invalid.detail}, f"{sent}: no valid answer")
        error = data.get("error") if status >= 400 else None
        relayed = {"Retry-After": headers["Retry-After"]} if "Retry-After" in headers else {}
        return Reply(
            status, data, forwarded_detail(FORWARDED_TO, owner, request_id, str(error or "")), relayed
        )

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
        self, reply: Reply, route: str, method: str, user_id: str, scope: str, caller: str
    ) -> Answer:
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
        return Answer(reply.status, orjson.dumps(reply.body), dict(reply.headers))


async def _read_limited(stream: Any, declared: int | None, limit: int, too_large: ApiError) -> bytes:
    """A request's or response's body, ``too_large`` raised past ``limit`` bytes (read in chunks: never
    more than that in memory)."""
    if declared is not None and declared > limit:
        raise too_large
    body = bytearray()
    while chunk := await stream.read(65536):
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


# --- the HTTP server: aiohttp's low-level server, in place of Faust's web server ------------------------


class _Protocol(web.RequestHandler):
    """aiohttp's connection handler, with the requests its parser refuses answered and audited by
    :meth:`_Api.unparsed` instead of aiohttp's plain-text 400 (which quotes the offending bytes, and is
    logged with them at ERROR)."""

    api: _Api

    def _make_error_handler(self, err_info: Any) -> Callable[[Any], Awaitable[web.StreamResponse]]:
        # aiohttp's hook for a request its parser refused (status 400 and the parser's exception).
        async def refuse(request: Any) -> web.StreamResponse:
            response = (await self.api.unparsed(err_info.exc)).response()
            response.force_close()  # the rest of the connection's bytes cannot be trusted
            return response

        return refuse

    def handle_error(
        self, request: Any, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        # Any other error aiohttp answers itself: neither its message nor, for a refused request, the
        # exception's text (which may quote the request) is logged or answered. A 5xx is a bug of the
        # handler (which never lets the request's headers into an exception): its traceback is logged.
        log.error(
            "API: HTTP error %s (%s) answered",
            status,
            type(exc).__name__ if exc else "-",
            exc_info=exc if status >= 500 else None,
        )
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send another response")
        detail = "malformed request" if 400 <= status < 500 else "internal error"
        response = Answer(status, orjson.dumps({"error": detail})).response()
        response.force_close()
        return response


class _Server(web.Server):
    """aiohttp's low-level server, making :class:`_Protocol` connection handlers."""

    def __init__(self, api: _Api) -> None:
        super().__init__(self._respond)
        self.api = api

    def __call__(self) -> _Protocol:
        protocol = _Protocol(self, loop=asyncio.get_running_loop(), access_log=None)
        protocol.api = self.api
        return protocol

    async def _respond(self, request: web.BaseRequest) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return NOT_FOUND.response()
        return (await self.api.handle(request)).response()


class ApiServer(Service):
    """The worker's HTTP server (``web_bind``:``web_port``), registered with ``app.web_server`` so that
    Faust's own web server, with its unauthenticated pages (``/router/`` lists every worker's URL,
    partitions and topics; ``/table/`` any user's state), is not started at all. It serves the API
    and answers 404 to anything else."""

    def __init__(self, api: _Api, bind: str, port: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api, self.bind, self.port = api, bind, port
        self._runner: web.BaseRunner | None = None

    async def on_start(self) -> None:
        self._runner = web.ServerRunner(_Server(self.api))
        await self._runner.setup()
        await web.TCPSite(self._runner, self.bind, self.port).start()

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def register_api(app: Any, settings: Settings, users: Any, profiles: Any = None) -> None:
    """Serve the API as ``app``'s web server (before it starts), with the topics it produces to, the
    users table and the launch-profiles table (FAQ forecasts) it reads. Reads the tokens file now (an
    invalid one raises :class:`streams.api.auth.TokenFileError`), the catalog and the cluster secret."""
    topics = {
        source: app.topic(settings.source_topics[source], key_serializer="raw", value_serializer="raw")
        for source in dict.fromkeys(route.source for route in ROUTES if route.source)
    }
    audit = app.topic(settings.topic_api_audit, key_serializer="raw", value_serializer="raw")
    api = _Api(app, settings, users, topics, audit, load_cluster_secret(settings), profiles)
    if not api.tokens:
        log.warning("API: no tokens configured (api_tokens_file is empty): every API call is refused")
    app.web_server(ApiServer(api, app.conf.web_bind, app.conf.web_port))
