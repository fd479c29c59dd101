"""Prometheus's own tools for the tests: ``promtool`` and ``prometheus`` (the Debian package).

Missing, they are installed with apt-get when the tests run as root (as in CI); otherwise the test fails
and says how to install them: a monitoring test that skips itself would prove nothing.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass

import pytest

INSTALL = ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"]
HOW_TO_INSTALL = "install Prometheus's tools: `apt-get install prometheus` (Debian/Ubuntu, as root)"


@dataclass(frozen=True, slots=True)
class PrometheusTools:
    promtool: str
    prometheus: str


def _found() -> PrometheusTools | None:
    promtool, prometheus = shutil.which("promtool"), shutil.which("prometheus")
    return PrometheusTools(promtool, prometheus) if promtool and prometheus else None


def _apt_get(command: list[str]) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)


@functools.cache
def ensure_prometheus() -> PrometheusTools:
    """The paths of promtool and prometheus, installing the Debian package if need be."""
    tools = _found()
    if tools is not None:
        return tools
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(f"promtool and prometheus are not on PATH: {HOW_TO_INSTALL}")
    result = _apt_get(INSTALL)
    if result.returncode != 0:  # a stale package index: refresh it once
        _apt_get(["apt-get", "update"])
        result = _apt_get(INSTALL)
    tools = _found()
    if tools is None:
        pytest.fail(
            f"could not install the prometheus package ({' '.join(INSTALL)}):\n{result.stderr[-2000:]}\n"
            f"{HOW_TO_INSTALL}"
        )
    return tools
