"""Signed calls between workers: the read one worker forwards to the worker holding the user's
partition (:mod:`streams.api.server`), and that worker's answer.

A forward carries who the caller is, as the first worker authenticated them (the token's name and
scopes), never the token; both directions are signed with HMAC-SHA256 under the deployment's cluster
secret (:func:`streams.contracts.privacy.load_cluster_secret`), which a process that merely joined the
consumer group does not have. The forward's headers:

======================================  =================================================================
header                                  value
======================================  =================================================================
:data:`CALLER_HEADER`                   the caller's name (the token's name)
:data:`SCOPES_HEADER`                   its scopes, sorted, comma-separated
:data:`ORIGIN_HEADER`                   the forwarding worker's canonical URL
:data:`TARGET_HEADER`                   the holder's canonical URL, as the group's assignment names it
:data:`REQUEST_ID_HEADER`               a new id (32 hex digits), in both workers' audit records
:data:`SENT_AT_HEADER`                  when it was sent, milliseconds since the epoch
:data:`SIGNATURE_HEADER`                hex HMAC-SHA256 of all the above, the method and the raw path
======================================  =================================================================

The holder takes a forward only when (:func:`read_forward`) the signature is right (compared in
constant time), it was sent less than :data:`MAX_SKEW` seconds from the holder's clock, it names the
holder as its target (a forward that went to another worker, a rogue one included, cannot be replayed
here), and its request id was not taken before (:class:`ReplayGuard`). A call carrying any of these
headers is a forward, refused unless all of that holds: it never falls back to a token.

The answer is signed over the request id, the status, ``Retry-After`` and the body's SHA-256
(:func:`sign_answer`, domain-separated from the forward's signature so that one can never pass for the
other), and the forwarding worker relays only an answer signed for that very request
(:func:`answer_is_signed`).

>>> from streams.api.auth import Caller
>>> secret = b"a cluster secret of the deployment"
>>> sent = Forward(Caller("crm", frozenset({"read:scores"})), "GET", "/api/v1/users/u1",
...                "http://a:6066", "http://b:6066", "9f" * 16, 1764000000000)
>>> headers = sent.headers(secret)
>>> read_forward(headers, "GET", "/api/v1/users/u1", secret, here="http://b:6066",
...              now=1764000001.0, seen=ReplayGuard()) == sent
True
>>> read_forward(headers, "GET", "/api/v1/users/u2", secret, here="http://b:6066",
...              now=1764000001.0, seen=ReplayGuard())
Traceback (most recent call last):
...
streams.api.forwarding.ForwardRefused: forward refused: bad signature
>>> signature = sign_answer(secret, sent.request_id, 200, b'{"user_id": "u1"}', None)
>>> answer_is_signed(secret, sent.request_id, 200, b'{"user_id": "u1"}', {SIGNATURE_HEADER: signature})
True
>>> answer_is_signed(secret, sent.request_id, 200, b'{"forged": true}', {SIGNATURE_HEADER: signature})
False
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson
from yarl import URL

from streams.api.auth import Caller

CALLER_HEADER = "X-Forewarn-Caller"
SCOPES_HEADER = "X-Forewarn-Scopes"
ORIGIN_HEADER = "X-Forewarn-Forwarded-By"
TARGET_HEADER = "X-Forewarn-Forwarded-To"
REQUEST_ID_HEADER = "X-Forewarn-Request-Id"
SENT_AT_HEADER = "X-Forewarn-Sent-At"
SIGNATURE_HEADER = "X-Forewarn-Signature"
FORWARD_HEADERS = (
    CALLER_HEADER,
    SCOPES_HEADER,
    ORIGIN_HEADER,
    TARGET_HEADER,
    REQUEST_ID_HEADER,
    SENT_AT_HEADER,
    SIGNATURE_HEADER,
)
MAX_SKEW = 30.0  # seconds a forward's time may differ from the holder's clock (either way)
FORWARD_CONTEXT = "forewarn-forward-1"
ANSWER_CONTEXT = "forewarn-answer-1"
REQUEST_ID = re.compile(r"[0-9a-f]{32}")
MAX_HEADER_CHARS = 512  # what a forward's header may hold; longer is refused unread


class ForwardRefused(Exception):
    """A call that claims to be a forward and is not a valid one; the detail names why (never a
    header's value)."""

    def __init__(self, why: str) -> None:
        super().__init__(f"forward refused: {why}")
        self.detail = f"forward refused: {why}"


def same_node(url: str, other: str) -> bool:
    """Whether two canonical URLs name the same web server (host and port)."""
    a, b = URL(url), URL(other)
    return (a.host, a.port) == (b.host, b.port)


def _mac(secret: bytes, fields: list[object]) -> str:
    # A JSON array: no field's text can run into the next one's.
    return hmac.new(secret, orjson.dumps(fields), hashlib.sha256).hexdigest()


def _equal(expected: str, given: str) -> bool:
    """Constant-time comparison; ``given`` comes from a header and may hold any characters."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))


@dataclass(frozen=True, slots=True)
class Forward:
    """A forwarded call: the caller as the first worker authenticated them, the call (method and raw
    path with its query), where it comes from and goes to, its id and when it was sent (ms)."""

    caller: Caller
    method: str
    path: str
    origin: str
    target: str
    request_id: str
    sent_at: int

    def signature(self, secret: bytes) -> str:
        return _mac(
            secret,
            [
                FORWARD_CONTEXT,
                self.method,
                self.path,
                self.caller.name,
                sorted(self.caller.scopes),
                self.origin,
                self.target,
                self.request_id,
                self.sent_at,
            ],
        )

    def headers(self, secret: bytes) -> dict[str, str]:
        """The headers that carry this forward, signed with ``secret``."""
        return {
            CALLER_HEADER: self.caller.name,
            SCOPES_HEADER: ",".join(sorted(self.caller.scopes)),
            ORIGIN_HEADER: self.origin,
            TARGET_HEADER: self.target,
            REQUEST_ID_HEADER: self.request_id,
            SENT_AT_HEADER: str(self.sent_at),
            SIGNATURE_HEADER: self.signature(secret),
        }


def is_forward(headers: Mapping[str, str]) -> bool:
    """Whether a call claims to be a forward (carries any of its headers): then it must be a valid one."""
    return any(name in headers for name in FORWARD_HEADERS)


@dataclass
class ReplayGuard:
    """The request ids of the forwards taken in the last ``2 * MAX_SKEW`` seconds (older forwards are
    refused as stale, so forgetting them is safe). Only signed forwards are remembered, so what it
    holds is bounded by the workers' own forwarding rate."""

    seen: dict[str, float] = field(default_factory=dict)
    next_purge: float = 0.0

    def first_time(self, request_id: str, now: float) -> bool:
        """Whether ``request_id`` was not taken before (and take it)."""
        if now >= self.next_purge:  # drop the expired ids now and then, not on every call
            self.seen = {key: until for key, until in self.seen.items() if until > now}
            self.next_purge = now + MAX_SKEW
        if self.seen.get(request_id, 0.0) > now:
            return False
        self.seen[request_id] = now + 2 * MAX_SKEW
        return True


def read_forward(
    headers: Mapping[str, str],
    method: str,
    path: str,
    secret: bytes,
    *,
    here: str,
    now: float,
    seen: ReplayGuard,
) -> Forward:
    """The forward a call carries, checked as the module says; raises :class:`ForwardRefused`."""
    values = {name: headers.get(name, "") for name in FORWARD_HEADERS}
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise ForwardRefused(f"missing {', '.join(missing)}")
    if any(len(value) > MAX_HEADER_CHARS for value in values.values()):
        raise ForwardRefused("a header is too long")
    if not values[SENT_AT_HEADER].isdigit() or not REQUEST_ID.fullmatch(values[REQUEST_ID_HEADER]):
        raise ForwardRefused("malformed header")
    scopes = frozenset(scope for scope in values[SCOPES_HEADER].split(",") if scope)
    forward = Forward(
        Caller(values[CALLER_HEADER], scopes),
        method,
        path,
        values[ORIGIN_HEADER],
        values[TARGET_HEADER],
        values[REQUEST_ID_HEADER],
        int(values[SENT_AT_HEADER]),
    )
    if not _equal(forward.signature(secret), values[SIGNATURE_HEADER]):
        raise ForwardRefused("bad signature")
    if abs(now - forward.sent_at / 1000) > MAX_SKEW:
        raise ForwardRefused(f"sent more than {MAX_SKEW:.0f} s from this worker's clock")
    if not same_node(forward.target, here):
        raise ForwardRefused("sent to another worker")
    if not seen.first_time(forward.request_id, now):
        raise ForwardRefused("replayed")
    return forward


def sign_answer(secret: bytes, request_id: str, status: int, body: bytes, retry_after: str | None) -> str:
    """The signature of the holder's answer to forward ``request_id``."""
    return _mac(
        secret, [ANSWER_CONTEXT, request_id, status, retry_after or "", hashlib.sha256(body).hexdigest()]
    )


def answer_is_signed(
    secret: bytes, request_id: str, status: int, body: bytes, headers: Mapping[str, str]
) -> bool:
    """Whether an answer to forward ``request_id`` is signed by a worker of the deployment."""
    given = headers.get(SIGNATURE_HEADER, "")
    expected = sign_answer(secret, request_id, status, body, headers.get("Retry-After"))
    return _equal(expected, given)
