"""Changing configs with stock admin clients against a real kafkette process:
kafka-python's KafkaAdminClient (alter_configs incremental and legacy, reset_configs,
describe_configs, describe_log_dirs) and confluent-kafka's AdminClient
(incremental_alter_configs, alter_configs, describe_configs); a produce refused once
max.message.bytes is lowered; dynamic broker configs; and changes surviving a restart.
confluent-kafka 2.x has no describe_log_dirs."""
from __future__ import annotations

import os

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                   ConfigResource as CkResource, ConfigSource, ResourceType)
from kafka.admin import AlterConfigOp, ConfigResource, ConfigResourceType
from kafka.errors import MessageSizeTooLargeError

from it_clients import admin, create_topic, producer
from itutil import unique_topic

pytestmark = pytest.mark.timeout(90)

NODE_ID = 1  # kafkette's default node.id


def _ck_admin(b) -> AdminClient:
    return AdminClient({"bootstrap.servers": b.bootstrap, "socket.timeout.ms": 10000})


def _ck_describe(a: AdminClient, rtype, name: str) -> dict:
    fs = a.describe_configs([CkResource(rtype, name)], request_timeout=15)
    (f,) = fs.values()
    return f.result(timeout=20)


def _kp_topic_configs(a, topic: str, config_filter: str = "modified") -> dict:
    res = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                             config_filter=config_filter)
    return res.get("topic", {}).get(topic, {})


# ------------------------------------------------------------------- kafka-python

def test_kafka_python_alter_configs_round_trip(broker):
    t = unique_topic("cfg-kp")
    create_topic(broker.bootstrap, t, configs={"cleanup.policy": "compact"})
    with admin(broker.bootstrap) as a:
        # IncrementalAlterConfigs is listed, so kafka-python uses it by default.
        res = a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t,
                                              configs={"retention.ms": "3600000"})])
        assert res == {"topic": {t: "OK"}}
        mod = _kp_topic_configs(a, t)
        assert {k: v["value"] for k, v in mod.items()} == {
            "retention.ms": "3600000", "cleanup.policy": "compact"}
        assert mod["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"

        # APPEND on a list config.
        res = a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t, configs={
            "cleanup.policy": (AlterConfigOp.APPEND, "delete")})])
        assert res == {"topic": {t: "OK"}}
        assert _kp_topic_configs(a, t)["cleanup.policy"]["value"] == "compact,delete"

        # Legacy AlterConfigs: kafka-python fills in the other modified keys itself.
        res = a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t,
                                              configs={"segment.bytes": "1048576"})],
                              incremental=False)
        assert res == {"topic": {t: "OK"}}
        assert {k: v["value"] for k, v in _kp_topic_configs(a, t).items()} == {
            "retention.ms": "3600000", "cleanup.policy": "compact,delete",
            "segment.bytes": "1048576"}

        res = a.reset_configs([ConfigResource(ConfigResourceType.TOPIC, t,
                                              configs=["retention.ms", "segment.bytes"])])
        assert res == {"topic": {t: "OK"}}
        assert set(_kp_topic_configs(a, t)) == {"cleanup.policy"}

        # An invalid value is refused (kafka-python returns the error as a string).
        res = a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t,
                                              configs={"retention.ms": "soon"})])
        assert res["topic"][t].startswith("[Error 40] InvalidConfigurationError"), res


def test_kafka_python_produce_refused_after_lowering_max_message_bytes(broker):
    t = unique_topic("cfg-kp-size")
    create_topic(broker.bootstrap, t)
    with producer(broker.bootstrap, retries=0) as p:
        p.send(t, b"x" * 5000).get(timeout=15)
        with admin(broker.bootstrap) as a:
            res = a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t,
                                                  configs={"max.message.bytes": "1000"})])
            assert res == {"topic": {t: "OK"}}
        with pytest.raises(MessageSizeTooLargeError):
            p.send(t, b"x" * 5000).get(timeout=15)
        p.send(t, b"small").get(timeout=15)


def test_kafka_python_dynamic_broker_config(fresh_broker):
    b = fresh_broker
    with admin(b.bootstrap) as a:
        res = a.alter_configs([ConfigResource(ConfigResourceType.BROKER, str(NODE_ID),
                                              configs={"log.retention.ms": "7200000"})])
        assert res == {"broker": {str(NODE_ID): "OK"}}
        cfg = a.describe_configs([ConfigResource(ConfigResourceType.BROKER, str(NODE_ID))],
                                 config_filter="dynamic")["broker"][str(NODE_ID)]
        assert cfg["log.retention.ms"]["value"] == "7200000"
        assert cfg["log.retention.ms"]["config_source"] == "DYNAMIC_BROKER_CONFIG"
        assert "log.retention.hours" not in cfg  # read-only: not in the dynamic filter
        # kafka-python itself refuses keys that are not listed as dynamic.
        with pytest.raises(ValueError):
            a.alter_configs([ConfigResource(ConfigResourceType.BROKER, str(NODE_ID),
                                            configs={"num.partitions": "3"})])
        res = a.alter_configs([ConfigResource(ConfigResourceType.BROKER, str(NODE_ID),
                                              configs={"num.partitions": "3"})],
                              raise_on_unknown=False)
        assert res["broker"][str(NODE_ID)].startswith("[Error 42] InvalidRequestError"), res
    t = unique_topic("cfg-kp-b")
    create_topic(b.bootstrap, t)
    with admin(b.bootstrap) as a:
        rm = _kp_topic_configs(a, t, "all")["retention.ms"]
        assert (rm["value"], rm["config_source"]) == ("7200000", "DYNAMIC_BROKER_CONFIG")


def test_kafka_python_describe_log_dirs(broker):
    t = unique_topic("cfg-kp-dirs")
    create_topic(broker.bootstrap, t, partitions=2)
    with producer(broker.bootstrap) as p:
        for _ in range(10):
            p.send(t, b"y" * 100, partition=0)
        p.flush(timeout=15)
    with admin(broker.bootstrap) as a:
        (res,) = a.describe_log_dirs(topic_partitions={t: [0, 1]})
    assert res["broker"] == NODE_ID
    (d,) = res["log_dirs"]
    assert d["error_code"] == 0
    assert d["log_dir"] == os.path.abspath(broker.data_dir)
    (topic,) = d["topics"]
    sizes = {p["partition_index"]: p["partition_size"] for p in topic["partitions"]}
    assert sizes[1] == 0 and sizes[0] > 1000
    assert all(p["offset_lag"] == 0 and p["is_future_key"] is False for p in topic["partitions"])
    assert d["total_bytes"] > 0 and 0 < d["usable_bytes"] <= d["total_bytes"]


# ------------------------------------------------------------------- confluent-kafka

@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated:DeprecationWarning")
def test_confluent_incremental_and_legacy_alter_configs(broker):
    t = unique_topic("cfg-ck")
    create_topic(broker.bootstrap, t)
    a = _ck_admin(broker)
    fs = a.incremental_alter_configs([CkResource(ResourceType.TOPIC, t, incremental_configs=[
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
        ConfigEntry("retention.ms", "60000", incremental_operation=AlterConfigOpType.SET)])],
        request_timeout=15)
    for f in fs.values():
        assert f.result(timeout=20) is None
    cfg = _ck_describe(a, ResourceType.TOPIC, t)
    assert cfg["cleanup.policy"].value == "delete,compact"
    assert cfg["retention.ms"].value == "60000"
    assert cfg["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert not cfg["retention.ms"].is_read_only

    # Legacy AlterConfigs replaces the whole set: cleanup.policy goes back to default.
    fs = a.alter_configs([CkResource(ResourceType.TOPIC, t, set_config={"segment.ms": "3600000"})],
                         request_timeout=15)
    for f in fs.values():
        assert f.result(timeout=20) is None
    cfg = _ck_describe(a, ResourceType.TOPIC, t)
    assert cfg["segment.ms"].value == "3600000"
    assert (cfg["cleanup.policy"].value, cfg["cleanup.policy"].is_default) == ("delete", True)
    assert cfg["retention.ms"].is_default

    # Errors reach the client.
    fs = a.incremental_alter_configs([CkResource(ResourceType.TOPIC, t, incremental_configs=[
        ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.APPEND)])],
        request_timeout=15)
    (f,) = fs.values()
    with pytest.raises(Exception) as e:
        f.result(timeout=20)
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG


def test_confluent_produce_refused_after_lowering_max_message_bytes(broker):
    t = unique_topic("cfg-ck-size")
    create_topic(broker.bootstrap, t)
    a = _ck_admin(broker)
    fs = a.incremental_alter_configs([CkResource(ResourceType.TOPIC, t, incremental_configs=[
        ConfigEntry("max.message.bytes", "1000", incremental_operation=AlterConfigOpType.SET)])],
        request_timeout=15)
    for f in fs.values():
        assert f.result(timeout=20) is None
    errors, ok = [], []
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "retries": 0,
                  "enable.idempotence": False})
    p.produce(t, b"x" * 5000, on_delivery=lambda err, msg: (errors if err else ok).append(err))
    assert p.flush(20) == 0  # its own batch: a batch is refused whole
    p.produce(t, b"small", on_delivery=lambda err, msg: (errors if err else ok).append(err))
    assert p.flush(20) == 0
    assert [e.code() for e in errors] == [KafkaError.MSG_SIZE_TOO_LARGE]
    assert len(ok) == 1


def test_confluent_dynamic_broker_config_and_restart(fresh_broker):
    b = fresh_broker
    t = unique_topic("cfg-ck-restart")
    create_topic(b.bootstrap, t)
    a = _ck_admin(b)
    fs = a.incremental_alter_configs([
        CkResource(ResourceType.BROKER, str(NODE_ID), incremental_configs=[
            ConfigEntry("message.max.bytes", "200000", incremental_operation=AlterConfigOpType.SET)]),
        CkResource(ResourceType.TOPIC, t, incremental_configs=[
            ConfigEntry("retention.ms", "86400000", incremental_operation=AlterConfigOpType.SET)])],
        request_timeout=15)
    for f in fs.values():
        assert f.result(timeout=20) is None
    cfg = _ck_describe(a, ResourceType.BROKER, str(NODE_ID))
    assert cfg["message.max.bytes"].value == "200000"
    assert cfg["message.max.bytes"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    assert cfg["num.partitions"].is_read_only and not cfg["message.max.bytes"].is_read_only
    # A read-only key is refused.
    fs = a.incremental_alter_configs([CkResource(ResourceType.BROKER, str(NODE_ID), incremental_configs=[
        ConfigEntry("num.partitions", "4", incremental_operation=AlterConfigOpType.SET)])],
        request_timeout=15)
    (f,) = fs.values()
    with pytest.raises(Exception) as e:
        f.result(timeout=20)
    assert e.value.args[0].code() == KafkaError.INVALID_REQUEST
    del a

    b.restart()
    a = _ck_admin(b)
    cfg = _ck_describe(a, ResourceType.BROKER, str(NODE_ID))
    assert (cfg["message.max.bytes"].value, cfg["message.max.bytes"].source) == (
        "200000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    tcfg = _ck_describe(a, ResourceType.TOPIC, t)
    assert (tcfg["retention.ms"].value, tcfg["retention.ms"].source) == (
        "86400000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert (tcfg["max.message.bytes"].value, tcfg["max.message.bytes"].source) == (
        "200000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    # And the limit holds after the restart.
    errors = []
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 0, "retries": 0})
    p.produce(t, b"z" * 300000, on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(20) == 0
    assert [e.code() if e else None for e in errors] == [KafkaError.MSG_SIZE_TOO_LARGE]


# ------------------------------------------------------- settings Kafka 3.x still accepts

def test_kafka_3_topic_settings_with_both_admin_clients(broker):
    """message.format.version and message.downconversion.enable, which clients written
    for Kafka 3.x still send, are accepted (and described) rather than INVALID_CONFIG."""
    from confluent_kafka.admin import NewTopic
    t = unique_topic("cfg-3x")
    create_topic(broker.bootstrap, t, configs={"message.format.version": "2.8"})
    with admin(broker.bootstrap) as a:
        assert _kp_topic_configs(a, t)["message.format.version"]["value"] == "2.8"
    ck = _ck_admin(broker)
    t2 = unique_topic("cfg-3x-ck")
    (f,) = ck.create_topics([NewTopic(t2, 1, 1, config={
        "message.downconversion.enable": "false",
        "message.timestamp.difference.max.ms": "86400000"})]).values()
    assert f.result(timeout=20) is None
    (f,) = ck.incremental_alter_configs([CkResource(ResourceType.TOPIC, t2, incremental_configs=[
        ConfigEntry("message.format.version", "3.0-IV1",
                    incremental_operation=AlterConfigOpType.SET)])]).values()
    assert f.result(timeout=20) is None
    cfg = _ck_describe(ck, ResourceType.TOPIC, t2)
    assert cfg["message.format.version"].value == "3.0-IV1"
    assert cfg["message.downconversion.enable"].value == "false"
    assert cfg["message.timestamp.difference.max.ms"].value == "86400000"
    assert cfg["message.timestamp.difference.max.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
