"""``forewarn worker``: the Faust worker with the CRM/ERP API on its web server and, unless the sink
runs as a process of its own (``FOREWARN_SINK_IN_WORKER=false``), the ClickHouse sink beside it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from streams.api.server import register_api
from streams.contracts import metrics
from streams.contracts.settings import Settings
from streams.contracts.topics import ensure_topics
from streams.run.sink import SinkService
from streams.worker import app as worker_app

if TYPE_CHECKING:
    import faust


def build_worker(settings: Settings) -> tuple[faust.App, list[SinkService]]:
    """The worker's app, its API registered, and the services to run beside it."""
    app = worker_app.create_app(settings)
    register_api(app, settings, app.tables["users"], app.tables["launch-profiles"])
    return app, [SinkService(settings)] if settings.sink_in_worker else []


def run_worker(settings: Settings, loglevel: str) -> None:
    """Make the topics, serve ``/metrics``, and run the worker until SIGTERM or SIGINT."""
    asyncio.run(ensure_topics(settings))
    metrics.serve(settings.metrics_port)
    app, services = build_worker(settings)
    worker_app.run(app, services, loglevel)
