"""A secured cluster in one line: ``EmbeddedCluster(security="SASL_SSL", users=...,
mechanism="SCRAM-SHA-512")`` (kafkette/embedded_cluster.py) and the pytest plugin's
``kafkette_cluster`` fixture with the ini option ``kafkette_cluster_security``.

The cluster runs with the authorizer on and no ACL for the nodes: their own traffic
(replication, Raft, registrations) runs as the cluster's super user over its own
listeners, so an RF3 acks=all topic keeps a full ISR; alice (a super user) produces
and consumes over SASL_SSL with SCRAM-SHA-512; bob, without ACLs, is refused.
"""
from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer

from itutil import unique_topic, wait_until

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(240)

AUTHZ = {"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
         "super.users": "User:alice"}
USERS = {"alice": "alice-secret", "bob": "bob-secret"}


def test_a_three_node_sasl_ssl_scram_cluster_from_the_one_liner(tmp_path):
    from kafkette.embedded_cluster import EmbeddedCluster
    with EmbeddedCluster(3, {**AUTHZ, "offsets.topic.replication.factor": 3},
                         security="SASL_SSL", users=USERS, mechanism="SCRAM-SHA-512",
                         log_dir=tmp_path / "logs") as kc:
        try:
            cfg = kc.client_config
            assert cfg["security.protocol"] == "SASL_SSL"
            assert cfg["sasl.mechanism"] == "SCRAM-SHA-512" and cfg["sasl.username"] == "alice"
            assert cfg["ssl.ca.location"] == kc.ca_file
            topic = unique_topic("sec3")
            kc.create_topic(topic, partitions=1, replication_factor=3,
                            config={"min.insync.replicas": 3})
            wait_until(lambda: (s := kc.partition_states(topic)) and len(s[0].isr) == 3,
                       30, message=f"{topic}: full ISR with the authorizer on")
            p = Producer({**cfg, "acks": "all", "enable.idempotence": True})
            for i in range(100):
                p.produce(topic, value=f"v{i}".encode())
            assert p.flush(30) == 0
            c = Consumer({**cfg, "group.id": unique_topic("g"), "auto.offset.reset": "earliest"})
            c.subscribe([topic])
            got: list[bytes] = []
            deadline = time.monotonic() + 60
            while len(got) < 100 and time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is not None and m.error() is None:
                    got.append(m.value())
            c.close()
            assert got == [f"v{i}".encode() for i in range(100)]

            # bob logs in (his SCRAM credential is on every broker) but holds no ACL.
            errors: list = []
            bob = Producer({**cfg, "sasl.username": "bob", "sasl.password": USERS["bob"],
                            "acks": "all", "message.timeout.ms": 10000})
            bob.produce(topic, value=b"no", on_delivery=lambda err, msg: errors.append(err))
            bob.flush(20)
            assert errors and errors[0] is not None
            assert errors[0].name() == "TOPIC_AUTHORIZATION_FAILED", errors[0]

            # A wrong password is refused at login.
            bad = Consumer({**cfg, "sasl.password": "wrong", "group.id": "x"})
            try:
                with pytest.raises(KafkaException):
                    bad.list_topics(timeout=10)
            finally:
                bad.close()
        except BaseException:
            print(kc.log_tails(60))
            raise


def test_security_and_listeners_together_are_refused():
    from kafkette.embedded_cluster import EmbeddedCluster
    with pytest.raises(ValueError, match="lays out the listeners"):
        EmbeddedCluster(1, security="SSL", listeners=lambda n: "")
    with pytest.raises(ValueError, match="set by EmbeddedCluster"):
        EmbeddedCluster(1, {"inter.broker.listener.name": "X"}, security="SASL_PLAINTEXT")


USER_SUITE = r'''
from confluent_kafka import Consumer, Producer


def test_secured_cluster(kafkette_cluster):
    kc = kafkette_cluster
    assert kc.client_config["security.protocol"] == "SASL_SSL"
    assert kc.client_config["sasl.mechanism"] == "PLAIN"
    kc.create_topic("events", partitions=1, replication_factor=2)
    p = Producer({**kc.client_config, "acks": "all"})
    p.produce("events", b"hello")
    assert p.flush(20) == 0
    c = Consumer({**kc.client_config, "group.id": "g", "auto.offset.reset": "earliest"})
    c.subscribe(["events"])
    for _ in range(60):
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            assert m.value() == b"hello"
            break
    else:
        raise AssertionError("nothing consumed")
    c.close()
'''


def test_the_kafkette_cluster_fixture_with_security_ini(pytester):
    pytester.makepyfile(test_user_cluster=USER_SUITE)
    pytester.makeini("[pytest]\nkafkette_cluster_brokers = 2\n"
                     "kafkette_cluster_security = SASL_SSL\n"
                     "kafkette_cluster_sasl_mechanism = PLAIN\n")
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_a_bad_cluster_security_ini_is_a_usage_error(pytester):
    pytester.makepyfile(test_x="def test_x(kafkette_cluster): pass\n")
    pytester.makeini("[pytest]\nkafkette_cluster_security = TLS\n")
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    assert "kafkette_cluster_security" in result.stdout.str() + result.stderr.str()
    assert result.ret != 0
