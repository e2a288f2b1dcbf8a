"""Gaussian kernel parameters and taps by OpenCV's rules (host-side NumPy, shared by both engines).

``resolve`` turns the public ``(ksize, sigma, sigma_y)`` into ``(kx, ky, sx, sy)`` exactly as
``cv2.GaussianBlur`` does; ``taps`` gives the 1-D kernel of ``cv2.getGaussianKernel`` (float64),
and ``opencv_taps`` the taps OpenCV actually filters a given dtype with (fixed-point for
uint8/uint16, float32-rounded for float32), so that an engine using them reproduces OpenCV's
integer results up to the final rounding.

A resolved sigma of ``0.0`` means "derived from the kernel size": OpenCV then uses fixed
binomial tables for sizes 1..9 and ``0.3*((ksize-1)*0.5 - 1) + 0.8`` otherwise
(:func:`effective_sigma` gives the value). Passing that derived value explicitly would *not* give
the tables, which is why the sentinel is kept.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import _validate

# OpenCV's small_gaussian_tab: the kernels used when sigma <= 0 and ksize <= 9.
_TABLES = {
    1: (1.0,),
    3: (0.25, 0.5, 0.25),
    5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
    7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125),
    9: (0.015625, 0.05078125, 0.1171875, 0.19921875, 0.234375,
        0.19921875, 0.1171875, 0.05078125, 0.015625),
}

# Fractional bits of OpenCV's fixed-point Gaussian path per integer dtype.
_FIXED_BITS = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}


#: Largest Gaussian window (taps per axis). Wider windows are refused: the tiled CUDA kernel and
#: OpenCV both slow to a crawl (and OpenCV's float kernel table grows) long before a window of
#: this size stops being a blur that a smaller, faster pyramid could do.
KSIZE_MAX = 1023


def sigma_max(dtype) -> float:
    """The largest sigma whose derived window fits :data:`KSIZE_MAX` for *dtype*."""
    per_side = 3 if np.dtype(dtype) == np.uint8 else 4
    return (KSIZE_MAX - 1) / (2 * per_side)


def _one_ksize(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer or a pair of integers; got {value!r}")
    k = int(value)
    if k < 0 or (k > 0 and k % 2 == 0) or k > KSIZE_MAX:
        raise ValueError(
            f"{name} must be 0 (derive it from sigma) or an odd integer in [1, {KSIZE_MAX}]; "
            f"got {k}"
        )
    return k


def _ksize_pair(ksize) -> tuple[int, int]:
    if isinstance(ksize, (tuple, list)) or (isinstance(ksize, np.ndarray) and ksize.ndim == 1):
        if len(ksize) != 2:
            raise ValueError(f"ksize must be an integer or a (kx, ky) pair; got {ksize!r}")
        return _one_ksize(ksize[0], "ksize"), _one_ksize(ksize[1], "ksize")
    k = _one_ksize(ksize, "ksize")
    return k, k


def _ksize_from_sigma(sigma: float, dtype) -> int:
    per_side = 3 if np.dtype(dtype) == np.uint8 else 4
    return int(np.rint(sigma * per_side * 2 + 1)) | 1


def resolve(ksize, sigma, sigma_y, dtype) -> tuple[int, int, float, float]:
    """Resolve the public Gaussian parameters the way ``cv2.GaussianBlur`` does.

    Parameters
    ----------
    ksize : int or (int, int)
        ``(kx, ky)`` = (width, height); 0 derives a size from the sigma of that axis:
        ``round(sigma * (3 if uint8 else 4) * 2 + 1) | 1``.
    sigma : float
        Horizontal sigma; 0 derives it from ``kx``.
    sigma_y : float or None
        Vertical sigma; ``None`` or 0 means ``sigma``.
    dtype : dtype
        The image dtype (it changes the size derived from sigma).

    Returns
    -------
    kx, ky : int
        Odd positive kernel sizes.
    sx, sy : float
        Sigmas to pass to :func:`taps` / ``cv2.GaussianBlur``; ``0.0`` means "derived from the
        size" (see the module docstring).

    Raises
    ------
    TypeError
        For a non-integer size or a non-real sigma.
    ValueError
        For an even or negative size or one over :data:`KSIZE_MAX`, a negative or non-finite
        sigma or one whose derived size would pass :data:`KSIZE_MAX`, or a size of 0 with a
        sigma of 0 on the same axis.
    """
    kx, ky = _ksize_pair(ksize)
    sx = _validate.real(sigma, "sigma", low=0.0)
    sy = sx if sigma_y is None else _validate.real(sigma_y, "sigma_y", low=0.0)
    top = sigma_max(dtype)
    for k, s, name in ((kx, sx, "sigma"), (ky, sy, "sigma_y")):
        if k == 0 and s > top:
            raise ValueError(
                f"{name} must be <= {top:g} for {np.dtype(dtype).name} images (the window it "
                f"implies, round({2 * (3 if np.dtype(dtype) == np.uint8 else 4)}*sigma + 1), is "
                f"limited to {KSIZE_MAX} taps); got {s:g}"
            )
    if sy == 0.0:
        sy = sx
    if kx == 0:
        if sx == 0.0:
            raise ValueError(
                "ksize and sigma must not both be 0: give an odd positive ksize, a sigma > 0, "
                "or both"
            )
        kx = _ksize_from_sigma(sx, dtype)
    if ky == 0:
        if sy == 0.0:
            raise ValueError(
                "ksize and sigma_y must not both be 0 for the vertical axis: give an odd "
                "positive ksize, a sigma_y > 0, or both"
            )
        ky = _ksize_from_sigma(sy, dtype)
    return kx, ky, float(sx), float(sy)


def effective_sigma(ksize: int, sigma: float) -> float:
    """The sigma a kernel of *ksize* really has: *sigma*, or OpenCV's derived one when <= 0."""
    return float(sigma) if sigma > 0 else 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8


def taps(ksize: int, sigma: float) -> np.ndarray:
    """The 1-D Gaussian kernel of ``cv2.getGaussianKernel(ksize, sigma, cv2.CV_64F)``.

    Symmetric, sums to 1. For ``sigma <= 0`` and ``ksize <= 9`` these are OpenCV's fixed
    binomial tables; otherwise ``exp(-x**2 / (2 sigma**2))`` normalised, summed in OpenCV's
    order. OpenCV evaluates ``exp`` in software double precision, so taps can differ from
    OpenCV's in the last bits (relative 1e-13 at most); the fixed-point taps of
    :func:`opencv_taps` come out identical.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(ksize,)``.
    """
    n = int(ksize)
    if n < 1:
        raise ValueError(f"ksize must be positive; got {n}")
    if sigma <= 0 and n in _TABLES:
        return np.array(_TABLES[n], dtype=np.float64)
    s = float(sigma) if sigma > 0 else n * 0.15 + 0.35  # == 0.3*((n-1)*0.5 - 1) + 0.8
    scale = -0.125 / (s * s)  # x below is twice the offset from the centre
    half = (n - 1) // 2
    x = np.arange(half, dtype=np.float64) * 2 + (1 - n)
    values = np.exp(x * x * scale)
    total = 0.0
    for v in values:  # OpenCV's summation order (at most ksize/2 terms)
        total += float(v)
    total = total * 2.0 + 1.0
    if n % 2 == 0:
        total += 1.0
    mul = 1.0 / total
    out = np.empty(n, dtype=np.float64)
    out[:half] = values * mul
    out[n - half:] = out[:half][::-1]
    out[half] = mul
    if n % 2 == 0:
        out[half + 1] = mul
    return out


def fixed_point_taps(ksize: int, sigma: float, bits: int) -> np.ndarray:
    """Taps quantised to multiples of ``2**-bits`` with OpenCV's error diffusion.

    The outer taps are rounded (half to even) carrying the rounding error inward; the centre
    tap takes what makes the sum exactly 1. Returned as float64 values (exact).
    """
    k = taps(ksize, sigma)
    n = k.size
    scale = float(1 << bits)
    raw = np.empty(n, dtype=np.int64)
    err = 0.0
    acc = 0
    for i in range(n // 2):
        adj = float(k[i]) * scale + err
        v = int(np.rint(adj))
        err = adj - v
        raw[i] = raw[n - 1 - i] = v
        acc += v
    raw[n // 2] = (1 << bits) - 2 * acc
    return raw.astype(np.float64) / scale


def opencv_taps(ksize: int, sigma: float, dtype) -> np.ndarray:
    """The float64 taps OpenCV's ``GaussianBlur`` filters *dtype* with.

    uint8: fixed point with 8 fractional bits, uint16: 16 bits (OpenCV's bit-exact path; an
    engine accumulating these taps exactly and rounding at the end reproduces OpenCV up to
    ties); float32: :func:`taps` rounded to float32; float64: :func:`taps`.
    """
    dtype = np.dtype(dtype)
    if dtype in _FIXED_BITS:
        return fixed_point_taps(ksize, sigma, _FIXED_BITS[dtype])
    k = taps(ksize, sigma)
    if dtype == np.float32:
        return k.astype(np.float32).astype(np.float64)
    return k
