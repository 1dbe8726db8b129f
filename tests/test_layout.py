"""The package's layering: data flows down one list of subpackages, and imports only go down it.

Every import of the package is parsed (module level, inside functions and under TYPE_CHECKING
alike). Layers, lowest first: ``summit``, ``summit.errors`` and ``summit.lazy`` (the version, the error
type, the subpackages' lazy exports),
then run, model, pipeline, graph, vis, explain, serve, then the entry points cli, notebook and
__main__. A module may import its own subpackage and lower layers only; nothing imports a
private name (``_x``) across subpackages; what one subpackage imports from another is in that
subpackage's ``__all__``; and the module graph has no circle.
"""
from __future__ import annotations

import ast
import importlib
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "summit"
SUBPACKAGES = ("run", "model", "pipeline", "graph", "vis", "explain", "serve")
BASE = ("summit", "summit.errors", "summit.lazy")
TOP = ("summit.cli", "summit.notebook", "summit.__main__")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted((root / "summit").rglob("*.py"))}


def layer(mod: str) -> int:
    """0 for the base, 1..7 for the subpackages in data-flow order, 8 for the entry points."""
    if mod in BASE:
        return 0
    if mod in TOP:
        return len(SUBPACKAGES) + 1
    sub = mod.split(".")[1]
    assert sub in SUBPACKAGES, f"{mod} is in no layer: add it to a subpackage"
    return SUBPACKAGES.index(sub) + 1


def imports(path: Path, mods: dict[str, Path], root: Path = ROOT) -> list[tuple[str, list[str], int]]:
    """(imported summit module, names taken from it, line) for every import in a file."""
    me = module_name(path, root)
    pkg = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "summit"]
        elif isinstance(node, ast.ImportFrom):
            base = pkg[:len(pkg) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module
            if not target or target.split(".")[0] != "summit":
                continue
            names = []
            for a in node.names:  # `from . import attribution`: a submodule, not a name
                if f"{target}.{a.name}" in mods:
                    out.append((f"{target}.{a.name}", [], node.lineno))
                else:
                    names.append(a.name)
            if names:
                out.append((target, names, node.lineno))
    return out


def edges(root: Path = ROOT) -> list[tuple[str, str, list[str], int]]:
    """(importing module, imported module, names, line) of every import in the package."""
    mods = modules(root)
    return [(me, target, names, line) for me, path in mods.items()
            for target, names, line in imports(path, mods, root)]


def test_every_import_goes_down_the_layers(root: Path = ROOT) -> None:
    bad = [f"{a} (line {line}) imports {b}" for a, b, _, line in edges(root) if layer(b) > layer(a)]
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_no_private_name_across_subpackages(root: Path = ROOT) -> None:
    def sub(m: str) -> str:
        return ".".join(m.split(".")[:2])
    bad = [f"{a} (line {line}) takes {n} from {b}" for a, b, names, line in edges(root) for n in names
           if n.startswith("_") and n != "__version__" and sub(a) != sub(b)]
    assert not bad, "\n".join(bad)


def test_no_import_circle(root: Path = ROOT) -> None:
    graph: dict[str, set[str]] = {m: set() for m in modules(root)}
    for a, b, _, _ in edges(root):
        if b in graph and b != a:
            graph[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


@pytest.mark.parametrize("sub", SUBPACKAGES)
def test_subpackage_lists_its_public_api(sub: str) -> None:
    pkg = importlib.import_module(f"summit.{sub}")
    assert pkg.__all__ and len(set(pkg.__all__)) == len(pkg.__all__)
    for name in pkg.__all__:
        assert not name.startswith("_") and getattr(pkg, name) is not None
    used = {n for a, b, names, _ in edges() for n in names
            if b.startswith(f"summit.{sub}") and not a.startswith(f"summit.{sub}.") and a != f"summit.{sub}"}
    missing = sorted(used - set(pkg.__all__))
    assert not missing, f"summit.{sub}: imported by other subpackages but not in __all__: {missing}"


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """An upward import, a private name and a circle planted in a copy of the package are found."""
    shutil.copytree(PACKAGE, tmp_path / "summit", ignore=shutil.ignore_patterns("data", "__pycache__"))
    run = tmp_path / "summit" / "run"
    for file, line, check, match in (
            ("layout.py", "from ..graph.build import class_graph\n", test_every_import_goes_down_the_layers,
             "upward imports"),
            ("layout.py", "from ..graph.edges import _rank_within\n", test_no_private_name_across_subpackages,
             "_rank_within"),
            ("files.py", "from .layout import RUN_FILES\n", test_no_import_circle, "import circles")):  # layout -> files
        clean = (run / file).read_text()
        check(tmp_path)  # the clean copy passes
        (run / file).write_text(clean + line)
        with pytest.raises(AssertionError, match=match):
            check(tmp_path)
        (run / file).write_text(clean)
