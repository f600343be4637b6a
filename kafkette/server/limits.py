"""Connection and request limits, with Kafka's names (sans-IO: counts and decisions;
server/connection.py pauses and closes).

ConnectionQuotas (Kafka's ConnectionQuotas):
- max.connections.per.ip (+ max.connections.per.ip.overrides, host names resolved once
  at start): a connection over it is closed right after accept, as Kafka does.
- max.connections, broker-wide and per listener (listener.name.<l>.max.connections):
  Kafka blocks its acceptor until a slot frees, leaving new clients in the listen
  backlog; kafkette closes the new connection right after accept instead, so the
  listener never stops serving the per-ip check and clients see a disconnect (and
  retry after reconnect.backoff.ms) rather than a silent hang. As in Kafka, the
  inter-broker listener is exempt from the broker-wide limit when the broker has
  several listeners (Kafka then closes the least recently used connection of another
  listener; kafkette does not).
On TLS listeners the check runs at accept, before the TLS handshake, as in Kafka
(server.py's accept loop of TLS listeners; asyncio's own TLS server would report the
connection only after its handshake).

RequestPool (queued.max.requests, queued.max.request.bytes): the requests read from
sockets and not yet handled, over all connections (Kafka's request queue and memory
pool). Handlers run inline, so a request waits only behind a slow one on its own
connection (a long-poll Fetch, an acks=all Produce). When the pool is full, a
connection that has a request waiting stops reading until the pool has room again;
one with nothing waiting still reads (so one pipelining client cannot starve the
others). A connection muted because its client does not read its responses (write
buffer above the high-water mark) keeps what it has read out of the pool: those
bytes are bounded per connection (one receive buffer), as a muted Kafka channel's
bytes wait in the kernel's socket buffer. queued.max.request.bytes <= 0 (Kafka's
unbounded) is bounded here at socket.request.max.bytes.
"""
from __future__ import annotations

import ipaddress
import socket

from kafkette.config import INT_MAX, BrokerConfig, ConfigError, parse_ip_overrides

PER_IP = "max.connections.per.ip"
BROKER = "max.connections"
LISTENER = "listener.max.connections"


def resolve_ip_overrides(text: str) -> dict[str, int]:
    """{IP address: limit} of max.connections.per.ip.overrides; host names resolved
    (every address they have), as Kafka resolves them with InetAddress.getByName."""
    out: dict[str, int] = {}
    for host, n in parse_ip_overrides(text).items():
        try:
            out[str(ipaddress.ip_address(host))] = n
            continue
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as e:
            raise ConfigError(f"max.connections.per.ip.overrides: cannot resolve {host!r}: "
                              f"{e}", key="max.connections.per.ip.overrides") from None
        for info in infos:
            out[info[4][0]] = n
    return out


class ConnectionQuotas:
    def __init__(self, max_connections: int = INT_MAX, per_listener: dict[str, int] | None = None,
                 per_ip: int = INT_MAX, ip_overrides: dict[str, int] | None = None,
                 protected_listener: str | None = None):
        self.max_connections = max_connections
        self.per_listener = dict(per_listener or {})
        self.per_ip = per_ip
        self.ip_overrides = dict(ip_overrides or {})
        self.protected_listener = protected_listener
        self.total = 0
        self.by_listener: dict[str, int] = {}
        self.by_ip: dict[str, int] = {}
        self.refused: dict[tuple[str, str], int] = {}   # (listener, reason) -> count

    @classmethod
    def from_config(cls, config: BrokerConfig, listeners: list[str]) -> "ConnectionQuotas":
        per_listener = {name: config.listener_value(name, "max.connections")
                        for name in listeners if config.listener_is_set(name, "max.connections")}
        # Kafka's protectedListener: the inter-broker listener, if it is not alone.
        ibl = config.inter_broker_listener_name
        protected = ibl if len(listeners) > 1 and ibl in listeners else None
        return cls(config["max.connections"], per_listener, config["max.connections.per.ip"],
                   resolve_ip_overrides(config["max.connections.per.ip.overrides"]), protected)

    def ip_limit(self, ip: str) -> int:
        return self.ip_overrides.get(_normal_ip(ip), self.per_ip)

    def admit(self, listener: str, ip: str) -> str | None:
        """Count a new connection and return None, or the name of the limit it is over
        (then nothing is counted but the refusal)."""
        ip = _normal_ip(ip)
        reason = None
        if self.by_ip.get(ip, 0) >= self.ip_limit(ip):
            reason = PER_IP
        elif self.by_listener.get(listener, 0) >= self.per_listener.get(listener, INT_MAX):
            reason = LISTENER
        elif self.total >= self.max_connections and listener != self.protected_listener:
            reason = BROKER
        if reason is not None:
            key = (listener, reason)
            self.refused[key] = self.refused.get(key, 0) + 1
            return reason
        self.total += 1
        self.by_listener[listener] = self.by_listener.get(listener, 0) + 1
        self.by_ip[ip] = self.by_ip.get(ip, 0) + 1
        return None

    def release(self, listener: str, ip: str) -> None:
        ip = _normal_ip(ip)
        self.total -= 1
        self.by_listener[listener] -= 1
        n = self.by_ip[ip] - 1
        if n:
            self.by_ip[ip] = n
        else:
            del self.by_ip[ip]   # the map holds only hosts with open connections


def _normal_ip(ip: str) -> str:
    # An IPv4 client on a dual-stack socket shows as ::ffff:a.b.c.d.
    return ip[7:] if ip.startswith("::ffff:") and "." in ip else ip


class RequestPool:
    """Counts of queued requests and their bytes, and the connections waiting for
    room. `add` is called with each connection's change (not per request)."""

    def __init__(self, max_requests: int, max_bytes: int):
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.requests = 0
        self.bytes = 0
        self.waiters: set = set()   # connections paused by a full pool
        self.pauses = 0             # times a connection was paused by a full pool

    @classmethod
    def from_config(cls, config: BrokerConfig) -> "RequestPool":
        qbytes = config["queued.max.request.bytes"]
        return cls(config["queued.max.requests"],
                   qbytes if qbytes > 0 else config["socket.request.max.bytes"])

    @property
    def full(self) -> bool:
        return self.requests >= self.max_requests or self.bytes >= self.max_bytes

    def add(self, requests: int, nbytes: int) -> None:
        was_full = self.full
        self.requests += requests
        self.bytes += nbytes
        if was_full and not self.full and self.waiters:
            waiters, self.waiters = self.waiters, set()
            for conn in waiters:
                conn.pool_has_room()
