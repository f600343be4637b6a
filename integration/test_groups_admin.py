"""Group administration against kafkette: ListGroups (with the KIP-518 state filter),
DescribeGroups, OffsetFetch for a whole group, DeleteGroups (NON_EMPTY_GROUP while a
member is in the group), through kafka-python's KafkaAdminClient and confluent-kafka's
AdminClient; and `__consumer_offsets` kept out of an all-topics Metadata answer.

kafka-python 3.0 renamed the group admin calls: list_groups, describe_groups,
list_group_offsets and delete_groups (2.x: list_consumer_groups, ...)."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from confluent_kafka import (ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaError,
                             KafkaException, TopicPartition as CkTopicPartition)
from confluent_kafka.admin import AdminClient
from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from it_clients import (ConfluentMember, KafkaPythonMember, admin, assignments, consumer,
                        create_topic, members, produce_to_partitions)
from itutil import unique_topic, wait_until

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
pytestmark = pytest.mark.timeout(90)

MEMBER_CFG = dict(session_timeout_ms=30000, heartbeat_interval_ms=500)


@pytest.fixture(scope="module")
def broker_config():
    return {"group.initial.rebalance.delay.ms": 0}


def _ids(groups) -> set:
    return {x["group_id"] for x in groups}


def _member_partitions(member: dict, topic: str) -> list[int]:
    asg = member["member_assignment"]
    if hasattr(asg, "partitions"):
        return sorted(tp.partition for tp in asg.partitions() if tp.topic == topic)
    out = []
    for entry in (asg or {}).get("assigned_partitions") or []:
        t, ps = (entry["topic"], entry["partitions"]) if isinstance(entry, dict) else entry
        if t == topic:
            out.extend(ps)
    return sorted(out)


# --------------------------------------------------------------------------- kafka-python

def test_kafka_python_admin_group_lifecycle(broker):
    t, g = unique_topic("adm-kp"), unique_topic("adm-kp-grp")
    create_topic(broker.bootstrap, t, partitions=3)
    produce_to_partitions(broker.bootstrap, t, 30, 3)
    offsets = {p: OffsetAndMetadata(3 + p, f"m{p}", -1) for p in range(3)}
    m = KafkaPythonMember(broker.bootstrap, g, [t], name="kp-adm", **MEMBER_CFG)
    with members(m), admin(broker.bootstrap) as a:
        wait_until(lambda: assignments([m], t)[0] == frozenset(range(3)), timeout=30,
                   message="the member to get all 3 partitions")
        m.call(lambda c: c.commit({TopicPartition(t, p): om for p, om in offsets.items()}))

        listed = [x for x in a.list_groups() if x["group_id"] == g]
        assert len(listed) == 1, listed
        assert listed[0]["protocol_type"] == "consumer", listed
        assert listed[0].get("group_state") == "Stable", listed
        assert g in _ids(a.list_groups(states_filter=["Stable"]))
        assert g not in _ids(a.list_groups(states_filter=["Empty"]))

        d = a.describe_groups([g])[g]
        assert d["error"] is None, d
        assert (d["group_state"], d["protocol_type"], d["protocol_data"]) == \
            ("Stable", "consumer", "range"), d
        assert len(d["members"]) == 1, d
        mem = d["members"][0]
        assert mem["client_id"] == "it-kp-adm", mem
        assert mem["member_id"].startswith("it-kp-adm"), mem    # Kafka: client id + uuid
        assert _member_partitions(mem, t) == [0, 1, 2], mem

        got = a.list_group_offsets({g: None})[g]
        assert {tp.partition: (om.offset, om.metadata) for tp, om in got.items()
                if tp.topic == t} == {p: (om.offset, om.metadata) for p, om in offsets.items()}
        one = a.list_group_offsets({g: [TopicPartition(t, 1)]})[g]
        assert {tp: om.offset for tp, om in one.items()} == {TopicPartition(t, 1): 4}

        assert a.delete_groups([g]) == {g: "NonEmptyGroupError"}
        assert len(a.list_group_offsets({g: None})[g]) == 3, "offsets gone after a refused delete"

    assert m.close_error is None
    with admin(broker.bootstrap) as a:
        def empty():
            d = a.describe_groups([g])[g]
            return d["group_state"] == "Empty" and d["members"] == [] and d
        wait_until(empty, timeout=10, interval=0.2, message="the group to be Empty after close")
        assert g in _ids(a.list_groups(states_filter=["Empty"]))
        assert a.delete_groups([g]) == {g: "OK"}
        assert g not in _ids(a.list_groups())
        assert a.list_group_offsets({g: None})[g] == {}
        assert a.delete_groups([g]) == {g: "GroupIdNotFoundError"}
        d = a.describe_groups([g])[g]
        # Kafka answers an unknown group with state Dead and no error
        assert (d["error"], d["group_state"], d["members"]) == (None, "Dead", []), d


def test_offsets_only_group_can_be_listed_and_deleted(broker):
    """A 'simple' consumer (assign(), no subscribe) commits with generation -1 and no
    member id: Kafka stores the offsets in an Empty group with no protocol type."""
    t, g = unique_topic("adm-simple"), unique_topic("adm-simple-grp")
    create_topic(broker.bootstrap, t, partitions=2)
    with consumer(broker.bootstrap, group_id=g) as c:
        c.assign([TopicPartition(t, 0), TopicPartition(t, 1)])
        c.commit({TopicPartition(t, 0): OffsetAndMetadata(7, "simple", -1)})
        assert c.committed(TopicPartition(t, 0)) == 7
        assert c.committed(TopicPartition(t, 1)) is None
    with admin(broker.bootstrap) as a:
        listed = [x for x in a.list_groups() if x["group_id"] == g]
        assert len(listed) == 1 and listed[0]["protocol_type"] == "", listed
        assert listed[0].get("group_state") == "Empty", listed
        off = a.list_group_offsets({g: None})[g]
        assert {tp: (om.offset, om.metadata) for tp, om in off.items()} == \
            {TopicPartition(t, 0): (7, "simple")}
        assert a.delete_groups([g]) == {g: "OK"}
        assert a.list_group_offsets({g: None})[g] == {}


# --------------------------------------------------------------------------- confluent

def _ck_admin(b) -> AdminClient:
    return AdminClient({"bootstrap.servers": b.bootstrap, "socket.timeout.ms": 10000})


def _ck_list(a, **kw):
    res = a.list_consumer_groups(request_timeout=15, **kw).result(timeout=20)
    assert not res.errors, res.errors
    return {x.group_id: x for x in res.valid}


def _ck_delete_error(a, g):
    try:
        a.delete_consumer_groups([g], request_timeout=15)[g].result(timeout=20)
        return None
    except KafkaException as e:
        return e.args[0].code()


def test_confluent_admin_group_lifecycle(broker):
    t, g = unique_topic("adm-ck"), unique_topic("adm-ck-grp")
    create_topic(broker.bootstrap, t, partitions=3)
    produce_to_partitions(broker.bootstrap, t, 30, 3)
    a = _ck_admin(broker)
    m = ConfluentMember(broker.bootstrap, g, [t], name="ck-adm",
                        **{"session.timeout.ms": 30000, "heartbeat.interval.ms": 500,
                           "partition.assignment.strategy": "roundrobin"})
    with members(m):
        wait_until(lambda: assignments([m], t)[0] == frozenset(range(3)), timeout=30,
                   message="the member to get all 3 partitions")
        res = m.call(lambda c: c.commit(offsets=[CkTopicPartition(t, p, 5 + p, f"ck{p}")
                                                 for p in range(3)], asynchronous=False))
        assert all(tp.error is None for tp in res), res

        listing = _ck_list(a)
        assert g in listing, sorted(listing)
        assert listing[g].state == ConsumerGroupState.STABLE, listing[g].state
        assert listing[g].is_simple_consumer_group is False
        assert g in _ck_list(a, states={ConsumerGroupState.STABLE})
        assert g not in _ck_list(a, states={ConsumerGroupState.EMPTY})

        d = a.describe_consumer_groups([g], request_timeout=15)[g].result(timeout=20)
        assert d.group_id == g and d.state == ConsumerGroupState.STABLE, d.state
        assert d.partition_assignor == "roundrobin"
        assert d.coordinator.port == broker.port, d.coordinator
        assert len(d.members) == 1
        mem = d.members[0]
        assert mem.client_id == "it-ck-adm" and mem.group_instance_id is None, vars(mem)
        assert sorted(tp.partition for tp in mem.assignment.topic_partitions
                      if tp.topic == t) == [0, 1, 2]

        fs = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g)],
                                           request_timeout=15)
        got = fs[g].result(timeout=20)
        assert got.group_id == g
        assert {tp.partition: (tp.offset, tp.metadata) for tp in got.topic_partitions
                if tp.topic == t} == {p: (5 + p, f"ck{p}") for p in range(3)}

        assert _ck_delete_error(a, g) == KafkaError.NON_EMPTY_GROUP

    assert m.close_error is None
    wait_until(lambda: _ck_list(a, states={ConsumerGroupState.EMPTY}).get(g), timeout=10,
               interval=0.2, message="the group to be listed as Empty after close")
    assert _ck_delete_error(a, g) is None
    assert g not in _ck_list(a)
    assert _ck_delete_error(a, g) == KafkaError.GROUP_ID_NOT_FOUND


# --------------------------------------------------------------------------- metadata

@pytest.mark.skipif(KCAT is None, reason="kcat not installed")
def test_consumer_offsets_hidden_from_all_topics_metadata(broker):
    t, g = unique_topic("adm-int"), unique_topic("adm-int-grp")
    create_topic(broker.bootstrap, t, partitions=1)
    with consumer(broker.bootstrap, group_id=g) as c:     # creates __consumer_offsets
        c.assign([TopicPartition(t, 0)])
        c.commit({TopicPartition(t, 0): OffsetAndMetadata(0, "", -1)})

    def kcat(*args):
        cmd = [KCAT, "-b", broker.bootstrap, "-X", "socket.timeout.ms=10000", *args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=40)
        assert r.returncode == 0, f"{cmd}: {r.returncode}\n{r.stderr[-2000:]}"
        return r.stdout

    out = kcat("-L")
    assert f'topic "{t}"' in out, out
    assert "__consumer_offsets" not in out, out
    # asked for by name, the internal topic is there (with its partitions)
    out = kcat("-L", "-t", "__consumer_offsets")
    m = re.search(r'topic "__consumer_offsets" with (\d+) partitions', out)
    assert m and int(m.group(1)) == 50, out     # offsets.topic.num.partitions default
