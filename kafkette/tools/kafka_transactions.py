"""kafka-transactions.sh: Kafka's TransactionsCommand (KIP-664, Kafka 4.x), to see
transactions and to find and abort hanging ones.

    kafka-transactions.sh [--command-config FILE] --bootstrap-server HOST:PORT COMMAND ...

    list                 [--duration-filter MS] [--transactional-id-pattern REGEX]
    describe             --transactional-id ID
    describe-producers   --topic T --partition N [--broker-id B]
    abort                --topic T --partition N (--start-offset O |
                         --producer-id P --producer-epoch E --coordinator-epoch C)
    find-hanging         (--broker-id B | --topic T [--partition N])
                         [--max-transaction-timeout MINUTES]

It talks the Kafka protocol only (kafkette.tools.client over kafkette.client), so it
works against any Kafka broker: ListTransactions on every broker, FindCoordinator
(transaction) + DescribeTransactions, DescribeProducers on the partition leader (or the
given broker), and for `abort` a WriteTxnMarkers ABORT sent to the partition leader, as
Kafka's Admin.abortTransaction does.

Output as Kafka's (ToolsUtils.prettyPrintTable): a header row and one row per item,
every cell padded to its column's width and followed by a tab (also the last one).
Errors as Kafka's printErrorAndExit: on stderr, `<what failed>: <cause>. Enable debug
logging for additional detail.`, exit code 1. `abort` prints nothing on success.

Kafka parses this tool's options with argparse4j (not joptsimple as the older tools):
the global options come before the command, the command's own options after it; a
usage error prints the usage and `kafka-transactions.sh: error: ...` on stderr, exit
code 1. An option we do not know is refused, never ignored.

Where this differs from Kafka's tool:
- `--transactional-id-pattern` (Kafka 4.1, KIP-1152) is sent to the broker by Kafka
  (ListTransactions v2); kafkette's client speaks ListTransactions v0-v1, so the
  pattern is applied here, to the listing, with Python's `re.fullmatch` (Kafka's broker
  matches the whole id with RE2J; the syntax of the two differs at the edges).
- A topic or partition that does not exist fails at once with Kafka's
  UnknownTopicOrPartition message; Kafka's admin client retries it until
  default.api.timeout.ms and then reports a timeout.
- argparse4j accepts unambiguous prefixes of long options (`--transactional`); we do
  not, as kafkette's other tools do not.
"""
from __future__ import annotations

import argparse
import re
import sys
import time

from kafkette.errors import ErrorCode
from kafkette.logging import get_logger
from kafkette.tools.client import AdminClient, ToolError, kafka_message
from kafkette.tools.common import (
    UsageError, check_client_config, client_security, client_settings, load_properties,
)

log = get_logger("kafkette.tools.transactions")

PROG = "kafka-transactions.sh"

LIST_HEADERS = ["TransactionalId", "Coordinator", "ProducerId", "TransactionState"]
DESCRIBE_HEADERS = ["CoordinatorId", "TransactionalId", "ProducerId", "ProducerEpoch",
                    "TransactionState", "TransactionTimeoutMs", "CurrentTransactionStartTimeMs",
                    "TransactionDurationMs", "TopicPartitions"]
PRODUCERS_HEADERS = ["ProducerId", "ProducerEpoch", "LatestCoordinatorEpoch", "LastSequence",
                     "LastTimestamp", "CurrentTransactionStartOffset"]
HANGING_HEADERS = ["Topic", "Partition", "ProducerId", "ProducerEpoch", "CoordinatorEpoch",
                   "StartOffset", "LastTimestamp", "Duration(min)"]

#: find-hanging asks DescribeProducers / Metadata for this many partitions / topics at a
#: time, as Kafka's FindHangingTransactionsCommand does, not to send one huge request.
MAX_BATCH_SIZE = 500

#: Pause between retries of a retriable error (Kafka's retry.backoff.ms default).
RETRY_BACKOFF_S = 0.1

_RETRIABLE_COORDINATOR = {ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
                          ErrorCode.COORDINATOR_NOT_AVAILABLE, ErrorCode.NOT_COORDINATOR}
# Kafka's AbortTransactionHandler finds the leader again after these.
_RETRIABLE_LEADER = {ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.REPLICA_NOT_AVAILABLE,
                     ErrorCode.BROKER_NOT_AVAILABLE, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION}


# ============================================================================ output

def pretty_table(headers: list[str], rows: list[list[str]]) -> str:
    """Kafka's ToolsUtils.prettyPrintTable: each cell left-aligned to its column's width
    and followed by a tab, the last cell too; one line per row, header first."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    return "".join("".join(cell.ljust(w) + "\t" for cell, w in zip(row, widths)) + "\n"
                   for row in [headers, *rows])


class CommandFailed(Exception):
    """Kafka's printErrorAndExit: the message on stderr, exit code 1."""


def failed(message: str, cause: object | None = None) -> CommandFailed:
    if cause is None:
        return CommandFailed(message)
    # Kafka appends "." to the exception's message; ours may already end with one (the
    # Errors texts do), which Kafka would print doubled
    text = str(cause).removesuffix(".")
    return CommandFailed(f"{message}: {text}. Enable debug logging for additional detail.")


def tp_str(tp: tuple[str, int]) -> str:
    """Kafka's TopicPartition.toString."""
    return f"{tp[0]}-{tp[1]}"


def abort_spec_str(tp, producer_id, producer_epoch, coordinator_epoch) -> str:
    """Kafka's AbortTransactionSpec.toString, which its error messages embed."""
    return (f"AbortTransactionSpec(topicPartition={tp_str(tp)}, producerId={producer_id}, "
            f"producerEpoch={producer_epoch}, coordinatorEpoch={coordinator_epoch})")


# ============================================================================ parsing

class _UsageError(Exception):
    def __init__(self, parser: argparse.ArgumentParser, message: str):
        super().__init__(message)
        self.parser = parser


def _java_number(type_name: str, bits: int):
    """argparse4j's conversion to Integer / Long / Short: a decimal in the type's range,
    refused with argparse4j's "could not convert" otherwise."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1

    def convert(text: str) -> int:
        try:
            v = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"could not convert '{text}' to {type_name} "
                f"(For input string: \"{text}\")") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(
                f"could not convert '{text}' to {type_name} "
                f"(Value out of range. Value:\"{text}\" Radix:10)")
        return v
    convert.__name__ = type_name
    return convert


INTEGER, LONG, SHORT = _java_number("Integer", 32), _java_number("Long", 64), _java_number("Short", 16)

_REQUIRED = re.compile(r"the following arguments are required: (.*)")


class _Parser(argparse.ArgumentParser):
    """argparse with argparse4j's manners where they differ: no prefix abbreviations,
    errors raised (exit code 1, not argparse's 2), argparse4j's wording of a missing
    argument."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        m = _REQUIRED.fullmatch(message)
        if m:
            first = m.group(1).split(", ")[0]
            message = "too few arguments" if first == "COMMAND" else f"argument {first} is required"
        raise _UsageError(self, message)


class _Version(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from kafkette.client import _software_version_string
        print(f"{_software_version_string()} (kafkette)")
        parser.exit(0)


def build_parser(prog: str = PROG) -> _Parser:
    p = _Parser(prog=prog, description=(
        "This tool is used to analyze the transactional state of producers in the cluster. "
        "It can be used to detect and recover from hanging transactions."))
    p.add_argument("-v", "--version", action=_Version,
                   help="show the version of this Kafka distribution and exit")
    p.add_argument("--command-config", metavar="FILE",
                   help="property file containing configs to be passed to admin client "
                        "(client.id, request.timeout.ms, default.api.timeout.ms, "
                        "security.protocol, sasl.mechanism, sasl.jaas.config, "
                        "ssl.truststore.* (PEM), ssl.keystore.*; anything else is refused)")
    p.add_argument("--bootstrap-server", metavar="host:port", required=True,
                   help="hostname and port for the broker to connect to, in the form "
                        "`host:port` (multiple comma-separated entries can be given)")
    sub = p.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("list", help="list transactions")
    s.add_argument("--duration-filter", type=LONG, metavar="DURATION_FILTER",
                   help="Duration (in millis) to filter by: if < 0, all transactions will be "
                        "returned; otherwise, only transactions running longer than this "
                        "duration will be returned")
    s.add_argument("--transactional-id-pattern", metavar="TRANSACTIONAL_ID_PATTERN",
                   help="Transactional id regular expression pattern to filter by: only "
                        "ids it matches as a whole are listed (KIP-1152; applied by this "
                        "tool to the listing, not sent to the broker)")

    s = sub.add_parser("describe", help="describe the state of an active transactional-id",
                       description="Describe the state of an active transactional-id.")
    s.add_argument("--transactional-id", required=True, metavar="TRANSACTIONAL_ID",
                   help="transactional id")

    s = sub.add_parser("describe-producers",
                       help="describe the states of active producers for a topic partition")
    s.add_argument("--broker-id", type=INTEGER, metavar="BROKER_ID",
                   help="optional broker id to describe the producer state on a specific replica")
    s.add_argument("--topic", required=True, metavar="TOPIC", help="topic name")
    s.add_argument("--partition", type=INTEGER, required=True, metavar="PARTITION",
                   help="partition number")

    s = sub.add_parser("abort", help="abort a hanging transaction (requires administrative "
                                     "privileges)")
    s.add_argument("--topic", required=True, metavar="TOPIC", help="topic name")
    s.add_argument("--partition", type=INTEGER, required=True, metavar="PARTITION",
                   help="partition number")
    g = s.add_argument_group("Brokers on versions 3.0 and above",
                             "For newer brokers, only the start offset of the transaction to "
                             "be aborted is required")
    g.add_argument("--start-offset", type=LONG, metavar="START_OFFSET",
                   help="start offset of the transaction to abort")
    g = s.add_argument_group("Brokers on versions older than 3.0",
                             "For older brokers, you must provide all of these arguments")
    g.add_argument("--producer-id", type=LONG, metavar="PRODUCER_ID", help="producer id")
    g.add_argument("--producer-epoch", type=SHORT, metavar="PRODUCER_EPOCH",
                   help="producer epoch")
    g.add_argument("--coordinator-epoch", type=INTEGER, metavar="COORDINATOR_EPOCH",
                   help="coordinator epoch")

    s = sub.add_parser("find-hanging", help="find hanging transactions")
    s.add_argument("--broker-id", type=INTEGER, metavar="BROKER_ID",
                   help="broker id to search for hanging transactions")
    s.add_argument("--max-transaction-timeout", type=INTEGER, default=15,
                   metavar="MAX_TRANSACTION_TIMEOUT",
                   help="maximum transaction timeout in minutes to limit the scope of the "
                        "search (15 minutes by default)")
    s.add_argument("--topic", metavar="TOPIC",
                   help="topic name to limit search to (required if --partition is specified)")
    s.add_argument("--partition", type=INTEGER, metavar="PARTITION", help="partition number")
    return p


def parse_args(parser: _Parser, argv: list[str]):
    args, extra = parser.parse_known_args(argv)
    if extra:
        # argparse4j's wording; the options of a command go after the command's name
        raise _UsageError(parser, "unrecognized arguments: '" + " ".join(extra) + "'")
    return args


# ============================================================================ context

class Context:
    """What a command runs with: the admin client (made on first use, so that a broker
    that cannot be reached fails inside the command, with its message, as Kafka's
    lazily connecting Admin does), the wall clock, and a retry deadline."""

    def __init__(self, args=None, admin_factory=None, now_ms=None, timeout_s: float | None = None):
        self._args = args
        self._admin = None
        self._factory = admin_factory
        self._now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)
        self._timeout_s = timeout_s

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            if self._factory is not None:
                self._admin = self._factory()
            else:
                a = self._args
                props = load_properties(a.command_config) if a.command_config else {}
                check_client_config(props, set(), a.command_config or "")
                servers, client_id, timeout = client_settings(props, a.bootstrap_server)
                self._timeout_s = timeout if self._timeout_s is None else self._timeout_s
                self._admin = AdminClient(servers, timeout=timeout, client_id=client_id,
                                          security=client_security(props, a.command_config or ""))
        return self._admin

    def now_ms(self) -> int:
        return self._now_ms()

    def deadline(self) -> float:
        return time.monotonic() + (self._timeout_s if self._timeout_s is not None else 30.0)

    def close(self) -> None:
        if self._admin is not None:
            try:
                self._admin.close()
            except ToolError:
                pass


def _retry_or_give_up(deadline: float, what: str, code: int, message: str | None = None) -> None:
    """Back off before retrying a retriable error, or raise once the deadline passed
    (Kafka's admin client retries until default.api.timeout.ms)."""
    if time.monotonic() + RETRY_BACKOFF_S > deadline:
        raise ToolError(f"Timed out waiting for {what}; last error: "
                        f"{kafka_message(code, message)}")
    log.debug("retrying", what=what, error=kafka_message(code, message))
    time.sleep(RETRY_BACKOFF_S)


# ============================================================================ admin calls
# Each raises ToolError(cause) with the message Kafka's admin handler would give its
# exception; the command puts its own "Failed to ..." in front.

def list_transactions(ctx: Context, duration_filter_ms: int = -1,
                      producer_ids: list[int] = ()) -> dict[int, list]:
    """broker id -> its TransactionStates (ListTransactions is answered per broker, for
    the ids it coordinates: Kafka's AllBrokersStrategy)."""
    admin = ctx.admin
    deadline = ctx.deadline()
    out = {}
    for broker_id in admin.broker_ids():
        while True:
            resp = admin.list_transactions_on(broker_id, [], list(producer_ids), duration_filter_ms)
            code = resp.error_code
            if code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS:
                _retry_or_give_up(deadline, f"broker {broker_id} to load its transactions", code)
                continue
            if code == ErrorCode.COORDINATOR_NOT_AVAILABLE:
                raise ToolError(f"ListTransactions request sent to broker {broker_id} failed "
                                f"because the coordinator is shutting down")
            if code != ErrorCode.NONE:
                raise ToolError(f"ListTransactions request sent to broker {broker_id} failed "
                                f"with an unexpected exception")
            out[broker_id] = list(resp.transaction_states)
            break
    return out


class TxnDescription:
    __slots__ = ("coordinator_id", "transactional_id", "state", "producer_id", "producer_epoch",
                 "timeout_ms", "start_time_ms", "partitions")

    def __init__(self, coordinator_id, s):
        self.coordinator_id = coordinator_id
        self.transactional_id = s.transactional_id
        self.state = s.transaction_state
        self.producer_id = s.producer_id
        self.producer_epoch = s.producer_epoch
        self.timeout_ms = s.transaction_timeout_ms
        self.start_time_ms = s.transaction_start_time_ms
        self.partitions = sorted((t.topic, p) for t in s.topics for p in t.partitions)


class TransactionalIdNotFound(ToolError):
    pass


def describe_transaction(ctx: Context, txn_id: str) -> TxnDescription:
    """FindCoordinator(transaction) then DescribeTransactions there, retried while the
    coordinator loads or moves (Kafka's CoordinatorStrategy + DescribeTransactionsHandler)."""
    admin = ctx.admin
    deadline = ctx.deadline()
    what = f"the coordinator of transactional id `{txn_id}`"
    while True:
        code, node_id, host, port, msg = admin.find_coordinator(txn_id, 1)
        if code in _RETRIABLE_COORDINATOR:
            _retry_or_give_up(deadline, what, code, msg)
            continue
        if code == ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
            raise ToolError(f"DescribeTransactions request for transactionalId `{txn_id}` "
                            f"failed due to authorization failure")
        if code != ErrorCode.NONE:
            raise ToolError(kafka_message(code, msg))
        resp = admin.describe_transactions_at((host, port), [txn_id])
        states = [s for s in resp.transaction_states if s.transactional_id == txn_id]
        if not states:
            raise ToolError(f"DescribeTransactions response had no entry for `{txn_id}`")
        s = states[0]
        code = s.error_code
        if code == ErrorCode.NONE:
            return TxnDescription(node_id, s)
        if code in _RETRIABLE_COORDINATOR:
            _retry_or_give_up(deadline, what, code)
            continue
        if code == ErrorCode.TRANSACTIONAL_ID_NOT_FOUND:
            raise TransactionalIdNotFound(
                f"DescribeTransactions request for transactionalId `{txn_id}` failed because "
                f"the ID could not be found")
        if code == ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
            raise ToolError(f"DescribeTransactions request for transactionalId `{txn_id}` "
                            f"failed due to authorization failure")
        raise ToolError(f"DescribeTransactions request for transactionalId `{txn_id}` failed "
                        f"due to unexpected error")


def partition_leaders(ctx: Context, tps) -> dict[tuple[str, int], int]:
    """(topic, partition) -> leader id (-1 while there is none)."""
    md = ctx.admin.metadata(sorted({t for t, _ in tps}))
    found = {}
    for t in md.topics:
        if t.error_code == ErrorCode.INVALID_TOPIC_EXCEPTION:
            raise ToolError(kafka_message(t.error_code))
        for p in t.partitions:
            found[(t.name, p.partition_index)] = p.leader_id
    for tp in tps:
        if tp not in found:
            raise ToolError(kafka_message(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
    return found


def describe_producers(ctx: Context, tps: list[tuple[str, int]],
                       broker_id: int | None = None) -> dict[tuple[str, int], list]:
    """tp -> its active producers (DescribeProducers' ProducerState), asked of each
    partition's leader, or of `broker_id` (Kafka's StaticBrokerStrategy: then
    NOT_LEADER_OR_FOLLOWER is final). The first failed partition raises, as
    `DescribeProducersResult.all()` does."""
    admin = ctx.admin
    deadline = ctx.deadline()
    pending = list(dict.fromkeys(tps))
    out: dict[tuple[str, int], list] = {}
    while pending:
        if broker_id is not None:
            by_node = {broker_id: pending}
        else:
            leaders = partition_leaders(ctx, pending)
            by_node = {}
            leaderless = [tp for tp in pending if leaders[tp] < 0]
            for tp in pending:
                if leaders[tp] >= 0:
                    by_node.setdefault(leaders[tp], []).append(tp)
            if leaderless and not by_node:
                _retry_or_give_up(deadline, f"a leader of {tp_str(leaderless[0])}",
                                  ErrorCode.LEADER_NOT_AVAILABLE)
                continue
        retry, retry_code = [], ErrorCode.NONE
        for node, node_tps in by_node.items():
            resp = admin.describe_producers_on(node, node_tps)
            answered = set()
            for t in resp.topics:
                for p in t.partitions:
                    tp = (t.name, p.partition_index)
                    answered.add(tp)
                    code = p.error_code
                    if code == ErrorCode.NONE:
                        out[tp] = list(p.active_producers)
                    elif code == ErrorCode.NOT_LEADER_OR_FOLLOWER and broker_id is not None:
                        raise ToolError(f"Failed to describe active producers for partition "
                                        f"{tp_str(tp)} on brokerId {broker_id}")
                    elif code in (ErrorCode.NOT_LEADER_OR_FOLLOWER,
                                  ErrorCode.UNKNOWN_TOPIC_OR_PARTITION):
                        retry.append(tp)
                        retry_code = code
                    elif code == ErrorCode.INVALID_TOPIC_EXCEPTION:
                        raise ToolError(f"Failed to fetch metadata for partition {tp_str(tp)} due "
                                        f"to invalid topic error: {kafka_message(code, p.error_message)}")
                    elif code == ErrorCode.TOPIC_AUTHORIZATION_FAILED:
                        raise ToolError(f"Failed to describe active producers for partition "
                                        f"{tp_str(tp)} due to authorization failure on topic "
                                        f"`{tp[0]}`")
                    else:
                        raise ToolError(f"Failed to describe active producers for partition "
                                        f"{tp_str(tp)} due to unexpected error")
            missing = [tp for tp in node_tps if tp not in answered]
            if missing:
                raise ToolError(f"DescribeProducers response had no entry for "
                                f"{tp_str(missing[0])}")
        if broker_id is None:
            retry += [tp for tp in pending if leaders[tp] < 0]
        pending = retry
        if pending:
            _retry_or_give_up(deadline, f"the producer state of {tp_str(pending[0])}",
                              retry_code or ErrorCode.LEADER_NOT_AVAILABLE)
    return out


def abort_transaction(ctx: Context, tp, producer_id: int, producer_epoch: int,
                      coordinator_epoch: int) -> None:
    """WriteTxnMarkers(ABORT) for one partition, to its leader, as Kafka's
    Admin.abortTransaction (AbortTransactionHandler) sends it. The broker checks the
    producer epoch and the coordinator epoch against its producer state, so a stale
    abort cannot undo a newer transaction."""
    admin = ctx.admin
    deadline = ctx.deadline()
    spec = abort_spec_str(tp, producer_id, producer_epoch, coordinator_epoch)
    while True:
        leader = partition_leaders(ctx, [tp])[tp]
        if leader < 0:
            _retry_or_give_up(deadline, f"a leader of {tp_str(tp)}", ErrorCode.LEADER_NOT_AVAILABLE)
            continue
        resp = admin.write_txn_marker_on(leader, tp, producer_id, producer_epoch,
                                         coordinator_epoch, commit=False)
        markers = resp.markers
        if len(markers) != 1 or markers[0].producer_id != producer_id:
            raise ToolError(f"WriteTxnMarkers response included unexpected marker entries "
                            f"(expected to find exactly one entry with producerId {producer_id})")
        topics = markers[0].topics
        if len(topics) != 1 or topics[0].name != tp[0]:
            raise ToolError(f"WriteTxnMarkers response included unexpected topic entries "
                            f"(expected to find exactly one entry with topic partition {tp_str(tp)})")
        parts = topics[0].partitions
        if len(parts) != 1 or parts[0].partition_index != tp[1]:
            raise ToolError(f"WriteTxnMarkers response included unexpected partition entries "
                            f"for topic {tp[0]} (expected to find exactly one entry with "
                            f"partition {tp[1]})")
        code = parts[0].error_code
        if code == ErrorCode.NONE:
            log.info("transaction_aborted", partition=tp_str(tp), producer_id=producer_id,
                     producer_epoch=producer_epoch, coordinator_epoch=coordinator_epoch)
            return
        if code in _RETRIABLE_LEADER:
            _retry_or_give_up(deadline, f"the leader of {tp_str(tp)} to take the marker", code)
            continue
        if code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED:
            raise ToolError(f"WriteTxnMarkers request with {spec} failed due to cluster "
                            f"authorization error")
        if code == ErrorCode.INVALID_PRODUCER_EPOCH:
            raise ToolError(f"WriteTxnMarkers request with {spec} failed due an invalid "
                            f"producer epoch")
        if code == ErrorCode.TRANSACTION_COORDINATOR_FENCED:
            raise ToolError(f"WriteTxnMarkers request with {spec} failed since the provided "
                            f"coordinator epoch {coordinator_epoch} has been fenced by the "
                            f"active coordinator")
        raise ToolError(f"WriteTxnMarkers request with {spec} failed due to unexpected "
                        f"error: {kafka_message(code)}")


# ============================================================================ commands

def cmd_list(ctx: Context, a, out) -> int:
    pattern = None
    if a.transactional_id_pattern:   # empty: no filter, as KIP-1152 says
        try:
            pattern = re.compile(a.transactional_id_pattern)
        except re.error as e:
            raise failed("Failed to list transactions",
                         f"Invalid transactional id pattern '{a.transactional_id_pattern}': {e}")
    duration = a.duration_filter if a.duration_filter is not None else -1
    try:
        listed = list_transactions(ctx, duration)
    except ToolError as e:
        raise failed("Failed to list transactions", e) from None
    rows = [[s.transactional_id, str(broker_id), str(s.producer_id), s.transaction_state]
            for broker_id, states in sorted(listed.items()) for s in states
            if pattern is None or pattern.fullmatch(s.transactional_id)]
    out.write(pretty_table(LIST_HEADERS, rows))
    return 0


def cmd_describe(ctx: Context, a, out) -> int:
    txn_id = a.transactional_id
    try:
        d = describe_transaction(ctx, txn_id)
    except ToolError as e:
        raise failed(f"Failed to describe transaction state of transactional-id `{txn_id}`",
                     e) from None
    if d.start_time_ms >= 0:
        start, duration = str(d.start_time_ms), str(ctx.now_ms() - d.start_time_ms)
    else:
        start = duration = "None"
    row = [str(d.coordinator_id), txn_id, str(d.producer_id), str(d.producer_epoch), d.state,
           str(d.timeout_ms), start, duration, ",".join(tp_str(tp) for tp in d.partitions)]
    out.write(pretty_table(DESCRIBE_HEADERS, [row]))
    return 0


def cmd_describe_producers(ctx: Context, a, out) -> int:
    tp = (a.topic, a.partition)
    try:
        producers = describe_producers(ctx, [tp], a.broker_id)[tp]
    except ToolError as e:
        where = f"broker {a.broker_id}" if a.broker_id is not None else "leader"
        raise failed(f"Failed to describe producers for partition {tp_str(tp)} on {where}",
                     e) from None
    rows = [[str(s.producer_id), str(s.producer_epoch),
             str(s.coordinator_epoch if s.coordinator_epoch >= 0 else -1),
             str(s.last_sequence), str(s.last_timestamp),
             str(s.current_txn_start_offset) if s.current_txn_start_offset >= 0 else "None"]
            for s in producers]
    out.write(pretty_table(PRODUCERS_HEADERS, rows))
    return 0


def cmd_abort(ctx: Context, a, out) -> int:
    tp = (a.topic, a.partition)
    if a.start_offset is None and a.producer_id is None:
        raise failed("The transaction to abort must be identified either with --start-offset "
                     "(for brokers on 3.0 or above) or with --producer-id, --producer-epoch, "
                     "and --coordinator-epoch (for older brokers)")
    if a.start_offset is None:
        if a.producer_epoch is None:
            raise failed("Missing required argument --producer-epoch")
        if a.coordinator_epoch is None:
            raise failed("Missing required argument --coordinator-epoch")
        # A transaction that began under a new producer id and hung before its first
        # marker shows coordinator epoch -1 in DescribeProducers; 0 is <= any epoch the
        # broker may hold, so the marker is accepted (Kafka's tool does the same).
        pid, epoch, coord_epoch = a.producer_id, a.producer_epoch, max(0, a.coordinator_epoch)
    else:
        try:
            producers = describe_producers(ctx, [tp])[tp]
        except ToolError as e:
            raise failed(f"Failed to validate producer state for partition {tp_str(tp)}",
                         e) from None
        match = [s for s in producers if s.current_txn_start_offset >= 0
                 and s.current_txn_start_offset == a.start_offset]
        if not match:
            raise failed(f"Could not find any open transactions starting at offset "
                         f"{a.start_offset} on partition {tp_str(tp)}")
        s = match[0]
        pid, epoch, coord_epoch = s.producer_id, s.producer_epoch, max(0, s.coordinator_epoch)
    try:
        abort_transaction(ctx, tp, pid, epoch, coord_epoch)
    except ToolError as e:
        raise failed(f"Failed to abort transaction {abort_spec_str(tp, pid, epoch, coord_epoch)}",
                     e) from None
    return 0


def _batches(items: list, size: int = MAX_BATCH_SIZE):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _java_optional(v) -> str:
    """How Kafka's message prints its Optional<Integer> broker id."""
    return "Optional.empty" if v is None else f"Optional[{v}]"


def cmd_find_hanging(ctx: Context, a, out) -> int:
    """Kafka's FindHangingTransactionsCommand: every open transaction a partition leader
    (or --broker-id) reports whose last write is older than --max-transaction-timeout,
    and that its coordinator does not know — no transactional id has its producer id,
    the id is gone, or the id's current transaction does not include the partition.
    Such a transaction holds the partition's LSO (read_committed consumers stall) until
    it is aborted (`abort`). One the coordinator still tracks is not hanging: the
    coordinator will finish or time it out."""
    if a.topic is None and a.broker_id is None:
        raise failed("The `find-hanging` command requires either --topic or --broker-id to "
                     "limit the scope of the search")
    if a.partition is not None and a.topic is None:
        raise failed("The --partition argument requires --topic to be provided")
    max_timeout_ms = a.max_transaction_timeout * 60_000

    # the partitions to search
    if a.topic is not None and a.partition is not None:
        tps = [(a.topic, a.partition)]
    else:
        if a.topic is not None:
            topics = [a.topic]
        else:
            try:
                topics = [t.name for t in ctx.admin.metadata(None).topics]  # internal ones too
            except ToolError as e:
                raise failed("Failed to list topics", e) from None
        tps = []
        for batch in _batches(topics):
            try:
                md = ctx.admin.metadata(batch)
                for t in md.topics:
                    if t.error_code != ErrorCode.NONE:
                        raise ToolError(kafka_message(t.error_code))
                    for p in sorted(t.partitions, key=lambda p: p.partition_index):
                        if a.broker_id is None or a.broker_id in p.replica_nodes:
                            tps.append((t.name, p.partition_index))
            except ToolError as e:
                raise failed(f"Failed to describe {len(batch)} topics", e) from None

    # candidates: open transactions older than the timeout
    candidates: list[tuple[tuple[str, int], object]] = []
    for batch in _batches(tps):
        try:
            producers = describe_producers(ctx, batch, a.broker_id)
        except ToolError as e:
            raise failed(f"Failed to describe producers for {len(batch)} partitions on broker "
                         f"{_java_optional(a.broker_id)}", e) from None
        now = ctx.now_ms()
        for tp in batch:
            for s in producers.get(tp, []):
                if s.current_txn_start_offset >= 0 and now - s.last_timestamp > max_timeout_ms:
                    candidates.append((tp, s))

    hanging = []
    if candidates:
        by_pid: dict[int, list] = {}
        for tp, s in candidates:
            by_pid.setdefault(s.producer_id, []).append((tp, s))
        try:
            listed = list_transactions(ctx, -1, sorted(by_pid))
        except ToolError as e:
            raise failed(f"Failed to list transactions for {len(by_pid)} producers", e) from None
        txn_ids = {s.producer_id: s.transactional_id
                   for states in listed.values() for s in states if s.producer_id in by_pid}
        descriptions = {}
        for txn_id in dict.fromkeys(txn_ids.values()):
            try:
                descriptions[txn_id] = describe_transaction(ctx, txn_id)
            except TransactionalIdNotFound:
                descriptions[txn_id] = None
            except ToolError as e:
                raise failed(f"Failed to describe {len(set(txn_ids.values()))} transactions",
                             e) from None
        for pid, open_txns in by_pid.items():
            txn_id = txn_ids.get(pid)
            d = descriptions.get(txn_id) if txn_id is not None else None
            for tp, s in open_txns:
                # DescribeTransactions lists the partitions of the ongoing transaction and
                # those still waiting for a marker (Prepare*): for those the coordinator
                # will write the marker; anything else is hanging.
                if d is None or tp not in d.partitions:
                    hanging.append((tp, s))

    now = ctx.now_ms()
    rows = [[tp[0], str(tp[1]), str(s.producer_id), str(s.producer_epoch),
             str(s.coordinator_epoch if s.coordinator_epoch >= 0 else -1),
             str(s.current_txn_start_offset), str(s.last_timestamp),
             str((now - s.last_timestamp) // 60_000)]
            for tp, s in hanging]
    if hanging:
        log.info("hanging_transactions_found", count=len(hanging))
    out.write(pretty_table(HANGING_HEADERS, rows))
    return 0


COMMANDS = {"list": cmd_list, "describe": cmd_describe,
            "describe-producers": cmd_describe_producers, "abort": cmd_abort,
            "find-hanging": cmd_find_hanging}


# ============================================================================ main

def execute(argv: list[str], out=None, err=None, *, prog: str = PROG,
            admin_factory=None, now_ms=None) -> int:
    """Run one command line; the exit code. `admin_factory` / `now_ms`: for tests."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser(prog)
    try:
        a = parse_args(parser, argv)
    except _UsageError as e:
        err.write(e.parser.format_usage())
        err.write(f"{e.parser.prog}: error: {e}\n")
        return 1
    except SystemExit as e:   # --help, --version
        return 0 if e.code is None else int(e.code)
    ctx = Context(a, admin_factory, now_ms)
    try:
        return COMMANDS[a.command](ctx, a, out)
    except CommandFailed as e:
        err.write(f"{e}\n")
        return 1
    except (ToolError, UsageError) as e:
        # a bad --command-config, or a failure outside any command's own message
        err.write(f"{e}\n")
        return 1
    finally:
        ctx.close()


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    # kafkette's client logs through structlog: warnings and worse to stderr, as
    # kafkette.tools.common.run_tool sets it up for the other tools
    from kafkette.logging import configure_logging
    configure_logging("WARNING", stream=sys.stderr)
    try:
        return execute(sys.argv[1:] if argv is None else list(argv), prog=prog)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
