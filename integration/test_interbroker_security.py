"""A 3-node cluster whose node-to-node traffic is secured (broker/peer_security.py):

- inter-broker listener INTERNAL over SASL_SSL with PLAIN (the brokers log in as
  User:broker, a super user, with the authorizer on): replica fetches, transaction
  markers;
- controller listener CONTROLLER over SSL with mutual TLS (ssl.client.auth=required):
  Raft between the voters, registrations, heartbeats, AlterPartition, forwarding;
- the controller runs a forwarded request (an Envelope's wrapped principal, or a bare
  one) and broker heartbeats only for a sender with CLUSTER_ACTION (KIP-590): the brokers' certificate maps
  to User:broker, a super user; another certificate of the same CA is refused;
- clients on a PLAINTEXT listener, which Metadata answers with each broker's
  PLAINTEXT endpoint (not the first registered one, KIP-103).

confluent-kafka produces acks=all to an RF3 topic, the leader is killed, and every
record is read back from the new leader. Plaintext and certificate-less connections
to the secured ports fail their TLS handshake.
"""
from __future__ import annotations

import socket
import ssl
import time

import pytest
import trustme
from confluent_kafka import Consumer, Producer, TopicPartition as CkTopicPartition

from itutil import free_port, frame, request_header_v1, unique_topic, wait_for_close, wait_until

pytestmark = pytest.mark.timeout(240)

JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
        'username="broker" password="broker-secret" user_broker="broker-secret";')


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("ibpki")
    ca = trustme.CA()
    node = ca.issue_cert("localhost", "127.0.0.1", common_name="broker",
                         organization_name="kafkette", organization_unit_name="nodes")
    # Signed by the same CA, so the TLS handshake succeeds; its principal is no super user.
    intruder = ca.issue_cert("intruder", common_name="intruder",
                             organization_name="kafkette", organization_unit_name="nodes")
    paths = {"ca": d / "ca.pem", "node": d / "node.pem", "intruder": d / "intruder.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    node.private_key_and_cert_chain_pem.write_to_path(str(paths["node"]))
    intruder.private_key_and_cert_chain_pem.write_to_path(str(paths["intruder"]))
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, pki):
    from kafkette.embedded_cluster import EmbeddedCluster
    internal: dict[int, int] = {}

    def listeners(n) -> str:
        internal[n.node_id] = free_port()
        return (f"PLAINTEXT://127.0.0.1:{n.port},INTERNAL://127.0.0.1:{internal[n.node_id]},"
                f"CONTROLLER://127.0.0.1:{n.controller_port}")

    config = {
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,INTERNAL:SASL_SSL,CONTROLLER:SSL",
        "inter.broker.listener.name": "INTERNAL",
        "controller.listener.names": "CONTROLLER",
        "ssl.keystore.type": "PEM", "ssl.keystore.location": pki["node"],
        "ssl.truststore.type": "PEM", "ssl.truststore.location": pki["ca"],
        "listener.name.controller.ssl.client.auth": "required",
        # The nodes' certificate subject CN=broker,OU=nodes,O=kafkette is User:broker.
        "listener.name.controller.ssl.principal.mapping.rules": "RULE:^CN=([^,]*),.*$/$1/",
        "listener.name.internal.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.internal.plain.sasl.jaas.config": JAAS,
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        # The brokers' principal must be a super user (replica fetches need
        # CLUSTER_ACTION); the anonymous clients of this test may do everything else.
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:broker",
        "allow.everyone.if.no.acl.found": "true",
        "offsets.topic.replication.factor": 3,
        "replica.fetch.backoff.ms": 200,
    }
    logs = tmp_path_factory.mktemp("ib-logs")
    with EmbeddedCluster(3, config, log_dir=logs, listeners=listeners) as kc:
        kc.internal_ports = internal
        yield kc


@pytest.fixture(autouse=True)
def _node_logs_on_failure(request):
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed and "cluster" in request.fixturenames:
        cluster = request.getfixturevalue("cluster")
        print(f"\n{cluster!r}\n{cluster.log_tails(80)}")


def test_metadata_names_each_brokers_client_listener(cluster):
    md = cluster.metadata()
    ports = sorted(b.port for b in md.brokers)
    assert ports == sorted(n.port for n in cluster.brokers)


def test_rf3_acks_all_survives_the_leader_over_secured_replication(cluster):
    topic = unique_topic("ib-rf3")
    cluster.create_topic(topic, partitions=1, replication_factor=3,
                         config={"min.insync.replicas": 2})
    # Followers join the ISR only by fetching over SASL_SSL from the leader.
    wait_until(lambda: (s := cluster.partition_states(topic)) and len(s[0].isr) == 3,
               30, message=f"{topic}: full ISR over the INTERNAL listener")
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "acks": "all",
                  "enable.idempotence": True, "message.timeout.ms": 60000})
    n = 200
    for i in range(n):
        p.produce(topic, value=f"v{i}".encode())
    assert p.flush(60) == 0
    leader = cluster.leaders(topic)[0]
    cluster.node(leader).kill()
    wait_until(lambda: (l := cluster.leaders(topic).get(0, -1)) not in (-1, leader),
               30, message="a new leader from the ISR")
    new_leader = cluster.leaders(topic)[0]
    alive = ",".join(b.bootstrap_servers for b in cluster.brokers if b.node_id != leader)
    c = Consumer({"bootstrap.servers": alive, "group.id": unique_topic("g"),
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([CkTopicPartition(topic, 0, 0)])
    got: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.close()
    assert got == [f"v{i}".encode() for i in range(n)], f"new leader {new_leader}"
    cluster.node(leader).start()
    cluster.wait_ready(timeout=60)


def _api_versions_frame() -> bytes:
    return frame(request_header_v1(18, 0, 1, "plain-probe"))


@pytest.mark.parametrize("which", ["INTERNAL", "CONTROLLER"])
def test_plaintext_to_a_secured_node_port_is_refused(cluster, which):
    node = cluster.brokers[0]
    port = cluster.internal_ports[node.node_id] if which == "INTERNAL" else node.controller_port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(_api_versions_frame())
        closed, data, why = wait_for_close(s, 10)
    assert closed, why
    # No Kafka answer (a response would start with a 4-byte size and correlation id 1);
    # at most a TLS alert record (content type 21).
    assert not data or data[0] == 21, data[:16]


def test_controller_listener_wants_a_client_certificate(cluster, pki):
    node = cluster.brokers[0]
    ctx = ssl.create_default_context(cafile=pki["ca"])   # trusts the CA, has no cert
    with socket.create_connection(("127.0.0.1", node.controller_port), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                # TLS 1.3: the server's refusal of the missing certificate arrives
                # after the client's handshake completes, on the first read.
                s.sendall(_api_versions_frame())
                if not s.recv(4):
                    raise ConnectionError("closed")


def _tls_connection(cluster, pki, cert: str, port: int):
    from kafkette.client import KafkaConnection, run_sync
    from kafkette.client_security import ClientSecurity
    ctx = ssl.create_default_context(cafile=pki["ca"])
    ctx.load_cert_chain(pki[cert])
    return run_sync(KafkaConnection.connect("127.0.0.1", port,
                                            security=ClientSecurity("SSL", ctx)))


def test_forwarded_requests_need_cluster_action_of_their_sender(cluster, pki):
    import urllib.request
    from kafkette.client import request_once, run_sync
    from kafkette.protocol.framing import encode_request
    from kafkette.protocol.messages import (BrokerHeartbeatRequest, CreateAclsRequest,
                                            CreateTopicsRequest,
                                            DefaultPrincipalData, EnvelopeRequest)
    from kafkette.protocol.primitives import Writer
    # A cluster ACL, so that allow.everyone.if.no.acl.found no longer covers the
    # cluster: only the anonymous clients (ALL) and the super user may act on it.
    via = cluster.brokers[0]
    C = CreateAclsRequest.AclCreation
    resp = request_once(via.host, via.port, CreateAclsRequest(creations=[C(
        resource_type=4, resource_name="kafka-cluster", resource_pattern_type=3,
        principal="User:ANONYMOUS", host="*", operation=2, permission_type=3)]), 3)
    assert [r.error_code for r in resp.results] == [0], resp
    controller = cluster.node(cluster.controller_id())

    T = CreateTopicsRequest.CreatableTopic
    topic = unique_topic("ib-intruder")
    inner = CreateTopicsRequest(topics=[T(name=topic, num_partitions=1, replication_factor=1,
                                          assignments=[], configs=[])], timeout_ms=5000)
    w = Writer()
    w.int16(0)
    DefaultPrincipalData(type="User", name="broker", token_authenticated=False).write(w, 0)
    envelope = EnvelopeRequest(
        request_data=b"".join(bytes(c) for c in encode_request(inner, 5, 0, "x"))[4:],
        request_principal=w.getvalue(), client_host_address=bytes([127, 0, 0, 1]))
    CLUSTER_AUTHORIZATION_FAILED = 31
    conn = _tls_connection(cluster, pki, "intruder", controller.controller_port)
    try:
        assert run_sync(conn.send(envelope, 0)).error_code == CLUSTER_AUTHORIZATION_FAILED
        bare = run_sync(conn.send(inner, 5))
        assert [t.error_code for t in bare.topics] == [CLUSTER_AUTHORIZATION_FAILED]
        # Nor may it heartbeat for a broker (it could ask to shut one down).
        hb = run_sync(conn.send(BrokerHeartbeatRequest(
            broker_id=via.node_id, broker_epoch=0, current_metadata_offset=0,
            want_fence=False, want_shut_down=True, offline_log_dirs=[]), 1))
        assert hb.error_code == CLUSTER_AUTHORIZATION_FAILED
    finally:
        conn.close()
    # The same Envelope from a node's certificate (User:broker) is run.
    conn = _tls_connection(cluster, pki, "node", controller.controller_port)
    try:
        assert run_sync(conn.send(envelope, 0)).error_code == 0
    finally:
        conn.close()
    wait_until(lambda: topic in {t.name for t in cluster.metadata([topic]).topics
                                 if t.error_code == 0}, 20, message=f"{topic} created")
    # Each denial is counted by resource type in /metrics.
    with urllib.request.urlopen(f"http://127.0.0.1:{controller._admin_port}/metrics",
                                timeout=5) as r:
        text = r.read().decode()
    line = next(l for l in text.splitlines()
                if l.startswith('kafkette_authorizer_denied_total{resource_type="CLUSTER"}'))
    assert float(line.split()[-1]) >= 3


def test_raft_apis_need_cluster_action_of_their_sender(cluster, pki):
    """Kafka's ControllerApis: Vote, Fetch (KRaft's) ... need CLUSTER_ACTION on the
    cluster, DescribeQuorum DESCRIBE. A certificate of the cluster's CA that maps to
    User:intruder (no super user, no ACL) is refused; its Vote of a far newer epoch
    never reaches the quorum."""
    from kafkette.client import request_once, run_sync
    from kafkette.controller.raft import messages as m
    from kafkette.controller.raft import transport as T
    from kafkette.protocol.messages import CreateAclsRequest, DescribeQuorumRequest
    via = cluster.brokers[0]
    C = CreateAclsRequest.AclCreation
    # An ACL on the cluster, so that allow.everyone.if.no.acl.found no longer covers it.
    resp = request_once(via.host, via.port, CreateAclsRequest(creations=[C(
        resource_type=4, resource_name="kafka-cluster", resource_pattern_type=3,
        principal="User:ANONYMOUS", host="*", operation=2, permission_type=3)]), 3)
    assert [r.error_code for r in resp.results] == [0], resp
    D = DescribeQuorumRequest.TopicData
    describe = DescribeQuorumRequest(topics=[D(topic_name="__cluster_metadata", partitions=[
        D.PartitionData(partition_index=0)])])
    node = cluster.brokers[1]
    CLUSTER_AUTHORIZATION_FAILED = 31
    conn = _tls_connection(cluster, pki, "node", node.controller_port)
    try:
        before = run_sync(conn.send(describe, 2))
        assert before.error_code == 0, before
        epoch = before.topics[0].partitions[0].leader_epoch
    finally:
        conn.close()
    vote, vote_v, _ = T.to_wire(m.VoteRequest(1, epoch + 1000, 3, epoch, 1 << 40, False),
                                node.node_id)
    fetch, fetch_v, _ = T.to_wire(m.FetchRequest(1, epoch, 3, 0, 0, 0), node.node_id)
    conn = _tls_connection(cluster, pki, "intruder", node.controller_port)
    try:
        for req, version in ((vote, vote_v), (fetch, fetch_v), (describe, 2)):
            got = run_sync(conn.send(req, version))
            assert got.error_code == CLUSTER_AUTHORIZATION_FAILED, got
    finally:
        conn.close()
    conn = _tls_connection(cluster, pki, "node", node.controller_port)
    try:
        after = run_sync(conn.send(describe, 2))
        assert after.topics[0].partitions[0].leader_epoch == epoch, after
    finally:
        conn.close()


def test_dedicated_controllers_over_sasl_ssl(tmp_path, pki):
    """3 broker-only nodes and 3 controller-only voters: the voters' Raft traffic, the
    brokers' metadata fetching (as observers), registrations and heartbeats all run
    over the SASL_SSL (PLAIN) CONTROLLER listener; replication over mutual TLS. With
    the authorizer on, the brokers' CLUSTER_ACTION comes from User:broker (SASL) on the
    controller listener and from their certificate subject on the inter-broker one."""
    from kafkette.client_security import ClientSecurity
    from kafkette.embedded_cluster import EmbeddedCluster

    def listeners(n) -> str:
        if n.roles == "controller":
            return f"CONTROLLER://127.0.0.1:{n.controller_port}"
        return f"PLAINTEXT://127.0.0.1:{n.port},INTERNAL://127.0.0.1:{free_port()}"

    config = {
        "listener.security.protocol.map":
            "PLAINTEXT:PLAINTEXT,INTERNAL:SSL,CONTROLLER:SASL_SSL",
        "inter.broker.listener.name": "INTERNAL",
        "controller.listener.names": "CONTROLLER",
        "ssl.keystore.type": "PEM", "ssl.keystore.location": pki["node"],
        "ssl.truststore.type": "PEM", "ssl.truststore.location": pki["ca"],
        "listener.name.internal.ssl.client.auth": "required",
        "listener.name.internal.ssl.principal.mapping.rules": "RULE:^CN=([^,]*),.*$/$1/",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": JAAS,
        "sasl.mechanism.controller.protocol": "PLAIN",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:broker",
        "allow.everyone.if.no.acl.found": "true",
        "replica.fetch.backoff.ms": 200,
    }
    ctx = ssl.create_default_context(cafile=pki["ca"])
    with EmbeddedCluster(3, config, controllers=3, log_dir=tmp_path / "logs",
                         listeners=listeners,
                         controller_security=ClientSecurity(
                             "SASL_SSL", ctx, "PLAIN", "broker", "broker-secret")) as kc:
        try:
            assert kc.describe_quorum().leader_id in {n.node_id for n in kc.controllers}
            topic = unique_topic("ib-dedicated")
            kc.create_topic(topic, partitions=1, replication_factor=3,
                            config={"min.insync.replicas": 2})
            wait_until(lambda: (s := kc.partition_states(topic)) and len(s[0].isr) == 3,
                       30, message=f"{topic}: full ISR over SSL")
            p = Producer({"bootstrap.servers": kc.bootstrap_servers, "acks": "all"})
            for i in range(50):
                p.produce(topic, value=f"d{i}".encode())
            assert p.flush(30) == 0
            c = Consumer({"bootstrap.servers": kc.bootstrap_servers, "group.id": unique_topic("g"),
                          "auto.offset.reset": "earliest"})
            c.assign([CkTopicPartition(topic, 0, 0)])
            got: list[bytes] = []
            deadline = time.monotonic() + 30
            while len(got) < 50 and time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is not None and m.error() is None:
                    got.append(m.value())
            c.close()
            assert got == [f"d{i}".encode() for i in range(50)]
            with socket.create_connection(("127.0.0.1", kc.controllers[0].controller_port),
                                          timeout=5) as s:
                s.sendall(_api_versions_frame())
                closed, data, why = wait_for_close(s, 10)
            assert closed and (not data or data[0] == 21), (why, data[:16])
        except BaseException:
            print(kc.log_tails(60))
            raise


def test_sasl_controller_listener_closes_a_client_that_never_authenticates(tmp_path):
    """As the client listeners do: a connection to a SASL controller listener that has
    not authenticated within connections.max.idle.ms is closed, with a log line."""
    from kafkette.embedded_cluster import EmbeddedCluster
    config = {
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": JAAS,
        "sasl.mechanism.controller.protocol": "PLAIN",
        "connections.max.idle.ms": 700,
    }
    with EmbeddedCluster(1, config, log_dir=tmp_path / "logs", listeners=lambda n: (
            f"PLAINTEXT://127.0.0.1:{n.port},CONTROLLER://127.0.0.1:{n.controller_port}")) as kc:
        node = kc.brokers[0]
        with socket.create_connection(("127.0.0.1", node.controller_port), timeout=5) as s:
            t0 = time.monotonic()
            closed, data, why = wait_for_close(s, 10)
            elapsed = time.monotonic() - t0
        assert closed and data == b"", (why, data[:16])
        assert 0.5 <= elapsed < 5, elapsed
        assert "not authenticated within connections.max.idle.ms" in node.log_path.read_text()
