"""Policy reload without a restart: read the policy file again, check it, and put it in force or refuse it.

:class:`PolicyReloader` holds the policy in force and the content hash of the file it came from. Its
:meth:`~PolicyReloader.reload` (called by the worker every ``FOREWARN_POLICY_RELOAD_SECONDS`` and on
SIGHUP) reads ``FOREWARN_POLICY_FILE``; when the content differs from the last one seen it builds a new
:class:`~streams.domain.policy.Policy` (never mutating the one in force: its by-signal lookups are
cached) and hands it to ``apply``. A file that cannot be read or fails its checks is refused: the
policy in force stays, the PolicyError is logged, and ``forewarn_policy_reloads_total{result="refused"}``
counts it, once per content (the same broken file is not logged again at every poll; SIGHUP does).

>>> import pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "ops.toml"
>>> _ = path.write_text('[triggers.delay_notice]\\nmode = "shadow"\\n')
>>> swapped = []
>>> reloader = PolicyReloader.start(str(path), swapped.append)
>>> reloader.policy.triggers["delay_notice"].mode, reloader.reload()
('shadow', 'unchanged')
>>> _ = path.write_text('[triggers.delay_notice]\\nmode = "live"\\n')
>>> reloader.reload(), swapped[-1].triggers["delay_notice"].mode
('applied', 'live')
>>> _ = path.write_text('[triggers.delay_notice]\\nmode = "sometimes"\\n')
>>> reloader.reload(), reloader.policy.triggers["delay_notice"].mode, len(swapped)
('refused', 'live', 1)
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from streams.contracts import metrics
from streams.domain.policy import Policy, PolicyError, load_policy

log = logging.getLogger(__name__)

APPLIED, REFUSED, UNCHANGED = "applied", "refused", "unchanged"


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise PolicyError(f"{path}: cannot read the policy file: {error.strerror}") from None


def _fingerprint(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@dataclass
class PolicyReloader:
    """The policy in force and where it comes from; ``apply`` is called with each new policy put in force.

    Build it with :meth:`start` (which raises PolicyError for a policy that fails at start: the worker
    refuses to run on it), then call :meth:`reload` whenever the file may have changed.
    """

    path: str  # FOREWARN_POLICY_FILE; "" for the packaged default alone (nothing to reload)
    policy: Policy
    apply: Callable[[Policy], None]
    seen: str = ""  # content hash of the file last read, applied or refused (or why it could not be read)

    @classmethod
    def start(cls, path: str, apply: Callable[[Policy], None]) -> PolicyReloader:
        """The reloader of the policy file ``path``, its policy loaded (PolicyError if it is invalid)."""
        if not path:
            return cls(path, load_policy(), apply)
        content = _read(path)
        return cls(path, _load(content, path), apply, _fingerprint(content))

    def reload(self, force: bool = False) -> str:
        """Read the file again: ``applied``, ``refused``, or ``unchanged`` when its content is the one seen
        last. ``force`` (SIGHUP) checks again, and reports again, a file refused already."""
        if not self.path:
            return UNCHANGED
        try:
            content = _read(self.path)
        except PolicyError as error:
            # Remembered like a content: a file gone stays one refusal until it changes again.
            if str(error) == self.seen and not force:
                return UNCHANGED
            return self._refuse(error, str(error))
        fingerprint = _fingerprint(content)
        if fingerprint == self.seen and not force:
            return UNCHANGED
        try:
            policy = _load(content, self.path)
        except PolicyError as error:
            return self._refuse(error, fingerprint)
        self.seen = fingerprint
        if policy == self.policy:
            return UNCHANGED  # the content changed (a comment, say), not the policy
        before, self.policy = self.policy, policy
        self.apply(policy)
        metrics.POLICY_RELOADS.labels(APPLIED).inc()
        log.warning("policy reloaded from %s: %s", self.path, describe_change(before, policy))
        return APPLIED

    def _refuse(self, error: PolicyError, fingerprint: str) -> str:
        self.seen = fingerprint
        metrics.POLICY_RELOADS.labels(REFUSED).inc()
        log.error("policy reload refused, the policy in force stays: %s", error)
        return REFUSED


def _load(content: bytes, path: str) -> Policy:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PolicyError(f"{path}: not UTF-8 text: {error.reason}") from None
    return load_policy(text=text, name=path)


def describe_change(before: Policy, after: Policy) -> str:
    """What a reload changed, trigger by trigger, for the log.

    >>> old = load_policy(text="experiments = []")
    >>> new = load_policy(text='experiments = []\\n[triggers.delay_notice]\\nmode = "percent"\\n'
    ...                   'percent = 5\\n[triggers.feature_tip]\\nenabled = false\\n')
    >>> describe_change(old, new)
    'delay_notice changed (mode percent 5%); feature_tip removed'
    """
    changes = []
    for name in sorted(set(before.triggers) | set(after.triggers)):
        old, new = before.triggers.get(name), after.triggers.get(name)
        if old == new:
            continue
        if old is None or new is None:
            changes.append(f"{name} {'added' if old is None else 'removed'}")
        else:
            mode = new.mode + (f" {new.percent:g}%" if new.mode == "percent" else "")
            changes.append(f"{name} changed (mode {mode})")
    rest = (before.contact, before.experiments, before.models)
    if rest != (after.contact, after.experiments, after.models):
        changes.append("contact rules, experiments or model rules changed")
    return "; ".join(changes) or "no trigger changed"
