"""Bilateral filter: validation and dispatch (the math lives in the engines)."""

from __future__ import annotations

import numpy as np

from . import _backend, _bilateral, _validate

BILATERAL_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32))


def bilateral_filter(img, d, sigma_color, sigma_space, *, border="reflect_101", backend=None):
    """Edge-preserving smoothing with ``cv2.bilateralFilter``'s semantics.

    Parameters
    ----------
    img : numpy.ndarray or cupy.ndarray
        Image of shape (H, W), (H, W, C) or (N, H, W, C) with C = 1 or 3; uint8 or float32
        (OpenCV's types). RGB images use the L1 colour distance over the channels.
    d : int
        Window diameter, in [0, 129]: the radius is ``d // 2`` (at least 1), or
        ``round(1.5 * sigma_space)`` for ``d = 0``; the window is the disc of that radius.
    sigma_color : float
        Colour sigma, finite and > 0, in the image's units.
    sigma_space : float
        Space sigma in pixels, finite and > 0 (with ``d = 0`` at most 42.6: radius 64).
    border : {"reflect_101", "replicate", "reflect", "constant"}, optional
        Pixels outside the image; ``"constant"`` reads 0.
    backend : {None, "auto", "cpu", "cuda", "cuda-emulated"}, optional
        Engine override.

    Returns
    -------
    same type as `img`
        Same shape and dtype.

    Raises
    ------
    TypeError
        For a non-array `img`, a dtype other than uint8/float32, a non-integer `d` or
        non-real sigmas.
    ValueError
        For `d` outside [0, 129], non-positive or non-finite sigmas, a radius above 64, a
        channel count other than 1 or 3, an unknown `border`, a wrong number of dimensions
        or an unknown `backend`.

    Notes
    -----
    The CPU engine is ``cv2.bilateralFilter``. The CUDA engine uses OpenCV's space weights
    and (uint8) colour table, accumulating in float32: uint8 results are within 1 of
    OpenCV's, float32 results within a relative 1e-3 (OpenCV interpolates its float colour
    weights from a table, the kernel evaluates ``expf``).

    Examples
    --------
    >>> import numpy as np
    >>> from gpuenhance import bilateral_filter
    >>> img = np.zeros((5, 6), np.uint8); img[:, 3:] = 200
    >>> bilateral_filter(img, 5, 20.0, 3.0)[2]  # the edge stays sharp
    array([  0,   0,   0, 200, 200, 200], dtype=uint8)
    """
    _validate.gray_or_rgb(img, "img", dtypes=BILATERAL_DTYPES)
    d, sigma_color, sigma_space = checked_parameters(d, sigma_color, sigma_space)
    border = _validate.border(border)
    r = _bilateral.radius(d, sigma_space)
    engine = _backend.resolve(img, backend=backend)
    return engine.call("bilateral", "bilateral_filter", img, r, sigma_color, sigma_space, border)


def checked_parameters(d, sigma_color, sigma_space) -> tuple[int, float, float]:
    """*d*, *sigma_color*, *sigma_space* checked as :func:`bilateral_filter` does."""
    d = _validate.integer(d, "d", low=0, high=2 * _bilateral.MAX_RADIUS + 1)
    sigma_color = _validate.real(sigma_color, "sigma_color", low=0.0, low_open=True)
    sigma_space = _validate.real(sigma_space, "sigma_space", low=0.0, low_open=True)
    r = _bilateral.radius(d, sigma_space)
    if r > _bilateral.MAX_RADIUS:
        raise ValueError(f"sigma_space gives a window radius of {r} (round(1.5 * sigma_space) "
                         f"with d = 0); at most {_bilateral.MAX_RADIUS}")
    return d, sigma_color, sigma_space
