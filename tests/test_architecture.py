"""The shape of the code base: one import namespace, no import cycles between product modules, and
dependencies that point one way (HTTP -> orchestration -> domain <- storage adapters)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDER_OF = {
    "flashmart": "flashmart",
    "actors": "flashmart.actors",
    "serve": "flashmart.serve",
    "storage": "flashmart.storage",
    "sim": "flashmart.sim",
}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([FOLDER_OF[parts[0]], *parts[1:]]).replace("flashmart.flashmart", "flashmart")


def product_modules() -> dict[str, Path]:
    found = {}
    for folder in FOLDER_OF:
        for path in (ROOT / folder).rglob("*.py"):
            found[module_name(path)] = path
    return found


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Product modules that `path` imports (at any depth, lazily or not)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = product_modules()
    graph = {}
    for name, path in modules.items():
        # a package's __init__ is where its parent is reached through; it is not a dependency
        graph[name] = {
            m for m in imports_of(path, modules) if m != name and not name.startswith(m + ".")
        }
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


KNOWN_CYCLES: list[list[str]] = []


def test_no_import_cycle_between_product_modules():
    assert cycles(import_graph()) == []


def test_no_new_import_cycle():
    assert [c for c in cycles(import_graph()) if c not in KNOWN_CYCLES] == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def edges_from(graph: dict[str, set[str]], lower: str, upper: str) -> list[str]:
    return sorted(
        f"{m} -> {d}"
        for m, deps in graph.items()
        if m == lower or m.startswith(lower + ".")
        for d in deps
        if d == upper or d.startswith(upper + ".")
    )


# A pure domain module: state and its transitions, messages, ports. No I/O, no Ray, no adapters.
DOMAIN_LEAVES = {
    "state",
    "messages",
    "ports",
    "lifecycle",
    "types",
    "refusals",
    "warehouses",
    "coupons",
    "plans",
}


def is_domain(module: str) -> bool:
    return module.rsplit(".", 1)[-1] in DOMAIN_LEAVES


LAYER_RULES = [
    ("flashmart.actors", "flashmart.serve"),  # orchestration never reaches into the HTTP layer
    ("flashmart.storage", "flashmart.serve"),  # nor do storage adapters
    ("flashmart.storage", "flashmart.sim"),
    ("flashmart.actors", "flashmart.sim"),
    (
        "flashmart.actors.inventory",
        "flashmart.actors.search",
    ),  # features hang off the engine's ports
]
KNOWN_WRONG: set[str] = set()


def wrong_edges(graph: dict[str, set[str]]) -> set[str]:
    wrong = {e for lower, upper in LAYER_RULES for e in edges_from(graph, lower, upper)}
    # storage adapters may know the domain (its messages, state, ports), not the orchestration
    wrong |= {
        e
        for e in edges_from(graph, "flashmart.storage", "flashmart.actors")
        if not is_domain(e.split(" -> ")[1])
    }
    # the domain knows nothing of storage, HTTP or orchestration
    for m, deps in graph.items():
        if is_domain(m):
            wrong |= {
                f"{m} -> {d}"
                for d in deps
                if d.startswith(("flashmart.storage", "flashmart.serve"))
                or (d.startswith("flashmart.actors") and not is_domain(d))
            }
    return wrong


def test_dependencies_point_one_way():
    assert wrong_edges(import_graph()) == set()


def test_no_new_dependency_against_the_layers():
    assert wrong_edges(import_graph()) - KNOWN_WRONG == set()


def test_the_layer_check_sees_a_wrong_edge():
    graph = {
        "flashmart.storage.x_postgres": {"flashmart.actors.x.actor"},
        "flashmart.actors.x.state": {"flashmart.storage.redis"},
    }
    assert wrong_edges(graph) == {
        "flashmart.storage.x_postgres -> flashmart.actors.x.actor",
        "flashmart.actors.x.state -> flashmart.storage.redis",
    }
