"""The peer: librdkafka's mock cluster, kept alive in a tiny process.

The mock cluster ships inside the confluent-kafka wheel's librdkafka. The Python
binding only starts one implicitly (`test.mock.num.brokers`) and exposes no way to
create a topic with a chosen partition count (the mock serves no CreateTopics and
auto-creates topics with 4 partitions), so this launcher calls librdkafka's C mock
API with ctypes: rd_kafka_mock_cluster_new, rd_kafka_mock_topic_create.

Protocol on stdin/stdout: prints the bootstrap address, then for each line
"<topic> <partitions>" creates the topic and prints the error code (0 = ok).
EOF on stdin ends the process.

Note what the mock is: an in-memory broker that keeps about 5 MB per partition and
drops older batches (it is a test fixture, not a store); kafkette writes every byte
to its segment files. The harness sizes the consume topic so that the mock still
holds every record.
"""
from __future__ import annotations

import ctypes
import glob
import os
import sys


def load_librdkafka():
    import confluent_kafka
    base = os.path.dirname(os.path.dirname(confluent_kafka.__file__))
    cands = glob.glob(os.path.join(base, "confluent_kafka.libs", "librdkafka*.so*"))
    if not cands:
        raise RuntimeError("librdkafka shared library not found in the confluent-kafka wheel")
    lib = ctypes.CDLL(cands[0])
    lib.rd_kafka_conf_new.restype = ctypes.c_void_p
    lib.rd_kafka_conf_set.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                      ctypes.c_char_p, ctypes.c_size_t]
    lib.rd_kafka_new.restype = ctypes.c_void_p
    lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.rd_kafka_mock_cluster_new.restype = ctypes.c_void_p
    lib.rd_kafka_mock_cluster_new.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
    lib.rd_kafka_mock_cluster_bootstraps.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_topic_create.restype = ctypes.c_int
    lib.rd_kafka_mock_topic_create.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                               ctypes.c_int]
    return lib


def main() -> int:
    lib = load_librdkafka()
    err = ctypes.create_string_buffer(512)
    conf = lib.rd_kafka_conf_new()
    lib.rd_kafka_conf_set(conf, b"log_level", b"0", err, 512)
    rk = lib.rd_kafka_new(0, conf, err, 512)  # RD_KAFKA_PRODUCER: owns the mock's thread
    if not rk:
        raise RuntimeError(err.value.decode())
    mcluster = lib.rd_kafka_mock_cluster_new(rk, 1)
    if not mcluster:
        raise RuntimeError("rd_kafka_mock_cluster_new failed")
    print(lib.rd_kafka_mock_cluster_bootstraps(mcluster).decode(), flush=True)
    for line in sys.stdin:
        name, partitions = line.split()
        print(lib.rd_kafka_mock_topic_create(mcluster, name.encode(), int(partitions), 1),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
