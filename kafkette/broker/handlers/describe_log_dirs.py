"""DescribeLogDirs (key 35), versions 1-4 (Kafka 4.0 removed v0, KIP-896; a v0
request closes the connection, since its response has no error field to refuse it).

One result per directory of log.dirs, with its absolute path. An online directory
has error NONE and, for each partition it holds that was asked for (null topics = all),
its size in bytes (the sum of its segment files), offset_lag as Kafka's
ReplicaManager.getLogEndOffsetLag computes it for a current replica (the high watermark
minus the log end offset, at least 0: a follower's log end never trails its own high
watermark, so this is 0 unless its log was cut below it) and is_future_key false
(there are no future replicas, as there is no AlterReplicaLogDirs). Each broker
answers for the replicas it hosts, leaders and followers alike. v4+ adds the file
system's total and usable bytes (os.statvfs; Kafka's FileStore getTotalSpace /
getUsableSpace). A directory taken offline by an I/O error (KIP-112,
kafkette.log.log_dirs) answers KAFKA_STORAGE_ERROR with no topics and -1 sizes, as
Kafka does. Topics or partitions this broker
does not host are left out, as Kafka does. The metadata log (__cluster_metadata) is
not a partition and is not listed, as in Kafka where it lives in metadata.log.dir.
"""
import os

from kafkette.broker import authorization as authz
from kafkette.controller.acls import DESCRIBE
from kafkette.errors import ErrorCode
from kafkette.broker.registry import handler
from kafkette.protocol.messages import DescribeLogDirsResponse

Result = DescribeLogDirsResponse.DescribeLogDirsResult
Topic = Result.DescribeLogDirsTopic
Partition = Topic.DescribeLogDirsPartition
LONG_MAX = 2**63 - 1


@handler(35, 1, 4)
def handle(ctx, request):
    broker = ctx.broker
    if not authz.authorize_cluster(ctx, DESCRIBE):   # KafkaApis: DESCRIBE on the cluster
        return DescribeLogDirsResponse(throttle_time_ms=0,
                                       error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
                                       results=[])
    wanted = None
    if request.topics is not None:
        wanted = {}
        for t in request.topics:
            wanted.setdefault(t.topic, set()).update(t.partitions)
    manager = broker.replica_manager.log_manager
    by_dir: dict[str, dict[str, list]] = {d: {} for d in manager.log_dirs}
    for (topic, index), part in sorted(broker.replica_manager.partitions.items()):
        if wanted is not None and index not in wanted.get(topic, ()):
            continue
        topics = by_dir.get(part.log.log_dir)
        if topics is None or part.log.offline:
            continue
        topics.setdefault(topic, []).append(Partition(
            partition_index=index, partition_size=part.log.size_bytes,
            offset_lag=max(part.high_watermark - part.log_end_offset, 0),
            is_future_key=False))
    results = []
    for log_dir, topics in by_dir.items():
        if manager.failure_channel.is_offline(log_dir):
            results.append(Result(error_code=ErrorCode.KAFKA_STORAGE_ERROR, log_dir=log_dir,
                                  topics=[], total_bytes=-1, usable_bytes=-1))
            continue
        try:
            st = os.statvfs(log_dir)
            total = min(st.f_blocks * st.f_frsize, LONG_MAX)
            usable = min(st.f_bavail * st.f_frsize, LONG_MAX)
        except OSError:
            total = usable = -1
        results.append(Result(error_code=0, log_dir=log_dir,
                              topics=[Topic(name=name, partitions=parts)
                                      for name, parts in topics.items()],
                              total_bytes=total, usable_bytes=usable))
    return DescribeLogDirsResponse(throttle_time_ms=0, error_code=0, results=results)
