"""The processes Forewarn runs: the worker with its API and in-worker sink, the sink on its own, and N
workers under a supervisor."""
