"""The acknowledged sender: what a round sends before it records it in the user's state."""

from __future__ import annotations

import asyncio

from streams.contracts.settings import Settings
from streams.tools.broker import EmbeddedBroker
from streams.worker.acknowledged import AcknowledgedSender
from tests.support.harness import consume_all


async def test_a_send_before_the_sender_started_waits_for_it(broker: EmbeddedBroker) -> None:
    """The app starts its services after the first recovery, when its agents may already be taking
    events: a round's send then waits for the sender instead of failing (its event would be
    dead-lettered, and its interventions never sent)."""
    sender = AcknowledgedSender(Settings.from_env({}, broker_url=broker.url))
    round_sends = asyncio.ensure_future(sender.send_all([("interventions", b"u1", b'{"n": 1}')]))
    letter = asyncio.ensure_future(sender.send("dead_letters", b"u1", b"bad", [("why", b"test")]))
    await asyncio.sleep(0.2)
    assert not round_sends.done() and not letter.done()
    await sender.start()
    try:
        await asyncio.wait_for(asyncio.gather(round_sends, letter), 10)
    finally:
        await sender.stop()
    sent = await consume_all(broker.bootstrap, "interventions", until=1, timeout=10)
    assert [(m.key, m.value) for m in sent] == [(b"u1", b'{"n": 1}')]
