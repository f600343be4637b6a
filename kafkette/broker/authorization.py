"""The handlers' one door to the authorizer (controller/acls.py): is this request's
principal allowed `op` on this resource, given the ACLs of the current metadata image?

Each handler asks for exactly what Kafka's KafkaApis asks for that API (the fact lives
in the handler's own file); this module only knows how to ask. With
`authorizer.class.name` empty (Kafka's default) every answer is yes at the cost of one
attribute read, so brokers without ACLs pay nothing.

Contexts without a principal are the broker's own requests (topic auto-creation run
through CreateTopics, forwarded admin requests whose sender authorized them, see
broker/cluster.py): they are the cluster acting, and are allowed, as Kafka's
inter-broker principal normally is (a super user).
"""
from __future__ import annotations

from kafkette.controller.acls import (
    ACL_AUTHORIZER,
    CLUSTER,
    CLUSTER_NAME,
    OPERATIONS,
    RESOURCE_TYPES,
    STANDARD_AUTHORIZER,
    Authorizer,
)
from kafkette.errors import ErrorCode
from kafkette.logging import get_logger

log = get_logger("kafkette.authorizer")


def authorizer_of(broker) -> Authorizer | None:
    """The broker's authorizer, or None when authorization is off. Built once per
    config object (authorizer.class.name and super.users are static, as in Kafka)."""
    config = broker.config
    cached = getattr(broker, "_authorizer_cache", None)
    if cached is not None and cached[0] is config:
        return cached[1]
    name = config["authorizer.class.name"] or ""
    auth = None
    if name in (STANDARD_AUTHORIZER, ACL_AUTHORIZER):
        if name == ACL_AUTHORIZER:
            log.info("authorizer.class.name names the ZooKeeper-era AclAuthorizer; "
                     "kafkette runs StandardAuthorizer's rules over ACLs kept in the "
                     "metadata log instead", authorizer=name)
        auth = Authorizer(Authorizer.parse_super_users(config["super.users"]),
                          config["allow.everyone.if.no.acl.found"])
    broker._authorizer_cache = (config, auth)
    return auth


def client_address(ctx) -> str:
    """The client's IP address, which host ACLs name: the server gives "ip:port"."""
    host = getattr(ctx, "client_host", "") or ""
    return host.rsplit(":", 1)[0] if ":" in host else host


def enabled(ctx) -> bool:
    return authorizer_of(ctx.broker) is not None


def _authorizer_and_principal(ctx):
    auth = authorizer_of(ctx.broker)
    principal = getattr(ctx, "principal", None)
    return (auth, principal) if auth is not None and principal is not None else (None, None)


def authorize(ctx, op: int, resource_type: int, name: str) -> bool:
    auth, principal = _authorizer_and_principal(ctx)
    if auth is None:
        return True
    host = client_address(ctx)
    if auth.authorize(ctx.broker.image.acls, principal, host, op, resource_type, name):
        return True
    denied(ctx.broker, principal, host, op, resource_type, name)
    return False


def allowed(ctx, op: int, resource_type: int, name: str) -> bool:
    """authorize() without counting or logging a denial: for checks made ahead of
    the handler's own (broker/cluster.py's coordinator routing), which the handler
    then makes, counts and answers."""
    auth, principal = _authorizer_and_principal(ctx)
    if auth is None:
        return True
    return auth.authorize(ctx.broker.image.acls, principal, client_address(ctx),
                          op, resource_type, name)


def denied(broker, principal: str, host: str, op: int, resource_type: int, name: str) -> None:
    """Count a denial in /metrics by resource type, and a debug line. Kafka logs each
    denial at INFO in kafka.authorizer.logger; here one line per denied request would
    be per-request noise at INFO (a client retrying a denied produce), so the counter
    is what to watch and the line is for debugging."""
    metrics = getattr(broker, "metrics", None)
    if metrics is not None:
        metrics.record_denial(resource_type)
    log.debug("authorization denied", principal=principal, host=host,
              operation=OPERATIONS.get(op, op), resource_type=RESOURCE_TYPES.get(
                  resource_type, resource_type), resource=name)


def authorize_cluster(ctx, op: int) -> bool:
    return authorize(ctx, op, CLUSTER, CLUSTER_NAME)


def authorize_by_resource_type(ctx, op: int, resource_type: int) -> bool:
    auth, principal = _authorizer_and_principal(ctx)
    if auth is None:
        return True
    host = client_address(ctx)
    if auth.authorize_by_resource_type(ctx.broker.image.acls, principal, host, op,
                                       resource_type):
        return True
    denied(ctx.broker, principal, host, op, resource_type, "*")
    return False


def acl_api_refusal(ctx, op: int):
    """CreateAcls / DeleteAcls (ALTER) and DescribeAcls (DESCRIBE) on the cluster:
    (error code, message) when refused, as Kafka answers them, else None."""
    if not enabled(ctx):
        return ErrorCode.SECURITY_DISABLED, "No Authorizer is configured."
    if not authorize_cluster(ctx, op):
        return ErrorCode.CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed."
    return None


def filter_authorized(ctx, op: int, resource_type: int, names) -> set[str]:
    """The names among `names` that `op` is allowed on (each checked once)."""
    if authorizer_of(ctx.broker) is None:
        return set(names)
    return {n for n in set(names) if authorize(ctx, op, resource_type, n)}


def authorized_operations(ctx, resource_type: int, name: str, all_ops: int) -> int:
    """The authorized-operations bit set for a resource (Metadata, DescribeCluster,
    DescribeGroups); `all_ops` is the answer without an authorizer."""
    auth = authorizer_of(ctx.broker)
    principal = getattr(ctx, "principal", None)
    if auth is None or principal is None:
        return all_ops
    return auth.authorized_operations(ctx.broker.image.acls, principal,
                                      client_address(ctx), resource_type, name)
