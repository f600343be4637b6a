"""DescribeClientQuotas (key 48), versions 0-1 (KIP-546): the client quotas of the
metadata image whose entity matches the filter, served by any broker from its image.

Each filter component names an entity type and a match: exact (match_type 0, that
name), default (1, the type's default entity) or any (2, named or default). An entity
matches when each component matches its part; with strict it must also have no other
parts, else it may have more. No components: every entity (strict: none). Errors as
Kafka's ClientQuotasImage.describe: INVALID_REQUEST for an unknown match type, an
exact match without a name or a default / any match with one, an entity type named
twice, an entity type other than user, client-id and ip, or ip mixed with user /
client-id.
Authorization: DESCRIBE_CONFIGS on the CLUSTER (top-level CLUSTER_AUTHORIZATION_FAILED).
"""
from kafkette.broker import authorization as authz
from kafkette.broker.registry import handler
from kafkette.controller.acls import DESCRIBE_CONFIGS
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import DescribeClientQuotasResponse

R = DescribeClientQuotasResponse
Entry = R.EntryData
EXACT, DEFAULT, ANY = 0, 1, 2
ENTITY_TYPES = ("user", "client-id", "ip")


def _error_response(request, code, ctx, message=None):
    return R(error_code=code, error_message=message, entries=None)


def filter_refusal(components):
    """(error code, message) for a filter Kafka refuses, else None."""
    seen = set()
    for c in components:
        if c.entity_type not in ENTITY_TYPES:
            return ErrorCode.INVALID_REQUEST, f"Invalid entity type {c.entity_type}"

        if c.entity_type in seen:
            return (ErrorCode.INVALID_REQUEST,
                    f"Entity type {c.entity_type} cannot appear more than once in the filter")
        seen.add(c.entity_type)
        if c.match_type == EXACT and c.match is None:
            return ErrorCode.INVALID_REQUEST, "Exact match requires a match string"
        if c.match_type in (DEFAULT, ANY) and c.match is not None:
            return ErrorCode.INVALID_REQUEST, "Default and any matches take no match string"
        if c.match_type not in (EXACT, DEFAULT, ANY):
            return ErrorCode.INVALID_REQUEST, f"Unknown match type {c.match_type}"
    if "ip" in seen and len(seen) > 1:
        return (ErrorCode.INVALID_REQUEST,
                "Invalid entity filter component combination: ip cannot be combined "
                "with user or client-id")
    return None


def matches(entity, components, strict: bool) -> bool:
    parts = dict(entity)
    for c in components:
        if c.entity_type not in parts:
            return False
        name = parts[c.entity_type]
        if c.match_type == EXACT and name != c.match:
            return False
        if c.match_type == DEFAULT and name is not None:
            return False
    return not strict or len(parts) == len(components)


@handler(48, 0, 1, error_response=_error_response)
def handle(ctx, request):
    if authz.enabled(ctx) and not authz.authorize_cluster(ctx, DESCRIBE_CONFIGS):
        return _error_response(request, ErrorCode.CLUSTER_AUTHORIZATION_FAILED, ctx,
                               "Cluster authorization failed.")
    components = list(request.components or [])
    refused = filter_refusal(components)
    if refused is not None:
        return _error_response(request, refused[0], ctx, refused[1])
    entries = []
    for entity, values in sorted(ctx.broker.image.client_quotas.items(),
                                 key=lambda kv: [(t, n or "") for t, n in kv[0]]):
        if not matches(entity, components, request.strict):
            continue
        entries.append(Entry(
            entity=[Entry.EntityData(entity_type=t, entity_name=n) for t, n in entity],
            values=[Entry.ValueData(key=k, value=v) for k, v in sorted(values.items())]))
    return R(error_code=0, error_message=None, entries=entries)
