"""kafka-delete-records.sh: Kafka's DeleteRecordsCommand. Deletes the records before
the given offsets (offset -1: up to the high watermark), with Kafka's JSON file

    {"partitions": [{"topic": "foo", "partition": 0, "offset": 3}], "version": 1}

and Kafka's output: "Executing records delete operation", "Records delete operation
completed:", then `partition: foo-0\\tlow_watermark: 3` or `partition: foo-0\\terror: ...`
for each partition.
"""
from __future__ import annotations

import json
import sys

from kafkette.tools.client import ToolError, kafka_exception
from kafkette.tools.common import (
    ToolParser, UsageError, add_bootstrap, add_command_config, admin_from_args, run_tool,
)


def build_parser(prog="kafka-delete-records.sh") -> ToolParser:
    p = ToolParser(prog, "This tool helps to delete records of the given partitions down to "
                         "the specified offset.")
    add_bootstrap(p)
    p.add_argument("--offset-json-file", metavar="Offset json file path",
                   help="REQUIRED: The JSON file with offset per partition. The format to use "
                        "is: {\"partitions\": [{\"topic\": \"foo\", \"partition\": 1, "
                        "\"offset\": 1}], \"version\": 1}")
    add_command_config(p)
    return p


def parse_offsets(text: str) -> dict[tuple[str, int], int]:
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ToolError(f"The input string is not a valid JSON: {e}") from None
    if not isinstance(doc, dict) or "partitions" not in doc:
        raise ToolError("Missing partitions field")
    if doc.get("version", 1) != 1:
        raise ToolError(f"Not supported version field value {doc['version']}")
    out: dict[tuple[str, int], int] = {}
    dups = []
    for item in doc["partitions"]:
        try:
            tp = (str(item["topic"]), int(item["partition"]))
            off = int(item["offset"])
        except (KeyError, TypeError, ValueError):
            raise ToolError(f"Bad partition entry {json.dumps(item)}: expected topic, "
                            f"partition and offset") from None
        if tp in out:
            dups.append(tp)
        out[tp] = off
    if dups:
        raise ToolError("Offset json file contains duplicate topic partitions: "
                        + ",".join(f"{t}-{p}" for t, p in dups))
    return out


def run(a) -> int:
    if not a.bootstrap_server:
        raise UsageError("Missing required argument \"[bootstrap-server]\"")
    if not a.offset_json_file:
        raise UsageError("Missing required argument \"[offset-json-file]\"")
    try:
        with open(a.offset_json_file, encoding="utf-8") as f:
            offsets = parse_offsets(f.read())
    except OSError as e:
        raise ToolError(f"cannot read {a.offset_json_file}: {e.strerror}") from None
    with admin_from_args(a) as admin:
        print("Executing records delete operation")
        res = admin.delete_records(offsets)
        print("Records delete operation completed:")
        rc = 0
        for tp in offsets:
            code, low = res.get(tp, (3, -1))
            if code == 0:
                print(f"partition: {tp[0]}-{tp[1]}\tlow_watermark: {low}")
            else:
                rc = 1
                print(f"partition: {tp[0]}-{tp[1]}\terror: {kafka_exception(code)}")
    return rc


def main(argv: list[str] | None = None, prog: str = "kafka-delete-records.sh") -> int:
    return run_tool(build_parser(prog), argv, run, error_prefix="Error: ")


if __name__ == "__main__":
    sys.exit(main())
