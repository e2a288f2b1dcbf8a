"""Degradation models, to train and judge restoration: blur OTFs, noise, and Wiener inversion.

Optical transfer functions (OTFs) are full (H, W) arrays in unshifted FFT order: frequency
(0, 0) sits at index (0, 0) and index i of an axis of size n stands for frequency
``fftfreq(n)[i] * n`` (0, 1, ..., then the negative frequencies). Applying an OTF to an image
is a product in the frequency domain, i.e. a *circular* convolution (the image wraps around at
its borders). :func:`motion_blur` alone filters in the image domain (``cv2.filter2D``, OpenCV's
default ``BORDER_REFLECT_101``), so it equals ``apply_otf(img, motion_otf(...))`` away from the
borders only.

Images follow the package model ((H, W), (H, W, C), (N, H, W, C); uint8, uint16, float32,
float64) and are processed per image and channel on the normalized range (255, 65535 or 1.0 is
full scale); results have the input's dtype (integers rounded half to even and saturated).
The frequency-domain functions also take CuPy arrays (computing with CuPy); the OTF builders
return NumPy arrays.
"""

from __future__ import annotations

import cv2
import numpy as np

from . import _backend, _validate
from ._image import dtype_max, from_nhwc, to_nhwc

__all__ = [
    "TURBULENCE_LOW",
    "TURBULENCE_MILD",
    "TURBULENCE_SEVERE",
    "add_gaussian_noise",
    "apply_otf",
    "gaussian_blur",
    "gaussian_otf",
    "motion_blur",
    "motion_kernel",
    "motion_otf",
    "turbulence",
    "turbulence_otf",
    "wiener_restore",
]

#: Gonzalez–Woods turbulence constants k of :func:`turbulence_otf`.
TURBULENCE_SEVERE = 0.0025
TURBULENCE_MILD = 0.001
TURBULENCE_LOW = 0.00025

_DTYPES = _validate.FILTER_DTYPES


def _xp(x):
    if _backend.is_cupy(x):
        import cupy

        return cupy
    return np


def _shape2(shape, name="shape"):
    if isinstance(shape, (int, np.integer)):
        raise TypeError(f"{name} must be a tuple (H, W, ...); got {shape!r}")
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(f"{name} must have at least 2 entries (H, W); got {shape}")
    h = _validate.integer(shape[0], f"{name}[0]", low=1)
    w = _validate.integer(shape[1], f"{name}[1]", low=1)
    return h, w


def _freq_grid(h, w):
    """Squared frequency radius (u² + v²) on the unshifted FFT grid, u, v in bins."""
    u = np.fft.fftfreq(h) * h
    v = np.fft.fftfreq(w) * w
    return u[:, None] ** 2 + v[None, :] ** 2


def _to_float(img, xp):
    out = img.astype(xp.float64)
    scale = dtype_max(img.dtype)
    return out / scale if scale != 1.0 else out


def _from_float(out, dtype, xp):
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        scale = dtype_max(dtype)
        return xp.clip(xp.rint(out * scale), 0, scale).astype(dtype)
    return out.astype(dtype)


def _check_otf(otf, img, name):
    if not _backend.is_array(otf):
        raise TypeError(f"{name} must be a NumPy or CuPy array; got {type(otf).__name__}")
    g = to_nhwc(img)
    if otf.ndim != 2 or tuple(otf.shape) != tuple(g.shape[1:3]):
        raise ValueError(
            f"{name} must have the image's (H, W) = {tuple(g.shape[1:3])}; got shape "
            f"{tuple(otf.shape)}"
        )


def turbulence_otf(shape, k):
    r"""Gonzalez–Woods atmospheric turbulence OTF :math:`H(u,v) = e^{-k (u^2+v^2)^{5/6}}`.

    Parameters
    ----------
    shape : tuple of int
        (H, W, ...) of the images; only H and W are used.
    k : float
        Severity, >= 0 (:data:`TURBULENCE_SEVERE` 0.0025, :data:`TURBULENCE_MILD` 0.001,
        :data:`TURBULENCE_LOW` 0.00025).

    Returns
    -------
    ndarray, float64 (H, W)
        H in unshifted FFT order; u, v are in frequency bins from the centre of the spectrum
        (``fftfreq(n) * n``), so ``H[0, 0] == 1`` and ``H[i, j] == H[-i, -j]``.

    Examples
    --------
    >>> from gpuenhance.degrade import turbulence_otf
    >>> H = turbulence_otf((4, 6), 0.0025)
    >>> float(H[0, 0]), bool(H[1, 2] == H[-1, -2])
    (1.0, True)
    """
    h, w = _shape2(shape)
    k = _validate.real(k, "k", low=0.0)
    return np.exp(-k * _freq_grid(h, w) ** (5.0 / 6.0))


def gaussian_otf(shape, sigma):
    r"""OTF of a Gaussian blur of standard deviation *sigma* pixels.

    :math:`H(u,v) = \exp(-2\pi^2\sigma^2 ((u/H)^2 + (v/W)^2))`, the continuous Gaussian's
    transfer function on the DFT grid (unshifted order, u, v as in :func:`turbulence_otf`).

    Parameters
    ----------
    shape : tuple of int
        (H, W, ...) of the images.
    sigma : float
        Standard deviation in pixels, >= 0.

    Returns
    -------
    ndarray, float64 (H, W)

    Examples
    --------
    >>> from gpuenhance.degrade import gaussian_otf
    >>> float(gaussian_otf((8, 8), 1.0)[0, 0])
    1.0
    """
    h, w = _shape2(shape)
    sigma = _validate.real(sigma, "sigma", low=0.0)
    u = np.fft.fftfreq(h)
    v = np.fft.fftfreq(w)
    return np.exp(-2.0 * np.pi**2 * sigma**2 * (u[:, None] ** 2 + v[None, :] ** 2))


def motion_kernel(length, angle):
    """Normalized linear motion-blur kernel.

    A centred line segment of *length* pixels at *angle* degrees (counter-clockwise from the
    +x axis, y pointing down as in images), rasterized by rotating a horizontal segment with
    bilinear interpolation. Odd lengths are *length* ones, even lengths ``length - 1`` ones and
    two halves at the ends, so the segment is centred either way. The kernel is point-symmetric,
    so correlation and convolution with it agree.

    Parameters
    ----------
    length : int
        Length in pixels, >= 1.
    angle : float
        Direction in degrees.

    Returns
    -------
    ndarray, float32 (K, K)
        K = 2 * (length // 2) + 1; sums to 1.

    Examples
    --------
    >>> from gpuenhance.degrade import motion_kernel
    >>> motion_kernel(3, 0)
    array([[0.        , 0.        , 0.        ],
           [0.33333334, 0.33333334, 0.33333334],
           [0.        , 0.        , 0.        ]], dtype=float32)
    """
    length = _validate.integer(length, "length", low=1)
    angle = _validate.real(angle, "angle")
    half = length // 2
    size = 2 * half + 1
    line = np.zeros((size, size), dtype=np.float64)
    line[half, :] = 1.0
    if length % 2 == 0:
        line[half, 0] = line[half, -1] = 0.5
    if angle % 360.0 != 0.0:
        rot = cv2.getRotationMatrix2D((float(half), float(half)), angle, 1.0)
        line = cv2.warpAffine(line, rot, (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        line = 0.5 * (line + line[::-1, ::-1])  # exact point symmetry
    line = np.clip(line, 0.0, None)
    return (line / line.sum()).astype(np.float32)


def motion_otf(shape, length, angle):
    """OTF of :func:`motion_kernel` for images of *shape* (circular, kernel centred at 0).

    Parameters
    ----------
    shape : tuple of int
        (H, W, ...) of the images; the kernel must fit: K <= H and K <= W.
    length, angle
        As in :func:`motion_kernel`.

    Returns
    -------
    ndarray, complex128 (H, W)
        FFT of the kernel zero-padded to (H, W) with its centre moved to (0, 0).

    Examples
    --------
    >>> from gpuenhance.degrade import motion_otf
    >>> H = motion_otf((16, 16), 5, 30)
    >>> round(float(abs(H[0, 0])), 6)
    1.0
    """
    h, w = _shape2(shape)
    kernel = motion_kernel(length, angle).astype(np.float64)
    size = kernel.shape[0]
    if size > h or size > w:
        raise ValueError(f"length must give a kernel no larger than shape {h}x{w}; "
                         f"got length {length} (kernel {size}x{size})")
    half = size // 2
    padded = np.zeros((h, w), dtype=np.float64)
    padded[:size, :size] = kernel
    padded = np.roll(padded, (-half, -half), axis=(0, 1))
    return np.fft.fft2(padded)


def apply_otf(img, otf):
    """Filter *img* with the OTF *otf* in the frequency domain (circular boundary).

    Parameters
    ----------
    img : array, (H, W), (H, W, C) or (N, H, W, C)
    otf : array, (H, W)
        Real or complex, unshifted FFT order.

    Returns
    -------
    array
        ``real(ifft2(otf * fft2(img)))`` per image and channel, in *img*'s dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuenhance.degrade import apply_otf
    >>> img = np.arange(12, dtype=np.float32).reshape(3, 4)
    >>> bool(np.allclose(apply_otf(img, np.ones((3, 4))), img))
    True
    """
    _validate.image(img, "img", dtypes=_DTYPES)
    _check_otf(otf, img, "otf")
    xp = _xp(img)
    g = _to_float(to_nhwc(img), xp)
    H = xp.asarray(otf)[None, :, :, None]
    spec = xp.fft.fft2(g, axes=(1, 2)) * H
    out = xp.fft.ifft2(spec, axes=(1, 2)).real
    return from_nhwc(_from_float(out, img.dtype, xp), img.ndim)


def turbulence(img, k):
    """Atmospheric turbulence blur: :func:`apply_otf` with :func:`turbulence_otf`.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuenhance.degrade import turbulence, TURBULENCE_SEVERE
    >>> img = np.full((8, 8), 200, dtype=np.uint8)
    >>> bool((turbulence(img, TURBULENCE_SEVERE) == 200).all())
    True
    """
    _validate.image(img, "img", dtypes=_DTYPES)
    return apply_otf(img, turbulence_otf(to_nhwc(img).shape[1:3], k))


def gaussian_blur(img, sigma):
    """Gaussian blur applied in the frequency domain: :func:`apply_otf` with :func:`gaussian_otf`.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuenhance.degrade import gaussian_blur
    >>> img = np.zeros((8, 8), np.float32); img[0, 0] = 1
    >>> round(float(gaussian_blur(img, 1.0).sum()), 5)
    1.0
    """
    _validate.image(img, "img", dtypes=_DTYPES)
    return apply_otf(img, gaussian_otf(to_nhwc(img).shape[1:3], sigma))


def motion_blur(img, length, angle):
    """Linear motion blur with :func:`motion_kernel`, through ``cv2.filter2D``.

    Border: OpenCV's default ``BORDER_REFLECT_101`` (not circular; see :func:`motion_otf`).
    NumPy input only.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuenhance.degrade import motion_blur
    >>> img = np.zeros((5, 7), np.float32); img[2, 3] = 3
    >>> motion_blur(img, 3, 0)[2]
    array([0., 0., 1., 1., 1., 0., 0.], dtype=float32)
    """
    _validate.image(img, "img", dtypes=_DTYPES)
    if not isinstance(img, np.ndarray):
        raise TypeError("img must be a NumPy array for motion_blur (OpenCV)")
    kernel = motion_kernel(length, angle)
    g = to_nhwc(img)
    work = np.float64 if img.dtype == np.float64 else np.float32
    out = np.empty(g.shape, dtype=work)
    for n in range(g.shape[0]):
        for c in range(g.shape[3]):
            src = np.ascontiguousarray(g[n, :, :, c], dtype=work)
            out[n, :, :, c] = cv2.filter2D(src, -1, kernel.astype(work),
                                           borderType=cv2.BORDER_REFLECT_101)
    dtype = np.dtype(img.dtype)
    if dtype.kind in "ui":
        out = np.clip(np.rint(out), 0, dtype_max(dtype)).astype(dtype)
    return from_nhwc(out.astype(dtype, copy=False), img.ndim)


def add_gaussian_noise(img, sigma, seed=None):
    """Add white Gaussian noise of standard deviation *sigma* on the normalized range.

    Parameters
    ----------
    img : array
        Image or batch; uint8, uint16, float32 or float64.
    sigma : float
        Standard deviation relative to full scale (e.g. 0.01 = 2.55 levels of uint8), >= 0.
    seed : int or None
        Seed of ``numpy.random.default_rng``; the noise is drawn on the host in float64, so a
        seed gives the same noise for NumPy and CuPy input.

    Returns
    -------
    array
        Same dtype; integers rounded and clipped to the dtype's range, floats not clipped.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuenhance.degrade import add_gaussian_noise
    >>> img = np.zeros((64, 64), np.float32)
    >>> noisy = add_gaussian_noise(img, 0.1, seed=0)
    >>> bool(abs(noisy.std() - 0.1) < 0.01), bool((noisy == add_gaussian_noise(img, 0.1, 0)).all())
    (True, True)
    """
    _validate.image(img, "img", dtypes=_DTYPES)
    sigma = _validate.real(sigma, "sigma", low=0.0)
    xp = _xp(img)
    noise = np.random.default_rng(seed).normal(0.0, sigma, size=tuple(img.shape))
    out = _to_float(img, xp) + xp.asarray(noise)
    return _from_float(out, img.dtype, xp)


def wiener_restore(degraded, H, K):
    r"""Wiener deconvolution: ``real(ifft2(conj(H) / (|H|² + K) * fft2(degraded)))``.

    Parameters
    ----------
    degraded : array, (H, W), (H, W, C) or (N, H, W, C)
    H : array, (H, W)
        OTF of the blur, unshifted FFT order (e.g. :func:`turbulence_otf`).
    K : float
        Noise-to-signal power ratio, >= 0. With K = 0 this is the inverse filter; bins where
        ``|H|² + K == 0`` are set to 0.

    Returns
    -------
    array
        Same shape and dtype as *degraded*.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuenhance.degrade import turbulence, turbulence_otf, wiener_restore
    >>> img = np.random.default_rng(0).random((16, 16))
    >>> blurred = turbulence(img, 0.001)
    >>> bool(np.allclose(wiener_restore(blurred, turbulence_otf(img.shape, 0.001), 0.0), img))
    True
    """
    _validate.image(degraded, "degraded", dtypes=_DTYPES)
    _check_otf(H, degraded, "H")
    K = _validate.real(K, "K", low=0.0)
    xp = _xp(degraded)
    Hx = xp.asarray(H).astype(xp.complex128)
    denom = (Hx.real**2 + Hx.imag**2) + K
    safe = xp.where(denom > 0, denom, 1.0)
    filt = xp.where(denom > 0, xp.conj(Hx) / safe, 0.0)
    g = _to_float(to_nhwc(degraded), xp)
    spec = xp.fft.fft2(g, axes=(1, 2)) * filt[None, :, :, None]
    out = xp.fft.ifft2(spec, axes=(1, 2)).real
    return from_nhwc(_from_float(out, degraded.dtype, xp), degraded.ndim)
