"""The batch layer sits below the pipeline, the command line and Dask: none of its modules
imports them (at any depth of a function), so no import cycle can form through it."""

import ast
from pathlib import Path

import gpuenhance.batch

BATCH = Path(gpuenhance.batch.__file__).parent
UPWARD = {"gpuenhance.pipeline", "gpuenhance.cli", "gpuenhance.dask", "gpuenhance"}


def _imports(path: Path) -> set[str]:
    """Absolute names of the gpuenhance modules *path* imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                parts = ["gpuenhance", "batch"][: 3 - node.level]
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
