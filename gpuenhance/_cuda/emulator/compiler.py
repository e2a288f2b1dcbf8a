"""The emulator's build: finding the C++ compiler, its flags, the cache folder, the launch
wrappers appended to a kernel file, and compiling shared objects (kernel modules and the
threads-and-barriers runtime library).

The very same kernel source that NVRTC compiles for the GPU is compiled here by the system
C++ compiler (``$CXX``, else ``g++``/``c++``/``clang++``; C++20), with ``cuda_emu.h``
pre-included: it maps the CUDA built-ins (``threadIdx``, ``__syncthreads``, ``__shared__``,
atomics, vector types, intrinsics) onto the CPU and defines ``GPUENHANCE_EMULATOR``. One
``extern "C"`` launch wrapper per name expression is generated and appended; the shared
object is cached on disk. The threads and barriers live in a small runtime library
(``runtime.cpp``, built once per compiler and cached the same way) to which every module is
bound through the C interface of ``emu_api.h``; keeping the heavy standard headers out of the
kernel modules makes each module compile about a second faster.

Environment: ``CXX`` (compiler), ``GPUENHANCE_CACHE_DIR`` (cache root; the emulator uses its
``emulator`` subfolder, default ``~/.cache/gpuenhance/emulator``),
``GPUENHANCE_EMULATOR_SANITIZE=1`` (build with ``-fsanitize=address,undefined``; the Python
process then needs ``LD_PRELOAD`` of the sanitizer runtime).
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
from pathlib import Path

from .._errors import KernelError

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
_COMPILE_TIMEOUT_S = 900

_RUNTIME: dict[str, tuple[ctypes.CDLL, int]] = {}  # cache key -> (library, api pointer)


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



def module_key(text: str, cmd: list[str], version: str, flags: tuple[str, ...]) -> str:
    """The cache key of a kernel module: its translation unit, the headers, the compiler."""
    return hashlib.sha256(
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


def shared_object(target: Path, build, failure: str) -> ctypes.CDLL:
    """The library *target*, compiled first by ``build()`` when it is not on disk yet;
    ``KernelError`` starting with *failure* when it does not load."""
    if not target.is_file():
        build()
    try:
        return ctypes.CDLL(str(target))
    except OSError as exc:
        raise KernelError(f"{failure} {target}: {exc}") from exc


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
    lib = shared_object(
        target,
        lambda: _compile_shared_object(cmd, flags, _RUNTIME_SOURCE.read_text(), target,
                                       "emulator runtime.cpp", include=("-I", str(_HERE))),
        "could not load the emulator runtime",
    )
    get_api = lib.gpuenhance_emu_runtime_api
    get_api.restype = ctypes.c_void_p
    get_api.argtypes = []
    api = get_api()
    _RUNTIME[key] = (lib, api)
    return api

