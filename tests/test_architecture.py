"""The one-way flow of the packages: no import cycles, and no arrow pointing up.

``knowledge`` knows nothing of ``copilot``; ``copilot`` knows nothing of ``finetune``; ``qc`` and
``drafting`` share ``copilot.text`` rather than importing each other. Every import counts, at the
top of a module or inside a function: a late import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("copilot", "knowledge", "finetune")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def import_graph() -> nx.DiGraph:
    known = modules()

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph = nx.DiGraph()
    for module, path in known.items():
        graph.add_node(module)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                         for a in node.names]
            else:
                continue
            for name in names:
                target = resolve(name) if name.split(".")[0] in PACKAGES else None
                if target and target != module:
                    graph.add_edge(module, target)
    return graph


def test_there_is_no_import_cycle():
    cycles = list(nx.simple_cycles(import_graph()))
    assert cycles == [], "\n".join(" -> ".join(c + c[:1]) for c in cycles[:10])


def test_no_layer_imports_from_above():
    forbidden = [("knowledge", "copilot"), ("knowledge", "finetune"), ("copilot", "finetune"),
                 ("copilot.qc", "copilot.drafting"), ("copilot.drafting", "copilot.qc"),
                 ("copilot.text", "copilot.qc"), ("copilot.text", "copilot.drafting"), ("copilot.text", "copilot.web"),
                 ("copilot.records", "copilot.qc"), ("copilot.engine", "copilot.web"), ("copilot.qc", "copilot.web"),
                 ("copilot.drafting", "copilot.web")]

    def within(module: str, package: str) -> bool:
        return module == package or module.startswith(package + ".")

    wrong = [(a, b) for a, b in import_graph().edges for low, high in forbidden if within(a, low) and within(b, high)]
    assert wrong == [], wrong


def test_qc_checks_register_through_the_registry_alone():
    """Check modules import the registry, never the runner (the old engine <-> checks cycle)."""
    graph = import_graph()
    for module in graph:
        if module.startswith("copilot.qc.checks."):
            assert "copilot.qc.runner" not in graph.successors(module), module
    assert "copilot.qc.checks" in graph.successors("copilot.qc.runner")
