"""Imports run one way, from the commands down to the parts: no module of the package imports another that imports
it back, lazily inside a function or not; a subpackage imports only the root modules and the subpackages below it
in LAYERS (the order ulmfit_cli/__init__.py describes), and each subpackage's `__init__` says so."""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ulmfit_cli"

# Bottom to top. The root modules (errors, config, ...) sit below all of them and import none of them.
LAYERS = ["data", "models", "runfolder", "inference", "training", "workflows", "cli"]


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
    assert "ulmfit_cli.training.stages" in graph["ulmfit_cli.cli.finetune_clf"]  # imported inside the function
    assert "ulmfit_cli.errors" in graph["ulmfit_cli.runfolder.artifacts"]
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
    assert import_graph()["ulmfit_cli.runfolder.artifacts"] <= {"ulmfit_cli.errors", "ulmfit_cli.data.tokenizer"}


def layer(mod: str) -> int:
    """-1 for a root module of the package, else the index of its subpackage in LAYERS."""
    parts = mod.split(".")
    if len(parts) == 2 and (PACKAGE / f"{parts[1]}.py").exists():
        return -1
    return LAYERS.index(parts[1])


def upward_imports(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    """Every import from a module to one in a higher layer (a root module to any subpackage counts)."""
    out = {}
    for mod, targets in graph.items():
        if mod in ("ulmfit_cli", "ulmfit_cli.__main__"):  # the package itself and the entry point
            continue
        up = sorted(t for t in targets if layer(t) > layer(mod))
        if up:
            out[mod] = up
    return out


def test_every_subpackage_has_a_layer_and_every_module_a_home():
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert subpackages == set(LAYERS)
    roots = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert roots == ["__init__", "__main__", "config", "configfile", "dist", "errors", "metrics", "tasks"]


def test_subpackages_import_only_downward():
    assert upward_imports(import_graph()) == {}


def test_the_direction_check_finds_an_upward_import():
    graph = import_graph()
    graph["ulmfit_cli.data.readers"] = graph["ulmfit_cli.data.readers"] | {"ulmfit_cli.training.loop"}
    graph["ulmfit_cli.errors"] = graph["ulmfit_cli.errors"] | {"ulmfit_cli.data.batches"}
    assert upward_imports(graph) == {
        "ulmfit_cli.data.readers": ["ulmfit_cli.training.loop"],
        "ulmfit_cli.errors": ["ulmfit_cli.data.batches"],
    }


def test_each_subpackage_says_what_it_owns_and_may_import():
    for i, name in enumerate(LAYERS):
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text())) or ""
        may = re.search(r"^May import: (.*)$", doc, re.M)
        assert may, f"{name}/__init__.py: no 'May import:' line"
        said = [w.strip(" .") for w in may.group(1).split(",")]
        assert said == ["the root modules", *LAYERS[:i]], name
        assert len(doc) > len(may.group(0)) + 80, f"{name}/__init__.py does not say what it owns"
