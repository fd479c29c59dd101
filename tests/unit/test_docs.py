"""The README documents what the code does: its tables must not drift from the code."""

from __future__ import annotations

import re

from streams.contracts.events import DEAD_LETTER_REASONS, FIELDS_BY_SOURCE
from streams.contracts.settings import settings_table
from streams.domain.contact import SUPPRESSION_REASONS
from tests.support import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_settings_table_matches_the_code() -> None:
    documented = re.search(r"<!-- settings-table:start -->\n(.*?)\n<!-- settings-table:end -->", README, re.S)
    assert documented is not None
    assert documented.group(1) == settings_table(), "run `forewarn config` and paste it into README.md"


def test_every_event_type_and_dead_letter_reason_is_documented() -> None:
    for fields in FIELDS_BY_SOURCE.values():
        for event_type in fields:
            assert f"| `{event_type}` |" in README, event_type
    for reason in [*DEAD_LETTER_REASONS, *SUPPRESSION_REASONS]:
        assert f"`{reason}`" in README, reason
