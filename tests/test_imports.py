"""The import graph of solvers/, generate/ and train/: no circle, and every arrow points
train -> generate -> solvers. Read from the source (every ``import`` and ``from ... import``,
those inside functions too), so a lazy import cannot hide a circle or an arrow running up."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("solvers", "generate", "train")
ML_LIBRARIES = {"torch", "transformers", "trl", "peft", "datasets", "accelerate", "bitsandbytes", "vllm"}
# Circles known and left to their owners, each with how it is to be broken. A test per circle
# fails while it is there (xfail, strict): once it is broken, that test passes, strict xfail
# turns the pass into a failure, and its entry here is to be removed.
KNOWN_CIRCLES: dict = {}  # none today


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, modules: set[str]) -> set[str]:
    """The modules ``path`` imports: project modules by their full name (``from generate import
    llm`` is ``generate.llm``), other packages by their top-level name."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    # imports under `if TYPE_CHECKING:` never run: annotations only, no edge of the graph
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
                   for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name if a.name in modules else a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from .x import y
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
    return {m if m in modules else m.split(".")[0] for m in found if m}


def graph() -> nx.DiGraph:
    files = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    modules = {module_name(p) for p in files}
    g = nx.DiGraph()
    g.add_nodes_from(modules)
    for path in files:
        g.add_edges_from((module_name(path), m) for m in imported(path, modules) if m != module_name(path))
    return g


def package_of(module: str) -> str:
    return module.split(".")[0]


def circles(g: nx.DiGraph) -> list[list[str]]:
    """Every import circle among the project's modules, each as the modules it passes in import
    order, starting from the first by name."""
    project = g.subgraph(n for n in g if package_of(n) in PACKAGES)
    found = []
    for cycle in nx.simple_cycles(project):
        first = cycle.index(min(cycle))
        found.append(cycle[first:] + cycle[:first])
    return sorted(found)


def shown(circle: list[str]) -> str:
    return " -> ".join(circle + circle[:1])


# (source, the imports it holds, the circles found): the finder itself must see a circle made
# by a function-level import, a from-import of a submodule, and a relative import.
FINDER_CASES = [
    ({"generate/a.py": "from generate import b\n", "generate/b.py": "def f():\n    import generate.a\n"},
     [["generate.a", "generate.b"]]),  # a lazy import inside a function still closes the circle
    ({"generate/a.py": "from generate.b import f\n", "generate/b.py": "from . import a\n"},
     [["generate.a", "generate.b"]]),  # relative import
    ({"generate/a.py": "from generate import b\n", "generate/b.py": "from solvers import trace\n"},
     []),  # a chain is not a circle
]


@pytest.mark.parametrize("sources, want", FINDER_CASES)
def test_the_circle_finder_sees_lazy_and_relative_imports(tmp_path, monkeypatch, sources, want):
    for name, text in {**sources, "generate/__init__.py": "", "solvers/__init__.py": "",
                       "solvers/trace.py": "", "train/__init__.py": ""}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert circles(graph()) == want


def test_no_import_circle_in_the_project():
    known = {frozenset(c) for c in KNOWN_CIRCLES}
    found = [c for c in circles(graph()) if frozenset(c) not in known]
    assert not found, "import circles: " + "; ".join(shown(c) for c in found)


@pytest.mark.parametrize("circle", [pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=why),
                                                 id=" <-> ".join(c)) for c, why in KNOWN_CIRCLES.items()])
def test_known_circle_is_broken(circle):
    assert set(circle) not in [set(c) for c in circles(graph())]


# (package, the packages and libraries it must not import): imports point train -> generate
# -> solvers, and solvers stays free of ML libraries (it runs in the sandbox and the recorder).
ARROWS = [
    ("solvers", {"generate", "train"} | ML_LIBRARIES),
    ("generate", {"train"}),
    ("train", set()),  # the top floor may import both below it
]


@pytest.mark.parametrize("package, forbidden", ARROWS)
def test_imports_point_train_to_generate_to_solvers(package, forbidden):
    g = graph()
    wrong = sorted(f"{m} -> {t}" for m, t in g.edges if package_of(m) == package and package_of(t) in forbidden)
    assert not wrong, f"{package}/ imports what it must not: " + ", ".join(wrong)
