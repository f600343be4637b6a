"""kafka-get-offsets.sh: Kafka's GetOffsetShell. Prints `topic:partition:offset` for
each partition matched, sorted as Kafka sorts them (by "topic-partition" as text);
partitions without an offset for the time asked (ListOffsets answered -1) are left out.

  --time -1|latest (default), -2|earliest, -3|max-timestamp, or a timestamp in ms
  --topic REGEX [--partitions 0,1] | --topic-partitions 'regex:0,t2:1-3,t3:5-,:-2'

Not served: -4 earliest-local, -5 latest-tiered, -6 earliest-pending-upload (kafkette
has no tiered storage): refused with a message.
"""
from __future__ import annotations

import re
import sys

from kafkette.tools.client import ToolError, kafka_message
from kafkette.tools.common import (
    ToolParser, UsageError, add_command_config, admin_from_args, run_tool,
)
from kafkette.tools.kafka_topics import INTERNAL_TOPICS, topic_filter

_RULE = re.compile(r"^([^:,]*)(?::(?:([0-9]*)|(?:([0-9]*)-([0-9]*))))?$")
_SPECS = {"earliest": -2, "latest": -1, "max-timestamp": -3}
_TIERED = {"earliest-local": -4, "latest-tiered": -5, "earliest-pending-upload": -6}


def build_parser(prog="kafka-get-offsets.sh") -> ToolParser:
    p = ToolParser(prog, "An interactive shell for getting topic-partition offsets.")
    p.add_argument("--bootstrap-server", metavar="HOST1:PORT1,...,HOST3:PORT3",
                   help="REQUIRED. The server(s) to connect to in the form "
                        "HOST1:PORT1,HOST2:PORT2.")
    p.add_argument("--topic-partitions", metavar="topic1:1,topic2:0-3,topic3,topic4:5-,topic5:-3",
                   help="Comma separated list of topic-partition patterns (topic regex, then "
                        "':' and a partition, a range N-M (upper exclusive), N- or -M).")
    p.add_argument("--topic", help="The topic to get the offsets for (a regular expression).")
    p.add_argument("--partitions", metavar="partition ids",
                   help="Comma separated list of partition ids.")
    p.add_argument("--time", default="latest", metavar="timestamp",
                   help="<timestamp> / -1 or latest / -2 or earliest / -3 or max-timestamp "
                        "(default latest).")
    add_command_config(p)
    p.add_argument("--exclude-internal-topics", action="store_true",
                   help="Leave out internal topics.")
    return p


def parse_time(text: str) -> int:
    if text in _SPECS:
        return _SPECS[text]
    if text in _TIERED:
        raise ToolError(f"--time {text} is not supported: kafkette has no tiered storage")
    try:
        ts = int(text)
    except ValueError:
        raise ToolError(f"Malformed time argument {text}. Please use -1 or latest / -2 or "
                        f"earliest / -3 or max-timestamp, or a specified long format "
                        f"timestamp") from None
    if ts in (-4, -5, -6):
        raise ToolError(f"--time {ts} is not supported: kafkette has no tiered storage")
    return ts


def rules(a):
    """[(topic predicate, partition predicate)]; a partition matches any rule."""
    if a.topic_partitions is not None:
        if a.topic is not None or a.partitions is not None:
            raise ToolError("--topic-partitions cannot be used with --topic or --partitions")
        out = []
        for spec in a.topic_partitions.split(","):
            m = _RULE.match(spec)
            if not m:
                raise ToolError(f"Invalid rule specification: {spec}")
            topic = topic_filter(m.group(1) or ".*", False)
            if m.group(2):
                n = int(m.group(2))
                out.append((topic, lambda p, n=n: p == n))
            else:
                lo = int(m.group(3)) if m.group(3) else 0
                hi = int(m.group(4)) if m.group(4) else 2 ** 31 - 1
                out.append((topic, lambda p, lo=lo, hi=hi: lo <= p < hi))
        return out
    parts = None
    if a.partitions:
        try:
            parts = {int(x) for x in a.partitions.split(",")}
        except ValueError:
            raise ToolError(f"--partitions expects a comma separated list of numeric partition "
                            f"ids, but received: {a.partitions}") from None
    return [(topic_filter(a.topic or ".*", False),
             lambda p: parts is None or p in parts)]


def run(a) -> int:
    if not a.bootstrap_server:
        raise UsageError("Missing required argument \"[bootstrap-server]\"")
    spec = parse_time(a.time)
    matchers = rules(a)
    with admin_from_args(a) as admin:
        md = admin.metadata(None)
        tps = []
        for t in md.topics:
            if t.error_code or (a.exclude_internal_topics and t.name in INTERNAL_TOPICS):
                continue
            for p in t.partitions:
                if any(tm(t.name) and pm(p.partition_index) for tm, pm in matchers):
                    tps.append((t.name, p.partition_index))
        if not tps:
            raise ToolError("Could not match any topic-partitions with the specified filters")
        res = admin.list_offsets({tp: spec for tp in tps})
        for tp in sorted(tps, key=lambda tp: f"{tp[0]}-{tp[1]}"):
            code, off = res[tp]
            if code != 0:
                print(f"Skip getting offsets for topic-partition {tp[0]}-{tp[1]} due to error: "
                      f"{kafka_message(code)}", file=sys.stderr)
            elif off != -1:
                print(f"{tp[0]}:{tp[1]}:{off}")
    return 0


def main(argv: list[str] | None = None, prog: str = "kafka-get-offsets.sh") -> int:
    return run_tool(build_parser(prog), argv, run, error_prefix="Error occurred: ")


if __name__ == "__main__":
    sys.exit(main())
