"""The live models of this worker's partitions, and their checkpoints in the ``models`` table.

Models are far larger than a user's state, so they are not written on every event: a partition's
models go to the changelog every ``model_checkpoint_seconds``, when the partition is revoked and at
shutdown. A crash loses at most one interval of their learning, never a prediction or a user's
features. The checkpoints are signed with the cluster secret (:mod:`streams.worker.checkpoints`): one
without a valid tag is refused at recovery and its partition starts from fresh models.

The live objects are kept here rather than read from the table each time: a RocksDB store would hand
out a fresh copy of the last checkpoint on every read.

>>> models = LiveModels(table={})
>>> first = models.of(3)
>>> models.of(3) is first, models.learned(3), sorted(models.unsaved)
(True, None, [3])
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any

from models.learners import PartitionModels
from streams.contracts import metrics


class LiveModels:
    """Each partition's models: live, or as recovered from the ``models`` table, or new.

    ``table`` maps ``str(partition)`` to the last checkpoint (the ``models`` table, or a dict in
    tests); ``checkpoint`` hands each checkpoint to ``send(partition, models)``.
    """

    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self.table = table
        self.live: dict[int, PartitionModels] = {}
        self.unsaved: set[int] = set()  # partitions whose models learned since their last checkpoint
        self.recovered: set[int] = set()  # partitions to compare with the table after a rebalance
        # (model, metric, partition) -> the latest quality read at a checkpoint
        self.quality: dict[tuple[str, str, str], float] = {}

    def of(self, partition: int) -> PartitionModels:
        """The partition's models. After a rebalance the later of the live ones and the table's
        (another worker may have held the partition and checkpointed since) is kept."""
        models = self.live.get(partition)
        if models is None or partition in self.recovered:
            self.recovered.discard(partition)
            stored = self.table.get(str(partition))
            if stored is not None and (models is None or stored.checkpoints > models.checkpoints):
                models = stored
                self.unsaved.discard(partition)
            self.live[partition] = models = models or PartitionModels()
        return models

    def learned(self, partition: int) -> None:
        """The partition's models learned: the next checkpoint writes them."""
        self.unsaved.add(partition)

    def table_recovered(self) -> None:
        """The table was recovered after a rebalance: compare each live partition with it again."""
        self.recovered.update(self.live)

    def checkpoint(self, partitions: Iterable[int], send: Any) -> None:
        """Hand the models of ``partitions`` that learned since their last checkpoint to ``send``."""
        for partition in partitions:
            models = self.live.get(partition)
            if models is None or partition not in self.unsaved:
                continue
            # Read the quality first: River's rolling ROC AUC buffers its updates until it is read, and
            # the checkpoint is pickled at once; unread, every label since the last one rides along.
            for model in models.by_name().values():
                for metric, value in model.quality().items():
                    self.quality[(model.name, metric, str(partition))] = value
                    metrics.MODEL_QUALITY.labels(model.name, metric, str(partition)).set(value)
            models.checkpoints += 1
            send(partition, models)
            self.unsaved.discard(partition)
            metrics.MODEL_CHECKPOINTS.labels(str(partition)).inc()

    def quality_of(self, partitions: set[str]) -> dict[tuple[str, str, str], float]:
        """The latest quality of the models of ``partitions`` (as strings)."""
        return {labels: value for labels, value in self.quality.items() if labels[2] in partitions}
