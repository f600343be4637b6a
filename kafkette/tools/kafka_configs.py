"""kafka-configs.sh: Kafka's ConfigCommand for topics and brokers (DescribeConfigs,
IncrementalAlterConfigs), SCRAM users (KIP-554's DescribeUserScramCredentials,
AlterUserScramCredentials; kafkette.tools.security computes the salted password) and
the quotas of users, clients and ips (DescribeClientQuotas, AlterClientQuotas:
kafkette/tools/quota_configs.py).

  --describe --entity-type topics|brokers [--entity-name N | --entity-default] [--all]
  --alter --entity-type topics|brokers (--entity-name N | --entity-default)
          [--add-config k=v,k2=[a,b]] [--delete-config k,k2]
  --alter --entity-type users --entity-name U
          [--add-config 'SCRAM-SHA-256=[iterations=8192,password=pw],SCRAM-SHA-512=[password=pw]']
          [--delete-config SCRAM-SHA-512]
  --describe --entity-type users [--entity-name U]
  (--topic T, --broker N, --broker-defaults and --user U are Kafka's shorthands.)

Output as Kafka's: "Dynamic configs for topic T are:" (or "All configs for ..." with
--all, "Default configs for brokers in the cluster are:") then one line per config,
sorted by name: `  k=v sensitive=false synonyms={SOURCE:name=value, ...}`; after an
alter "Completed updating config for topic T." Errors: "Error while executing config
command with args '...'" and the exception on stderr, exit 1.

Users: "SCRAM credential configs for user-principal 'U' are SCRAM-SHA-256=iterations=N"
per user with credentials, as Kafka prints them. An alter of a user may mix SCRAM and
quota keys (two requests, as Kafka's tool sends); a describe of users prints their
quota configs, then their SCRAM credentials, as Kafka's does.

Not served, refused with a message: entity types broker-loggers, client-metrics,
groups (kafkette has no dynamic loggers or client metrics), --add-config-file,
--force, --zookeeper.
"""
from __future__ import annotations

import re
import sys

from kafkette.tools import quota_configs
from kafkette.tools.client import ToolError
from kafkette.tools.common import (
    ToolParser, UsageError, add_bootstrap, add_command_config, admin_from_args, run_tool,
)

SOURCES = {0: "UNKNOWN", 1: "DYNAMIC_TOPIC_CONFIG", 2: "DYNAMIC_BROKER_CONFIG",
           3: "DYNAMIC_DEFAULT_BROKER_CONFIG", 4: "STATIC_BROKER_CONFIG", 5: "DEFAULT_CONFIG",
           6: "DYNAMIC_BROKER_LOGGER_CONFIG", 7: "CLIENT_METRICS_CONFIG", 8: "GROUP_CONFIG"}
TOPIC, BROKER = 2, 4
KNOWN_TYPES = ("topics", "brokers", "broker-loggers", "users", "clients", "ips",
               "client-metrics", "groups")
SET, DELETE = 0, 1


def build_parser(prog="kafka-configs.sh") -> ToolParser:
    p = ToolParser(prog, "This tool helps to manipulate and describe entity config for a "
                         "topic or broker.")
    add_bootstrap(p, "The Kafka servers to connect to.")
    add_command_config(p)
    p.add_argument("--describe", action="store_true", help="List configs for the given entity.")
    p.add_argument("--alter", action="store_true", help="Alter the configuration for the entity.")
    p.add_argument("--entity-type", action="append", metavar="entity type",
                   help="Type of entity (topics/brokers).")
    # EntityOrder: quota entities pair names and defaults with types in order.
    p.add_argument("--entity-name", action=quota_configs.EntityOrder, metavar="entity name",
                   help="Name of entity (topic name/broker id).")
    p.add_argument("--entity-default", action=quota_configs.EntityOrder, nargs=0, default=False,
                   help="Default entity name for brokers (applies to the cluster).")
    p.add_argument("--topic", metavar="topic", help="The topic's name (--entity-type topics "
                                                   "--entity-name T).")
    p.add_argument("--broker", metavar="broker-id",
                   help="The broker's id (--entity-type brokers --entity-name N).")
    p.add_argument("--user", metavar="user-principal",
                   help="The user's name (--entity-type users --entity-name U).")
    p.add_argument("--broker-defaults", action="store_true",
                   help="The config defaults for all brokers (--entity-type brokers "
                        "--entity-default).")
    p.add_argument("--add-config", metavar="config",
                   help="Key Value pairs of configs to add: k1=v1,k2=[v1,v2,v2],k3=v3. "
                        "Square brackets group a value that contains commas.")
    p.add_argument("--delete-config", metavar="config",
                   help="config keys to remove, comma separated: 'k1,k2'")
    p.add_argument("--all", action="store_true",
                   help="List all configs for the given entity, including static and "
                        "default ones.")
    return p


def parse_add_config(text: str) -> dict[str, str]:
    """Kafka's ConfigCommand.parseConfigs: comma-separated k=v, a [..] value may hold
    commas (the brackets are dropped)."""
    out = {}
    for pair in re.findall(r"[^,\[]+(?:\[[^\]]*\])?[^,]*", text):
        if not pair.strip():
            continue
        k, sep, v = pair.partition("=")
        if not sep:
            raise UsageError(f"Invalid entity config: all configs to be added must be in the "
                             f"format \"key=val\" (got '{pair}').")
        v = v.strip()
        if v.startswith("[") and v.endswith("]"):
            v = v[1:-1]
        out[k.strip()] = v
    return out


def entity(a) -> tuple[str, str | None, bool]:
    """(entity type, name or None, default)"""
    types = list(a.entity_type or [])
    names = list(a.entity_name or [])
    default = a.entity_default
    if a.topic is not None:
        types.append("topics")
        names.append(a.topic)
    if a.broker is not None:
        types.append("brokers")
        names.append(a.broker)
    if a.broker_defaults:
        types.append("brokers")
        default = True
    if a.user is not None:
        types.append("users")
        names.append(a.user)
    if not types:
        raise UsageError("Must specify --entity-type or one of its shorthands (--topic, "
                         "--broker, --broker-defaults)")
    if len(set(types)) > 1 or len(types) > 1 and len(names) > 1:
        raise UsageError("Only one entity type is supported here")
    etype = types[0]
    if etype not in KNOWN_TYPES:
        raise UsageError(f"Invalid entity type {etype}, the entity type must be one of "
                         f"{', '.join(KNOWN_TYPES)}")
    if etype not in ("topics", "brokers", "users"):
        raise ToolError(f"entity type {etype} is not supported by kafkette's kafka-configs.sh "
                        f"(only topics, brokers, users, clients and ips: kafkette has no "
                        f"{'dynamic log levels' if etype == 'broker-loggers' else etype + ' configs'})")
    if len(names) > 1:
        raise UsageError("Only one --entity-name is supported")
    name = names[0] if names else None
    if default and etype == "topics":
        raise UsageError("--entity-default is only valid for brokers (and quota entities)")
    if default and etype == "users":
        raise UsageError("--entity-default for users is a quota entity: give quota keys "
                         "(producer_byte_rate, ...), not SCRAM credentials")
    if name is not None and default:
        raise UsageError("--entity-name and --entity-default cannot be used together")
    if etype == "brokers" and name is not None:
        try:
            int(name)
        except ValueError:
            raise UsageError(f"The entity name for brokers must be a valid integer broker id, "
                             f"but it is: {name}") from None
    return etype, name, default


def run(a) -> int:
    if (a.describe + a.alter) != 1:
        raise UsageError("Command must include exactly one action: --describe, --alter")
    if not a.bootstrap_server:
        raise UsageError("--bootstrap-server must be specified")
    if quota_configs.is_quota_command(a):
        if list(a.entity_type) != ["users"] or a.user is not None:
            return quota_configs.run(a, admin_from_args)
        return _users_quotas_and_scram(a)
    etype, name, default = entity(a)
    if a.alter:
        if name is None and not default:
            raise UsageError("an entity name must be specified with --alter of " + etype)
        if not a.add_config and not a.delete_config:
            raise UsageError("At least one of --add-config or --delete-config must be "
                             "specified with --alter")
        if a.all:
            raise UsageError("Option \"[all]\" can't be used with option \"[alter]\"")
    elif a.add_config or a.delete_config:
        raise UsageError("Option \"[add-config]\"/\"[delete-config]\" can only be used with "
                         "option \"[alter]\"")
    if etype == "users":
        return _users(a, name)
    with admin_from_args(a) as admin:
        if a.describe:
            describe(admin, etype, name, default, a.all)
        else:
            alter(admin, etype, name, default, a)
    return 0


def _users_quotas_and_scram(a) -> int:
    """--entity-type users: SCRAM-* keys go to the KIP-554 APIs, the others to the
    client quota APIs; a describe shows both (SCRAM only for named users or all)."""
    import argparse
    adds = parse_add_config(a.add_config) if a.add_config else {}
    deletes = [k.strip() for k in (a.delete_config or "").split(",") if k.strip()]
    scram_adds = {k: v for k, v in adds.items() if k.startswith("SCRAM-")}
    scram_deletes = [k for k in deletes if k.startswith("SCRAM-")]
    quota_adds = {k: v for k, v in adds.items() if k not in scram_adds}
    quota_deletes = [k for k in deletes if k not in scram_deletes]
    scram = bool(scram_adds or scram_deletes)
    quota = bool(quota_adds or quota_deletes)
    if a.describe:
        quota_configs.run(a, admin_from_args)
        if a.entity_default:
            return 0
    elif quota or not scram:
        q = argparse.Namespace(**vars(a))
        q.add_config = ",".join(f"{k}={v}" for k, v in quota_adds.items()) or None
        q.delete_config = ",".join(quota_deletes) or None
        if scram:  # the quota part first; its "Completed" line comes from the SCRAM part
            types, order = quota_configs.entity(q)
            with admin_from_args(q) as admin:
                quota_configs.alter(admin, list(zip(types, order)), q, announce=False)
        else:
            return quota_configs.run(q, admin_from_args)
    _, name, _ = entity(a)
    return _users(a, name, scram_adds, scram_deletes)


def _users(a, name: str | None, adds: dict | None = None,
           deletes: list[str] | None = None) -> int:
    """SCRAM credentials of users: `adds` / `deletes` the SCRAM-* part of --add-config /
    --delete-config (all of them when not given)."""
    from kafkette.tools import security as sec
    if a.alter:
        if adds is None:
            adds = parse_add_config(a.add_config) if a.add_config else {}
        if deletes is None:
            deletes = [k.strip() for k in (a.delete_config or "").split(",") if k.strip()]
        upserts = sec.parse_scram_config(adds)
        with admin_from_args(a) as admin:
            sec.alter_scram(admin, name, upserts, deletes)
        print(f"Completed updating config for user {name}.")
        return 0
    with admin_from_args(a) as admin:
        users = sec.describe_scram(admin, None if name is None else [name])
    for user, infos in sorted(users.items()):
        print(f"SCRAM credential configs for user-principal '{user}' are "
              + ", ".join(f"{m}=iterations={i}" for m, i in infos))
    return 0


def _filter(entries, etype, default, describe_all):
    if describe_all:
        keep = entries
    elif etype == "topics":
        keep = [e for e in entries if e.config_source == 1]
    elif default:
        keep = [e for e in entries if e.config_source == 3]
    else:
        keep = [e for e in entries if e.config_source == 2]
    return sorted(keep, key=lambda e: e.name)


def _v(x) -> str:
    return "null" if x is None else str(x)


def describe(admin, etype, name, default, describe_all) -> None:
    if etype == "topics":
        names = [name] if name is not None else sorted(
            t.name for t in admin.metadata(None).topics if t.error_code == 0)
    elif default:
        names = [""]
    else:
        names = [name] if name is not None else sorted(
            str(b.node_id) for b in admin.metadata([]).brokers)
    for n in names:
        node = int(n) if etype == "brokers" and n else None
        entries = admin.describe_configs(TOPIC if etype == "topics" else BROKER, [n],
                                         synonyms=True, node=node).get(n, [])
        if etype == "brokers" and default:
            print("Default configs for brokers in the cluster are:")
        else:
            print(f"{'All' if describe_all else 'Dynamic'} configs for {etype[:-1]} {n} are:")
        for e in _filter(entries, etype, default, describe_all):
            syn = ", ".join(f"{SOURCES.get(s.source, 'UNKNOWN')}:{s.name}={_v(s.value)}"
                            for s in (e.synonyms or []))
            print(f"  {e.name}={_v(e.value)} sensitive={str(bool(e.is_sensitive)).lower()} "
                  f"synonyms={{{syn}}}")


def alter(admin, etype, name, default, a) -> None:
    adds = parse_add_config(a.add_config) if a.add_config else {}
    deletes = [k.strip() for k in (a.delete_config or "").split(",") if k.strip()]
    rtype = TOPIC if etype == "topics" else BROKER
    rname = "" if default else name
    node = int(name) if etype == "brokers" and not default else None
    if etype == "topics":
        md = admin.metadata([name])
        if md.topics[0].error_code:
            raise ToolError(f"org.apache.kafka.common.errors.UnknownTopicOrPartitionException: "
                            f"The topic '{name}' does not exist.")
    current = admin.describe_configs(rtype, [rname], node=node).get(rname, [])
    dynamic = {e.name for e in _filter(current, etype, default, False)}
    invalid = [k for k in deletes if k not in dynamic]
    if invalid:
        raise ToolError("org.apache.kafka.common.errors.InvalidConfigurationException: "
                        f"Invalid config(s): {','.join(invalid)}")
    ops = [(k, SET, v) for k, v in adds.items()] + [(k, DELETE, None) for k in deletes]
    admin.incremental_alter_configs(rtype, rname, ops, node=node)
    if etype == "brokers" and default:
        print("Completed updating default config for brokers in the cluster.")
    else:
        print(f"Completed updating config for {etype[:-1]} {name}.")


def main(argv: list[str] | None = None, prog: str = "kafka-configs.sh") -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    return run_tool(build_parser(prog), args, run,
                    error_prefix=f"Error while executing config command with args "
                                 f"'{' '.join(args)}'\n")


if __name__ == "__main__":
    sys.exit(main())
