"""The handler registry: each handler module registers the API key and the version
range it serves, and the facts about its API that code outside the handler needs
(how to answer it with one error, where a cluster routes it, which partitions it
touches). ApiVersions is built from this registry, never from a hand-kept table, so
what is advertised is exactly what is served; the dispatcher, the cluster's routing
(broker/cluster.py) and fault injection (broker/faults.py) read the other facts from
here, so none of them keeps a switch over API keys."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

# Where a cluster sends a request that this node may not serve itself.
# - ROUTE_CONTROLLER: admin requests that change the metadata log; Kafka forwards them
#   to the active controller (KIP-590).
# - ROUTE_COORDINATOR: group requests that only the group's coordinator serves (the
#   leader of its `__consumer_offsets` partition); the others answer NOT_COORDINATOR.
ROUTE_CONTROLLER = "controller"
ROUTE_COORDINATOR = "coordinator"


@dataclass(frozen=True)
class PartitionScope:
    """How a request addresses partitions one by one (Produce, Fetch, ListOffsets), so
    that a fault can fail some of its partitions and let the handler serve the others,
    and how their error entries look in the response."""
    request_topics: str                  # attribute of the request: its topics
    request_partitions: str              # attribute of a request topic: its partitions
    request_index: str                   # attribute of a request partition: its index
    response_topics: str                 # attribute of the response: its topics
    response_partitions: str             # attribute of a response topic: its partitions
    topic_name: Callable                 # (ctx, request topic) -> name or None
    topic_key: Callable                  # (ctx, request or response topic) -> matching key
    partition_error: Callable            # (index, code) -> response partition entry
    topic_response: Callable             # (request topic, entries) -> response topic
    empty_response: Callable             # () -> response with no topics
    # Whether a request asks for a response at all (Produce acks=0 does not).
    wants_response: Callable = lambda request: True
    # A request that must be answered at once once a partition fails (Fetch drops
    # min_bytes: Kafka answers a fetch with a partition error without waiting).
    answer_now: Callable = lambda request: None


@dataclass(frozen=True)
class HandlerSpec:
    api_key: int
    min_version: int
    max_version: int
    handle: Callable
    # Versions listed in ApiVersions below min_version, answered with
    # UNSUPPORTED_VERSION (Produce v0-2, as Kafka 4.0 does: KAFKA-18659).
    advertised_min_version: int
    # (request, code, ctx, message=None) -> the response carrying `code` everywhere
    # (like Kafka's AbstractRequest.getErrorResponse); None if the API has none here.
    error_response: Callable | None = None
    # ROUTE_CONTROLLER, ROUTE_COORDINATOR or None (served by whichever node gets it).
    route: str | None = None
    # ROUTE_COORDINATOR: (ctx, request) -> the group ids the request names.
    group_ids: Callable | None = None
    # ROUTE_COORDINATOR: (ctx, request, group id) -> whether the request passes the
    # authorization Kafka's KafkaApis does before it looks for the coordinator (READ on
    # the group for JoinGroup, ...). A group that fails it is left to the handler, which
    # answers the authorization error, rather than NOT_COORDINATOR: an unauthorized
    # client learns nothing about where the group lives.
    group_authorized: Callable | None = None
    # ROUTE_COORDINATOR with several groups per request: (ctx, request, handle, codes)
    # -> a response that serves the groups this node coordinates (codes[g] == 0) and
    # answers the others with their code, as KafkaApis does per group.
    per_group_response: Callable | None = None
    # (ctx, request) -> the (topic, partition or None) pairs it touches, for fault rules
    # that name a topic or partition.
    touches: Callable | None = None
    # Partition-by-partition requests (see PartitionScope); their partitions can be
    # made leaderless by a fault.
    partition_scope: PartitionScope | None = None
    # (response, unavailable, code, scope) -> response: how a topic-level answer
    # shows injected faults (Metadata: leader -1 for unavailable partitions).
    mark_faults: Callable | None = None
    # Client quotas (broker/quotas.py): (ctx, request, response, frame size) -> (quota
    # key, bytes) to record against a byte-rate quota, or None (Produce: the request's
    # size, Fetch: the record bytes it returns; replica fetches are exempt).
    quota_bytes: Callable | None = None
    # The first version with KIP-219 throttling: answered at once with throttle_time_ms
    # and the connection muted after; older versions get their answer delayed instead.
    throttle_mute_version: int = 0
    # (ctx, request) -> True for the cluster's own requests, which no client quota
    # touches (Kafka exempts cluster actions: replica fetches, transaction markers).
    quota_exempt: Callable | None = None


HANDLERS: dict[int, HandlerSpec] = {}


def handler(api_key: int, min_version: int, max_version: int, *,
            advertised_min_version: int | None = None, **facts):
    def register(fn):
        HANDLERS[api_key] = HandlerSpec(
            api_key, min_version, max_version, fn,
            min_version if advertised_min_version is None else advertised_min_version,
            **facts)
        return fn
    return register


def load_handlers() -> dict[int, HandlerSpec]:
    # Importing the package imports every handler module, which registers it.
    import kafkette.broker.handlers  # noqa: F401
    return HANDLERS
