"""Pseudonymous user ids for ClickHouse: a keyed hash of the user id replaces it before a row is stored.

Why keyed (HMAC-SHA256) and not a plain hash: user ids are guessable (sequential numbers, e-mail
addresses, phone numbers), so anyone able to read ClickHouse could hash every candidate and reverse a
plain SHA-256 pseudonym. Without the key nobody can compute or check a pseudonym, yet one user always
gets the same pseudonym, so every per-user query, join and materialized view works unchanged.

Why 32 hex characters (128 bits of the 256): collisions stay negligible (about n**2 / 2**129 for n
users, below 1e-20 for a billion), and sorting keys that start with ``user_id`` stay short.

The key: every worker and every sink of a deployment must use the same key, or one user gets several
pseudonyms and their rows no longer join (nor are all of them found by an erasure). Rotating the key
therefore breaks joins across the rotation: rows stored before it carry the old pseudonyms, which no
new row matches, and an erasure after it finds only rows stored under the new key. Rotate only
together with a rewrite (or the expiry, see :mod:`sinks.retention`) of the old rows. The key comes
from ``FOREWARN_PSEUDONYM_KEY``, or else from ``FOREWARN_PSEUDONYM_KEY_FILE``, created with a random
key on first use (:func:`load_key`); the file's text is the key, so copying it into the variable gives
the same pseudonyms. The key is never logged: :class:`Pseudonymizer` hides it from ``repr``.

>>> pseudonymize = Pseudonymizer(b"a key of at least sixteen characters")
>>> alias = pseudonymize("u1")
>>> len(alias), alias == pseudonymize("u1"), alias == Pseudonymizer(b"another key, also long")("u1")
(32, True, False)
>>> pseudonymize
Pseudonymizer(key=***)
>>> row = pseudonymize_row(("e1", "u1", '{"owner":"u1","page":"/u1"}'), 1, pseudonymize)
>>> row[1] == alias, row[2] == '{"owner":"%s","page":"/u1"}' % alias
(True, True)
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

log = logging.getLogger(__name__)

PSEUDONYM_CHARS = 32
MIN_KEY_CHARS = 16
KEY_FILE_BYTES = 32  # random bytes in a key file made by load_key, written as 64 hex characters


@dataclass(frozen=True, slots=True)
class Pseudonymizer:
    """``user id -> pseudonym``: HMAC-SHA256 under ``key``, the first 32 hex characters.

    The empty id (no user) stays empty: it names nobody, and ``user_id = ''`` keeps its meaning.
    """

    key: bytes

    def __call__(self, user_id: str) -> str:
        if not user_id:
            return ""
        return hmac.new(self.key, user_id.encode(), hashlib.sha256).hexdigest()[:PSEUDONYM_CHARS]

    def __repr__(self) -> str:  # never print the key
        return "Pseudonymizer(key=***)"


class KeySettings(Protocol):
    pseudonym_key: str
    pseudonym_key_file: str


class ClusterSecretSettings(Protocol):
    cluster_secret: str
    cluster_secret_file: str


def load_key(settings: KeySettings, *, wait_seconds: float = 5.0) -> bytes:
    """The pseudonym key: ``settings.pseudonym_key`` (text, at least 16 characters), else the text of
    ``settings.pseudonym_key_file``, which is created (parent directories too, mode 0600) with 32
    random bytes in hex when it does not exist (:func:`load_secret`)."""
    return load_secret(
        settings.pseudonym_key, settings.pseudonym_key_file, "PSEUDONYM_KEY", wait_seconds=wait_seconds
    )


def load_cluster_secret(settings: ClusterSecretSettings, *, wait_seconds: float = 5.0) -> bytes:
    """The secret every worker of a deployment shares to trust each other: it authenticates model
    checkpoints read back from their changelog and the API calls one worker forwards to another.
    ``settings.cluster_secret``, else the text of ``settings.cluster_secret_file`` (created like the
    pseudonym key's file, :func:`load_secret`)."""
    return load_secret(
        settings.cluster_secret, settings.cluster_secret_file, "CLUSTER_SECRET", wait_seconds=wait_seconds
    )


def load_secret(value: str, file: str, name: str, *, wait_seconds: float = 5.0) -> bytes:
    """``value`` (text, at least 16 characters), else the text of ``file``, which is created (parent
    directories too, mode 0600) with 32 random bytes in hex when it does not exist. ``name`` is the
    setting's name after ``FOREWARN_``, for the errors.

    Several workers starting together on a shared volume end with ONE secret: each writes its candidate
    to a private temporary file and hard-links it to the file's name, which fails for all but the
    first; the others then read the winner's. A reader never sees a half-written file, since the name
    appears only once the content is complete.
    """
    if value:
        if len(value) < MIN_KEY_CHARS:
            raise ValueError(f"FOREWARN_{name} must be at least {MIN_KEY_CHARS} characters")
        return value.encode()
    if not file:
        raise ValueError(f"set FOREWARN_{name} or FOREWARN_{name}_FILE")
    path = Path(file)
    if not path.exists():
        _create_key_file(path)
    return _read_key_file(path, wait_seconds)


def _new_key() -> str:
    return secrets.token_hex(KEY_FILE_BYTES)


def _create_key_file(path: Path) -> None:
    """Create ``path`` holding a new random key unless another process creates it first."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(_new_key() + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            # link, not rename: rename would replace a key another worker has already put there.
            os.link(temporary, path)
            log.info("created the key file %s", path)
        except FileExistsError:
            pass  # another worker won; its key is read below
        except OSError as error:
            if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            # No hard links on this file system: create the name exclusively and write it in place;
            # a concurrent reader waits until the content is complete (_read_key_file).
            with contextlib.suppress(FileExistsError):
                _write_exclusively(path, temporary.read_text())
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def _write_exclusively(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())


def _read_key_file(path: Path, wait_seconds: float) -> bytes:
    deadline = time.monotonic() + wait_seconds
    while True:
        text = path.read_text(encoding="ascii").strip()
        if len(text) >= MIN_KEY_CHARS:
            break
        if time.monotonic() > deadline:
            raise ValueError(f"key file {path} holds fewer than {MIN_KEY_CHARS} characters")
        time.sleep(0.05)  # being written by another worker (file systems without hard links only)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("key file %s is readable by others (mode %o); it should be 0600", path, mode)
    return text.encode()


def quoted_forms(user_id: str) -> tuple[str, ...]:
    """The ways ``user_id`` appears as a JSON string (with and without non-ASCII escaped).

    >>> quoted_forms("u1"), quoted_forms("李")
    (('"u1"',), ('"李"', '"\\\\u674e"'))
    """
    forms = dict.fromkeys((orjson.dumps(user_id).decode(), json.dumps(user_id)))
    return tuple(forms)


def pseudonymize_row(
    row: tuple[Any, ...], user_index: int, pseudonymize: Callable[[str], str]
) -> tuple[Any, ...]:
    """``row`` with its user id replaced by the pseudonym, also where the id appears as a JSON string in
    another text column (a whole message kept as JSON, attrs, evidence), so that no raw id is stored.

    Only the quoted form is replaced: free text that merely contains the id is left as it is. A user id
    that is not a string is a ``TypeError`` (the sink dead-letters the message rather than store it).
    """
    raw = row[user_index]
    if not isinstance(raw, str):
        raise TypeError(f"user id must be a string, not {type(raw).__name__}")
    if not raw:
        return row
    alias = pseudonymize(raw)
    values = list(row)
    values[user_index] = alias
    replacement = orjson.dumps(alias).decode()
    forms = quoted_forms(raw)
    for index, value in enumerate(values):
        if index != user_index and isinstance(value, str):
            for form in forms:
                if form in value:
                    value = value.replace(form, replacement)
            values[index] = value
    return tuple(values)


class RowPseudonymizer:
    """:func:`pseudonymize_row` for a stream of rows (the sink's): the same result, with the per-user
    work (the HMAC, the id's JSON forms) done once per user rather than once per row.

    Users recur (a session is many events), so the cache, bounded to ``limit`` users and emptied when
    full, saves most of it. It holds pseudonyms of recent users only, like the rows being batched.

    >>> rows = RowPseudonymizer(Pseudonymizer(b"a key of at least sixteen characters"))
    >>> row = ("e1", "u1", '{"owner":"u1"}', 7)
    >>> rows(row, 1) == pseudonymize_row(row, 1, rows.pseudonymize), rows(row, 1) is not row
    (True, True)
    """

    def __init__(self, pseudonymize: Callable[[str], str], limit: int = 10_000) -> None:
        self.pseudonymize = pseudonymize
        self.limit = limit
        # user id -> (pseudonym, the pseudonym as a JSON string, the id's JSON forms)
        self._users: dict[str, tuple[str, str, tuple[str, ...]]] = {}

    def __call__(self, row: tuple[Any, ...], user_index: int) -> tuple[Any, ...]:
        raw = row[user_index]
        if not isinstance(raw, str):
            raise TypeError(f"user id must be a string, not {type(raw).__name__}")
        if not raw:
            return row
        user = self._users.get(raw)
        if user is None:
            if len(self._users) >= self.limit:
                self._users.clear()
            alias = self.pseudonymize(raw)
            user = self._users[raw] = (alias, orjson.dumps(alias).decode(), quoted_forms(raw))
        alias, replacement, forms = user
        values = list(row)
        values[user_index] = alias  # which holds no quote: the replacements leave it as it is
        # One pass over the row, most values not strings or without the form: a list rebuilt per form
        # cost a fifth more (benchmarks/sink.py).
        for form in forms:
            for index, value in enumerate(values):
                if isinstance(value, str) and form in value:
                    values[index] = value.replace(form, replacement)
        return tuple(values)


@dataclass(frozen=True, slots=True)
class UserTable:
    """A ClickHouse table that holds users' data: its user id column (None: none, the id may only be
    inside a payload) and the column its retention counts from."""

    table: str
    user_column: str | None
    time_column: str | None


# Tables ClickHouse fills from the sink's tables (materialized views): they hold user ids too, and so
# are erased and expire like the tables they come from. The one place to list them.
DERIVED_USER_TABLES = (
    UserTable("user_scores_latest", "user_id", "scored_at"),
    UserTable("intervention_outcomes", "user_id", "event_time"),
)
# Dead letters keep the original message bytes (raw ids and all); their user_id column is the pseudonym
# of the id the payload names (sinks.rows.payload_user_id). Listed here for the sinks not given them.
DEAD_LETTER_TABLE = UserTable("dead_letters", "user_id", "rejected_at")
# The audit tables are kept (longer) for accountability.
AUDIT_TABLES = (
    UserTable("erasures", None, "completed_at"),
    UserTable("api_audit", "user_id", "at"),
)


def spec_tables(specs: Iterable[Any]) -> list[UserTable]:
    """The sink's tables (:class:`sinks.rows.TableSpec`) with their user and time columns, by name."""
    tables = []
    for spec in specs:
        user = None if spec.user_index is None else spec.columns[spec.user_index]
        time_column = None if spec.time_index is None else spec.columns[spec.time_index]
        tables.append(UserTable(spec.table, user, time_column))
    return tables


def user_tables(specs: Iterable[Any]) -> list[UserTable]:
    """Every table holding rows keyed by a user id: the specs with ``user_index``, and the derived ones.

    >>> from sinks.rows import DEAD_LETTERS, EVENTS, SCORES
    >>> [t.table for t in user_tables([EVENTS, DEAD_LETTERS, SCORES])]
    ['events', 'dead_letters', 'user_scores', 'user_scores_latest', 'intervention_outcomes']
    """
    found = {t.table: t for t in spec_tables(specs) if t.user_column is not None}
    for derived in DERIVED_USER_TABLES:
        found.setdefault(derived.table, derived)
    return list(found.values())
