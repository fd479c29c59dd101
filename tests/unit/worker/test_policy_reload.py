"""How a worker takes a reloaded policy (streams/worker/timers/policy_reload.py, WorkerContext.use_policy)
and how SIGHUP reaches it, also under ``forewarn worker --processes N`` (streams/run/supervisor.py)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from streams.contracts.settings import Settings
from streams.domain.policy_reload import PolicyReloader
from streams.domain.triggers import PendingTimers
from streams.run.supervisor import ChildSpec, Supervisor, worker_children
from streams.worker.context import WorkerContext
from streams.worker.timers import policy_reload


def context_of(path: Path) -> WorkerContext:
    """A WorkerContext with what use_policy and the timers read, the reloader wired as build() wires it."""
    reloader = PolicyReloader.start(str(path), lambda policy: None)
    ctx = WorkerContext.__new__(WorkerContext)
    ctx.settings = Settings.from_env({})
    ctx.policy_reloader = reloader
    ctx.pending_timers = PendingTimers(reloader.policy)
    ctx.horizon = 90 * 86_400.0
    reloader.apply = ctx.use_policy
    return ctx


def test_the_timer_puts_a_changed_file_in_force_for_the_next_rounds(tmp_path: Path) -> None:
    path = tmp_path / "ops.toml"
    path.write_text("experiments = []\n")
    ctx = context_of(path)
    before = ctx.policy
    path.write_text('experiments = []\n[triggers.payment_assist]\ndwell = "30s"\n')
    asyncio.run(policy_reload.timer(ctx)())
    assert ctx.policy is not before and ctx.policy.triggers["payment_assist"].params["dwell"] == 30.0
    assert ctx.pending_timers.policy is ctx.policy  # the sweep's deadlines follow it too
    path.write_text("[triggers.payment_assist]\ndwell = 30\nmode = 1\n")
    asyncio.run(policy_reload.timer(ctx)())
    assert ctx.policy.triggers["payment_assist"].params["dwell"] == 30.0  # refused: the same policy


def test_sighup_reloads_at_once(tmp_path: Path) -> None:
    path = tmp_path / "ops.toml"
    path.write_text("experiments = []\n")
    ctx = context_of(path)

    async def main() -> None:
        await policy_reload.on_sighup(ctx)()
        loop = asyncio.get_running_loop()
        try:
            path.write_text('experiments = []\n[triggers.delay_notice]\nmode = "shadow"\n')
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(100):
                if ctx.policy.triggers["delay_notice"].mode == "shadow":
                    break
                await asyncio.sleep(0.01)
        finally:
            loop.remove_signal_handler(signal.SIGHUP)

    asyncio.run(main())
    assert ctx.policy.triggers["delay_notice"].mode == "shadow"


class FakeProcess:
    def __init__(self, pid: int, running: bool = True) -> None:
        self.pid, self.running, self.signals = pid, running, []

    def poll(self) -> int | None:
        return None if self.running else 0

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)


def test_the_supervisor_passes_sighup_on_to_its_running_workers_only() -> None:
    children = worker_children(Settings.from_env({}), 2)
    assert [child.reloads for child in children] == [True, True, False]  # the sink reads no policy
    supervisor = Supervisor(children)
    supervisor.processes = {
        "worker-0": FakeProcess(1),
        "worker-1": FakeProcess(2, False),
        "sink": FakeProcess(3),
    }
    supervisor._on_sighup(signal.SIGHUP, None)
    assert [process.signals for process in supervisor.processes.values()] == [[signal.SIGHUP], [], []]
    assert ChildSpec("x", []).reloads is False
