"""Putting a benchmark's figures into README.md, between its markers."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def write_between(markers: tuple[str, str], text: str, readme: Path = README) -> None:
    """Replace what README.md holds between ``markers`` (start, end) with ``text``; raises ValueError
    when the README lacks the markers, rather than printing figures that went nowhere."""
    start, end = markers
    content = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(content):
        raise ValueError(f"{readme} has no {start} ... {end} markers")
    readme.write_text(pattern.sub(lambda _: f"{start}\n{text}\n{end}", content), encoding="utf-8")


def publish(markers: tuple[str, str], text: str, write: bool, readme: Path = README) -> None:
    """Print a benchmark's figures, and with ``write`` (its ``--write-readme``) put them into README.md
    between ``markers``."""
    print("\n" + text)
    if write:
        write_between(markers, text, readme)
        print("\nREADME.md updated")
