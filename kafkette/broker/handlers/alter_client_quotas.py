"""AlterClientQuotas (key 49), versions 0-1 (KIP-546).

Sets or removes client quotas of user, client-id, user + client-id and ip entities
(what `kafka-configs.sh --alter --entity-type users|clients|ips` and the admin
clients' alter_client_quotas send). The active controller (the request is forwarded
there, KIP-590) validates each entry as Kafka's ClientQuotaControlManager does
(INVALID_REQUEST for an unknown entity type or combination, an unknown key, a value of
the wrong type) and commits ClientQuotaRecords, so every broker of the cluster
enforces the same quotas (broker/quotas.py). validate_only checks without storing.
controller_mutation_rate and connection_creation_rate are stored and described but not
enforced (the controller logs so when they are set).
Authorization: ALTER_CONFIGS on the CLUSTER (CLUSTER_AUTHORIZATION_FAILED per entry).
"""
from kafkette.broker import authorization as authz
from kafkette.broker.handlers.common import error_of
from kafkette.broker.registry import ROUTE_CONTROLLER, handler
from kafkette.controller.acls import ALTER_CONFIGS
from kafkette.errors import ErrorCode, KafkaError
from kafkette.protocol.messages import AlterClientQuotasResponse

R = AlterClientQuotasResponse
Entry = R.EntryData
Entity = Entry.EntityData


def _entry(e, code, message=None):
    return Entry(error_code=code, error_message=message, entity=[
        Entity(entity_type=c.entity_type, entity_name=c.entity_name) for c in e.entity])


def _error_response(request, code, ctx, message=None):
    return R(entries=[_entry(e, code, message) for e in request.entries])


@handler(49, 0, 1, route=ROUTE_CONTROLLER, error_response=_error_response)
async def handle(ctx, request):
    if authz.enabled(ctx) and not authz.authorize_cluster(ctx, ALTER_CONFIGS):
        return _error_response(request, ErrorCode.CLUSTER_AUTHORIZATION_FAILED, ctx,
                               "Cluster authorization failed.")
    entries = [([(c.entity_type, c.entity_name) for c in e.entity],
                [(op.key, op.value, op.remove) for op in e.ops]) for e in request.entries]
    try:
        results = await ctx.broker.controller.alter_client_quotas(entries,
                                                                  request.validate_only)
    except KafkaError as e:
        code, msg = error_of(e)
        return _error_response(request, code, ctx, msg)
    return R(entries=[_entry(e, code, msg) for e, (code, msg) in zip(request.entries, results)])
