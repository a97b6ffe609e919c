"""The import graph of ``vidact/`` (imports inside functions included) has no cycles.

The one exemption: a module importing its own package (the registry filling itself from the
package that imports every family) is not a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import vidact

ROOT = Path(vidact.__file__).parent


def _modules() -> dict[str, Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        parts = path.with_suffix("").relative_to(ROOT.parent).parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def _targets(module: str, node: ast.AST, mods: dict[str, Path]) -> set[str]:
    """The vidact modules an import statement loads (``from a import b``: ``a.b`` when it is a module)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".") if mods[module].name == "__init__.py" else module.split(".")[:-1]
            base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
        names = [base] + [f"{base}.{a.name}" for a in node.names]
    found = set()
    for name in names:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        if name and name != module and name != "vidact" and not module.startswith(name + "."):
            found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {m: set() for m in mods}
    for module, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[module] |= _targets(module, node, mods)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (iterative Tarjan)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
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
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_known_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_vidact_has_no_import_cycles():
    graph = import_graph()
    assert "vidact.train.engine" in graph and "vidact.runtime.device" in graph["vidact.train.engine"]
    assert cycles(graph) == []


# The package order of docs/ARCHITECTURE.md: a package may import only packages of a lower rank.
LAYERS = {
    "vidact.errors": 0,
    "vidact.io": 1,
    "vidact.data": 2,
    "vidact.models": 2,
    "vidact.runtime": 3,
    "vidact.flow": 4,
    "vidact.weights": 4,
    "vidact.evaluate": 5,
    "vidact.profile": 5,
    "vidact.predict": 5,
    "vidact.export": 5,
    "vidact.train": 6,
    "vidact.search": 7,
    "vidact.demo": 7,
    "vidact.cli": 8,
    "vidact.__main__": 9,
}


def package_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


def package_edges(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """(importer, imported) pairs of distinct packages; the root ``vidact`` (its version) is no layer."""
    return {
        (package_of(m), package_of(t))
        for m, targets in graph.items()
        for t in targets
        if package_of(m) != package_of(t) and t != "vidact"
    }


def layer_violations(edges: set[tuple[str, str]], layers: dict[str, int] = LAYERS) -> list[str]:
    """Every edge that goes sideways or up the order, and every package the order does not place."""
    found = []
    for src, dst in sorted(edges):
        if src not in layers or dst not in layers:
            found.append(f"{src} -> {dst}: {src if src not in layers else dst} has no place in the package order")
        elif layers[dst] >= layers[src]:
            found.append(f"{src} (layer {layers[src]}) -> {dst} (layer {layers[dst]})")
    return found


def test_every_package_is_placed_and_imports_only_lower_layers():
    edges = package_edges(import_graph())
    packages = {package_of(m) for m in _modules()} - {"vidact"}
    assert packages == set(LAYERS), "docs/ARCHITECTURE.md and LAYERS must place every package"
    assert ("vidact.train", "vidact.runtime") in edges  # the graph sees function-level imports too
    assert layer_violations(edges) == []


def test_the_order_rejects_the_back_edges_it_replaced():
    # the package cycles the layers removed: models -> runtime (convert wrote a checkpoint),
    # data <-> utils and io <-> utils (utils was no leaf), and a sideways edge between siblings
    assert layer_violations({("vidact.models", "vidact.runtime")}) == [
        "vidact.models (layer 2) -> vidact.runtime (layer 3)"
    ]
    assert layer_violations({("vidact.io", "vidact.data")}) == ["vidact.io (layer 1) -> vidact.data (layer 2)"]
    assert layer_violations({("vidact.io", "vidact.utils")}) == [
        "vidact.io -> vidact.utils: vidact.utils has no place in the package order"
    ]
    assert layer_violations({("vidact.data", "vidact.models")}) == ["vidact.data (layer 2) -> vidact.models (layer 2)"]


def test_evaluation_prediction_and_export_import_nothing_from_train():
    graph = import_graph()
    for module, targets in graph.items():
        if package_of(module) in ("vidact.evaluate", "vidact.runtime", "vidact.predict", "vidact.export"):
            assert not [t for t in targets if t.startswith("vidact.train")], module


def test_the_architecture_page_states_the_same_order():
    """docs/ARCHITECTURE.md's layer table is the order this test enforces, and the README links it."""
    import re

    repo = ROOT.parent
    table = re.findall(r"^\| (\d+) \| `(\w+)` \|", (repo / "docs" / "ARCHITECTURE.md").read_text(), re.M)
    stated = {f"vidact.{name}": int(rank) for rank, name in table}
    assert stated == {k: v for k, v in LAYERS.items() if k != "vidact.__main__"}
    assert "docs/ARCHITECTURE.md" in (repo / "README.md").read_text()
