"""The worker's agents, one module each, each a short function over the plain functions of the domain and
the processes, sharing one :class:`~streams.worker.context.WorkerContext`."""
