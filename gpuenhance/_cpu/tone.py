"""CPU engine: lookup tables and gamma (cv2.LUT for uint8, NumPy indexing for uint16).

Arguments arrive validated by :mod:`gpuenhance.tone`. cv2.LUT runs on OpenCV's own threads;
the NumPy paths (uint16 tables, float gamma) run on the engine's threads over bands of the
flattened image (:mod:`gpuenhance._threads`). Band starts are multiples of
:data:`_BAND_ALIGN` elements, so every element goes through the same SIMD loop position as in
one whole-array call: results are bit-identical.
"""

from __future__ import annotations


import cv2
import numpy as np

from .. import _threads
from .._image import from_nhwc, to_nhwc
from .._levels import gamma_table

# Element arrays smaller than this are mapped in one call on the calling thread.
_BAND_MIN_ELEMENTS = 1 << 18
# Band boundaries in elements of the flattened image (a multiple of every SIMD width).
_BAND_ALIGN = 4096
# Bands per thread: a band costs nothing extra here (no halo), and a thread the OS keeps
# waiting leaves its unclaimed bands to the others (``_threads.run_parallel``).
_BANDS_PER_THREAD = 4


def _flat_bands(size: int, unit: int = 1) -> list[tuple[int, int]]:
    """``[a, b)`` ranges covering ``range(size)``: ``_BANDS_PER_THREAD`` per thread, starts
    aligned to ``_BAND_ALIGN * unit`` elements."""
    threads = _threads.num_threads() if size >= _BAND_MIN_ELEMENTS else 1
    align = _BAND_ALIGN * unit
    step = -(-size // (threads * _BANDS_PER_THREAD)) if threads > 1 else size
    step = max(align, -(-step // align) * align)
    return [(a, min(size, a + step)) for a in range(0, size, step)] or [(0, 0)]


def _elementwise(fn, src: np.ndarray, out: np.ndarray, unit: int = 1) -> None:
    """``fn(src_part, out_part)`` over bands of the flattened (C-order) arrays, on threads.

    Band boundaries are multiples of *unit* elements (whole pixels of *unit* channels).
    """
    a_src = src.reshape(-1)
    a_out = out.reshape(-1)
    _threads.run_parallel(lambda ab: fn(a_src[ab[0]:ab[1]], a_out[ab[0]:ab[1]]),
                          _flat_bands(a_src.size, unit))


def apply_lut(img, lut):
    """``out[..., c] = lut[img[..., c]]`` (or ``lut[img[..., c], c]`` for per-channel tables)."""
    x = to_nhwc(img)
    n, h, w, c = x.shape
    if lut.ndim == 2 and lut.shape[1] == 1:
        lut = lut[:, 0]
    if x.dtype == np.uint8:
        flat = np.ascontiguousarray(x).reshape(n * h, w, c)
        if c == 1:
            flat = flat[:, :, 0]
        table = np.ascontiguousarray(lut)
        if table.ndim == 2:  # per channel: a 256 x 1 table with c channels
            table = table.reshape(256, 1, c)
        out = cv2.LUT(flat, table).reshape(n, h, w, c)
    elif x.size < _BAND_MIN_ELEMENTS:  # one NumPy call, nothing around it
        out = lut[x] if lut.ndim == 1 else lut[x, np.arange(c)]
    else:
        src = np.ascontiguousarray(x)
        out = np.empty(src.shape, dtype=lut.dtype)
        if lut.ndim == 1:
            # mode="clip": every key is in range, and "raise" would buffer the output
            _elementwise(lambda s_, o_: np.take(lut, s_, out=o_, mode="clip"), src, out)
        else:  # per channel: entry (value, channel) of the table
            chan = np.arange(c, dtype=np.intp)

            def per_channel(s_, o_):
                o_.reshape(-1, c)[...] = lut[s_.reshape(-1, c), chan]

            _elementwise(per_channel, src, out, unit=c)
    return from_nhwc(out, img.ndim)


def gamma_correct(img, gamma: float, gain: float):
    """``gain * img ** gamma`` on the normalised range; integers through :func:`gamma_table`,
    floats clipped to [0, 1] first (NaN stays NaN)."""
    if np.dtype(img.dtype).kind == "u":
        return apply_lut(img, gamma_table(img.dtype, gamma, gain))
    g = np.float32(gamma)
    k = np.float32(gain)

    def band(s_, o_):
        np.clip(s_, np.float32(0.0), np.float32(1.0), out=o_, dtype=np.float32)  # NaN stays
        np.power(o_, g, out=o_)
        if gain != 1.0:
            o_ *= k

    if img.size < _BAND_MIN_ELEMENTS:  # one pass on this thread, nothing around it
        out = np.empty(img.shape, dtype=np.float32)
        band(img, out)
        return out
    src = np.ascontiguousarray(img)
    out = np.empty(src.shape, dtype=np.float32)
    _elementwise(band, src, out)
    return out
