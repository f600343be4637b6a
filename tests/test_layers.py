"""Layering: dependencies point downward only (DESIGN.md, "Layers").

Imports are read with `ast` (nothing is imported), including imports inside
functions, relative imports and `importlib.import_module("...")` /
`__import__("...")` calls with a literal name:

- log/, coordinator/, controller/ never import the generated wire messages
  (kafkette.protocol.messages), the broker or the server;
- protocol/ imports none of broker, server, log, coordinator, controller, client;
- broker/ never imports server/;
- kafkette.client (the one Kafka client) imports only protocol, errors, logging, clock
  and config (an allow-list: it sits just above protocol); log/ and coordinator/
  never talk to another node, so never import it; in controller/ only the Raft
  transport does, in broker/ never the handlers (they stay thin: the replica
  fetchers and controller forwarding live beside them).
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

# Layers that may import nothing of kafkette but these (and themselves).
ONLY = {
    "kafkette.client": ("kafkette.protocol", "kafkette.errors", "kafkette.logging",
                        "kafkette.clock", "kafkette.config"),
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
