"""kafka-configs.sh for quota entities (users, clients, ips): what Kafka's
ConfigCommand does with DescribeClientQuotas / AlterClientQuotas (KIP-546).

  --describe --entity-type users|clients|ips [--entity-name N | --entity-default]
  --alter --entity-type users [--entity-name U | --entity-default]
          [--entity-type clients (--entity-name C | --entity-default)]
          [--add-config producer_byte_rate=1048576,consumer_byte_rate=...]
          [--delete-config request_percentage]

Names and defaults pair with the entity types in the order they are given, as in
Kafka (`--entity-type users --entity-default --entity-type clients --entity-name c`
is the default user with client id c). Describe without a name lists every entity of
those types. Output as Kafka's: "Quota configs for user-principal 'u', client-id the
default are producer_byte_rate=1048576.0"; after an alter "Completed updating config
for user u." Per-entity errors from the broker (INVALID_REQUEST for an unknown key, a
value of the wrong type) end the tool with exit 1, as Kafka's exception does.
"""
from __future__ import annotations

import argparse

from kafkette.protocol import messages
from kafkette.tools.client import BrokerError, ToolError
from kafkette.tools.common import UsageError

QUOTA_ENTITY_TYPES = {"users": "user", "clients": "client-id", "ips": "ip"}
_DESCRIPTION = {"user": "user-principal", "client-id": "client-id", "ip": "ip"}
EXACT, DEFAULT, ANY = 0, 1, 2


class EntityOrder(argparse.Action):
    """Records --entity-name / --entity-default in command-line order (namespace
    .entity_order: names, None for a default), besides their usual destination."""

    def __call__(self, parser, namespace, values, option_string=None):
        order = list(getattr(namespace, "entity_order", None) or [])
        if option_string == "--entity-default":
            setattr(namespace, self.dest, True)
            order.append(None)
        else:
            setattr(namespace, self.dest, (getattr(namespace, self.dest) or []) + [values])
            order.append(values)
        namespace.entity_order = order


def is_quota_command(a) -> bool:
    types = list(a.entity_type or [])
    return bool(types) and all(t in QUOTA_ENTITY_TYPES for t in types)


def entity(a) -> list[tuple[str, str | None]] | list[str]:
    """[(entity type, name or None = default)] for an alter; for a describe the
    types without a name or default may stand alone (matched as any)."""
    types = [QUOTA_ENTITY_TYPES[t] for t in a.entity_type]
    if len(set(types)) != len(types):
        raise UsageError("Each entity type may be given once")
    if "ip" in types and len(types) > 1:
        raise UsageError("ip entities cannot be combined with users or clients")
    order = list(getattr(a, "entity_order", None) or [])
    if len(order) > len(types):
        raise UsageError("More entity names or defaults than entity types")
    return types, order


def run(a, admin_from_args) -> int:
    types, order = entity(a)
    if a.all:
        raise UsageError("Option \"[all]\" is only for topics and brokers")
    if a.alter:
        if len(order) != len(types):
            raise UsageError("An entity name or --entity-default must be given for each "
                             "entity type with --alter")
        if not a.add_config and not a.delete_config:
            raise UsageError("At least one of --add-config or --delete-config must be "
                             "specified with --alter")
    elif a.add_config or a.delete_config:
        raise UsageError("Option \"[add-config]\"/\"[delete-config]\" can only be used with "
                         "option \"[alter]\"")
    with admin_from_args(a) as admin:
        if a.alter:
            alter(admin, list(zip(types, order)), a)
        else:
            describe(admin, types, order)
    return 0


def _describe_entity(entity) -> str:
    return ", ".join(f"{_DESCRIPTION[t]} {'the default' if n is None else repr(n)}"
                     for t, n in entity)


def describe(admin, types, order) -> None:
    D = messages.DescribeClientQuotasRequest
    components = []
    for i, t in enumerate(types):
        if i < len(order):
            components.append(D.ComponentData(entity_type=t, match_type=EXACT if order[i]
                                              is not None else DEFAULT, match=order[i]))
        else:
            components.append(D.ComponentData(entity_type=t, match_type=ANY, match=None))
    resp = admin.request(D(components=components, strict=True))
    if resp.error_code:
        raise BrokerError(resp.error_code, resp.error_message)
    for e in resp.entries or []:
        entity = sorted(((x.entity_type, x.entity_name) for x in e.entity),
                        key=lambda p: list(_DESCRIPTION).index(p[0]))
        values = ", ".join(f"{v.key}={v.value}" for v in sorted(e.values, key=lambda v: v.key))
        print(f"Quota configs for {_describe_entity(entity)} are {values}")


def alter(admin, entity, a, announce: bool = True) -> None:
    from kafkette.tools.kafka_configs import parse_add_config
    adds = parse_add_config(a.add_config) if a.add_config else {}
    deletes = [k.strip() for k in (a.delete_config or "").split(",") if k.strip()]
    A = messages.AlterClientQuotasRequest
    ops = []
    for k, v in adds.items():
        if k.startswith("SCRAM-"):
            raise ToolError("SCRAM credentials are not altered by kafkette's quota "
                            "branch of kafka-configs.sh")
        try:
            ops.append(A.EntryData.OpData(key=k, value=float(v), remove=False))
        except ValueError:
            raise ToolError(f"org.apache.kafka.common.errors.InvalidConfigurationException: "
                            f"Cannot parse quota configuration value for {k}: {v}") from None
    ops += [A.EntryData.OpData(key=k, value=0.0, remove=True) for k in deletes]
    req = A(entries=[A.EntryData(entity=[A.EntryData.EntityData(entity_type=t, entity_name=n)
                                         for t, n in entity], ops=ops)], validate_only=False)
    resp = admin.request(req)
    for e in resp.entries:
        if e.error_code:
            raise BrokerError(e.error_code, e.error_message)
    if not announce:
        return
    t, n = entity[0]
    name = "the default" if n is None else n
    kind = {"user": "user", "client-id": "client", "ip": "ip"}[t]
    if len(entity) == 1:
        print(f"Completed updating config for {kind} {name}.")
    else:
        print(f"Completed updating config for {_describe_entity(entity)}.")
