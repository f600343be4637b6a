"""ACLs through the dispatcher, with principals set as the authentication layer would
(`Dispatcher.handle(..., principal=...)`): CreateAcls (30), DescribeAcls (29),
DeleteAcls (31), and the authorization each handler does, as Kafka's KafkaApis."""
from __future__ import annotations

import asyncio
import inspect

import pytest

from handler_harness import (  # noqa: F401
    create_topic, decode_response, encode_request, fetch_request, make_broker, produce_request,
)
from kafkette.controller.acls import (
    ALL, ALLOW, ALTER, CLUSTER, CLUSTER_ACTION, CREATE, DELETE, DENY, DESCRIBE,
    IDEMPOTENT_WRITE, LITERAL, MATCH, PREFIXED, READ, TOPIC, GROUP, TRANSACTIONAL_ID, WRITE,
)
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import (
    CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest, MetadataRequest,
)
from kafkette.protocol.records import build_batch

ADMIN, ALICE, BOB = "User:admin", "User:alice", "User:bob"
AUTHZ = {"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
         "super.users": ADMIN}
C = CreateAclsRequest.AclCreation
F = DeleteAclsRequest.DeleteAclsFilter


def call_as(broker, principal, request, version, host="127.0.0.1"):
    frame, corr = encode_request(request, version)
    result = broker.dispatcher.handle(frame, client_host=host, principal=principal)
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    if result is None:
        return None
    return decode_response(result, request.API_KEY, version, corr)


async def _await(a):
    return await a


def grant(broker, *creations, principal=ADMIN, version=3):
    resp = call_as(broker, principal, CreateAclsRequest(creations=list(creations)), version)
    assert [r.error_code for r in resp.results] == [0] * len(creations), resp
    return resp


def acl(rt, name, principal, op, perm=ALLOW, pattern=LITERAL, host="*"):
    return C(resource_type=rt, resource_name=name, resource_pattern_type=pattern,
             principal=principal, host=host, operation=op, permission_type=perm)


def describe(broker, principal=ADMIN, version=3, **kw):
    f = dict(resource_type_filter=1, resource_name_filter=None, pattern_type_filter=1,
             principal_filter=None, host_filter=None, operation=1, permission_type=1)
    f.update(kw)
    return call_as(broker, principal, DescribeAclsRequest(**f), version)


def batch(n=1):
    return build_batch([(b"k", b"v%d" % i, []) for i in range(n)], timestamp_ms=1000)


@pytest.fixture
def abroker(make_broker):
    b = make_broker(AUTHZ)
    from kafkette.protocol.messages import CreateTopicsRequest
    T = CreateTopicsRequest.CreatableTopic
    for name in ("t", "u"):
        resp = call_as(b, ADMIN, CreateTopicsRequest(topics=[T(
            name=name, num_partitions=1, replication_factor=1, assignments=[], configs=[])],
            timeout_ms=5000), 7)
        assert resp.topics[0].error_code == 0
    return b


# -- CreateAcls / DescribeAcls / DeleteAcls -----------------------------------------------

@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_create_describe_delete_round_trip(abroker, version):
    grant(abroker, acl(TOPIC, "t", ALICE, READ), acl(GROUP, "g", ALICE, READ), version=version)
    # Creating the same ACL again is a no-op, as Kafka.
    grant(abroker, acl(TOPIC, "t", ALICE, READ), version=version)
    resp = describe(abroker, version=version, resource_type_filter=TOPIC,
                    pattern_type_filter=LITERAL if version == 0 else 1)
    assert resp.error_code == 0
    assert [(r.resource_type, r.resource_name, [(a.principal, a.host, a.operation,
                                                 a.permission_type) for a in r.acls])
            for r in resp.resources] == [(TOPIC, "t", [(ALICE, "*", READ, ALLOW)])]
    assert len(abroker.image.acls) == 2
    resp = call_as(abroker, ADMIN, DeleteAclsRequest(filters=[
        F(resource_type_filter=TOPIC, resource_name_filter="t", pattern_type_filter=LITERAL,
          principal_filter=None, host_filter=None, operation=1, permission_type=1)]), version)
    (fr,) = resp.filter_results
    assert fr.error_code == 0
    assert [(m.resource_name, m.principal, m.operation) for m in fr.matching_acls] == [("t", ALICE, READ)]
    assert len(abroker.image.acls) == 1


def test_create_refuses_invalid_bindings_one_by_one(abroker):
    resp = call_as(abroker, ADMIN, CreateAclsRequest(creations=[
        acl(TOPIC, "t", ALICE, READ), acl(TOPIC, "t", "alice", READ),
        acl(CLUSTER, "c", ALICE, ALTER), acl(TOPIC, "t", ALICE, READ, pattern=MATCH)]), 3)
    assert [r.error_code for r in resp.results] == [0] + [ErrorCode.INVALID_REQUEST] * 3
    assert len(abroker.image.acls) == 1


def test_acl_apis_need_cluster_alter_and_describe(abroker):
    resp = call_as(abroker, ALICE, CreateAclsRequest(creations=[acl(TOPIC, "t", ALICE, ALL)]), 3)
    assert [r.error_code for r in resp.results] == [ErrorCode.CLUSTER_AUTHORIZATION_FAILED]
    assert describe(abroker, ALICE).error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    resp = call_as(abroker, ALICE, DeleteAclsRequest(filters=[
        F(resource_type_filter=1, resource_name_filter=None, pattern_type_filter=1,
          principal_filter=None, host_filter=None, operation=1, permission_type=1)]), 3)
    assert resp.filter_results[0].error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    grant(abroker, acl(CLUSTER, "kafka-cluster", ALICE, ALTER))
    # ALTER implies DESCRIBE.
    assert describe(abroker, ALICE).error_code == 0
    grant(abroker, acl(TOPIC, "t", BOB, READ), principal=ALICE)


def test_describe_match_filter(abroker):
    grant(abroker, acl(TOPIC, "orders", ALICE, READ), acl(TOPIC, "ord", BOB, WRITE, pattern=PREFIXED),
          acl(TOPIC, "*", ALICE, DESCRIBE), acl(TOPIC, "other", ALICE, READ))
    resp = describe(abroker, resource_type_filter=TOPIC, resource_name_filter="orders",
                    pattern_type_filter=MATCH)
    assert sorted((r.resource_name, r.pattern_type) for r in resp.resources) == [
        ("*", LITERAL), ("ord", PREFIXED), ("orders", LITERAL)]
    assert describe(abroker, pattern_type_filter=0).error_code == ErrorCode.INVALID_REQUEST


def test_without_an_authorizer_acl_apis_say_security_disabled(make_broker):
    b = make_broker()
    resp = call_as(b, ALICE, CreateAclsRequest(creations=[acl(TOPIC, "t", ALICE, READ)]), 3)
    assert resp.results[0].error_code == ErrorCode.SECURITY_DISABLED
    assert describe(b).error_code == ErrorCode.SECURITY_DISABLED


def test_acls_survive_a_restart(make_broker):
    b = make_broker(AUTHZ)
    grant(b, acl(TOPIC, "t", ALICE, WRITE))
    make_broker.close(b)
    b = make_broker(AUTHZ)
    resp = describe(b)
    assert [(r.resource_name, r.acls[0].principal) for r in resp.resources] == [("t", ALICE)]


# -- Produce / Fetch / Metadata ---------------------------------------------------------------

def _produce(b, principal, topic="t", version=9, txn=None):
    req = produce_request(topic, {0: batch()})
    req.transactional_id = txn
    resp = call_as(b, principal, req, version)
    return resp.responses[0].partition_responses[0].error_code


def test_produce_needs_write_on_the_topic(abroker):
    assert _produce(abroker, ALICE) == ErrorCode.TOPIC_AUTHORIZATION_FAILED
    grant(abroker, acl(TOPIC, "t", ALICE, WRITE))
    assert _produce(abroker, ALICE) == 0
    assert _produce(abroker, BOB) == ErrorCode.TOPIC_AUTHORIZATION_FAILED
    assert _produce(abroker, ADMIN) == 0
    # A DENY from a matching prefix wins.
    grant(abroker, acl(TOPIC, "t", ALICE, WRITE, DENY, pattern=PREFIXED))
    assert _produce(abroker, ALICE) == ErrorCode.TOPIC_AUTHORIZATION_FAILED


def test_denials_are_counted_by_resource_type_in_metrics(abroker):
    from prometheus_client import generate_latest

    def denied(resource_type):
        text = generate_latest(abroker.metrics.registry).decode()
        prefix = f'kafkette_authorizer_denied_total{{resource_type="{resource_type}"}}'
        return next((float(l.split()[-1]) for l in text.splitlines()
                     if l.startswith(prefix)), 0.0)
    assert denied("TOPIC") == 0
    _produce(abroker, ALICE)
    _produce(abroker, ALICE)
    assert denied("TOPIC") == 2
    grant(abroker, acl(TOPIC, "t", ALICE, WRITE))
    assert _produce(abroker, ALICE) == 0 and denied("TOPIC") == 2
    _produce(abroker, ALICE, txn="tx")
    assert denied("TRANSACTIONAL_ID") == 1


def test_produce_one_topic_denied_the_other_served(abroker):
    grant(abroker, acl(TOPIC, "u", ALICE, WRITE))
    from kafkette.protocol.messages import ProduceRequest
    TD = ProduceRequest.TopicProduceData
    PD = TD.PartitionProduceData
    req = ProduceRequest(transactional_id=None, acks=1, timeout_ms=5000, topic_data=[
        TD(name="t", partition_data=[PD(index=0, records=batch())]),
        TD(name="u", partition_data=[PD(index=0, records=batch())])])
    resp = call_as(abroker, ALICE, req, 9)
    assert [(r.name, r.partition_responses[0].error_code) for r in resp.responses] == [
        ("t", ErrorCode.TOPIC_AUTHORIZATION_FAILED), ("u", 0)]


def test_transactional_produce_needs_write_on_the_transactional_id(abroker):
    grant(abroker, acl(TOPIC, "t", ALICE, WRITE))
    assert _produce(abroker, ALICE, txn="tx") == ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


def test_fetch_needs_read_and_followers_cluster_action(abroker):
    def fetch(principal, replica_id=-1):
        req = fetch_request("t", {0: 0})
        req.replica_id = replica_id
        return call_as(abroker, principal, req, 12).responses[0].partitions[0].error_code
    assert fetch(ALICE) == ErrorCode.TOPIC_AUTHORIZATION_FAILED
    grant(abroker, acl(TOPIC, "t", ALICE, READ))
    assert fetch(ALICE) == 0
    assert fetch(ALICE, replica_id=7) == ErrorCode.TOPIC_AUTHORIZATION_FAILED
    grant(abroker, acl(CLUSTER, "kafka-cluster", BOB, CLUSTER_ACTION))
    assert fetch(BOB, replica_id=7) != ErrorCode.TOPIC_AUTHORIZATION_FAILED


def test_metadata_hides_topics_and_fills_authorized_operations(abroker):
    T = MetadataRequest.MetadataRequestTopic
    grant(abroker, acl(TOPIC, "t", ALICE, READ))
    resp = call_as(abroker, ALICE, MetadataRequest(
        topics=None, allow_auto_topic_creation=False,
        include_cluster_authorized_operations=True, include_topic_authorized_operations=True), 10)
    assert [t.name for t in resp.topics] == ["t"]
    assert resp.topics[0].topic_authorized_operations == (1 << READ) | (1 << DESCRIBE)
    assert resp.cluster_authorized_operations == 0
    resp = call_as(abroker, ALICE, MetadataRequest(
        topics=[T(name="u"), T(name="nope")], allow_auto_topic_creation=False), 12)
    assert [(t.name, t.error_code) for t in resp.topics] == [
        ("u", ErrorCode.TOPIC_AUTHORIZATION_FAILED), ("nope", ErrorCode.TOPIC_AUTHORIZATION_FAILED)]


def test_metadata_auto_creation_needs_create(abroker):
    T = MetadataRequest.MetadataRequestTopic
    grant(abroker, acl(TOPIC, "new", ALICE, DESCRIBE))

    def ask():
        return call_as(abroker, ALICE, MetadataRequest(
            topics=[T(name="new")], allow_auto_topic_creation=True), 12).topics[0]
    assert ask().error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED
    assert "new" not in abroker.image.topics
    grant(abroker, acl(CLUSTER, "kafka-cluster", ALICE, CREATE))
    assert ask().error_code == 0
    assert "new" in abroker.image.topics


def test_anonymous_is_a_principal_like_any_other(abroker):
    assert _produce(abroker, "User:ANONYMOUS") == ErrorCode.TOPIC_AUTHORIZATION_FAILED
    grant(abroker, acl(TOPIC, "t", "User:*", WRITE))
    assert _produce(abroker, "User:ANONYMOUS") == 0


def test_allow_everyone_if_no_acl_found(make_broker):
    b = make_broker({**AUTHZ, "allow.everyone.if.no.acl.found": "true"})
    from handler_harness import call
    create_topic(b, "t")   # as User:ANONYMOUS: nothing names the cluster
    assert _produce(b, ALICE) == 0
    grant(b, acl(TOPIC, "t", BOB, WRITE))
    assert _produce(b, ALICE) == ErrorCode.TOPIC_AUTHORIZATION_FAILED
    assert call is not None


def test_no_authorizer_allows_everything(make_broker):
    b = make_broker()
    create_topic(b, "t")
    assert _produce(b, ALICE) == 0


# -- groups ----------------------------------------------------------------------------

def _join(b, principal, group="g"):
    from kafkette.protocol.messages import JoinGroupRequest
    P = JoinGroupRequest.JoinGroupRequestProtocol
    return call_as(b, principal, JoinGroupRequest(
        group_id=group, session_timeout_ms=10000, rebalance_timeout_ms=10000, member_id="",
        group_instance_id=None, protocol_type="consumer",
        protocols=[P(name="range", metadata=b"")]), 5)


def test_group_apis_need_read_describe_delete_on_the_group(make_broker):
    from kafkette.protocol.messages import (
        DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, HeartbeatRequest,
        ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest,
    )
    b = make_broker({**AUTHZ, "group.initial.rebalance.delay.ms": "0",
                     "offsets.topic.num.partitions": "1"})
    create_topic_as(b, "t")

    def find(principal, key="g", key_type=0):
        return call_as(b, principal, FindCoordinatorRequest(
            key_type=key_type, coordinator_keys=[key]), 4).coordinators[0].error_code
    assert find(ALICE) == ErrorCode.GROUP_AUTHORIZATION_FAILED
    assert find(ALICE, "tx", 1) == ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    assert _join(b, ALICE).error_code == ErrorCode.GROUP_AUTHORIZATION_FAILED
    hb = call_as(b, ALICE, HeartbeatRequest(group_id="g", generation_id=1, member_id="m"), 4)
    assert hb.error_code == ErrorCode.GROUP_AUTHORIZATION_FAILED

    OT = OffsetCommitRequest.OffsetCommitRequestTopic
    OP = OT.OffsetCommitRequestPartition

    def commit(principal):
        resp = call_as(b, principal, OffsetCommitRequest(
            group_id="g", generation_id_or_member_epoch=-1, member_id="",
            group_instance_id=None, topics=[OT(name="t", partitions=[
                OP(partition_index=0, committed_offset=5, committed_metadata="")])]), 8)
        return resp.topics[0].partitions[0].error_code
    assert commit(ALICE) == ErrorCode.GROUP_AUTHORIZATION_FAILED
    grant(b, acl(GROUP, "g", ALICE, READ))
    assert find(ALICE) == 0        # READ implies DESCRIBE
    assert commit(ALICE) == ErrorCode.TOPIC_AUTHORIZATION_FAILED
    grant(b, acl(TOPIC, "t", ALICE, READ))
    assert commit(ALICE) == 0

    FT = OffsetFetchRequest.OffsetFetchRequestTopic

    def fetch_offsets(principal, topics):
        resp = call_as(b, principal, OffsetFetchRequest(group_id="g", topics=topics), 7)
        return resp.error_code, [(t.name, [(p.committed_offset, p.error_code)
                                           for p in t.partitions]) for t in resp.topics]
    assert fetch_offsets(BOB, None) == (ErrorCode.GROUP_AUTHORIZATION_FAILED, [])
    assert fetch_offsets(ALICE, [FT(name="t", partition_indexes=[0])]) == (0, [("t", [(5, 0)])])
    grant(b, acl(GROUP, "g", BOB, DESCRIBE))
    # All topics: those BOB may not DESCRIBE are left out; named: TOPIC_AUTHORIZATION_FAILED.
    assert fetch_offsets(BOB, None) == (0, [])
    assert fetch_offsets(BOB, [FT(name="t", partition_indexes=[0])]) == (
        0, [("t", [(-1, ErrorCode.TOPIC_AUTHORIZATION_FAILED)])])

    desc = call_as(b, BOB, DescribeGroupsRequest(groups=["g", "h"],
                                                 include_authorized_operations=True), 5)
    assert [(g.group_id, g.error_code) for g in desc.groups] == [
        ("g", 0), ("h", ErrorCode.GROUP_AUTHORIZATION_FAILED)]
    assert desc.groups[0].authorized_operations == 1 << DESCRIBE

    def listed(principal):
        return [g.group_id for g in call_as(b, principal, ListGroupsRequest(), 4).groups]
    assert listed(BOB) == ["g"] and listed("User:carol") == [] and listed(ADMIN) == ["g"]

    deleted = call_as(b, ALICE, DeleteGroupsRequest(groups_names=["g"]), 2)
    assert deleted.results[0].error_code == ErrorCode.GROUP_AUTHORIZATION_FAILED
    grant(b, acl(GROUP, "g", ALICE, DELETE))
    deleted = call_as(b, ALICE, DeleteGroupsRequest(groups_names=["g"]), 2)
    assert deleted.results[0].error_code == 0


def create_topic_as(b, name, principal=ADMIN):
    from kafkette.protocol.messages import CreateTopicsRequest
    T = CreateTopicsRequest.CreatableTopic
    return call_as(b, principal, CreateTopicsRequest(topics=[T(
        name=name, num_partitions=1, replication_factor=1, assignments=[], configs=[])],
        timeout_ms=5000), 7).topics[0]


# -- admin -----------------------------------------------------------------------------

def test_admin_apis(abroker):
    from kafkette.protocol.messages import (
        CreatePartitionsRequest, DeleteRecordsRequest, DeleteTopicsRequest,
        DescribeConfigsRequest, DescribeLogDirsRequest, ElectLeadersRequest,
        IncrementalAlterConfigsRequest, ListOffsetsRequest,
    )
    b = abroker
    res = create_topic_as(b, "new", ALICE)
    assert res.error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED
    grant(b, acl(TOPIC, "new", ALICE, CREATE, pattern=PREFIXED))
    res = create_topic_as(b, "new", ALICE)
    assert res.error_code == 0
    # CREATE alone: no DESCRIBE_CONFIGS, so no configs in the answer.
    assert res.topic_config_error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED

    CP = CreatePartitionsRequest.CreatePartitionsTopic
    resp = call_as(b, ALICE, CreatePartitionsRequest(topics=[CP(name="new", count=2, assignments=None)],
                                                     timeout_ms=5000, validate_only=False), 3)
    assert resp.results[0].error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED

    DR = DescribeConfigsRequest.DescribeConfigsResource
    resp = call_as(b, ALICE, DescribeConfigsRequest(resources=[
        DR(resource_type=2, resource_name="new", configuration_keys=None),
        DR(resource_type=4, resource_name="", configuration_keys=None)]), 4)
    assert [r.error_code for r in resp.results] == [ErrorCode.TOPIC_AUTHORIZATION_FAILED,
                                                    ErrorCode.CLUSTER_AUTHORIZATION_FAILED]
    IR = IncrementalAlterConfigsRequest.AlterConfigsResource
    IC = IR.AlterableConfig
    resp = call_as(b, ALICE, IncrementalAlterConfigsRequest(resources=[
        IR(resource_type=2, resource_name="new", configs=[
            IC(name="retention.ms", config_operation=0, value="1000")])], validate_only=False), 1)
    assert resp.responses[0].error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED
    grant(b, acl(TOPIC, "new", ALICE, ALTER_CONFIGS_OP))
    resp = call_as(b, ALICE, IncrementalAlterConfigsRequest(resources=[
        IR(resource_type=2, resource_name="new", configs=[
            IC(name="retention.ms", config_operation=0, value="1000")])], validate_only=False), 1)
    assert resp.responses[0].error_code == 0
    resp = call_as(b, ALICE, DescribeConfigsRequest(resources=[
        DR(resource_type=2, resource_name="new", configuration_keys=["retention.ms"])]), 4)
    assert resp.results[0].error_code == 0       # ALTER_CONFIGS implies DESCRIBE_CONFIGS

    LT = ListOffsetsRequest.ListOffsetsTopic
    resp = call_as(b, BOB, ListOffsetsRequest(replica_id=-1, isolation_level=0, topics=[
        LT(name="t", partitions=[LT.ListOffsetsPartition(partition_index=0, timestamp=-1)])]), 7)
    assert resp.topics[0].partitions[0].error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED

    DT = DeleteRecordsRequest.DeleteRecordsTopic
    resp = call_as(b, ALICE, DeleteRecordsRequest(topics=[DT(name="t", partitions=[
        DT.DeleteRecordsPartition(partition_index=0, offset=0)])], timeout_ms=5000), 2)
    assert resp.topics[0].partitions[0].error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED

    resp = call_as(b, ALICE, ElectLeadersRequest(election_type=0, topic_partitions=None,
                                                 timeout_ms=5000), 2)
    assert resp.error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    resp = call_as(b, ALICE, DescribeLogDirsRequest(topics=None), 4)
    assert resp.error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED

    resp = call_as(b, ALICE, DeleteTopicsRequest(topic_names=["new"], timeout_ms=5000), 5)
    assert resp.responses[0].error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED
    grant(b, acl(TOPIC, "new", ALICE, DELETE))
    resp = call_as(b, ALICE, DeleteTopicsRequest(topic_names=["new"], timeout_ms=5000), 5)
    assert resp.responses[0].error_code == 0


ALTER_CONFIGS_OP = 11


# -- producer ids and transactions ---------------------------------------------------

def test_init_producer_id_and_transactions(abroker):
    from kafkette.protocol.messages import (
        AddOffsetsToTxnRequest, DescribeTransactionsRequest, EndTxnRequest,
        InitProducerIdRequest, ListTransactionsRequest,
    )
    b = abroker

    def init(principal, txn=None):
        return call_as(b, principal, InitProducerIdRequest(
            transactional_id=txn, transaction_timeout_ms=60000, producer_id=-1,
            producer_epoch=-1), 4).error_code
    assert init(ALICE) == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    grant(b, acl(TOPIC, "t", ALICE, WRITE))     # WRITE on any topic is enough (KIP-679)
    assert init(ALICE) == 0
    grant(b, acl(CLUSTER, "kafka-cluster", BOB, IDEMPOTENT_WRITE))
    assert init(BOB) == 0
    assert init(ALICE, "tx") == ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    resp = call_as(b, ALICE, AddOffsetsToTxnRequest(transactional_id="tx", producer_id=1,
                                                    producer_epoch=0, group_id="g"), 3)
    assert resp.error_code == ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    resp = call_as(b, ALICE, EndTxnRequest(transactional_id="tx", producer_id=1,
                                           producer_epoch=0, committed=True), 3)
    assert resp.error_code == ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    grant(b, acl(TRANSACTIONAL_ID, "tx", ALICE, WRITE))
    resp = call_as(b, ALICE, AddOffsetsToTxnRequest(transactional_id="tx", producer_id=1,
                                                    producer_epoch=0, group_id="g"), 3)
    assert resp.error_code == ErrorCode.GROUP_AUTHORIZATION_FAILED
    resp = call_as(b, ALICE, DescribeTransactionsRequest(transactional_ids=["tx", "other"]), 0)
    assert [s.error_code for s in resp.transaction_states][1] == \
        ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    assert resp.transaction_states[0].error_code != ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    resp = call_as(b, BOB, ListTransactionsRequest(state_filters=[], producer_id_filters=[]), 0)
    assert resp.transaction_states == []
