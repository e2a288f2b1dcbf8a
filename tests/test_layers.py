"""Layering, read from the source: the batch layer sits below the pipeline, the command line and
Dask; the two engines are siblings that never import each other; the package's module-level
imports form no cycle."""

import ast
from pathlib import Path

import gpuenhance.batch

BATCH = Path(gpuenhance.batch.__file__).parent
PACKAGE = BATCH.parent
UPWARD = {"gpuenhance.pipeline", "gpuenhance.cli", "gpuenhance.dask", "gpuenhance"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    """Absolute names of the gpuenhance modules *path* imports, anywhere in the file (or only
    at module level: the imports that run when the module is imported)."""
    found = set()
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                parts = package[: len(package) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            if node.module:  # from <module> import names: the module
                found.add(base)
            else:  # from <package> import modules
                found.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {n for n in found if n.startswith("gpuenhance")}


def test_batch_modules_never_import_the_layers_above():
    modules = sorted(BATCH.glob("*.py"))
    assert len(modules) >= 7
    for path in modules:
        upward = {n for n in _imports(path) if n in UPWARD}
        assert not upward, f"{path.name} imports {sorted(upward)}"


def test_the_checker_sees_relative_imports():
    tree = BATCH / "runner.py"
    names = _imports(tree)
    assert "gpuenhance.batch.staging" in names and "gpuenhance._tiles" in names


def test_the_engines_never_import_each_other():
    for engine, other in (("_cpu", "gpuenhance._cuda"), ("_cuda", "gpuenhance._cpu")):
        for path in sorted((PACKAGE / engine).rglob("*.py")):
            bad = {n for n in _imports(path) if n == other or n.startswith(other + ".")}
            assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}"


def test_module_level_imports_form_no_cycle():
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for imported in _imports(path, top_level_only=True):
            # "from . import x" names a module x; "from .m import f" names m (f is not one)
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not name.startswith(imported + "."):
                deps.add(imported)
        graph[name] = deps
    state: dict = {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", "import cycle: " + " -> ".join(trail + [node])
        state[node] = "open"
        for dep in sorted(graph[node]):
            visit(dep, trail + [node])
        state[node] = "done"

    assert len(graph) > 40
    for node in sorted(graph):
        visit(node, [])


def test_the_package_never_imports_the_benchmarks():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0
                else [])
            assert not any(n == "bench" or n.startswith("bench.") for n in names), path
