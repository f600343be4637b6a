"""`kafkette topics list|create|describe|delete`, after Kafka's kafka-topics.sh
(kafka.admin.TopicCommand). Differences: describe prints an aligned partition table
under each topic line rather than tab-separated lines; `--json` is ours."""
from __future__ import annotations

import json

from kafkette.tools.client import AdminClient, ToolError, error_name, format_table
from kafkette.tools.common import admin_from_args


def add_parser(sub) -> None:
    p = sub.add_parser("topics", help="list, create, describe and delete topics "
                                      "(like kafka-topics.sh)")
    acts = p.add_subparsers(dest="action", required=True)

    def common(a):
        a.add_argument("--bootstrap-server", required=True, metavar="HOST:PORT")
        a.add_argument("--command-config", metavar="FILE",
                       help="client properties (security.protocol, sasl.*, ssl.*)")
        a.add_argument("--json", action="store_true", help="print JSON")
        a.set_defaults(func=run)
        return a

    lst = common(acts.add_parser("list", help="topic names"))
    lst.add_argument("--exclude-internal", action="store_true",
                     help="leave out internal topics such as __consumer_offsets")
    c = common(acts.add_parser("create", help="create a topic"))
    c.add_argument("--topic", required=True)
    c.add_argument("--partitions", type=int, default=-1,
                   help="default: the broker's num.partitions")
    c.add_argument("--replication-factor", type=int, default=-1,
                   help="default: the broker's default.replication.factor")
    c.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                   help="topic config override; repeatable")
    d = common(acts.add_parser("describe", help="partitions, leaders, replicas, ISR, "
                                                "config overrides"))
    d.add_argument("--topic", help="one topic (default: all)")
    d.add_argument("--exclude-internal", action="store_true")
    x = common(acts.add_parser("delete", help="delete a topic"))
    x.add_argument("--topic", required=True)


def _parse_configs(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise ToolError(f"bad --config {item!r}: expected KEY=VALUE")
        out[k.strip()] = v.strip()
    return out


def run(args) -> int:
    with admin_from_args(args) as admin:
        return _ACTIONS[args.action](admin, args)


def _list(admin: AdminClient, args) -> int:
    md = admin.metadata(None)
    names = sorted(t.name for t in md.topics
                   if t.error_code == 0 and not (args.exclude_internal and t.is_internal))
    print(json.dumps(names) if args.json else "\n".join(names))
    return 0


def _create(admin: AdminClient, args) -> int:
    admin.create_topic(args.topic, args.partitions, args.replication_factor,
                       _parse_configs(args.config))
    print(json.dumps({"created": args.topic}) if args.json else f"Created topic {args.topic}.")
    return 0


def _delete(admin: AdminClient, args) -> int:
    admin.delete_topic(args.topic)
    print(json.dumps({"deleted": args.topic}) if args.json else f"Deleted topic {args.topic}.")
    return 0


def _describe(admin: AdminClient, args) -> int:
    md = admin.metadata([args.topic] if args.topic else None)
    topics = []
    for t in sorted(md.topics, key=lambda t: t.name):
        if t.error_code != 0:
            raise ToolError(f"cannot describe topic {t.name!r}: {error_name(t.error_code)}")
        if args.exclude_internal and t.is_internal:
            continue
        topics.append(t)
    configs = admin.topic_config_overrides([t.name for t in topics])
    out = []
    for t in topics:
        parts = sorted(t.partitions, key=lambda p: p.partition_index)
        out.append({
            "topic": t.name,
            "topic_id": str(t.topic_id) if t.topic_id is not None else None,
            "is_internal": bool(t.is_internal),
            "partition_count": len(parts),
            "replication_factor": len(parts[0].replica_nodes) if parts else 0,
            "configs": configs.get(t.name, {}),
            "partitions": [{"partition": p.partition_index, "leader": p.leader_id,
                            "leader_epoch": p.leader_epoch,
                            "replicas": list(p.replica_nodes), "isr": list(p.isr_nodes),
                            "offline": list(p.offline_replicas or [])}
                           for p in parts],
        })
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    blocks = []
    for t in out:
        cfg = ",".join(f"{k}={v}" for k, v in sorted(t["configs"].items()))
        head = (f"Topic: {t['topic']}\tTopicId: {t['topic_id']}\t"
                f"PartitionCount: {t['partition_count']}\t"
                f"ReplicationFactor: {t['replication_factor']}\tConfigs: {cfg}")
        rows = [[t["topic"], p["partition"], p["leader"], p["leader_epoch"],
                 ",".join(map(str, p["replicas"])), ",".join(map(str, p["isr"])),
                 ",".join(map(str, p["offline"])) or "-"]
                for p in t["partitions"]]
        blocks.append(head + "\n" + format_table(
            ["TOPIC", "PARTITION", "LEADER", "LEADER_EPOCH", "REPLICAS", "ISR", "OFFLINE"],
            rows))
    print("\n\n".join(blocks))
    return 0


_ACTIONS = {"list": _list, "create": _create, "delete": _delete, "describe": _describe}
