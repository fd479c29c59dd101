"""The broker out of reach for longer than a consumer-group session: the worker must reconnect by
itself, rejoin its groups and resume, with nothing lost, without being restarted.

The embedded broker keeps its data in memory (Tansu's other storage engines are PostgreSQL and S3),
so a broker restart would start it empty: what a real deployment meets instead is a replicated Kafka
cluster, or the network between a worker and the brokers failing. So the test puts a proxy
(:class:`faults.KafkaProxy`) between the worker and the broker, which advertises the proxy's address so
that every client comes back through it, and cuts the worker off: every connection closed and every
new one refused for longer than the session timeout (``FOREWARN_BROKER_SESSION_TIMEOUT``, 4 s for the
embedded broker), so the broker expires the worker's membership of both its groups (the app's and the
ClickHouse sink's). Traffic keeps arriving at the broker all along (the test's producer is exempt, as
producers elsewhere in a network would be).

Then, with the same worker process (never exited, same PID): every valid event accepted once and
stored in ClickHouse once, every broken one dead-lettered once, every user's state complete, exactly
the interventions the input calls for (an id delivered twice carries the same intervention).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from streams.contracts.settings import EMBEDDED_BROKER_SETTINGS
from streams.tools.broker import free_port, start_broker
from streams.tools.worker_launcher import WorkerProcess
from tests.support.faults import (
    POLICY,
    TOKEN,
    KafkaProxy,
    PacedTraffic,
    check_events_seen,
    check_interventions,
    check_stored_once,
    evict_members,
    group_joins,
    interventions_emitted,
    persisted_events_seen,
    read_topic,
    wait_committed_everything,
    wait_for_interventions,
    wait_until,
    write_tokens,
)
from tests.support.harness import envelope_events, events_seen, worker_env
from tests.support.reliability import FaultRun, record

pytestmark = pytest.mark.integration

# The shortest outage: longer than the session timeout of the embedded runs (EMBEDDED_BROKER_SETTINGS). It
# lasts until the worker has lost its group memberships too.
OUTAGE_SECONDS = 10.0
SESSION_TIMEOUT = EMBEDDED_BROKER_SETTINGS["broker_session_timeout"]


def test_worker_cut_off_the_broker_beyond_its_session_timeout_resumes_by_itself(tmp_path: Path) -> None:
    started = time.monotonic()
    proxy = KafkaProxy(upstream_port=free_port(), port=free_port()).start()
    try:
        broker = start_broker(proxy.upstream_port, tmp_path / "broker.log", advertised_port=proxy.port)
    except BaseException:
        proxy.stop()
        raise
    env = worker_env(
        proxy.bootstrap,
        tmp_path,
        policy=POLICY,
        FOREWARN_API_TOKENS_FILE=write_tokens(tmp_path / "api-tokens.json"),
    )
    assert float(env["FOREWARN_BROKER_SESSION_TIMEOUT"]) == SESSION_TIMEOUT < OUTAGE_SECONDS
    traffic = PacedTraffic(proxy.bootstrap, tag="p", users_per_wave=4, regulars=6)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        worker.start()
        pid = worker.pid
        traffic.start()
        wait_until(lambda: interventions_emitted(worker) >= 3, 60, "the worker's first interventions")

        # The outage: the worker is cut off; traffic keeps reaching the broker, and the worker loses
        # its membership of both groups, as its session would time out on Apache Kafka.
        cut = proxy.cut()
        cut_at = time.monotonic()
        waves_at_cut = traffic.waves()
        on_topic_at_cut = len(asyncio.run(read_topic(proxy.bootstrap, "interventions")))
        asyncio.run(evict_all(proxy.bootstrap))
        wait_until(lambda: time.monotonic() - cut_at >= OUTAGE_SECONDS, OUTAGE_SECONDS + 5, "the outage")
        outage = time.monotonic() - cut_at
        on_topic_at_restore = len(asyncio.run(read_topic(proxy.bootstrap, "interventions")))
        waves_in_outage = traffic.waves() - waves_at_cut
        proxy.restore()
        restored_at = time.monotonic()
        assert worker.running() and worker.pid == pid

        # Back: the worker catches up with what arrived meanwhile, and goes on.
        during = traffic.truth()
        wait_for_interventions(proxy.bootstrap, during.expected, 90)
        caught_up = time.monotonic() - restored_at
        resumed_at = traffic.waves()
        wait_until(lambda: traffic.waves() >= resumed_at + 4, 60, "traffic after the outage")
        truth = traffic.stop()
        wait_until(
            lambda: all(
                (events_seen(worker.web_port, user, TOKEN) or 0) >= truth.pushed[user]
                for user in traffic.regulars
            ),
            60,
            "the regular users' state",
        )
        wait_for_interventions(proxy.bootstrap, truth.expected, 60)
        wait_committed_everything(proxy.bootstrap)
        seen_live = {user: events_seen(worker.web_port, user, TOKEN) for user in traffic.regulars}
        assert worker.running() and worker.pid == pid, "the worker never exited"
        accepted = Counter(
            event["event_id"]
            for event in envelope_events(asyncio.run(read_topic(proxy.bootstrap, "forewarn-events")))
        )
        emitted = asyncio.run(read_topic(proxy.bootstrap, "interventions"))
        persisted = persisted_events_seen(proxy.bootstrap)
    finally:
        traffic.stop()
        code = worker.stop()
        broker.stop()
        proxy.stop()
    assert code == 0, worker.log_text()[-3000:]

    # The outage was real: connections cut, reconnections refused, nothing emitted meanwhile, and
    # traffic arrived meanwhile.
    assert cut > 0 and proxy.refused > 0, (cut, proxy.refused)
    assert on_topic_at_restore == on_topic_at_cut, "the worker was cut off"
    assert waves_in_outage > 0
    log = worker.log_text()
    joins = (group_joins(log, "forewarn"), group_joins(log, "forewarn-sink"))
    assert min(joins) >= 2, f"both groups joined again after the outage: {joins}"

    assert set(accepted) == truth.valid_ids, "every valid event accepted, nothing else"
    delivered_twice = check_interventions(emitted, truth)
    # Every user's state counted every event they sent, once (docs/architecture.md "Guarantees").
    check_events_seen(seen_live, persisted, truth)

    dsn = env["FOREWARN_CLICKHOUSE_DSN"]
    stored_twice = check_stored_once(dsn, truth)

    record(
        FaultRun(
            "worker cut off the broker beyond its session timeout",
            f"cut off the broker for {outage:.0f} s, group memberships lost",
            events_pushed=truth.messages,
            faults_injected=1,
            events_lost=len(truth.valid_ids - set(accepted)),
            duplicates_downstream=stored_twice,  # interventions delivered twice are within the contract
            notes=(
                f"same process throughout; {cut} connections cut, {proxy.refused} reconnections refused;"
                f" caught up {caught_up:.1f} s after the broker was back;"
                f" {len(truth.expected)} interventions,"
                f" {delivered_twice} delivered twice (same id and content, stored"
                f" once); {sum(accepted.values()) - len(accepted)} events re-ingested;"
                f" {time.monotonic() - started:.0f} s"
            ),
        )
    )


async def evict_all(bootstrap: str) -> None:
    """The worker's membership of its app's group and of its sink's, lost at once."""
    await asyncio.gather(
        evict_members(bootstrap, "forewarn", "faust", "clickstream"),
        evict_members(bootstrap, "forewarn-sink", "roundrobin", "forewarn-events"),
    )
