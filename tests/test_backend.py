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


def _entry_points(tmp_path):
    """Every public way to name a backend, each a zero-argument call that takes *backend*."""
    from gpuenhance.batch.runner import run_files

    img = np.zeros((8, 8), np.uint8)
    calls = {
        "median_filter": lambda b: gpuenhance.median_filter(img, 3, backend=b),
        "LMSRestorer": lambda b: gpuenhance.LMSRestorer(backend=b),
        "run_files": lambda b: run_files(lambda x: x, [tmp_path], tmp_path / "out", backend=b),
        "engine_name": _backend.engine_name,
    }
    try:
        import dask.array as da

        from gpuenhance import dask as gdask

        calls["dask.enhance"] = lambda b: gdask.enhance(da.zeros((8, 8), dtype=np.uint8),
                                                        "median:ksize=3", backend=b)
    except ImportError:
        pass
    return calls


def test_every_entry_point_refuses_an_unknown_backend_with_one_message(tmp_path):
    with pytest.raises(ValueError) as expected:
        _backend.check_name("gpu")
    for name, call in _entry_points(tmp_path).items():
        with pytest.raises(ValueError) as got:
            call("gpu")
        assert str(got.value) == str(expected.value), name
    assert not (tmp_path / "out").exists()


def test_an_emulator_that_cannot_build_is_refused_where_it_is_chosen(monkeypatch, tmp_path,
                                                                      capsys):
    from gpuenhance._cuda import emulator
    from gpuenhance.cli import main

    monkeypatch.setattr(emulator, "compiler_problem", lambda: "no C++ compiler (test)")
    with pytest.raises(gpuenhance.BackendUnavailableError, match=r"no C\+\+ compiler \(test\)"):
        _backend.resolve(np.zeros((2, 2), np.uint8), backend="cuda-emulated")
    with pytest.raises(gpuenhance.BackendUnavailableError, match="emulator is unavailable"):
        _backend.engine_name("cuda-emulated")
    assert main(["run", "-o", str(tmp_path / "out"), "--backend", "cuda-emulated"]) == 2
    err = capsys.readouterr().err
    assert "no C++ compiler (test)" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    assert gpuenhance.info()["engines"]["cuda-emulated"] == "unavailable: no C++ compiler (test)"


def test_auto_names_the_engine_a_run_would_use():
    expected = "cuda" if _backend.cuda_available() else "cpu"
    assert _backend.engine_name(None) == _backend.engine_name("auto") == expected
    assert _backend.engine_name("cpu") == "cpu"


def test_to_host_gives_numpy_and_keeps_none():
    assert _backend.to_host(None) is None
    out = _backend.to_host([[1, 2]])
    assert isinstance(out, np.ndarray) and out.tolist() == [[1, 2]]


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
