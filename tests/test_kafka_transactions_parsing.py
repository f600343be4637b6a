"""kafka-transactions.sh (kafkette/tools/kafka_transactions.py) without a broker: the
command line as Kafka's TransactionsCommand parses it, the tables as Kafka's
ToolsUtils.prettyPrintTable prints them, Kafka's error messages, and the find-hanging /
abort logic over a scripted admin client. integration/test_kafka_transactions_tool.py
runs the tool against a live broker."""
from __future__ import annotations

import io

import pytest

from kafkette.cli import transactions_argv
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import (
    DescribeProducersResponse, DescribeTransactionsResponse, ListTransactionsResponse,
    WriteTxnMarkersResponse,
)
from kafkette.tools import kafka_transactions as kt

NOW = 1_700_000_000_000
BS = ["--bootstrap-server", "h:1"]

PS = DescribeProducersResponse.TopicResponse.PartitionResponse.ProducerState
DTState = DescribeTransactionsResponse.TransactionState
LTState = ListTransactionsResponse.TransactionState


def run(argv, admin=None):
    out, err = io.StringIO(), io.StringIO()
    rc = kt.execute(argv, out, err, admin_factory=(lambda: admin) if admin else None,
                    now_ms=lambda: NOW)
    return rc, out.getvalue(), err.getvalue()


def table(text: str) -> list[list[str]]:
    """The cells of a prettyPrintTable: every line ends with a tab."""
    lines = text.splitlines()
    assert all(line.endswith("\t") for line in lines), repr(text)
    return [[c.rstrip(" ") for c in line.split("\t")[:-1]] for line in lines]


# --------------------------------------------------------------------------- formatting

def test_pretty_table_is_kafkas_padded_cells_each_followed_by_a_tab():
    assert kt.pretty_table(["A", "Bee"], [["xyz", "1"], ["", "22222"]]) == (
        "A  \tBee  \t\n"
        "xyz\t1    \t\n"
        "   \t22222\t\n")
    assert kt.pretty_table(["Only"], []) == "Only\t\n"


def test_error_text_is_kafkas_print_error_and_exit():
    assert str(kt.failed("Failed to list transactions", "boom")) == (
        "Failed to list transactions: boom. Enable debug logging for additional detail.")
    # Kafka's Errors texts end with a period: it is not doubled
    assert str(kt.failed("X", "This server does not host this topic-partition.")) == (
        "X: This server does not host this topic-partition. Enable debug logging for "
        "additional detail.")
    assert str(kt.failed("Just this")) == "Just this"
    assert kt.abort_spec_str(("t", 2), 7, 3, 0) == (
        "AbortTransactionSpec(topicPartition=t-2, producerId=7, producerEpoch=3, "
        "coordinatorEpoch=0)")


# --------------------------------------------------------------------------- parsing

@pytest.mark.parametrize("argv, message", [
    ([], "argument --bootstrap-server is required"),
    (BS, "too few arguments"),
    (BS + ["list", "--foo"], "unrecognized arguments: '--foo'"),
    # Kafka 4 has no --producer-id / --transactional-id filter on list
    (BS + ["list", "--transactional-id", "x"], "unrecognized arguments: '--transactional-id x'"),
    # global options go before the command, as in Kafka (argparse4j subparsers)
    (["list"] + BS, "argument --bootstrap-server is required"),
    (BS + ["describe"], "argument --transactional-id is required"),
    (BS + ["describe", "--transactional"], "argument --transactional-id is required"),
    (BS + ["describe-producers", "--topic", "t"], "argument --partition is required"),
    (BS + ["describe-producers", "--topic", "t", "--partition", "x"],
     "argument --partition: could not convert 'x' to Integer (For input string: \"x\")"),
    (BS + ["abort", "--topic", "t", "--partition", "0", "--producer-epoch", "40000"],
     "argument --producer-epoch: could not convert '40000' to Short"),
    (BS + ["nope"], "invalid choice: 'nope'"),
])
def test_usage_errors_exit_1_with_argparse4j_wording(argv, message):
    rc, out, err = run(argv)
    assert rc == 1 and out == ""
    assert "usage: kafka-transactions.sh" in err
    assert message in err, err
    assert err.rstrip("\n").splitlines()[-1].startswith("kafka-transactions.sh")


def test_help_and_version_exit_0(capsys):
    assert kt.execute(["--help"]) == 0
    assert "find-hanging" in capsys.readouterr().out
    assert kt.execute(["--version"]) == 0
    assert "kafkette" in capsys.readouterr().out


def test_kafkette_transactions_moves_global_options_before_the_command():
    assert transactions_argv(["list", "--bootstrap-server", "h:1", "--duration-filter", "5"]) == [
        "--bootstrap-server", "h:1", "list", "--duration-filter", "5"]
    assert transactions_argv(["describe", "--transactional-id", "a",
                              "--command-config=c.properties", "--bootstrap-server=h:1"]) == [
        "--command-config=c.properties", "--bootstrap-server=h:1", "describe",
        "--transactional-id", "a"]


# --------------------------------------------------------------------------- fake admin

class FakeAdmin:
    """The AdminClient calls kafka_transactions makes, answered from a script."""

    def __init__(self, *, topics=None, producers=None, listings=None, descriptions=None,
                 marker_codes=None, brokers=(1,)):
        self.topics = topics or {}               # name -> {partition: (leader, replicas)}
        self.producers = producers or {}         # (t, p) -> [ProducerState]
        self.listings = listings or {}           # broker -> [LTState]
        self.descriptions = descriptions or {}   # txn id -> DTState
        self.marker_codes = list(marker_codes or [])
        self.brokers = list(brokers)
        self.markers = []
        self.list_filters = []

    def close(self):
        pass

    def broker_ids(self):
        return self.brokers

    def metadata(self, topics=None):
        from kafkette.protocol.messages import MetadataResponse as M
        names = list(self.topics) if topics is None else topics
        out = []
        for n in names:
            if n not in self.topics:
                out.append(M.MetadataResponseTopic(name=n, error_code=3, partitions=[]))
                continue
            out.append(M.MetadataResponseTopic(name=n, error_code=0, partitions=[
                M.MetadataResponseTopic.MetadataResponsePartition(
                    partition_index=p, leader_id=leader, replica_nodes=list(replicas))
                for p, (leader, replicas) in sorted(self.topics[n].items())]))
        return M(topics=out)

    def list_transactions_on(self, node_id, states, producer_ids, duration_filter_ms=-1):
        self.list_filters.append((node_id, list(producer_ids), duration_filter_ms))
        states = [s for s in self.listings.get(node_id, [])
                  if not producer_ids or s.producer_id in producer_ids]
        return ListTransactionsResponse(error_code=0, transaction_states=states)

    def find_coordinator(self, key, key_type=0):
        return 0, 1, "h", 1, None

    def describe_transactions_at(self, node, ids):
        return DescribeTransactionsResponse(transaction_states=[
            self.descriptions.get(i) or DTState(error_code=ErrorCode.TRANSACTIONAL_ID_NOT_FOUND,
                                                transactional_id=i) for i in ids])

    def describe_producers_on(self, node, tps):
        T = DescribeProducersResponse.TopicResponse
        by_topic = {}
        for t, p in tps:
            by_topic.setdefault(t, []).append(T.PartitionResponse(
                partition_index=p, error_code=0, active_producers=self.producers.get((t, p), [])))
        return DescribeProducersResponse(topics=[T(name=t, partitions=ps)
                                                 for t, ps in by_topic.items()])

    def write_txn_marker_on(self, node, tp, pid, epoch, coordinator_epoch, commit):
        self.markers.append((node, tp, pid, epoch, coordinator_epoch, commit))
        code = self.marker_codes.pop(0) if self.marker_codes else 0
        R = WriteTxnMarkersResponse.WritableTxnMarkerResult
        T = R.WritableTxnMarkerTopicResult
        return WriteTxnMarkersResponse(markers=[R(producer_id=pid, topics=[T(
            name=tp[0], partitions=[T.WritableTxnMarkerPartitionResult(
                partition_index=tp[1], error_code=code)])])])


MIN = 60_000


def producer(pid, start, age_ms, epoch=0, coord_epoch=-1, seq=0):
    return PS(producer_id=pid, producer_epoch=epoch, last_sequence=seq,
              last_timestamp=NOW - age_ms, coordinator_epoch=coord_epoch,
              current_txn_start_offset=start)


def description(txn_id, pid, partitions, state="Ongoing", start=NOW - 5000):
    topics = {}
    for t, p in partitions:
        topics.setdefault(t, []).append(p)
    return DTState(error_code=0, transactional_id=txn_id, transaction_state=state,
                   transaction_timeout_ms=60000, transaction_start_time_ms=start,
                   producer_id=pid, producer_epoch=0,
                   topics=[DTState.TopicData(topic=t, partitions=ps) for t, ps in topics.items()])


def test_list_rows_per_broker_with_filters():
    admin = FakeAdmin(brokers=[1, 2], listings={
        1: [LTState(transactional_id="pay-1", producer_id=10, transaction_state="Ongoing")],
        2: [LTState(transactional_id="ship-1", producer_id=11, transaction_state="Empty"),
            LTState(transactional_id="pay-22", producer_id=12, transaction_state="CompleteCommit")]})
    rc, out, err = run(BS + ["list", "--duration-filter", "1000"], admin)
    assert (rc, err) == (0, "")
    assert table(out) == [kt.LIST_HEADERS, ["pay-1", "1", "10", "Ongoing"],
                          ["ship-1", "2", "11", "Empty"], ["pay-22", "2", "12", "CompleteCommit"]]
    assert admin.list_filters == [(1, [], 1000), (2, [], 1000)]
    rc, out, _ = run(BS + ["list", "--transactional-id-pattern", "pay-.*"], admin)
    assert [r[0] for r in table(out)[1:]] == ["pay-1", "pay-22"]
    # the whole id must match, as Kafka's broker matches it
    rc, out, _ = run(BS + ["list", "--transactional-id-pattern", "pay"], admin)
    assert table(out) == [kt.LIST_HEADERS]
    rc, _, err = run(BS + ["list", "--transactional-id-pattern", "("], admin)
    assert rc == 1 and err.startswith("Failed to list transactions: Invalid transactional id pattern")


def test_describe_row_and_not_found():
    admin = FakeAdmin(descriptions={"a": description("a", 10, [("t", 1), ("s", 0)])})
    rc, out, _ = run(BS + ["describe", "--transactional-id", "a"], admin)
    assert rc == 0
    assert table(out) == [kt.DESCRIBE_HEADERS, ["1", "a", "10", "0", "Ongoing", "60000",
                                                str(NOW - 5000), "5000", "s-0,t-1"]]
    admin.descriptions["e"] = description("e", 11, [], state="Empty", start=-1)
    rc, out, _ = run(BS + ["describe", "--transactional-id", "e"], admin)
    assert table(out)[1][4:] == ["Empty", "60000", "None", "None", ""]
    rc, out, err = run(BS + ["describe", "--transactional-id", "zz"], admin)
    assert (rc, out) == (1, "")
    assert err == ("Failed to describe transaction state of transactional-id `zz`: "
                   "DescribeTransactions request for transactionalId `zz` failed because the "
                   "ID could not be found. Enable debug logging for additional detail.\n")


def test_describe_producers_columns():
    admin = FakeAdmin(topics={"t": {0: (1, [1])}}, producers={("t", 0): [
        producer(5, 42, 1000, epoch=3, coord_epoch=2, seq=9), producer(6, -1, 1000)]})
    rc, out, _ = run(BS + ["describe-producers", "--topic", "t", "--partition", "0"], admin)
    assert rc == 0
    assert table(out) == [kt.PRODUCERS_HEADERS,
                          ["5", "3", "2", "9", str(NOW - 1000), "42"],
                          ["6", "0", "-1", "0", str(NOW - 1000), "None"]]
    rc, out, err = run(BS + ["describe-producers", "--topic", "nope", "--partition", "0"], admin)
    assert rc == 1
    assert err.startswith("Failed to describe producers for partition nope-0 on leader: "
                          "This server does not host this topic-partition. Enable")


def test_find_hanging_keeps_only_what_the_coordinator_does_not_know():
    topics = {"t": {0: (1, [1, 2]), 1: (2, [2, 3]), 2: (1, [1])}}
    producers = {
        # known to its coordinator, which has t-0 in the transaction: not hanging
        ("t", 0): [producer(10, 5, 20 * MIN)],
        # pid 11's transactional id no longer includes t-1: hanging
        ("t", 1): [producer(11, 7, 20 * MIN)],
        # no transactional id lists pid 12: hanging; pid 13 too recent: not a candidate;
        # pid 14 has no open transaction
        ("t", 2): [producer(12, 9, 16 * MIN, coord_epoch=4), producer(13, 3, 1 * MIN),
                   producer(14, -1, 99 * MIN)],
    }
    listings = {1: [LTState(transactional_id="a", producer_id=10, transaction_state="Ongoing"),
                    LTState(transactional_id="b", producer_id=11, transaction_state="Ongoing")]}
    descriptions = {"a": description("a", 10, [("t", 0)]),
                    "b": description("b", 11, [("t", 0)])}
    admin = FakeAdmin(topics=topics, producers=producers, listings=listings,
                      descriptions=descriptions)
    rc, out, err = run(BS + ["find-hanging", "--topic", "t"], admin)
    assert (rc, err) == (0, "")
    assert table(out) == [kt.HANGING_HEADERS,
                          ["t", "1", "11", "0", "-1", "7", str(NOW - 20 * MIN), "20"],
                          ["t", "2", "12", "0", "4", "9", str(NOW - 16 * MIN), "16"]]
    # only the candidates' producer ids are looked up
    assert admin.list_filters[-1] == (1, [10, 11, 12], -1)
    # --broker-id: only partitions with a replica there
    rc, out, _ = run(BS + ["find-hanging", "--broker-id", "3"], admin)
    assert [r[:2] for r in table(out)[1:]] == [["t", "1"]]
    # a longer timeout: nothing is old enough
    rc, out, _ = run(BS + ["find-hanging", "--topic", "t", "--max-transaction-timeout", "30"], admin)
    assert table(out) == [kt.HANGING_HEADERS]
    # a transactional id that is gone (TRANSACTIONAL_ID_NOT_FOUND): hanging
    del admin.descriptions["a"]
    rc, out, _ = run(BS + ["find-hanging", "--topic", "t", "--partition", "0"], admin)
    assert [r[:3] for r in table(out)[1:]] == [["t", "0", "10"]]


@pytest.mark.parametrize("args, message", [
    ([], "The `find-hanging` command requires either --topic or --broker-id to limit the "
         "scope of the search"),
    (["--partition", "0", "--broker-id", "1"],
     "The --partition argument requires --topic to be provided"),
])
def test_find_hanging_scope_errors(args, message):
    rc, out, err = run(BS + ["find-hanging", *args], FakeAdmin())
    assert (rc, out, err) == (1, "", message + "\n")


def test_abort_by_start_offset_sends_the_producers_abort_marker_to_the_leader():
    admin = FakeAdmin(topics={"t": {0: (2, [2])}}, producers={("t", 0): [
        producer(5, 10, MIN, epoch=3, coord_epoch=-1), producer(6, 20, MIN, epoch=1, coord_epoch=7)]})
    rc, out, err = run(BS + ["abort", "--topic", "t", "--partition", "0", "--start-offset", "20"],
                       admin)
    assert (rc, out, err) == (0, "", "")
    assert admin.markers == [(2, ("t", 0), 6, 1, 7, False)]
    # coordinator epoch -1 (no marker yet) is sent as 0, as Kafka's tool does
    run(BS + ["abort", "--topic", "t", "--partition", "0", "--start-offset", "10"], admin)
    assert admin.markers[-1] == (2, ("t", 0), 5, 3, 0, False)
    rc, out, err = run(BS + ["abort", "--topic", "t", "--partition", "0", "--producer-id", "9",
                             "--producer-epoch", "4", "--coordinator-epoch", "-1"], admin)
    assert rc == 0 and admin.markers[-1] == (2, ("t", 0), 9, 4, 0, False)


@pytest.mark.parametrize("args, message", [
    ([], "The transaction to abort must be identified either with --start-offset (for brokers "
         "on 3.0 or above) or with --producer-id, --producer-epoch, and --coordinator-epoch "
         "(for older brokers)"),
    (["--producer-id", "1"], "Missing required argument --producer-epoch"),
    (["--producer-id", "1", "--producer-epoch", "0"], "Missing required argument --coordinator-epoch"),
    (["--start-offset", "99"], "Could not find any open transactions starting at offset 99 on "
                               "partition t-0"),
])
def test_abort_errors(args, message):
    admin = FakeAdmin(topics={"t": {0: (1, [1])}}, producers={("t", 0): [producer(5, 10, MIN)]})
    rc, out, err = run(BS + ["abort", "--topic", "t", "--partition", "0", *args], admin)
    assert (rc, out, err) == (1, "", message + "\n")
    assert admin.markers == []


def test_abort_marker_errors_carry_kafkas_messages():
    admin = FakeAdmin(topics={"t": {0: (1, [1])}}, marker_codes=[ErrorCode.INVALID_PRODUCER_EPOCH])
    rc, _, err = run(BS + ["abort", "--topic", "t", "--partition", "0", "--producer-id", "9",
                           "--producer-epoch", "4", "--coordinator-epoch", "2"], admin)
    spec = kt.abort_spec_str(("t", 0), 9, 4, 2)
    assert rc == 1
    assert err == (f"Failed to abort transaction {spec}: WriteTxnMarkers request with {spec} "
                   f"failed due an invalid producer epoch. Enable debug logging for additional "
                   f"detail.\n")
    # NOT_LEADER_OR_FOLLOWER: the leader is looked up again and the marker resent
    admin.marker_codes = [ErrorCode.NOT_LEADER_OR_FOLLOWER, 0]
    rc, _, err = run(BS + ["abort", "--topic", "t", "--partition", "0", "--producer-id", "9",
                           "--producer-epoch", "4", "--coordinator-epoch", "2"], admin)
    assert (rc, err) == (0, "")
    assert len(admin.markers) == 3
