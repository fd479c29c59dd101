"""The seeded user population of the synthetic traffic: who takes the next session, each user's latent
type (the ground truth of the intent and churn models), engagement and churn.

Users are ``u00000`` to ``u{users - 1}`` (and new ones past them while every one of those is busy or
churned). A user's type is drawn when they are first seen, with the
profile's ``user_types`` shares. Engagement, in (0, 1], is the chance that a user takes a session when
picked; it falls after each session of a type with a ``session_factor`` below 1 and after late
deliveries, and a user whose engagement falls below ``churn_engagement`` never comes back. No user
has two sessions at once.

>>> import random
>>> from streams.tools.traffic.profile import TrafficProfile
>>> from streams.tools.traffic.schedule import Schedule
>>> profile = TrafficProfile(users=10, user_types={"at_risk": 1.0})
>>> schedule = Schedule(profile, seed=1, random=random.Random(1))
>>> population = Population(schedule, cancel_subscription=lambda time, user: None)
>>> user = population.pick(0.0)
>>> population.meet(user), population.user_type(user), population.meet(user)
(True, 'at_risk', False)
>>> population.disengage(user, 0.01, 10.0)
>>> population.churned(user), round(population.engagement(user), 2)
(True, 0.01)
"""

from __future__ import annotations

from collections.abc import Callable

from streams.tools.traffic.profile import USER_TYPES, UserBehaviour
from streams.tools.traffic.schedule import Schedule


class Population:
    """The users seen so far: their types, engagement and sessions. ``cancel_subscription(time, user)``
    is called when a user of a type that cancels falls below ``cancel_engagement`` (or churns)."""

    def __init__(self, schedule: Schedule, cancel_subscription: Callable[[float, str], None]) -> None:
        self.schedule = schedule
        self.profile = schedule.profile
        self.cancel_subscription = cancel_subscription
        self._busy_until: dict[str, float] = {}  # user -> end of their current session
        self._types: dict[str, str] = {}  # users who have had a session -> their latent type
        self._engagement: dict[str, float] = {}  # user -> engagement, if below 1
        self._churned: dict[str, float] = {}  # user -> when their engagement fell below churn_engagement
        unknown = set(self.profile.user_types) - set(USER_TYPES)
        if unknown or sum(self.profile.user_types.values()) <= 0:
            raise ValueError(f"user_types must give positive shares of {', '.join(USER_TYPES)}")

    def user_type(self, user: str) -> str | None:
        """The latent type of ``user``; None for a user not seen yet."""
        return self._types.get(user)

    def engagement(self, user: str) -> float:
        """The chance that ``user`` takes a session when picked, in (0, 1]; 1.0 for a new user."""
        return self._engagement.get(user, 1.0)

    def churned(self, user: str) -> bool:
        """Whether ``user``'s engagement fell below the profile's ``churn_engagement``: no more sessions."""
        return user in self._churned

    def seen_users(self) -> list[str]:
        """Every user who has had a session, in the order they were first seen."""
        return list(self._types)

    def behaviour(self, user: str) -> UserBehaviour:
        """How ``user`` (seen already) behaves: their type's behaviour in the profile."""
        return self.profile.behaviour[self._types[user]]

    def pick(self, time: float) -> str:
        """A user not in a session, picked with a chance proportional to their engagement."""
        rng = self.schedule.random
        for _ in range(50):
            user = f"u{rng.randrange(self.profile.users):05d}"
            if user in self._churned or self._busy_until.get(user, 0.0) >= time:
                continue
            if rng.random() < self.engagement(user):
                return user
        return f"u{self.profile.users + self.schedule.sequence:05d}"  # population saturated: a new user

    def meet(self, user: str) -> bool:
        """Draw the type of ``user`` if they are new (True), else nothing (False)."""
        if user in self._types:
            return False
        shares = self.profile.user_types
        self._types[user] = self.schedule.random.choices(list(shares), weights=list(shares.values()))[0]
        return True

    def busy(self, user: str, until: float) -> None:
        """``user`` is in a session until ``until``: not picked for another before."""
        self._busy_until[user] = until

    def disengage(self, user: str, factor: float, time: float) -> None:
        """Multiply ``user``'s engagement by ``factor`` at ``time``: they may churn, and cancel."""
        if factor >= 1.0 or user in self._churned:
            return
        profile = self.profile
        engagement = self.engagement(user) * factor
        self._engagement[user] = engagement
        if engagement < profile.churn_engagement:
            self._churned[user] = time
            self.schedule.stats.churned_users += 1
        if self.behaviour(user).cancels_subscription and (
            user in self._churned or engagement < profile.cancel_engagement
        ):
            self.cancel_subscription(time, user)

    def effect(self, user: str, behaviour: str) -> float:
        """How much of ``behaviour`` (complaint, give_up) a treated user keeps; 1 for the others."""
        profile = self.profile
        if profile.treated is None or not profile.treated(user):
            return 1.0
        return (
            profile.treated_complaint_factor if behaviour == "complaint" else profile.treated_give_up_factor
        )
