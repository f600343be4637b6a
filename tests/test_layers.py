"""Layering: dependencies point downward only (DESIGN.md, "Layers").

Imports are read with `ast` (nothing is imported), including imports inside
functions, relative imports and `importlib.import_module("...")` /
`__import__("...")` calls with a literal name:

- log/, coordinator/, controller/ never import the generated wire messages
  (kafkette.protocol.messages), the broker or the server;
- protocol/ imports none of broker, server, log, coordinator, controller;
- broker/ never imports server/.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "kafkette"

RULES = {
    "kafkette.log": ("kafkette.protocol.messages", "kafkette.broker", "kafkette.server"),
    "kafkette.coordinator": ("kafkette.protocol.messages", "kafkette.broker", "kafkette.server"),
    "kafkette.controller": ("kafkette.protocol.messages", "kafkette.broker", "kafkette.server"),
    "kafkette.protocol": ("kafkette.broker", "kafkette.server", "kafkette.log",
                          "kafkette.coordinator", "kafkette.controller"),
    "kafkette.broker": ("kafkette.server",),
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
EXEMPT = {"kafkette.controller.raft.transport": ("kafkette.protocol.messages",)}


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    found = []
    for layer, forbidden in RULES.items():
        if not _within(module, layer):
            continue
        for line, name in imported_names(source, module, is_package):
            for bad in forbidden:
                if _within(name, bad) and bad not in EXEMPT.get(module, ()):
                    found.append(f"{module}:{line} imports {name} ({layer} must not import {bad})")
    return found


def _modules():
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_layers_exist_and_are_scanned():
    mods = [module_name(p) for p in _modules()]
    assert "kafkette.protocol.primitives" in mods
    present = [layer for layer in RULES if any(_within(m, layer) for m in mods)]
    assert "kafkette.protocol" in present
    assert len(present) >= 2


@pytest.mark.parametrize("layer", sorted(RULES))
def test_layer_imports(layer):
    layer_dir = PACKAGE_DIR.joinpath(*layer.split(".")[1:])
    if not layer_dir.is_dir():
        pytest.skip(f"{layer} does not exist yet")
    problems = []
    for path in sorted(layer_dir.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
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
