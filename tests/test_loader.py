"""The CUDA engine's loader: kernel sources, declared kernels, the per-device memo, launch
errors."""

import importlib
import pkgutil
import sys
import types

import pytest

from gpuenhance._cuda import _loader


def test_kernel_dir_holds_every_kernel_file():
    names = {p.name for p in _loader.kernel_dir().iterdir()}
    assert {"common.cuh", "median.cu", "gaussian.cu", "lut.cu", "lms.cu", "patch_sgd.cu"} <= names


def test_kernel_source_inlines_local_headers_once():
    text = _loader.kernel_source("median.cu")
    assert '#include "common.cuh"' not in text
    assert text.count("gpuenhance_border_index(int i, int n, int border)") == 1
    header = (_loader.kernel_dir() / "common.cuh").read_text()
    assert header in text


def test_missing_kernel_file_is_named():
    with pytest.raises(_loader.KernelError, match="no_such.cu"):
        _loader.kernel_source("no_such.cu")


def test_launch_errors_name_the_kernel(monkeypatch):
    class CUDADriverError(Exception):
        pass

    class CUDARuntimeError(Exception):
        pass

    fake = types.SimpleNamespace(
        cuda=types.SimpleNamespace(
            driver=types.SimpleNamespace(CUDADriverError=CUDADriverError),
            runtime=types.SimpleNamespace(CUDARuntimeError=CUDARuntimeError),
        )
    )
    monkeypatch.setitem(sys.modules, "cupy", fake)

    def failing_kernel(grid, block, args, shared_mem=0):
        raise CUDADriverError("CUDA_ERROR_INVALID_VALUE: invalid argument")

    launch = _loader._NamedLaunch(failing_kernel, "lut.cu", "gpuenhance_lut<gpuenhance_u8, 0, 1>")
    with pytest.raises(_loader.KernelError) as info:
        launch((1,), (32,), ())
    message = str(info.value)
    assert "gpuenhance_lut<gpuenhance_u8, 0, 1>" in message
    assert "kernels/lut.cu" in message
    assert "invalid argument" in message


def _topic_kernels() -> dict[str, tuple[str, ...]]:
    """kernel file -> name expressions, read from every topic module's KERNELS."""
    import gpuenhance._cuda

    found = {}
    for info in pkgutil.iter_modules(gpuenhance._cuda.__path__):
        if info.name.startswith("_") or info.ispkg:
            continue
        mod = importlib.import_module(f"gpuenhance._cuda.{info.name}")
        for filename, exprs in mod.KERNELS.items():
            assert filename not in found, f"{filename} is listed by two topic modules"
            found[filename] = tuple(exprs)
    return found


def test_the_loader_compiles_exactly_the_declared_kernels():
    kernels = _topic_kernels()
    files = {p.name for p in _loader.kernel_dir().glob("*.cu")}
    assert set(kernels) == files
    for filename, exprs in kernels.items():
        assert _loader.declared(filename) == exprs


def test_an_emulated_module_holds_every_declared_expression():
    from conftest import _emulator_problem

    if _emulator_problem() is not None:
        pytest.skip(f"CUDA emulator unavailable: {_emulator_problem()}")
    from gpuenhance._cuda import bilateral

    ctx = _loader.get_context("cuda-emulated")
    exprs = bilateral.KERNELS["bilateral.cu"]
    kern = ctx.kernel("bilateral.cu", exprs[-1])
    assert kern.name_expression == exprs[-1]
    assert _loader._module(ctx, "bilateral.cu").name_expressions == exprs


def test_undeclared_files_and_redeclarations_are_refused(monkeypatch):
    monkeypatch.setattr(_loader, "_DECLARED", {})
    ctx = _loader.get_context("cuda-emulated")
    with pytest.raises(_loader.KernelError, match="no_such.cu"):
        ctx.kernel("no_such.cu", "gpuenhance_nothing")
    kernels = {"no_such.cu": ("gpuenhance_a", "gpuenhance_b")}
    assert _loader.declare(kernels) is kernels
    _loader.declare({"no_such.cu": ["gpuenhance_a", "gpuenhance_b"]})  # the same list again
    with pytest.raises(_loader.KernelError, match="no_such.cu is declared twice"):
        _loader.declare({"no_such.cu": ("gpuenhance_a",)})
    assert _loader.declared("no_such.cu") == ("gpuenhance_a", "gpuenhance_b")


def test_per_device_builds_once_per_engine_device_and_arguments(monkeypatch):
    calls = []

    @_loader.per_device(maxsize=8)
    def table(ctx, n):
        calls.append((ctx.name, ctx.device(), n))
        return [n] * n

    ctx = _loader.get_context("cuda-emulated")
    first = table(ctx, 3)
    assert table(ctx, 3) is first and first == [3, 3, 3]
    assert table(ctx, 2) == [2, 2]
    monkeypatch.setattr(ctx, "device", lambda: 1)  # as if another GPU were current
    assert table(ctx, 3) is not first
    assert calls == [("cuda-emulated", None, 3), ("cuda-emulated", None, 2),
                     ("cuda-emulated", 1, 3)]
    assert table.cache_info().currsize == 3


def test_kernel_error_has_one_home():
    from gpuenhance._cuda import _errors, _nvrtc
    from gpuenhance._cuda.emulator import compiler, kernel, module

    for mod in (_loader, _nvrtc, compiler, kernel, module):
        assert mod.KernelError is _errors.KernelError
