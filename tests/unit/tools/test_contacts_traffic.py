"""The support-contact traffic: seasonal contacts per channel as clickstream events, campaigns published
ahead of their start, and what the demo plants."""

from __future__ import annotations

from collections import Counter

import orjson

from streams.contracts.events import parse_event
from streams.processes.support_load import parse_campaign
from streams.tools.demo import demo_contacts
from streams.tools.traffic.contacts import CAMPAIGNS, ContactShape, PlantedCampaign
from streams.tools.traffic.generator import TrafficGenerator
from streams.tools.traffic.profile import TrafficProfile

MONDAY = 1_767_571_200.0
DAY = 86400.0


def test_contacts_and_campaigns_come_in_event_time_as_valid_messages() -> None:
    sale = PlantedCampaign("c1", "Sale", MONDAY + DAY + 9 * 3600, MONDAY + DAY + 15 * 3600, ("chat",), 1.0)
    profile = TrafficProfile(sessions_per_second=1e-9, contacts=ContactShape(campaigns=(sale,)))
    generator = TrafficGenerator(profile, seed=3, start=MONDAY)
    sent = generator.due(MONDAY + 2 * DAY)
    campaigns = [m for m in sent if m.topic == CAMPAIGNS]
    assert len(campaigns) == 1 and campaigns[0].event_time == sale.starts_at - DAY
    assert parse_campaign(campaigns[0].value).campaign_id == "c1"
    events = [parse_event(m.value, "clickstream") for m in sent if m.topic == "clickstream"]
    contacts = [e for e in events if e.event_id.startswith("sc")]  # the sessions' own events aside
    assert contacts and {c.event_type for c in contacts} == {"support_contact"}
    channels = Counter(c.attrs["channel"] for c in contacts)
    assert channels["chat"] > channels["phone"] > channels["email"] > 0
    # The campaign's hours on chat carry about twice the contacts of the same hours the day before.
    during = sum(
        sale.starts_at <= c.event_time < sale.ends_at for c in contacts if c.attrs["channel"] == "chat"
    )
    before = sum(
        sale.starts_at - DAY <= c.event_time < sale.ends_at - DAY
        for c in contacts
        if c.attrs["channel"] == "chat"
    )
    assert during > 1.5 * before
    assert orjson.loads(campaigns[0].value).get("expected_uplift") is None  # not stated


def test_the_demo_plants_the_same_campaign_a_week_apart_inside_the_history() -> None:
    end = MONDAY + 14 * DAY + 5 * 3600
    first, second = demo_contacts(end).campaigns
    assert second.starts_at - first.starts_at == 7 * DAY
    assert second.ends_at <= end - 2 * 3600 and first.starts_at > end - 14 * DAY
