"""AlterConfigs (key 33), versions 0-2 (Kafka 4.0's range): replace a resource's
configs. Also the shared logic of IncrementalAlterConfigs (key 44).

Resources, as Kafka's ConfigAdminManager and KRaft's ConfigurationControlManager
handle them:
- TOPIC (2): the given configs become the topic's whole set of overrides; keys not
  given are reset to the default. Names and values are checked with
  kafkette.config.validate_topic_configs (INVALID_CONFIG); an unknown topic gets
  UNKNOWN_TOPIC_OR_PARTITION. The change is a ConfigRecord in the metadata log (it
  survives a restart) and reaches the live partition logs at once.
- BROKER (4), name "" (cluster-wide default) or this node's id: dynamic broker
  configs (KIP-226). Only DYNAMIC_BROKER_CONFIGS keys; a read-only key or a bad value
  gets INVALID_REQUEST, an unknown key INVALID_CONFIG (Kafka accepts unknown broker
  keys for plugins; kafkette has none). Another node id, or a name that is not a
  number: INVALID_REQUEST.
- BROKER_LOGGER (8): INVALID_REQUEST, as Kafka answers it on this API (loggers are
  only alterable through IncrementalAlterConfigs, where kafkette refuses them too:
  its log level is process-wide, set with KAFKETTE_LOG_LEVEL).
- Anything else (CLIENT_METRICS, GROUP, ...): INVALID_REQUEST.
A resource listed twice gets INVALID_REQUEST on both entries, duplicate keys or a null
value INVALID_REQUEST; validate_only checks everything and changes nothing. Each
resource is applied on its own: one failing leaves the others applied.
"""
from __future__ import annotations

import re
from collections import Counter

from kafkette.broker import authorization as authz
from kafkette.controller.acls import ALTER_CONFIGS
from kafkette.controller.acls import TOPIC as ACL_TOPIC
from kafkette.broker.handlers.common import error_of
from kafkette.broker.registry import ROUTE_CONTROLLER, handler
from kafkette.config import LIST, TOPIC_CONFIGS, BROKER_CONFIGS
from kafkette.errors import ErrorCode, InvalidConfigError, InvalidRequestError, KafkaError
from kafkette.protocol.messages import AlterConfigsResponse

TOPIC, BROKER, BROKER_LOGGER = 2, 4, 8
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
OP_NAMES = {SET: "SET", DELETE: "DELETE", APPEND: "APPEND", SUBTRACT: "SUBTRACT"}
NODE_ID = re.compile(r"[+-]?[0-9]+")


def duplicate_resources(resources) -> set[tuple[int, str]]:
    """(type, name) of resources that appear more than once in a request."""
    counts = Counter((r.resource_type, r.resource_name) for r in resources)
    return {k for k, n in counts.items() if n > 1}


async def alter_resource(broker, resource_type: int, resource_name: str,
                   ops: list[tuple[str, int, str | None]], *, validate_only: bool,
                   incremental: bool) -> None:
    """Apply one resource's operations [(name, op, value)]. Legacy AlterConfigs
    passes only SET and replaces the resource's whole set. Raises KafkaError."""
    names = [name for name, _, _ in ops]
    if len(set(names)) != len(names):
        raise InvalidRequestError("Error due to duplicate config keys")
    nulls = [name for name, op, value in ops if value is None and op != DELETE]
    if nulls:
        raise InvalidRequestError("Null value not supported for : " + ", ".join(nulls))
    unknown_ops = sorted({op for _, op, _ in ops if op not in OP_NAMES})
    if unknown_ops:
        raise InvalidRequestError(f"Unknown operations type {unknown_ops[0]}")

    if resource_type == TOPIC:
        if resource_name == "":
            raise InvalidRequestError("Default topic resources are not allowed.")
        t = broker.image.topics.get(resource_name)
        current = dict(t.configs) if t is not None else {}
        changes = _changes(ops, current, broker.effective_topic_configs(resource_name),
                           _is_topic_list, replace=not incremental)
        await broker.controller.alter_topic_configs(resource_name, changes,
                                                    validate_only=validate_only)
    elif resource_type == BROKER:
        if resource_name != "":
            _check_node_id(broker, resource_name)
        current = dict(broker.image.broker_configs.get(resource_name, {}))
        changes = _changes(ops, current, _broker_values(broker, resource_name),
                           _is_broker_list, replace=not incremental)
        await broker.controller.alter_broker_configs(resource_name, changes,
                                                     validate_only=validate_only)
    elif resource_type == BROKER_LOGGER and incremental:
        raise InvalidRequestError(
            "kafkette does not change log levels at runtime: its level is process-wide "
            "(KAFKETTE_LOG_LEVEL)")
    else:
        raise InvalidRequestError(f"Unknown resource type {resource_type}")


def _check_node_id(broker, name: str) -> None:
    if not NODE_ID.fullmatch(name):  # Java's Integer.parseInt: no spaces, no "1_0"
        raise InvalidRequestError(f"Node id must be an integer, but it is: {name}")
    if int(name) != broker.node_id:
        raise InvalidRequestError(
            f"Unexpected broker id, expected {broker.node_id}, but received {name}")


def _is_topic_list(name: str) -> bool:
    spec = TOPIC_CONFIGS.get(name)
    return spec is not None and spec.type == LIST


def _is_broker_list(name: str) -> bool:
    spec = BROKER_CONFIGS.get(name)
    return spec is not None and spec.type == LIST


def _broker_values(broker, resource_name: str) -> dict[str, str | None]:
    """The values an APPEND/SUBTRACT starts from when the resource does not set the
    key: the effective config (for "" without this node's own dynamic layer)."""
    config = broker.config
    if resource_name == "":
        config = broker.static_config.with_dynamic(
            dict(broker.image.broker_configs.get("", {})), {})
    out = {}
    for name, spec in BROKER_CONFIGS.items():
        value = config[name]
        out[name] = None if value is None else (",".join(value) if spec.type == LIST else str(value))
    return out


def _changes(ops, current: dict[str, str], effective: dict[str, str | None], is_list,
             *, replace: bool) -> dict[str, str | None]:
    """Name -> new value (None: delete) for the resource's stored configs.

    APPEND/SUBTRACT work on the stored value, else on the effective one (what
    DescribeConfigs shows). Kafka starts from the built-in default instead, which
    differs when the broker sets the default: with log.cleanup.policy=compact, APPEND
    cleanup.policy=delete on a topic without an override gives "compact,delete" here
    and "delete" in Kafka."""
    changes: dict[str, str | None] = {}
    for name, op, value in ops:
        if op == SET:
            changes[name] = value
        elif op == DELETE:
            changes[name] = None
        else:
            if not is_list(name):
                raise InvalidConfigError(
                    f"Can't {OP_NAMES[op]} to key {name} because its type is not LIST.")
            base = current.get(name)
            if base is None:
                base = effective.get(name) or ""
            parts = [p for p in base.split(",") if p]
            for item in (v.strip() for v in value.split(",")):
                if op == APPEND and item and item not in parts:
                    parts.append(item)
                elif op == SUBTRACT and item in parts:
                    parts.remove(item)
            changes[name] = ",".join(parts)
    if replace:
        for name in current:
            if name not in changes:
                changes[name] = None
    # Deleting a key that is not set changes nothing (and is not validated), as KRaft.
    return {k: v for k, v in changes.items() if not (v is None and k not in current)}


def config_authorized(ctx, op: int, resource_type: int, name: str) -> int:
    """0, or the error for a config resource the principal may not touch (KafkaApis:
    DESCRIBE_CONFIGS / ALTER_CONFIGS on the topic, or on the cluster for BROKER and
    BROKER_LOGGER resources)."""
    if resource_type == TOPIC:
        return 0 if authz.authorize(ctx, op, ACL_TOPIC, name) else \
            ErrorCode.TOPIC_AUTHORIZATION_FAILED
    if resource_type in (BROKER, BROKER_LOGGER):
        return 0 if authz.authorize_cluster(ctx, op) else ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    return 0


async def alter_all(broker, resources, ops_of, *, validate_only: bool, incremental: bool,
              result_cls, ctx=None) -> list:
    dups = duplicate_resources(resources)
    results = []
    for res in resources:
        r = result_cls(error_code=0, error_message=None, resource_type=res.resource_type,
                       resource_name=res.resource_name)
        try:
            if (res.resource_type, res.resource_name) in dups:
                raise InvalidRequestError("Each resource must appear at most once.")
            denied = ctx is not None and config_authorized(
                ctx, ALTER_CONFIGS, res.resource_type, res.resource_name)
            if denied:
                r.error_code = denied
                results.append(r)
                continue
            await alter_resource(broker, res.resource_type, res.resource_name, ops_of(res),
                           validate_only=validate_only, incremental=incremental)
        except KafkaError as e:
            r.error_code, r.error_message = error_of(e)
        results.append(r)
    return results


def _error_response(request, code, ctx, message=None):
    R = AlterConfigsResponse.AlterConfigsResourceResponse
    return AlterConfigsResponse(responses=[
        R(error_code=code, error_message=message, resource_type=r.resource_type,
          resource_name=r.resource_name) for r in request.resources])


# Sent to the active controller by the broker that receives it (broker/cluster.py); the
# error response is what the client gets when no controller could serve it.
@handler(33, 0, 2, route=ROUTE_CONTROLLER, error_response=_error_response)
async def handle(ctx, request):
    results = await alter_all(
        ctx.broker, request.resources,
        lambda res: [(c.name, SET, c.value) for c in res.configs],
        validate_only=request.validate_only, incremental=False,
        result_cls=AlterConfigsResponse.AlterConfigsResourceResponse, ctx=ctx)
    return AlterConfigsResponse(throttle_time_ms=0, responses=results)
