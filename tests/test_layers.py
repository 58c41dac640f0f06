"""The package's imports run one way, core → search → atlas → experiments → studies → command
line, and never in a circle: a module may import from its own layer or one below it, never
above. Function-level imports count as much as top-level ones."""
import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parent.parent / "lshkit"

#: Lowest first. A module not named here is an error, so a new module must say where it belongs.
LAYERS = (
    ("core", ("checks", "io", "env", "paper", "stats", "data", "models", "dst", "train", "ls", "embedding",
              "graph", "storage", "callbacks", "vocab", "presets")),
    ("search", ("search", "sweep")),
    ("atlas", ("atlas",)),
    ("experiments", ("experiments", "report", "bench", "bench_optuna", "bench_cli", "prune_export")),
    ("studies", ("studies",)),
    ("command line", ("__main__", "notebooks_cli")),
)
RANK = {name: rank for rank, (_, names) in enumerate(LAYERS) for name in names}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        yield ".".join(p for p in parts if p != "__init__"), path


def _imports(name: str, path: Path):
    """Every lshkit module ``name`` imports, anywhere in its file."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # "from lshkit import paper" imports the module lshkit.paper
            targets = [f"{base}.{a.name}" if base == "lshkit" else base for a in node.names]
        else:
            continue
        yield from (t for t in targets if t.startswith("lshkit.") and t != name)


def _top(module: str) -> str:
    return module.split(".")[1]


def _graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    for name, path in _modules():
        if name == "lshkit":
            continue
        graph.add_node(_top(name))
        graph.add_edges_from((_top(name), _top(target)) for target in _imports(name, path) if _top(target) != _top(name))
    return graph


def test_every_module_has_a_layer():
    assert set(_graph()) <= set(RANK), f"modules without a layer: {sorted(set(_graph()) - set(RANK))}"


def test_imports_run_one_way():
    upward = [f"{a} ({LAYERS[RANK[a]][0]}) imports {b} ({LAYERS[RANK[b]][0]})"
              for a, b in _graph().edges if a in RANK and b in RANK and RANK[b] > RANK[a]]
    assert not upward, "\n".join(upward)


def test_no_import_circle():
    assert not list(nx.simple_cycles(_graph())), list(nx.simple_cycles(_graph()))
