"""`kafkette schemas list|get|register`: quick looks at a Schema Registry (kafkette's
built-in one or Confluent's) over its REST API, with the standard library's urllib.

    kafkette schemas list [--url URL] [--prefix P] [--deleted]
    kafkette schemas get SUBJECT [--version N|latest] | --id ID [--url URL]
    kafkette schemas register SUBJECT FILE|- [--type AVRO|JSON|PROTOBUF]
                              [--reference NAME=SUBJECT:VERSION ...] [--url URL]
"""
from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_URL = "http://127.0.0.1:8081"
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryCallError(Exception):
    pass


def add_parser(sub) -> None:
    p = sub.add_parser("schemas", help="list, get and register schemas of a Schema Registry")
    acts = p.add_subparsers(dest="action", required=True)

    def common(a):
        a.add_argument("--url", default=DEFAULT_URL, help=f"registry URL (default {DEFAULT_URL})")
        a.set_defaults(func=run)
        return a
    lst = common(acts.add_parser("list", help="subjects, one a line"))
    lst.add_argument("--prefix", default="", help="only subjects starting with this")
    lst.add_argument("--deleted", action="store_true", help="include soft-deleted subjects")
    get = common(acts.add_parser("get", help="a subject's version, or a schema by id (JSON)"))
    get.add_argument("subject", nargs="?")
    get.add_argument("--version", default="latest")
    get.add_argument("--id", type=int, help="the schema with this id instead of a subject")
    reg = common(acts.add_parser("register", help="register a schema under a subject; "
                                                  "prints its id"))
    reg.add_argument("subject")
    reg.add_argument("file", help="schema file, or - for standard input")
    reg.add_argument("--type", default="AVRO", choices=("AVRO", "JSON", "PROTOBUF"))
    reg.add_argument("--reference", action="append", default=[],
                     metavar="NAME=SUBJECT:VERSION", help="a schema reference; repeatable")


def call(url: str, method: str, path: str, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url.rstrip("/") + path, data=data, method=method,
                                 headers={"Content-Type": CONTENT_TYPE,
                                          "Accept": CONTENT_TYPE})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            err = json.loads(e.read())
            raise RegistryCallError(f"{err.get('message')} (error code {err.get('error_code')})") \
                from None
        except ValueError:
            raise RegistryCallError(f"HTTP {e.code}") from None
    except urllib.error.URLError as e:
        raise RegistryCallError(f"cannot reach {url}: {e.reason}") from None


def _q(s: str) -> str:
    return urllib.parse.quote(s, safe="")


def run(args) -> int:
    try:
        if args.action == "list":
            query = urllib.parse.urlencode({"subjectPrefix": args.prefix,
                                            "deleted": str(args.deleted).lower()})
            for s in call(args.url, "GET", f"/subjects?{query}"):
                print(s)
        elif args.action == "get":
            if args.id is not None:
                out = call(args.url, "GET", f"/schemas/ids/{args.id}")
            elif args.subject:
                out = call(args.url, "GET", f"/subjects/{_q(args.subject)}/versions/"
                                            f"{_q(str(args.version))}")
            else:
                print("Error: give a SUBJECT or --id", file=sys.stderr)
                return 2
            print(json.dumps(out, indent=2))
        elif args.action == "register":
            text = sys.stdin.read() if args.file == "-" else open(args.file).read()
            body = {"schema": text, "schemaType": args.type}
            refs = []
            for r in args.reference:
                name, _, target = r.partition("=")
                subject, _, version = target.rpartition(":")
                if not name or not subject or not version.isdigit():
                    print(f"Error: --reference {r!r}: expected NAME=SUBJECT:VERSION",
                          file=sys.stderr)
                    return 2
                refs.append({"name": name, "subject": subject, "version": int(version)})
            if refs:
                body["references"] = refs
            print(call(args.url, "POST", f"/subjects/{_q(args.subject)}/versions", body)["id"])
    except (RegistryCallError, OSError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    return 0
