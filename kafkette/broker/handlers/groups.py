"""Shared by the group handlers: the coordinator lookup, delayed answers, waiting for
the group's writes to `__consumer_offsets` to reach the in-sync replicas, and the
offsets of an OffsetCommit or TxnOffsetCommit."""
import asyncio

from kafkette.coordinator.group_coordinator import OffsetCommit
from kafkette.errors import ErrorCode

# Kafka's offset.commit.timeout.ms default: how long an answer waits for replication.
REPLICATION_TIMEOUT_MS = 5000
# Append errors as Kafka's GroupMetadataManager maps them for a group's answers.
_APPEND_ERRORS = {ErrorCode.NOT_LEADER_OR_FOLLOWER: ErrorCode.NOT_COORDINATOR}


def ensure_coordinator(ctx):
    """The group coordinator of this broker, with `__consumer_offsets` created on
    first use (as Kafka creates it on the first FindCoordinator for a group)."""
    return ctx.broker.group_coordinator_ready()


def delayed_response():
    """(future, respond): the coordinator calls `respond` once, now or later."""
    fut = asyncio.get_running_loop().create_future()

    def respond(result) -> None:
        if not fut.done():
            fut.set_result(result)

    return fut, respond


def await_group_replication(coordinator, group_id: str):
    """None when the group's last write is replicated already (or the store does not
    replicate), else an awaitable of the error code the answer carries: 0 once the ISR
    has it, else COORDINATOR_NOT_AVAILABLE (NOT_COORDINATOR when the leadership moved),
    as Kafka's coordinator maps a failed acks=all append of its own."""
    store = coordinator.store
    if not hasattr(store, "await_replication"):
        return None
    waiting = store.await_replication(group_id, REPLICATION_TIMEOUT_MS)
    if waiting is None:
        return None

    async def code():
        c = await waiting
        return _APPEND_ERRORS.get(c, ErrorCode.COORDINATOR_NOT_AVAILABLE) if c else 0
    return code()


def offsets_to_commit(ctx, topics, with_leader_epoch: bool):
    """OffsetCommit's and TxnOffsetCommit's topics as ({(topic, partition):
    OffsetCommit}, {(topic, partition): error}): partitions of unknown topics are
    UNKNOWN_TOPIC_OR_PARTITION, as Kafka answers, and the leader epoch is kept only
    from the versions that carry it."""
    image = ctx.broker.image
    now = ctx.broker.clock.time_ms()
    offsets, codes = {}, {}
    for t in topics:
        topic = image.topics.get(t.name)
        for p in t.partitions:
            tp = (t.name, p.partition_index)
            if topic is None or p.partition_index not in topic.partitions:
                codes[tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                continue
            offsets[tp] = OffsetCommit(
                offset=p.committed_offset,
                leader_epoch=p.committed_leader_epoch if with_leader_epoch else -1,
                metadata=p.committed_metadata, commit_timestamp=now)
    return offsets, codes
