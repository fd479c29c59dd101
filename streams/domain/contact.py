"""The contact policy: every candidate intervention is decided before anything is sent, and each
decision is recorded with its reason (the ``decisions`` topic), sent ones and held-back ones alike.

The candidates of one round (what one event or one timer tick of a user fired) are taken highest
priority first, and for each the first rule that applies decides:

1. the trigger is no longer in the policy                      suppressed: ``disabled``
2. the user opted out (``preferences``)                        suppressed: ``opted_out``
3. none of the trigger's channels is one the user allows       suppressed: ``channel_opted_out``
4. the user's arm of the trigger's experiment is ``holdout``   suppressed: ``holdout``
5. another candidate of this round was already sent            suppressed: ``superseded``
6. the same trigger reached the user within its ``cooldown``   suppressed: ``cooldown``
7. every allowed channel is at its frequency cap               suppressed: ``frequency_cap``
   (caps count contacts in the rolling window ``(now - window, now]``; a capped channel passes to the
   trigger's next allowed one)
8. it is quiet hours in the user's time zone                   ``deferred`` to their end, or suppressed:
   ``quiet_hours``, as the trigger says (``ignore``: rule skipped)
9. otherwise                                                   ``emitted``, and recorded in the state

A trigger in ``mode = "shadow"``, or in ``mode = "percent"`` for a user outside its share
(:func:`streams.domain.experiments.rollout_live`), is decided by the same rules and then recorded as
``shadow``, its reason what it would have been: ``emitted``, ``deferred`` or the suppression reason. A
shadow decision sends nothing, records no contact (no cap, cooldown or offer history is used up), is
never deferred, and supersedes nothing: ``superseded`` means a live candidate was sent, so live triggers
decide as if the shadow ones did not exist, and each shadow one as if it alone were live beside them.

The experiment arm is a pure function of user and experiment (:mod:`streams.domain.experiments`) and is
written on every decision of a trigger in an experiment, whatever the outcome, so that treatment and
holdout compare like with like. All times are event times: a replay decides as the live run did. A
deferred intervention is decided again, by all the rules, when its quiet hours end
(:func:`release_deferred`): preferences changed in between are obeyed then; a decision already made
is never taken back.

>>> from streams.domain.policy import load_policy
>>> from streams.domain.state import UserState
>>> policy = load_policy(text="experiments = []")
>>> candidate = Intervention("i1", "delay_notice", "notify_delay", "u1", 43200.0, "late", "e1")
>>> [decision] = decide([candidate], UserState("u1"), policy, now=43200.0)  # 12:00 UTC
>>> decision.decision, decision.reason, decision.intervention.channel
('emitted', '', 'chat')
>>> opted_out = UserState("u1")
>>> opted_out.preferences.opt_out = True
>>> [(d.decision, d.reason) for d in decide([candidate], opted_out, policy, now=43200.0)]
[('suppressed', 'opted_out')]
>>> shadow = load_policy(text='experiments = []\\n[triggers.delay_notice]\\nmode = "shadow"\\n')
>>> state = UserState("u1")
>>> again = Intervention("i2", "delay_notice", "notify_delay", "u1", 43200.0, "late", "e2")
>>> [(d.decision, d.reason, d.detail) for d in decide([again], state, shadow, now=43200.0)]
[('shadow', 'emitted', 'shadow: would have been sent on chat')]
>>> state.contacts, state.last_contact_by_trigger
({}, {})
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from streams.contracts.interventions import INTERVENTION_SCHEMA, Intervention
from streams.contracts.time import iso_time, seconds_of_day
from streams.domain.experiments import assign_arm, rollout_live
from streams.domain.policy import HOLDOUT, PERCENT, Policy, TriggerPolicy
from streams.domain.state import MAX_DECIDED, MAX_DEFERRED, Deferred, UserState, record_contact

EMITTED, SUPPRESSED, DEFERRED, SHADOW = "emitted", "suppressed", "deferred", "shadow"
DECISION_KINDS = (EMITTED, SUPPRESSED, DEFERRED, SHADOW)
SUPPRESSION_REASONS = (
    "disabled",
    "opted_out",
    "channel_opted_out",
    "holdout",
    "superseded",
    "cooldown",
    "frequency_cap",
    "quiet_hours",
)


@dataclass(slots=True)
class Decision:
    intervention: Intervention
    decision: str  # one of DECISION_KINDS
    # One of SUPPRESSION_REASONS when suppressed, "quiet_hours" when deferred; when shadow, what the live
    # decision would have been: "emitted", "deferred" or one of SUPPRESSION_REASONS.
    reason: str = ""
    detail: str = ""
    priority: int = 0
    release_at: float | None = None  # deferred: when it is decided again (event time)

    def to_wire(self, decided_at: float) -> dict[str, Any]:
        """The documented JSON contract of the ``decisions`` topic (schema 1)."""
        intervention = self.intervention
        return {
            "schema": INTERVENTION_SCHEMA,
            "intervention_id": intervention.intervention_id,
            "decision": self.decision,
            "reason": self.reason,
            "detail": self.detail,
            "trigger": intervention.trigger,
            "action": intervention.action,
            "channel": intervention.channel,
            "priority": self.priority,
            "experiment": intervention.experiment,
            "arm": intervention.arm,
            "offer": intervention.offer,
            "user_id": intervention.user_id,
            "event_time": iso_time(intervention.event_time),
            "decided_at": iso_time(decided_at),
            "source_event_id": intervention.source_event_id,
            "order_id": intervention.evidence.get("order_id") or "",
        }


def decide(candidates: list[Intervention], state: UserState, policy: Policy, now: float) -> list[Decision]:
    """Decide one round of candidates at event time ``now``; emitted ones are recorded in ``state``
    (contacts, cooldowns, offers) and deferred ones kept in it."""
    # A decision made is never taken back, nor made twice: an intervention decided already, or deferred
    # and waiting, that fires again (an event replayed from beyond the duplicate window) is left out.
    if candidates:  # most rounds have none: the set is not built on the per-event path for nothing
        known = set(state.decided) | {deferred.intervention.intervention_id for deferred in state.deferred}
        candidates = [candidate for candidate in candidates if candidate.intervention_id not in known]
    ranked = sorted(candidates, key=lambda c: _rank(c, policy))
    decisions = []
    sent: Intervention | None = None
    for candidate in ranked:
        decision = _decide_one(candidate, state, policy, now, sent)
        trigger = policy.triggers.get(candidate.trigger)
        if trigger is not None and not rollout_live(state.user_id, trigger):
            decision = _shadow(decision, trigger)
        if decision.decision == EMITTED:
            sent = candidate
            record_contact(state, candidate, now)
        elif decision.release_at is not None:
            state.deferred.append(Deferred(decision.release_at, candidate))
            del state.deferred[:-MAX_DEFERRED]
        if decision.decision != DEFERRED:
            state.decided.append(candidate.intervention_id)
            del state.decided[:-MAX_DECIDED]
        decisions.append(decision)
    return decisions


def _shadow(would: Decision, trigger: TriggerPolicy) -> Decision:
    """The record of what ``would`` have been, for a trigger not live for this user: nothing is sent."""
    reason = would.decision if would.decision in (EMITTED, DEFERRED) else would.reason
    mode = f"percent {trigger.percent:g}: not in the rollout share" if trigger.mode == PERCENT else "shadow"
    said = would.detail or f"would have been sent on {would.intervention.channel}"
    return Decision(would.intervention, SHADOW, reason, f"{mode}: {said}", would.priority)


def _rank(candidate: Intervention, policy: Policy) -> tuple[int, str]:
    trigger = policy.triggers.get(candidate.trigger)
    return (-(trigger.priority if trigger else 0), candidate.trigger)


def _decide_one(
    candidate: Intervention, state: UserState, policy: Policy, now: float, sent: Intervention | None
) -> Decision:
    trigger = policy.triggers.get(candidate.trigger)
    if trigger is None:
        return Decision(candidate, SUPPRESSED, "disabled", "the trigger is not in the policy")
    experiment = policy.experiment_of(trigger.name)
    if experiment is not None:
        candidate.experiment, candidate.arm = experiment.name, assign_arm(state.user_id, experiment)

    def suppressed(reason: str, detail: str) -> Decision:
        return Decision(candidate, SUPPRESSED, reason, detail, trigger.priority)

    preferences = state.preferences
    if preferences.opt_out:
        return suppressed("opted_out", "the user opted out of proactive contact")
    allowed = [channel for channel in trigger.channels if preferences.allows(channel)]
    if not allowed:
        return suppressed("channel_opted_out", f"the user turned off {', '.join(trigger.channels)}")
    candidate.channel = allowed[0]
    if candidate.arm == HOLDOUT:
        return suppressed("holdout", f"holdout arm of experiment {candidate.experiment}")
    if sent is not None:
        return suppressed("superseded", f"{sent.trigger} (higher priority) was sent in the same round")
    last = state.last_contact_by_trigger.get(trigger.name)
    if last is not None and now - last < trigger.cooldown:
        return suppressed(
            "cooldown", f"{trigger.name} sent {now - last:.0f}s ago, cooldown {trigger.cooldown:g}s"
        )
    channel, cap_detail = _uncapped_channel(allowed, state, policy, now)
    if channel is None:
        return suppressed("frequency_cap", cap_detail)
    candidate.channel = channel
    if trigger.quiet_hours != "ignore" and policy.contact.quiet_hours is not None:
        zone = preferences.timezone or policy.contact.timezone
        until = quiet_until(now, zone, policy.contact.quiet_hours)
        if until is not None:
            if trigger.quiet_hours == "suppress":
                return suppressed("quiet_hours", f"quiet hours in {zone} until {iso_time(until)}")
            detail = f"quiet hours in {zone} until {iso_time(until)}"
            return Decision(candidate, DEFERRED, "quiet_hours", detail, trigger.priority, release_at=until)
    return Decision(candidate, EMITTED, "", "", trigger.priority)


def _uncapped_channel(
    channels: list[str], state: UserState, policy: Policy, now: float
) -> tuple[str | None, str]:
    caps = {cap.channel: cap for cap in policy.contact.caps}
    details = []
    for channel in channels:
        cap = caps.get(channel)
        if cap is None:
            return channel, ""
        recent = sum(1 for sent in state.contacts.get(channel, ()) if now - cap.window < sent <= now)
        if recent < cap.max:
            return channel, ""
        details.append(f"{channel}: {recent} in the last {cap.window:g}s, cap {cap.max}")
    return None, "; ".join(details)


def quiet_until(now: float, timezone: str, quiet: tuple[int, int]) -> float | None:
    """The end of the quiet hours (epoch seconds) if ``now`` falls in them in ``timezone``, else None.

    ``quiet`` is (start, end) in seconds after local midnight; a window may wrap past midnight.

    >>> night = (21 * 3600, 8 * 3600)  # 21:00 to 08:00
    >>> utc_0730 = 1764000000.0 - 1764000000.0 % 86400 + 7.5 * 3600
    >>> quiet_until(utc_0730, "UTC", night) - utc_0730  # 30 minutes of quiet left
    1800.0
    >>> quiet_until(utc_0730, "Asia/Tokyo", night) is None  # 16:30 in Tokyo
    True
    """
    zone = ZoneInfo(timezone)
    local = datetime.fromtimestamp(now, zone)
    of_day = seconds_of_day(local)
    start, end = quiet
    inside = start <= of_day < end if start < end else (of_day >= start or of_day < end)
    if not inside:
        return None
    day = local.date() + timedelta(days=1) if start > end and of_day >= start else local.date()
    end_time = time(end // 3600, end % 3600 // 60)
    return datetime.combine(day, end_time, tzinfo=zone).timestamp()


def release_deferred(state: UserState, now: float) -> list[Intervention]:
    """The deferred interventions whose quiet hours have ended by ``now``, taken out of ``state``."""
    due = [deferred.intervention for deferred in state.deferred if deferred.release_at <= now]
    state.deferred = [deferred for deferred in state.deferred if deferred.release_at > now]
    return due
