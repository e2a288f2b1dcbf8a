"""CUDA engine: median and Gaussian filters (kernels/median.cu, kernels/gaussian.cu).

Arguments arrive validated and resolved by :mod:`gpuenhance.filters`. Every image layout is
computed as a contiguous (N, H, W, C) batch in one launch per pass; grid.z walks the N*C
planes and grid.y the row tiles, both clamped to 65535 with grid-stride loops in the kernels.
See the kernel files for the algorithms.

Size limits: element offsets are 64-bit, so batches of any total size work; H, W and the
Gaussian kernel sizes must be at most 2^30 - 1 (``_common.MAX_EXTENT``: the kernels keep rows
and columns in ``int``), else a ``ValueError`` is raised before any allocation or launch. The
launch configurations are computed by :func:`median_launch` and :func:`gaussian_launch` from
the shape alone.

Median path choice (exact on every path):

==========================  =================================================
ksize 1                     copy
ksize 3, 5, 7 (any dtype)   ``gpuenhance_median_small`` (register networks); for uint8,
                            uint16 and float32 with C <= 16 (ksize 7: uint8 only) its form
                            on interleaved rows, ``gpuenhance_median_small_packed`` (one
                            32-bit word of 8 rows per thread (7x7 in 8-bit lanes: 4),
                            the rows' sorts and merges shared between windows,
                            :func:`median_packed_launch`)
ksize >= 9 uint8/uint16     ``gpuenhance_median_hist`` (sliding histograms)
ksize >= 9 float            ``gpuenhance_median_select`` (radix selection)
==========================  =================================================

Gaussian path choice: ``gpuenhance_gaussian_tile_rows`` (interleaved rows, all channels of a
tile at once, 4 values x 4 rows per thread, the tile's rows through shared memory in chunks;
:func:`gaussian_rows_launch`) for every window up to the public limit (ksize 1023) while one
staged row, 128 + (kx - 1) * C values, fits shared memory; where the device allows it, the
block opts into more than 48 KiB (up to half the opt-in limit, so that the whole tile fits in
one chunk more often). Only a long horizontal window on very many channels leaves it: then
``gpuenhance_gaussian_tile`` (one plane at a time, :func:`gaussian_launch`) where its tile fits
48 KiB, else two 1-D ``gpuenhance_gaussian_pass`` launches. All three do the same arithmetic in
the same order and give the same values.

Fusion: ``median_filter`` and ``gaussian_filter`` take an optional trailing point operation,
``lut=`` (uint8/uint16: a table as for :func:`gpuenhance.apply_lut`, shared or per channel) or
``gamma=``/``gain=`` (as :func:`gpuenhance.gamma_correct`: uint8/uint16 through the very
table the tone engine uses, float32 by the tone kernel's ``gpuenhance_gamma``). The kernels
apply it to each filtered value right before its store (template flag ``FUSE``), so the
filter and the point operation are one pass over memory and the result is bit-identical to
running them one after the other. float64 images do not fuse (there is no float64 gamma).
"""

from __future__ import annotations

import numpy as np

from .. import _gauss
from .._image import from_nhwc, to_nhwc
from ._common import (
    BORDER_CODES, GRID_YZ_MAX, INT32_MAX, MAX_EXTENT, blocks, check_grid, check_nhwc, ctype,
    data_address,
)
from ._loader import declare, per_device

_DTYPES = tuple(np.dtype(d) for d in (np.uint8, np.uint16, np.float32, np.float64))
_INT_DTYPES = _DTYPES[:2]
_SMALL_K = (3, 5, 7)
_ACC = {d: ("double" if d == np.float64 else "float") for d in _DTYPES}
_ACC_DTYPE = {
    d: (np.dtype(np.float64) if d == np.float64 else np.dtype(np.float32)) for d in _DTYPES
}

# Shared memory a launch may ask for (the default per-block limit is 48 KiB).
_SMEM_LIMIT = 48 * 1024
# Largest grid.z / grid.y; planes and row tiles beyond them are covered by the kernels'
# grid-stride loops (tests shrink these to exercise the loops on small images).
_GRID_Z = GRID_YZ_MAX
_GRID_Y = GRID_YZ_MAX
# Largest median window the histogram kernel's 16-bit counters hold (K*K < 65536).
_HIST_MAX_K = 255

# Smallest ksize that uses the sliding-histogram path, per integer dtype (uint8 7x7 runs the
# packed kernel where it applies, else gpuenhance_median_small).
_HIST_FROM = {np.dtype(np.uint8): 9, np.dtype(np.uint16): 9}
# Counters per thread of the histogram kernel (see kernels/median.cu).
_HIST_COUNTERS = {np.dtype(np.uint8): 272, np.dtype(np.uint16): 544}


# The kernels' FUSE flag: no trailing point operation, a lookup table, float32 gamma.
FUSE_NONE, FUSE_LUT, FUSE_GAMMA = 0, 1, 2


def _fusions(dtype) -> tuple[int, ...]:
    """The FUSE values instantiated for *dtype*."""
    dtype = np.dtype(dtype)
    if dtype in _INT_DTYPES:
        return (FUSE_NONE, FUSE_LUT)
    if dtype == np.float32:
        return (FUSE_NONE, FUSE_GAMMA)
    return (FUSE_NONE,)


def _small_name(dtype, k: int, fuse: int = FUSE_NONE) -> str:
    return f"gpuenhance_median_small<{ctype(dtype)}, {k}, {fuse}>"


# The packed kernel (gpuenhance_median_small_packed): windows per dtype (7x7 for uint8, where it
# replaces the histograms; bench/PERF.md), output rows per thread (RY: 8 executes the fewest
# instructions per output without spills on sm_75..sm_90), block rows (BY), bytes per block
# row, and the largest pixel in bytes per dtype (its halo, R * bytes per pixel rounded up to
# 16, stays small).
_PACKED_K = {np.dtype(np.uint8): (3, 5, 7), np.dtype(np.uint16): (3, 5),
             np.dtype(np.float32): (3, 5)}
_PACKED_RY = {3: 8, 5: 8, 7: 8}
# 7x7 in 8-bit lanes (sm_75/sm_80) at 4 rows: 153 registers instead of 244, and 5x less NVRTC time.
_PACKED_RY_U8X4 = {7: 4}
_PACKED_BY = 4
_PACKED_TILE = 256
_PACKED_MAX_PIXEL = {np.dtype(np.uint8): 16, np.dtype(np.uint16): 32, np.dtype(np.float32): 64}

# How the packed kernel holds a 32-bit word (see kernels/median.cu), per dtype: uint8 in 8-bit
# lanes, or in two words of 16-bit lanes where the GPU has a one-instruction 16-bit SIMD
# min/max (sm_90 and newer); uint16 in 16-bit lanes; float32 as one value.
_PACKED_LANES = {np.dtype(np.uint8): ("gpuenhance_u8x4", "gpuenhance_u16x2x2"),
                 np.dtype(np.uint16): ("gpuenhance_u16x2",),
                 np.dtype(np.float32): ("gpuenhance_f32x1",)}


def _packed_ry(k: int, lanes: str) -> int:
    """Output rows per thread of the packed kernel for window *k* in layout *lanes*."""
    return _PACKED_RY_U8X4.get(k, _PACKED_RY[k]) if lanes == "gpuenhance_u8x4" else _PACKED_RY[k]


def _packed_name(k: int, fuse: int, lanes: str) -> str:
    return f"gpuenhance_median_small_packed<{k}, {_packed_ry(k, lanes)}, {lanes}, {fuse}>"


def _packed_names(lane_index: int = 0) -> list[str]:
    """Every packed instantiation of one lane choice (0: the default, 1: sm_90's uint8)."""
    return [_packed_name(k, f, lanes[lane_index]) for d, lanes in _PACKED_LANES.items()
            if lane_index < len(lanes) for f in _fusions(d) for k in _PACKED_K[d]]


# Hot on sm_90 and newer only (checked there).
HOT_KERNELS_SM90 = tuple(_packed_names(1))


def _packed_lanes(ctx, dtype) -> str:
    """The lane layout for *dtype* on the current device (16-bit lanes: compute >= 9.0)."""
    lanes = _PACKED_LANES[np.dtype(dtype)]
    if ctx.name == "cuda" and len(lanes) > 1:
        major = ctx.xp.cuda.Device().compute_capability[:-1]
        if int(major) >= 9:
            return lanes[1]
    return lanes[0]


# Histogram counter types: 8-bit while K*K <= 255 (half the shared memory), else 16-bit.
_HIST_COUNT_TYPES = ("unsigned char", "unsigned short")
_HIST_U8_COUNTS_MAX_K = 15


def _hist_count_type(ksize: int) -> str:
    return _HIST_COUNT_TYPES[0] if ksize <= _HIST_U8_COUNTS_MAX_K else _HIST_COUNT_TYPES[1]


def _hist_name(dtype, fuse: int = FUSE_NONE, count: str = _HIST_COUNT_TYPES[1]) -> str:
    return f"gpuenhance_median_hist<{ctype(dtype)}, {count}, {fuse}>"


def _select_name(dtype, fuse: int = FUSE_NONE) -> str:
    return f"gpuenhance_median_select<{ctype(dtype)}, {fuse}>"


def _tile_name(dtype, fuse: int = FUSE_NONE) -> str:
    return f"gpuenhance_gaussian_tile<{ctype(dtype)}, {_ACC[np.dtype(dtype)]}, {fuse}>"


def _rows_name(dtype, fuse: int = FUSE_NONE, ring: bool = False) -> str:
    return (f"gpuenhance_gaussian_tile_rows<{ctype(dtype)}, {_ACC[np.dtype(dtype)]}, {fuse}, "
            f"{str(bool(ring)).lower()}>")


def _rings(dtype) -> tuple[bool, ...]:
    """The rows kernel's RING forms for *dtype*: float64 (double sums) has only the chunked
    one (its ring form would need more than 128 registers)."""
    return (False,) if np.dtype(dtype) == np.float64 else (False, True)


def _pass_name(tin: str, tout: str, acc: str, fuse: int = FUSE_NONE) -> str:
    return f"gpuenhance_gaussian_pass<{tin}, {tout}, {acc}, {fuse}>"


def _pass_names(dtype, fuse: int = FUSE_NONE) -> tuple[str, str]:
    """(horizontal: dtype -> Acc, vertical: Acc -> dtype, fused) name expressions."""
    t, acc = ctype(dtype), _ACC[np.dtype(dtype)]
    return _pass_name(t, acc, acc), _pass_name(acc, t, acc, fuse)


KERNELS = declare({
    "median.cu": tuple(
        [_small_name(d, k, f) for d in _DTYPES for f in _fusions(d) for k in _SMALL_K]
        + _packed_names(0) + _packed_names(1)
        + [_hist_name(d, f, n) for d in _INT_DTYPES for f in _fusions(d)
           for n in _HIST_COUNT_TYPES]
        + [_select_name(d, f) for d in _DTYPES for f in _fusions(d)]
    ),
    "gaussian.cu": tuple(
        [_tile_name(d, f) for d in _DTYPES for f in _fusions(d)]
        + [_rows_name(d, f, r) for d in _DTYPES for f in _fusions(d) for r in _rings(d)]
        + list(
            dict.fromkeys(n for d in _DTYPES for f in _fusions(d) for n in _pass_names(d, f))
        )
    ),
})

# Kernels that must not spill on any architecture CI compiles for.
HOT_KERNELS = tuple(
    [_small_name(d, k, f) for d in _DTYPES for f in _fusions(d) for k in (3, 5)]
    # The packed median's default lanes. Its uint8 16-bit-lane form runs on sm_90+ only (on
    # sm_75/sm_80 its 5x5 would spill, and it is never launched there); tests check it on
    # sm_90 (tests/test_kernels_compile.py).
    + _packed_names(0)
    + [_tile_name(d, f) for d in _DTYPES for f in _fusions(d)]
    + [_rows_name(d, f, r) for d in _DTYPES for f in _fusions(d) for r in _rings(d)]
)


def _i32(v) -> np.int32:
    return np.int32(v)


def _prepare(ctx, img):
    """The input as a contiguous (N, H, W, C) array, and an output of the same shape.

    The shape is checked against the kernels' limits first (metadata only, before any copy).
    """
    xp = ctx.xp
    x = to_nhwc(img)
    check_nhwc(x.shape)
    x = xp.ascontiguousarray(x)
    return x, xp.empty(x.shape, dtype=x.dtype)


def _point(ctx, x, lut, gamma, gain) -> tuple:
    """(FUSE, kernel arguments) of the trailing point operation on the NHWC batch *x*.

    The arguments are ``(lut, lut_channels, gamma, gain)`` as the kernels take them; without a
    point operation *x* itself stands in for the table (the kernels do not read it).
    """
    dtype = np.dtype(x.dtype)
    if lut is None and gamma is None:
        return FUSE_NONE, (x, _i32(1), np.float32(1.0), np.float32(1.0))
    if lut is not None and gamma is not None:
        raise ValueError("pass either lut or gamma to fuse, not both")
    if gamma is not None:
        if dtype == np.float32:
            return FUSE_GAMMA, (x, _i32(1), np.float32(gamma), np.float32(gain))
        if dtype not in _INT_DTYPES:
            raise TypeError(f"gamma cannot be fused for {dtype.name} images (no such op)")
        from .tone import _gamma_table

        lut = _gamma_table(ctx, dtype.name, float(gamma), float(gain))
    if dtype not in _INT_DTYPES:
        raise TypeError(f"lut applies to uint8/uint16 images; got {dtype.name}")
    entries = 256 if dtype == np.uint8 else 65536
    channels = int(x.shape[-1])
    if np.dtype(lut.dtype) != dtype or lut.ndim not in (1, 2) or lut.shape[0] != entries or (
        lut.ndim == 2 and lut.shape[1] not in (1, channels)
    ):
        raise ValueError(
            f"lut must be {dtype.name} of shape ({entries},), ({entries}, 1) or "
            f"({entries}, {channels}); got {lut.dtype} {tuple(lut.shape)}"
        )
    per_channel = lut.ndim == 2 and lut.shape[1] > 1
    table = ctx.xp.ascontiguousarray(ctx.xp.asarray(lut))
    return FUSE_LUT, (table, _i32(channels if per_channel else 1), np.float32(1.0),
                      np.float32(1.0))


def _point_only(ctx, img, lut, gamma, gain):
    """The point operation alone (a filter that is the identity, e.g. median ksize 1)."""
    from . import tone

    if gamma is not None:
        if np.dtype(img.dtype) == np.float64:
            raise TypeError("gamma cannot be fused for float64 images (no such op)")
        return tone.gamma_correct(ctx, img, gamma, gain)
    return tone.apply_lut(ctx, img, lut)


# ---------------------------------------------------------------------------------------------
# Median
# ---------------------------------------------------------------------------------------------
def _median_path(dtype, ksize: int) -> str:
    dtype = np.dtype(dtype)
    if dtype in _HIST_FROM and ksize >= _HIST_FROM[dtype]:
        return "hist"
    if ksize in _SMALL_K:
        return "small"
    return "select"


def median_launch(shape, dtype, ksize: int) -> dict:
    """Launch configuration of the median of an (N, H, W, C) batch, from its shape alone.

    Returns a dict with ``path`` ("small", "hist" or "select"), ``grid``, ``block``,
    ``shared_mem`` and (histogram path) ``strip``. grid.y and grid.z are clamped to
    ``_GRID_Y`` / ``_GRID_Z``; the kernels stride over the rest.

    Raises
    ------
    ValueError
        When H or W exceeds the kernels' 32-bit coordinates (:func:`_common.check_nhwc`), or a
        histogram window exceeds ``_HIST_MAX_K`` (unreachable through the public op, which caps
        ksize at 255).
    """
    check_nhwc(shape)
    n, h, w, c = (int(v) for v in shape)
    dtype = np.dtype(dtype)
    gz = min(n * c, _GRID_Z)
    path = _median_path(dtype, ksize)
    if path == "small":
        bx, by = 32, 8
        cfg = dict(grid=(blocks(w, bx), min(blocks(h, by), _GRID_Y), gz), block=(bx, by, 1),
                   shared_mem=(bx + ksize - 1) * (by + ksize - 1) * dtype.itemsize)
    elif path == "hist":
        if ksize > _HIST_MAX_K:
            raise ValueError(
                f"ksize must be in [1, {_HIST_MAX_K}] for the CUDA median of {dtype.name} "
                f"images (16-bit histogram counters); got {ksize}"
            )
        per_thread = _HIST_COUNTERS[dtype] * (1 if ksize <= _HIST_U8_COUNTS_MAX_K else 2)
        bt = 64
        while bt > 1 and bt * per_thread > _SMEM_LIMIT - 8 * 1024:
            bt //= 2
        strip = min(h, max(32, 2 * ksize))
        cfg = dict(grid=(blocks(w, bt), min(blocks(h, strip), _GRID_Y), gz), block=(bt, 1, 1),
                   shared_mem=bt * per_thread, strip=strip)
    else:
        bx, by = 16, 8
        cfg = dict(grid=(blocks(w, bx), min(blocks(h, by), _GRID_Y), gz), block=(bx, by, 1),
                   shared_mem=16 * bx * by * 4)
    cfg["grid"] = check_grid(cfg["grid"], "median_filter")
    cfg["path"] = path
    return cfg


def median_packed_launch(shape, dtype, ksize: int, table_channels: int = 0,
                         lanes: str | None = None) -> dict | None:
    """Launch configuration of the packed median, or None where it does not apply.

    It applies to uint8, uint16 and float32 with ksize 3 and 5 (uint8: and 7), pixels of at most
    ``_PACKED_MAX_PIXEL`` bytes, and rows of W*C values whose byte offsets fit an int.
    Block (64, BY): each thread owns one 32-bit word (4 uint8, 2 uint16 or 1 float32) of RY
    rows, a block 256 bytes of BY*RY rows; grid (ceil(row bytes / 256), row tiles, images),
    grid.y and grid.z clamped to ``_GRID_Y`` / ``_GRID_Z`` (the kernel strides over the rest).
    ``table_channels``: uint8 with a fused table (FUSE_LUT) of that many channels, which the
    kernel copies behind its tile in shared memory (256 bytes per channel). ``lanes``: the
    word layout (:func:`_packed_lanes`; default the dtype's first), which sets RY.
    """
    check_nhwc(shape)
    n, h, w, c = (int(v) for v in shape)
    dtype = np.dtype(dtype)
    if dtype not in _PACKED_LANES or ksize not in _PACKED_K[dtype]:
        return None
    pixel = c * dtype.itemsize
    if pixel > _PACKED_MAX_PIXEL[dtype] or w * pixel > INT32_MAX - 4 * _PACKED_TILE:
        return None
    rows = _PACKED_BY * _packed_ry(ksize, lanes or _PACKED_LANES[dtype][0])
    pad = -(-(ksize // 2) * pixel // 16) * 16
    grid = (blocks(w * pixel, _PACKED_TILE), min(blocks(h, rows), _GRID_Y), min(n, _GRID_Z))
    return dict(grid=check_grid(grid, "median_filter"), block=(_PACKED_TILE // 4, _PACKED_BY, 1),
                shared_mem=(rows + ksize - 1) * (_PACKED_TILE + 2 * pad + 16)
                + (256 * table_channels if dtype == np.uint8 else 0), rows=rows)


def median_filter(ctx, img, ksize: int, border: str, *, lut=None, gamma=None, gain=1.0):
    """Median over a ksize x ksize window; exact (equal to the CPU engine) on every path.

    With ``lut`` or ``gamma``/``gain``, the point operation is fused into the store (see the
    module docstring): the result equals ``apply_lut``/``gamma_correct`` of the median.
    """
    if ksize == 1:
        if lut is not None or gamma is not None:
            return _point_only(ctx, img, lut, gamma, gain)
        return ctx.xp.array(img, copy=True, order="C")
    cfg = median_launch(to_nhwc(img).shape, img.dtype, ksize)  # refuses before any work
    x, out = _prepare(ctx, img)
    n, h, w, c = x.shape
    dtype = np.dtype(x.dtype)
    fuse, point = _point(ctx, x, lut, gamma, gain)
    code = _i32(BORDER_CODES[border])
    dims = (x, out, _i32(n), _i32(h), _i32(w), _i32(c))
    lanes = _packed_lanes(ctx, dtype) if dtype in _PACKED_LANES else None
    packed = median_packed_launch(x.shape, dtype, ksize, int(point[1]) if fuse == FUSE_LUT else 0,
                                  lanes)
    if cfg["path"] == "small" and packed is not None:
        cfg = packed
        kern = ctx.kernel("median.cu", _packed_name(ksize, fuse, lanes))
        args = dims + (code,)
    elif cfg["path"] == "small":
        kern = ctx.kernel("median.cu", _small_name(dtype, ksize, fuse))
        args = dims + (code,)
    elif cfg["path"] == "hist":
        kern = ctx.kernel("median.cu", _hist_name(dtype, fuse, _hist_count_type(ksize)))
        args = dims + (_i32(ksize), code, _i32(cfg["strip"]))
    else:
        kern = ctx.kernel("median.cu", _select_name(dtype, fuse))
        args = dims + (_i32(ksize), code)
    kern(cfg["grid"], cfg["block"], args + point, shared_mem=cfg["shared_mem"])
    return from_nhwc(out, img.ndim)


# ---------------------------------------------------------------------------------------------
# Gaussian
# ---------------------------------------------------------------------------------------------
@per_device(maxsize=256)
def _taps(ctx, ksize: int, sigma: float, dtype):
    """Device taps in the accumulation type (OpenCV's fixed point for uint8/uint16)."""
    dtype = np.dtype(dtype)
    return ctx.xp.asarray(_gauss.opencv_taps(ksize, sigma, dtype).astype(_ACC_DTYPE[dtype]))


def _tile_shape(kx: int, ky: int, acc_size: int):
    """(bx, by, shared bytes) of the tile kernel, or None when no tile fits the limit."""
    bx = 32
    for by in (8, 4, 2, 1):
        th, tw = by + ky - 1, bx + kx - 1
        smem = (th * tw + th * bx + kx + ky) * acc_size
        if smem <= _SMEM_LIMIT:
            return bx, by, smem
    return None


# Threads per block of the two-pass fallback, and its grid.x cap (grid-stride beyond).
_PASS_THREADS = 256
_PASS_MAX_BLOCKS = 65535 * 4


def gaussian_launch(shape, kx: int, ky: int, acc_size: int) -> dict:
    """Launch configuration of the Gaussian of an (N, H, W, C) batch, from its shape alone.

    Returns a dict with ``path`` ("tile" or "two_pass"), ``grid``, ``block`` and
    ``shared_mem`` (the same configuration serves both 1-D passes of "two_pass").

    Raises
    ------
    ValueError
        When H, W, kx or ky exceed the kernels' 32-bit coordinates (before taps are built).
    """
    check_nhwc(shape)
    for name, k in (("ksize (x)", kx), ("ksize (y)", ky)):
        if int(k) > MAX_EXTENT:
            raise ValueError(
                f"{name} must be in [1, {MAX_EXTENT}] for the CUDA engine (32-bit kernel "
                f"coordinates); got {k}"
            )
    n, h, w, c = (int(v) for v in shape)
    tile = _tile_shape(kx, ky, acc_size)
    if tile is not None:
        bx, by, smem = tile
        cfg = dict(path="tile", grid=(blocks(w, bx), min(blocks(h, by), _GRID_Y),
                                      min(n * c, _GRID_Z)),
                   block=(bx, by, 1), shared_mem=smem)
    else:
        size = n * h * w * c
        cfg = dict(path="two_pass",
                   grid=(min(blocks(size, _PASS_THREADS), _PASS_MAX_BLOCKS), 1, 1),
                   block=(_PASS_THREADS, 1, 1), shared_mem=0)
    cfg["grid"] = check_grid(cfg["grid"], "gaussian_filter")
    return cfg


# The interleaved-rows Gaussian (gpuenhance_gaussian_tile_rows): values per thread and block
# row, output rows per thread, block rows.
_ROWS_PX, _ROWS_BW, _ROWS_RY, _ROWS_BY = 4, 128, 4, 8


def _smem_optin(ctx) -> int:
    """The most dynamic shared memory one block may opt into on the current device.

    On a GPU the device attribute (e.g. 227 KiB on an H100/H200, 163 KiB on an A100, 64 KiB
    on a T4); under the emulator ``_SMEM_LIMIT`` (tests patch this to exercise the opt-in).
    """
    if ctx.name != "cuda":
        return _SMEM_LIMIT
    return _device_optin(ctx)


@per_device()
def _device_optin(ctx) -> int:
    return int(ctx.xp.cuda.Device().attributes["MaxSharedMemoryPerBlockOptin"])


def _rows_budget(optin: int) -> int:
    """Shared memory per block the rows kernel plans with: the default limit, or where the
    device allows more, half of its opt-in limit (at least two 256-thread blocks per SM)."""
    return max(_SMEM_LIMIT, optin // 2) if optin > _SMEM_LIMIT else _SMEM_LIMIT


def _rows_pitch(kx: int, c: int, itemsize: int, vec: bool) -> int:
    """Staged values per tile row (gpuenhance_gaussian_pitch in kernels/gaussian.cu)."""
    tw = _ROWS_BW + (kx - 1) * c
    v = 16 // itemsize
    return (tw + 2 * v - 2) // v * v if vec else tw


# Row tiles per block in ring mode, at most, and the blocks a launch keeps at least (more
# consecutive tiles per block save horizontal passes, fewer keep the GPU busy).
_ROWS_SPAN = 8
_ROWS_MIN_BLOCKS = 1024
# Staged rows per chunk that ring mode needs at least (the 32 new rows of a tile at once), and
# the smallest ky it is used for: it saves th - 32 = ky - 1 of th horizontal rows per tile but
# runs 2 blocks per SM instead of 3 (128 registers), worth it from about a third.
_ROWS_RING_STAGE = 32
_ROWS_RING_MIN_K = 17


def gaussian_rows_launch(shape, kx: int, ky: int, acc_size: int, *, itemsize: int = 1,
                         vec: bool = False, smem_limit: int | None = None) -> dict | None:
    """Launch configuration of the interleaved-rows Gaussian, or None where it does not apply.

    Block (32, 8): each thread computes 4 values of 4 rows, a block 128 values (all channels
    interleaved) of 32 rows; grid (ceil(W*C / 128), row strips, images), grid.y and grid.z
    clamped to ``_GRID_Y`` / ``_GRID_Z``. A tile needs th = 32 + ky - 1 input rows; they are
    staged in chunks of ``chunk`` rows. Ring mode (``span`` > 0; float sums, ky >=
    ``_ROWS_RING_MIN_K``) where the th rows of horizontal sums fit next to a chunk of at least
    min(th, ``_ROWS_RING_STAGE``) staged rows: a block walks ``span`` consecutive row tiles
    and computes only 32 new rows of sums per tile after the first. Otherwise (``span`` = 0)
    the sums are kept a chunk at a time. Both fit *smem_limit* (default ``_SMEM_LIMIT``);
    *itemsize* and *vec* (16-byte vector staging) set the staged row's pitch. None when not even one row fits, or when the row's offsets (W*C plus the
    halo) would not fit an int; then :func:`gaussian_launch` applies.
    """
    check_nhwc(shape)
    n, h, w, c = (int(v) for v in shape)
    kx, ky = int(kx), int(ky)
    if w * c + (kx + 1) * c + 2 * _ROWS_BW > INT32_MAX:
        return None
    budget = (_SMEM_LIMIT if smem_limit is None else int(smem_limit)) // acc_size - kx - ky
    rows = _ROWS_BY * _ROWS_RY
    th = rows + ky - 1
    pitch = _rows_pitch(kx, c, itemsize, vec)
    gx, gz, tiles = blocks(w * c, _ROWS_BW), min(n, _GRID_Z), blocks(h, rows)
    span = 0
    if (acc_size == 4 and ky >= _ROWS_RING_MIN_K
            and budget - th * _ROWS_BW >= min(th, _ROWS_RING_STAGE) * pitch):
        chunk = min(th, (budget - th * _ROWS_BW) // pitch)
        span = min(_ROWS_SPAN, tiles)
        while span > 1 and gx * blocks(tiles, span) * gz < _ROWS_MIN_BLOCKS:
            span //= 2
        held = th
    else:
        chunk = min(th, budget // (pitch + _ROWS_BW))
        held = chunk
    if chunk < 1:
        return None
    grid = (gx, min(blocks(tiles, max(span, 1)), _GRID_Y), gz)
    return dict(grid=check_grid(grid, "gaussian_filter"), block=(32, _ROWS_BY, 1),
                shared_mem=(chunk * pitch + held * _ROWS_BW + kx + ky) * acc_size, rows=rows,
                chunk=chunk, vec=bool(vec), span=span)


def _rows_vectors(x) -> bool:
    """Whether the rows kernel may stage *x* (NHWC, contiguous) with 16-byte loads: the data
    and every row start on a 16-byte boundary."""
    row_bytes = int(x.shape[2]) * int(x.shape[3]) * x.dtype.itemsize
    return data_address(x) % 16 == 0 and row_bytes % 16 == 0


def gaussian_filter(
    ctx, img, kx: int, ky: int, sx: float, sy: float, border: str, *, lut=None, gamma=None,
    gain=1.0
):
    """Separable Gaussian (parameters already resolved; sigma 0 = derived from the size).

    With ``lut`` or ``gamma``/``gain``, the point operation is fused into the store (see the
    module docstring): the result equals ``apply_lut``/``gamma_correct`` of the filtered image.
    """
    dtype = np.dtype(img.dtype)
    acc_dtype = _ACC_DTYPE[dtype]
    cfg = gaussian_launch(to_nhwc(img).shape, kx, ky, acc_dtype.itemsize)  # before any work
    x, out = _prepare(ctx, img)
    n, h, w, c = x.shape
    fuse, point = _point(ctx, x, lut, gamma, gain)
    taps_x = _taps(ctx, kx, sx, dtype)
    taps_y = _taps(ctx, ky, sy, dtype)
    code = _i32(BORDER_CODES[border])
    dims = (_i32(n), _i32(h), _i32(w), _i32(c))
    rows = gaussian_rows_launch(x.shape, kx, ky, acc_dtype.itemsize, itemsize=dtype.itemsize,
                                vec=_rows_vectors(x), smem_limit=_rows_budget(_smem_optin(ctx)))
    if rows is not None:
        kern = ctx.kernel("gaussian.cu", _rows_name(dtype, fuse, rows["span"] > 0))
        if rows["shared_mem"] > _SMEM_LIMIT:
            kern.max_dynamic_shared_size_bytes = rows["shared_mem"]
        kern(
            rows["grid"], rows["block"],
            (x, out, taps_x, taps_y) + dims
            + (_i32(kx), _i32(ky), code, _i32(rows["chunk"]), _i32(rows["vec"]),
               _i32(rows["span"])) + point,
            shared_mem=rows["shared_mem"],
        )
        return from_nhwc(out, img.ndim)
    if cfg["path"] == "tile":
        kern = ctx.kernel("gaussian.cu", _tile_name(dtype, fuse))
        kern(
            cfg["grid"], cfg["block"],
            (x, out, taps_x, taps_y) + dims + (_i32(kx), _i32(ky), code) + point,
            shared_mem=cfg["shared_mem"],
        )
        return from_nhwc(out, img.ndim)
    # Kernel too large for a shared tile: two 1-D passes through an Acc buffer.
    mid = ctx.xp.empty(x.shape, dtype=acc_dtype)
    horizontal, vertical = _pass_names(dtype, fuse)
    unfused = (taps_x, _i32(1), np.float32(1.0), np.float32(1.0))  # the table is not read
    ctx.kernel("gaussian.cu", horizontal)(
        cfg["grid"], cfg["block"], (x, mid, taps_x) + dims + (_i32(kx), _i32(0), code) + unfused
    )
    ctx.kernel("gaussian.cu", vertical)(
        cfg["grid"], cfg["block"], (mid, out, taps_y) + dims + (_i32(ky), _i32(1), code) + point
    )
    return from_nhwc(out, img.ndim)
