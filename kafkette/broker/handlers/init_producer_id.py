"""InitProducerId (key 22), versions 0-5.

For idempotent producers (no transactional id) a fresh producer id with epoch 0.
Ids come in blocks reserved in the metadata log (as KRaft's AllocateProducerIds),
so they are never reused across restarts. kafka-python 3 and the Java client enable
idempotence by default and call this first.

Not yet: sequence checks per partition (the durable-log issue) and transactional
ids (transactions), which get TRANSACTIONAL_ID_AUTHORIZATION_FAILED here rather than
a coordinator error clients would retry forever. Kafka bumps the epoch of an existing
producer id when v3+ clients send one (KIP-360); kafkette hands out a new id, which
clients accept.
"""
from kafkette.broker.registry import handler
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import InitProducerIdResponse


@handler(22, 0, 5)
def handle(ctx, request):
    if request.transactional_id == "":
        # Kafka: an empty transactional id is invalid (clients send null instead).
        return InitProducerIdResponse(error_code=ErrorCode.INVALID_REQUEST,
                                      producer_id=-1, producer_epoch=-1)
    if request.transactional_id is not None:
        return InitProducerIdResponse(
            error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            producer_id=-1, producer_epoch=-1)
    return InitProducerIdResponse(error_code=0, producer_id=ctx.broker.next_producer_id(),
                                  producer_epoch=0)
