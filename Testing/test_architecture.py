"""The shape of the library, read from its code: imports go one way, files stay small.

The import graph is drawn from the source with :mod:`ast`, nothing is imported. Every
``import`` and ``from ... import`` counts, at module level and inside functions alike
(a function-level import still ties two modules together: it only hides the circle
until the function runs). An edge goes from a module to the ``MedSORALib`` module it
names, or to the package when the name is not a module of its own; the implicit import
of a parent package (``MedSORALib.text`` when ``MedSORALib.text.ood`` is imported) is
not counted, since every module would otherwise reach every ``__init__``; nor are the
imports under ``if TYPE_CHECKING:``, which never run and only name types for annotations.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "MedSORALib"
#: The largest library file, in lines.
MAX_LINES = 500
#: Files being split on another branch (the vessel measurements leave measurements.py); the test
#: fails once one of them is back under the limit, so that its entry here is removed then.
BEING_SPLIT: set[str] = set()


def library_modules(root: Path, package: str = PACKAGE) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, whether it is a package's ``__init__``)."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules[".".join(parts)] = (path, is_package)
    return modules


def _known(name: str, modules) -> str | None:
    """The longest prefix of ``name`` that is a module of the library."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every import statement of ``tree``, at any depth, except under ``if TYPE_CHECKING:``."""
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif _is_type_checking(node):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))


def import_graph(root: Path, package: str = PACKAGE) -> dict[str, set[str]]:
    """Module -> the library modules it imports (see the module docstring for what counts)."""
    modules = library_modules(root, package)
    graph: dict[str, set[str]] = {}
    for module, (path, is_package) in modules.items():
        targets: set[str] = set()
        for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".") if is_package else module.split(".")[:-1]
                    base = base[:len(base) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                # ``from pkg import mod`` names the module pkg.mod; ``from mod import f`` names mod
                names = [f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in modules else origin
                         for alias in node.names]
            else:
                continue
            targets.update(t for t in (_known(n, modules) for n in names) if t)
        targets.discard(module)
        graph[module] = targets
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []

    def visit(start: str) -> None:
        # iterative depth-first search: (node, iterator over its targets)
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
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
                        circles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return circles


def test_the_library_imports_hold_no_circle():
    graph = import_graph(REPO)
    assert len(graph) > 50 and "MedSORALib.volume_io" in graph["MedSORALib.segmentation_io"]
    circles = import_circles(graph)
    assert circles == [], "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_no_library_file_is_over_500_lines():
    sizes = {str(path.relative_to(REPO)): len(path.read_text(encoding="utf-8").splitlines())
             for path, _ in library_modules(REPO).values()}
    assert len(sizes) > 50
    over = {name: lines for name, lines in sizes.items() if lines > MAX_LINES and name not in BEING_SPLIT}
    assert over == {}, f"library files over {MAX_LINES} lines: {over}"
    done = {name for name in BEING_SPLIT if sizes.get(name, 0) <= MAX_LINES}
    assert done == set(), f"split already: remove {sorted(done)} from BEING_SPLIT"


def test_the_runtime_imports_no_training_code():
    """Scoring needs no training code: MedSORALib never names the training package."""
    for module, (path, _) in library_modules(REPO).items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert not node.module.startswith("medsora_training"), module
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("medsora_training") for a in node.names), module


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_graph_finds_circles_through_relative_and_function_level_imports(tmp_path):
    _write(tmp_path, {
        "MedSORALib/__init__.py": "",
        "MedSORALib/a.py": "from .b import thing\n",
        "MedSORALib/b.py": "def f():\n    from MedSORALib.sub import c\n",
        "MedSORALib/sub/__init__.py": "",
        "MedSORALib/sub/c.py": "from .. import a\nimport numpy\n",
        "MedSORALib/d.py": "from . import a\nfrom .sub.c import x\n",
        "MedSORALib/e.py": "import MedSORALib.f\n",
        "MedSORALib/f.py": "import MedSORALib.e as e\n",
        "MedSORALib/g.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .h import T\n",
        "MedSORALib/h.py": "from .g import thing\n",
    })
    graph = import_graph(tmp_path)
    assert graph["MedSORALib.a"] == {"MedSORALib.b"}
    assert graph["MedSORALib.b"] == {"MedSORALib.sub.c"}
    assert graph["MedSORALib.sub.c"] == {"MedSORALib.a"}
    assert graph["MedSORALib.d"] == {"MedSORALib.a", "MedSORALib.sub.c"}
    assert graph["MedSORALib.g"] == set() and graph["MedSORALib.h"] == {"MedSORALib.g"}
    assert import_circles(graph) == [["MedSORALib.a", "MedSORALib.b", "MedSORALib.sub.c"],
                                     ["MedSORALib.e", "MedSORALib.f"]]
    (tmp_path / "MedSORALib/sub/c.py").write_text("import numpy\n")
    (tmp_path / "MedSORALib/f.py").write_text("")
    assert import_circles(import_graph(tmp_path)) == []


@pytest.mark.parametrize("module", ["MedSORALib.volume_io", "MedSORALib.preview"])
def test_the_readers_and_the_preview_sit_below_their_users(module):
    """The two circles that were: mask reading was in volume_io, the preview drawing in the file writer."""
    graph = import_graph(REPO)
    below = {"MedSORALib.volume_io": {"MedSORALib.segmentation_io", "MedSORALib.masks"},
             "MedSORALib.preview": {"MedSORALib.result_files", "MedSORALib.scene.render"}}[module]
    assert not graph[module] & below
    for user in below - {"MedSORALib.masks"}:
        assert module in graph[user]
