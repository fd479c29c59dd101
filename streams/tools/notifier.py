"""An example notifier: it consumes ``interventions``, pretends to deliver them, and reports outcomes on
``intervention_outcomes`` as a real notifier (chat, e-mail) would.

It stands in for the delivery side in the demo and in docker-compose.yml (``forewarn notifier``,
:func:`serve_notifier`), so that the outcome loop and the value metrics have something to measure.
What happens to a message is drawn from :class:`OutcomeRates` with a seeded generator, so a run is
reproducible and its rates are known.

>>> import random
>>> intervention = {"intervention_id": "0b8a6128-0b8a-5ee9-bfab-18e8f49f0582", "user_id": "u1",
...                 "channel": "chat", "offer": None, "decided_at": "2026-11-24T03:49:33.260Z"}
>>> events = simulate_outcomes(intervention, random.Random(3), OutcomeRates())
>>> [event["event_type"] for event in events]
['delivered', 'opened', 'dismissed', 'resolved']
>>> events[0]["intervention_id"] == intervention["intervention_id"]
True
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from streams.contracts.settings import Settings
from streams.contracts.time import iso_time
from streams.contracts.topics import for_the_broker
from streams.tools.broker_wait import wait_for_topics
from streams.tools.example_clients import example_clients
from streams.tools.signals import stopped_by_signals

log = logging.getLogger(__name__)
REPORT_SECONDS = 10.0  # how often serve_notifier logs what it reported


@dataclass(frozen=True, slots=True)
class OutcomeRates:
    delivered: float = 0.97
    opened: float = 0.65  # of those delivered
    accepted_with_offer: float = 0.45  # of those opened, when the intervention carries an offer
    accepted_without_offer: float = 0.25
    resolved: float = 0.8  # of those delivered: closed by the automated agent; the rest escalated


def simulate_outcomes(
    intervention: dict[str, Any], rng: random.Random, rates: OutcomeRates, now: float | None = None
) -> list[dict]:
    """The outcome events of one intervention, reported at ``now`` (default: when it was decided; never
    a time in the future, which would push the partition's event-time clock)."""
    at = datetime.fromisoformat(intervention["decided_at"]).timestamp() if now is None else now
    kinds = []
    if rng.random() < rates.delivered:
        kinds.append("delivered")
        if rng.random() < rates.opened:
            kinds.append("opened")
            take = rates.accepted_with_offer if intervention.get("offer") else rates.accepted_without_offer
            kinds.append("accepted" if rng.random() < take else "dismissed")
        kinds.append("resolved" if rng.random() < rates.resolved else "escalated")
    return [
        {
            "event_id": f"outcome-{intervention['intervention_id']}-{kind}",
            "event_type": kind,
            "event_time": iso_time(at),
            "user_id": intervention["user_id"],
            "intervention_id": intervention["intervention_id"],
            "channel": intervention["channel"],
        }
        for kind in kinds
    ]


async def run_notifier(
    bootstrap: str | list[str],
    settings: Settings,
    stop: asyncio.Event,
    seed: int = 7,
    rates: OutcomeRates | None = None,
    reported: Counter[str] | None = None,
    at_event_time: bool = False,
) -> Counter[str]:
    """Until ``stop``: every intervention gets its simulated outcomes. Returns the outcomes reported,
    counted as they are reported into ``reported`` if given. Its consumer group takes the workers'
    group timeouts (``FOREWARN_BROKER_*_TIMEOUT``, ``FOREWARN_BROKER_HEARTBEAT_INTERVAL``).

    ``at_event_time``: outcomes are stamped with the intervention's event time, not the wall clock, for
    traffic replayed from the past (``forewarn demo``'s history): an outcome stamped now would move its
    partition's event-time clock to now while the history is still being read, and fire every timer
    of the partition's users at once."""
    rng, rates = random.Random(seed), rates or OutcomeRates()
    consumer, producer = example_clients(
        bootstrap, settings, "example-notifier", settings.topic_interventions
    )
    reported = Counter() if reported is None else reported
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            if not batches:
                continue
            for messages in batches.values():
                for message in messages:
                    intervention = orjson.loads(message.value)
                    now = _event_time(intervention) if at_event_time else time.time()
                    for event in simulate_outcomes(intervention, rng, rates, now=now):
                        await producer.send(
                            settings.topic_outcomes, value=orjson.dumps(event), key=event["user_id"].encode()
                        )
                        reported[event["event_type"]] += 1
            await producer.flush()
            await consumer.commit()  # reported (acks=all) before the interventions count as handled
    finally:
        await producer.stop()
        await consumer.stop()
    return reported


def _event_time(intervention: dict[str, Any]) -> float:
    """The intervention's event time, in epoch seconds.

    >>> _event_time({"event_time": "2026-11-24T03:49:33.260Z"})
    1795492173.26
    """
    return datetime.fromisoformat(intervention["event_time"]).timestamp()


def serve_notifier(settings: Settings, seed: int = 7) -> int:
    """``forewarn notifier``: :func:`run_notifier` against ``settings``' broker until SIGTERM or SIGINT,
    after waiting for the broker and its topics. Logs what it reported every :data:`REPORT_SECONDS`
    (when it reported anything) and at the end; returns 0, the exit code of a clean stop."""
    return asyncio.run(_serve(settings, seed))


async def _serve(settings: Settings, seed: int) -> int:
    stop = asyncio.Event()
    reported: Counter[str] = Counter()
    with stopped_by_signals(stop):
        if await wait_for_topics(settings, {settings.topic_interventions, settings.topic_outcomes}, stop):
            settings = await for_the_broker(settings)  # its consumer group joins in seconds on Tansu
            log.info(
                "reporting the outcomes of %s on %s (seed %d)",
                settings.topic_interventions,
                settings.topic_outcomes,
                seed,
            )
            notifier = asyncio.create_task(
                run_notifier(settings.bootstrap_servers, settings, stop, seed, reported=reported)
            )
            logged = 0
            while not notifier.done():
                await asyncio.wait({notifier}, timeout=REPORT_SECONDS)
                if reported.total() != logged:
                    logged = reported.total()
                    log.info("reported %d outcomes so far (%s)", logged, _shown(reported))
            await notifier  # its error, if it failed
    log.info("stopped; reported %d outcomes (%s)", reported.total(), _shown(reported))
    return 0


def _shown(reported: Counter[str]) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in reported.most_common()) or "none"
