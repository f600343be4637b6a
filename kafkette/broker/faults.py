"""Fault injection: make this broker misbehave on purpose, so users can test how their
pipelines cope with what a real Kafka cluster does to them (kafkette only; Kafka has
no such API — Trogdor's fault specs and Toxiproxy are the nearest things).

Rules (held by `FaultInjector`, sans-IO: rules, counts and expiry on the broker's
clock; no wire messages in the core):

- error:   the next N requests of API key K (optionally only those touching topic T /
           partition P) fail with Kafka error code C.
- latency: D ms are added before API K is answered (the next N requests, or until
           cleared); the dispatcher gets an awaitable that sleeps, then runs the handler.
- leader_unavailable: partition (T, P) has no leader for S seconds: Produce, Fetch and
           ListOffsets answer NOT_LEADER_OR_FOLLOWER for it, Metadata reports leader -1
           with LEADER_NOT_AVAILABLE for it (what clients see while Kafka elects a new
           leader, see KRaft's PartitionChangeBuilder), until it expires.
- close_connections(client_id=None): abort client connections now.

The dispatcher calls `apply_faults()` (below the core) before the handler when any rule
is active; with no rule it costs one attribute test per request.

Error responses mirror the request's topics/partitions with the error code, like
Kafka's AbstractRequest.getErrorResponse. Where kafkette differs:
- Partition filters on Produce/Fetch/ListOffsets: only matching partitions get the
  error, the others are served normally (the request is split). For every other API
  (OffsetCommit, OffsetFetch, group APIs ...) a rule with a topic filter errors the
  whole request when any of its topics/partitions matches.
- Fetch: the error goes on the partitions; the top-level error code stays 0 (Kafka's
  FetchRequest.getErrorResponse sets both). A fetch with an injected partition error
  answers immediately (min_bytes is dropped), as Kafka does for any partition error.
- Metadata errors are per topic: the handler answers and the matching topics get the
  error code (brokers and cluster id stay, so clients keep their bootstrap).
"""
from __future__ import annotations

import asyncio
import inspect
import itertools
from dataclasses import dataclass, field

from kafkette.errors import ErrorCode
from kafkette.logging import get_logger

log = get_logger("kafkette.faults")


class FaultError(ValueError):
    """A rule that cannot be injected (bad kind, API key or arguments)."""


@dataclass
class FaultRule:
    id: int
    kind: str                     # "error" | "latency" | "leader_unavailable"
    api_key: int | None = None
    error_code: int = 0
    delay_ms: int = 0
    topic: str | None = None
    partition: int | None = None
    remaining: int | None = None  # requests left; None = until cleared / expired
    expires_at_ms: int | None = None  # on the clock's monotonic_ms

    def matches(self, api_key: int, touched) -> bool:
        if self.api_key is not None and api_key != self.api_key:
            return False
        if self.topic is None and self.partition is None:
            return True
        return any(self.covers(t, p) for t, p in touched)

    def covers(self, topic, partition) -> bool:
        return ((self.topic is None or topic == self.topic)
                and (self.partition is None or partition is None or partition == self.partition))

    def to_dict(self, now_ms: int) -> dict:
        d = {"id": self.id, "kind": self.kind}
        if self.api_key is not None:
            d["api_key"] = self.api_key
        if self.kind == "error":
            d["error_code"] = self.error_code
            d["error"] = _error_name(self.error_code)
        if self.kind == "latency":
            d["delay_ms"] = self.delay_ms
        if self.topic is not None:
            d["topic"] = self.topic
        if self.partition is not None:
            d["partition"] = self.partition
        if self.remaining is not None:
            d["remaining"] = self.remaining
        if self.expires_at_ms is not None:
            d["expires_in_ms"] = max(0, self.expires_at_ms - now_ms)
        return d


def _error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


@dataclass
class Decision:
    """What the injector decided for one request."""
    error_code: int = 0
    # The error applies only to these (topic, partition) pairs; None = whole request.
    error_scope: object = None
    delay_ms: int = 0
    unavailable: set = field(default_factory=set)   # (topic, partition) without a leader


class FaultInjector:
    def __init__(self, clock, node_id: int | None = None):
        self.clock = clock
        self.node_id = node_id
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        self._connections: set = set()   # live client connections (have .client_id, .abort())

    # -- state -----------------------------------------------------------------
    @property
    def active(self) -> bool:
        return bool(self._rules)

    def _now(self) -> int:
        return self.clock.monotonic_ms()

    def _add(self, rule: FaultRule) -> int:
        self._rules.append(rule)
        log.info("fault injected", **rule.to_dict(self._now()))
        return rule.id

    # -- injection -------------------------------------------------------------
    def inject_error(self, api_key: int, error_code: int, count: int | None = 1, *,
                     topic: str | None = None, partition: int | None = None) -> int:
        """The next `count` requests of `api_key` (touching topic/partition when given)
        fail with `error_code`; count None = every request until cleared."""
        _check_count(count)
        if not isinstance(error_code, int) or error_code == 0:
            raise FaultError("error_code must be a non-zero Kafka error code")
        return self._add(FaultRule(next(self._ids), "error", int(api_key), int(error_code),
                                   topic=topic, partition=partition, remaining=count))

    def inject_latency(self, api_key: int, delay_ms: int, count: int | None = None, *,
                       topic: str | None = None, partition: int | None = None) -> int:
        """Delay the next `count` answers to `api_key` by `delay_ms` (None = until cleared)."""
        _check_count(count)
        if delay_ms < 0:
            raise FaultError("delay_ms must be >= 0")
        return self._add(FaultRule(next(self._ids), "latency", int(api_key), delay_ms=int(delay_ms),
                                   topic=topic, partition=partition, remaining=count))

    def make_partition_unavailable(self, topic: str, partition: int, duration_ms: int) -> int:
        """No leader for (topic, partition) during `duration_ms` (the broker's clock)."""
        if duration_ms <= 0:
            raise FaultError("duration_ms must be > 0")
        return self._add(FaultRule(next(self._ids), "leader_unavailable", topic=topic,
                                   partition=int(partition),
                                   expires_at_ms=self._now() + int(duration_ms)))

    def inject(self, spec: dict) -> int | dict:
        """One rule from a JSON-like dict (the admin HTTP body): {"kind": "error",
        "api_key": 0, "error_code": 6, "count": 3, "topic": "t", "partition": 0},
        {"kind": "latency", "api_key": 0, "delay_ms": 3000, "count": null},
        {"kind": "leader_unavailable", "topic": "t", "partition": 0, "duration_ms": 5000},
        {"kind": "close_connections", "client_id": "x"} (returns {"closed": n})."""
        kind = spec.get("kind")
        known = {"kind", "api_key", "error_code", "error", "count", "topic", "partition",
                 "delay_ms", "duration_ms", "client_id"}
        extra = set(spec) - known
        if extra:
            raise FaultError(f"unknown fields {sorted(extra)}")
        try:
            if kind == "error":
                code = spec.get("error_code")
                if code is None and "error" in spec:
                    code = ErrorCode[str(spec["error"])].value
                return self.inject_error(int(spec["api_key"]), int(code),
                                         spec.get("count", 1), topic=spec.get("topic"),
                                         partition=spec.get("partition"))
            if kind == "latency":
                return self.inject_latency(int(spec["api_key"]), int(spec["delay_ms"]),
                                           spec.get("count"), topic=spec.get("topic"),
                                           partition=spec.get("partition"))
            if kind == "leader_unavailable":
                return self.make_partition_unavailable(str(spec["topic"]), int(spec["partition"]),
                                                       int(spec["duration_ms"]))
            if kind == "close_connections":
                return {"closed": self.close_connections(spec.get("client_id"))}
        except (KeyError, TypeError) as e:
            raise FaultError(f"bad {kind} rule: missing or invalid {e}") from None
        raise FaultError(f"unknown kind {kind!r} (error, latency, leader_unavailable, "
                         "close_connections)")

    def list(self) -> list[dict]:
        self._expire()
        now = self._now()
        return [r.to_dict(now) for r in self._rules]

    def clear(self, rule_id: int | None = None) -> int:
        """Remove one rule (or all); returns how many were removed."""
        before = len(self._rules)
        if rule_id is None:
            self._rules.clear()
        else:
            self._rules = [r for r in self._rules if r.id != rule_id]
        removed = before - len(self._rules)
        log.info("faults cleared", rule_id=rule_id, removed=removed)
        return removed

    # -- connections -------------------------------------------------------------
    def track_connection(self, conn) -> None:
        self._connections.add(conn)

    def untrack_connection(self, conn) -> None:
        self._connections.discard(conn)

    def close_connections(self, client_id: str | None = None) -> int:
        """Abort client connections now: all, or those whose client id is `client_id`."""
        victims = [c for c in self._connections
                   if client_id is None or getattr(c, "client_id", None) == client_id]
        for c in victims:
            c.abort()
        log.info("fault injected", kind="close_connections", client_id=client_id,
                 closed=len(victims))
        return len(victims)

    # -- the decision for one request ----------------------------------------------
    def _expire(self) -> None:
        now = self._now()
        expired = [r for r in self._rules if r.expires_at_ms is not None and now >= r.expires_at_ms]
        if expired:
            self._rules = [r for r in self._rules if r not in expired]
            for r in expired:
                log.info("fault expired", id=r.id, kind=r.kind, topic=r.topic,
                         partition=r.partition)

    def decide(self, api_key: int, touched: list, leaderless: bool = False) -> Decision:
        """`touched`: the (topic, partition) pairs of the request (partition None for a
        topic-level request such as Metadata). `leaderless`: whether the API can show a
        partition without a leader (those a leader serves, and Metadata). Consumes rule
        counts."""
        self._expire()
        d = Decision()
        used = []
        for r in self._rules:
            if r.kind == "leader_unavailable":
                if leaderless:
                    d.unavailable.update((t, r.partition if p is None else p)
                                         for t, p in touched if r.covers(t, p))
                continue
            if not r.matches(api_key, touched):
                continue
            if r.kind == "error" and not d.error_code:
                d.error_code = r.error_code
                if r.topic is not None or r.partition is not None:
                    d.error_scope = r
                used.append(r)
            elif r.kind == "latency":
                d.delay_ms = max(d.delay_ms, r.delay_ms)
                used.append(r)
        for r in used:
            if r.remaining is not None:
                r.remaining -= 1
                if r.remaining <= 0:
                    self._rules.remove(r)
                    log.info("fault exhausted", id=r.id, kind=r.kind)
        return d


def _check_count(count) -> None:
    if count is not None and (not isinstance(count, int) or count < 1):
        raise FaultError("count must be a positive integer or null")


# ==================================================================================
# Applying a decision to a request (the dispatcher's side). What each API looks like
# (its partitions, its error response) is in its handler's registration
# (broker/registry.py: touches, partition_scope, error_response, mark_faults).
# ==================================================================================

def _then(result, fn):
    """Apply fn to a handler result that may be an awaitable."""
    if result is None:
        return None
    if inspect.isawaitable(result):
        async def later():
            r = await result
            return None if r is None else fn(r)
        return later()
    return fn(result)


def _split_and_serve(ctx, scope, request, handle, failing: dict):
    """Serve the partitions not in `failing` ((topic, partition) -> code) through the
    handler, and merge error entries for the others into its response."""
    errors = []   # (request topic, [partition error entries])
    kept_topics = []
    for t in getattr(request, scope.request_topics):
        name = scope.topic_name(ctx, t)
        keep, errs = [], []
        for p in getattr(t, scope.request_partitions):
            index = getattr(p, scope.request_index)
            code = failing.get((name, index))
            if code:
                errs.append(scope.partition_error(index, code))
            else:
                keep.append(p)
        if errs:
            errors.append((t, errs))
        if keep:
            setattr(t, scope.request_partitions, keep)
            kept_topics.append(t)
    if not kept_topics:
        if not scope.wants_response(request):
            return None
        result = scope.empty_response()
    else:
        setattr(request, scope.request_topics, kept_topics)
        scope.answer_now(request)
        result = handle(ctx, request)

    def merge(resp):
        topics = getattr(resp, scope.response_topics)
        for t, errs in errors:
            key = scope.topic_key(ctx, t)
            for rt in topics:
                if scope.topic_key(ctx, rt) == key:
                    getattr(rt, scope.response_partitions).extend(errs)
                    break
            else:
                topics.append(scope.topic_response(t, errs))
        return resp
    return _then(result, merge)


async def _delayed(delay_ms: int, fn):
    await asyncio.sleep(delay_ms / 1000)
    result = fn()
    if inspect.isawaitable(result):
        result = await result
    return result


def apply_faults(faults: FaultInjector, ctx, spec, request, handle):
    """Run `handle(ctx, request)` under the active rules for the API of `spec` (its
    HandlerSpec); returns what a handler returns (a response, an awaitable of one, or
    None)."""
    touched = spec.touches(ctx, request) if spec.touches is not None else []
    d = faults.decide(spec.api_key, touched, leaderless=spec.partition_scope is not None
                      or spec.mark_faults is not None)
    if not d.error_code and not d.unavailable and not d.delay_ms:
        return handle(ctx, request)
    scope = spec.partition_scope

    def serve():
        if spec.mark_faults is not None:
            if not d.error_code and not d.unavailable:
                return handle(ctx, request)
            return _then(handle(ctx, request),
                         lambda r: spec.mark_faults(r, d.unavailable, d.error_code,
                                                    d.error_scope))
        if scope is not None and (d.unavailable or (d.error_code and d.error_scope is not None)):
            failing = {tp: ErrorCode.NOT_LEADER_OR_FOLLOWER for tp in d.unavailable}
            if d.error_code:
                for tp in touched:
                    if d.error_scope is None or d.error_scope.covers(*tp):
                        failing[tp] = d.error_code
            return _split_and_serve(ctx, scope, request, handle, failing)
        if d.error_code:
            if spec.error_response is not None:
                if scope is not None and not scope.wants_response(request):
                    return None
                return spec.error_response(request, d.error_code, ctx)
            log.warning("no error response for this api; request served normally",
                        api_key=spec.api_key, error_code=d.error_code)
        return handle(ctx, request)

    if d.delay_ms:
        return _delayed(d.delay_ms, serve)
    return serve()
