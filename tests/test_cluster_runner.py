"""`kafkette cluster` (kafkette/cluster_runner.py) and EmbeddedCluster's layout: argument
parsing, ports, voters, per-node settings and commands. No process is started here
(integration/test_cluster.py runs real clusters)."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from kafkette import cluster_runner as cr
from kafkette.config import BrokerConfig, parse_quorum_voters
from kafkette.embedded_cluster import CLUSTER_TEST_DEFAULTS, EmbeddedCluster


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="kafkette")
    sub = p.add_subparsers(dest="command", required=True)
    cr.add_parser(sub)
    return p.parse_args(argv)


def sets_of(cmd: list[str]) -> dict[str, str]:
    """The --set key=value pairs of a `kafkette serve` command line."""
    out = {}
    for flag, kv in zip(cmd, cmd[1:]):
        if flag == "--set":
            k, _, v = kv.partition("=")
            out[k] = v
    return out


# --------------------------------------------------------------------------- arguments

def test_defaults_are_three_nodes_from_9092():
    args = parse(["cluster"])
    assert (args.brokers, args.base_port, args.controller_base_port, args.dir) == \
        (3, 9092, None, "kafkette-cluster")
    assert args.func is cr.run


def test_options_and_repeated_sets():
    args = parse(["cluster", "--brokers", "5", "--base-port", "19092",
                  "--controller-base-port", "29092", "--dir", "/tmp/x",
                  "--set", "num.partitions=6", "-s", "log.retention.ms=1000",
                  "--set", "num.partitions=7"])
    assert (args.brokers, args.base_port, args.controller_base_port, args.dir) == \
        (5, 19092, 29092, "/tmp/x")
    assert cr.parse_sets(args.set) == {"num.partitions": "7", "log.retention.ms": "1000"}


def test_the_cli_knows_the_cluster_command(capsys):
    from kafkette.cli import main
    with pytest.raises(SystemExit) as e:
        main(["cluster", "--help"])
    assert e.value.code == 0
    assert "--brokers" in capsys.readouterr().out


@pytest.mark.parametrize("item", ["novalue", "=x", ""])
def test_malformed_set_is_refused(item):
    with pytest.raises(cr.ClusterLayoutError, match="KEY=VALUE"):
        cr.parse_sets([item])


@pytest.mark.parametrize("key", sorted(cr.RESERVED_KEYS))
def test_per_node_keys_cannot_be_set_for_all(key):
    with pytest.raises(cr.ClusterLayoutError, match=key):
        cr.parse_sets([f"{key}=1"])


def test_value_may_contain_equals_signs():
    assert cr.parse_sets(["sasl.jaas.config=a=b"]) == {"sasl.jaas.config": "a=b"}


# --------------------------------------------------------------------------- layout

def test_plan_three_nodes():
    nodes = cr.plan(3, 9092, None, "root")
    assert [n.node_id for n in nodes] == [1, 2, 3]
    assert [n.port for n in nodes] == [9092, 9093, 9094]
    assert [n.controller_port for n in nodes] == [9192, 9193, 9194]
    assert [n.data_dir for n in nodes] == [Path("root/node-1"), Path("root/node-2"),
                                           Path("root/node-3")]
    assert cr.bootstrap_string(nodes) == "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
    assert cr.voters_string(nodes) == \
        "1@127.0.0.1:9192,2@127.0.0.1:9193,3@127.0.0.1:9194"


def test_voters_string_is_what_the_broker_config_parses():
    nodes = cr.plan(5, 30000, 31000, "r")
    voters = parse_quorum_voters(cr.voters_string(nodes).split(","))
    assert [(v.node_id, v.host, v.port) for v in voters] == \
        [(n.node_id, "127.0.0.1", n.controller_port) for n in nodes]


def test_controller_base_port_option():
    nodes = cr.plan(2, 19092, 40000, "r")
    assert [(n.port, n.controller_port) for n in nodes] == [(19092, 40000), (19093, 40001)]


def test_a_single_node_is_a_cluster_of_one():
    (n,) = cr.plan(1)
    assert (n.node_id, n.port, n.controller_port) == (1, 9092, 9192)
    assert cr.voters_string([n]) == "1@127.0.0.1:9192"


@pytest.mark.parametrize("brokers,base,cbase,match", [
    (0, 9092, None, "at least 1"),
    (-2, 9092, None, "at least 1"),
    (3, 65534, 1000, "out of range"),
    (3, 9092, 65534, "out of range"),
    (3, 0, 1000, "out of range"),
    (3, 9092, 9094, "overlap at 9094"),
    (200, 9092, None, "overlap at 9192"),   # 9092..9291 runs into the controller ports
])
def test_bad_layouts_are_refused(brokers, base, cbase, match):
    with pytest.raises(cr.ClusterLayoutError, match=match):
        cr.plan(brokers, base, cbase, "r")


def test_node_config_is_valid_for_serve(tmp_path):
    nodes = cr.plan(3, 9092, None, tmp_path)
    for n in nodes:
        settings = cr.node_config(n, nodes, "abc", {"num.partitions": "6"})
        assert settings == {"node.id": str(n.node_id),
                            "controller.quorum.voters": cr.voters_string(nodes),
                            "cluster.id": "abc", "num.partitions": "6"}
        settings.update({"listeners": f"PLAINTEXT://127.0.0.1:{n.port}",
                         "log.dirs": str(n.data_dir)})
        config = BrokerConfig(settings)
        assert config.node_id == n.node_id
        assert [v.port for v in config.controller_quorum_voters] == [9192, 9193, 9194]


def test_node_config_refuses_reserved_extra():
    nodes = cr.plan(1)
    with pytest.raises(cr.ClusterLayoutError, match="node.id"):
        cr.node_config(nodes[0], nodes, "abc", {"node.id": "7"})


# --------------------------------------------------------------------------- cluster id

def test_cluster_id_is_generated_once_and_kept(tmp_path):
    root = tmp_path / "c"
    first = cr.load_or_create_cluster_id(root)
    assert len(first) == 22 and "=" not in first           # as Kafka's random-uuid
    assert (root / cr.CLUSTER_ID_FILE).read_text().strip() == first
    assert cr.load_or_create_cluster_id(root) == first
    assert cr.new_cluster_id() != first


def test_run_refuses_bad_arguments_before_starting_anything(tmp_path, capsys):
    args = parse(["cluster", "--brokers", "0", "--dir", str(tmp_path / "d")])
    assert cr.run(args) == 2
    assert "at least 1" in capsys.readouterr().err
    args = parse(["cluster", "--dir", str(tmp_path / "d"), "--set", "listeners=x"])
    assert cr.run(args) == 2
    assert not (tmp_path / "d").exists()


# --------------------------------------------------------------------------- EmbeddedCluster

def test_embedded_cluster_layout_without_starting(tmp_path):
    kc = EmbeddedCluster(3, {"num.partitions": 6}, data_dir=tmp_path / "data",
                         log_dir=tmp_path / "logs")
    try:
        assert [n.node_id for n in kc.brokers] == [1, 2, 3]
        ports = [n.port for n in kc.brokers] + [n.controller_port for n in kc.brokers]
        assert len(set(ports)) == 6 and all(p > 0 for p in ports)
        assert kc.bootstrap_servers == ",".join(f"127.0.0.1:{n.port}" for n in kc.brokers)
        voters = kc.voters
        for n in kc.brokers:
            s = sets_of(n.command())
            assert s["node.id"] == str(n.node_id)
            assert s["listeners"] == f"PLAINTEXT://127.0.0.1:{n.port}"
            assert s["log.dirs"] == str(tmp_path / "data" / f"node-{n.node_id}")
            assert s["controller.quorum.voters"] == voters
            assert f"{n.node_id}@127.0.0.1:{n.controller_port}" in voters.split(",")
            assert s["cluster.id"] == kc.cluster_id
            assert s["num.partitions"] == "6"
            assert s["broker.session.timeout.ms"] == \
                str(CLUSTER_TEST_DEFAULTS["broker.session.timeout.ms"])
            assert s["group.initial.rebalance.delay.ms"] == "0"
            assert s["metrics.listener"]  # the fault-injection endpoint
            assert n.log_path == tmp_path / "logs" / f"node-{n.node_id}.log"
        assert kc.running() == []
    finally:
        kc.close()


def test_embedded_cluster_config_wins_over_test_defaults(tmp_path):
    kc = EmbeddedCluster(2, {"broker.session.timeout.ms": 9000, "cluster.id": "fixed"},
                         data_dir=tmp_path)
    try:
        for n in kc.brokers:
            s = sets_of(n.command())
            assert s["broker.session.timeout.ms"] == "9000"
            assert s["cluster.id"] == "fixed"
    finally:
        kc.close()


def test_runner_mode_uses_kafka_defaults_and_fixed_ports(tmp_path):
    kc = EmbeddedCluster(3, {"num.partitions": "2"}, data_dir=tmp_path, base_port=19092,
                         cluster_id="cid", test_defaults=False, log_dir=tmp_path)
    try:
        assert kc.bootstrap_servers == "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"
        for n in kc.brokers:
            s = sets_of(n.command())
            assert s["cluster.id"] == "cid"
            assert "metrics.listener" not in s
            assert "broker.session.timeout.ms" not in s
            assert "offsets.topic.num.partitions" not in s
            assert s["controller.quorum.voters"] == \
                "1@127.0.0.1:19192,2@127.0.0.1:19193,3@127.0.0.1:19194"
    finally:
        kc.close()


@pytest.mark.parametrize("key", ["node.id", "listeners", "controller.quorum.voters"])
def test_embedded_cluster_refuses_per_node_keys(key):
    with pytest.raises(ValueError, match=key):
        EmbeddedCluster(3, {key: "1"})


def test_node_lookup(tmp_path):
    kc = EmbeddedCluster(2, data_dir=tmp_path)
    try:
        assert kc.node(2) is kc.brokers[1]
        with pytest.raises(KeyError):
            kc.node(3)
    finally:
        kc.close()


# --------------------------------------------------------------------------- dedicated controllers

def test_dedicated_layout_brokers_then_controllers_3001(tmp_path):
    nodes = cr.plan(3, 9092, None, tmp_path, controllers=3)
    assert [(n.node_id, n.roles) for n in nodes] == [
        (1, "broker"), (2, "broker"), (3, "broker"),
        (3001, "controller"), (3002, "controller"), (3003, "controller")]
    assert [n.port for n in nodes[:3]] == [9092, 9093, 9094]
    assert [n.controller_port for n in nodes[3:]] == [9192, 9193, 9194]
    assert cr.voters_string(nodes) == "3001@127.0.0.1:9192,3002@127.0.0.1:9193,3003@127.0.0.1:9194"
    assert cr.bootstrap_string(nodes) == "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
    assert nodes[4].data_dir == tmp_path / "node-3002"
    # Every node's settings pass BrokerConfig's role checks.
    for n in nodes:
        s = cr.node_config(n, nodes, "abc")
        assert s["process.roles"] == n.roles
        listeners = (f"PLAINTEXT://127.0.0.1:{n.port}" if n.is_broker
                     else f"CONTROLLER://127.0.0.1:{n.controller_port}")
        config = BrokerConfig({**s, "listeners": listeners, "log.dirs": str(n.data_dir)})
        assert config.is_broker == n.is_broker and config.is_controller == n.is_controller
    assert "process.roles" not in cr.node_config(cr.plan(1)[0], cr.plan(1), "abc")  # combined


def test_dedicated_layout_refuses_bad_counts_and_overlaps():
    with pytest.raises(cr.ClusterLayoutError, match="--controllers"):
        cr.plan(3, 9092, None, "r", controllers=-1)
    with pytest.raises(cr.ClusterLayoutError, match="overlap"):
        cr.plan(3, 9092, 9094, "r", controllers=3)
    args = parse(["cluster", "--brokers", "2", "--controllers", "3"])
    assert (args.brokers, args.controllers) == (2, 3)
    assert parse(["cluster"]).controllers == 0


def test_embedded_cluster_with_dedicated_controllers_layout(tmp_path):
    kc = EmbeddedCluster(2, controllers=3, data_dir=tmp_path / "data")
    try:
        assert [n.node_id for n in kc.nodes] == [1, 2, 3001, 3002, 3003]
        assert [n.node_id for n in kc.brokers] == [1, 2]
        assert [n.node_id for n in kc.controllers] == [3001, 3002, 3003]
        assert kc.bootstrap_servers == ",".join(f"127.0.0.1:{n.port}" for n in kc.brokers)
        voters = kc.voters
        assert [v.split("@")[0] for v in voters.split(",")] == ["3001", "3002", "3003"]
        ports = [n.port for n in kc.brokers] + [n.controller_port for n in kc.controllers]
        assert len(set(ports)) == 5 and all(p > 0 for p in ports)
        for n in kc.brokers:
            s = sets_of(n.command())
            assert s["process.roles"] == "broker"
            assert s["listeners"] == f"PLAINTEXT://127.0.0.1:{n.port}"
            assert s["controller.quorum.voters"] == voters
        for n in kc.controllers:
            s = sets_of(n.command())
            assert s["process.roles"] == "controller"
            assert s["listeners"] == f"CONTROLLER://127.0.0.1:{n.controller_port}"
            assert n.port == n.controller_port          # readiness: ApiVersions there
            assert f"{n.node_id}@127.0.0.1:{n.controller_port}" in voters.split(",")
        with pytest.raises(ValueError, match="controllers, not brokers"):
            kc.kill_brokers(3001)
        assert kc.running() == [] and kc.running_controllers() == []
    finally:
        kc.close()
