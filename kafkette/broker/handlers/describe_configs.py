"""DescribeConfigs (key 32), versions 1-4.

Topic resources (type 2): every topic config kafkette knows, with its effective
value and source — DYNAMIC_TOPIC_CONFIG for the topic's own overrides,
DYNAMIC_BROKER_CONFIG / DYNAMIC_DEFAULT_BROKER_CONFIG where a dynamic broker config
(AlterConfigs on a BROKER resource) sets the default, STATIC_BROKER_CONFIG where the
broker's config file does, DEFAULT_CONFIG otherwise — plus synonyms when asked (v1+)
and the type (v3+). Broker resources (type 4): for this node's id every broker config
with its effective value and source (dynamic keys are not read-only); for "" (the
cluster-wide default) only the dynamic defaults that are set, as Kafka's ConfigHelper.
Broker loggers (type 8) are not supported (INVALID_REQUEST).
"""
from kafkette.broker.handlers.alter_configs import config_authorized
from kafkette.controller.acls import DESCRIBE_CONFIGS
from kafkette.broker.handlers.alter_configs import NODE_ID
from kafkette.broker.registry import handler
from kafkette.config import CONFIG_SOURCE_CODES, describe_topic_configs
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import DescribeConfigsResponse

Result = DescribeConfigsResponse.DescribeConfigsResult
Entry = DescribeConfigsResponse.DescribeConfigsResult.DescribeConfigsResourceResult
Synonym = Entry.DescribeConfigsSynonym
TOPIC, BROKER, BROKER_LOGGER = 2, 4, 8


def topic_config_entries(broker, name: str, names=None):
    t = broker.image.topics.get(name)
    overrides = dict(t.configs) if t is not None else {}
    return describe_topic_configs(broker.config, overrides, names)


def _entries(entries, include_synonyms: bool, include_docs: bool):
    return [Entry(name=e.name, value=e.value, read_only=e.read_only, is_default=e.is_default,
                  config_source=e.source_code, is_sensitive=e.sensitive,
                  synonyms=[Synonym(name=s.name, value=s.value,
                                    source=_source_code(s.source)) for s in e.synonyms]
                  if include_synonyms else [],
                  config_type=e.type_code,
                  documentation=e.documentation if include_docs else None)
            for e in entries]


def _source_code(source: str) -> int:
    return CONFIG_SOURCE_CODES[source]


@handler(32, 1, 4)
def handle(ctx, request):
    broker = ctx.broker
    results = []
    for res in request.resources:
        r = Result(error_code=0, resource_type=res.resource_type,
                   resource_name=res.resource_name, configs=[])
        keys = res.configuration_keys
        denied = config_authorized(ctx, DESCRIBE_CONFIGS, res.resource_type, res.resource_name)
        if denied:
            r.error_code = denied
        elif res.resource_type == TOPIC:
            if res.resource_name not in broker.image.topics:
                r.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                r.error_message = f"Topic {res.resource_name} does not exist"
            else:
                r.configs = _entries(topic_config_entries(broker, res.resource_name, keys),
                                     request.include_synonyms, request.include_documentation)
        elif res.resource_type == BROKER:
            name = res.resource_name
            if name == "":
                r.configs = _entries(broker.config.describe_dynamic_default(keys),
                                     request.include_synonyms, request.include_documentation)
            elif not NODE_ID.fullmatch(name):
                r.error_code = ErrorCode.INVALID_REQUEST
                r.error_message = f"Broker id must be an integer, but it is: {name}"
            elif int(name) != broker.node_id:
                r.error_code = ErrorCode.INVALID_REQUEST
                r.error_message = (f"Unexpected broker id, expected {broker.node_id} or empty "
                                   f"string, but received {name}")
            else:
                r.configs = _entries(broker.config.describe(keys), request.include_synonyms,
                                     request.include_documentation)
        else:
            r.error_code = ErrorCode.INVALID_REQUEST
            r.error_message = f"Unsupported resource type {res.resource_type}"
        results.append(r)
    return DescribeConfigsResponse(results=results)
