"""WriteTxnMarkers (key 27), versions 0-1: the transaction coordinator asks a partition
leader to write COMMIT or ABORT markers. The leader appends a control batch with the
producer's id and epoch and the coordinator epoch to each partition, and answers once
the in-sync replicas have it (Kafka appends markers with acks=all). A marker of an older
producer epoch or coordinator epoch is refused (INVALID_PRODUCER_EPOCH /
TRANSACTION_COORDINATOR_FENCED), a partition this node does not lead gets
NOT_LEADER_OR_FOLLOWER, and the coordinator retries until each partition has its marker.
Markers in `__consumer_offsets` also complete the transaction's offset commits in the
group coordinator (broker.write_txn_markers).

Kafka serves this on the inter-broker listener, authorized as CLUSTER_ACTION; without
security every listener serves it.
"""
from kafkette.broker import authorization as authz
from kafkette.controller.acls import CLUSTER_ACTION
from kafkette.errors import ErrorCode
from kafkette.broker.registry import handler
from kafkette.protocol.messages import WriteTxnMarkersResponse

R = WriteTxnMarkersResponse.WritableTxnMarkerResult
T = R.WritableTxnMarkerTopicResult
P = T.WritableTxnMarkerPartitionResult


def _result(marker, codes):
    return R(producer_id=marker.producer_id, topics=[
        T(name=t.name, partitions=[P(partition_index=p, error_code=codes(t.name, p))
                                   for p in t.partition_indexes])
        for t in marker.topics])


def _error_response(request, code, ctx, message=None):
    return WriteTxnMarkersResponse(markers=[_result(m, lambda t, p: code)
                                            for m in request.markers])


# Transaction coordinators' markers are a cluster action: no client quota.
@handler(27, 0, 1, error_response=_error_response, quota_exempt=lambda ctx, r: True)
async def handle(ctx, request):
    # KafkaApis: markers come from transaction coordinators, which need CLUSTER_ACTION.
    if not authz.authorize_cluster(ctx, CLUSTER_ACTION):
        return _error_response(request, ErrorCode.CLUSTER_AUTHORIZATION_FAILED, ctx)
    out = []
    for m in request.markers:
        tps = [(t.name, p) for t in m.topics for p in t.partition_indexes]
        codes = await ctx.broker.write_txn_markers(m.producer_id, m.producer_epoch,
                                                   m.coordinator_epoch,
                                                   m.transaction_result, tps)
        out.append(_result(m, lambda t, p: codes[(t, p)]))
    return WriteTxnMarkersResponse(markers=out)
