"""Creating the internal topics (`__consumer_offsets`, `__transaction_state`) on first
use, as Kafka does on the first FindCoordinator for a group or transactional id."""
from __future__ import annotations

from kafkette.controller.quorum import run_now
from kafkette.errors import KafkaStorageError, TopicAlreadyExistsError


def ensure_internal_topic(broker, topic: str, spec) -> bool:
    """True when `topic` exists. A single node creates it now; a cluster node asks the
    active controller in the background and answers False meanwhile, so the client is
    told COORDINATOR_NOT_AVAILABLE and retries, as Kafka answers while the topic is
    created. `spec(broker)` -> (partitions, replication factor, configs)."""
    if topic in broker.image.topics:
        return True
    partitions, rf, configs = spec(broker)
    if broker.cluster is not None:
        broker.cluster.create_topic_in_background(topic, partitions, rf, configs)
        return False
    try:
        run_now(broker.controller.create_topic(topic, partitions, rf, configs))
    except TopicAlreadyExistsError:
        pass
    except KafkaStorageError:
        # The metadata log cannot take the record (a full disk, logged there): no
        # coordinator yet, and the client retries (COORDINATOR_NOT_AVAILABLE).
        return False
    return True
