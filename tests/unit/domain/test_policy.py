"""The policy file: merged over the packaged default, and every mistake named by file, trigger and field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streams.domain.policy import PolicyError, load_policy


def test_the_default_policy_holds_both_triggers_and_the_contact_rules() -> None:
    policy = load_policy()
    assert set(policy.triggers) == {
        "payment_assist",
        "delay_notice",
        "renewal_reminder",
        "feature_tip",
        "reengagement",
        "retention_offer",
        "proactive_help",
        "recommendation",
        "escalate_to_human",
    }
    escalate = policy.triggers["escalate_to_human"]
    assert (escalate.signal, escalate.params, escalate.channels) == (
        "negative_emotion",
        {"messages": 3.0},
        ("human_queue",),
    )
    assert policy.triggers["proactive_help"].params == {"threshold": 0.6, "min_examples": 500.0}
    assert policy.triggers["recommendation"].params["hesitation"] == 60.0
    assert policy.models.churn_horizon == 30 * 86400.0
    assert policy.triggers["renewal_reminder"].params == {"within": 7 * 86400.0}
    assert policy.triggers["feature_tip"].params == {
        "ratio": 0.5,
        "short": 7 * 86400.0,
        "baseline": 28 * 86400.0,
        "min_visits": 4.0,
    }
    dwell, delay = policy.triggers["payment_assist"], policy.triggers["delay_notice"]
    assert (dwell.params, dwell.cooldown, dwell.quiet_hours) == ({"dwell": 120.0}, 3600.0, "ignore")
    assert dwell.offer is not None and dwell.offer.eligible == "coupon_user_or_price_sensitive"
    assert (delay.params, delay.channels, delay.quiet_hours) == ({"slip": 7200.0}, ("chat", "email"), "defer")
    assert policy.contact.quiet_hours == (21 * 3600, 8 * 3600)
    assert {(c.channel, c.max, c.window) for c in policy.contact.caps} == {
        ("chat", 3, 86400.0),
        ("email", 2, 7 * 86400.0),
        ("human_queue", 3, 86400.0),
    }
    assert [e.arms for e in policy.experiments] == [(("treatment", 0.9), ("holdout", 0.1))]


def test_an_operator_file_changes_only_what_it_says(tmp_path: Path) -> None:
    path = tmp_path / "ops.toml"
    path.write_text(
        '[contact]\ntimezone = "Europe/Berlin"\n\n'
        '[triggers.delay_notice]\nslip = "30m"\nchannels = ["email"]\n\n'
        "[triggers.payment_assist]\nenabled = false\n"
    )
    policy = load_policy(str(path))
    assert "payment_assist" not in policy.triggers
    delay = policy.triggers["delay_notice"]
    assert (delay.params["slip"], delay.channels, delay.priority) == (1800.0, ("email",), 90)
    assert policy.contact.timezone == "Europe/Berlin" and policy.contact.quiet_hours == (75600, 28800)
    assert policy.for_signal("payment_dwell") is None
    # The default experiment keeps the triggers still enabled.
    assert [e.triggers for e in policy.experiments] == [
        (
            "delay_notice",
            "renewal_reminder",
            "feature_tip",
            "reengagement",
            "retention_offer",
            "proactive_help",
            "recommendation",
        )
    ]


def test_a_new_trigger_may_be_defined_on_a_signal_no_trigger_uses() -> None:
    policy = load_policy(
        text='[triggers.delay_notice]\nenabled = false\n\n[triggers.late_parcel]\nsignal = "shipment_delay"\n'
        'slip = "1h"\naction = "apologise"\nchannels = ["email"]\n'
    )
    trigger = policy.for_signal("shipment_delay")
    assert trigger is not None and (trigger.name, trigger.template, trigger.priority) == (
        "late_parcel",
        "late_parcel",
        50,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[triggers.delay_notice]\nslip = "two hours"\n',
            "ops.toml: trigger 'delay_notice': field 'slip' must be a duration",
        ),
        (
            "[triggers.delay_notice]\npriority = 1.5\n",
            "trigger 'delay_notice': field 'priority' must be an integer",
        ),
        ('[triggers.delay_notice]\nsignal = "moon_phase"\n', "field 'signal' must be one of"),
        ('[triggers.delay_notice]\ncolour = "red"\n', "trigger 'delay_notice': field 'colour' is not known"),
        ('[triggers.delay_notice]\nquiet_hours = "later"\n', "field 'quiet_hours' must be one of defer"),
        ('[triggers.delay_notice]\nchannels = ["pigeon"]\n', "names 'pigeon', which has no [[contact.caps]]"),
        ("[triggers.delay_notice]\nchannels = []\n", "field 'channels' must be a non-empty list"),
        ("[triggers.escalate_to_human]\nmessages = 0\n", "field 'messages' must be at least 1, got 0"),
        (
            '[triggers.x]\nsignal = "payment_dwell"\ndwell = "1m"\naction = "x"\nchannels = ["chat"]\n'
            "offer = { percent = 10 }\n[triggers.payment_assist]\nenabled = false\n",
            "trigger 'x' offer: field 'kind' is required",
        ),
        (
            "[triggers.payment_assist.offer]\npercent = 150\n",
            "trigger 'payment_assist' offer: field 'percent' must be between 0 and 100",
        ),
        (
            '[triggers.second_dwell]\nsignal = "payment_dwell"\ndwell = "1m"\naction = "x"\n'
            'channels = ["chat"]\n',
            "signal 'payment_dwell' is used by",
        ),
        (
            '[triggers.x]\nsignal = "payment_dwell"\naction = "x"\nchannels = ["chat"]\n',
            "field 'dwell' is required",
        ),
        ('[contact]\ntimezone = "Mars/Olympus"\n', "[contact]: field 'timezone' must be an IANA time zone"),
        ('[contact]\nquiet_hours = ["22:00"]\n', "[contact]: field 'quiet_hours' must be"),
        ('[contact]\nquiet_hours = ["25:00", "08:00"]\n', "[contact]: field 'quiet_hours' must be"),
        (
            '[[contact.caps]]\nchannel = "chat"\nmax = 0\nwindow = "1h"\n',
            "[[contact.caps]] #1: field 'max' must be at least 1",
        ),
        (
            '[[experiments]]\nname = "e"\ntriggers = ["delay_notice"]\narms = { a = 0.5, holdout = 0.4 }\n',
            "[[experiments]] #1: field 'arms' must give two or more arms shares that sum to 1",
        ),
        (
            '[[experiments]]\nname = "e"\ntriggers = ["nope"]\narms = { a = 0.5, holdout = 0.5 }\n',
            "field 'triggers' names 'nope', which is not a trigger",
        ),
        ("[triggers.delay_notice\n", "ops.toml: not valid TOML"),
    ],
)
def test_invalid_policies_name_file_place_and_field(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as error:
        load_policy(text=text, name="ops.toml")
    assert message in str(error.value) and str(error.value).startswith("ops.toml: ")


def test_a_trigger_in_two_experiments_is_refused() -> None:
    text = (
        '[[experiments]]\nname = "one"\ntriggers = ["delay_notice"]\narms = { a = 0.5, holdout = 0.5 }\n'
        '[[experiments]]\nname = "two"\ntriggers = ["delay_notice"]\narms = { b = 0.5, holdout = 0.5 }\n'
    )
    with pytest.raises(PolicyError, match="trigger 'delay_notice' is in experiments 'one' and 'two'"):
        load_policy(text=text, name="ops.toml")


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"nope\.toml: cannot read the policy file"):
        load_policy(str(tmp_path / "nope.toml"))


def test_an_invalid_policy_stops_the_worker_at_start(tmp_path: Path) -> None:
    from streams.contracts.settings import Settings
    from streams.worker.app import create_app

    path = tmp_path / "ops.toml"
    path.write_text('[triggers.delay_notice]\nslip = "-1h"\n')
    settings = Settings.from_env({"FOREWARN_POLICY_FILE": str(path), "FOREWARN_CLICKHOUSE_DSN": "chdb:///x"})
    with pytest.raises(PolicyError, match=re.escape(f"{path}: trigger 'delay_notice': field 'slip'")):
        create_app(settings)
