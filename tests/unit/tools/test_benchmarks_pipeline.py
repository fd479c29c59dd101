"""The pipeline benchmark's arithmetic on fixed numbers: the targets it judges, its last line, and the
rates it reads from 1 Hz samples (pure functions of benchmarks/pipeline.py); which processes it starts
for what the checkout offers, and how it finds them in /proc (no broker, no worker)."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.pipeline import (
    MARKERS,
    Capabilities,
    Deployment,
    Headline,
    Sample,
    began,
    crossing,
    evaluate,
    final_line,
    listening_ports,
    process_cpu_seconds,
    process_role,
    process_tree,
    steady_window,
    targets_table,
)
from benchmarks.readme import PERFORMANCE, README


def headline(**changes: object) -> Headline:
    figures = {
        "events_per_process": 6_000.0,
        "cpu_micros": 200.0,
        "floor_cpu_micros": 80.0,
        "scale": 1.6,
        "scale_processes": 2,
        "p50_ms": 30.0,
        "p99_ms": 180.0,
        "latency_complete": True,
        "latency_rate": 3_000.0,
        "sink_rows_per_second": 120_000.0,
    }
    return Headline(**{**figures, **changes})  # type: ignore[arg-type]


def test_final_line_has_the_fixed_form() -> None:
    assert final_line(headline()) == (
        "pipeline: 6,000 events/s per process, 200 µs CPU/event, 2.50x the bare Faust agent's CPU per event,"
        " 1.60x with 2 processes, p99 180 ms at 3,000/s"
    )
    assert "n/a x with 2 processes" not in final_line(headline(scale=None))
    assert "n/ax with 2 processes" in final_line(headline(scale=None))


def test_every_target_met_on_figures_that_meet_them() -> None:
    verdicts = evaluate(headline())
    assert len(verdicts) == 6
    assert all(v.met for v in verdicts), verdicts
    table = targets_table(verdicts)
    assert table[0] == "| target | required | measured | |"
    assert all(line.endswith("| met |") for line in table[2:])


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        ({"cpu_micros": 241.0}, "CPU per event"),  # 3.01x the floor
        ({"events_per_process": 4_999.0}, "events/s per worker process"),
        ({"scale": 1.49}, "2 worker processes"),
        ({"scale": None}, "2 worker processes"),
        ({"p50_ms": 50.0}, "p50"),
        ({"p99_ms": 250.0}, "p99"),
        ({"sink_rows_per_second": 99_999.0}, "the sink alone"),
    ],
)
def test_one_figure_short_fails_only_its_target(change: dict[str, object], failing: str) -> None:
    verdicts = evaluate(headline(**change))
    assert [v.target for v in verdicts if not v.met] == [v.target for v in verdicts if failing in v.target]
    assert any(not v.met for v in verdicts)


def test_latency_not_met_when_due_interventions_did_not_arrive() -> None:
    verdicts = evaluate(headline(latency_complete=False, p50_ms=math.inf, p99_ms=math.inf))
    assert [v.target.split()[1] for v in verdicts if not v.met] == ["p50,", "p99,"]


def sample(seconds: float, done: float, cpu: float = 0.0) -> Sample:
    return Sample(seconds, ingested=done, tracked=done, stored=done, cpu={"worker 1": cpu})


def test_rates_from_one_hertz_samples_are_interpolated_not_rounded_to_the_second() -> None:
    # Progress starts at 2.5 s and runs at 1,000 events/s until all 10,000 are done at 12.5 s.
    samples = [sample(float(t), max(0.0, min(10_000.0, 1_000.0 * (t - 2.5))), cpu=0.2 * t) for t in range(15)]
    assert began(samples, lambda s: s.done) == pytest.approx(2.5)
    assert crossing(samples, lambda s: s.done, 10_000) == pytest.approx(12.5)
    window = steady_window(samples, 10_000)  # the samples at 4 s (1,500 done) and 11 s (8,500)
    assert (window.events, window.seconds) == (7_000.0, 7.0)
    assert window.rate == pytest.approx(1_000.0)
    assert window.cpu_micros == pytest.approx(1e6 * 0.2 * 7 / 7_000)


def test_a_run_too_short_for_a_steady_window_takes_first_progress_to_done() -> None:
    samples = [sample(0.0, 0.0, 0.0), sample(1.0, 5_000.0, 0.5), sample(2.0, 10_000.0, 1.0)]
    window = steady_window(samples, 10_000)
    assert (window.events, window.seconds, window.cpu["worker 1"]) == (5_000.0, 1.0, 0.5)


def test_the_report_goes_to_docs_performance_and_the_readme_links_there() -> None:
    performance = PERFORMANCE.read_text(encoding="utf-8")
    assert all(marker in performance for marker in MARKERS)
    readme = README.read_text(encoding="utf-8")
    assert "docs/performance.md" in readme
    assert "<!-- benchmark:start -->" not in readme  # the pipeline's figures no longer live there


def test_the_deployment_follows_what_the_checkout_offers(tmp_path: Path) -> None:
    env = {"FOREWARN_CLICKHOUSE_DSN": "chdb:///x"}
    supervised = Deployment.build(env, tmp_path, 2, Capabilities(supervisor=True, sink_process=True))
    assert [w.args for w in supervised.workers] == [("--processes", "2")]
    assert supervised.supervised and supervised.shared_log
    assert supervised.workers[0].env["FOREWARN_SINK_METRICS_PORT"].isdigit()  # never the default 9107

    beside = Deployment.build(env, tmp_path, 1, Capabilities(supervisor=True, sink_process=True))
    assert [type(w).__name__ for w in beside.workers] == ["WorkerProcess", "SinkProcess"]
    assert beside.workers[0].env["FOREWARN_SINK_IN_WORKER"] == "false"
    assert beside.endpoints == [w.metrics_port for w in beside.workers]

    plain = Deployment.build(env, tmp_path, 2, Capabilities(supervisor=False, sink_process=False))
    assert len({w.env["FOREWARN_CLICKHOUSE_DSN"] for w in plain.workers}) == 2  # a chdb each
    assert not plain.supervised and not plain.shared_log


def test_forewarn_processes_are_found_through_proc(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in process_tree(os.getpid())
        assert listener.getsockname()[1] in listening_ports(os.getpid())
        assert process_role(child.pid) == "worker"  # neither a sink nor a supervisor
        assert process_cpu_seconds(os.getpid()) > 0
    finally:
        child.kill()
        child.wait()
        listener.close()
