"""A ``forewarn worker`` run as a child process, for the demo, the tests and the benchmarks.

The child gets its own web and metrics ports and its own session (so Ctrl-C in a terminal reaches only
its owner, which stops it in order), logs to a file, and is stopped by PID: SIGTERM lets it flush the
ClickHouse sink and commit; SIGKILL follows if it does not exit in time.

Settings for the embedded broker (:data:`EMBEDDED_BROKER_ENV`): a worker finds them itself
(``FOREWARN_BROKER_PROFILE``, :meth:`streams.contracts.settings.Settings.for_broker`); the demo, the tests
and the benchmarks set them all the same, so that their own clients read them too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from streams.contracts.settings import EMBEDDED_BROKER_SETTINGS, PREFIX
from streams.tools.broker import free_port

EMBEDDED_BROKER_ENV = {
    PREFIX + name.upper(): str(value).lower() if isinstance(value, bool) else str(value)
    for name, value in EMBEDDED_BROKER_SETTINGS.items()
}


def send_everything_policy(dwell: str) -> str:
    """A policy override (TOML) under which every candidate intervention is emitted: no experiment, no
    quiet hours, caps no scripted user reaches. For runs that check interventions against the traffic's
    ground truth (tests, benchmarks); ``dwell`` is the payment dwell, e.g. ``"5s"``."""
    return f"""experiments = []

[contact]
quiet_hours = []

[[contact.caps]]
channel = "chat"
max = 1000000
window = "1h"

[[contact.caps]]
channel = "email"
max = 1000000
window = "1h"

[[contact.caps]]
channel = "human_queue"
max = 1000000
window = "1h"

[triggers.payment_assist]
dwell = "{dwell}"
cooldown = "0s"
"""


# Log lines that say the worker is ready: Faust is up, and the sink has its partitions.
READY_LINES = ("[^Worker]: Ready", "ClickHouse sink assigned")


@dataclass
class WorkerProcess:
    """A ``forewarn worker`` child process with ``env`` (``FOREWARN_*`` settings) and its log file."""

    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    metrics_port: int = field(default_factory=free_port)
    web_port: int = field(default_factory=free_port)
    module: str = "streams.tools.cli"  # what ``python -m`` runs with ``worker`` (tests may run a variant)
    args: tuple[str, ...] = ()  # more arguments of ``worker`` (``--processes 2``)
    _log_offset: int = 0

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        """Start the worker and wait until it is ready; raises with the log's tail if it is not."""
        env = {
            **os.environ,
            **self.env,
            "FOREWARN_METRICS_PORT": str(self.metrics_port),
            "FOREWARN_WEB_PORT": str(self.web_port),
        }
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module, "worker", "--loglevel", "info", *self.args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        for line in READY_LINES:
            self.wait_for_log(line, timeout)
        return self

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        """What the worker logged since this start."""
        return self.log_path.read_bytes()[self._log_offset :].decode("utf-8", "replace")

    def wait_for_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if not self.running():
                code = None if self.process is None else self.process.returncode
                raise RuntimeError(f"worker exited ({code}); see {self.log_path}:\n{self.log_text()[-4000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker log never showed {text!r}:\n{self.log_text()[-4000:]}")
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int | None:
        """Stop by PID with ``sig`` (SIGTERM: flush and commit first), SIGKILL after ``timeout``.
        Returns the exit code; idempotent."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def metrics(self) -> str:
        """The worker's Prometheus exposition text."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
