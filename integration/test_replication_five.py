"""A 5-node cluster (five controller voters, so the quorum outlives two brokers): a topic
with replication factor 3 and min.insync.replicas 2 loses two of its three replicas to
kill -9, and every acknowledged acks=all record that the survivor knew to be committed
(its high watermark; see below) is still readable from it once the controller elects it
leader (from the ISR, or the ELR of KIP-966). When the two come back they catch up and
rejoin the ISR.
"""
from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition as CkTopicPartition

from itutil import unique_topic, wait_until
from kafkette.protocol.messages import FetchRequest

pytestmark = pytest.mark.timeout(240)


def test_rf3_survives_the_loss_of_two_brokers(tmp_path):
    from kafkette.embedded_cluster import EmbeddedCluster
    with EmbeddedCluster(5, {"replica.lag.time.max.ms": 3000}, log_dir=tmp_path) as kc:
        topic = unique_topic("two-lost")
        kc.create_topic(topic, partitions=1, replication_factor=3,
                        config={"min.insync.replicas": 2})
        wait_until(lambda: len(kc.partition_states(topic)[0].isr) == 3, 30)
        state = kc.partition_states(topic)[0]
        p = Producer({"bootstrap.servers": kc.bootstrap_servers, "acks": "all",
                      "enable.idempotence": True, "linger.ms": 5})
        acked = []
        for i in range(1000):
            p.produce(topic, value=b"s%04d" % i, partition=0,
                      on_delivery=lambda e, m: acked.append((m.value(), m.offset()))
                      if e is None else None)
        assert p.flush(30) == 0 and len(acked) == 1000
        # A follower learns the high watermark from its next fetch answer (at once here:
        # a parked follower fetch is woken when it moves). The survivor must know it:
        # as in Kafka with KIP-966, a leader whose ISR is below min.insync.replicas keeps
        # its high watermark where it is, and records acknowledged in the last
        # milliseconds before the failure become readable only when a second replica is
        # back. A v11 Fetch to a follower answers with the follower's high watermark.
        def follower_hw(node):
            F = FetchRequest.FetchTopic
            r = kc.request(FetchRequest(replica_id=-1, max_wait_ms=0, min_bytes=0,
                                        max_bytes=1, isolation_level=0, session_id=0,
                                        session_epoch=-1, rack_id="", topics=[F(
                                            topic=topic, partitions=[F.FetchPartition(
                                                partition=0, fetch_offset=0,
                                                partition_max_bytes=1)])],
                                        forgotten_topics_data=[]), 11, via=node)
            return r.responses[0].partitions[0].high_watermark
        for r in state.replicas:
            wait_until(lambda r=r: follower_hw(r) == 1000, 10,
                       message=f"replica {r} knows the high watermark")
        controller = kc.controller_id()
        # Two replicas go, the active controller's node kept out of it where it can be
        # (the quorum of five survives either way: three voters are left).
        doomed = sorted(state.replicas, key=lambda r: (r == controller, r))[:2]
        survivor = next(r for r in state.replicas if r not in doomed)
        for r in doomed:
            kc.node(r).kill()
        t0 = time.monotonic()
        def survivor_leads():
            s = kc.partition_states(topic, via=survivor)[0]
            return s if s.leader == survivor else None
        after = wait_until(survivor_leads, 60, message="the survivor leads")
        print(f"\ntwo of three replicas killed: the survivor leads after "
              f"{time.monotonic() - t0:.1f} s (ISR {after.isr})")
        c = Consumer({"bootstrap.servers": kc.bootstrap_servers, "group.id": "unused",
                      "enable.auto.commit": False})
        try:
            c.assign([CkTopicPartition(topic, 0, 0)])
            got = {}
            deadline = time.monotonic() + 60
            while len(got) < 1000 and time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is not None and not m.error():
                    got[m.value()] = m.offset()
        finally:
            c.close()
        missing = [(v, o) for v, o in acked if got.get(v) != o]
        assert not missing, f"{len(missing)} acknowledged records not readable: {missing[:3]}"
        for r in doomed:
            kc.node(r).start()
        wait_until(lambda: len(kc.partition_states(topic)[0].isr) == 3, 60,
                   message="the returned replicas rejoin the ISR")
