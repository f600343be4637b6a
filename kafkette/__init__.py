"""kafkette: a Kafka-wire-compatible broker in Python.

`kafkette.EmbeddedBroker` (see kafkette.embedded) is loaded lazily (PEP 562), so that
`import kafkette` stays cheap.
"""

__all__ = ["EmbeddedBroker", "EmbeddedCluster"]


def __getattr__(name: str):
    if name in ("EmbeddedBroker", "EmbeddedBrokerError"):
        from kafkette import embedded
        return getattr(embedded, name)
    if name in ("EmbeddedCluster", "ClusterNode"):
        from kafkette import embedded_cluster
        return getattr(embedded_cluster, name)
    raise AttributeError(f"module 'kafkette' has no attribute {name!r}")
