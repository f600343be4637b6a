"""ACLs with live clients on real broker processes (`python -m kafkette serve` with
authorizer.class.name=StandardAuthorizer). Without SASL every client is
User:ANONYMOUS, so ACLs are granted to and denied from User:ANONYMOUS / User:*.

- single node, confluent-kafka's AdminClient: the first ACLs are created while
  allow.everyone.if.no.acl.found=true (nothing else can bootstrap them without SASL
  super users), then the broker restarts with it false: the ACLs are still there (they
  are metadata records); a producer without WRITE fails with
  TOPIC_AUTHORIZATION_FAILED and succeeds once WRITE is granted; a consumer without
  READ on its group gets GROUP_AUTHORIZATION_FAILED, and consumes once it is granted;
  DescribeAcls and DeleteAcls round-trip; kafka-python's KafkaAdminClient lists them;
- 3-node cluster: an ACL created through a node that is not the active controller
  (forwarded in an Envelope with the client's principal, KIP-590) is enforced by
  all three nodes.
Every wait is a condition with a deadline.
"""
from __future__ import annotations

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient, NewTopic,
    ResourcePatternType, ResourceType,
)

from itutil import unique_topic, wait_until

pytestmark = pytest.mark.timeout(180)

AUTHZ = {"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer"}
ANON = "User:ANONYMOUS"


def binding(rt, name, op, perm=AclPermissionType.ALLOW, principal=ANON,
            pattern=ResourcePatternType.LITERAL):
    return AclBinding(rt, name, pattern, principal, "*", op, perm)


def create_acls(admin, bindings):
    for f in admin.create_acls(bindings, request_timeout=20).values():
        f.result(timeout=30)


def produce_error(bootstrap, topic):
    """The delivery error of one message (None on success)."""
    p = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 8000,
                  "topic.metadata.refresh.interval.ms": 500})
    got = []
    p.produce(topic, b"v", on_delivery=lambda err, msg: got.append(err))
    p.flush(20)
    assert got, "no delivery report"
    return got[0]


def test_single_node_acls_with_confluent_kafka(make_broker):
    b = make_broker({**AUTHZ, "allow.everyone.if.no.acl.found": "true"})
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    # Bootstrap: the cluster ACLs that let ANONYMOUS manage ACLs and create topics.
    create_acls(admin, [binding(ResourceType.BROKER, "kafka-cluster", op)
                        for op in (AclOperation.ALTER, AclOperation.DESCRIBE,
                                   AclOperation.CREATE)])
    b.stop()
    b.config["allow.everyone.if.no.acl.found"] = "false"
    b.start()
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    topic = unique_topic("acl")
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)

    # No ACL on the topic: denied.
    err = produce_error(b.bootstrap, topic)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err

    create_acls(admin, [binding(ResourceType.TOPIC, topic, AclOperation.WRITE)])
    assert produce_error(b.bootstrap, topic) is None

    # READ on the topic but nothing on the group: the consumer fails on its group.
    create_acls(admin, [binding(ResourceType.TOPIC, topic, AclOperation.READ)])
    group = unique_topic("g")

    def consume_errors():
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                      "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
        c.subscribe([topic])
        try:
            errors, values = [], []

            def seen():
                m = c.poll(0.5)
                if m is not None:
                    (errors if m.error() else values).append(m.error() or m.value())
                return errors or values
            wait_until(seen, timeout=30, message="a message or an error")
            return [e.code() for e in errors], values
        finally:
            c.close()
    errors, _ = consume_errors()
    assert KafkaError.GROUP_AUTHORIZATION_FAILED in errors, errors
    create_acls(admin, [binding(ResourceType.GROUP, group, AclOperation.READ)])
    errors, values = consume_errors()
    assert values == [b"v"] and not errors

    # DescribeAcls and DeleteAcls.
    f = AclBindingFilter(ResourceType.TOPIC, topic, ResourcePatternType.ANY, None, None,
                         AclOperation.ANY, AclPermissionType.ANY)
    described = admin.describe_acls(f, request_timeout=20).result(timeout=30)
    assert sorted(a.operation for a in described) == sorted([AclOperation.READ,
                                                             AclOperation.WRITE])
    deleted = admin.delete_acls([f], request_timeout=20)[f].result(timeout=30)
    assert len(deleted) == 2
    err = produce_error(b.bootstrap, topic)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err

    # kafka-python's admin client reads the same ACLs.
    from kafka.admin import ACLFilter, KafkaAdminClient, ResourcePatternFilter
    from kafka.admin import ACLOperation, ACLPermissionType, ACLResourcePatternType
    from kafka.admin import ResourceType as KpResourceType
    kp = KafkaAdminClient(bootstrap_servers=b.bootstrap)
    try:
        acls, error = kp.describe_acls(ACLFilter(
            principal=None, host="*", operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(KpResourceType.CLUSTER, None,
                                                   ACLResourcePatternType.ANY)))
        assert sorted(a.operation.name for a in acls) == ["ALTER", "CREATE", "DESCRIBE"]
    finally:
        kp.close()


def test_acls_on_a_three_node_cluster_are_enforced_by_every_node(tmp_path):
    from kafkette.client import request_once
    from kafkette.embedded_cluster import EmbeddedCluster
    from kafkette.protocol.messages import CreateAclsRequest, ProduceRequest
    from kafkette.protocol.records import build_batch

    # allow.everyone.if.no.acl.found=true: the nodes replicate as ANONYMOUS (no SASL),
    # which needs CLUSTER_ACTION; with no ACL on the cluster, everyone has it.
    with EmbeddedCluster(3, config={**AUTHZ, "allow.everyone.if.no.acl.found": "true"},
                         log_dir=tmp_path / "logs") as kc:
        topic = unique_topic("acl3")
        kc.create_topic(topic, partitions=1, replication_factor=3)
        _, controller = kc.view()
        TD = ProduceRequest.TopicProduceData

        def produce_code(node):
            req = ProduceRequest(transactional_id=None, acks=1, timeout_ms=5000, topic_data=[
                TD(name=topic, partition_data=[TD.PartitionProduceData(
                    index=0, records=build_batch([(b"k", b"v", [])], timestamp_ms=1000))])])
            resp = request_once(node.host, node.port, req, 9)
            return resp.responses[0].partition_responses[0].error_code

        TOPIC_AUTHORIZATION_FAILED = 29
        assert all(produce_code(n) != TOPIC_AUTHORIZATION_FAILED for n in kc.brokers)
        via = next(n for n in kc.brokers if n.node_id != controller)
        C = CreateAclsRequest.AclCreation
        resp = request_once(via.host, via.port, CreateAclsRequest(creations=[C(
            resource_type=2, resource_name=topic, resource_pattern_type=3, principal="User:*",
            host="*", operation=4, permission_type=2)]), 3)   # DENY WRITE to everyone
        assert [r.error_code for r in resp.results] == [0], resp
        for n in kc.brokers:
            wait_until(lambda: produce_code(n) == TOPIC_AUTHORIZATION_FAILED, timeout=20,
                       message=f"node {n.node_id} enforcing the DENY")

        # The forwarded request is authorized as its client: once the cluster has ACLs
        # (CLUSTER_ACTION for the nodes' own ANONYMOUS replication, ALTER for
        # User:admin only), ANONYMOUS may no longer create ACLs through any node.
        cluster_acl = [C(resource_type=4, resource_name="kafka-cluster",
                         resource_pattern_type=3, principal=p, host="*", operation=op,
                         permission_type=3)
                       for p, op in (("User:ANONYMOUS", 9), ("User:admin", 7))]
        resp = request_once(via.host, via.port, CreateAclsRequest(creations=cluster_acl), 3)
        assert [r.error_code for r in resp.results] == [0, 0], resp
        CLUSTER_AUTHORIZATION_FAILED = 31
        for n in kc.brokers:
            resp = request_once(n.host, n.port, CreateAclsRequest(creations=cluster_acl[:1]), 3)
            assert [r.error_code for r in resp.results] == [CLUSTER_AUTHORIZATION_FAILED], \
                (n.node_id, resp)
