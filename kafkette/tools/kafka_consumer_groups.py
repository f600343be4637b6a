"""kafka-consumer-groups.sh: Kafka's ConsumerGroupCommand (4.x) for classic consumer
groups, with its flags, tables and messages.

  --list [--state [S,..]]     group ids, or a GROUP/STATE table
  --describe (--group G... | --all-groups) [--offsets | --members | --state] [--verbose]
  --delete (--group G... | --all-groups)
  --delete-offsets --group G --topic T[:p,..]...
  --reset-offsets (--group G... | --all-groups) (--topic T[:p,..]... | --all-topics)
        --to-earliest | --to-latest | --to-current | --to-offset N | --shift-by N |
        --to-datetime YYYY-MM-DDTHH:mm:SS.sss[zone] | --by-duration PnDTnHnMnS |
        --from-file CSV   [--dry-run (the default) | --execute] [--export]

Tables are Kafka's printf layouts: columns padded to at least 15 (PARTITION 10), '-'
for a missing value, a blank line before each group's table. Messages as Kafka's:
"Consumer group 'g' has no active members." (stderr), "Deletion of requested
consumer groups ('g') was successful.", "\\nError: ..." (stdout).

Differs from Kafka: errors exit with code 1 (Kafka's tool prints some errors and still
exits 0); --type and --validate-regex (KIP-848 groups) are not served; groups are
classic groups (kafkette has no KIP-848 consumer groups), so the CURRENT-EPOCH,
TARGET-EPOCH and TARGET-ASSIGNMENT columns of --verbose are '-' as Kafka prints them
for classic groups.
"""
from __future__ import annotations

import datetime
import re
import sys

from kafkette.errors import ErrorCode
from kafkette.protocol.messages import FindCoordinatorRequest, OffsetFetchRequest
from kafkette.tools.client import (
    AdminClient, BrokerError, ToolError, kafka_exception, kafka_message,
)
from kafkette.tools.common import (
    ToolParser, UsageError, add_bootstrap, add_command_config, admin_from_args, run_tool,
)
from kafkette.tools.groups import decode_assignment

MISSING = "-"
STATES = ["PreparingRebalance", "CompletingRebalance", "Stable", "Dead", "Empty"]


class PrintedError(ToolError):
    """An error already printed in Kafka's words: only the exit code is left."""


def build_parser(prog="kafka-consumer-groups.sh") -> ToolParser:
    p = ToolParser(prog, "This tool helps to list all consumer groups, describe a consumer "
                         "group, delete consumer group info, or reset consumer group offsets.")
    add_bootstrap(p)
    add_command_config(p)
    p.add_argument("--list", action="store_true", help="List all consumer groups.")
    p.add_argument("--describe", action="store_true",
                   help="Describe consumer group and list offset lag (number of messages "
                        "not yet processed) related to given group.")
    p.add_argument("--delete", action="store_true", help="Pass in groups to delete topic "
                                                        "partition offsets and ownership "
                                                        "information over the entire group.")
    p.add_argument("--delete-offsets", action="store_true",
                   help="Delete offsets of consumer group. Supports one consumer group at "
                        "the time, and multiple topics.")
    p.add_argument("--reset-offsets", action="store_true",
                   help="Reset offsets of consumer group (dry run unless --execute).")
    p.add_argument("--group", action="append", metavar="consumer group",
                   help="The consumer group we wish to act on (repeatable).")
    p.add_argument("--all-groups", action="store_true", help="Apply to all consumer groups.")
    p.add_argument("--topic", action="append", metavar="topic",
                   help="The topic whose consumer group information should be deleted or "
                        "reset: T, or T:0,1 for some partitions (repeatable).")
    p.add_argument("--all-topics", action="store_true",
                   help="With --reset-offsets: every topic the group has offsets for.")
    p.add_argument("--members", action="store_true", help="With --describe: the members.")
    p.add_argument("--offsets", action="store_true",
                   help="With --describe: the offsets and lag (the default).")
    p.add_argument("--state", nargs="?", const="", metavar="state",
                   help="With --describe: the group's state; with --list: a STATE column, "
                        "and a comma-separated filter of states when given one.")
    p.add_argument("--verbose", action="store_true", help="With --describe: more columns.")
    p.add_argument("--dry-run", action="store_true", help="Only show the results (default).")
    p.add_argument("--execute", action="store_true", help="Execute the reset.")
    p.add_argument("--export", action="store_true",
                   help="Print the reset plan as CSV (topic,partition,offset).")
    p.add_argument("--to-offset", type=int, metavar="offset", help="Reset offsets to offset.")
    p.add_argument("--to-earliest", action="store_true", help="Reset to the earliest offset.")
    p.add_argument("--to-latest", action="store_true", help="Reset to the latest offset.")
    p.add_argument("--to-current", action="store_true", help="Reset to the current offset.")
    p.add_argument("--shift-by", type=int, metavar="number-of-offsets",
                   help="Shift the current offset by 'n' (may be negative).")
    p.add_argument("--to-datetime", metavar="datetime",
                   help="Reset to the offset of a datetime, 'YYYY-MM-DDTHH:mm:SS.sss'.")
    p.add_argument("--by-duration", metavar="duration",
                   help="Reset to the offset of a duration ago, 'PnDTnHnMnS'.")
    p.add_argument("--from-file", metavar="path to CSV file",
                   help="Reset to the offsets of a CSV file (topic,partition,offset or "
                        "group,topic,partition,offset).")
    p.add_argument("--timeout", type=int, default=5000, metavar="timeout (ms)",
                   help="Timeout of the requests, in ms (default 5000).")
    return p


_SCENARIOS = ("to_offset", "to_earliest", "to_latest", "to_current", "shift_by",
              "to_datetime", "by_duration", "from_file")


def _has(a, name) -> bool:
    v = getattr(a, name)
    return v is not None and v is not False


def check_args(a) -> str:
    actions = [x for x in ("list", "describe", "delete", "reset_offsets", "delete_offsets")
               if getattr(a, x)]
    if len(actions) != 1:
        raise UsageError("Command must include exactly one action: --list, --describe, "
                         "--delete, --reset-offsets, --delete-offsets")
    action = actions[0]
    if not a.bootstrap_server:
        raise UsageError("Missing required argument \"[bootstrap-server]\"")
    scope = "[all-groups, group]"
    for flag in ("members", "offsets", "verbose"):
        if getattr(a, flag) and action != "describe":
            raise UsageError(f"Option \"[{flag}]\" is available only with option "
                             f"\"[describe]\"")
    if a.state is not None and action not in ("describe", "list"):
        raise UsageError("Option \"[state]\" is available only with options "
                         "\"[describe]\" or \"[list]\"")
    if action == "describe":
        if not a.group and not a.all_groups:
            raise UsageError(f"Option [describe] takes one of these options: {scope}")
        if sum(1 for x in (a.members, a.offsets, a.state is not None) if x) > 1:
            raise UsageError("Option [describe] takes at most one of these options: "
                             "[members, offsets, state]")
        if a.state:
            raise UsageError("Option [describe] does not take a value for [state]")
    if action == "delete":
        if not a.group and not a.all_groups:
            raise UsageError(f"Option [delete] takes one of these options: {scope}")
        if a.topic:
            raise UsageError("The consumer does not support topic-specific offset deletion "
                             "from a consumer group.")
    if action == "delete_offsets" and (not a.group or not a.topic):
        raise UsageError("Option [delete-offsets] takes the following options: "
                         "[group, topic]")
    if action == "delete_offsets" and len(a.group) > 1:
        raise UsageError("Option [delete-offsets] supports one consumer group at a time")
    if action == "reset_offsets":
        if a.dry_run and a.execute:
            raise UsageError("Option [reset-offsets] only accepts one of [execute] and "
                             "[dry-run]")
        if not a.dry_run and not a.execute:
            print("WARN: No action will be performed as the --execute option is missing. "
                  "In a future major release, the default behavior of this command will be "
                  "to prompt the user before executing the reset rather than doing a dry "
                  "run. You should add the --dry-run option explicitly if you are scripting "
                  "this command and want to keep the current default behavior without "
                  "prompting.", file=sys.stderr)
        if not a.group and not a.all_groups:
            raise UsageError(f"Option [reset-offsets] takes one of these options: {scope}")
        chosen = [s for s in _SCENARIOS if _has(a, s)]
        if len(chosen) > 1:
            raise UsageError(f"Option \"[{chosen[0].replace('_', '-')}]\" can't be used with "
                             f"option \"[{chosen[1].replace('_', '-')}]\"")
        if not chosen:
            raise UsageError("Option '[reset-offsets]' requires one of the following "
                             "scenarios: [to-offset, shift-by, to-datetime, by-duration, "
                             "to-earliest, to-latest, to-current, from-file]")
        if not a.topic and not a.all_topics and not a.from_file:
            raise UsageError("One of the reset scopes should be defined: --all-topics, "
                             "--topic.")
    else:
        for s in _SCENARIOS + ("dry_run", "execute", "export", "all_topics"):
            if _has(a, s):
                raise UsageError(f"Option \"[{s.replace('_', '-')}]\" can only be used with "
                                 f"option \"[reset-offsets]\"")
    if a.group and a.all_groups:
        raise UsageError("Option \"[group]\" can't be used with option \"[all-groups]\"")
    if a.group and action == "list":
        raise UsageError("Option \"[group]\" can't be used with option \"[list]\"")
    if a.topic and action in ("list", "describe"):
        raise UsageError(f"Option \"[topic]\" can't be used with option \"[{action}]\"")
    return action


def jfmt(spec: list[tuple[int, bool]], values: list) -> str:
    """Java's printf with %-Ns columns: (width, padded); a width 0 column is '%s'."""
    out = []
    for (w, _), v in zip(spec, values):
        s = MISSING if v is None else str(v)
        out.append(s.ljust(w) if w else s)
    return " ".join(out)


def error_line(msg: str) -> None:
    # ConsumerGroupCommand.printError: a blank line, then "Error: ..." on stdout
    print(f"\nError: {msg}")


# --------------------------------------------------------------------------- data

def consumer_groups(admin: AdminClient):
    """ListGroups entries of consumer (classic) groups: protocol type 'consumer', or ''
    for a group that only ever had offsets committed to it."""
    out = []
    for g in admin.list_groups():
        if g.protocol_type not in ("consumer", ""):
            continue
        out.append(g)
    return out


def coordinator_node(admin: AdminClient, group: str) -> tuple[int, str, int]:
    v = admin.version(FindCoordinatorRequest.API_KEY)
    if v >= 4:
        resp = admin.request(FindCoordinatorRequest(key_type=0, coordinator_keys=[group]), v)
        c = resp.coordinators[0]
        err, node, host, port = c.error_code, c.node_id, c.host, c.port
    else:
        resp = admin.request(FindCoordinatorRequest(key=group, key_type=0), v)
        err, node, host, port = resp.error_code, resp.node_id, resp.host, resp.port
    if err:
        raise BrokerError(err)
    return node, host, port


def committed(admin: AdminClient, group: str) -> dict[tuple[str, int], tuple[int, int]]:
    """(topic, partition) -> (committed offset, committed leader epoch)."""
    coordinator = admin.coordinator(group)
    v = admin.version(OffsetFetchRequest.API_KEY, coordinator)
    if v >= 8:
        req = OffsetFetchRequest(groups=[OffsetFetchRequest.OffsetFetchRequestGroup(
            group_id=group, topics=None)], require_stable=False)
    else:
        req = OffsetFetchRequest(group_id=group, topics=None, require_stable=False)
    resp = admin.request(req, v, coordinator)
    if v >= 8:
        err, topics = resp.groups[0].error_code, resp.groups[0].topics
    else:
        err, topics = resp.error_code, resp.topics
    if err:
        raise BrokerError(err)
    out = {}
    for t in topics:
        for p in t.partitions:
            if p.error_code == 0 and p.committed_offset >= 0:
                epoch = getattr(p, "committed_leader_epoch", -1)
                out[(t.name, p.partition_index)] = (p.committed_offset, epoch)
    return out


def members_of(g) -> list[dict]:
    out = []
    for m in g.members:
        tps = []
        if g.protocol_type == "consumer":
            try:
                tps = decode_assignment(m.member_assignment)
            except Exception:  # noqa: BLE001 - a member with a bad assignment owns nothing
                tps = []
        out.append({"id": m.member_id, "host": m.client_host, "client": m.client_id,
                    "instance": getattr(m, "group_instance_id", None) or "", "tps": tps})
    return out


def log_end_offsets(admin: AdminClient, tps) -> dict[tuple[str, int], int | None]:
    if not tps:
        return {}
    md = admin.metadata(sorted({t for t, _ in tps}))
    leaders = {(t.name, p.partition_index): p.leader_id for t in md.topics for p in t.partitions}
    have = {tp: leaders[tp] for tp in tps if leaders.get(tp, -1) >= 0}
    res = admin.list_offsets({tp: -1 for tp in have}, leaders=have) if have else {}
    return {tp: (res[tp][1] if tp in res and res[tp][0] == 0 else None) for tp in tps}


# --------------------------------------------------------------------------- actions

def do_list(admin: AdminClient, a) -> None:
    groups = consumer_groups(admin)
    if a.state is None:
        for g in groups:
            print(g.group_id)
        return
    wanted = None
    if a.state:
        wanted = set()
        for s in a.state.split(","):
            match = [x for x in STATES if x.lower() == s.strip().lower()]
            if not match:
                raise UsageError(f"Invalid state list '{a.state}'. Valid states are: "
                                 + ", ".join(STATES))
            wanted.add(match[0])
    rows = []
    for g in groups:
        state = g.group_state or None
        if not state:   # ListGroups < v4 has no state
            state = admin.describe_group(g.group_id).group_state
        if wanted is None or state in wanted:
            rows.append((g.group_id, state))
    width = max([15] + [len(r[0]) for r in rows]) + 10
    print("GROUP".ljust(width) + " " + "STATE".ljust(20))
    for gid, state in rows:
        print(gid.ljust(width) + " " + state.ljust(20))


def state_check(group: str, state: str, num: int | None) -> bool:
    """Kafka's shouldPrintMemberState."""
    if num is None:
        error_line(f"The consumer group '{group}' does not exist.")
        return False
    if state == "Dead":
        error_line(f"Consumer group '{group}' does not exist.")
    elif state == "Empty":
        print(f"\nConsumer group '{group}' has no active members.", file=sys.stderr)
    elif state in ("PreparingRebalance", "CompletingRebalance", "Assigning", "Reconciling"):
        print(f"\nWarning: Consumer group '{group}' is rebalancing.", file=sys.stderr)
    return state != "Dead" and num > 0


def describe(admin: AdminClient, a) -> int:
    groups = sorted({g.group_id for g in consumer_groups(admin)}) if a.all_groups \
        else sorted(set(a.group))
    failed = False
    for group in groups:
        g = admin.describe_group(group)
        if g.group_state == "Dead":
            failed = True
        if a.members:
            describe_members(g, group, a.verbose)
        elif a.state is not None:
            describe_state(admin, g, group, a.verbose)
        else:
            describe_offsets(admin, g, group, a.verbose)
    sys.stdout.flush()
    return 1 if failed else 0


def describe_offsets(admin, g, group, verbose) -> None:
    rows = []
    if g.group_state != "Dead":
        offsets = committed(admin, group)
        members = [m for m in members_of(g) if m["tps"]]
        members.sort(key=lambda m: -len(m["tps"]))
        assigned = set()
        with_consumer = []
        for m in members:
            tps = sorted(set(m["tps"]))
            assigned.update(tps)
            for tp in tps:
                with_consumer.append((tp, m))
        unassigned = sorted(tp for tp in offsets if tp not in assigned)
        all_tps = [tp for tp, _ in with_consumer] + unassigned
        ends = log_end_offsets(admin, all_tps)
        for tp, m in with_consumer + [(tp, None) for tp in unassigned]:
            off = offsets.get(tp)
            end = ends.get(tp)
            cur = off[0] if off else None
            lag = end - cur if cur is not None and cur != -1 and end is not None else None
            epoch = off[1] if off and off[1] >= 0 else None
            rows.append([group, tp[0], tp[1]] + ([epoch] if verbose else []) +
                        [cur, end, lag, m["id"] if m else MISSING, m["host"] if m else MISSING,
                         m["client"] if m else MISSING])
    if not state_check(group, g.group_state, len(rows)):
        return
    gw = max([15] + [len(r[0]) for r in rows])
    tw = max([15] + [len(str(r[1])) for r in rows])
    cw = max([15] + [len(str(r[-3])) for r in rows])
    hw = max([15] + [len(str(r[-2])) for r in rows])
    spec = [(gw, 1), (tw, 1), (10, 1)] + ([(15, 1)] if verbose else []) + \
        [(15, 1), (15, 1), (15, 1), (cw, 1), (hw, 1), (0, 0)]
    header = ["GROUP", "TOPIC", "PARTITION"] + (["LEADER-EPOCH"] if verbose else []) + \
        ["CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID"]
    text = "\n" + jfmt(spec, header)
    for r in rows:
        text += "\n" + jfmt(spec, r)
    print(text)


def _assignment_string(tps) -> str:
    by_topic: dict[str, list[int]] = {}
    for t, p in tps:
        by_topic.setdefault(t, []).append(p)
    return ";".join(sorted(f"{t}:" + ",".join(str(p) for p in sorted(ps))
                           for t, ps in by_topic.items()))


def describe_members(g, group, verbose) -> None:
    members = members_of(g) if g.group_state != "Dead" else []
    show = state_check(group, g.group_state, len(members))
    gw, cw, iw, hw, clw, caw, taw = 15, 15, 17, 15, 15, 20, 20
    with_instance = False
    if show:
        for m in members:
            gw = max(gw, len(group))
            cw = max(cw, len(m["id"]))
            iw = max(iw, len(m["instance"]))
            hw = max(hw, len(m["host"]))
            clw = max(clw, len(m["client"]))
            with_instance = with_instance or bool(m["instance"])
            caw = max(caw, len(_assignment_string(m["tps"]) or MISSING))
    if with_instance:
        spec = [(gw, 1), (cw, 1), (iw, 1), (hw, 1), (clw, 1), (15, 1)]
        header = ["GROUP", "CONSUMER-ID", "GROUP-INSTANCE-ID", "HOST", "CLIENT-ID", "#PARTITIONS"]
    else:
        spec = [(gw, 1), (cw, 1), (hw, 1), (clw, 1), (15, 1)]
        header = ["GROUP", "CONSUMER-ID", "HOST", "CLIENT-ID", "#PARTITIONS"]
    vspec = [(15, 1), (caw, 1), (15, 1), (taw, 1)]
    vheader = ["CURRENT-EPOCH", "CURRENT-ASSIGNMENT", "TARGET-EPOCH", "TARGET-ASSIGNMENT"]
    # Kafka's "%-15s " leaves a space after the #PARTITIONS column
    line = "\n" + jfmt(spec, header) + " " + (jfmt(vspec, vheader) if verbose else "")
    print(line)
    if not members:
        return
    for m in members:
        row = [group, m["id"]] + ([m["instance"]] if with_instance else []) + \
            [m["host"], m["client"], len(m["tps"])]
        text = jfmt(spec, row) + " "
        if verbose:
            text += jfmt(vspec, [MISSING, _assignment_string(m["tps"]) or MISSING, MISSING,
                                 MISSING])
        print(text)


def describe_state(admin, g, group, verbose) -> None:
    if not state_check(group, g.group_state, 1):
        return
    node, host, port = coordinator_node(admin, group)
    coord = f"{host}:{port}  ({node})"
    cw = max(25, len(coord))
    gw = max(15, len(group))
    strategy = g.protocol_data or MISSING
    if verbose:
        spec = [(gw, 1), (cw, 1), (20, 1), (20, 1), (15, 1), (25, 1), (0, 0)]
        header = ["GROUP", "COORDINATOR (ID)", "ASSIGNMENT-STRATEGY", "STATE", "GROUP-EPOCH",
                  "TARGET-ASSIGNMENT-EPOCH", "#MEMBERS"]
        row = [group, coord, strategy, g.group_state, MISSING, MISSING, len(g.members)]
    else:
        spec = [(gw, 1), (cw, 1), (20, 1), (20, 1), (0, 0)]
        header = ["GROUP", "COORDINATOR (ID)", "ASSIGNMENT-STRATEGY", "STATE", "#MEMBERS"]
        row = [group, coord, strategy, g.group_state, len(g.members)]
    print("\n" + jfmt(spec, header) + "\n" + jfmt(spec, row))


def delete(admin: AdminClient, a) -> int:
    groups = [g.group_id for g in consumer_groups(admin)] if a.all_groups else list(a.group)
    results = admin.delete_groups(groups)
    ok = [g for g in groups if results.get(g, 0) == 0]
    bad = [g for g in groups if results.get(g, 0) != 0]
    if not bad:
        print("Deletion of requested consumer groups ("
              + ", ".join(f"'{g}'" for g in ok) + ") was successful.")
        return 0
    error_line("Deletion of some consumer groups failed:")
    for g in bad:
        code = results[g]
        print(f"* Group '{g}' could not be deleted due to: {kafka_exception(code)}")
    if ok:
        print("\nThese consumer groups were deleted successfully: "
              + ", ".join(f"'{g}'" for g in ok))
    return 1


def _parse_topic_args(admin: AdminClient, topics: list[str]) -> list[tuple[str, int]]:
    """Kafka's parseTopicPartitionsToReset: T:0,1 names partitions, T means all of them."""
    out, whole = [], []
    for arg in topics:
        if ":" in arg:
            parts = arg.split(":")
            if len(parts) != 2:
                raise UsageError(f"Invalid topic arg '{arg}', expected topic name and "
                                 f"partitions")
            for p in parts[1].split(","):
                try:
                    out.append((parts[0], int(p)))
                except ValueError:
                    raise UsageError(f"Invalid partition '{p}' specified in topic arg "
                                     f"'{arg}''") from None
        else:
            whole.append(arg)
    if whole:
        md = admin.metadata(whole)
        for t in md.topics:
            if t.error_code:
                raise ToolError(kafka_exception(t.error_code))
            out.extend((t.name, p.partition_index) for p in t.partitions)
    return out


def delete_offsets(admin: AdminClient, a) -> int:
    group = a.group[0]
    tps = _parse_topic_args(admin, a.topic)
    top, parts = admin.offset_delete(group, tps)
    rc = 0
    if top == 0 and any(parts.values()):
        top_msg = "Encountered some partition-level error, see the follow-up details."
        error_line(top_msg)
        rc = 1
    elif top == 0:
        print(f"Request succeeded for deleting offsets from group {group}.")
    elif top in (ErrorCode.INVALID_GROUP_ID, ErrorCode.GROUP_ID_NOT_FOUND,
                 ErrorCode.GROUP_AUTHORIZATION_FAILED, ErrorCode.NON_EMPTY_GROUP):
        error_line(kafka_message(top))
        rc = 1
    elif top in (ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC, ErrorCode.TOPIC_AUTHORIZATION_FAILED,
                 ErrorCode.UNKNOWN_TOPIC_OR_PARTITION):
        error_line("Encountered some partition-level error, see the follow-up details.")
        rc = 1
    else:
        error_line(f"Encountered some unknown error: {ErrorCode(top).name}")
        rc = 1
    tw = max([15] + [len(t) for t, _ in tps])
    text = "\n" + "TOPIC".ljust(tw) + " " + "PARTITION".ljust(10) + " " + "STATUS".ljust(15)
    for tp in sorted(tps, key=lambda tp: tp[0] + str(tp[1])):
        code = parts.get(tp, top)
        status = "Successful" if code == 0 else f"Error: {kafka_message(code)}"
        text += "\n" + tp[0].ljust(tw) + " " + str(tp[1]).ljust(10) + " " + status.ljust(15)
    print(text)
    return rc


_DURATION = re.compile(r"^([-+]?)P(?:([-+]?\d+)D)?(?:T(?:([-+]?\d+)H)?(?:([-+]?\d+)M)?"
                       r"(?:([-+]?\d+(?:[.,]\d{0,9})?)S)?)?$", re.IGNORECASE)


def parse_duration_ms(text: str) -> int:
    """java.time.Duration.parse (PnDTnHnMn.nS) in milliseconds."""
    m = _DURATION.match(text.strip())
    if not m or (m.group(2) is None and m.group(3) is None and m.group(4) is None
                 and m.group(5) is None) or text.strip().upper().endswith("T"):
        raise ToolError(f"Text cannot be parsed to a Duration: {text}")
    days, hours, mins = (int(m.group(i) or 0) for i in (2, 3, 4))
    secs = float((m.group(5) or "0").replace(",", "."))
    ms = int(round(((days * 24 + hours) * 60 + mins) * 60_000 + secs * 1000))
    return -ms if m.group(1) == "-" else ms


def parse_datetime_ms(text: str) -> int:
    """Kafka's Utils.getDateTime: yyyy-MM-dd'T'HH:mm:ss.SSS with an optional zone
    (Z, +hh:mm, +hhmm); no zone means the local time zone."""
    s = text.strip()
    if s.count(":") == 1 and "T" in s:
        s += ":00"
    m = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d{1,3})?(Z|[+-]\d{2}:?\d{2})?$", s)
    if not m:
        raise ToolError(f"Error parsing datetime '{text}': expected yyyy-MM-dd'T'HH:mm:ss.SSS "
                        f"with an optional time zone")
    base = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")
    frac = int((m.group(2) or ".0")[1:].ljust(3, "0"))
    zone = m.group(3)
    if zone:
        if zone == "Z":
            tz = datetime.timezone.utc
        else:
            z = zone.replace(":", "")
            sign = -1 if z[0] == "-" else 1
            tz = datetime.timezone(sign * datetime.timedelta(hours=int(z[1:3]),
                                                             minutes=int(z[3:5])))
        base = base.replace(tzinfo=tz)
    else:
        base = base.astimezone()
    return int(base.timestamp() * 1000) + frac


def _clamp(admin, requested: dict) -> dict:
    """Kafka's checkOffsetsRange: an offset past the log end becomes the log end, one
    before the log start becomes the log start (with Kafka's warning)."""
    if not requested:
        return {}
    starts = admin.list_offsets({tp: -2 for tp in requested})
    ends = admin.list_offsets({tp: -1 for tp in requested})
    out = {}
    for tp, off in requested.items():
        end = ends.get(tp, (1, None))
        start = starts.get(tp, (1, None))
        if end[0] == 0 and off > end[1]:
            print(f"WARN New offset ({off}) is higher than latest offset for topic partition "
                  f"{tp[0]}-{tp[1]}. Value will be set to {end[1]}.", file=sys.stderr)
            out[tp] = end[1]
        elif start[0] == 0 and off < start[1]:
            print(f"WARN New offset ({off}) is lower than earliest offset for topic partition "
                  f"{tp[0]}-{tp[1]}. Value will be set to {start[1]}.", file=sys.stderr)
            out[tp] = start[1]
        else:
            out[tp] = off
    return out


def _offsets_at(admin, tps, spec, what) -> dict:
    res = admin.list_offsets({tp: spec for tp in tps})
    out = {}
    for tp in tps:
        code, off = res.get(tp, (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, -1))
        if code != 0:
            raise UsageError(f"Error getting {what} offset of topic partition: {tp[0]}-{tp[1]}")
        out[tp] = off
    return out


def _offsets_for_time(admin, tps, ts) -> dict:
    res = admin.list_offsets({tp: ts for tp in tps})
    out, empty = {}, []
    for tp in tps:
        code, off = res.get(tp, (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, -1))
        if code != 0:
            raise UsageError(f"Error getting offset by timestamp of topic partition: "
                             f"{tp[0]}-{tp[1]}")
        if off == -1:
            print(f"\nWarn: Partition {tp[1]} from topic {tp[0]} is empty. Falling back to "
                  f"latest known offset.")
            empty.append(tp)
        else:
            out[tp] = off
    out.update(_offsets_at(admin, empty, -1, "ending"))
    return out


def _read_plan(a) -> dict[str, dict[tuple[str, int], int]]:
    try:
        with open(a.from_file, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f.read().split("\n") if ln.strip()]
    except OSError as e:
        raise ToolError(f"cannot read {a.from_file}: {e.strerror}") from None
    plan: dict[str, dict] = {}
    single = a.group and len(a.group) == 1
    for ln in lines:
        cells = ln.split(",")
        try:
            if len(cells) == 3 and single:
                plan.setdefault(a.group[0], {})[(cells[0], int(cells[1]))] = int(cells[2])
            elif len(cells) == 4:
                plan.setdefault(cells[0], {})[(cells[1], int(cells[2]))] = int(cells[3])
            else:
                raise ValueError
        except ValueError:
            raise ToolError(f"bad line in {a.from_file}: '{ln}' (expected topic,partition,"
                            f"offset or group,topic,partition,offset)") from None
    return plan


def reset_offsets(admin: AdminClient, a) -> int:
    groups = [g.group_id for g in consumer_groups(admin)] if a.all_groups else list(a.group)
    result: dict[str, dict] = {}
    rc = 0
    for group in groups:
        g = admin.describe_group(group)
        if g.group_state not in ("Empty", "Dead"):
            error_line(f"Assignments can only be reset if the group '{group}' is inactive, "
                       f"but the current state is {g.group_state}.")
            result[group] = {}
            rc = 1
            continue
        current = {tp: o for tp, (o, _e) in committed(admin, group).items()}
        if a.from_file:
            plan = _read_plan(a)
            if group not in plan:
                error_line(f"No reset plan for group {group} found.")
                result[group] = {}
                rc = 1
                continue
            tps = list(plan[group])
        elif a.all_topics:
            tps = sorted(current)
        else:
            tps = _parse_topic_args(admin, a.topic)
        check_valid(admin, tps)
        if a.to_offset is not None:
            new = _clamp(admin, {tp: a.to_offset for tp in tps})
        elif a.to_earliest:
            new = _offsets_at(admin, tps, -2, "starting")
        elif a.to_latest:
            new = _offsets_at(admin, tps, -1, "ending")
        elif a.shift_by is not None:
            missing = [tp for tp in tps if tp not in current]
            if missing:
                raise UsageError(f"Cannot shift offset for partition {missing[0][0]}-"
                                 f"{missing[0][1]} since there is no current committed offset")
            new = _clamp(admin, {tp: current[tp] + a.shift_by for tp in tps})
        elif a.to_datetime is not None:
            new = _offsets_for_time(admin, tps, parse_datetime_ms(a.to_datetime))
        elif a.by_duration is not None:
            ts = int(datetime.datetime.now().timestamp() * 1000) - parse_duration_ms(a.by_duration)
            new = _offsets_for_time(admin, tps, ts)
        elif a.from_file:
            new = _clamp(admin, plan[group])
        else:   # --to-current
            new = {tp: current[tp] for tp in tps if tp in current}
            new.update(_offsets_at(admin, [tp for tp in tps if tp not in current], -1, "ending"))
        if a.execute and new:
            admin.commit_offsets(group, new)
        result[group] = new
    if a.export:
        single = a.group and len(a.group) == 1
        lines = []
        for group, new in result.items():
            for (t, p), off in sorted(new.items()):
                lines.append(f"{t},{p},{off}" if single else f"{group},{t},{p},{off}")
        print("\n".join(lines) + ("\n" if lines else ""))
        return rc
    print_offsets_to_reset(result)
    return rc


def check_valid(admin, tps) -> None:
    topics = sorted({t for t, _ in tps})
    if not topics:
        return
    md = admin.metadata(topics)
    exist = {(t.name, p.partition_index): p.leader_id for t in md.topics if t.error_code == 0
             for p in t.partitions}
    missing = [tp for tp in tps if tp not in exist]
    if missing:
        raise ToolError("org.apache.kafka.common.errors.UnknownTopicOrPartitionException: "
                        "The partitions \"" + ",".join(f"{t}-{p}" for t, p in missing)
                        + "\" do not exist")
    leaderless = [tp for tp in tps if exist[tp] < 0]
    if leaderless:
        raise ToolError("org.apache.kafka.common.errors.LeaderNotAvailableException: "
                        "The partitions \"" + ",".join(f"{t}-{p}" for t, p in leaderless)
                        + "\" have no leader")


def print_offsets_to_reset(result: dict[str, dict]) -> None:
    gw = max([15] + [len(g) for g in result])
    tw = max([15] + [len(t) for new in result.values() for t, _ in new])
    spec = [(gw, 1), (tw, 1), (10, 1), (0, 0)]
    text = ""
    if result:
        text += "\n" + jfmt(spec, ["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"])
    for group, new in result.items():
        for (t, p), off in sorted(new.items()):
            text += "\n" + jfmt(spec, [group, t, p, off])
    print(text)


_RUN = {"list": do_list, "describe": describe, "delete": delete,
        "delete_offsets": delete_offsets, "reset_offsets": reset_offsets}


def main(argv: list[str] | None = None, prog: str = "kafka-consumer-groups.sh") -> int:
    def body(a):
        action = check_args(a)
        with admin_from_args(a, timeout_ms=a.timeout) as admin:
            return _RUN[action](admin, a) or 0
    return run_tool(build_parser(prog), argv, body,
                    error_prefix="\nError: Executing consumer group command failed due to ",
                    error_stream=sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
