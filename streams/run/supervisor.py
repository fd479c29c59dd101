"""``forewarn worker --processes N``: N worker processes and one sink process under one supervisor.

A worker is one Python process, so one core at most (the GIL). On a larger machine the supervisor
starts ``N`` workers of one app (one consumer group: the partitions are shared among them, as among
workers on several machines) and one ``forewarn sink`` (the workers run without their own sink,
``FOREWARN_SINK_IN_WORKER=false``). Worker ``i`` (0 to N-1) gets the web port ``FOREWARN_WEB_PORT + i``,
the metrics port ``FOREWARN_METRICS_PORT + i`` (0 stays 0) and the data directory
``FOREWARN_DATA_DIR/process-<i>``; the sink serves ``FOREWARN_SINK_METRICS_PORT``.

* SIGTERM or SIGINT to the supervisor is passed on to every child (each stops in order: agents, then
  commits; the sink stores and commits what it holds), and the supervisor waits for them (SIGKILL after
  ``stop_seconds``); it exits 0 if they all did.
* SIGHUP to the supervisor is passed on to the workers, which read their policy file again
  (docs/operations.md "Policy reload"); the sink, which reads no policy, is not sent it.
* A child that exits by itself (a crash, or killed) stops the others and the supervisor, which exits 1:
  restarting the whole set is left to what runs the supervisor (systemd, Docker's restart policy,
  Kubernetes), as for a single worker. No child is restarted in place, so a child failing at every
  start does not loop unseen.
* Children do not outlive a supervisor killed outright (SIGKILL, OOM killer): on Linux each asks the
  kernel for SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``), so it stops in order too.

Each child runs in its own session, so that Ctrl-C in a terminal reaches the supervisor only, which
passes it on once. The children's output goes where the supervisor's goes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from streams.contracts.settings import PREFIX, Settings

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class ChildSpec:
    """A child process: its name (in the log), its command line, the environment it adds, and when it
    is stopped: the children of stage 0 first, then, once they exited, those of stage 1."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    stop_stage: int = 0
    reloads: bool = False  # SIGHUP to the supervisor is passed on to it (a worker reloads its policy)


def forewarn_command(*args: str) -> list[str]:
    """The command line of ``forewarn <args>`` run by this Python."""
    return [sys.executable, "-m", "streams.tools.cli", *args]


def worker_children(settings: Settings, processes: int, loglevel: str = "info") -> list[ChildSpec]:
    """The children of ``forewarn worker --processes <processes>``: the workers, each with its ports and
    data directory (as the module says) and no sink of its own, then the sink.

    >>> settings = Settings.from_env({"FOREWARN_DATA_DIR": "/data", "FOREWARN_WEB_PORT": "7000"})
    >>> [(child.name, child.env.get("FOREWARN_WEB_PORT"), child.env.get("FOREWARN_DATA_DIR"))
    ...  for child in worker_children(settings, 2)]
    [('worker-0', '7000', '/data/process-0'), ('worker-1', '7001', '/data/process-1'), ('sink', None, None)]
    """
    workers = [
        ChildSpec(
            f"worker-{index}",
            forewarn_command("worker", "--loglevel", loglevel),
            {
                f"{PREFIX}WEB_PORT": str(settings.web_port + index),
                f"{PREFIX}METRICS_PORT": str(settings.metrics_port + index if settings.metrics_port else 0),
                f"{PREFIX}DATA_DIR": str(Path(settings.data_dir) / f"process-{index}"),
                f"{PREFIX}SINK_IN_WORKER": "false",
            },
            reloads=True,
        )
        for index in range(processes)
    ]
    # Stopped after the workers: it stores what they sent last.
    return [*workers, ChildSpec("sink", forewarn_command("sink"), stop_stage=1)]


def layout_problems(settings: Settings, processes: int, partitions: int) -> tuple[list[str], list[str]]:
    """What keeps ``processes`` workers from running (errors), and what makes them a poor fit
    (warnings), with ``partitions`` partitions of the events topic.

    >>> layout_problems(Settings.from_env({}), 4, 6)[1]
    ['6 partitions for 4 worker processes: fewer than two each, so a failover leaves some with none']
    """
    errors, warnings = [], []
    if processes < 1:
        errors.append("--processes must be at least 1")
    elif partitions < processes:
        errors.append(
            f"{partitions} partitions for {processes} worker processes: some would have nothing to do"
            f" (raise {PREFIX}PARTITIONS before the topics are made, or start fewer)"
        )
    elif partitions < 2 * processes:
        warnings.append(
            f"{partitions} partitions for {processes} worker processes: fewer than two each, so a failover"
            " leaves some with none"
        )
    last_web = settings.web_port + processes - 1
    if last_web > 65535:
        errors.append(f"{PREFIX}WEB_PORT + {processes - 1} is past 65535")
    if settings.metrics_port:
        worker_ports = range(settings.metrics_port, settings.metrics_port + processes)
        if worker_ports[-1] > 65535:
            errors.append(f"{PREFIX}METRICS_PORT + {processes - 1} is past 65535")
        if settings.sink_metrics_port in worker_ports:
            errors.append(
                f"{PREFIX}SINK_METRICS_PORT {settings.sink_metrics_port} is one of the workers' metrics"
                f" ports ({worker_ports[0]} to {worker_ports[-1]})"
            )
    return errors, warnings


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` by which the child gets SIGTERM when the supervisor dies (Linux), or None."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the supervisor died before the prctl: nobody would tell us
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


class Supervisor:
    """Runs ``children`` until a signal or the first one to exit, as the module says."""

    def __init__(
        self,
        children: list[ChildSpec],
        *,
        environ: Mapping[str, str] | None = None,
        stop_seconds: float = 60.0,
    ) -> None:
        self.children = children
        self.environ = dict(os.environ if environ is None else environ)
        self.stop_seconds = stop_seconds
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._signal: int | None = None

    def run(self) -> int:
        """Start the children, wait, stop them all; 0 when stopped by a signal and every child exited 0."""
        previous = {
            signum: signal.signal(signum, self._on_signal) for signum in (signal.SIGTERM, signal.SIGINT)
        }
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_sighup)
        try:
            preexec = _die_with_parent()
            for child in self.children:
                if self._signal is not None:
                    break
                self.processes[child.name] = subprocess.Popen(
                    child.argv,
                    env={**self.environ, **child.env},
                    preexec_fn=preexec,  # only prctl and getppid, between fork and exec
                    start_new_session=True,
                )
                log.info("supervisor: started %s (pid %d)", child.name, self.processes[child.name].pid)
            failed = self._wait()
            codes = self._stop_all(signal.SIGTERM if self._signal is None else self._signal)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if failed is not None:
            return 1
        return 0 if all(code == 0 for code in codes.values()) else 1

    def _on_signal(self, signum: int, frame: object) -> None:
        self._signal = signum

    def _on_sighup(self, signum: int, frame: object) -> None:
        """SIGHUP: passed on to the running children that take it (the workers)."""
        for child in self.children:
            process = self.processes.get(child.name)
            if child.reloads and process is not None and process.poll() is None:
                log.info("supervisor: SIGHUP passed on to %s (pid %d)", child.name, process.pid)
                process.send_signal(signal.SIGHUP)

    def _wait(self) -> str | None:
        """Until a signal (None) or a child exits (its name)."""
        while self._signal is None:
            for name, process in self.processes.items():
                code = process.poll()
                if code is not None:
                    log.error(
                        "supervisor: %s (pid %d) exited with %s; stopping the others", name, process.pid, code
                    )
                    return name
            time.sleep(0.2)
        log.info("supervisor: signal %d: stopping %d children", self._signal, len(self.processes))
        return None

    def _stop_all(self, signum: int) -> dict[str, int]:
        """Stop the children stage by stage (:class:`ChildSpec`): ``signum`` to each one running, then
        wait for them, SIGKILL for those still there after ``stop_seconds``; their exit codes."""
        codes: dict[str, int] = {}
        for stage in sorted({child.stop_stage for child in self.children}):
            names = [c.name for c in self.children if c.stop_stage == stage and c.name in self.processes]
            for name in names:
                if self.processes[name].poll() is None:
                    self.processes[name].send_signal(signum)
            deadline = time.monotonic() + self.stop_seconds
            for name in names:
                process = self.processes[name]
                try:
                    codes[name] = process.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.error("supervisor: %s (pid %d) did not stop in time; killing it", name, process.pid)
                    process.kill()
                    codes[name] = process.wait()
                log.info("supervisor: %s exited with %s", name, codes[name])
        return codes
