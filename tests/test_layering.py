"""The import graph of segal: no cycle, and no import from a lower layer to a higher one.

Every module is parsed (``ast``, nothing is imported) and each ``import`` of a segal module, at the
top or inside a function, is an edge; imports under ``if TYPE_CHECKING:`` are annotations only and
are skipped.  ``LAYERS`` is the table documented in docs/design.md: a module may import its own
layer and the ones below.  A new module must be added to the table, so that its place is a decision.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "segal"

# Lowest first.  A name stands for itself and, with a trailing ".", for every module below it.
LAYERS: list[tuple[str, set[str]]] = [
    ("ground", {"segal", "segal.errors", "segal.crashpoints", "segal.distributed", "segal.progress", "segal.tracking",
                "segal.registry", "segal.metrics", "segal.threads", "segal.runlock", "segal.fileio",
                "segal.device", "segal.checkpoint", "segal.environment"}),
    ("definitions", {"segal.config", "segal.data", "segal.data.", "segal.models", "segal.models.",
                     "segal.oracle", "segal.pool", "segal.regions", "segal.regions."}),
    ("machinery", {"segal.engine", "segal.strategies", "segal.strategies.", "segal.interchange",
                   "segal.interchange."}),
    ("run", {"segal.runs", "segal.preflight", "segal.loop", "segal.region_loop", "segal.image_costs",
             "segal.shared_start"}),
    ("commands", {"segal.evaluate", "segal.human", "segal.select", "segal.sweep", "segal.report",
                  "segal.results", "segal.compute_time", "segal.records", "segal.cost_records", "segal.serve", "segal.serve.", "segal.cli", "segal.__main__"}),
]


def module_names() -> dict[str, Path]:
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        names[name] = path
    return names


def _type_checking_only(node: ast.AST) -> set[int]:
    """ids of import nodes inside ``if TYPE_CHECKING:`` blocks."""
    skipped: set[int] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.If) and getattr(n.test, "id", getattr(n.test, "attr", None)) == "TYPE_CHECKING":
            skipped.update(id(m) for child in n.body for m in ast.walk(child))
    return skipped


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skipped = _type_checking_only(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:  # `from segal import fileio` imports the module segal.fileio
                sub = f"{module}.{alias.name}"
                found.add(sub if sub in known else module)
    return {m for m in found if m in known and m != name}


GRAPH = {name: imports_of(name, path, set(module_names())) for name, path in module_names().items()}


def layer_of(module: str) -> int:
    for level, (_, members) in enumerate(LAYERS):
        if module in members or any(p.endswith(".") and module.startswith(p) for p in members):
            return level
    raise AssertionError(f"{module} is in no layer of tests/test_layering.py: add it to LAYERS and docs/design.md")


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_every_module_has_a_layer_and_imports_none_above_it(module):
    mine = layer_of(module)
    upward = sorted(d for d in GRAPH[module] if layer_of(d) > mine)
    assert not upward, f"{module} ({LAYERS[mine][0]}) imports higher layers: " + ", ".join(
        f"{d} ({LAYERS[layer_of(d)][0]})" for d in upward)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``a → b → … → a``, or None (depth-first search, three colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    # A package's __init__ importing its own submodules (registration) is how packages work, not a
    # loop: submodule → package edges are dropped, since Python runs the package first anyway.
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in GRAPH.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_the_checker_sees_cycles_and_upward_imports():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert layer_of("segal.fileio") < layer_of("segal.pool") < layer_of("segal.engine") < layer_of("segal.loop")
    assert "segal.fileio" in GRAPH["segal.pool"]  # edges are really read from the source
    assert "segal.loop" in GRAPH["segal.sweep"]  # ... including imports inside functions


def test_strategy_modules_import_helpers_not_each_other():
    """One strategy per file: shared machinery lives in helper modules (scoring, committee, kcenter)."""
    strategies = {m for m, p in module_names().items()
                  if m.startswith("segal.strategies.") and "@register_strategy(" in p.read_text()}
    assert {"segal.strategies.vaal", "segal.strategies.coreset", "segal.strategies.qbc"} <= strategies
    for module in sorted(strategies):
        assert not GRAPH[module] & strategies, f"{module} imports strategy module(s) {sorted(GRAPH[module] & strategies)}"
