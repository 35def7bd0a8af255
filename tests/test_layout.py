"""Imports run one way, from the commands down to the parts: no module of the package imports another that imports
it back, lazily inside a function or not; a subpackage imports only the root modules and the subpackages below it
in LAYERS (the order ulmfit_cli/__init__.py describes), and each subpackage's `__init__` says so."""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ulmfit_cli"

# Bottom to top. The root modules (errors, config, ...) sit below all of them and import none of them.
LAYERS = ["data", "models", "runfolder", "inference", "training", "importers", "workflows", "cli"]


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
    assert roots == ["__init__", "__main__", "config", "configfile", "dist", "errors", "hf_facts", "metrics", "tasks"]


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


# Below the commands nothing writes to the terminal: what the user sees goes through the Reporter (or a `warn`
# callable) that a command hands down. The one exception, defended where it stands: tracking.py points stdout at
# stderr while MLflow prints its run links, so that stdout keeps carrying results only.
REDIRECTS = {"ulmfit_cli.training.tracking"}


def terminal_writes(source: str, module: str) -> list[str]:
    """The lines of `source` that print, or reach sys.stdout / sys.stderr other than to redirect MLflow's prints."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            found.append(f"{module}:{node.lineno}: print")
        if isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr", "__stdout__", "__stderr__"):
            if isinstance(node.value, ast.Name) and node.value.id == "sys" and module not in REDIRECTS:
                found.append(f"{module}:{node.lineno}: sys.{node.attr}")
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "Console":
            found.append(f"{module}:{node.lineno}: Console")
    return found


def test_no_module_below_the_commands_writes_to_the_terminal():
    found = []
    for path in PACKAGE.rglob("*.py"):
        if "cli" not in path.relative_to(PACKAGE).parts[:1]:
            found += terminal_writes(path.read_text(), module_name(path))
    assert not found, found


def test_the_terminal_check_finds_each_kind_of_write():
    for snippet in ("print('x')", "import sys\nsys.stderr.write('x')", "from rich.console import Console\nConsole()"):
        assert terminal_writes(snippet, "ulmfit_cli.data.readers"), snippet
    assert not terminal_writes("import sys\nsys.stdin.read()", "ulmfit_cli.data.readers")


def test_no_state_is_kept_aside_between_commands():
    """What a command knows (its --config file, its inputs, its advice) is handed down as arguments, never kept in
    a context variable or gathered from a command's locals."""
    text = "\n".join(p.read_text() for p in PACKAGE.rglob("*.py"))
    assert "ContextVar" not in text and "flags(locals())" not in text
