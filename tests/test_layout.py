"""Imports run one way, from the commands down to the parts (cli -> stages -> parts -> artifacts): no module of the
package imports another that imports it back, lazily inside a function or not, and no part imports the cli."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ulmfit_cli"


def module_name(path: Path) -> str:
    parts = path.with_suffix("").relative_to(PACKAGE.parent).parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            # a package's __init__ is not an edge back from its own submodules
            graph[mod] |= {t for t in targets if t in files and t != mod and not mod.startswith(t + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_is_read_whole():
    graph = import_graph()
    assert "ulmfit_cli.stages" in graph["ulmfit_cli.cli.pretrain"] | graph["ulmfit_cli.cli.finetune_lm"]
    assert "ulmfit_cli.errors" in graph["ulmfit_cli.artifacts"]
    assert len(graph) > 40


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_part_imports_the_commands():
    upward = {
        mod: sorted(t for t in targets if t.startswith("ulmfit_cli.cli"))
        for mod, targets in import_graph().items()
        if not mod.startswith("ulmfit_cli.cli") and mod != "ulmfit_cli.__main__"
    }
    assert {mod: t for mod, t in upward.items() if t} == {}


def test_artifacts_is_at_the_bottom():
    assert import_graph()["ulmfit_cli.artifacts"] <= {"ulmfit_cli.errors", "ulmfit_cli.tokenizer"}
