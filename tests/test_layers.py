"""Layering, read from the source: the batch layer sits below the pipeline, the command line and
Dask; the two engines are siblings that never import each other; the package's imports form no
cycle; the CUDA engine reaches kernels only through ``ctx.kernel(file, name)``."""

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


def _import_graph(*, top_level_only: bool) -> dict[str, set[str]]:
    """module -> the package's modules it imports (its parent packages left out)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for imported in _imports(path, top_level_only=top_level_only):
            # "from . import x" names a module x; "from .m import f" names m (f is not one)
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not name.startswith(imported + "."):
                deps.add(imported)
        graph[name] = deps
    assert len(graph) > 40
    return graph


def _assert_acyclic(graph: dict[str, set[str]]) -> None:
    state: dict = {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", "import cycle: " + " -> ".join(trail + [node])
        state[node] = "open"
        for dep in sorted(graph[node]):
            visit(dep, trail + [node])
        state[node] = "done"

    for node in sorted(graph):
        visit(node, [])


def test_module_level_imports_form_no_cycle():
    _assert_acyclic(_import_graph(top_level_only=True))


def test_no_cycle_through_imports_inside_functions_either():
    # a deferred import only hides a cycle (the loader and the emulator used to form one)
    _assert_acyclic(_import_graph(top_level_only=False))
    _assert_acyclic({"a": {"b"}, "b": set()})
    try:
        _assert_acyclic({"a": {"b"}, "b": {"a"}})
    except AssertionError as exc:
        assert "import cycle: a -> b -> a" in str(exc)
    else:
        raise AssertionError("the cycle a -> b -> a was not found")


def test_the_package_never_imports_the_benchmarks():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0
                else [])
            assert not any(n == "bench" or n.startswith("bench.") for n in names), path


# Ways to a kernel or to a device memo other than ctx.kernel(file, name) and _loader.per_device.
_OTHER_KERNEL_ACCESS = {"get_function", "module", "function", "RawModule", "RawKernel",
                        "load_module", "getDevice", "lru_cache", "cache"}


def _kernel_access_problems(source: str, declared) -> list[str]:
    """What a _cuda module's *source* does to reach a kernel or memoize per device other than
    ``ctx.kernel(file, name)`` on a file in *declared* and ``@per_device``; and a ``KERNELS``
    not registered through ``declare(...)``."""
    tree = ast.parse(source)
    strings = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
               and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
               for t in n.targets if isinstance(t, ast.Name)}
    problems = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "KERNELS" for t in node.targets):
            value = node.value
            if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                    and value.func.id == "declare"):
                problems.append(f"line {node.lineno}: KERNELS is not declare({{...}})")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in _OTHER_KERNEL_ACCESS:
            problems.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module in ("functools", "emulator"):
            problems.append(f"line {node.lineno}: from {node.module} import ...")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "kernel"):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant):
                filename = arg.value
            else:
                filename = strings.get(arg.id) if isinstance(arg, ast.Name) else None
            if filename not in declared:
                problems.append(f"line {node.lineno}: ctx.kernel on "
                                f"{ast.unparse(arg) if arg else 'nothing'}, not a file of KERNELS")
    return problems


def test_cuda_modules_reach_kernels_only_through_ctx_kernel():
    import importlib

    checked = 0
    for path in sorted((PACKAGE / "_cuda").glob("*.py")):
        if path.name in ("_loader.py", "_nvrtc.py"):  # the loader; NVRTC compiles on purpose
            continue
        module = importlib.import_module(_module_name(path))
        declared = getattr(module, "KERNELS", {})
        assert declared or path.name.startswith("_"), f"{path.name} declares no KERNELS"
        problems = _kernel_access_problems(path.read_text(), declared)
        assert not problems, f"_cuda/{path.name}: " + "; ".join(problems)
        checked += bool(declared)
    assert checked >= 8


def test_the_kernel_access_check_catches_the_old_conventions():
    declared = {"levels.cu": ()}
    old = [
        'KERNELS = {"levels.cu": ()}\n',
        'def f(ctx):\n    return ctx.module("levels.cu", KERNELS["levels.cu"]).get_function("k")\n',
        'def f(ctx):\n    return ctx.function("levels.cu", KERNELS["levels.cu"], "k")\n',
        'import functools\n@functools.lru_cache(maxsize=4)\ndef f(engine, device):\n    pass\n',
        'def f(ctx):\n    return ctx.xp.cuda.runtime.getDevice()\n',
        'def f(ctx):\n    return ctx.kernel("median.cu", "k")\n',
    ]
    for source in old:
        assert _kernel_access_problems(source, declared), source
    good = ('KERNELS = declare({"levels.cu": ()})\nFILE = "levels.cu"\n'
            '@per_device(maxsize=4)\ndef f(ctx):\n    return ctx.kernel(FILE, "k")\n')
    assert _kernel_access_problems(good, declared) == []
