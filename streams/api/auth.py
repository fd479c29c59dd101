"""Bearer tokens and scopes of the CRM/ERP API (:mod:`streams.api.server`).

Tokens are configured in a JSON file (setting ``api_tokens_file``)::

    {"tokens": [
        {"name": "crm-prod", "sha256": "<hex SHA-256 of the token>", "scopes": ["read:scores"]},
        {"name": "ops", "sha256": "...", "scopes": ["admin"]}
    ]}

Only the SHA-256 of each token is stored, so the file is configuration, not a secret store: whoever
reads it cannot call the API (though whoever can write it can add a token, so only the deployment may
write it). :func:`token_entry` makes an entry from a token. The scopes are :data:`SCOPES`; ``admin``
allows every route. A token is 16-512 characters of the RFC 6750 ``b64token`` alphabet (letters,
digits, ``-._~+/``, trailing ``=``); generate one with ``python -c "import secrets;
print(secrets.token_urlsafe(32))"``.

With ``api_tokens_file`` empty there is no token and every call is refused with 401. The file is read
once, when the worker starts: a changed file takes effect at the next start (rolling restart).
An invalid file stops the worker with an error naming the file and the entry.

:func:`authorize` decides on one call's ``Authorization`` header: a :class:`Caller` (the token's name
and scopes), or a :class:`Refusal`: 401 for a missing or malformed header or an unknown token, with
``WWW-Authenticate: Bearer ...``; 403 for a known token without the route's scope. The presented token
is hashed and compared with every configured hash with :func:`hmac.compare_digest`, all of them every
time, so the time taken says nothing about which entry (if any) was close.

Tokens and ``Authorization`` headers are never logged, echoed in a response or written to the audit:
nothing in this module logs, and a refusal's detail never quotes the header.

>>> entry = token_entry("crm-prod", "s3cret-token-0123456789", ["read:scores"])
>>> entry["sha256"][:12], entry["scopes"]
('706b9b78de6d', ['read:scores'])
>>> tokens = parse_tokens({"tokens": [entry]})
>>> authorize("Bearer s3cret-token-0123456789", "read:scores", tokens)
Caller(name='crm-prod', scopes=frozenset({'read:scores'}))
>>> refusal = authorize("Bearer s3cret-token-0123456789", "admin", tokens)
>>> refusal.status, refusal.result, refusal.detail
(403, 'forbidden', "token 'crm-prod' lacks scope 'admin'")
>>> authorize(None, "read:scores", tokens).status
401
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

READ_SCORES = "read:scores"
WRITE_PREFERENCES = "write:preferences"
ADMIN = "admin"
READ_FORECASTS = "read:forecasts"  # forecasts for planning: no user's data
SCOPES = (READ_SCORES, WRITE_PREFERENCES, ADMIN, READ_FORECASTS)

REALM = "forewarn"
# RFC 6750 b64token; a length floor so that a configured token cannot be guessed, a ceiling so that a
# hostile header costs little to hash.
TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
MIN_TOKEN_LENGTH, MAX_TOKEN_LENGTH = 16, 512
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
ENTRY_FIELDS = frozenset({"name", "sha256", "scopes"})


class TokenFileError(ValueError):
    """The tokens file cannot be used; the message names the file and the entry."""


@dataclass(frozen=True, slots=True)
class Token:
    """A configured token: its name (the caller in the audit), the SHA-256 digest, its scopes."""

    name: str
    digest: bytes
    scopes: frozenset[str]

    def __repr__(self) -> str:  # the digest is not secret, but nobody needs to see it in a log
        return f"Token(name={self.name!r}, scopes={sorted(self.scopes)})"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who an allowed call comes from."""

    name: str
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a call is refused: ``status`` 401 or 403, ``result`` its audit result, ``detail`` for the
    caller and the audit, ``challenge`` the ``WWW-Authenticate`` header value, ``name`` the token's
    name when it is known (403), else ""."""

    status: int
    result: str
    detail: str
    challenge: str
    name: str = ""


def hash_token(token: str) -> str:
    """The hex SHA-256 of a token, as the tokens file stores it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_entry(name: str, token: str, scopes: Iterable[str]) -> dict[str, Any]:
    """One entry of the tokens file for ``token`` (which the file does not hold). Raises ValueError for
    a token or name the API would not accept, or an unknown scope."""
    if not _is_token(token):
        raise ValueError(
            f"a token must be {MIN_TOKEN_LENGTH}-{MAX_TOKEN_LENGTH} characters of letters, digits and"
            " -._~+/ (trailing = allowed)"
        )
    entry = {"name": name, "sha256": hash_token(token), "scopes": list(scopes)}
    _token_of(entry, "token_entry")  # the same checks as the file's
    return entry


def tokens_file_text(entries: Sequence[dict[str, Any]]) -> str:
    """The JSON text of a tokens file holding ``entries`` (from :func:`token_entry`)."""
    return orjson.dumps({"tokens": list(entries)}, option=orjson.OPT_INDENT_2).decode()


def load_tokens(path: str) -> tuple[Token, ...]:
    """The tokens of the file at ``path``; none for an empty path. Raises :class:`TokenFileError`."""
    if not path:
        return ()
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise TokenFileError(f"API tokens file {path}: cannot be read ({error.strerror})") from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise TokenFileError(f"API tokens file {path}: not valid JSON ({error})") from None
    return parse_tokens(data, path)


def parse_tokens(data: Any, source: str = "<tokens>") -> tuple[Token, ...]:
    """The tokens of a parsed tokens file; ``source`` names it in errors."""
    if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
        raise TokenFileError(f"API tokens file {source}: expected an object with a 'tokens' list")
    tokens: list[Token] = []
    names: set[str] = set()
    digests: set[bytes] = set()
    for index, entry in enumerate(data["tokens"]):
        where = f"API tokens file {source}: tokens[{index}]"
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            where += f" ({entry['name'][:64]!r})"
        token = _token_of(entry, where)
        if token.name in names:
            raise TokenFileError(f"{where}: the name is used by an earlier entry")
        if token.digest in digests:
            # One token under two names would make the audit's caller ambiguous.
            raise TokenFileError(f"{where}: the same token as an earlier entry")
        names.add(token.name)
        digests.add(token.digest)
        tokens.append(token)
    return tuple(tokens)


def _token_of(entry: Any, where: str) -> Token:
    def fail(problem: str) -> TokenFileError:
        return TokenFileError(f"{where}: {problem}")

    if not isinstance(entry, dict):
        raise fail("an entry must be an object with name, sha256 and scopes")
    unknown = sorted(set(entry) - ENTRY_FIELDS)
    if unknown:
        raise fail(f"unknown field(s) {', '.join(unknown)} (expected name, sha256, scopes)")
    name, digest, scopes = entry.get("name"), entry.get("sha256"), entry.get("scopes")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise fail("'name' must be 1-64 characters: letters, digits and _.:- (not first)")
    if not isinstance(digest, str) or not HEX_SHA256.fullmatch(digest):
        raise fail("'sha256' must be the 64 lower-case hex digits of the token's SHA-256")
    if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
        raise fail(f"'scopes' must be a non-empty list of {', '.join(SCOPES)}")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise fail(f"unknown scope(s) {', '.join(unknown)} (known: {', '.join(SCOPES)})")
    return Token(name, bytes.fromhex(digest), frozenset(scopes))


def _is_token(text: str) -> bool:
    return MIN_TOKEN_LENGTH <= len(text) <= MAX_TOKEN_LENGTH and TOKEN.fullmatch(text) is not None


def allows(scopes: frozenset[str], required: str) -> bool:
    """Whether a token with ``scopes`` may call a route that requires ``required``."""
    return ADMIN in scopes or required in scopes


def authorize(header_value: str | None, required_scope: str, tokens: Sequence[Token]) -> Caller | Refusal:
    """Decide on a call from its ``Authorization`` header, for a route requiring ``required_scope``."""
    if not header_value or not header_value.strip():
        return Refusal(401, "unauthorized", "missing bearer token", f'Bearer realm="{REALM}"')
    scheme, _, credentials = header_value.strip().partition(" ")
    credentials = credentials.strip()
    # The scheme is case-insensitive (RFC 7235); the length check keeps a long header from being hashed.
    if scheme.lower() != "bearer" or len(credentials) > MAX_TOKEN_LENGTH or not TOKEN.fullmatch(credentials):
        return Refusal(
            401,
            "unauthorized",
            "malformed Authorization header: expected 'Bearer <token>'",
            f'Bearer realm="{REALM}", error="invalid_request"',
        )
    presented = hashlib.sha256(credentials.encode("utf-8")).digest()
    found: Token | None = None
    for token in tokens:  # every entry, every time: no early exit
        if hmac.compare_digest(presented, token.digest):
            found = token
    if found is None:
        return Refusal(401, "unauthorized", "unknown token", f'Bearer realm="{REALM}", error="invalid_token"')
    if not allows(found.scopes, required_scope):
        return Refusal(
            403,
            "forbidden",
            f"token {found.name!r} lacks scope {required_scope!r}",
            f'Bearer realm="{REALM}", error="insufficient_scope", scope="{required_scope}"',
            found.name,
        )
    return Caller(found.name, found.scopes)
