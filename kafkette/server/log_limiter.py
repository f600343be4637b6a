"""Rate-limited warnings about misbehaving clients, counted by kind.

One log line per bad frame turns a flood of bad frames into a flood of log lines (and
a full disk). `ClientErrorLog` logs the first `burst` events of each kind from each
peer host per `interval_s`, counts the rest, and when that interval is over logs one
line "suppressed similar events" with their count. Kinds are limited separately, so a
flood of bad frames does not hide the first failed login from the same host. Every
event, logged or not, is counted in `counts[kind]` for /metrics. Kafka has no such limiter (it logs rejected
connections and failed authentications per event, at INFO/DEBUG).

Sans-IO: the clock is injected (`clock()` -> seconds, monotonic), and the owner calls
`flush()` from a timer to emit the summaries of intervals that have ended; tests drive
both by hand. Memory is bounded: at most `max_peers` (host, kind) pairs are tracked one
by one, further hosts share one entry per kind ("other peers").
"""
from __future__ import annotations

import time
from typing import Any, Callable

OTHER_PEERS = "*"


class _Peer:
    __slots__ = ("window_start", "logged", "suppressed")

    def __init__(self, now: float):
        self.window_start = now
        self.logged = 0
        self.suppressed = 0


class ClientErrorLog:
    def __init__(self, logger: Any, *, burst: int = 10, interval_s: float = 60.0,
                 max_peers: int = 1024, clock: Callable[[], float] = time.monotonic):
        self.log = logger
        self.burst = burst
        self.interval_s = interval_s
        self.max_peers = max_peers
        self.clock = clock
        self.counts: dict[str, int] = {}            # kind -> events, logged or not
        self._peers: dict[tuple[str, str], _Peer] = {}

    def warning(self, kind: str, peer_host: str, event: str, **fields: Any) -> bool:
        return self._event("warning", kind, peer_host, event, fields)

    def info(self, kind: str, peer_host: str, event: str, **fields: Any) -> bool:
        return self._event("info", kind, peer_host, event, fields)

    def exception(self, kind: str, peer_host: str, event: str, **fields: Any) -> bool:
        """As warning, at ERROR with the current exception's traceback (a handler that
        failed on a client's request: a bug, but one a client can trigger at will)."""
        return self._event("exception", kind, peer_host, event, fields)

    def _event(self, level: str, kind: str, host: str, event: str, fields: dict) -> bool:
        """Count the event; log it unless this peer is over its burst. True if logged."""
        self.counts[kind] = self.counts.get(kind, 0) + 1
        now = self.clock()
        key = (host, kind)
        if key not in self._peers and len(self._peers) >= self.max_peers:
            key = (OTHER_PEERS, kind)
        peer = self._peers.get(key)
        if peer is not None and now - peer.window_start >= self.interval_s:
            self._summarise(key, peer)
            peer = None
        if peer is None:
            peer = self._peers[key] = _Peer(now)
        if peer.logged < self.burst:
            peer.logged += 1
            getattr(self.log, level)(event, kind=kind, **fields)
            return True
        peer.suppressed += 1
        return False

    def flush(self) -> None:
        """Log the summary of every interval that has ended and forget quiet peers."""
        now = self.clock()
        for key, peer in list(self._peers.items()):
            if now - peer.window_start >= self.interval_s:
                self._summarise(key, peer)
                del self._peers[key]

    def _summarise(self, key: tuple[str, str], peer: _Peer) -> None:
        if peer.suppressed:
            host, kind = key
            self.log.warning("suppressed similar events from a client",
                             peer_host="other peers" if host == OTHER_PEERS else host,
                             kind=kind, suppressed=peer.suppressed,
                             interval_s=self.interval_s)
