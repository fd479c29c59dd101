"""Settings, read from ``FOREWARN_*`` environment variables.

Every setting has a documented default (the table in docs/operations.md is generated from :data:`SETTINGS_DOC`
by ``forewarn config``), so a worker with no environment at all runs against a local broker and the
embedded ClickHouse. The topics' settings, ``topic_<name>``, come from the topic registry
(:mod:`streams.contracts.registry`).

>>> settings = Settings.from_env({"FOREWARN_SESSION_GAP_SECONDS": "900", "FOREWARN_PARTITIONS": "4"})
>>> settings.session_gap_seconds, settings.partitions, settings.topic_interventions
(900.0, 4, 'interventions')
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from typing import Any

from streams.contracts.registry import SOURCE_TOPICS, TOPICS

PREFIX = "FOREWARN_"
_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # quoted into DDL by sinks.cluster

# name -> (default, description). The order is the order of the table in docs/operations.md.
SETTINGS_DOC: dict[str, tuple[Any, str]] = {
    "app_id": ("forewarn", "Faust application id: consumer group and internal topic prefix."),
    "broker_url": ("kafka://127.0.0.1:9092", "Kafka bootstrap servers, `kafka://host:port[;host:port]`."),
    "broker_security_protocol": ("PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."),
    "broker_sasl_mechanism": ("PLAIN", "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (with SASL_*)."),
    "broker_sasl_username": ("", "SASL user name."),
    "broker_sasl_password": ("", "SASL password (never logged)."),
    "broker_ssl_cafile": ("", "CA bundle to verify the brokers (SSL, SASL_SSL); empty: system CAs."),
    "broker_ssl_certfile": ("", "Client certificate for mutual TLS."),
    "broker_ssl_keyfile": ("", "Client key for mutual TLS."),
    "clickhouse_dsn": (
        "chdb:///var/lib/forewarn/clickhouse",
        "ClickHouse: `chdb:///path` (embedded, in-process) or `http(s)://user:pass@host:port/db`.",
    ),
    "clickhouse_cluster": (
        "",
        "ClickHouse cluster name: the schema is created `ON CLUSTER` with Replicated engines"
        ' (docs/operations.md "ClickHouse cluster"); empty: one server.',
    ),
    # One per topic: topic_<name>, from the topic registry (streams.contracts.registry).
    **{topic.setting: (topic.default, topic.description) for topic in TOPICS.values()},
    "partitions": (8, "Partitions of the topics Forewarn creates (the unit of parallelism)."),
    "replication_factor": (1, "Replication factor of the topics Forewarn creates."),
    "data_dir": ("/var/lib/forewarn/worker", "Worker data directory (table stores)."),
    "store": (
        "memory://",
        "Faust table store: `memory://` (every user in memory, rebuilt from the changelogs at start) or"
        " `rocksdb://` (on disk under the data directory, through rocksdict: `pip install '.[rocksdb]'`;"
        ' what production runs, docs/operations.md "Table store").',
    ),
    "web_port": (6066, "Port of the worker's HTTP server: the CRM/ERP API and nothing else."),
    "metrics_port": (9108, "Port Prometheus scrapes `/metrics` on; 0 disables."),
    "max_event_bytes": (65536, "Larger messages are dead-lettered as `oversized`."),
    "max_future_skew_seconds": (86400.0, "Events further in the future are dead-lettered."),
    "policy_file": (
        "",
        "Policy file (TOML) merged over the packaged default: triggers, contact rules, experiments.",
    ),
    "policy_reload_seconds": (
        5.0,
        "How often the worker reads the policy file again: a changed policy that passes its checks is in"
        " force from the next rounds on, one that fails them is refused (logged, counted) and the policy"
        " in force stays. SIGHUP reloads at once. 0: on SIGHUP only.",
    ),
    "session_gap_seconds": (1800.0, "Inactivity that ends a session."),
    "sweep_interval_seconds": (1.0, "How often the timer sweep looks for silent lingering users."),
    "user_idle_seconds": (
        0.0,
        "A user idle this long (event time) is evicted from the worker: their state is deleted, with a"
        " tombstone in the changelog; 0: the longest window a trigger, cap, label or offer rule of the"
        ' policy reads (90 days for the packaged one; docs/architecture.md "Guarantees"). Users with'
        " preferences, subscriptions, devices or CRM attributes are trimmed to those instead.",
    ),
    "catalog_file": (
        "",
        "Product catalog (JSON: SKUs, products, categories, launch dates); empty: the packaged sample.",
    ),
    "service_points_file": (
        "",
        "Service-point registry (JSON: location, categories, hours, radius); empty: the packaged sample.",
    ),
    "dispatch_max_km": (150.0, "Farthest a ticket is dispatched (great-circle km); beyond it, manual."),
    "api_tokens_file": (
        "",
        "API bearer tokens (JSON: name, SHA-256 of the token, scopes); empty: every API call is refused.",
    ),
    "pseudonym_key": (
        "",
        "Key of the keyed hash that pseudonymises user ids before ClickHouse (never logged); empty:"
        " read from the key file.",
    ),
    "pseudonym_key_file": (
        "/var/lib/forewarn/pseudonym.key",
        "File holding the pseudonym key; created with a random key when missing. Every worker must"
        " share one key.",
    ),
    "cluster_secret": (
        "",
        "Secret every worker of a deployment shares (never logged): authenticates model checkpoints and"
        " the API calls workers forward to each other; empty: read from the secret file.",
    ),
    "cluster_secret_file": (
        "/var/lib/forewarn/cluster.key",
        "File holding the cluster secret; created with a random secret when missing. Every worker must"
        " share one secret.",
    ),
    "retention_days": (365, "ClickHouse retention (TTL) of every table holding users' data, in days."),
    "retention_overrides": (
        "dead_letters=30,api_audit=730,erasures=1825",
        "Per-table retention in days, `table=days,...`, over `retention_days`.",
    ),
    "model_checkpoint_seconds": (
        30.0,
        "How often a partition's intent and churn models are written to their changelog; a crash loses"
        " at most this much of their learning.",
    ),
    "sink_batch_rows": (
        20000,
        "ClickHouse sink: rows per batch at most, all tables together (each table's rows one insert);"
        " it holds two batches at most. Every insert costs ClickHouse about 10 ms of CPU whatever its"
        " rows (new parts, views): larger batches, less CPU per row.",
    ),
    "sink_flush_seconds": (1.0, "ClickHouse sink: longest wait before a partial batch is inserted."),
    "sink_max_retry_seconds": (30.0, "ClickHouse sink: longest back-off between insert retries."),
    "sink_dedup_window": (100000, "ClickHouse sink: recent ids remembered per partition to drop duplicates."),
    "sink_in_worker": (
        True,
        "`forewarn worker` runs the ClickHouse sink too; false where `forewarn sink` runs it in a process"
        ' of its own (docs/operations.md "Running the sink on its own").',
    ),
    "sink_metrics_port": (9107, "Port of `forewarn sink`'s Prometheus `/metrics`; 0 disables."),
    "broker_profile": (
        "auto",
        "`embedded`: the embedded Tansu broker's values of the five settings below for those not set"
        " (group timeouts 3, 6 and 1 s, fetch wait 0.1 s, end offsets verified); `kafka`: the settings as"
        " set; `auto`: `embedded` when the broker's cluster id is Tansu's default, `tansu_cluster`.",
    ),
    "broker_rebalance_timeout": (60.0, "Consumer group rebalance timeout (seconds)."),
    "broker_session_timeout": (60.0, "Consumer group session timeout (seconds)."),
    "broker_heartbeat_interval": (3.0, "Consumer group heartbeat interval (seconds)."),
    "broker_fetch_max_wait": (
        0.5,
        "Longest a fetch waits for data (seconds). Kafka answers as soon as data arrives; the embedded"
        " broker holds fetches, so its profile (`FOREWARN_BROKER_PROFILE`) uses 0.1.",
    ),
    "broker_verify_end_offsets": (
        False,
        "Read end offsets from a fetch's high watermark (table recovery): the embedded broker reports"
        ' them short (docs/architecture.md "Guarantees"); its profile (`FOREWARN_BROKER_PROFILE`) sets'
        " it.",
    ),
    "producer_linger_ms": (
        5,
        "How long the worker's producer gathers messages into one request (ms). Every event is sent on"
        " (re-keyed events, changelog, decisions): without it each request carries a message or two.",
    ),
    "standby_replicas": (1, "Faust standby replicas kept per table partition."),
    "ingest_batch_events": (
        1000,
        "Most source messages `ingest` takes as one batch (what waits to be read, up to this); each"
        " partition of the events topic gets one message (an envelope) of the batch's events.",
    ),
    "faq_ahead_days": (
        14.0,
        "A product gets FAQ forecasts (`launch_faq_forecasts`) from this many days before its launch until"
        " 30 days after it.",
    ),
}


def _parse_bool(raw: str) -> bool:
    """``true``/``1``/``yes``/``on`` or ``false``/``0``/``no``/``off`` (any case); else ValueError.

    >>> _parse_bool("TRUE"), _parse_bool("0")
    (True, False)
    """
    value = raw.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(raw)


BROKER_PROFILES = ("auto", "kafka", "embedded")
# The cluster id a Tansu broker reports unless told another one: the embedded broker's.
TANSU_CLUSTER_ID = "tansu_cluster"
# What the embedded Tansu broker needs (streams.worker.transport says why for the last two). Joining a
# consumer group there waits in proportion to the group timeouts (about 30 s with Kafka's), so short ones
# make a
# worker ready in seconds.
EMBEDDED_BROKER_SETTINGS: dict[str, Any] = {
    "broker_rebalance_timeout": 3.0,
    "broker_session_timeout": 4.0,
    "broker_heartbeat_interval": 1.0,
    "broker_fetch_max_wait": 0.1,
    "broker_verify_end_offsets": True,
}


def names_set(environ: Mapping[str, str]) -> frozenset[str]:
    """The settings ``environ`` sets (``FOREWARN_<NAME>`` present).

    >>> sorted(names_set({"FOREWARN_PARTITIONS": "4", "HOME": "/root"}))
    ['partitions']
    """
    return frozenset(name for name in SETTINGS_DOC if PREFIX + name.upper() in environ)


SECRETS = frozenset({"broker_sasl_password", "pseudonym_key", "cluster_secret"})


@dataclass(frozen=True, slots=True)
class Settings:
    app_id: str
    broker_url: str
    broker_security_protocol: str
    broker_sasl_mechanism: str
    broker_sasl_username: str
    broker_sasl_password: str
    broker_ssl_cafile: str
    broker_ssl_certfile: str
    broker_ssl_keyfile: str
    clickhouse_dsn: str
    clickhouse_cluster: str
    # The topics' names: a str field topic_<name> per topic of the registry, here and in its order
    # (topic_clickstream ... topic_questions: streams.contracts.registry.TOPICS), added to the
    # annotations the dataclass reads so that the registry stays the one list of topics. Static type
    # checkers do not see these fields.
    __annotations__.update(dict.fromkeys((topic.setting for topic in TOPICS.values()), "str"))
    partitions: int
    replication_factor: int
    data_dir: str
    store: str
    web_port: int
    metrics_port: int
    max_event_bytes: int
    max_future_skew_seconds: float
    policy_file: str
    policy_reload_seconds: float
    session_gap_seconds: float
    sweep_interval_seconds: float
    user_idle_seconds: float
    catalog_file: str
    service_points_file: str
    dispatch_max_km: float
    api_tokens_file: str
    pseudonym_key: str
    pseudonym_key_file: str
    cluster_secret: str
    cluster_secret_file: str
    retention_days: int
    retention_overrides: str
    model_checkpoint_seconds: float
    sink_batch_rows: int
    sink_flush_seconds: float
    sink_max_retry_seconds: float
    sink_dedup_window: int
    sink_in_worker: bool
    sink_metrics_port: int
    broker_profile: str
    broker_rebalance_timeout: float
    broker_session_timeout: float
    broker_heartbeat_interval: float
    broker_fetch_max_wait: float
    broker_verify_end_offsets: bool
    producer_linger_ms: int
    standby_replicas: int
    ingest_batch_events: int
    faq_ahead_days: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``FOREWARN_<NAME>`` variables, then keyword overrides."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in fields(cls):
            default, _ = SETTINGS_DOC[spec.name]
            raw = environ.get(PREFIX + spec.name.upper())
            if raw is None:
                values[spec.name] = default
                continue
            try:
                values[spec.name] = _parse_bool(raw) if isinstance(default, bool) else type(default)(raw)
            except ValueError:
                raise ValueError(
                    f"{PREFIX}{spec.name.upper()}={raw!r} is not a valid {type(default).__name__}"
                ) from None
        values.update(overrides)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        protocols = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}
        if self.broker_security_protocol not in protocols:
            raise ValueError(f"{PREFIX}BROKER_SECURITY_PROTOCOL must be one of {sorted(protocols)}")
        if self.broker_profile not in BROKER_PROFILES:
            raise ValueError(f"{PREFIX}BROKER_PROFILE must be one of {', '.join(BROKER_PROFILES)}")
        if self.partitions < 1:
            raise ValueError(f"{PREFIX}PARTITIONS must be at least 1")
        if self.replication_factor < 1:
            raise ValueError(f"{PREFIX}REPLICATION_FACTOR must be at least 1")
        if not 1 <= self.web_port <= 65535:
            raise ValueError(f"{PREFIX}WEB_PORT must be a port, 1 to 65535")
        for name in ("metrics_port", "sink_metrics_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ValueError(f"{PREFIX}{name.upper()} must be a port, 1 to 65535, or 0 (none)")
        for name in ("broker_rebalance_timeout", "broker_session_timeout", "broker_heartbeat_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{PREFIX}{name.upper()} must be more than 0 seconds")
        if self.broker_heartbeat_interval >= self.broker_session_timeout:
            raise ValueError(
                f"{PREFIX}BROKER_HEARTBEAT_INTERVAL must be shorter than {PREFIX}BROKER_SESSION_TIMEOUT"
            )
        if not self.clickhouse_dsn.startswith(("chdb://", "http://", "https://")):
            raise ValueError(f"{PREFIX}CLICKHOUSE_DSN must start with chdb://, http:// or https://")
        if self.clickhouse_cluster and not _CLUSTER_NAME.match(self.clickhouse_cluster):
            raise ValueError(f"{PREFIX}CLICKHOUSE_CLUSTER must be a cluster name (letters, digits, _ . -)")
        if self.policy_reload_seconds < 0:
            raise ValueError(f"{PREFIX}POLICY_RELOAD_SECONDS must be 0 (on SIGHUP only) or more")
        if self.user_idle_seconds < 0:
            raise ValueError(f"{PREFIX}USER_IDLE_SECONDS must be 0 (derived from the policy) or more")
        if self.faq_ahead_days < 0:
            raise ValueError(f"{PREFIX}FAQ_AHEAD_DAYS must be 0 or more")
        if self.retention_days < 1:
            raise ValueError(f"{PREFIX}RETENTION_DAYS must be at least 1")
        try:
            overrides = self.retention()
        except ValueError:
            raise ValueError(
                f"{PREFIX}RETENTION_OVERRIDES must be `table=days,...` with whole days"
            ) from None
        if any(days < 1 for days in overrides.values()):
            raise ValueError(f"{PREFIX}RETENTION_OVERRIDES: every retention must be at least 1 day")

    def embedded_broker(self, cluster_id: str | None) -> bool:
        """Whether the broker, which reports ``cluster_id``, is taken for the embedded one.

        >>> settings = Settings.from_env({})
        >>> settings.embedded_broker("tansu_cluster"), settings.embedded_broker("kafka-prod-1")
        (True, False)
        """
        if self.broker_profile == "auto":
            return cluster_id == TANSU_CLUSTER_ID
        return self.broker_profile == "embedded"

    def for_broker(self, cluster_id: str | None, given: Collection[str]) -> Settings:
        """These settings for the broker that reports ``cluster_id``: for the embedded broker
        (:meth:`embedded_broker`), :data:`EMBEDDED_BROKER_SETTINGS` in place of the values of the
        settings not ``given`` (set by name); else unchanged.

        >>> settings = Settings.from_env({"FOREWARN_BROKER_FETCH_MAX_WAIT": "0.2"})
        >>> tuned = settings.for_broker("tansu_cluster", {"broker_fetch_max_wait"})
        >>> tuned.broker_session_timeout, tuned.broker_fetch_max_wait, tuned.broker_verify_end_offsets
        (4.0, 0.2, True)
        >>> settings.for_broker("kafka-prod-1", ()) == settings
        True
        """
        if not self.embedded_broker(cluster_id):
            return self
        tuned = self.with_overrides(
            **{name: value for name, value in EMBEDDED_BROKER_SETTINGS.items() if name not in given}
        )
        tuned.check()  # what was set must still fit with what was not (a heartbeat within the session)
        return tuned

    def retention(self) -> dict[str, int]:
        """``retention_overrides`` read: table -> days (checked by :meth:`check`)."""
        days = {}
        for item in filter(None, (part.strip() for part in self.retention_overrides.split(","))):
            table, _, value = item.partition("=")
            days[table.strip()] = int(value)
        return days

    def with_overrides(self, **overrides: Any) -> Settings:
        values = {spec.name: getattr(self, spec.name) for spec in fields(self)}
        values.update(overrides)
        return Settings(**values)

    @property
    def source_topics(self) -> dict[str, str]:
        """Each source of events (an event's ``source``) and the topic its producers write to.

        >>> Settings.from_env({"FOREWARN_TOPIC_CRM_UPDATES": "crm-attrs"}).source_topics["crm"]
        'crm-attrs'
        """
        return {source: topic.name_in(self) for source, topic in SOURCE_TOPICS.items()}

    @property
    def fetch_max_wait_ms(self) -> int:
        return max(1, round(self.broker_fetch_max_wait * 1000))

    @property
    def bootstrap_servers(self) -> list[str]:
        """``kafka://a:9092;b:9092`` as the ``host:port`` list aiokafka takes."""
        hosts = self.broker_url.split("://", 1)[-1]
        return [host.strip() for host in hosts.replace(",", ";").split(";") if host.strip()]

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.broker_security_protocol not in ("SSL", "SASL_SSL"):
            return None
        context = ssl.create_default_context(cafile=self.broker_ssl_cafile or None)
        if self.broker_ssl_certfile:
            context.load_cert_chain(self.broker_ssl_certfile, self.broker_ssl_keyfile or None)
        return context

    def aiokafka_security(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka clients (the sink, the demo's producers)."""
        options: dict[str, Any] = {"security_protocol": self.broker_security_protocol}
        if self.broker_security_protocol.startswith("SASL"):
            options.update(
                sasl_mechanism=self.broker_sasl_mechanism,
                sasl_plain_username=self.broker_sasl_username,
                sasl_plain_password=self.broker_sasl_password,
            )
        context = self.ssl_context()
        if context is not None:
            options["ssl_context"] = context
        return options

    def aiokafka_group_timeouts(self) -> dict[str, int]:
        """Keyword arguments for aiokafka consumers in a group (the sink, the example notifier): the
        workers' group timeouts, in milliseconds.

        >>> Settings.from_env({"FOREWARN_BROKER_SESSION_TIMEOUT": "6"}).aiokafka_group_timeouts()
        {'session_timeout_ms': 6000, 'heartbeat_interval_ms': 3000, 'rebalance_timeout_ms': 60000}
        """
        return {
            "session_timeout_ms": round(self.broker_session_timeout * 1000),
            "heartbeat_interval_ms": round(self.broker_heartbeat_interval * 1000),
            "rebalance_timeout_ms": round(self.broker_rebalance_timeout * 1000),
        }

    def __repr__(self) -> str:  # never print a secret
        shown = {
            spec.name: "***"
            if spec.name in SECRETS and getattr(self, spec.name)
            else getattr(self, spec.name)
            for spec in fields(self)
        }
        return f"Settings({shown})"


def settings_table() -> str:
    """The configuration table for docs/operations.md, in Markdown."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, (default, description) in SETTINGS_DOC.items():
        shown = f"`{default}`" if default != "" else "(empty)"
        lines.append(f"| `{PREFIX}{name.upper()}` | {shown} | {description} |")
    return "\n".join(lines)
