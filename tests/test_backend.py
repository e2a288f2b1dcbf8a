"""The backend layer: engine choice, overrides, mixed inputs, and the missing-GPU error."""

import subprocess
import sys
import types

import numpy as np
import pytest

import gpuenhance
from gpuenhance import _backend


@pytest.fixture
def fake_cupy(monkeypatch):
    """A stand-in ``cupy`` module in sys.modules: enough for array-type detection."""

    class ndarray(np.ndarray):
        pass

    module = types.SimpleNamespace(ndarray=ndarray)
    monkeypatch.setitem(sys.modules, "cupy", module)
    return module


def test_import_does_not_import_cupy():
    code = "import sys, gpuenhance; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("backend", [None, "auto", "cpu"])
def test_numpy_input_runs_on_cpu(backend):
    engine = _backend.resolve(np.zeros((2, 2), np.uint8), backend=backend)
    assert engine.name == "cpu"
    assert engine.input_on_gpu is False


def test_emulated_backend_is_selectable():
    engine = _backend.resolve(np.zeros((2, 2), np.uint8), backend="cuda-emulated")
    assert engine.name == "cuda-emulated"
    assert engine.xp is np


@pytest.mark.parametrize("bad", ["gpu", "CUDA", "", 3])
def test_unknown_backend_names_the_argument(bad):
    with pytest.raises(ValueError, match="backend must be one of"):
        _backend.resolve(np.zeros((2, 2), np.uint8), backend=bad)


def test_cuda_without_gpu_raises_backend_unavailable():
    if _backend.cuda_available():
        pytest.skip("a GPU works here")
    with pytest.raises(gpuenhance.BackendUnavailableError, match="backend='cuda'"):
        _backend.resolve(np.zeros((2, 2), np.uint8), backend="cuda")
    assert issubclass(gpuenhance.BackendUnavailableError, RuntimeError)


def test_cupy_arrays_are_detected_through_sys_modules(fake_cupy):
    gpu_array = np.zeros((2, 2), np.uint8).view(fake_cupy.ndarray)
    assert _backend.is_cupy(gpu_array)
    assert not _backend.is_cupy(np.zeros(2))
    assert _backend.is_array(gpu_array)


def test_mixed_numpy_and_cupy_inputs_raise_type_error(fake_cupy):
    gpu_array = np.zeros((2, 2), np.uint8).view(fake_cupy.ndarray)
    with pytest.raises(TypeError, match="mix NumPy and CuPy"):
        _backend.resolve(np.zeros((2, 2), np.uint8), gpu_array)


def test_none_inputs_are_ignored():
    assert _backend.resolve(None, np.zeros(3), None).name == "cpu"


def test_to_caller_keeps_containers():
    engine = _backend.Engine("cpu", input_on_gpu=False)
    a = np.arange(3)
    out = engine.to_caller((a, [a, 1], {"k": a}))
    assert isinstance(out, tuple) and isinstance(out[1], list) and isinstance(out[2], dict)
    assert out[0] is a and out[1][1] == 1 and out[2]["k"] is a


def test_info_lists_engines_and_versions():
    report = gpuenhance.info()
    assert report["gpuenhance"] == gpuenhance.__version__
    assert report["numpy"] == np.__version__
    assert report["engines"]["cpu"] == "available"
    assert set(report["engines"]) == {"cpu", "cuda", "cuda-emulated"}
    if not _backend.cuda_available():
        assert report["engines"]["cuda"].startswith("unavailable: ")
        assert report["gpus"] == []
