"""Replication on real processes: a 3-node cluster (combined broker + controller
voters), topics with replication factor 3 and min.insync.replicas 2, live clients.

- acks=all records are on every replica, batch for batch (offset, epoch, CRC);
- kill -9 of a partition leader during idempotent acks=all produce: a new leader is
  elected from the ISR, nothing acknowledged is lost or duplicated, and the killed
  broker catches up when it returns (the time from the kill to the next acknowledged
  record is printed with -s and written to $KAFKETTE_CLUSTER_TIMINGS);
- SIGSTOP of a follower past replica.lag.time.max.ms: the leader drops it from the ISR;
  after SIGCONT it catches up and rejoins;
- a confluent-kafka consumer with client.rack fetches from the follower in its rack
  (KIP-392, replica.selector.class = RackAwareReplicaSelector);
- a consumer group keeps its committed offsets when its coordinator's broker dies.

The tests run in file order on one cluster; a disruptive test leaves it whole again.
Every wait is a condition with a deadline.
"""
from __future__ import annotations

import json
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition as CkTopicPartition

from itutil import build_record_batch, record_timings, unique_topic, wait_until
from kafkette.chaos.replica_logs import replica_logs

pytestmark = pytest.mark.timeout(240)

LAG_MS = 3000
NOT_ENOUGH_REPLICAS = 19
RACK_AWARE = "org.apache.kafka.common.replica.RackAwareReplicaSelector"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from kafkette.embedded_cluster import EmbeddedCluster
    logs = tmp_path_factory.mktemp("replication-logs")
    config = {"replica.lag.time.max.ms": LAG_MS, "offsets.topic.replication.factor": 3,
              "replica.selector.class": RACK_AWARE, "replica.fetch.backoff.ms": 200}
    with EmbeddedCluster(3, config, log_dir=logs,
                         node_config=lambda i: {"broker.rack": f"rack-{i}"}) as kc:
        yield kc


@pytest.fixture(autouse=True)
def _node_logs_on_failure(request, cluster):
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"\n{cluster!r}\n{cluster.log_tails(80)}")


def whole(cluster) -> None:
    cluster.restore()
    cluster.wait_ready(timeout=30)


def rf3_topic(cluster, prefix: str, partitions: int = 1) -> str:
    name = unique_topic(prefix)
    cluster.create_topic(name, partitions=partitions, replication_factor=3,
                         config={"min.insync.replicas": 2})
    return name


def full_isr(cluster, topic: str, timeout: float = 30.0) -> dict:
    def check():
        states = cluster.partition_states(topic)
        return states if states and all(len(s.isr) == 3 and s.leader >= 0
                                        for s in states.values()) else None
    return wait_until(check, timeout, message=f"{topic}: every replica in the ISR")


def producer(cluster, **conf) -> Producer:
    return Producer({"bootstrap.servers": cluster.bootstrap_servers, "acks": "all",
                     "enable.idempotence": True, "linger.ms": 5,
                     "message.timeout.ms": 60000, **conf})


def read_partition(cluster, topic: str, partition: int, end: int, timeout: float = 60.0,
                   **conf) -> list[tuple[int, bytes]]:
    c = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": "unused",
                  "enable.auto.commit": False, **conf})
    try:
        c.assign([CkTopicPartition(topic, partition, 0)])
        out = []
        deadline = time.monotonic() + timeout
        while (not out or out[-1][0] < end - 1) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                out.append((m.offset(), m.value()))
        return out
    finally:
        c.close()


def same_replicas(cluster, topic: str, partitions, high_watermarks: dict) -> None:
    """Every replica's batches below the high watermark: the same offsets, epochs, CRCs."""
    dirs = {n.node_id: n.data_dir for n in cluster.brokers}
    logs = replica_logs(dirs, topic, partitions)
    for p, by_node in logs.items():
        hw = high_watermarks[p]
        views = {n: [(b.base_offset, b.partition_leader_epoch, b.crc) for b in batches
                     if b.last_offset < hw] for n, batches in by_node.items()}
        assert len(views) == 3, f"partition {p}: replicas on {sorted(views)}"
        first = next(iter(views.values()))
        assert first and all(v == first for v in views.values()), (p, views)


# --------------------------------------------------------------------------- the data
def test_acks_all_records_are_on_every_replica(cluster):
    whole(cluster)
    topic = rf3_topic(cluster, "rf3", partitions=3)
    p = producer(cluster)
    acked = []
    for i in range(3000):
        p.produce(topic, key=b"k%d" % (i % 50), value=b"v%d" % i,
                  on_delivery=lambda e, m: acked.append(e is None))
        if i % 500 == 0:
            p.flush(30)
    assert p.flush(30) == 0
    assert len(acked) == 3000 and all(acked)
    ends = cluster.list_offsets(topic)
    assert sum(ends.values()) == 3000
    # The followers' copies reach the leader's end, then are compared on disk.
    wait_until(lambda: all(len(s.isr) == 3 for s in cluster.partition_states(topic).values()),
               15)
    wait_until(lambda: all(
        all(bs and bs[-1].last_offset + 1 >= ends[p] for bs in by_node.values())
        for p, by_node in replica_logs({n.node_id: n.data_dir for n in cluster.brokers},
                                       topic, range(3)).items()), 15,
        message="followers caught up")
    same_replicas(cluster, topic, range(3), ends)


def test_kill_leader_during_idempotent_acks_all_produce(cluster):
    whole(cluster)
    topic = rf3_topic(cluster, "killlead")
    full_isr(cluster, topic)
    leader = cluster.partition_states(topic)[0].leader
    p = producer(cluster)
    acked: list[tuple[float, bytes, int]] = []
    failed = []
    stop = threading.Event()

    def run():
        i = 0
        while not stop.is_set() and i < 20000:
            v = b"m%06d" % i
            p.produce(topic, value=v, partition=0, on_delivery=lambda e, m, v=v: (
                acked.append((time.monotonic(), v, m.offset())) if e is None
                else failed.append((v, str(e)))))
            p.poll(0.005)
            i += 1
        p.flush(60)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    wait_until(lambda: len(acked) > 300, 20, message="records acknowledged before the kill")
    killed_at = time.monotonic()
    cluster.node(leader).kill()
    wait_until(lambda: any(ts > killed_at + 0.2 for ts, _, _ in acked), 60,
               message="an acknowledged record after the kill")
    failover_s = min(ts for ts, _, _ in acked if ts > killed_at + 0.2) - killed_at
    new = cluster.partition_states(topic)[0]
    assert new.leader not in (-1, leader) and leader not in new.isr
    wait_until(lambda: len(acked) > 600 and acked[-1][0] > killed_at + 1, 30)
    cluster.node(leader).start()
    stop.set()
    t.join(90)
    assert not t.is_alive()
    print(f"\nkill -9 of the leader to the next acknowledged record: {failover_s:.2f} s "
          f"({len(acked)} acknowledged, {len(failed)} failed)")
    record_timings("replication", {"leader_kill_to_next_ack_s": round(failover_s, 2)},
                   "KAFKETTE_CLUSTER_TIMINGS")
    end = cluster.list_offsets(topic)[0]
    got = read_partition(cluster, topic, 0, end)
    values = [v for _, v in got]
    assert len(values) == len(set(values)), "a value was written twice"
    seen = {v: o for o, v in got}
    lost = [(v, o) for _, v, o in acked if seen.get(v) != o]
    assert not lost, f"{len(lost)} acknowledged records lost or moved, e.g. {lost[:3]}"
    # The old leader comes back as a follower, catches up and rejoins the ISR.
    states = full_isr(cluster, topic, 60)
    end = cluster.list_offsets(topic)[0]
    same_replicas(cluster, topic, [0], {0: end})
    assert states[0].leader_epoch > 0


def test_delete_records_answers_once_every_replica_moved_its_log_start(cluster):
    """DeleteRecords on an RF 3 topic is answered once every replica's log start
    offset has reached the offset (Kafka's DelayedDeleteRecords), and the followers'
    logs then start there too: after a failover the new leader serves from it."""
    from kafkette.protocol.messages import DeleteRecordsRequest
    whole(cluster)
    topic = rf3_topic(cluster, "delrec")
    full_isr(cluster, topic)
    p = producer(cluster)
    for i in range(20):
        p.produce(topic, value=b"d%d" % i, partition=0)
    assert p.flush(30) == 0
    state = cluster.partition_states(topic)[0]
    T = DeleteRecordsRequest.DeleteRecordsTopic
    r = cluster.request(DeleteRecordsRequest(topics=[T(name=topic, partitions=[
        T.DeleteRecordsPartition(partition_index=0, offset=12)])], timeout_ms=10000), 2,
                        via=state.leader)
    part = r.topics[0].partitions[0]
    assert (part.error_code, part.low_watermark) == (0, 12)
    # Every replica holds only offsets from 12 on: a leader elected now starts there.
    cluster.node(state.leader).stop()
    try:
        wait_until(lambda: cluster.partition_states(topic)[0].leader not in (-1, state.leader),
                   30, message="a new leader")
        got = read_partition(cluster, topic, 0, 20, **{"auto.offset.reset": "earliest"})
        assert [o for o, _ in got] == list(range(12, 20))
    finally:
        cluster.node(state.leader).start()


def test_stopped_follower_leaves_the_isr_and_rejoins(cluster):
    whole(cluster)
    topic = rf3_topic(cluster, "lagging")
    full_isr(cluster, topic)
    state = cluster.partition_states(topic)[0]
    follower = next(r for r in state.replicas if r != state.leader
                    and r != cluster.controller_id())
    p = producer(cluster)
    cluster.node(follower).pause()
    try:
        t0 = time.monotonic()
        for i in range(50):
            p.produce(topic, value=b"x%d" % i, partition=0)
        # acks=all completes once the ISR no longer waits for the stopped follower.
        assert p.flush(60) == 0
        wait_until(lambda: follower not in cluster.partition_states(topic)[0].isr, 30,
                   message="the stopped follower leaves the ISR")
        print(f"\nstopped follower out of the ISR after {time.monotonic() - t0:.1f} s")
    finally:
        cluster.node(follower).resume()
    full_isr(cluster, topic, 60)


def test_consumer_fetches_from_the_follower_in_its_rack(cluster):
    whole(cluster)
    topic = rf3_topic(cluster, "rack")
    full_isr(cluster, topic)
    state = cluster.partition_states(topic)[0]
    follower = next(r for r in state.replicas if r != state.leader)
    p = producer(cluster)
    for i in range(200):
        p.produce(topic, value=b"r%d" % i, partition=0)
    assert p.flush(30) == 0
    stats = []
    c = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": "unused",
                  "enable.auto.commit": False, "client.rack": f"rack-{follower}",
                  "statistics.interval.ms": 500, "stats_cb": stats.append})
    try:
        c.assign([CkTopicPartition(topic, 0, 0)])
        got = 0
        deadline = time.monotonic() + 30
        fetched_from = set()
        while time.monotonic() < deadline and (got < 200 or follower not in fetched_from):
            m = c.poll(0.5)
            if m is not None and not m.error():
                got += 1
            for s in stats:
                part = json.loads(s)["topics"].get(topic, {}).get("partitions", {}).get("0")
                if part is not None and part.get("broker", -1) >= 0:
                    assert part["leader"] == state.leader
                    fetched_from.add(part["broker"])
            stats.clear()
        assert got == 200
        # librdkafka reports the broker it fetches from: the follower in its rack.
        assert follower in fetched_from, fetched_from
    finally:
        c.close()


def test_group_offsets_survive_the_coordinators_broker(cluster):
    whole(cluster)
    topic = rf3_topic(cluster, "grp")
    group = unique_topic("group")
    p = producer(cluster)
    for i in range(100):
        p.produce(topic, value=b"g%d" % i, partition=0)
    assert p.flush(30) == 0

    def member():
        return Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "session.timeout.ms": 6000})
    c = member()
    try:
        c.subscribe([topic])
        read = 0
        deadline = time.monotonic() + 60
        while read < 40 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                read += 1
        assert read == 40
        c.commit(asynchronous=False)
        committed = c.committed([CkTopicPartition(topic, 0)], timeout=10)[0].offset
        assert committed == 40
    finally:
        c.close()
    from kafkette.coordinator.partitioning import offsets_partition_for
    offsets = cluster.partition_states("__consumer_offsets")
    coordinator = offsets[offsets_partition_for(group, len(offsets))].leader
    cluster.node(coordinator).kill()
    c = member()
    try:
        got = wait_until(lambda: c.committed([CkTopicPartition(topic, 0)], timeout=5)[0].offset
                         if c.committed([CkTopicPartition(topic, 0)], timeout=5)[0].offset >= 0
                         else None, 60, message="the committed offset from a new coordinator")
        assert got == 40
    finally:
        c.close()
        cluster.node(coordinator).start()
    whole(cluster)


def test_unreplicated_tail_of_an_old_leader_is_truncated(cluster):
    """RF 2, min.insync.replicas 2 on the two nodes that are not the controller. The
    follower stops: the ISR shrinks to the leader, acks=all is refused
    (NOT_ENOUGH_REPLICAS) and the high watermark stops, while acks=1 records still go to
    the leader's log (its unreplicated tail). Then the leader stops and the follower
    returns: it is elected from the ELR (KIP-966), and when the old leader comes back it
    truncates the tail it alone had and follows."""
    from kafkette.protocol.messages import CreateTopicsRequest
    whole(cluster)
    controller = cluster.controller_id()
    a, b = [n.node_id for n in cluster.brokers if n.node_id != controller]
    topic = unique_topic("tail")
    T = CreateTopicsRequest.CreatableTopic
    r = cluster.request(CreateTopicsRequest(topics=[T(
        name=topic, num_partitions=-1, replication_factor=-1,
        assignments=[T.CreatableReplicaAssignment(partition_index=0, broker_ids=[a, b])],
        configs=[T.CreatableTopicConfig(name="min.insync.replicas", value="2")])],
        timeout_ms=10000, validate_only=False), 5)
    assert r.topics[0].error_code == 0, r
    wait_until(lambda: cluster.partition_states(topic).get(0) is not None and
               len(cluster.partition_states(topic)[0].isr) == 2, 30)
    leader, follower = a, b
    p = producer(cluster)
    for i in range(20):
        p.produce(topic, value=b"committed-%d" % i, partition=0)
    assert p.flush(30) == 0
    committed_end = cluster.list_offsets(topic)[0]
    assert committed_end == 20

    cluster.node(follower).pause()
    try:
        wait_until(lambda: cluster.partition_states(topic)[0].isr == (leader,), 30,
                   message="the stopped follower leaves the ISR")
        # acks=all is refused before appending (librdkafka would retry it until its
        # message timeout; a raw Produce shows the broker's answer).
        from kafkette.protocol.messages import ProduceRequest
        TD = ProduceRequest.TopicProduceData
        answer = cluster.request(ProduceRequest(transactional_id=None, acks=-1, timeout_ms=5000,
                                                topic_data=[TD(name=topic, partition_data=[
                                                    TD.PartitionProduceData(
                                                        index=0, records=build_record_batch(
                                                            [(None, b"refused")]))])]),
                                 9, via=leader)
        assert answer.responses[0].partition_responses[0].error_code == NOT_ENOUGH_REPLICAS
        p1 = Producer({"bootstrap.servers": cluster.bootstrap_servers, "acks": 1,
                       "enable.idempotence": False})
        for i in range(10):
            p1.produce(topic, value=b"tail-%d" % i, partition=0)
        assert p1.flush(30) == 0
        assert cluster.list_offsets(topic)[0] == committed_end, "the high watermark moved"
        cluster.node(leader).pause()
    finally:
        cluster.node(follower).resume()
    try:
        wait_until(lambda: cluster.partition_states(topic, via=follower)[0].leader == follower,
                   30, message="the follower is elected from the ELR")
    finally:
        cluster.node(leader).resume()
    # The old leader truncates its tail and follows; the ISR is whole again.
    wait_until(lambda: len(cluster.partition_states(topic)[0].isr) == 2, 60,
               message="the old leader rejoins the ISR")
    got = [v for _, v in read_partition(cluster, topic, 0, committed_end)]
    assert [v for v in got if v.startswith(b"committed-")] == [b"committed-%d" % i
                                                              for i in range(20)]
    assert not [v for v in got if v.startswith(b"tail-")]
    logs = replica_logs({n.node_id: n.data_dir for n in cluster.brokers}, topic, [0])[0]
    ends = {n: (bs[-1].last_offset + 1 if bs else 0) for n, bs in logs.items()}
    assert ends[leader] == ends[follower], ends
