"""Fetch (key 1), versions 4-17: consumers and followers.

Decode, one call to ReplicaManager.fetch_messages (broker/replica_manager.py), encode.
Whole stored batches come straight from the segment files: the bytes read with one
pread become their own chunk of the response (see protocol/primitives.Writer) and are
handed to the transport with writelines; nothing is decoded or re-encoded.

- A fetch offset inside a batch returns that whole batch; the client skips the
  records before its offset.
- max_bytes and partition_max_bytes are honoured, but the first batch of the first
  partition with data is returned even if larger (KIP-74), so a consumer never stalls.
- Fewer than min_bytes available: the request waits in the fetch purgatory until an
  append or a high-watermark move on one of its partitions, or max_wait_ms.
- Followers (replica_id >= 0 up to v14, ReplicaState from v15) read up to the log end
  offset and, when they send last_fetched_epoch (v12+) and their log has diverged, get
  DivergingEpoch instead of records (KIP-279); consumers read up to the high watermark.
- Fetch from the closest replica (KIP-392): with replica.selector.class =
  RackAwareReplicaSelector, a v11+ consumer whose rack_id (client.rack) names the rack
  of an in-sync follower that holds its offset gets that follower in
  preferred_read_replica and no records; a follower serves v11+ consumers up to its
  own high watermark.
- Fetch sessions (KIP-227): the response carries session id 0, which tells the
  client no session was created, so every request is a full fetch. Kafka caches
  sessions to save request bytes; correctness is the same.
- Transactions: isolation_level 1 (read_committed) reads up to the last stable offset
  (the first offset of the oldest open transaction, or the high watermark) and gets the
  aborted transactions of the range read, which the client skips; read_uncommitted
  reads to the high watermark and gets a null list, as Kafka.
- ACLs (KafkaApis): a follower needs CLUSTER_ACTION on the cluster (else every
  partition answers TOPIC_AUTHORIZATION_FAILED), a consumer READ on each topic (else
  that topic's partitions answer TOPIC_AUTHORIZATION_FAILED).
"""
import inspect

from kafkette.broker import authorization as authz
from kafkette.broker.handlers.common import leader_endpoints
from kafkette.broker.quotas import CONSUMER_BYTE_RATE
from kafkette.broker.registry import PartitionScope, handler
from kafkette.broker.replica_manager import FetchParams, FetchPartition
from kafkette.controller.acls import CLUSTER_ACTION, READ, TOPIC
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import FetchResponse

TopicResp = FetchResponse.FetchableTopicResponse
PartData = FetchResponse.FetchableTopicResponse.PartitionData
Aborted = PartData.AbortedTransaction


def _replica_id(request, version: int) -> int:
    if version >= 15:
        return request.replica_state.replica_id if request.replica_state is not None else -1
    return request.replica_id


def _topic_name(ctx, t):
    # Fetch v13+ names topics by id (KIP-516).
    if ctx.api_version >= 13:
        return ctx.broker.image.topics_by_id.get(t.topic_id)
    return t.topic


def _part_error(index, code):
    return PartData(partition_index=index, error_code=code, high_watermark=-1,
                    last_stable_offset=-1, log_start_offset=-1, aborted_transactions=None,
                    records=b"")


def _answer_now(request):
    request.min_bytes = 0


# Partition by partition, for fault rules that fail some partitions (broker/faults.py).
# A fetch with a partition error is answered at once, as Kafka does.
SCOPE = PartitionScope(
    request_topics="topics", request_partitions="partitions", request_index="partition",
    response_topics="responses", response_partitions="partitions",
    topic_name=_topic_name,
    topic_key=lambda ctx, t: t.topic_id if ctx.api_version >= 13 else t.topic,
    partition_error=_part_error,
    topic_response=lambda t, parts: TopicResp(topic=t.topic, topic_id=t.topic_id,
                                              partitions=parts),
    empty_response=lambda: FetchResponse(error_code=0, session_id=0, responses=[]),
    answer_now=_answer_now)


def _touches(ctx, request):
    return [(_topic_name(ctx, t), p.partition) for t in request.topics for p in t.partitions]


def _error_response(request, code, ctx, message=None):
    # The error goes on the partitions; the top-level error code stays 0 (Kafka's
    # FetchRequest.getErrorResponse sets both; clients read the partition's).
    return FetchResponse(error_code=0, session_id=0, responses=[
        TopicResp(topic=t.topic, topic_id=t.topic_id,
                  partitions=[_part_error(p.partition, code) for p in t.partitions])
        for t in request.topics])


def _quota_bytes(ctx, request, response, frame_size):
    """KIP-13: a consumer's rate is the record bytes its Fetch answers carry."""
    if response is None:
        return None
    return CONSUMER_BYTE_RATE, sum(len(p.records or b"") for t in response.responses
                                   for p in t.partitions)


# throttle_mute_version: KIP-219 came with Fetch v8; v4-7 get a delayed answer.
# Unlike Kafka, a throttled fetch still carries its records (Kafka answers a throttled
# fetch with no data); the rate counted is the rate sent.
@handler(1, 4, 17, error_response=_error_response, touches=_touches,
         partition_scope=SCOPE, quota_bytes=_quota_bytes, throttle_mute_version=8,
         # Follower fetches: Kafka throttles replication with its own quotas (KIP-73).
         quota_exempt=lambda ctx, request: _replica_id(request, ctx.api_version) >= 0)
def handle(ctx, request):
    v = ctx.api_version
    names = [_topic_name(ctx, t) for t in request.topics]
    params = FetchParams(replica_id=_replica_id(request, v), max_wait_ms=request.max_wait_ms,
                         min_bytes=request.min_bytes, max_bytes=request.max_bytes,
                         isolation_level=request.isolation_level,
                         rack_id=(request.rack_id or "") if v >= 11 else None)
    denied = frozenset()
    if authz.enabled(ctx):
        if params.replica_id >= 0:
            if not authz.authorize_cluster(ctx, CLUSTER_ACTION):
                denied = frozenset(range(len(names)))
        else:
            ok = authz.filter_authorized(ctx, READ, TOPIC, (n for n in names if n is not None))
            # An unknown topic id stays UNKNOWN_TOPIC_ID (the replica manager's answer).
            denied = frozenset(i for i, n in enumerate(names) if n is not None and n not in ok)
    wanted = [FetchPartition(name, p.partition, p.fetch_offset, p.partition_max_bytes,
                             p.current_leader_epoch, p.last_fetched_epoch,
                             p.log_start_offset)
              for i, (t, name) in enumerate(zip(request.topics, names))
              if i not in denied for p in t.partitions]
    if denied and not wanted:
        return _response(ctx, request, names, [], denied)
    results = ctx.broker.replica_manager.fetch_messages(params, wanted)
    if inspect.isawaitable(results):
        return _finish(ctx, request, names, results, denied)
    return _response(ctx, request, names, results, denied)


async def _finish(ctx, request, names, awaitable, denied):
    return _response(ctx, request, names, await awaitable, denied)


def _response(ctx, request, names, results, denied=frozenset()):
    v = ctx.api_version
    metrics = ctx.broker.metrics  # bytes out per topic, once per response actually sent
    it = iter(results)
    new_leaders = set()
    topics = []
    for i, (t, name) in enumerate(zip(request.topics, names)):
        parts = []
        sent = 0
        if i in denied:
            topics.append(TopicResp(topic=name if name is not None else "",
                                    topic_id=t.topic_id, partitions=[
                                        _part_error(p.partition,
                                                    ErrorCode.TOPIC_AUTHORIZATION_FAILED)
                                        for p in t.partitions]))
            continue
        for p in t.partitions:
            r = next(it)
            pd = PartData(partition_index=p.partition, error_code=r.error,
                          high_watermark=r.high_watermark,
                          last_stable_offset=r.last_stable_offset if not r.error else -1,
                          log_start_offset=r.log_start_offset,
                          aborted_transactions=None if r.aborted_transactions is None else [
                              Aborted(producer_id=pid, first_offset=first)
                              for pid, first in r.aborted_transactions],
                          preferred_read_replica=r.preferred_read_replica, records=r.records)
            if r.diverging_epoch is not None:
                pd.diverging_epoch = PartData.EpochEndOffset(epoch=r.diverging_epoch[0],
                                                             end_offset=r.diverging_epoch[1])
            if r.current_leader is not None and v >= 12:
                # KIP-951: the current leader (v12+) and its address (v16+).
                pd.current_leader = PartData.LeaderIdAndEpoch(leader_id=r.current_leader[0],
                                                              leader_epoch=r.current_leader[1])
                if r.current_leader[0] >= 0:
                    new_leaders.add(r.current_leader[0])
            sent += len(r.records)
            parts.append(pd)
        if sent:
            metrics.record_fetch(name, sent)
        topics.append(TopicResp(topic=name if name is not None else "", topic_id=t.topic_id,
                                partitions=parts))
    resp = FetchResponse(error_code=0, session_id=0, responses=topics)
    if new_leaders and v >= 16:
        resp.node_endpoints = leader_endpoints(ctx, new_leaders, FetchResponse.NodeEndpoint)
    return resp
