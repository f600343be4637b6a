"""Admin APIs: CreateTopics (19), DeleteTopics (20), CreatePartitions (37),
DescribeConfigs (32), DescribeCluster (60)."""
from __future__ import annotations

import uuid

import pytest

from handler_harness import (  # noqa: F401
    ADVERTISED_HOST,
    ADVERTISED_PORT,
    broker,
    call,
    create_topic,
    fetch_request,
    make_broker,
    produce,
)
from kafkette.protocol.messages import (
    CreatePartitionsRequest,
    CreateTopicsRequest,
    DeleteTopicsRequest,
    DescribeClusterRequest,
    DescribeConfigsRequest,
    MetadataRequest,
)
from kafkette.protocol.records import build_batch, decode_records

CT = CreateTopicsRequest.CreatableTopic
CC = CreateTopicsRequest.CreatableTopic.CreatableTopicConfig
CA = CreateTopicsRequest.CreatableTopic.CreatableReplicaAssignment
ZERO = uuid.UUID(int=0)
DEFAULT_RETENTION_MS = "604800000"
DYNAMIC_TOPIC_CONFIG, STATIC_BROKER_CONFIG, DEFAULT_CONFIG = 1, 4, 5


def one_batch(n=1, tag="x"):
    return build_batch([(None, f"{tag}{i}".encode(), []) for i in range(n)], timestamp_ms=1)


def create(broker, topics, version=7, validate_only=False):
    req = CreateTopicsRequest(topics=topics, timeout_ms=5000, validate_only=validate_only)
    return call(broker, req, version).topics


def ct(name, partitions=1, rf=1, configs=None, assignments=None):
    return CT(name=name, num_partitions=partitions, replication_factor=rf,
              assignments=assignments or [],
              configs=[CC(name=k, value=v) for k, v in (configs or {}).items()])


def metadata_names(broker):
    return sorted(t.name for t in call(broker, MetadataRequest(topics=None), 12).topics)


# -- CreateTopics --------------------------------------------------------------------

@pytest.mark.parametrize("version", range(2, 8))
def test_create_topic(broker, version):
    (r,) = create(broker, [ct("orders", partitions=3)], version)
    assert (r.name, r.error_code) == ("orders", 0)
    assert r.error_message is None or r.error_message == ""
    t = broker.image.topics["orders"]
    assert sorted(t.partitions) == [0, 1, 2]
    if version >= 5:
        assert (r.num_partitions, r.replication_factor) == (3, 1)
        configs = {c.name: c for c in r.configs}
        assert configs["retention.ms"].value == DEFAULT_RETENTION_MS
        assert configs["retention.ms"].config_source == DEFAULT_CONFIG
        assert configs["cleanup.policy"].value == "delete"
        assert configs["max.message.bytes"].value == "1048588"
    if version >= 7:
        assert r.topic_id == t.topic_id != ZERO
    assert metadata_names(broker) == ["orders"]
    for p in range(3):
        assert (broker.data_dir / f"orders-{p}").is_dir()


@pytest.mark.parametrize("version", [2, 5, 7])
def test_created_topic_is_immediately_produceable_and_fetchable(broker, version):
    (r,) = create(broker, [ct("hot", partitions=2)], version)
    assert r.error_code == 0
    for p in (0, 1):
        res = produce(broker, "hot", p, one_batch(3))
        assert (res.error_code, res.base_offset) == (0, 0)
    resp = call(broker, fetch_request("hot", {1: 0}), 12)
    assert len(decode_records(bytes(resp.responses[0].partitions[0].records))) == 3


@pytest.mark.parametrize("version", [2, 4, 7])
def test_duplicate_topic(broker, version):
    create_topic(broker, "dup")
    (r,) = create(broker, [ct("dup", partitions=4)], version)
    assert r.error_code == 36
    assert "already exists" in (r.error_message or "")
    assert len(broker.image.topics["dup"].partitions) == 1


def test_same_name_twice_in_one_request(broker):
    rs = create(broker, [ct("twice"), ct("twice")])
    assert [r.error_code for r in rs] == [42, 42]
    assert "twice" not in broker.image.topics


@pytest.mark.parametrize("name", ["bad name!", "..", ".", "", "x" * 250, "a/b", "ü"])
def test_invalid_topic_name(broker, name):
    (r,) = create(broker, [ct(name)])
    assert r.error_code == 17
    assert r.error_message
    assert broker.image.topics == {}


def test_249_char_name_is_valid(broker):
    (r,) = create(broker, [ct("y" * 249)])
    assert r.error_code == 0


def test_colliding_name_dot_underscore(broker):
    create_topic(broker, "a.b")
    (r,) = create(broker, [ct("a_b")])
    assert r.error_code == 17
    assert "a_b" not in broker.image.topics


@pytest.mark.parametrize("partitions", [0, -2])
def test_invalid_partitions(broker, partitions):
    (r,) = create(broker, [ct("p", partitions=partitions)])
    assert r.error_code == 37
    assert "p" not in broker.image.topics


@pytest.mark.parametrize("rf", [3, 2, 0])
def test_invalid_replication_factor(broker, rf):
    (r,) = create(broker, [ct("rf", rf=rf)])
    assert r.error_code == 38
    assert r.error_message
    assert "rf" not in broker.image.topics


@pytest.mark.parametrize("version", [4, 7])
def test_default_partitions_and_rf(make_broker, version):
    b = make_broker({"num.partitions": "4"})
    (r,) = create(b, [ct("dflt", partitions=-1, rf=-1)], version)
    assert r.error_code == 0
    assert len(b.image.topics["dflt"].partitions) == 4
    if version >= 5:
        assert (r.num_partitions, r.replication_factor) == (4, 1)


@pytest.mark.parametrize("configs", [{"retention.ms": "abc"}, {"no.such.config": "1"},
                                     {"cleanup.policy": "shred"}, {"segment.bytes": "1"}])
@pytest.mark.parametrize("version", [2, 7])
def test_invalid_configs(broker, configs, version):
    (r,) = create(broker, [ct("cfg", configs=configs)], version)
    assert r.error_code == 40
    assert r.error_message, "INVALID_CONFIG must say what is wrong"
    assert next(iter(configs)) in r.error_message
    assert "cfg" not in broker.image.topics
    if version >= 5:
        assert not r.configs


@pytest.mark.parametrize("version", [2, 5, 7])
def test_validate_only_creates_nothing(broker, version):
    rs = create(broker, [ct("dry", partitions=2, configs={"retention.ms": "1000"}), ct("bad name!")],
                version, validate_only=True)
    assert [(r.name, r.error_code) for r in rs] == [("dry", 0), ("bad name!", 17)]
    if version >= 5:
        assert (rs[0].num_partitions, rs[0].replication_factor) == (2, 1)
        assert {c.name: c.value for c in rs[0].configs}["retention.ms"] == "1000"
    assert broker.image.topics == {}
    assert not (broker.data_dir / "dry-0").exists()
    assert metadata_names(broker) == []
    # ... and the real creation still works afterwards.
    (r,) = create(broker, [ct("dry", partitions=2)], version)
    assert r.error_code == 0


@pytest.mark.parametrize("version", [5, 6, 7])
def test_configs_of_created_topic(broker, version):
    (r,) = create(broker, [ct("conf", configs={"retention.ms": "1000", "cleanup.policy": "compact"})],
                  version)
    assert r.error_code == 0
    configs = {c.name: c for c in r.configs}
    assert (configs["retention.ms"].value, configs["retention.ms"].config_source) == (
        "1000", DYNAMIC_TOPIC_CONFIG)
    assert (configs["cleanup.policy"].value, configs["cleanup.policy"].config_source) == (
        "compact", DYNAMIC_TOPIC_CONFIG)
    assert configs["segment.bytes"].config_source == DEFAULT_CONFIG
    assert all(not c.is_sensitive for c in r.configs)


def test_manual_assignment(broker):
    (r,) = create(broker, [ct("manual", partitions=-1, rf=-1,
                              assignments=[CA(partition_index=0, broker_ids=[1]),
                                           CA(partition_index=1, broker_ids=[1])])])
    assert r.error_code == 0
    assert sorted(broker.image.topics["manual"].partitions) == [0, 1]
    (r,) = create(broker, [ct("manual2", partitions=-1, rf=-1,
                              assignments=[CA(partition_index=0, broker_ids=[2])])])
    assert r.error_code == 39


def test_several_topics_mixed_results(broker):
    rs = create(broker, [ct("ok1"), ct("bad name!"), ct("ok2", partitions=2), ct("zero", partitions=0)])
    assert [(r.name, r.error_code) for r in rs] == [
        ("ok1", 0), ("bad name!", 17), ("ok2", 0), ("zero", 37)]
    assert metadata_names(broker) == ["ok1", "ok2"]


# -- DeleteTopics -------------------------------------------------------------------

def delete_by_name(broker, names, version):
    if version >= 6:
        req = DeleteTopicsRequest(topics=[DeleteTopicsRequest.DeleteTopicState(name=n)
                                          for n in names], timeout_ms=1000)
    else:
        req = DeleteTopicsRequest(topic_names=list(names), timeout_ms=1000)
    return call(broker, req, version).responses


@pytest.mark.parametrize("version", range(1, 7))
def test_delete_topic_by_name(broker, version):
    create_topic(broker, "doomed", partitions=2)
    create_topic(broker, "kept")
    produce(broker, "doomed", 0, one_batch(5))
    assert (broker.data_dir / "doomed-0").is_dir()
    tid = broker.image.topics["doomed"].topic_id
    (r,) = delete_by_name(broker, ["doomed"], version)
    assert (r.name, r.error_code) == ("doomed", 0)
    if version >= 6:
        assert r.topic_id == tid
    assert metadata_names(broker) == ["kept"]
    (t,) = call(broker, MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name="doomed")],
                                        allow_auto_topic_creation=False), 12).topics
    assert t.error_code == 3
    assert not (broker.data_dir / "doomed-0").exists()
    assert not (broker.data_dir / "doomed-1").exists()
    assert not [p for p in broker.data_dir.iterdir() if p.name.startswith("doomed")]
    assert (broker.data_dir / "kept-0").is_dir()
    assert produce(broker, "doomed", 0, one_batch()).error_code == 3


def test_delete_topic_by_id(broker):
    create_topic(broker, "by-id")
    tid = broker.image.topics["by-id"].topic_id
    req = DeleteTopicsRequest(topics=[DeleteTopicsRequest.DeleteTopicState(name=None, topic_id=tid)],
                              timeout_ms=1000)
    (r,) = call(broker, req, 6).responses
    assert (r.name, r.topic_id, r.error_code) == ("by-id", tid, 0)
    assert broker.image.topics == {}
    assert not (broker.data_dir / "by-id-0").exists()


def test_delete_unknown_topic_id(broker):
    create_topic(broker, "stay")
    req = DeleteTopicsRequest(topics=[DeleteTopicsRequest.DeleteTopicState(
        name=None, topic_id=uuid.uuid4())], timeout_ms=1000)
    (r,) = call(broker, req, 6).responses
    assert r.error_code == 100
    assert list(broker.image.topics) == ["stay"]


@pytest.mark.parametrize("version", range(1, 7))
def test_delete_unknown_topic(broker, version):
    create_topic(broker, "stay")
    rs = delete_by_name(broker, ["ghost", "stay"], version)
    assert [(r.name, r.error_code) for r in rs] == [("ghost", 3), ("stay", 0)]


def test_recreated_topic_starts_empty(broker):
    create_topic(broker, "again")
    produce(broker, "again", 0, one_batch(4))
    old = broker.image.topics["again"].topic_id
    delete_by_name(broker, ["again"], 6)
    create_topic(broker, "again")
    assert broker.image.topics["again"].topic_id != old
    r = produce(broker, "again", 0, one_batch(1, "new"))
    assert (r.error_code, r.base_offset) == (0, 0)
    resp = call(broker, fetch_request("again", {0: 0}), 12)
    recs = decode_records(bytes(resp.responses[0].partitions[0].records))
    assert [x.value for x in recs] == [b"new0"]


def test_delete_disabled(make_broker):
    b = make_broker({"delete.topic.enable": "false"})
    create_topic(b, "forever")
    (r,) = delete_by_name(b, ["forever"], 6)
    assert r.error_code == 73
    assert "forever" in b.image.topics


# -- CreatePartitions ---------------------------------------------------------------

def create_partitions(broker, name, count, version=3, validate_only=False):
    req = CreatePartitionsRequest(topics=[CreatePartitionsRequest.CreatePartitionsTopic(
        name=name, count=count, assignments=None)], timeout_ms=1000, validate_only=validate_only)
    resp = call(broker, req, version)
    (r,) = resp.results
    assert r.name == name
    return r


@pytest.mark.parametrize("version", range(0, 4))
def test_grow_partitions_then_produce(broker, version):
    create_topic(broker, "grow")
    produce(broker, "grow", 0, one_batch(2))
    r = create_partitions(broker, "grow", 3, version)
    assert r.error_code == 0
    assert sorted(broker.image.topics["grow"].partitions) == [0, 1, 2]
    (t,) = call(broker, MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name="grow")]),
                12).topics
    assert [p.partition_index for p in t.partitions] == [0, 1, 2]
    res = produce(broker, "grow", 2, one_batch(3))
    assert (res.error_code, res.base_offset) == (0, 0)
    # The existing partition keeps its data.
    assert produce(broker, "grow", 0, one_batch(1)).base_offset == 2


@pytest.mark.parametrize("count", [1, 0])
def test_shrink_or_same_count_is_invalid(broker, count):
    create_topic(broker, "fixed", partitions=1 if count == 1 else 2)
    r = create_partitions(broker, "fixed", count)
    assert r.error_code == 37
    assert r.error_message


def test_shrink(broker):
    create_topic(broker, "three", partitions=3)
    r = create_partitions(broker, "three", 2)
    assert r.error_code == 37
    assert len(broker.image.topics["three"].partitions) == 3


def test_create_partitions_unknown_topic(broker):
    assert create_partitions(broker, "ghost", 3).error_code == 3


def test_create_partitions_validate_only(broker):
    create_topic(broker, "v")
    assert create_partitions(broker, "v", 5, validate_only=True).error_code == 0
    assert len(broker.image.topics["v"].partitions) == 1
    assert produce(broker, "v", 4, one_batch()).error_code == 3


def test_create_partitions_returns_every_topic(broker):
    create_topic(broker, "a")
    req = CreatePartitionsRequest(topics=[
        CreatePartitionsRequest.CreatePartitionsTopic(name=n, count=c, assignments=None)
        for n, c in [("a", 2), ("ghost", 2), ("a", 3)]], timeout_ms=1000)
    resp = call(broker, req, 3)
    assert [(r.name, r.error_code) for r in resp.results] == [("a", 42), ("ghost", 3), ("a", 42)]


# -- DescribeConfigs ----------------------------------------------------------------

DR = DescribeConfigsRequest.DescribeConfigsResource
TOPIC, BROKER = 2, 4


def describe(broker, resources, version=4, synonyms=False, docs=False):
    req = DescribeConfigsRequest(resources=[DR(resource_type=t, resource_name=n, configuration_keys=k)
                                            for t, n, k in resources],
                                 include_synonyms=synonyms, include_documentation=docs)
    return call(broker, req, version).results


@pytest.mark.parametrize("version", range(1, 5))
def test_topic_defaults(broker, version):
    create_topic(broker, "plain")
    (r,) = describe(broker, [(TOPIC, "plain", None)], version)
    assert (r.error_code, r.resource_type, r.resource_name) == (0, TOPIC, "plain")
    configs = {c.name: c for c in r.configs}
    rm = configs["retention.ms"]
    assert rm.value == DEFAULT_RETENTION_MS
    assert rm.config_source == DEFAULT_CONFIG
    assert rm.read_only is False and rm.is_sensitive is False
    assert configs["cleanup.policy"].value == "delete"
    assert configs["segment.bytes"].value == "1073741824"
    assert all(c.config_source == DEFAULT_CONFIG for c in r.configs)
    if version >= 3:
        assert rm.config_type == 5  # LONG
        assert configs["cleanup.policy"].config_type == 7  # LIST
        assert rm.documentation is None  # not asked for


@pytest.mark.parametrize("version", range(1, 5))
def test_topic_override_is_dynamic_topic_config(broker, version):
    create_topic(broker, "custom", configs={"retention.ms": "3600000"})
    (r,) = describe(broker, [(TOPIC, "custom", None)], version, synonyms=True)
    configs = {c.name: c for c in r.configs}
    rm = configs["retention.ms"]
    assert (rm.value, rm.config_source) == ("3600000", DYNAMIC_TOPIC_CONFIG)
    syn = [(s.name, s.value, s.source) for s in rm.synonyms]
    assert syn[0] == ("retention.ms", "3600000", DYNAMIC_TOPIC_CONFIG)
    assert ("log.retention.hours", "168", DEFAULT_CONFIG) in syn
    assert configs["segment.ms"].config_source == DEFAULT_CONFIG


def test_synonyms_of_a_default(broker):
    create_topic(broker, "plain")
    (r,) = describe(broker, [(TOPIC, "plain", ["retention.ms"])], 4, synonyms=True)
    (c,) = r.configs
    assert [(s.name, s.value, s.source) for s in c.synonyms] == [
        ("log.retention.hours", "168", DEFAULT_CONFIG)]
    (r,) = describe(broker, [(TOPIC, "plain", ["retention.ms"])], 4, synonyms=False)
    assert r.configs[0].synonyms == []


def test_static_broker_config_source(make_broker):
    b = make_broker({"log.retention.hours": "24"})
    create_topic(b, "t")
    (r,) = describe(b, [(TOPIC, "t", ["retention.ms"])], 4)
    (c,) = r.configs
    assert (c.name, c.value, c.config_source) == ("retention.ms", str(24 * 3600 * 1000),
                                                  STATIC_BROKER_CONFIG)


@pytest.mark.parametrize("version", range(1, 5))
def test_configuration_keys_filter(broker, version):
    create_topic(broker, "f", configs={"cleanup.policy": "compact"})
    (r,) = describe(broker, [(TOPIC, "f", ["retention.ms", "cleanup.policy", "no.such.key"])], version)
    assert sorted(c.name for c in r.configs) == ["cleanup.policy", "retention.ms"]
    configs = {c.name: c for c in r.configs}
    assert (configs["cleanup.policy"].value, configs["cleanup.policy"].config_source) == (
        "compact", DYNAMIC_TOPIC_CONFIG)


def test_documentation_when_asked(broker):
    create_topic(broker, "d")
    (r,) = describe(broker, [(TOPIC, "d", ["retention.ms"])], 4, docs=True)
    assert r.configs[0].documentation


@pytest.mark.parametrize("version", range(1, 5))
def test_broker_resource(broker, version):
    (r,) = describe(broker, [(BROKER, "1", None)], version)
    assert (r.error_code, r.resource_type, r.resource_name) == (0, BROKER, "1")
    configs = {c.name: c for c in r.configs}
    assert configs["log.retention.hours"].value == "168"
    assert configs["log.retention.hours"].config_source == DEFAULT_CONFIG
    assert configs["num.partitions"].value == "1"
    assert configs["auto.create.topics.enable"].value == "true"
    # Set explicitly in the harness's config:
    assert configs["log.dirs"].config_source == STATIC_BROKER_CONFIG
    (r,) = describe(broker, [(BROKER, "1", ["log.retention.hours", "num.partitions"])], version)
    assert sorted(c.name for c in r.configs) == ["log.retention.hours", "num.partitions"]


@pytest.mark.parametrize("version", range(1, 5))
def test_broker_resource_other_id(broker, version):
    (r,) = describe(broker, [(BROKER, "7", None)], version)
    assert r.error_code != 0
    assert r.error_code == 42
    assert r.configs == []


@pytest.mark.parametrize("version", range(1, 5))
def test_describe_unknown_topic(broker, version):
    create_topic(broker, "known")
    rs = describe(broker, [(TOPIC, "ghost", None), (TOPIC, "known", ["retention.ms"])], version)
    assert [(r.resource_name, r.error_code) for r in rs] == [("ghost", 3), ("known", 0)]
    assert rs[0].configs == []
    assert len(rs[1].configs) == 1


# -- DescribeCluster ----------------------------------------------------------------

@pytest.mark.parametrize("version", [0, 1])
def test_describe_cluster(make_broker, version):
    b = make_broker({"cluster.id": "my-cluster-id"})
    resp = call(b, DescribeClusterRequest(include_cluster_authorized_operations=False), version)
    assert resp.error_code == 0
    assert resp.cluster_id == "my-cluster-id"
    assert resp.controller_id == 1
    assert [(x.broker_id, x.host, x.port, x.rack) for x in resp.brokers] == [
        (1, ADVERTISED_HOST, ADVERTISED_PORT, None)]
    assert resp.cluster_authorized_operations == -2147483648
    if version >= 1:
        assert resp.endpoint_type == 1


def test_describe_cluster_generated_cluster_id_matches_metadata(broker):
    resp = call(broker, DescribeClusterRequest(include_cluster_authorized_operations=True), 1)
    md = call(broker, MetadataRequest(topics=None), 12)
    assert resp.cluster_id == md.cluster_id
    assert len(resp.cluster_id) == 22
    assert resp.cluster_authorized_operations not in (0, -2147483648)
