"""``forewarn doctor``: check the broker, the topics, ClickHouse and the worker's files, and say in plain
words what is wrong and what to do about it.

The checks are pure functions of what was observed (:class:`BrokerView`, :class:`ClickHouseView`), so
each verdict is testable without a broker; thin functions do the looking, each bounded in time: a broker
nobody answers for is reported within seconds, never waited for. One line per check::

    ok    broker          127.0.0.1:9092 answers: cluster tansu_cluster, 1 broker, controller 111
    FAIL  topics          forewarn-events has 4 partitions, FOREWARN_PARTITIONS is 8: ... -> recreate ...

Exit code 0 when nothing failed (warnings allowed), 1 otherwise. Secrets (the ClickHouse and SASL
passwords, the pseudonym key) are never printed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from streams.contracts.settings import Settings
from streams.contracts.topics import copartitioned_topics, partition_mismatch, source_topic_names, topic_names

OK = "ok"
INFO = "info"
WARN = "warn"
FAIL = "FAIL"

BROKER_TIMEOUT_SECONDS = 10.0
BROKER_REQUEST_TIMEOUT_MS = 5000
# Added to an http(s) DSN that sets none: a ClickHouse that does not answer is reported, not waited for.
CLICKHOUSE_TIMEOUTS = {"connect_timeout": "5", "send_receive_timeout": "15"}


@dataclass(frozen=True, slots=True)
class Check:
    """One verdict: what was checked, ok/info/warn/FAIL, what was found, and what to do about it."""

    name: str
    status: str
    message: str
    hint: str = ""

    def line(self) -> str:
        """One line of the report: status, check, what was found, and after ``->`` what to do.

        >>> print(Check("schema", FAIL, "version 3, this worker needs 5", "run `forewarn schema`").line())
        FAIL  schema          version 3, this worker needs 5 -> run `forewarn schema`
        """
        text = f"{self.status:<5} {self.name:<15} {self.message}"
        return f"{text} -> {self.hint}" if self.hint else text


# --- what was observed


@dataclass(frozen=True, slots=True)
class TopicInfo:
    partitions: int
    replicas: int  # the fewest replicas any of its partitions has


@dataclass(frozen=True, slots=True)
class BrokerView:
    brokers: int
    controller_id: int
    cluster_id: str | None
    topics: dict[str, TopicInfo]


@dataclass(frozen=True, slots=True)
class EmbeddedInUse:
    """The embedded database is open in another process (the engine admits one at a time)."""

    pid: int


@dataclass(frozen=True, slots=True)
class ClickHouseView:
    server_version: str
    applied: tuple[int, ...]  # the schema versions recorded in schema_migrations
    tables: frozenset[str]


# --- verdicts (pure)


def plural(count: int, word: str) -> str:
    """
    >>> plural(1, "broker"), plural(3, "partition")
    ('1 broker', '3 partitions')
    """
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def short_error(error: BaseException) -> str:
    """The gist of a client error: the operating system's reason when there is one, else its first line.

    >>> short_error(OSError(111, "Connection refused"))
    'Connection refused'
    >>> short_error(RuntimeError("Max retries (Caused by ... [Errno -2] Name or service not known'))"))
    'Name or service not known'
    """
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    text = str(error).strip()
    reason = re.search(r"\[Errno -?\d+\] ([^\"'()\]]+)", text)
    if reason:
        return reason.group(1).strip()
    first_line = text.splitlines()[0] if text else type(error).__name__
    return first_line if len(first_line) <= 240 else first_line[:240] + "..."


def masked_dsn(dsn: str) -> str:
    """The DSN with its password replaced by ``***``.

    >>> masked_dsn("http://forewarn:s3cret@clickhouse:8123/forewarn")
    'http://forewarn:***@clickhouse:8123/forewarn'
    >>> masked_dsn("chdb:///var/lib/forewarn/clickhouse")
    'chdb:///var/lib/forewarn/clickhouse'
    """
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***``: a client's error may quote what it was given.

    >>> scrub("login as u with pw hunter2 failed", ["hunter2", ""])
    'login as u with pw *** failed'
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def broker_checks(settings: Settings, observed: BrokerView | str) -> list[Check]:
    """The broker, then (when it answered) the topics; ``observed`` is the problem, in words, when it
    could not be reached.

    >>> settings = Settings.from_env({"FOREWARN_BROKER_URL": "kafka://kafka:9092"})
    >>> print(broker_checks(settings, "Connection refused")[0].message)
    cannot reach the Kafka broker at kafka:9092 (PLAINTEXT): Connection refused
    """
    where = ", ".join(settings.bootstrap_servers)
    if isinstance(observed, str):
        return [
            Check(
                "broker",
                FAIL,
                f"cannot reach the Kafka broker at {where} ({settings.broker_security_protocol}): {observed}",
                "start Kafka there, or set FOREWARN_BROKER_URL (and FOREWARN_BROKER_SECURITY_PROTOCOL,"
                " FOREWARN_BROKER_SASL_* if it needs them)",
            ),
            Check("topics", INFO, "not checked: the broker cannot be reached"),
        ]
    protocol = settings.broker_security_protocol
    security = "" if protocol == "PLAINTEXT" else f" over {protocol}"
    checks = [
        Check(
            "broker",
            OK,
            f"{where} answers{security}: cluster {observed.cluster_id or '(no id)'},"
            f" {plural(observed.brokers, 'broker')}, controller {observed.controller_id}",
        )
    ]
    if settings.replication_factor > observed.brokers:
        checks.append(
            Check(
                "broker",
                WARN,
                f"FOREWARN_REPLICATION_FACTOR is {settings.replication_factor} but the cluster has"
                f" {plural(observed.brokers, 'broker')}: topics cannot be created with that many replicas",
                f"set FOREWARN_REPLICATION_FACTOR={observed.brokers} or add brokers",
            )
        )
    return [
        *checks,
        *topic_checks(settings, observed.topics),
        stock_check(settings, observed.topics),
        changelog_check(settings, observed.topics),
    ]


def topic_checks(settings: Settings, found: Mapping[str, TopicInfo]) -> list[Check]:
    """Every topic Forewarn needs exists; the co-partitioned ones have exactly FOREWARN_PARTITIONS
    partitions (FAIL); source topics with fewer, or topics with fewer replicas than asked (warnings)."""
    needed = topic_names(settings)
    checks = []
    missing = [name for name in needed if name not in found]
    if missing:
        checks.append(
            Check(
                "topics",
                FAIL,
                f"{len(missing)} of {plural(len(needed), 'topic')} missing: {', '.join(missing)}",
                "run `forewarn topics` (the worker also creates them when it starts)",
            )
        )
    for name in copartitioned_topics(settings):
        if name not in found:
            continue
        problem = partition_mismatch(settings, name, found[name].partitions)
        if problem:
            checks.append(
                Check(
                    "topics",
                    FAIL,
                    problem,
                    f"recreate {name} with {settings.partitions} partitions (delete it, then"
                    f" `forewarn topics`) or set FOREWARN_PARTITIONS={found[name].partitions}",
                )
            )
    if not checks:
        copartitioned = ", ".join(copartitioned_topics(settings))
        checks.append(
            Check(
                "topics",
                OK,
                f"all {len(needed)} topics exist; {copartitioned} have {settings.partitions} partitions"
                " (FOREWARN_PARTITIONS)",
            )
        )
    sources = source_topic_names(settings)
    source_partitions = {name: found[name].partitions for name in sources if name in found}
    if narrow := {name: count for name, count in source_partitions.items() if count < settings.partitions}:
        checks.append(
            Check(
                "topics",
                WARN,
                f"source topics with fewer partitions than FOREWARN_PARTITIONS={settings.partitions}:"
                f" {with_counts(narrow)}; no more workers than that can read each of them",
                f"add partitions to them (kafka-topics --alter --partitions {settings.partitions})",
            )
        )
    replicas = {name: found[name].replicas for name in needed if name in found}
    if thin := {name: count for name, count in replicas.items() if count < settings.replication_factor}:
        checks.append(
            Check(
                "topics",
                WARN,
                f"topics with fewer replicas than FOREWARN_REPLICATION_FACTOR={settings.replication_factor}:"
                f" {with_counts(thin)}; losing a broker can lose their messages",
                "raise their replication factor (kafka-reassign-partitions)",
            )
        )
    return checks


def with_counts(counts: Mapping[str, int]) -> str:
    """
    >>> with_counts({"clickstream": 2, "logistics": 1})
    'clickstream (2), logistics (1)'
    """
    return ", ".join(f"{name} ({count})" for name, count in counts.items())


def stock_check(settings: Settings, found: Mapping[str, TopicInfo]) -> Check:
    name = settings.topic_stock
    if name in found:
        return Check(
            "stock",
            OK,
            f"{name} exists ({plural(found[name].partitions, 'partition')}): orders are checked against it",
        )
    return Check(
        "stock",
        INFO,
        f"no {name} topic: orders are not checked against stock (they are from the moment the stock"
        " system creates it)",
    )


def changelog_check(settings: Settings, found: Mapping[str, TopicInfo]) -> Check:
    """Faust's changelog topics (the tables' state) exist once a worker has run; their partition count
    was fixed then and must still be FOREWARN_PARTITIONS."""
    prefix = f"{settings.app_id}-"
    changelogs = sorted(name for name in found if name.startswith(prefix) and name.endswith("-changelog"))
    if not changelogs:
        return Check(
            "changelogs", INFO, "none yet: a worker creates its tables' changelog topics when it first starts"
        )
    wrong = {
        name: found[name].partitions for name in changelogs if found[name].partitions != settings.partitions
    }
    if wrong:
        return Check(
            "changelogs",
            FAIL,
            f"changelog topics with other than FOREWARN_PARTITIONS={settings.partitions} partitions:"
            f" {with_counts(wrong)}; the workers' tables were built with another partition count",
            "set FOREWARN_PARTITIONS back to what they have, or delete the changelog topics (the tables'"
            " state is lost)",
        )
    return Check(
        "changelogs",
        INFO,
        f"{plural(len(changelogs), 'changelog topic')} with {settings.partitions} partitions"
        f" ({', '.join(changelogs)}): a worker has run; its tables are restored from them",
    )


def clickhouse_checks(
    dsn: str,
    observed: ClickHouseView | EmbeddedInUse | str | None,
    shipped: Sequence[int],
    sink_tables: Iterable[str],
) -> list[Check]:
    """Reachable, schema version against the migrations this worker ships, the sink's tables.
    ``observed`` is the problem, in words, when ClickHouse could not be used; None when the embedded
    database does not exist yet."""
    if isinstance(observed, EmbeddedInUse):
        return [
            Check(
                "clickhouse",
                WARN,
                f"not checked: the embedded database at {urlsplit(dsn).path} is open in process"
                f" {observed.pid} (a worker?), and the engine admits one process at a time",
                "run the doctor while that process is stopped, or use a ClickHouse server",
            )
        ]
    if observed is None:
        return [
            Check(
                "clickhouse",
                FAIL,
                f"there is no embedded database at {urlsplit(dsn).path} yet",
                "run `forewarn schema` to create it with its tables (the worker also does when it starts)",
            )
        ]
    if isinstance(observed, str):
        if dsn.startswith("chdb:"):
            hint = "fix FOREWARN_CLICKHOUSE_DSN, or the rights on that directory"
        else:
            hint = "start ClickHouse there, or fix FOREWARN_CLICKHOUSE_DSN (host, port, user, password, db)"
        return [Check("clickhouse", FAIL, f"cannot use ClickHouse at {masked_dsn(dsn)}: {observed}", hint)]
    checks = [Check("clickhouse", OK, f"{masked_dsn(dsn)} answers (ClickHouse {observed.server_version})")]
    schema = schema_check(observed.applied, shipped)
    checks.append(schema)
    if schema.status != FAIL:  # behind: the missing tables are that migration's, and the hint says it
        checks.append(tables_check(observed.tables, sink_tables))
    return checks


def schema_check(applied: Sequence[int], shipped: Sequence[int]) -> Check:
    """The schema version in ClickHouse against the latest migration in sinks/schema.

    >>> schema_check([1, 2, 3], [1, 2, 3]).status, schema_check([1], [1, 2]).status
    ('ok', 'FAIL')
    """
    latest = max(shipped, default=0)
    current = max(applied, default=0)
    if current > latest:
        return Check(
            "schema",
            WARN,
            f"schema version {current} is newer than the latest migration this worker ships ({latest}):"
            " the worker is older than the schema",
            "run the Forewarn release that applied it",
        )
    missing = [version for version in shipped if version not in applied]
    if missing:
        found = f"schema version {current}" if applied else "no schema yet"
        return Check(
            "schema",
            FAIL,
            f"{found}, this worker needs {latest}: {plural(len(missing), 'migration')} not applied"
            f" ({', '.join(map(str, missing))})",
            "run `forewarn schema` (the worker also applies them when it starts)",
        )
    return Check("schema", OK, f"schema version {current}, the latest this worker ships")


def tables_check(present: Iterable[str], sink_tables: Iterable[str]) -> Check:
    needed = sorted(set(sink_tables))
    missing = [table for table in needed if table not in set(present)]
    if missing:
        return Check(
            "tables",
            FAIL,
            f"tables the sink writes are missing: {', '.join(missing)}",
            "a table was dropped after its migration: delete that migration's row from schema_migrations,"
            " then run `forewarn schema`",
        )
    return Check("tables", OK, f"the {len(needed)} tables the sink writes exist")


def writable_place(path: Path) -> tuple[bool, Path]:
    """Whether ``path`` can be written or created, and the existing directory that decides it."""
    place = path if path.is_dir() else path.parent
    while not place.exists() and place != place.parent:
        place = place.parent
    return place.is_dir() and os.access(place, os.W_OK | os.X_OK), place


# --- local files: the same loaders as the worker


FIX_FILE = "fix the file: the worker refuses to start with it"


def policy_check(settings: Settings) -> Check:
    from streams.domain.policy import PolicyError, load_policy

    try:
        policy = load_policy(settings.policy_file)
    except PolicyError as error:
        return Check("policy", FAIL, str(error), FIX_FILE)
    source = settings.policy_file or "the packaged default"
    return Check("policy", OK, f"{source} loads: {plural(len(policy.triggers), 'trigger')}")


def catalog_check(settings: Settings) -> Check:
    from streams.processes.catalog import CatalogError, load_catalog

    try:
        catalog = load_catalog(settings.catalog_file)
    except CatalogError as error:
        return Check("catalog", FAIL, str(error), FIX_FILE)
    source = settings.catalog_file or "the packaged sample"
    products, skus = plural(len(catalog.products), "product"), plural(len(catalog.skus), "SKU")
    return Check("catalog", OK, f"{source}: {products}, {skus}")


def service_points_check(settings: Settings) -> Check:
    from streams.processes.tickets import ServicePointError, load_service_points

    try:
        points = load_service_points(settings.service_points_file)
    except ServicePointError as error:
        return Check("service-points", FAIL, str(error), FIX_FILE)
    source = settings.service_points_file or "the packaged sample"
    return Check("service-points", OK, f"{source}: {plural(len(points), 'service point')}")


def api_tokens_check(settings: Settings) -> Check:
    from streams.api.auth import TokenFileError, load_tokens

    if not settings.api_tokens_file:
        return Check(
            "api-tokens",
            INFO,
            "FOREWARN_API_TOKENS_FILE is empty: every API call is refused",
            "give it a tokens file to open the CRM/ERP API",
        )
    try:
        tokens = plural(len(load_tokens(settings.api_tokens_file)), "token")
    except TokenFileError as error:
        return Check("api-tokens", FAIL, str(error), FIX_FILE)
    return Check("api-tokens", OK, f"{settings.api_tokens_file}: {tokens}")


def tls_check(settings: Settings) -> Check:
    """The CA, certificate and key files of an SSL or SASL_SSL connection load."""
    protocol = settings.broker_security_protocol
    if protocol not in ("SSL", "SASL_SSL"):
        return Check("broker-tls", INFO, f"not used: FOREWARN_BROKER_SECURITY_PROTOCOL is {protocol}")
    try:
        settings.ssl_context()
    except OSError as error:  # ssl.SSLError is one too
        return Check(
            "broker-tls",
            FAIL,
            f"the TLS files cannot be used: {short_error(error)}",
            "check FOREWARN_BROKER_SSL_*",
        )
    return Check("broker-tls", OK, "the TLS files load")


def file_checks(settings: Settings) -> list[Check]:
    """The policy, catalog, service-point and tokens files load; the pseudonym key, the cluster secret,
    the data dir and the broker's TLS files are usable. None of them connects anywhere."""
    return [check(settings) for check in FILE_CHECKS]


def pseudonym_key_check(settings: Settings) -> Check:
    """The key is given, or its file is usable, or can be created; never creates it, never shows it."""
    return secret_check(
        "pseudonym-key", settings.pseudonym_key, settings.pseudonym_key_file, "PSEUDONYM_KEY", "key"
    )


def cluster_secret_check(settings: Settings) -> Check:
    """The cluster secret is given, or its file is usable, or can be created; never shown."""
    return secret_check(
        "cluster-secret", settings.cluster_secret, settings.cluster_secret_file, "CLUSTER_SECRET", "secret"
    )


def secret_check(name: str, value: str, file: str, setting: str, what: str) -> Check:
    """A secret given as ``FOREWARN_<setting>`` (``value``) or read from ``file``
    (``FOREWARN_<setting>_FILE``): given and long enough, or its file usable, or creatable by the
    worker (:func:`streams.contracts.privacy.load_secret`); never creates it, never shows it."""
    from streams.contracts.privacy import MIN_KEY_CHARS, load_secret

    variable = f"FOREWARN_{setting}"
    if value:
        if len(value) < MIN_KEY_CHARS:
            return Check(
                name,
                FAIL,
                f"{variable} is shorter than {MIN_KEY_CHARS} characters",
                f"set a longer {what}, the same in every worker",
            )
        return Check(name, OK, f"given by {variable} (not shown)")
    if not file:
        return Check(name, FAIL, f"neither {variable} nor {variable}_FILE is set", "set one of them")
    path = Path(file)
    if not path.exists():
        writable, place = writable_place(path)
        if not writable:
            return Check(
                name,
                FAIL,
                f"{path} does not exist and {place} is not writable: the worker cannot create it",
                f"make the directory writable by the worker, or set {variable}",
            )
        return Check(
            name,
            INFO,
            f"{path} does not exist yet: the first worker creates it with a new random {what}",
            f"every worker must read the same file (a shared volume) or get {variable}",
        )
    try:
        load_secret("", file, setting, wait_seconds=0)
    except UnicodeDecodeError:
        return Check(name, FAIL, f"{path} is not a text {what}", "delete it before the first worker starts")
    except (OSError, ValueError) as error:
        return Check(name, FAIL, f"{path} cannot be used: {short_error(error)}", "fix the file or its rights")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return Check(name, WARN, f"{path} is readable by others (mode {mode:o})", f"chmod 600 {path}")
    return Check(name, OK, f"{path} holds a {what} (not shown)")


def data_dir_check(settings: Settings) -> Check:
    path = Path(settings.data_dir)
    writable, place = writable_place(path)
    if path.exists() and not path.is_dir():
        return Check(
            "data-dir", FAIL, f"FOREWARN_DATA_DIR {path} is a file", "point FOREWARN_DATA_DIR at a directory"
        )
    if not writable:
        return Check(
            "data-dir",
            FAIL,
            f"FOREWARN_DATA_DIR {path} cannot be written ({place} is not a writable directory)",
            "make it writable by the worker, or point FOREWARN_DATA_DIR elsewhere",
        )
    return Check("data-dir", OK, f"{path} is writable" if path.is_dir() else f"{path} can be created")


FILE_CHECKS = (
    policy_check,
    catalog_check,
    service_points_check,
    api_tokens_check,
    pseudonym_key_check,
    cluster_secret_check,
    data_dir_check,
    tls_check,
)


def failures(checks: Iterable[Check]) -> list[Check]:
    return [check for check in checks if check.status == FAIL]


# --- looking (I/O, bounded in time)


async def observe_broker(settings: Settings, security: Mapping[str, Any]) -> BrokerView:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=BROKER_REQUEST_TIMEOUT_MS, **security
    )
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        # Every topic, not the ones Forewarn needs by name: asking for a missing topic by name makes
        # a broker that auto-creates topics create it, with its default partition count.
        described = await admin.describe_topics()
    finally:
        await admin.close()
    topics = {
        topic["topic"]: TopicInfo(
            len(topic["partitions"]), min((len(p["replicas"]) for p in topic["partitions"]), default=0)
        )
        for topic in described
        if not topic.get("error_code")
    }
    return BrokerView(len(cluster["brokers"]), cluster["controller_id"], cluster.get("cluster_id"), topics)


def look_at_broker(settings: Settings, timeout: float = BROKER_TIMEOUT_SECONDS) -> BrokerView | str:
    """What the broker shows, or why it cannot be seen, in words; never longer than ``timeout``."""
    from aiokafka.errors import KafkaConnectionError, KafkaError

    try:
        security = settings.aiokafka_security()
    except OSError as error:  # ssl.SSLError is one too
        return f"the TLS files cannot be used ({short_error(error)}): check FOREWARN_BROKER_SSL_*"
    try:
        return asyncio.run(asyncio.wait_for(observe_broker(settings, security), timeout))
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except KafkaConnectionError:  # it logged why, and forgot: ask the network
        return unreachable_reason(settings.bootstrap_servers)
    except (KafkaError, OSError) as error:  # e.g. TLS or authentication refused
        return scrub(short_error(error), [settings.broker_sasl_password])


def unreachable_reason(servers: Sequence[str], timeout: float = 3.0) -> str:
    """Why none of ``servers`` (``host:port``) could be connected to, in the operating system's words."""
    reasons = []
    for server in servers:
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                reason = (
                    "it accepts connections, but the Kafka handshake failed (security protocol, TLS or SASL?)"
                )
        except ValueError:
            reason = "no port given"
        except OSError as error:
            reason = short_error(error)
        reasons.append(reason if len(servers) == 1 else f"{server}: {reason}")
    return "; ".join(reasons)


def with_timeouts(dsn: str) -> str:
    """An http(s) DSN with connect and read timeouts unless it sets them; others unchanged.

    >>> with_timeouts("http://u:p@clickhouse:8123/forewarn")
    'http://u:p@clickhouse:8123/forewarn?connect_timeout=5&send_receive_timeout=15'
    """
    parts = urlsplit(dsn)
    if parts.scheme not in ("http", "https"):
        return dsn
    given = {item.partition("=")[0] for item in parts.query.split("&") if item}
    added = [f"{key}={value}" for key, value in CLICKHOUSE_TIMEOUTS.items() if key not in given]
    return urlunsplit(parts._replace(query="&".join(filter(None, [parts.query, *added]))))


def embedded_holder(path: Path) -> int | None:
    """The live process holding the embedded database at ``path``, from the status file the engine
    keeps there while open; None when there is none."""
    try:
        status = (path / "status").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    match = re.search(r"^PID: (\d+)$", status, re.M)
    if match is None:
        return None
    pid = int(match.group(1))
    try:
        os.kill(pid, 0)  # signal 0: only asks whether it exists
    except ProcessLookupError:
        return None  # a status file left by a process that died
    except PermissionError:
        pass  # alive, under another user
    return pid


def look_at_clickhouse(dsn: str) -> ClickHouseView | EmbeddedInUse | str | None:
    """What ClickHouse shows, or why it cannot be used, in words; None for an embedded database that
    does not exist, which is left so (opening it would create it)."""
    from sinks.clickhouse import ClickHouseStore

    parts = urlsplit(dsn)
    if parts.scheme == "chdb" and not parts.netloc and not Path(parts.path).exists():
        return None
    password = [parts.password or ""]
    try:
        store = ClickHouseStore(with_timeouts(dsn))
    except Exception as error:  # the driver's errors have no common base below Exception
        holder = embedded_holder(Path(parts.path)) if parts.scheme == "chdb" else None
        if holder is not None:
            return EmbeddedInUse(holder)
        return scrub(short_error(error), password)
    try:
        version = str(store.query("SELECT version()")[0][0])
        tables = frozenset(store.tables())
        applied: tuple[int, ...] = ()
        if "schema_migrations" in tables:
            rows = store.query("SELECT DISTINCT version FROM schema_migrations ORDER BY version")
            applied = tuple(int(row[0]) for row in rows)
        return ClickHouseView(version, applied, tables)
    except Exception as error:  # e.g. authenticated but not allowed to read system.tables
        return scrub(short_error(error), password)
    finally:
        store.close()


def sink_table_names(settings: Settings) -> list[str]:
    """The tables the ClickHouse sink writes: one per stored topic, its offsets, the erasures' audit."""
    from sinks.erasure import AUDIT_TABLE
    from sinks.rows import sink_specs

    return [*(spec.table for spec in sink_specs(settings).values()), "sink_offsets", AUDIT_TABLE]


def doctor_checks(settings: Settings, broker_timeout: float = BROKER_TIMEOUT_SECONDS) -> list[Check]:
    from sinks.clickhouse import migrations

    shipped = [migration.version for migration in migrations()]
    return [
        *broker_checks(settings, look_at_broker(settings, broker_timeout)),
        *clickhouse_checks(
            settings.clickhouse_dsn,
            look_at_clickhouse(settings.clickhouse_dsn),
            shipped,
            sink_table_names(settings),
        ),
        *file_checks(settings),
    ]


def summary(checks: Sequence[Check]) -> str:
    """
    >>> summary([Check("a", OK, ""), Check("b", WARN, ""), Check("c", FAIL, "")])
    'doctor: 1 ok, 1 warning, 1 failure: fix the FAIL lines (after -> is what to do)'
    """
    counts = {status: sum(check.status == status for check in checks) for status in (OK, WARN, FAIL)}
    text = f"doctor: {counts[OK]} ok, {plural(counts[WARN], 'warning')}, {plural(counts[FAIL], 'failure')}"
    if counts[FAIL]:
        return text + ": fix the FAIL lines (after -> is what to do)"
    return text + ": Forewarn can run here"


def exit_code(checks: Sequence[Check]) -> int:
    return 1 if any(check.status == FAIL for check in checks) else 0


def run_doctor(settings: Settings, broker_timeout: float = BROKER_TIMEOUT_SECONDS) -> int:
    """Print one line per check and a summary; 0 when nothing failed, else 1."""
    # The clients log what they could not do; the checks say it once, in words.
    logging.disable(logging.CRITICAL)
    try:
        checks = doctor_checks(settings, broker_timeout)
    finally:
        logging.disable(logging.NOTSET)
    for check in checks:
        print(check.line(), flush=True)
    print(summary(checks))
    return exit_code(checks)
