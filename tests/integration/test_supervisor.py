"""``forewarn worker --processes N`` (streams.run.supervisor): its workers share the partitions and its sink
stores every event once; a signal stops every child, a child that dies stops the rest, and no child
outlives a supervisor killed outright."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from streams.tools.broker import free_port
from streams.tools.worker_launcher import WorkerProcess
from tests.support.harness import assigned, metric, produce, rows, until, worker_env

# A supervisor of two children that write their pid to a file and sleep; argv: the directory, then the
# second child's exit code after half a second ("" for none: it sleeps too). A SIGTERM stops them with 0.
SUPERVISE = r"""
import sys
from streams.run.supervisor import ChildSpec, Supervisor
child = '''
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
open(os.path.join(sys.argv[1], sys.argv[2]), "w").write(str(os.getpid()))
if sys.argv[3]:
    time.sleep(0.5)
    sys.exit(int(sys.argv[3]))
time.sleep(120)
'''
directory, code = sys.argv[1], sys.argv[2]
children = [
    ChildSpec(name, [sys.executable, "-c", child, directory, name, exit_code])
    for name, exit_code in (("a", ""), ("b", code))
]
sys.exit(Supervisor(children, stop_seconds=10).run())
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def supervise(directory: Path, exit_code: str = "") -> tuple[subprocess.Popen[bytes], list[int]]:
    """The supervisor of :data:`SUPERVISE` and its children's pids, once both started."""
    supervisor = subprocess.Popen([sys.executable, "-c", SUPERVISE, str(directory), exit_code])
    paths = [directory / "a", directory / "b"]
    until(lambda: all(path.exists() and path.read_text() for path in paths), 20, "the children")
    return supervisor, [int(path.read_text()) for path in paths]


def test_a_signal_stops_every_child_and_a_child_that_dies_stops_the_rest(tmp_path: Path) -> None:
    (tmp_path / "stopped").mkdir()
    supervisor, pids = supervise(tmp_path / "stopped")
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(20) == 0 and not any(alive(pid) for pid in pids)

    (tmp_path / "failed").mkdir()
    supervisor, pids = supervise(tmp_path / "failed", exit_code="3")
    assert supervisor.wait(20) == 1 and not any(alive(pid) for pid in pids)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_no_child_outlives_a_killed_supervisor(tmp_path: Path) -> None:
    supervisor, pids = supervise(tmp_path)
    supervisor.kill()
    supervisor.wait(10)
    until(lambda: not any(alive(pid) for pid in pids), 10, "the children to stop")


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports."""
    while True:
        first = free_port()
        try:
            for port in range(first + 1, first + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first


EVENTS = 40


@pytest.mark.integration
def test_worker_processes_share_the_partitions_and_one_sink_stores_every_event_once(
    broker, tmp_path: Path
) -> None:
    sink_port = free_port()
    env = worker_env(broker.bootstrap, tmp_path, FOREWARN_SINK_METRICS_PORT=str(sink_port))
    supervisor = WorkerProcess(
        env,
        tmp_path / "supervisor.log",
        metrics_port=free_ports(2),
        web_port=free_ports(2),
        args=("--processes", "2"),
    )
    # What each worker process serves: its metrics port is the supervisor's base + its index.
    workers = [
        WorkerProcess({}, tmp_path / "unused.log", metrics_port=supervisor.metrics_port + i) for i in (0, 1)
    ]
    try:
        supervisor.start(timeout=60)

        def split() -> bool:
            try:
                held = [assigned(worker, "active") for worker in workers]
            except OSError:  # the second not serving yet
                return False
            return all(held) and set.union(*held) == {0, 1, 2, 3} and not set.intersection(*held)

        now_ms = int(time.time() * 1000)
        events = [
            (
                "clickstream",
                f"u{n % 8}".encode(),
                orjson.dumps(
                    {
                        "event_id": f"e{n}",
                        "event_type": "page_view",
                        "event_time": now_ms + n,
                        "user_id": f"u{n % 8}",
                        "session_id": f"s{n % 8}",
                        "page": "/home",
                    }
                ),
            )
            for n in range(EVENTS)
        ]
        # Sent while the second worker may still be joining: what moves with its partitions and is
        # processed twice must still be stored once.
        asyncio.run(produce(broker.bootstrap, events))
        until(split, 40, "the two workers to share the four partitions")
        sink = WorkerProcess({}, tmp_path / "unused.log", metrics_port=sink_port)
        until(
            lambda: metric(sink.metrics(), "forewarn_sink_rows_total", table="events") >= EVENTS,
            30,
            "the sink to store the events",
        )
        assert supervisor.stop(signal.SIGTERM, timeout=60) == 0
        pids = [
            int(pid) for pid in re.findall(r"supervisor: started \S+ \(pid (\d+)\)", supervisor.log_text())
        ]
        assert len(pids) == 3 and not any(alive(pid) for pid in pids)
        stored = rows(env["FOREWARN_CLICKHOUSE_DSN"], "SELECT count(), uniqExact(event_id) FROM events")
        assert stored == [(EVENTS, EVENTS)]
    finally:
        supervisor.stop(signal.SIGKILL, timeout=10)


@pytest.mark.integration
def test_the_sink_process_exits_non_zero_when_it_fails(broker, tmp_path: Path) -> None:
    """`forewarn sink` with no ClickHouse to store into fails loudly (exit 1, for its supervisor or
    orchestrator to see), rather than run without storing."""
    env = worker_env(broker.bootstrap, tmp_path, f"http://127.0.0.1:{free_port()}")
    sink = subprocess.run(
        [sys.executable, "-m", "streams.tools.cli", "sink"],
        env={**os.environ, **env, "FOREWARN_SINK_METRICS_PORT": "0"},
        capture_output=True,
        timeout=60,
    )
    assert sink.returncode == 1 and b"ClickHouse sink stopped" in sink.stderr
