"""One emulated kernel (:class:`EmulatedKernel`, the counterpart of ``cupy.RawKernel``): the
launch configuration checks and the marshalling of the arguments against the kernel's C++
signature.

Execution: a launch runs on ``blockDim.x*y*z`` real OS threads (pooled: started by the
first launch that needs them, parked between launches); each walks every block of the
grid in order (``blockIdx.x`` fastest) and all threads meet between blocks, so a block's
threads really run concurrently while ``__shared__`` arrays (function-scope statics) belong
to one block at a time. ``__syncthreads`` is a blocking (futex) barrier; threads that
returned from the kernel count as arrived. A barrier that waits longer than
``$GPUENHANCE_EMULATOR_BARRIER_TIMEOUT`` seconds (default 120) fails the launch with
:class:`~gpuenhance._cuda._errors.KernelError`. Launches are serialized process-wide. A
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
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

from .._errors import KernelError

DEFAULT_MAX_DYNAMIC_SMEM = 48 * 1024
MAX_DYNAMIC_SMEM = 227 * 1024


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
