"""CPU engine: lookup tables and gamma (cv2.LUT for uint8, NumPy indexing for uint16).

Arguments arrive validated by :mod:`gpuenhance.tone`.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from .._image import from_nhwc, to_nhwc


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
    elif lut.ndim == 1:
        out = lut[x]
    else:
        out = lut[x, np.arange(c)]
    return from_nhwc(out, img.ndim)


def gamma_table(dtype, gamma: float, gain: float) -> np.ndarray:
    """The table of ``gain * (i / max) ** gamma * max`` for every level i of an integer dtype.

    Computed in float64, rounded half to even, saturated to [0, max], cast to *dtype*
    (uint8: 256 entries, uint16: 65536). The CUDA engine builds its table with this function.
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


def gamma_correct(img, gamma: float, gain: float):
    """``gain * img ** gamma`` on the normalised range; integers through :func:`gamma_table`,
    floats clipped to [0, 1] first (NaN stays NaN)."""
    if np.dtype(img.dtype).kind == "u":
        return apply_lut(img, gamma_table(img.dtype, gamma, gain))
    out = np.clip(img, np.float32(0.0), np.float32(1.0), dtype=np.float32)
    np.power(out, np.float32(gamma), out=out)
    if gain != 1.0:
        out *= np.float32(gain)
    return out
