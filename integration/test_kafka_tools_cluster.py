"""Kafka's tools against a 3-broker kafkette cluster (kafkette.EmbeddedCluster): what one
broker cannot show, replicas and ISR in kafka-topics.sh --describe and its partition
reports, and a preferred leader election that moves a leader back.

One module-scoped cluster; every expectation is read from the cluster's own Metadata
(EmbeddedCluster.partition_states), not from the tool under test."""
from __future__ import annotations

import subprocess
import sys

import pytest

from itutil import unique_topic, wait_until

pytestmark = pytest.mark.timeout(240)

LAG_MS = 2000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from kafkette.embedded_cluster import EmbeddedCluster
    logs = tmp_path_factory.mktemp("tools-cluster-logs")
    # no automatic preferred-leader rebalancing: the election below is the tool's doing
    config = {"replica.lag.time.max.ms": LAG_MS, "auto.leader.rebalance.enable": False}
    with EmbeddedCluster(3, config, log_dir=logs) as kc:
        yield kc


@pytest.fixture(autouse=True)
def _node_logs_on_failure(request, cluster):
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"\n{cluster!r}\n{cluster.log_tails(80)}")


def tool(name, *args):
    r = subprocess.run([sys.executable, "-m", f"kafkette.tools.{name}", *args],
                       capture_output=True, text=True, timeout=60)
    return r


def ok(r) -> str:
    assert r.returncode == 0, f"rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def describe_lines(cluster, topic, *extra) -> list[str]:
    return ok(tool("kafka_topics", "--bootstrap-server", cluster.bootstrap_servers,
                   "--describe", "--topic", topic, *extra)).splitlines()


def line(topic, s) -> str:
    ids = ",".join
    return (f"\tTopic: {topic}\tPartition: {s.partition}\tLeader: {s.leader}\t"
            f"Replicas: {ids(map(str, s.replicas))}\tIsr: {ids(map(str, s.isr))}\t"
            f"Elr: \tLastKnownElr: ")


def full_isr(cluster, topic):
    def check():
        st = cluster.partition_states(topic)
        return st if st and all(len(s.isr) == 3 and s.leader >= 0 for s in st.values()) else None
    return wait_until(check, 60, message=f"{topic}: every replica in the ISR")


def test_describe_reports_and_preferred_election(cluster):
    t = unique_topic("rf3")
    bs = ["--bootstrap-server", cluster.bootstrap_servers]
    assert ok(tool("kafka_topics", *bs, "--create", "--topic", t, "--partitions", "2",
                   "--replication-factor", "3", "--config", "min.insync.replicas=2")) == \
        f"Created topic {t}.\n"
    states = full_isr(cluster, t)
    out = describe_lines(cluster, t)
    assert "\tPartitionCount: 2\tReplicationFactor: 3\tConfigs: " in out[0]
    assert "min.insync.replicas=2" in out[0]
    assert out[1:] == [line(t, states[p]) for p in (0, 1)]
    for report in ("--under-replicated-partitions", "--unavailable-partitions",
                   "--under-min-isr-partitions", "--at-min-isr-partitions"):
        assert describe_lines(cluster, t, report) == []

    # the preferred leader (first replica) of partition 0 goes away: its partitions get
    # another leader, the ISR shrinks to 2 = min.insync.replicas
    preferred = states[0].replicas[0]
    cluster.node(preferred).stop()
    try:
        def shrunk():
            st = cluster.partition_states(t)
            return st if all(len(s.isr) == 2 and s.leader >= 0 and s.leader != preferred
                             for s in st.values()) else None
        st = wait_until(shrunk, 60, message="ISR without the stopped broker")
        under = describe_lines(cluster, t, "--under-replicated-partitions")
        assert under == [line(t, st[p]) for p in (0, 1)]
        assert describe_lines(cluster, t, "--at-min-isr-partitions") == under
        assert describe_lines(cluster, t, "--under-min-isr-partitions") == []
        assert describe_lines(cluster, t, "--unavailable-partitions") == []
    finally:
        cluster.restore()
        cluster.wait_ready(timeout=60)
    full_isr(cluster, t)
    assert cluster.partition_states(t)[0].leader != preferred

    le = ["--bootstrap-server", cluster.bootstrap_servers, "--election-type", "PREFERRED",
          "--topic", t, "--partition", "0"]
    assert ok(tool("kafka_leader_election", *le)) == \
        f"Successfully completed leader election (PREFERRED) for partitions {t}-0\n"
    wait_until(lambda: cluster.partition_states(t)[0].leader == preferred, 30,
               message="the preferred replica to lead partition 0 again")
    assert ok(tool("kafka_leader_election", *le)) == \
        f"Valid replica already elected for partitions {t}-0\n"
