"""CreateTopics (key 19), versions 2-7.

Validation as Kafka: name rules → INVALID_TOPIC_EXCEPTION, an existing name →
TOPIC_ALREADY_EXISTS, partitions <= 0 → INVALID_PARTITIONS, replication factor
above the live brokers → INVALID_REPLICATION_FACTOR, bad configs → INVALID_CONFIG,
a name twice in one request → INVALID_REQUEST for it. validate_only checks
everything and creates nothing. v5+ answers with the partition count, replication
factor and every effective config of the topic.

The topic is usable as soon as the response is sent: the controller commits the
records and the replica manager creates the logs before this returns (some brokers
answer first, and clients then see UNKNOWN_TOPIC_OR_PARTITION: rskafka #150). On a
single node, thousands of new logs are created in slices that let the other connections
be served (broker/replica_manager.py, HOST_SLICE); the answer waits for the last slice,
up to the request's timeout_ms. In a cluster the answer comes from the active controller
once the records are committed, as in Kafka, and each broker creates its logs when it
applies them.
Replicas are placed rack-aware by the controller; manual replica assignments are
checked there as KRaft does (INVALID_REPLICA_ASSIGNMENT, and INVALID_REQUEST when
num_partitions or replication_factor is not -1 beside them).
"""
from collections import Counter

from kafkette.broker import authorization as authz
from kafkette.controller.acls import CREATE, DESCRIBE_CONFIGS, TOPIC
from kafkette.broker.handlers.common import error_of
from kafkette.broker.handlers.describe_configs import topic_config_entries
from kafkette.broker.registry import ROUTE_CONTROLLER, handler
from kafkette.config import describe_topic_configs
from kafkette.errors import ErrorCode, KafkaError
from kafkette.logging import get_logger
from kafkette.protocol.messages import CreateTopicsResponse

log = get_logger("kafkette.create_topics")
Result = CreateTopicsResponse.CreatableTopicResult
ConfigResult = CreateTopicsResponse.CreatableTopicResult.CreatableTopicConfigs


def _error_response(request, code, ctx, message=None):
    return CreateTopicsResponse(topics=[
        Result(name=t.name, error_code=code, error_message=message, num_partitions=-1,
               replication_factor=-1, configs=None) for t in request.topics])


# Sent to the active controller by the broker that receives it (broker/cluster.py); the
# error response is what the client gets when no controller could serve it.
@handler(19, 2, 7, route=ROUTE_CONTROLLER, error_response=_error_response)
async def handle(ctx, request):
    broker = ctx.broker
    controller = broker.controller
    counts = Counter(t.name for t in request.topics)
    # KafkaApis: CREATE on the cluster, or else on each topic (TOPIC_AUTHORIZATION_FAILED);
    # the configs are returned only with DESCRIBE_CONFIGS on the topic.
    create_all = authz.authorize_cluster(ctx, CREATE)
    results = []
    for t in request.topics:
        res = Result(name=t.name, error_code=0, num_partitions=-1, replication_factor=-1,
                     configs=None)
        try:
            if not create_all and not authz.authorize(ctx, CREATE, TOPIC, t.name):
                raise KafkaError("Topic authorization failed.",
                                 ErrorCode.TOPIC_AUTHORIZATION_FAILED)
            if counts[t.name] > 1:
                raise KafkaError(f"Create topics request from client `{ctx.header.client_id}` "
                                 f"contains multiple entries for the following topics: {t.name}",
                                 ErrorCode.INVALID_REQUEST)
            num_partitions, rf = t.num_partitions, t.replication_factor
            configs = {c.name: c.value for c in t.configs}
            await controller.create_topic(
                t.name, num_partitions, rf, configs, validate_only=request.validate_only,
                default_partitions=broker.config["num.partitions"],
                default_replication_factor=broker.config["default.replication.factor"],
                assignments=[(a.partition_index, a.broker_ids) for a in t.assignments])
            if t.assignments:
                num_partitions, rf = len(t.assignments), len(t.assignments[0].broker_ids)
            if num_partitions == -1:
                num_partitions = broker.config["num.partitions"]
            if rf == -1:
                rf = broker.config["default.replication.factor"]
            res.num_partitions, res.replication_factor = num_partitions, rf
            topic = broker.image.topics.get(t.name)
            if topic is not None:
                res.topic_id = topic.topic_id
            if ctx.api_version >= 5 and not authz.authorize(ctx, DESCRIBE_CONFIGS, TOPIC, t.name):
                res.topic_config_error_code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            elif ctx.api_version >= 5:
                entries = (topic_config_entries(broker, t.name) if topic is not None else
                           describe_topic_configs(broker.config, configs))
                res.configs = [ConfigResult(name=e.name, value=e.value, read_only=e.read_only,
                                            config_source=e.source_code,
                                            is_sensitive=e.sensitive)
                               for e in entries]
        except KafkaError as e:
            code, msg = error_of(e)
            res.error_code, res.error_message = code, msg
            res.num_partitions = res.replication_factor = -1
            res.configs = None
            res.topic_config_error_code = 0
        results.append(res)
    if broker.cluster is None and not request.validate_only:
        await broker.replica_manager.wait_hosted(max(request.timeout_ms, 0) / 1000)
    return CreateTopicsResponse(topics=results)
