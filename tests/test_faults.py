"""Fault injection (kafkette.broker.faults) through the dispatcher."""
from __future__ import annotations

import asyncio
import inspect
import json
import time

import pytest

from handler_harness import (acall, broker, call, create_topic, fetch_request,  # noqa: F401
                             make_broker, produce, produce_request, start)
from kafkette.broker.faults import FaultError
from kafkette.broker.registry import load_handlers
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import (HeartbeatRequest, JoinGroupRequest, ListOffsetsRequest,
                                        MetadataRequest, OffsetCommitRequest,
                                        OffsetFetchRequest, InitProducerIdRequest,
                                        FindCoordinatorRequest, SyncGroupRequest)
from kafkette.protocol.records import build_batch

NLF = ErrorCode.NOT_LEADER_OR_FOLLOWER


def batch(n=1):
    return bytearray(build_batch([(b"k", b"v%d" % i, []) for i in range(n)], timestamp_ms=1))


def test_error_on_next_two_produce_requests_then_normal(broker):
    create_topic(broker, "t")
    rid = broker.faults.inject_error(0, NLF, count=2)
    assert [r["id"] for r in broker.faults.list()] == [rid]
    assert produce(broker, "t", 0, batch()).error_code == NLF
    assert produce(broker, "t", 0, batch()).error_code == NLF
    ok = produce(broker, "t", 0, batch())
    assert ok.error_code == 0 and ok.base_offset == 0   # failed requests appended nothing
    assert broker.faults.list() == []


def test_error_only_for_other_api_leaves_produce_alone(broker):
    create_topic(broker, "t")
    broker.faults.inject_error(1, NLF, count=1)           # Fetch only
    assert produce(broker, "t", 0, batch()).error_code == 0
    resp = call(broker, fetch_request("t", {0: 0}), 12)
    assert resp.responses[0].partitions[0].error_code == NLF
    resp = call(broker, fetch_request("t", {0: 0}), 12)
    assert resp.responses[0].partitions[0].error_code == 0
    assert resp.responses[0].partitions[0].records


def test_topic_and_partition_filter(broker):
    create_topic(broker, "a", partitions=2)
    create_topic(broker, "b")
    broker.faults.inject_error(0, ErrorCode.KAFKA_STORAGE_ERROR, count=1, topic="a", partition=1)
    assert produce(broker, "b", 0, batch()).error_code == 0     # not matching: count kept
    assert produce(broker, "a", 0, batch()).error_code == 0
    # One request touching a/0 and a/1: only a/1 fails, a/0 is appended.
    resp = call(broker, produce_request("a", {0: batch(), 1: batch()}), 9)
    parts = {p.index: p for p in resp.responses[0].partition_responses}
    assert parts[1].error_code == ErrorCode.KAFKA_STORAGE_ERROR
    assert parts[0].error_code == 0 and parts[0].base_offset == 1
    assert produce(broker, "a", 1, batch()).error_code == 0     # exhausted
    assert broker.faults.list() == []


async def test_latency_returns_awaitable_that_waits(broker):
    create_topic(broker, "t")
    broker.faults.inject_latency(0, 150, count=1)
    result, finish = start(broker, produce_request("t", {0: batch()}), 9)
    assert inspect.isawaitable(result)
    t0 = time.monotonic()
    chunks = await asyncio.wait_for(result, 5)
    assert time.monotonic() - t0 >= 0.149
    assert finish(chunks).responses[0].partition_responses[0].error_code == 0
    t0 = time.monotonic()
    resp = await acall(broker, produce_request("t", {0: batch()}), 9)   # count used up
    assert resp.responses[0].partition_responses[0].base_offset == 1
    assert time.monotonic() - t0 < 0.1


def test_partition_unavailable_until_expiry(broker):
    create_topic(broker, "t", partitions=2)
    broker.faults.make_partition_unavailable("t", 0, 10_000)
    assert produce(broker, "t", 0, batch()).error_code == NLF
    assert produce(broker, "t", 1, batch()).error_code == 0
    resp = call(broker, fetch_request("t", {0: 0, 1: 0}), 12)
    codes = {p.partition_index: p.error_code for p in resp.responses[0].partitions}
    assert codes == {0: NLF, 1: 0}
    L = ListOffsetsRequest
    lo = L(replica_id=-1, isolation_level=0, topics=[L.ListOffsetsTopic(
        name="t", partitions=[L.ListOffsetsTopic.ListOffsetsPartition(partition_index=0,
                                                                      timestamp=-1)])])
    assert call(broker, lo, 7).topics[0].partitions[0].error_code == NLF
    md = call(broker, MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name="t")]), 9)
    mp = {p.partition_index: p for p in md.topics[0].partitions}
    assert mp[0].leader_id == -1 and mp[0].error_code == ErrorCode.LEADER_NOT_AVAILABLE
    assert mp[1].leader_id == broker.node_id and mp[1].error_code == 0
    broker.clock.advance(10_000)
    assert produce(broker, "t", 0, batch()).error_code == 0
    md = call(broker, MetadataRequest(topics=None), 9)
    assert all(p.leader_id == broker.node_id for t in md.topics for p in t.partitions)
    assert broker.faults.list() == []


def test_clear_and_list(broker):
    create_topic(broker, "t")
    a = broker.faults.inject_error(0, NLF, count=None)
    b = broker.faults.inject_latency(1, 10)
    broker.faults.make_partition_unavailable("t", 0, 1000)
    assert [r["kind"] for r in broker.faults.list()] == ["error", "latency", "leader_unavailable"]
    assert broker.faults.clear(b) == 1
    assert produce(broker, "t", 0, batch()).error_code == NLF
    assert produce(broker, "t", 0, batch()).error_code == NLF    # count None: until cleared
    assert broker.faults.clear() == 2
    assert not broker.faults.active
    assert produce(broker, "t", 0, batch()).error_code == 0
    assert a != b


def test_inject_from_json_spec(broker):
    f = broker.faults
    rid = f.inject(json.loads('{"kind": "error", "api_key": 0, "error": "NOT_LEADER_OR_FOLLOWER",'
                              ' "count": 3}'))
    assert f.list() == [{"id": rid, "kind": "error", "api_key": 0, "error_code": 6,
                         "error": "NOT_LEADER_OR_FOLLOWER", "remaining": 3}]
    for bad in ({"kind": "nope"}, {"kind": "error", "api_key": 0},
                {"kind": "latency", "api_key": 0, "delay_ms": 5, "count": 0},
                {"kind": "error", "api_key": 0, "error_code": 6, "bogus": 1}):
        with pytest.raises(FaultError):
            f.inject(bad)
    assert f.inject({"kind": "close_connections"}) == {"closed": 0}


def test_close_connections_by_client_id(broker):
    class Conn:
        def __init__(self, cid):
            self.client_id, self.aborted = cid, False

        def abort(self):
            self.aborted = True
    a, b = Conn("x"), Conn("y")
    broker.faults.track_connection(a)
    broker.faults.track_connection(b)
    assert broker.faults.close_connections("x") == 1
    assert a.aborted and not b.aborted
    assert broker.faults.close_connections() == 2


def _group_requests():
    OC, OF = OffsetCommitRequest, OffsetFetchRequest
    return [
        (FindCoordinatorRequest(key="g", key_type=0), 3),
        (FindCoordinatorRequest(key_type=0, coordinator_keys=["g"]), 4),
        (JoinGroupRequest(group_id="g", session_timeout_ms=10000, rebalance_timeout_ms=10000,
                          member_id="", protocol_type="consumer", protocols=[]), 5),
        (JoinGroupRequest(group_id="g", session_timeout_ms=10000, rebalance_timeout_ms=10000,
                          member_id="", protocol_type="consumer", protocols=[]), 7),
        (SyncGroupRequest(group_id="g", generation_id=1, member_id="m", assignments=[]), 3),
        (HeartbeatRequest(group_id="g", generation_id=1, member_id="m"), 3),
        (OC(group_id="g", generation_id_or_member_epoch=-1, member_id="", topics=[
            OC.OffsetCommitRequestTopic(name="t", partitions=[
                OC.OffsetCommitRequestTopic.OffsetCommitRequestPartition(
                    partition_index=0, committed_offset=1)])]), 8),
        (OF(group_id="g", topics=[OF.OffsetFetchRequestTopic(name="t", partition_indexes=[0])]),
         7),
        (OF(groups=[OF.OffsetFetchRequestGroup(group_id="g", topics=[
            OF.OffsetFetchRequestGroup.OffsetFetchRequestTopics(name="t",
                                                                partition_indexes=[0])])]), 8),
        (InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60000), 4),
    ]


@pytest.mark.parametrize("request_, version", _group_requests())
def test_error_responses_for_other_apis(broker, request_, version):
    code = ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert load_handlers()[request_.API_KEY].error_response(request_, code, None) is not None
    broker.faults.inject_error(request_.API_KEY, code, count=1)
    resp = call(broker, request_, version)    # decodes the wire bytes strictly
    codes = []
    for attr in ("error_code",):
        if getattr(resp, attr, 0):
            codes.append(resp.error_code)
    for t in getattr(resp, "topics", None) or []:
        codes += [p.error_code for p in t.partitions]
    for g in getattr(resp, "groups", None) or []:
        codes.append(g.error_code)
    for c in getattr(resp, "coordinators", None) or []:
        codes.append(c.error_code)
    assert codes and set(codes) == {code}


def test_error_on_admin_requests_answers_every_topic_and_creates_nothing(broker):
    """Admin APIs take an injected error too: their registration names their error
    response, so CreateTopics fails per topic and nothing is created."""
    from kafkette.protocol.messages import CreateTopicsRequest
    T = CreateTopicsRequest.CreatableTopic
    req = CreateTopicsRequest(topics=[T(name="x", num_partitions=1, replication_factor=1,
                                        assignments=[], configs=[])], timeout_ms=5000)
    broker.faults.inject_error(19, ErrorCode.NOT_CONTROLLER, count=1)
    resp = call(broker, req, 7)
    assert [(t.name, t.error_code) for t in resp.topics] == [("x", ErrorCode.NOT_CONTROLLER)]
    assert "x" not in broker.image.topics
    assert create_topic(broker, "x").error_code == 0      # the rule is used up

def test_metadata_error_per_topic(broker):
    create_topic(broker, "a")
    create_topic(broker, "b")
    broker.faults.inject_error(3, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, count=1, topic="a")
    md = call(broker, MetadataRequest(topics=None), 9)
    codes = {t.name: t.error_code for t in md.topics}
    assert codes == {"a": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "b": 0}
    assert md.brokers   # the bootstrap stays


def test_embedded_in_process_api():
    from kafkette import EmbeddedBroker
    with EmbeddedBroker(in_process=True) as kb:
        kb.create_topic("t")
        rid = kb.inject_error(0, NLF, count=1, topic="t")
        assert [r["id"] for r in kb.list_faults()] == [rid]
        resp = kb._request(produce_request("t", {0: batch()}), 9)
        assert resp.responses[0].partition_responses[0].error_code == NLF
        resp = kb._request(produce_request("t", {0: batch()}), 9)
        assert resp.responses[0].partition_responses[0].error_code == 0
        kb.inject_latency(3, 5)
        assert kb.clear_faults() == 1
        with pytest.raises(ValueError):
            kb.inject_fault({"kind": "nope"})


async def test_admin_http_endpoint(broker):
    from kafkette.server.metrics_http import MetricsHttpServer
    srv = MetricsHttpServer(lambda: broker.metrics.registry, lambda: True,
                            faults_fn=lambda: broker.faults)
    host, port = await srv.start("127.0.0.1:0")

    async def http(method, path, body=b""):
        r, w = await asyncio.open_connection(host, port)
        w.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
                .encode() + body)
        data = await asyncio.wait_for(r.read(), 5)
        w.close()
        head, _, payload = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), payload
    try:
        status, body = await http("POST", "/faults", b'{"kind": "latency", "api_key": 1, '
                                                     b'"delay_ms": 7}')
        assert status == 200 and json.loads(body) == {"id": 1}
        status, body = await http("GET", "/faults")
        assert json.loads(body)["rules"][0]["delay_ms"] == 7
        assert (await http("POST", "/faults", b"[1]"))[0] == 400
        assert (await http("POST", "/faults"))[0] == 400
        assert (await http("PUT", "/faults"))[0] == 405
        assert (await http("POST", "/metrics"))[0] == 405    # unchanged
        status, body = await http("DELETE", "/faults")
        assert json.loads(body) == {"cleared": 1} and not broker.faults.active
    finally:
        await srv.stop()
