"""Every Kafka topic Forewarn reads or writes, in one registry: :data:`TOPICS`.

Each :class:`Topic` says what its records are and who writes and reads them, and everything that
names topics reads it from here: the settings (one ``topic_<name>`` setting per topic,
``FOREWARN_TOPIC_<NAME>``, with the topic's default name and description:
:mod:`streams.contracts.settings`), the sources and their topics (``Settings.source_topics``), the
topics ``forewarn topics`` creates and how many partitions they need (:mod:`streams.contracts.topics`),
the topics the ClickHouse sink stores (``sinks.rows.sink_specs``) and what ``forewarn doctor`` checks.

One vocabulary: a topic's ``name`` is its setting's (``crm_updates``: ``topic_crm_updates``,
``FOREWARN_TOPIC_CRM_UPDATES``), and for a topic of events, the constant of its events' ``source``
in :mod:`streams.contracts.events` is named alike (``CRM_UPDATES``). The ``source`` values
themselves, the topics' default names and the variables are contracts with producers and stored
data, older than this registry, so they stay as they were where they differ from the name
(``CRM_UPDATES == "crm"``; the ``outcomes`` topic is ``intervention_outcomes`` by default).

>>> TOPICS["crm_updates"].setting, TOPICS["crm_updates"].source, TOPICS["crm_updates"].default
('topic_crm_updates', 'crm', 'crm_updates')
>>> [topic.name for topic in TOPICS.values() if topic.copartitioned]
['events', 'ticks', 'labels', 'questions', 'contacts']
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.contracts.events import (
    CLICKSTREAM,
    CONVERSATIONS,
    CRM_UPDATES,
    DEVICES,
    ERASURE_REQUESTS,
    FEEDBACK_UPDATES,
    LOGISTICS,
    ORDER_REQUESTS,
    OUTCOMES,
    PREFERENCES,
    SERVICE_REQUESTS,
    SUBSCRIPTIONS,
    SUPPORT_QUESTIONS,
    TICKET_UPDATES,
)

# Roles. A source topic is written by other systems (and, for a few, by the API or the example
# notifier) and read by the workers; an internal topic is written by the workers only, for their own
# agents (and the ClickHouse sink); an output topic is written by the workers (or the API) for other
# systems, the notifier and the sink.
SOURCE, INTERNAL, OUTPUT = "source", "internal", "output"
ROLES = (SOURCE, INTERNAL, OUTPUT)

# How ingest and the API find a user's partition (the events topic is keyed by nothing: each
# envelope goes to the partition of its users, streams.contracts.envelopes.user_partition).
USER_ID = "`user_id`"


@dataclass(frozen=True, slots=True)
class Topic:
    """One topic: its setting, default name and meaning, its role, its records' key and contracts,
    and how it is created.

    ``writes`` and ``reads`` name the code (``module.function`` or ``module.Class.method``) that makes
    and reads its records; empty ``writes``: only systems outside Forewarn write it (producers, whose
    contract the reader checks). ``source`` is the ``source`` of its events (topics of events only).
    ``created``: ``forewarn topics`` (and every worker and sink at start) creates it when missing,
    with ``FOREWARN_PARTITIONS`` partitions; ``copartitioned`` names the tables whose partitions must be
    the topic's, which then must have exactly ``FOREWARN_PARTITIONS``. ``compacted``: its owner keeps
    it compacted (Forewarn creates no compacted topic). ``table``: the ClickHouse table the sink stores
    it in (``sinks.rows``).
    """

    name: str
    default: str
    role: str
    description: str
    key: str
    reads: tuple[str, ...]
    writes: tuple[str, ...] = ()
    source: str | None = None
    created: bool = True
    copartitioned: str = ""
    compacted: bool = False
    table: str | None = None

    @property
    def setting(self) -> str:
        """The name of its setting: ``Settings.topic_<name>``, variable ``FOREWARN_TOPIC_<NAME>``."""
        return f"topic_{self.name}"

    def name_in(self, settings: object) -> str:
        """Its topic name in ``settings`` (a :class:`streams.contracts.settings.Settings`)."""
        return getattr(settings, self.setting)


def _topics(*topics: Topic) -> dict[str, Topic]:
    return {topic.name: topic for topic in topics}


_PARSE_EVENT = ("streams.contracts.events.parse_event",)
_API = ("streams.api.server.command",)  # the API's write routes produce events of these sources

# In the order of the settings table (README "Configuration").
TOPICS: dict[str, Topic] = _topics(
    Topic(
        "clickstream",
        "clickstream",
        SOURCE,
        "Topic web producers write clickstream events to.",
        USER_ID,
        _PARSE_EVENT,
        source=CLICKSTREAM,
    ),
    Topic(
        "logistics",
        "logistics",
        SOURCE,
        "Topic logistics producers write shipment events to.",
        "`shipment_id`",
        _PARSE_EVENT,
        source=LOGISTICS,
    ),
    Topic(
        "preferences",
        "preferences",
        SOURCE,
        "Topic of users' contact preferences: opt-out, channels, time zone.",
        USER_ID,
        _PARSE_EVENT,
        _API,
        source=PREFERENCES,
    ),
    Topic(
        "subscriptions",
        "subscriptions",
        SOURCE,
        "Topic the billing system writes subscription snapshots to: plan, status, renewal date.",
        USER_ID,
        _PARSE_EVENT,
        source=SUBSCRIPTIONS,
    ),
    Topic(
        "outcomes",
        "intervention_outcomes",
        SOURCE,
        "Topic the notifier reports outcomes on (delivered, opened, accepted, converted, ...).",
        USER_ID,
        _PARSE_EVENT,
        ("streams.tools.notifier.simulate_outcomes",),
        source=OUTCOMES,
    ),
    Topic(
        "service_requests",
        "service_requests",
        SOURCE,
        "Topic of repair requests from the chat: user, device, fault, location.",
        USER_ID,
        _PARSE_EVENT,
        source=SERVICE_REQUESTS,
    ),
    Topic(
        "devices",
        "devices",
        SOURCE,
        "Topic of devices registered to users (category, model, warranty).",
        USER_ID,
        _PARSE_EVENT,
        source=DEVICES,
    ),
    Topic(
        "order_requests",
        "order_requests",
        SOURCE,
        "Topic of orders customers ask the chat for: items, quantities, address reference.",
        USER_ID,
        _PARSE_EVENT,
        source=ORDER_REQUESTS,
    ),
    Topic(
        "crm_updates",
        "crm_updates",
        SOURCE,
        "Topic the CRM/ERP writes customer attributes to (tier, value).",
        USER_ID,
        _PARSE_EVENT,
        _API,
        source=CRM_UPDATES,
    ),
    Topic(
        "erasure_requests",
        "erasure_requests",
        SOURCE,
        "Topic of right-to-erasure requests.",
        USER_ID,
        _PARSE_EVENT,
        _API,
        source=ERASURE_REQUESTS,
    ),
    Topic(
        "support_questions",
        "support_questions",
        SOURCE,
        "Topic of customers' support questions about products (for hot issues).",
        USER_ID,
        _PARSE_EVENT,
        source=SUPPORT_QUESTIONS,
    ),
    Topic(
        "conversations",
        "conversations",
        SOURCE,
        "Topic of chat messages (customer, automated agent, human agent): emotion and products asked.",
        USER_ID,
        _PARSE_EVENT,
        source=CONVERSATIONS,
    ),
    Topic(
        "feedback_labels",
        "feedback_labels",
        SOURCE,
        "Topic of people's corrections to feedback tags and message emotions; the models learn from them.",
        "`feedback_id`",
        ("streams.contracts.feedback.parse_label",),
    ),
    Topic(
        "stock",
        "stock",
        SOURCE,
        "Topic of stock levels per SKU (compacted, latest wins); orders are checked against it when it"
        " exists.",
        "`sku`",
        ("streams.processes.orders.parse_stock",),
        created=False,
        compacted=True,
    ),
    # Cross-department response times: the service desk's and the teams' updates in, the updates
    # taken in out to the sink (streams.processes.desk).
    Topic(
        "ticket_updates",
        "ticket_updates",
        SOURCE,
        "Topic the service desk writes ticket updates to: accepted, technician assigned, on site, resolved,"
        " reopened, cancelled.",
        USER_ID,
        _PARSE_EVENT,
        ("streams.tools.service_desk.respond",),
        source=TICKET_UPDATES,
    ),
    Topic(
        "feedback_updates",
        "feedback_updates",
        SOURCE,
        "Topic product and marketing write feedback updates to: acknowledged, planned, shipped, declined.",
        USER_ID,
        _PARSE_EVENT,
        ("streams.tools.service_desk.respond",),
        source=FEEDBACK_UPDATES,
    ),
    Topic(
        "ticket_progress",
        "ticket_progress",
        OUTPUT,
        "Topic of the ticket updates taken in, with the ticket's creation and dispatch (for the sink).",
        USER_ID,
        ("sinks.rows.ticket_update_row",),
        ("streams.processes.desk.TicketProgress.to_wire",),
        table="ticket_updates",
    ),
    Topic(
        "feedback_progress",
        "feedback_progress",
        OUTPUT,
        "Topic of the feedback updates taken in, with the feedback's time (for the sink).",
        USER_ID,
        ("sinks.rows.feedback_update_row",),
        ("streams.processes.desk.FeedbackProgress.to_wire",),
        table="feedback_updates",
    ),
    Topic(
        "interventions",
        "interventions",
        OUTPUT,
        "Topic the proactive interventions are emitted to.",
        USER_ID,
        ("sinks.rows.intervention_row", "streams.tools.notifier"),
        ("streams.contracts.interventions.Intervention.to_wire",),
        table="interventions",
    ),
    Topic(
        "tickets",
        "tickets",
        OUTPUT,
        "Topic of service tickets, dispatched or flagged for manual dispatch.",
        USER_ID,
        ("sinks.rows.ticket_row",),
        ("streams.processes.tickets.Ticket.to_wire",),
        table="tickets",
    ),
    Topic(
        "order_commands",
        "order_commands",
        OUTPUT,
        "Topic of validated orders for the order system.",
        USER_ID,
        ("sinks.rows.order_command_row",),
        ("streams.processes.orders.OrderCommand.to_wire",),
        table="order_commands",
    ),
    Topic(
        "order_rejections",
        "order_rejections",
        OUTPUT,
        "Topic of order requests refused, with the reason.",
        USER_ID,
        ("sinks.rows.order_rejection_row",),
        ("streams.processes.orders.OrderRejection.to_wire",),
        table="order_rejections",
    ),
    Topic(
        "feedback_tagged",
        "feedback_tagged",
        OUTPUT,
        "Topic of tagged feedback (tags, confidence, sentiment, team) for product and marketing.",
        USER_ID,
        ("sinks.rows.feedback_row",),
        ("models.tagger.TaggedFeedback.to_wire",),
        table="feedback_tags",
    ),
    Topic(
        "hot_issues",
        "hot_issues",
        OUTPUT,
        "Topic of alerts for support topics surging on a product.",
        "`product_id`",
        ("sinks.rows.hot_issue_row",),
        ("models.surge.HotIssue.to_wire",),
        table="hot_issues",
    ),
    # FAQ forecast for launches (the launch FAQ part).
    Topic(
        "launch_faq_forecasts",
        "launch_faq_forecasts",
        OUTPUT,
        "Topic of FAQ forecasts for launches: expected question topics per age bucket, with examples.",
        "`product_id`",
        ("sinks.rows.launch_faq_rows",),
        ("models.launch_faq.LaunchForecast.to_wire",),
        table="launch_faq_forecast",
    ),
    Topic(
        "crm_sync",
        "crm_sync",
        OUTPUT,
        "Topic of health scores and tags for the CRM/ERP.",
        USER_ID,
        (),  # the CRM/ERP's own consumer
        ("streams.processes.run.crm_sync_record",),
    ),
    Topic(
        "erasures",
        "erasures",
        OUTPUT,
        "Topic of erasures carried out in the worker (then in ClickHouse).",
        USER_ID,
        ("streams.contracts.erasure.Erasure.from_wire",),  # the sink, which then erases ClickHouse
        ("streams.contracts.erasure.erasure_record",),
    ),
    Topic(
        "api_audit",
        "api_audit",
        OUTPUT,
        "Topic of every API call (who, what, when, result), for the audit.",
        "`user_id` (the call's subject; none for a call without one)",
        ("sinks.rows.audit_row",),
        ("streams.api.server.audit_record",),
        table="api_audit",
    ),
    Topic(
        "decisions",
        "decisions",
        OUTPUT,
        "Topic of every contact-policy decision: emitted, deferred, suppressed or shadow, with the reason.",
        USER_ID,
        ("sinks.rows.decision_row",),
        ("streams.domain.contact.Decision.to_wire",),
        table="decisions",
    ),
    Topic(
        "dead_letters",
        "dead_letters",
        OUTPUT,
        "Topic for rejected input: original bytes, reason in headers.",
        "the rejected message's own key",
        ("sinks.rows.dead_letter_row",),
        ("streams.contracts.deadletters.dead_letter_record",),
        table="dead_letters",
    ),
    Topic(
        "scores",
        "user_scores",
        OUTPUT,
        "Topic of users' scores (intent distribution, churn probability, health) when they move.",
        USER_ID,
        ("sinks.rows.score_row",),
        ("models.health.Scores.to_wire",),
        table="user_scores",
    ),
    # --- support-load forecast (contacts per channel, campaigns, forecasts: streams.processes.support_load)
    Topic(
        "campaigns",
        "campaigns",
        SOURCE,
        "Topic of marketing campaigns (when, which channels, expected uplift) the support-load forecast"
        " takes as its calendar.",
        "`campaign_id`",
        ("streams.processes.support_load.parse_campaign",),
    ),
    Topic(
        "support_load",
        "support_load_forecasts",
        OUTPUT,
        "Topic of support-load forecasts: per channel, the next 24 hours in 15-minute slots with the"
        " agents needed, made every 15 minutes of event time.",
        "channel",
        ("sinks.rows.support_load_rows",),
        ("streams.processes.support_load.ChannelForecast.to_wire",),
        table="support_load_forecast",
    ),
    Topic(
        "support_load_actuals",
        "support_load_actuals",
        OUTPUT,
        "Topic of the support contacts counted per channel in each closed 15-minute slot.",
        "channel",
        ("sinks.rows.support_load_actual_row",),
        ("streams.processes.support_load.SlotActual.to_wire",),
        table="support_load_actual",
    ),
    Topic(
        "events",
        "forewarn-events",
        INTERNAL,
        "Internal topic of validated events: envelopes of several events, each on its users' partition.",
        "none: each envelope is sent to its users' partition",
        ("streams.contracts.envelopes.read_envelope", "sinks.rows.event_rows"),
        ("streams.contracts.envelopes.pack",),
        copartitioned="the user table",
        table="events",
    ),
    Topic(
        "ticks",
        "forewarn-ticks",
        INTERNAL,
        "Internal topic of timer ticks, keyed by user.",
        USER_ID,
        ("streams.contracts.internal.read_tick",),
        ("streams.worker.app.create_app",),  # the timer sweep
        copartitioned="the user table",
    ),
    Topic(
        "labels",
        "forewarn-labels",
        INTERNAL,
        "Internal topic: each correction, sent to every partition's tagger and emotion model.",
        "`feedback_id` or `message_id` (each correction sent to every partition)",
        ("streams.contracts.internal.read_correction",),
        (
            "streams.contracts.feedback.Correction.to_wire",
            "streams.contracts.feedback.EmotionCorrection.to_wire",
        ),
        copartitioned="the user table",
    ),
    Topic(
        "questions",
        "forewarn-questions",
        INTERNAL,
        "Internal topic of support questions, keyed by product category (hot issues).",
        "product category",
        ("streams.contracts.internal.read_question", "sinks.rows.question_row"),
        ("streams.processes.run.question_record",),
        copartitioned="the hot-issue tables",
        table="support_questions",
    ),
    Topic(
        "contacts",
        "forewarn-contacts",
        INTERNAL,
        "Internal topic of support contacts per channel and campaigns, all under one key: one partition"
        " holds every channel's event-time clock.",
        "`support-load` (one key)",
        ("streams.processes.support_load.read_load_record",),
        ("streams.processes.support_load.contact_record", "streams.processes.support_load.Campaign.to_wire"),
        copartitioned="the support-load tables",
    ),
)

# The topic of each source of events (an event's ``source``).
SOURCE_TOPICS: dict[str, Topic] = {topic.source: topic for topic in TOPICS.values() if topic.source}
