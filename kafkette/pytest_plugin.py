"""pytest plugin: a kafkette broker for a test suite.

Registered through the ``pytest11`` entry point, so installing kafkette is enough
(disable with ``-p no:kafkette``). Fixtures:

``kafkette_broker``
    A started :class:`kafkette.EmbeddedBroker`; use ``.bootstrap_servers`` with any
    Kafka client, ``.create_topic()``, ``.restart()``, and ``.schema_registry_url``
    with confluent-kafka's SchemaRegistryClient (the built-in Schema Registry, on a
    free port; off when ``kafkette_broker_config`` sets ``schema.registry.listener=``
    empty). Its scope is ``session`` by
    default; choose another with the ini option ``kafkette_broker_scope`` or on the
    command line with ``--kafkette-scope`` (``session``, ``package``, ``module``,
    ``class`` or ``function``; the command line wins).

``kafkette_secure_broker``
    A started broker with a SASL_SSL listener and SCRAM-SHA-512 (a CA and a server
    certificate generated with trustme, which must be installed; one user with a
    random password): hand ``.client_config`` (confluent-kafka / librdkafka names),
    ``.kafka_python_config()`` or ``.ca_file`` to the client under test. Same scope as
    ``kafkette_broker``; ``kafkette_broker_config`` applies to it too.

``kafkette_topic``
    A new topic with a unique name (function scope), deleted afterwards. Options
    through the marker ``@pytest.mark.kafkette_topic(partitions=3, config={...})``.

``kafkette_cluster``
    A started :class:`kafkette.EmbeddedCluster` of real node processes (3 by default,
    ini option ``kafkette_cluster_brokers``): ``.bootstrap_servers``, ``.brokers``
    (per node: ``node_id``, ``port``, ``pid``, ``stop()``, ``kill()``, ``start()``,
    ``pause()``, ``resume()``), ``.controller_id()``, ``.create_topic()``. Settings in
    the ini option ``kafkette_cluster_config`` (one ``key=value`` a line) go on top of
    ``kafkette.embedded_cluster.CLUSTER_TEST_DEFAULTS`` (3 s broker sessions, 500 ms
    heartbeats, no initial rebalance delay). Scope ``session`` by default; choose
    another with the ini option ``kafkette_cluster_scope`` or ``--kafkette-cluster-scope``.
    The ini option ``kafkette_cluster_controllers`` (0 by default: combined nodes) adds
    that many controller-only voters, the brokers then being broker-only
    (``.controllers``, ``.kill_brokers()``, ``.active_controller()``). The ini options
    ``kafkette_cluster_security`` and ``kafkette_cluster_sasl_mechanism`` secure the
    client listener of every broker as ``kafkette_broker_security`` does for
    ``kafkette_broker`` (``.client_config``, ``.kafka_python_config()``, ``.ca_file``).

ini options:

``kafkette_broker_config``
    broker settings, one ``key=value`` a line (Kafka property names), on top of the
    test defaults (``kafkette.embedded.TEST_DEFAULTS``: no initial rebalance delay,
    a one-partition ``__consumer_offsets``, no metrics listener).
``kafkette_broker_security``
    the security protocol of ``kafkette_broker``'s listener: PLAINTEXT (default), SSL,
    SASL_PLAINTEXT or SASL_SSL (see EmbeddedBroker's ``security=``);
    ``kafkette_broker_sasl_mechanism`` (SCRAM-SHA-512 by default, SCRAM-SHA-256,
    PLAIN) for the SASL ones.
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
    parser.addini("kafkette_broker_security", "security protocol of the kafkette_broker "
                  "listener (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)", default="PLAINTEXT")
    parser.addini("kafkette_broker_sasl_mechanism", "SASL mechanism of kafkette_broker "
                  "(SCRAM-SHA-512, SCRAM-SHA-256, PLAIN)", default="SCRAM-SHA-512")
    parser.addini("kafkette_broker_in_process", "run the kafkette broker in a thread "
                  "instead of a child process", type="bool", default=False)
    group.addoption("--kafkette-cluster-scope", dest="kafkette_cluster_scope", default=None,
                    choices=SCOPES, help="scope of the kafkette_cluster fixture (default: "
                    "the ini option kafkette_cluster_scope, else session)")
    parser.addini("kafkette_cluster_scope", "scope of the kafkette_cluster fixture",
                  default="session")
    parser.addini("kafkette_cluster_config", "settings of every kafkette_cluster node, "
                  "key=value a line", type="linelist", default=[])
    parser.addini("kafkette_cluster_brokers", "number of kafkette_cluster nodes",
                  default="3")
    parser.addini("kafkette_cluster_controllers", "dedicated controller-only nodes of "
                  "kafkette_cluster (0: every node is broker and controller)", default="0")
    parser.addini("kafkette_cluster_security", "security protocol of the client listeners "
                  "of kafkette_cluster (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)",
                  default="PLAINTEXT")
    parser.addini("kafkette_cluster_sasl_mechanism", "SASL mechanism of kafkette_cluster "
                  "(SCRAM-SHA-512, SCRAM-SHA-256, PLAIN)", default="SCRAM-SHA-512")


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "kafkette_topic(partitions=1, config=None): options of the topic "
                   "that the kafkette_topic fixture creates")
    for fixture_name, (_, ini) in _SCOPE_OPTIONS.items():
        scope = _scope(fixture_name, config)
        if scope not in SCOPES:
            raise pytest.UsageError(f"{ini}: {scope!r} is not one of {', '.join(SCOPES)}")


# fixture name -> (command-line option dest, ini option) that choose its scope
_SCOPE_OPTIONS = {"kafkette_broker": ("kafkette_scope", "kafkette_broker_scope"),
                  "kafkette_secure_broker": ("kafkette_scope", "kafkette_broker_scope"),
                  "kafkette_cluster": ("kafkette_cluster_scope", "kafkette_cluster_scope")}


def _scope(fixture_name: str, config) -> str:
    option, ini = _SCOPE_OPTIONS[fixture_name]
    return (config.getoption(option, None)
            or str(config.getini(ini)).strip() or "session")


def broker_config(config, ini: str = "kafkette_broker_config") -> dict[str, str]:
    """The ini option kafkette_broker_config (or another key=value list) as a dict."""
    out: dict[str, str] = {}
    for line in config.getini(ini):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise pytest.UsageError(f"{ini}: expected key=value, got {line!r}")
        out[key.strip()] = value.strip()
    return out


@pytest.fixture(scope=_scope)
def kafkette_broker(pytestconfig):
    """A running kafkette broker (kafkette.EmbeddedBroker)."""
    from kafkette.embedded import EmbeddedBroker
    security = str(pytestconfig.getini("kafkette_broker_security")).strip() or "PLAINTEXT"
    mechanism = str(pytestconfig.getini("kafkette_broker_sasl_mechanism")).strip()
    try:
        settings = broker_config(pytestconfig)
        # The registry reaches _schemas through the inter-broker listener, which needs
        # credentials on a secured one: on for PLAINTEXT (the default) only.
        registry = security == "PLAINTEXT" and "schema.registry.listener" not in settings
        kb = EmbeddedBroker(settings,
                            in_process=pytestconfig.getini("kafkette_broker_in_process"),
                            security=security, mechanism=mechanism or "SCRAM-SHA-512",
                            schema_registry=registry)
    except ValueError as e:
        raise pytest.UsageError(f"kafkette_broker_security / _sasl_mechanism: {e}") from None
    with kb:
        yield kb


@pytest.fixture(scope=_scope)
def kafkette_secure_broker(pytestconfig):
    """A running kafkette broker with a SASL_SSL listener and a SCRAM-SHA-512 user."""
    from kafkette.embedded import EmbeddedBroker
    kb = EmbeddedBroker(broker_config(pytestconfig),
                        in_process=pytestconfig.getini("kafkette_broker_in_process"),
                        security="SASL_SSL", mechanism="SCRAM-SHA-512")
    with kb:
        yield kb


@pytest.fixture(scope=_scope)
def kafkette_cluster(pytestconfig):
    """A running cluster of kafkette nodes (kafkette.EmbeddedCluster)."""
    from kafkette.embedded_cluster import EmbeddedCluster
    counts = {}
    for name, default in (("kafkette_cluster_brokers", "3"), ("kafkette_cluster_controllers", "0")):
        raw = str(pytestconfig.getini(name)).strip() or default
        try:
            counts[name] = int(raw)
        except ValueError:
            raise pytest.UsageError(f"{name}: {raw!r} is not a number") from None
    security = str(pytestconfig.getini("kafkette_cluster_security")).strip() or "PLAINTEXT"
    mechanism = str(pytestconfig.getini("kafkette_cluster_sasl_mechanism")).strip()
    try:
        kc = EmbeddedCluster(counts["kafkette_cluster_brokers"],
                             broker_config(pytestconfig, "kafkette_cluster_config"),
                             controllers=counts["kafkette_cluster_controllers"],
                             security=security, mechanism=mechanism or "SCRAM-SHA-512")
    except ValueError as e:
        raise pytest.UsageError(f"kafkette_cluster_security / _sasl_mechanism: {e}") from None
    with kc:
        yield kc


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
