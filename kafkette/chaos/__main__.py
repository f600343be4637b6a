"""`python -m kafkette.chaos`: run one fault campaign, print its summary, exit 0 when
no violation was found, 1 on any violation, 2 when the campaign could not run."""
from __future__ import annotations

import argparse
import json
import signal
import sys

from kafkette.chaos.campaign import FAULT_KINDS, Campaign, CampaignError, Options, format_summary


def parser() -> argparse.ArgumentParser:
    d = Options()
    p = argparse.ArgumentParser(prog="python -m kafkette.chaos",
                                description="A replication fault campaign against a cluster "
                                            "of real kafkette processes.")
    p.add_argument("--seed", type=int, default=d.seed, help="fixes every choice of faults")
    p.add_argument("--rounds", type=int, default=d.rounds, help="one fault per round")
    p.add_argument("--brokers", type=int, default=d.brokers)
    p.add_argument("--partitions", type=int, default=d.partitions)
    p.add_argument("--replication-factor", type=int, default=d.replication_factor)
    p.add_argument("--min-insync-replicas", type=int, default=d.min_insync_replicas)
    p.add_argument("--producers", type=int, default=d.producers)
    p.add_argument("--consumers", type=int, default=d.consumers)
    p.add_argument("--keys", type=int, default=d.keys)
    p.add_argument("--rate", type=float, default=d.rate,
                   help="messages per second per producer")
    p.add_argument("--faults", default=",".join(d.faults),
                   help=f"fault kinds, comma separated ({','.join(FAULT_KINDS)})")
    p.add_argument("--network", choices=("auto", "netns", "loopback"), default=d.network,
                   help="netns: every node in its own network namespace, which network "
                        "partitions need (root, ip, iptables); auto: netns when possible")
    p.add_argument("--replica-lag-time-max-ms", type=int, default=d.replica_lag_time_max_ms)
    p.add_argument("--message-timeout-ms", type=int, default=d.message_timeout_ms)
    p.add_argument("--max-seconds", type=float, default=d.max_seconds,
                   help="stop injecting faults after this long")
    p.add_argument("--recovery-timeout", type=float, default=d.recovery_timeout)
    p.add_argument("--isr-timeout", type=float, default=d.isr_timeout)
    p.add_argument("--drain-timeout", type=float, default=d.drain_timeout)
    p.add_argument("--transactional-producers", type=int, default=d.transactional_producers,
                   help="producers with a transactional.id each, on their own topic, checked "
                        "by a read_committed consumer and drains (0: none)")
    p.add_argument("--txn-rate", type=float, default=d.txn_rate,
                   help="transactions per second per transactional producer")
    p.add_argument("--txn-abort-ratio", type=float, default=d.txn_abort_ratio,
                   help="the share of transactions aborted on purpose")
    p.add_argument("--transaction-timeout-ms", type=int, default=d.transaction_timeout_ms)
    p.add_argument("--lso-timeout", type=float, default=d.lso_timeout,
                   help="at the end: how long every last stable offset may take to reach "
                        "its high watermark")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a broker setting for every node; repeatable")
    p.add_argument("--keep", metavar="DIR", help="keep data dirs and node logs in DIR "
                   "(they are kept in a temporary directory on failure anyway)")
    p.add_argument("--json", metavar="FILE", help="write the summary as JSON ('-': stdout)")
    return p


def options_from_args(args: argparse.Namespace) -> Options:
    from kafkette.cluster_runner import parse_sets
    faults = tuple(k.strip() for k in args.faults.split(",") if k.strip())
    return Options(seed=args.seed, rounds=args.rounds, brokers=args.brokers,
                   partitions=args.partitions, replication_factor=args.replication_factor,
                   min_insync_replicas=args.min_insync_replicas, producers=args.producers,
                   consumers=args.consumers, keys=args.keys, rate=args.rate, faults=faults,
                   network=args.network, replica_lag_time_max_ms=args.replica_lag_time_max_ms,
                   message_timeout_ms=args.message_timeout_ms, max_seconds=args.max_seconds,
                   recovery_timeout=args.recovery_timeout, isr_timeout=args.isr_timeout,
                   drain_timeout=args.drain_timeout,
                   transactional_producers=args.transactional_producers,
                   txn_rate=args.txn_rate, txn_abort_ratio=args.txn_abort_ratio,
                   transaction_timeout_ms=args.transaction_timeout_ms,
                   lso_timeout=args.lso_timeout, sets=parse_sets(args.set),
                   keep=args.keep, json=args.json)


def main(argv: list[str] | None = None) -> int:
    from kafkette.logging import configure_logging
    args = parser().parse_args(argv)
    configure_logging("INFO")
    try:
        options = options_from_args(args)
        campaign = Campaign(options)
    except ValueError as e:
        print(f"kafkette chaos: {e}", file=sys.stderr)
        return 2

    def on_signal(signum, _frame):
        campaign.interrupt.set()
    signal.signal(signal.SIGTERM, on_signal)
    try:
        summary = campaign.run()
    except CampaignError as e:
        print(f"kafkette chaos: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kafkette chaos: interrupted", file=sys.stderr)
        return 2
    if options.json == "-":
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary), flush=True)
        if options.json:
            with open(options.json, "w") as f:
                json.dump(summary, f, indent=2)
                f.write("\n")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
