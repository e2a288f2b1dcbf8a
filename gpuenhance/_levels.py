"""Engine-neutral math of the level operations (gamma and tone-curve tables, white balance,
auto-contrast).

Both engines build their tables from these formulas, so integer results are identical on
every engine: the statistics are exact integers (sums, order statistics of a histogram) and
everything after them is float64 with one rounding per operation (the CUDA kernels use
``__dmul_rn``/``__dadd_rn`` so that no FMA contraction changes a rounding).
"""

from __future__ import annotations

import functools

import numpy as np


def percentile_rank(count: int, percentile: float) -> int:
    """The 0-based rank that ``numpy.percentile(..., method="inverted_cdf")`` picks.

    NumPy's rule: ``k = count * (percentile / 100) - 1``; the next integer above ``k``
    when ``k`` has a fractional part, else ``k``; clipped to ``[0, count - 1]``.
    """
    k = float(count) * (float(percentile) / 100.0) - 1.0
    below = np.floor(k)
    r = below + 1.0 if k - below > 0.0 else below
    return int(min(max(r, 0.0), float(count - 1)))


def gray_world_gains(means) -> np.ndarray:
    """Gains that bring each channel's mean to the mean of the means (1 for a zero mean).

    *means* is (..., C) float64; the mean of the means is summed in channel order.
    """
    return gray_world_gains_xp(np, np.asarray(means, dtype=np.float64))


def gray_world_gains_xp(xp, means):
    """:func:`gray_world_gains` on any array module."""
    total = xp.zeros(means.shape[:-1], dtype=np.float64)
    for c in range(means.shape[-1]):
        total = total + means[..., c]
    target = total / np.float64(means.shape[-1])
    safe = xp.where(means > 0.0, means, 1.0)
    return xp.where(means > 0.0, target[..., None] / safe, 1.0)


def white_patch_gains(values, full: float) -> np.ndarray:
    """Gains that map each channel's percentile value to *full* (1 for a zero value)."""
    return white_patch_gains_xp(np, np.asarray(values, dtype=np.float64), full)


def white_patch_gains_xp(xp, values, full: float):
    """:func:`white_patch_gains` on any array module."""
    safe = xp.where(values > 0.0, values, 1.0)
    return xp.where(values > 0.0, np.float64(full) / safe, 1.0)


def gain_tables(gains, dtype) -> np.ndarray:
    """Per-channel tables ``rint(v * gain)`` saturated to the dtype: (..., entries, C)."""
    top = np.iinfo(dtype).max
    v = np.arange(top + 1, dtype=np.float64)
    gains = np.asarray(gains, dtype=np.float64)
    t = np.rint(v[:, None] * gains[..., None, :])
    return np.clip(t, 0.0, float(top)).astype(dtype)


def stretch_scale(lo, hi, full: float):
    """``full / (hi - lo)`` where ``hi > lo``, else 0 (marks "no stretch": identity)."""
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    return stretch_scale_xp(np, lo, hi, float(full))


def stretch_tables(lo, hi, dtype) -> np.ndarray:
    """Per-channel tables ``rint((v - lo) * full / (hi - lo))`` saturated: (..., entries, C).

    A channel with ``hi <= lo`` maps every level to itself.
    """
    top = np.iinfo(dtype).max
    v = np.arange(top + 1, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    scale = stretch_scale(lo, hi, float(top))
    t = np.rint((v[:, None] - lo[..., None, :]) * scale[..., None, :])
    t = np.where(scale[..., None, :] > 0.0, t, v[:, None])
    return np.clip(t, 0.0, float(top)).astype(dtype)


def pchip_coefficients(points) -> tuple[np.ndarray, np.ndarray]:
    """Breakpoints and per-interval cubic coefficients of the monotone PCHIP curve.

    The closed form scipy.interpolate.PchipInterpolator uses: secant slopes ``m``; interior
    derivatives 0 where neighbouring slopes differ in sign or one is 0, else the weighted
    harmonic mean ``(w1 + w2) / (w1 / m[k-1] + w2 / m[k])`` with ``w1 = 2 h[k] + h[k-1]``,
    ``w2 = h[k] + 2 h[k-1]``; end derivatives by the shape-preserving three-point formula;
    two points give a straight line. Returns ``x`` (K,) and ``c`` (K-1, 4) such that on
    ``[x[i], x[i+1]]``: ``y = ((c0 t + c1) t + c2) t + c3`` with ``t = u - x[i]``.
    """
    pts = np.asarray(points, dtype=np.float64)
    x, y = np.ascontiguousarray(pts[:, 0]), np.ascontiguousarray(pts[:, 1])
    h = np.diff(x)
    m = np.diff(y) / h
    if x.size == 2:
        d = np.array([m[0], m[0]])
    else:
        d = np.zeros_like(y)
        w1 = 2.0 * h[1:] + h[:-1]
        w2 = h[1:] + 2.0 * h[:-1]
        same = (np.sign(m[1:]) == np.sign(m[:-1])) & (m[1:] != 0.0) & (m[:-1] != 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            harmonic = (w1 + w2) / (w1 / m[:-1] + w2 / m[1:])
        d[1:-1] = np.where(same, harmonic, 0.0)
        d[0] = _pchip_end(h[0], h[1], m[0], m[1])
        d[-1] = _pchip_end(h[-1], h[-2], m[-1], m[-2])
    c = np.empty((x.size - 1, 4), dtype=np.float64)
    c[:, 0] = (d[:-1] + d[1:] - 2.0 * m) / (h * h)
    c[:, 1] = (3.0 * m - 2.0 * d[:-1] - d[1:]) / h
    c[:, 2] = d[:-1]
    c[:, 3] = y[:-1]
    return x, c


def _pchip_end(h0, h1, m0, m1) -> float:
    d = ((2.0 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if np.sign(d) != np.sign(m0):
        return 0.0
    if np.sign(m0) != np.sign(m1) and abs(d) > abs(3.0 * m0):
        return 3.0 * m0
    return float(d)


def pchip_eval(x: np.ndarray, c: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The curve at *u* clipped to ``[x[0], x[-1]]``, in float64 (Horner form; NaN stays NaN).

    The interval of a value is the last ``i <= K - 2`` with ``x[i] <= u``.
    """
    uc = np.clip(np.asarray(u, dtype=np.float64), x[0], x[-1])
    i = np.searchsorted(x[1:-1], uc, side="right")  # = clip(searchsorted(x) - 1, 0, K - 2)
    t = uc - np.take(x, i)
    cols = np.ascontiguousarray(c.T)
    y = np.take(cols[0], i)
    for k in (1, 2, 3):
        y *= t
        y += np.take(cols[k], i)
    return y


def curve_table(points, dtype) -> np.ndarray:
    """The integer table of a tone curve: ``rint(curve(v / max) * max)`` saturated.

    Memoized (batch runs ask once per image); the returned array is read-only.
    """
    key = tuple((float(x), float(y)) for x, y in points)
    return _curve_table(key, np.dtype(dtype).name)


@functools.lru_cache(maxsize=64)
def _curve_table(points: tuple, dtype_name: str) -> np.ndarray:
    top = float(np.iinfo(dtype_name).max)
    x, c = pchip_coefficients(points)
    y = pchip_eval(x, c, np.arange(int(top) + 1, dtype=np.float64) / top)
    table = np.clip(np.rint(y * top), 0.0, top).astype(dtype_name)
    table.flags.writeable = False
    return table


# --------------------------------------------------------------------------- float images
# Float32 images take their statistics with array-module calls (NumPy on the CPU and under
# the emulator, CuPy on a GPU: means, sorts; no host round trip) and are mapped directly.


def float_channel_means(xp, x):
    """(N, C) float64 channel means of an (N, H, W, C) float batch."""
    return xp.mean(x, axis=(1, 2), dtype=np.float64)


def float_rank_values(xp, x, percentiles, per_channel: bool):
    """[(N, G) values at NumPy's inverted-CDF rank] for each of *percentiles*, of each
    image's channels (G = C) or all its values (G = 1). NumPy partitions, CuPy sorts."""
    n, h, w, c = x.shape
    flat = x.reshape(n, h * w, c).transpose(0, 2, 1) if per_channel else x.reshape(n, 1, -1)
    ranks = [percentile_rank(flat.shape[-1], q) for q in percentiles]
    if xp is np:
        flat = np.partition(flat, sorted(set(ranks)), axis=-1)
    else:
        flat = xp.sort(flat, axis=-1)
    return [flat[:, :, r].astype(np.float64) for r in ranks]


def float_apply_gains(xp, x, gains):
    """``x * gain`` per channel in float32; *gains* (N, C) or (C,)."""
    g = xp.asarray(gains).astype(np.float32)
    g = g.reshape(g.shape[0], 1, 1, -1) if g.ndim == 2 else g
    return (x * g).astype(np.float32)


def float_stretch(xp, x, lo, hi):
    """``clip((x - lo) * (1 / (hi - lo)), 0, 1)`` in float32 per image and channel group;
    unchanged where ``hi <= lo``. *lo*, *hi*: (N, G) float64 (G = C or 1)."""
    n = x.shape[0]
    scale = xp.asarray(stretch_scale_xp(xp, lo, hi, 1.0)).astype(np.float32).reshape(n, 1, 1, -1)
    lo32 = lo.astype(np.float32).reshape(n, 1, 1, -1)
    out = xp.clip((x - lo32) * scale, np.float32(0.0), np.float32(1.0)).astype(np.float32)
    return xp.where(scale > 0, out, x)


def stretch_scale_xp(xp, lo, hi, full: float):
    """:func:`stretch_scale` on any array module."""
    span = hi - lo
    return xp.where(span > 0.0, full / xp.where(span > 0.0, span, 1.0), 0.0)


def gamma_table(dtype, gamma: float, gain: float) -> np.ndarray:
    """The table of ``gain * (i / max) ** gamma * max`` for every level i of an integer dtype.

    Computed in float64, rounded half to even, saturated to [0, max], cast to *dtype*
    (uint8: 256 entries, uint16: 65536). Both engines build their table with this function.
    Memoized (batch runs call it once per image); the returned array is read-only.
    """
    return _gamma_table(np.dtype(dtype), float(gamma), float(gain))


@functools.lru_cache(maxsize=64)
def _gamma_table(dtype: np.dtype, gamma: float, gain: float) -> np.ndarray:
    top = float(np.iinfo(dtype).max)
    x = np.arange(int(top) + 1, dtype=np.float64) / top
    y = gain * np.power(x, gamma) * top
    table = np.clip(np.rint(y), 0.0, top).astype(dtype)
    table.flags.writeable = False
    return table
