"""A real ClickHouse server speaking HTTP, for tests, without Docker.

chdb-core's compiled module exposes ``query(sql, format, path=...)``, which runs a whole
clickhouse-local over ``path``. clickhouse-local reads ``./config.xml`` and obeys ``SYSTEM START LISTEN
HTTP``, so it becomes a server. Two constraints shape this module:

* one clickhouse-local per process, and each ``query`` call is a new one: so the server runs in a
  subprocess that loads ``_chdb.abi3.so`` directly (importing the ``chdb`` package would start its own)
  and does everything in ONE multi-statement call: listen, write the port to a file, then keep the
  server alive with a long ``sleepEachRow`` statement until it is killed;
* ``http_port`` 0 lets the kernel pick a free port; ``getServerPort('http_port')`` tells which.

The data lives in ``workdir/data``, so a server stopped and started again on the same workdir keeps
its tables (a test can take ClickHouse away for a while and bring it back).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

# Runs in the subprocess. argv: the work directory.
_SERVER = r"""
import importlib.machinery, importlib.util, os, sys
workdir = sys.argv[1]
os.chdir(workdir)  # clickhouse-local reads ./config.xml
location = importlib.util.find_spec("chdb").submodule_search_locations[0]  # finds, does not import
path = os.path.join(location, "_chdb.abi3.so")
loader = importlib.machinery.ExtensionFileLoader("_chdb", path)
module = importlib.util.module_from_spec(importlib.util.spec_from_file_location("_chdb", path, loader=loader))
loader.exec_module(module)
module.query(
    "SYSTEM START LISTEN HTTP;"
    f" SELECT getServerPort('http_port') INTO OUTFILE '{workdir}/port.tmp' TRUNCATE FORMAT TSV;"
    " SELECT sleepEachRow(1) FROM numbers(100000000)"
    " SETTINGS function_sleep_max_microseconds_per_block = 0, max_block_size = 1 FORMAT Null",
    "TSV",
    path=os.path.join(workdir, "data"),
)
"""


@dataclass
class ClickHouseServer:
    process: subprocess.Popen[bytes]
    port: int
    workdir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop the server by PID: SIGTERM, then SIGKILL. Idempotent."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _ping(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as response:
            return response.read().strip() == b"Ok."
    except OSError:
        return False


def start_clickhouse_server(
    workdir: Path, port: int = 0, timeout: float = 60.0, config: str = ""
) -> ClickHouseServer:
    """Start a ClickHouse HTTP server over ``workdir`` (on ``port``, or a free one) and wait until it
    answers ``/ping``. ``config``: more elements of its ``config.xml`` (e.g. ``<users_config>``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.xml").write_text(
        f"<clickhouse><listen_host>127.0.0.1</listen_host><http_port>{port}</http_port>{config}</clickhouse>\n"
    )
    port_file = workdir / "port.tmp"
    port_file.unlink(missing_ok=True)
    log = open(workdir / "server.log", "ab")  # noqa: SIM115 - the child keeps writing to it
    process = subprocess.Popen([sys.executable, "-c", _SERVER, str(workdir)], stdout=log, stderr=log)
    log.close()
    deadline = time.monotonic() + timeout
    while True:
        text = port_file.read_text().strip() if port_file.exists() else ""
        if text.isdigit() and _ping(int(text)):
            return ClickHouseServer(process, int(text), workdir)
        if process.poll() is not None or time.monotonic() > deadline:
            ClickHouseServer(process, 0, workdir).stop()
            output = (workdir / "server.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"ClickHouse server did not start:\n{output}")
        time.sleep(0.1)
