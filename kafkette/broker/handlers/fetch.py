"""Fetch (key 1), versions 4-17.

Whole stored batches straight from the segment files: the bytes read with one pread
become their own chunk of the response (see protocol/primitives.Writer) and are
handed to the transport with writelines; nothing is decoded or re-encoded.

- A fetch offset inside a batch returns that whole batch; the client skips the
  records before its offset.
- max_bytes and partition_max_bytes are honoured, but the first batch of the first
  partition with data is returned even if larger (KIP-74), so a consumer never stalls.
- If fewer than min_bytes are available, the request waits in the fetch purgatory
  until an append to one of its partitions or max_wait_ms — woken by appends, no
  polling loop.
- Fetch sessions (KIP-227): the response carries session id 0, which tells the
  client no session was created, so every request is a full fetch. Kafka caches
  sessions to save request bytes; correctness is the same.
- last_stable_offset equals the high watermark until transactions land; the aborted
  transactions list is null.
- Follower fetches (replica_id >= 0) come with replication.
"""
import asyncio

from kafkette.broker.handlers.common import error_of, leader_endpoints
from kafkette.broker.replica_manager import NotLeaderError
from kafkette.broker.registry import handler
from kafkette.errors import ErrorCode, KafkaError
from kafkette.protocol.messages import FetchResponse

TopicResp = FetchResponse.FetchableTopicResponse
PartData = FetchResponse.FetchableTopicResponse.PartitionData


def _read_all(ctx, request, names):
    """One pass over the requested partitions. Returns (response topics, bytes)."""
    rm = ctx.broker.replica_manager
    # max_bytes 0 still returns one batch of the first partition with data (KIP-74).
    remaining = request.max_bytes
    total = 0
    topics = []
    for t, name in zip(request.topics, names):
        parts = []
        for p in t.partitions:
            if name is None:
                parts.append(PartData(partition_index=p.partition,
                                      error_code=ErrorCode.UNKNOWN_TOPIC_ID,
                                      high_watermark=-1, records=b""))
                continue
            try:
                part = rm.partition(name, p.partition)
                if p.current_leader_epoch >= 0 and p.current_leader_epoch != part.leader_epoch:
                    # KIP-320 (v9+): a client behind the leader epoch is fenced (it
                    # refreshes its metadata); one ahead of ours waits for our metadata.
                    raise KafkaError(None, ErrorCode.FENCED_LEADER_EPOCH
                                     if p.current_leader_epoch < part.leader_epoch
                                     else ErrorCode.UNKNOWN_LEADER_EPOCH)
                plog = part.log
                hw = plog.high_watermark
                if remaining > 0 or total == 0:
                    limit = min(p.partition_max_bytes, max(remaining, 0))
                    # KIP-74: the first non-empty partition gets at least one batch.
                    data = plog.read(p.fetch_offset, limit, max_offset=hw,
                                     min_one_batch=(total == 0), view=True)
                else:
                    if not plog.log_start_offset <= p.fetch_offset <= plog.log_end_offset:
                        plog.read(p.fetch_offset, 0)  # raises OFFSET_OUT_OF_RANGE
                    data = b""
            except KafkaError as e:
                code, _ = error_of(e)
                pd = PartData(partition_index=p.partition, error_code=code,
                              high_watermark=_hw(rm, name, p.partition),
                              last_stable_offset=-1,
                              log_start_offset=_lso(rm, name, p.partition),
                              records=b"")
                if isinstance(e, NotLeaderError) and ctx.api_version >= 12:
                    # KIP-951: the current leader (v12+) and its address (v16+).
                    pd.current_leader = PartData.LeaderIdAndEpoch(
                        leader_id=e.leader, leader_epoch=e.leader_epoch)
                    if e.leader >= 0:
                        ctx.new_leaders = getattr(ctx, "new_leaders", set()) | {e.leader}
                parts.append(pd)
                continue
            n = len(data)
            total += n
            remaining -= n
            parts.append(PartData(partition_index=p.partition, error_code=0, high_watermark=hw,
                                  last_stable_offset=hw, log_start_offset=plog.log_start_offset,
                                  aborted_transactions=None, records=data))
        topics.append(TopicResp(topic=name if name is not None else "", topic_id=t.topic_id,
                                partitions=parts))
    return topics, total


def _hw(rm, name, index):
    part = rm.partitions.get((name, index))
    return part.log.high_watermark if part else -1


def _lso(rm, name, index):
    part = rm.partitions.get((name, index))
    return part.log.log_start_offset if part else -1


def _count_bytes_out(ctx, topics):
    """Metrics: bytes returned per topic, counted once per response actually sent
    (not for the reads of a long poll that are thrown away). Records out are not
    counted: that would mean decoding the batches (kafkette.broker.metrics)."""
    metrics = ctx.broker.metrics
    for t in topics:
        n = sum(len(p.records) for p in t.partitions if p.records)
        if n:
            metrics.record_fetch(t.topic, n)
    return topics


def _has_error(topics) -> bool:
    return any(p.error_code for t in topics for p in t.partitions)


@handler(1, 4, 17)
def handle(ctx, request):
    image = ctx.broker.image
    if ctx.api_version >= 13:
        names = [image.topics_by_id.get(t.topic_id) for t in request.topics]
    else:
        names = [t.topic for t in request.topics]
    topics, total = _read_all(ctx, request, names)
    if total >= request.min_bytes or request.max_wait_ms <= 0 or _has_error(topics) \
            or not request.topics:
        return _response(ctx, topics)
    return _wait(ctx, request, names)


def _response(ctx, topics):
    resp = FetchResponse(error_code=0, session_id=0, responses=_count_bytes_out(ctx, topics))
    new_leaders = getattr(ctx, "new_leaders", None)
    if new_leaders and ctx.api_version >= 16:
        resp.node_endpoints = leader_endpoints(ctx, new_leaders, FetchResponse.NodeEndpoint)
    return resp


async def _wait(ctx, request, names):
    purgatory = ctx.broker.purgatory
    keys = [(name, p.partition) for t, name in zip(request.topics, names)
            if name is not None for p in t.partitions]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + request.max_wait_ms / 1000
    while True:
        fut = purgatory.watch(keys)
        try:
            await asyncio.wait_for(fut, max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            pass
        topics, total = _read_all(ctx, request, names)
        if total >= request.min_bytes or loop.time() >= deadline or _has_error(topics) \
                or ctx.broker.closing:
            return _response(ctx, topics)
