"""What the integration tests share: a worker run as a real ``forewarn worker`` process, and plain
aiokafka clients to feed it and read what it emits. Every process started here is stopped by PID."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.broker import free_port

# Fast group joins on the embedded broker (see README: a worker is ready in about 4 s).
FAST_GROUP = {
    "FOREWARN_BROKER_REBALANCE_TIMEOUT": "3",
    "FOREWARN_BROKER_SESSION_TIMEOUT": "6",
    "FOREWARN_BROKER_HEARTBEAT_INTERVAL": "1",
}


@dataclass
class Worker:
    """A ``forewarn worker`` subprocess with its own ports, data directory and log."""

    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    metrics_port: int = field(default_factory=free_port)

    def start(self, timeout: float = 60.0) -> Worker:
        env = {**os.environ, **self.env, "FOREWARN_METRICS_PORT": str(self.metrics_port)}
        env["FOREWARN_WEB_PORT"] = str(free_port())
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker", "--loglevel", "info"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        # Ready when the Faust worker is up and the sink has its partitions.
        self.wait_for_log("[^Worker]: Ready", timeout)
        self.wait_for_log("ClickHouse sink assigned", timeout)
        return self

    def log_text(self) -> str:
        return self.log_path.read_bytes()[self._log_offset :].decode("utf-8", "replace")

    def wait_for_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited ({self.process.returncode}):\n{self.log_text()[-4000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker log never showed {text!r}:\n{self.log_text()[-4000:]}")
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Stop by PID; SIGTERM lets it flush and commit. Idempotent."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return response.read().decode()


def worker_env(
    bootstrap: str, workdir: Path, clickhouse_dsn: str | None = None, **extra: str
) -> dict[str, str]:
    return {
        "FOREWARN_BROKER_URL": f"kafka://{bootstrap}",
        "FOREWARN_CLICKHOUSE_DSN": clickhouse_dsn or f"chdb://{workdir / 'clickhouse'}",
        "FOREWARN_DATA_DIR": str(workdir / "worker"),
        "FOREWARN_PARTITIONS": "4",
        "FOREWARN_SINK_FLUSH_SECONDS": "0.5",
        "FOREWARN_SWEEP_INTERVAL_SECONDS": "0.5",
        **FAST_GROUP,
        **extra,
    }


Message = tuple[str, bytes | None, bytes | None]  # topic, key, value


def event_bytes(**fields: Any) -> bytes:
    return orjson.dumps(fields)


async def produce(bootstrap: str, messages: Iterable[Message]) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=key) for topic, key, value in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return len(futures)


async def consume_all(
    bootstrap: str, topic: str, *, until: int | None = None, timeout: float = 30.0, settle: float = 2.0
) -> list[Any]:
    """Every message on ``topic`` from the start: until ``until`` messages, then ``settle`` seconds
    more to catch any extra (duplicates), or until ``timeout``."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for batch in batches.values():
                messages.extend(batch)
            if until is not None and len(messages) >= until:
                deadline = min(deadline, time.monotonic() + settle)
    finally:
        await consumer.stop()
    return messages
