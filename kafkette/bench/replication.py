"""The `replication` suite: one real 3-node kafkette cluster (separate `python -m kafkette
serve` processes with Kafka's defaults, as `kafkette cluster --brokers 3` starts them),
measured in one run.

Rows (medians over --repeat unless said otherwise):

- repl_produce_rec_s / _mb_s: the produce suite's confluent-kafka producer (--records x
  100 B, linger.ms=5, 6 partitions, default partitioner) to a topic with replication
  factor 3, min.insync.replicas=2 and acks=all, next to the same producer to an RF 1
  topic with acks=1 on the same cluster. Both topics have their 6 leaders spread over
  the 3 nodes. Ratio = RF3 acks=all / RF1 acks=1; the goal is >= 0.5. The two runs
  alternate which goes first from repeat to repeat, so drift on a shared machine does
  not always hit the same one.
- repl_lag_records_p50/p99/max and repl_lag_ms_p50/p99/max: follower lag during the
  timed RF3 acks=all produce, sampled from every node's /metrics every
  --lag-interval-ms. Each partition's leader exports one series per follower
  (kafkette.broker.metrics): records = the leader's log end offset minus the follower's
  log end offset as of the follower's last fetch; ms = time since the follower last had
  all the leader had (Kafka's lastCaughtUpTime: the clock replica.lag.time.max.ms runs
  on), 0 while caught up. This is the state the leader advances the high watermark
  from, i.e. what an acks=all produce waits on: a real quantity, not an estimate. The
  percentiles are over all (sample, partition, follower) points of all runs; a
  sampled gauge misses spikes shorter than the interval, so max is a lower bound. The
  same sampler runs during the RF1 produce too, so its cost is in both throughputs.
  Caveat of the ms figure (Kafka's rule, kept as is): a follower whose fetch was
  parked at the leader's log end counts as caught up at the time the fetch *started*,
  so in the first fetch round after an idle spell (the start of a run) it reads up to
  replica.fetch.wait.max.ms (500 ms) too high; the records figure has no such
  artefact. Those points are rare (p50 is unaffected) but can be the max.
- failover_ms: an idempotent acks=all producer (linger.ms=5) sends --failover-rate
  records/s to one partition of an RF 3, min.insync.replicas=2 topic whose leader is
  not the active controller (so the figure is a partition failover, not a controller
  election too); after a steady second the leader gets kill -9. failover_ms = from
  just before the kill to the first acknowledgement of a record at an offset written
  by the next leader (the first offset whose batch carries a newer leader epoch, read
  back): acknowledgements of the old leader still in the socket do not count. With
  Kafka's defaults the bound is broker.session.timeout.ms (the controller fences the
  dead broker when its heartbeats stop), reported in the notes and the JSON config.
  The killed node is restarted between repeats.
- failover_lost / failover_dup (sum over the runs): the partition read back from the
  start to its high watermark after the failover; lost = acknowledged sequence numbers
  missing, dup = records read more than once. Both must be 0.
"""
from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request

from kafkette.bench.harness import Results, progress, run_worker, topic_name
from kafkette.bench.histogram import LogHistogram
from kafkette.bench.targets import PY, KafketteCluster

RF3 = "RF3 acks=all"
RF1 = "RF1 acks=1"
PARTITIONS = 6
LAG_RECORDS = ("kafka_cluster_partition_followerlag", "records")
LAG_MS = ("kafka_cluster_partition_followertimelagms", "ms")


def session_timeout_ms(cluster_config: dict) -> int:
    """broker.session.timeout.ms the cluster runs with: the --set value, else kafkette's
    default (what `kafkette cluster` uses)."""
    from kafkette.config import BROKER_CONFIGS
    v = cluster_config.get("broker.session.timeout.ms")
    return int(v) if v is not None else int(BROKER_CONFIGS["broker.session.timeout.ms"].default)


class LagSampler:
    """A thread that scrapes every node's /metrics each `interval` s and keeps the
    follower-lag gauges of `topic` while `recording` is set."""

    def __init__(self, kc: KafketteCluster, interval: float):
        self.urls = [kc.metrics_url(n.node_id) for n in kc.cluster.brokers]
        self.interval = interval
        self.topic: str | None = None
        self.samples = {LAG_RECORDS[1]: [], LAG_MS[1]: []}
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-sampler", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def scrape(self, topic: str | None) -> dict[str, list[float]]:
        """One scrape of every node: kind -> the lag values of `topic`'s followers."""
        got = {LAG_RECORDS[1]: [], LAG_MS[1]: []}
        for url in self.urls:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    text = r.read().decode()
            except OSError:
                continue  # a node being killed or restarted
            self.scrapes += 1
            if topic is None:
                continue
            mark = f'topic="{topic}"'
            for line in text.splitlines():
                for name, kind in (LAG_RECORDS, LAG_MS):
                    if line.startswith(name + "{") and mark in line:
                        got[kind].append(float(line.rsplit(" ", 1)[1]))
        return got

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            topic = self.topic
            got = self.scrape(topic)
            if topic is not None and topic == self.topic:
                for kind, values in got.items():
                    self.samples[kind].extend(values)


def _produce(kc, topic: str, acks: str, records: int) -> float:
    r = run_worker("produce", {"bootstrap": kc.bootstrap, "topic": topic,
                               "records": records, "acks": acks})
    if r["errors"] or r["undelivered"]:
        raise RuntimeError(f"replication produce acks={acks}: {r['errors']} delivery errors "
                           f"{r['first_error']}, {r['undelivered']} undelivered")
    return records / r["seconds"]


def _throughput(args, kc: KafketteCluster, res: Results) -> None:
    lag = {k: [] for k in (LAG_RECORDS[1], LAG_MS[1])}
    with LagSampler(kc, args.lag_interval_ms / 1000) as sampler:
        for i in range(args.repeat):
            rf1, rf3 = topic_name("rf1"), topic_name("rf3")
            kc.create_topic(rf1, PARTITIONS, 1)
            kc.create_topic(rf3, PARTITIONS, 3, {"min.insync.replicas": 2})
            # Steady state before the clock starts: every follower has fetched from
            # its leader (its lag series exists), else the first samples measure how
            # long a new follower takes to start fetching, not replication.
            kc.cluster.wait_for(
                lambda: len(sampler.scrape(rf3)[LAG_RECORDS[1]]) == 2 * PARTITIONS, 30,
                f"{rf3}: every follower to fetch from its leader")
            order = [(RF1, rf1, "1"), (RF3, rf3, "all")]
            if i % 2:
                order.reverse()
            for name, topic, acks in order:
                progress(f"kafkette cluster: produce {name} run {i + 1}/{args.repeat} "
                         f"({args.records:,} x 100 B, {PARTITIONS} partitions)")
                sampler.topic = topic if name == RF3 else None
                before = {k: len(v) for k, v in sampler.samples.items()}
                rate = _produce(kc, topic, acks, args.records)
                sampler.topic = None
                res.add("repl_produce_rec_s", name, rate)
                res.add("repl_produce_mb_s", name, rate * 100 / 1e6)
                if name == RF3:
                    for k, v in sampler.samples.items():
                        lag[k].extend(v[before[k]:])
    for kind, values in lag.items():
        if not values:
            res.notes.append(f"replication: no follower-lag samples ({kind}); the run was "
                             f"shorter than --lag-interval-ms")
            continue
        h = LogHistogram()
        for v in values:
            h.record(int(v))
        for p, q in (("p50", 50), ("p99", 99)):
            res.add(f"repl_lag_{kind}_{p}", RF3, h.percentile(q))
        res.add(f"repl_lag_{kind}_max", RF3, max(values))
    if lag[LAG_RECORDS[1]]:
        res.add("repl_lag_samples", RF3, len(lag[LAG_RECORDS[1]]))


def _failover_once(args, kc: KafketteCluster, res: Results, run: int) -> None:
    cluster = kc.cluster
    topic = topic_name("failover")
    kc.create_topic(topic, 3, 3, {"min.insync.replicas": 2})
    controller = cluster.controller_id()
    # Wait for a full ISR: a follower outside it would make min.insync.replicas=2 with
    # one node down depend on which node we kill.
    cluster.wait_for(lambda: all(len(st.isr) == 3 for st in
                                 cluster.partition_states(topic).values()),
                     30, f"{topic}: every partition's ISR to have 3 replicas")
    states = cluster.partition_states(topic)
    part = next((p for p, st in sorted(states.items()) if st.leader != controller),
                min(states))
    leader, epoch = states[part].leader, states[part].leader_epoch
    if leader == controller:
        res.notes.append(f"failover run {run}: every leader was the active controller; "
                         "the figure includes a controller election")
    progress(f"kafkette cluster: failover run {run}/{args.repeat}: {topic}-{part}, leader "
             f"{leader} (controller {controller}), {args.failover_rate:,} rec/s acks=all "
             f"idempotent; kill -9 of node {leader}")
    prod = subprocess.Popen(
        [PY, "-m", "kafkette.bench.workers", "failover_produce",
         json.dumps({"bootstrap": kc.bootstrap, "topic": topic, "partition": part,
                     "rate": args.failover_rate, "warmup": 1.0, "tail": 1.0,
                     "deadline": 3 * _session_s(kc) + 90})],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = prod.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"failover producer: {line!r} {prod.stderr.read()[-3000:]}")
        node = cluster.node(leader)
        t_kill = time.monotonic_ns()
        node.kill()
        prod.stdin.write(f"killed {t_kill}\n")
        prod.stdin.flush()
        out, err = prod.communicate(timeout=3 * _session_s(kc) + 150)
    finally:
        if prod.poll() is None:
            prod.kill()
            prod.wait()
    if prod.returncode != 0:
        raise RuntimeError(f"failover producer failed: {err[-3000:]}")
    r = json.loads(out.strip().splitlines()[-1])
    if r["undelivered"] or r["errors"]:
        # Not fatal: an unacknowledged record is not a lost one; say so in the notes.
        res.notes.append(f"failover run {run}: {r['errors']} delivery errors "
                         f"{r['first_error']}, {r['undelivered']} undelivered")
    back = run_worker("readback", {"bootstrap": kc.bootstrap, "topic": topic,
                                   "partition": part}, timeout=300)
    records = back["records"]
    new_epoch_start = min((off for off, _seq, ep in records if ep is not None and ep > epoch),
                          default=None)
    if new_epoch_start is not None:
        after = [ns for _seq, off, ns in r["acks"] if off >= new_epoch_start]
    else:
        # No epochs in the records read back (an old client): the first ack of a record
        # produced after the kill, an upper bound.
        res.notes.append(f"failover run {run}: no leader epoch in the records read back; "
                         "failover_ms is up to the first ack of a record produced after "
                         "the kill")
        after = [ns for seq, _off, ns in r["acks"] if seq >= r["kill_seq"]]
    if not after:
        raise RuntimeError(f"failover run {run}: no record acknowledged after the kill "
                           f"of node {leader}")
    res.add("failover_ms", RF3, (min(after) - t_kill) / 1e6)
    acked = {seq for seq, _off, _ns in r["acks"]}
    read = [seq for _off, seq, _ep in records]
    res.add("failover_lost", RF3, len(acked - set(read)))
    res.add("failover_dup", RF3, len(read) - len(set(read)))
    res.add("failover_acked", RF3, len(acked))
    # Back to 3 nodes for the next run (same ports and data dir).
    errors = cluster.restore()
    if errors:
        raise errors[0]
    cluster.wait_ready(timeout=60)


def _session_s(kc: KafketteCluster) -> float:
    return session_timeout_ms(kc.config) / 1000


def suite_replication(args, res: Results) -> None:
    config = {}
    if args.session_timeout_ms is not None:
        config["broker.session.timeout.ms"] = args.session_timeout_ms
    progress("kafkette cluster: starting 3 nodes (kafkette cluster defaults)")
    with KafketteCluster(3, config) as kc:
        st = session_timeout_ms(config)
        res.config["broker.session.timeout.ms"] = st
        res.notes.append(f"replication: 3-node cluster with `kafkette cluster` settings, "
                         f"broker.session.timeout.ms={st}; follower lag sampled every "
                         f"{args.lag_interval_ms} ms from the leaders' /metrics")
        _throughput(args, kc, res)
        for i in range(args.repeat):
            _failover_once(args, kc, res, i + 1)
