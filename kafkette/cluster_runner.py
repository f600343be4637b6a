"""`kafkette cluster`: a local cluster in one command.

    kafkette cluster --brokers 3            # 127.0.0.1:9092-9094, Ctrl-C stops them all
    kafkette cluster --brokers 3 --base-port 19092 --dir /tmp/kc --set num.partitions=6
    kafkette cluster --brokers 3 --controllers 3   # dedicated controllers (KRaft's
                                                   # process.roles=controller)

Layout (every value derived from the options, so a second run reuses the same data):

- node ids 1..N; node i listens for clients on 127.0.0.1:<base-port + i - 1>;
- with --controllers 0 (the default) every node is combined (process.roles=
  broker,controller) and its controller listener (the Raft transport, named in
  controller.quorum.voters) is 127.0.0.1:<controller-base-port + i - 1>, by default
  base-port + 100 (9192..);
- with --controllers M > 0 the N nodes are broker-only (process.roles=broker, Raft
  observers of the metadata log) and M more nodes, ids 3001..3000+M (the numbering of
  Kafka's KRaft examples), are controller-only voters: controller j listens on
  127.0.0.1:<controller-base-port + j - 1> and opens no client port. Then the
  controller quorum outlives its brokers: with 3 controllers and 3 brokers, two
  brokers can die and the survivor still gets every leadership it is eligible for;
- its data dir is <dir>/node-<i>, its log <dir>/node-<i>.log (the log file sits next
  to the data dir, not in it: log.dirs holds only partition directories);
- every node gets the same controller.quorum.voters and the same cluster.id, generated
  on the first run and kept in <dir>/cluster.id (a node refuses a cluster id that
  differs from the one in its metadata log, INCONSISTENT_CLUSTER_ID).

The processes are `python -m kafkette serve` children (kafkette.embedded_cluster).
The command returns once every node answers and Metadata lists N brokers and an active
controller, prints the bootstrap string, and waits. Ctrl-C or SIGTERM stops every node:
SIGTERM to each (its graceful shutdown: a last heartbeat asks the controller to fence
it, logs are flushed), a wait, and SIGKILL for a node still running after the deadline.

Real Kafka has no such command: its quickstart runs `kafka-storage.sh format` and
`kafka-server-start.sh` once per node with a hand-written properties file each.
"""
from __future__ import annotations

import argparse
import base64
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
DEFAULT_BASE_PORT = 9092
#: Controller listeners sit this far above the client listeners (9092 -> 9192).
CONTROLLER_PORT_OFFSET = 100
DEFAULT_DIR = "kafkette-cluster"
CLUSTER_ID_FILE = "cluster.id"
#: Keys the layout sets per node; `--set` may not override them (the same value on
#: every node would be wrong for all of them).
RESERVED_KEYS = frozenset({"node.id", "broker.id", "listeners", "advertised.listeners",
                           "log.dirs", "log.dir", "controller.quorum.voters",
                           "process.roles", "console.listener"})
#: Node ids of dedicated controllers: 3001, 3002, ...
CONTROLLER_ID_BASE = 3000
COMBINED, BROKER, CONTROLLER = "broker,controller", "broker", "controller"


class ClusterLayoutError(ValueError):
    pass


@dataclass(frozen=True)
class NodeLayout:
    node_id: int
    host: str
    port: int
    controller_port: int
    data_dir: Path
    roles: str = COMBINED           # process.roles

    @property
    def is_broker(self) -> bool:
        return self.roles != CONTROLLER

    @property
    def is_controller(self) -> bool:
        return self.roles != BROKER

    @property
    def address(self) -> str:
        """The client address of a broker; the controller listener of a controller-only
        node (which has no client listener)."""
        return f"{self.host}:{self.port if self.is_broker else self.controller_port}"

    @property
    def voter(self) -> str:
        """This node's controller.quorum.voters entry, id@host:port."""
        return f"{self.node_id}@{self.host}:{self.controller_port}"


def plan(brokers: int, base_port: int = DEFAULT_BASE_PORT,
         controller_base_port: int | None = None, data_root: Path | str = DEFAULT_DIR,
         host: str = HOST, controllers: int = 0) -> list[NodeLayout]:
    """The nodes of a cluster: brokers 1..N on consecutive ports, then (controllers > 0)
    the controller-only nodes 3001.. (see the module doc)."""
    if brokers < 1:
        raise ClusterLayoutError(f"--brokers must be at least 1, got {brokers}")
    if controllers < 0:
        raise ClusterLayoutError(f"--controllers must be 0 (combined nodes) or more, got {controllers}")
    if controller_base_port is None:
        controller_base_port = base_port + CONTROLLER_PORT_OFFSET
    ports = [base_port + i for i in range(brokers)]
    cports = [controller_base_port + i for i in range(controllers or brokers)]
    for name, first, last in (("--base-port", ports[0], ports[-1]),
                              ("--controller-base-port", cports[0], cports[-1])):
        if first < 1 or last > 65535:
            raise ClusterLayoutError(f"{name}: ports {first}-{last} are out of range "
                                     "[1, 65535]")
    clash = sorted(set(ports) & set(cports))
    if clash:
        raise ClusterLayoutError(f"client and controller ports overlap at {clash[0]}: "
                                 "choose a --controller-base-port at least --brokers "
                                 "away from --base-port")
    root = Path(data_root)
    if not controllers:
        return [NodeLayout(i + 1, host, ports[i], cports[i], root / f"node-{i + 1}")
                for i in range(brokers)]
    return ([NodeLayout(i + 1, host, ports[i], 0, root / f"node-{i + 1}", BROKER)
             for i in range(brokers)]
            + [NodeLayout(CONTROLLER_ID_BASE + j + 1, host, 0, cports[j],
                          root / f"node-{CONTROLLER_ID_BASE + j + 1}", CONTROLLER)
               for j in range(controllers)])


def voters_string(nodes: list[NodeLayout]) -> str:
    """controller.quorum.voters for the whole cluster: 1@127.0.0.1:9192,2@... (the
    nodes with the controller role)."""
    return ",".join(n.voter for n in nodes if n.is_controller)


def bootstrap_string(nodes: list[NodeLayout]) -> str:
    return ",".join(n.address for n in nodes if n.is_broker)


def node_config(node: NodeLayout, nodes: list[NodeLayout], cluster_id: str,
                extra: dict[str, str] | None = None) -> dict[str, str]:
    """The settings of one node besides `listeners` and `log.dirs` (set by the
    process launcher from node.port and node.data_dir). `extra` (from --set) never
    overrides the reserved keys; a cluster.id in it wins over the generated one."""
    extra = dict(extra or {})
    bad = sorted(k for k in extra if k in RESERVED_KEYS)
    if bad:
        raise ClusterLayoutError(f"--set {bad[0]}: set by `kafkette cluster` per node")
    out = {"node.id": str(node.node_id), "controller.quorum.voters": voters_string(nodes),
           "cluster.id": cluster_id, **extra}
    if node.roles != COMBINED:
        out["process.roles"] = node.roles
    if not node.is_broker:
        # The launcher's `listeners` for it is CONTROLLER://<its voter address>: a
        # controller-only node opens no client listener (config.py).
        out["controller.listener.names"] = "CONTROLLER"
    return out


def parse_sets(items: list[str] | None) -> dict[str, str]:
    """`--set k=v` options as a dict (the last one of a key wins, as `serve` does)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ClusterLayoutError(f"--set expects KEY=VALUE, got {item!r}")
        if key in RESERVED_KEYS:
            raise ClusterLayoutError(f"--set {key}: set by `kafkette cluster` per node")
        out[key] = value.strip()
    return out


def new_cluster_id() -> str:
    # As Kafka's `kafka-storage.sh random-uuid`: 16 random bytes, base64url, no padding.
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def load_or_create_cluster_id(root: Path | str) -> str:
    """The cluster id kept in <root>/cluster.id; a new one on the first run."""
    path = Path(root) / CLUSTER_ID_FILE
    try:
        stored = path.read_text().strip()
    except FileNotFoundError:
        stored = ""
    if stored:
        return stored
    path.parent.mkdir(parents=True, exist_ok=True)
    cid = new_cluster_id()
    path.write_text(cid + "\n")
    return cid


# --------------------------------------------------------------------------- command

def add_parser(sub) -> argparse.ArgumentParser:
    c = sub.add_parser("cluster", help="run a local cluster of N nodes (Ctrl-C stops it)",
                       description="Start N combined broker+controller nodes (or N brokers "
                                   "and M dedicated controllers) on 127.0.0.1 and stop "
                                   "them all on Ctrl-C.")
    c.add_argument("--brokers", "-n", type=int, default=3, help="number of brokers (3)")
    c.add_argument("--controllers", type=int, default=0,
                   help="dedicated controller-only nodes, ids 3001..; 0 (the default): "
                        "every broker is also a controller voter")
    c.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT,
                   help="client port of node 1; node i uses base-port + i - 1 (9092)")
    c.add_argument("--controller-base-port", type=int, default=None,
                   help="controller (Raft) port of the first voter (default: base-port + 100)")
    c.add_argument("--dir", "-d", default=DEFAULT_DIR,
                   help=f"data root: node-<id>/ data dirs and logs ({DEFAULT_DIR})")
    c.add_argument("--set", "-s", action="append", metavar="KEY=VALUE",
                   help="a broker setting for every node; repeatable")
    c.add_argument("--console", metavar="HOST:PORT", default="",
                   help="serve the web console (console.listener) from node 1 at HOST:PORT; "
                        "it shows the whole cluster from node 1's metadata image")
    c.add_argument("--startup-timeout", type=float, default=60.0,
                   help="seconds to wait for the cluster to be ready (60)")
    c.add_argument("--stop-timeout", type=float, default=15.0,
                   help="seconds a node gets to exit after SIGTERM before SIGKILL (15)")
    c.set_defaults(func=run)
    return c


def run(args) -> int:
    """The `kafkette cluster` command; returns the exit code."""
    from kafkette.embedded import EmbeddedBrokerError
    from kafkette.embedded_cluster import EmbeddedCluster
    try:
        extra = parse_sets(args.set)
        plan(args.brokers, args.base_port, args.controller_base_port, args.dir,
             controllers=args.controllers)  # validates
        cluster_id = extra.pop("cluster.id", None) or load_or_create_cluster_id(args.dir)
    except (ClusterLayoutError, OSError) as e:
        print(f"kafkette cluster: {e}", file=sys.stderr)
        return 2

    cluster = EmbeddedCluster(
        args.brokers, extra, controllers=args.controllers, data_dir=args.dir,
        base_port=args.base_port,
        controller_base_port=args.controller_base_port, cluster_id=cluster_id,
        node_config=(lambda node_id: {"console.listener": args.console}
                     if node_id == 1 else {}) if args.console else None,
        test_defaults=False, log_dir=args.dir, startup_timeout=args.startup_timeout,
        stop_timeout=args.stop_timeout)
    stop = threading.Event()
    got: list[int] = []

    def on_signal(signum, _frame):
        # Ctrl-C in a terminal reaches the nodes too (one process group): they begin
        # their shutdown on their own, and the SIGTERM below is then a no-op for them.
        got.append(signum)
        stop.set()
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        what = (f"{args.brokers} broker(s) and {args.controllers} controller(s)"
                if args.controllers else f"{args.brokers} node(s)")
        print(f"kafkette cluster: starting {what}, cluster id {cluster_id}, "
              f"data and logs in {Path(args.dir).resolve()}", flush=True)
        t0 = time.monotonic()
        try:
            cluster.start(interrupt=stop)
        except EmbeddedBrokerError as e:
            if stop.is_set():
                print("kafkette cluster: interrupted while starting", file=sys.stderr)
                return 0
            print(f"kafkette cluster: {e}", file=sys.stderr)
            return 1
        for n in cluster.nodes:
            if n.roles == CONTROLLER:
                print(f"  node {n.node_id} (controller): controller port {n.controller_port}, "
                      f"pid {n.pid}, log {n.log_path}")
            elif n.roles == BROKER:
                print(f"  node {n.node_id} (broker): {n.bootstrap_servers} (pid {n.pid}, "
                      f"log {n.log_path})")
            else:
                print(f"  node {n.node_id}: {n.bootstrap_servers} (controller port "
                      f"{n.controller_port}, pid {n.pid}, log {n.log_path})")
        try:
            controller = cluster.active_controller()
        except EmbeddedBrokerError as e:  # a node died since: reported by the loop below
            controller = f"unknown ({e})"
        print(f"kafkette cluster: ready in {time.monotonic() - t0:.1f}s, active controller "
              f"{controller}")
        print(f"bootstrap servers: {cluster.bootstrap_servers}", flush=True)
        if args.console:
            print(f"console (node 1): http://{args.console}/", flush=True)
        reported: set[int] = set()
        while not stop.wait(0.5):
            for n in cluster.nodes:
                rc = n.returncode()
                if rc is not None and n.node_id not in reported:
                    reported.add(n.node_id)
                    print(f"kafkette cluster: node {n.node_id} exited with code {rc} "
                          f"(log {n.log_path})", file=sys.stderr, flush=True)
        print(f"kafkette cluster: {signal.Signals(got[0]).name}: stopping "
              f"{len(cluster.nodes)} node(s)", flush=True)
        return 0
    finally:
        killed = cluster.stop_all()
        if killed:
            print(f"kafkette cluster: killed node(s) {killed} after "
                  f"{args.stop_timeout:.0f}s", file=sys.stderr)
        cluster.close()  # its temporary directories; the data dirs and logs stay
        for s, h in previous.items():
            signal.signal(s, h)
