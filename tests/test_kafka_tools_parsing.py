"""The parsing and formatting pieces of Kafka's command-line tools (kafkette/tools/
kafka_*.py), without a broker: what each must agree on with Kafka byte for byte.
integration/test_kafka_tools.py runs the tools themselves against a broker."""
from __future__ import annotations

import datetime

import pytest

from kafkette.protocol.records import Record, build_batch
from kafkette.tools.client import ToolError
from kafkette.tools.common import HelpRequested, UsageError, load_properties, parse_key_values
from kafkette.tools.group_member import (
    decode_subscription, encode_assignment, encode_subscription, range_assign,
)
from kafkette.tools.groups import decode_assignment
from kafkette.tools.kafka_configs import parse_add_config
from kafkette.tools.kafka_console_consumer import Formatter, whole_batches
from kafkette.tools.kafka_console_producer import LineReader, murmur2, partition_for_key
from kafkette.tools.kafka_consumer_groups import jfmt, parse_datetime_ms, parse_duration_ms
from kafkette.tools.kafka_topics import build_parser, kafka_uuid, topic_filter


def test_murmur2_is_kafkas_partitioner_hash():
    from kafka.partitioner.default import murmur2 as kafka_python_murmur2
    for key in [b"", b"a", b"ab", b"abc", b"abcd", b"21", b"foobar", bytes(range(256)),
                "ключ".encode()]:
        # kafka-python gives some hashes unsigned; the 32 bits are what count
        assert murmur2(key) & 0xFFFFFFFF == kafka_python_murmur2(key) & 0xFFFFFFFF
    # vectors of Kafka's UtilsTest
    assert murmur2(b"21") == -973932308
    assert murmur2(b"a-little-bit-longer-string") == -1486304829
    assert partition_for_key(b"21", 7) == (-973932308 & 0x7FFFFFFF) % 7


def test_line_reader_keys_headers_and_null_marker():
    r = LineReader({"parse.key": "true", "key.separator": "::"})
    assert r.parse(b"k::v::w") == (b"k", b"v::w", [])
    with pytest.raises(ToolError, match="No key separator found on line number 2: 'bare'"):
        r.parse(b"bare")
    r = LineReader({"parse.key": "true", "parse.headers": "true", "null.marker": "NULL"})
    assert r.parse(b"a:1,b:NULL\tNULL\tv") == (None, b"v", [("a", b"1"), ("b", None)])
    assert r.parse(b"NULL\tk\tNULL") == (b"k", None, [])
    assert LineReader({"parse.key": "true", "ignore.error": "true"}).parse(b"x") == \
        (None, b"x", [])


def test_formatter_columns_as_kafkas_default_message_formatter():
    rec = Record(offset=7, timestamp=1700000000000, key=None, value=b"v",
                 headers=[("h", b"1"), ("n", None)])
    f = Formatter({"print.timestamp": "true", "print.partition": "true",
                   "print.offset": "true", "print.headers": "true", "print.key": "true",
                   "key.separator": "|", "null.literal": "NIL"})
    assert f.format(3, rec, "CreateTime") == \
        b"CreateTime:1700000000000|Partition:3|Offset:7|h:1,n:NIL|NIL|v\n"
    f = Formatter({"print.value": "false", "print.key": "true", "line.separator": ";"})
    assert f.format(0, rec._replace(key=b"k"), "LogAppendTime") == b"k;"
    assert Formatter({"print.headers": "true"}).format(0, rec._replace(headers=[]),
                                                        "CreateTime") == b"NO_HEADERS\tv\n"


def test_whole_batches_drops_a_partial_tail():
    a = build_batch([(b"k", b"v", [])], base_offset=0)
    b = build_batch([(b"k2", b"v2", [])], base_offset=1)
    assert bytes(whole_batches(a + b)) == a + b
    assert bytes(whole_batches(a + b[:-3])) == a
    assert bytes(whole_batches(a[:20])) == b""
    assert bytes(whole_batches(None)) == b""


def test_add_config_brackets_and_key_values():
    assert parse_add_config("a=1,b=[x,y,z],c=3") == {"a": "1", "b": "x,y,z", "c": "3"}
    assert parse_add_config("cleanup.policy=[compact,delete]") == \
        {"cleanup.policy": "compact,delete"}
    with pytest.raises(UsageError):
        parse_add_config("novalue")
    # Kafka's parseKeyValueArgs keeps the value as given: key.separator=" | " stays
    assert parse_key_values(["key.separator= | ", "a=b=c"], "--property") == \
        {"key.separator": " | ", "a": "b=c"}


def test_durations_and_datetimes_as_java_parses_them():
    assert parse_duration_ms("PT0S") == 0
    assert parse_duration_ms("P1DT2H3M4.5S") == ((24 + 2) * 60 + 3) * 60_000 + 4500
    assert parse_duration_ms("PT-10M") == -600_000
    with pytest.raises(ToolError, match="cannot be parsed"):
        parse_duration_ms("1h")
    assert parse_datetime_ms("2020-01-02T03:04:05.678Z") == 1577934245678
    assert parse_datetime_ms("2020-01-02T03:04:05.678+01:00") == 1577934245678 - 3_600_000
    local = datetime.datetime(2020, 1, 2, 3, 4, 5).astimezone()
    assert parse_datetime_ms("2020-01-02T03:04:05") == int(local.timestamp() * 1000)
    with pytest.raises(ToolError):
        parse_datetime_ms("yesterday")


def test_topic_filter_is_kafkas_include_list():
    f = topic_filter("foo.*,bar", exclude_internal=False)
    assert f("foo") and f("foo-1") and f("bar") and not f("barx") and not f("xfoo")
    assert topic_filter('"quoted"', False)("quoted")
    assert not topic_filter(None, True)("__consumer_offsets")
    assert topic_filter(None, False)("__consumer_offsets")


def test_topic_ids_print_as_kafkas_uuid():
    import uuid
    u = uuid.UUID("5b2e1280-089a-4f43-8211-8e2c654d708d")
    assert kafka_uuid(u) == "Wy4SgAiaT0OCEY4sZU1wjQ"
    assert kafka_uuid(uuid.UUID(int=0)) == "" and kafka_uuid(None) == ""


def test_range_assignor_and_consumer_protocol_round_trip():
    subs = {"m-b": ["t", "u"], "m-a": ["t"], "m-c": ["u"]}
    plan = range_assign(subs, {"t": 5, "u": 1})
    assert plan == {"m-a": [("t", 0), ("t", 1), ("t", 2)], "m-b": [("t", 3), ("t", 4), ("u", 0)],
                    "m-c": []}
    assert decode_subscription(encode_subscription(["t", "u"])) == ["t", "u"]
    assert decode_assignment(encode_assignment([("u", 1), ("t", 2), ("t", 0)])) == \
        [("t", 0), ("t", 2), ("u", 1)]


def test_java_printf_columns():
    spec = [(15, 1), (10, 1), (0, 0)]
    assert jfmt(spec, ["GROUP", "PARTITION", "END"]) == "GROUP           PARTITION  END"
    assert jfmt(spec, ["a-very-long-group-id", None, 3]) == "a-very-long-group-id -          3"


def test_properties_files(tmp_path):
    p = tmp_path / "c.properties"
    p.write_text("# c\n! c\nclient.id = a\nkey:value\nspaced value here\n"
                 "long=one \\\n    two\nempty=\n")
    assert load_properties(str(p)) == {"client.id": "a", "key": "value", "spaced": "value here",
                                       "long": "one two", "empty": ""}
    with pytest.raises(ToolError, match="cannot read"):
        load_properties(str(tmp_path / "missing"))


def test_parser_refuses_unknown_and_abbreviated_options():
    p = build_parser()
    with pytest.raises(UsageError, match="^zookeeper is not a recognized option$"):
        p.parse(["--zookeeper", "x"])
    with pytest.raises(UsageError, match="^top is not a recognized option$"):
        p.parse(["--top", "x"])
    with pytest.raises(HelpRequested):
        p.parse(["--list", "--help"])
    assert p.parse(["--list", "--topic=a.*"]).topic == "a.*"


def test_console_consumer_skips_a_corrupt_batch_only_when_asked():
    """A batch whose CRC does not match stops the consumer, or with
    --skip-message-on-error is reported and stepped over (fetch_once against a fake
    broker answer: a real broker refuses such a batch on produce)."""
    from kafkette.protocol.messages import FetchResponse
    from kafkette.tools.kafka_console_consumer import FetchSettings, fetch_once
    good = build_batch([(b"k", b"v0", [])], base_offset=0)
    bad = bytearray(build_batch([(b"k", b"v1", [])], base_offset=1))
    bad[-1] ^= 0xFF
    last = build_batch([(b"k", b"v2", [])], base_offset=2)
    R = FetchResponse.FetchableTopicResponse

    class FakeAdmin:
        def request(self, req, node=None):
            return FetchResponse(responses=[R(topic="t", partitions=[R.PartitionData(
                partition_index=0, error_code=0, high_watermark=3,
                records=good + bytes(bad) + last)])])
    settings = FetchSettings(100, 1, 1 << 20, 1 << 20, skip_bad_records=False)
    with pytest.raises(ToolError, match="terminating consumer process"):
        fetch_once(FakeAdmin(), "t", {0: 0}, {0: 1}, 0, settings)
    got, errors, ends = fetch_once(FakeAdmin(), "t", {0: 0}, {0: 1}, 0,
                                   settings._replace(skip_bad_records=True))
    assert [r.value for _p, _ts, r in got] == [b"v0", b"v2"]
    assert errors == {} and ends == {0: 3}
