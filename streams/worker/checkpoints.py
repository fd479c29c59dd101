"""Model checkpoints as they travel through the ``models`` changelog: authenticated, then unpickled only
into the classes a partition's models are made of.

A checkpoint (:func:`seal`) is :data:`HEADER` (a magic string and the format's version), a 32-byte
HMAC-SHA256 tag, and the pickled :class:`models.learners.PartitionModels`. The tag is computed over the
header and the payload under a key derived from the deployment's cluster secret
(:func:`streams.contracts.privacy.load_cluster_secret`), which every worker shares and nobody else has.

:func:`open_sealed` checks the header and the tag, in constant time, before it reads one byte of the
payload: a record forged by whoever can write the topic but does not hold the secret, one written
before checkpoints were signed (plain pickle) or one cut short is refused without being decoded. A
payload whose tag verifies is unpickled by :class:`ModelsUnpickler`, which resolves only the classes
and functions listed in :data:`ALLOWED` (River's and ours that a checkpoint is made of, and a few of
the standard library's containers): a global outside the list (``os.system``, ``builtins.eval``...)
refuses the checkpoint before anything is called. The tag is what keeps strangers out; the list
bounds what even a holder of the secret could make a worker run.

>>> from models.learners import PartitionModels
>>> secret = b"a cluster secret of 16+ bytes"
>>> sealed = seal(PartitionModels(), secret)
>>> sealed[:4] == HEADER, type(open_sealed(sealed, secret)).__name__
(True, 'PartitionModels')
>>> try:
...     open_sealed(sealed, b"another cluster's secret")
... except CheckpointRefused as refused:
...     print(refused.reason)
bad_signature
"""

from __future__ import annotations

import hashlib
import hmac
import io
import pickle
from typing import Any

from models.learners import MonitoredClassifier, PartitionModels
from models.tagger import FeedbackTagger

HEADER = b"FWM\x01"  # "Forewarn models", format version 1
TAG_BYTES = hashlib.sha256().digest_size
# Derives the checkpoints' key from the cluster secret, so that a tag made for another use of the same
# secret (the API calls workers forward to each other) is never a valid checkpoint tag.
KEY_CONTEXT = b"forewarn model checkpoint v1"

# Why a checkpoint is refused (the ``reason`` label of forewarn_changelog_refused_total).
UNSIGNED = "unsigned"  # no header: not written by this format (an older worker's plain pickle, or junk)
BAD_SIGNATURE = "bad_signature"  # the tag does not verify under this deployment's secret
FORBIDDEN_CLASS = "forbidden_class"  # signed, but names a global outside ALLOWED
MALFORMED = "malformed"  # signed, but not a partition's models

# Every global a PartitionModels pickle names (module, name): what River's pipelines, optimisers,
# metrics and drift detector, our models and the standard containers they hold pickle as.
ALLOWED = frozenset(
    {
        ("array", "_array_reconstructor"),
        ("array", "array"),
        ("builtins", "float"),
        ("collections", "Counter"),
        ("collections", "OrderedDict"),
        ("collections", "defaultdict"),
        ("collections", "deque"),
        # SoftmaxRegression's per-class optimisers: a defaultdict of partial(deepcopy, optimiser).
        ("copy", "deepcopy"),
        ("functools", "partial"),
        ("models.emotion", "EmotionModel"),
        ("models.learners", "MonitoredClassifier"),
        ("models.learners", "PartitionModels"),
        ("models.tagger", "FeedbackTagger"),
        ("river._river_rust.drift", "AdaptiveWindowing"),
        ("river._river_rust.stats", "RsRollingROCAUC"),
        ("river._river_rust.vectordict", "VectorDict"),
        ("river.compose.pipeline", "Pipeline"),
        ("river.drift.adwin", "ADWIN"),
        ("river.linear_model.log_reg", "LogisticRegression"),
        ("river.linear_model.softmax", "SoftmaxRegression"),
        ("river.metrics.accuracy", "Accuracy"),
        ("river.metrics.confusion", "ConfusionMatrix"),
        ("river.metrics.fbeta", "MacroF1"),
        ("river.metrics.log_loss", "LogLoss"),
        ("river.metrics.rolling_roc_auc", "RollingROCAUC"),
        ("river.optim.ada_grad", "AdaGrad"),
        ("river.optim.initializers", "Zeros"),
        ("river.optim.losses", "CrossEntropy"),
        ("river.optim.losses", "Log"),
        ("river.optim.schedulers", "Constant"),
        ("river.optim.sgd", "SGD"),
        ("river.preprocessing.scale", "StandardScaler"),
        ("river.stats.mean", "Mean"),
        ("river.utils.rolling", "Rolling"),
    }
)


class CheckpointRefused(Exception):
    """A checkpoint that is not read; ``reason`` is one of the reasons above. The message never holds
    the secret or the payload."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ModelsUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of :data:`ALLOWED`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED:
            raise CheckpointRefused(FORBIDDEN_CLASS, f"names {module[:100]}.{name[:100]}")
        return super().find_class(module, name)


def checkpoint_key(secret: bytes) -> bytes:
    """The HMAC key of checkpoints, derived from the cluster secret."""
    return hmac.new(secret, KEY_CONTEXT, hashlib.sha256).digest()


def _tag(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, HEADER + payload, hashlib.sha256).digest()


def seal(models: PartitionModels, secret: bytes) -> bytes:
    """The checkpoint of ``models``: header, tag, pickle."""
    payload = pickle.dumps(models, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER + _tag(checkpoint_key(secret), payload) + payload


def open_sealed(raw: bytes, secret: bytes) -> PartitionModels:
    """The models of a checkpoint :func:`seal` wrote under ``secret``. Raises :class:`CheckpointRefused`
    for anything else; the payload is unpickled only once its tag verifies."""
    if not raw.startswith(HEADER) or len(raw) < len(HEADER) + TAG_BYTES:
        raise CheckpointRefused(UNSIGNED, f"{len(raw)} bytes without the {HEADER!r} header and tag")
    tag, payload = raw[len(HEADER) : len(HEADER) + TAG_BYTES], raw[len(HEADER) + TAG_BYTES :]
    if not hmac.compare_digest(tag, _tag(checkpoint_key(secret), payload)):
        raise CheckpointRefused(BAD_SIGNATURE, "the tag does not verify under the cluster secret")
    try:
        models = ModelsUnpickler(io.BytesIO(payload)).load()
    except CheckpointRefused:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # River's Rust state raises a PanicException (a BaseException)
        raise CheckpointRefused(MALFORMED, f"cannot be read: {type(error).__name__}") from error
    if not (
        isinstance(models, PartitionModels)
        and isinstance(models.intent, MonitoredClassifier)
        and isinstance(models.churn, MonitoredClassifier)
        and isinstance(models.tagger, FeedbackTagger)
        and isinstance(models.checkpoints, int)
    ):
        raise CheckpointRefused(MALFORMED, f"holds a {type(models).__name__}, not a partition's models")
    return models
