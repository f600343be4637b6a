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
- Fetch sessions (KIP-227, v7+; broker/fetch_session.py): session_epoch 0 asks for a
  session, created when the cache (max.incremental.fetch.session.cache.slots) has room,
  and its id answered; later requests with the id and the next epoch name only the
  partitions whose fetch position changed (forgotten_topics_data removes), the fetch
  covers every partition of the session, and the answer lists only the partitions with
  records, errors or changed offsets. Unknown session: FETCH_SESSION_ID_NOT_FOUND; wrong
  epoch: INVALID_FETCH_SESSION_EPOCH. kafkette's own followers (broker/replica_fetcher.py)
  fetch sessionless (epoch -1), as before.
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
from kafkette.broker import fetch_session as fs
from kafkette.broker.handlers.common import leader_endpoints
from kafkette.broker.quotas import CONSUMER_BYTE_RATE
from kafkette.broker.registry import PartitionScope, handler
from kafkette.broker.replica_manager import FetchParams, FetchPartition, FetchResult
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


class _Entry:
    """One partition to read: from the request (full fetch) or the session (incremental)."""
    __slots__ = ("name", "topic_id", "partition", "fetch_offset", "max_bytes",
                 "current_leader_epoch", "last_fetched_epoch", "log_start_offset", "cached")

    def __init__(self, name, topic_id, partition, fetch_offset, max_bytes,
                 current_leader_epoch, last_fetched_epoch, log_start_offset, cached=None):
        self.name, self.topic_id, self.partition = name, topic_id, partition
        self.fetch_offset, self.max_bytes = fetch_offset, max_bytes
        self.current_leader_epoch, self.last_fetched_epoch = current_leader_epoch, last_fetched_epoch
        self.log_start_offset = log_start_offset
        self.cached = cached


def _request_entries(request, names):
    return [_Entry(name, t.topic_id, p.partition, p.fetch_offset, p.partition_max_bytes,
                   p.current_leader_epoch, p.last_fetched_epoch, p.log_start_offset)
            for t, name in zip(request.topics, names) for p in t.partitions]


def _session_error(code):
    return FetchResponse(error_code=code, session_id=0, responses=[])


def _update_session(session, request, names, v):
    """Apply an incremental request to its session (Kafka's FetchSession.update)."""
    by_id = v >= 13
    parts = session.partitions
    for t, name in zip(request.topics, names):
        for p in t.partitions:
            key = (t.topic_id if by_id else name, p.partition)
            cp = parts.get(key)
            if cp is None:
                parts[key] = fs.CachedPartition(
                    name, t.topic_id, p.partition, p.fetch_offset, p.partition_max_bytes,
                    p.current_leader_epoch, p.last_fetched_epoch, p.log_start_offset)
            else:
                cp.topic = name
                cp.fetch_offset, cp.max_bytes = p.fetch_offset, p.partition_max_bytes
                cp.current_leader_epoch = p.current_leader_epoch
                cp.last_fetched_epoch = p.last_fetched_epoch
                cp.log_start_offset = p.log_start_offset
    for t in request.forgotten_topics_data or ():
        for index in t.partitions:
            parts.pop((t.topic_id if by_id else t.topic, index), None)


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
    cache = ctx.broker.fetch_sessions
    session_id, epoch = (request.session_id, request.session_epoch) if v >= 7 else (0, -1)
    session = None
    create = False
    if epoch in (fs.INITIAL_EPOCH, fs.FINAL_EPOCH):
        if session_id != fs.INVALID_SESSION_ID:
            cache.remove(session_id)  # a full fetch closes the session it names
        create = epoch == fs.INITIAL_EPOCH
        entries = _request_entries(request, names)
    else:
        session = cache.get(session_id)
        if session is None:
            return _session_error(ErrorCode.FETCH_SESSION_ID_NOT_FOUND)
        if session.epoch != epoch:
            return _session_error(ErrorCode.INVALID_FETCH_SESSION_EPOCH)
        if session.uses_topic_ids != (v >= 13):
            return _session_error(ErrorCode.FETCH_SESSION_TOPIC_ID_ERROR)
        _update_session(session, request, names, v)
        if not session.partitions:
            cache.remove(session.id)
            session = None
            entries = []
        else:
            cache.touch(session)
            session.epoch = fs.next_epoch(epoch)
            entries = [_Entry(cp.topic, cp.topic_id, cp.partition, cp.fetch_offset, cp.max_bytes,
                              cp.current_leader_epoch, cp.last_fetched_epoch,
                              cp.log_start_offset, cp)
                       for cp in session.partitions.values()]
    denied = frozenset()
    if authz.enabled(ctx) and entries:
        known = {e.name for e in entries if e.name is not None}
        if params.replica_id >= 0:
            if not authz.authorize_cluster(ctx, CLUSTER_ACTION):
                denied = frozenset(known)
        else:
            ok = authz.filter_authorized(ctx, READ, TOPIC, known)
            # An unknown topic id stays UNKNOWN_TOPIC_ID (the replica manager's answer).
            denied = frozenset(known - set(ok))
    wanted = [FetchPartition(e.name, e.partition, e.fetch_offset, e.max_bytes,
                             e.current_leader_epoch, e.last_fetched_epoch, e.log_start_offset)
              for e in entries if e.name not in denied]
    if not wanted:
        return _response(ctx, entries, [], denied, session, create, params)
    results = ctx.broker.replica_manager.fetch_messages(params, wanted)
    if inspect.isawaitable(results):
        return _finish(ctx, entries, results, denied, session, create, params)
    return _response(ctx, entries, results, denied, session, create, params)


async def _finish(ctx, entries, awaitable, denied, session, create, params):
    return _response(ctx, entries, await awaitable, denied, session, create, params)


_DENIED = FetchResult(error=ErrorCode.TOPIC_AUTHORIZATION_FAILED)


def _response(ctx, entries, results, denied, session, create, params):
    v = ctx.api_version
    metrics = ctx.broker.metrics  # bytes out per topic, once per response actually sent
    it = iter(results)
    new_leaders = set()
    topics: dict = {}   # (name, topic id) -> TopicResp, in first-seen order
    sent: dict = {}
    new_session = []
    for e in entries:
        r = _DENIED if e.name in denied else next(it)
        diverging = r.diverging_epoch is not None
        if session is not None and not fs.must_respond(
                e.cached, r.error, r.high_watermark, r.log_start_offset,
                r.last_stable_offset if not r.error else -1, bool(r.records), diverging,
                r.preferred_read_replica):
            continue
        if create:
            new_session.append(fs.CachedPartition(
                e.name, e.topic_id, e.partition, e.fetch_offset, e.max_bytes,
                e.current_leader_epoch, e.last_fetched_epoch, e.log_start_offset,
                high_watermark=-1 if r.error else r.high_watermark,
                sent_log_start_offset=r.log_start_offset,
                last_stable_offset=r.last_stable_offset if not r.error else -1))
        pd = PartData(partition_index=e.partition, error_code=r.error,
                      high_watermark=r.high_watermark,
                      last_stable_offset=r.last_stable_offset if not r.error else -1,
                      log_start_offset=r.log_start_offset,
                      aborted_transactions=None if r.aborted_transactions is None else [
                          Aborted(producer_id=pid, first_offset=first)
                          for pid, first in r.aborted_transactions],
                      preferred_read_replica=r.preferred_read_replica, records=r.records)
        if diverging:
            pd.diverging_epoch = PartData.EpochEndOffset(epoch=r.diverging_epoch[0],
                                                         end_offset=r.diverging_epoch[1])
        if r.current_leader is not None and v >= 12:
            # KIP-951: the current leader (v12+) and its address (v16+).
            pd.current_leader = PartData.LeaderIdAndEpoch(leader_id=r.current_leader[0],
                                                          leader_epoch=r.current_leader[1])
            if r.current_leader[0] >= 0:
                new_leaders.add(r.current_leader[0])
        key = (e.name, e.topic_id) if v >= 13 else e.name
        tr = topics.get(key)
        if tr is None:
            tr = topics[key] = TopicResp(topic=e.name if e.name is not None else "",
                                         topic_id=e.topic_id, partitions=[])
        tr.partitions.append(pd)
        if r.records:
            sent[e.name] = sent.get(e.name, 0) + len(r.records)
    for name, n in sent.items():
        metrics.record_fetch(name, n)
    session_id = fs.INVALID_SESSION_ID
    if session is not None:
        session_id = session.id
    elif create:
        created = ctx.broker.fetch_sessions.maybe_create(
            params.replica_id >= 0, v >= 13, new_session)
        if created is not None:
            session_id = created.id
    resp = FetchResponse(error_code=0, session_id=session_id, responses=list(topics.values()))
    if new_leaders and v >= 16:
        resp.node_endpoints = leader_endpoints(ctx, new_leaders, FetchResponse.NodeEndpoint)
    return resp
