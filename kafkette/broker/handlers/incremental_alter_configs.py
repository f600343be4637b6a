"""IncrementalAlterConfigs (key 44), versions 0-1 (Kafka 4.0's range): change
individual configs of a resource (KIP-339).

Operations per key: SET (0), DELETE (1: back to the default), APPEND (2) and
SUBTRACT (3) — the last two only for LIST configs (cleanup.policy,
log.cleanup.policy), INVALID_CONFIG otherwise; an unknown operation code is
INVALID_REQUEST. Resources, validation, errors and persistence are those of
AlterConfigs (kafkette.broker.handlers.alter_configs), except that keys not named keep
their values. BROKER_LOGGER resources (KIP-412 log levels) are refused with
INVALID_REQUEST: kafkette's log level is process-wide (KAFKETTE_LOG_LEVEL).
"""
from kafkette.broker.handlers.alter_configs import alter_all
from kafkette.broker.registry import ROUTE_CONTROLLER, handler
from kafkette.protocol.messages import IncrementalAlterConfigsResponse


def _error_response(request, code, ctx, message=None):
    R = IncrementalAlterConfigsResponse.AlterConfigsResourceResponse
    return IncrementalAlterConfigsResponse(responses=[
        R(error_code=code, error_message=message, resource_type=r.resource_type,
          resource_name=r.resource_name) for r in request.resources])


# Sent to the active controller by the broker that receives it (broker/cluster.py); the
# error response is what the client gets when no controller could serve it.
@handler(44, 0, 1, route=ROUTE_CONTROLLER, error_response=_error_response)
async def handle(ctx, request):
    results = await alter_all(
        ctx.broker, request.resources,
        lambda res: [(c.name, c.config_operation, c.value) for c in res.configs],
        validate_only=request.validate_only, incremental=True,
        result_cls=IncrementalAlterConfigsResponse.AlterConfigsResourceResponse, ctx=ctx)
    return IncrementalAlterConfigsResponse(throttle_time_ms=0, responses=results)
