"""A 3-node cluster of real `kafkette serve` processes (combined broker + controller
voters, the Raft quorum of kafkette/controller/raft), run by kafkette.EmbeddedCluster
(3 s broker sessions, 500 ms heartbeats); also the `kafkette_cluster` fixture of the
pytest plugin and the `kafkette cluster` command.

The tests run in file order on one cluster; each disruptive test leaves it whole again
(every node running, listed and unfenced) and starts by checking that it is.

- CreateTopics with manual replica assignments and ElectLeaders, sent to a follower
  node, are run by the active controller;
- a 6-partition topic has leaders on all three brokers, the same on every node;
- kafka-python and confluent-kafka produce to and consume from all six partitions;
- a Produce to a broker that does not lead the partition gets NOT_LEADER_OR_FOLLOWER
  with the leader and its address (KIP-951);
- a consumer group of two members (kafka-python + confluent-kafka) spans the brokers
  and commits; a restarted member resumes from the committed offsets;
- kill -9 of the active controller: a new one is elected and CreateTopics works again
  (the time from the kill to the first successful CreateTopics is printed, with -s, and
  written to $KAFKETTE_CLUSTER_TIMINGS when set); restarted, the node catches up (sees
  the topic created while it was down) and rejoins unfenced;
- SIGTERM of the active controller hands over at once (it resigns and is fenced);
- SIGSTOP of the active controller: another is elected, and after SIGCONT the old one
  follows it;
- SIGSTOP of a broker past its session timeout: it is fenced (Metadata from another
  node no longer lists it, its partitions have leader -1), and after SIGCONT it is
  listed again and leads its partitions again;
- `kafkette cluster --brokers 3` starts a cluster, stops it on Ctrl-C (exit code 0, no
  node left), and brings it back with its data from the same directory;
- a user's test suite gets a cluster from the `kafkette_cluster` fixture.

Every wait is a condition with a deadline.
"""
from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition as CkTopicPartition
from kafka import KafkaConsumer, TopicPartition

from it_clients import ConfluentMember, KafkaPythonMember, members, produce_to_partitions, \
    read_all
from itutil import build_record_batch, record_timings, unique_topic, wait_until
from kafkette.embedded_cluster import CLUSTER_TEST_DEFAULTS

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(180)

PARTITIONS = 6
NOT_LEADER_OR_FOLLOWER = 6
LEADER_NOT_AVAILABLE = 5
UNKNOWN_TOPIC, ELECTION_NOT_NEEDED = 3, 84
SESSION_S = CLUSTER_TEST_DEFAULTS["broker.session.timeout.ms"] / 1000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # Module scope (the plugin's kafkette_cluster is session-wide by default, and would
    # keep three idle nodes running through the rest of the integration tier); the
    # node logs stay in pytest's temporary directory for a post-mortem.
    from kafkette.embedded_cluster import EmbeddedCluster
    logs = tmp_path_factory.mktemp("cluster-logs")
    with EmbeddedCluster(3, log_dir=logs) as kc:
        yield kc


@pytest.fixture(autouse=True)
def _node_logs_on_failure(request, cluster):
    yield
    rep = getattr(request.node, "rep_call", None)  # set by conftest's makereport hook
    if rep is not None and rep.failed:
        print(f"\n{cluster!r}\n{cluster.log_tails(80)}")


@pytest.fixture(scope="module")
def topic6(cluster):
    name = unique_topic("cluster6")
    cluster.create_topic(name, partitions=PARTITIONS)
    return name


def whole(cluster) -> int:
    """Every node running, listed by every node, one controller; returns its id."""
    assert all(n.is_running() and not n.paused for n in cluster.brokers), cluster
    return cluster.wait_ready(timeout=30)


def listed(cluster, via) -> list[int]:
    ids, _ = cluster.view(via)
    return ids


def new_controller(cluster, via, old: int) -> int | None:
    """The controller `via` reports when it is another than `old` (and not none)."""
    c = cluster.controller_id(via=via)
    return c if c not in (-1, old) else None


# --------------------------------------------------------------------------- forwarding
def test_admin_requests_to_a_broker_that_is_not_the_controller_are_forwarded(cluster):
    """CreatePartitions, IncrementalAlterConfigs and DeleteTopics sent to a follower
    node are run by the active controller, and every node sees the result; producer
    ids handed out by a follower come from blocks the controller allocates."""
    from kafkette.protocol.messages import (CreatePartitionsRequest, DeleteTopicsRequest,
                                            IncrementalAlterConfigsRequest,
                                            InitProducerIdRequest)
    controller = whole(cluster)
    via = next(n.node_id for n in cluster.brokers if n.node_id != controller)
    name = unique_topic("forwarded")
    cluster.create_topic(name, partitions=2)

    T = CreatePartitionsRequest.CreatePartitionsTopic
    r = cluster.request(CreatePartitionsRequest(topics=[T(name=name, count=5, assignments=None)],
                                                timeout_ms=10000, validate_only=False), 3,
                        via=via)
    assert [(x.name, x.error_code) for x in r.results] == [(name, 0)]
    for n in cluster.brokers:
        wait_until(lambda n=n: len(cluster.leaders(name, via=n.node_id)) == 5, 15,
                   message=f"node {n.node_id} sees 5 partitions")

    R = IncrementalAlterConfigsRequest.AlterConfigsResource
    r = cluster.request(IncrementalAlterConfigsRequest(resources=[R(
        resource_type=2, resource_name=name,
        configs=[R.AlterableConfig(name="retention.ms", config_operation=0,
                                   value="3600000")])], validate_only=False), 1, via=via)
    assert [x.error_code for x in r.responses] == [0]

    pids = set()
    for _ in range(3):
        r = cluster.request(InitProducerIdRequest(transactional_id=None,
                                                  transaction_timeout_ms=60000,
                                                  producer_id=-1, producer_epoch=-1), 4,
                            via=via)
        assert r.error_code == 0
        pids.add(r.producer_id)
    assert len(pids) == 3

    r = cluster.request(DeleteTopicsRequest(topic_names=[name], timeout_ms=10000), 5, via=via)
    assert [(x.name, x.error_code) for x in r.responses] == [(name, 0)]
    for n in cluster.brokers:
        wait_until(lambda n=n: name not in {t.name for t in cluster.metadata(
            via=n.node_id, topics=None).topics}, 15,
                   message=f"node {n.node_id} dropped {name}")


def test_manual_assignment_and_elect_leaders_through_a_follower(cluster):
    """CreateTopics with replica assignments and ElectLeaders sent to a follower node
    are run by the active controller (ElectLeaders is forwarded like CreateTopics)."""
    from kafkette.protocol.messages import CreateTopicsRequest, ElectLeadersRequest
    controller = whole(cluster)
    via = next(n.node_id for n in cluster.brokers if n.node_id != controller)
    name = unique_topic("assigned")
    T = CreateTopicsRequest.CreatableTopic
    A = T.CreatableReplicaAssignment
    r = cluster.request(CreateTopicsRequest(topics=[T(
        name=name, num_partitions=-1, replication_factor=-1, configs=[],
        assignments=[A(partition_index=0, broker_ids=[via]),
                     A(partition_index=1, broker_ids=[controller])])],
        timeout_ms=10000, validate_only=False), 7, via=via)
    assert (r.topics[0].error_code, r.topics[0].num_partitions) == (0, 2)
    wait_until(lambda: cluster.leaders(name, via=via) == {0: via, 1: controller}, 15,
               message="the assigned leaders")
    TP = ElectLeadersRequest.TopicPartitions
    r = cluster.request(ElectLeadersRequest(election_type=0, timeout_ms=10000,
                                            topic_partitions=[TP(topic=name,
                                                                 partitions=[0, 1, 9])]),
                        2, via=via)
    assert r.error_code == 0
    assert [(p.partition_id, p.error_code) for p in r.replica_election_results[0].partition_result
            ] == [(0, ELECTION_NOT_NEEDED), (1, ELECTION_NOT_NEEDED), (9, UNKNOWN_TOPIC)]


# --------------------------------------------------------------------------- placement

def test_a_topic_has_leaders_on_all_three_brokers(cluster, topic6):
    whole(cluster)
    views = {n.node_id: cluster.leaders(topic6, via=n) for n in cluster.brokers}
    first = views[1]
    assert sorted(first) == list(range(PARTITIONS))
    assert set(first.values()) == {1, 2, 3}, first
    # Evenly: 6 partitions over 3 brokers is 2 each.
    assert sorted(list(first.values()).count(b) for b in (1, 2, 3)) == [2, 2, 2], first
    assert all(v == first for v in views.values()), views
    md = cluster.metadata([topic6], via=2)
    assert md.cluster_id == cluster.cluster_id
    assert sorted((b.node_id, b.port) for b in md.brokers) == \
        [(n.node_id, n.port) for n in cluster.brokers]


# --------------------------------------------------------------------------- clients

def test_clients_produce_and_consume_across_the_brokers(cluster, topic6):
    whole(cluster)
    bootstrap = cluster.bootstrap_servers
    acked = produce_to_partitions(bootstrap, topic6, 60, PARTITIONS)
    assert {p: len(rows) for p, rows in acked.items()} == {p: 10 for p in range(PARTITIONS)}

    delivered, failed = [], []

    def on_delivery(err, msg):
        (failed if err else delivered).append(err or (msg.partition(), msg.offset(),
                                                      msg.value()))
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5,
                  "message.timeout.ms": 20000})
    for i in range(60):
        p.produce(topic6, key=b"ck-%d" % (i % 7), value=b"ck-value-%d" % i,
                  partition=i % PARTITIONS, on_delivery=on_delivery)
    assert p.flush(30) == 0
    assert failed == []
    assert len(delivered) == 60

    expected = {q: [v for _, _, v in acked[q]] +
                [v for part, _, v in sorted(delivered) if part == q]
                for q in range(PARTITIONS)}
    assert all(len(vs) == 20 for vs in expected.values())

    # kafka-python reads every partition from its leader.
    got = read_all(bootstrap, topic6, range(PARTITIONS))
    assert {q: [r.value for r in rs] for q, rs in got.items()} == expected
    assert all([r.offset for r in rs] == list(range(20)) for rs in got.values())

    # confluent-kafka too.
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic("assign"),
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        c.assign([CkTopicPartition(topic6, q, 0) for q in range(PARTITIONS)])
        seen: dict[int, list[bytes]] = {q: [] for q in range(PARTITIONS)}

        def all_read():
            for m in c.consume(num_messages=200, timeout=0.2):
                assert m.error() is None, m.error()
                seen[m.partition()].append(m.value())
            return sum(map(len, seen.values())) >= 120
        wait_until(all_read, timeout=30, message="confluent-kafka to read 120 records")
        assert seen == expected
    finally:
        c.close()


def test_produce_to_a_broker_that_does_not_lead_gets_not_leader(cluster, topic6):
    from kafkette.protocol.messages import ProduceRequest
    whole(cluster)
    leaders = cluster.leaders(topic6)
    partition, leader = next(iter(sorted(leaders.items())))
    wrong = next(n for n in cluster.brokers if n.node_id != leader)
    D = ProduceRequest.TopicProduceData
    req = ProduceRequest(acks=-1, timeout_ms=5000, topic_data=[D(
        name=topic6, partition_data=[D.PartitionProduceData(
            index=partition, records=build_record_batch([(b"k", b"misrouted")]))])])
    resp = cluster.request(req, 11, via=wrong)
    part = resp.responses[0].partition_responses[0]
    assert part.error_code == NOT_LEADER_OR_FOLLOWER
    # KIP-951: the new leader and where to find it.
    assert part.current_leader.leader_id == leader
    assert [(e.node_id, e.port) for e in resp.node_endpoints] == \
        [(leader, cluster.node(leader).port)]
    # The leader itself takes it.
    ok = cluster.request(req, 11, via=leader).responses[0].partition_responses[0]
    assert ok.error_code == 0 and ok.base_offset >= 0


# --------------------------------------------------------------------------- groups

def test_a_group_spans_the_brokers_and_a_restarted_member_resumes(cluster):
    whole(cluster)
    topic = unique_topic("cluster-group")
    group = unique_topic("g")
    cluster.create_topic(topic, partitions=PARTITIONS)
    leaders = cluster.leaders(topic)
    bootstrap = cluster.bootstrap_servers
    fast = {"kp": dict(heartbeat_interval_ms=500, session_timeout_ms=10000),
            "ck": {"heartbeat.interval.ms": 500, "session.timeout.ms": 10000}}
    a = KafkaPythonMember(bootstrap, group, [topic], name="kp-a", **fast["kp"])
    b = ConfluentMember(bootstrap, group, [topic], name="ck-b", **fast["ck"])

    def keys(ms):
        return [(r[1], r[2]) for m in ms for r in m.snapshot_records()]

    with members(a):
        with members(b):
            def split():
                parts = (a.partitions(topic), b.partitions(topic))
                a.check(), b.check()
                return (all(parts) and not parts[0] & parts[1]
                        and parts[0] | parts[1] == set(range(PARTITIONS)))
            wait_until(split, timeout=45, message="two members to split 6 partitions")
            # Produced once the group is stable, so no rebalance hands a partition to a
            # member that starts over from uncommitted offsets.
            produce_to_partitions(bootstrap, topic, 60, PARTITIONS)
            wait_until(lambda: len(keys([a, b])) >= 60, timeout=30,
                       message="the 60 records to be read")
            assert sorted(keys([a, b])) == [(q, o) for q in range(PARTITIONS)
                                            for o in range(10)]
            # The group spans the brokers: its members fetch from all three leaders,
            # each from more than one.
            for m in (a, b):
                assert len({leaders[q] for q in m.partitions(topic)}) >= 2, (m, leaders)
            a.call(lambda c: c.commit())
            b.call(lambda c: c.commit(asynchronous=False))
        # b left the group (LeaveGroup on close); a restarted member comes back.
        b2 = ConfluentMember(bootstrap, group, [topic], name="ck-b2", **fast["ck"])
        before = len(a.snapshot_records())
        with members(b2):
            def split_again():
                parts = (a.partitions(topic), b2.partitions(topic))
                a.check(), b2.check()
                return all(parts) and parts[0] | parts[1] == set(range(PARTITIONS))
            wait_until(split_again, timeout=45, message="the restarted member to join")
            produce_to_partitions(bootstrap, topic, 30, PARTITIONS, start=60)
            new = lambda: a.snapshot_records()[before:] + b2.snapshot_records()  # noqa: E731
            wait_until(lambda: len(new()) >= 30, timeout=30,
                       message="the 30 new records to be read")
            # Exactly the new records: nobody started over from offset 0, the
            # committed offsets (10 per partition) were the starting points.
            assert sorted((r[1], r[2]) for r in new()) == \
                [(q, o) for q in range(PARTITIONS) for o in range(10, 15)]
            assert b2.snapshot_records(), "the restarted member read nothing"

    # The commits are on the coordinator, whichever broker that is.
    with KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                       enable_auto_commit=False) as c:
        committed = {q: c.committed(TopicPartition(topic, q)) for q in range(PARTITIONS)}
    assert committed == {q: 10 for q in range(PARTITIONS)}


# --------------------------------------------------------------------------- failover

def test_kill_the_active_controller(cluster, topic6):
    old = whole(cluster)
    victim = cluster.node(old)
    survivors = [n for n in cluster.brokers if n is not victim]
    via = survivors[0]
    from kafkette.protocol.messages import CreateTopicsRequest
    topic = unique_topic("after-failover")
    T = CreateTopicsRequest.CreatableTopic
    req = CreateTopicsRequest(topics=[T(name=topic, num_partitions=3, replication_factor=1,
                                        assignments=[], configs=[])],
                              timeout_ms=5000, validate_only=False)

    elected: dict[str, float] = {}

    def watch_election():
        # Metadata from another survivor than the one CreateTopics goes to, polled
        # apart from it: a CreateTopics waits in the broker while there is no leader.
        other = survivors[1]
        while "s" not in elected and time.monotonic() - t0 < 30:
            try:
                if cluster.controller_id(via=other) not in (-1, old):
                    elected["s"] = time.monotonic() - t0
            except Exception:  # noqa: BLE001 - polled again until the deadline
                pass
            time.sleep(0.02)

    victim.kill()
    t0 = time.monotonic()
    watcher = threading.Thread(target=watch_election, daemon=True)
    watcher.start()

    def created():
        code = cluster.request(req, 7, via=via, timeout=10).topics[0].error_code
        if code == 0:
            return time.monotonic() - t0
        # Retried: NOT_CONTROLLER (41) and REQUEST_TIMED_OUT (7) while there is none.
        assert code in (41, 7), f"CreateTopics failed with error {code}"
        return None
    create_s = wait_until(created, timeout=30, interval=0.02,
                          message="CreateTopics to succeed after the controller died")
    watcher.join(30)
    assert "s" in elected, "no new controller in Metadata"
    new = wait_until(lambda: new_controller(cluster, via, old), timeout=15,
                     message="a new controller")
    assert new in {n.node_id for n in survivors}
    wait_until(lambda: all(cluster.controller_id(via=n) == new for n in survivors),
               timeout=10, message="the survivors to agree on the controller")
    record_timings("cluster failover", {"kill_to_new_controller_s": round(elected["s"], 3),
                                        "kill_to_create_topics_ok_s": round(create_s, 3)},
                   env_var="KAFKETTE_CLUSTER_TIMINGS")

    # The dead node is fenced after its session: survivors stop listing it.
    wait_until(lambda: old not in listed(cluster, via), timeout=SESSION_S + 10,
               message=f"node {old} to be fenced")
    offline = [q for q, leader in cluster.leaders(topic6, via=via).items() if leader == -1]
    assert len(offline) == 2, cluster.leaders(topic6, via=via)

    # Restarted, it catches up (the topic created while it was down) and rejoins.
    victim.start()
    wait_until(lambda: not cluster.metadata([topic], via=victim).topics[0].error_code,
               timeout=30, message=f"node {old} to see the topic created while it was down")
    whole(cluster)
    assert all(old in listed(cluster, n) for n in cluster.brokers)
    wait_until(lambda: -1 not in cluster.leaders(topic6, via=via).values(), timeout=15,
               message="leaders back")
    assert set(cluster.leaders(topic6, via=via).values()) == {1, 2, 3}


def test_sigterm_of_the_active_controller_hands_over_at_once(cluster, topic6):
    """A graceful stop resigns (EndQuorumEpoch, KIP-595) and asks to be fenced (the
    controlled-shutdown heartbeat): no election timeout, no session timeout."""
    old = whole(cluster)
    victim = cluster.node(old)
    via = next(n for n in cluster.brokers if n is not victim)
    t0 = time.monotonic()
    victim.stop()
    wait_until(lambda: new_controller(cluster, via, old), timeout=10, interval=0.01,
               message="a new controller")
    handover_s = time.monotonic() - t0
    wait_until(lambda: old not in listed(cluster, via), timeout=10,
               message=f"node {old} to be fenced")
    fenced_s = time.monotonic() - t0
    # Fenced by its own goodbye, well before a session timeout would have done it.
    assert fenced_s < SESSION_S, fenced_s
    assert handover_s < SESSION_S, handover_s
    victim.start()
    whole(cluster)
    wait_until(lambda: -1 not in cluster.leaders(topic6).values(), timeout=15,
               message="leaders back")
    record_timings("cluster failover", {"sigterm_to_new_controller_s": round(handover_s, 3)},
                   env_var="KAFKETTE_CLUSTER_TIMINGS")


# --------------------------------------------------------------------------- fencing

def test_a_paused_controller_is_replaced_and_steps_down(cluster, topic6):
    old = whole(cluster)
    victim = cluster.node(old)
    via = next(n for n in cluster.brokers if n is not victim)
    victim.pause()
    try:
        new = wait_until(lambda: new_controller(cluster, via, old), timeout=15,
                         message="a new controller")
        wait_until(lambda: old not in listed(cluster, via), timeout=SESSION_S + 10,
                   message=f"node {old} to be fenced")
        assert -1 in cluster.leaders(topic6, via=via).values()
    finally:
        victim.resume()
    # Back from its pause it learns of the higher epoch and follows; nobody goes back
    # to it as the controller while the new one is alive.
    assert whole(cluster) == new
    assert cluster.controller_id(via=victim) == new
    wait_until(lambda: set(cluster.leaders(topic6, via=victim).values()) == {1, 2, 3},
               timeout=15, message="leaders back")

def test_a_paused_broker_is_fenced_and_comes_back(cluster, topic6):
    controller = whole(cluster)
    victim = next(n for n in cluster.brokers if n.node_id != controller)
    via = next(n for n in cluster.brokers if n is not victim)
    led = sorted(q for q, leader in cluster.leaders(topic6).items()
                 if leader == victim.node_id)
    assert len(led) == 2

    victim.pause()
    t0 = time.monotonic()
    try:
        wait_until(lambda: victim.node_id not in listed(cluster, via),
                   timeout=SESSION_S + 10, message=f"node {victim.node_id} to be fenced")
        fenced_s = time.monotonic() - t0
        md = cluster.metadata([topic6], via=via).topics[0]
        parts = {p.partition_index: p for p in md.partitions}
        for q in led:
            assert parts[q].leader_id == -1
            assert parts[q].error_code == LEADER_NOT_AVAILABLE
            assert parts[q].offline_replicas == [victim.node_id]
        assert all(parts[q].leader_id >= 0 for q in parts if q not in led)
        # By its session: not before broker.session.timeout.ms from its last heartbeat
        # (sent up to broker.heartbeat.interval.ms, 0.5 s, before the pause).
        assert fenced_s >= SESSION_S - 1.0, fenced_s
    finally:
        victim.resume()
    wait_until(lambda: victim.node_id in listed(cluster, via), timeout=20,
               message=f"node {victim.node_id} to be listed again")
    wait_until(lambda: all(cluster.leaders(topic6, via=via)[q] == victim.node_id
                           for q in led), timeout=15, message="its leaderships back")
    whole(cluster)
    record_timings("cluster fencing", {"pause_to_fenced_s": round(fenced_s, 3)},
                   env_var="KAFKETTE_CLUSTER_TIMINGS")


# --------------------------------------------------------------------------- the command

def _free_base() -> int:
    """A base port with base..base+2 and base+100..base+102 free."""
    import random
    import socket
    for _ in range(50):
        base = random.randrange(20000, 60000)
        socks = []
        try:
            for port in [base + i for i in range(3)] + [base + 100 + i for i in range(3)]:
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no free port range")


def test_the_cluster_command_starts_stops_and_restarts_a_cluster(tmp_path):
    import os
    import re
    import signal
    import subprocess

    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from itutil import BROKER_PYTHON, PROJECT_ROOT

    base = _free_base()
    data = tmp_path / "kc"
    topic = unique_topic("cmd")

    def launch(n: int):
        out = tmp_path / f"run{n}.out"
        f = open(out, "wb")
        # Its own session: os.killpg() below is what a terminal's Ctrl-C does (SIGINT
        # to the runner and its nodes alike).
        proc = subprocess.Popen([BROKER_PYTHON, "-m", "kafkette", "cluster", "--brokers", "3",
                                 "--base-port", str(base), "--dir", str(data)],
                                cwd=str(PROJECT_ROOT), stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
        f.close()

        def ready():
            assert proc.poll() is None, out.read_text()
            text = out.read_text()
            return text if "bootstrap servers:" in text else None
        text = wait_until(ready, timeout=60, message="`kafkette cluster` to be ready")
        pids = [int(p) for p in re.findall(r"pid (\d+)", text)]
        cid = re.search(r"cluster id (\S+),", text).group(1)
        assert f"bootstrap servers: 127.0.0.1:{base},127.0.0.1:{base + 1},127.0.0.1:{base + 2}" \
            in text
        assert len(pids) == 3
        return proc, pids, cid, out

    def gone(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    proc, pids, cid, out = launch(1)
    try:
        bootstrap = f"127.0.0.1:{base}"
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
        try:
            desc = admin.describe_cluster()
            assert sorted(b["broker_id"] for b in desc["brokers"]) == [1, 2, 3]
            assert desc["controller_id"] in (1, 2, 3)
            assert desc["cluster_id"] == cid
            admin.create_topics([NewTopic(topic, 3, 1)])
        finally:
            admin.close()
        os.killpg(proc.pid, signal.SIGINT)   # Ctrl-C
        assert proc.wait(30) == 0, out.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    wait_until(lambda: all(map(gone, pids)), timeout=10, message="every node to exit")
    assert "stopping 3 node(s)" in out.read_text()
    assert (data / "cluster.id").read_text().strip() == cid
    assert sorted(p.name for p in data.iterdir() if p.is_dir()) == \
        ["node-1", "node-2", "node-3"]

    # Again on the same directory: the same cluster, with its topic; SIGTERM stops it.
    proc, pids, cid2, out = launch(2)
    try:
        assert cid2 == cid
        admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{base + 2}",
                                 request_timeout_ms=15000)
        try:
            wait_until(lambda: topic in admin.list_topics(), timeout=15,
                       message="the topic of the first run")
        finally:
            admin.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, out.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    wait_until(lambda: all(map(gone, pids)), timeout=10, message="every node to exit")


# --------------------------------------------------------------------------- the fixture

USER_SUITE = r'''
from kafka import KafkaProducer


def test_two_nodes_with_the_ini_settings(kafkette_cluster):
    kc = kafkette_cluster
    assert [n.node_id for n in kc.brokers] == [1, 2]
    assert kc.controller_id() in (1, 2)
    kc.create_topic("events", partitions=-1)          # num.partitions from the ini file
    leaders = kc.leaders("events")
    assert sorted(leaders) == [0, 1, 2, 3] and set(leaders.values()) == {1, 2}
    p = KafkaProducer(bootstrap_servers=kc.bootstrap_servers)
    for q in range(4):
        assert p.send("events", b"x", partition=q).get(timeout=20).offset == 0
    p.close()


def test_same_cluster_in_the_module(kafkette_cluster):
    assert "events" in {t.name for t in kafkette_cluster.metadata().topics}
'''


def test_the_kafkette_cluster_fixture(pytester):
    pytester.makepyfile(test_user_cluster=USER_SUITE)
    pytester.makeini("[pytest]\nkafkette_cluster_brokers = 2\n"
                     "kafkette_cluster_config =\n    num.partitions=4\n")
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider",
                                           "--kafkette-cluster-scope=module")
    result.assert_outcomes(passed=2)
