"""kafka-console-consumer.sh: Kafka's ConsoleConsumer in Python. Prints the records of
a topic (or of one partition) to stdout, one a line, as Kafka's DefaultMessageFormatter
does, and "Processed a total of N messages" on stderr at the end.

Where it starts: --partition with --offset (earliest, latest or a number); otherwise
every partition, at the group's committed offset (--group) or, without one, at the
earliest offset with --from-beginning and the latest without (auto.offset.reset).
It stops after --max-messages records, when no record arrives for --timeout-ms (with
Kafka's "Error processing message, terminating consumer process" and a
TimeoutException on stderr, exit code 0 as in Kafka), or on Ctrl-C / SIGTERM.

Formatter properties (--property / --formatter-property): print.timestamp,
print.partition, print.offset, print.headers, print.key, print.value (default true),
key.separator (TAB), line.separator (newline), headers.separator (','), null.literal
('null').

With --group it is a member of the classic consumer group (kafkette.tools.group_member:
JoinGroup with the range assignor, heartbeats between fetches, rejoining on a
rebalance), starts at the group's committed offsets and commits its position every
auto.commit.interval.ms, before a rebalance and at the end, then leaves the group.

Differs from Kafka: only the range assignor, no static membership, no KIP-848 groups.
kafkette has no transactions: --isolation-level is passed to the broker and control
batches are skipped, nothing more.
"""
from __future__ import annotations

import datetime
import signal
import sys
import time
from typing import NamedTuple

from kafkette.errors import ErrorCode
from kafkette.protocol.messages import FetchRequest
from kafkette.protocol.records import (
    BATCH_HEADER_SIZE, LOG_OVERHEAD, CorruptRecordError, decode_records, iter_batches,
)
from kafkette.tools.client import AdminClient, ToolError, kafka_message
from kafkette.tools.common import (
    ToolParser, UsageError, add_bootstrap, check_client_config, client_security, client_settings,
    load_properties, parse_key_values, run_tool,
)
from kafkette.tools.group_member import GroupMember

CONSUMER_KEYS = {"group.id", "auto.offset.reset", "enable.auto.commit",
                 "auto.commit.interval.ms", "isolation.level", "fetch.max.wait.ms",
                 "fetch.min.bytes", "max.partition.fetch.bytes", "fetch.max.bytes",
                 "key.deserializer", "value.deserializer", "session.timeout.ms",
                 "heartbeat.interval.ms"}
FORMATTER_KEYS = {"print.timestamp", "print.partition", "print.offset", "print.headers",
                  "print.key", "print.value", "key.separator", "line.separator",
                  "headers.separator", "null.literal"}
_BYTES_DESERIALIZERS = {"org.apache.kafka.common.serialization.ByteArrayDeserializer",
                        "org.apache.kafka.common.serialization.StringDeserializer"}
_REFRESH = {ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.LEADER_NOT_AVAILABLE,
            ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.FENCED_LEADER_EPOCH,
            ErrorCode.UNKNOWN_LEADER_EPOCH, ErrorCode.NETWORK_EXCEPTION,
            ErrorCode.REPLICA_NOT_AVAILABLE, ErrorCode.KAFKA_STORAGE_ERROR}


def build_parser(prog="kafka-console-consumer.sh") -> ToolParser:
    p = ToolParser(prog, "This tool helps to read data from Kafka topics and outputs it "
                         "to standard output.")
    add_bootstrap(p)
    p.add_argument("--topic", help="The topic to consume on.")
    p.add_argument("--partition", type=int, metavar="partition",
                   help="The partition to consume from. Consumption starts from the end "
                        "of the partition unless '--offset' is specified.")
    p.add_argument("--offset", metavar="consume offset",
                   help="The offset to consume from (a non-negative number), or 'earliest' "
                        "or 'latest' (default).")
    p.add_argument("--from-beginning", action="store_true",
                   help="Start with the earliest message when there is no committed offset.")
    p.add_argument("--max-messages", type=int, metavar="num_messages",
                   help="The maximum number of messages to consume before exiting.")
    p.add_argument("--timeout-ms", type=int, metavar="timeout_ms",
                   help="Exit if no message is available for this many milliseconds.")
    p.add_argument("--group", metavar="consumer group id",
                   help="The consumer group id of the consumer (it joins the group).")
    p.add_argument("--property", "--formatter-property", dest="property", action="append",
                   metavar="prop", help="Formatter properties: " + ", ".join(sorted(FORMATTER_KEYS)))
    p.add_argument("--consumer-property", action="append", metavar="consumer_prop",
                   help="A consumer property k=v: " + ", ".join(sorted(CONSUMER_KEYS))
                        + ", client.id, request.timeout.ms.")
    p.add_argument("--consumer.config", dest="consumer_config", metavar="config file",
                   help="Consumer config properties file (the keys of --consumer-property).")
    p.add_argument("--isolation-level", metavar="isolation_level",
                   help="read_committed or read_uncommitted (default).")
    p.add_argument("--skip-message-on-error", action="store_true",
                   help="Skip a batch that cannot be decoded (bad CRC, bad compression) "
                        "instead of stopping.")
    return p


class Formatter:
    """Kafka's DefaultMessageFormatter."""

    def __init__(self, props: dict[str, str]):
        def flag(k, default="false"):
            return props.get(k, default).strip().lower() == "true"
        self.print_timestamp = flag("print.timestamp")
        self.print_partition = flag("print.partition")
        self.print_offset = flag("print.offset")
        self.print_headers = flag("print.headers")
        self.print_key = flag("print.key")
        self.print_value = flag("print.value", "true")
        self.key_sep = props.get("key.separator", "\t").encode()
        self.line_sep = props.get("line.separator", "\n").encode()
        self.headers_sep = props.get("headers.separator", ",").encode()
        self.null = props.get("null.literal", "null").encode()

    def format(self, partition: int, rec, timestamp_type: str) -> bytes:
        cols = []
        if self.print_timestamp:
            cols.append(f"{timestamp_type}:{rec.timestamp}".encode() if rec.timestamp >= 0
                        else b"NO_TIMESTAMP")
        if self.print_partition:
            cols.append(b"Partition:%d" % partition)
        if self.print_offset:
            cols.append(b"Offset:%d" % rec.offset)
        if self.print_headers:
            cols.append(self.headers_sep.join(
                k.encode() + b":" + (self.null if v is None else v) for k, v in rec.headers)
                if rec.headers else b"NO_HEADERS")
        if self.print_key:
            cols.append(self.null if rec.key is None else rec.key)
        if self.print_value:
            cols.append(self.null if rec.value is None else rec.value)
        return self.key_sep.join(cols) + self.line_sep


def whole_batches(data) -> memoryview:
    """The prefix of fetched record data made of whole batches: a fetch response may
    end inside a batch (max bytes), which is normal there and dropped, as Kafka's
    consumer does."""
    mv = memoryview(data) if data else memoryview(b"")
    pos, n = 0, len(mv)
    while n - pos >= BATCH_HEADER_SIZE:
        size = int.from_bytes(mv[pos + 8:pos + 12], "big", signed=True) + LOG_OVERHEAD
        if size < BATCH_HEADER_SIZE or pos + size > n:
            break
        pos += size
    return mv[:pos]


def consumer_settings(a) -> dict[str, str]:
    props: dict[str, str] = {}
    if a.consumer_config:
        props.update(load_properties(a.consumer_config))
    props.update(parse_key_values(a.consumer_property, "--consumer-property"))
    check_client_config(props, CONSUMER_KEYS, "the consumer config")
    for k in ("key.deserializer", "value.deserializer"):
        if k in props and props[k] not in _BYTES_DESERIALIZERS:
            raise ToolError(f"{k}={props[k]} is not supported: records are printed as bytes")
    group_ids = {g for g in (a.group, props.get("group.id")) if g}
    if len(group_ids) > 1:
        raise UsageError("The group ids provided in different places (directly using "
                         "'--group', via '--consumer-property', or via '--consumer.config') "
                         "do not match. Detected group ids: "
                         + ", ".join(f"'{g}'" for g in sorted(group_ids)))
    if group_ids:
        props["group.id"] = group_ids.pop()
    if a.isolation_level:
        props["isolation.level"] = a.isolation_level
    if a.from_beginning:
        props.setdefault("auto.offset.reset", "earliest")
    return props


def check_args(a) -> None:
    if not a.topic:
        raise UsageError("Exactly one of include/topic is required.")
    if a.offset is not None and a.partition is None:
        raise UsageError("The partition is required when offset is specified.")
    if a.from_beginning and a.offset is not None:
        raise UsageError("Options from-beginning and offset cannot be specified together.")
    if a.partition is not None and a.group:
        raise UsageError("Options group and partition cannot be specified together.")
    if a.offset is not None and a.offset not in ("earliest", "latest"):
        try:
            if int(a.offset) < 0:
                raise ValueError
        except ValueError:
            raise UsageError(f"The provided offset value '{a.offset}' is incorrect. Valid "
                             f"values are 'earliest', 'latest', or a non-negative long.") from None


class Stop(Exception):
    pass


def run(a) -> int:
    check_args(a)
    props = consumer_settings(a)
    fmt_props = parse_key_values(a.property, "--property")
    unknown = sorted(set(fmt_props) - FORMATTER_KEYS)
    if unknown:
        raise ToolError(f"unsupported --property {', '.join(unknown)}; the formatter "
                        f"understands: {', '.join(sorted(FORMATTER_KEYS))}")
    fmt = Formatter(fmt_props)
    iso_text = props.get("isolation.level", "read_uncommitted").strip().lower()
    if iso_text not in ("read_uncommitted", "read_committed"):
        raise ToolError(f"Invalid value {iso_text} for configuration isolation.level: "
                        f"String must be one of: read_committed, read_uncommitted")
    isolation = 1 if iso_text == "read_committed" else 0
    reset = props.get("auto.offset.reset", "latest").strip().lower()
    if reset not in ("earliest", "latest", "none"):
        raise ToolError(f"Invalid value {reset} for configuration auto.offset.reset: "
                        f"String must be one of: latest, earliest, none")
    group = props.get("group.id")
    commit = group is not None and props.get("enable.auto.commit", "true").lower() == "true"
    commit_interval = int(props.get("auto.commit.interval.ms", "5000")) / 1000.0
    max_wait = int(props.get("fetch.max.wait.ms", "500"))
    part_bytes = int(props.get("max.partition.fetch.bytes", str(1 << 20)))
    fetch = FetchSettings(max_wait, int(props.get("fetch.min.bytes", "1")),
                          int(props.get("fetch.max.bytes", str(50 * 1024 * 1024))), part_bytes,
                          a.skip_message_on_error)
    servers, client_id, timeout = client_settings(props, a.bootstrap_server)

    count = 0
    out = sys.stdout.buffer

    def on_term(signum, frame):
        raise Stop()
    signal.signal(signal.SIGTERM, on_term)
    admin = AdminClient(servers, timeout=timeout, client_id=client_id or "console-consumer",
                        security=client_security(props, "the consumer config"))
    positions: dict[int, int] = {}
    committed_at: dict[int, int] = {}
    member: GroupMember | None = None
    timed_out = False
    try:
        leaders = wait_for_topic(admin, a.topic)
        partitions = sorted(leaders)
        if a.partition is not None:
            if a.partition not in leaders:
                raise ToolError(f"Partition {a.partition} of topic {a.topic} does not exist")
            partitions = [a.partition]
        if group is not None:
            member = GroupMember(admin, group, [a.topic],
                                 session_timeout_ms=int(props.get("session.timeout.ms", 45000)),
                                 heartbeat_interval_ms=int(props.get("heartbeat.interval.ms",
                                                                     3000)))
            partitions = sorted(p for t, p in member.join() if t == a.topic)
        positions = start_positions(admin, a, group, reset, partitions, leaders, isolation)
        # commit every start position too (Kafka's consumer commits its position for each
        # assigned partition, even one that got no records)
        committed_at: dict[int, int] = {}
        last_commit = time.monotonic()
        last_record = time.monotonic()
        while True:
            if a.max_messages is not None and count >= a.max_messages:
                break
            got, errors, ends = fetch_once(admin, a.topic, positions, leaders, isolation, fetch)
            for p, code in errors.items():
                if code == ErrorCode.OFFSET_OUT_OF_RANGE and reset != "none":
                    positions[p] = list_one(admin, a.topic, p, -2 if reset == "earliest" else -1,
                                            isolation)
                elif code in _REFRESH:
                    leaders = wait_for_topic(admin, a.topic)
                else:
                    raise ToolError(f"fetching {a.topic}-{p}: {kafka_message(code)}")
            cut = False
            for p, ts_type, rec in got:
                if a.max_messages is not None and count >= a.max_messages:
                    cut = True
                    break
                out.write(fmt.format(p, rec, ts_type))
                count += 1
                positions[p] = rec.offset + 1
            if not cut:
                for p, end in ends.items():
                    positions[p] = max(positions[p], end)
            if got:
                out.flush()
                last_record = time.monotonic()
            elif a.timeout_ms is not None and \
                    time.monotonic() - last_record >= a.timeout_ms / 1000.0:
                timed_out = True
                break
            if commit and time.monotonic() - last_commit >= commit_interval:
                committed_at = maybe_commit(member, a.topic, positions, committed_at)
                last_commit = time.monotonic()
            if member is not None and not member.heartbeat_if_due():
                # a rebalance: commit what we consumed (Kafka's consumer does so before it
                # gives its partitions up), join again, go on from the committed offsets
                if commit:
                    try:
                        maybe_commit(member, a.topic, positions, committed_at)
                    except ToolError:
                        pass   # the generation is gone: the next owner re-reads a little
                partitions = sorted(p for t, p in member.join() if t == a.topic)
                leaders = wait_for_topic(admin, a.topic)
                positions = start_positions(admin, a, group, reset, partitions, leaders,
                                            isolation)
                committed_at = {}
            if not positions:
                # no partition for us (more members than partitions): wait as a fetch would
                time.sleep(max_wait / 1000.0)
    except (KeyboardInterrupt, Stop):
        pass
    finally:
        try:
            out.flush()
        except BrokenPipeError:
            pass
        if timed_out:
            stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
            print(f"[{stamp}] ERROR Error processing message, terminating consumer process:  "
                  f"(org.apache.kafka.tools.consumer.ConsoleConsumer)\n"
                  f"org.apache.kafka.common.errors.TimeoutException", file=sys.stderr)
        try:
            if commit and positions and member is not None:
                maybe_commit(member, a.topic, positions, committed_at)
        except ToolError as e:
            print(f"ERROR could not commit the offsets of group {group}: {e}", file=sys.stderr)
        finally:
            if member is not None:
                member.leave()
            print(f"Processed a total of {count} messages", file=sys.stderr)
            admin.close()
    return 0


def wait_for_topic(admin: AdminClient, topic: str) -> dict[int, int]:
    """partition -> leader, waiting (up to the admin timeout) for leaders to be known."""
    deadline = time.monotonic() + admin.timeout
    while True:
        md = admin.metadata([topic])
        t = md.topics[0]
        if t.error_code == 0 and t.partitions and all(p.leader_id >= 0 for p in t.partitions):
            return {p.partition_index: p.leader_id for p in t.partitions}
        if time.monotonic() >= deadline:
            if t.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                raise ToolError(f"Topic {topic} not present in metadata")
            raise ToolError(f"no leader for the partitions of {topic}: "
                            f"{kafka_message(t.error_code) if t.error_code else 'none elected'}")
        time.sleep(0.1)


def list_one(admin, topic, p, spec, isolation) -> int:
    code, off = admin.list_offsets({(topic, p): spec}, isolation)[(topic, p)]
    if code != 0:
        raise ToolError(f"listing offsets of {topic}-{p}: {kafka_message(code)}")
    return off


def start_positions(admin, a, group, reset, partitions, leaders, isolation) -> dict[int, int]:
    if a.partition is not None:
        off = a.offset or ("earliest" if a.from_beginning else "latest")
        if off in ("earliest", "latest"):
            return {a.partition: list_one(admin, a.topic, a.partition,
                                          -2 if off == "earliest" else -1, isolation)}
        return {a.partition: int(off)}
    committed = admin.committed_offsets(group) if group else {}
    out = {}
    missing = []
    for p in partitions:
        if (a.topic, p) in committed:
            out[p] = committed[(a.topic, p)]
        else:
            missing.append(p)
    if missing:
        if reset == "none":
            raise ToolError("Undefined offset with no reset policy for partitions: "
                            + ", ".join(f"{a.topic}-{p}" for p in missing))
        spec = -2 if reset == "earliest" else -1
        res = admin.list_offsets({(a.topic, p): spec for p in missing}, isolation,
                                 leaders={(a.topic, p): leaders[p] for p in missing})
        for p in missing:
            code, off = res[(a.topic, p)]
            if code != 0:
                raise ToolError(f"listing offsets of {a.topic}-{p}: {kafka_message(code)}")
            out[p] = off
    return out


class FetchSettings(NamedTuple):
    max_wait_ms: int
    min_bytes: int
    max_bytes: int
    partition_max_bytes: int
    skip_bad_records: bool


def fetch_once(admin, topic, positions, leaders, isolation, fetch: FetchSettings):
    """One Fetch per leader, asked one after the other: [(partition, timestamp type,
    record)] in offset order per partition, {partition: error code}, and {partition:
    the offset after the last batch read}."""
    by_leader: dict[int, list[int]] = {}
    for p in positions:
        by_leader.setdefault(leaders[p], []).append(p)
    got, errors, ends = [], {}, {}
    T = FetchRequest.FetchTopic
    # the leaders are asked one after the other: share the wait between them
    wait = fetch.max_wait_ms // max(1, len(by_leader))
    for leader, parts in by_leader.items():
        req = FetchRequest(replica_id=-1, max_wait_ms=wait, min_bytes=fetch.min_bytes,
                           max_bytes=fetch.max_bytes, isolation_level=isolation,
                           session_id=0, session_epoch=-1,
                           topics=[T(topic=topic, partitions=[T.FetchPartition(
                               partition=p, current_leader_epoch=-1, fetch_offset=positions[p],
                               last_fetched_epoch=-1, log_start_offset=-1,
                               partition_max_bytes=fetch.partition_max_bytes)
                               for p in parts])],
                           forgotten_topics_data=[], rack_id="")
        try:
            resp = admin.request(req, node=leader)
        except ToolError:
            for p in parts:
                errors[p] = ErrorCode.NETWORK_EXCEPTION
            continue
        for t in resp.responses:
            for pd in t.partitions:
                if pd.error_code != 0:
                    errors[pd.partition_index] = pd.error_code
                    continue
                data = whole_batches(pd.records)
                start = positions[pd.partition_index]
                try:
                    for pos, h in iter_batches(data, validate_crc=False):
                        ends[pd.partition_index] = h.next_offset
                        if h.is_control:
                            continue
                        ts_type = "LogAppendTime" if h.is_log_append_time else "CreateTime"
                        try:
                            recs = decode_records(data[pos:pos + h.size])
                        except CorruptRecordError as e:
                            if not fetch.skip_bad_records:
                                raise
                            print(f"ERROR Error processing message, skipping this message: "
                                  f"{topic}-{pd.partition_index} offsets {h.base_offset}-"
                                  f"{h.last_offset}: {e}", file=sys.stderr)
                            continue
                        for rec in recs:
                            # a batch may begin before the fetch offset (compressed batches)
                            if rec.offset >= start:
                                got.append((pd.partition_index, ts_type, rec))
                except CorruptRecordError as e:
                    raise ToolError(f"Error processing message, terminating consumer process: "
                                    f"{topic}-{pd.partition_index} at offset {start}: {e} "
                                    f"(--skip-message-on-error skips such batches)") from None
    return got, errors, ends


def maybe_commit(member, topic, positions, committed_at) -> dict[int, int]:
    changed = {p: o for p, o in positions.items() if committed_at.get(p) != o}
    if changed:
        member.commit({(topic, p): o for p, o in changed.items()})
    return dict(positions)


def main(argv: list[str] | None = None, prog: str = "kafka-console-consumer.sh") -> int:
    return run_tool(build_parser(prog), argv, run, error_prefix="ERROR ")


if __name__ == "__main__":
    sys.exit(main())
