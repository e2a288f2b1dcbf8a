"""Emulated kernel modules: :func:`load_module` compiles a kernel file (memoized in the process,
cached on disk), :class:`EmulatedModule` is its ``cupy.RawModule`` counterpart, and
:func:`compiler_problem` says whether the whole path works here."""

from __future__ import annotations

import ctypes
import functools
import threading
from pathlib import Path

import numpy as np

from .._errors import KernelError
from .compiler import (
    _compile_shared_object, _compiler_command, _compiler_version, _flags, _runtime,
    _translation_unit, cache_dir, module_key, shared_object,
)
from .kernel import EmulatedKernel

_MODULES: dict[str, EmulatedModule] = {}
_MODULES_LOCK = threading.Lock()


def load_module(
    source: str, name_expressions: tuple[str, ...], filename: str = "<kernel>"
) -> EmulatedModule:
    """Compile (or fetch from cache) *source* with launch wrappers for *name_expressions*.

    Parameters
    ----------
    source : str
        Self-contained kernel source (``kernel_source(file)``: local includes inlined).
    name_expressions : tuple of str
        Every ``__global__`` function (template instantiation) to expose, spelled as for
        ``cupy.RawModule(name_expressions=...)``, e.g. ``"gpuenhance_median<gpuenhance_u8, 3>"``.
    filename : str
        Used in error messages.

    Returns
    -------
    EmulatedModule
        Memoized per (source, name expressions, compiler, flags).

    Raises
    ------
    KernelError
        The source does not compile (the message quotes the compiler), or no compiler exists.
    """
    exprs = tuple(str(e) for e in name_expressions)
    if not exprs:
        raise ValueError("name_expressions must list at least one kernel")
    try:
        cmd = _compiler_command()
        version = _compiler_version(tuple(cmd))
    except RuntimeError as exc:
        raise KernelError(f"{filename}: the CUDA emulator has no working compiler: {exc}") from exc
    flags = _flags()
    text = _translation_unit(source, exprs, filename)
    key = module_key(text, cmd, version, flags)
    with _MODULES_LOCK:
        mod = _MODULES.get(key)
        if mod is not None:
            return mod
        api = _runtime(cmd, version, flags)
        target = cache_dir() / f"{key}.so"
        lib = shared_object(
            target,
            lambda: _compile_shared_object(cmd, flags, text, target, filename,
                                           name_expressions=exprs),
            f"{filename}: could not load the emulated module",
        )
        bind = lib.gpuenhance_emu_bind
        bind.restype = ctypes.c_int
        bind.argtypes = [ctypes.c_void_p]
        if bind(api) != 0:
            raise KernelError(f"{filename}: the emulated module {target} does not match the runtime")
        mod = EmulatedModule(lib, exprs, filename, target)
        _MODULES[key] = mod
        return mod



class EmulatedModule:
    """A compiled kernel file: the emulator's counterpart of ``cupy.RawModule``."""

    def __init__(self, lib: ctypes.CDLL, name_expressions: tuple[str, ...], filename: str, path: Path):
        self._lib = lib
        self.name_expressions = name_expressions
        self.filename = filename
        self.path = path
        self._kernels: dict[str, EmulatedKernel] = {}

    def get_function(self, name_expression: str) -> EmulatedKernel:
        """The kernel of *name_expression* (one of the expressions given at load time)."""
        kern = self._kernels.get(name_expression)
        if kern is not None:
            return kern
        try:
            index = self.name_expressions.index(name_expression)
        except ValueError:
            raise KernelError(
                f"{self.filename}: name expression {name_expression!r} was not compiled into this "
                f"module (it has {list(self.name_expressions)}); add it to the module's name "
                "expressions (and to KERNELS)"
            ) from None
        launch = getattr(self._lib, f"gpuenhance_emu_launch_{index}")
        launch.restype = ctypes.c_int
        launch.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_void_p,
            ctypes.c_double,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_size_t,
        ]
        sig_fn = getattr(self._lib, f"gpuenhance_emu_signature_{index}")
        sig_fn.restype = ctypes.c_char_p
        sig_fn.argtypes = []
        signature = tuple(
            (part[0], int(part[1:])) for part in sig_fn().decode().split(",") if part
        )
        kern = EmulatedKernel(launch, signature, name_expression, self.filename)
        self._kernels[name_expression] = kern
        return kern



_PROBE_SOURCE = r"""
template <typename T>
__global__ void gpuenhance_probe(const T* __restrict__ a, T* __restrict__ out, int n) {
    __shared__ T tile[64];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    tile[threadIdx.x] = i < n ? a[i] : T(0);
    __syncthreads();
    if (i < n) out[i] = tile[blockDim.x - 1 - threadIdx.x] + T(1);
}
"""


@functools.lru_cache(maxsize=1)
def compiler_problem() -> str | None:
    """``None`` when the emulator works here, else why not (cached).

    Builds and runs a tiny kernel (barrier and shared memory included) through the whole
    path: compiler, header, cache, ctypes, threads.
    """
    try:
        mod = load_module(_PROBE_SOURCE, ("gpuenhance_probe<float>",), filename="<probe>")
        a = np.arange(16, dtype=np.float32)
        out = np.zeros(16, dtype=np.float32)
        mod.get_function("gpuenhance_probe<float>")((2,), (8,), (a, out, np.int32(16)))
        expected = a.reshape(2, 8)[:, ::-1].ravel() + 1
        if not np.array_equal(out, expected):
            return "the probe kernel computed a wrong result"
    except Exception as exc:  # any failure means "unavailable", with the reason
        return f"{type(exc).__name__}: {exc}"
    return None
