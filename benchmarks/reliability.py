"""The reliability figures for docs/benchmarks.md: run the reliability tests and tabulate what they counted.

    python benchmarks/reliability.py [--write-docs] [pytest arguments ...]

Runs ``python -m pytest`` on the reliability tests (``RELIABILITY_TESTS``) with
``FOREWARN_RELIABILITY_REPORT`` set to a fresh directory; every test ends by recording one
:class:`tests.support.reliability.FaultRun` there (events pushed, faults injected, events lost, duplicates
downstream) after asserting on it. Prints the table, and with ``--write-docs`` puts it into
docs/benchmarks.md between the reliability markers. Fails (exit 1) when a test failed or a test
recorded nothing, so the document never shows figures of a run that did not pass.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from benchmarks.readme import publish  # noqa: E402
from tests.support.reliability import REPORT_DIR_ENV, TABLE_HEADER, load_runs  # noqa: E402

RELIABILITY_TESTS = ("tests/reliability",)  # the fault, soak and fuzzing tests
MARKERS = ("<!-- reliability:start -->", "<!-- reliability:end -->")


def run_tests(report_dir: Path, extra: list[str]) -> int:
    env = {**os.environ, REPORT_DIR_ENV: str(report_dir)}
    command = [sys.executable, "-m", "pytest", "-q", *RELIABILITY_TESTS, *extra]
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write-docs", action="store_true", help="put the table into docs/benchmarks.md")
    args, extra = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="forewarn-reliability-") as directory:
        started = time.monotonic()
        code = run_tests(Path(directory), extra)
        seconds = time.monotonic() - started
        runs = load_runs(Path(directory))
    if code != 0 or not runs:
        print(f"the reliability tests failed (pytest exit {code}, {len(runs)} runs recorded): no table")
        return 1
    report = "\n".join(
        [
            f"Measured {datetime.now(UTC):%Y-%m-%d} on {os.cpu_count()} cores, Python"
            f" {platform.python_version()}: `python benchmarks/reliability.py` ({seconds:.0f} s;"
            " every figure below was asserted on by the test that counted it).",
            "",
            TABLE_HEADER,
            *(run.row() for run in runs),
        ]
    )
    publish(MARKERS, report, args.write_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
