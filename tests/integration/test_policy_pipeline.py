"""The contact policy through a real broker: every suppression reason the scripted users call for, a
deferral by quiet hours in a user's own time zone, and outcomes joined to decisions in ClickHouse."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import clickhouse_connect
import orjson
import pytest

from streams.contracts.interventions import DELAY_NOTICE, intervention_id
from streams.domain.experiments import assign_arm
from streams.domain.policy import load_policy
from streams.tools.worker_launcher import WorkerProcess
from tests.support.harness import StartWorker, consume_all, consume_events, event_bytes, produce, worker_env

pytestmark = pytest.mark.integration
HOUR_MS = 3_600_000


def policy_text(now: datetime) -> str:
    """Quiet hours twelve hours away from now: quiet for a user at UTC+12, not for users in UTC."""
    start, end = now + timedelta(hours=11), now + timedelta(hours=13)
    return f"""[contact]
timezone = "UTC"
quiet_hours = ["{start:%H:%M}", "{end:%H:%M}"]

[[contact.caps]]
channel = "chat"
max = 1
window = "1h"

[[contact.caps]]
channel = "email"
max = 1
window = "1h"

[[contact.caps]]
channel = "human_queue"
max = 1
window = "1h"

[triggers.payment_assist]
dwell = "2s"

[[experiments]]
name = "delay_test"
triggers = ["delay_notice"]
arms = {{ treatment = 0.5, holdout = 0.5 }}
"""


def delayed(user: str, shipment: str, at_ms: int) -> tuple[str, bytes, bytes]:
    value = event_bytes(
        event_id=f"{shipment}-delayed",
        event_type="delayed",
        event_time=at_ms,
        user_id=user,
        shipment_id=shipment,
        order_id=f"{shipment}-order",
        promised_eta=at_ms + 24 * HOUR_MS,
        eta=at_ms + 30 * HOUR_MS,
    )
    return ("logistics", shipment.encode(), value)


def preferences(user: str, at_ms: int, **fields: object) -> tuple[str, bytes, bytes]:
    value = event_bytes(
        event_id=f"{user}-prefs", event_type="preferences_updated", event_time=at_ms, user_id=user, **fields
    )
    return ("preferences", user.encode(), value)


def wait_for_metric(worker: WorkerProcess, line: str, timeout: float = 15.0) -> None:
    """Until the worker's metrics hold ``line``."""
    deadline = time.monotonic() + timeout
    while line not in worker.metrics():
        assert time.monotonic() < deadline, (line, worker.log_text()[-3000:])
        time.sleep(0.1)


def notice_id(user: str, shipment: str) -> str:
    return intervention_id(DELAY_NOTICE, user, f"{shipment}\x1f{shipment}-delayed")


def test_suppression_reasons_deferral_and_outcome_joins(
    broker, tmp_path: Path, start_worker: StartWorker
) -> None:
    now = datetime.now(UTC)
    now_ms = int(now.timestamp() * 1000)
    text = policy_text(now)
    [experiment] = load_policy(text=text).experiments
    users = [f"pp-user-{index:03d}" for index in range(60)]
    treated = [user for user in users if assign_arm(user, experiment) == "treatment"]
    held_out = [user for user in users if assign_arm(user, experiment) == "holdout"]
    assert len(treated) >= 6 and len(held_out) >= 2
    opted_out, no_channel, capped, night_owl, *plain = treated
    expected: dict[str, tuple[str, str]] = {}  # intervention id -> (decision, reason)
    messages = [
        preferences(opted_out, now_ms - 1000, opt_out=True),
        preferences(no_channel, now_ms - 1000, channels={"chat": False, "email": False}),
        preferences(night_owl, now_ms - 1000, timezone="Etc/GMT-12"),  # UTC+12
    ]
    for user in [opted_out, no_channel, night_owl, *plain, *held_out]:
        messages.append(delayed(user, f"{user}-sh1", now_ms))
    expected[notice_id(opted_out, f"{opted_out}-sh1")] = ("suppressed", "opted_out")
    expected[notice_id(no_channel, f"{no_channel}-sh1")] = ("suppressed", "channel_opted_out")
    expected[notice_id(night_owl, f"{night_owl}-sh1")] = ("deferred", "quiet_hours")
    for user in plain:
        expected[notice_id(user, f"{user}-sh1")] = ("emitted", "")
    for user in held_out:
        expected[notice_id(user, f"{user}-sh1")] = ("suppressed", "holdout")
    # Three delays for one user within the hour: chat (cap 1), then email (cap 1), then nothing left.
    for index in range(3):
        messages.append(delayed(capped, f"{capped}-sh{index}", now_ms + index))
    capped_ids = {notice_id(capped, f"{capped}-sh{index}") for index in range(3)}

    env = worker_env(broker.bootstrap, tmp_path, policy=text)
    worker = start_worker(env)
    try:
        # Preferences first, so that they are in the users' state before the delays arrive.
        asyncio.run(produce(broker.bootstrap, messages[:3]))
        # Once they are on the events topic, each user's delays come after them on their partition.
        asyncio.run(consume_events(broker.bootstrap, until=3, settle=0))
        asyncio.run(produce(broker.bootstrap, messages[3:]))
        decided = asyncio.run(
            consume_all(broker.bootstrap, "decisions", until=len(expected) + len(capped_ids), timeout=60)
        )
        emitted = asyncio.run(
            consume_all(broker.bootstrap, "interventions", until=len(plain) + 2, timeout=30)
        )
        # The notifier reports on two of the interventions it was sent.
        reported = [orjson.loads(m.value)["intervention_id"] for m in emitted[:2]]
        outcomes = [
            (
                "intervention_outcomes",
                b"",
                event_bytes(
                    event_id=f"out-{kind}-{iid}",
                    event_type=kind,
                    event_time=now_ms + 5000,
                    user_id=next(
                        orjson.loads(m.value)["user_id"] for m in emitted if iid in m.value.decode()
                    ),
                    intervention_id=iid,
                    channel="chat",
                ),
            )
            for iid in reported
            for kind in ("delivered", "accepted")
        ]
        asyncio.run(produce(broker.bootstrap, outcomes))
        time.sleep(3.0)  # through ingest and two sink flushes
        metrics = worker.metrics()
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]

    by_id: dict[str, list[tuple[str, str]]] = {}
    for message in decided:
        decision = orjson.loads(message.value)
        by_id.setdefault(decision["intervention_id"], []).append((decision["decision"], decision["reason"]))
        if decision["trigger"] == "delay_notice":
            assert decision["experiment"] == "delay_test"
            assert decision["arm"] == assign_arm(decision["user_id"], experiment)
    for iid, outcome in expected.items():
        assert by_id.get(iid) == [outcome], (iid, by_id.get(iid), outcome)
    assert sorted(outcome for iid in capped_ids for outcome in by_id[iid]) == [
        ("emitted", ""),
        ("emitted", ""),
        ("suppressed", "frequency_cap"),
    ]
    sent = {orjson.loads(m.value)["intervention_id"]: orjson.loads(m.value)["channel"] for m in emitted}
    assert sorted(sent[iid] for iid in capped_ids if iid in sent) == ["chat", "email"]
    assert set(sent) == {iid for iid, outcomes in by_id.items() if ("emitted", "") in outcomes}
    assert (
        'forewarn_decisions_total{decision="suppressed",reason="holdout",trigger="delay_notice"}' in metrics
    )
    assert 'forewarn_outcomes_total{outcome="accepted"} 2.0' in metrics

    client = clickhouse_connect.get_client(dsn=env["FOREWARN_CLICKHOUSE_DSN"])
    try:
        stored = client.query("SELECT toString(intervention_id), decision, reason FROM decisions").result_rows
        joined = client.query(
            "SELECT toString(o.intervention_id), o.outcome, d.decision, d.arm"
            " FROM intervention_outcomes AS o INNER JOIN decisions AS d USING (intervention_id)"
            " WHERE d.decision = 'emitted' ORDER BY 1, 2"
        ).result_rows
    finally:
        client.close()
    assert sorted(stored) == sorted((iid, d, r) for iid, outcomes in by_id.items() for d, r in outcomes)
    assert joined == sorted(
        (iid, kind, "emitted", "treatment") for iid in reported for kind in ("accepted", "delivered")
    )


def chat_message(index: int, at_ms: int, **fields: object) -> tuple[str, bytes, bytes]:
    value = event_bytes(
        event_id=f"lc-msg-{index}",
        event_type="message",
        event_time=at_ms,
        user_id="lc-chatter",
        **{"session_id": "lc-chat", "role": "customer", "channel": "chat", **fields},
    )
    return ("conversations", b"lc-chatter", value)


def test_lifecycle_triggers_fire_for_silent_users(broker, tmp_path: Path, start_worker: StartWorker) -> None:
    """A renewal reminder falls due seconds after start by the timer alone; a user who visited every
    other day until 40 days ago has declined past both thresholds, found when their next event (not a
    visit) arrives: the higher-priority reengagement is sent, the feature tip superseded. A customer
    angry in the chat for three messages is handed to a human; a chat message of no known role is
    dead-lettered. Then the running worker takes a changed policy file (delay_notice in shadow: recorded,
    not sent) and refuses a broken one (the shadow policy stays in force)."""
    now_ms = int(time.time() * 1000)
    day_ms = 86_400_000
    renews_at = now_ms + 7 * day_ms + 4000
    messages = [
        (
            "subscriptions",
            b"lc-renewer",
            event_bytes(
                event_id="lc-sub",
                event_type="subscription_updated",
                event_time=now_ms,
                user_id="lc-renewer",
                subscription_id="sub-1",
                plan="pro",
                status="active",
                renews_at=renews_at,
            ),
        )
    ]
    visits = [now_ms - 80 * day_ms + index * 2 * day_ms for index in range(21)]  # the last 40 days ago
    for at in visits:
        messages.append(
            (
                "clickstream",
                b"lc-lapsed",
                event_bytes(
                    event_id=f"lc-visit-{at}",
                    event_type="page_view",
                    event_time=at,
                    user_id="lc-lapsed",
                    session_id=f"lc-s-{at}",
                    page="/",
                ),
            )
        )
    chat = [chat_message(index, now_ms + index, text="This is ridiculous!!") for index in range(3)]
    chat.append(chat_message(9, now_ms, text="hello", role="bot"))
    messages = chat + messages
    messages.append(preferences("lc-lapsed", now_ms, timezone="Europe/Berlin"))
    env = worker_env(broker.bootstrap, tmp_path, FOREWARN_POLICY_RELOAD_SECONDS="0.2")
    worker = start_worker(env)
    policy_file = Path(env["FOREWARN_POLICY_FILE"])
    try:
        asyncio.run(produce(broker.bootstrap, messages[:-1]))
        # The visits first: once they are on the events topic, the preference event comes after them.
        asyncio.run(consume_events(broker.bootstrap, until=len(messages) - 2, settle=0))
        asyncio.run(produce(broker.bootstrap, messages[-1:]))
        decided = asyncio.run(consume_all(broker.bootstrap, "decisions", until=4, timeout=30))
        [dead] = asyncio.run(consume_all(broker.bootstrap, "dead_letters", until=1, timeout=10))
        # The running worker takes a changed policy file: delay_notice in shadow from then on.
        policy_file.write_text(policy_file.read_text() + '[triggers.delay_notice]\nmode = "shadow"\n')
        wait_for_metric(worker, 'forewarn_policy_reloads_total{result="applied"} 1.0')
        asyncio.run(produce(broker.bootstrap, [delayed("lc-shadowed", "lc-sh1", now_ms)]))
        decided += asyncio.run(consume_all(broker.bootstrap, "decisions", until=5, timeout=30, settle=0))[4:]
        # A broken one is refused: the shadow policy stays in force.
        policy_file.write_text(policy_file.read_text() + "[triggers.delay_notice\n")
        wait_for_metric(worker, 'forewarn_policy_reloads_total{result="refused"} 1.0')
        asyncio.run(produce(broker.bootstrap, [delayed("lc-shadowed-2", "lc-sh2", now_ms)]))
        decided += asyncio.run(consume_all(broker.bootstrap, "decisions", until=6, timeout=30, settle=0))[5:]
        sent = asyncio.run(consume_all(broker.bootstrap, "interventions", until=4, timeout=1.5))
        metrics = worker.metrics()
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]

    assert "policy reload refused, the policy in force stays" in worker.log_text()
    assert 'forewarn_policy_reloads_total{result="applied"} 1.0' in metrics
    shadowed = [orjson.loads(m.value) for m in decided[4:]]
    assert [(d["user_id"], d["trigger"], d["decision"], d["reason"]) for d in shadowed] == [
        ("lc-shadowed", "delay_notice", "shadow", "emitted"),
        ("lc-shadowed-2", "delay_notice", "shadow", "emitted"),
    ]
    # Nothing sent for them: the interventions are the reminder, the reengagement and the escalation.
    assert sorted(orjson.loads(m.value)["trigger"] for m in sent) == [
        "escalate_to_human",
        "reengagement",
        "renewal_reminder",
    ]
    assert (
        'forewarn_decisions_total{decision="shadow",reason="emitted",trigger="delay_notice"} 2.0' in metrics
    )
    decided = decided[:4]

    assert orjson.loads(dead.value)["event_id"] == "lc-msg-9"
    assert dict(dead.headers)["forewarn.dlq.reason"] == b"invalid_value"
    [escalation] = [d for d in (orjson.loads(m.value) for m in decided) if d["user_id"] == "lc-chatter"]
    assert (escalation["trigger"], escalation["decision"], escalation["channel"]) == (
        "escalate_to_human",
        "emitted",
        "human_queue",
    )
    assert escalation["intervention_id"] == intervention_id(
        "escalate_to_human", "lc-chatter", "lc-chat\x1flc-msg-0"
    )
    decided = [m for m in decided if orjson.loads(m.value)["user_id"] != "lc-chatter"]

    found = {(d["trigger"], d["user_id"]): d for d in (orjson.loads(m.value) for m in decided)}
    assert set(found) == {
        ("renewal_reminder", "lc-renewer"),
        ("reengagement", "lc-lapsed"),
        ("feature_tip", "lc-lapsed"),
    }
    reminder = found[("renewal_reminder", "lc-renewer")]
    assert reminder["decision"] == "emitted" and reminder["channel"] == "email"
    assert reminder["intervention_id"] == intervention_id(
        "renewal_reminder", "lc-renewer", f"sub-1\x1f{renews_at}"
    )
    deadline = datetime.fromtimestamp((renews_at - 7 * day_ms) / 1000, UTC)
    assert reminder["event_time"] == deadline.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert (
        found[("reengagement", "lc-lapsed")]["decision"],
        found[("feature_tip", "lc-lapsed")]["reason"],
    ) == (
        "emitted",
        "superseded",
    )
