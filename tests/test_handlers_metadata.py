"""Metadata (key 3), versions 0-12, through Dispatcher.handle."""
from __future__ import annotations

import uuid

import pytest

from handler_harness import (  # noqa: F401
    ADVERTISED_HOST,
    ADVERTISED_PORT,
    broker,
    call,
    create_topic,
    make_broker,
    produce,
)
from kafkette.protocol.messages import MetadataRequest
from kafkette.protocol.records import build_batch

RT = MetadataRequest.MetadataRequestTopic
ZERO = uuid.UUID(int=0)


def md(broker, names, version=12, allow_auto=True, **kw):
    topics = None if names is None else [RT(name=n) for n in names]
    return call(broker, MetadataRequest(topics=topics, allow_auto_topic_creation=allow_auto), version,
                **kw)


def by_name(resp):
    return {t.name: t for t in resp.topics}


@pytest.mark.parametrize("version", range(1, 13))
def test_null_topics_lists_all_topics(broker, version):
    create_topic(broker, "alpha", partitions=2)
    create_topic(broker, "beta", partitions=1)
    resp = md(broker, None, version)
    topics = by_name(resp)
    assert sorted(topics) == ["alpha", "beta"]
    assert [p.partition_index for p in topics["alpha"].partitions] == [0, 1]
    assert all(t.error_code == 0 for t in resp.topics)
    assert "__cluster_metadata" not in topics


def test_v0_empty_list_means_all_topics(broker):
    create_topic(broker, "alpha")
    resp = md(broker, [], 0)
    assert [t.name for t in resp.topics] == ["alpha"]


@pytest.mark.parametrize("version", range(1, 13))
def test_empty_list_means_no_topics_v1_plus(broker, version):
    create_topic(broker, "alpha")
    resp = md(broker, [], version)
    assert resp.topics == []
    assert [b.node_id for b in resp.brokers] == [1]


@pytest.mark.parametrize("version", range(4, 13))
def test_unknown_topic_auto_created_when_allowed(broker, version):
    resp = md(broker, ["fresh"], version, allow_auto=True)
    (t,) = resp.topics
    assert t.error_code == 0
    assert t.name == "fresh"
    assert [p.partition_index for p in t.partitions] == [0]
    p = t.partitions[0]
    assert p.error_code == 0 and p.leader_id == 1
    assert p.replica_nodes == [1] and p.isr_nodes == [1]
    if version >= 7:
        assert p.leader_epoch == 0
    assert "fresh" in broker.image.topics
    if version >= 10:
        assert t.topic_id == broker.image.topics["fresh"].topic_id != ZERO
    # ... and it is usable right away.
    r = produce(broker, "fresh", 0, build_batch([(None, b"x", [])], timestamp_ms=1))
    assert (r.error_code, r.base_offset) == (0, 0)


def test_auto_create_uses_num_partitions(make_broker):
    b = make_broker({"num.partitions": "3"})
    (t,) = md(b, ["wide"], 12).topics
    assert t.error_code == 0
    assert [p.partition_index for p in t.partitions] == [0, 1, 2]


@pytest.mark.parametrize("version", range(1, 4))
def test_v1_to_v3_always_allow_auto_create(broker, version):
    (t,) = md(broker, [f"auto{version}"], version).topics
    assert t.error_code == 0 and len(t.partitions) == 1
    assert f"auto{version}" in broker.image.topics


@pytest.mark.parametrize("version", range(4, 13))
def test_unknown_topic_not_created_when_flag_false(broker, version):
    (t,) = md(broker, ["nope"], version, allow_auto=False).topics
    assert t.error_code == 3
    assert t.partitions == []
    assert "nope" not in broker.image.topics
    assert not (broker.data_dir / "nope-0").exists()


@pytest.mark.parametrize("version", [1, 3, 4, 9, 12])
def test_unknown_topic_not_created_when_broker_disables_auto_create(make_broker, version):
    b = make_broker({"auto.create.topics.enable": "false"})
    (t,) = md(b, ["nope"], version, allow_auto=True).topics
    assert t.error_code == 3
    assert "nope" not in b.image.topics


@pytest.mark.parametrize("allow", [True, False])
@pytest.mark.parametrize("name", ["bad name!", "..", "x" * 250, "a/b"])
def test_invalid_topic_name(broker, name, allow):
    (t,) = md(broker, [name], 12, allow_auto=allow).topics
    assert t.error_code == 17
    assert t.name == name
    assert name not in broker.image.topics


def test_mixed_known_unknown_invalid(broker):
    create_topic(broker, "known", partitions=2)
    resp = md(broker, ["known", "unknown", "bad name!"], 12, allow_auto=False)
    assert [(t.name, t.error_code) for t in resp.topics] == [
        ("known", 0), ("unknown", 3), ("bad name!", 17)]
    assert len(resp.topics[0].partitions) == 2


def test_lookup_by_topic_id(broker):
    version = 12
    res = create_topic(broker, "by-id", partitions=2)
    tid = broker.image.topics["by-id"].topic_id
    assert res.topic_id == tid
    resp = call(broker, MetadataRequest(topics=[RT(topic_id=tid, name=None)],
                                        allow_auto_topic_creation=False), version)
    (t,) = resp.topics
    assert t.error_code == 0
    assert t.topic_id == tid
    assert t.name == "by-id"
    assert len(t.partitions) == 2


def test_unknown_topic_id(broker):
    version = 12
    create_topic(broker, "other")
    missing = uuid.uuid4()
    resp = call(broker, MetadataRequest(topics=[RT(topic_id=missing, name=None)],
                                        allow_auto_topic_creation=True), version)
    (t,) = resp.topics
    assert t.error_code == 100
    assert t.topic_id == missing
    assert t.partitions == []
    assert list(broker.image.topics) == ["other"]


@pytest.mark.parametrize("version", [10, 11])
def test_topic_id_lookup_before_v12_is_invalid_request(broker, version):
    """Kafka serves id lookups from v12 (the response name is nullable only there):
    v10/v11 requests with a topic id get INVALID_REQUEST for every topic, and the
    answer must still decode (a null name in v10/v11 would not)."""
    create_topic(broker, "known")
    tid = broker.image.topics["known"].topic_id
    missing = uuid.uuid4()
    resp = call(broker, MetadataRequest(topics=[RT(topic_id=tid, name=None),
                                                RT(topic_id=missing, name=None),
                                                RT(name="known")],
                                        allow_auto_topic_creation=True), version)
    assert [(t.name, t.topic_id, t.error_code) for t in resp.topics] == [
        ("", tid, 42), ("", missing, 42), ("known", ZERO, 42)]
    assert list(broker.image.topics) == ["known"]


@pytest.mark.parametrize("version", [10, 11])
def test_name_lookup_v10_v11_still_works(broker, version):
    create_topic(broker, "known")
    (t,) = md(broker, ["known"], version).topics
    assert (t.name, t.error_code) == ("known", 0)
    assert t.topic_id == broker.image.topics["known"].topic_id


@pytest.mark.parametrize("version", range(0, 13))
def test_all_versions_decode_with_brokers_controller_and_partitions(make_broker, version):
    b = make_broker({"cluster.id": "kafkette-test-cluster"})
    create_topic(b, "t", partitions=2)
    resp = md(b, ["t"], version)
    assert [(x.node_id, x.host, x.port) for x in resp.brokers] == [
        (1, ADVERTISED_HOST, ADVERTISED_PORT)]
    if version >= 1:
        assert resp.controller_id == 1
        assert resp.topics[0].is_internal is False
    if version >= 2:
        assert resp.cluster_id == "kafkette-test-cluster"
    (t,) = resp.topics
    assert (t.name, t.error_code) == ("t", 0)
    parts = sorted(t.partitions, key=lambda p: p.partition_index)
    assert [(p.partition_index, p.leader_id, p.replica_nodes, p.isr_nodes) for p in parts] == [
        (0, 1, [1], [1]), (1, 1, [1], [1])]
    if version >= 7:
        assert [p.leader_epoch for p in parts] == [0, 0]
    if version >= 5:
        assert [p.offline_replicas for p in parts] == [[], []]
    if version >= 10:
        assert t.topic_id == b.image.topics["t"].topic_id


def test_each_listener_advertises_its_own_address(make_broker):
    b = make_broker(advertised={"PLAINTEXT": ("inside.host", 9092),
                                "EXTERNAL": ("outside.example.com", 29092)})
    inside = md(b, None, 12, listener="PLAINTEXT")
    outside = md(b, None, 12, listener="EXTERNAL")
    assert [(x.host, x.port) for x in inside.brokers] == [("inside.host", 9092)]
    assert [(x.host, x.port) for x in outside.brokers] == [("outside.example.com", 29092)]


def test_leader_epoch_of_new_partitions(broker):
    from kafkette.protocol.messages import CreatePartitionsRequest
    create_topic(broker, "grow")
    call(broker, CreatePartitionsRequest(topics=[
        CreatePartitionsRequest.CreatePartitionsTopic(name="grow", count=3, assignments=None)],
        timeout_ms=1000), 3)
    (t,) = md(broker, ["grow"], 12).topics
    assert [(p.partition_index, p.leader_epoch, p.leader_id) for p in t.partitions] == [
        (0, 0, 1), (1, 0, 1), (2, 0, 1)]


def test_internal_topics_are_hidden_from_all_topics(broker):
    # The metadata log lives in the data dir, but it is no topic of the image.
    create_topic(broker, "visible")
    names = [t.name for t in md(broker, None, 12).topics]
    assert names == ["visible"]


def test_authorized_operations_when_asked(broker):
    create_topic(broker, "ops")
    resp = call(broker, MetadataRequest(topics=[RT(name="ops")],
                                        include_topic_authorized_operations=True), 10)
    assert resp.topics[0].topic_authorized_operations not in (0, -2147483648)
    resp = call(broker, MetadataRequest(topics=[RT(name="ops")]), 10)
    assert resp.topics[0].topic_authorized_operations == -2147483648


def test_a_dedicated_controller_is_never_named_to_clients():
    """With process.roles=controller nodes the active controller is no broker (clients
    cannot reach it): Metadata and DescribeCluster name the lowest live broker, which
    forwards. A controller that is a registered broker (combined) is named as itself."""
    from types import MappingProxyType

    from kafkette.broker.handlers.common import client_controller_id
    from kafkette.controller.metadata_image import BrokerImage, MetadataImage

    def image(controller, brokers):
        return MetadataImage("c", controller, MappingProxyType(
            {i: BrokerImage(i, "h", 9000 + i, fenced=f) for i, f in brokers.items()}))
    assert client_controller_id(image(3001, {1: True, 2: False, 3: False})) == 2
    assert client_controller_id(image(3001, {1: True})) == -1
    assert client_controller_id(image(-1, {1: False})) == -1
    assert client_controller_id(image(2, {1: False, 2: False})) == 2
    assert client_controller_id(image(2, {1: False, 2: True})) == 2   # combined, fenced: itself
