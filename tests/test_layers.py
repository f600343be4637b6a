"""Layering: dependencies point downward only (DESIGN.md, "Layers").

Imports are read with `ast` (nothing is imported), including imports inside
functions, relative imports and `importlib.import_module("...")` /
`__import__("...")` calls with a literal name:

- log/, coordinator/, controller/ never import the generated wire messages
  (kafkette.protocol.messages), the broker or the server;
- protocol/ imports none of broker, server, log, coordinator, controller, client;
- broker/ never imports server/;
- console/ (the web console, an upper layer) is imported by nothing below server/ and
  never imports server/;
- kafkette.client (the one Kafka client) imports only protocol, errors, logging, clock,
  config and its security half kafkette.client_security (which imports only errors and
  config) (an allow-list: it sits just above protocol); log/ and coordinator/
  never talk to another node, so never import it; in controller/ only the Raft
  transport does, in broker/ never the handlers (they stay thin: the replica
  fetchers and controller forwarding live beside them);
- log/ sits below coordinator/ and controller/: it imports neither;
- `config`, `errors`, `clock` and `logging` are leaves: they import nothing of
  kafkette but one another;
- the core is sans-IO: log/, protocol/, coordinator/ and the controller's state
  machines (the Raft core, the metadata image, election and placement rules) neither
  import asyncio nor define coroutines; only server/, broker/ and the drivers await;
- no threads below server/: log/, protocol/, coordinator/, controller/, broker/ and
  server/ never import threading (one event loop owns the state);
- per-API facts live in the API's handler module (broker/registry.py's HandlerSpec):
  no module of broker/ outside handlers/ compares an `api_key` with a constant (the
  dispatcher may, for ApiVersions' KIP-511 fallback, which it answers before any
  handler can).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "kafkette"

RULES = {
    "kafkette.log": ("kafkette.protocol.messages", "kafkette.broker", "kafkette.server",
                     "kafkette.client"),
    "kafkette.coordinator": ("kafkette.protocol.messages", "kafkette.broker", "kafkette.server",
                             "kafkette.client"),
    "kafkette.controller": ("kafkette.protocol.messages", "kafkette.broker", "kafkette.server",
                            "kafkette.client"),
    "kafkette.protocol": ("kafkette.broker", "kafkette.server", "kafkette.log",
                          "kafkette.coordinator", "kafkette.controller", "kafkette.client"),
    "kafkette.broker": ("kafkette.server",),
    "kafkette.broker.handlers": ("kafkette.client",),
}
# The console (kafkette/console/) is an upper layer beside server/: the server starts it,
# nothing below imports it, and it never reaches into the server's sockets.
for _lower in ("kafkette.log", "kafkette.coordinator", "kafkette.controller",
               "kafkette.protocol", "kafkette.broker"):
    RULES[_lower] += ("kafkette.console",)
RULES["kafkette.console"] = ("kafkette.server",)
# log/ is the lowest domain layer (DESIGN.md's diagram).
RULES["kafkette.log"] += ("kafkette.coordinator", "kafkette.controller")

# Layers that may import nothing of kafkette but these (and themselves).
LEAVES = ("kafkette.config", "kafkette.errors", "kafkette.clock", "kafkette.logging")
ONLY = {
    "kafkette.client": ("kafkette.protocol", "kafkette.errors", "kafkette.logging",
                        "kafkette.clock", "kafkette.config", "kafkette.client_security"),
    "kafkette.client_security": ("kafkette.errors", "kafkette.config"),
    # The Schema Registry's core (subjects, versions, ids, compatibility): sans-IO, above
    # nothing of the broker; server/schema_registry.py does its HTTP and topic I/O.
    "kafkette.registry": LEAVES,
    **{leaf: LEAVES for leaf in LEAVES},
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def imported_names(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, dotted name) for everything a module imports. For `from X import y`,
    both X and X.y are reported, since y may be a submodule."""
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.append((node.lineno, alias.name))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: len(base) - (node.level - 1)]
                base = ".".join(base)
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            out.append((node.lineno, target))
            for alias in node.names:
                if alias.name != "*":
                    out.append((node.lineno, f"{target}.{alias.name}"))
        elif isinstance(node, ast.Call):
            fn = node.func
            fname = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)
            if fname in ("import_module", "__import__") and node.args \
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                out.append((node.lineno, node.args[0].value))
    return out


# DESIGN.md: "Only broker/handlers/ (and the controller's transport) turn wire messages
# into domain calls": the Raft transport maps the core's messages to Kafka's.
# It is also the controller's one client of other nodes (kafkette.client).
EXEMPT = {"kafkette.controller.raft.transport": ("kafkette.protocol.messages", "kafkette.client")}


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    found = []
    for layer, forbidden in RULES.items():
        if not _within(module, layer):
            continue
        for line, name in imported_names(source, module, is_package):
            for bad in forbidden:
                if _within(name, bad) and bad not in EXEMPT.get(module, ()):
                    found.append(f"{module}:{line} imports {name} ({layer} must not import {bad})")
    for layer, allowed in ONLY.items():
        if not _within(module, layer):
            continue
        for line, name in imported_names(source, module, is_package):
            if _within(name, "kafkette") and not _within(name, layer) \
                    and not any(_within(name, ok) for ok in allowed):
                found.append(f"{module}:{line} imports {name} ({layer} may import only "
                             f"{', '.join(allowed)})")
    return found


def _modules():
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_layers_exist_and_are_scanned():
    mods = [module_name(p) for p in _modules()]
    assert "kafkette.protocol.primitives" in mods
    present = [layer for layer in RULES if any(_within(m, layer) for m in mods)]
    assert "kafkette.protocol" in present
    assert len(present) >= 2


def _layer_files(layer: str) -> list[Path]:
    base = PACKAGE_DIR.joinpath(*layer.split(".")[1:])
    if base.is_dir():
        return sorted(p for p in base.rglob("*.py") if "__pycache__" not in p.parts)
    module = base.with_suffix(".py")
    return [module] if module.is_file() else []


@pytest.mark.parametrize("layer", sorted(set(RULES) | set(ONLY)))
def test_layer_imports(layer):
    files = _layer_files(layer)
    if not files:
        pytest.skip(f"{layer} does not exist yet")
    problems = []
    for path in files:
        problems += violations(path.read_text(), module_name(path), path.name == "__init__.py")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- self-check
@pytest.mark.parametrize("module,source", [
    ("kafkette.log.segment", "from kafkette.protocol.messages import FetchResponse"),
    ("kafkette.log.segment", "import kafkette.protocol.messages.fetch"),
    ("kafkette.log.segment", "from kafkette.protocol import messages"),
    ("kafkette.log.segment", "from ..protocol import messages"),
    ("kafkette.log.segment", "from ..protocol.messages.produce import ProduceRequest"),
    ("kafkette.log.segment", "def f():\n    from kafkette.broker import replica_manager\n"),
    ("kafkette.coordinator.group", "from kafkette.server.connection import Connection"),
    ("kafkette.controller.raft", "import importlib\nm = importlib.import_module('kafkette.broker.x')"),
    ("kafkette.controller", "from .. import server"),
    ("kafkette.protocol.records", "from kafkette.log.segment import Segment"),
    ("kafkette.protocol.headers", "from ..broker.dispatcher import Dispatcher"),
    ("kafkette.protocol.messages.fetch", "from kafkette.coordinator import groups"),
    ("kafkette.broker.handlers.fetch", "from kafkette.server.server import Server"),
    ("kafkette.broker.handlers.fetch", "from ...server import connection"),
    ("kafkette.client", "from kafkette.broker.cluster import ClusterState"),
    ("kafkette.client", "from kafkette import EmbeddedBroker"),
    ("kafkette.client", "import kafkette.tools.client"),
    ("kafkette.protocol.framing", "from kafkette.client import KafkaConnection"),
    ("kafkette.log.segment", "from kafkette.client import KafkaConnection"),
    ("kafkette.controller.controller", "from kafkette.client import NodeChannel"),
    ("kafkette.broker.handlers.produce", "from kafkette.client import KafkaClient"),
])
def test_checker_flags_violations(module, source):
    assert violations(source, module, is_package=module.count(".") == 1), source


@pytest.mark.parametrize("module,source", [
    ("kafkette.log.segment", "from kafkette.protocol.records import RecordBatch"),
    ("kafkette.log.segment", "from kafkette.protocol.primitives import Reader"),
    ("kafkette.log.segment", "from kafkette.errors import CorruptRecordError"),
    ("kafkette.log.segment", "from ..clock import SystemClock"),
    ("kafkette.log.segment", "import kafkette.logging"),
    ("kafkette.controller.controller", "from kafkette.log.log_manager import LogManager"),
    ("kafkette.broker.handlers.fetch", "from kafkette.protocol.messages import FetchResponse"),
    ("kafkette.broker.handlers.fetch", "from ..registry import handler"),
    ("kafkette.server.server", "from kafkette.broker.broker import Broker"),
    ("kafkette.protocol.headers", "from kafkette.protocol.messages import API_MESSAGES"),
    ("kafkette.log.segment", "import kafkette.brokers_helper"),  # a prefix, not the package
    ("kafkette.client", "from kafkette.protocol.framing import FrameDecoder"),
    ("kafkette.client", "from kafkette.errors import KafkaError\nimport asyncio"),
    ("kafkette.controller.raft.transport", "from kafkette.client import NodeChannel"),
    ("kafkette.broker.replica_fetcher", "from kafkette.client import NodeChannel"),
    ("kafkette.tools.client", "from kafkette.client import KafkaClient"),
])
def test_checker_allows_downward_imports(module, source):
    assert not violations(source, module), source


def test_relative_imports_resolve():
    names = dict((n, l) for l, n in imported_names(
        "from ..protocol import messages\nfrom . import segment\nfrom .index import X",
        "kafkette.log.partition_log"))
    assert "kafkette.protocol.messages" in names
    assert "kafkette.log.segment" in names
    assert "kafkette.log.index.X" in names
    # in a package's __init__, "." is the package itself
    names = [n for _, n in imported_names("from . import segment", "kafkette.log", True)]
    assert "kafkette.log.segment" in names


# --------------------------------------------------------------------------- sans-IO core
SANS_IO = ("kafkette.log", "kafkette.protocol", "kafkette.coordinator",
           "kafkette.controller.raft.core", "kafkette.controller.metadata_image",
           "kafkette.controller.acls",
           "kafkette.controller.partition_change", "kafkette.controller.placement",
           "kafkette.registry")
# Drivers inside a sans-IO layer: LoopScheduler puts the coordinators' timers on the
# asyncio loop; the coordinators themselves see only the Scheduler protocol.
SANS_IO_DRIVERS = ("kafkette.coordinator.scheduler",)
NO_THREADS = ("kafkette.log", "kafkette.protocol", "kafkette.coordinator",
              "kafkette.controller", "kafkette.broker", "kafkette.server", "kafkette.registry")


def io_violations(source: str, module: str) -> list[str]:
    found = []
    tree = ast.parse(source)
    names = [n for _, n in imported_names(source, module)]
    if any(_within(module, layer) for layer in SANS_IO) and module not in SANS_IO_DRIVERS:
        if any(_within(n, "asyncio") for n in names):
            found.append(f"{module} imports asyncio (a sans-IO core module)")
        for node in ast.walk(tree):
            if isinstance(node, (ast.AsyncFunctionDef, ast.Await)):
                found.append(f"{module}:{node.lineno} awaits (a sans-IO core module)")
    if any(_within(module, layer) for layer in NO_THREADS):
        if any(_within(n, "threading") or _within(n, "concurrent.futures") for n in names):
            found.append(f"{module} imports threading (one event loop owns the state)")
    return found


@pytest.mark.parametrize("layer", sorted(set(SANS_IO) | set(NO_THREADS)))
def test_core_is_sans_io_and_single_threaded(layer):
    files = _layer_files(layer)
    assert files, f"{layer} does not exist"
    problems = []
    for path in files:
        problems += io_violations(path.read_text(), module_name(path))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("module,source", [
    ("kafkette.log.segment", "import asyncio"),
    ("kafkette.coordinator.group_coordinator", "async def join(self):\n    pass\n"),
    ("kafkette.controller.raft.core", "def f():\n    from asyncio import sleep\n"),
    ("kafkette.broker.replica_manager", "import threading"),
    ("kafkette.server.connection", "from concurrent.futures import ThreadPoolExecutor"),
])
def test_io_checker_flags(module, source):
    assert io_violations(source, module), source


@pytest.mark.parametrize("module,source", [
    ("kafkette.broker.replica_manager", "import asyncio\nasync def f():\n    await g()\n"),
    ("kafkette.controller.raft.driver", "import asyncio"),
    ("kafkette.embedded", "import threading"),
])
def test_io_checker_allows(module, source):
    assert not io_violations(source, module), source


# --------------------------------------------------------------------------- per-API facts
def _is_constant(node) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return True
    if isinstance(node, ast.Name) and node.id.isupper():
        return True
    if isinstance(node, ast.Attribute) and node.attr.isupper():
        return True
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_is_constant(e) for e in node.elts)
    return False


def _is_api_key(node) -> bool:
    return (isinstance(node, ast.Name) and node.id == "api_key") or \
        (isinstance(node, ast.Attribute) and node.attr in ("api_key", "request_api_key"))


def api_switches(source: str, module: str) -> list[str]:
    """`api_key == 3`, `api_key in (FETCH, PRODUCE)`, `spec.api_key != METADATA` ...:
    a fact about one API kept outside its handler."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_is_api_key(x) for x in sides) and any(_is_constant(x) for x in sides):
                found.append(f"{module}:{node.lineno} switches on an api key")
    return found


def test_per_api_facts_live_in_the_handlers():
    files = [p for p in _layer_files("kafkette.broker")
             if "handlers" not in p.parts and p.name != "dispatcher.py"]
    assert any(p.name == "cluster.py" for p in files) and any(p.name == "faults.py" for p in files)
    problems = []
    for path in files:
        problems += api_switches(path.read_text(), module_name(path))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("source", [
    "if api_key == 3:\n    pass\n",
    "x = api_key in (PRODUCE, FETCH)\n",
    "x = spec.api_key != METADATA\n",
    "x = ELECT_LEADERS == header.request_api_key\n",
])
def test_api_switch_checker_flags(source):
    assert api_switches(source, "kafkette.broker.cluster"), source


@pytest.mark.parametrize("source", [
    "x = self.api_key is not None and api_key != self.api_key\n",
    "x = spec.route == ROUTE_CONTROLLER\n",
])
def test_api_switch_checker_allows(source):
    assert not api_switches(source, "kafkette.broker.faults"), source


def test_test_modules_have_unique_basenames():
    """tests/ and integration/ have no __init__.py: pytest imports each test module by
    its basename, so a name in both tiers stops the collection of `pytest tests
    integration` ("import file mismatch")."""
    root = Path(__file__).resolve().parent.parent
    unit = {p.name for p in (root / "tests").glob("test_*.py")}
    live = {p.name for p in (root / "integration").glob("test_*.py")}
    assert not unit & live, sorted(unit & live)
