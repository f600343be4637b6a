"""OffsetForLeaderEpoch (key 23): end offsets of leader epochs from the leader's cache."""
from __future__ import annotations

import pytest

from handler_harness import broker, call, create_topic, make_broker, produce  # noqa: F401
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import OffsetForLeaderEpochRequest as Req
from kafkette.protocol.records import build_batch

T = Req.OffsetForLeaderTopic
P = T.OffsetForLeaderPartition


def ask(broker, topic, epoch, current=-1, partition=0, version=4):
    r = call(broker, Req(replica_id=-1, topics=[T(topic=topic, partitions=[
        P(partition=partition, current_leader_epoch=current, leader_epoch=epoch)])]), version)
    p = r.topics[0].partitions[0]
    return p.error_code, p.leader_epoch, p.end_offset


@pytest.mark.parametrize("version", [2, 3, 4])
def test_current_epoch_ends_at_the_log_end(broker, version):
    create_topic(broker, "e")
    produce(broker, "e", 0, build_batch([(b"k", b"v", [])] * 3, timestamp_ms=broker.clock.time_ms()))
    assert ask(broker, "e", 0, version=version) == (0, 0, 3)


def test_fencing_and_unknown_partitions(broker):
    create_topic(broker, "f")
    assert ask(broker, "f", 0, current=1)[0] == ErrorCode.UNKNOWN_LEADER_EPOCH
    assert ask(broker, "nope", 0)[0] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert ask(broker, "f", 0, partition=5)[0] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
