"""Support load: contacts per channel, slots closed in event time, late and repeated contacts,
campaigns (and their dead-letter reasons), the calendar, staffing."""

from __future__ import annotations

import math

import orjson
import pytest

from streams.contracts.events import DEAD_LETTER_REASONS, Event, InvalidEvent
from streams.domain.policy import PolicyError, load_policy
from streams.processes.support_load import (
    ALLOWED_LATENESS,
    HORIZON_SLOTS,
    Campaign,
    ModelsOf,
    SupportLoad,
    add_campaign,
    add_contact,
    agents_needed,
    calendar,
    contact_channel,
    contact_record,
    parse_campaign,
    read_load_record,
    refresh,
)

MONDAY = 1_764_547_200.0
SLOT = 900.0
STAFFING = load_policy().staffing
SPAN = b'"starts_at": 1764547200000, "ends_at": 1764550800000'


def event(source: str, event_type: str, **attrs: object) -> Event:
    return Event("e1", event_type, source, MONDAY, "u1", dict(attrs))


@pytest.mark.parametrize(
    ("made", "channel"),
    [
        (event("clickstream", "support_contact", channel="phone"), "phone"),
        (event("clickstream", "support_contact", channel="fax"), "other"),
        (event("clickstream", "support_contact"), "other"),
        (event("support", "question_asked", product_id="p1", text="?"), "other"),
        (
            event("conversations", "message", session_id="s1", role="customer", channel="app", text="hi"),
            "chat",
        ),
        (
            event("conversations", "message", session_id="s1", role="customer", channel="email", text="x"),
            "email",
        ),
        (event("conversations", "message", session_id="s1", role="agent", channel="chat", text="hi"), None),
        (event("clickstream", "page_view", page="/"), None),
    ],
)
def test_each_source_maps_to_a_channel(made: Event, channel: str | None) -> None:
    assert contact_channel(made) == channel


def test_a_contact_record_reads_back() -> None:
    made = event("conversations", "message", session_id="s1", role="customer", channel="chat", text="hi")
    record = read_load_record(orjson.dumps(contact_record(made, "chat")))
    assert record == {"channel": "chat", "event_time": MONDAY, "session_id": "s1", "source": ""}
    with pytest.raises(InvalidEvent) as caught:
        read_load_record(b'{"kind": "contact", "channel": "fax", "event_time": 1}')
    assert caught.value.reason == "invalid_internal"


def test_slots_close_after_the_lateness_and_learn_zeros_for_quiet_channels() -> None:
    state, models = SupportLoad(), ModelsOf()
    for t, channel in [(10, "chat"), (20, "chat"), (30, "phone"), (SLOT + 5, "chat")]:
        assert add_contact(state, channel, MONDAY + t) == "counted"
    # Slot 0 ends at 900 s; it closes only once event time is ALLOWED_LATENESS past that.
    add_contact(state, "chat", MONDAY + SLOT + ALLOWED_LATENESS - 1)
    assert refresh(state, models, 0.0, [], STAFFING) is None
    add_contact(state, "chat", MONDAY + SLOT + ALLOWED_LATENESS)
    done = refresh(state, models, 0.0, [], STAFFING)
    assert [(a.slot_start - MONDAY, a.channel, a.contacts) for a in done.actuals] == [
        (0.0, "chat", 2),
        (0.0, "phone", 1),
    ]
    assert [f.channel for f in done.forecasts] == ["chat", "phone"]
    forecast = done.forecasts[0]
    assert forecast.made_at == MONDAY + SLOT and len(forecast.slots) == HORIZON_SLOTS
    assert forecast.slots[0].slot_start == MONDAY + 2 * SLOT  # after the slot in progress
    assert forecast.slots[-1].slot_start == MONDAY + SLOT + 24 * 3600
    # The next slot: phone had none and learns a zero.
    add_contact(state, "chat", MONDAY + 2 * SLOT + ALLOWED_LATENESS)
    done = refresh(state, models, 0.0, [], STAFFING)
    assert [(a.channel, a.contacts) for a in done.actuals] == [("chat", 3), ("phone", 0)]
    assert models.of("phone").learned == 2


def test_a_late_contact_is_not_counted() -> None:
    state = SupportLoad()
    add_contact(state, "chat", MONDAY + 10)
    add_contact(state, "chat", MONDAY + SLOT + ALLOWED_LATENESS)
    refresh(state, ModelsOf(), 0.0, [], STAFFING)
    assert add_contact(state, "chat", MONDAY + 100) == "late"
    assert str(int(MONDAY)) not in state.counts


def test_each_input_partition_keeps_its_clock_and_an_idle_one_holds_nothing_back() -> None:
    """A partition read behind another (a backlog, a replay) finds its slots still open."""
    state, models = SupportLoad(), ModelsOf()
    add_contact(state, "chat", MONDAY + 10, source="clickstream:0", wall=100.0)
    add_contact(state, "chat", MONDAY + 3 * 3600, source="clickstream:1", wall=100.0)  # ahead by hours
    assert refresh(state, models, 100.0, [], STAFFING) is None  # clickstream:0 is at MONDAY + 10
    assert add_contact(state, "phone", MONDAY + 1250, source="clickstream:0", wall=101.0) == "counted"
    done = refresh(state, models, 101.0, [], STAFFING)
    assert [(a.slot_start - MONDAY, a.channel, a.contacts) for a in done.actuals] == [
        (0.0, "chat", 1),
        (0.0, "phone", 0),
    ]
    # clickstream:0 falls silent: 30 s later clickstream:1's clock alone closes the slots up to it.
    done = refresh(state, models, 101.0 + 31.0, [], STAFFING)
    assert state.cutoff == MONDAY + 3 * 3600 - SLOT and done.actuals[-1].slot_start == state.cutoff - SLOT


def test_a_chat_session_is_one_contact() -> None:
    state = SupportLoad()
    assert add_contact(state, "chat", MONDAY + 10, "s1") == "counted"
    assert add_contact(state, "chat", MONDAY + 60, "s1") == "repeat"
    assert add_contact(state, "chat", MONDAY + 70, "s2") == "counted"
    assert state.counts[str(int(MONDAY))] == {"chat": 2}
    # Once slots close 30 minutes past a session's last message, it is forgotten (the state stays small).
    add_contact(state, "chat", MONDAY + 3600)
    refresh(state, ModelsOf(), 0.0, [], STAFFING)
    assert state.sessions == {}
    assert add_contact(state, "chat", MONDAY + 3600, "s1") == "counted"  # a new conversation


def test_an_outage_of_the_input_is_skipped_not_learned_as_zeros() -> None:
    state, models = SupportLoad(), ModelsOf()
    add_contact(state, "chat", MONDAY + 10)
    later = MONDAY + 2 * 86400
    add_contact(state, "chat", later)
    done = refresh(state, models, 0.0, [], STAFFING)
    assert done.skipped > 100
    assert models.of("chat").learned == 191 - done.skipped  # the slots closed: up to later - 15 min


def test_campaigns_parse_and_bad_ones_carry_a_reason() -> None:
    campaign = parse_campaign(
        b'{"campaign_id": "c1", "name": "Sale", "starts_at": "2026-12-01T08:00:00Z",'
        b' "ends_at": "2026-12-01T20:00:00Z", "channels": ["phone", "chat"], "expected_uplift": 0.5}'
    )
    assert campaign.channels == ["chat", "phone"] and campaign.expected_uplift == 0.5
    assert read_load_record(orjson.dumps(campaign.to_wire())) == campaign


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"[1]", "not_an_object"),
        (b"{", "malformed_json"),
        (b'{"name": "x", ' + SPAN + b"}", "missing_field"),
        (
            b'{"campaign_id": "c", "name": "x", "starts_at": 1764550800000, "ends_at": 1764547200000}',
            "invalid_value",
        ),
        (
            b'{"campaign_id": "c", "name": "x", ' + SPAN + b', "channels": ["fax"]}',
            "invalid_value",
        ),
        (
            b'{"campaign_id": "c", "name": "x", ' + SPAN + b', "channels": "chat"}',
            "wrong_type",
        ),
        (
            b'{"campaign_id": "c", "name": "x", ' + SPAN + b', "expected_uplift": "lots"}',
            "wrong_type",
        ),
        (
            b'{"campaign_id": "c", "name": "x", ' + SPAN + b', "expected_uplift": 50}',
            "invalid_value",
        ),
    ],
)
def test_a_bad_campaign_is_refused_with_a_reason(value: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_campaign(value)
    assert caught.value.reason == reason and reason in DEAD_LETTER_REASONS


def test_campaigns_are_idempotent_by_id_and_shape_the_calendar() -> None:
    state = SupportLoad()
    sale = Campaign("c1", "Sale", MONDAY + 3600, MONDAY + 7200, ["chat"])
    assert add_campaign(state, sale) and not add_campaign(state, sale)
    assert add_campaign(state, Campaign("c1", "Sale", MONDAY + 3600, MONDAY + 7200, ["chat"], [], 0.4))
    assert len(state.campaigns) == 1
    campaigns = list(state.campaigns.values())
    assert calendar(MONDAY + 3600, "chat", campaigns, []).stated_uplift == 0.4
    assert not calendar(MONDAY + 3600, "phone", campaigns, []).campaign
    assert not calendar(MONDAY + 7200, "chat", campaigns, []).campaign
    launch = calendar(MONDAY + 7 * 86400, "phone", [], [MONDAY])
    assert launch.launch == pytest.approx(math.exp(-1))
    assert calendar(MONDAY + 31 * 86400, "phone", [], [MONDAY]).launch == 0.0


def test_agents_needed_against_the_shift() -> None:
    assert agents_needed(25.0, 6.0) == 5 and agents_needed(24.0, 6.0) == 4 and agents_needed(3.0, 0.0) == 0
    chat = STAFFING.of("chat")
    assert chat.contacts_per_agent_hour == 6 and chat.on_shift(MONDAY + 10 * 3600) == 3
    state, models = SupportLoad(), ModelsOf()
    for k in range(40):  # 40 chats in slot 0: 160 an hour
        add_contact(state, "chat", MONDAY + 10 * 3600 + k)
    add_contact(state, "chat", MONDAY + 10 * 3600 + SLOT + ALLOWED_LATENESS)
    done = refresh(state, models, 0.0, [], STAFFING)
    first = done.forecasts[0].slots[0]
    assert first.agents_needed == math.ceil(first.forecast * 4 / 6 - 1e-9) > first.agents_on_shift == 3
    assert done.forecasts[0].capacity() == 18.0


def test_the_staffing_policy_is_checked() -> None:
    policy = load_policy(text="[staffing.phone]\ncontacts_per_agent_hour = 5\nagents_on_shift = 7\n")
    assert policy.staffing.of("phone").agents_on_shift == (7,) * 24
    assert policy.staffing.of("chat").contacts_per_agent_hour == 6  # the default's, merged
    for text, field in [
        ("[staffing.fax]\ncontacts_per_agent_hour = 1\nagents_on_shift = 1\n", "fax"),
        ("[staffing.chat]\nagents_on_shift = [1, 2]\n", "agents_on_shift"),
        ("[staffing.chat]\ncontacts_per_agent_hour = 0\n", "contacts_per_agent_hour"),
    ]:
        with pytest.raises(PolicyError, match=field):
            load_policy(text=text, name="ops.toml")
