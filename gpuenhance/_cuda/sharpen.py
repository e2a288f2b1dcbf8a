"""CUDA engine: unsharp mask (kernels/sharpen.cu).

Arguments arrive validated and resolved by :mod:`gpuenhance.sharpen` (ksize from sigma by
OpenCV's rule for the image's dtype). One kernel pass (shared-memory tile, rows then
columns, the mask in the store) when the window fits 48 KiB of shared memory (radius up to
40); two passes through a float32 buffer beyond that.
"""

from __future__ import annotations

import numpy as np

from .._gauss import taps as gaussian_taps
from .._image import from_nhwc, to_nhwc
from ._common import GRID_YZ_MAX, blocks, check_grid, check_nhwc, ctype
from ._loader import declare

_TILE = 16  # GPUENHANCE_UNSHARP_TILE
_SMEM_LIMIT = 48 * 1024
_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))

KERNELS = declare({
    "sharpen.cu": tuple(
        name for d in _DTYPES for name in (
            f"gpuenhance_unsharp_tile<{ctype(d)}>",
            f"gpuenhance_unsharp_pass<{ctype(d)}, false>",
            f"gpuenhance_unsharp_pass<{ctype(d)}, true>",
        )
    )
})
HOT_KERNELS = tuple(f"gpuenhance_unsharp_tile<{ctype(d)}>" for d in _DTYPES)


def tile_shared_bytes(radius: int) -> int:
    """Shared memory of the one-pass kernel for a window radius."""
    span = _TILE + 2 * radius
    return (span * span + span * _TILE) * 4


def unsharp_mask(ctx, img, ksize: int, sigma: float, amount: float, threshold: float):
    """``x + amount * (x - G(x))`` where ``|x - G(x)| > threshold`` (float32 math)."""
    xp = ctx.xp
    x = xp.ascontiguousarray(to_nhwc(img))
    check_nhwc(x.shape)
    n, h, w, c = x.shape
    dtype = np.dtype(x.dtype)
    radius = ksize // 2
    taps = xp.asarray(gaussian_taps(ksize, sigma).astype(np.float32))
    out = xp.empty_like(x)
    planes = n * c
    grid = check_grid((blocks(w, _TILE), blocks(h, _TILE), min(planes, GRID_YZ_MAX)), "unsharp")
    dims = (np.int32(radius), np.int32(planes), np.int32(h), np.int32(w), np.int32(c))
    point = (np.float32(amount), np.float32(threshold))
    smem = tile_shared_bytes(radius)
    if smem <= _SMEM_LIMIT:
        ctx.kernel("sharpen.cu", f"gpuenhance_unsharp_tile<{ctype(dtype)}>")(
            grid, (_TILE, _TILE, 1), (x, out, taps) + dims + point, shared_mem=smem)
    else:
        tmp = xp.empty(x.shape, dtype=np.float32)
        for cols in ("false", "true"):
            ctx.kernel("sharpen.cu", f"gpuenhance_unsharp_pass<{ctype(dtype)}, {cols}>")(
                grid, (_TILE, _TILE, 1), (x, tmp, out, taps) + dims + point)
    return from_nhwc(out, img.ndim)
