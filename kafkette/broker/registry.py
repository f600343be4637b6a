"""The handler registry: each handler module registers the API key and the version
range it serves. ApiVersions is built from this registry, never from a hand-kept
table, so what is advertised is exactly what is served."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class HandlerSpec:
    api_key: int
    min_version: int
    max_version: int
    handle: Callable
    # Versions listed in ApiVersions below min_version, answered with
    # UNSUPPORTED_VERSION (Produce v0-2, as Kafka 4.0 does: KAFKA-18659).
    advertised_min_version: int
    # Builds a response carrying one error code for a request we will not serve.
    error_response: Callable | None = None


HANDLERS: dict[int, HandlerSpec] = {}


def handler(api_key: int, min_version: int, max_version: int, *,
            advertised_min_version: int | None = None,
            error_response: Callable | None = None):
    def register(fn):
        HANDLERS[api_key] = HandlerSpec(
            api_key, min_version, max_version, fn,
            min_version if advertised_min_version is None else advertised_min_version,
            error_response)
        return fn
    return register


def load_handlers() -> dict[int, HandlerSpec]:
    # Importing the package imports every handler module, which registers it.
    import kafkette.broker.handlers  # noqa: F401
    return HANDLERS
