"""Which engine runs a call: array-type detection, per-call overrides and transfers.

The engine follows the input: NumPy arrays go to the CPU engine, CuPy arrays to the CUDA
engine. ``backend=`` overrides that per call. Importing this module never imports CuPy:
CuPy arrays are recognised through ``sys.modules``, so a process that never imported CuPy
cannot be holding one.
"""

from __future__ import annotations

import functools
import importlib
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

BACKENDS = ("cpu", "cuda", "cuda-emulated")


class BackendUnavailableError(RuntimeError):
    """Raised when ``backend="cuda"`` is asked for and no working GPU engine exists."""


def _cupy_module():
    return sys.modules.get("cupy")


def is_cupy(x: Any) -> bool:
    """True when *x* is a CuPy array (without importing CuPy)."""
    cp = _cupy_module()
    return cp is not None and isinstance(x, cp.ndarray)


def is_array(x: Any) -> bool:
    """True for NumPy and CuPy arrays."""
    return isinstance(x, np.ndarray) or is_cupy(x)


@functools.lru_cache(maxsize=1)
def _cuda_problem() -> str | None:
    """Why the CUDA engine cannot run here, or None when it can."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install raising anything
        return (
            f"CuPy is not importable ({type(exc).__name__}: {exc}); "
            "install gpuenhance[cuda12] or gpuenhance[cuda13]"
        )
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return f"CuPy found no usable CUDA driver or device ({type(exc).__name__}: {exc})"
    if count < 1:
        return "CuPy sees no CUDA device"
    return None


def cuda_available() -> bool:
    """True when the CUDA engine can run on this machine."""
    return _cuda_problem() is None


def require_cuda() -> None:
    """Raise :class:`BackendUnavailableError` unless the CUDA engine can run."""
    problem = _cuda_problem()
    if problem is not None:
        raise BackendUnavailableError(f"backend='cuda' was requested but {problem}")


def _emulator_problem() -> str | None:
    """Why the CUDA-on-CPU emulator cannot run here, or None when it can (cached by it)."""
    try:
        from ._cuda.emulator import compiler_problem
    except ImportError as exc:
        return str(exc)
    return compiler_problem()


def require(name: str) -> None:
    """Raise :class:`BackendUnavailableError` unless the engine *name* can run here.

    ``"cpu"`` always can; ``"cuda"`` needs a working CuPy and device; ``"cuda-emulated"``
    needs a C++ compiler that builds and runs the emulator.
    """
    if name == "cuda":
        require_cuda()
    elif name == "cuda-emulated":
        problem = _emulator_problem()
        if problem is not None:
            raise BackendUnavailableError(
                f"backend='cuda-emulated' was requested but the emulator is unavailable: {problem}"
            )


def check_name(backend) -> None:
    """Raise ValueError unless *backend* is None, ``"auto"`` or one of :data:`BACKENDS`."""
    if backend is not None and backend != "auto" and backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of 'auto', {', '.join(repr(b) for b in BACKENDS)}; "
            f"got {backend!r}"
        )


def engine_name(backend) -> str:
    """The engine a whole run uses here: None/``"auto"`` is CUDA when a GPU works, else CPU.

    A named engine is checked (:func:`check_name`) and must be able to run (:func:`require`).
    """
    check_name(backend)
    if backend in (None, "auto"):
        return "cuda" if cuda_available() else "cpu"
    require(backend)
    return backend


def to_host(x):
    """*x* as a NumPy array (copied off the GPU when it is a CuPy array); None stays None."""
    if x is None:
        return None
    return x.get() if is_cupy(x) else np.asarray(x)


@dataclass(frozen=True)
class Engine:
    """The engine chosen for one call and the way back to the caller's array type.

    Attributes
    ----------
    name : {"cpu", "cuda", "cuda-emulated"}
        The engine that computes.
    input_on_gpu : bool
        Whether the caller passed CuPy arrays (results go back as CuPy arrays).
    """

    name: str
    input_on_gpu: bool

    @property
    def xp(self):
        """The array module the engine computes with."""
        if self.name == "cuda":
            import cupy

            return cupy
        return np

    @property
    def package(self) -> str:
        return "gpuenhance._cpu" if self.name == "cpu" else "gpuenhance._cuda"

    def module(self, topic: str):
        """The engine module for *topic* (``"filters"``, ``"tone"``, ...)."""
        return importlib.import_module(f"{self.package}.{topic}")

    def context(self):
        """The kernel context (array module + kernel loader) of a CUDA engine."""
        from ._cuda._loader import get_context

        return get_context(self.name)

    def to_engine(self, x):
        """Move one array to the engine's array type (no-op when it is there already)."""
        if not is_array(x):
            return x
        if self.name == "cuda":
            import cupy

            return cupy.asarray(x)
        return to_host(x)

    def to_caller(self, y):
        """Move an engine result (array, or tuple/list/dict of them) to the caller's type."""
        if isinstance(y, (tuple, list)):
            return type(y)(self.to_caller(v) for v in y)
        if isinstance(y, dict):
            return {k: self.to_caller(v) for k, v in y.items()}
        if not is_array(y):
            return y
        if self.input_on_gpu and not is_cupy(y):
            import cupy

            return cupy.asarray(y)
        if not self.input_on_gpu and is_cupy(y):
            return to_host(y)
        return y

    def call(self, topic: str, name: str, *args, **kwargs):
        """Run ``<engine>.<topic>.<name>`` on engine arrays and return caller arrays.

        CPU engine functions take the arguments as they are; CUDA engine functions take the
        kernel context first.
        """
        # an engine module already imported is found without importlib's machinery
        func = getattr(sys.modules.get(f"{self.package}.{topic}") or self.module(topic), name)
        if self.name == "cpu" and _cupy_module() is None:  # no CuPy array exists: no moves
            return func(*args, **kwargs)
        args = tuple(self.to_engine(a) for a in args)
        kwargs = {k: self.to_engine(v) for k, v in kwargs.items()}
        if self.name == "cpu":
            out = func(*args, **kwargs)
        else:
            out = func(self.context(), *args, **kwargs)
        return self.to_caller(out)


# The engine of every call on NumPy arrays (frozen, so one instance serves all; building one
# costs about 0.7 us, a tenth of a small call).
_CPU = Engine(name="cpu", input_on_gpu=False)


def resolve(*arrays, backend: str | None = None) -> Engine:
    """Pick the engine for a call on *arrays*.

    Parameters
    ----------
    *arrays : array_like or None
        The call's array inputs; ``None`` entries are ignored.
    backend : {None, "auto", "cpu", "cuda", "cuda-emulated"}
        ``None``/``"auto"`` follow the input's array type.

    Raises
    ------
    TypeError
        When NumPy and CuPy arrays are mixed.
    ValueError
        For an unknown *backend*.
    BackendUnavailableError
        When ``"cuda"`` is needed and no GPU engine works, or ``"cuda-emulated"`` is asked
        for and the emulator cannot build here.
    """
    if backend is None and _cupy_module() is None:  # NumPy (or nothing) in, no override
        return _CPU
    check_name(backend)
    kinds = {is_cupy(a) for a in arrays if a is not None}
    if len(kinds) > 1:
        raise TypeError(
            "inputs mix NumPy and CuPy arrays; pass all of them as one array type"
        )
    on_gpu = kinds == {True}
    name = ("cuda" if on_gpu else "cpu") if backend in (None, "auto") else backend
    require(name)
    return Engine(name=name, input_on_gpu=on_gpu)


def _cupy_version() -> str | None:
    """CuPy's version where a CuPy distribution is installed (importable or not), else None."""
    from importlib import metadata

    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name == "cupy" or name.startswith("cupy-cuda"):
            return f"{dist.version} ({dist.metadata['Name']})"
    return None


def info() -> dict:
    """Versions, engines and GPUs this installation can use.

    Returns
    -------
    dict
        ``{"gpuenhance": ..., "python": ..., "numpy": ..., "opencv": ..., "cupy": ...,
        "engines": {...}, "gpus": [...]}``; ``cupy`` is CuPy's version when it is installed
        (whether or not a driver works: ``engines["cuda"]`` says), None when it is not.

    Examples
    --------
    >>> import gpuenhance
    >>> report = gpuenhance.info()
    >>> report["engines"]["cpu"]
    'available'
    """
    import platform

    import cv2

    from . import __version__

    report: dict[str, Any] = {
        "gpuenhance": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "cupy": None,
        "engines": {"cpu": "available"},
        "gpus": [],
    }
    report["cupy"] = _cupy_version()
    problem = _cuda_problem()
    if problem is None:
        import cupy

        report["engines"]["cuda"] = "available"
        for i in range(cupy.cuda.runtime.getDeviceCount()):
            props = cupy.cuda.runtime.getDeviceProperties(i)
            name = props["name"]
            report["gpus"].append(
                {
                    "index": i,
                    "name": name.decode() if isinstance(name, bytes) else str(name),
                    "compute_capability": f"{props['major']}.{props['minor']}",
                    "memory_gib": round(props["totalGlobalMem"] / 2**30, 1),
                }
            )
    else:
        report["engines"]["cuda"] = f"unavailable: {problem}"
    emu = _emulator_problem()
    report["engines"]["cuda-emulated"] = "available" if emu is None else f"unavailable: {emu}"
    return report
