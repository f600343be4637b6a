"""`kafkette users add|list|remove`: SCRAM users (KIP-554), the short form of
`kafka-configs.sh --entity-type users` (same engine: kafkette.tools.security).

    kafkette users add alice --password pw [--mechanism SCRAM-SHA-512] [--iterations 8192]
    kafkette users list [--user alice]
    kafkette users remove alice [--mechanism SCRAM-SHA-256]   (default: every mechanism)

Each takes --bootstrap-server and --command-config (TLS / SASL client settings, as
kafka-configs.sh's). The salted password is computed here; the password itself is
never sent.
"""
from __future__ import annotations

import json

from kafkette.tools import security as sec
from kafkette.tools.client import ToolError
from kafkette.tools.common import admin_from_args


def add_parser(sub) -> None:
    p = sub.add_parser("users", help="add, list and remove SCRAM users (like kafka-configs.sh "
                                     "--entity-type users)")
    acts = p.add_subparsers(dest="action", required=True)

    def common(a):
        a.add_argument("--bootstrap-server", required=True, metavar="HOST:PORT")
        a.add_argument("--command-config", metavar="FILE",
                       help="client properties (security.protocol, sasl.*, ssl.*)")
        a.set_defaults(func=run)
        return a

    add = common(acts.add_parser("add", help="create or update a user's SCRAM credential"))
    add.add_argument("user")
    add.add_argument("--password", required=True)
    add.add_argument("--mechanism", action="append", choices=sorted(sec.SCRAM_MECHANISMS),
                     help="repeatable; default SCRAM-SHA-512")
    add.add_argument("--iterations", type=int, default=sec.DEFAULT_ITERATIONS)
    lst = common(acts.add_parser("list", help="users with SCRAM credentials"))
    lst.add_argument("--user", action="append", help="only this user; repeatable")
    lst.add_argument("--json", action="store_true", help="print JSON")
    rm = common(acts.add_parser("remove", help="delete a user's SCRAM credentials"))
    rm.add_argument("user")
    rm.add_argument("--mechanism", action="append", choices=sorted(sec.SCRAM_MECHANISMS),
                    help="repeatable; default: every mechanism the user has")


def run(args) -> int:
    with admin_from_args(args) as admin:
        if args.action == "add":
            mechs = args.mechanism or ["SCRAM-SHA-512"]
            sec.alter_scram(admin, args.user, [sec.ScramUpsert(m, args.iterations, args.password)
                                               for m in mechs], [])
            print(f"Added {', '.join(mechs)} credentials for user {args.user}.")
        elif args.action == "list":
            users = sec.describe_scram(admin, args.user)
            if args.json:
                print(json.dumps({u: [{"mechanism": m, "iterations": i} for m, i in infos]
                                  for u, infos in sorted(users.items())}))
            else:
                for u, infos in sorted(users.items()):
                    print(f"{u} " + " ".join(f"{m}(iterations={i})" for m, i in infos))
        else:
            mechs = args.mechanism
            if not mechs:
                mechs = [m for m, _ in sec.describe_scram(admin, [args.user]).get(args.user, [])]
                if not mechs:
                    raise ToolError(f"user {args.user} has no SCRAM credentials")
            sec.alter_scram(admin, args.user, [], mechs)
            print(f"Removed {', '.join(mechs)} credentials of user {args.user}.")
    return 0
