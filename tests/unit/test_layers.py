"""Layers import downward only: read from every module's import statements (imports under
``if TYPE_CHECKING:`` are for type hints and do not count)."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict

import pytest

from tests.support import REPO

# Each layer and what it may import besides itself (the root package holds only __version__).
# Anything not listed here is not a layer of its own and is not checked.
MAY_IMPORT: dict[str, set[str]] = {
    "exporter.foundation": set(),
    "exporter.catalog": {"exporter.foundation"},
    "exporter.snapshot": {"exporter.catalog"},
    "exporter.mixin": {"exporter.foundation", "exporter.catalog"},
    # Imported inside the serving process (the Python sampler): nothing of the exporter's.
    "exporter.inprocess": set(),
    "exporter.dispatch_reader": {"exporter.inprocess"},
    "exporter.moved": {"exporter._moved"},  # its C half
    "exporter.scheduler": {"exporter.foundation", "exporter.backoff", "exporter.snapshot", "exporter.sources"},
    "exporter.connection_slots": set(),
    "exporter.server": {"exporter.scheduler", "exporter.snapshot", "exporter.webconfig", "exporter.connection_slots"},
}
# Nothing below the daemon may reach up into it.
ABOVE_SOURCES = {"exporter.scheduler", "exporter.server", "exporter.daemon", "exporter.cli", "exporter.config",
                 "exporter.webconfig", "exporter.stack", "exporter.demo"}


def layer(module: str) -> str:
    return ".".join(module.split(".")[:2])


def import_graph() -> dict[str, set[str]]:
    """Layer -> the layers its modules import (at module level or inside functions)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in (REPO / "exporter").rglob("*.py"):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text())
        hints = {id(node) for block in ast.walk(tree)
                 if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
                 for node in ast.walk(block)}
        for node in ast.walk(tree):
            if id(node) in hints:
                continue
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.startswith("exporter.") and layer(name) != layer(module):
                    graph[layer(module)].add(layer(name))
    return graph


@pytest.mark.parametrize("lower", sorted(MAY_IMPORT))
def test_a_layer_imports_only_what_lies_below_it(lower):
    assert import_graph()[lower] <= MAY_IMPORT[lower]


def test_sources_do_not_reach_up_into_the_daemon():
    assert not import_graph()["exporter.sources"] & ABOVE_SOURCES


def loaded_after(module: str, prefixes: tuple[str, ...]) -> list[str]:
    """The modules starting with one of ``prefixes`` that a fresh interpreter holds after importing ``module``."""
    probe = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith({prefixes!r})))"
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    return ast.literal_eval(loaded.stdout.strip())


def test_the_mixin_generator_loads_neither_the_scheduler_nor_apscheduler_nor_any_source():
    assert loaded_after("exporter.mixin.generate", ("apscheduler", "exporter.scheduler", "exporter.sources")) == []


def test_importing_the_config_loads_no_source_module_until_a_config_is_loaded():
    assert loaded_after("exporter.config", ("exporter.sources.", "exporter.preflight", "apscheduler")) == [
        "exporter.sources.base", "exporter.sources.registry"]


def cycles(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((a, b) for a in graph for b in graph[a] if a < b and a in graph.get(b, set()))


def test_no_two_layers_import_each_other():
    assert cycles(import_graph()) == []


def test_test_modules_import_support_code_not_other_test_modules():
    """A helper two test modules share lives in a support module (tests/support.py and its kin), so running
    or changing one test module never drags in another's tests and fixtures."""
    offenders = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:  # from tests.unit import test_x, too
                names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            offenders += [f"{path.relative_to(REPO)}: {name}" for name in names
                          if name.split(".")[-1].startswith("test_")]
    assert not offenders
