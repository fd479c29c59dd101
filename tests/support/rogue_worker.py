"""A rogue member of the workers' consumer group, for the forwarding test of tests/unit/api/test_api.py: a
real ``forewarn worker`` (so a real member of the group, which the assignment names as the holder of the
partitions it gets, at the URL it advertises) whose API is replaced by a server that writes down every
request it receives (``FOREWARN_ROGUE_LOG``: one JSON line each, method, path and headers) and answers
each with a forged 200, reflecting the ``X-Forewarn-*`` headers it was sent. It is not given the
deployment's cluster secret.

Run as ``python -m tests.support.rogue_worker worker`` with the repository's root on ``PYTHONPATH``
(:func:`rogue_worker`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from mode import Service

import streams.run.worker
from streams.tools.cli import main
from streams.tools.worker_launcher import WorkerProcess
from tests.support import ROOT
from tests.support.harness import worker_env


class RogueServer(Service):
    def __init__(self, bind: str, port: int, log_path: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bind, self.port, self.log_path = bind, port, log_path
        self.runner: web.ServerRunner | None = None

    async def on_start(self) -> None:
        self.runner = web.ServerRunner(web.Server(self.answer))
        await self.runner.setup()
        await web.TCPSite(self.runner, self.bind, self.port).start()

    async def on_stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def answer(self, request: web.BaseRequest) -> web.Response:
        seen = {
            "method": request.method,
            "path": request.path,
            "headers": {str(name): value for name, value in request.headers.items()},
        }
        with open(self.log_path, "ab") as log:
            log.write(orjson.dumps(seen) + b"\n")
        reflected = {
            name: value for name, value in request.headers.items() if name.lower().startswith("x-forewarn")
        }
        forged = {"schema": 1, "user_id": request.path.rsplit("/", 1)[-1], "forged": True}
        return web.Response(body=orjson.dumps(forged), content_type="application/json", headers=reflected)


def register_rogue(app: Any, settings: Any, users: Any, profiles: Any = None) -> None:
    app.web_server(RogueServer(app.conf.web_bind, app.conf.web_port, os.environ["FOREWARN_ROGUE_LOG"]))


def rogue_worker(bootstrap: str, tmp_path: Path, **extra: str) -> WorkerProcess:
    """The rogue, not yet started: its requests are written to ``tmp_path/rogue-requests.jsonl``."""
    workdir = tmp_path / "rogue"
    workdir.mkdir()
    env = worker_env(
        bootstrap,
        workdir,
        FOREWARN_CLUSTER_SECRET="a secret the deployment does not use",
        FOREWARN_ROGUE_LOG=str(tmp_path / "rogue-requests.jsonl"),
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        **extra,
    )
    return WorkerProcess(env, tmp_path / "worker-rogue.log", module="tests.support.rogue_worker")


if __name__ == "__main__":
    streams.run.worker.register_api = register_rogue
    sys.exit(main())
