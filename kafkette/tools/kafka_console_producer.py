"""kafka-console-producer.sh: Kafka's ConsoleProducer in Python. Reads lines from
stdin and produces one record per line.

Line format (Kafka's LineMessageReader properties, --property k=v):
  parse.key=true        the line is KEY<key.separator>VALUE (key.separator default TAB);
                        a line without the separator is an error unless ignore.error=true
                        (then the whole line is the value, with no key)
  parse.headers=true    the line starts with h1:v1,h2:v2<headers.delimiter> (defaults
                        ',', ':' and TAB: headers.separator, headers.key.separator,
                        headers.delimiter)
  null.marker=M         a key, value or header value equal to M is sent as null

Records are partitioned as Kafka's default partitioner does: murmur2 of the key modulo
the partition count; records without a key go to one partition per batch (sticky).
Batches (RecordBatch v2, kafkette.protocol.records.build_batch) are sent when
`batch.size` bytes are pending or no more input arrives within `linger.ms` (Kafka's
console producer: --batch-size 16384, --timeout 1000), one Produce request per
leader, waiting for the acks (--request-required-acks, default -1 = all).

Not served: transactions, idempotence (enable.idempotence=true is refused: the batches
carry no producer id), serializers other than bytes, custom partitioners, and
--line-reader / --reader-config. A failed send prints Kafka's ErrorLoggingCallback
message and exits 1 (Kafka's tool logs it and goes on).
"""
from __future__ import annotations

import os
import random
import select
import sys
import time

from kafkette.errors import ErrorCode
from kafkette.protocol.messages import ProduceRequest
from kafkette.protocol.records import (
    CODEC_GZIP, CODEC_LZ4, CODEC_NONE, CODEC_SNAPPY, CODEC_ZSTD, build_batch,
)
from kafkette.tools.client import AdminClient, ToolError, kafka_message
from kafkette.tools.common import (
    ToolParser, UsageError, add_bootstrap, check_client_config, client_security, client_settings,
    load_properties, parse_key_values, run_tool,
)

CODECS = {"none": CODEC_NONE, "gzip": CODEC_GZIP, "snappy": CODEC_SNAPPY,
          "lz4": CODEC_LZ4, "zstd": CODEC_ZSTD}
PRODUCER_KEYS = {"acks", "compression.type", "linger.ms", "batch.size", "retries",
                 "retry.backoff.ms", "enable.idempotence", "key.serializer",
                 "value.serializer"}
READER_KEYS = {"parse.key", "key.separator", "ignore.error", "parse.headers",
               "headers.delimiter", "headers.separator", "headers.key.separator",
               "null.marker"}
_BYTES_SERIALIZERS = {"org.apache.kafka.common.serialization.ByteArraySerializer",
                      "org.apache.kafka.common.serialization.StringSerializer"}
#: errors after which a send is retried with fresh metadata (Kafka's RetriableException)
RETRIABLE = {ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.LEADER_NOT_AVAILABLE,
             ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.REQUEST_TIMED_OUT,
             ErrorCode.NOT_ENOUGH_REPLICAS, ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
             ErrorCode.NETWORK_EXCEPTION, ErrorCode.KAFKA_STORAGE_ERROR}


def build_parser(prog="kafka-console-producer.sh") -> ToolParser:
    p = ToolParser(prog, "This tool helps to read data from standard input and publish "
                         "it to Kafka.")
    add_bootstrap(p)
    p.add_argument("--topic", help="REQUIRED: The topic id to produce messages to.")
    p.add_argument("--property", action="append", metavar="prop",
                   help="Line reader properties: parse.key, key.separator, ignore.error, "
                        "parse.headers, headers.delimiter, headers.separator, "
                        "headers.key.separator, null.marker.")
    p.add_argument("--producer-property", action="append", metavar="producer_prop",
                   help="A producer property k=v: " + ", ".join(sorted(PRODUCER_KEYS))
                        + ", client.id, request.timeout.ms.")
    p.add_argument("--producer.config", dest="producer_config", metavar="config file",
                   help="Producer config properties file (the keys of --producer-property).")
    p.add_argument("--request-required-acks", metavar="request required acks",
                   help="The required acks of the producer requests: -1/all, 0 or 1 "
                        "(default -1).")
    p.add_argument("--request-timeout-ms", type=int, metavar="request timeout ms",
                   help="The ack timeout of the producer requests (default 1500).")
    p.add_argument("--compression-codec", nargs="?", const="gzip", metavar="compression-codec",
                   help="none, gzip (the default when given without a value), snappy, lz4 "
                        "or zstd.")
    p.add_argument("--batch-size", type=int, metavar="size",
                   help="Bytes of records sent in one batch (default 16384).")
    p.add_argument("--timeout", type=int, metavar="timeout_ms",
                   help="Milliseconds a record waits for more input before it is sent "
                        "(linger.ms, default 1000).")
    p.add_argument("--sync", action="store_true", help="Send each record on its own and "
                                                      "wait for its ack.")
    p.add_argument("--message-send-max-retries", type=int, metavar="retries",
                   help="Retries of a send that failed with a retriable error (default 3).")
    p.add_argument("--retry-backoff-ms", type=int, metavar="ms",
                   help="Wait before a retry (default 100).")
    return p


def murmur2(data: bytes) -> int:
    """Kafka's Utils.murmur2 (the default partitioner's hash), as a signed 32-bit int."""
    length = len(data)
    m = 0x5bd1e995
    h = (0x9747b28c ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    tail = length - rest
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_key(key: bytes, n: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % n


class LineReader:
    """Kafka's LineMessageReader: one line -> (key, value, headers)."""

    def __init__(self, props: dict[str, str]):
        def flag(k):
            return props.get(k, "false").strip().lower() == "true"
        self.parse_key = flag("parse.key")
        self.ignore_error = flag("ignore.error")
        self.parse_headers = flag("parse.headers")
        self.key_sep = props.get("key.separator", "\t").encode()
        self.headers_delim = props.get("headers.delimiter", "\t").encode()
        self.headers_sep = props.get("headers.separator", ",").encode()
        self.headers_key_sep = props.get("headers.key.separator", ":").encode()
        self.null_marker = props["null.marker"].encode() if "null.marker" in props else None
        if self.null_marker is not None and self.null_marker == b"":
            raise UsageError("null.marker must not be empty")
        self.line_no = 0

    def _null(self, b: bytes | None):
        return None if b is not None and b == self.null_marker else b

    def parse(self, line: bytes):
        self.line_no += 1
        headers = []
        rest = line
        if self.parse_headers:
            i = rest.find(self.headers_delim)
            if i < 0:
                if not self.ignore_error:
                    raise ToolError(f"No header delimiter found on line number "
                                    f"{self.line_no}: '{line.decode(errors='replace')}'")
            else:
                htext, rest = rest[:i], rest[i + len(self.headers_delim):]
                if htext != self.null_marker:
                    for h in htext.split(self.headers_sep) if htext else []:
                        k, sep, v = h.partition(self.headers_key_sep)
                        if not sep:
                            raise ToolError(f"No header key separator found in pair "
                                            f"'{h.decode(errors='replace')}' on line number "
                                            f"{self.line_no}")
                        if k == self.null_marker:
                            raise ToolError("Header keys should not be equal to the null "
                                            "marker")
                        headers.append((k.decode("utf-8"), self._null(v)))
        key = None
        if self.parse_key:
            i = rest.find(self.key_sep)
            if i < 0:
                if not self.ignore_error:
                    raise ToolError(f"No key separator found on line number {self.line_no}: "
                                    f"'{line.decode(errors='replace')}'")
            else:
                key, rest = self._null(rest[:i]), rest[i + len(self.key_sep):]
        return key, self._null(rest), headers


def producer_settings(a) -> dict[str, str]:
    props: dict[str, str] = {}
    if a.producer_config:
        props.update(load_properties(a.producer_config))
    props.update(parse_key_values(a.producer_property, "--producer-property"))
    check_client_config(props, PRODUCER_KEYS, "the producer config")
    if props.get("enable.idempotence", "false").strip().lower() == "true":
        raise ToolError("enable.idempotence=true is not supported by kafkette's console "
                        "producer (it sends no producer id)")
    for k in ("key.serializer", "value.serializer"):
        if k in props and props[k] not in _BYTES_SERIALIZERS:
            raise ToolError(f"{k}={props[k]} is not supported: records are the input bytes")
    if a.request_required_acks is not None:
        props["acks"] = a.request_required_acks
    if a.compression_codec is not None:
        props["compression.type"] = a.compression_codec
    if a.batch_size is not None:
        props["batch.size"] = str(a.batch_size)
    if a.timeout is not None:
        props["linger.ms"] = str(a.timeout)
    if a.message_send_max_retries is not None:
        props["retries"] = str(a.message_send_max_retries)
    if a.retry_backoff_ms is not None:
        props["retry.backoff.ms"] = str(a.retry_backoff_ms)
    if a.request_timeout_ms is not None:
        props["request.timeout.ms"] = str(a.request_timeout_ms)
    return props


class Sender:
    def __init__(self, admin: AdminClient, topic: str, acks: int, codec: int,
                 timeout_ms: int, retries: int, backoff: float):
        self.admin = admin
        self.topic = topic
        self.acks = acks
        self.codec = codec
        self.timeout_ms = timeout_ms
        self.retries = retries
        self.backoff = backoff
        self.leaders: dict[int, int] = {}
        self._sticky = None
        self.refresh()

    def refresh(self) -> None:
        deadline = time.monotonic() + self.admin.timeout
        while True:
            md = self.admin.metadata([self.topic])
            t = md.topics[0]
            if t.error_code == 0 and t.partitions:
                self.leaders = {p.partition_index: p.leader_id for p in t.partitions}
                return
            if t.error_code not in RETRIABLE or time.monotonic() >= deadline:
                raise ToolError(f"Topic {self.topic} not present in metadata: "
                                f"{kafka_message(t.error_code)}")
            time.sleep(self.backoff)

    def partition(self, key) -> int:
        n = len(self.leaders)
        if key is not None:
            return partition_for_key(key, n)
        if self._sticky is None:
            self._sticky = random.randrange(n)
        return self._sticky

    def send(self, records: list[tuple]) -> None:
        by_partition: dict[int, list] = {}
        for r in records:
            by_partition.setdefault(self.partition(r[0]), []).append(r)
        self._sticky = None   # the next batch of unkeyed records picks a new partition
        pending = by_partition
        for attempt in range(self.retries + 1):
            failed = self._send_once(pending)
            if not failed:
                return
            retriable = {p: rs for p, (code, rs) in failed.items() if code in RETRIABLE}
            if len(retriable) < len(failed) or attempt == self.retries:
                p, (code, rs) = next(iter(failed.items()))
                raise ToolError(
                    f"Error when sending message to topic {self.topic} with key: "
                    f"{'null' if rs[0][0] is None else f'{len(rs[0][0])} bytes'}, value: "
                    f"{'null' if rs[0][1] is None else f'{len(rs[0][1])} bytes'} with error: "
                    f"{kafka_message(code)}")
            time.sleep(self.backoff)
            self.refresh()
            pending = {p: rs for p, (_code, rs) in failed.items()}

    def _send_once(self, by_partition: dict[int, list]) -> dict[int, tuple[int, list]]:
        by_leader: dict[int, list[int]] = {}
        failed = {}
        for p in by_partition:
            leader = self.leaders.get(p, -1)
            if leader < 0:
                failed[p] = (ErrorCode.LEADER_NOT_AVAILABLE, by_partition[p])
            else:
                by_leader.setdefault(leader, []).append(p)
        T = ProduceRequest.TopicProduceData
        for leader, parts in by_leader.items():
            req = ProduceRequest(transactional_id=None, acks=self.acks, timeout_ms=self.timeout_ms,
                                 topic_data=[T(name=self.topic, partition_data=[
                                     T.PartitionProduceData(
                                         index=p, records=build_batch(by_partition[p],
                                                                      codec=self.codec))
                                     for p in parts])])
            if self.acks == 0:
                self._send_no_response(req, leader)
                continue
            try:
                resp = self.admin.request(req, node=leader)
            except ToolError:
                for p in parts:
                    failed[p] = (ErrorCode.NETWORK_EXCEPTION, by_partition[p])
                continue
            for t in resp.responses:
                for pr in t.partition_responses:
                    if pr.error_code != 0:
                        failed[pr.index] = (pr.error_code, by_partition[pr.index])
        return failed

    def _send_no_response(self, req, leader) -> None:
        client = self.admin._client

        async def fire():
            ch = await client.node_channel(leader)
            conn = await ch.connection()
            v = conn.version_for(ProduceRequest.API_KEY, min_version=3, max_version=12)
            conn.send_no_response(req, v)
            await conn.drain()
        self.admin._run(fire())


def read_lines(fd: int, linger: float, prompt: bool = False):
    """Yield lists of lines (without their end of line) from fd: what is there when
    no more input arrives within `linger` seconds, or at end of input. select() on the
    fd rather than a buffered readline, so that a pause in the input is seen.
    `prompt`: print Kafka's ">" prompt when more input is awaited (a terminal)."""
    buf = b""
    pending: list[bytes] = []
    if prompt:
        print(">", end="", flush=True)
    while True:
        ready = True
        if pending:
            ready = bool(select.select([fd], [], [], linger)[0])
        if not ready:
            yield pending
            pending = []
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            if buf:
                pending.append(buf.rstrip(b"\r"))
            if pending:
                yield pending
            return
        buf += chunk
        if prompt and b"\n" in chunk:
            print(">", end="", flush=True)
        lines = buf.split(b"\n")
        buf = lines.pop()
        pending.extend(line[:-1] if line.endswith(b"\r") else line for line in lines)
        if len(pending) >= 10000:
            yield pending
            pending = []


def run(a) -> int:
    if not a.topic:
        raise UsageError("Missing required argument \"[topic]\"")
    props = producer_settings(a)
    reader_props = parse_key_values(a.property, "--property")
    unknown = sorted(set(reader_props) - READER_KEYS)
    if unknown:
        raise ToolError(f"unsupported --property {', '.join(unknown)}; the line reader "
                        f"understands: {', '.join(sorted(READER_KEYS))}")
    reader = LineReader(reader_props)
    acks_text = props.get("acks", "-1").strip().lower()
    acks = {"all": -1, "-1": -1, "0": 0, "1": 1}.get(acks_text)
    if acks is None:
        raise ToolError(f"Invalid value {acks_text} for configuration acks: String must be "
                        f"one of: all, -1, 0, 1")
    codec_name = props.get("compression.type", "none").strip().lower()
    if codec_name not in CODECS:
        raise ToolError(f"Invalid value {codec_name} for configuration compression.type: "
                        f"String must be one of: {', '.join(CODECS)}")
    try:
        batch_size = int(props.get("batch.size", "16384"))
        linger = int(props.get("linger.ms", "1000")) / 1000.0
        retries = min(int(props.get("retries", "3")), 100)
        backoff = int(props.get("retry.backoff.ms", "100")) / 1000.0
        request_timeout_ms = int(props.get("request.timeout.ms", "1500"))
    except ValueError as e:
        raise ToolError(f"bad producer property: {e}") from None
    servers, client_id, timeout = client_settings(
        {k: v for k, v in props.items() if k != "request.timeout.ms"}, a.bootstrap_server)
    with AdminClient(servers, timeout=max(timeout, request_timeout_ms / 1000.0 + 5),
                     client_id=client_id or "console-producer",
                     security=client_security(props, "the producer config")) as admin:
        sender = Sender(admin, a.topic, acks, CODECS[codec_name], request_timeout_ms,
                        retries, backoff)
        fd = sys.stdin.fileno()
        # Kafka's LineMessageReader prompts only when there is a console (System.console)
        prompt = os.isatty(fd) and sys.stdout.isatty()
        for lines in read_lines(fd, 0.0 if a.sync else linger, prompt):
            records = [reader.parse(line) for line in lines]
            if a.sync:
                for r in records:
                    sender.send([r])
                continue
            batch, size = [], 0
            for r in records:
                batch.append(r)
                size += len(r[1] or b"") + len(r[0] or b"") + 16
                if size >= batch_size:
                    sender.send(batch)
                    batch, size = [], 0
            if batch:
                sender.send(batch)
    return 0


def main(argv: list[str] | None = None, prog: str = "kafka-console-producer.sh") -> int:
    return run_tool(build_parser(prog), argv, run, error_prefix="ERROR ")


if __name__ == "__main__":
    sys.exit(main())
