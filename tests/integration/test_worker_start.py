"""Starting a worker: the files it reads are checked before it connects anywhere, and a bad one is one
line on stderr and exit code 2, not a traceback; against the embedded broker it tunes itself and is
ready in seconds with no FOREWARN_BROKER_* setting of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams.contracts.settings import EMBEDDED_BROKER_SETTINGS
from streams.tools.broker import EmbeddedBroker, free_port
from streams.tools.cli import main
from streams.tools.worker_launcher import EMBEDDED_BROKER_ENV, WorkerProcess
from tests.support import ROOT
from tests.support.harness import worker_env

READY_WITHIN = 25.0  # seconds


def nowhere_env(tmp_path: Path, **files: str) -> dict[str, str]:
    """A worker's settings with a broker URL nobody listens on, and ``files`` (setting -> content)."""
    env = {
        "FOREWARN_BROKER_URL": f"kafka://127.0.0.1:{free_port()}",
        "FOREWARN_DATA_DIR": str(tmp_path / "worker"),
        "FOREWARN_CLICKHOUSE_DSN": f"chdb://{tmp_path / 'ch'}",
        "FOREWARN_PSEUDONYM_KEY_FILE": str(tmp_path / "pseudonym.key"),
        "FOREWARN_CLUSTER_SECRET_FILE": str(tmp_path / "cluster.key"),
    }
    for setting, content in files.items():
        path = tmp_path / setting.lower()
        path.write_text(content)
        env[f"FOREWARN_{setting}"] = str(path)
    return env


def test_a_bad_policy_file_is_named_before_connecting_without_a_traceback(tmp_path: Path) -> None:
    env = nowhere_env(tmp_path, POLICY_FILE="[triggers.payment_assist]\ndwell = 'soon'\n")
    clean = {name: value for name, value in os.environ.items() if not name.startswith("FOREWARN_")}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "streams.tools.cli", "worker"],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.monotonic() - started < 15
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "bootstrap" not in result.stderr.lower()
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("forewarn: policy: ") and env["FOREWARN_POLICY_FILE"] in line, line


@pytest.mark.parametrize(
    ("files", "named"),
    [
        ({"API_TOKENS_FILE": "[{not json"}, "api-tokens: "),
        ({"CATALOG_FILE": '{"skus": 3}'}, "catalog: "),
        ({"SERVICE_POINTS_FILE": "[1, 2]"}, "service-points: "),
        ({"CLUSTER_SECRET_FILE": "short\n"}, "cluster-secret: "),
    ],
)
def test_every_file_setting_is_checked_before_connecting(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    files: dict[str, str],
    named: str,
) -> None:
    for name in [name for name in os.environ if name.startswith("FOREWARN_")]:
        monkeypatch.delenv(name)
    for name, value in nowhere_env(tmp_path, **files).items():
        monkeypatch.setenv(name, value)
    assert main(["worker"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"forewarn: {named}"), line


def test_settings_that_faust_would_refuse_are_named_before_connecting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FOREWARN_WEB_PORT", "0")
    assert main(["worker"]) == 2
    assert capsys.readouterr().err.strip() == "forewarn: FOREWARN_WEB_PORT must be a port, 1 to 65535"


def test_a_worker_finds_the_embedded_broker_and_is_ready_in_seconds(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """No FOREWARN_BROKER_* but the URL: with Kafka's group timeouts a group join on the embedded broker
    waits about 30 s (33 s to ready), with the embedded broker's 7 s; the bound leaves room for a
    machine whose cores are busy with other tests (starting a worker is itself seconds of CPU)."""
    env = {
        name: value
        for name, value in worker_env(broker.bootstrap, tmp_path).items()
        if name not in EMBEDDED_BROKER_ENV
    }
    worker = WorkerProcess(env, tmp_path / "worker.log")
    started = time.monotonic()
    try:
        worker.start(timeout=READY_WITHIN)
        ready = time.monotonic() - started
        assert "forewarn_assigned_partitions" in worker.metrics()
        log = worker.log_text()
    finally:
        worker.stop()
    assert "the embedded Tansu broker (cluster id tansu_cluster)" in log
    session = EMBEDDED_BROKER_SETTINGS["broker_session_timeout"]
    assert (
        f"FOREWARN_BROKER_SESSION_TIMEOUT={session}" in log
        and "FOREWARN_BROKER_VERIFY_END_OFFSETS=True" in log
    )
    assert ready < READY_WITHIN
