"""Forewarn's service code, in layers that import only downward (pyproject.toml, ``[tool.importlinter]``):

* :mod:`streams.contracts`: wire formats and their validation, settings, the topic registry, metrics;
* :mod:`models` (beside this package): the online and text models, given features;
* :mod:`streams.domain` and :mod:`streams.processes`: per-user state, triggers, policy, rounds,
  prediction; tickets, orders, the catalog (never Faust or Kafka);
* :mod:`streams.worker`: the Faust app, its agents and timers (the only code importing Faust);
* :mod:`streams.api` and :mod:`sinks` (beside this package): the CRM/ERP API and the ClickHouse sink;
* :mod:`streams.run`: the processes Forewarn runs;
* :mod:`streams.tools`: the ``forewarn`` command, demo, doctor, traffic, notifier and launchers.
"""
