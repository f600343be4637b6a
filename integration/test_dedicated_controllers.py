"""Dedicated controllers (KRaft's process.roles): three controller-only voters
(3001-3003) and three broker-only nodes (1-3, Raft observers of the metadata log), all
real processes (EmbeddedCluster(brokers=3, controllers=3)).

- The quorum outlives its brokers: a topic with replication factor 3 loses two of its
  three replicas to kill -9, the controllers (all three still up) elect the survivor,
  and every acknowledged acks=all record is still readable from it. With combined
  nodes the same loss would take two of three voters and with them every election.
- Metadata never lists a controller-only node as a broker, nor names one as the
  controller (a client could not reach it: it opens no client listener).
- A broker that starts after the cluster, with an empty data directory, catches up on
  the metadata log as an observer (it sees the topics created while it was away) and
  leads partitions.
"""
from __future__ import annotations

import shutil
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition as CkTopicPartition

from itutil import unique_topic, wait_until
from kafkette.protocol.messages import FetchRequest

pytestmark = pytest.mark.timeout(240)

BROKERS = {1, 2, 3}
CONTROLLERS = {3001, 3002, 3003}


def _brokers_listed(kc) -> set[int]:
    """Broker ids in Metadata of every running broker; asserts that no answer lists a
    controller-only node, or names one as the controller."""
    seen = set()
    for n in kc.running():
        resp = kc.metadata(topics=[], via=n)
        ids = {b.node_id for b in resp.brokers}
        assert not ids & CONTROLLERS, f"node {n.node_id} lists controllers: {sorted(ids)}"
        assert resp.controller_id not in CONTROLLERS, \
            f"node {n.node_id} names controller {resp.controller_id}"
        seen |= ids
    return seen


def _follower_hw(kc, topic, node) -> int:
    """The high watermark a replica knows (a Fetch v11 from a consumer answers with it)."""
    F = FetchRequest.FetchTopic
    r = kc.request(FetchRequest(replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=1,
                                isolation_level=0, session_id=0, session_epoch=-1, rack_id="",
                                topics=[F(topic=topic, partitions=[F.FetchPartition(
                                    partition=0, fetch_offset=0, partition_max_bytes=1)])],
                                forgotten_topics_data=[]), 11, via=node)
    return r.responses[0].partitions[0].high_watermark


def _read_all(bootstrap: str, topic: str, partition: int, want: int, timeout: float = 60):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused",
                  "enable.auto.commit": False})
    got: dict[bytes, int] = {}
    try:
        c.assign([CkTopicPartition(topic, partition, 0)])
        deadline = time.monotonic() + timeout
        while len(got) < want and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got[m.value()] = m.offset()
    finally:
        c.close()
    return got


def _produce(bootstrap: str, topic: str, partition: int, n: int, prefix: bytes):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                  "enable.idempotence": True, "linger.ms": 5})
    acked: list[tuple[bytes, int]] = []
    for i in range(n):
        p.produce(topic, value=prefix + b"%05d" % i, partition=partition,
                  on_delivery=lambda e, m: acked.append((m.value(), m.offset()))
                  if e is None else None)
    assert p.flush(30) == 0
    return acked


def test_three_controllers_outlive_two_of_three_brokers(tmp_path):
    from kafkette.embedded_cluster import EmbeddedCluster
    n_records = 2000
    with EmbeddedCluster(3, {"replica.lag.time.max.ms": 3000}, controllers=3,
                         log_dir=tmp_path) as kc:
        assert {n.node_id for n in kc.brokers} == BROKERS
        assert {n.node_id for n in kc.controllers} == CONTROLLERS
        assert _brokers_listed(kc) == BROKERS
        q = kc.describe_quorum(via=kc.active_controller())
        assert q.leader_id in CONTROLLERS
        assert {v.replica_id for v in q.current_voters} == CONTROLLERS
        assert {o.replica_id for o in q.observers} == BROKERS   # brokers follow, never vote

        topic = unique_topic("dedicated")
        kc.create_topic(topic, partitions=1, replication_factor=3,
                        config={"min.insync.replicas": 2})
        wait_until(lambda: len(kc.partition_states(topic)[0].isr) == 3, 30)
        state = kc.partition_states(topic)[0]
        acked = _produce(kc.bootstrap_servers, topic, 0, n_records, b"r")
        assert len(acked) == n_records
        # Every replica knows the records are committed before the failure (as in
        # test_replication_five: a leader whose ISR is below min.insync.replicas keeps
        # its high watermark where it is, KIP-966).
        for r in state.replicas:
            wait_until(lambda r=r: _follower_hw(kc, topic, r) == n_records, 10,
                       message=f"replica {r} knows the high watermark")

        # The leader and one follower die: a real election, by the controllers.
        doomed = [state.leader] + [r for r in state.replicas if r != state.leader][:1]
        survivor = next(r for r in state.replicas if r not in doomed)
        controller_before = kc.active_controller()
        kc.kill_brokers(*doomed)
        t0 = time.monotonic()

        def survivor_leads():
            s = kc.partition_states(topic, via=survivor)[0]
            return s if s.leader == survivor else None
        after = wait_until(survivor_leads, 60, message="the survivor leads")
        elected_s = time.monotonic() - t0
        # The quorum never noticed: the same active controller, all voters there.
        assert kc.active_controller() == controller_before
        assert len(kc.running_controllers()) == 3
        assert _brokers_listed(kc) == {survivor}
        got = _read_all(kc.node(survivor).bootstrap_servers, topic, 0, n_records)
        missing = [(v, o) for v, o in acked if got.get(v) != o]
        print(f"\ndedicated controllers: {n_records} records acked (acks=all, RF 3); brokers "
              f"{doomed} killed; survivor {survivor} leads after {elected_s:.1f} s "
              f"(ISR {after.isr}, leader epoch {after.leader_epoch}); {len(got)} read back")
        assert not missing, f"{len(missing)} acknowledged records not readable: {missing[:3]}"

        # They come back, catch up and rejoin the ISR.
        for r in doomed:
            kc.node(r).start()
        wait_until(lambda: len(kc.partition_states(topic)[0].isr) == 3, 60,
                   message="the returned replicas rejoin the ISR")
        assert _brokers_listed(kc) == BROKERS


def test_a_broker_started_after_the_cluster_catches_up_and_leads(tmp_path):
    from kafkette.embedded_cluster import EmbeddedCluster
    with EmbeddedCluster(3, controllers=3, log_dir=tmp_path) as kc:
        late = kc.node(3)
        kc.stop_brokers(3)
        shutil.rmtree(late.data_dir)          # a new machine: no metadata, no logs
        wait_until(lambda: _brokers_listed(kc) == {1, 2}, 30, message="broker 3 fenced")
        while_away = unique_topic("while-away")
        kc.create_topic(while_away, partitions=2, replication_factor=2)
        acked_away = _produce(kc.bootstrap_servers, while_away, 0, 200, b"a")

        late.start()        # returns once its client listener answers: caught up
        t0 = time.monotonic()
        wait_until(lambda: _brokers_listed(kc) == BROKERS, 30, message="broker 3 unfenced")
        print(f"\nlate broker: unfenced {time.monotonic() - t0:.1f} s after its listener opened "
              f"(start {late.startup_seconds:.1f} s)")
        # It learnt the topic created while it was away, from the metadata log alone.
        t = kc.metadata([while_away], via=3).topics[0]
        assert t.error_code == 0 and len(t.partitions) == 2
        q = kc.describe_quorum(via=kc.active_controller())
        assert 3 in {o.replica_id for o in q.observers}
        assert 3 not in {v.replica_id for v in q.current_voters}

        # It leads: three partitions, one leader per broker (placement spreads leaders).
        topic = unique_topic("late-leads")
        kc.create_topic(topic, partitions=3, replication_factor=3)
        leaders = kc.leaders(topic)
        assert sorted(leaders.values()) == [1, 2, 3], leaders
        mine = next(p for p, leader in leaders.items() if leader == 3)
        acked = _produce(kc.bootstrap_servers, topic, mine, 300, b"l")
        assert len(acked) == 300
        got = _read_all(late.bootstrap_servers, topic, mine, 300)
        assert all(got.get(v) == o for v, o in acked)
        # And the topic written while it was away is readable from the others as before.
        got_away = _read_all(kc.bootstrap_servers, while_away, 0, len(acked_away))
        assert all(got_away.get(v) == o for v, o in acked_away)


def test_the_cluster_command_with_dedicated_controllers(tmp_path):
    """`kafkette cluster --brokers 2 --controllers 3`: five processes, clients see two
    brokers, and an admin client (which sends CreateTopics to Metadata's controller id)
    gets a broker that forwards to the dedicated controller."""
    import os
    import random
    import re
    import signal
    import socket
    import subprocess

    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from itutil import BROKER_PYTHON, PROJECT_ROOT

    def free_base():
        for _ in range(50):
            base = random.randrange(20000, 60000)
            socks = []
            try:
                for port in [base, base + 1] + [base + 100 + i for i in range(3)]:
                    s = socket.socket()
                    socks.append(s)
                    s.bind(("127.0.0.1", port))
                return base
            except OSError:
                continue
            finally:
                for s in socks:
                    s.close()
        raise RuntimeError("no free ports")

    base = free_base()
    out = tmp_path / "run.out"
    with open(out, "wb") as f:
        proc = subprocess.Popen([BROKER_PYTHON, "-m", "kafkette", "cluster", "--brokers", "2",
                                 "--controllers", "3", "--base-port", str(base),
                                 "--dir", str(tmp_path / "kc")],
                                cwd=str(PROJECT_ROOT), stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        def ready():
            assert proc.poll() is None, out.read_text()
            text = out.read_text()
            return text if "bootstrap servers:" in text else None
        text = wait_until(ready, timeout=60, message="`kafkette cluster` to be ready")
        assert "starting 2 broker(s) and 3 controller(s)" in text
        assert f"bootstrap servers: 127.0.0.1:{base},127.0.0.1:{base + 1}\n" in text
        for cid in (3001, 3002, 3003):
            assert f"node {cid} (controller): controller port {base + 100 + cid - 3001}" in text
        active = int(re.search(r"active controller (\d+)", text).group(1))
        assert active in CONTROLLERS
        admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{base}", request_timeout_ms=15000)
        try:
            desc = admin.describe_cluster()
            assert sorted(b["broker_id"] for b in desc["brokers"]) == [1, 2]
            assert desc["controller_id"] in (1, 2)
            topic = unique_topic("cmd-dedicated")
            admin.create_topics([NewTopic(topic, 2, 2)])
            wait_until(lambda: topic in admin.list_topics(), 15, message="the new topic")
        finally:
            admin.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, out.read_text()
        assert "stopping 5 node(s)" in out.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_brokers_follow_a_new_active_controller_after_kill_9(tmp_path):
    """kill -9 of the active controller: the two voters left elect another, the brokers
    (observers) find it from their fetch answers, keep heartbeating (none is fenced),
    and admin requests and consumer groups work through it."""
    from kafkette.embedded_cluster import EmbeddedCluster
    with EmbeddedCluster(3, controllers=3, log_dir=tmp_path) as kc:
        topic = unique_topic("ctl-failover")
        kc.create_topic(topic, partitions=3, replication_factor=3)
        old = kc.active_controller()
        kc.node(old).kill()
        t0 = time.monotonic()
        new = wait_until(lambda: (lambda c: c if c not in (-1, old) else None)(
            kc.active_controller()), 30, message="a new active controller")
        elected_s = time.monotonic() - t0

        def brokers_follow():
            q = kc.describe_quorum(via=new)
            return {o.replica_id for o in q.observers} >= BROKERS and all(
                o.log_end_offset == q.high_watermark for o in q.observers
                if o.replica_id in BROKERS)
        wait_until(brokers_follow, 30, message="every broker fetching from the new leader")
        followed_s = time.monotonic() - t0
        assert new in CONTROLLERS
        assert _brokers_listed(kc) == BROKERS       # no broker lost its session
        second = unique_topic("after-failover")
        kc.create_topic(second, partitions=2, replication_factor=3)
        acked = _produce(kc.bootstrap_servers, second, 1, 100, b"f")
        c = Consumer({"bootstrap.servers": kc.bootstrap_servers, "group.id": unique_topic("g"),
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        got = set()
        try:
            c.subscribe([second])
            deadline = time.monotonic() + 60
            while len(got) < len(acked) and time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is not None and not m.error():
                    got.add(m.value())
            c.commit(asynchronous=False)
        finally:
            c.close()
        assert got == {v for v, _ in acked}
        print(f"\nactive controller {old} killed: {new} elected after {elected_s:.1f} s, "
              f"every broker following it after {followed_s:.1f} s")
