"""OffsetForLeaderEpoch (key 23), versions 2-4 (as Kafka 4.0 serves them, KIP-896).

For each partition: the end offset of the requested leader epoch in the leader's log,
from its leader-epoch cache (log/leader_epoch.py): the start offset of the next larger
epoch, or the log end offset for the current epoch; an epoch between two known ones
answers the largest known epoch below it; an unknown (older) epoch answers epoch -1,
offset -1. Consumers use it after a leader change to detect a truncated log (KIP-320);
followers use DivergingEpoch in Fetch instead (KIP-279), as Kafka's do.

Errors: NOT_LEADER_OR_FOLLOWER from a non-leader, UNKNOWN_TOPIC_OR_PARTITION,
FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH for a stale or future current_leader_epoch.
"""
from kafkette.broker import authorization as authz
from kafkette.controller.acls import CLUSTER_ACTION, DESCRIBE, TOPIC
from kafkette.broker.handlers.common import error_of
from kafkette.broker.registry import handler
from kafkette.errors import ErrorCode, KafkaError
from kafkette.protocol.messages import OffsetForLeaderEpochResponse

TopicResp = OffsetForLeaderEpochResponse.OffsetForLeaderTopicResult
PartResp = TopicResp.EpochEndOffset


# A follower's request (replica id set, v3+) is the cluster's own: no client quota.
@handler(23, 2, 4, quota_exempt=lambda ctx, r: ctx.api_version >= 3 and r.replica_id >= 0)
def handle(ctx, request):
    rm = ctx.broker.replica_manager
    topics = []
    # KafkaApis: a follower (replica id >= 0, v3+) needs CLUSTER_ACTION on the cluster
    # (every partition CLUSTER_AUTHORIZATION_FAILED); others DESCRIBE on each topic.
    follower = ctx.api_version >= 3 and request.replica_id >= 0
    cluster_ok = not follower or authz.authorize_cluster(ctx, CLUSTER_ACTION)
    described = (authz.filter_authorized(ctx, DESCRIBE, TOPIC, (t.topic for t in request.topics))
                 if not follower else None)
    for t in request.topics:
        parts = []
        for p in t.partitions:
            denied = (ErrorCode.CLUSTER_AUTHORIZATION_FAILED if not cluster_ok else
                      ErrorCode.TOPIC_AUTHORIZATION_FAILED
                      if described is not None and t.topic not in described else 0)
            if denied:
                parts.append(PartResp(error_code=denied, partition=p.partition,
                                      leader_epoch=-1, end_offset=-1))
                continue
            try:
                epoch, end = rm.end_offset_for_epoch(t.topic, p.partition, p.leader_epoch,
                                                     p.current_leader_epoch)
                parts.append(PartResp(error_code=0, partition=p.partition, leader_epoch=epoch,
                                      end_offset=end))
            except KafkaError as e:
                parts.append(PartResp(error_code=error_of(e)[0], partition=p.partition,
                                      leader_epoch=-1, end_offset=-1))
        topics.append(TopicResp(topic=t.topic, partitions=parts))
    return OffsetForLeaderEpochResponse(throttle_time_ms=0, topics=topics)
