"""CUDA engine: lookup tables and gamma (kernels/lut.cu).

Arguments arrive validated by :mod:`gpuenhance.tone`: the table's dtype equals the image's,
it has 256 (uint8) or 65536 (uint16) entries and shape (entries,) or (entries, C).

The image is processed as one flat contiguous array: 16-byte vector stores from the
destination's first 16-byte-aligned element on, and 16-byte loads of the source at any
alignment (two aligned loads and a funnel shift where source and destination lie differently
past a 16-byte boundary; see kernels/lut.cu), two vectors per thread and trip, scalar head and
tail; so a view at any offset needs no copy to be vectorised. On a GPU the grid is one full
wave (SMs x 8 blocks of 256), the kernels stride over the rest. The head and the source's
offset are computed here from the pointers (:func:`_head`). uint8 tables live in shared
memory (a shared table always, per-channel tables up to 192 channels, 48 KiB), uint16 tables
and wider uint8 per-channel tables are read through ``__ldg``.

Indices are 64-bit and the grid is capped at ``_MAX_BLOCKS`` (grid-stride loops), so any
array size works; the channel count is passed as ``int`` (at most 2^31 - 1, far beyond any
image).
"""

from __future__ import annotations

import numpy as np

from .._levels import gamma_table
from .._image import from_nhwc, to_nhwc
from ._common import blocks, ctype, data_address
from ._loader import declare, per_device

_SMEM_LIMIT = 48 * 1024
_THREADS = 256
_MAX_BLOCKS = 2048


def _lut_name(dtype, per_channel: bool, smem: bool) -> str:
    return f"gpuenhance_lut<{ctype(dtype)}, {str(per_channel).lower()}, {str(smem).lower()}>"


_GAMMA = "gpuenhance_gamma_f32"

KERNELS = declare({
    "lut.cu": (
        _lut_name(np.uint8, False, True),
        _lut_name(np.uint8, True, True),
        # (uint8, shared table, global memory) is never chosen: 256 bytes always fit shared
        # memory, so it is not instantiated.
        _lut_name(np.uint8, True, False),
        _lut_name(np.uint16, False, False),
        _lut_name(np.uint16, True, False),
        _GAMMA,
    )
})

HOT_KERNELS = (
    _lut_name(np.uint8, False, True),
    _lut_name(np.uint8, True, True),
    _lut_name(np.uint16, False, False),
    _lut_name(np.uint16, True, False),
    _GAMMA,
)


def _head(ctx, src, dst) -> tuple[int, int]:
    """(head, delta): elements before the first vector, and the source's byte offset from it.

    Vectors are aligned on the destination: *head* elements reach its first 16-byte boundary
    (all of them when no element starts on one), one vector more when the source's first
    vector would begin less than *delta* = (source - destination) mod 16 bytes into the
    source (its first aligned load would read before the array).
    """
    ps, pd = data_address(src), data_address(dst)
    size = src.dtype.itemsize
    lead = (-pd) % 16
    delta = (ps - pd) % 16
    if lead % size:
        return int(src.size), 0
    if lead < delta:
        lead += 16
    return min(int(src.size), lead // size), delta


def _head_args(ctx, src, dst) -> tuple:
    """(head, delta) as the kernels take them (int64, int32)."""
    head, delta = _head(ctx, src, dst)
    return np.int64(head), np.int32(delta)


def _grid(n: int, per_thread: int, max_blocks: int = _MAX_BLOCKS) -> tuple[int, int, int]:
    """Blocks for *n* elements, *per_thread* each (two 16-byte vectors), capped."""
    return (min(blocks(blocks(n, per_thread), _THREADS), max_blocks, _MAX_BLOCKS), 1, 1)


@per_device(maxsize=16)
def _max_blocks(ctx) -> int:
    """Blocks that fill the GPU once (grid-stride beyond): SMs x (2048 / threads per block)."""
    if ctx.name != "cuda":
        return _MAX_BLOCKS
    sms = ctx.xp.cuda.Device().attributes["MultiProcessorCount"]
    return max(1, int(sms) * (2048 // _THREADS))


def apply_lut(ctx, img, lut):
    """``out = lut[img]`` (per-channel: ``lut[img[..., c], c]``); exactly cv2.LUT."""
    x = ctx.xp.ascontiguousarray(to_nhwc(img))
    out = ctx.xp.empty(x.shape, dtype=x.dtype)
    _lut_into(ctx, x, out, lut)
    return from_nhwc(out, img.ndim)


def _lut_into(ctx, x, out, lut) -> None:
    """``out[...] = lut[x]`` for contiguous NHWC arrays at any alignment (the kernel call)."""
    dtype = np.dtype(x.dtype)
    channels = int(x.shape[-1])
    table = ctx.xp.ascontiguousarray(lut)
    per_channel = table.ndim == 2 and table.shape[1] > 1
    entries = 256 if dtype == np.uint8 else 65536
    smem_bytes = entries * (channels if per_channel else 1) * dtype.itemsize
    smem = dtype == np.uint8 and (not per_channel or smem_bytes <= _SMEM_LIMIT)
    n = int(x.size)
    kern = ctx.kernel("lut.cu", _lut_name(dtype, per_channel, smem))
    kern(
        _grid(n, 32 // dtype.itemsize, _max_blocks(ctx)),
        (_THREADS, 1, 1),
        (x, out, table, np.int64(n)) + _head_args(ctx, x, out) + (np.int32(channels),),
        shared_mem=smem_bytes if smem else 0,
    )


@per_device(maxsize=64)
def _gamma_table(ctx, dtype_name: str, gamma: float, gain: float):
    """The device table of integer gamma, built and uploaded once per device."""
    return ctx.xp.asarray(gamma_table(np.dtype(dtype_name), gamma, gain))


def gamma_correct(ctx, img, gamma: float, gain: float):
    """``gain * img**gamma`` on the normalised range; integers through a cached table."""
    dtype = np.dtype(img.dtype)
    if dtype.kind == "u":
        table = _gamma_table(ctx, dtype.name, float(gamma), float(gain))
        return apply_lut(ctx, img, table)
    x = ctx.xp.ascontiguousarray(img)
    out = ctx.xp.empty(x.shape, dtype=x.dtype)
    _gamma_into(ctx, x, out, gamma, gain)
    return out


def _gamma_into(ctx, x, out, gamma: float, gain: float) -> None:
    """``out[...] = gain * clip(x, 0, 1) ** gamma`` for contiguous float32 arrays at any
    alignment (the kernel call)."""
    n = int(x.size)
    ctx.kernel("lut.cu", _GAMMA)(
        _grid(n, 8, _max_blocks(ctx)),
        (_THREADS, 1, 1),
        (x, out, np.int64(n)) + _head_args(ctx, x, out) + (np.float32(gamma), np.float32(gain)),
    )
