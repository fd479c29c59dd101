"""Settings from the environment, and the small pure helpers around them."""

from __future__ import annotations

import ssl

import pytest

from streams.contracts.settings import (
    EMBEDDED_BROKER_SETTINGS,
    SETTINGS_DOC,
    Settings,
    names_set,
    settings_table,
)
from streams.domain.clock import PartitionClocks
from streams.worker.app import faust_credentials


def test_defaults_without_environment() -> None:
    settings = Settings.from_env({})
    assert settings.broker_url == "kafka://127.0.0.1:9092" and settings.partitions == 8
    assert settings.clickhouse_dsn.startswith("chdb://") and settings.policy_file == ""
    assert faust_credentials(settings) is None and settings.aiokafka_security() == {
        "security_protocol": "PLAINTEXT"
    }


def test_environment_overrides_with_types() -> None:
    settings = Settings.from_env(
        {
            "FOREWARN_PARTITIONS": "3",
            "FOREWARN_SESSION_GAP_SECONDS": "60",
            "FOREWARN_TOPIC_CLICKSTREAM": "web",
        }
    )
    assert (settings.partitions, settings.session_gap_seconds, settings.topic_clickstream) == (3, 60.0, "web")


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"FOREWARN_PARTITIONS": "many"}, "FOREWARN_PARTITIONS='many' is not a valid int"),
        ({"FOREWARN_PARTITIONS": "0"}, "FOREWARN_PARTITIONS must be at least 1"),
        ({"FOREWARN_BROKER_SECURITY_PROTOCOL": "TLS"}, "FOREWARN_BROKER_SECURITY_PROTOCOL must be one of"),
        ({"FOREWARN_CLICKHOUSE_DSN": "clickhouse://x"}, "FOREWARN_CLICKHOUSE_DSN must start with"),
        (
            {"FOREWARN_BROKER_PROFILE": "tansu"},
            "FOREWARN_BROKER_PROFILE must be one of auto, kafka, embedded",
        ),
        ({"FOREWARN_METRICS_PORT": "70000"}, "FOREWARN_METRICS_PORT must be a port"),
        ({"FOREWARN_BROKER_HEARTBEAT_INTERVAL": "60"}, "FOREWARN_BROKER_HEARTBEAT_INTERVAL must be shorter"),
        ({"FOREWARN_BROKER_SESSION_TIMEOUT": "0"}, "FOREWARN_BROKER_SESSION_TIMEOUT must be more than 0"),
    ],
)
def test_invalid_settings_name_the_variable(environment: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Settings.from_env(environment)


@pytest.mark.parametrize(
    ("profile", "cluster_id", "embedded"),
    [
        ("auto", "tansu_cluster", True),
        ("auto", "MkU3OEVBNTcwNTJENDM2Qk", False),  # an Apache Kafka cluster
        ("auto", None, False),
        ("kafka", "tansu_cluster", False),
        ("embedded", "MkU3OEVBNTcwNTJENDM2Qk", True),
    ],
)
def test_the_embedded_brokers_settings_replace_only_those_not_set(
    profile: str, cluster_id: str | None, embedded: bool
) -> None:
    environ = {"FOREWARN_BROKER_PROFILE": profile, "FOREWARN_BROKER_FETCH_MAX_WAIT": "0.25"}
    settings = Settings.from_env(environ)
    tuned = settings.for_broker(cluster_id, names_set(environ))
    expected = {**EMBEDDED_BROKER_SETTINGS, "broker_fetch_max_wait": 0.25} if embedded else {}
    assert {name: getattr(tuned, name) for name in expected} == expected
    assert tuned == settings if not embedded else tuned != settings


def test_a_heartbeat_set_for_kafka_that_outlasts_the_embedded_session_is_refused() -> None:
    environ = {"FOREWARN_BROKER_HEARTBEAT_INTERVAL": "10"}
    with pytest.raises(ValueError, match="HEARTBEAT_INTERVAL must be shorter"):
        Settings.from_env(environ).for_broker("tansu_cluster", names_set(environ))


@pytest.mark.parametrize("url", ["kafka://a:1;b:2", "kafka://a:1,b:2", "a:1;b:2"])
def test_bootstrap_servers(url: str) -> None:
    assert Settings.from_env({"FOREWARN_BROKER_URL": url}).bootstrap_servers == ["a:1", "b:2"]


def test_sasl_settings_reach_both_clients_and_the_password_is_not_shown() -> None:
    settings = Settings.from_env(
        {
            "FOREWARN_BROKER_SECURITY_PROTOCOL": "SASL_SSL",
            "FOREWARN_BROKER_SASL_MECHANISM": "SCRAM-SHA-512",
            "FOREWARN_BROKER_SASL_USERNAME": "svc",
            "FOREWARN_BROKER_SASL_PASSWORD": "s3cret",
        }
    )
    options = settings.aiokafka_security()
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("svc", "s3cret")
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    credentials = faust_credentials(settings)
    assert (credentials.username, credentials.mechanism.value, credentials.protocol.value) == (
        "svc",
        "SCRAM-SHA-512",
        "SASL_SSL",
    )
    assert "s3cret" not in repr(settings) and "s3cret" not in repr(credentials)


def test_the_settings_table_lists_every_setting() -> None:
    table = settings_table()
    for name in SETTINGS_DOC:
        assert f"`FOREWARN_{name.upper()}`" in table


def test_partition_clocks_follow_events_then_the_wall_clock() -> None:
    """Old data replayed at wall time 10_000: the clock is the data's own time, moved on while idle."""
    clocks = PartitionClocks()
    assert clocks.now(0, wall=10_000.0) is None
    clocks.observe(0, event_time=1000.0, wall=10_000.0)
    clocks.observe(0, event_time=900.0, wall=10_002.0)  # late: no effect
    assert clocks.now(0, wall=10_000.0) == 1000.0 and clocks.now(0, wall=10_004.5) == 1004.5
    clocks.observe(0, event_time=1002.0, wall=10_005.0)  # behind the idle-advanced clock, ahead of the mark
    assert clocks.now(0, wall=10_005.0) == 1002.0
    clocks.observe(1, event_time=50.0, wall=10_005.0)
    clocks.forget({0})
    assert clocks.now(0, wall=10_010.0) is None and clocks.now(1, wall=10_010.0) == 55.0


def test_an_event_from_the_future_does_not_run_the_clock_ahead_of_the_wall_clock() -> None:
    clocks = PartitionClocks()
    clocks.observe(0, event_time=100.0, wall=100.0)
    clocks.observe(0, event_time=100.0 + 3600, wall=101.0)  # a producer's clock an hour fast
    assert clocks.now(0, wall=101.0) == 101.0 and clocks.now(0, wall=130.0) == 130.0


async def test_the_fetch_wait_reaches_the_consumer_faust_builds(tmp_path) -> None:
    from streams.worker.app import create_app

    settings = Settings.from_env(
        {
            "FOREWARN_BROKER_FETCH_MAX_WAIT": "0.07",
            "FOREWARN_CLICKHOUSE_DSN": f"chdb://{tmp_path}",
            "FOREWARN_CLUSTER_SECRET_FILE": f"{tmp_path}/cluster.key",
        }
    )
    app = create_app(settings)
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    assert consumer._fetch_max_wait_ms == 70 == settings.fetch_max_wait_ms
