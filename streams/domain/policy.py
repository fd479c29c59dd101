"""The policy: trigger definitions, contact rules and experiments, from TOML.

The packaged default (``streams/domain/policy.toml``) defines every trigger; ``FOREWARN_POLICY_FILE`` names an
operator's file merged over it table by table, so it holds only what differs. Everything is checked at
start: an invalid policy fails with a message naming the file, the trigger and the field.

>>> policy = load_policy(text='[triggers.payment_assist]\\ndwell = "45s"\\n')
>>> trigger = policy.for_signal("payment_dwell")
>>> trigger.name, trigger.params["dwell"], trigger.channels, policy.contact.quiet_hours
('payment_assist', 45.0, ('chat',), (75600, 28800))
>>> try:
...     load_policy(text='[triggers.delay_notice]\\npriority = "high"\\n', name="ops.toml")
... except PolicyError as error:
...     print(error)
ops.toml: trigger 'delay_notice': field 'priority' must be an integer, got 'high'
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from typing import Any

from streams.contracts.time import DAY, HOUR, MINUTE
from streams.contracts.validation import IDENTIFIER, check_timezone, is_number

DEFAULT_POLICY = "policy.toml"  # beside this module

REQUIRED = None
# Signals the code computes, and the parameters each takes: name -> (kind, default or REQUIRED).
SIGNALS: dict[str, dict[str, tuple[str, Any]]] = {
    "payment_dwell": {"dwell": ("duration", REQUIRED)},
    "shipment_delay": {"slip": ("duration", REQUIRED)},
    "renewal_due": {"within": ("duration", REQUIRED)},
    "activity_decline": {
        "ratio": ("fraction", REQUIRED),
        "short": ("duration", "7d"),
        "baseline": ("duration", "28d"),
        "min_visits": ("number", 4),
    },
    # A customer's chat messages: their emotion negative for ``messages`` messages in a row, or at once
    # with an open problem (a late shipment, a recent service ticket, a failed payment in the session).
    "negative_emotion": {"messages": ("number", 3)},
    # Model-driven signals (streams.domain.prediction): once the model has learned ``min_examples`` examples.
    "churn_risk": {"threshold": ("fraction", REQUIRED), "min_examples": ("number", 500)},
    "help_intent": {"threshold": ("fraction", REQUIRED), "min_examples": ("number", 500)},
    "purchase_hesitation": {
        "threshold": ("fraction", REQUIRED),
        "hesitation": ("duration", "60s"),
        "min_examples": ("number", 500),
    },
}
# Signals read from a model's output: the intent and churn models' scores, the emotion model's reading.
MODEL_SIGNALS = frozenset({"churn_risk", "help_intent", "purchase_hesitation", "negative_emotion"})
# Signals a single trigger at most may use: their state keeps one "already sent" mark.
SINGLE_USE_SIGNALS = frozenset({"payment_dwell", "shipment_delay", "renewal_due"})
QUIET_HOURS_MODES = ("defer", "suppress", "ignore")
OFFER_ELIGIBILITY = ("always", "coupon_user_or_price_sensitive")
HOLDOUT = "holdout"
# How a trigger is deployed: ``live`` (decides and sends), ``shadow`` (decides, records what it would have
# done, sends nothing), ``percent`` (live for a sticky hashed share of users, shadow for the rest).
LIVE, SHADOW, PERCENT = "live", "shadow", "percent"
MODES = (LIVE, SHADOW, PERCENT)

_COMMON_FIELDS = {
    "enabled",
    "signal",
    "action",
    "channels",
    "priority",
    "template",
    "cooldown",
    "quiet_hours",
    "offer",
    "mode",
    "percent",
}
_OFFER_FIELDS = {"kind", "percent", "eligible", "min_abandoned_payments"}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1.0, "m": MINUTE, "h": HOUR, "d": DAY}
# Names in the policy and in events that refer to it (triggers, channels, arms, experiments).


class PolicyError(ValueError):
    """An invalid policy; the message names the file, the trigger (or section) and the field."""


@dataclass(frozen=True, slots=True)
class Offer:
    kind: str
    percent: float
    eligible: str = "always"
    min_abandoned_payments: int = 2


@dataclass(frozen=True, slots=True)
class TriggerPolicy:
    name: str
    signal: str
    action: str
    channels: tuple[str, ...]
    priority: int
    template: str
    cooldown: float
    quiet_hours: str
    params: dict[str, float]
    offer: Offer | None = None
    mode: str = LIVE  # one of MODES
    percent: float = 100.0  # mode percent: the share of users (0-100) the trigger is live for


@dataclass(frozen=True, slots=True)
class Cap:
    channel: str
    max: int
    window: float


@dataclass(frozen=True, slots=True)
class ContactRules:
    timezone: str = "UTC"
    # (start, end) seconds after local midnight; the window may wrap past midnight. None: no quiet hours.
    quiet_hours: tuple[int, int] | None = None
    caps: tuple[Cap, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelRules:
    """``[models]``: how the intent and churn models' labels are decided and scores published."""

    churn_horizon: float = 30 * DAY  # no activity for this long: churned
    publish_delta: float = 0.05  # scores are published when a probability moves by this much
    publish_interval: float = 300.0  # ... and at most once per this long (event time) per user


@dataclass(frozen=True, slots=True)
class Experiment:
    name: str
    triggers: tuple[str, ...]
    arms: tuple[tuple[str, float], ...]  # (arm, share), shares summing to 1


# --- staffing: the support-load forecast's capacity (streams.processes.support_load)


@dataclass(frozen=True)
class ChannelStaffing:
    """One support channel's capacity: contacts an agent handles per hour, and agents on shift per
    hour of the UTC day (24 values)."""

    contacts_per_agent_hour: float = 0.0
    agents_on_shift: tuple[int, ...] = (0,) * 24

    def on_shift(self, t: float) -> int:
        """Agents on shift at ``t`` (epoch seconds)."""
        return self.agents_on_shift[int((t % DAY) // HOUR)]


@dataclass(frozen=True)
class StaffingRules:
    """``[staffing.<channel>]`` tables; a channel without one has no capacity (0 agents)."""

    channels: dict[str, ChannelStaffing] = field(default_factory=dict)

    def of(self, channel: str) -> ChannelStaffing:
        return self.channels.get(channel) or ChannelStaffing()


@dataclass(frozen=True)
class Policy:
    triggers: dict[str, TriggerPolicy]
    contact: ContactRules = field(default_factory=ContactRules)
    experiments: tuple[Experiment, ...] = ()
    models: ModelRules = field(default_factory=ModelRules)
    staffing: StaffingRules = field(default_factory=StaffingRules)

    @cached_property
    def _by_signal(self) -> dict[str, list[TriggerPolicy]]:
        # Looked up on every event; the policy does not change after it is loaded.
        by_signal: dict[str, list[TriggerPolicy]] = {}
        for trigger in self.triggers.values():
            by_signal.setdefault(trigger.signal, []).append(trigger)
        return by_signal

    def for_signal(self, signal: str) -> TriggerPolicy | None:
        """The trigger using a single-use signal, or None when no enabled trigger does."""
        found = self._by_signal.get(signal)
        return found[0] if found else None

    def all_for_signal(self, signal: str) -> list[TriggerPolicy]:
        return self._by_signal.get(signal, [])

    def experiment_of(self, trigger: str) -> Experiment | None:
        return next((e for e in self.experiments if trigger in e.triggers), None)


# --- reading


def default_policy_text() -> str:
    return resources.files(__package__).joinpath(DEFAULT_POLICY).read_text(encoding="utf-8")


def load_policy(path: str = "", *, text: str | None = None, name: str | None = None) -> Policy:
    """The default policy with the operator's file (``path``, or ``text``) merged over it."""
    base = _parse(default_policy_text(), DEFAULT_POLICY)
    if text is None and path:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as error:
            raise PolicyError(f"{path}: cannot read the policy file: {error.strerror}") from None
    source = name or path or "policy"
    merged = merge(base, _parse(text, source)) if text is not None else base
    return build_policy(merged, source)


def _parse(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(f"{source}: not valid TOML: {error}") from None


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; anything else (values, lists, arrays of tables) is replaced.

    >>> merge({"a": {"x": 1, "y": 2}, "l": [1]}, {"a": {"y": 3}, "l": [2]})
    {'a': {'x': 1, 'y': 3}, 'l': [2]}
    """
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# --- checking


class _Checker:
    """Field readers that raise PolicyError naming the file, the place and the field."""

    def __init__(self, source: str, where: str, table: Any) -> None:
        self.source, self.where = source, where
        if not isinstance(table, dict):
            self.fail(None, f"must be a table, got {table!r}")
        self.table: dict[str, Any] = table

    def fail(self, name: str | None, problem: str) -> None:
        place = f"{self.where}: field {name!r}" if name else self.where
        raise PolicyError(f"{self.source}: {place} {problem}")

    def known(self, allowed: set[str]) -> None:
        for name in self.table:
            if name not in allowed:
                self.fail(name, f"is not known (known: {', '.join(sorted(allowed))})")

    def value(self, name: str, default: Any = ...) -> Any:
        if name not in self.table:
            if default is ...:
                self.fail(name, "is required")
            return default
        return self.table[name]

    def text(self, name: str, default: Any = ..., choices: tuple[str, ...] | None = None) -> str:
        value = self.value(name, default)
        if not isinstance(value, str) or not value:
            self.fail(name, f"must be non-empty text, got {value!r}")
        if choices is not None and value not in choices:
            self.fail(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def identifier(self, name: str, default: Any = ...) -> str:
        value = self.text(name, default)
        if not IDENTIFIER.match(value):
            self.fail(name, f"must be lower-case letters, digits and _, got {value!r}")
        return value

    def integer(self, name: str, default: Any = ..., minimum: int = 0) -> int:
        value = self.value(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, f"must be an integer, got {value!r}")
        if value < minimum:
            self.fail(name, f"must be at least {minimum}, got {value!r}")
        return value

    def number(self, name: str, default: Any = ..., low: float = 0.0, high: float = float("inf")) -> float:
        value = self.value(name, default)
        if not is_number(value):
            self.fail(name, f"must be a number, got {value!r}")
        if not low <= value <= high:
            self.fail(name, f"must be between {low:g} and {high:g}, got {value!r}")
        return float(value)

    def duration(self, name: str, default: Any = ...) -> float:
        value = self.value(name, default)
        seconds = parse_duration(value)
        if seconds is None:
            self.fail(name, f'must be a duration such as "90s", "15m", "2h", "7d", got {value!r}')
        return seconds  # type: ignore[return-value]

    def boolean(self, name: str, default: Any = ...) -> bool:
        value = self.value(name, default)
        if not isinstance(value, bool):
            self.fail(name, f"must be true or false, got {value!r}")
        return value

    def identifiers(self, name: str) -> tuple[str, ...]:
        values = self.value(name)
        if not isinstance(values, list) or not values:
            self.fail(name, f"must be a non-empty list, got {values!r}")
        for value in values:
            if not isinstance(value, str) or not IDENTIFIER.match(value):
                self.fail(name, f"must hold lower-case names, got {value!r}")
        if len(set(values)) != len(values):
            self.fail(name, f"lists a name twice: {values!r}")
        return tuple(values)


def parse_duration(value: Any) -> float | None:
    """Seconds from ``"90s"``, ``"15m"``, ``"2h"``, ``"7d"`` or a number; None if it is neither.

    >>> parse_duration("2h"), parse_duration("1.5d"), parse_duration(30), parse_duration("soon")
    (7200.0, 129600.0, 30.0, None)
    """
    if is_number(value):
        return float(value) if value >= 0 else None
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match.group(1)) * _UNITS[match.group(2)]
    return None


def parse_time_of_day(value: Any) -> int | None:
    """Seconds after midnight from ``"HH:MM"``; None if it is not one.

    >>> parse_time_of_day("21:30"), parse_time_of_day("24:00")
    (77400, None)
    """
    if isinstance(value, str) and (match := re.match(r"^(\d{2}):(\d{2})$", value)):
        hours, minutes = int(match.group(1)), int(match.group(2))
        if hours < 24 and minutes < 60:
            return hours * 3600 + minutes * 60
    return None


def build_policy(data: dict[str, Any], source: str) -> Policy:
    top = _Checker(source, "the policy", data)
    top.known({"contact", "triggers", "experiments", "models", "staffing"})
    contact = _contact(_Checker(source, "[contact]", top.value("contact", {})))
    models = _models(_Checker(source, "[models]", top.value("models", {})))
    triggers_table = _Checker(source, "[triggers]", top.value("triggers"))
    triggers: dict[str, TriggerPolicy] = {}
    disabled: set[str] = set()
    for name, table in triggers_table.table.items():
        if not IDENTIFIER.match(name):
            triggers_table.fail(None, f"has a trigger named {name!r}: use lower-case letters, digits and _")
        trigger = _trigger(name, _Checker(source, f"trigger {name!r}", table))
        if trigger is None:
            disabled.add(name)
        else:
            triggers[name] = trigger
    for signal in SINGLE_USE_SIGNALS:
        users = [t.name for t in triggers.values() if t.signal == signal]
        if len(users) > 1:
            raise PolicyError(f"{source}: signal {signal!r} is used by {users}; one trigger at most may")
    capped = {cap.channel for cap in contact.caps}
    for trigger in triggers.values():
        for channel in trigger.channels:
            if channel not in capped:
                raise PolicyError(
                    f"{source}: trigger {trigger.name!r}: field 'channels' names {channel!r}, which has no"
                    " [[contact.caps]] entry (every channel needs a frequency cap)"
                )
    experiments_value = top.value("experiments", [])
    if not isinstance(experiments_value, list):
        top.fail("experiments", "must be an array of tables ([[experiments]])")
    experiments = tuple(
        experiment
        for index, table in enumerate(experiments_value)
        if (
            experiment := _experiment(
                _Checker(source, f"[[experiments]] #{index + 1}", table), triggers, disabled
            )
        )
    )
    seen: dict[str, str] = {}
    for experiment in experiments:
        for trigger in experiment.triggers:
            if trigger in seen:
                raise PolicyError(
                    f"{source}: trigger {trigger!r} is in experiments {seen[trigger]!r} and"
                    f" {experiment.name!r}; a trigger may be in one experiment at a time"
                )
            seen[trigger] = experiment.name
    staffing = _staffing(_Checker(source, "[staffing]", top.value("staffing", {})))
    return Policy(triggers, contact, experiments, models, staffing)


STAFFED_CHANNELS = ("chat", "phone", "email", "other")  # streams.processes.support_load.CHANNELS


def _staffing(check: _Checker) -> StaffingRules:
    check.known(set(STAFFED_CHANNELS))
    channels = {}
    for channel in STAFFED_CHANNELS:
        if channel not in check.table:
            continue
        table = _Checker(check.source, f"[staffing.{channel}]", check.table[channel])
        table.known({"contacts_per_agent_hour", "agents_on_shift"})
        rate = table.number("contacts_per_agent_hour", low=0.01, high=1000.0)
        shift = table.value("agents_on_shift")
        if isinstance(shift, int) and not isinstance(shift, bool):
            shift = [shift] * 24
        if (
            not isinstance(shift, list)
            or len(shift) != 24
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shift)
        ):
            table.fail(
                "agents_on_shift",
                f"must be a whole number >= 0, or 24 of them (one per UTC hour), got {shift!r}",
            )
        channels[channel] = ChannelStaffing(rate, tuple(shift))
    return StaffingRules(channels)


def _models(check: _Checker) -> ModelRules:
    check.known({"churn_horizon", "publish_delta", "publish_interval"})
    defaults = ModelRules()
    horizon = check.duration("churn_horizon", defaults.churn_horizon)
    if horizon <= 0:
        check.fail("churn_horizon", "must be longer than 0s")
    return ModelRules(
        horizon,
        check.number("publish_delta", defaults.publish_delta, low=0.0, high=1.0),
        check.duration("publish_interval", defaults.publish_interval),
    )


def _contact(check: _Checker) -> ContactRules:
    check.known({"timezone", "quiet_hours", "caps"})
    timezone = check.text("timezone", "UTC")
    if not check_timezone(timezone):
        check.fail("timezone", f"must be an IANA time zone such as 'Europe/Berlin', got {timezone!r}")
    window = check.value("quiet_hours", [])
    quiet = None
    if window != []:
        bounds = [parse_time_of_day(v) for v in window] if isinstance(window, list) else []
        if len(bounds) != 2 or None in bounds or bounds[0] == bounds[1]:
            check.fail("quiet_hours", f'must be ["HH:MM", "HH:MM"] (start, end) or [], got {window!r}')
        quiet = (bounds[0], bounds[1])
    caps_value = check.value("caps", [])
    if not isinstance(caps_value, list):
        check.fail("caps", "must be an array of tables ([[contact.caps]])")
    caps = []
    for index, table in enumerate(caps_value):
        cap = _Checker(check.source, f"[[contact.caps]] #{index + 1}", table)
        cap.known({"channel", "max", "window"})
        caps.append(Cap(cap.identifier("channel"), cap.integer("max", minimum=1), cap.duration("window")))
    if len({cap.channel for cap in caps}) != len(caps):
        check.fail("caps", "has two caps for one channel")
    return ContactRules(timezone, quiet, tuple(caps))  # type: ignore[arg-type]


def _trigger(name: str, check: _Checker) -> TriggerPolicy | None:
    if not check.boolean("enabled", True):
        return None
    signal = check.text("signal", choices=tuple(SIGNALS))
    params_spec = SIGNALS[signal]
    check.known(_COMMON_FIELDS | set(params_spec))
    params = {}
    for param, (kind, default) in params_spec.items():
        given = ... if default is REQUIRED else default
        if kind == "duration":
            params[param] = check.duration(param, given)
        elif kind == "fraction":
            params[param] = check.number(param, given, low=0.0, high=1.0)
        else:
            params[param] = check.number(param, given)
    if signal == "negative_emotion" and params["messages"] < 1:
        check.fail("messages", f"must be at least 1, got {params['messages']:g}")
    if signal == "activity_decline" and params["short"] >= params["baseline"]:
        check.fail("short", "must be shorter than 'baseline'")
    offer = None
    if "offer" in check.table:
        offer_check = _Checker(check.source, f"trigger {name!r} offer", check.table["offer"])
        offer_check.known(_OFFER_FIELDS)
        offer = Offer(
            kind=offer_check.identifier("kind"),
            percent=offer_check.number("percent", low=0.0, high=100.0),
            eligible=offer_check.text("eligible", "always", choices=OFFER_ELIGIBILITY),
            min_abandoned_payments=offer_check.integer("min_abandoned_payments", 2, minimum=1),
        )
    mode = check.text("mode", LIVE, choices=MODES)
    percent = 100.0
    if mode == PERCENT:
        percent = check.number("percent", low=0.0, high=100.0)
    elif "percent" in check.table:
        check.fail("percent", f'is read only with mode = "percent", and the mode is {mode!r}')
    return TriggerPolicy(
        name=name,
        signal=signal,
        action=check.identifier("action"),
        channels=check.identifiers("channels"),
        priority=check.integer("priority", 50),
        template=check.text("template", name),
        cooldown=check.duration("cooldown", 0.0),
        quiet_hours=check.text("quiet_hours", "defer", choices=QUIET_HOURS_MODES),
        params=params,
        offer=offer,
        mode=mode,
        percent=percent,
    )


def _experiment(check: _Checker, triggers: dict[str, TriggerPolicy], disabled: set[str]) -> Experiment | None:
    """The experiment, without its disabled triggers; None when none of its triggers is enabled."""
    check.known({"name", "triggers", "arms"})
    name = check.identifier("name")
    names = tuple(trigger for trigger in check.identifiers("triggers") if trigger not in disabled)
    for trigger in names:
        if trigger not in triggers:
            check.fail("triggers", f"names {trigger!r}, which is not a trigger")
    arms_table = _Checker(check.source, f"experiment {name!r} arms", check.value("arms"))
    arms = []
    for arm in arms_table.table:
        if not IDENTIFIER.match(arm):
            arms_table.fail(arm, "is not a valid arm name")
        arms.append((arm, arms_table.number(arm, low=0.0, high=1.0)))
    if len(arms) < 2 or abs(sum(share for _, share in arms) - 1.0) > 1e-9:
        check.fail("arms", f"must give two or more arms shares that sum to 1, got {dict(arms)!r}")
    return Experiment(name, names, tuple(arms)) if names else None
