"""Kernel loading for the CUDA engine: sources, declared kernels, the kernel context.

Host code reaches a kernel one way: ``ctx.kernel("median.cu", name_expression)``. Each topic
module declares the name expressions of its kernel files once, ``KERNELS = declare({...})``;
the loader compiles a file with every expression declared for it (the set
tests/test_kernels_compile.py compiles with NVRTC), once per engine and device. On a GPU the
module is a ``cupy.RawModule`` (CuPy's disk cache gives cross-process reuse); under
``backend="cuda-emulated"`` it is the CUDA-on-CPU emulator's module, built from the very same
source text.

What belongs to one device (compiled modules, tables uploaded once) is memoized by
:func:`per_device`, keyed by the engine and the current device.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from pathlib import Path

from ._errors import KernelError

__all__ = ["Context", "KernelError", "declare", "declared", "get_context", "kernel_dir",
           "kernel_source", "per_device"]

NVRTC_OPTIONS = ("-std=c++17",)
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"[ \t]*$', re.MULTILINE)

# kernel file -> every name expression declared for it (filled by declare()).
_DECLARED: dict[str, tuple[str, ...]] = {}


def declare(kernels: dict) -> dict:
    """Register a topic module's ``KERNELS`` (kernel file -> name expressions); returns it.

    These are the instantiations :meth:`Context.kernel` compiles a file with. A file is
    declared by one module: a second, different list for it raises ``KernelError``.
    """
    for filename, exprs in kernels.items():
        exprs = tuple(exprs)
        known = _DECLARED.setdefault(filename, exprs)
        if known != exprs:
            raise KernelError(f"kernels/{filename} is declared twice, with different name "
                              "expressions; one topic module's KERNELS lists a file")
    return kernels


def declared(filename: str) -> tuple[str, ...]:
    """The name expressions declared for ``kernels/<filename>``."""
    try:
        return _DECLARED[filename]
    except KeyError:
        raise KernelError(
            f"no topic module declares kernels/{filename}: list it in a _cuda module's "
            "KERNELS = declare({...})"
        ) from None


@functools.lru_cache(maxsize=1)
def kernel_dir() -> Path:
    """The folder holding the ``.cu`` files: in the wheel, else the source tree."""
    packaged = resources.files("gpuenhance").joinpath("kernels")
    if packaged.is_dir():
        return Path(str(packaged))
    source_tree = Path(__file__).resolve().parents[2] / "kernels"
    if source_tree.is_dir():
        return source_tree
    raise KernelError(
        "kernel sources not found: neither gpuenhance/kernels in the installed package nor "
        f"{source_tree} exists"
    )


@functools.lru_cache(maxsize=None)
def kernel_source(filename: str) -> str:
    """The text of ``kernels/<filename>`` with its local ``#include "..."`` lines inlined.

    Inlining makes the text self-contained, so that CuPy's cache key (a hash of the source)
    and the emulator's changes whenever a header changes.
    """
    seen: set[str] = set()

    def expand(name: str) -> str:
        if name in seen:
            return ""
        seen.add(name)
        path = kernel_dir() / name
        if not path.is_file():
            raise KernelError(f"kernel source {name!r} not found in {kernel_dir()}")
        text = path.read_text()
        return _INCLUDE.sub(lambda m: expand(m.group(1)), text)

    return expand(filename)


class Context:
    """What the CUDA host code needs: an array module and the kernels (:meth:`kernel`).

    Attributes
    ----------
    name : {"cuda", "cuda-emulated"}
    xp : module
        ``cupy`` on a GPU, ``numpy`` under the emulator.
    """

    def __init__(self, name: str):
        self.name = name
        if name == "cuda":
            import cupy

            self.xp = cupy
        else:
            import numpy

            self.xp = numpy

    def device(self):
        """The current CuPy device's id on a GPU; ``None`` under the emulator."""
        if self.name == "cuda":
            return self.xp.cuda.runtime.getDevice()
        return None

    def kernel(self, filename: str, name: str):
        """Kernel *name* (a declared name expression) of ``kernels/<filename>``.

        A callable ``kernel(grid, block, args, shared_mem=0)``; its file is compiled with
        every declared name expression on first use, once per device.
        """
        return _module(self, filename).get_function(name)


def per_device(maxsize: int | None = None):
    """Memoize ``func(ctx, *args)`` per (engine, current device, args) in an LRU cache.

    The one memo for what belongs to a device: compiled modules, tables uploaded once. The
    cached function is called with the engine's context from :func:`get_context`.
    """

    def decorate(func):
        @functools.lru_cache(maxsize=maxsize)
        def cached(engine: str, device, args: tuple):
            return func(get_context(engine), *args)

        @functools.wraps(func)
        def memoized(ctx, *args):
            return cached(ctx.name, ctx.device(), args)

        memoized.cache_info = cached.cache_info
        memoized.cache_clear = cached.cache_clear
        return memoized

    return decorate


class _NamedLaunch:
    """A ``cupy.RawKernel`` whose launch errors name the kernel and its file."""

    def __init__(self, kernel, filename: str, name: str):
        self._kernel = kernel
        self._where = f"kernel {name} (kernels/{filename})"

    @property
    def max_dynamic_shared_size_bytes(self) -> int:
        """The kernel's dynamic shared memory limit (set it to opt into more than 48 KiB)."""
        return self._kernel.max_dynamic_shared_size_bytes

    @max_dynamic_shared_size_bytes.setter
    def max_dynamic_shared_size_bytes(self, value: int) -> None:
        self._kernel.max_dynamic_shared_size_bytes = int(value)

    def __call__(self, grid, block, args, shared_mem=0):
        import cupy

        try:
            return self._kernel(grid, block, args, shared_mem=shared_mem)
        except (cupy.cuda.driver.CUDADriverError, cupy.cuda.runtime.CUDARuntimeError) as exc:
            raise KernelError(f"{self._where} failed to launch: {exc}") from exc


class _CupyModule:
    """A compiled ``cupy.RawModule`` whose functions name themselves in launch errors."""

    def __init__(self, module, filename: str):
        self._module = module
        self._filename = filename
        self._functions: dict[str, _NamedLaunch] = {}

    def get_function(self, name: str) -> _NamedLaunch:
        if name not in self._functions:
            try:
                kernel = self._module.get_function(name)
            except Exception as exc:
                raise KernelError(
                    f"kernel {name} is not in kernels/{self._filename}: {exc}"
                ) from exc
            self._functions[name] = _NamedLaunch(kernel, self._filename, name)
        return self._functions[name]


@per_device()
def _module(ctx, filename: str):
    """``kernels/<filename>`` compiled with its declared name expressions."""
    exprs = declared(filename)
    source = kernel_source(filename)
    if ctx.name != "cuda":
        from .emulator import load_module

        return load_module(source, exprs, filename=filename)
    import cupy

    try:
        mod = cupy.RawModule(code=source, options=NVRTC_OPTIONS, name_expressions=list(exprs))
        mod.compile()
    except cupy.cuda.compiler.CompileException as exc:
        raise KernelError(f"kernels/{filename} failed to compile with NVRTC: {exc}") from exc
    return _CupyModule(mod, filename)


@functools.lru_cache(maxsize=None)
def get_context(name: str) -> Context:
    """The (memoized) context of engine *name*."""
    return Context(name)
