"""Config changes: AlterConfigs (33), IncrementalAlterConfigs (44), dynamic broker
configs as DescribeConfigs (32) shows them, and DescribeLogDirs (35)."""
from __future__ import annotations

import os

import pytest

from handler_harness import (  # noqa: F401
    START_MS,
    broker,
    call,
    create_topic,
    encode_request,
    make_broker,
    produce,
)
from kafkette.config import BrokerConfig
from kafkette.errors import ErrorCode, ProtocolError
from kafkette.protocol.messages import (
    AlterConfigsRequest,
    ApiVersionsRequest,
    DescribeConfigsRequest,
    DescribeLogDirsRequest,
    IncrementalAlterConfigsRequest,
)
from kafkette.protocol.records import build_batch

TOPIC, BROKER, BROKER_LOGGER = 2, 4, 8
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
DYNAMIC_TOPIC, DYNAMIC_BROKER, DYNAMIC_DEFAULT_BROKER, STATIC_BROKER, DEFAULT = 1, 2, 3, 4, 5
NONE = 0
INVALID_CONFIG = ErrorCode.INVALID_CONFIG
INVALID_REQUEST = ErrorCode.INVALID_REQUEST
UNKNOWN_TOPIC = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION

AR = AlterConfigsRequest.AlterConfigsResource
AC = AlterConfigsRequest.AlterConfigsResource.AlterableConfig
IR = IncrementalAlterConfigsRequest.AlterConfigsResource
IC = IncrementalAlterConfigsRequest.AlterConfigsResource.AlterableConfig
DR = DescribeConfigsRequest.DescribeConfigsResource


# -- helpers ---------------------------------------------------------------------------

def alter(broker, resources, version=2, validate_only=False):
    """Legacy AlterConfigs; resources: [(type, name, {key: value})]."""
    req = AlterConfigsRequest(resources=[
        AR(resource_type=t, resource_name=n, configs=[AC(name=k, value=v) for k, v in c.items()])
        for t, n, c in resources], validate_only=validate_only)
    return call(broker, req, version).responses


def ialter(broker, resources, version=1, validate_only=False):
    """IncrementalAlterConfigs; resources: [(type, name, [(key, op, value)])]."""
    req = IncrementalAlterConfigsRequest(resources=[
        IR(resource_type=t, resource_name=n,
           configs=[IC(name=k, config_operation=op, value=v) for k, op, v in ops])
        for t, n, ops in resources], validate_only=validate_only)
    return call(broker, req, version).responses


def one(responses):
    (r,) = responses
    return r


def describe(broker, rtype, name, keys=None, synonyms=True):
    req = DescribeConfigsRequest(resources=[DR(resource_type=rtype, resource_name=name,
                                               configuration_keys=keys)],
                                 include_synonyms=synonyms, include_documentation=False)
    (r,) = call(broker, req, 4).results
    assert r.error_code == 0, r
    return {c.name: c for c in r.configs}


def overrides(broker, topic):
    return dict(broker.image.topics[topic].configs)


def plog(broker, topic, partition=0):
    return broker.replica_manager.partition(topic, partition).log


def batch_of_size(size: int, ts: int = START_MS) -> bytes:
    """One uncompressed batch of exactly `size` bytes (the value's length prefix is a
    varint, so grow the value until the total fits)."""
    n = max(0, size - 80)
    while True:
        b = build_batch([(None, b"x" * n, [])], timestamp_ms=ts)
        if len(b) == size:
            return b
        assert len(b) < size, f"cannot build a batch of exactly {size} bytes"
        n += 1


# -- AlterConfigs (legacy): topics -------------------------------------------------------

@pytest.mark.parametrize("version", [0, 1, 2])
def test_alter_configs_replaces_the_topic_overrides(broker, version):
    create_topic(broker, "t", configs={"cleanup.policy": "compact", "retention.ms": "1000"})
    r = one(alter(broker, [(TOPIC, "t", {"retention.ms": "5000", "segment.bytes": "4096"})],
                  version))
    assert (r.error_code, r.error_message, r.resource_type, r.resource_name) == (
        NONE, None, TOPIC, "t")
    # cleanup.policy was not given: reset to the default, as Kafka's legacy AlterConfigs.
    assert overrides(broker, "t") == {"retention.ms": "5000", "segment.bytes": "4096"}
    configs = describe(broker, TOPIC, "t")
    assert (configs["cleanup.policy"].value, configs["cleanup.policy"].config_source) == (
        "delete", DEFAULT)
    assert (configs["retention.ms"].value, configs["retention.ms"].config_source) == (
        "5000", DYNAMIC_TOPIC)
    lc = plog(broker, "t").config
    assert (lc.retention_ms, lc.segment_bytes, lc.cleanup_policy) == (5000, 4096, ("delete",))


def test_alter_configs_with_no_configs_resets_everything(broker):
    create_topic(broker, "t", configs={"retention.ms": "1000", "max.message.bytes": "500"})
    assert one(alter(broker, [(TOPIC, "t", {})])).error_code == NONE
    assert overrides(broker, "t") == {}
    assert plog(broker, "t").config.max_message_bytes == 1048588


@pytest.mark.parametrize("configs, fragment", [
    ({"retention.ms": "soon"}, "retention.ms"),
    ({"retention.ms": "-5"}, "retention.ms"),
    ({"cleanup.policy": "compcat"}, "compact"),
    ({"no.such.config": "1"}, "no.such.config"),
    ({"log.retention.ms": "1"}, "retention.ms"),  # a broker key on a topic
    ({"min.compaction.lag.ms": "10", "max.compaction.lag.ms": "5"}, "min.compaction.lag.ms"),
])
def test_alter_topic_invalid_config(broker, configs, fragment):
    create_topic(broker, "t", configs={"retention.ms": "1000"})
    r = one(alter(broker, [(TOPIC, "t", configs)]))
    assert r.error_code == INVALID_CONFIG
    assert fragment in r.error_message
    assert overrides(broker, "t") == {"retention.ms": "1000"}


def test_alter_unknown_topic(broker):
    r = one(alter(broker, [(TOPIC, "ghost", {"retention.ms": "1000"})]))
    assert r.error_code == UNKNOWN_TOPIC
    assert "ghost" in r.error_message
    assert "ghost" not in broker.image.topics
    r = one(ialter(broker, [(TOPIC, "ghost", [("retention.ms", SET, "1000")])]))
    assert r.error_code == UNKNOWN_TOPIC


def test_alter_default_topic_resource_is_invalid_request(broker):
    assert one(alter(broker, [(TOPIC, "", {"retention.ms": "1"})])).error_code == INVALID_REQUEST


@pytest.mark.parametrize("incremental", [False, True])
def test_validate_only_changes_nothing(broker, incremental):
    create_topic(broker, "t", configs={"retention.ms": "1000"})
    offset = broker.image.offset
    if incremental:
        r = one(ialter(broker, [(TOPIC, "t", [("retention.ms", SET, "9"), ("segment.bytes", SET, "4096")])],
                       validate_only=True))
    else:
        r = one(alter(broker, [(TOPIC, "t", {"segment.bytes": "4096"})], validate_only=True))
    assert r.error_code == NONE
    assert overrides(broker, "t") == {"retention.ms": "1000"}
    assert broker.image.offset == offset  # nothing written to the metadata log
    assert plog(broker, "t").config.segment_bytes == 1073741824
    # Errors are still reported.
    r = one(alter(broker, [(TOPIC, "t", {"retention.ms": "x"})], validate_only=True))
    assert r.error_code == INVALID_CONFIG


def test_each_resource_at_most_once(broker):
    create_topic(broker, "a")
    create_topic(broker, "b")
    rs = alter(broker, [(TOPIC, "a", {"retention.ms": "1"}), (TOPIC, "b", {"retention.ms": "2"}),
                        (TOPIC, "a", {"retention.ms": "3"})])
    assert [(r.resource_name, r.error_code) for r in rs] == [
        ("a", INVALID_REQUEST), ("b", NONE), ("a", INVALID_REQUEST)]
    assert "at most once" in rs[0].error_message
    assert overrides(broker, "a") == {} and overrides(broker, "b") == {"retention.ms": "2"}


def test_duplicate_keys_and_null_values_are_invalid_requests(broker):
    create_topic(broker, "t")
    req = AlterConfigsRequest(resources=[AR(resource_type=TOPIC, resource_name="t", configs=[
        AC(name="retention.ms", value="1"), AC(name="retention.ms", value="2")])])
    r = one(call(broker, req, 2).responses)
    assert (r.error_code, r.error_message) == (INVALID_REQUEST, "Error due to duplicate config keys")
    r = one(alter(broker, [(TOPIC, "t", {"retention.ms": None})]))
    assert r.error_code == INVALID_REQUEST and "Null value" in r.error_message
    r = one(ialter(broker, [(TOPIC, "t", [("retention.ms", SET, None)])]))
    assert r.error_code == INVALID_REQUEST
    assert overrides(broker, "t") == {}


def test_one_failing_resource_leaves_the_others_applied(broker):
    create_topic(broker, "good")
    rs = alter(broker, [(TOPIC, "good", {"retention.ms": "77"}), (TOPIC, "ghost", {"retention.ms": "1"}),
                        (TOPIC, "good2", {"retention.ms": "bad"})])
    assert [r.error_code for r in rs] == [NONE, UNKNOWN_TOPIC, INVALID_CONFIG]
    assert overrides(broker, "good") == {"retention.ms": "77"}


@pytest.mark.parametrize("rtype", [BROKER_LOGGER, 16, 32, 0])
def test_alter_configs_unsupported_resource_types(broker, rtype):
    r = one(alter(broker, [(rtype, "1", {"x": "y"})]))
    assert r.error_code == INVALID_REQUEST and r.resource_type == rtype


# -- IncrementalAlterConfigs: topics ----------------------------------------------------

@pytest.mark.parametrize("version", [0, 1])
def test_incremental_set_and_delete_keep_other_keys(broker, version):
    create_topic(broker, "t", configs={"retention.ms": "1000", "cleanup.policy": "compact"})
    r = one(ialter(broker, [(TOPIC, "t", [("segment.bytes", SET, "8192"),
                                         ("retention.ms", DELETE, None),
                                         ("flush.messages", DELETE, None)])], version))  # not set
    assert (r.error_code, r.error_message) == (NONE, None)
    assert overrides(broker, "t") == {"cleanup.policy": "compact", "segment.bytes": "8192"}
    lc = plog(broker, "t").config
    assert (lc.segment_bytes, lc.retention_ms, lc.cleanup_policy) == (8192, 604800000, ("compact",))


def test_incremental_delete_of_an_unknown_key_is_a_no_op(broker):
    create_topic(broker, "t")
    offset = broker.image.offset
    r = one(ialter(broker, [(TOPIC, "t", [("no.such.key", DELETE, None)])]))
    assert r.error_code == NONE
    assert broker.image.offset == offset


def test_incremental_set_unknown_key_is_invalid_config(broker):
    create_topic(broker, "t")
    r = one(ialter(broker, [(TOPIC, "t", [("retention.msec", SET, "1")])]))
    assert r.error_code == INVALID_CONFIG and "retention.ms" in r.error_message


def test_append_and_subtract_on_a_list_config(broker):
    create_topic(broker, "t")
    # No override yet: APPEND starts from the effective value, "delete".
    r = one(ialter(broker, [(TOPIC, "t", [("cleanup.policy", APPEND, "compact")])]))
    assert r.error_code == NONE
    assert overrides(broker, "t") == {"cleanup.policy": "delete,compact"}
    assert set(plog(broker, "t").config.cleanup_policy) == {"compact", "delete"}
    # Appending what is there already changes nothing.
    assert one(ialter(broker, [(TOPIC, "t", [("cleanup.policy", APPEND, "delete")])])).error_code == NONE
    assert overrides(broker, "t") == {"cleanup.policy": "delete,compact"}
    r = one(ialter(broker, [(TOPIC, "t", [("cleanup.policy", SUBTRACT, "delete")])]))
    assert r.error_code == NONE
    assert overrides(broker, "t") == {"cleanup.policy": "compact"}
    assert plog(broker, "t").config.cleanup_policy == ("compact",)
    # Subtracting the last one leaves an empty list, which cleanup.policy refuses.
    r = one(ialter(broker, [(TOPIC, "t", [("cleanup.policy", SUBTRACT, "compact")])]))
    assert r.error_code == INVALID_CONFIG
    assert overrides(broker, "t") == {"cleanup.policy": "compact"}


@pytest.mark.parametrize("op", [APPEND, SUBTRACT])
def test_append_subtract_on_a_non_list_config_is_invalid_config(broker, op):
    create_topic(broker, "t")
    r = one(ialter(broker, [(TOPIC, "t", [("retention.ms", op, "5")])]))
    assert r.error_code == INVALID_CONFIG
    assert "not LIST" in r.error_message
    r = one(ialter(broker, [(TOPIC, "t", [("no.such.key", op, "5")])]))
    assert r.error_code == INVALID_CONFIG
    assert overrides(broker, "t") == {}


def test_unknown_operation_is_invalid_request(broker):
    create_topic(broker, "t")
    r = one(ialter(broker, [(TOPIC, "t", [("retention.ms", 7, "5")])]))
    assert r.error_code == INVALID_REQUEST


def test_compaction_lag_checked_against_existing_overrides(broker):
    create_topic(broker, "t", configs={"max.compaction.lag.ms": "1000"})
    r = one(ialter(broker, [(TOPIC, "t", [("min.compaction.lag.ms", SET, "5000")])]))
    assert r.error_code == INVALID_CONFIG
    assert overrides(broker, "t") == {"max.compaction.lag.ms": "1000"}


def test_values_are_normalised(broker):
    create_topic(broker, "t")
    assert one(ialter(broker, [(TOPIC, "t", [("retention.ms", SET, " 60000 "),
                                            ("preallocate", SET, "TRUE")])])).error_code == NONE
    assert overrides(broker, "t") == {"retention.ms": "60000", "preallocate": "true"}


# -- the live partition logs -------------------------------------------------------------

def test_lowering_max_message_bytes_refuses_the_next_produce(broker):
    create_topic(broker, "t")
    big = batch_of_size(2000)
    assert produce(broker, "t", 0, big).error_code == NONE
    r = one(ialter(broker, [(TOPIC, "t", [("max.message.bytes", SET, "1000")])]))
    assert r.error_code == NONE
    p = produce(broker, "t", 0, big)
    assert p.error_code == ErrorCode.MESSAGE_TOO_LARGE
    assert produce(broker, "t", 0, batch_of_size(1000)).error_code == NONE  # the limit is inclusive
    assert one(ialter(broker, [(TOPIC, "t", [("max.message.bytes", DELETE, None)])])).error_code == NONE
    assert produce(broker, "t", 0, big).error_code == NONE


def test_retention_ms_change_reaches_the_retention_pass(make_broker):
    from kafkette.clock import ManualClock
    retention = pytest.importorskip("kafkette.log.retention")
    clock = ManualClock(START_MS)
    b = make_broker(clock=clock)
    create_topic(b, "t", configs={"segment.bytes": "200"})
    for i in range(3):
        assert produce(b, "t", 0, batch_of_size(150, ts=START_MS + i)).error_code == NONE
    log = plog(b, "t")
    assert len(log.segments) == 3
    clock.advance(10_000)
    assert retention.enforce_retention(log, clock.time_ms()) == 0  # 7 days: keep
    assert one(ialter(b, [(TOPIC, "t", [("retention.ms", SET, "5000")])])).error_code == NONE
    assert log.config.retention_ms == 5000
    assert retention.enforce_retention(log, clock.time_ms()) >= 2
    assert log.log_start_offset >= 2


def test_message_timestamp_windows(broker):
    # Kafka 4.0's default message.timestamp.after.max.ms is one hour (KIP-937).
    create_topic(broker, "t")
    hour = 3600_000
    assert produce(broker, "t", 0, batch_of_size(100, ts=START_MS + hour // 2)).error_code == NONE
    p = produce(broker, "t", 0, batch_of_size(100, ts=START_MS + 2 * hour))
    assert p.error_code == ErrorCode.INVALID_TIMESTAMP
    assert str(START_MS + 2 * hour) in p.error_message
    assert produce(broker, "t", 0, batch_of_size(100, ts=1)).error_code == NONE  # before: no limit
    assert one(ialter(broker, [(TOPIC, "t", [("message.timestamp.before.max.ms", SET, "60000")])])
               ).error_code == NONE
    assert produce(broker, "t", 0, batch_of_size(100, ts=START_MS - 120_000)).error_code == \
        ErrorCode.INVALID_TIMESTAMP
    assert produce(broker, "t", 0, batch_of_size(100, ts=START_MS - 30_000)).error_code == NONE
    # The maximum timestamp of a batch counts, not only the first.
    mixed = build_batch([(None, b"a", [], START_MS), (None, b"b", [], START_MS + 2 * hour)],
                        timestamp_ms=START_MS)
    assert produce(broker, "t", 0, mixed).error_code == ErrorCode.INVALID_TIMESTAMP
    assert plog(broker, "t").log_end_offset == 3
    # A broker-wide dynamic default applies too.
    assert one(ialter(broker, [(BROKER, "", [("log.message.timestamp.after.max.ms", SET, "10000000")])])
               ).error_code == NONE
    assert produce(broker, "t", 0, mixed).error_code == NONE


def test_log_append_time_topics_skip_the_timestamp_windows(broker):
    create_topic(broker, "t", configs={"message.timestamp.type": "LogAppendTime",
                                       "message.timestamp.before.max.ms": "0"})
    p = produce(broker, "t", 0, batch_of_size(100, ts=START_MS + 10 * 3600_000))
    assert (p.error_code, p.log_append_time_ms) == (NONE, START_MS)


# -- dynamic broker configs -----------------------------------------------------------------

def test_cluster_default_broker_config(broker):
    create_topic(broker, "t")
    r = one(ialter(broker, [(BROKER, "", [("log.retention.ms", SET, "3600000")])]))
    assert (r.error_code, r.resource_type, r.resource_name) == (NONE, BROKER, "")
    assert dict(broker.image.broker_configs[""]) == {"log.retention.ms": "3600000"}
    # DescribeConfigs on "": only the dynamic defaults.
    configs = describe(broker, BROKER, "")
    assert list(configs) == ["log.retention.ms"]
    c = configs["log.retention.ms"]
    assert (c.value, c.config_source, c.read_only, c.is_default) == (
        "3600000", DYNAMIC_DEFAULT_BROKER, False, False)
    assert [(s.name, s.value, s.source) for s in c.synonyms] == [
        ("log.retention.ms", "3600000", DYNAMIC_DEFAULT_BROKER)]
    # On this node: every config, log.retention.ms from the dynamic default.
    configs = describe(broker, BROKER, "1")
    c = configs["log.retention.ms"]
    assert (c.value, c.config_source, c.read_only) == ("3600000", DYNAMIC_DEFAULT_BROKER, False)
    assert [(s.name, s.source) for s in c.synonyms] == [
        ("log.retention.ms", DYNAMIC_DEFAULT_BROKER), ("log.retention.hours", DEFAULT)]
    assert configs["log.retention.hours"].read_only is True
    # Topics follow: their retention.ms default, and the live log.
    t = describe(broker, TOPIC, "t")["retention.ms"]
    assert (t.value, t.config_source) == ("3600000", DYNAMIC_DEFAULT_BROKER)
    assert [(s.name, s.value, s.source) for s in t.synonyms] == [
        ("log.retention.ms", "3600000", DYNAMIC_DEFAULT_BROKER),
        ("log.retention.hours", "168", DEFAULT)]
    assert plog(broker, "t").config.retention_ms == 3600000
    # A topic created afterwards gets it too.
    create_topic(broker, "u")
    assert plog(broker, "u").config.retention_ms == 3600000


def test_per_broker_beats_cluster_default_and_topic_beats_both(broker):
    create_topic(broker, "t")
    create_topic(broker, "own", configs={"max.message.bytes": "5000"})
    assert one(alter(broker, [(BROKER, "", {"message.max.bytes": "3000"})])).error_code == NONE
    assert one(alter(broker, [(BROKER, "1", {"message.max.bytes": "1500"})])).error_code == NONE
    c = describe(broker, BROKER, "1")["message.max.bytes"]
    assert (c.value, c.config_source) == ("1500", DYNAMIC_BROKER)
    assert [(s.value, s.source) for s in c.synonyms] == [
        ("1500", DYNAMIC_BROKER), ("3000", DYNAMIC_DEFAULT_BROKER), ("1048588", DEFAULT)]
    t = describe(broker, TOPIC, "t")["max.message.bytes"]
    assert (t.value, t.config_source) == ("1500", DYNAMIC_BROKER)
    assert [s.source for s in t.synonyms] == [DYNAMIC_BROKER, DYNAMIC_DEFAULT_BROKER, DEFAULT]
    assert describe(broker, TOPIC, "own")["max.message.bytes"].value == "5000"
    assert produce(broker, "t", 0, batch_of_size(2000)).error_code == ErrorCode.MESSAGE_TOO_LARGE
    assert produce(broker, "own", 0, batch_of_size(2000)).error_code == NONE
    # Dropping the node's own value lets the cluster default through.
    assert one(ialter(broker, [(BROKER, "1", [("message.max.bytes", DELETE, None)])])).error_code == NONE
    assert "1" not in broker.image.broker_configs
    assert describe(broker, BROKER, "1")["message.max.bytes"].config_source == DYNAMIC_DEFAULT_BROKER
    assert produce(broker, "t", 0, batch_of_size(2000)).error_code == NONE
    assert produce(broker, "t", 0, batch_of_size(3001)).error_code == ErrorCode.MESSAGE_TOO_LARGE


def test_dynamic_over_static_broker_config(make_broker):
    b = make_broker({"log.retention.hours": "24", "log.segment.bytes": "100000"})
    create_topic(b, "t")
    assert plog(b, "t").config.segment_bytes == 100000
    assert one(ialter(b, [(BROKER, "", [("log.segment.bytes", SET, "50000")])])).error_code == NONE
    assert plog(b, "t").config.segment_bytes == 50000
    c = describe(b, BROKER, "1")["log.segment.bytes"]
    assert [(s.value, s.source) for s in c.synonyms] == [
        ("50000", DYNAMIC_DEFAULT_BROKER), ("100000", STATIC_BROKER), ("1073741824", DEFAULT)]
    t = describe(b, TOPIC, "t")["segment.bytes"]
    assert [(s.name, s.value, s.source) for s in t.synonyms] == [
        ("log.segment.bytes", "50000", DYNAMIC_DEFAULT_BROKER),
        ("log.segment.bytes", "100000", STATIC_BROKER),
        ("log.segment.bytes", "1073741824", DEFAULT)]
    # log.retention.ms (dynamic) wins over the static log.retention.hours.
    assert plog(b, "t").config.retention_ms == 24 * 3600_000
    assert one(ialter(b, [(BROKER, "1", [("log.retention.ms", SET, "1000")])])).error_code == NONE
    assert plog(b, "t").config.retention_ms == 1000
    t = describe(b, TOPIC, "t")["retention.ms"]
    assert [(s.name, s.source) for s in t.synonyms] == [
        ("log.retention.ms", DYNAMIC_BROKER), ("log.retention.hours", STATIC_BROKER),
        ("log.retention.hours", DEFAULT)]
    # The static config itself is untouched.
    assert b.static_config["log.retention.ms"] is None


@pytest.mark.parametrize("key, value", [
    ("log.retention.hours", "1"), ("num.partitions", "3"), ("listeners", "PLAINTEXT://:1"),
    ("log.dirs", "/tmp/x"), ("auto.create.topics.enable", "false"),
])
def test_read_only_broker_config_is_invalid_request(broker, key, value):
    for rname in ("", "1"):
        r = one(ialter(broker, [(BROKER, rname, [(key, SET, value)])]))
        assert r.error_code == INVALID_REQUEST, rname
        assert "Cannot update these configs dynamically" in r.error_message
        assert key in r.error_message
    assert dict(broker.image.broker_configs) == {}


def test_unknown_broker_config_is_invalid_config(broker):
    r = one(ialter(broker, [(BROKER, "", [("log.retention.msec", SET, "1")])]))
    assert r.error_code == INVALID_CONFIG and "log.retention.ms" in r.error_message
    r = one(alter(broker, [(BROKER, "1", {"retention.ms": "1"})]))  # a topic key
    assert r.error_code == INVALID_CONFIG and "log.retention.ms" in r.error_message


@pytest.mark.parametrize("key, value", [
    ("log.retention.ms", "soon"), ("log.cleanup.policy", "shred"), ("message.max.bytes", "-1"),
])
def test_bad_broker_config_value_is_invalid_request(broker, key, value):
    # Kafka answers INVALID_REQUEST for any broker config that fails validation (KAFKA-13609).
    r = one(ialter(broker, [(BROKER, "", [(key, SET, value)])]))
    assert r.error_code == INVALID_REQUEST
    assert key in r.error_message
    assert dict(broker.image.broker_configs) == {}


def test_broker_cross_key_check(broker):
    assert one(ialter(broker, [(BROKER, "", [("log.cleaner.max.compaction.lag.ms", SET, "100")])])
               ).error_code == NONE
    r = one(ialter(broker, [(BROKER, "1", [("log.cleaner.min.compaction.lag.ms", SET, "1000")])]))
    assert r.error_code == INVALID_REQUEST and "compaction" in r.error_message


@pytest.mark.parametrize("name, fragment", [("7", "Unexpected broker id"),
                                            ("one", "must be an integer")])
def test_broker_resource_name_must_be_this_node(broker, name, fragment):
    r = one(ialter(broker, [(BROKER, name, [("log.retention.ms", SET, "1")])]))
    assert r.error_code == INVALID_REQUEST and fragment in r.error_message
    r = one(alter(broker, [(BROKER, name, {"log.retention.ms": "1"})]))
    assert r.error_code == INVALID_REQUEST


def test_legacy_alter_replaces_broker_configs(broker):
    assert one(alter(broker, [(BROKER, "", {"log.retention.ms": "1000",
                                            "message.max.bytes": "5000"})])).error_code == NONE
    assert one(alter(broker, [(BROKER, "", {"log.segment.bytes": "99999"})])).error_code == NONE
    assert dict(broker.image.broker_configs[""]) == {"log.segment.bytes": "99999"}
    assert broker.config["message.max.bytes"] == 1048588


def test_broker_validate_only(broker):
    r = one(ialter(broker, [(BROKER, "", [("log.retention.ms", SET, "1000")])], validate_only=True))
    assert r.error_code == NONE
    assert dict(broker.image.broker_configs) == {}
    assert broker.config["log.retention.ms"] is None


def test_append_on_a_broker_list_config(broker):
    create_topic(broker, "t")
    r = one(ialter(broker, [(BROKER, "", [("log.cleanup.policy", APPEND, "compact")])]))
    assert r.error_code == NONE
    assert dict(broker.image.broker_configs[""]) == {"log.cleanup.policy": "delete,compact"}
    assert set(plog(broker, "t").config.cleanup_policy) == {"compact", "delete"}
    r = one(ialter(broker, [(BROKER, "", [("message.max.bytes", APPEND, "1")])]))
    assert r.error_code == INVALID_CONFIG


def test_broker_logger_is_refused(broker):
    r = one(ialter(broker, [(BROKER_LOGGER, "1", [("kafkette", SET, "DEBUG")])]))
    assert (r.error_code, r.resource_type) == (INVALID_REQUEST, BROKER_LOGGER)


def test_describe_broker_resource_with_a_bad_name(broker):
    req = DescribeConfigsRequest(resources=[DR(resource_type=BROKER, resource_name="x",
                                               configuration_keys=None)])
    (r,) = call(broker, req, 4).results
    assert r.error_code == INVALID_REQUEST and "integer" in r.error_message


def test_stored_invalid_dynamic_configs_are_ignored():
    # As Kafka's DynamicBrokerConfig: a stored key that is not dynamic, or a bad value,
    # is skipped with a warning; the others apply.
    c = BrokerConfig().with_dynamic({"log.retention.hours": "1", "log.retention.ms": "x",
                                     "message.max.bytes": "2000"}, {})
    assert c["message.max.bytes"] == 2000
    assert c["log.retention.hours"] == 168 and c["log.retention.ms"] is None
    assert len([w for w in c.warnings if w.startswith("dynamic config")]) == 2
    # A result failing the cross-key checks applies no dynamic value at all.
    c = BrokerConfig().with_dynamic({"log.cleaner.max.compaction.lag.ms": "10",
                                     "log.cleaner.min.compaction.lag.ms": "20"}, {})
    assert c["log.cleaner.max.compaction.lag.ms"] == 2**63 - 1
    assert c.source("log.cleaner.min.compaction.lag.ms") == "DEFAULT_CONFIG"
    assert BrokerConfig().with_dynamic({"message.max.bytes": "5"}, {}).static["message.max.bytes"] == 1048588


# -- restart -------------------------------------------------------------------------------

def test_config_changes_survive_a_restart(make_broker):
    b = make_broker()
    create_topic(b, "t", configs={"cleanup.policy": "compact"})
    assert one(ialter(b, [(TOPIC, "t", [("max.message.bytes", SET, "1000"),
                                        ("cleanup.policy", DELETE, None)])])).error_code == NONE
    rs = ialter(b, [(BROKER, "", [("log.retention.ms", SET, "7200000")]),
                    (BROKER, "1", [("log.segment.bytes", SET, "123456")])])
    assert [(r.resource_name, r.error_code) for r in rs] == [("", NONE), ("1", NONE)]
    make_broker.close(b)

    b = make_broker()
    assert overrides(b, "t") == {"max.message.bytes": "1000"}
    assert dict(b.image.broker_configs[""]) == {"log.retention.ms": "7200000"}
    assert dict(b.image.broker_configs["1"]) == {"log.segment.bytes": "123456"}
    lc = plog(b, "t").config
    assert (lc.max_message_bytes, lc.retention_ms, lc.segment_bytes, lc.cleanup_policy) == (
        1000, 7200000, 123456, ("delete",))
    assert produce(b, "t", 0, batch_of_size(1001)).error_code == ErrorCode.MESSAGE_TOO_LARGE
    c = describe(b, BROKER, "1")
    assert (c["log.retention.ms"].config_source, c["log.segment.bytes"].config_source) == (
        DYNAMIC_DEFAULT_BROKER, DYNAMIC_BROKER)
    assert describe(b, TOPIC, "t")["max.message.bytes"].config_source == DYNAMIC_TOPIC
    make_broker.close(b)


def test_static_config_change_between_restarts_keeps_dynamic_precedence(make_broker):
    b = make_broker()
    assert one(ialter(b, [(BROKER, "", [("message.max.bytes", SET, "4000")])])).error_code == NONE
    make_broker.close(b)
    b = make_broker({"message.max.bytes": "9000"})
    assert b.config["message.max.bytes"] == 4000
    c = describe(b, BROKER, "1")["message.max.bytes"]
    assert [(s.value, s.source) for s in c.synonyms] == [
        ("4000", DYNAMIC_DEFAULT_BROKER), ("9000", STATIC_BROKER), ("1048588", DEFAULT)]


# -- DescribeLogDirs -------------------------------------------------------------------------

def describe_log_dirs(broker, topics, version=4):
    T = DescribeLogDirsRequest.DescribableLogDirTopic
    req = DescribeLogDirsRequest(topics=None if topics is None else
                                 [T(topic=t, partitions=ps) for t, ps in topics.items()])
    return call(broker, req, version)


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_describe_log_dirs_all(broker, version):
    create_topic(broker, "a", partitions=2)
    create_topic(broker, "b")
    sizes = {0: 300, 1: 0}
    assert produce(broker, "a", 0, batch_of_size(300)).error_code == NONE
    assert produce(broker, "b", 0, batch_of_size(120)).error_code == NONE
    assert produce(broker, "b", 0, batch_of_size(80)).error_code == NONE
    resp = describe_log_dirs(broker, None, version)
    if version >= 3:
        assert resp.error_code == NONE
    (d,) = resp.results
    assert d.error_code == NONE
    assert d.log_dir == os.path.abspath(broker.data_dir) and os.path.isabs(d.log_dir)
    got = {t.name: {p.partition_index: (p.partition_size, p.offset_lag, p.is_future_key)
                    for p in t.partitions} for t in d.topics}
    assert got == {"a": {0: (sizes[0], 0, False), 1: (sizes[1], 0, False)},
                   "b": {0: (200, 0, False)}}
    if version >= 4:
        st = os.statvfs(broker.data_dir)
        assert d.total_bytes == st.f_blocks * st.f_frsize > 0
        assert 0 < d.usable_bytes <= d.total_bytes
    else:
        assert (d.total_bytes, d.usable_bytes) == (-1, -1)  # not on the wire before v4


def test_describe_log_dirs_filter(broker):
    create_topic(broker, "a", partitions=3)
    create_topic(broker, "b")
    (d,) = describe_log_dirs(broker, {"a": [2, 0, 9], "ghost": [0]}).results
    assert [(t.name, sorted(p.partition_index for p in t.partitions)) for t in d.topics] == [
        ("a", [0, 2])]
    (d,) = describe_log_dirs(broker, {}).results
    assert d.topics == []


def test_describe_log_dirs_includes_internal_topics_not_the_metadata_log(broker):
    from kafkette.broker.group_offsets import ensure_offsets_topic
    ensure_offsets_topic(broker)
    (d,) = describe_log_dirs(broker, None).results
    names = {t.name for t in d.topics}
    assert "__consumer_offsets" in names and "__cluster_metadata" not in names


def test_describe_log_dirs_v0_is_not_served(broker):
    frame, _ = encode_request(DescribeLogDirsRequest(topics=None), 0)
    with pytest.raises(ProtocolError):
        broker.dispatcher.handle(frame)


def test_api_versions_lists_the_config_apis(broker):
    resp = call(broker, ApiVersionsRequest(client_software_name="t", client_software_version="1"), 3)
    listed = {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}
    assert listed[33] == (0, 2)  # AlterConfigs
    assert listed[44] == (0, 1)  # IncrementalAlterConfigs
    assert listed[35] == (1, 4)  # DescribeLogDirs (Kafka 4.0, KIP-896: no v0)


# -- settings Kafka 3.9 still accepts (removed in 4.0) ---------------------------------

def test_kafka_3_settings_are_accepted_and_described(broker):
    create_topic(broker, "old", configs={"message.format.version": "2.8",
                                         "message.downconversion.enable": "false"})
    d = describe(broker, TOPIC, "old", ["message.format.version",
                                        "message.downconversion.enable",
                                        "message.timestamp.difference.max.ms"])
    assert (d["message.format.version"].value, d["message.format.version"].config_source) == \
        ("2.8", DYNAMIC_TOPIC)
    assert d["message.downconversion.enable"].value == "false"
    diff = d["message.timestamp.difference.max.ms"]
    assert (diff.value, diff.config_source) == (str(2**63 - 1), DEFAULT)
    assert [s.name for s in diff.synonyms] == ["log.message.timestamp.difference.max.ms"]
    assert one(alter(broker, [(TOPIC, "old", {"message.format.version": "3.0-IV1"})])
               ).error_code == NONE
    r = one(ialter(broker, [(TOPIC, "old", [("message.format.version", SET, "three")])]))
    assert r.error_code == INVALID_CONFIG and "message.format.version" in r.error_message
    # The refused change left the value the legacy AlterConfigs set.
    d = describe(broker, TOPIC, "old", ["message.format.version"])
    assert d["message.format.version"].value == "3.0-IV1"


def test_message_timestamp_difference_max_ms_bounds_a_side_left_at_long_max(broker):
    # Kafka 3.9's LogConfig: difference.max.ms applies where before/after is Long.MAX;
    # Kafka 4.0's after default is one hour, so by default it bounds only the past.
    create_topic(broker, "diff", configs={"message.timestamp.difference.max.ms": "60000"})
    assert produce(broker, "diff", 0, batch_of_size(100, ts=START_MS - 120_000)).error_code == \
        ErrorCode.INVALID_TIMESTAMP
    assert produce(broker, "diff", 0, batch_of_size(100, ts=START_MS - 30_000)).error_code == NONE
    assert produce(broker, "diff", 0, batch_of_size(100, ts=START_MS + 600_000)).error_code == NONE
    assert one(ialter(broker, [(TOPIC, "diff", [("message.timestamp.after.max.ms", SET,
                                                  str(2**63 - 1))])])).error_code == NONE
    assert produce(broker, "diff", 0, batch_of_size(100, ts=START_MS + 600_000)).error_code == \
        ErrorCode.INVALID_TIMESTAMP
    # An explicit before wins over the difference.
    assert one(ialter(broker, [(TOPIC, "diff", [("message.timestamp.before.max.ms", SET,
                                                  "600000")])])).error_code == NONE
    assert produce(broker, "diff", 0, batch_of_size(100, ts=START_MS - 120_000)).error_code == NONE


def test_kafka_3_broker_settings_are_accepted_with_a_warning():
    cfg = BrokerConfig({"inter.broker.protocol.version": "3.9", "log.message.format.version":
                        "2.8", "log.message.downconversion.enable": "false"})
    assert cfg["inter.broker.protocol.version"] == "3.9"
    assert any("inter.broker.protocol.version" in w for w in cfg.warnings)
    assert any("log.message.format.version" in w for w in cfg.warnings)
    with pytest.raises(Exception, match="inter.broker.protocol.version"):
        BrokerConfig({"inter.broker.protocol.version": "latest"})
