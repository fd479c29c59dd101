"""docker-compose.yml and the Dockerfile hold together with the code, without Docker: the services and
their start order, every setting and command they give the Forewarn image, what they mount; that the
stack is safe to start on a shared host (ports on the loopback, secrets from an uncommitted .env, a
read-only Grafana, the Kafka ACLs of docs/operations.md); then the two commands the stack runs besides the
workers, ``forewarn traffic`` and ``forewarn notifier``, as processes against the embedded broker."""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import itertools
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
import xml.etree.ElementTree as ElementTree
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import clickhouse_connect
import orjson
import pytest
import yaml
from aiokafka import AIOKafkaConsumer
from clickhouse_connect.driver.exceptions import DatabaseError

from sinks.rows import sink_specs
from streams.contracts.events import CLICKSTREAM, ERASURE_REQUESTS, FEEDBACK_UPDATES, OUTCOMES, TICKET_UPDATES
from streams.contracts.interventions import DELAY_NOTICE, PAYMENT_ASSIST, Intervention, intervention_id
from streams.contracts.registry import SOURCE, TOPICS
from streams.contracts.settings import PREFIX, Settings
from streams.contracts.topics import ensure_topics, topic_names
from streams.domain.policy import load_policy
from streams.tools import cli
from streams.tools.broker import EmbeddedBroker, free_port, start_broker
from streams.tools.clickhouse_server import start_clickhouse_server
from streams.tools.notifier import OutcomeRates, simulate_outcomes
from streams.tools.traffic.generator import TrafficGenerator
from streams.tools.traffic.runner import process_traffic_profile, traffic_topics
from streams.tools.worker_launcher import EMBEDDED_BROKER_ENV
from tests.support import ROOT
from tests.support.harness import produce, read_until

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, $NAME, and $$ (a dollar).
_VARIABLE = re.compile(
    r"\$(?:(?P<dollar>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(ValueError):
    """A ``${NAME:?error}`` whose variable is unset or empty: ``docker compose`` stops with the error."""


def interpolate(value: Any, variables: Mapping[str, str]) -> Any:
    """``value`` (parsed YAML) with its variable references replaced as ``docker compose`` does, in every
    string value (not in keys, nor in comments)."""
    if isinstance(value, dict):
        return {key: interpolate(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, variables) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match["dollar"]:
            return "$"
        name, op = match["name"] or match["bare"], match["op"] or ""
        found = variables.get(name)
        unset = found is None or (op.startswith(":") and found == "")
        if unset and op.endswith("?"):
            raise MissingVariable(f"{name}: {match['arg']}")
        if unset and op.endswith("-"):
            return match["arg"]
        return found or ""

    return _VARIABLE.sub(replace, value)


def strings(value: Any) -> list[str]:
    """Every string value of parsed YAML."""
    if isinstance(value, dict):
        return [text for item in value.values() for text in strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in strings(item)]
    return [value] if isinstance(value, str) else []


def env_file(path: Path) -> dict[str, str]:
    """The ``NAME=value`` lines of a compose env file (comments and blank lines skipped)."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def required_variables(value: Any) -> set[str]:
    """The variables ``${NAME:?...}`` (or ``${NAME?...}``) of parsed YAML: the stack does not start
    without them."""
    return {
        match["name"]
        for text in strings(value)
        for match in _VARIABLE.finditer(text)
        if (match["op"] or "").endswith("?")
    }


RAW_COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
ENV_EXAMPLE = env_file(ROOT / ".env.example")
# The secrets as a filled-in .env gives them: a distinct made-up value each.
SECRETS = {name: f"test-{name.lower().replace('_', '-')}" for name in required_variables(RAW_COMPOSE)}
# The stack as `docker compose` reads it with that .env.
COMPOSE = interpolate(RAW_COMPOSE, {**ENV_EXAMPLE, **SECRETS})
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETTING_VARIABLES = {PREFIX + spec.name.upper() for spec in fields(Settings)}


def dockerfile_instructions(name: str) -> list[str]:
    """The arguments of every ``name`` instruction of the Dockerfile (continued lines joined)."""
    text = DOCKERFILE.replace("\\\n", " ")
    return [
        line.split(None, 1)[1].strip()
        for line in text.splitlines()
        if line.strip() and line.split(None, 1)[0].upper() == name
    ]


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, from the mapping or the list form (``KEY=value``, or ``KEY`` alone)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, None) for item in raw)
    return {key: "" if value is None else str(value) for key, value in raw.items()}


def forewarn_services() -> dict[str, dict[str, Any]]:
    """The services running the Forewarn image (built from the Dockerfile)."""
    return {name: service for name, service in SERVICES.items() if "build" in service}


def image_environment() -> dict[str, str]:
    """The Dockerfile's ENV (the ``KEY=value`` form)."""
    return dict(
        item.split("=", 1) for arguments in dockerfile_instructions("ENV") for item in shlex.split(arguments)
    )


def settings_of(service: dict[str, Any]) -> Settings:
    """What a Forewarn service's settings come to: the image's ENV, then the service's environment."""
    return Settings.from_env({**image_environment(), **environment(service)})


def commands(service: dict[str, Any]) -> list[list[str]]:
    """The ``forewarn`` command lines a Forewarn service runs (its argv after ``forewarn``)."""
    entrypoint = service.get("entrypoint", json.loads(dockerfile_instructions("ENTRYPOINT")[-1]))
    command = service.get("command", json.loads(dockerfile_instructions("CMD")[-1]))
    command = shlex.split(command) if isinstance(command, str) else command
    if entrypoint == ["forewarn"]:
        return [command]
    assert entrypoint == ["sh", "-c"] and len(command) == 1, (entrypoint, command)
    lines = [shlex.split(part) for part in command[0].split("&&")]
    assert all(line[0] == "forewarn" for line in lines), command
    return [line[1:] for line in lines]


def workers() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in forewarn_services().items() if commands(s)[0][0] == "worker"}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """A service's dependencies and their conditions (the short list form means service_started)."""
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in raw.items()}


def starts_after(name: str) -> set[str]:
    """Every service ``name`` waits for, directly or not."""
    seen: set[str] = set()
    todo = list(depends_on(SERVICES[name]))
    while todo:
        other = todo.pop()
        if other not in seen:
            seen.add(other)
            todo.extend(depends_on(SERVICES[other]))
    assert name not in seen, f"{name} waits for itself"
    return seen


def volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """A service's mounts: target -> source (a named volume, or a path on the host)."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts[volume["target"]] = volume["source"]
        else:
            source, target, *_ = volume.split(":")
            mounts[target] = source
    return mounts


def mounted_on(service: dict[str, Any], path: str) -> str | None:
    """The source of the mount ``path`` lies in, the deepest one."""
    holding = [t for t in volume_mounts(service) if path == t or path.startswith(t.rstrip("/") + "/")]
    return volume_mounts(service)[max(holding, key=len)] if holding else None


def is_host_path(source: str) -> bool:
    return source.startswith(("./", "../", "/"))


# --- the services


def test_the_stack_has_its_services_and_the_traffic_is_opt_in() -> None:
    assert set(SERVICES) == {
        "kafka",
        "clickhouse",
        "setup",
        "worker-1",
        "worker-2",
        "sink",
        "notifier",
        "traffic",
        "service-desk",
        "prometheus",
        "grafana",
    }
    assert set(workers()) == {"worker-1", "worker-2"}
    assert {name: s["profiles"] for name, s in SERVICES.items() if "profiles" in s} == {
        "traffic": ["demo"],
        "service-desk": ["demo"],
    }
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:")
    assert SERVICES["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert SERVICES["prometheus"]["image"].startswith("prom/prometheus:")
    assert SERVICES["grafana"]["image"].startswith("grafana/grafana-oss:")
    assert "grafana-clickhouse-datasource" in environment(SERVICES["grafana"])["GF_INSTALL_PLUGINS"]


def test_kafka_is_a_single_kraft_node_advertised_where_forewarn_looks_for_it() -> None:
    kafka = environment(SERVICES["kafka"])
    assert set(kafka["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{kafka['KAFKA_NODE_ID']}@")
    assert not [key for name, s in SERVICES.items() for key in environment(s) if "ZOOKEEPER" in key]
    assert not [name for name in SERVICES if "zookeeper" in name]
    advertised = {listener.split("://", 1)[1] for listener in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    for name, service in forewarn_services().items():
        assert set(settings_of(service).bootstrap_servers) <= advertised, name
    # Forewarn creates its topics with their partition counts; auto-creation would make wrong ones.
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_clickhouse_is_the_server_the_dsn_names() -> None:
    clickhouse = environment(SERVICES["clickhouse"])
    for name, service in forewarn_services().items():
        dsn = settings_of(service).clickhouse_dsn
        user = clickhouse["CLICKHOUSE_USER"]
        expected = (
            f"http://{user}:{clickhouse['CLICKHOUSE_PASSWORD']}@clickhouse:8123/{clickhouse['CLICKHOUSE_DB']}"
        )
        assert dsn == expected, name
    assert "8123/ping" in " ".join(SERVICES["clickhouse"]["healthcheck"]["test"])


def test_every_variable_given_to_forewarn_is_a_setting_it_reads() -> None:
    for name, service in forewarn_services().items():
        given = set(environment(service))
        assert given, name
        assert given <= SETTING_VARIABLES, f"{name}: {sorted(given - SETTING_VARIABLES)} are no settings"
        settings_of(service)  # and their values are valid ones
    in_image = {key for key in image_environment() if key.startswith(PREFIX)}
    assert in_image <= SETTING_VARIABLES, sorted(in_image - SETTING_VARIABLES)
    others = {key for s in SERVICES.values() for key in environment(s) if key.startswith(PREFIX)}
    assert others <= SETTING_VARIABLES


class Parsed(Exception):
    """Raised in place of running the command a ``forewarn`` command line parsed into."""

    def __init__(self, namespace: argparse.Namespace) -> None:
        super().__init__(namespace)
        self.namespace = namespace


def parsed_command(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    """``forewarn <argv>`` as streams.tools.cli's own parser reads it, without running it."""
    original = argparse.ArgumentParser.parse_args

    def parse_and_stop(parser: argparse.ArgumentParser, args: Any = None, namespace: Any = None) -> Any:
        try:
            raise Parsed(original(parser, args, namespace))
        except SystemExit:  # argparse's answer to anything the CLI does not take
            pytest.fail(f"the CLI does not take `forewarn {shlex.join(argv)}`")

    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", parse_and_stop)
        with pytest.raises(Parsed) as parsed:
            cli.main(argv)
    return parsed.value.namespace


def test_every_forewarn_command_of_the_stack_is_one_the_cli_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    run = {
        (name, parsed_command(argv, monkeypatch).command)
        for name, service in forewarn_services().items()
        for argv in commands(service)
    }
    assert run == {
        ("setup", "topics"),
        ("setup", "schema"),
        ("worker-1", "worker"),
        ("worker-2", "worker"),
        ("sink", "sink"),
        ("notifier", "notifier"),
        ("traffic", "traffic"),
        ("service-desk", "service-desk"),
    }
    assert json.loads(dockerfile_instructions("ENTRYPOINT")[-1]) == ["forewarn"]
    assert PYPROJECT["project"]["scripts"]["forewarn"] == "streams.tools.cli:main"


def test_the_start_order() -> None:
    assert depends_on(SERVICES["setup"]) == {"kafka": "service_healthy", "clickhouse": "service_healthy"}
    for name in workers():
        assert depends_on(SERVICES[name]).get("setup") == "service_completed_successfully", name
        assert starts_after(name) >= {"setup", "kafka", "clickhouse"}
    assert depends_on(SERVICES["sink"]) == {"setup": "service_completed_successfully"}
    for name in ("notifier", "traffic", "service-desk", "prometheus"):
        assert {depends_on(SERVICES[name]).get(worker) for worker in workers()} == {"service_healthy"}, name
    assert starts_after("traffic") >= {"setup"}
    assert depends_on(SERVICES["grafana"]) == {
        "prometheus": "service_healthy",
        "clickhouse": "service_healthy",
    }


def test_what_others_wait_for_says_when_it_is_ready() -> None:
    """A server others wait on has a healthcheck and they wait for it to be healthy; a one-shot service
    they wait on (setup) must have completed, and is not restarted."""
    for name, service in SERVICES.items():
        for other, condition in depends_on(service).items():
            target = SERVICES[other]
            if "healthcheck" in target:
                assert not target["healthcheck"].get("disable"), other
                assert condition == "service_healthy", (name, other)
            else:
                assert condition == "service_completed_successfully", (name, other)
                assert target.get("restart", "no") == "no" and "ports" not in target, other
    for name in ("kafka", "clickhouse", *workers(), "sink", "prometheus"):
        assert "healthcheck" in SERVICES[name], name


def test_the_workers_share_the_work_the_key_and_nothing_else() -> None:
    settings = {name: settings_of(service) for name, service in workers().items()}
    assert len({s.app_id for s in settings.values()}) == 1  # one consumer group
    assert len({s.partitions for s in settings.values()}) == 1
    assert all(s.standby_replicas == 1 for s in settings.values())
    assert all(s.pseudonym_key == "" for s in settings.values())  # the key comes from the file ...
    key_volumes = {mounted_on(workers()[name], s.pseudonym_key_file) for name, s in settings.items()}
    assert len(key_volumes) == 1 and None not in key_volumes  # ... on one volume they all mount
    assert not is_host_path(key_volumes.pop() or "")
    data_volumes = [mounted_on(workers()[name], s.data_dir) for name, s in settings.items()]
    assert None not in data_volumes and len(set(data_volumes)) == len(data_volumes)  # a data volume each
    hosts = [service.get("hostname") for service in workers().values()]
    assert hosts == list(workers())  # the API forwards a user's reads to http://<host>:<web port>


def test_the_worker_healthcheck_asks_its_metrics_port_without_curl() -> None:
    for name, service in workers().items():
        test = service["healthcheck"]["test"]
        assert test[:2] == ["CMD", "python"], name
        assert f":{settings_of(service).metrics_port}/metrics" in " ".join(test), name


def test_prometheus_scrapes_every_worker() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        if job["job_name"] == "forewarn"
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    assert targets == {f"{name}:{settings_of(s).metrics_port}" for name, s in workers().items()} | {
        f"sink:{settings_of(SERVICES['sink']).sink_metrics_port}"
    }


def test_the_sink_runs_in_its_own_service_with_the_workers_key() -> None:
    """The workers leave the sink out (FOREWARN_SINK_IN_WORKER=false): it runs in its own service only,
    which can be restarted alone, and pseudonymises with the key the workers use."""
    assert all(not settings_of(service).sink_in_worker for service in workers().values())
    sink = SERVICES["sink"]
    settings = settings_of(sink)
    assert commands(sink) == [["sink"]]
    assert mounted_on(sink, settings.pseudonym_key_file) == mounted_on(
        workers()["worker-1"], settings_of(workers()["worker-1"]).pseudonym_key_file
    )
    assert f":{settings.sink_metrics_port}/metrics" in " ".join(sink["healthcheck"]["test"])


def test_what_the_stack_mounts_exists_and_named_volumes_are_declared() -> None:
    declared = set(COMPOSE.get("volumes") or {})
    for name, service in SERVICES.items():
        for source in volume_mounts(service).values():
            if is_host_path(source):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"
            else:
                assert source in declared, (name, source)
    for name, service in workers().items():
        tokens = settings_of(service).api_tokens_file
        assert is_host_path(mounted_on(service, tokens) or ""), name
    grafana, prometheus = volume_mounts(SERVICES["grafana"]), volume_mounts(SERVICES["prometheus"])
    assert grafana["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    assert grafana["/var/lib/grafana/dashboards"] == "./deploy/grafana/dashboards"
    assert prometheus["/etc/prometheus/prometheus.yml"] == "./deploy/prometheus/prometheus.yml"
    assert prometheus["/etc/prometheus/alerts.yml"] == "./deploy/prometheus/alerts.yml"


def test_published_host_ports_do_not_collide() -> None:
    published = [
        str(port).rsplit(":", 1)[0].rsplit(":", 1)[-1]
        for s in SERVICES.values()
        for port in s.get("ports", [])
    ]
    assert len(published) == len(set(published)), published


def test_the_image_installs_every_package_with_its_data_as_a_non_root_user() -> None:
    copied = {source for arguments in dockerfile_instructions("COPY") for source in arguments.split()[:-1]}
    included = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*").rstrip(".") for pattern in included}
    assert packages <= copied, f"the Dockerfile does not copy {sorted(packages - copied)}"
    assert {"pyproject.toml", "README.md"} <= copied  # the build reads both
    for package, patterns in PYPROJECT["tool"]["setuptools"]["package-data"].items():
        assert package in copied
        assert all(list((ROOT / package).glob(pattern)) for pattern in patterns), package
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    ignored = [line for line in ignored if line and not line.startswith("#")]
    assert not [(c, i) for c in copied for i in ignored if fnmatch.fnmatch(c, i)]  # in the build context
    installs = [arguments for arguments in dockerfile_instructions("RUN") if "pip install" in arguments]
    assert installs and not [line for line in installs if " -e " in line or "--editable" in line]
    users = dockerfile_instructions("USER")
    assert users and users[-1] not in ("root", "0")
    exposed = {int(port) for arguments in dockerfile_instructions("EXPOSE") for port in arguments.split()}
    defaults = Settings.from_env({})
    assert {defaults.web_port, defaults.metrics_port} <= exposed


# --- safe to start on a shared host


def published_ports(service: dict[str, Any]) -> list[dict[str, str]]:
    """A service's published ports, short (``[ip:]host:container``) or long syntax, as mappings."""
    found = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            found.append({key: str(value) for key, value in port.items()})
            continue
        *host, container = str(port).split(":")
        ip, published = (host[0], host[1]) if len(host) == 2 else ("", host[0] if host else "")
        found.append({"host_ip": ip, "published": published, "target": container})
    return found


def test_every_published_port_is_bound_to_the_loopback() -> None:
    ports = {name: published_ports(service) for name, service in SERVICES.items()}
    assert {"kafka", "clickhouse", "grafana", "prometheus", *workers()} <= {n for n, p in ports.items() if p}
    for name, published in ports.items():
        for port in published:
            assert port.get("host_ip") == "127.0.0.1", (name, port)
    # What others reach Kafka at: the in-network listener, and the host's through the loopback port.
    kafka = environment(SERVICES["kafka"])
    assert "HOST://localhost:29092" in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")


SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$")
REFERENCE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")
REQUIRED_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:\?[^}]+\}")


def test_no_secret_is_written_in_the_stack() -> None:
    """Every password the stack uses is a required variable, nowhere a value in a committed file."""
    secrets = {
        f"{name}.{key}": value
        for name, service in RAW_COMPOSE["services"].items()
        for key, value in (service.get("environment") or {}).items()
        if SECRET_NAME.search(key) and not key.endswith("_FILE")  # a file's path is no secret
    }
    secrets["x-forewarn.FOREWARN_CLICKHOUSE_DSN (password)"] = re.sub(
        r"^\w+://[^:@/]+:(.*)@[^@]+$", r"\1", RAW_COMPOSE["x-forewarn"]["FOREWARN_CLICKHOUSE_DSN"]
    )
    assert {"clickhouse.CLICKHOUSE_PASSWORD", "grafana.GF_SECURITY_ADMIN_PASSWORD"} <= set(secrets)
    for where, value in secrets.items():
        assert REQUIRED_REFERENCE.fullmatch(str(value)), f"{where} is {value!r}, not a required ${{...}}"
    datasources = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/forewarn.yml").read_text())
    for source in datasources["datasources"]:
        for key, value in (source.get("secureJsonData") or {}).items():
            assert REFERENCE.fullmatch(value), f"{source['name']}: {key} is written in the file"


def test_the_secrets_come_from_an_env_file_that_is_not_committed() -> None:
    required = required_variables(RAW_COMPOSE)
    assert {"CLICKHOUSE_PASSWORD", "CLICKHOUSE_GRAFANA_PASSWORD", "GRAFANA_ADMIN_PASSWORD"} <= required
    # .env.example names each one, with no value: a copy left unfilled does not start.
    assert {name: ENV_EXAMPLE.get(name) for name in required} == dict.fromkeys(required, "")
    for name in required:
        with pytest.raises(MissingVariable, match=name):
            interpolate(RAW_COMPOSE, {**ENV_EXAMPLE, **SECRETS, name: ""})
    # Optional variables have a default, and .env.example names them too.
    optional = {match["name"] for text in strings(RAW_COMPOSE) for match in _VARIABLE.finditer(text)}
    assert optional - required <= set(ENV_EXAMPLE)
    for ignore in (".gitignore", ".dockerignore"):  # never committed, never in an image
        assert ".env" in (ROOT / ignore).read_text().splitlines(), ignore


def test_grafana_reads_clickhouse_as_a_read_only_user() -> None:
    datasources = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/forewarn.yml").read_text())
    [clickhouse_source] = [
        s for s in datasources["datasources"] if s["type"] == "grafana-clickhouse-datasource"
    ]
    user = clickhouse_source["jsonData"]["username"]
    workers_user = environment(SERVICES["clickhouse"])["CLICKHOUSE_USER"]
    assert user != workers_user and f"//{workers_user}:" in settings_of(workers()["worker-1"]).clickhouse_dsn

    users_file = mounted_on(SERVICES["clickhouse"], f"/etc/clickhouse-server/users.d/{user}.xml")
    assert users_file and is_host_path(users_file)
    config = ElementTree.parse(ROOT / users_file).getroot()
    account = config.find(f"users/{user}")
    assert account is not None, f"{users_file} does not define {user}"
    profile = config.find(f"profiles/{account.findtext('profile')}")
    assert profile is not None and profile.findtext("readonly") == "1"
    # Nothing but SELECT on the database, and the one setting the plugin must change.
    assert [q.text for q in account.findall("grants/query")] == [
        f"GRANT SELECT ON {environment(SERVICES['clickhouse'])['CLICKHOUSE_DB']}.*"
    ]
    assert [c.tag for c in profile.findall("constraints/*")] == ["max_execution_time"]
    assert profile.find("constraints/max_execution_time/changeable_in_readonly") is not None
    # One password, from the environment of both sides.
    password = account.find("password")
    assert password is not None and not (password.text or "").strip()
    variable = password.get("from_env")
    assert variable in SECRETS
    assert clickhouse_source["secureJsonData"]["password"] == f"${{{variable}}}"
    assert environment(SERVICES["clickhouse"])[variable] == SECRETS[variable]
    assert environment(SERVICES["grafana"])[variable] == SECRETS[variable]


# The server's own users (the image's default-user.xml does the same for the workers' user), beside
# which users.d/ files are merged, as in the image.
SERVER_USERS = """<clickhouse>
    <profiles><default/></profiles>
    <users><default><password/><networks><ip>::/0</ip></networks><profile>default</profile>
        <quota>default</quota><access_management>1</access_management></default></users>
    <quotas><default/></quotas>
</clickhouse>
"""


@pytest.mark.integration
def test_the_read_only_user_reads_and_does_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deploy/clickhouse/users.d/grafana.xml on a real ClickHouse server: the password from the
    environment, SELECT on forewarn, the plugin's timeout setting; no write, no other setting."""
    (tmp_path / "users.d").mkdir()
    (tmp_path / "users.xml").write_text(SERVER_USERS)
    users_file = mounted_on(SERVICES["clickhouse"], "/etc/clickhouse-server/users.d/grafana.xml")
    (tmp_path / "users.d" / "grafana.xml").write_text((ROOT / (users_file or "")).read_text())
    monkeypatch.setenv("CLICKHOUSE_GRAFANA_PASSWORD", "a-password-for-grafana")
    users_config = f"<users_config>{tmp_path}/users.xml</users_config>"
    server = start_clickhouse_server(tmp_path / "server", config=users_config)
    try:
        admin = clickhouse_connect.get_client(dsn=server.url)
        admin.command("CREATE DATABASE forewarn")
        admin.command("CREATE TABLE forewarn.events (user_id String) ENGINE = MergeTree ORDER BY user_id")
        admin.command("INSERT INTO forewarn.events VALUES ('p1')")
        grafana = clickhouse_connect.get_client(
            dsn=server.url.replace("//", "//grafana:a-password-for-grafana@") + "/forewarn"
        )
        # In the query, so that the server (not the driver) judges the settings. The plugin sets this one.
        query = "SELECT count() FROM events SETTINGS max_execution_time = 30"
        assert grafana.query(query).result_rows == [(1,)]
        for statement in (
            "INSERT INTO events VALUES ('p2')",
            "DELETE FROM events WHERE user_id = 'p1'",
            "DROP TABLE events",
            "CREATE TABLE t (a UInt8) ENGINE = Memory",
        ):
            with pytest.raises(DatabaseError, match=r"ACCESS_DENIED|READONLY"):
                grafana.command(statement)
        with pytest.raises(DatabaseError, match="READONLY"):
            grafana.query("SELECT 1 SETTINGS max_threads = 1")
        with pytest.raises(DatabaseError, match="AUTHENTICATION_FAILED"):
            clickhouse_connect.get_client(dsn=server.url.replace("//", "//grafana:a-guess@"))
    finally:
        server.stop()


def test_grafana_lets_nobody_in_anonymously_beyond_viewing() -> None:
    grafana = environment(SERVICES["grafana"])
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"  # unless .env turns it on ...
    assert grafana["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"  # ... and then as a Viewer only
    assert grafana["GF_USERS_ALLOW_SIGN_UP"] == "false"
    opted_in = interpolate(RAW_COMPOSE, {**SECRETS, "GRAFANA_ANONYMOUS_VIEWERS": "true"})
    assert environment(opted_in["services"]["grafana"])["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == SECRETS["GRAFANA_ADMIN_PASSWORD"]


def documented_acls() -> dict[str, dict[str, set[str]]]:
    """The ``kafka-acls.sh --add`` commands of docs/operations.md "Kafka authentication and ACLs":
    principal -> operation -> the resources it is allowed on (``topic:name``, ``topic:prefix*``,
    ``group:name``)."""
    operations = (ROOT / "docs" / "operations.md").read_text()
    section = operations.split("### Kafka authentication and ACLs", 1)[1].split("\n## ", 1)[0]
    acls: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for command in section.replace("\\\n", " ").splitlines():
        if not command.startswith("kafka-acls.sh "):
            continue
        words = shlex.split(command, comments=True)
        assert "--add" in words, command
        options: dict[str, list[str]] = defaultdict(list)
        for option, value in itertools.pairwise(words):
            if option.startswith("--"):
                options[option].append(value)
        [principal] = options["--allow-principal"]
        prefixed = options["--resource-pattern-type"] == ["prefixed"]
        resources = [f"topic:{t}{'*' if prefixed else ''}" for t in options["--topic"]]
        resources += [f"group:{g}" for g in options["--group"]]
        for operation in options["--operation"]:
            acls[principal.removeprefix("User:")][operation].update(resources)
    return acls


def allowed(acls: Mapping[str, Mapping[str, set[str]]], principal: str, operation: str, topic: str) -> bool:
    """Whether ``principal`` may ``operation`` (Read, Write) on ``topic`` by the documented ACLs."""
    granted = acls.get(principal, {})
    resources = set(granted.get(operation, ())) | set(granted.get("All", ()))
    return any(
        resource == f"topic:{topic}" or (resource.endswith("*") and topic.startswith(resource[6:-1]))
        for resource in resources
    )


def test_the_docs_give_each_principal_the_acls_it_needs_and_no_more() -> None:
    settings = Settings.from_env({})
    acls = documented_acls()
    assert {"forewarn-worker", "forewarn-notifier", "forewarn-web", "forewarn-logistics"} <= set(acls)
    internal = [
        *topic_names(settings),
        f"{settings.app_id}-users-changelog",
        f"{settings.app_id}-models-changelog",
    ]
    internal = [t for t in internal if t.startswith(f"{settings.app_id}-")]
    assert len(internal) >= 6
    # Whatever the worker consumes (sources, and its sink's topics) it reads; all it emits it writes.
    sources = [topic.name_in(settings) for topic in TOPICS.values() if topic.role == SOURCE]
    sunk = [*sink_specs(settings), settings.topic_erasures]
    emitted = [t for t in topic_names(settings) if t not in sources] + [
        settings.topic_preferences,  # the API's requests
        settings.topic_erasure_requests,
        settings.topic_crm_updates,
    ]
    for topic in [*sources, *sunk, *internal]:
        assert allowed(acls, "forewarn-worker", "Read", topic), topic
    for topic in [*emitted, *internal]:
        assert allowed(acls, "forewarn-worker", "Write", topic), topic
    assert acls["forewarn-worker"]["Read"] >= {f"group:{settings.app_id}", f"group:{settings.app_id}-sink"}
    # Nobody else may write the internal topics, the changelogs, the erasures or the audit.
    for principal in set(acls) - {"forewarn-worker"}:
        for topic in [*internal, settings.topic_erasures, settings.topic_api_audit]:
            assert not allowed(acls, principal, "Write", topic), (principal, topic)
    # The others write only their own topic.
    writes = {
        principal: {
            t for t in [*topic_names(settings), settings.topic_stock] if allowed(acls, principal, "Write", t)
        }
        for principal in acls
    }
    assert writes["forewarn-notifier"] == {settings.topic_outcomes}
    assert writes["forewarn-web"] == {settings.topic_clickstream}
    assert writes["forewarn-logistics"] == {settings.topic_logistics}
    assert allowed(acls, "forewarn-notifier", "Read", settings.topic_interventions)
    assert acls["forewarn-notifier"]["Read"] >= {f"group:{settings.app_id}-example-notifier"}


def test_the_workers_keep_their_tables_in_rocksdb_through_the_binding_the_image_installs() -> None:
    """Memory set by the users active within the idle horizon, not by every user seen (docs/benchmarks.md
    "Memory"): the workers' tables are on disk, through Faust's RocksDB store on rocksdict."""
    assert workers() and all(settings_of(service).store == "rocksdb://" for service in workers().values())
    binding = PYPROJECT["project"]["optional-dependencies"]["rocksdb"]
    assert [requirement for requirement in binding if requirement.startswith("rocksdict")], binding
    installs = [arguments for arguments in dockerfile_instructions("RUN") if "pip install" in arguments]
    assert [line for line in installs if '".[rocksdb]"' in line or ".[rocksdb]" in line.split()], installs


# --- the commands, against the embedded broker


def wait_for_log(path: Path, text: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        assert process.poll() is None, f"exited ({process.returncode}):\n{path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"never logged {text!r}:\n{path.read_text()[-3000:]}"
        time.sleep(0.1)


def start_command(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.tools.cli", *argv],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_by_pid(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(10)


async def messages_per_topic(bootstrap: str, topics: list[str], at_least: int) -> Counter[str]:
    """How many messages each of ``topics`` holds, read from the start until there are ``at_least`` in
    all (or 30 s have passed). Read, not computed from offsets: the embedded broker's latest offsets
    fall short of the messages it holds."""
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    counts: Counter[str] = Counter()
    deadline = time.monotonic() + 30
    try:
        while counts.total() < at_least and time.monotonic() < deadline:
            for partition, batch in (await consumer.getmany(timeout_ms=200)).items():
                counts[partition.topic] += len(batch)
    finally:
        await consumer.stop()
    return counts


def test_the_traffic_profile_sends_every_kind_of_traffic_and_lingers_past_the_dwell() -> None:
    policy = load_policy()
    profile = process_traffic_profile(5.0, policy)
    start = time.time()
    sent = TrafficGenerator(profile, seed=7, start=start).due(start + 900)
    # Everything but what the notifier (outcomes), the erasure requests of the API and the simulated
    # service desk and teams (streams.tools.service_desk: ticket and feedback updates) send.
    assert {m.topic for m in sent} == set(traffic_topics(Settings.from_env({}))) - {
        OUTCOMES,
        ERASURE_REQUESTS,
        TICKET_UPDATES,
        FEEDBACK_UPDATES,
    }
    dwell = policy.for_signal("payment_dwell")
    assert dwell is not None and profile.linger_seconds[0] > dwell.params["dwell"]
    assert any(m.expects == PAYMENT_ASSIST for m in sent)


def test_traffic_waits_for_the_broker_and_its_topics_then_streams_and_stops(tmp_path: Path) -> None:
    port, seed = free_port(), 5
    env = {"FOREWARN_BROKER_URL": f"kafka://127.0.0.1:{port}", "FOREWARN_PARTITIONS": "2"}
    settings = Settings.from_env(env)
    log_path = tmp_path / "traffic.log"
    started = time.time()
    process = start_command(["traffic", "--duration", "3", "--seed", str(seed)], env, log_path)
    broker: EmbeddedBroker | None = None
    try:
        wait_for_log(log_path, "does not answer", process)  # no broker yet: it retries
        broker = start_broker(port=port, log_path=tmp_path / "broker.log")
        wait_for_log(log_path, "do not exist yet", process)  # a broker, no topics yet: it retries
        asyncio.run(ensure_topics(settings))
        assert process.wait(60) == 0, log_path.read_text()[-3000:]
        said = re.findall(r"(\d+) sent in", log_path.read_text())  # what it reports having sent
        assert said, log_path.read_text()[-3000:]
        topics = traffic_topics(settings)
        counts = asyncio.run(
            messages_per_topic(broker.bootstrap, sorted(set(topics.values())), int(said[-1]))
        )
    finally:
        stop_by_pid(process)
        if broker is not None:
            broker.stop()
    # What the traffic has due at its first instant (the seed's first session and the questions' history)
    # reached the topics it is meant for.
    first = TrafficGenerator(process_traffic_profile(5.0, load_policy()), seed=seed).due(started)
    assert {topics[m.topic] for m in first} >= {settings.topic_clickstream, settings.topic_support_questions}
    assert counts.total() == int(said[-1])
    assert set(counts) >= {topics[m.topic] for m in first}
    assert counts[settings.topic_clickstream] >= sum(m.topic == CLICKSTREAM for m in first)


def test_the_notifier_reports_the_outcomes_of_interventions_and_stops_on_sigterm(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    seed = 3
    env = {"FOREWARN_BROKER_URL": broker.url, "FOREWARN_PARTITIONS": "1", **EMBEDDED_BROKER_ENV}
    settings = Settings.from_env(env)
    asyncio.run(ensure_topics(settings))
    now = time.time()
    interventions = [
        Intervention(
            intervention_id(DELAY_NOTICE, f"u{n}", f"l{n}"),
            DELAY_NOTICE,
            "notify_delay",
            f"u{n}",
            now,
            "ETA slipped 24.0h past the promised ETA",
            f"l{n}",
            channel="chat",
            offer={"kind": "discount", "percent": 10.0} if n % 2 else None,
        ).to_wire(now)
        for n in range(8)
    ]
    asyncio.run(
        produce(
            broker.bootstrap,
            [(settings.topic_interventions, i["user_id"].encode(), orjson.dumps(i)) for i in interventions],
        )
    )
    # On one partition the notifier meets them in this order, drawing from one generator seeded so.
    rng = random.Random(seed)
    expected = [event for i in interventions for event in simulate_outcomes(i, rng, OutcomeRates())]
    log_path = tmp_path / "notifier.log"
    process = start_command(["notifier", "--seed", str(seed)], env, log_path)
    try:
        reported = asyncio.run(
            read_until(broker.bootstrap, settings.topic_outcomes, lambda got: len(got) >= len(expected))
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log_path.read_text()[-3000:]
    finally:
        stop_by_pid(process)
    events = [orjson.loads(message.value) for message in reported]

    def identity(event: dict) -> tuple:
        return (
            event["event_id"],
            event["event_type"],
            event["intervention_id"],
            event["user_id"],
            event["channel"],
        )

    assert [identity(event) for event in events] == [identity(event) for event in expected]
    assert f"stopped; reported {len(expected)} outcomes" in log_path.read_text()
