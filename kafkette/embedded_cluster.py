"""An embedded cluster of kafkette nodes (child processes) for tests and local runs.

    from kafkette import EmbeddedCluster

    with EmbeddedCluster(brokers=3) as kc:
        kc.create_topic("orders", partitions=6)      # leaders spread over the 3 nodes
        producer = KafkaProducer(bootstrap_servers=kc.bootstrap_servers)
        old = kc.controller_id()
        kc.node(old).kill()                          # SIGKILL the active controller
        kc.wait_for(lambda: kc.controller_id() not in (-1, old))
        kc.node(old).start()                         # same ports, same data dir

By default every node is a combined broker + controller voter (process.roles=
broker,controller): node ids 1..N, the same controller.quorum.voters and cluster.id on
all. With ``controllers=M`` (M > 0) the N brokers 1..N are broker-only (Raft observers
of the metadata log) and M controller-only voters 3001..3000+M hold the quorum, the
layout of `kafkette cluster --controllers M`:

    with EmbeddedCluster(brokers=3, controllers=3) as kc:
        kc.kill_brokers(2, 3)                        # the quorum is untouched
        kc.wait_for(lambda: kc.leaders("orders")[0] == 1)

``brokers`` are then the broker nodes only (what clients, Metadata and ``running()``
see), ``controllers`` the controller-only ones, ``nodes`` all of them; a controller
node has no client port (its ``port`` is its controller port, where it answers
ApiVersions, so that readiness works as for brokers). ``active_controller()`` asks the
quorum itself (DescribeQuorum on a controller listener); Metadata's controller id
is a broker's with dedicated controllers (brokers/handlers/common.py). Each node is a
`ClusterNode`, an `EmbeddedBroker` child process (its own interpreter and event loop)
with a fixed client port, a fixed controller port, and signals for fault tests:
``stop()`` (SIGTERM, graceful), ``kill()`` (SIGKILL), ``pause()`` / ``resume()``
(SIGSTOP / SIGCONT: the process is frozen, its sockets stay open, so peers see
timeouts rather than refused connections, like a long GC pause or a hung host).

Ports: ``base_port=0`` (the default) picks 2N free ports; a start that fails because
another process took one meanwhile is retried with new ports. A fixed ``base_port``
uses the layout of `kafkette cluster` (kafkette.cluster_runner).

Readiness: the nodes start in parallel (a node may need a quorum before it is of any
use, so starting them one after the other would wait on nodes not yet started), then
``start()`` waits until every node answers Metadata listing all N brokers and one
active controller, the same on every node.

Admin requests (``create_topic``, ``delete_topic``) go to any running node, which
forwards them to the active controller; Metadata (``metadata()``, ``controller_id()``)
is asked of one running node, or of the node given.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

from kafkette.embedded import (
    ADMIN_LISTENER,
    ADMIN_USER,
    HOST,
    STOP_TIMEOUT,
    TEST_DEFAULTS,
    EmbeddedBroker,
    EmbeddedBrokerError,
    SecuredClientSettings,
    _format_value,
    _kafka_error,
    _plain_jaas,
    check_scram_users_response,
    import_trustme,
    issue_tls,
    scram_users_request,
    security_choice,
)

__all__ = ["EmbeddedCluster", "ClusterNode", "PartitionState", "CLUSTER_TEST_DEFAULTS"]

#: Test defaults of a cluster (under the caller's config): those of EmbeddedBroker, and
#: short broker sessions so that a fenced broker is seen within seconds (Kafka's
#: defaults, 9 s session and 2 s heartbeats, are for real networks).
CLUSTER_TEST_DEFAULTS: dict[str, Any] = {
    **TEST_DEFAULTS,
    "broker.session.timeout.ms": 3000,
    "broker.heartbeat.interval.ms": 500,
}
CLUSTER_STARTUP_TIMEOUT = 60.0
_PORT_RETRIES = 3


class PartitionState(NamedTuple):
    partition: int
    leader: int          # -1: offline
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


class ClusterNode(EmbeddedBroker):
    """One node of an EmbeddedCluster: an EmbeddedBroker child process with a node id,
    a fixed client port and a fixed controller (Raft) port."""

    def __init__(self, node_id: int, port: int, controller_port: int,
                 config: Mapping[str, Any], data_dir, *, test_defaults: bool = True,
                 log_path=None, startup_timeout: float = CLUSTER_STARTUP_TIMEOUT,
                 stop_timeout: float = STOP_TIMEOUT, host: str = HOST,
                 launch_prefix: list[str] | None = None, roles: str = "broker,controller",
                 listeners: str | None = None, probe_security=None,
                 admin: tuple[int, Any] | None = None):
        # A controller-only node is probed (ApiVersions) on its controller listener.
        super().__init__(config, data_dir=data_dir,
                         port=port if roles != "controller" else controller_port,
                         startup_timeout=startup_timeout, stop_timeout=stop_timeout)
        self._host = host
        # Put before `python -m kafkette serve`, e.g. ["ip", "netns", "exec", "ns1"]
        # (which execs, so the child's pid is the broker's and signals reach it).
        self.launch_prefix = list(launch_prefix or [])
        if not test_defaults:
            # `kafkette cluster`: Kafka's defaults, and no fault-injection endpoint.
            self.config = dict(config)
        self._fault_endpoint = test_defaults
        self.node_id = node_id
        self.controller_port = controller_port
        self.roles = roles
        self._listeners = listeners   # EmbeddedCluster's listeners(layout), if given
        if roles == "controller":
            self._probe_security = probe_security   # an SSL controller listener
        # (port, ClientSecurity) of the listener that the cluster's own requests and
        # readiness probes use when the client listener is secured (security=...).
        self._admin = admin
        self._paused = False
        if log_path is not None:
            self.log_path = Path(log_path)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ process

    def command(self) -> list[str]:
        if self._fault_endpoint:
            return self.launch_prefix + super().command()
        settings = {"listeners": self.listeners_setting(),
                    "log.dirs": str(self.data_dir), **self.config}
        cmd = [sys.executable, "-m", "kafkette", "serve"]
        for key, value in settings.items():
            cmd += ["--set", f"{key}={_format_value(value)}"]
        return self.launch_prefix + cmd

    def _admin_target(self):
        if self._admin is not None and self.roles != "controller":
            return self._host, self._admin[0], self._admin[1]
        return super()._admin_target()

    def listeners_setting(self) -> str:
        if self._listeners is not None:
            return self._listeners
        if self.roles == "controller":
            # Its only listener: the controller's (no client listener, config.py).
            return f"CONTROLLER://{self.host}:{self.controller_port}"
        return super().listeners_setting()

    def start(self) -> "ClusterNode":
        self._paused = False
        super().start()
        return self

    def stop(self) -> None:
        """SIGTERM and wait (graceful: the node asks the controller to fence it)."""
        if self._paused:
            self.resume()  # a stopped process would keep SIGTERM pending forever
        super().stop()

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye to the controller (its session times out)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        self._paused = False

    def pause(self) -> None:
        """SIGSTOP: frozen, sockets open; heartbeats stop, so the controller fences it
        after broker.session.timeout.ms."""
        self._signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after pause()."""
        self._signal(signal.SIGCONT)
        self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    def returncode(self) -> int | None:
        """The exit code of the last process, None while it runs (or never ran)."""
        return self._proc.poll() if self._proc is not None else None

    def _signal(self, sig: int) -> None:
        if not self.is_running():
            raise EmbeddedBrokerError(f"node {self.node_id} is not running")
        os.kill(self._proc.pid, sig)

    def terminate(self) -> None:
        """Send SIGTERM without waiting (EmbeddedCluster.stop_all waits for all)."""
        if self._paused:
            self.resume()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)

    def wait_exit(self, deadline: float) -> bool:
        """Wait for the process until `deadline` (monotonic); SIGKILL after it.
        True when it had to be killed."""
        proc = self._proc
        if proc is None:
            return False
        killed = False
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            killed = True
        self._proc = None
        self._paused = False
        return killed

    def __repr__(self) -> str:
        state = "paused" if self._paused else f"running={self.is_running()}"
        return (f"<ClusterNode {self.node_id} {self.roles} {self.bootstrap_servers} "
                f"controller={self.controller_port} pid={self.pid} {state}>")

    @property
    def is_broker(self) -> bool:
        return self.roles != "controller"

    @property
    def is_controller(self) -> bool:
        return self.roles != "broker"


class EmbeddedCluster(SecuredClientSettings):
    """N kafkette nodes (broker + controller voter each) on 127.0.0.1.

    ``config``: Kafka property names for every node (node.id, listeners, log.dirs and
    controller.quorum.voters are set per node). ``data_dir``: the root of the nodes'
    data dirs (node-<id>); a temporary directory, removed on ``close()``, when omitted.
    ``test_defaults``: apply ``CLUSTER_TEST_DEFAULTS`` under ``config`` and give each
    node a fault-injection endpoint (False for `kafkette cluster`: Kafka's defaults).
    ``log_dir``: where node-<id>.log go (default: a temporary directory).
    ``hosts``: one listen address per node (default 127.0.0.1 for all), and
    ``launch_prefix(node_id)``: a command put before each node's own, together used by
    kafkette.chaos to run every node in its own network namespace.
    ``node_config(node_id)``: settings for one node over ``config`` (``broker.rack``).
    ``listeners(layout)``: the ``listeners`` setting of a node from its
    cluster_runner.NodeLayout (host, port, controller_port), for layouts with more than
    the client listener, e.g. an SSL inter-broker listener and an SSL CONTROLLER
    listener at the node's voter address (integration/test_interbroker_security.py);
    called again with the new ports when a start is retried.
    ``controller_security``: a kafkette.client_security.ClientSecurity for the
    controller listeners (SSL) that the readiness probes of controller-only nodes and
    ``describe_quorum()`` connect with.
    ``controllers``: 0 (combined nodes) or the number of controller-only voters
    (see the module doc).
    ``security``, ``users``, ``mechanism``: the client listener of every broker
    secured as ``EmbeddedBroker(security=...)`` does it (SSL, SASL_PLAINTEXT or
    SASL_SSL; one CA and one server certificate for 127.0.0.1 / localhost made with
    trustme and shared by the nodes; SCRAM users created once the cluster is up and
    known to every broker before start() returns). Node-to-node traffic runs over
    two more listeners per node, SASL_PLAINTEXT with PLAIN and a super user of a
    random password: EMBEDDED_ADMIN (inter-broker, and the cluster's own requests)
    and CONTROLLER (Raft, registrations, forwarding), so an authorizer in ``config``
    needs no ACL for the nodes. ``client_config``, ``kafka_python_config()``,
    ``client_security()`` and ``ca_file`` hand the client settings to the test.
    """

    def __init__(self, brokers: int = 3, config: Mapping[str, Any] | None = None, *,
                 controllers: int = 0,
                 data_dir=None, base_port: int = 0, controller_base_port: int | None = None,
                 cluster_id: str | None = None, test_defaults: bool = True, log_dir=None,
                 startup_timeout: float = CLUSTER_STARTUP_TIMEOUT,
                 stop_timeout: float = STOP_TIMEOUT, hosts: Sequence[str] | None = None,
                 launch_prefix: Callable[[int], list[str]] | None = None,
                 node_config: Callable[[int], Mapping[str, Any]] | None = None,
                 listeners: Callable[[Any], str] | None = None,
                 controller_security=None, security: str = "PLAINTEXT",
                 users: Mapping[str, str] | None = None, mechanism: str = "SCRAM-SHA-512"):
        from kafkette import cluster_runner
        config = dict(config or {})
        self.security, self.mechanism, self.users = security_choice(security, users, mechanism)
        if self.security != "PLAINTEXT" and (listeners is not None or
                                             controller_security is not None):
            raise ValueError("security= lays out the listeners itself: not with "
                             "listeners= or controller_security=")
        if hosts is not None and len(hosts) != brokers + controllers:
            raise ValueError(f"{len(hosts)} hosts for {brokers + controllers} nodes")
        if controllers < 0:
            raise ValueError("controllers must be 0 (combined nodes) or more")
        bad = sorted(k for k in config if k in cluster_runner.RESERVED_KEYS)
        if bad:
            raise ValueError(f"{bad[0]!r} is set per node by EmbeddedCluster")
        if brokers < 1:
            raise ValueError("brokers must be at least 1")
        self.config: dict[str, Any] = ({**CLUSTER_TEST_DEFAULTS, **config} if test_defaults
                                       else config)
        self.cluster_id = str(config.pop("cluster.id", None) or cluster_id
                              or cluster_runner.new_cluster_id())
        self.config.pop("cluster.id", None)
        self.size = brokers
        self.controller_count = controllers
        self.test_defaults = test_defaults
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._auto_ports = base_port == 0
        self._base_port = base_port
        self._controller_base_port = controller_base_port
        self._hosts = list(hosts) if hosts is not None else [HOST] * (brokers + controllers)
        self._launch_prefix = launch_prefix
        self._node_config = node_config
        self._listeners = listeners
        self.controller_security = controller_security
        self._workdir = Path(tempfile.mkdtemp(prefix="kafkette-cluster-"))
        self._admin_security = None   # the nodes' own listeners when security= is set
        self._users_created = False
        if self.security != "PLAINTEXT":
            try:
                self.config.update(self._security_config())
            except BaseException:
                shutil.rmtree(self._workdir, ignore_errors=True)
                raise
        self._own_data_dir = data_dir is None
        self.data_dir = (self._workdir / "data") if data_dir is None else Path(data_dir)
        self.log_dir = Path(log_dir) if log_dir is not None else self._workdir
        self.nodes: list[ClusterNode] = []         # all of them
        self.brokers: list[ClusterNode] = []       # those with the broker role
        self.controllers: list[ClusterNode] = []   # controller-only ones
        self.startup_seconds: float | None = None   # of the last start()
        self._closed = False
        self._build_nodes()

    # ------------------------------------------------------------------ security

    @property
    def ca_file(self) -> str | None:
        """The PEM file of the CA that signed every node's certificate (SSL, SASL_SSL)."""
        path = self._workdir / "tls" / "ca.pem"
        return str(path) if self.security in ("SSL", "SASL_SSL") else None

    def _security_config(self) -> dict[str, str]:
        """The settings that every node gets for security= (see the class doc)."""
        import secrets
        from kafkette.client_security import ClientSecurity
        proto, config = self.security, self.config
        password = secrets.token_hex(16)
        self._admin_security = ClientSecurity("SASL_PLAINTEXT", None, "PLAIN", ADMIN_USER,
                                              password)
        self.controller_security = self._admin_security
        # The nodes log in to each other with the username / password options of the
        # same JAAS entry that lists the user for the server side.
        jaas = _plain_jaas({ADMIN_USER: password}).replace(
            "required ", f'required username="{ADMIN_USER}" password="{password}" ', 1)
        a = ADMIN_LISTENER.lower()
        out = {
            "listener.security.protocol.map":
                f"{proto}:{proto},{ADMIN_LISTENER}:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
            "inter.broker.listener.name": ADMIN_LISTENER,
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            "controller.listener.names": "CONTROLLER",
            "sasl.mechanism.controller.protocol": "PLAIN",
            f"listener.name.{a}.sasl.enabled.mechanisms": "PLAIN",
            f"listener.name.{a}.plain.sasl.jaas.config": jaas,
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": jaas,
        }
        if proto in ("SSL", "SASL_SSL"):
            trustme = import_trustme(f"EmbeddedCluster(security={proto!r})")
            out.update(issue_tls(self._workdir / "tls", trustme))
        if self.mechanism:
            lname = proto.lower()
            key = f"listener.name.{lname}.sasl.enabled.mechanisms"
            out[key] = str(config.pop(key, self.mechanism))   # a caller's own list wins
            if self.mechanism == "PLAIN":
                out[f"listener.name.{lname}.plain.sasl.jaas.config"] = _plain_jaas(self.users)
        for key in out:
            if key in config:
                raise ValueError(f"{key!r} is set by EmbeddedCluster(security={proto!r})")
        supers = [p for p in str(config.get("super.users", "")).split(";") if p]
        out["super.users"] = ";".join(supers + [f"User:{ADMIN_USER}"])
        return out

    def _secured_listeners(self, n, admin_port: int) -> str:
        if not n.is_broker:
            return f"CONTROLLER://{n.host}:{n.controller_port}"
        out = f"{self.security}://{n.host}:{n.port},{ADMIN_LISTENER}://{n.host}:{admin_port}"
        if n.is_controller:
            out += f",CONTROLLER://{n.host}:{n.controller_port}"
        return out

    def _create_users(self, timeout: float) -> None:
        """The SCRAM users, once (they live in the metadata log), then a wait until
        every running broker knows them: a client may log in to any of them."""
        req = scram_users_request(self.mechanism, self.users)
        if req is None or self._users_created:
            return
        check_scram_users_response(self.request(req, 0))
        self._users_created = True
        from kafkette.protocol.messages import DescribeUserScramCredentialsRequest as D
        ask = D(users=[D.UserName(name=u) for u in self.users])

        def known():
            for n in self.running():
                resp = n._request(ask, 0, timeout=5.0)
                if resp.error_code or any(r.error_code for r in resp.results):
                    return False
            return True
        self.wait_for(known, timeout, "every broker to know the SCRAM users")

    # ------------------------------------------------------------------ layout

    def _build_nodes(self) -> None:
        from kafkette import cluster_runner
        m = self.controller_count
        planned = cluster_runner.plan(self.size, self._base_port or 1,
                                      self._controller_base_port or
                                      (self._base_port or 1) + max(self.size, m) + 1,
                                      self.data_dir, controllers=m)
        # security=: one more listener per broker (EMBEDDED_ADMIN), whose ports are
        # picked with the others so that no port is handed out twice.
        extra = self.size if self.security != "PLAINTEXT" else 0
        if self._auto_ports:
            ports = _free_ports(self.size + (m or self.size) + extra)
            admin_ports = ports[len(ports) - extra:]
            ports = ports[:len(ports) - extra]
            client, ctl = iter(ports[:self.size]), iter(ports[self.size:])
            layout = [dataclasses.replace(n, host=self._hosts[i],
                                          port=next(client) if n.is_broker else 0,
                                          controller_port=next(ctl) if n.is_controller else 0)
                      for i, n in enumerate(planned)]
        else:
            admin_ports = _free_ports(extra)
            layout = [dataclasses.replace(n, host=self._hosts[i]) for i, n in
                      enumerate(cluster_runner.plan(self.size, self._base_port,
                                                    self._controller_base_port, self.data_dir,
                                                    controllers=m))]
        self.layout = layout
        listeners = self._listeners
        admin: dict[int, tuple[int, Any]] = {}
        if self.security != "PLAINTEXT":
            brokers = [n for n in layout if n.is_broker]
            admin = {n.node_id: (p, self._admin_security)
                     for n, p in zip(brokers, admin_ports)}
            listeners = lambda n: self._secured_listeners(  # noqa: E731
                n, admin[n.node_id][0] if n.node_id in admin else 0)
        self.nodes = [
            ClusterNode(n.node_id, n.port, n.controller_port,
                        {**self.config,
                         **(self._node_config(n.node_id) if self._node_config else {}),
                         **cluster_runner.node_config(n, layout, self.cluster_id)},
                        n.data_dir, test_defaults=self.test_defaults,
                        log_path=self.log_dir / f"node-{n.node_id}.log",
                        startup_timeout=self.startup_timeout, stop_timeout=self.stop_timeout,
                        host=n.host, launch_prefix=(self._launch_prefix(n.node_id)
                                                    if self._launch_prefix else None),
                        roles=n.roles,
                        listeners=listeners(n) if listeners else None,
                        probe_security=self.controller_security,
                        admin=admin.get(n.node_id))
            for n in layout]
        self.brokers = [n for n in self.nodes if n.is_broker]
        self.controllers = [n for n in self.nodes if not n.is_broker]

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(n.bootstrap_servers for n in self.brokers)

    @property
    def voters(self) -> str:
        from kafkette import cluster_runner
        return cluster_runner.voters_string(self.layout)

    def node(self, node_id: int) -> ClusterNode:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise KeyError(f"no node {node_id} (nodes {[n.node_id for n in self.nodes]})")

    def running(self) -> list[ClusterNode]:
        """The broker nodes whose process runs and is not paused."""
        return [n for n in self.brokers if n.is_running() and not n.paused]

    def running_controllers(self) -> list[ClusterNode]:
        """The controller-only nodes whose process runs and is not paused."""
        return [n for n in self.controllers if n.is_running() and not n.paused]

    def kill_brokers(self, *node_ids: int) -> None:
        """SIGKILL these brokers (all of them when none is given); controllers untouched."""
        for n in self._broker_nodes(node_ids):
            n.kill()

    def stop_brokers(self, *node_ids: int) -> None:
        """SIGTERM and wait for these brokers (all when none is given); controllers untouched."""
        for n in self._broker_nodes(node_ids):
            n.stop()

    def _broker_nodes(self, node_ids) -> list[ClusterNode]:
        nodes = [self.node(i) for i in node_ids] if node_ids else list(self.brokers)
        bad = [n.node_id for n in nodes if not n.is_broker]
        if bad:
            raise ValueError(f"nodes {bad} are controllers, not brokers")
        return nodes

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> "EmbeddedCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self, interrupt: threading.Event | None = None) -> "EmbeddedCluster":
        """Start every node (in parallel) and wait for the cluster (see wait_ready)."""
        if self._closed:
            raise EmbeddedBrokerError("this EmbeddedCluster was closed")
        t0 = time.monotonic()
        attempts = _PORT_RETRIES if self._auto_ports else 1
        for attempt in range(attempts):
            errors = self._start_nodes(self.nodes)
            if not errors:
                break
            self.stop_all()
            in_use = any("in use" in str(e).lower() for e in errors)
            if not in_use or attempt + 1 >= attempts or (interrupt and interrupt.is_set()):
                raise errors[0]
            for n in self.nodes:
                n.close()
            self._build_nodes()  # another process took a port: new ports, same dirs
        try:
            self.wait_ready(timeout=max(1.0, self.startup_timeout - (time.monotonic() - t0)),
                            interrupt=interrupt, nodes=self.nodes)
            self._create_users(max(1.0, self.startup_timeout - (time.monotonic() - t0)))
        except BaseException:
            self.stop_all()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    @staticmethod
    def _start_nodes(nodes: Iterable[ClusterNode]) -> list[BaseException]:
        errors: list[BaseException] = []

        def start(n: ClusterNode) -> None:
            try:
                n.start()
            except BaseException as e:  # noqa: BLE001 - reported by the caller
                errors.append(e)
        threads = [threading.Thread(target=start, args=(n,), name=f"start-node-{n.node_id}")
                   for n in nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return errors

    def stop_all(self) -> list[int]:
        """SIGTERM every node, wait for all (one shared deadline), SIGKILL the ones
        still running after it. Returns the ids of the killed nodes."""
        for n in self.nodes:
            n.terminate()
        deadline = time.monotonic() + self.stop_timeout
        return [n.node_id for n in self.nodes if n.wait_exit(deadline)]

    stop = stop_all

    def restore(self) -> list[BaseException]:
        """Undo kill() and pause() of any node: SIGCONT the paused ones and start the
        ones not running (in parallel, same ports and data). Returns the start errors;
        wait_ready() then waits for the cluster."""
        for n in self.nodes:
            if n.paused:
                n.resume()
        return self._start_nodes([n for n in self.nodes if not n.is_running()])

    def close(self) -> None:
        """Stop every node and remove the temporary directories."""
        if self._closed:
            return
        try:
            self.stop_all()
        finally:
            self._closed = True
            for n in self.nodes:
                n.close()  # its own temporary directory; the data dirs are ours
            shutil.rmtree(self._workdir, ignore_errors=True)
            if self._own_data_dir:
                shutil.rmtree(self.data_dir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"<EmbeddedCluster {self.bootstrap_servers} nodes={self.nodes}>"

    # ------------------------------------------------------------------ waiting

    def wait_for(self, cond: Callable[[], Any], timeout: float = 30.0, message: str = "",
                 interval: float = 0.05, interrupt: threading.Event | None = None) -> Any:
        """Poll `cond()` until it returns something truthy (returned) or the deadline
        passes (EmbeddedBrokerError naming `message`, the last error and log tails)."""
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while True:
            try:
                value = cond()
                if value:
                    return value
                last = None
            except (OSError, EmbeddedBrokerError, EOFError) as e:
                if getattr(e, "fatal", False):
                    raise  # e.g. a node exited: no point in waiting
                last = e
            if interrupt is not None and interrupt.is_set():
                raise EmbeddedBrokerError(f"interrupted waiting for {message or 'a condition'}")
            if time.monotonic() >= deadline:
                detail = f" (last error: {last!r})" if last is not None else ""
                raise EmbeddedBrokerError(
                    f"timed out after {timeout:.1f}s waiting for "
                    f"{message or getattr(cond, '__name__', 'a condition')}{detail}\n"
                    f"{self.log_tails(15)}")
            time.sleep(interval)

    def view(self, via: ClusterNode | int | None = None):
        """(sorted broker ids, controller id) from Metadata of one node."""
        resp = self.metadata(via=via, topics=[])
        return sorted(b.node_id for b in resp.brokers), resp.controller_id

    def wait_ready(self, timeout: float | None = None,
                   interrupt: threading.Event | None = None,
                   nodes: list[ClusterNode] | None = None) -> int:
        """Wait until every one of `nodes` (default: the running brokers) lists exactly
        those brokers in Metadata, and the same active controller; returns its id (as
        Metadata says: a broker's id with dedicated controllers). A node of `nodes`
        whose process exits fails the wait at once; controller-only nodes in `nodes`
        are only checked for that (they answer no Metadata)."""
        def agreed():
            all_ = self.running() + self.running_controllers() if nodes is None else nodes
            nodes_ = [n for n in all_ if n.is_broker]
            for n in all_:
                if n.returncode() is not None:
                    e = EmbeddedBrokerError(f"node {n.node_id} exited with code "
                                            f"{n.returncode()}\n{n._log_tail()}")
                    e.fatal = True
                    raise e
            expected = sorted(n.node_id for n in nodes_)
            views = {(tuple(ids), c) for ids, c in map(self.view, nodes_)}
            if len(views) == 1:
                ids, controller = next(iter(views))
                if list(ids) == expected and controller in expected:
                    return controller
            return None
        return self.wait_for(agreed, self.startup_timeout if timeout is None else timeout,
                             "every node to list the running brokers and one controller",
                             interval=0.1, interrupt=interrupt)

    # ------------------------------------------------------------------ requests

    def _pick(self, via: ClusterNode | int | None) -> list[ClusterNode]:
        if via is None:
            nodes = self.running()
            if not nodes:
                raise EmbeddedBrokerError("no node is running")
            return nodes
        return [self.node(via) if isinstance(via, int) else via]

    def request(self, request, version: int, via: ClusterNode | int | None = None,
                timeout: float = 30.0):
        """Send one request to `via` (or the first running node that answers)."""
        last: BaseException | None = None
        for n in self._pick(via):
            try:
                return n._request(request, version, timeout=timeout)
            except (OSError, EOFError, EmbeddedBrokerError) as e:
                last = e
        raise EmbeddedBrokerError(f"no node answered: {last!r}")

    def metadata(self, topics: list[str] | None = None,
                 via: ClusterNode | int | None = None, timeout: float = 5.0):
        """A Metadata v12 response (``topics=None``: all topics; [] none); never creates
        topics."""
        from kafkette.protocol.messages import MetadataRequest
        T = MetadataRequest.MetadataRequestTopic
        req = MetadataRequest(topics=None if topics is None else [T(name=t) for t in topics],
                              allow_auto_topic_creation=False)
        return self.request(req, 12, via=via, timeout=timeout)

    def controller_id(self, via: ClusterNode | int | None = None) -> int:
        """The active controller as Metadata reports it (-1: none known). With dedicated
        controllers that is a broker (see the module doc): active_controller() asks
        the quorum."""
        return self.metadata(topics=[], via=via).controller_id

    def describe_quorum(self, via: ClusterNode | int | None = None, timeout: float = 5.0):
        """DescribeQuorum v2 from a voter's controller listener (default: the first
        running voter that answers): its partition answer (leader_id, leader_epoch,
        high_watermark; voters and observers when asked of the leader)."""
        from kafkette.client import request_once
        from kafkette.protocol.messages import DescribeQuorumRequest
        T = DescribeQuorumRequest.TopicData
        req = DescribeQuorumRequest(topics=[T(topic_name="__cluster_metadata", partitions=[
            T.PartitionData(partition_index=0)])])
        if via is not None:
            voters = [self.node(via) if isinstance(via, int) else via]
        else:
            voters = [n for n in self.nodes if n.is_controller and n.is_running() and not n.paused]
        last: BaseException | None = None
        for n in voters:
            try:
                resp = request_once(n.host, n.controller_port, req, 2, timeout=timeout,
                                    security=self.controller_security)
                if resp.error_code:   # CLUSTER_AUTHORIZATION_FAILED: DESCRIBE on the cluster
                    raise _kafka_error(resp.error_code, f"DescribeQuorum of node {n.node_id}")
                return resp.topics[0].partitions[0]
            except (OSError, EOFError, IndexError) as e:
                last = e
        raise EmbeddedBrokerError(f"no controller answered DescribeQuorum: {last!r}")

    def active_controller(self, via: ClusterNode | int | None = None) -> int:
        """The quorum's leader, the active controller (-1: none), from DescribeQuorum."""
        return self.describe_quorum(via=via).leader_id

    def leaders(self, topic: str, via: ClusterNode | int | None = None) -> dict[int, int]:
        """partition -> leader id (-1 when offline) of `topic`, from Metadata."""
        resp = self.metadata([topic], via=via)
        t = resp.topics[0]
        if t.error_code:
            raise _kafka_error(t.error_code, f"metadata of {topic!r}")
        return {p.partition_index: p.leader_id for p in t.partitions}

    def partition_states(self, topic: str,
                         via: ClusterNode | int | None = None) -> dict[int, "PartitionState"]:
        """partition -> leader, leader epoch, replicas and ISR of `topic`, as Metadata
        of `via` (or any running node) reports them."""
        resp = self.metadata([topic], via=via)
        t = resp.topics[0]
        if t.error_code:
            raise _kafka_error(t.error_code, f"metadata of {topic!r}")
        return {p.partition_index: PartitionState(p.partition_index, p.leader_id,
                                                  p.leader_epoch, tuple(p.replica_nodes),
                                                  tuple(p.isr_nodes))
                for p in t.partitions}

    def list_offsets(self, topic: str, partitions: Iterable[int] | None = None,
                     timestamp: int = -1, timeout: float = 5.0) -> dict[int, int | None]:
        """partition -> offset from ListOffsets v7 (timestamp -1: latest, which for
        read_uncommitted is the high watermark; -2: earliest), asked of each partition's
        leader. None for a partition without a leader, whose leader does not answer,
        or that answers with an error."""
        from kafkette.protocol.messages import ListOffsetsRequest
        T = ListOffsetsRequest.ListOffsetsTopic
        P = T.ListOffsetsPartition
        states = self.partition_states(topic)
        wanted = sorted(states) if partitions is None else sorted(partitions)
        out: dict[int, int | None] = {p: None for p in wanted}
        by_leader: dict[int, list[int]] = {}
        for p in wanted:
            leader = states[p].leader if p in states else -1
            if leader >= 0:
                by_leader.setdefault(leader, []).append(p)
        for leader, parts in by_leader.items():
            req = ListOffsetsRequest(replica_id=-1, isolation_level=0, topics=[T(
                name=topic, partitions=[P(partition_index=p, timestamp=timestamp)
                                        for p in parts])])
            try:
                resp = self.request(req, 7, via=leader, timeout=timeout)
            except EmbeddedBrokerError:
                continue
            for rt in resp.topics:
                for rp in rt.partitions:
                    if rp.error_code == 0 and rp.partition_index in out:
                        out[rp.partition_index] = rp.offset
        return out

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = 1,
                     config: Mapping[str, Any] | None = None, *, exist_ok: bool = True,
                     timeout: float = 30.0, via: ClusterNode | int | None = None):
        """CreateTopics v7 through any running node (forwarded to the active controller);
        retried while there is no active controller (NOT_CONTROLLER) until `timeout`.
        Then waits until every running node's Metadata has the topic's leaders."""
        from kafkette.errors import ErrorCode
        from kafkette.protocol.messages import CreateTopicsRequest
        T = CreateTopicsRequest.CreatableTopic
        C = T.CreatableTopicConfig
        req = CreateTopicsRequest(
            topics=[T(name=name, num_partitions=partitions,
                      replication_factor=replication_factor, assignments=[],
                      configs=[C(name=k, value=_format_value(v))
                               for k, v in (config or {}).items()])],
            timeout_ms=int(timeout * 1000), validate_only=False)
        retriable = {ErrorCode.NOT_CONTROLLER, ErrorCode.REQUEST_TIMED_OUT}

        def attempt():
            result = self.request(req, 7, via=via, timeout=timeout + 5).topics[0]
            if result.error_code in retriable:
                return None
            return (result,)
        result = self.wait_for(attempt, timeout, f"topic {name!r} to be created")[0]
        if result.error_code == ErrorCode.TOPIC_ALREADY_EXISTS and exist_ok:
            return result
        if result.error_code != 0:
            raise _kafka_error(result.error_code, f"create topic {name!r}: "
                               f"{result.error_message or ''}".rstrip(": "))
        self.wait_for(lambda: all(self._has_leaders(name, n) for n in self.running()),
                      timeout, f"every node to see topic {name!r}")
        return result

    def _has_leaders(self, topic: str, node: ClusterNode) -> bool:
        t = self.metadata([topic], via=node).topics[0]
        return not t.error_code and all(p.leader_id >= 0 for p in t.partitions)

    def delete_topic(self, name: str, *, missing_ok: bool = False, timeout: float = 30.0):
        """DeleteTopics v4 through any running node."""
        from kafkette.errors import ErrorCode
        from kafkette.protocol.messages import DeleteTopicsRequest
        req = DeleteTopicsRequest(topics=[], topic_names=[name],
                                  timeout_ms=int(timeout * 1000))
        result = self.request(req, 4, timeout=timeout + 5).responses[0]
        if result.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION and missing_ok:
            return result
        if result.error_code != 0:
            raise _kafka_error(result.error_code, f"delete topic {name!r}")
        return result

    # ------------------------------------------------------------------ diagnostics

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(f"----- node {n.node_id} ({n.log_path}) -----\n{n._log_tail(lines)}"
                         for n in self.nodes)


def _free_ports(n: int) -> list[int]:
    """n distinct free ports (all bound at once, so none is handed out twice)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
