"""`python -m kafkette.soak`: one soak run; prints its summary, writes samples.csv and
summary.json to --out, exits 0 when every check passed, 1 on a failure, 2 when it
could not run."""
from __future__ import annotations

import argparse
import signal
import sys

from kafkette.soak.run import Options, Soak, format_summary


def parser() -> argparse.ArgumentParser:
    d = Options()
    p = argparse.ArgumentParser(prog="python -m kafkette.soak",
                                description="A long mixed run against one kafkette broker.")
    p.add_argument("--duration", type=float, default=d.duration, help="seconds of load")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--partitions", type=int, default=d.partitions)
    p.add_argument("--rate", type=float, default=d.rate,
                   help="records per second per producer (three producers)")
    p.add_argument("--members", type=int, default=d.members, help="group members at once")
    p.add_argument("--churn-min", type=float, default=d.churn_min)
    p.add_argument("--churn-max", type=float, default=d.churn_max)
    p.add_argument("--admin-interval", type=float, default=d.admin_interval)
    p.add_argument("--sample-interval", type=float, default=d.sample_interval)
    p.add_argument("--warmup", type=float, default=d.warmup,
                   help="seconds of samples left out of the flatness check")
    p.add_argument("--window", type=float, default=d.window,
                   help="share of the samples after warm-up in each compared window")
    p.add_argument("--rss-mb", type=float, default=d.rss_mb)
    p.add_argument("--rss-pct", type=float, default=d.rss_pct,
                   help="RSS may grow by max(--rss-mb, --rss-pct x baseline)")
    p.add_argument("--fds", type=float, default=d.fds, help="open fds may grow by this many")
    p.add_argument("--threads", type=float, default=d.threads)
    p.add_argument("--retention-ms", type=int, default=d.retention_ms)
    p.add_argument("--segment-bytes", type=int, default=d.segment_bytes)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a broker setting; repeatable")
    p.add_argument("--out", default=d.out, help="directory for samples.csv, summary.json "
                   "and broker.log")
    return p


def main(argv: list[str] | None = None) -> int:
    from kafkette.cluster_runner import parse_sets
    from kafkette.logging import configure_logging
    a = parser().parse_args(argv)
    configure_logging("INFO")
    try:
        o = Options(duration=a.duration, seed=a.seed, partitions=a.partitions, rate=a.rate,
                    members=a.members, churn_min=a.churn_min, churn_max=a.churn_max,
                    admin_interval=a.admin_interval, sample_interval=a.sample_interval,
                    warmup=a.warmup, window=a.window, rss_mb=a.rss_mb, rss_pct=a.rss_pct,
                    fds=a.fds, threads=a.threads, retention_ms=a.retention_ms,
                    segment_bytes=a.segment_bytes, out=a.out,
                    broker_settings=parse_sets(a.set))
    except ValueError as e:
        print(f"kafkette soak: {e}", file=sys.stderr)
        return 2
    soak = Soak(o)
    signal.signal(signal.SIGTERM, lambda *_: soak.interrupt.set())
    try:
        summary = soak.run()
    except KeyboardInterrupt:
        print("kafkette soak: interrupted", file=sys.stderr)
        return 2
    print(format_summary(summary), flush=True)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
