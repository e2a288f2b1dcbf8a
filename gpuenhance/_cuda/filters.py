"""CUDA engine: median and Gaussian filters (kernels/median.cu, kernels/gaussian.cu).

Arguments arrive validated and resolved by :mod:`gpuenhance.filters`. Every image layout is
computed as a contiguous (N, H, W, C) batch in one launch per pass; grid.z walks the N*C
planes. See the kernel files for the algorithms.

Median path choice (exact on every path):

==========================  =================================================
ksize 1                     copy
ksize 3, 5 (any dtype)      ``gpuenhance_median_small`` (register networks)
ksize 7, float/uint16       ``gpuenhance_median_small`` (forgetful selection)
ksize >= 7 uint8,
ksize >= 9 uint16           ``gpuenhance_median_hist`` (sliding histograms)
ksize >= 9 float            ``gpuenhance_median_select`` (radix selection)
==========================  =================================================

Fusion: ``median_filter`` and ``gaussian_filter`` take an optional trailing point operation,
``lut=`` (uint8/uint16: a table as for :func:`gpuenhance.apply_lut`, shared or per channel) or
``gamma=``/``gain=`` (as :func:`gpuenhance.gamma_correct`: uint8/uint16 through the very
table the tone engine uses, float32 as ``gain * powf(v, gamma)``). The kernels apply it to
each filtered value right before its store (template flag ``FUSE``), so the filter and the
point operation are one pass over memory and the result is bit-identical to running them one
after the other. float64 images do not fuse (there is no float64 gamma).
"""

from __future__ import annotations

import functools

import numpy as np

from .._image import from_nhwc, to_nhwc
from ._common import BORDER_CODES, blocks, ctype

_DTYPES = tuple(np.dtype(d) for d in (np.uint8, np.uint16, np.float32, np.float64))
_INT_DTYPES = _DTYPES[:2]
_SMALL_K = (3, 5, 7)
_ACC = {d: ("double" if d == np.float64 else "float") for d in _DTYPES}
_ACC_DTYPE = {
    d: (np.dtype(np.float64) if d == np.float64 else np.dtype(np.float32)) for d in _DTYPES
}

# Shared memory a launch may ask for (the default per-block limit is 48 KiB).
_SMEM_LIMIT = 48 * 1024
# Largest grid.z; planes beyond it are covered by the kernels' grid-stride loop.
_GRID_Z = 65535

# Smallest ksize that uses the sliding-histogram path, per integer dtype.
_HIST_FROM = {np.dtype(np.uint8): 7, np.dtype(np.uint16): 9}
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


def _hist_name(dtype, wide: int, fuse: int = FUSE_NONE) -> str:
    return f"gpuenhance_median_hist<{ctype(dtype)}, {wide}, {fuse}>"


def _select_name(dtype, fuse: int = FUSE_NONE) -> str:
    return f"gpuenhance_median_select<{ctype(dtype)}, {fuse}>"


def _tile_name(dtype, fuse: int = FUSE_NONE) -> str:
    return f"gpuenhance_gaussian_tile<{ctype(dtype)}, {_ACC[np.dtype(dtype)]}, {fuse}>"


def _pass_name(tin: str, tout: str, acc: str, fuse: int = FUSE_NONE) -> str:
    return f"gpuenhance_gaussian_pass<{tin}, {tout}, {acc}, {fuse}>"


def _pass_names(dtype, fuse: int = FUSE_NONE) -> tuple[str, str]:
    """(horizontal: dtype -> Acc, vertical: Acc -> dtype, fused) name expressions."""
    t, acc = ctype(dtype), _ACC[np.dtype(dtype)]
    return _pass_name(t, acc, acc), _pass_name(acc, t, acc, fuse)


KERNELS = {
    "median.cu": tuple(
        [_small_name(d, k, f) for d in _DTYPES for f in _fusions(d) for k in _SMALL_K]
        + [_hist_name(d, w, f) for d in _INT_DTYPES for f in _fusions(d) for w in (0, 1)]
        + [_select_name(d, f) for d in _DTYPES for f in _fusions(d)]
    ),
    "gaussian.cu": tuple(
        [_tile_name(d, f) for d in _DTYPES for f in _fusions(d)]
        + list(
            dict.fromkeys(n for d in _DTYPES for f in _fusions(d) for n in _pass_names(d, f))
        )
    ),
}

HOT_KERNELS = tuple(
    [_small_name(d, k, f) for d in _DTYPES for f in _fusions(d) for k in (3, 5)]
    + [_tile_name(d, f) for d in _DTYPES for f in _fusions(d)]
)


def _function(ctx, filename: str, name: str):
    return ctx.module(filename, KERNELS[filename]).get_function(name)


def _i32(v) -> np.int32:
    return np.int32(v)


def _prepare(ctx, img):
    """The input as a contiguous (N, H, W, C) array, and an output of the same shape."""
    xp = ctx.xp
    x = xp.ascontiguousarray(to_nhwc(img))
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
        from .tone import _gamma_table_cached

        lut = _gamma_table_cached(
            ctx.name, _device_key(ctx), dtype.name, float(gamma), float(gain)
        )
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


def median_filter(ctx, img, ksize: int, border: str, *, lut=None, gamma=None, gain=1.0):
    """Median over a ksize x ksize window; exact (equal to the CPU engine) on every path.

    With ``lut`` or ``gamma``/``gain``, the point operation is fused into the store (see the
    module docstring): the result equals ``apply_lut``/``gamma_correct`` of the median.
    """
    if ksize == 1:
        if lut is not None or gamma is not None:
            return _point_only(ctx, img, lut, gamma, gain)
        return ctx.xp.array(img, copy=True, order="C")
    x, out = _prepare(ctx, img)
    n, h, w, c = x.shape
    dtype = np.dtype(x.dtype)
    fuse, point = _point(ctx, x, lut, gamma, gain)
    code = _i32(BORDER_CODES[border])
    gz = min(n * c, _GRID_Z)
    path = _median_path(dtype, ksize)
    if path == "small":
        bx, by = 32, 8
        smem = (bx + ksize - 1) * (by + ksize - 1) * dtype.itemsize
        kern = _function(ctx, "median.cu", _small_name(dtype, ksize, fuse))
        kern(
            (blocks(w, bx), blocks(h, by), gz),
            (bx, by, 1),
            (x, out, _i32(n), _i32(h), _i32(w), _i32(c), code) + point,
            shared_mem=smem,
        )
    elif path == "hist":
        wide = 0 if ksize * ksize < 65536 else 1
        per_thread = _HIST_COUNTERS[dtype] * (4 if wide else 2)
        bt = 64
        while bt > 1 and bt * per_thread > _SMEM_LIMIT - 8 * 1024:
            bt //= 2
        strip = min(h, max(32, 2 * ksize))
        kern = _function(ctx, "median.cu", _hist_name(dtype, wide, fuse))
        kern(
            (blocks(w, bt), blocks(h, strip), gz),
            (bt, 1, 1),
            (x, out, _i32(n), _i32(h), _i32(w), _i32(c), _i32(ksize), code, _i32(strip))
            + point,
            shared_mem=bt * per_thread,
        )
    else:
        bx, by = 16, 8
        kern = _function(ctx, "median.cu", _select_name(dtype, fuse))
        kern(
            (blocks(w, bx), blocks(h, by), gz),
            (bx, by, 1),
            (x, out, _i32(n), _i32(h), _i32(w), _i32(c), _i32(ksize), code) + point,
            shared_mem=16 * bx * by * 4,
        )
    return from_nhwc(out, img.ndim)


# ---------------------------------------------------------------------------------------------
# Gaussian
# ---------------------------------------------------------------------------------------------
def _host_taps(ksize: int, sigma: float, dtype) -> np.ndarray:
    """float64 taps that OpenCV filters *dtype* with (fixed point for uint8/uint16)."""
    try:
        from .. import _gauss
    except ImportError:  # pragma: no cover - only before gpuenhance._gauss existed
        import cv2

        return cv2.getGaussianKernel(ksize, sigma, ktype=cv2.CV_64F).ravel()
    return _gauss.opencv_taps(ksize, sigma, dtype)


def _device_key(ctx):
    if ctx.name == "cuda":
        return ctx.xp.cuda.runtime.getDevice()
    return None


@functools.lru_cache(maxsize=256)
def _taps_cached(engine: str, device, ksize: int, sigma: float, dtype_name: str):
    from ._loader import get_context

    ctx = get_context(engine)
    dtype = np.dtype(dtype_name)
    host = _host_taps(ksize, sigma, dtype).astype(_ACC_DTYPE[dtype])
    return ctx.xp.asarray(host)


def _taps(ctx, ksize: int, sigma: float, dtype):
    """Device taps in the accumulation type, uploaded once per (engine, device, k, sigma, dtype)."""
    return _taps_cached(ctx.name, _device_key(ctx), int(ksize), float(sigma), np.dtype(dtype).name)


def _tile_shape(kx: int, ky: int, acc_size: int):
    """(bx, by, shared bytes) of the tile kernel, or None when no tile fits the limit."""
    bx = 32
    for by in (8, 4, 2, 1):
        th, tw = by + ky - 1, bx + kx - 1
        smem = (th * tw + th * bx + kx + ky) * acc_size
        if smem <= _SMEM_LIMIT:
            return bx, by, smem
    return None


def gaussian_filter(
    ctx, img, kx: int, ky: int, sx: float, sy: float, border: str, *, lut=None, gamma=None,
    gain=1.0
):
    """Separable Gaussian (parameters already resolved; sigma 0 = derived from the size).

    With ``lut`` or ``gamma``/``gain``, the point operation is fused into the store (see the
    module docstring): the result equals ``apply_lut``/``gamma_correct`` of the filtered image.
    """
    x, out = _prepare(ctx, img)
    n, h, w, c = x.shape
    dtype = np.dtype(x.dtype)
    fuse, point = _point(ctx, x, lut, gamma, gain)
    acc_dtype = _ACC_DTYPE[dtype]
    taps_x = _taps(ctx, kx, sx, dtype)
    taps_y = _taps(ctx, ky, sy, dtype)
    code = _i32(BORDER_CODES[border])
    shape = _tile_shape(kx, ky, acc_dtype.itemsize)
    if shape is not None:
        bx, by, smem = shape
        kern = _function(ctx, "gaussian.cu", _tile_name(dtype, fuse))
        kern(
            (blocks(w, bx), blocks(h, by), min(n * c, _GRID_Z)),
            (bx, by, 1),
            (x, out, taps_x, taps_y, _i32(n), _i32(h), _i32(w), _i32(c), _i32(kx), _i32(ky),
             code) + point,
            shared_mem=smem,
        )
        return from_nhwc(out, img.ndim)
    # Kernel too large for a shared tile: two 1-D passes through an Acc buffer.
    mid = ctx.xp.empty(x.shape, dtype=acc_dtype)
    horizontal, vertical = _pass_names(dtype, fuse)
    threads = 256
    grid = (min(blocks(x.size, threads), 65535 * 4), 1, 1)
    dims = (_i32(n), _i32(h), _i32(w), _i32(c))
    unfused = (taps_x, _i32(1), np.float32(1.0), np.float32(1.0))  # the table is not read
    _function(ctx, "gaussian.cu", horizontal)(
        grid, (threads, 1, 1), (x, mid, taps_x) + dims + (_i32(kx), _i32(0), code) + unfused
    )
    _function(ctx, "gaussian.cu", vertical)(
        grid, (threads, 1, 1), (mid, out, taps_y) + dims + (_i32(ky), _i32(1), code) + point
    )
    return from_nhwc(out, img.ndim)
