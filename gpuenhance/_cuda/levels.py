"""CUDA engine: white balance, auto-contrast and tone curves (kernels/levels.cu).

Arguments arrive validated by the public modules. Integer images: per-image histograms for
the whole batch in one launch, one block per image turns them into per-channel tables
(formulas of :mod:`gpuenhance._levels`, bit-identical to the CPU engine), one launch maps
the batch -- the statistics never leave the device. Explicit gains and tone curves need no
statistics: their tables are built on the host (as on the CPU) and applied by the LUT
kernel. Float32 images: statistics by array-module calls on the device (means, sorts) and a
direct map; float32 tone curves by ``gpuenhance_tone_curve_f32``.
"""

from __future__ import annotations

import numpy as np

from .. import _levels
from .._image import from_nhwc, to_nhwc
from ._common import GRID_YZ_MAX, blocks, check_grid, check_nhwc, ctype
from ._loader import declare
from .tone import apply_lut

_THREADS = 256  # GPUENHANCE_LEVELS_THREADS in kernels/levels.cu
_MAX_BLOCKS_X = 1024
_SMEM_HIST_MAX = 16 * 1024  # uint8 privatised histograms up to 16 channels
_SMEM_STAT_MAX = 48 * 1024
_INT_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))
_MODES = {"gray_world": 0, "white_patch": 1, "stretch": 2}

KERNELS = declare({
    "levels.cu": tuple(
        f"gpuenhance_channel_histogram<{ctype(d)}, {smem}>"
        for d in _INT_DTYPES for smem in (("true", "false") if d == np.uint8 else ("false",))
    ) + tuple(f"gpuenhance_levels_table<{ctype(d)}>" for d in _INT_DTYPES)
    + tuple(f"gpuenhance_channel_map<{ctype(d)}>" for d in _INT_DTYPES)
    + ("gpuenhance_tone_curve_f32",)
})

# Every kernel here runs on every call: none may spill.
HOT_KERNELS = KERNELS["levels.cu"]


def _tables(ctx, x, mode: str, groups: int, rank_lo: int = 0, rank_hi: int = 0):
    """(N, BINS, C) tables of an integer (N, H, W, C) batch, computed on the device."""
    xp = ctx.xp
    n, h, w, c = x.shape
    dtype = np.dtype(x.dtype)
    bins = 256 if dtype == np.uint8 else 65536
    values = h * w * c
    if groups * 3 * 8 > _SMEM_STAT_MAX:
        raise ValueError(f"img has too many channels for the CUDA engine ({c}); "
                         f"at most {_SMEM_STAT_MAX // 24}")
    hist = xp.zeros((n, groups, bins), dtype=np.uint32)
    smem = dtype == np.uint8 and groups * bins * 4 <= _SMEM_HIST_MAX
    grid = check_grid((min(blocks(values, _THREADS), _MAX_BLOCKS_X), min(n, GRID_YZ_MAX), 1),
                      "levels")
    ctx.kernel("levels.cu", f"gpuenhance_channel_histogram<{ctype(dtype)}, {str(smem).lower()}>")(
        grid, (_THREADS, 1, 1),
        (x, hist, np.int64(values), np.int32(c), np.int32(groups), np.int32(n)),
        shared_mem=groups * bins * 4 if smem else 0)
    table = xp.empty((n, bins, c), dtype=dtype)
    ctx.kernel("levels.cu", f"gpuenhance_levels_table<{ctype(dtype)}>")(
        (min(n, GRID_YZ_MAX), 1, 1), (_THREADS, 1, 1),
        (hist, table, np.int64(values // groups), np.int32(c), np.int32(groups),
         np.int32(_MODES[mode]), np.int64(rank_lo), np.int64(rank_hi), np.int32(n)),
        shared_mem=groups * 3 * 8)
    return table


def _map(ctx, x, table, ndim: int):
    n, h, w, c = x.shape
    out = ctx.xp.empty_like(x)
    grid = check_grid((min(blocks(h * w * c, _THREADS), _MAX_BLOCKS_X), min(n, GRID_YZ_MAX), 1),
                      "levels")
    ctx.kernel("levels.cu", f"gpuenhance_channel_map<{ctype(x.dtype)}>")(
        grid, (_THREADS, 1, 1), (x, out, table, np.int64(h * w * c), np.int32(c), np.int32(n)))
    return from_nhwc(out, ndim)


def _prepare(ctx, img):
    x = ctx.xp.ascontiguousarray(to_nhwc(img))
    check_nhwc(x.shape)
    return x


def white_balance(ctx, img, method: str, percentile: float, gains):
    xp = ctx.xp
    x = _prepare(ctx, img)
    n, h, w, c = x.shape
    integer = np.dtype(x.dtype).kind == "u"
    if method == "gains":
        g = np.asarray(gains, dtype=np.float64)
        if integer:
            return apply_lut(ctx, img, xp.asarray(_levels.gain_tables(g, x.dtype)))
        return from_nhwc(_levels.float_apply_gains(xp, x, g), img.ndim)
    if integer:
        rank = _levels.percentile_rank(h * w, percentile) if method == "white_patch" else 0
        return _map(ctx, x, _tables(ctx, x, method, c, rank_hi=rank), img.ndim)
    if method == "gray_world":
        g = _levels.gray_world_gains_xp(xp, _levels.float_channel_means(xp, x))
    else:
        (values,) = _levels.float_rank_values(xp, x, (percentile,), per_channel=True)
        g = _levels.white_patch_gains_xp(xp, values, 1.0)
    return from_nhwc(_levels.float_apply_gains(xp, x, g), img.ndim)


def auto_contrast(ctx, img, low: float, high: float, per_channel: bool):
    xp = ctx.xp
    x = _prepare(ctx, img)
    n, h, w, c = x.shape
    if np.dtype(x.dtype).kind != "u":
        lo, hi = _levels.float_rank_values(xp, x, (low, high), per_channel)
        return from_nhwc(_levels.float_stretch(xp, x, lo, hi), img.ndim)
    count = h * w if per_channel else h * w * c
    table = _tables(ctx, x, "stretch", c if per_channel else 1,
                    rank_lo=_levels.percentile_rank(count, low),
                    rank_hi=_levels.percentile_rank(count, high))
    return _map(ctx, x, table, img.ndim)


def tone_curve(ctx, img, points):
    xp = ctx.xp
    if np.dtype(img.dtype).kind == "u":
        return apply_lut(ctx, img, xp.asarray(_levels.curve_table(points, img.dtype)))
    xs, coef = _levels.pchip_coefficients(points)
    x = xp.ascontiguousarray(img)
    out = xp.empty_like(x)
    size = int(x.size)
    ctx.kernel("levels.cu", "gpuenhance_tone_curve_f32")(
        (min(blocks(size, _THREADS), _MAX_BLOCKS_X), 1, 1), (_THREADS, 1, 1),
        (x, out, xp.asarray(xs), xp.ascontiguousarray(xp.asarray(coef)), np.int32(xs.size),
         np.int64(size)))
    return out
