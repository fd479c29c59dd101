"""The worker's agents, each a short function over the plain functions of :mod:`streams`, sharing one
:class:`~streams.worker.context.WorkerContext` that :func:`streams.worker.app.create_app` builds."""
