"""kafka-acls.sh: Kafka's AclCommand (CreateAcls, DescribeAcls, DeleteAcls), and
`kafkette acls add|list|remove` (the same command with the action as a word).

  --add | --remove | --list
  --allow-principal P, --deny-principal P, --allow-host H, --deny-host H (repeatable)
  --operation OP (repeatable; default All), --topic T, --group G, --cluster,
  --transactional-id ID, --delegation-token T, --user-principal P (repeatable)
  --resource-pattern-type literal|prefixed|match|any (default literal; match and any
  only for --list / --remove), --principal P (--list filter), --force (no prompt),
  --producer [--idempotent] / --consumer: Kafka's expansions (WRITE, DESCRIBE, CREATE on
  the topics, WRITE and DESCRIBE on transactional ids, IDEMPOTENT_WRITE on the cluster;
  READ and DESCRIBE on the topics, READ on the groups).

Output as Kafka's: "Adding ACLs for resource `ResourcePattern(...)`:" with one
"\\t(principal=..., host=..., operation=..., permissionType=...)" line per ACL, then
the resource's current ACLs; --list prints "Current ACLs for resource ..." blocks.
--remove asks "Are you sure ...? (y/n)" unless --force, as Kafka does.
Not served (refused): --authorizer-properties / --zk-tls-config-file (ZooKeeper-era
direct access; Kafka 4 removed it too).
"""
from __future__ import annotations

import sys

from kafkette.tools import security as sec
from kafkette.tools.client import ToolError
from kafkette.tools.common import (
    ToolParser, UsageError, add_bootstrap, add_command_config, admin_from_args, run_tool,
)


def build_parser(prog="kafka-acls.sh") -> ToolParser:
    p = ToolParser(prog, "This tool helps to manage acls on kafka.")
    add_bootstrap(p, "REQUIRED: A list of host/port pairs to use for establishing the "
                     "connection to the Kafka cluster.")
    add_command_config(p)
    for flag, text in (("--add", "Indicates you are trying to add ACLs."),
                       ("--remove", "Indicates you are trying to remove ACLs."),
                       ("--list", "List ACLs for the specified resource, use --topic "
                                  "<topic> or --group <group> or --cluster to specify a "
                                  "resource."),
                       ("--cluster", "Add/Remove cluster ACLs."),
                       ("--producer", "Convenience option to add/remove ACLs for producer "
                                      "role."),
                       ("--consumer", "Convenience option to add/remove ACLs for consumer "
                                      "role."),
                       ("--idempotent", "Enable idempotence for the producer (with "
                                        "--producer: IDEMPOTENT_WRITE on the cluster)."),
                       ("--force", "Assume Yes to all queries and do not prompt.")):
        p.add_argument(flag, action="store_true", help=text)
    for flag, meta, text in (
            ("--allow-principal", "allow-principal", "principal in PrincipalType:name "
                                                     "format (User:alice); repeatable"),
            ("--deny-principal", "deny-principal", "principal denied; repeatable"),
            ("--allow-host", "allow-host", "Host from which principals listed in "
                                           "--allow-principal will have access (default *)"),
            ("--deny-host", "deny-host", "Host from which principals listed in "
                                         "--deny-principal will be denied (default *)"),
            ("--operation", "operation", "Operation that is being allowed or denied: All, "
                                         "Read, Write, Create, Delete, Alter, Describe, "
                                         "ClusterAction, DescribeConfigs, AlterConfigs, "
                                         "IdempotentWrite, CreateTokens, DescribeTokens "
                                         "(default All); repeatable"),
            ("--topic", "topic", "topic to which ACLs should be added or removed; repeatable"),
            ("--group", "group", "Consumer Group to which the ACLs should be added or "
                                 "removed; repeatable"),
            ("--transactional-id", "transactional-id", "The transactionalId to which ACLs "
                                                       "should be added or removed"),
            ("--delegation-token", "delegation-token", "Delegation token to which ACLs "
                                                       "should be added or removed"),
            ("--user-principal", "user-principal", "A user resource to which ACLs should be "
                                                   "added or removed"),
            ("--principal", "principal", "List ACLs for the specified principal (with "
                                         "--list)")):
        p.add_argument(flag, action="append", default=[], metavar=meta, help=text)
    p.add_argument("--resource-pattern-type", default="literal", metavar="pattern-type",
                   help="literal, prefixed, match or any (default literal; match and any "
                        "only with --list and --remove)")
    return p


def options(a) -> sec.AclOptions:
    return sec.AclOptions(
        allow_principals=a.allow_principal, deny_principals=a.deny_principal,
        allow_hosts=a.allow_host, deny_hosts=a.deny_host, operations=a.operation,
        topics=a.topic, groups=a.group, cluster=a.cluster,
        transactional_ids=a.transactional_id, delegation_tokens=a.delegation_token,
        user_principals=a.user_principal, pattern_type=a.resource_pattern_type,
        producer=a.producer, consumer=a.consumer, idempotent=a.idempotent,
        principals=a.principal)


def _print_current(admin, res: list[tuple[int, str, int]]) -> None:
    for rt, name, pt in res:
        acls = sec.describe_acls(admin, sec.AclFilter(rt, name, pt)).get((rt, name, pt), [])
        print(sec.block(f"Current ACLs for resource `{sec.pattern_str(rt, name, pt)}`",
                        [sec.entry_str(*e) for e in acls]))


def _confirm(question: str) -> bool:
    print(f"{question} (y/n)")
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def run(a) -> int:
    actions = [n for n in ("add", "remove", "list") if getattr(a, n)]
    if len(actions) != 1:
        raise UsageError("Command must include exactly one action: --list, --add, --remove. ")
    if not a.bootstrap_server and not a.command_config:
        raise UsageError("--bootstrap-server must be specified")
    o = options(a)
    if (a.producer or a.consumer) and actions[0] == "list":
        raise UsageError("Option \"[list]\" can't be used with option \"[producer]\"/"
                         "\"[consumer]\"")
    if a.principal and actions[0] != "list":
        raise UsageError("--principal is only valid with --list")
    try:
        if actions[0] == "add":
            bindings = sec.bindings_to_add(o)
        elif actions[0] == "remove":
            filters = sec.filters_to_remove(o)
        else:
            filters = sec.filters_to_list(o)
    except sec.AclUsageError as e:
        raise UsageError(str(e)) from None
    with admin_from_args(a) as admin:
        if actions[0] == "add":
            by_res: dict[tuple, list] = {}
            for b in bindings:
                by_res.setdefault((b.resource_type, b.resource_name, b.pattern_type), []).append(
                    sec.entry_str(b.principal, b.host, b.operation, b.permission))
            for (rt, name, pt), entries in by_res.items():
                print(sec.block(f"Adding ACLs for resource `{sec.pattern_str(rt, name, pt)}`",
                                entries))
            sec.create_acls(admin, bindings)
            _print_current(admin, list(by_res))
        elif actions[0] == "remove":
            by_res = {}
            for f in filters:
                by_res.setdefault((f.resource_type, f.resource_name, f.pattern_type), []).append(f)
            for (rt, name, pt), fs in by_res.items():
                where = sec.pattern_str(rt, name, pt, filter_=True)
                if fs[0].principal is None:
                    q = f"Are you sure you want to delete all ACLs for resource filter `{where}`?"
                else:
                    q = ("Are you sure you want to remove ACLs: \n "
                         + "\n".join("\t" + sec.entry_str(f.principal, f.host, f.operation,
                                                          f.permission) for f in fs)
                         + f" \n from resource filter `{where}`?")
                if not a.force and not _confirm(q):
                    continue
                sec.delete_acls(admin, fs)
            if o.pattern_type.lower() in ("literal", "prefixed"):
                _print_current(admin, list(by_res))
        else:
            for f in filters:
                if f.principal is not None:
                    print(f"ACLs for principal `{f.principal}`")
                for (rt, name, pt), acls in sorted(sec.describe_acls(admin, f).items(),
                                                   key=lambda kv: (kv[0][0], kv[0][1])):
                    print(sec.block(f"Current ACLs for resource `{sec.pattern_str(rt, name, pt)}`",
                                    [sec.entry_str(*e) for e in acls]))
    return 0


def main(argv: list[str] | None = None, prog: str = "kafka-acls.sh") -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    return run_tool(build_parser(prog), args, run, error_prefix="Error while executing ACL "
                    "command: ")


#: `kafkette acls add|list|remove [options]`: the action word as kafka-acls.sh's flag
SHORT_ACTIONS = {"add": "--add", "list": "--list", "remove": "--remove"}


def short_main(argv: list[str]) -> int:
    """`kafkette acls ACTION [kafka-acls.sh options]`."""
    if not argv or argv[0] not in SHORT_ACTIONS:
        if argv and argv[0] in ("-h", "--help"):
            return main(["--help"], prog="kafkette acls {add,list,remove}")
        print("usage: kafkette acls {add,list,remove} [kafka-acls.sh options]",
              file=sys.stderr)
        return 1
    return main([SHORT_ACTIONS[argv[0]], *argv[1:]], prog=f"kafkette acls {argv[0]}")


if __name__ == "__main__":
    sys.exit(main())
