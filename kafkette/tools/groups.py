"""`kafkette groups list|describe`, after Kafka's kafka-consumer-groups.sh
(kafka.admin.ConsumerGroupCommand, `--list --state` and `--describe --offsets`).

describe rows, as Kafka builds them: one per partition assigned to a member (from the
member's ConsumerProtocolAssignment), plus one per partition with a committed offset
but no owner (CONSUMER-ID '-'), plus one per member without partitions (TOPIC '-').
LAG = LOG-END-OFFSET - CURRENT-OFFSET; '-' where either is unknown."""
from __future__ import annotations

import json
import sys

from kafkette.protocol.messages import ConsumerProtocolAssignment
from kafkette.protocol.primitives import Reader
from kafkette.tools.client import AdminClient, ToolError, format_table
from kafkette.tools.common import admin_from_args

COLUMNS = ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
           "CONSUMER-ID", "HOST", "CLIENT-ID"]
_KEYS = ["group", "topic", "partition", "current_offset", "log_end_offset", "lag",
         "consumer_id", "host", "client_id"]


def add_parser(sub) -> None:
    p = sub.add_parser("groups", help="list and describe consumer groups "
                                      "(like kafka-consumer-groups.sh)")
    acts = p.add_subparsers(dest="action", required=True)
    for name, text in (("list", "group ids and states"),
                       ("describe", "offsets and lag per partition")):
        a = acts.add_parser(name, help=text)
        a.add_argument("--bootstrap-server", required=True, metavar="HOST:PORT")
        a.add_argument("--command-config", metavar="FILE",
                       help="client properties (security.protocol, sasl.*, ssl.*)")
        a.add_argument("--json", action="store_true", help="print JSON")
        a.set_defaults(func=run)
        if name == "describe":
            a.add_argument("--group", help="one group (default: all groups)")


def decode_assignment(data) -> list[tuple[str, int]]:
    """(topic, partition) pairs of a ConsumerProtocolAssignment: int16 version, then
    [topic string, [int32 partition]], nullable bytes user data. Reads are bounded by
    the buffer (a bad length raises rather than allocating). Like Kafka's
    ConsumerProtocol.deserializeAssignment, a newer version is read as the newest
    one we know, since versions only append fields."""
    if not data:
        return []
    r = Reader(bytes(data))
    version = r.int16()
    if version < 0:
        raise ValueError(f"ConsumerProtocolAssignment version {version}")
    a = ConsumerProtocolAssignment.read(r, min(version, ConsumerProtocolAssignment.MAX_VERSION))
    return [(tp.topic, p) for tp in (a.assigned_partitions or []) for p in (tp.partitions or [])]


def run(args) -> int:
    with admin_from_args(args) as admin:
        return _list(admin, args) if args.action == "list" else _describe(admin, args)


def _list(admin: AdminClient, args) -> int:
    out = []
    for g in admin.list_groups():
        state = g.group_state or None
        if state is None:   # ListGroups < v4 has no state: ask DescribeGroups
            try:
                state = admin.describe_group(g.group_id).group_state
            except ToolError:
                state = None
        out.append({"group": g.group_id, "state": state,
                    "protocol_type": g.protocol_type})
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(format_table(["GROUP", "STATE"], [[g["group"], g["state"]] for g in out]))
    return 0


def describe_rows(admin: AdminClient, group: str) -> tuple[str, list[dict]]:
    g = admin.describe_group(group)
    if g.group_state == "Dead":
        # Kafka's admin client reports GroupIdNotFoundException for a Dead group.
        raise ToolError(f"consumer group {group!r} does not exist")
    committed = admin.committed_offsets(group)
    owned: dict[tuple[str, int], object] = {}
    idle_members = []
    for m in g.members:
        tps = []
        if g.protocol_type == "consumer":
            try:
                tps = decode_assignment(m.member_assignment)
            except Exception as e:  # noqa: BLE001 - a bad member must not hide the rest
                print(f"warning: cannot decode the assignment of member {m.member_id}: {e}",
                      file=sys.stderr)
        for tp in tps:
            owned[tp] = m
        if not tps:
            idle_members.append(m)
    tps = sorted(set(owned) | set(committed))
    ends = admin.log_end_offsets(tps)
    rows = []
    for tp in tps:
        m = owned.get(tp)
        cur, end = committed.get(tp), ends.get(tp)
        rows.append({
            "group": group, "topic": tp[0], "partition": tp[1],
            "current_offset": cur, "log_end_offset": end,
            "lag": end - cur if cur is not None and end is not None else None,
            "consumer_id": m.member_id if m else None,
            "host": m.client_host if m else None,
            "client_id": m.client_id if m else None,
        })
    for m in idle_members:
        rows.append(dict(zip(_KEYS, [group, None, None, None, None, None,
                                     m.member_id, m.client_host, m.client_id])))
    return g.group_state, rows


def _describe(admin: AdminClient, args) -> int:
    groups = [args.group] if args.group else [g.group_id for g in admin.list_groups()]
    result = []
    for group in groups:
        state, rows = describe_rows(admin, group)
        result.append({"group": group, "state": state, "partitions": rows})
    if args.json:
        print(json.dumps(result if not args.group else result[0], indent=2))
        return 0
    blocks = []
    for g in result:
        lines = []
        if not any(r["consumer_id"] for r in g["partitions"]):
            lines.append(f"Consumer group '{g['group']}' has no active members.")
        if g["partitions"]:
            lines.append(format_table(COLUMNS, [[r[k] for k in _KEYS] for r in g["partitions"]]))
        blocks.append("\n".join(lines))
    print("\n\n".join(blocks))
    return 0
