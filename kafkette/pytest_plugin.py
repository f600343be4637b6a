"""pytest plugin: a kafkette broker for a test suite.

Registered through the ``pytest11`` entry point, so installing kafkette is enough
(disable with ``-p no:kafkette``). Fixtures:

``kafkette_broker``
    A started :class:`kafkette.EmbeddedBroker`; use ``.bootstrap_servers`` with any
    Kafka client, ``.create_topic()``, ``.restart()``. Its scope is ``session`` by
    default; choose another with the ini option ``kafkette_broker_scope`` or on the
    command line with ``--kafkette-scope`` (``session``, ``package``, ``module``,
    ``class`` or ``function``; the command line wins).

``kafkette_topic``
    A new topic with a unique name (function scope), deleted afterwards. Options
    through the marker ``@pytest.mark.kafkette_topic(partitions=3, config={...})``.

ini options:

``kafkette_broker_config``
    broker settings, one ``key=value`` a line (Kafka property names), on top of the
    test defaults (``kafkette.embedded.TEST_DEFAULTS``: no initial rebalance delay,
    a one-partition ``__consumer_offsets``, no metrics listener).
``kafkette_broker_in_process``
    run the broker in a thread of the test process instead of a child process
    (faster start; no signals involved; shares the GIL with the tests).

A test that calls ``kafkette_broker.stop()`` should start it again (or use a
function-scoped broker): a wider-scoped broker is shared by the tests that follow.

This module imports nothing heavy at load time (it is loaded by every pytest run in
an environment where kafkette is installed).
"""
from __future__ import annotations

import re
import uuid

import pytest

SCOPES = ("session", "package", "module", "class", "function")


def pytest_addoption(parser) -> None:
    group = parser.getgroup("kafkette", "kafkette embedded broker")
    group.addoption("--kafkette-scope", dest="kafkette_scope", default=None, choices=SCOPES,
                    help="scope of the kafkette_broker fixture (default: the ini option "
                         "kafkette_broker_scope, else session)")
    parser.addini("kafkette_broker_scope", "scope of the kafkette_broker fixture",
                  default="session")
    parser.addini("kafkette_broker_config", "kafkette broker settings, key=value a line",
                  type="linelist", default=[])
    parser.addini("kafkette_broker_in_process", "run the kafkette broker in a thread "
                  "instead of a child process", type="bool", default=False)


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "kafkette_topic(partitions=1, config=None): options of the topic "
                   "that the kafkette_topic fixture creates")
    scope = _scope("kafkette_broker", config)
    if scope not in SCOPES:
        raise pytest.UsageError(f"kafkette_broker_scope: {scope!r} is not one of "
                                f"{', '.join(SCOPES)}")


def _scope(fixture_name: str, config) -> str:
    return (config.getoption("kafkette_scope", None)
            or str(config.getini("kafkette_broker_scope")).strip() or "session")


def broker_config(config) -> dict[str, str]:
    """The ini option kafkette_broker_config as a dict."""
    out: dict[str, str] = {}
    for line in config.getini("kafkette_broker_config"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise pytest.UsageError(f"kafkette_broker_config: expected key=value, got {line!r}")
        out[key.strip()] = value.strip()
    return out


@pytest.fixture(scope=_scope)
def kafkette_broker(pytestconfig):
    """A running kafkette broker (kafkette.EmbeddedBroker)."""
    from kafkette.embedded import EmbeddedBroker
    kb = EmbeddedBroker(broker_config(pytestconfig),
                        in_process=pytestconfig.getini("kafkette_broker_in_process"))
    with kb:
        yield kb


@pytest.fixture
def kafkette_topic(request, kafkette_broker):
    """The name of a new, uniquely named topic on kafkette_broker."""
    marker = request.node.get_closest_marker("kafkette_topic")
    kwargs = dict(marker.kwargs) if marker is not None else {}
    partitions = kwargs.pop("partitions", 1)
    config = kwargs.pop("config", None)
    if kwargs:
        raise pytest.UsageError(f"kafkette_topic marker: unknown options {sorted(kwargs)}")
    base = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name).strip("-.")[:150] or "topic"
    name = f"{base}-{uuid.uuid4().hex[:8]}"
    kafkette_broker.create_topic(name, partitions=partitions, config=config, exist_ok=False)
    yield name
    if kafkette_broker.is_running():
        try:
            kafkette_broker.delete_topic(name, missing_ok=True)
        except OSError:
            pass
