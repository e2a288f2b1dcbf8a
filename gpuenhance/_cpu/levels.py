"""CPU engine: white balance, auto-contrast and tone curves (NumPy statistics, cv2.LUT maps).

Arguments arrive validated by :mod:`gpuenhance.color`, :mod:`gpuenhance.contrast` and
:mod:`gpuenhance.tone`. Integer images: exact per-image statistics from histograms, tables by
the formulas of :mod:`gpuenhance._levels`; float32 images: mapped directly.
"""

from __future__ import annotations

import cv2
import numpy as np

from .. import _levels
from .._image import from_nhwc, to_nhwc
from .tone import apply_lut


def _histograms(x, pooled: bool) -> np.ndarray:
    """(N, G, BINS) int64 histograms of an (N, H, W, C) integer batch (G = 1 when pooled)."""
    n, _, _, c = x.shape
    bins = np.iinfo(x.dtype).max + 1
    groups = 1 if pooled else c
    out = np.empty((n, groups, bins), dtype=np.int64)
    for i in range(n):
        if pooled:
            out[i, 0] = np.bincount(x[i].ravel(), minlength=bins)
        elif c == 1:
            out[i, 0] = np.bincount(x[i].ravel(), minlength=bins)
        else:  # channel k counts at k * bins + v: one pass over the interleaved pixels
            idx = x[i].reshape(-1, c).astype(np.int32)
            idx += np.arange(c, dtype=np.int32) * bins
            out[i] = np.bincount(idx.ravel(), minlength=c * bins).reshape(c, bins)
    return out


def _channel_sums(x) -> np.ndarray:
    """(N, C) exact channel sums of an integer batch (cv2.sumElems, exact below 2^53)."""
    n, h, w, c = x.shape
    if c > 4:
        return x.sum(axis=(1, 2), dtype=np.int64).astype(np.float64)
    return np.array([cv2.sumElems(np.ascontiguousarray(im))[:c] for im in x], dtype=np.float64)


def _rank_values(hist: np.ndarray, rank: int) -> np.ndarray:
    """(N, G) float64 value of 0-based rank *rank* in each histogram."""
    cdf = np.cumsum(hist, axis=-1)
    return (cdf <= rank).sum(axis=-1).astype(np.float64)


def _map_tables(x, tables, ndim: int):
    """Image i through its (BINS, C) table *tables[i]* (cv2.LUT for uint8)."""
    out = np.empty_like(x)
    n, h, w, c = x.shape
    for i in range(n):
        if x.dtype == np.uint8 or c == 1:
            out[i] = apply_lut(x[i], tables[i])
        else:  # one gather on a flattened (C * BINS) table: entry c * BINS + v
            flat = np.ascontiguousarray(tables[i].T).ravel()
            idx = x[i].astype(np.int32)
            idx += np.arange(c, dtype=np.int32) * tables.shape[1]
            np.take(flat, idx, out=out[i])
    return from_nhwc(out, ndim)


def _scale_channels(im, gains, out) -> None:
    """``out = im * float32(gain)`` per channel (float32 images)."""
    np.multiply(im, np.asarray(gains, dtype=np.float64).astype(np.float32), out=out)


def white_balance(img, method: str, percentile: float, gains):
    x = np.ascontiguousarray(to_nhwc(img))
    n, h, w, c = x.shape
    integer = x.dtype.kind == "u"
    if method == "gains":
        g = np.broadcast_to(np.asarray(gains, dtype=np.float64), (n, c))
    elif method == "gray_world":
        if integer:
            means = _channel_sums(x) / np.float64(h * w)
        elif c <= 4:
            means = np.array([cv2.mean(np.ascontiguousarray(im))[:c] for im in x])
        else:
            means = _levels.float_channel_means(np, x)
        g = _levels.gray_world_gains(means)
    else:  # white_patch
        if integer:
            values = _rank_values(_histograms(x, pooled=False),
                                  _levels.percentile_rank(h * w, percentile))
            g = _levels.white_patch_gains(values, float(np.iinfo(x.dtype).max))
        else:
            (values,) = _levels.float_rank_values(np, x, (percentile,), per_channel=True)
            g = _levels.white_patch_gains(values, 1.0)
    if not integer:
        out = np.empty_like(x)
        for i in range(n):  # OpenCV's per-channel scale, in float32 like the formula
            _scale_channels(x[i], g[i] if np.ndim(g) == 2 else g, out[i])
        return from_nhwc(out, img.ndim)
    return _map_tables(x, _levels.gain_tables(g, x.dtype), img.ndim)


def auto_contrast(img, low: float, high: float, per_channel: bool):
    x = np.ascontiguousarray(to_nhwc(img))
    n, h, w, c = x.shape
    if x.dtype.kind != "u":
        lo, hi = _levels.float_rank_values(np, x, (low, high), per_channel)
        return from_nhwc(_levels.float_stretch(np, x, lo, hi), img.ndim)
    count = h * w if per_channel else h * w * c
    hist = _histograms(x, pooled=not per_channel)
    lo = _rank_values(hist, _levels.percentile_rank(count, low))
    hi = _rank_values(hist, _levels.percentile_rank(count, high))
    if not per_channel:
        lo, hi = np.repeat(lo, c, axis=1), np.repeat(hi, c, axis=1)
    return _map_tables(x, _levels.stretch_tables(lo, hi, x.dtype), img.ndim)


def tone_curve(img, points):
    if np.dtype(img.dtype).kind == "u":
        return apply_lut(img, _levels.curve_table(points, img.dtype))
    xs, coef = _levels.pchip_coefficients(points)
    return _levels.pchip_eval(xs, coef, img).astype(np.float32)  # NaN stays NaN
