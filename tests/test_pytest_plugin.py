"""The pytest plugin (kafkette.pytest_plugin, registered by the pytest11 entry point):
run sample USER test suites with pytester and check that they pass.

The inner runs use runpytest_subprocess: they load the plugin through its entry point,
exactly as a user's `pytest` does, and keep their brokers and event loops out of this
process.
"""
from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(240)

# A user's test suite: kafka-python and confluent-kafka against kafkette_broker.
USER_SUITE = r'''
import time

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer, KafkaProducer, TopicPartition


def read_all_kafka_python(bootstrap, topic, n, partition=0):
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                      enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        tp = TopicPartition(topic, partition)
        c.assign([tp])
        c.seek_to_beginning(tp)
        got = []
        deadline = time.monotonic() + 20
        while len(got) < n and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=200).values():
                got += [r.value for r in recs]
        return got
    finally:
        c.close()


def produce_confluent(bootstrap, topic, values):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for v in values:
        p.produce(topic, v, partition=0)
    assert p.flush(20) == 0


def test_kafka_python_round_trip(kafkette_broker, kafkette_topic):
    p = KafkaProducer(bootstrap_servers=kafkette_broker.bootstrap_servers)
    for i in range(5):
        p.send(kafkette_topic, b"kp-%d" % i).get(timeout=10)
    p.close()
    assert read_all_kafka_python(kafkette_broker.bootstrap_servers, kafkette_topic, 5) == \
        [b"kp-%d" % i for i in range(5)]


def test_confluent_round_trip_with_a_group(kafkette_broker, kafkette_topic):
    produce_confluent(kafkette_broker.bootstrap_servers, kafkette_topic,
                      [b"ck-%d" % i for i in range(5)])
    c = Consumer({"bootstrap.servers": kafkette_broker.bootstrap_servers,
                  "group.id": "g-" + kafkette_topic, "auto.offset.reset": "earliest"})
    try:
        c.subscribe([kafkette_topic])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 5 and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                got.append(m.value())
        assert got == [b"ck-%d" % i for i in range(5)]
        c.commit(asynchronous=False)
    finally:
        c.close()


@pytest.mark.kafkette_topic(partitions=3)
def test_topic_marker(kafkette_broker, kafkette_topic):
    md = AdminClient({"bootstrap.servers": kafkette_broker.bootstrap_servers}).list_topics(
        kafkette_topic, timeout=10)
    assert len(md.topics[kafkette_topic].partitions) == 3


def test_restart_keeps_data(kafkette_broker):
    kafkette_broker.create_topic("durable", exist_ok=False)
    produce_confluent(kafkette_broker.bootstrap_servers, "durable", [b"before"])
    port = kafkette_broker.port
    kafkette_broker.restart()
    assert kafkette_broker.port == port
    produce_confluent(kafkette_broker.bootstrap_servers, "durable", [b"after"])
    assert read_all_kafka_python(kafkette_broker.bootstrap_servers, "durable", 2) == \
        [b"before", b"after"]
'''

# Records which broker (port) each test saw.
PORT_RECORDER = r'''
import os

def test_a(kafkette_broker):
    with open(os.environ["PORTS_FILE"], "a") as f:
        f.write("%d\n" % kafkette_broker.port)

def test_b(kafkette_broker):
    with open(os.environ["PORTS_FILE"], "a") as f:
        f.write("%d\n" % kafkette_broker.port)
'''


def test_user_suite_with_kafka_python_and_confluent(pytester):
    pytester.makepyfile(test_user=USER_SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "ignore")
    result.assert_outcomes(passed=4)


def test_user_suite_in_process_broker(pytester):
    pytester.makeini("[pytest]\nkafkette_broker_in_process = true\n")
    pytester.makepyfile(test_user=USER_SUITE, test_mode='''
def test_mode(kafkette_broker):
    assert kafkette_broker.in_process and kafkette_broker.pid is None
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "ignore")
    result.assert_outcomes(passed=5)


def _ports(pytester, monkeypatch, *args) -> list[int]:
    ports_file = pytester.path / "ports.txt"
    monkeypatch.setenv("PORTS_FILE", str(ports_file))
    pytester.makepyfile(test_one=PORT_RECORDER, test_two=PORT_RECORDER)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=4)
    return [int(x) for x in ports_file.read_text().split()]


def test_scope_default_is_session(pytester, monkeypatch):
    ports = _ports(pytester, monkeypatch)
    assert len(ports) == 4 and len(set(ports)) == 1


def test_scope_from_ini(pytester, monkeypatch):
    pytester.makeini("[pytest]\nkafkette_broker_scope = module\n")
    ports = _ports(pytester, monkeypatch)
    assert ports[0] == ports[1] and ports[2] == ports[3] and ports[0] != ports[2]


def test_scope_from_command_line_wins(pytester, monkeypatch):
    pytester.makeini("[pytest]\nkafkette_broker_scope = module\n")
    ports = _ports(pytester, monkeypatch, "--kafkette-scope=function")
    assert len(set(ports)) == 4


def test_bad_scope_is_a_usage_error(pytester):
    pytester.makeini("[pytest]\nkafkette_broker_scope = forever\n")
    pytester.makepyfile(test_x="def test_x(): pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*kafkette_broker_scope*forever*"])


def test_broker_config_ini(pytester):
    pytester.makeini("[pytest]\nkafkette_broker_config =\n    num.partitions = 4\n"
                     "    # a comment\n    log.retention.hours=48\n")
    pytester.makepyfile(test_cfg='''
def test_cfg(kafkette_broker):
    assert kafkette_broker.config["num.partitions"] == "4"
    assert kafkette_broker.config["group.initial.rebalance.delay.ms"] == 0  # test default
    assert kafkette_broker.create_topic("t", partitions=-1, replication_factor=-1
                                        ).num_partitions == 4
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_plugin_can_be_disabled(pytester):
    pytester.makepyfile(test_x="def test_x(kafkette_broker): pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:kafkette")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'kafkette_broker' not found*"])


SECURE_SUITE = r'''
from confluent_kafka import Producer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition


def test_secure_broker_with_both_clients(kafkette_secure_broker):
    kb = kafkette_secure_broker
    assert kb.client_config["security.protocol"] == "SASL_SSL"
    assert kb.client_config["sasl.mechanism"] == "SCRAM-SHA-512"
    kb.create_topic("secured")
    p = Producer({**kb.client_config, "linger.ms": 0})
    p.produce("secured", b"from-confluent", partition=0)
    assert p.flush(20) == 0
    kp = KafkaProducer(**kb.kafka_python_config())
    kp.send("secured", b"from-kafka-python", partition=0).get(20)
    kp.close()
    c = KafkaConsumer(**kb.kafka_python_config(), group_id=None, auto_offset_reset="earliest",
                      consumer_timeout_ms=15000)
    c.assign([TopicPartition("secured", 0)])
    got = []
    for m in c:
        got.append(m.value)
        if len(got) == 2:
            break
    c.close()
    assert got == [b"from-confluent", b"from-kafka-python"]


def test_wrong_password_is_refused(kafkette_secure_broker):
    from kafka.errors import KafkaError
    import pytest
    conf = dict(kafkette_secure_broker.kafka_python_config(), sasl_plain_password="wrong")
    with pytest.raises(KafkaError):
        KafkaProducer(**conf, max_block_ms=5000).send("secured", b"x").get(5)
'''


def test_user_suite_with_the_secure_broker_fixture(pytester):
    pytester.makepyfile(test_secure=SECURE_SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "ignore")
    result.assert_outcomes(passed=2)


def test_broker_security_ini(pytester):
    pytester.makeini("[pytest]\nkafkette_broker_security = SASL_PLAINTEXT\n"
                     "kafkette_broker_sasl_mechanism = PLAIN\n")
    pytester.makepyfile(test_sec='''
from kafka import KafkaProducer

def test_plain(kafkette_broker):
    assert kafkette_broker.client_config["sasl.mechanism"] == "PLAIN"
    assert kafkette_broker.ca_file is None
    kafkette_broker.create_topic("t")
    p = KafkaProducer(**kafkette_broker.kafka_python_config())
    p.send("t", b"v").get(20)
    p.close()
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "ignore")
    result.assert_outcomes(passed=1)
