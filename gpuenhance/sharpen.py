"""Sharpening: validation and dispatch (the math lives in the engines)."""

from __future__ import annotations

from . import _backend, _gauss, _validate


def unsharp_mask(img, sigma=1.0, amount=1.0, threshold=0, *, backend=None):
    """Unsharp mask: ``img + amount * (img - Gaussian(img))`` where the difference exceeds
    `threshold`.

    Parameters
    ----------
    img : numpy.ndarray or cupy.ndarray
        Image of shape (H, W), (H, W, C) or (N, H, W, C); uint8, uint16 or float32.
    sigma : float, optional
        Gaussian sigma, finite and > 0; the kernel size follows OpenCV's rule for the image's
        dtype exactly as :func:`gpuenhance.gaussian_filter` with ``ksize=0`` (3 sigma per
        side for uint8, 4 otherwise), border reflect-101.
    amount : float, optional
        Strength, finite and >= 0.
    threshold : float, optional
        Finite and >= 0, in the image's units: pixels whose ``|img - Gaussian(img)|`` is not
        above it are left unchanged.
    backend : {None, "auto", "cpu", "cuda", "cuda-emulated"}, optional
        Engine override.

    Returns
    -------
    same type as `img`
        Same shape and dtype; integers rounded half to even and saturated.

    Raises
    ------
    TypeError
        For a non-array `img`, an unsupported dtype or non-real parameters.
    ValueError
        For ``sigma <= 0``, a negative `amount` or `threshold`, non-finite values, a wrong
        number of dimensions or an unknown `backend`.

    Notes
    -----
    Computed in float32 from float32 Gaussian taps on every engine: integer results are
    within 1 of the float64 formula (2 where float32 rounding meets the threshold), float32
    within a relative 1e-5. The CUDA engine runs one kernel pass (a shared-memory tile) for
    radii up to 40 and two passes beyond.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuenhance import unsharp_mask
    >>> img = np.zeros((5, 5), np.uint8); img[2, 2] = 100
    >>> unsharp_mask(img, sigma=0.5)[2]
    array([  0,   0, 138,   0,   0], dtype=uint8)
    """
    _validate.image(img, "img")
    sigma = _validate.real(sigma, "sigma", low=0.0, low_open=True)
    amount = _validate.real(amount, "amount", low=0.0)
    threshold = _validate.real(threshold, "threshold", low=0.0)
    ksize, _, sx, _ = _gauss.resolve(0, sigma, None, img.dtype)
    engine = _backend.resolve(img, backend=backend)
    return engine.call("sharpen", "unsharp_mask", img, ksize, sx, amount, threshold)
