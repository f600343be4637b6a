"""python -m kafkette.fuzz --frames N --seed S [--start I] | --replay SEED:INDEX[,INDEX...]

Exit code 0 when the run found nothing, 1 on a finding (seed, frame index and hex are
printed), 2 on a usage error. See kafkette/fuzz/runner.py for what counts as a finding.
"""
from __future__ import annotations

import argparse
import json
import sys

from kafkette.fuzz import frames as F
from kafkette.fuzz.runner import Run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kafkette.fuzz", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--start", type=int, default=0, help="first frame index (resume a run)")
    ap.add_argument("--workers", type=int, default=16, help="connections at once")
    ap.add_argument("--max-frames-per-connection", type=int, default=8)
    ap.add_argument("--answer-timeout", type=float, default=10.0,
                    help="seconds a frame may go unanswered before it is a hang")
    ap.add_argument("--rss-limit-mb", type=int, default=300)
    ap.add_argument("--replay", metavar="SEED:INDEX[,INDEX...]",
                    help="send these frames (one connection, in order) and check as a run does")
    ap.add_argument("--linger", type=float, default=None,
                    help="seconds the healthy client goes on after the frames (replay: 3)")
    ap.add_argument("--show", metavar="SEED:INDEX", help="print one frame and exit")
    ap.add_argument("--no-response-check", action="store_true",
                    help="do not decode the answers with the generated response classes")
    ap.add_argument("--log-dir", help="keep the node's log here")
    ap.add_argument("--json", help="write the summary here")
    args = ap.parse_args(argv)
    if args.show:
        seed, index = (int(x) for x in args.show.split(":"))
        f = F.frame(seed, index)
        print(f"seed {seed} frame {index}: {f.target}, {f.source}, api key {f.api_key} "
              f"v{f.api_version}, mutations {f.mutations}\n{f.data.hex()}")
        return 0
    groups = None
    seed = args.seed
    if args.replay:
        seed_s, _, idx = args.replay.partition(":")
        seed = int(seed_s)
        frames = [F.frame(seed, int(i)) for i in idx.split(",")]
        groups = [frames]
    run = Run(seed=seed, frames=args.frames, start=args.start, workers=args.workers,
              kmax=args.max_frames_per_connection, answer_timeout=args.answer_timeout,
              rss_limit_mb=args.rss_limit_mb, check_responses=not args.no_response_check,
              keep_logs=args.log_dir, groups=groups,
              linger=args.linger if args.linger is not None else (3.0 if groups else 0.0))
    rc = run.run()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**run.summary, "findings_detail": [
                {"kind": fd.kind, "detail": fd.detail,
                 "frames": [{"seed": x.seed, "index": x.index, "hex": x.data.hex()}
                            for x in fd.frames[:4]]} for fd in run.findings]}, f, indent=1)
    return rc


if __name__ == "__main__":
    sys.exit(main())
