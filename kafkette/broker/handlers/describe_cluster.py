"""DescribeCluster (key 60), versions 0-1: cluster id, controller id, brokers.

endpoint_type 2 (controllers, KIP-919) is answered with UNSUPPORTED_ENDPOINT_TYPE:
controllers are reached through the brokers (forwarding). With dedicated controllers
the controller id is a live broker's (see common.client_controller_id). Authorized operations are all
allowed (no ACLs yet).
"""
from kafkette.broker import authorization as authz
from kafkette.controller.acls import CLUSTER, CLUSTER_NAME
from kafkette.broker.handlers.common import (
    CLUSTER_AUTHORIZED_OPERATIONS,
    NO_OPERATIONS,
    client_controller_id,
)
from kafkette.broker.registry import handler
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import DescribeClusterResponse


@handler(60, 0, 1)
def handle(ctx, request):
    image = ctx.broker.image
    if request.endpoint_type not in (1,):
        return DescribeClusterResponse(error_code=ErrorCode.UNSUPPORTED_ENDPOINT_TYPE,
                                       error_message="only broker endpoints are served",
                                       endpoint_type=request.endpoint_type)
    listener = getattr(ctx, "listener", None)   # each broker's endpoint of it (KIP-103)
    brokers = [DescribeClusterResponse.DescribeClusterBroker(
        broker_id=b.node_id, host=b.address(listener)[0], port=b.address(listener)[1],
        rack=b.rack)
        for b in sorted(image.brokers.values(), key=lambda b: b.node_id) if not b.fenced]
    return DescribeClusterResponse(
        error_code=ErrorCode.NONE, endpoint_type=1, cluster_id=image.cluster_id,
        controller_id=client_controller_id(image), brokers=brokers,
        cluster_authorized_operations=(authz.authorized_operations(
                                           ctx, CLUSTER, CLUSTER_NAME,
                                           CLUSTER_AUTHORIZED_OPERATIONS)
                                       if request.include_cluster_authorized_operations
                                       else NO_OPERATIONS))
