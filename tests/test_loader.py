"""Kernel sources and launch errors of the CUDA engine's loader."""

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
