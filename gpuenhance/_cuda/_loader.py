"""Kernel loading for the CUDA engine: sources, memoized modules, and the kernel context.

One memoized module per (engine, device, kernel file, name expressions). On a GPU the module
is a ``cupy.RawModule`` (CuPy's disk cache gives cross-process reuse); under
``backend="cuda-emulated"`` it is the CUDA-on-CPU emulator's module, built from the very same
source text.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from pathlib import Path

NVRTC_OPTIONS = ("-std=c++17",)
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"[ \t]*$', re.MULTILINE)


class KernelError(RuntimeError):
    """A kernel failed to compile or launch; the message names the kernel and the reason."""


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
    """What the CUDA host code needs: an array module and compiled kernel modules.

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

    def module(self, filename: str, name_expressions):
        """The compiled module of ``kernels/<filename>`` with these name expressions.

        Its ``get_function(name_expression)`` returns a callable
        ``kernel(grid, block, args, shared_mem=0)``.
        """
        exprs = tuple(name_expressions)
        if self.name == "cuda":
            import cupy

            return _cupy_module(cupy.cuda.runtime.getDevice(), filename, exprs)
        return _emulated_module(filename, exprs)

    def function(self, filename: str, name_expressions, name: str):
        """Shorthand for ``module(filename, name_expressions).get_function(name)``."""
        return self.module(filename, name_expressions).get_function(name)


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


@functools.lru_cache(maxsize=None)
def _cupy_module(device: int, filename: str, exprs: tuple[str, ...]):
    import cupy

    try:
        mod = cupy.RawModule(
            code=kernel_source(filename), options=NVRTC_OPTIONS, name_expressions=list(exprs)
        )
        mod.compile()
    except cupy.cuda.compiler.CompileException as exc:
        raise KernelError(f"kernels/{filename} failed to compile with NVRTC: {exc}") from exc
    return _CupyModule(mod, filename)


@functools.lru_cache(maxsize=None)
def _emulated_module(filename: str, exprs: tuple[str, ...]):
    from .emulator import load_module

    return load_module(kernel_source(filename), exprs, filename=filename)


@functools.lru_cache(maxsize=None)
def get_context(name: str) -> Context:
    """The (memoized) context of engine *name*."""
    return Context(name)
