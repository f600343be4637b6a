"""kafka-leader-election.sh: Kafka's LeaderElectionCommand (ElectLeaders).

  --election-type PREFERRED|UNCLEAN and one of --topic T --partition N,
  --all-topic-partitions, --path-to-json-file F ({"partitions": [{"topic": "t",
  "partition": 0}]})

Output as Kafka's: "Successfully completed leader election (PREFERRED) for partitions
t-0, t-1", "Valid replica already elected for partitions t-2", and for each failure
"Error completing leader election (PREFERRED) for partition: t-3: EXCEPTION: message",
then "Error while making request" and exit code 1.
"""
from __future__ import annotations

import json
import sys

from kafkette.errors import ErrorCode
from kafkette.tools.client import ToolError, kafka_exception
from kafkette.tools.common import (
    ToolParser, UsageError, admin_from_args, run_tool,
)

TYPES = {"PREFERRED": 0, "UNCLEAN": 1}


def build_parser(prog="kafka-leader-election.sh") -> ToolParser:
    p = ToolParser(prog, "This tool attempts to elect a new leader for a set of topic "
                         "partitions. The type of elections supported are preferred "
                         "replicas and unclean replicas.")
    p.add_argument("--bootstrap-server", metavar="host:port",
                   help="A hostname and port for the broker to connect to, in the form "
                        "host:port. Multiple comma separated URLs can be given. REQUIRED.")
    p.add_argument("--admin.config", dest="command_config", metavar="config file",
                   help="Configuration properties files to pass to the admin client.")
    p.add_argument("--path-to-json-file", metavar="Path to JSON file",
                   help="The JSON file with the list of partition for which leader elections "
                        "should be performed: {\"partitions\": [{\"topic\": \"foo\", "
                        "\"partition\": 1}]}")
    p.add_argument("--topic", metavar="topic name",
                   help="Name of topic for which to perform an election (with --partition).")
    p.add_argument("--partition", type=int, metavar="partition id",
                   help="Partition id for which to perform an election (with --topic).")
    p.add_argument("--all-topic-partitions", action="store_true",
                   help="Perform election on all of the eligible topic partitions.")
    p.add_argument("--election-type", metavar="election type",
                   help="Type of election to attempt: PREFERRED or UNCLEAN. REQUIRED.")
    return p


def target_partitions(a):
    chosen = [x for x in (a.topic is not None, a.all_topic_partitions,
                          a.path_to_json_file is not None) if x]
    if len(chosen) != 1:
        raise UsageError("One and only one of the following options is required: "
                         "all-topic-partitions, topic, path-to-json-file")
    if a.topic is not None and a.partition is None:
        raise UsageError("Missing required option(s) [partition]")
    if a.partition is not None and a.topic is None:
        raise UsageError("Option partition is only allowed if topic is used")
    if a.all_topic_partitions:
        return None
    if a.topic is not None:
        return [(a.topic, a.partition)]
    try:
        with open(a.path_to_json_file, encoding="utf-8") as f:
            doc = json.load(f)
        tps = [(str(x["topic"]), int(x["partition"])) for x in doc["partitions"]]
    except OSError as e:
        raise ToolError(f"cannot read {a.path_to_json_file}: {e.strerror}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ToolError(f"bad JSON in {a.path_to_json_file}: {e}") from None
    dups = sorted({tp for tp in tps if tps.count(tp) > 1})
    if dups:
        raise ToolError("Replica election data contains duplicate partitions: "
                        + ",".join(f"{t}-{p}" for t, p in dups))
    return tps


def run(a) -> int:
    if not a.bootstrap_server:
        raise UsageError("Missing required option(s) [bootstrap-server]")
    if not a.election_type:
        raise UsageError("Missing required option(s) [election-type]")
    etype = a.election_type.upper()
    if etype not in TYPES:
        raise UsageError(f"Cannot convert argument '{a.election_type}' of option "
                         f"['election-type']: election type must be PREFERRED or UNCLEAN")
    tps = target_partitions(a)
    with admin_from_args(a) as admin:
        res = admin.elect_leaders(TYPES[etype], tps)
    done = sorted(tp for tp, (c, _m) in res.items() if c == 0)
    noop = sorted(tp for tp, (c, _m) in res.items() if c == ErrorCode.ELECTION_NOT_NEEDED)
    failed = sorted((tp, c, m) for tp, (c, m) in res.items()
                    if c not in (0, ErrorCode.ELECTION_NOT_NEEDED))

    def names(xs):
        return ", ".join(f"{t}-{p}" for t, p in xs)
    if done:
        print(f"Successfully completed leader election ({etype}) for partitions {names(done)}")
    if noop:
        print(f"Valid replica already elected for partitions {names(noop)}")
    if failed:
        for (t, p), code, msg in failed:
            print(f"Error completing leader election ({etype}) for partition: {t}-{p}: "
                  f"{kafka_exception(code, msg)}")
        print("Error while making request")
        print(f"org.apache.kafka.server.common.AdminCommandFailedException: {len(failed)} "
              f"replica(s) could not be elected")
        return 1
    return 0


def main(argv: list[str] | None = None, prog: str = "kafka-leader-election.sh") -> int:
    return run_tool(build_parser(prog), argv, run, error_prefix="Error while making request\n",
                    error_stream=sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
