"""``forewarn doctor``: each verdict from observations (pure), then the command itself against an embedded
broker and a chdb store, a broker nobody answers for, and a schema left behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from sinks.clickhouse import ClickHouseStore, migrations
from streams.contracts.settings import Settings
from streams.contracts.topics import copartitioned_topics, ensure_topics, topic_names
from streams.tools.broker import EmbeddedBroker, free_port
from streams.tools.doctor import (
    FAIL,
    INFO,
    OK,
    WARN,
    BrokerView,
    Check,
    ClickHouseView,
    EmbeddedInUse,
    TopicInfo,
    broker_checks,
    changelog_check,
    clickhouse_checks,
    cluster_secret_check,
    embedded_holder,
    exit_code,
    file_checks,
    look_at_broker,
    pseudonym_key_check,
    schema_check,
    sink_table_names,
    stock_check,
    tables_check,
    topic_checks,
)
from tests.support import ROOT

SHIPPED = [migration.version for migration in migrations()]


def settings_with(**env: str) -> Settings:
    return Settings.from_env({f"FOREWARN_{name.upper()}": value for name, value in env.items()})


def all_topics(settings: Settings, partitions: int, replicas: int = 1) -> dict[str, TopicInfo]:
    return {name: TopicInfo(partitions, replicas) for name in topic_names(settings)}


def of_status(checks: list[Check], status: str) -> list[Check]:
    return [check for check in checks if check.status == status]


# --- topics


def test_topics_as_created_by_forewarn_topics_are_ok() -> None:
    settings = settings_with(partitions="4")
    checks = topic_checks(settings, all_topics(settings, 4))
    assert [check.status for check in checks] == [OK]
    assert str(len(topic_names(settings))) in checks[0].message


def test_a_missing_topic_fails_and_is_named() -> None:
    settings = settings_with(partitions="4")
    found = all_topics(settings, 4)
    del found[settings.topic_ticks], found[settings.topic_clickstream]
    (failure,) = of_status(topic_checks(settings, found), FAIL)
    assert settings.topic_ticks in failure.message and settings.topic_clickstream in failure.message
    assert "forewarn topics" in failure.hint
    assert not of_status(topic_checks(settings, found), OK)


def test_a_copartitioned_topic_with_another_partition_count_fails_with_both_counts() -> None:
    settings = settings_with(partitions="8")
    found = all_topics(settings, 8)
    found[settings.topic_events] = TopicInfo(4, 1)
    (failure,) = of_status(topic_checks(settings, found), FAIL)
    assert failure.message.startswith(f"{settings.topic_events} has 4 partitions, FOREWARN_PARTITIONS is 8")
    assert "user table" in failure.message
    assert "FOREWARN_PARTITIONS=4" in failure.hint
    assert exit_code(topic_checks(settings, found)) == 1


def test_every_copartitioned_topic_is_checked() -> None:
    settings = settings_with(partitions="3")
    for name in copartitioned_topics(settings):
        found = all_topics(settings, 3)
        found[name] = TopicInfo(5, 1)
        (failure,) = of_status(topic_checks(settings, found), FAIL)
        assert failure.message.startswith(f"{name} has 5 partitions")


def test_a_source_topic_with_fewer_partitions_than_workers_can_use_is_a_warning() -> None:
    settings = settings_with(partitions="8")
    found = all_topics(settings, 8)
    found[settings.topic_clickstream] = TopicInfo(2, 1)
    found[settings.topic_logistics] = TopicInfo(16, 1)  # more is fine: ingest re-keys by user
    checks = topic_checks(settings, found)
    (warning,) = of_status(checks, WARN)
    assert f"{settings.topic_clickstream} (2)" in warning.message
    assert settings.topic_logistics not in warning.message
    assert exit_code(checks) == 0


def test_fewer_replicas_than_asked_is_a_warning() -> None:
    settings = settings_with(partitions="2", replication_factor="3")
    found = all_topics(settings, 2, replicas=3)
    found[settings.topic_interventions] = TopicInfo(2, 1)
    (warning,) = of_status(topic_checks(settings, found), WARN)
    assert f"{settings.topic_interventions} (1)" in warning.message


def test_the_stock_topic_is_optional() -> None:
    settings = settings_with()
    assert stock_check(settings, {}).status == INFO
    assert "not checked against stock" in stock_check(settings, {}).message
    assert stock_check(settings, {settings.topic_stock: TopicInfo(1, 1)}).status == OK


def test_changelog_topics_are_reported_and_must_keep_the_partition_count() -> None:
    settings = settings_with(partitions="4")
    assert changelog_check(settings, {}).status == INFO
    found = {"forewarn-users-changelog": TopicInfo(4, 1), "other-users-changelog": TopicInfo(9, 1)}
    assert changelog_check(settings, found).status == INFO
    found["forewarn-models-changelog"] = TopicInfo(2, 1)
    failure = changelog_check(settings, found)
    assert failure.status == FAIL and "forewarn-models-changelog (2)" in failure.message
    assert "forewarn-users-changelog" not in failure.message


# --- the broker


def test_an_unreachable_broker_is_one_failure_in_words() -> None:
    settings = settings_with(broker_url="kafka://kafka-1:9092;kafka-2:9092")
    checks = broker_checks(settings, "Connection refused")
    assert checks[0].status == FAIL
    assert "cannot reach the Kafka broker at kafka-1:9092, kafka-2:9092" in checks[0].message
    assert "Connection refused" in checks[0].message and "FOREWARN_BROKER_URL" in checks[0].hint
    assert exit_code(checks) == 1 and not of_status(checks, OK)


def test_a_replication_factor_above_the_broker_count_is_a_warning() -> None:
    settings = settings_with(partitions="1", replication_factor="3")
    view = BrokerView(brokers=1, controller_id=1, cluster_id="c", topics=all_topics(settings, 1, 3))
    checks = broker_checks(settings, view)
    assert checks[0].status == OK and "1 broker" in checks[0].message
    assert any(check.status == WARN and "FOREWARN_REPLICATION_FACTOR=1" in check.hint for check in checks)


def test_nothing_listening_is_reported_as_refused() -> None:
    port = free_port()
    observed = look_at_broker(settings_with(broker_url=f"kafka://127.0.0.1:{port}"), timeout=10)
    assert isinstance(observed, str) and "refused" in observed.lower()


def test_unusable_tls_files_are_named_before_connecting(tmp_path: Path) -> None:
    settings = settings_with(
        broker_url=f"kafka://127.0.0.1:{free_port()}",
        broker_security_protocol="SSL",
        broker_ssl_cafile=str(tmp_path / "missing-ca.pem"),
    )
    observed = look_at_broker(settings)
    assert isinstance(observed, str) and "TLS files cannot be used" in observed


def test_something_else_listening_is_reported_as_a_failed_handshake() -> None:
    """A port that takes connections and drops them, as a TLS listener does to a plaintext client."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def drop_connections() -> None:
            with contextlib.suppress(OSError):
                while True:
                    server.accept()[0].close()

        threading.Thread(target=drop_connections, daemon=True).start()
        observed = look_at_broker(settings_with(broker_url=f"kafka://127.0.0.1:{port}"), timeout=10)
    assert isinstance(observed, str) and "handshake failed" in observed


# --- ClickHouse


@pytest.mark.parametrize(
    ("applied", "status", "words"),
    [
        (SHIPPED, OK, f"schema version {SHIPPED[-1]}"),
        (SHIPPED[:-1], FAIL, f"schema version {SHIPPED[-2]}, this worker needs {SHIPPED[-1]}"),
        ([], FAIL, f"no schema yet, this worker needs {SHIPPED[-1]}"),
        ([*SHIPPED, SHIPPED[-1] + 1], WARN, f"schema version {SHIPPED[-1] + 1} is newer"),
    ],
)
def test_schema_version_against_the_shipped_migrations(applied: list[int], status: str, words: str) -> None:
    check = schema_check(applied, SHIPPED)
    assert check.status == status
    assert words in check.message
    if status == FAIL:
        assert "forewarn schema" in check.hint


def test_a_missing_sink_table_fails() -> None:
    needed = sink_table_names(Settings.from_env({}))
    assert tables_check(needed, needed).status == OK
    check = tables_check([name for name in needed if name != "events"], needed)
    assert check.status == FAIL and "events" in check.message


def test_clickhouse_unreachable_says_where_without_the_password() -> None:
    dsn = "http://forewarn:s3cret-pass@clickhouse:8123/forewarn"
    (check,) = clickhouse_checks(dsn, "Connection refused", SHIPPED, [])
    assert check.status == FAIL
    assert "http://forewarn:***@clickhouse:8123/forewarn" in check.line()
    assert "Connection refused" in check.message and "s3cret-pass" not in check.line()


def test_clickhouse_checks_skip_the_tables_when_the_schema_is_behind() -> None:
    view = ClickHouseView("26.1", tuple(SHIPPED[:1]), frozenset({"schema_migrations"}))
    checks = clickhouse_checks("chdb:///x", view, SHIPPED, sink_table_names(Settings.from_env({})))
    assert [check.name for check in checks] == ["clickhouse", "schema"]
    assert [check.status for check in checks] == [OK, FAIL]


def test_an_embedded_database_held_by_a_worker_is_a_warning_naming_the_process(tmp_path: Path) -> None:
    (tmp_path / "status").write_text(f"PID: {os.getpid()}\nStarted at: now\n")
    assert embedded_holder(tmp_path) == os.getpid()
    (check,) = clickhouse_checks(f"chdb://{tmp_path}", EmbeddedInUse(os.getpid()), SHIPPED, [])
    assert check.status == WARN and str(os.getpid()) in check.message
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    (tmp_path / "status").write_text(f"PID: {int(finished.stdout)}\n")
    assert embedded_holder(tmp_path) is None
    assert embedded_holder(tmp_path / "nothing") is None


def test_a_missing_embedded_database_says_how_to_create_it() -> None:
    (check,) = clickhouse_checks("chdb:///srv/ch", None, SHIPPED, [])
    assert check.status == FAIL and "/srv/ch" in check.message and "forewarn schema" in check.hint


# --- local files


def test_the_pseudonym_key_is_checked_without_being_created_or_shown(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "pseudonym.key"
    check = pseudonym_key_check(settings_with(pseudonym_key_file=str(key_file)))
    assert check.status == INFO and not key_file.exists()
    key_file.parent.mkdir()
    key_file.write_text("short\n")
    assert pseudonym_key_check(settings_with(pseudonym_key_file=str(key_file))).status == FAIL
    secret = "0123456789abcdef0123456789abcdef"
    key_file.write_text(secret + "\n")
    key_file.chmod(0o644)
    check = pseudonym_key_check(settings_with(pseudonym_key_file=str(key_file)))
    assert check.status == WARN and "chmod 600" in check.hint
    key_file.chmod(0o600)
    check = pseudonym_key_check(settings_with(pseudonym_key_file=str(key_file)))
    assert check.status == OK and secret not in check.line()
    check = pseudonym_key_check(settings_with(pseudonym_key="tooshort"))
    assert check.status == FAIL and "tooshort" not in check.line()
    check = pseudonym_key_check(settings_with(pseudonym_key=secret))
    assert check.status == OK and secret not in check.line()
    # The cluster secret the same way, under its own name.
    check = cluster_secret_check(settings_with(cluster_secret_file=str(key_file)))
    assert check.name == "cluster-secret" and check.status == OK and secret not in check.line()
    check = cluster_secret_check(settings_with(cluster_secret="tooshort"))
    assert check.status == FAIL and "FOREWARN_CLUSTER_SECRET is shorter" in check.message


def test_file_checks_use_the_workers_loaders(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[contact\n")
    missing_tokens = tmp_path / "tokens.json"
    settings = settings_with(
        policy_file=str(policy),
        api_tokens_file=str(missing_tokens),
        data_dir=str(tmp_path / "worker"),
        pseudonym_key_file=str(tmp_path / "key"),
    )
    checks = {check.name: check for check in file_checks(settings)}
    assert checks["policy"].status == FAIL and str(policy) in checks["policy"].message
    assert checks["api-tokens"].status == FAIL and str(missing_tokens) in checks["api-tokens"].message
    assert checks["catalog"].status == OK and checks["service-points"].status == OK
    assert checks["data-dir"].status == OK
    (tmp_path / "not-a-dir").write_text("")
    checks = {
        check.name: check
        for check in file_checks(settings.with_overrides(data_dir=str(tmp_path / "not-a-dir")))
    }
    assert checks["data-dir"].status == FAIL


# --- the command, end to end


def doctor(env: dict[str, str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """``python -m streams.tools.cli doctor`` with ``env`` as its only FOREWARN_* settings."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("FOREWARN_")}
    return subprocess.run(
        [sys.executable, "-m", "streams.tools.cli", "doctor"],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def local_env(tmp_path: Path, broker_url: str, clickhouse_dsn: str) -> dict[str, str]:
    return {
        "FOREWARN_BROKER_URL": broker_url,
        "FOREWARN_CLICKHOUSE_DSN": clickhouse_dsn,
        "FOREWARN_PARTITIONS": "4",
        "FOREWARN_DATA_DIR": str(tmp_path / "worker"),
        "FOREWARN_PSEUDONYM_KEY_FILE": str(tmp_path / "pseudonym.key"),
    }


def applied_schema(path: Path, keep_up_to: int | None = None) -> str:
    """A chdb store at ``path`` with the schema applied (only up to ``keep_up_to`` recorded), closed: the
    doctor's process cannot open a path this one holds."""
    store = ClickHouseStore(f"chdb://{path}")
    try:
        store.apply_schema()
        if keep_up_to is not None:
            store.delete_where("schema_migrations", "version > {v:UInt32}", {"v": keep_up_to})
    finally:
        store.close()
    return f"chdb://{path}"


def test_doctor_is_happy_after_topics_and_schema(broker: EmbeddedBroker, tmp_path: Path) -> None:
    env = local_env(tmp_path, broker.url, applied_schema(tmp_path / "ch"))
    asyncio.run(ensure_topics(Settings.from_env(env)))
    result = doctor(env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for name in ("broker", "topics", "clickhouse", "schema", "tables", "policy", "catalog"):
        assert any(line.split()[:2] == ["ok", name] for line in lines), (name, result.stdout)
    assert "0 failures" in lines[-1]
    assert "Traceback" not in result.stderr


def test_doctor_names_a_wrongly_partitioned_topic(broker: EmbeddedBroker, tmp_path: Path) -> None:
    env = local_env(tmp_path, broker.url, f"chdb://{tmp_path / 'ch'}")
    settings = Settings.from_env(env)

    async def create_events_with_two_partitions() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(settings.topic_events, 2, 1)])
        finally:
            await admin.close()

    asyncio.run(create_events_with_two_partitions())
    with pytest.raises(RuntimeError, match=f"{settings.topic_events} has 2 partitions"):
        asyncio.run(ensure_topics(settings))  # creates the others, refuses this one
    result = doctor(env)
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("FAIL  topics")]
    assert f"{settings.topic_events} has 2 partitions, FOREWARN_PARTITIONS is 4" in line
    assert "FOREWARN_PARTITIONS=2" in line
    assert not (tmp_path / "ch").exists(), "the doctor must not create an embedded database"


def test_doctor_without_broker_or_clickhouse_answers_quickly_in_words(tmp_path: Path) -> None:
    broker_port, clickhouse_port = free_port(), free_port()
    dsn = f"http://forewarn:s3cret-pass@127.0.0.1:{clickhouse_port}/forewarn"
    result = doctor(local_env(tmp_path, f"kafka://127.0.0.1:{broker_port}", dsn), timeout=15)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    (broker_line,) = [line for line in lines if line.startswith("FAIL  broker")]
    assert f"cannot reach the Kafka broker at 127.0.0.1:{broker_port}" in broker_line
    assert "refused" in broker_line.lower()
    (clickhouse_line,) = [line for line in lines if line.startswith("FAIL  clickhouse")]
    assert f"127.0.0.1:{clickhouse_port}" in clickhouse_line and "refused" in clickhouse_line.lower()
    assert "s3cret-pass" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_doctor_says_the_schema_is_behind_and_how_to_fix_it(broker: EmbeddedBroker, tmp_path: Path) -> None:
    env = local_env(tmp_path, broker.url, applied_schema(tmp_path / "ch", keep_up_to=SHIPPED[1]))
    asyncio.run(ensure_topics(Settings.from_env(env)))
    result = doctor(env)
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert line.startswith("FAIL  schema")
    assert f"schema version {SHIPPED[1]}, this worker needs {SHIPPED[-1]}" in line
    assert "forewarn schema" in line
