"""kafkette's error code table against kafka-python's, an independent transcription
of Kafka's `Errors` (a wrong number here silently mislabels every such error)."""
import inspect

import kafka.errors as kp_errors

from kafkette.errors import ErrorCode

# Names that differ only in spelling between the two tables.
SPELLINGS = {
    "UNKNOWN": "UNKNOWN_SERVER_ERROR", "NO_ERROR": "NONE",
    "NOT_LEADER_FOR_PARTITION": "NOT_LEADER_OR_FOLLOWER",
    "MESSAGE_SIZE_TOO_LARGE": "MESSAGE_TOO_LARGE", "INVALID_TOPIC": "INVALID_TOPIC_EXCEPTION",
    "INVALID_REPLICATION_ASSIGNMENT": "INVALID_REPLICA_ASSIGNMENT",
}


def kafka_python_codes() -> dict[int, str]:
    out = {}
    for _, cls in inspect.getmembers(kp_errors, inspect.isclass):
        errno = getattr(cls, "errno", None)
        message = getattr(cls, "message", None)
        if isinstance(errno, int) and isinstance(message, str):
            out[errno] = SPELLINGS.get(message, message)
    return out


def test_every_code_matches_kafka_python():
    theirs = kafka_python_codes()
    assert len(theirs) > 100
    mismatches = {code.value: (code.name, theirs[code.value])
                  for code in ErrorCode if code.value in theirs and theirs[code.value] != code.name}
    assert mismatches == {}


def test_no_known_code_is_missing():
    missing = sorted(set(kafka_python_codes()) - {c.value for c in ErrorCode})
    assert missing == []
