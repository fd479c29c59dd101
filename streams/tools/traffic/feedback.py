"""Feedback (``clickstream`` events of type ``feedback``) with its ground truth: users rate deliveries
and support contacts with a score; ``feedback_comment_share`` of the ratings carry a comment about a
product (a text of :mod:`models.feedback_corpus`, its score within a point of the user's), and
``label_share`` of the comments are corrected a little later on :data:`FEEDBACK_LABELS` with their true
tags, as a reviewer would (``models.tagger``).

:meth:`Feedback.truth` is the ground truth of the comments: their true tags, language and correction.
Comments and corrections draw from a random stream of their own, so that they leave the rest of the
traffic as it is without them.

>>> import random
>>> from streams.processes.catalog import load_catalog
>>> from streams.tools.traffic.profile import TrafficProfile
>>> from streams.tools.traffic.schedule import Schedule
>>> profile = TrafficProfile(feedback_comment_share=1.0, label_share=1.0)
>>> feedback = Feedback(Schedule(profile, seed=1, random=random.Random(1)), load_catalog())
>>> feedback.rate(0.0, "u00001", 5)
>>> [truth] = feedback.truth().values()
>>> truth.user_id, truth.labelled, [m.topic for m in feedback.schedule.due(3600.0)]
('u00001', True, ['clickstream', 'feedback_labels'])
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from models.feedback_corpus import texts_in
from streams.contracts.events import CLICKSTREAM
from streams.processes.catalog import Catalog
from streams.tools.traffic.profile import launched_products, text_language
from streams.tools.traffic.schedule import Schedule

FEEDBACK_LABELS = "feedback_labels"  # Outgoing.topic of corrections to feedback tags (models.tagger)
REVIEWERS = ("ana", "bo", "chen", "dee", "li")


@dataclass(frozen=True, slots=True)
class FeedbackTruth:
    """A commented feedback event: its true tags (models.feedback_corpus) and whether a correction
    with them was sent on ``feedback_labels``."""

    feedback_id: str
    user_id: str
    product_id: str
    text: str
    language: str
    tags: tuple[str, ...]
    event_time: float  # of the feedback event
    labelled_at: float | None  # when the correction is sent; None: not corrected

    @property
    def labelled(self) -> bool:
        return self.labelled_at is not None


class Feedback:
    """The ratings sent, and the comments' ground truth by feedback id."""

    def __init__(self, schedule: Schedule, catalog: Catalog) -> None:
        self.schedule = schedule
        self.catalog = catalog
        self.random = random.Random(f"{schedule.seed}:feedback")  # str seeds are hashed: no correlation
        self._truth: dict[str, FeedbackTruth] = {}

    def rate(self, time: float, user: str, score: int, **fields: object) -> None:
        """Send ``user``'s rating ``score`` at ``time`` (outside any session), with ``fields`` (the
        order rated), and a comment for ``feedback_comment_share`` of them."""
        schedule, profile = self.schedule, self.schedule.profile
        comment = None
        if profile.feedback_comment_share and self.random.random() < profile.feedback_comment_share:
            comment = self._comment(score, time)
            fields = {**fields, "comment": comment[0], "product_id": comment[3]}
        feedback_id = schedule.send(CLICKSTREAM, time, "feedback", user, score=score, **fields)
        schedule.stats.feedback += 1
        if comment is not None:
            self._commented(time, user, feedback_id, *comment)

    def truth(self, until: float = math.inf) -> dict[str, FeedbackTruth]:
        """The commented feedback sent by ``until``, by feedback id (the feedback event's id): the
        comment's true tags, its language, and when it is corrected (if it is)."""
        return {key: truth for key, truth in self._truth.items() if truth.event_time <= until}

    def _comment(self, score: int, time: float) -> tuple[str, tuple[str, ...], str, str]:
        """A labelled comment (text, tags, language, product) in keeping with the feedback's score."""
        rng = self.random
        language = text_language(rng, self.schedule.profile)
        for _ in range(30):  # the corpus scores each text; take one within a point of the user's
            text, tags, corpus_score = texts_in(rng, 1, language)[0]
            if abs(corpus_score - score) <= 1:
                break
        product = rng.choice(launched_products(self.catalog, time))
        return text, tags, language, product.product_id

    def _commented(
        self,
        time: float,
        user: str,
        feedback_id: str,
        text: str,
        tags: tuple[str, ...],
        language: str,
        product: str,
    ) -> None:
        rng, schedule = self.random, self.schedule
        profile = schedule.profile
        labelled_at = None
        if profile.label_share and rng.random() < profile.label_share:
            labelled_at = time + rng.uniform(*profile.label_after_seconds)
            label = {
                "schema": 1,
                "feedback_id": feedback_id,
                "text": text,
                "tags": list(tags),
                "labelled_by": rng.choice(REVIEWERS),
                "labelled_at": round(labelled_at * 1000),
            }
            schedule.push_process(FEEDBACK_LABELS, feedback_id, labelled_at, label)
            schedule.stats.labels += 1
        self._truth[feedback_id] = FeedbackTruth(
            feedback_id, user, product, text, language, tags, time, labelled_at
        )
        schedule.stats.commented_feedback += 1
