"""CUDA-on-CPU emulator: runs ``kernels/*.cu`` on the CPU (``backend="cuda-emulated"``).

The very same kernel source that NVRTC compiles for the GPU is compiled here by the system
C++ compiler (``$CXX``, else ``g++``/``c++``/``clang++``; C++20), with ``cuda_emu.h``
pre-included: it maps the CUDA built-ins (``threadIdx``, ``__syncthreads``, ``__shared__``,
atomics, vector types, intrinsics) onto the CPU and defines ``GPUENHANCE_EMULATOR``. One
``extern "C"`` launch wrapper per name expression is generated and appended; the shared
object is cached on disk and loaded with :mod:`ctypes`. The threads and barriers live in a
small runtime library (``runtime.cpp``, built once per compiler and cached the same way) to
which every module is bound through the C interface of ``emu_api.h``; keeping the heavy
standard headers out of the kernel modules makes each module compile about a second faster.

The interface mirrors ``cupy.RawModule`` / ``cupy.RawKernel``::

    mod = load_module(source, ("gpuenhance_add<float>",), filename="add.cu")
    kern = mod.get_function("gpuenhance_add<float>")
    kern((blocks,), (256,), (x, y, out, np.int32(n)), shared_mem=0)

Execution: a launch runs on ``blockDim.x*y*z`` real OS threads (pooled: started by the
first launch that needs them, parked between launches); each walks every block of the
grid in order (``blockIdx.x`` fastest) and all threads meet between blocks, so a block's
threads really run concurrently while ``__shared__`` arrays (function-scope statics) belong
to one block at a time. ``__syncthreads`` is a blocking (futex) barrier; threads that
returned from the kernel count as arrived. A barrier that waits longer than
``$GPUENHANCE_EMULATOR_BARRIER_TIMEOUT`` seconds (default 120) fails the launch with
:class:`~gpuenhance._cuda._loader.KernelError`. Launches are serialized process-wide. A
16x16 block costs about 1 ms per barrier on two cores: keep emulated images small (a 64x64
image with 16x16 blocks runs in a few ms).

Arguments: contiguous NumPy arrays are passed as pointers to their data (a non-contiguous
array raises ``ValueError``); NumPy scalars keep their exact type (``np.int32`` is 4 bytes);
Python ``int`` -> int64, ``float`` -> float64, ``bool`` -> bool, as CuPy does. Host code must
pass the exact C++ parameter types, as on a GPU, where a mismatch silently corrupts the
arguments. The emulator goes one step further than CuPy and *checks* every argument against
the kernel's C++ signature (pointer vs. scalar, integer vs. floating, size) and raises
``TypeError`` on a mismatch, so that CI catches such bugs.

Dynamic shared memory (``GPUENHANCE_DYNAMIC_SMEM`` in ``kernels/common.cuh``) is a 16-byte
aligned buffer of ``shared_mem`` bytes, filled with ``0xFF`` bytes before every block (NaN for
floats, all ones for integers) to expose reads of shared memory no thread wrote; set
``GPUENHANCE_EMULATOR_POISON=0`` to zero it instead. As on a GPU, more than 48 KiB needs
``kernel.max_dynamic_shared_size_bytes`` set first.

Environment: ``CXX`` (compiler), ``GPUENHANCE_CACHE_DIR`` (cache root; the emulator uses its
``emulator`` subfolder, default ``~/.cache/gpuenhance/emulator``),
``GPUENHANCE_EMULATOR_SANITIZE=1`` (build with ``-fsanitize=address,undefined``; the Python
process then needs ``LD_PRELOAD`` of the sanitizer runtime), ``GPUENHANCE_EMULATOR_BARRIER_TIMEOUT``,
``GPUENHANCE_EMULATOR_POISON``.

A kernel that crashes (an out-of-bounds write, say) crashes the Python process, as it would
corrupt memory on a GPU.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from .._loader import KernelError

__all__ = ["compiler_problem", "load_module", "EmulatedModule", "EmulatedKernel", "cache_dir"]

_HERE = Path(__file__).parent
_HEADER = _HERE / "cuda_emu.h"
_API_HEADER = _HERE / "emu_api.h"
_RUNTIME_SOURCE = _HERE / "runtime.cpp"
_WRAPPER_VERSION = "2"
FLAGS = (
    "-std=c++20",
    "-O2",
    "-fPIC",
    "-shared",
    "-pthread",
    "-fno-strict-aliasing",
    "-ffp-contract=off",
    "-fno-math-errno",
    "-w",
)
SANITIZE_FLAGS = ("-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g")
DEFAULT_MAX_DYNAMIC_SMEM = 48 * 1024
MAX_DYNAMIC_SMEM = 227 * 1024
_COMPILE_TIMEOUT_S = 900

_MODULES: dict[str, EmulatedModule] = {}
_MODULES_LOCK = threading.Lock()
_RUNTIME: dict[str, tuple[ctypes.CDLL, int]] = {}  # cache key -> (library, api pointer)


# ---------------------------------------------------------------------------------------------
# Compiler discovery
# ---------------------------------------------------------------------------------------------


def _compiler_command() -> list[str]:
    """The C++ compiler as an argument list; raises ``RuntimeError`` when none is found."""
    env = os.environ.get("CXX", "").strip()
    if env:
        cmd = shlex.split(env)
        if shutil.which(cmd[0]) is None:
            raise RuntimeError(f"$CXX={env!r} is not an executable")
        return cmd
    for name in ("g++", "c++", "clang++"):
        path = shutil.which(name)
        if path:
            return [path]
    raise RuntimeError("no C++ compiler found (set $CXX, or install g++)")


@functools.lru_cache(maxsize=None)
def _compiler_version(cmd: tuple[str, ...]) -> str:
    try:
        proc = subprocess.run(
            [*cmd, "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"{' '.join(cmd)} --version failed: {exc}") from exc
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} --version failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def _flags() -> tuple[str, ...]:
    if os.environ.get("GPUENHANCE_EMULATOR_SANITIZE", "") not in ("", "0"):
        return FLAGS + SANITIZE_FLAGS
    return FLAGS


def cache_dir() -> Path:
    """Where compiled modules are kept (created on demand)."""
    root = os.environ.get("GPUENHANCE_CACHE_DIR")
    if root:
        base = Path(root).expanduser() / "emulator"
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "gpuenhance" / "emulator"
    try:
        base.mkdir(parents=True, exist_ok=True)
        if os.access(base, os.W_OK):
            return base
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"gpuenhance-{os.getuid()}" / "emulator"
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


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


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------


_WRAPPERS_FILE = "<emulator launch wrappers>"
_WRAPPER_LINES = 8  # lines of wrapper text per name expression


def _wrapper_text(name_expressions: tuple[str, ...]) -> str:
    """One launch wrapper and one signature function per name expression (8 lines each)."""
    parts = [f'#line 1 "{_WRAPPERS_FILE}"\n']
    for i, expr in enumerate(name_expressions):
        if "\n" in expr:
            raise ValueError(f"name expression {expr!r} must be one line")
        parts.append(
            f"// name expression {i}: {expr}\n"
            f'extern "C" int gpuenhance_emu_launch_{i}(const unsigned* grid, const unsigned* block, '
            "size_t smem, void** args, double timeout_s, int poison, char* err, size_t errlen) {\n"
            f"    return gpuenhance_emu::launch(&({expr}), grid, block, smem, args, timeout_s, "
            "poison, err, errlen);\n}\n"
            f'extern "C" const char* gpuenhance_emu_signature_{i}() {{\n'
            f"    return gpuenhance_emu::signature(&({expr}));\n}}\n\n"
        )
    return "".join(parts)


def _blame_name_expressions(log: str, name_expressions: tuple[str, ...]) -> str:
    """The name expressions whose wrappers the compiler complains about, as a hint."""
    bad = []
    for m in re.finditer(re.escape(_WRAPPERS_FILE) + r":(\d+)", log):
        i = (int(m.group(1)) - 1) // _WRAPPER_LINES
        if 0 <= i < len(name_expressions) and name_expressions[i] not in bad:
            bad.append(name_expressions[i])
    if not bad:
        return ""
    return (
        "\nThese name expressions do not name a __global__ function of the file with matching "
        "template arguments: " + ", ".join(repr(b) for b in bad)
    )


def _c_string_literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _translation_unit(source: str, name_expressions: tuple[str, ...], filename: str) -> str:
    return (
        f"#line 1 {_c_string_literal(filename)}\n"
        + source
        + ("" if source.endswith("\n") else "\n")
        + _wrapper_text(name_expressions)
    )


def _compile_shared_object(
    cmd: list[str],
    flags: tuple[str, ...],
    text: str,
    target: Path,
    filename: str,
    include: tuple[str, ...] = ("-include", str(_HEADER)),
    name_expressions: tuple[str, ...] = (),
) -> None:
    """Compile *text* into the shared object *target*, atomically; KernelError on failure."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="build-", dir=target.parent) as tmp:
        src = Path(tmp) / "module.cpp"
        src.write_text(text)
        out = Path(tmp) / "module.so"
        argv = [*cmd, *flags, *include, "-o", str(out), str(src)]
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=_COMPILE_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise KernelError(
                f"{filename}: the emulator's C++ compile took more than {_COMPILE_TIMEOUT_S} s"
            ) from exc
        except OSError as exc:
            raise KernelError(f"{filename}: could not run the C++ compiler: {exc}") from exc
        if proc.returncode != 0:
            log = (proc.stderr or proc.stdout).replace(str(src), filename).strip()
            if len(log) > 8000:
                log = log[:8000] + "\n... (truncated)"
            hint = _blame_name_expressions(log, name_expressions)
            raise KernelError(f"{filename} failed to compile for the CUDA emulator:\n{log}{hint}")
        os.replace(out, target)


def _runtime(cmd: list[str], version: str, flags: tuple[str, ...]) -> int:
    """The runtime library's API pointer (built once per compiler and flags, cached on disk)."""
    key = hashlib.sha256(
        "\0".join(
            [_WRAPPER_VERSION, _RUNTIME_SOURCE.read_text(), _API_HEADER.read_text(), " ".join(cmd), version, " ".join(flags)]
        ).encode()
    ).hexdigest()[:40]
    found = _RUNTIME.get(key)
    if found is not None:
        return found[1]
    target = cache_dir() / f"runtime-{key}.so"
    if not target.is_file():
        _compile_shared_object(
            cmd, flags, _RUNTIME_SOURCE.read_text(), target, "emulator runtime.cpp", include=("-I", str(_HERE))
        )
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as exc:
        raise KernelError(f"could not load the emulator runtime {target}: {exc}") from exc
    get_api = lib.gpuenhance_emu_runtime_api
    get_api.restype = ctypes.c_void_p
    get_api.argtypes = []
    api = get_api()
    _RUNTIME[key] = (lib, api)
    return api


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
    key = hashlib.sha256(
        "\0".join(
            [
                _WRAPPER_VERSION,
                text,
                _HEADER.read_text(),
                _API_HEADER.read_text(),
                " ".join(cmd),
                version,
                " ".join(flags),
            ]
        ).encode()
    ).hexdigest()[:40]
    with _MODULES_LOCK:
        mod = _MODULES.get(key)
        if mod is not None:
            return mod
        api = _runtime(cmd, version, flags)
        target = cache_dir() / f"{key}.so"
        if not target.is_file():
            _compile_shared_object(cmd, flags, text, target, filename, name_expressions=exprs)
        try:
            lib = ctypes.CDLL(str(target))
        except OSError as exc:
            raise KernelError(f"{filename}: could not load the emulated module {target}: {exc}") from exc
        bind = lib.gpuenhance_emu_bind
        bind.restype = ctypes.c_int
        bind.argtypes = [ctypes.c_void_p]
        if bind(api) != 0:
            raise KernelError(f"{filename}: the emulated module {target} does not match the runtime")
        mod = EmulatedModule(lib, exprs, filename, target)
        _MODULES[key] = mod
        return mod


# ---------------------------------------------------------------------------------------------
# Module and kernel objects
# ---------------------------------------------------------------------------------------------


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


_KIND_WORDS = {
    "p": "a pointer (pass a contiguous NumPy array)",
    "b": "bool",
    "f": "a floating-point scalar",
    "i": "a signed integer scalar",
    "u": "an unsigned integer scalar",
    "o": "a by-value object",
}
_NUMPY_HINT = {
    ("i", 4): "np.int32",
    ("i", 8): "np.int64",
    ("u", 4): "np.uint32",
    ("u", 8): "np.uint64",
    ("f", 4): "np.float32",
    ("f", 8): "np.float64",
    ("b", 1): "np.bool_",
    ("i", 2): "np.int16",
    ("u", 2): "np.uint16",
    ("i", 1): "np.int8",
    ("u", 1): "np.uint8",
}
_SLOT = 16  # bytes per scalar slot; the bytes past the value are poisoned


def _dims(value, what: str) -> tuple[int, int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        dims = (int(value),)
    elif isinstance(value, tuple) and 1 <= len(value) <= 3:
        dims = tuple(int(v) for v in value)
    else:
        raise ValueError(f"{what} must be an int or a tuple of 1 to 3 ints, got {value!r}")
    if any(d < 1 for d in dims):
        raise ValueError(f"{what} dimensions must be >= 1, got {value!r}")
    dims = dims + (1,) * (3 - len(dims))
    if any(d >= 2**32 for d in dims):
        raise ValueError(f"{what} dimensions must be < 2**32, got {value!r}")
    return dims


class EmulatedKernel:
    """One kernel of an emulated module: the emulator's counterpart of ``cupy.RawKernel``.

    Call it as ``kernel(grid, block, args, shared_mem=0)``.
    """

    def __init__(self, launch, signature, name_expression: str, filename: str):
        self._launch = launch
        self.signature = signature
        self.name_expression = name_expression
        self.filename = filename
        self.max_dynamic_shared_size_bytes = DEFAULT_MAX_DYNAMIC_SMEM

    def __repr__(self) -> str:
        return f"<EmulatedKernel {self.name_expression} from {self.filename}>"

    def _where(self) -> str:
        return f"kernel {self.name_expression} ({self.filename})"

    def _marshal(self, args) -> tuple[ctypes.Array, list]:
        if not isinstance(args, (tuple, list)):
            raise TypeError(f"{self._where()}: args must be a tuple, got {type(args).__name__}")
        if len(args) != len(self.signature):
            raise TypeError(
                f"{self._where()}: takes {len(self.signature)} arguments, {len(args)} given"
            )
        keep: list = []
        ptrs = (ctypes.c_void_p * max(1, len(args)))()
        for i, (arg, (kind, size)) in enumerate(zip(args, self.signature)):
            if isinstance(arg, np.ndarray):
                if not arg.flags.c_contiguous:
                    raise ValueError(
                        f"{self._where()}: argument {i} is a non-contiguous array "
                        f"(shape {arg.shape}, strides {arg.strides}); pass a C-contiguous array "
                        "(xp.ascontiguousarray)"
                    )
                if kind != "p":
                    raise TypeError(
                        f"{self._where()}: argument {i} is an array but the parameter is "
                        f"{_KIND_WORDS[kind]} of {size} bytes"
                    )
                holder = np.array([arg.__array_interface__["data"][0]], dtype=np.uintp)
            else:
                if isinstance(arg, np.generic):
                    value = arg
                elif isinstance(arg, bool):
                    value = np.bool_(arg)
                elif isinstance(arg, int):
                    value = np.int64(arg)  # OverflowError past int64, as CuPy
                elif isinstance(arg, float):
                    value = np.float64(arg)
                else:
                    raise TypeError(
                        f"{self._where()}: argument {i} has unsupported type "
                        f"{type(arg).__name__} (pass NumPy arrays and NumPy scalars)"
                    )
                vkind = {"b": "b", "f": "f", "i": "i", "u": "u"}.get(value.dtype.kind, "o")
                # Signedness does not change the bits; size and int/float do.
                same_kind = vkind == kind or {vkind, kind} == {"i", "u"} or kind == "o"
                if not same_kind or value.dtype.itemsize != size:
                    hint = _NUMPY_HINT.get((kind, size))
                    want = f"{_KIND_WORDS[kind]} of {size} bytes" + (f" ({hint})" if hint else "")
                    raise TypeError(
                        f"{self._where()}: argument {i} is {value.dtype.name} "
                        f"({value.dtype.itemsize} bytes) but the parameter is {want}; "
                        "pass the exact C++ parameter type"
                    )
                raw = np.frombuffer(value.tobytes(), dtype=np.uint8)
                holder = np.full(max(_SLOT, raw.size), 0xA5, dtype=np.uint8)
                holder[: raw.size] = raw
                holder = holder.view(np.uint64) if holder.size % 8 == 0 else holder
            keep.append(holder)
            ptrs[i] = holder.ctypes.data
        return ptrs, keep

    def __call__(self, grid, block, args, shared_mem: int = 0):
        grid3 = _dims(grid, "grid")
        block3 = _dims(block, "block")
        shared_mem = int(shared_mem)
        if shared_mem < 0:
            raise ValueError(f"shared_mem must be >= 0, got {shared_mem}")
        limit = min(int(self.max_dynamic_shared_size_bytes), MAX_DYNAMIC_SMEM)
        if shared_mem > limit:
            raise KernelError(
                f"{self._where()}: {shared_mem} bytes of dynamic shared memory exceed the limit "
                f"of {limit} bytes (set max_dynamic_shared_size_bytes, at most {MAX_DYNAMIC_SMEM})"
            )
        threads = block3[0] * block3[1] * block3[2]
        if threads > 1024 or block3[2] > 64 or grid3[1] > 65535 or grid3[2] > 65535:
            raise KernelError(
                f"{self._where()}: invalid launch configuration grid={grid3} block={block3} "
                "(CUDA allows at most 1024 threads per block, block.z <= 64, grid.y/z <= 65535)"
            )
        ptrs, keep = self._marshal(args)
        g = (ctypes.c_uint * 3)(*grid3)
        b = (ctypes.c_uint * 3)(*block3)
        err = ctypes.create_string_buffer(4096)
        timeout = float(os.environ.get("GPUENHANCE_EMULATOR_BARRIER_TIMEOUT", "120"))
        poison = 0 if os.environ.get("GPUENHANCE_EMULATOR_POISON", "1") == "0" else 1
        rc = self._launch(
            ctypes.addressof(g),
            ctypes.addressof(b),
            shared_mem,
            ctypes.addressof(ptrs),
            timeout,
            poison,
            err,
            len(err),
        )
        del keep
        if rc != 0:
            raise KernelError(f"{self._where()} failed: {err.value.decode(errors='replace')}")
