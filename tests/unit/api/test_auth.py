"""Bearer tokens and scopes (streams.api.auth): who may call which API route, and the tokens file."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from pathlib import Path

import orjson
import pytest

from streams.api.auth import (
    SCOPES,
    Caller,
    Refusal,
    TokenFileError,
    authorize,
    hash_token,
    load_tokens,
    parse_tokens,
    token_entry,
    tokens_file_text,
)
from streams.api.server import CRM_ROUTE, ERASURE_ROUTE, PREFERENCES_ROUTE, ROUTES, USER_ROUTE

TOKENS = {
    "reader": "read-token-0123456789abcdef",
    "writer": "write-token-0123456789abcdef",
    "admin": "admin-token-0123456789abcdef",
    "both": "both-token-0123456789abcdef",
}
SCOPES_OF = {
    "reader": ["read:scores"],
    "writer": ["write:preferences"],
    "admin": ["admin"],
    "both": ["read:scores", "write:preferences"],
}
# Written out, not derived from streams.api.auth.allows: which token may call which route.
ALLOWED = {
    ("reader", USER_ROUTE): True,
    ("reader", PREFERENCES_ROUTE): False,
    ("reader", ERASURE_ROUTE): False,
    ("reader", CRM_ROUTE): False,
    ("writer", USER_ROUTE): False,
    ("writer", PREFERENCES_ROUTE): True,
    ("writer", ERASURE_ROUTE): False,
    ("writer", CRM_ROUTE): False,
    ("admin", USER_ROUTE): True,
    ("admin", PREFERENCES_ROUTE): True,
    ("admin", ERASURE_ROUTE): True,
    ("admin", CRM_ROUTE): True,
    ("both", USER_ROUTE): True,
    ("both", PREFERENCES_ROUTE): True,
    ("both", ERASURE_ROUTE): False,
    ("both", CRM_ROUTE): False,
}


@pytest.fixture
def tokens():
    return parse_tokens({"tokens": [token_entry(name, TOKENS[name], SCOPES_OF[name]) for name in TOKENS]})


def test_the_routes_require_the_documented_scopes() -> None:
    assert {(r.method, r.template): r.scope for r in ROUTES} == {
        ("GET", "/api/v1/users/{user_id}"): "read:scores",
        ("PUT", "/api/v1/users/{user_id}/preferences"): "write:preferences",
        ("POST", "/api/v1/users/{user_id}/erasure"): "admin",
        ("POST", "/api/v1/crm/{user_id}"): "admin",
        ("GET", "/api/v1/products/{product_id}/faq-forecast"): "read:forecasts",
    }
    assert SCOPES == ("read:scores", "write:preferences", "admin", "read:forecasts")


@pytest.mark.parametrize(("name", "route"), list(ALLOWED))
def test_each_scope_is_allowed_or_refused_on_each_route(tokens, name: str, route) -> None:
    verdict = authorize(f"Bearer {TOKENS[name]}", route.scope, tokens)
    if ALLOWED[(name, route)]:
        assert verdict == Caller(name, frozenset(SCOPES_OF[name]))
    else:
        assert isinstance(verdict, Refusal)
        assert (verdict.status, verdict.result, verdict.name) == (403, "forbidden", name)
        assert verdict.detail == f"token {name!r} lacks scope {route.scope!r}"
        assert verdict.challenge == (
            f'Bearer realm="forewarn", error="insufficient_scope", scope="{route.scope}"'
        )


@pytest.mark.parametrize("header", [None, "", "   "])
def test_a_missing_header_is_401_with_a_bare_challenge(tokens, header) -> None:
    verdict = authorize(header, "read:scores", tokens)
    assert verdict == Refusal(401, "unauthorized", "missing bearer token", 'Bearer realm="forewarn"')


@pytest.mark.parametrize(
    "header",
    [
        "Basic cmVhZDp0b2tlbg==",
        "Bearer",
        "Bearer ",
        "read-token-0123456789abcdef",  # no scheme
        "Token read-token-0123456789abcdef",
        "Bearer read-token 0123456789abcdef",  # two credentials
        "Bearer read-token-0123456789abcdef\x00",
        "Bearer réad-token-0123456789abcdef",
        "Bearer " + "a" * 513,
    ],
)
def test_a_malformed_header_is_401_invalid_request(tokens, header: str) -> None:
    verdict = authorize(header, "read:scores", tokens)
    assert isinstance(verdict, Refusal)
    assert (verdict.status, verdict.result) == (401, "unauthorized")
    assert verdict.detail == "malformed Authorization header: expected 'Bearer <token>'"
    assert verdict.challenge == 'Bearer realm="forewarn", error="invalid_request"'


@pytest.mark.parametrize(
    "token",
    [
        "wrong-token-0123456789abcdef",
        "read-token-0123456789abcde",  # a prefix of a real one
        "read-token-0123456789abcdefX",  # a real one with more
        "READ-TOKEN-0123456789ABCDEF",  # tokens are case-sensitive
        hash_token(TOKENS["admin"]),  # the stored hash is not a token
    ],
)
def test_an_unknown_token_is_401_invalid_token(tokens, token: str) -> None:
    verdict = authorize(f"Bearer {token}", "read:scores", tokens)
    assert verdict == Refusal(
        401, "unauthorized", "unknown token", 'Bearer realm="forewarn", error="invalid_token"'
    )


def test_the_scheme_is_case_insensitive_and_spaces_around_are_ignored(tokens) -> None:
    for header in (
        f"bearer {TOKENS['reader']}",
        f"BEARER  {TOKENS['reader']} ",
        f" Bearer {TOKENS['reader']}",
    ):
        assert authorize(header, "read:scores", tokens) == Caller("reader", frozenset({"read:scores"}))


def test_without_tokens_every_call_is_refused_401() -> None:
    assert load_tokens("") == ()
    for route in ROUTES:
        for token in TOKENS.values():
            verdict = authorize(f"Bearer {token}", route.scope, ())
            assert isinstance(verdict, Refusal) and verdict.status == 401


def test_every_token_hash_is_compared_every_time(tokens, monkeypatch: pytest.MonkeyPatch) -> None:
    """No early exit: as many constant-time comparisons whichever entry matches, or none."""
    compared: list[int] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(1)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    for token in [*TOKENS.values(), "no-such-token-0123456789"]:
        compared.clear()
        authorize(f"Bearer {token}", "read:scores", tokens)
        assert len(compared) == len(TOKENS)


def test_token_entry_stores_only_the_hash() -> None:
    entry = token_entry("crm-prod", TOKENS["reader"], ["read:scores", "write:preferences"])
    assert entry == {
        "name": "crm-prod",
        "sha256": hashlib.sha256(TOKENS["reader"].encode()).hexdigest(),
        "scopes": ["read:scores", "write:preferences"],
    }
    assert TOKENS["reader"] not in orjson.dumps(entry).decode()


@pytest.mark.parametrize(
    ("name", "token", "scopes", "message"),
    [
        ("crm", "short-token", ["admin"], "16-512 characters"),
        ("crm", "has space in the token 0123", ["admin"], "16-512 characters"),
        ("crm", "x" * 513, ["admin"], "16-512 characters"),
        ("crm", TOKENS["admin"], ["superuser"], "unknown scope(s) superuser"),
        ("crm", TOKENS["admin"], [], "non-empty list"),
        ("crm prod", TOKENS["admin"], ["admin"], "'name' must be"),
    ],
)
def test_token_entry_refuses_what_the_api_would_not_accept(name, token, scopes, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        token_entry(name, token, scopes)
    assert token not in str(raised.value)


def test_a_tokens_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(tokens_file_text([token_entry("crm-prod", TOKENS["writer"], ["write:preferences"])]))
    loaded = load_tokens(str(path))
    assert [(t.name, t.scopes) for t in loaded] == [("crm-prod", frozenset({"write:preferences"}))]
    assert authorize(f"Bearer {TOKENS['writer']}", "write:preferences", loaded) == Caller(
        "crm-prod", frozenset({"write:preferences"})
    )
    assert TOKENS["writer"] not in path.read_text() and "sha256" not in repr(loaded)


GOOD = {"name": "ok", "sha256": hash_token("ok-token-0123456789abcdef"), "scopes": ["admin"]}


@pytest.mark.parametrize(
    ("tokens_value", "message"),
    [
        (["not-an-object"], r"tokens\[0\]: an entry must be an object"),
        ([{**GOOD, "scope": ["admin"]}], r"tokens\[0\] \('ok'\): unknown field\(s\) scope"),
        ([{**GOOD, "name": ""}], r"tokens\[0\] \(''\): 'name' must be"),
        ([{**GOOD, "name": 7}], r"tokens\[0\]: 'name' must be"),
        ([{**GOOD, "sha256": "abc"}], r"tokens\[0\] \('ok'\): 'sha256' must be the 64"),
        ([{**GOOD, "sha256": GOOD["sha256"].upper()}], r"'sha256' must be the 64 lower-case"),
        ([{**GOOD, "scopes": []}], r"'scopes' must be a non-empty list"),
        ([{**GOOD, "scopes": "admin"}], r"'scopes' must be a non-empty list"),
        ([{**GOOD, "scopes": ["admin", "root"]}], r"unknown scope\(s\) root"),
        ([GOOD, {**GOOD, "sha256": hash_token("other-token-0123456789")}], r"tokens\[1\] \('ok'\): the name"),
        ([GOOD, {**GOOD, "name": "again"}], r"tokens\[1\] \('again'\): the same token as an earlier entry"),
    ],
)
def test_file_errors_name_the_file_and_the_entry(tmp_path: Path, tokens_value, message: str) -> None:
    path = tmp_path / "api-tokens.json"
    path.write_bytes(orjson.dumps({"tokens": tokens_value}))
    with pytest.raises(TokenFileError, match=message) as raised:
        load_tokens(str(path))
    assert str(raised.value).startswith(f"API tokens file {path}: ")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "expected an object with a 'tokens' list"),
        (b'{"token": []}', "expected an object with a 'tokens' list"),
    ],
)
def test_an_unreadable_file_is_named(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "api-tokens.json"
    path.write_bytes(content)
    with pytest.raises(TokenFileError, match=message) as raised:
        load_tokens(str(path))
    assert str(path) in str(raised.value)
    with pytest.raises(TokenFileError, match="cannot be read") as missing:
        load_tokens(str(tmp_path / "absent.json"))
    assert str(tmp_path / "absent.json") in str(missing.value)


def test_no_token_reaches_a_log_record_or_a_refusal(tokens, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = [*TOKENS.values(), "wrong-token-0123456789abcdef"]
    refusals = []
    for route in ROUTES:
        for token in secrets:
            for header in (f"Bearer {token}", f"Basic {token}", f"Bearer {token} {token}", token):
                verdict = authorize(header, route.scope, tokens)
                if isinstance(verdict, Refusal):
                    refusals.append(verdict)
    assert len(refusals) > 50
    shown = [r.getMessage() for r in caplog.records] + [f"{r.detail} {r.challenge}" for r in refusals]
    shown += [repr(t) for t in tokens]
    for secret in secrets:
        assert not any(secret in text for text in shown)
