"""Broker metrics: a Prometheus registry owned by one broker.

Each broker gets its own `prometheus_client.CollectorRegistry` (never the global
default one), so several brokers in one process (tests, an embedded broker next to
the application's own metrics) don't clash. The server exposes it over HTTP when
`metrics.listener` is set (kafkette.server.metrics_http).

Names follow what Kafka's JMX metrics become through the usual JMX → Prometheus
exporter rules (lower-cased `domain_type_name`), so existing dashboards mostly work:

  kafka_server_brokertopicmetrics_messagesin_total{topic}   records appended
  kafka_server_brokertopicmetrics_bytesin_total{topic}      record-batch bytes appended
  kafka_server_brokertopicmetrics_bytesout_total{topic}     record-batch bytes fetched
  kafka_network_requestmetrics_requests_total{request}      requests handled, per API
  kafka_network_requestmetrics_totaltimems{request}         histogram, MILLISECONDS,
                                                            from dispatch to response
                                                            encoded (incl. a long poll)
  kafka_server_socketservermetrics_connection_count{listener}
  kafka_server_replicamanager_partitioncount
  kafka_log_log_size{topic,partition}                       bytes on disk
  kafka_log_log_logendoffset{topic,partition}
  kafka_log_log_highwatermark{topic,partition}              (kafkette extra)
  kafka_cluster_partition_followerlag{topic,partition,replica}       (kafkette extra)
  kafka_cluster_partition_followertimelagms{topic,partition,replica} (kafkette extra)
  kafka_consumergroup_lag{group,topic,partition}
  kafka_cluster_partition_laststableoffsetlag{topic,partition}
  kafka_server_transaction_coordinator_metrics_open_transactions{state} (kafkette extra)
  kafka_server_produce_byte_rate{user,client_id}     client quotas (KIP-13): the sampled
  kafka_server_fetch_byte_rate{user,client_id}       rate of each quota entity, bytes/s
  kafka_server_request_request_time{user,client_id}  (request: % of one thread)
  kafka_server_{produce,fetch,request}_throttled_requests_total{user,client_id}
  kafka_server_{produce,fetch,request}_throttle_time_ms_total{user,client_id}

Where kafkette differs from Kafka:
- Kafka's BrokerTopicMetrics are Meters (count + rates); Prometheus computes rates, so
  we export the counts only. Like Kafka (ReplicaManager.appendToLocalLog) only
  successful appends count, and a retried idempotent batch answered as a duplicate
  counts again (Kafka takes numMessages from validation, before dedup).
- messagesin is counted from the offsets an append assigned (last - base + 1), i.e.
  from the batch headers PartitionLog.append already reads: nothing per record.
- There is no messagesout in Kafka either; records fetched are not counted because
  counting them would mean decoding batches on the fetch path. Bytes only.
- Kafka splits Fetch into FetchConsumer / FetchFollower in RequestMetrics; we use the
  API name ("Fetch") until replication lands. Kafka's TotalTimeMs is a histogram
  (percentiles) in ms; ours is a Prometheus histogram in ms with fixed buckets.
- kafka_consumergroup_lag is not a Kafka broker metric: it is what kafka_exporter
  exports (it names the label `consumergroup`; we use `group`). It is computed at
  scrape time from the group coordinator's committed offsets and each local
  partition's high watermark (lag = max(0, HW - committed)): no per-request work.
- followerlag / followertimelagms are exported by a partition's leader, one series per
  follower, from the state the high watermark is computed from (Partition.followers):
  records = the leader's log end offset minus the follower's log end offset as of its
  last fetch; ms = how long ago the follower last had everything the leader had (Kafka's
  lastCaughtUpTime, the clock replica.lag.time.max.ms runs on), 0 while caught up. A
  follower that has not fetched since this broker became leader has no series. Kafka
  has no leader-side lag metric; its followers export FetcherLagMetrics ConsumerLag
  (the leader's high watermark minus the fetch offset), which cannot see a follower
  that stopped fetching.
- laststableoffsetlag is Kafka's Partition LastStableOffsetLag: the high watermark
  minus the last stable offset, i.e. how many records read_committed consumers cannot
  see yet because a transaction that starts below the high watermark is still open
  (0 when none is). As in Kafka every hosted replica exports it, follower or leader.
- open_transactions counts the transactional ids this broker coordinates (the
  `__transaction_state` partitions it leads) whose transaction is open, by state:
  Ongoing, PrepareCommit, PrepareAbort (the last two: decided, markers not all written
  yet). Kafka has no such gauge (its transaction-coordinator-metrics group has only
  partition-load-time-max/avg); the name puts it in that group. It is read at scrape
  time from the coordinator's ListTransactions answer (one pass over its ids); nothing
  is exported before the coordinator exists or while it loads a partition.
- Quota series exist only for entities that a quota applies to (Kafka keeps a sensor
  for every client); they are bounded by broker/quotas.py's MAX_SENSORS (least
  recently used dropped). Kafka's throttle-time is an average gauge; kafkette exports
  counts and a total, from which Prometheus computes both. The labels are the quota
  entity's: "" where the matched quota names no user (or no client id), as Kafka's
  metric tags.
- Per-topic series of a deleted topic stay until the broker restarts (Kafka removes
  them when the topic goes).
"""
from __future__ import annotations

from bisect import bisect_left

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from kafkette.controller.acls import RESOURCE_TYPES
from kafkette.protocol.messages import API_MESSAGES

# Milliseconds: most requests take well under 1 ms here; long polls up to max.wait.ms.
TOTAL_TIME_BUCKETS_MS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500,
                         1000, 2500, 5000, 10000, 30000)
_BUCKET_LABELS = tuple(str(float(b)) for b in TOTAL_TIME_BUCKETS_MS) + ("+Inf",)


def api_name(api_key: int) -> str:
    """Kafka's request name for an API key ("Produce", "ApiVersions", ...)."""
    msgs = API_MESSAGES.get(api_key)
    if msgs is None:
        return str(api_key)
    name = msgs[0].__name__
    return name[:-len("Request")] if name.endswith("Request") else name


class BrokerMetrics:
    """The broker's metrics. The hot path (one call per request, per appended or
    fetched partition) adds to plain Python numbers in small dicts; a collector turns
    them into Prometheus counters and a histogram at scrape time. prometheus_client's
    own Counter/Histogram take a lock per increment, which cost 5-9 % of a small
    pipelined produce in the profile (make bench); one event loop owns these numbers,
    so no lock is needed."""

    def __init__(self, broker):
        self.broker = broker
        self.registry = CollectorRegistry()
        r = self.registry
        self.connection_count = Gauge("kafka_server_socketservermetrics_connection_count",
                                      "Open client connections", ["listener"], registry=r)
        # topic -> [records in, bytes in]; topic -> [bytes out]
        self._topic_in: dict[str, list] = {}
        self._topic_out: dict[str, list] = {}
        # api key -> [count, sum of ms, per-bucket counts (not cumulative) + overflow]
        self._api: dict[int, list] = {}
        # ACL resource type (controller/acls.py) -> authorizations denied
        self._denials: dict[int, int] = {}
        r.register(_CountersCollector(self))
        r.register(_StateCollector(broker))

    # -- hot path ----------------------------------------------------------------------
    def record_request(self, api_key: int, elapsed_s: float) -> None:
        stats = self._api.get(api_key)
        if stats is None:
            stats = self._api[api_key] = [0, 0.0, [0] * (len(TOTAL_TIME_BUCKETS_MS) + 1)]
        ms = elapsed_s * 1000.0
        stats[0] += 1
        stats[1] += ms
        stats[2][bisect_left(TOTAL_TIME_BUCKETS_MS, ms)] += 1  # le: upper bound inclusive

    def record_append(self, topic: str, nbytes: int, base_offset: int, last_offset: int) -> None:
        stats = self._topic_in.get(topic)
        if stats is None:
            stats = self._topic_in[topic] = [0, 0]
        if base_offset >= 0:  # -1/-1: an empty record set, nothing appended
            stats[0] += last_offset - base_offset + 1
        stats[1] += nbytes

    def record_fetch(self, topic: str, nbytes: int) -> None:
        stats = self._topic_out.get(topic)
        if stats is None:
            stats = self._topic_out[topic] = [0]
        stats[0] += nbytes

    def record_denial(self, resource_type: int) -> None:
        self._denials[resource_type] = self._denials.get(resource_type, 0) + 1

    def forget_topic(self, topic: str) -> None:
        """A deleted topic's counters go with it, as Kafka's BrokerTopicStats.removeMetrics
        does: otherwise every topic ever created keeps its entries (and its series in
        /metrics) for the broker's lifetime."""
        self._topic_in.pop(topic, None)
        self._topic_out.pop(topic, None)

    def connection_opened(self, listener: str) -> None:
        self.connection_count.labels(listener).inc()

    def connection_closed(self, listener: str) -> None:
        self.connection_count.labels(listener).dec()


class _CountersCollector:
    """The hot-path numbers of BrokerMetrics as Prometheus families, at scrape time."""

    def __init__(self, metrics: BrokerMetrics):
        self.metrics = metrics

    def describe(self):
        return []

    def collect(self):
        m = self.metrics
        msgs = CounterMetricFamily("kafka_server_brokertopicmetrics_messagesin",
                                   "Records appended, per topic", labels=["topic"])
        bytes_in = CounterMetricFamily("kafka_server_brokertopicmetrics_bytesin",
                                       "Record batch bytes appended, per topic",
                                       labels=["topic"])
        bytes_out = CounterMetricFamily("kafka_server_brokertopicmetrics_bytesout",
                                        "Record batch bytes returned by Fetch, per topic",
                                        labels=["topic"])
        for topic, (n, b) in sorted(m._topic_in.items()):
            msgs.add_metric([topic], n)
            bytes_in.add_metric([topic], b)
        for topic, (b,) in sorted(m._topic_out.items()):
            bytes_out.add_metric([topic], b)
        requests = CounterMetricFamily("kafka_network_requestmetrics_requests",
                                       "Requests handled, per API", labels=["request"])
        total = HistogramMetricFamily("kafka_network_requestmetrics_totaltimems",
                                      "Time from dispatch to encoded response, in milliseconds",
                                      labels=["request"])
        for api_key, (count, sum_ms, per_bucket) in sorted(m._api.items()):
            name = api_name(api_key)
            requests.add_metric([name], count)
            cumulative, running = [], 0
            for label, c in zip(_BUCKET_LABELS, per_bucket):
                running += c
                cumulative.append((label, running))
            total.add_metric([name], cumulative, sum_ms)
        # Kafka's StandardAuthorizer has authorization-denied-rate-per-minute (KIP-801)
        # without a resource type; a counter by type says which ACLs are missing.
        denials = CounterMetricFamily("kafkette_authorizer_denied",
                                      "Authorizations the ACLs denied, per resource type",
                                      labels=["resource_type"])
        for rt, n in sorted(m._denials.items()):
            denials.add_metric([RESOURCE_TYPES.get(rt, str(rt))], n)
        yield from (msgs, bytes_in, bytes_out, requests, total, denials)
        yield from _quota_families(m.broker)


class _StateCollector:
    """Gauges read from the broker's state at scrape time."""

    def __init__(self, broker):
        self.broker = broker

    def describe(self):
        return []  # names are dynamic; don't let register() call collect()

    def collect(self):
        broker = self.broker
        rm = getattr(broker, "replica_manager", None)
        partitions = dict(rm.partitions) if rm is not None else {}
        count = GaugeMetricFamily("kafka_server_replicamanager_partitioncount",
                                  "Partitions hosted by this broker")
        count.add_metric([], len(partitions))
        size = GaugeMetricFamily("kafka_log_log_size", "Log size in bytes",
                                 labels=["topic", "partition"])
        leo = GaugeMetricFamily("kafka_log_log_logendoffset", "Log end offset",
                                labels=["topic", "partition"])
        hwm = GaugeMetricFamily("kafka_log_log_highwatermark", "High watermark",
                                labels=["topic", "partition"])
        flag = GaugeMetricFamily("kafka_cluster_partition_followerlag",
                                 "Leader's log end offset minus a follower's, as of the "
                                 "follower's last fetch (on the leader)",
                                 labels=["topic", "partition", "replica"])
        ftime = GaugeMetricFamily("kafka_cluster_partition_followertimelagms",
                                  "Milliseconds since a follower last had the leader's "
                                  "whole log, 0 while caught up (on the leader)",
                                  labels=["topic", "partition", "replica"])
        lso_lag = GaugeMetricFamily("kafka_cluster_partition_laststableoffsetlag",
                                    "High watermark minus last stable offset: records "
                                    "read_committed consumers wait for",
                                    labels=["topic", "partition"])
        now_ms = rm.clock.monotonic_ms() if rm is not None else 0
        hws = {}
        for (topic, index), part in sorted(partitions.items()):
            plog = part.log
            labels = [topic, str(index)]
            size.add_metric(labels, plog.size_bytes)
            leo.add_metric(labels, plog.log_end_offset)
            hws[(topic, index)] = hw = part.high_watermark
            hwm.add_metric(labels, hw)
            lso_lag.add_metric(labels, max(0, hw - part.last_stable_offset))
            if part.is_leader:
                end = plog.log_end_offset
                for replica, f in sorted(part.followers.items()):
                    if f.log_end_offset < 0:
                        continue  # not fetched since this broker became leader
                    rl = labels + [str(replica)]
                    flag.add_metric(rl, max(0, end - f.log_end_offset))
                    ftime.add_metric(rl, 0 if f.log_end_offset >= end
                                     else max(0, now_ms - f.last_caught_up_ms))
        lag = GaugeMetricFamily("kafka_consumergroup_lag",
                                "Records between a group's committed offset and the high "
                                "watermark", labels=["group", "topic", "partition"])
        # Never create the coordinator (and __consumer_offsets) just to be scraped.
        coordinator = getattr(broker, "_group_coordinator", None)
        if coordinator is not None:
            for group_id, group in sorted(coordinator.groups.items()):
                for (topic, index), om in sorted(group.offsets.items()):
                    hw = hws.get((topic, index))
                    if hw is None or om.offset < 0:
                        continue  # not hosted here, or no real position
                    lag.add_metric([group_id, topic, str(index)], max(0, hw - om.offset))
        yield from (count, size, leo, hwm, lso_lag, flag, ftime, lag)
        yield from _open_transactions(broker)


_QUOTA_TYPES = (("producer_byte_rate", "produce", "byte_rate", "Produce bytes per second"),
                ("consumer_byte_rate", "fetch", "byte_rate", "Fetched bytes per second"),
                ("request_percentage", "request", "request_time",
                 "Request handler time, percent of one thread"))


def _quota_families(broker):
    quotas = getattr(broker, "quotas", None)
    if quotas is None:
        return
    labels = ["user", "client_id"]
    rates, counts, totals = {}, {}, {}
    for key, kind, rate_name, help_text in _QUOTA_TYPES:
        rates[key] = GaugeMetricFamily(f"kafka_server_{kind}_{rate_name}", help_text,
                                       labels=labels)
        counts[key] = CounterMetricFamily(f"kafka_server_{kind}_throttled_requests",
                                          "Requests throttled by a client quota",
                                          labels=labels)
        totals[key] = CounterMetricFamily(f"kafka_server_{kind}_throttle_time_ms",
                                          "Throttle time given by a client quota, ms",
                                          labels=labels)
    for (key, user, client), value in sorted(quotas.rates(broker.clock.monotonic_ms())):
        rates[key].add_metric([user, client], value)
    for (key, user, client), (n, ms) in sorted(quotas.throttled.items()):
        counts[key].add_metric([user, client], n)
        totals[key].add_metric([user, client], ms)
    for key, *_ in _QUOTA_TYPES:
        yield from (rates[key], counts[key], totals[key])


#: The states of a transaction that has begun and is not complete (Kafka's
#: TransactionState; PrepareEpochFence is only ever a pending state, never listed).
OPEN_TXN_STATES = ("Ongoing", "PrepareCommit", "PrepareAbort")


def _open_transactions(broker):
    # Never create the coordinator (and __transaction_state) just to be scraped.
    coordinator = getattr(broker, "_txn_coordinator", None)
    if coordinator is None:
        return
    listed = coordinator.list_transactions(list(OPEN_TXN_STATES), [])
    if listed.error_code != 0:
        return  # loading a partition: no partial count
    counts = dict.fromkeys(OPEN_TXN_STATES, 0)
    for t in listed:
        counts[t.state] = counts.get(t.state, 0) + 1
    fam = GaugeMetricFamily("kafka_server_transaction_coordinator_metrics_open_transactions",
                            "Open transactions of the transactional ids this broker "
                            "coordinates, by state", labels=["state"])
    for state, n in counts.items():
        fam.add_metric([state], n)
    yield fam
