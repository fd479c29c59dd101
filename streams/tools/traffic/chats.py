"""Chats during web sessions (``conversations`` source): what the customer writes, and the agent's
replies, from :func:`streams.tools.traffic.conversations.chat_messages`, with the ground truth.

For ``conversation_share`` of the sessions (off by default), the user chats while they browse: the
first message a moment after the session starts, then one every few seconds, so that the chat is in the
session's features when the intent model's snapshots are taken. What they write follows their latent
type (a help-seeker's problem escalating from frustration to anger, a buyer asking about a product
and sometimes naming another they really need, ...), about a product of the catalog; each message
names the product it is about and the chat's intent id (its need). The planted truth of each customer
message (emotion, need, the product needed) is :meth:`Chats.truth`. Chats draw from a random stream
of their own, so with them off the rest of the traffic is byte for byte what it was.

>>> import random
>>> from streams.processes.catalog import load_catalog
>>> from streams.tools.traffic.profile import TrafficProfile
>>> from streams.tools.traffic.schedule import Schedule
>>> profile = TrafficProfile(conversation_share=1.0)
>>> schedule = Schedule(profile, seed=3, random=random.Random(3))
>>> chats = Chats(schedule, load_catalog())
>>> chats.during_session(1000.0, "u1", "help_seeker")
>>> messages = schedule.due(2000.0)
>>> {m.topic for m in messages}, len(chats.truth()) == sum(b'"customer"' in m.value for m in messages)
({'conversations'}, True)
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from streams.contracts.events import CONVERSATIONS, CUSTOMER
from streams.processes.catalog import Catalog
from streams.tools.traffic.conversations import chat_messages
from streams.tools.traffic.schedule import Schedule

CHAT_START_SECONDS = (0.5, 2.0)  # from the session's start to the first message
MESSAGE_GAP_SECONDS = (2.0, 6.0)  # between the messages of a chat


@dataclass(frozen=True, slots=True)
class ChatTruth:
    """A customer message as planted: its id, user, when, the emotion written into it, the user's latent
    type and need, the product it names and the product the need is about."""

    message_id: str
    user_id: str
    event_time: float
    emotion: str
    user_type: str
    need: str
    product_id: str
    needed_product_id: str


class Chats:
    """The chats sent, with their ground truth."""

    def __init__(self, schedule: Schedule, catalog: Catalog) -> None:
        self.schedule = schedule
        self.products = sorted(catalog.products.values(), key=lambda product: product.product_id)
        self.random = random.Random(f"{schedule.seed}:chats")  # str seeds are hashed: no correlation
        self._truth: list[ChatTruth] = []

    def during_session(self, start: float, user: str, user_type: str) -> None:
        """For ``conversation_share`` of the sessions (starting at ``start``): ``user``, of
        ``user_type``, chats while browsing."""
        rng, schedule = self.random, self.schedule
        share = schedule.profile.conversation_share
        if not share or not self.products or rng.random() >= share:
            return
        product = rng.choice(self.products)
        chat = schedule.process_id("chat")
        time = start + rng.uniform(*CHAT_START_SECONDS)
        for message in chat_messages(rng, user_type, product, self.products):
            fields = {"session_id": chat, "role": message.role, "text": message.text, "channel": "chat"}
            fields |= {"product_id": message.product_id, "intent_id": message.need}
            event_id = schedule.send_process(CONVERSATIONS, user, time, "message", user, "m", **fields)
            schedule.stats.chat_messages += 1
            if message.role == CUSTOMER:
                assert message.emotion is not None
                self._truth.append(
                    ChatTruth(
                        event_id,
                        user,
                        time,
                        message.emotion,
                        user_type,
                        message.need,
                        message.product_id,
                        message.needed_product_id,
                    )
                )
            time += rng.uniform(*MESSAGE_GAP_SECONDS)

    def truth(self, until: float = math.inf) -> list[ChatTruth]:
        """Every customer message sent by ``until``, as planted."""
        return [message for message in self._truth if message.event_time <= until]
