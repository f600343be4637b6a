"""The replica manager: the partitions this broker hosts, their logs, appends and
reads. It follows the metadata image: when a topic appears its partition logs are
created, when it is removed they are deleted.

Replication (followers, ISR, high watermark from the followers' log end offsets,
acks=all in purgatory) lands here later; today every partition has one replica and
the high watermark is the log end offset after each append.
"""
from __future__ import annotations

from dataclasses import dataclass

from kafkette.controller.metadata_image import MetadataImage
from kafkette.errors import ErrorCode, KafkaError, UnknownTopicOrPartitionError
from kafkette.log.log_manager import LogManager
from kafkette.log.partition_log import LogConfig, PartitionLog
from kafkette.logging import get_logger

log = get_logger("kafkette.replica_manager")


def log_config_from_topic_configs(cfg: dict[str, str]) -> LogConfig:
    """Effective topic configs (strings, as DescribeConfigs shows them) → LogConfig."""
    return LogConfig.from_properties(cfg)


@dataclass
class Partition:
    topic: str
    index: int
    log: PartitionLog
    leader_epoch: int
    leader: int
    isr: tuple[int, ...] = ()


class NotLeaderError(KafkaError):
    """This broker does not lead the partition. `leader`/`leader_epoch` are the
    current leader as this broker's metadata knows it (-1: none), which Produce v10+
    and Fetch v12+ put in the response so that clients re-route without a Metadata
    round trip (KIP-951)."""
    code = ErrorCode.NOT_LEADER_OR_FOLLOWER

    def __init__(self, message: str | None = None, leader: int = -1, leader_epoch: int = -1):
        super().__init__(message)
        self.leader = leader
        self.leader_epoch = leader_epoch


class ReplicaManager:
    def __init__(self, node_id: int, log_manager: LogManager, topic_configs, purgatory, clock):
        self.node_id = node_id
        self.log_manager = log_manager
        self._topic_configs = topic_configs  # name -> effective config dict
        self.purgatory = purgatory
        self.clock = clock
        self.partitions: dict[tuple[str, int], Partition] = {}
        # Every partition of the cluster -> (leader, leader epoch), hosted here or not:
        # a request for a partition led elsewhere is NOT_LEADER_OR_FOLLOWER, not
        # UNKNOWN_TOPIC_OR_PARTITION.
        self.leaders: dict[tuple[str, int], tuple[int, int]] = {}

    # -- metadata --------------------------------------------------------------
    def on_metadata_update(self, old: MetadataImage, new: MetadataImage) -> None:
        for name, t in old.topics.items():
            nt = new.topics.get(name)
            if nt is None or nt.topic_id != t.topic_id:
                for p in t.partitions:
                    self.leaders.pop((name, p), None)
                    part = self.partitions.pop((name, p), None)
                    if part is not None:
                        self.log_manager.delete(name, p)
                        self.purgatory.notify((name, p))
        for name, t in new.topics.items():
            ot = old.topics.get(name)
            if ot is not None and ot.topic_id == t.topic_id and ot.partitions == t.partitions \
                    and ot.configs == t.configs:
                continue
            lc = log_config_from_topic_configs(self._topic_configs(name, new))
            for p, pi in t.partitions.items():
                self.leaders[(name, p)] = (pi.leader, pi.leader_epoch)
                if self.node_id not in pi.replicas:
                    continue
                key = (name, p)
                part = self.partitions.get(key)
                if part is None:
                    # create() returns a log already opened at start-up with its config
                    # replaced: logs are loaded before the topic configs are known.
                    plog = self.log_manager.create(name, p, lc)
                    self.partitions[key] = Partition(name, p, plog, pi.leader_epoch, pi.leader,
                                                     pi.isr)
                else:
                    part.leader_epoch, part.leader, part.isr = pi.leader_epoch, pi.leader, pi.isr
                    part.log.config = lc

    def remove_stray_logs(self, image: MetadataImage) -> None:
        """Logs on disk for topics the metadata no longer has (deleted while down)."""
        for topic, p in list(self.log_manager.partitions()):
            if (topic, p) not in self.partitions:
                log.info("deleting stray log", topic=topic, partition=p)
                self.log_manager.delete(topic, p)

    # -- data path -------------------------------------------------------------
    def partition(self, topic: str, index: int) -> Partition:
        part = self.partitions.get((topic, index))
        if part is None:
            known = self.leaders.get((topic, index))
            if known is None:
                raise UnknownTopicOrPartitionError()
            raise NotLeaderError(None, *known)
        if part.leader != self.node_id:
            raise NotLeaderError(None, part.leader, part.leader_epoch)
        return part

    def append(self, topic: str, index: int, records, required_acks: int = 1):
        part = self.partition(topic, index)
        if required_acks == -1 and len(part.isr) < part.log.config.min_insync_replicas:
            # Kafka refuses acks=all before appending when the ISR is smaller than
            # min.insync.replicas (Partition.appendRecordsToLeader).
            raise KafkaError(
                f"The size of the current ISR {set(part.isr)} is insufficient to satisfy "
                f"the min.isr requirement of {part.log.config.min_insync_replicas} for "
                f"partition {topic}-{index}", ErrorCode.NOT_ENOUGH_REPLICAS)
        result = part.log.append(records, part.leader_epoch, self.clock.time_ms())
        self.purgatory.notify((topic, index))
        return result

    def flush_all(self) -> None:
        self.log_manager.flush_all()
