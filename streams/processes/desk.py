"""What the other departments did: the service desk's ticket updates and the teams' feedback updates,
checked against the user's tickets and feedback and passed on to the sink as progress records.

Updates are keyed by user (the ticket's or feedback's user, as on the ``tickets`` and
``feedback_tagged`` topics), so they reach the partition holding the user's state, where a
:class:`DeskBook` remembers the user's recent tickets (opened by
:func:`streams.processes.tickets.open_ticket`) and tagged feedback (:func:`models.tagger.tag_feedback`):
at most :data:`MAX_TICKETS` and :data:`MAX_FEEDBACK`, each with the ids of its last
:data:`MAX_UPDATE_IDS` updates. The book is part of
the user's state: erased with it, and gone with it when the user is evicted idle past the horizon
(90 days with the packaged policy, far longer than a repair or an answer takes).

**State machine.** A ticket starts ``open``; a feedback starts ``open`` for each team it went to (and
for a team it did not go to, whose update is taken too: feedback may be passed on). The statuses an
update may bring after each (:data:`TICKET_TRANSITIONS`, :data:`FEEDBACK_TRANSITIONS`):

======================= ===========================================================================
ticket status           next
======================= ===========================================================================
open                    accepted, technician_assigned, on_site, resolved, cancelled
accepted                technician_assigned, on_site, resolved, cancelled
technician_assigned     technician_assigned (another technician), on_site, resolved, cancelled
on_site                 technician_assigned, on_site (another visit), resolved, cancelled
resolved                reopened
reopened                accepted, technician_assigned, on_site, resolved, cancelled
cancelled               nothing (final)
======================= ===========================================================================

A feedback, per team: ``open`` -> acknowledged, planned, shipped, declined; ``acknowledged`` ->
planned, shipped, declined; ``planned`` -> planned (re-planned), shipped, declined; ``shipped`` and
``declined`` are final.

**Checks**, in order; each refusal is an :class:`streams.contracts.events.InvalidEvent` the worker
dead-letters with its reason:

1. the ticket (feedback) is not in the book: ``unknown_ticket`` (``unknown_feedback``);
2. the update's id was applied to it already: a duplicate, not an error: nothing is emitted again
   (:func:`apply_ticket_update` returns ``None``, counted as a process duplicate);
3. the update is timed before the ticket's (feedback's) creation, or before the latest update applied
   to it (for feedback: by the same team): ``out_of_order``. Updates of one ticket must come in time
   order (equal times are fine): a late one cannot be placed in the state machine after the fact;
4. its status may not follow the current one: ``invalid_transition`` (resolved after cancelled).

>>> book = DeskBook()
>>> remember_ticket(book, "7f1c0b7e-0000-5000-8000-000000000001", 1000.0, "assigned", "sp-a")
>>> def update(update_id, status, at):
...     return Event(update_id, "ticket_updated", "ticket_updates", at, "u1",
...                  {"ticket_id": "7f1c0b7e-0000-5000-8000-000000000001", "status": status,
...                   "service_point_id": "sp-a"})
>>> progress = apply_ticket_update(book, update("up1", "accepted", 1600.0))
>>> progress.previous_status, progress.status, progress.first_response
('open', 'accepted', True)
>>> apply_ticket_update(book, update("up1", "accepted", 1600.0)) is None  # redelivered
True
>>> apply_ticket_update(book, update("up2", "resolved", 9000.0)).status
'resolved'
>>> try:
...     apply_ticket_update(book, update("up3", "on_site", 9500.0))
... except InvalidEvent as error:
...     print(error.reason)
invalid_transition
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from streams.contracts.events import Event, InvalidEvent
from streams.contracts.time import iso_time

PROGRESS_SCHEMA = 1
OPEN = "open"  # the status of a ticket or feedback no update has reached yet

TICKET_TRANSITIONS: dict[str, frozenset[str]] = {
    OPEN: frozenset({"accepted", "technician_assigned", "on_site", "resolved", "cancelled"}),
    "accepted": frozenset({"technician_assigned", "on_site", "resolved", "cancelled"}),
    "technician_assigned": frozenset({"technician_assigned", "on_site", "resolved", "cancelled"}),
    "on_site": frozenset({"technician_assigned", "on_site", "resolved", "cancelled"}),
    "resolved": frozenset({"reopened"}),
    "reopened": frozenset({"accepted", "technician_assigned", "on_site", "resolved", "cancelled"}),
    "cancelled": frozenset(),
}
FEEDBACK_TRANSITIONS: dict[str, frozenset[str]] = {
    OPEN: frozenset({"acknowledged", "planned", "shipped", "declined"}),
    "acknowledged": frozenset({"planned", "shipped", "declined"}),
    "planned": frozenset({"planned", "shipped", "declined"}),
    "shipped": frozenset(),
    "declined": frozenset(),
}

# Bounds that keep one user's book small whatever the input does.
MAX_TICKETS = 50  # tickets remembered per user, the latest opened
MAX_FEEDBACK = 50  # tagged feedback remembered per user, the latest
MAX_UPDATE_IDS = 20  # ids of the latest updates applied, per ticket or feedback (idempotency)


@dataclass
class TicketTrack:
    """A ticket as the book remembers it: when it was opened, how it was dispatched, where it stands."""

    created_at: float
    dispatch: str  # "assigned" or "manual"
    service_point_id: str  # the dispatched point; "" for a manual ticket
    status: str = OPEN
    updated_at: float = 0.0  # time of the latest update applied (0: none yet)
    reopens: int = 0
    updates: list[str] = field(default_factory=list)  # ids applied, newest last


@dataclass
class FeedbackTrack:
    """A tagged feedback as the book remembers it: when it was given, the teams it went to, and where
    it stands with each team that answered."""

    created_at: float
    teams: list[str]
    status: dict[str, str] = field(default_factory=dict)  # team -> its latest status
    updated_at: dict[str, float] = field(default_factory=dict)  # team -> time of its latest update
    updates: list[str] = field(default_factory=list)


@dataclass
class DeskBook:
    """A user's recent tickets and feedback, by id (oldest first), for the departments' updates."""

    tickets: dict[str, TicketTrack] = field(default_factory=dict)
    feedback: dict[str, FeedbackTrack] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeskBook:
        return cls(
            tickets={key: TicketTrack(**value) for key, value in data.get("tickets", {}).items()},
            feedback={key: FeedbackTrack(**value) for key, value in data.get("feedback", {}).items()},
        )


def remember_ticket(book: DeskBook, ticket_id: str, created_at: float, dispatch: str, point_id: str) -> None:
    """A ticket just opened; beyond :data:`MAX_TICKETS` the one opened longest ago is forgotten."""
    if ticket_id not in book.tickets:
        book.tickets[ticket_id] = TicketTrack(created_at, dispatch, point_id)
        _bound(book.tickets, MAX_TICKETS)


def remember_feedback(book: DeskBook, feedback_id: str, created_at: float, teams: list[str]) -> None:
    """A feedback just tagged and routed to ``teams``; beyond :data:`MAX_FEEDBACK` the oldest goes."""
    if feedback_id not in book.feedback:
        book.feedback[feedback_id] = FeedbackTrack(created_at, list(teams))
        _bound(book.feedback, MAX_FEEDBACK)


@dataclass(frozen=True, slots=True)
class TicketProgress:
    """A ticket update the book accepted: what the sink stores (``ticket_progress`` topic)."""

    update_id: str
    ticket_id: str
    user_id: str
    status: str
    previous_status: str
    updated_at: float
    ticket_created_at: float
    dispatch: str
    service_point_id: str  # the update's: the point handling the ticket (a manual ticket gets one here)
    technician: str
    note: str
    first_response: bool  # the ticket's first update
    reopens: int  # times reopened, this update included

    def to_wire(self, decided_at_wall: float) -> dict[str, Any]:
        """The documented JSON contract of the ``ticket_progress`` topic (schema 1)."""
        return {
            "schema": PROGRESS_SCHEMA,
            **{name: getattr(self, name) for name in self.__slots__},
            "updated_at": iso_time(self.updated_at),
            "ticket_created_at": iso_time(self.ticket_created_at),
            "decided_at": iso_time(decided_at_wall),
        }


@dataclass(frozen=True, slots=True)
class FeedbackProgress:
    """A feedback update the book accepted (``feedback_progress`` topic)."""

    update_id: str
    feedback_id: str
    user_id: str
    team: str
    status: str
    previous_status: str
    updated_at: float
    feedback_at: float  # when the feedback was given
    routed: bool  # the feedback was routed to this team by its tags
    note: str
    first_response: bool  # the team's first update of the feedback

    def to_wire(self, decided_at_wall: float) -> dict[str, Any]:
        """The documented JSON contract of the ``feedback_progress`` topic (schema 1)."""
        return {
            "schema": PROGRESS_SCHEMA,
            **{name: getattr(self, name) for name in self.__slots__},
            "updated_at": iso_time(self.updated_at),
            "feedback_at": iso_time(self.feedback_at),
            "decided_at": iso_time(decided_at_wall),
        }


def allowed(transitions: dict[str, frozenset[str]], current: str, status: str) -> bool:
    """Whether ``status`` may follow ``current`` in the state machine ``transitions``.

    >>> allowed(TICKET_TRANSITIONS, "cancelled", "resolved")
    False
    >>> allowed(TICKET_TRANSITIONS, "resolved", "reopened")
    True
    >>> allowed(FEEDBACK_TRANSITIONS, "open", "planned"), allowed(FEEDBACK_TRANSITIONS, "shipped", "planned")
    (True, False)
    """
    return status in transitions.get(current, frozenset())


def apply_ticket_update(book: DeskBook, event: Event) -> TicketProgress | None:
    """Apply a ``ticket_updated`` event to the user's book: its progress record, ``None`` for an update
    applied already, or :class:`InvalidEvent` (see the module for the checks)."""
    attrs, time = event.attrs, event.event_time
    ticket_id = attrs["ticket_id"]
    track = book.tickets.get(ticket_id)
    if track is None:
        raise InvalidEvent("unknown_ticket", f"ticket {ticket_id!r} is not among the user's recent tickets")
    if event.event_id in track.updates:
        return None
    latest = max(track.created_at, track.updated_at)
    if time < latest:
        what = "the ticket's creation" if track.updated_at == 0.0 else "its latest update"
        raise InvalidEvent(
            "out_of_order", f"update timed {iso_time(time)}, before {what} at {iso_time(latest)}"
        )
    status = attrs["status"]
    if not allowed(TICKET_TRANSITIONS, track.status, status):
        raise InvalidEvent("invalid_transition", f"{status!r} cannot follow {track.status!r}")
    previous, first = track.status, not track.updates
    track.status, track.updated_at = status, time
    track.reopens += status == "reopened"
    _remember_update(track.updates, event.event_id)
    return TicketProgress(
        update_id=event.event_id,
        ticket_id=ticket_id,
        user_id=event.user_id,
        status=status,
        previous_status=previous,
        updated_at=time,
        ticket_created_at=track.created_at,
        dispatch=track.dispatch,
        service_point_id=attrs["service_point_id"],
        technician=attrs.get("technician", ""),
        note=attrs.get("note", ""),
        first_response=first,
        reopens=track.reopens,
    )


def apply_feedback_update(book: DeskBook, event: Event) -> FeedbackProgress | None:
    """Apply a ``feedback_updated`` event to the user's book (per team): its progress record, ``None``
    for an update applied already, or :class:`InvalidEvent`."""
    attrs, time = event.attrs, event.event_time
    feedback_id, team = attrs["feedback_id"], attrs["team"]
    track = book.feedback.get(feedback_id)
    if track is None:
        raise InvalidEvent(
            "unknown_feedback", f"feedback {feedback_id!r} is not among the user's recent feedback"
        )
    if event.event_id in track.updates:
        return None
    latest = max(track.created_at, track.updated_at.get(team, 0.0))
    if time < latest:
        what = "the feedback" if team not in track.updated_at else f"{team!r}'s latest update"
        raise InvalidEvent(
            "out_of_order", f"update timed {iso_time(time)}, before {what} at {iso_time(latest)}"
        )
    current, status = track.status.get(team, OPEN), attrs["status"]
    if not allowed(FEEDBACK_TRANSITIONS, current, status):
        raise InvalidEvent("invalid_transition", f"{status!r} cannot follow {current!r}")
    first = team not in track.status
    track.status[team], track.updated_at[team] = status, time
    _remember_update(track.updates, event.event_id)
    return FeedbackProgress(
        update_id=event.event_id,
        feedback_id=feedback_id,
        user_id=event.user_id,
        team=team,
        status=status,
        previous_status=current,
        updated_at=time,
        feedback_at=track.created_at,
        routed=team in track.teams,
        note=attrs.get("note", ""),
        first_response=first,
    )


def _remember_update(updates: list[str], update_id: str) -> None:
    updates.append(update_id)
    del updates[:-MAX_UPDATE_IDS]


def _bound(mapping: dict[str, Any], limit: int) -> None:
    while len(mapping) > limit:  # dicts keep insertion order: drop the oldest
        del mapping[next(iter(mapping))]
