"""Broker and topic configuration: defaults, sources and precedence, validation errors,
listener parsing and advertising, DescribeConfigs entries."""
from __future__ import annotations

import textwrap

import pytest

from kafkette.config import (
    BROKER_CONFIGS,
    LONG_MAX,
    TOPIC_CONFIGS,
    BrokerConfig,
    ConfigError,
    Listener,
    QuorumVoter,
    describe_topic_configs,
    effective_topic_config,
    topic_defaults,
    validate_topic_configs,
)
from kafkette.errors import ErrorCode, KafkaError


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


# ---------------------------------------------------------------- defaults

def test_defaults():
    c = BrokerConfig()
    assert c.node_id == 1
    assert c.retention_ms == 7 * 24 * 3600 * 1000
    assert c["log.retention.hours"] == 168
    assert c["log.retention.ms"] is None
    assert c.listeners == [Listener("PLAINTEXT", "127.0.0.1", 9092)]
    assert c.listeners[0].port == 9092
    assert c.log_dirs == ["./kafkette-data"]
    assert c["num.partitions"] == 1
    assert c["auto.create.topics.enable"] is True
    assert c["message.max.bytes"] == 1048588
    assert c["log.segment.bytes"] == 1024**3
    assert c["offsets.topic.replication.factor"] == 3
    assert c["auto.leader.rebalance.enable"] is True
    assert c["leader.imbalance.check.interval.seconds"] == 300
    assert c["leader.imbalance.per.broker.percentage"] == 10
    assert c["compression.type"] == "producer"
    assert c["log.cleanup.policy"] == ["delete"]
    assert c["process.roles"] == ["broker", "controller"]
    assert c.segment_ms == 168 * 3600 * 1000
    assert c.flush_interval_messages is None and c.flush_interval_ms is None
    assert c.offsets_retention_ms == 10080 * 60_000
    assert c.cluster_id is None
    assert c.warnings == []


def test_every_table_default_is_valid():
    # A default that its own validator rejects would make the key unsettable to it.
    for spec in BROKER_CONFIGS.values():
        if spec.validator is not None and spec.default is not None:
            assert not spec.validator(spec.default), spec.name
    for spec in TOPIC_CONFIGS.values():
        if spec.validator is not None:
            assert not spec.validator(spec.kafka_default), spec.name


def test_topic_defaults_match_kafka_when_broker_is_default():
    defaults = topic_defaults(BrokerConfig())
    assert set(defaults) == set(TOPIC_CONFIGS)
    assert defaults["retention.ms"] == "604800000"
    assert defaults["segment.ms"] == "604800000"
    assert defaults["cleanup.policy"] == "delete"
    assert defaults["max.message.bytes"] == "1048588"
    assert defaults["flush.messages"] == str(LONG_MAX)
    assert defaults["flush.ms"] == str(LONG_MAX)
    assert defaults["min.cleanable.dirty.ratio"] == "0.5"
    assert defaults["unclean.leader.election.enable"] == "false"
    for name, spec in TOPIC_CONFIGS.items():
        typed = effective_topic_config(None)[name]
        assert typed == spec.kafka_default, name


def test_topic_defaults_follow_broker_config():
    c = BrokerConfig({"log.retention.minutes": "10", "log.segment.bytes": "2048",
                      "log.cleanup.policy": "compact,delete", "message.max.bytes": "100",
                      "log.flush.interval.ms": "1000", "log.roll.ms": "5000"})
    d = c.topic_defaults()
    assert d["retention.ms"] == "600000"
    assert d["segment.bytes"] == "2048"
    assert d["cleanup.policy"] == "compact,delete"
    assert d["max.message.bytes"] == "100"
    assert d["flush.ms"] == "1000"
    assert d["segment.ms"] == "5000"


# ---------------------------------------------------------------- sources

def test_overrides_from_set_strings():
    c = BrokerConfig.load(None, ["num.partitions=3", "log.retention.hours=24",
                                 "auto.create.topics.enable=false", "log.dirs=/a, /b",
                                 "log.cleaner.min.cleanable.ratio=0.25"])
    assert c["num.partitions"] == 3
    assert c.retention_ms == 24 * 3600 * 1000
    assert c["auto.create.topics.enable"] is False
    assert c.log_dirs == ["/a", "/b"]
    assert c["log.cleaner.min.cleanable.ratio"] == 0.25


def test_override_value_may_contain_equals_and_later_wins():
    c = BrokerConfig.load(None, ["cluster.id=abc=def", "num.partitions=2", "num.partitions=5"])
    assert c.cluster_id == "abc=def"
    assert c["num.partitions"] == 5


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="key=value"):
        BrokerConfig.load(None, ["num.partitions"])


def test_yaml_flat_and_nested(tmp_path):
    path = write(tmp_path, "kafkette.yaml", """\
        node.id: 7
        num.partitions: 4
        log.dirs: [/data/a, /data/b]
        log:
          retention:
            ms: 60000
          cleanup.policy: compact
        auto.create.topics.enable: false
        """)
    c = BrokerConfig.load(path, [])
    assert c.node_id == 7
    assert c["num.partitions"] == 4
    assert c.log_dirs == ["/data/a", "/data/b"]
    assert c.retention_ms == 60000
    assert c["log.cleanup.policy"] == ["compact"]
    assert c["auto.create.topics.enable"] is False


def test_set_overrides_yaml(tmp_path):
    path = write(tmp_path, "k.yaml", "num.partitions: 4\nlog.retention.hours: 1\n")
    c = BrokerConfig.load(path, ["num.partitions=9"])
    assert c["num.partitions"] == 9
    assert c["log.retention.hours"] == 1


def test_empty_yaml_file_gives_defaults(tmp_path):
    assert BrokerConfig.load(write(tmp_path, "k.yaml", ""), [])["num.partitions"] == 1


def test_yaml_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="mapping"):
        BrokerConfig.load(write(tmp_path, "k.yaml", "- a\n- b\n"), [])


def test_yaml_same_key_flat_and_nested_is_an_error(tmp_path):
    path = write(tmp_path, "k.yaml", "log.retention.hours: 1\nlog:\n  retention.hours: 2\n")
    with pytest.raises(ConfigError, match="log.retention.hours"):
        BrokerConfig.load(path, [])


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="Cannot read"):
        BrokerConfig.load(str(tmp_path / "nope.yaml"), [])


def test_kafka_properties_file(tmp_path):
    # The keys of Kafka's sample KRaft server.properties load unchanged.
    path = write(tmp_path, "server.properties", """\
        # comment
        process.roles=broker,controller
        node.id=1
        controller.quorum.bootstrap.servers=localhost:9093
        listeners=PLAINTEXT://:9092,CONTROLLER://:9093
        inter.broker.listener.name=PLAINTEXT
        advertised.listeners=PLAINTEXT://localhost:9092,CONTROLLER://localhost:9093
        controller.listener.names=CONTROLLER
        listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,\\
          SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
        num.network.threads=3
        num.io.threads=8
        socket.send.buffer.bytes=102400
        socket.receive.buffer.bytes=102400
        socket.request.max.bytes=104857600
        log.dirs=/tmp/kraft-combined-logs
        num.partitions=1
        num.recovery.threads.per.data.dir=1
        offsets.topic.replication.factor=1
        share.coordinator.state.topic.replication.factor=1
        share.coordinator.state.topic.min.isr=1
        transaction.state.log.replication.factor=1
        transaction.state.log.min.isr=1
        log.retention.hours=168
        log.segment.bytes=1073741824
        log.retention.check.interval.ms=300000
        """)
    c = BrokerConfig.load(path, [])
    assert c.listeners == [Listener("PLAINTEXT", "", 9092), Listener("CONTROLLER", "", 9093)]
    # the controller listener is not advertised to clients
    assert c.advertised_listeners == [Listener("PLAINTEXT", "localhost", 9092)]
    assert c.security_protocol("SASL_SSL") == "SASL_SSL"
    assert c.inter_broker_listener_name == "PLAINTEXT"
    assert any("num.io.threads" in w for w in c.warnings)


# ---------------------------------------------------------------- errors

def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError) as e:
        BrokerConfig({"log.retention.hour": "1"})
    assert "log.retention.hour" in str(e.value)
    assert "did you mean 'log.retention.hours'" in str(e.value)
    assert e.value.key == "log.retention.hour"


def test_unknown_key_in_set_override_suggests():
    with pytest.raises(ConfigError, match="did you mean 'num.partitions'"):
        BrokerConfig.load(None, ["num.partition=3"])


def test_topic_name_given_to_broker_points_to_broker_key():
    with pytest.raises(ConfigError, match="log.retention.ms"):
        BrokerConfig.load(None, ["retention.ms=1000"])


def test_unknown_key_without_close_match():
    with pytest.raises(ConfigError, match="Unknown configuration 'zzzz'") as e:
        BrokerConfig({"zzzz": 1})
    assert "did you mean" not in str(e.value)


@pytest.mark.parametrize("key,value", [
    ("num.partitions", "abc"),
    ("num.partitions", "1.5"),
    ("num.partitions", True),
    ("num.partitions", "3000000000"),  # does not fit an INT
    ("log.retention.ms", "soon"),
    ("auto.create.topics.enable", "yes please"),
    ("log.cleaner.min.cleanable.ratio", "half"),
])
def test_bad_value_names_key_and_value(key, value):
    with pytest.raises(ConfigError) as e:
        BrokerConfig({key: value})
    assert key in str(e.value) and str(value) in str(e.value)
    assert e.value.key == key


@pytest.mark.parametrize("key,value,fragment", [
    ("num.partitions", "0", "at least 1"),
    ("log.cleaner.min.cleanable.ratio", "1.5", "no more than 1"),
    ("compression.type", "zip", "gzip"),
    ("log.message.timestamp.type", "createtime", "CreateTime"),
    ("log.cleanup.policy", "delete,archive", "archive"),
    ("process.roles", "leader", "leader"),
    ("log.segment.bytes", "13", "at least 14"),
])
def test_out_of_range_or_choice(key, value, fragment):
    with pytest.raises(ConfigError, match=fragment):
        BrokerConfig({key: value})


def test_typed_yaml_values_are_accepted():
    c = BrokerConfig({"num.partitions": 3, "auto.create.topics.enable": False,
                      "log.dirs": ["/x"], "log.cleaner.min.cleanable.ratio": 1})
    assert c["num.partitions"] == 3 and c["auto.create.topics.enable"] is False
    assert c["log.cleaner.min.cleanable.ratio"] == 1.0


def test_null_for_a_non_nullable_key():
    with pytest.raises(ConfigError, match="null"):
        BrokerConfig({"num.partitions": None})
    assert BrokerConfig({"log.retention.ms": None})["log.retention.ms"] is None
    assert BrokerConfig.load(None, ["log.retention.ms="])["log.retention.ms"] is None


def test_config_error_maps_to_invalid_config():
    with pytest.raises(KafkaError) as e:
        validate_topic_configs({"retention.ms": "x"})
    assert e.value.code == ErrorCode.INVALID_CONFIG


# ---------------------------------------------------------------- aliases

def test_aliases():
    c = BrokerConfig.load(None, ["broker.id=3", "log.dir=/d"])
    assert c.node_id == 3 and c["broker.id"] == 3
    assert c.log_dirs == ["/d"]
    assert not c.is_default("node.id")


def test_alias_conflict_in_one_source(tmp_path):
    with pytest.raises(ConfigError, match="same setting"):
        BrokerConfig({"broker.id": "1", "node.id": "2"})
    path = write(tmp_path, "k.yaml", "broker.id: 1\nnode.id: 1\n")
    with pytest.raises(ConfigError, match="same setting"):
        BrokerConfig.load(path, [])


def test_set_override_beats_alias_in_file(tmp_path):
    path = write(tmp_path, "k.yaml", "broker.id: 1\n")
    assert BrokerConfig.load(path, ["node.id=2"]).node_id == 2


# ---------------------------------------------------------------- listeners

def test_listener_parsing():
    c = BrokerConfig({"listeners": "PLAINTEXT://0.0.0.0:9092,sasl_plaintext://[::1]:9094,"
                                   "INTERNAL://broker-1.local:19092",
                      "listener.security.protocol.map": "INTERNAL:PLAINTEXT,"
                                                         "PLAINTEXT:PLAINTEXT,"
                                                         "SASL_PLAINTEXT:SASL_PLAINTEXT",
                      # a SASL listener needs a mechanism kafkette serves
                      "sasl.enabled.mechanisms": "SCRAM-SHA-256"})
    assert c.listeners == [
        Listener("PLAINTEXT", "0.0.0.0", 9092),
        Listener("SASL_PLAINTEXT", "::1", 9094),
        Listener("INTERNAL", "broker-1.local", 19092),
    ]
    assert str(c.listeners[1]) == "SASL_PLAINTEXT://[::1]:9094"
    assert c.security_protocol("internal") == "PLAINTEXT"


@pytest.mark.parametrize("value", [
    "PLAINTEXT://host:notaport",
    "PLAINTEXT://host",
    "host:9092",
    "PLAINTEXT://host:70000",
    "PLAINTEXT://ho st:9092",
])
def test_bad_listener(value):
    with pytest.raises(ConfigError) as e:
        BrokerConfig.load(None, [f"listeners={value}"])
    assert "listeners" in str(e.value) and value.split(",")[0] in str(e.value)


def test_listener_needs_a_security_protocol():
    with pytest.raises(ConfigError, match="listener.security.protocol.map"):
        BrokerConfig({"listeners": "CLIENT://127.0.0.1:9092"})


def test_duplicate_listener_name_or_port():
    with pytest.raises(ConfigError, match="twice"):
        BrokerConfig({"listeners": "PLAINTEXT://a:1,PLAINTEXT://b:2"})
    with pytest.raises(ConfigError, match="port"):
        BrokerConfig({"listeners": "PLAINTEXT://a:9092,SSL://b:9092"})
    # port 0 (any free port) may repeat (an SSL listener needs a key store; the
    # config checks do not read it)
    BrokerConfig({"listeners": "PLAINTEXT://a:0,SSL://b:0", "ssl.keystore.type": "PEM",
                  "ssl.keystore.location": "server.pem"})


def test_advertised_defaults_to_listeners():
    c = BrokerConfig.load(None, ["listeners=PLAINTEXT://10.0.0.5:9093"])
    assert c.advertised_listeners == c.listeners == [Listener("PLAINTEXT", "10.0.0.5", 9093)]
    assert c["advertised.listeners"] is None


@pytest.mark.parametrize("host", ["0.0.0.0", "", "[::]"])
def test_wildcard_listener_is_advertised_as_localhost(host):
    c = BrokerConfig.load(None, [f"listeners=PLAINTEXT://{host}:9092"])
    assert c.advertised_listeners == [Listener("PLAINTEXT", "localhost", 9092)]
    assert any("advertised.listeners" in w for w in c.warnings)


def test_explicit_advertised_listeners():
    # what docker/entrypoint.sh passes
    c = BrokerConfig.load(None, ["listeners=PLAINTEXT://0.0.0.0:9092",
                                 "advertised.listeners=PLAINTEXT://kafka:19092",
                                 "log.dirs=/var/lib/kafkette"])
    assert c.listeners == [Listener("PLAINTEXT", "0.0.0.0", 9092)]
    assert c.advertised_listeners == [Listener("PLAINTEXT", "kafka", 19092)]
    assert c.warnings == []


def test_advertised_listener_may_not_be_a_wildcard():
    with pytest.raises(ConfigError, match="advertised.listeners"):
        BrokerConfig.load(None, ["advertised.listeners=PLAINTEXT://0.0.0.0:9092"])


def test_advertised_listener_must_name_a_listener():
    with pytest.raises(ConfigError, match="SSL"):
        BrokerConfig.load(None, ["advertised.listeners=SSL://example.com:9093"])


def test_partial_advertised_listeners_fall_back_per_listener():
    c = BrokerConfig.load(None, ["listeners=PLAINTEXT://0.0.0.0:9092,SSL://10.1.1.1:9093",
                                 "advertised.listeners=PLAINTEXT://pub.example.com:9092",
                                 "ssl.keystore.type=PEM", "ssl.keystore.location=server.pem"])
    assert c.advertised_listeners == [Listener("PLAINTEXT", "pub.example.com", 9092),
                                      Listener("SSL", "10.1.1.1", 9093)]


def test_quorum_voters():
    c = BrokerConfig.load(None, ["controller.quorum.voters=1@localhost:9093,2@[::1]:9094"])
    assert c.controller_quorum_voters == [QuorumVoter(1, "localhost", 9093),
                                          QuorumVoter(2, "::1", 9094)]
    with pytest.raises(ConfigError, match="id@host:port"):
        BrokerConfig.load(None, ["controller.quorum.voters=localhost:9093"])
    with pytest.raises(ConfigError, match="twice"):
        BrokerConfig.load(None, ["controller.quorum.voters=1@a:1,1@b:2"])


# ---------------------------------------------------------------- resolution

def test_retention_precedence_ms_over_minutes_over_hours():
    assert BrokerConfig({"log.retention.hours": "2"}).retention_ms == 2 * 3_600_000
    assert BrokerConfig({"log.retention.hours": "2",
                         "log.retention.minutes": "3"}).retention_ms == 3 * 60_000
    assert BrokerConfig({"log.retention.hours": "2", "log.retention.minutes": "3",
                         "log.retention.ms": "1234"}).retention_ms == 1234
    assert BrokerConfig({"log.retention.ms": "-1"}).retention_ms == -1
    assert BrokerConfig({"log.retention.hours": "-5"}).retention_ms == -1


def test_segment_ms_precedence():
    assert BrokerConfig({"log.roll.hours": "1"}).segment_ms == 3_600_000
    assert BrokerConfig({"log.roll.hours": "1", "log.roll.ms": "500"}).segment_ms == 500


def test_flush_settings():
    c = BrokerConfig({"log.flush.interval.messages": "1", "log.flush.interval.ms": "100"})
    assert c.flush_interval_messages == 1 and c.flush_interval_ms == 100


# ---------------------------------------------------------------- topic configs

def test_validate_topic_configs_normalises():
    out = validate_topic_configs({"cleanup.policy": "compact, delete", "retention.ms": " 1000 ",
                                  "preallocate": "TRUE", "retention.bytes": None,
                                  "min.cleanable.dirty.ratio": "1"})
    assert out == {"cleanup.policy": "compact,delete", "retention.ms": "1000",
                   "preallocate": "true", "retention.bytes": None,
                   "min.cleanable.dirty.ratio": "1.0"}


@pytest.mark.parametrize("configs,fragment", [
    ({"retention.mss": "1"}, "did you mean 'retention.ms'"),
    ({"message.max.bytes": "1"}, "max.message.bytes"),
    ({"retention.ms": "abc"}, "retention.ms"),
    ({"retention.ms": "-2"}, "at least -1"),
    ({"segment.bytes": "13"}, "at least 14"),
    ({"segment.ms": "0"}, "at least 1"),
    ({"cleanup.policy": "remove"}, "remove"),
    ({"cleanup.policy": ""}, "empty"),
    ({"compression.type": "brotli"}, "brotli"),
    ({"message.timestamp.type": "AppendTime"}, "AppendTime"),
    ({"min.insync.replicas": "0"}, "at least 1"),
    ({"min.cleanable.dirty.ratio": "2"}, "no more than 1"),
    ({"unclean.leader.election.enable": "maybe"}, "true or false"),
    ({"compression.gzip.level": "0"}, "-1"),
    ({"min.compaction.lag.ms": "10", "max.compaction.lag.ms": "5"}, "min.compaction.lag.ms"),
])
def test_validate_topic_configs_errors(configs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        validate_topic_configs(configs)


def test_compaction_lag_conflict_uses_broker_defaults():
    broker = BrokerConfig({"log.cleaner.max.compaction.lag.ms": "1000"})
    validate_topic_configs({"min.compaction.lag.ms": "5000"})  # Kafka's max is Long.MAX
    with pytest.raises(ConfigError, match="max.compaction.lag.ms"):
        validate_topic_configs({"min.compaction.lag.ms": "5000"}, broker)


def test_effective_topic_config_is_typed():
    broker = BrokerConfig({"log.retention.hours": "1"})
    eff = effective_topic_config(broker, {"cleanup.policy": "compact", "segment.bytes": "4096",
                                          "retention.bytes": None})
    assert eff["cleanup.policy"] == ["compact"]
    assert eff["segment.bytes"] == 4096
    assert eff["retention.ms"] == 3_600_000
    assert eff["retention.bytes"] == -1
    assert eff["min.cleanable.dirty.ratio"] == 0.5


# ---------------------------------------------------------------- describe

def test_describe_sources():
    c = BrokerConfig.load(None, ["num.partitions=3", "broker.id=2"])
    entries = {e.name: e for e in c.describe()}
    assert set(entries) == set(BROKER_CONFIGS)
    np = entries["num.partitions"]
    assert (np.value, np.is_default, np.source) == ("3", False, "STATIC_BROKER_CONFIG")
    assert np.source_code == 4 and np.type == "INT" and np.type_code == 3
    assert entries["node.id"].value == "2" and entries["node.id"].source == "STATIC_BROKER_CONFIG"
    hours = entries["log.retention.hours"]
    assert (hours.value, hours.is_default, hours.source) == ("168", True, "DEFAULT_CONFIG")
    assert hours.source_code == 5
    assert entries["log.retention.ms"].value is None
    assert entries["log.cleanup.policy"].value == "delete" and entries["log.cleanup.policy"].type == "LIST"
    assert entries["auto.create.topics.enable"].value == "true"
    assert entries["log.cleaner.min.cleanable.ratio"].value == "0.5"
    assert entries["listeners"].value == "PLAINTEXT://127.0.0.1:9092"
    # only Kafka's PASSWORD keys (key store passwords, inline keys, JAAS) are sensitive
    assert {n for n, e in entries.items() if e.sensitive} == {
        "ssl.keystore.password", "ssl.keystore.certificate.chain", "ssl.keystore.key",
        "ssl.key.password", "ssl.truststore.password", "ssl.truststore.certificates",
        "sasl.jaas.config"}
    # Only Kafka's dynamic broker keys may be altered (AlterConfigs on a BROKER resource).
    assert entries["log.retention.ms"].read_only is False
    assert entries["log.retention.hours"].read_only is True
    assert entries["listeners"].read_only is True


def test_describe_selected_names():
    c = BrokerConfig()
    assert [e.name for e in c.describe(["log.dirs", "no.such.key", "broker.id"])] == \
        ["log.dirs", "node.id"]


def test_describe_topic_configs_sources_and_synonyms():
    broker = BrokerConfig({"log.retention.minutes": "30"})
    entries = {e.name: e for e in describe_topic_configs(broker, {"segment.bytes": "2048"})}
    assert set(entries) == set(TOPIC_CONFIGS)

    seg = entries["segment.bytes"]
    assert (seg.value, seg.source, seg.is_default, seg.read_only) == \
        ("2048", "DYNAMIC_TOPIC_CONFIG", False, False)
    assert [s.source for s in seg.synonyms] == ["DYNAMIC_TOPIC_CONFIG", "DEFAULT_CONFIG"]

    ret = entries["retention.ms"]
    assert (ret.value, ret.source, ret.is_default) == ("1800000", "STATIC_BROKER_CONFIG", False)
    assert [(s.name, s.value, s.source) for s in ret.synonyms] == [
        ("log.retention.minutes", "30", "STATIC_BROKER_CONFIG"),
        ("log.retention.hours", "168", "DEFAULT_CONFIG"),
    ]

    pol = entries["cleanup.policy"]
    assert (pol.value, pol.source, pol.is_default) == ("delete", "DEFAULT_CONFIG", True)


# --- process.roles against controller.quorum.voters (Kafka's KafkaConfig checks) ---------
VOTERS = "controller.quorum.voters=3001@127.0.0.1:9301,3002@127.0.0.1:9302,3003@127.0.0.1:9303"


def test_broker_only_node_must_not_be_a_voter_and_needs_voters():
    c = BrokerConfig.load(None, ["process.roles=broker", "node.id=1", VOTERS])
    assert c.is_broker and not c.is_controller
    with pytest.raises(ConfigError, match="just the 'broker' role, the node id 3001 must not be "
                                          "included in the set of voters") as e:
        BrokerConfig.load(None, ["process.roles=broker", "node.id=3001", VOTERS])
    assert e.value.key == "controller.quorum.voters"
    with pytest.raises(ConfigError, match="process.roles=broker needs controller.quorum.voters"):
        BrokerConfig.load(None, ["process.roles=broker"])


def test_a_node_with_the_controller_role_must_be_a_voter():
    c = BrokerConfig.load(None, ["process.roles=controller", "node.id=3002", VOTERS])
    assert c.is_controller and not c.is_broker
    for roles in ("controller", "broker,controller"):
        with pytest.raises(ConfigError, match="contains the 'controller' role, the node id 7 must "
                                              "be included in the set of voters"):
            BrokerConfig.load(None, [f"process.roles={roles}", "node.id=7", VOTERS])
    # A lone controller-only node would serve nobody; a lone combined node is a quorum of one.
    with pytest.raises(ConfigError, match="process.roles=controller needs controller.quorum.voters"):
        BrokerConfig.load(None, ["process.roles=controller"])
    assert BrokerConfig.load(None, []).is_controller


def test_controller_only_node_refuses_client_listeners():
    with pytest.raises(ConfigError, match="controller-only node does not open") as e:
        BrokerConfig.load(None, ["process.roles=controller", "node.id=3001", VOTERS,
                                 "listeners=PLAINTEXT://127.0.0.1:9092"])
    assert e.value.key == "listeners"
    c = BrokerConfig.load(None, ["process.roles=controller", "node.id=3001", VOTERS,
                                 "listeners=CONTROLLER://127.0.0.1:9301",
                                 "controller.listener.names=CONTROLLER"])
    assert c.process_roles == ["controller"]
    # The controller binds its voter address: another address would not be honoured.
    with pytest.raises(ConfigError, match="not this node's controller.quorum.voters address"):
        BrokerConfig.load(None, ["process.roles=controller", "node.id=3001", VOTERS,
                                 "listeners=CONTROLLER://0.0.0.0:9301",
                                 "controller.listener.names=CONTROLLER"])


def test_voter_ids_are_unique_and_roles_not_repeated():
    with pytest.raises(ConfigError, match="lists a node id twice"):
        BrokerConfig.load(None, ["process.roles=broker", "node.id=1",
                                 "controller.quorum.voters=3001@a:1,3001@b:2"])
    with pytest.raises(ConfigError, match="lists a role twice"):
        BrokerConfig.load(None, ["process.roles=broker,broker", "node.id=1", VOTERS])


# ---------------------------------------------------------------- node-to-node security
# (broker/peer_security.py). Only the layout is checked here: key stores are read
# when the node starts, so a file name suffices.

_PLAIN_BROKER_JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
                      'username="broker" password="s" user_broker="s";')


def _cluster(**kw) -> BrokerConfig:
    base = {"node.id": "1", "controller.quorum.voters": "1@127.0.0.1:19093",
            "listeners": "PLAINTEXT://127.0.0.1:0,INTERNAL://127.0.0.1:0,"
                         "CONTROLLER://127.0.0.1:19093",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT,"
                                              "CONTROLLER:PLAINTEXT,SSL:SSL",
            "ssl.keystore.type": "PEM", "ssl.keystore.location": "/x/node.pem"}
    base.update(kw)
    return BrokerConfig(base)


def test_ssl_inter_broker_and_controller_listeners_are_accepted():
    c = _cluster(**{"listener.security.protocol.map":
                    "PLAINTEXT:PLAINTEXT,INTERNAL:SSL,CONTROLLER:SSL",
                    "inter.broker.listener.name": "INTERNAL"})
    assert c.inter_broker_listener_name == "INTERNAL"
    assert c.controller_listener_name == "CONTROLLER"
    assert c.security_protocol("INTERNAL") == c.security_protocol("CONTROLLER") == "SSL"


def test_sasl_ssl_inter_broker_logs_in_with_the_listeners_jaas_username():
    c = _cluster(**{"listener.security.protocol.map":
                    "PLAINTEXT:PLAINTEXT,INTERNAL:SASL_SSL,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name": "INTERNAL",
                    "listener.name.internal.sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512",
                    "listener.name.internal.plain.sasl.jaas.config": _PLAIN_BROKER_JAAS,
                    "sasl.mechanism.inter.broker.protocol": "PLAIN"})
    assert c.inter_broker_sasl("INTERNAL") == ("PLAIN", "broker", "s")


def test_security_inter_broker_protocol_names_the_listener():
    c = _cluster(**{"listeners": "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0",
                    "controller.listener.names": "", "security.inter.broker.protocol": "SSL"})
    assert c.inter_broker_listener_name == "SSL"


def test_a_broker_only_node_may_prefix_settings_with_the_controller_listener():
    # It opens no CONTROLLER listener but connects to the controllers' over SSL.
    c = BrokerConfig({"node.id": "5", "process.roles": "broker",
                      "controller.quorum.voters": "1@127.0.0.1:19093",
                      "listeners": "PLAINTEXT://127.0.0.1:0",
                      "controller.listener.names": "CONTROLLER",
                      "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:SSL",
                      "listener.name.controller.ssl.truststore.type": "PEM",
                      "listener.name.controller.ssl.truststore.location": "/x/ca.pem"})
    assert c.listener_value("CONTROLLER", "ssl.truststore.location") == "/x/ca.pem"


SASL_MAP = "PLAINTEXT:PLAINTEXT,INTERNAL:SASL_SSL,CONTROLLER:PLAINTEXT"


@pytest.mark.parametrize("extra,match", [
    ({"inter.broker.listener.name": "INTERNAL", "security.inter.broker.protocol": "SSL"},
     "Only one of inter.broker.listener.name and security.inter.broker.protocol"),
    ({"security.inter.broker.protocol": "SASL_SSL"}, "not in listeners"),
    ({"inter.broker.listener.name": "CONTROLLER"}, "is a controller listener"),
    # Kafka's default mechanism is GSSAPI, which kafkette does not do
    ({"listener.security.protocol.map": SASL_MAP, "inter.broker.listener.name": "INTERNAL",
      "sasl.enabled.mechanisms": "PLAIN",
      "listener.name.internal.plain.sasl.jaas.config": _PLAIN_BROKER_JAAS},
     "sasl.mechanism.inter.broker.protocol=GSSAPI"),
    # the peers do not serve the mechanism the broker would log in with
    ({"listener.security.protocol.map": SASL_MAP, "inter.broker.listener.name": "INTERNAL",
      "sasl.enabled.mechanisms": "SCRAM-SHA-512",
      "sasl.mechanism.inter.broker.protocol": "PLAIN"}, "is not enabled"),
    # a server-side JAAS entry without the client-side username / password
    ({"listener.security.protocol.map": SASL_MAP, "inter.broker.listener.name": "INTERNAL",
      "sasl.enabled.mechanisms": "PLAIN", "sasl.mechanism.inter.broker.protocol": "PLAIN",
      "listener.name.internal.plain.sasl.jaas.config":
          'org.apache.kafka.common.security.plain.PlainLoginModule required user_a="b";'},
     "username and password"),
    # a SASL controller listener: the same checks with sasl.mechanism.controller.protocol
    ({"listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT,"
                                        "CONTROLLER:SASL_SSL",
      "sasl.enabled.mechanisms": "PLAIN",
      "listener.name.controller.plain.sasl.jaas.config": _PLAIN_BROKER_JAAS},
     "sasl.mechanism.controller.protocol=GSSAPI"),
    # the Raft transport serves the controller listener at the voter address
    ({"listeners": "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:19999",
      "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:SSL"},
     "not this node's controller.quorum.voters address"),
])
def test_node_to_node_layouts_kafkette_cannot_serve_are_refused(extra, match):
    with pytest.raises(ConfigError, match=match):
        _cluster(**extra)


def test_a_controller_only_node_may_share_the_brokers_inter_broker_setting():
    # One settings file for every node: the controller opens no INTERNAL listener.
    c = BrokerConfig({"node.id": "3001", "process.roles": "controller",
                      "controller.quorum.voters": "3001@127.0.0.1:19093",
                      "listeners": "CONTROLLER://127.0.0.1:19093",
                      "controller.listener.names": "CONTROLLER",
                      "inter.broker.listener.name": "INTERNAL",
                      "listener.security.protocol.map": "INTERNAL:SSL,CONTROLLER:SSL",
                      "ssl.keystore.type": "PEM", "ssl.keystore.location": "/x/node.pem"})
    assert c.controller_listener_name == "CONTROLLER"
    with pytest.raises(ConfigError, match="inter.broker.listener.name 'INTERNAL' is not in"):
        BrokerConfig({"node.id": "1", "listeners": "PLAINTEXT://127.0.0.1:0",
                      "inter.broker.listener.name": "INTERNAL"})


def test_a_plaintext_controller_listener_away_from_the_voter_address_is_a_warning():
    c = _cluster(**{"listeners": "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:19999"})
    assert any("CONTROLLER://127.0.0.1:19999" in w and "not bound" in w for w in c.warnings)
    assert not any("not bound" in w for w in _cluster().warnings)


def test_a_sasl_controller_listener_logs_in_with_the_controller_mechanism():
    c = _cluster(**{"listener.security.protocol.map":
                    "PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:SASL_SSL",
                    "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
                    "listener.name.controller.plain.sasl.jaas.config": _PLAIN_BROKER_JAAS,
                    "sasl.mechanism.controller.protocol": "PLAIN"})
    assert c.controller_sasl("CONTROLLER") == ("PLAIN", "broker", "s")
