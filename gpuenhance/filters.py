"""Median and Gaussian filters: validation and dispatch (the math lives in the engines)."""

from __future__ import annotations

from . import _backend, _gauss, _validate

MEDIAN_KSIZE_MAX = 255


def median_filter(img, ksize, *, border="replicate", backend=None):
    """Median filter over a square window (impulse / salt-and-pepper noise removal).

    Parameters
    ----------
    img : numpy.ndarray or cupy.ndarray
        Image of shape (H, W), (H, W, C) or a batch (N, H, W, C); uint8, uint16, float32 or
        float64. Each channel is filtered on its own. Non-contiguous input is accepted.
    ksize : int
        Odd window size in [1, 255]; 1 returns a copy. Windows larger than the image are
        allowed (the border rule is applied repeatedly).
    border : {"replicate", "reflect", "reflect_101", "constant"}, optional
        How pixels outside the image are read, by OpenCV's rules: ``aaa|abcd|ddd``,
        ``cba|abcd|dcb``, ``dcb|abcd|cba``, or zeros.
    backend : {None, "auto", "cpu", "cuda", "cuda-emulated"}, optional
        Engine override; by default the engine follows the input's array type.

    Returns
    -------
    same type as `img`
        The filtered image, same shape and dtype.

    Raises
    ------
    TypeError
        When `img` is not a NumPy/CuPy array, its dtype is not supported, or `ksize` is not an
        integer.
    ValueError
        For a wrong number of dimensions, an even `ksize` or one outside [1, 255], an unknown
        `border` or `backend`.
    gpuenhance.BackendUnavailableError
        When ``backend="cuda"`` and no GPU engine works here.

    Notes
    -----
    Exact on every engine: the result equals ``cv2.medianBlur`` wherever OpenCV supports the
    case (replicate border; uint8 any window; uint16/float32 windows 3 and 5), and the median
    of each padded window otherwise. The order of NaNs among numbers is not specified.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuenhance import median_filter
    >>> img = np.full((5, 5), 10, dtype=np.uint8)
    >>> img[2, 2] = 255                      # an impulse
    >>> int(median_filter(img, 3)[2, 2])
    10
    >>> median_filter(img, 3, border="constant")[0]
    array([ 0, 10, 10, 10,  0], dtype=uint8)
    """
    _validate.image(img, "img", dtypes=_validate.FILTER_DTYPES)
    ksize = _validate.odd_ksize(ksize, "ksize", low=1, high=MEDIAN_KSIZE_MAX)
    border = _validate.border(border)
    engine = _backend.resolve(img, backend=backend)
    return engine.call("filters", "median_filter", img, ksize, border)


def gaussian_filter(img, ksize=0, sigma=0.0, *, sigma_y=None, border="reflect_101", backend=None):
    """Separable Gaussian smoothing with OpenCV's ``GaussianBlur`` parameter rules.

    Parameters
    ----------
    img : numpy.ndarray or cupy.ndarray
        Image of shape (H, W), (H, W, C) or (N, H, W, C); uint8, uint16, float32 or float64.
    ksize : int or (int, int), optional
        Kernel size, or (width, height). Odd and positive, or 0 to derive it from the sigma of
        that axis: ``round(sigma * (3 if uint8 else 4) * 2 + 1) | 1``.
    sigma : float, optional
        Horizontal standard deviation, >= 0. 0 derives it from the width:
        ``0.3 * ((ksize - 1) * 0.5 - 1) + 0.8`` (OpenCV's fixed binomial kernels for sizes
        up to 9).
    sigma_y : float, optional
        Vertical standard deviation; None or 0 means `sigma`.
    border : {"reflect_101", "reflect", "replicate", "constant"}, optional
        Border rule (OpenCV's); ``constant`` pads with zeros.
    backend : {None, "auto", "cpu", "cuda", "cuda-emulated"}, optional
        Engine override.

    Returns
    -------
    same type as `img`
        The smoothed image, same shape and dtype.

    Raises
    ------
    TypeError
        For a non-array `img`, an unsupported dtype, a non-integer `ksize` or a non-real sigma.
    ValueError
        For an even or negative `ksize`, a negative or non-finite sigma, `ksize` and `sigma`
        both 0, an unknown `border` or `backend`.
    gpuenhance.BackendUnavailableError
        When ``backend="cuda"`` and no GPU engine works here.

    Notes
    -----
    Accuracy against ``cv2.GaussianBlur``: float32 within relative 1e-5, float64 1e-10,
    uint8/uint16 within +-1. OpenCV filters 8- and 16-bit images in fixed point (taps quantised
    to 8 or 16 fractional bits, result rounded half up) and float images with float taps; the
    CPU engine calls OpenCV itself, the CUDA engine accumulates the same (quantised) taps in
    float32 and rounds half to even, so integer results can differ by one level on ties and
    float results by float32 accumulation order.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuenhance import gaussian_filter
    >>> img = np.zeros((5, 5), dtype=np.float32)
    >>> img[2, 2] = 16.0
    >>> gaussian_filter(img, 3)[1:4, 1:4]          # sigma 0 with ksize 3: [1, 2, 1] / 4
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]], dtype=float32)
    >>> gaussian_filter(img, sigma=1.0).shape      # ksize derived from sigma (9 for float)
    (5, 5)
    """
    _validate.image(img, "img", dtypes=_validate.FILTER_DTYPES)
    kx, ky, sx, sy = _gauss.resolve(ksize, sigma, sigma_y, img.dtype)
    border = _validate.border(border)
    engine = _backend.resolve(img, backend=backend)
    return engine.call("filters", "gaussian_filter", img, kx, ky, sx, sy, border)
