"""No import cycles between costeff's modules.

The graph is read from the source (ast): every ``import costeff...`` / ``from costeff... import``
at module level and inside functions. Module-level cycles make import order matter and must not
exist; function-level (lazy) ones are held to the short list below, which may only shrink.
"""

import ast
import functools
from pathlib import Path

import costeff

ROOT = Path(costeff.__file__).parent

# Lazy imports that still go both ways (each a strongly connected component). Do not add to this list:
# break the cycle instead (move the shared piece to its own module).
KNOWN_LAZY_CYCLES = {
    frozenset({"costeff.runtimes", "costeff.runtimes.ort", "costeff.runtimes.ov"}),
    frozenset({"costeff.quantization.knobs", "costeff.quantization.select"}),
    frozenset({"costeff.remote.comparison", "costeff.remote.profile"}),
    frozenset({"costeff.cli.drift", "costeff.cli.drift_watch"}),
}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    """The module ``name`` loads: ``costeff.flags.FlagStore`` is ``costeff.flags``."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _imported(node: ast.AST, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join(parts + ([base] if base else []))
        return [f"{base}.{a.name}" for a in node.names]
    return []


def _type_checking_only(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST, top_level_only: bool) -> list[ast.AST]:
    """Every import; with ``top_level_only`` those that run on import (not inside a function)."""
    found, todo = [], [tree]
    while todo:
        node = todo.pop()
        if top_level_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if _type_checking_only(node):  # never runs: annotations only
            continue
        found.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return found


@functools.lru_cache(maxsize=2)
def import_graph(top_level_only: bool) -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for module, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in _import_nodes(tree, top_level_only):
            for name in _imported(node, package):
                target = _resolve(name, mods) if name.startswith("costeff") else None
                if target and target != module:
                    graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.add(frozenset(component))
    return found


def test_the_cycle_finder_finds_a_cycle_and_nothing_else():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == {frozenset("abc")}
    assert cycles({"a": {"b"}, "b": set()}) == set()


def test_the_graph_sees_costeff_imports_at_both_levels():
    top, every = import_graph(True), import_graph(False)
    assert "costeff.runctx" in top["costeff.stages"]  # module level
    assert "costeff.stages" not in top["costeff.pipeline"] and "costeff.stages" in every["costeff.pipeline"]


def test_no_module_level_import_cycle():
    assert cycles(import_graph(True)) == set()


def test_run_stages_and_pipeline_do_not_import_each_other_both_ways():
    every = import_graph(False)
    assert "costeff.pipeline" not in every["costeff.stages"]


def test_imports_for_annotations_only_are_not_edges(tmp_path):
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import costeff.x\nimport costeff.y\n")
    found = [n for n in _import_nodes(tree, True) if isinstance(n, ast.Import)]
    assert [a.name for n in found for a in n.names] == ["costeff.y"]


def test_no_new_lazy_import_cycle():
    found = cycles(import_graph(False))
    new = found - KNOWN_LAZY_CYCLES
    assert new == set(), f"new import cycles (break them, do not list them): {[sorted(c) for c in new]}"
    assert KNOWN_LAZY_CYCLES <= found, f"broken cycles still listed (remove them): {KNOWN_LAZY_CYCLES - found}"
