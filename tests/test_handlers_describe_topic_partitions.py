"""DescribeTopicPartitions (key 75): partitions with ISR and ELR, paging by cursor."""
from __future__ import annotations

from handler_harness import broker, call, create_topic, make_broker  # noqa: F401
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import DescribeTopicPartitionsRequest as Req

T = Req.TopicRequest


def test_lists_partitions_with_isr_and_elr(broker):
    create_topic(broker, "a", partitions=2)
    r = call(broker, Req(topics=[T(name="a"), T(name="nope")]), 0)
    by = {t.name: t for t in r.topics}
    assert by["nope"].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    a = by["a"]
    assert a.error_code == 0 and [p.partition_index for p in a.partitions] == [0, 1]
    p = a.partitions[0]
    node = broker.node_id
    assert (p.leader_id, p.replica_nodes, p.isr_nodes) == (node, [node], [node])
    assert p.eligible_leader_replicas == [] and p.offline_replicas == []
    assert r.next_cursor is None


def test_pages_with_a_cursor(broker):
    create_topic(broker, "b1", partitions=3)
    create_topic(broker, "b2", partitions=2)
    seen = []
    cursor = None
    for _ in range(10):
        r = call(broker, Req(topics=[T(name="b2"), T(name="b1")], response_partition_limit=2,
                             cursor=cursor), 0)
        seen += [(t.name, p.partition_index) for t in r.topics for p in t.partitions]
        cursor = r.next_cursor
        if cursor is None:
            break
        cursor = Req.Cursor(topic_name=cursor.topic_name, partition_index=cursor.partition_index)
    assert seen == [("b1", 0), ("b1", 1), ("b1", 2), ("b2", 0), ("b2", 1)]


def test_cursor_on_a_topic_not_asked_for_is_invalid(broker):
    create_topic(broker, "c", partitions=1)
    r = call(broker, Req(topics=[T(name="c")], cursor=Req.Cursor(topic_name="zzz")), 0)
    assert [t.error_code for t in r.topics] == [ErrorCode.INVALID_REQUEST]
