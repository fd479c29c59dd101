"""The figures every reliability test ends with: what was pushed, which faults were injected, what was
lost and what arrived twice downstream.

A test builds one :class:`FaultRun` from what it counted and calls :func:`record`, which prints it and,
when ``FOREWARN_RELIABILITY_REPORT`` names a directory, writes it there as JSON.
``benchmarks/reliability.py`` runs the reliability tests with that set and puts the table into
docs/benchmarks.md, so the figures there are the ones the tests asserted on.

>>> run = FaultRun("example", "SIGKILL x1", events_pushed=10, faults_injected=1, events_lost=0,
...                duplicates_downstream=0)
>>> run.row()
'| example | SIGKILL x1 | 10 | 1 | 0 | 0 |  |'
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

REPORT_DIR_ENV = "FOREWARN_RELIABILITY_REPORT"
TABLE_HEADER = (
    "| scenario | faults | events pushed | faults injected | events lost | duplicates downstream | notes |\n"
    "| --- | --- | ---: | ---: | ---: | ---: | --- |"
)


@dataclass
class FaultRun:
    """One reliability run. ``duplicates_downstream`` counts what a consumer downstream saw more than
    once beyond the contract (an intervention id delivered twice, a row stored twice)."""

    scenario: str  # what was run, e.g. "worker SIGKILLed mid-stream, restarted"
    faults: str  # what was injected, in words, e.g. "SIGKILL x2"
    events_pushed: int
    faults_injected: int
    events_lost: int
    duplicates_downstream: int
    notes: str = ""  # anything else measured, e.g. "sink held 5,000 rows at most while ClickHouse was down"

    def row(self) -> str:
        return (
            f"| {self.scenario} | {self.faults} | {self.events_pushed} | {self.faults_injected}"
            f" | {self.events_lost} | {self.duplicates_downstream} | {self.notes} |"
        )


def record(run: FaultRun) -> FaultRun:
    """Print ``run`` and, when the report directory is set, write it there (one file per scenario)."""
    print(f"reliability: {run}")
    directory = os.environ.get(REPORT_DIR_ENV)
    if directory:
        name = re.sub(r"[^a-z0-9]+", "-", run.scenario.lower()).strip("-")
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / f"{name}.json").write_bytes(orjson.dumps(asdict(run), option=orjson.OPT_INDENT_2))
    return run


def load_runs(directory: Path) -> list[FaultRun]:
    """Every run recorded in ``directory``, in scenario order."""
    runs = [FaultRun(**orjson.loads(path.read_bytes())) for path in sorted(directory.glob("*.json"))]
    return sorted(runs, key=lambda run: run.scenario)
