"""Shipments (``logistics`` source): every order becomes a shipment, created, in transit, then delivered
on time, or delayed (ETA hours past the promise), or hit by an exception. Some customers whose delivery
is late contact support about it (a ``support_contact`` on ``clickstream``, outside any session), and
some rate the delivery (:mod:`streams.tools.traffic.feedback`). A late delivery lowers the user's
engagement (:mod:`streams.tools.traffic.population`).

The ground truth: a delay or an exception carries ``expects="delay_notice"`` (:class:`~streams.tools.
traffic.schedule.Outgoing`), and :class:`~streams.tools.traffic.schedule.TrafficStats` counts them.
"""

from __future__ import annotations

from streams.contracts.events import CLICKSTREAM, LOGISTICS
from streams.contracts.interventions import DELAY_NOTICE
from streams.contracts.time import HOUR, iso_time
from streams.tools.traffic.feedback import Feedback
from streams.tools.traffic.population import Population
from streams.tools.traffic.schedule import Schedule

EXCEPTIONS = ("address_not_found", "damaged", "customs_hold", "recipient_absent")


class Shipments:
    """Ships orders: each shipment's updates, the complaints and ratings it leads to."""

    def __init__(self, schedule: Schedule, population: Population, feedback: Feedback) -> None:
        self.schedule = schedule
        self.population = population
        self.feedback = feedback

    def ship(self, time: float, user: str, order: str) -> None:
        """Send the shipment of ``user``'s ``order`` (paid at ``time``), promised 48 hours later."""
        schedule, population = self.schedule, self.population
        rng, profile = schedule.random, schedule.profile
        shipment = f"sh{schedule.next_id()}"
        promised = time + 48 * HOUR
        base = {
            "shipment_id": shipment,
            "order_id": order,
            "user_id": user,
            "promised_eta": iso_time(promised),
            "carrier": "fastpost",
        }

        def send(at: float, event_type: str, expects: str | None = None, **fields: object) -> None:
            event = {
                "event_id": schedule.next_id(),
                "event_type": event_type,
                "event_time": iso_time(at),
                **base,
                **fields,
            }
            schedule.push(LOGISTICS, shipment, at, event, expects)

        time += rng.uniform(*profile.shipment_step_seconds)
        send(time, "shipment_created", eta=iso_time(promised))
        time += rng.uniform(*profile.shipment_step_seconds)
        send(time, "in_transit", eta=iso_time(promised), location="hub-1")
        draw = rng.random()
        late = False
        if draw < profile.shipment_delay_share:
            time += rng.uniform(*profile.shipment_step_seconds)
            send(
                time,
                "delayed",
                expects=DELAY_NOTICE,
                eta=iso_time(promised + rng.uniform(*profile.delay_hours) * HOUR),
                detail="carrier backlog",
            )
            schedule.stats.delayed_shipments += 1
            late = True
        elif draw < profile.shipment_delay_share + profile.shipment_exception_share:
            time += rng.uniform(*profile.shipment_step_seconds)
            send(time, "exception", expects=DELAY_NOTICE, exception_code=rng.choice(EXCEPTIONS))
            schedule.stats.exception_shipments += 1
            late = True
        if late:
            population.disengage(user, population.behaviour(user).late_delivery_factor, time)
        if late and rng.random() < profile.complaint_share * population.effect(user, "complaint"):
            contact_at = time + rng.uniform(*profile.shipment_step_seconds)
            # Outside any web session, so it does not end the one the user may be in.
            schedule.send(
                CLICKSTREAM,
                contact_at,
                "support_contact",
                user,
                reason="delivery",
                order_id=order,
                channel="chat",
            )
        time += 2 * rng.uniform(*profile.shipment_step_seconds)
        send(time, "delivered")
        if rng.random() < profile.feedback_share:
            behaviour = population.behaviour(user)
            score = rng.randint(*(behaviour.late_scores if late else behaviour.on_time_scores))
            rated_at = time + 3 * rng.uniform(*profile.shipment_step_seconds)
            self.feedback.rate(rated_at, user, score, order_id=order)
