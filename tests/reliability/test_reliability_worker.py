"""A worker killed with SIGKILL mid-stream, twice, and started again each time, while traffic keeps
arriving: what docs/architecture.md "Guarantees" promises must hold.

* Nothing accepted is lost, and each event counts once per user: every valid event is accepted and
  stored in ClickHouse once (with and without FINAL, and in the per-minute view), every broken one
  dead-lettered once, and every user's state has counted exactly the events they sent
  (``events_seen``): through the API for the "regular" users whose events span both kills, through the
  users table's changelog for all.
* Interventions are at-least-once with stable ids: the ids on the ``interventions`` topic are exactly
  those the input calls for (known in advance from the contract: tests/support/scenario.py); an id delivered
  twice carries the same intervention (only ``decided_at`` may differ); ClickHouse holds each id once.
* Models come back from their checkpoint changelog: every score after a restart counts at least what
  the partition's models had learned at their last checkpoint before the kill (fresh models would
  count 0); what they learned after it is lost, as docs/prediction.md says, and measured.

Each kill lands between two commits of a worker that is busy (traffic never stops): the events it
had handled and not committed are delivered again, which shows as events ingested twice onto
``forewarn-events`` and as deliveries the users' state recognised and skipped
(``forewarn_duplicate_events_total``): required, or the test would not have tested a crash.

ClickHouse is a server (streams/tools/clickhouse_server.py), as in production: a killed worker does not take
it down half-way through an insert. (The embedded engine dies with the worker, and an insert cut
between a table's part and its views' parts leaves the per-minute views short by that batch.)
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from streams.api.server import user_partition
from streams.contracts.privacy import load_cluster_secret
from streams.contracts.settings import Settings
from streams.tools.clickhouse_server import ClickHouseServer
from streams.tools.worker_launcher import WorkerProcess
from streams.worker.checkpoints import open_sealed
from tests.support.faults import (
    INPUT_TOPICS,
    POLICY,
    TOKEN,
    PacedTraffic,
    Truth,
    check_events_seen,
    check_interventions,
    check_stored_once,
    committed_offsets,
    interventions_emitted,
    metric_total,
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

PARTITIONS = 4  # harness.worker_env's FOREWARN_PARTITIONS
KILLS = 2
DUPLICATES = "forewarn_duplicate_events_total"  # deliveries again that a user's state skipped


def committed(bootstrap: str) -> int:
    """How far the worker's group has committed its input, summed over partitions."""
    return sum(asyncio.run(committed_offsets(bootstrap, "forewarn", INPUT_TOPICS)).values())


def kill_mid_stream(worker: WorkerProcess, bootstrap: str, successor: WorkerProcess) -> tuple[int, float]:
    """SIGKILL ``worker`` by PID once it has committed input and emitted interventions of its own (so
    that it dies between two commits, busy), and start ``successor``; returns when the worker died
    (epoch ms: what the broker holds from before then is its work) and the deliveries again its users'
    state had skipped.

    The successor is launched as the worker is killed, as a supervisor restarting at once would, so
    that its Python start-up (seconds on a busy machine) overlaps the kill; it reaches the broker's
    groups only after the kill (checked by the caller)."""
    at_start = committed(bootstrap)
    wait_until(
        lambda: interventions_emitted(worker) >= 3 and committed(bootstrap) > at_start,
        60,
        "the worker to emit interventions and commit",
        interval=0.3,
    )
    # Then more work, which its next commit (seconds away) would have covered.
    emitted = interventions_emitted(worker)
    wait_until(lambda: interventions_emitted(worker) >= emitted + 2, 60, "more interventions", interval=0.1)
    failed: list[BaseException] = []

    def start() -> None:
        try:
            successor.start()
        except BaseException as error:  # reported below, on the test's thread
            failed.append(error)

    skipped = metric_total(worker, DUPLICATES)
    starting = threading.Thread(target=start)
    starting.start()
    assert worker.stop(signal.SIGKILL) == -signal.SIGKILL
    killed_at = int(time.time() * 1000)
    starting.join(120)
    assert not starting.is_alive() and not failed, failed or "the successor did not start"
    return killed_at, skipped


def joined_at(log: str) -> int:
    """When the worker whose ``log`` this is first asked to join its group (epoch ms)."""
    line = next(line for line in log.splitlines() if "(Re-)joining group" in line)
    return int(datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f").timestamp() * 1000)


def test_worker_sigkilled_twice_mid_stream_loses_nothing(
    broker, clickhouse_server: ClickHouseServer, tmp_path: Path
) -> None:
    started = time.monotonic()
    env = worker_env(
        broker.bootstrap,
        tmp_path,
        clickhouse_server.url,
        policy=POLICY,
        FOREWARN_API_TOKENS_FILE=write_tokens(tmp_path / "api-tokens.json"),
        FOREWARN_MODEL_CHECKPOINT_SECONDS="1",
        # A killed worker stays a member of its groups until its session times out; a successor that
        # joins before then can be given partitions alongside it, and waits for another rebalance.
        FOREWARN_BROKER_SESSION_TIMEOUT="3",
    )
    traffic = PacedTraffic(broker.bootstrap, tag="k", users_per_wave=4, regulars=6)
    workers = [WorkerProcess(env, tmp_path / f"worker-{n}.log") for n in range(KILLS + 1)]
    kills: list[int] = []
    skipped = 0.0  # deliveries again the workers' user state recognised
    try:
        worker = workers[0].start()
        traffic.start()
        for successor in workers[1:]:
            killed_at, skipped_before = kill_mid_stream(worker, broker.bootstrap, successor)
            kills.append(killed_at)
            skipped += skipped_before
            worker = successor
        # Traffic after the last restart, then none: everything must come through.
        resumed_at = traffic.waves()
        wait_until(lambda: traffic.waves() >= resumed_at + 4, 60, "traffic after the last restart")
        truth = traffic.stop()
        regulars = {user: truth.pushed[user] for user in traffic.regulars}
        wait_until(
            lambda: all((events_seen(worker.web_port, u, TOKEN) or 0) >= n for u, n in regulars.items()),
            60,
            "the regular users' state",
        )
        wait_for_interventions(broker.bootstrap, truth.expected, 60)
        wait_committed_everything(broker.bootstrap)
        seen_live = {user: events_seen(worker.web_port, user, TOKEN) for user in regulars}
        skipped += metric_total(worker, DUPLICATES)
        assert worker.stop() == 0, worker.log_text()[-3000:]
        secret = load_cluster_secret(Settings.from_env(env))  # the workers' checkpoints are signed with it
        check(broker.bootstrap, clickhouse_server.url, truth, kills, seen_live, int(skipped), started, secret)
    finally:
        traffic.stop()
        for each in workers:
            each.stop()
    for killed_at, successor in zip(kills, workers[1:], strict=True):
        assert joined_at(successor.log_text()) > killed_at, "a successor joined before the kill"


def check(
    bootstrap: str,
    dsn: str,
    truth: Truth,
    kills: list[int],
    seen_live: dict[str, int | None],
    skipped: int,
    started: float,
    secret: bytes,
) -> None:
    accepted = Counter(
        event["event_id"] for event in envelope_events(asyncio.run(read_topic(bootstrap, "forewarn-events")))
    )
    lost = truth.valid_ids - set(accepted)
    assert not lost and set(accepted) == truth.valid_ids, f"{len(lost)} events lost: {sorted(lost)[:10]}"
    reingested = sum(accepted.values()) - len(accepted)

    # Interventions: exactly the expected ids; a repeat is the same intervention.
    delivered_twice = check_interventions(asyncio.run(read_topic(bootstrap, "interventions")), truth)
    # Every user's state counted every event they sent, once: the regular users' live (their events
    # span both kills), and every user's in the changelog.
    check_events_seen(seen_live, persisted_events_seen(bootstrap), truth)
    # The kills landed on work handled and not committed: it was delivered again.
    assert reingested + skipped > 0, "no kill landed on work done and not committed"

    lost_examples = check_models(bootstrap, kills, secret)

    stored_twice = check_stored_once(dsn, truth)

    record(
        FaultRun(
            "worker SIGKILLed mid-stream, restarted",
            f"SIGKILL x{len(kills)}",
            events_pushed=truth.messages,
            faults_injected=len(kills),
            events_lost=len(lost),
            duplicates_downstream=stored_twice,  # interventions delivered twice are within the contract
            notes=(
                f"{len(truth.expected)} interventions, {delivered_twice} delivered twice (same id and"
                f" content, stored once); {reingested} events ingested again and {skipped} deliveries"
                f" again skipped by user state after the kills; {lost_examples} model examples lost"
                f" (learned after the last checkpoint); {time.monotonic() - started:.0f} s"
            ),
        )
    )


def check_models(bootstrap: str, kills: list[int], secret: bytes) -> int:
    """After each restart no score counts less than its partition's models had learned at their last
    checkpoint before the kill (fresh models would count 0). Returns the examples learned after that
    checkpoint and lost. The broker's record timestamps tell which worker wrote what."""
    checkpoints = asyncio.run(read_topic(bootstrap, "forewarn-models-changelog"))
    scores = [
        (m.timestamp, user_partition(score["user_id"], PARTITIONS), score["intent_examples"])
        for m in asyncio.run(read_topic(bootstrap, "user_scores"))
        for score in [orjson.loads(m.value)]
    ]
    lost = restored = 0
    for index, killed_at in enumerate(kills):
        next_kill = kills[index + 1] if index + 1 < len(kills) else float("inf")
        last = {int(orjson.loads(m.key)): m.value for m in checkpoints if m.timestamp < killed_at}
        # The workers' own checkpoints, signed with their cluster secret.
        checkpoint = {
            partition: open_sealed(value, secret).intent.examples for partition, value in last.items()
        }
        after = [(p, n) for at, p, n in scores if killed_at <= at < next_kill]
        assert after, "scores after the restart"
        for partition, examples in after:
            assert examples >= checkpoint.get(partition, 0), (partition, examples, checkpoint)
        learned: dict[int, int] = defaultdict(int)
        for at, partition, examples in scores:
            if at < killed_at:
                learned[partition] = max(learned[partition], examples)
        lost += sum(max(0, n - checkpoint.get(p, 0)) for p, n in learned.items())
        restored += sum(checkpoint.values())
    assert restored > 0, "the models had learned and checkpointed before a kill"
    return lost
