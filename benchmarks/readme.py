"""Putting a benchmark's figures into a document (docs/benchmarks.md, docs/performance.md), between its
markers."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"  # the map: it links the documents below and holds no figures
BENCHMARKS = ROOT / "docs" / "benchmarks.md"  # every benchmark's figures but the pipeline's
PERFORMANCE = ROOT / "docs" / "performance.md"  # the pipeline benchmark's figures


def write_between(markers: tuple[str, str], text: str, readme: Path = BENCHMARKS) -> None:
    """Replace what ``readme`` holds between ``markers`` (start, end) with ``text``; raises ValueError
    when it lacks the markers, rather than printing figures that went nowhere."""
    start, end = markers
    content = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(content):
        raise ValueError(f"{readme} has no {start} ... {end} markers")
    readme.write_text(pattern.sub(lambda _: f"{start}\n{text}\n{end}", content), encoding="utf-8")


def publish(markers: tuple[str, str], text: str, write: bool, readme: Path = BENCHMARKS) -> None:
    """Print a benchmark's figures, and with ``write`` (its ``--write-docs``) put
    them into ``readme`` between ``markers``."""
    print("\n" + text)
    if write:
        write_between(markers, text, readme)
        print(f"\n{readme.relative_to(ROOT) if readme.is_relative_to(ROOT) else readme} updated")
