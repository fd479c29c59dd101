"""Proactive interventions: what Forewarn asks the customer-service agent to do, and why.

An intervention's id is derived from what caused it (the trigger, the user and the anchoring event),
so processing the same input twice, after a crash or a rebalance, yields the same id and a notifier
can deduplicate on it.

>>> first = intervention_id("payment_assist", "u1", "e42")
>>> same = intervention_id("payment_assist", "u1", "e42")
>>> other = intervention_id("payment_assist", "u1", "e43")
>>> first == same, first == other
(True, False)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from streams.contracts.time import iso_time

INTERVENTION_SCHEMA = 1
# Fixed namespace: changing it changes every id, so it is part of the interventions contract.
INTERVENTION_NAMESPACE = uuid.UUID("6f1d3c2e-5b0a-4f7e-9a51-0c4e8d2b7a19")

# The default policy's triggers (streams/domain/policy.toml); the synthetic traffic's ground truth names them.
PAYMENT_ASSIST = "payment_assist"
DELAY_NOTICE = "delay_notice"
RENEWAL_REMINDER = "renewal_reminder"
TRIGGERS = (PAYMENT_ASSIST, DELAY_NOTICE, RENEWAL_REMINDER)


def intervention_id(trigger: str, user_id: str, anchor: str) -> str:
    """Deterministic id: a UUIDv5 of trigger, user and the anchoring event."""
    return str(uuid.uuid5(INTERVENTION_NAMESPACE, f"{trigger}\x1f{user_id}\x1f{anchor}"))


@dataclass
class Intervention:
    intervention_id: str
    trigger: str
    action: str
    user_id: str
    event_time: float
    reason: str
    source_event_id: str
    evidence: dict[str, Any] = field(default_factory=dict)
    # Set by the trigger from its policy: the message template, and an offer such as a discount.
    template: str = ""
    offer: dict[str, Any] | None = None
    # Set by the contact policy when it decides.
    channel: str = ""
    experiment: str = ""
    arm: str = ""

    def to_wire(self, decided_at: float) -> dict[str, Any]:
        """The documented JSON contract of the ``interventions`` topic (schema 1)."""
        return {
            "schema": INTERVENTION_SCHEMA,
            "intervention_id": self.intervention_id,
            "trigger": self.trigger,
            "action": self.action,
            "channel": self.channel,
            "template": self.template,
            "offer": self.offer,
            "experiment": self.experiment,
            "arm": self.arm,
            "user_id": self.user_id,
            "event_time": iso_time(self.event_time),
            "decided_at": iso_time(decided_at),
            "reason": self.reason,
            "source_event_id": self.source_event_id,
            "evidence": self.evidence,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Intervention:
        """From the dataclass's own fields (as a deferred intervention is kept in the user's state)."""
        return cls(**data)
