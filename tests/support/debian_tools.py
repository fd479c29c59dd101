"""Commands from Debian packages the tests run: Prometheus's ``promtool`` and ``prometheus``, and
``kcat`` (a Kafka client on librdkafka).

Missing, they are installed with apt-get when the tests run as root (as in CI); otherwise the test fails
and says how to install them: a test of a real tool that skips itself would prove nothing.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass

import pytest


@dataclass(frozen=True, slots=True)
class PrometheusTools:
    promtool: str
    prometheus: str


def _apt_get(command: list[str]) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)


def ensure_commands(package: str, commands: tuple[str, ...]) -> dict[str, str]:
    """The paths of ``commands``, installing the Debian ``package`` that has them if need be."""
    how_to_install = f"install them: `apt-get install {package}` (Debian/Ubuntu, as root)"
    found = {command: shutil.which(command) for command in commands}
    if all(found.values()):
        return {command: path for command, path in found.items() if path}
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(f"{', '.join(commands)} not on PATH: {how_to_install}")
    install = ["apt-get", "install", "-y", "--no-install-recommends", package]
    result = _apt_get(install)
    if result.returncode != 0:  # a stale package index: refresh it once
        _apt_get(["apt-get", "update"])
        result = _apt_get(install)
    found = {command: shutil.which(command) for command in commands}
    if not all(found.values()):
        pytest.fail(
            f"could not install the {package} package ({' '.join(install)}):\n{result.stderr[-2000:]}\n"
            f"{how_to_install}"
        )
    return {command: path for command, path in found.items() if path}


@functools.cache
def ensure_prometheus() -> PrometheusTools:
    """The paths of promtool and prometheus (Debian's ``prometheus`` package)."""
    paths = ensure_commands("prometheus", ("promtool", "prometheus"))
    return PrometheusTools(paths["promtool"], paths["prometheus"])


@functools.cache
def ensure_kcat() -> str:
    """The path of kcat (Debian's ``kcat`` package)."""
    return ensure_commands("kcat", ("kcat",))["kcat"]
