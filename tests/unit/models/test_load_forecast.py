"""The support-load forecaster: seasons learned, calendar uplifts learned and used, JSON state."""

from __future__ import annotations

import orjson

from models.load_forecast import Calendar, LoadForecaster, day_of_week, slot_of_day

MONDAY = 1_764_547_200.0  # 2025-12-01 00:00 UTC, a Monday
SLOT, DAY, WEEK = 900.0, 86400.0, 7 * 86400.0


def truth(t: float) -> float:
    busy = 8 <= (t % DAY) / 3600 < 20
    return (12.0 if busy else 2.0) * (1.5 if day_of_week(t) == 2 else 1.0)


def test_slots_and_weekdays_are_utc() -> None:
    assert day_of_week(MONDAY) == 0 and day_of_week(MONDAY + 6 * DAY) == 6
    assert slot_of_day(MONDAY + 10 * 3600 + 14 * 60) == 40


def test_daily_and_weekly_seasons_are_learned() -> None:
    model = LoadForecaster()
    for k in range(int(4 * WEEK / SLOT)):
        model.learn_one(MONDAY + k * SLOT, truth(MONDAY + k * SLOT))
    now = MONDAY + 4 * WEEK
    for t in (now + 3 * 3600, now + 12 * 3600, now + 2 * DAY + 12 * 3600, now + 2 * DAY + 22 * 3600):
        assert abs(model.predict_one(t) - truth(t)) / truth(t) < 0.05, t


def test_a_campaign_uplift_is_learned_and_used_for_the_next_campaign() -> None:
    model = LoadForecaster()
    campaign = Calendar(campaign=True)
    for k in range(int(3 * WEEK / SLOT)):
        t = MONDAY + k * SLOT
        running = 14 * DAY <= t - MONDAY < 16 * DAY  # two days of a campaign doubling the contacts
        model.learn_one(t, truth(t) * (2.0 if running else 1.0), campaign if running else Calendar())
    assert 0.8 < model.campaign_uplift < 1.2
    t = MONDAY + 3 * WEEK + 12 * 3600
    assert abs(model.predict_one(t, campaign) / model.predict_one(t) - (1 + model.campaign_uplift)) < 1e-9
    stated = Calendar(campaign=True, stated_uplift=0.5)
    assert abs(model.predict_one(t, stated) / model.predict_one(t) - 1.5) < 1e-9


def test_a_quiet_start_does_not_blow_up() -> None:
    model = LoadForecaster()
    for k in range(200):
        model.learn_one(MONDAY + k * SLOT, 0.0 if k < 5 else 3.0)
    assert 0.0 <= model.predict_one(MONDAY + 200 * SLOT) < 10.0


def test_the_state_is_plain_json_and_round_trips() -> None:
    model = LoadForecaster()
    for k in range(300):
        model.learn_one(MONDAY + k * SLOT, truth(MONDAY + k * SLOT), Calendar(launch=0.5))
    again = LoadForecaster.from_dict(orjson.loads(orjson.dumps(model.to_dict())))
    assert again == model
    assert again.forecast([MONDAY + 400 * SLOT]) == model.forecast([MONDAY + 400 * SLOT])
