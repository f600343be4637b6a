"""Broker metrics (kafkette.broker.metrics) through the dispatcher, and the HTTP
endpoint (kafkette.server.metrics_http) on a real socket."""
from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter

from handler_harness import (  # noqa: F401
    START_MS, acall, broker, call, create_topic, fetch_request, make_broker, produce)
from kafkette.config import BrokerConfig
from kafkette.protocol.messages import MetadataRequest, OffsetCommitRequest
from kafkette.protocol.records import build_batch
from kafkette.server.metrics_http import MetricsHttpServer, parse_host_port
from kafkette.server.server import KafkaServer

OCTopic = OffsetCommitRequest.OffsetCommitRequestTopic
OCPart = OCTopic.OffsetCommitRequestPartition


def sample(broker, name, **labels):
    v = broker.metrics.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def batch(n, start=0):
    return build_batch([(f"k{i}".encode(), f"value-{i}".encode()) for i in range(start, start + n)],
                       timestamp_ms=START_MS)


def test_produce_counts_records_and_batch_bytes(broker):
    create_topic(broker, "T", partitions=2)
    b1, b2 = batch(5), batch(3)
    assert produce(broker, "T", 0, b1).error_code == 0
    assert produce(broker, "T", 1, b2).error_code == 0
    assert sample(broker, "kafka_server_brokertopicmetrics_messagesin_total", topic="T") == 8
    assert sample(broker, "kafka_server_brokertopicmetrics_bytesin_total",
                  topic="T") == len(b1) + len(b2)
    # A rejected append (unknown partition) counts nothing.
    assert produce(broker, "T", 7, batch(4)).error_code != 0
    assert sample(broker, "kafka_server_brokertopicmetrics_messagesin_total", topic="T") == 8
    assert sample(broker, "kafka_server_brokertopicmetrics_messagesin_total", topic="other") == 0


def test_fetch_counts_bytes_out(broker):
    create_topic(broker, "T")
    b = batch(4)
    produce(broker, "T", 0, b)
    assert sample(broker, "kafka_server_brokertopicmetrics_bytesout_total", topic="T") == 0
    resp = call(broker, fetch_request("T", {0: 0}), 12)
    assert len(resp.responses[0].partitions[0].records) == len(b)
    assert sample(broker, "kafka_server_brokertopicmetrics_bytesout_total", topic="T") == len(b)
    call(broker, fetch_request("T", {0: 4}), 12)  # at the end: nothing returned
    call(broker, fetch_request("T", {0: 0}), 12)
    assert sample(broker, "kafka_server_brokertopicmetrics_bytesout_total", topic="T") == 2 * len(b)


async def test_long_poll_counts_only_the_sent_response_and_its_time(broker):
    create_topic(broker, "T")
    b = batch(2)
    produce(broker, "T", 0, b)
    # min_bytes above what is there: waits max_wait_ms, then answers with the batch once.
    resp = await acall(broker, fetch_request("T", {0: 0}, min_bytes=1 << 20, max_wait_ms=30), 12)
    assert len(resp.responses[0].partitions[0].records) == len(b)
    assert sample(broker, "kafka_server_brokertopicmetrics_bytesout_total", topic="T") == len(b)
    assert sample(broker, "kafka_network_requestmetrics_requests_total", request="Fetch") == 1
    # The awaited handler is timed to its end: >= 30 ms, in milliseconds.
    total_ms = sample(broker, "kafka_network_requestmetrics_totaltimems_sum", request="Fetch")
    assert 25 <= total_ms < 5000
    assert sample(broker, "kafka_network_requestmetrics_totaltimems_bucket",
                  request="Fetch", le="10.0") == 0


def test_requests_total_per_api(broker):
    create_topic(broker, "T")
    before = sample(broker, "kafka_network_requestmetrics_requests_total", request="Produce")
    for i in range(3):
        produce(broker, "T", 0, batch(1, i))
    call(broker, MetadataRequest(topics=None), 12)
    assert sample(broker, "kafka_network_requestmetrics_requests_total",
                  request="Produce") == before + 3
    assert sample(broker, "kafka_network_requestmetrics_requests_total", request="Metadata") == 1
    assert sample(broker, "kafka_network_requestmetrics_requests_total",
                  request="CreateTopics") == 1
    assert sample(broker, "kafka_network_requestmetrics_totaltimems_count",
                  request="Produce") == before + 3


def test_log_gauges_at_scrape_time(broker):
    create_topic(broker, "T", partitions=2)
    produce(broker, "T", 1, batch(6))
    assert sample(broker, "kafka_server_replicamanager_partitioncount") == 2
    assert sample(broker, "kafka_log_log_logendoffset", topic="T", partition="1") == 6
    assert sample(broker, "kafka_log_log_logendoffset", topic="T", partition="0") == 0
    plog = broker.replica_manager.partitions[("T", 1)].log
    assert sample(broker, "kafka_log_log_size", topic="T", partition="1") == plog.size_bytes > 0


async def test_consumer_group_lag(make_broker):
    b = make_broker({"offsets.topic.num.partitions": "1"})
    create_topic(b, "T", partitions=2)
    produce(b, "T", 0, batch(10))
    produce(b, "T", 1, batch(4))
    c = await acall(b, OffsetCommitRequest(
        group_id="g", generation_id_or_member_epoch=-1, member_id="",
        topics=[OCTopic(name="T", partitions=[OCPart(partition_index=0, committed_offset=3),
                                              OCPart(partition_index=1, committed_offset=4)])]),
        8)
    assert [p.error_code for p in c.topics[0].partitions] == [0, 0]
    assert sample(b, "kafka_consumergroup_lag", group="g", topic="T", partition="0") == 7
    assert sample(b, "kafka_consumergroup_lag", group="g", topic="T", partition="1") == 0
    produce(b, "T", 1, batch(5))  # computed at scrape time: follows the high watermark
    assert sample(b, "kafka_consumergroup_lag", group="g", topic="T", partition="1") == 5


def test_each_broker_has_its_own_registry(make_broker, tmp_path):
    from handler_harness import new_broker
    a = make_broker()
    other = new_broker(tmp_path / "other")
    try:
        create_topic(a, "T")
        produce(a, "T", 0, batch(2))
        assert a.metrics.registry is not other.metrics.registry
        assert sample(other, "kafka_server_brokertopicmetrics_messagesin_total", topic="T") == 0
        assert sample(a, "kafka_server_brokertopicmetrics_messagesin_total", topic="T") == 2
    finally:
        other.close()


def test_parse_host_port():
    assert parse_host_port("127.0.0.1:9404") == ("127.0.0.1", 9404)
    assert parse_host_port(":9404") == ("0.0.0.0", 9404)
    assert parse_host_port("[::1]:9404") == ("::1", 9404)


# -- HTTP ---------------------------------------------------------------------------------

async def http(addr, raw: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(*addr)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def get(addr, path):
    return await http(addr, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


async def test_endpoint_alone_health_404_405():
    registry = CollectorRegistry()
    Counter("probe", "a probe", registry=registry).inc(3)
    healthy = [True]
    srv = MetricsHttpServer(lambda: registry, lambda: healthy[0])
    addr = await srv.start("127.0.0.1:0")
    try:
        assert await get(addr, "/healthz") == (200, b"ok\n")
        status, body = await get(addr, "/metrics")
        assert status == 200 and b"probe_total 3.0" in body
        assert (await get(addr, "/nope"))[0] == 404
        assert (await http(addr, b"POST /metrics HTTP/1.1\r\n\r\n"))[0] == 405
        assert (await http(addr, b"garbage\r\n\r\n"))[0] == 400
        assert (await http(addr, b"GET /" + b"x" * 10000 + b" HTTP/1.1\r\n\r\n"))[0] == 431
        healthy[0] = False
        assert (await get(addr, "/healthz"))[0] == 503
    finally:
        await srv.stop()


async def test_kafka_server_serves_metrics_and_health(tmp_path):
    config = BrokerConfig({"log.dirs": str(tmp_path / "data"),
                           "listeners": "PLAINTEXT://127.0.0.1:0",
                           "metrics.listener": "127.0.0.1:0"})
    server = KafkaServer(config)
    await server.start()
    try:
        addr = server.metrics_http.address
        assert await get(addr, "/healthz") == (200, b"ok\n")
        # A client connection shows up in connection_count.
        host, port = server.bound["PLAINTEXT"]
        _r, w = await asyncio.open_connection(host, port)
        deadline = asyncio.get_running_loop().time() + 5
        while not server.connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        status, body = await get(addr, "/metrics")
        assert status == 200
        assert b'kafka_server_socketservermetrics_connection_count{listener="PLAINTEXT"} 1.0' \
            in body
        assert b"kafka_server_replicamanager_partitioncount" in body
        w.close()
        server._stopping = True  # what stop() sets first: health goes 503 during shutdown
        assert (await get(addr, "/healthz"))[0] == 503
    finally:
        await server.stop()
    assert server.metrics_http._server is None


async def test_no_metrics_listener_by_default(tmp_path):
    config = BrokerConfig({"log.dirs": str(tmp_path / "data"),
                           "listeners": "PLAINTEXT://127.0.0.1:0"})
    server = KafkaServer(config)
    await server.start()
    try:
        assert server.metrics_http is None
    finally:
        await server.stop()


def test_follower_lag_gauges_on_the_leader(tmp_path):
    """One series per follower that has fetched, on the leader only: records behind the
    leader's log end, and ms since the follower last had the leader's whole log."""
    from types import SimpleNamespace

    from kafkette.broker.metrics import _StateCollector
    from kafkette.broker.partition import Partition
    from kafkette.clock import ManualClock
    from kafkette.log import LogConfig, PartitionLog

    clock = ManualClock()
    t0 = clock.monotonic_ms()
    part = Partition("t", 0, PartitionLog(str(tmp_path / "t-0"), LogConfig()), node_id=1)
    part.apply_metadata(1, 0, 0, (1, 2, 3), (1, 2, 3), t0)
    part.append_as_leader(bytearray(batch(5)), 1, t0)
    part.update_follower_fetch(2, 5, t0)          # caught up
    part.update_follower_fetch(3, 2, t0)          # 3 behind, has not caught up since t0
    fake = SimpleNamespace(replica_manager=SimpleNamespace(
        partitions={("t", 0): part}, clock=clock))
    clock.advance(250)
    reg = CollectorRegistry()
    reg.register(_StateCollector(fake))

    def gauge(name, replica):
        return reg.get_sample_value(name, {"topic": "t", "partition": "0",
                                           "replica": str(replica)})
    assert gauge("kafka_cluster_partition_followerlag", 2) == 0
    assert gauge("kafka_cluster_partition_followerlag", 3) == 3
    assert gauge("kafka_cluster_partition_followertimelagms", 2) == 0
    assert gauge("kafka_cluster_partition_followertimelagms", 3) == 250
    # A follower exports nothing: the leader's view is the one the high watermark uses.
    part.apply_metadata(2, 1, 1, (1, 2, 3), (1, 2, 3), clock.monotonic_ms())
    reg2 = CollectorRegistry()
    reg2.register(_StateCollector(fake))
    assert reg2.get_sample_value("kafka_cluster_partition_followerlag",
                                 {"topic": "t", "partition": "0", "replica": "3"}) is None


def test_a_deleted_topics_counters_go_with_it(broker):
    # Kafka's BrokerTopicStats.removeMetrics on topic deletion; without it every topic
    # ever produced to or fetched from keeps its counters (the soak, kafkette.soak,
    # creates, produces to and deletes a scratch topic every few seconds).
    from kafkette.protocol.messages import DeleteTopicsRequest
    create_topic(broker, "gone")
    create_topic(broker, "kept")
    for t in ("gone", "kept"):
        produce(broker, t, 0, batch(2))
        call(broker, fetch_request(t, {0: 0}), 12)
    assert sample(broker, "kafka_server_brokertopicmetrics_messagesin_total", topic="gone") == 2
    resp = call(broker, DeleteTopicsRequest(topic_names=["gone"], timeout_ms=5000), 5)
    assert resp.responses[0].error_code == 0
    names = {s.labels.get("topic") for fam in broker.metrics.registry.collect()
             if fam.name.startswith("kafka_server_brokertopicmetrics") for s in fam.samples}
    assert names == {"kept"}
    # Created again under the same name: counted from zero.
    create_topic(broker, "gone")
    produce(broker, "gone", 0, batch(3))
    assert sample(broker, "kafka_server_brokertopicmetrics_messagesin_total", topic="gone") == 3
