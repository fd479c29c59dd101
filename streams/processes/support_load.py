"""Support load: contacts per channel counted in 15-minute slots of event time, each closed slot learned
(:class:`models.load_forecast.LoadForecaster`, one per channel), and the next 24 hours forecast with the
agents they need every time a slot closes.

**Contacts and channels** (:func:`contact_channel`): a ``support_contact`` clickstream event is one
contact on its ``channel`` attribute; a ``question_asked`` support question is one contact on
``other`` (the contract names no channel); a chat conversation (``conversations``) is one contact on
``chat`` (``phone`` or ``email`` when the conversation's channel says so), counted at its first customer
message: later messages of the same ``session_id`` are repeats (:data:`SESSION_MEMORY` of event time,
at most :data:`MAX_SESSIONS` sessions remembered). A ``support_contact`` channel other than ``chat``,
``phone`` or ``email`` (or none) is ``other``.

**Slots and lateness.** A contact counts in the slot its event time falls in. The slots close in event
time: once the :func:`watermark` (the earliest clock of the input partitions heard from lately) is
:data:`ALLOWED_LATENESS` past a slot's end, the slot is closed and learned, with a count of 0 for a
channel that had none. A contact for a closed slot is *late*: it
is counted in ``forewarn_support_contacts_late_total`` and left out (the slot was learned and
forecast from without it). A gap of more than :data:`MAX_GAP` without any contact is taken for an
outage of the input, not for quiet: its slots are skipped, not learned as zeros.

**Forecast** (:func:`refresh`): when at least one slot closed, for every channel seen, the 96 slots after
the one in progress, each under its calendar (campaigns from the ``campaigns`` topic, launches from the
catalog: :func:`calendar`), with the agents needed for that slot's rate against the agents on shift
(``[staffing]`` of the policy): ``ceil(forecast per hour / contacts per agent per hour)``.

>>> from streams.domain.policy import load_policy
>>> staffing = load_policy().staffing
>>> state, start = SupportLoad(), 1_764_547_200.0  # Monday 00:00 UTC
>>> add_contact(state, "chat", start + 10.0), add_contact(state, "phone", start + 20.0)
('counted', 'counted')
>>> refresh(state, ModelsOf(), 0.0, [], staffing) is None  # slot 0 not closed yet
True
>>> add_contact(state, "chat", start + 1300.0)  # 5 minutes past slot 0's end: it closes
'counted'
>>> done = refresh(state, ModelsOf(), 0.0, [], staffing)
>>> [(a.channel, a.contacts) for a in done.actuals], [f.channel for f in done.forecasts]
([('chat', 1), ('phone', 1)], ['chat', 'phone'])
>>> len(done.forecasts[0].slots), done.forecasts[0].made_at - start
(96, 900.0)
>>> add_contact(state, "email", start + 100.0)  # slot 0 is closed
'late'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from models.load_forecast import SLOT_SECONDS, Calendar, LoadForecaster
from streams.contracts.events import (
    CLICKSTREAM,
    CONVERSATIONS,
    CUSTOMER,
    SUPPORT_QUESTIONS,
    Event,
    InvalidEvent,
    check_identifier,
    check_text,
    parse_time,
    read_json_object,
    required_field,
)
from streams.contracts.internal import internal_refusal
from streams.contracts.time import DAY, HOUR, MINUTE, iso_time, to_millis
from streams.contracts.validation import is_number
from streams.domain.policy import StaffingRules

CHANNELS = ("chat", "phone", "email", "other")
OTHER = "other"
ALLOWED_LATENESS = 5 * MINUTE  # a slot closes this long (event time) after its end
MAX_GAP = 6 * HOUR  # no contact at all for longer: an outage of the input, its slots not learned
HORIZON_SLOTS = 96  # 24 hours of 15-minute slots after the slot in progress
# A chat session's later messages within this long are the same contact. Short, since the sessions are
# part of the state written on every contact.
SESSION_MEMORY = 30 * MINUTE
MAX_SESSIONS = 5_000
SOURCE_IDLE = 30.0  # wall seconds: an input partition silent this long holds the watermark back no more
MAX_SOURCES = 4_096
LAUNCH_WINDOW = 30 * DAY  # a launch weighs on the load for its first 30 days ...
LAUNCH_DECAY = 7 * DAY  # ... as exp(-age / 7 days)
CAMPAIGN_KEEP = 8 * DAY  # campaigns ended longer ago than this are forgotten
MAX_CAMPAIGNS = 1_000
MAX_UPLIFT = 10.0
# Every record of the contacts topic has this key: one partition holds every channel's slots and
# campaigns, so that one event-time clock closes them all.
LOAD_KEY = b"support-load"
RECORD_SCHEMA = 1


def contact_channel(event: Event) -> str | None:
    """The channel ``event`` is a support contact on (see the module), or None when it is none."""
    if event.source == CLICKSTREAM and event.event_type == "support_contact":
        channel = event.attrs.get("channel")
        return channel if channel in ("chat", "phone", "email") else OTHER
    if event.source == SUPPORT_QUESTIONS:
        return OTHER
    if event.source == CONVERSATIONS and event.attrs.get("role") == CUSTOMER:
        channel = event.attrs.get("channel")
        return channel if channel in ("phone", "email") else "chat"
    return None


def contact_record(event: Event, channel: str, source: str = "") -> dict[str, Any]:
    """What ingest sends on the contacts topic for a contact: its channel, time, chat session, and the
    input partition it was read from (``source``, ``topic:partition``: its event-time clock)."""
    session = event.attrs.get("session_id") if event.source == CONVERSATIONS else None
    return {
        "schema": RECORD_SCHEMA,
        "kind": "contact",
        "contact_id": event.event_id,
        "channel": channel,
        "event_time": to_millis(event.event_time),
        "session_id": session,
        "source": source,
    }


# --- campaigns


@dataclass(frozen=True, slots=True)
class Campaign:
    """A marketing campaign expected to raise contacts while it runs (the ``campaigns`` topic)."""

    campaign_id: str
    name: str
    starts_at: float  # epoch seconds
    ends_at: float
    channels: list[str] = field(default_factory=list)  # empty: every channel
    products: list[str] = field(default_factory=list)
    expected_uplift: float | None = None  # 0.5: half as many contacts again; None: learned

    def to_wire(self) -> dict[str, Any]:
        return {
            "schema": RECORD_SCHEMA,
            "kind": "campaign",
            "campaign_id": self.campaign_id,
            "name": self.name,
            "starts_at": iso_time(self.starts_at),
            "ends_at": iso_time(self.ends_at),
            "channels": list(self.channels),
            "products": list(self.products),
            "expected_uplift": self.expected_uplift,
        }

    def runs(self, t: float, channel: str) -> bool:
        return self.starts_at <= t < self.ends_at and (not self.channels or channel in self.channels)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Campaign:
        return cls(**data)


def parse_campaign(raw: bytes | None, *, max_bytes: int = 65536) -> Campaign:
    """A ``campaigns`` message as a :class:`Campaign`, or :class:`InvalidEvent` with a reason of
    ``DEAD_LETTER_REASONS`` (``invalid_value`` for a campaign that ends before it starts, an unknown
    channel, an uplift out of range).

    >>> parse_campaign(b'{"campaign_id": "c1", "name": "Sale", "starts_at": "2026-12-01T08:00:00Z",'
    ...                b' "ends_at": "2026-12-01T20:00:00Z", "channels": ["chat"]}').channels
    ['chat']
    >>> try:
    ...     parse_campaign(b'{"campaign_id": "c1", "name": "Sale", "starts_at": "2026-12-02T00:00:00Z",'
    ...                    b' "ends_at": "2026-12-01T00:00:00Z"}')
    ... except InvalidEvent as error:
    ...     print(error.reason, "-", error.detail)
    invalid_value - field 'ends_at' must be after 'starts_at'
    """
    data = read_json_object(raw, max_bytes)
    return campaign_from_object(data)


def campaign_from_object(data: dict[str, Any]) -> Campaign:
    """The checks of :func:`parse_campaign` past the JSON."""
    campaign_id = check_identifier("campaign_id", required_field(data, "campaign_id"))
    name = check_text("name", required_field(data, "name"))
    starts_at = parse_time("starts_at", required_field(data, "starts_at"))
    ends_at = parse_time("ends_at", required_field(data, "ends_at"))
    if ends_at <= starts_at:
        raise InvalidEvent("invalid_value", "field 'ends_at' must be after 'starts_at'")
    channels = _names(data, "channels")
    for channel in channels:
        if channel not in CHANNELS:
            raise InvalidEvent(
                "invalid_value", f"field 'channels' names {channel[:64]!r}, not one of {CHANNELS}"
            )
    products = _names(data, "products")
    uplift = data.get("expected_uplift")
    if uplift is not None:
        if not is_number(uplift) or isinstance(uplift, bool):
            raise InvalidEvent("wrong_type", "field 'expected_uplift' must be a number")
        if not (-0.9 <= uplift <= MAX_UPLIFT):
            raise InvalidEvent(
                "invalid_value", f"field 'expected_uplift' must be between -0.9 and {MAX_UPLIFT:g}"
            )
        uplift = float(uplift)
    return Campaign(campaign_id, name, starts_at, ends_at, channels, products, uplift)


def _names(data: dict[str, Any], name: str) -> list[str]:
    value = data.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidEvent("wrong_type", f"field {name!r} must be a list")
    if len(value) > 64:
        raise InvalidEvent("invalid_value", f"field {name!r} holds more than 64 entries")
    return sorted({check_identifier(name, item) for item in value})


def read_load_record(raw: bytes | None, max_bytes: int = 2 * 65536) -> dict[str, Any] | Campaign:
    """A contacts-topic record as ingest or ``ingest_campaigns`` wrote it: a contact (a dict of channel,
    event time in epoch seconds, session id) or a :class:`Campaign`; else ``invalid_internal``."""
    with internal_refusal():
        data = read_json_object(raw, max_bytes)
        kind = required_field(data, "kind")
        if kind == "campaign":
            return campaign_from_object(data)
        if kind != "contact":
            raise InvalidEvent(
                "invalid_value", f"field 'kind' must be contact or campaign, got {str(kind)[:32]!r}"
            )
        channel = required_field(data, "channel")
        if channel not in CHANNELS:
            raise InvalidEvent("invalid_value", f"field 'channel' must be one of {CHANNELS}")
        session, source = data.get("session_id"), data.get("source") or ""
        return {
            "channel": channel,
            "event_time": parse_time("event_time", required_field(data, "event_time")),
            "session_id": None if session is None else check_identifier("session_id", session),
            "source": source if source == "" else check_identifier("source", source),
        }


# --- state


@dataclass(slots=True)
class SupportLoad:
    """The counting state (small: written on every contact). ``cutoff``: the start of the first open
    slot (0: no contact yet); ``latest``: the latest event time seen; ``counts``: open slot start
    (epoch seconds, as text) -> channel -> contacts; ``sessions``: chat session -> last message time."""

    cutoff: float = 0.0
    latest: float = 0.0
    # Input partition (``topic:partition``) -> [its latest event time, wall clock it was last heard from].
    clocks: dict[str, list[float]] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    sessions: dict[str, float] = field(default_factory=dict)
    campaigns: dict[str, Campaign] = field(default_factory=dict)
    channels: list[str] = field(default_factory=list)  # every channel seen, in CHANNELS' order

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SupportLoad:
        campaigns = {key: Campaign.from_dict(value) for key, value in data.get("campaigns", {}).items()}
        return cls(
            data["cutoff"],
            data["latest"],
            data["clocks"],
            data["counts"],
            data["sessions"],
            campaigns,
            data["channels"],
        )


@dataclass(slots=True)
class ModelsOf:
    """The forecaster of each channel (written when slots close)."""

    models: dict[str, LoadForecaster] = field(default_factory=dict)

    def of(self, channel: str) -> LoadForecaster:
        model = self.models.get(channel)
        if model is None:
            model = self.models[channel] = LoadForecaster()
        return model

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelsOf:
        return cls({key: LoadForecaster.from_dict(value) for key, value in data["models"].items()})


def slot_start(t: float) -> float:
    return math.floor(t / SLOT_SECONDS) * SLOT_SECONDS


def add_contact(
    state: SupportLoad,
    channel: str,
    t: float,
    session_id: str | None = None,
    source: str = "",
    wall: float = 0.0,
) -> str:
    """Count a contact: ``counted``, ``late`` (its slot is closed) or ``repeat`` (a chat session counted
    already). ``source``: the input partition it was read from (``topic:partition``), whose event-time
    clock it moves; ``wall``: the wall clock now (which sources are active: :func:`watermark`)."""
    clock = state.clocks.get(source)
    state.clocks[source] = [max(t, clock[0]) if clock else t, wall]
    if len(state.clocks) > MAX_SOURCES:  # the longest silent go
        ordered = sorted(state.clocks.items(), key=lambda item: item[1][1])
        state.clocks = dict(ordered[-MAX_SOURCES:])
    if state.cutoff and t < state.cutoff:
        return "late"
    if session_id is not None:
        seen = state.sessions.get(session_id)
        state.sessions[session_id] = max(t, seen or t)
        if seen is not None and t - seen < SESSION_MEMORY:
            return "repeat"
        _forget_sessions(state, t)
    if not state.cutoff:
        state.cutoff = slot_start(t)
    slot = str(int(slot_start(t)))
    per_channel = state.counts.setdefault(slot, {})
    per_channel[channel] = per_channel.get(channel, 0) + 1
    if channel not in state.channels:
        state.channels = [name for name in CHANNELS if name in state.channels or name == channel]
    state.latest = max(state.latest, t)
    return "counted"


def watermark(state: SupportLoad, wall: float) -> float:
    """How far event time has come for every input: the earliest of the clocks of the sources heard
    from within :data:`SOURCE_IDLE` (wall clock) of ``wall``; a source silent longer is idle and holds
    nothing back. Per source, because the inputs are read in no set order between partitions: a
    partition read behind the others (a backlog, a replay) would otherwise find its contacts' slots
    closed by another's clock.

    >>> state = SupportLoad(clocks={"clickstream:0": [1000.0, 50.0], "clickstream:1": [400.0, 55.0],
    ...                             "support:3": [100.0, 10.0]})
    >>> watermark(state, wall=60.0)  # support:3 was last heard from 50 s ago: idle
    400.0
    """
    active = [clock[0] for clock in state.clocks.values() if wall - clock[1] <= SOURCE_IDLE]
    return min(active) if active else state.latest


def _forget_sessions(state: SupportLoad, t: float) -> None:
    if len(state.sessions) <= MAX_SESSIONS:
        return
    horizon = t - SESSION_MEMORY
    kept = {key: seen for key, seen in state.sessions.items() if seen >= horizon}
    if len(kept) > MAX_SESSIONS:  # the most recent ones
        kept = dict(sorted(kept.items(), key=lambda item: item[1])[-MAX_SESSIONS:])
    state.sessions = kept


def add_campaign(state: SupportLoad, campaign: Campaign) -> bool:
    """File a campaign (a campaign id sent again replaces it: the latest wins); True when it changed."""
    if state.campaigns.get(campaign.campaign_id) == campaign:
        return False
    state.campaigns[campaign.campaign_id] = campaign
    if len(state.campaigns) > MAX_CAMPAIGNS:  # the ones ending first go
        ordered = sorted(state.campaigns.values(), key=lambda c: c.ends_at)
        state.campaigns = {c.campaign_id: c for c in ordered[-MAX_CAMPAIGNS:]}
    return True


def calendar(t: float, channel: str, campaigns: Sequence[Campaign], launches: Sequence[float]) -> Calendar:
    """The calendar of the slot starting at ``t`` on ``channel``: the campaigns running on it (the
    largest stated uplift) and the youngest launch's weight (``launches``: launch times)."""
    running = [c for c in campaigns if c.runs(t, channel)]
    stated = [c.expected_uplift for c in running if c.expected_uplift is not None]
    ages = [t - at for at in launches if 0.0 <= t - at < LAUNCH_WINDOW]
    return Calendar(
        campaign=bool(running),
        stated_uplift=max(stated) if stated else None,
        launch=math.exp(-min(ages) / LAUNCH_DECAY) if ages else 0.0,
    )


# --- closing slots and forecasting


@dataclass(frozen=True, slots=True)
class SlotActual:
    slot_start: float
    channel: str
    contacts: int

    def to_wire(self, closed_at: float) -> dict[str, Any]:
        return {
            "schema": RECORD_SCHEMA,
            "slot_start": iso_time(self.slot_start),
            "channel": self.channel,
            "contacts": self.contacts,
            "closed_at": iso_time(closed_at),
        }


@dataclass(frozen=True, slots=True)
class SlotForecast:
    slot_start: float
    forecast: float  # contacts in the slot
    agents_needed: int  # for the slot's rate per hour
    agents_on_shift: int


@dataclass(frozen=True, slots=True)
class ChannelForecast:
    """One channel's forecast made at ``made_at`` (the end of the last closed slot) for the 96 slots
    after the one in progress."""

    made_at: float
    channel: str
    contacts_per_agent_hour: float
    slots: list[SlotForecast]

    def next_hour(self) -> float:
        """The contacts forecast for the first hour (the first four slots)."""
        return sum(slot.forecast for slot in self.slots[:4])

    def capacity(self) -> float:
        """Contacts per hour the agents on shift take, in the first forecast hour."""
        return self.slots[0].agents_on_shift * self.contacts_per_agent_hour if self.slots else 0.0

    def to_wire(self) -> dict[str, Any]:
        return {
            "schema": RECORD_SCHEMA,
            "made_at": iso_time(self.made_at),
            "channel": self.channel,
            "contacts_per_agent_hour": self.contacts_per_agent_hour,
            "slots": [
                [iso_time(s.slot_start), round(s.forecast, 4), s.agents_needed, s.agents_on_shift]
                for s in self.slots
            ],
        }


@dataclass(frozen=True, slots=True)
class Refresh:
    actuals: list[SlotActual]
    forecasts: list[ChannelForecast]
    skipped: int = 0  # slots of an outage, not learned


def agents_needed(contacts_per_hour: float, contacts_per_agent_hour: float) -> int:
    """Agents a rate of contacts needs: ``ceil(contacts per hour / contacts per agent per hour)``.

    >>> agents_needed(25.0, 6.0), agents_needed(24.0, 6.0), agents_needed(0.0, 6.0)
    (5, 4, 0)
    """
    if contacts_per_agent_hour <= 0:
        return 0
    return max(0, math.ceil(contacts_per_hour / contacts_per_agent_hour - 1e-9))


def closable_until(state: SupportLoad, wall: float) -> float | None:
    """The start of the first slot that stays open: the slots before it are closable (the
    :func:`watermark` has passed them by :data:`ALLOWED_LATENESS`); None when none is."""
    if not state.cutoff:
        return None
    until = slot_start(watermark(state, wall) - ALLOWED_LATENESS)
    return until if until > state.cutoff else None


def refresh(
    state: SupportLoad, models: ModelsOf, wall: float, launches: Sequence[float], staffing: StaffingRules
) -> Refresh | None:
    """Close the slots the :func:`watermark` has passed (by :data:`ALLOWED_LATENESS`), learn them and
    forecast; None when no slot closed (:func:`closable_until`). ``wall``: the wall clock now."""
    until = closable_until(state, wall)  # slots before this one close
    if until is None:
        return None
    campaigns = list(state.campaigns.values())
    actuals: list[SlotActual] = []
    skipped = 0
    starts = sorted(float(key) for key in state.counts)
    t = state.cutoff
    while t < until:
        counts = state.counts.pop(str(int(t)), None)
        if counts is None and not _contacts_within(starts, t, MAX_GAP):
            skipped += 1  # inside an outage of the input
            t += SLOT_SECONDS
            continue
        for channel in state.channels:
            contacts = (counts or {}).get(channel, 0)
            models.of(channel).learn_one(t, contacts, calendar(t, channel, campaigns, launches))
            actuals.append(SlotActual(t, channel, contacts))
        t += SLOT_SECONDS
    state.cutoff = until
    state.sessions = {key: seen for key, seen in state.sessions.items() if seen >= until - SESSION_MEMORY}
    # Counts of slots already closed cannot be there (late contacts are refused), but be sure.
    for key in [key for key in state.counts if float(key) < until]:
        del state.counts[key]
    state.campaigns = {key: c for key, c in state.campaigns.items() if c.ends_at >= until - CAMPAIGN_KEEP}
    forecasts = [
        forecast_channel(models.of(channel), channel, until, campaigns, launches, staffing)
        for channel in state.channels
    ]
    return Refresh(actuals, forecasts, skipped)


def _contacts_within(starts: list[float], t: float, gap: float) -> bool:
    """Whether any open slot with contacts starts within ``gap`` before or after ``t``."""
    return any(abs(start - t) <= gap for start in starts)


def forecast_channel(
    model: LoadForecaster,
    channel: str,
    made_at: float,
    campaigns: Sequence[Campaign],
    launches: Sequence[float],
    staffing: StaffingRules,
) -> ChannelForecast:
    """The forecast of ``channel`` for the 96 slots after the one starting at ``made_at``."""
    rules = staffing.of(channel)
    slots = []
    for k in range(1, HORIZON_SLOTS + 1):
        t = made_at + k * SLOT_SECONDS
        forecast = model.predict_one(t, calendar(t, channel, campaigns, launches))
        slots.append(
            SlotForecast(
                t,
                forecast,
                agents_needed(forecast * (HOUR / SLOT_SECONDS), rules.contacts_per_agent_hour),
                rules.on_shift(t),
            )
        )
    return ChannelForecast(made_at, channel, rules.contacts_per_agent_hour, slots)
