"""Synthetic traffic with a known ground truth, and its runner into a real broker.

The composed generator and what it is made of:

- :mod:`~streams.tools.traffic.generator`: :class:`TrafficGenerator`, which starts the sessions and
  interleaves every source below in event-time order; the ground truth is asked of it.
- :mod:`~streams.tools.traffic.profile`: :class:`TrafficProfile` (rates and shares of every source), the
  latent user types and their behaviour, a planted support-question :class:`Surge`.
- :mod:`~streams.tools.traffic.schedule`: the event-time schedule and ids the sources share,
  :class:`Outgoing` (a message and the intervention it should lead to), :class:`TrafficStats`.
- :mod:`~streams.tools.traffic.population`: the seeded users: who takes a session, types, engagement,
  churn.

The sources, one module each, with their ground truth:

- :mod:`~streams.tools.traffic.clickstream`: web sessions (browsing, support contacts, carts, payments).
- :mod:`~streams.tools.traffic.logistics`: the shipments of the orders, late delivery complaints.
- :mod:`~streams.tools.traffic.feedback`: ratings, their comments and the comments' corrections.
- :mod:`~streams.tools.traffic.preferences`: the preference centre.
- :mod:`~streams.tools.traffic.subscriptions`: subscription snapshots and cancellations.
- :mod:`~streams.tools.traffic.crm`: CRM attributes.
- :mod:`~streams.tools.traffic.repairs`: devices registered and repairs asked in the chat.
- :mod:`~streams.tools.traffic.order_requests`: orders asked in the chat.
- :mod:`~streams.tools.traffic.support_questions`: questions about products, with a planted surge.
- :mod:`~streams.tools.traffic.conversations`: customer chat messages with planted emotions and needs
  per user type, and a labelled corpus of them (the emotion benchmark's).

:mod:`~streams.tools.traffic.runner` streams the traffic into a broker (``forewarn traffic``).
"""
