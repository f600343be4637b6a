"""kafka-topics.sh: Kafka's TopicCommand (4.x) in Python, with its flags and output.

    kafka-topics.sh --bootstrap-server HOST:PORT --create --topic T --partitions 3 ...

Output as Kafka prints it: `Created topic T.`; --list one name a line; --describe a
tab-separated topic line (`Topic: T\\tTopicId: ...\\tPartitionCount: 3\\t
ReplicationFactor: 3\\tConfigs: k=v,...`, configs being every entry whose source is
not the default) then one line per partition (`\\tTopic: T\\tPartition: 0\\tLeader: 1\\t
Replicas: ...\\tIsr: ...\\tElr: ...\\tLastKnownElr: ...`; `Elr: N/A` when the broker
does not serve DescribeTopicPartitions). --alter and --delete print nothing, as in
Kafka 4.x. Errors: `Error while executing topic command : MESSAGE` on stdout, exit 1.

--topic is a regular expression (commas read as `|`) for everything but --create,
matched against the whole name, as Kafka's IncludeList does.
"""
from __future__ import annotations

import base64
import re
import sys

from kafkette.tools.client import AdminClient, BrokerError, ToolError
from kafkette.tools.common import (
    ToolParser, UsageError, add_bootstrap, add_command_config, admin_from_args, run_tool,
)

INTERNAL_TOPICS = {"__consumer_offsets", "__transaction_state"}
#: DescribeConfigs config_source DEFAULT_CONFIG: Kafka's ConfigEntry.isDefault()
DEFAULT_CONFIG = 5
ACTIONS = ("create", "list", "alter", "describe", "delete")


def build_parser(prog: str = "kafka-topics.sh") -> ToolParser:
    p = ToolParser(prog, "This tool helps to create, delete, describe, or change a topic.")
    add_bootstrap(p)
    add_command_config(p)
    p.add_argument("--list", action="store_true", help="List all available topics.")
    p.add_argument("--create", action="store_true", help="Create a new topic.")
    p.add_argument("--delete", action="store_true", help="Delete a topic.")
    p.add_argument("--alter", action="store_true",
                   help="Alter the number of partitions and replica assignment.")
    p.add_argument("--describe", action="store_true", help="List details for the given topics.")
    p.add_argument("--topic", help="The topic to create, alter, describe or delete. It also "
                                   "accepts a regular expression, except for --create.")
    p.add_argument("--topic-id", help="The topic-id to describe.")
    p.add_argument("--config", action="append", metavar="name=value",
                   help="A topic configuration override for the topic being created "
                        "(repeatable).")
    p.add_argument("--partitions", type=int, metavar="# of partitions",
                   help="The number of partitions for the topic being created or altered.")
    p.add_argument("--replication-factor", type=int, metavar="replication factor",
                   help="The replication factor for each partition of the topic being "
                        "created.")
    p.add_argument("--replica-assignment", metavar="b1:b2,b3:b4,...",
                   help="Manual partition-to-broker assignments for the topic being "
                        "created or altered.")
    p.add_argument("--under-replicated-partitions", action="store_true",
                   help="With --describe, only show under-replicated partitions.")
    p.add_argument("--unavailable-partitions", action="store_true",
                   help="With --describe, only show partitions whose leader is not available.")
    p.add_argument("--under-min-isr-partitions", action="store_true",
                   help="With --describe, only show partitions whose isr count is less than "
                        "the configured minimum.")
    p.add_argument("--at-min-isr-partitions", action="store_true",
                   help="With --describe, only show partitions whose isr count is equal to "
                        "the configured minimum.")
    p.add_argument("--topics-with-overrides", action="store_true",
                   help="With --describe, only show topics that have overridden configs.")
    p.add_argument("--if-exists", action="store_true",
                   help="With --alter, --delete or --describe: only act if the topic exists.")
    p.add_argument("--if-not-exists", action="store_true",
                   help="With --create: do not fail if the topic already exists.")
    p.add_argument("--exclude-internal", action="store_true",
                   help="Exclude internal topics when listing or describing topics.")
    return p


_REPORTS = ("under_replicated_partitions", "unavailable_partitions",
            "under_min_isr_partitions", "at_min_isr_partitions")


def check_args(a) -> str:
    """Kafka's TopicCommandOptions.checkArgs, message for message."""
    actions = [x for x in ACTIONS if getattr(a, x)]
    if len(actions) != 1:
        raise UsageError("Command must include exactly one action: --list, --describe, "
                         "--create, --alter or --delete")
    action = actions[0]
    if not a.bootstrap_server and not a.command_config:
        raise UsageError("--bootstrap-server must be specified")
    if action == "describe" and a.if_exists and not a.topic and not a.topic_id:
        raise UsageError("--topic or --topic-id is required to describe a topic")
    if action not in ("list", "describe") and not a.topic:
        raise UsageError("Missing required argument \"[topic]\"")
    if action == "alter" and a.partitions is None:
        raise UsageError("Missing required argument \"[partitions]\"")

    def only(flag, value, allowed):
        if value and action not in allowed:
            raise UsageError(f"Option \"[{flag}]\" can't be used with option \"[{action}]\"")
    if action == "alter" and a.config:
        raise UsageError("Option \"[config]\" can't be used with option \"[alter]\" "
                         "(To alter topic configurations, the kafka-configs tool can be used.)")
    only("config", a.config, ("create",))
    only("partitions", a.partitions is not None, ("alter", "create"))
    only("replication-factor", a.replication_factor is not None, ("create",))
    only("replica-assignment", a.replica_assignment, ("alter", "create"))
    if action == "create" and a.replica_assignment and (
            a.partitions is not None or a.replication_factor is not None):
        bad = "partitions" if a.partitions is not None else "replication-factor"
        raise UsageError(f"Option \"[replica-assignment]\" can't be used with option \"[{bad}]\"")
    for r in _REPORTS + ("topics_with_overrides",):
        only(r.replace("_", "-"), getattr(a, r), ("describe",))
    if a.topics_with_overrides and any(getattr(a, r) for r in _REPORTS):
        raise UsageError("Option \"[topics-with-overrides]\" can't be used with the "
                         "partition report options")
    only("if-exists", a.if_exists, ("alter", "delete", "describe"))
    only("if-not-exists", a.if_not_exists, ("create",))
    only("exclude-internal", a.exclude_internal, ("list", "describe"))
    only("topic-id", a.topic_id, ("describe",))
    return action


def parse_replica_assignment(text: str) -> list[list[int]]:
    out = []
    for i, part in enumerate(text.split(",")):
        try:
            brokers = [int(b.strip()) for b in part.split(":")]
        except ValueError:
            raise UsageError(f"Invalid --replica-assignment '{text}': expected broker ids "
                             f"like 1:2,2:3") from None
        dups = sorted({b for b in brokers if brokers.count(b) > 1})
        if dups:
            raise ToolError("Partition replica lists may not contain duplicate entries: "
                            + ",".join(map(str, dups)))
        if out and len(brokers) != len(out[0]):
            raise ToolError(f"Partition {i} has different replication factor: {brokers}")
        out.append(brokers)
    return out


def parse_topic_configs(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        parts = re.split(r"\s*=\s*", item)
        if len(parts) != 2:
            raise UsageError("requirement failed: Invalid topic config: all configs to be "
                             "added must be in the format \"key=val\".")
        out[parts[0].strip()] = parts[1].strip()
    return out


def topic_filter(pattern: str | None, exclude_internal: bool):
    """Kafka's TopicFilter.IncludeList: a Java regex over the whole name, commas as
    alternation, spaces and surrounding quotes dropped."""
    regex = None
    if pattern is not None:
        raw = pattern.strip().replace(",", "|").replace(" ", "")
        raw = re.sub(r"^[\"']+", "", raw)
        raw = re.sub(r"[\"']+$", "", raw)
        try:
            regex = re.compile(raw)
        except re.error as e:
            raise UsageError(f"{raw} is an invalid regex: {e}") from None

    def allowed(name: str) -> bool:
        if exclude_internal and name in INTERNAL_TOPICS:
            return False
        return regex is None or regex.fullmatch(name) is not None
    return allowed


def all_topics(admin: AdminClient, include_internal: bool):
    """(Metadata response, every topic's metadata). Internal topics are asked for by
    name too: some brokers (kafkette among them) leave them out of an all-topics
    Metadata answer, which Kafka's brokers do not, and kafka-topics.sh lists them."""
    md = admin.metadata(None)
    found = [t for t in md.topics if t.error_code == 0]
    if include_internal:
        names = {t.name for t in found}
        missing = sorted(INTERNAL_TOPICS - names)
        if missing:
            found += [t for t in admin.metadata(missing).topics if t.error_code == 0]
    return md, found


def get_topics(admin: AdminClient, pattern, exclude_internal) -> list[str]:
    allowed = topic_filter(pattern, exclude_internal)
    return sorted(t.name for t in all_topics(admin, not exclude_internal)[1] if allowed(t.name))


def ensure_exists(found: list, requested: str | None, require: bool) -> None:
    if requested and require and not found:
        raise ToolError(f"Topic '{requested}' does not exist as expected")


# --------------------------------------------------------------------------- actions

def create(admin: AdminClient, a) -> None:
    rf = a.replication_factor
    if rf is not None and not 1 <= rf <= 32767:
        raise ToolError("The replication factor must be between 1 and 32767 inclusive")
    if a.partitions is not None and a.partitions < 1:
        raise ToolError("The partitions must be greater than 0")
    configs = parse_topic_configs(a.config)
    assignment = parse_replica_assignment(a.replica_assignment) if a.replica_assignment else None
    if "." in a.topic or "_" in a.topic:
        print("WARNING: Due to limitations in metric names, topics with a period ('.') or "
              "underscore ('_') could collide. To avoid issues it is best to use either, "
              "but not both.")
    try:
        admin.create_topic_full(a.topic, -1 if a.partitions is None else a.partitions,
                                -1 if rf is None else rf, configs, assignment)
    except BrokerError as e:
        if e.code == 36 and a.if_not_exists:   # TOPIC_ALREADY_EXISTS
            return
        raise
    print(f"Created topic {a.topic}.")


def list_topics(admin: AdminClient, a) -> None:
    print("\n".join(get_topics(admin, a.topic, a.exclude_internal)))


def alter(admin: AdminClient, a) -> None:
    topics = get_topics(admin, a.topic, a.exclude_internal)
    ensure_exists(topics, a.topic, not a.if_exists)
    if not topics:
        return
    assignment = parse_replica_assignment(a.replica_assignment) if a.replica_assignment else None
    extra = {}
    if assignment:
        md = admin.metadata(topics)
        for t in md.topics:
            # the assignment lists every partition; the new ones are past the current count
            extra[t.name] = assignment[len(t.partitions):]
    admin.create_partitions({t: a.partitions for t in topics}, extra)


def delete(admin: AdminClient, a) -> None:
    topics = get_topics(admin, a.topic, a.exclude_internal)
    ensure_exists(topics, a.topic, not a.if_exists)
    if topics:
        admin.delete_topics(topics)


def kafka_uuid(u) -> str:
    """A topic id as Kafka prints it (Uuid.toString: URL-safe base64, no padding);
    '' for none or the zero id."""
    if u is None:
        return ""
    raw = u.bytes if hasattr(u, "bytes") else bytes(u)
    if raw == bytes(16):
        return ""
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _ids(nodes) -> str:
    return ",".join(str(n) for n in nodes)


def describe(admin: AdminClient, a) -> None:
    md, known = all_topics(admin, not a.exclude_internal)
    live = {b.node_id for b in md.brokers}
    allowed = topic_filter(a.topic, a.exclude_internal)
    if a.topic_id and a.topic_id != "AAAAAAAAAAAAAAAAAAAAAA":
        names = sorted(t.name for t in known if kafka_uuid(t.topic_id) == a.topic_id)
        if not names and not a.if_exists:
            raise ToolError(f"TopicId '{a.topic_id}' does not exist as expected")
    else:
        names = sorted(t.name for t in known if allowed(t.name))
        ensure_exists(names, a.topic, not a.if_exists)
    if not names:
        return
    described = admin.describe_topic_partitions(names)
    has_elr = described is not None
    if described is None:
        described = [t for t in known if t.name in set(names)]
    by_name = {t.name: t for t in described}
    configs = admin.describe_configs(2, names)
    reports = any(getattr(a, r) for r in _REPORTS)
    for name in names:
        t = by_name.get(name)
        if t is None:
            continue
        if t.error_code != 0:
            raise BrokerError(t.error_code)
        entries = configs.get(name, [])
        overrides = [c for c in entries if c.config_source != DEFAULT_CONFIG]
        parts = sorted(t.partitions, key=lambda p: p.partition_index)
        if not reports and (not a.topics_with_overrides or overrides) and parts:
            line = f"Topic: {name}"
            tid = kafka_uuid(t.topic_id)
            if tid:
                line += f"\tTopicId: {tid}"
            line += (f"\tPartitionCount: {len(parts)}\tReplicationFactor: "
                     f"{len(parts[0].replica_nodes)}\tConfigs: "
                     + ",".join(f"{c.name}={c.value if c.value is not None else ''}"
                                for c in overrides))
            print(line)
        if a.topics_with_overrides:
            continue
        min_isr = next((int(c.value) for c in entries if c.name == "min.insync.replicas"
                        and c.value), 1)
        for p in parts:
            has_leader = p.leader_id >= 0
            if reports:
                show = (
                    (a.under_replicated_partitions and len(p.replica_nodes) > len(p.isr_nodes))
                    or (a.unavailable_partitions and (not has_leader or p.leader_id not in live))
                    or (a.under_min_isr_partitions and (not has_leader
                                                        or len(p.isr_nodes) < min_isr))
                    or (a.at_min_isr_partitions and len(p.isr_nodes) == min_isr))
                if not show:
                    continue
            line = (f"\tTopic: {name}\tPartition: {p.partition_index}\tLeader: "
                    f"{p.leader_id if has_leader else 'none'}\tReplicas: "
                    f"{_ids(p.replica_nodes)}\tIsr: {_ids(p.isr_nodes)}")
            if has_elr and p.eligible_leader_replicas is not None:
                line += f"\tElr: {_ids(p.eligible_leader_replicas)}"
            else:
                line += "\tElr: N/A"
            if has_elr and p.last_known_elr is not None:
                line += f"\tLastKnownElr: {_ids(p.last_known_elr)}"
            else:
                line += "\tLastKnownElr: N/A"
            print(line)


_RUN = {"create": create, "list": list_topics, "alter": alter, "describe": describe,
        "delete": delete}


def main(argv: list[str] | None = None, prog: str = "kafka-topics.sh") -> int:
    def body(a):
        action = check_args(a)
        with admin_from_args(a) as admin:
            _RUN[action](admin, a)
        sys.stdout.flush()
    # TopicCommand prints its errors on stdout (printException), not stderr
    return run_tool(build_parser(prog), argv, body,
                    error_prefix="Error while executing topic command : ",
                    error_stream=sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
