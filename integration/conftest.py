"""Fixtures for the integration tier: real broker subprocesses, real clients.

- `broker`        one broker per test module (config from the module's `broker_config`)
- `fresh_broker`  one broker per test, for tests that restart or kill it
- `make_broker`   factory for a per-test broker with extra settings
- `topic`         a unique topic name

On a failing test the tail of the broker's log is printed (teardown output).
"""
from __future__ import annotations

import pytest

from itutil import BrokerProcess, unique_topic, wait_until  # noqa: F401  (re-exported)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


def _failed(request) -> bool:
    node = request.node
    return any(getattr(node, f"rep_{w}", None) is not None and getattr(node, f"rep_{w}").failed
               for w in ("setup", "call"))


def pytest_configure(config):
    # kafka-python 3.0.12 loads its schemas with a deprecated importlib call
    config.addinivalue_line("filterwarnings",
                            "ignore:.*is deprecated. Use files\\(\\) instead:DeprecationWarning")


def _finish(broker: BrokerProcess, print_tail: bool):
    if print_tail:
        print(f"\n{broker!r}\n{broker.log_tail(80)}")
    if broker.proc is None or broker.killed:
        return
    # Every broker a test leaves must shut down cleanly on SIGTERM; one that died on
    # its own (non-zero exit code) fails the teardown with its log tail.
    broker.stop()


@pytest.fixture(scope="module")
def broker_config() -> dict:
    """Extra broker settings for the module-scoped `broker`; override per module."""
    return {}


@pytest.fixture(scope="module")
def broker(tmp_path_factory, broker_config):
    b = BrokerProcess(tmp_path_factory.mktemp("broker"), broker_config)
    b.start()
    yield b
    _finish(b, print_tail=not b.is_alive())


@pytest.fixture
def make_broker(tmp_path, request):
    made: list[BrokerProcess] = []

    def _make(config: dict | None = None, start: bool = True) -> BrokerProcess:
        b = BrokerProcess(tmp_path / f"broker{len(made)}", config)
        made.append(b)
        if start:
            b.start()
        return b

    yield _make
    for b in made:
        _finish(b, print_tail=_failed(request))


@pytest.fixture
def fresh_broker(make_broker):
    return make_broker()


@pytest.fixture
def topic() -> str:
    return unique_topic()


@pytest.fixture(autouse=True)
def _broker_log_on_failure(request):
    """Print the module broker's log tail when a test using it fails."""
    yield
    b = request.node.funcargs.get("broker") if hasattr(request.node, "funcargs") else None
    if isinstance(b, BrokerProcess) and _failed(request):
        print(f"\n{b!r}\n{b.log_tail(80)}")
