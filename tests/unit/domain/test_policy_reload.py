"""Policy reload without a restart (``streams.domain.policy_reload``): a changed file that passes its
checks is put in force as a new Policy, a broken or unreadable one is refused, logged and counted, and the
policy in force stays."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from streams.contracts import metrics
from streams.domain.policy import Policy, PolicyError
from streams.domain.policy_reload import PolicyReloader


def reloads(result: str) -> float:
    return metrics.POLICY_RELOADS.labels(result)._value.get()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "ops.toml"
    path.write_text('[triggers.delay_notice]\nmode = "shadow"\n')
    return path


def test_a_changed_file_is_put_in_force_as_a_new_policy(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    swapped: list[Policy] = []
    reloader = PolicyReloader.start(str(path), swapped.append)
    first = reloader.policy
    assert first.for_signal("shipment_delay").mode == "shadow"  # the cached lookup is filled
    applied = reloads("applied")
    assert reloader.reload() == "unchanged" and swapped == []
    path.write_text('[triggers.delay_notice]\nmode = "percent"\npercent = 25\n')
    with caplog.at_level(logging.WARNING, logger="streams.domain.policy_reload"):
        assert reloader.reload() == "applied"
    [new] = swapped
    assert reloader.policy is new and new is not first
    # A new object, so its by-signal lookups are its own; the old one is left as it was.
    assert new.for_signal("shipment_delay").percent == 25.0
    assert first.for_signal("shipment_delay").mode == "shadow"
    assert reloads("applied") == applied + 1
    assert f"policy reloaded from {path}: delay_notice changed (mode percent 25%)" in caplog.text
    # A comment changes the content, not the policy: nothing to apply.
    path.write_text('# ramping up\n[triggers.delay_notice]\nmode = "percent"\npercent = 25\n')
    assert reloader.reload() == "unchanged" and len(swapped) == 1


def test_a_broken_policy_is_refused_once_and_the_old_one_stays(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    swapped: list[Policy] = []
    reloader = PolicyReloader.start(str(path), swapped.append)
    in_force = reloader.policy
    refused = reloads("refused")
    path.write_text('[triggers.delay_notice]\nmode = "percent"\npercent = 250\n')
    with caplog.at_level(logging.ERROR, logger="streams.domain.policy_reload"):
        assert reloader.reload() == "refused"
    assert reloader.policy is in_force and swapped == []
    assert reloads("refused") == refused + 1
    assert (
        f"policy reload refused, the policy in force stays: {path}: trigger 'delay_notice': field 'percent'"
        " must be between 0 and 100, got 250" in caplog.text
    )
    # Polled again, the same broken file is not refused (nor logged) again; SIGHUP (force) reports it.
    assert reloader.reload() == "unchanged" and reloads("refused") == refused + 1
    assert reloader.reload(force=True) == "refused" and reloads("refused") == refused + 2
    # Not TOML, not UTF-8, gone: refused too.
    path.write_text("[triggers.delay_notice\n")
    assert reloader.reload() == "refused" and "not valid TOML" in caplog.text
    path.write_bytes(b"\xff\xfe")
    assert reloader.reload() == "refused"
    path.unlink()
    assert reloader.reload() == "refused" and "cannot read the policy file" in caplog.text
    assert reloader.reload() == "unchanged"  # still gone: one refusal
    assert reloader.policy is in_force and swapped == []
    # Fixed: in force.
    path.write_text('[triggers.delay_notice]\nmode = "live"\n')
    assert reloader.reload() == "applied" and swapped[-1].triggers["delay_notice"].mode == "live"


def test_without_a_policy_file_there_is_nothing_to_reload() -> None:
    reloader = PolicyReloader.start("", lambda policy: None)
    assert reloader.policy.triggers["delay_notice"].mode == "live"
    assert reloader.reload() == "unchanged" and reloader.reload(force=True) == "unchanged"


def test_a_policy_failing_at_start_stops_the_start(tmp_path: Path) -> None:
    path = tmp_path / "ops.toml"
    path.write_text('[triggers.delay_notice]\nmode = "maybe"\n')
    with pytest.raises(PolicyError, match="field 'mode' must be one of live, shadow, percent"):
        PolicyReloader.start(str(path), lambda policy: None)
