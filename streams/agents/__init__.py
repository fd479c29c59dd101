"""The worker's agents, each a short function over the plain functions of :mod:`streams`, sharing one
:class:`~streams.agents.context.WorkerContext` that :func:`streams.app.create_app` builds."""
