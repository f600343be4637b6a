"""Network namespaces for the campaign's network partitions.

Every node runs in a namespace of its own (``ip netns exec``), with one veth into a
bridge in the caller's namespace, and an address of its own in a /24 that no interface
or route of this machine uses yet (10.250.X.0/24; the bridge has .254, node i has .i).
Brokers bind and advertise that address, so the client, Raft and (with replication)
follower connections between two nodes all cross the bridge, and clients run by the
campaign reach every node through it.

A partition between nodes a and b is two iptables rules in each of their namespaces:
DROP what goes to the other's address and what comes from it. Packets vanish, as on a
cut link: connections time out, nothing is refused. Clients (the caller's namespace)
still reach both sides, as with a partition between racks that leaves the clients'
network whole. Healing flushes the rules.

Everything this creates is named ``kcs<tag>...`` (tag: 5 hex digits of this process's
pid) and removed by ``close()``; ``remove_stale()`` removes what a killed campaign left
behind (namespaces of a pid that no longer runs). Traffic only goes to the addresses
created here. Needs root, ``ip`` (iproute2) and ``iptables``.
"""
from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess

from kafkette.logging import get_logger

log = get_logger("kafkette.chaos.netns")

PREFIX = "kcs"
_NS_RE = re.compile(rf"^{PREFIX}([0-9a-f]{{5}})n(\d+)$")


class NetnsError(RuntimeError):
    pass


def unavailable_reason() -> str | None:
    """Why namespaces cannot be used here (None: they can)."""
    if os.geteuid() != 0:
        return "not root"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install iproute2 iptables)"
    return None


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise NetnsError(f"{' '.join(cmd)}: {r.stderr.strip() or r.returncode}")
    return r


def _used_networks() -> list[ipaddress.IPv4Network]:
    nets = []
    for line in _run("ip", "-4", "-o", "addr", "show").stdout.splitlines():
        m = re.search(r"inet (\S+)", line)
        if m:
            nets.append(ipaddress.ip_interface(m.group(1)).network)
    for line in _run("ip", "-4", "route", "show", "table", "all").stdout.splitlines():
        first = line.split()[0] if line.split() else ""
        if first in ("default", "broadcast", "local", "unreachable", "blackhole", "prohibit"):
            first = line.split()[1] if len(line.split()) > 1 else ""
        try:
            nets.append(ipaddress.ip_network(first, strict=False))
        except ValueError:
            continue
    return nets


def remove_stale() -> list[str]:
    """Remove namespaces (and bridges) left by a campaign whose process is gone."""
    removed = []
    for line in _run("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _NS_RE.match(name)
        if not m:
            continue
        if _pid_alive(int(m.group(1), 16)):
            continue
        _run("ip", "netns", "del", name, check=False)
        removed.append(name)
    for line in _run("ip", "-o", "link", "show", "type", "bridge", check=False).stdout.splitlines():
        m = re.match(rf"\d+: ({PREFIX}([0-9a-f]{{5}})br)[:@]", line)
        if m and not _pid_alive(int(m.group(2), 16)):
            _run("ip", "link", "del", m.group(1), check=False)
            removed.append(m.group(1))
    return removed


def _pid_alive(tag: int) -> bool:
    # The tag is the pid modulo 16**5: a match may be another process, which only means
    # a stale namespace is kept a little longer.
    try:
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) % 0x100000 == tag:
                return True
    except OSError:
        return True
    return False


class NetnsLab:
    """N namespaces on one bridge. ``hosts`` and ``launch_prefix`` go to
    EmbeddedCluster; ``partition(a, b)`` and ``heal()`` cut and restore links."""

    def __init__(self, size: int):
        reason = unavailable_reason()
        if reason:
            raise NetnsError(reason)
        self.size = size
        self.tag = f"{os.getpid() % 0x100000:05x}"
        self.bridge = f"{PREFIX}{self.tag}br"
        self.namespaces = {i: f"{PREFIX}{self.tag}n{i}" for i in range(1, size + 1)}
        self.network = self._pick_network()
        hosts = list(self.network.hosts())
        self.addresses = {i: str(hosts[i - 1]) for i in range(1, size + 1)}
        self.bridge_address = str(hosts[253])
        self.cut: set[frozenset[int]] = set()
        self._up = False

    def _pick_network(self) -> ipaddress.IPv4Network:
        used = _used_networks()
        start = os.getpid() % 200
        for i in range(250):
            net = ipaddress.ip_network(f"10.250.{(start + i) % 250 + 1}.0/24")
            if not any(net.overlaps(u) for u in used):
                return net
        raise NetnsError("no free 10.250.X.0/24 for the campaign's namespaces")

    @property
    def hosts(self) -> list[str]:
        return [self.addresses[i] for i in range(1, self.size + 1)]

    def launch_prefix(self, node_id: int) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[node_id]]

    def setup(self) -> "NetnsLab":
        self._up = True  # from here on, close() removes whatever was made
        prefix = self.network.prefixlen
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.bridge_address}/{prefix}", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for i, ns in self.namespaces.items():
            veth = f"{PREFIX}{self.tag}v{i}"
            _run("ip", "netns", "add", ns)
            _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0",
                 "netns", ns)
            _run("ip", "link", "set", veth, "master", self.bridge, "up")
            _run("ip", "netns", "exec", ns, "ip", "addr", "add",
                 f"{self.addresses[i]}/{prefix}", "dev", "eth0")
            _run("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
            _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        log.info("network namespaces up", network=str(self.network),
                 namespaces=list(self.namespaces.values()))
        return self

    def partition(self, a: int, b: int) -> None:
        """Drop every packet between nodes a and b (both directions, both ends)."""
        for me, other in ((a, b), (b, a)):
            ns, addr = self.namespaces[me], self.addresses[other]
            _run("ip", "netns", "exec", ns, "iptables", "-w", "-A", "OUTPUT", "-d", addr,
                 "-j", "DROP")
            _run("ip", "netns", "exec", ns, "iptables", "-w", "-A", "INPUT", "-s", addr,
                 "-j", "DROP")
        self.cut.add(frozenset((a, b)))

    def isolate(self, node: int) -> None:
        """Cut `node` off from every other node (clients still reach it)."""
        for other in self.namespaces:
            if other != node and frozenset((node, other)) not in self.cut:
                self.partition(node, other)

    def heal(self) -> None:
        for ns in self.namespaces.values():
            _run("ip", "netns", "exec", ns, "iptables", "-w", "-F", check=False)
        self.cut.clear()

    def close(self) -> None:
        if not self._up:
            return
        self._up = False
        for ns in self.namespaces.values():
            _run("ip", "netns", "del", ns, check=False)
        _run("ip", "link", "del", self.bridge, check=False)

    def __enter__(self) -> "NetnsLab":
        return self.setup()

    def __exit__(self, *exc) -> None:
        self.close()
