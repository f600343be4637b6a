"""Fault injection against a real kafkette process, driven over the admin HTTP endpoint
(metrics.listener: POST/GET/DELETE /faults), with real clients reacting to the faults."""
from __future__ import annotations

import json
import socket
import time
import urllib.request

import pytest
from confluent_kafka import KafkaError, Producer

import it_clients
from itutil import (BrokerProcess, frame, free_port, recv_frame, request_header_v1,
                    unique_topic, wait_for_close)

pytestmark = pytest.mark.timeout(120)
PRODUCE = 0
NOT_LEADER_OR_FOLLOWER = 6


@pytest.fixture(scope="module")
def admin_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def broker_config(admin_port) -> dict:
    return {"metrics.listener": f"127.0.0.1:{admin_port}"}


def admin(port: int, method: str, path: str = "/faults", body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


@pytest.fixture(autouse=True)
def _no_faults_left(admin_port, broker):
    yield
    admin(admin_port, "DELETE")


def read_values(b: BrokerProcess, topic: str, timeout: float = 30.0) -> list[bytes]:
    return [v for _o, _k, v in it_clients.read_to_eof_confluent(b.bootstrap, topic, timeout)]


def test_admin_endpoint_list_and_clear(broker, admin_port):
    rid = admin(admin_port, "POST", body={"kind": "latency", "api_key": 3, "delay_ms": 1})["id"]
    rules = admin(admin_port, "GET")["rules"]
    assert [(r["id"], r["kind"], r["delay_ms"]) for r in rules] == [(rid, "latency", 1)]
    assert admin(admin_port, "DELETE", f"/faults/{rid}") == {"cleared": 1}
    assert admin(admin_port, "GET") == {"rules": []}
    with pytest.raises(urllib.error.HTTPError) as e:
        admin(admin_port, "POST", body={"kind": "bogus"})
    assert e.value.code == 400
    # /metrics still answers next to it.
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as r:
        assert r.status == 200


def test_close_connections_of_a_client_id(broker, admin_port):
    with socket.create_connection((broker.host, broker.port), timeout=5) as s:
        # One ApiVersions v0 request names the client id.
        s.sendall(frame(request_header_v1(18, 0, 1, "fault-victim")))
        recv_frame(s)
        assert admin(admin_port, "POST", body={"kind": "close_connections",
                                               "client_id": "someone-else"}) == {"closed": 0}
        assert admin(admin_port, "POST", body={"kind": "close_connections",
                                               "client_id": "fault-victim"}) == {"closed": 1}
        closed, _, how = wait_for_close(s, 5)
        assert closed, how


def test_idempotent_producer_rides_out_not_leader(broker, admin_port):
    topic = unique_topic("faults")
    it_clients.create_topic(broker.bootstrap, topic, partitions=1)
    admin(admin_port, "POST", body={"kind": "error", "api_key": PRODUCE,
                                    "error": "NOT_LEADER_OR_FOLLOWER", "count": 3,
                                    "topic": topic})
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True,
                  "acks": "all", "linger.ms": 5, "batch.num.messages": 20,
                  "retry.backoff.ms": 50, "message.timeout.ms": 60000})
    errors, offsets = [], {}

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            offsets[msg.value()] = msg.offset()
    expected = [f"m-{i:04d}".encode() for i in range(200)]
    for v in expected:
        p.produce(topic, value=v, partition=0, on_delivery=on_delivery)
        p.poll(0)
    assert p.flush(60) == 0
    assert errors == []
    assert admin(admin_port, "GET") == {"rules": []}, "the 3 injected errors were not all used"
    assert read_values(broker, topic) == expected          # every record exactly once, in order
    assert sorted(offsets.values()) == list(range(len(expected)))


def test_produce_latency_times_out_deliveries(broker, admin_port):
    topic = unique_topic("faults-slow")
    it_clients.create_topic(broker.bootstrap, topic, partitions=1)
    admin(admin_port, "POST", body={"kind": "latency", "api_key": PRODUCE, "delay_ms": 3000})
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": 1, "linger.ms": 0,
                  "message.timeout.ms": 1000, "request.timeout.ms": 1000, "retries": 0})
    errors = []

    def on_delivery(err, msg):
        errors.append(err)
    t0 = time.monotonic()
    for i in range(5):
        p.produce(topic, value=b"v%d" % i, partition=0, on_delivery=on_delivery)
    p.flush(10)
    elapsed = time.monotonic() - t0
    assert len(errors) == 5 and all(e is not None for e in errors), errors
    assert {e.code() for e in errors} <= {KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT}
    assert elapsed < 8, elapsed


def test_embedded_child_process_api():
    from kafkette import EmbeddedBroker
    with EmbeddedBroker() as kb:
        kb.create_topic("t")
        kb.make_partition_unavailable("t", 0, 60_000)
        assert [r["kind"] for r in kb.list_faults()] == ["leader_unavailable"]
        from kafkette.protocol.messages import MetadataRequest
        md = kb._request(MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name="t")]),
                         9)
        assert md.topics[0].partitions[0].leader_id == -1
        assert kb.clear_faults() == 1
        md = kb._request(MetadataRequest(topics=None), 9)
        assert md.topics[0].partitions[0].leader_id >= 0
        with pytest.raises(ValueError):
            kb.inject_fault({"kind": "error", "api_key": 0})
