"""Lookup tables and gamma: validation and dispatch (the math lives in the engines)."""

from __future__ import annotations

import numpy as np

from . import _backend, _validate

LUT_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))
_LUT_ENTRIES = {np.dtype(np.uint8): 256, np.dtype(np.uint16): 65536}


def apply_lut(img, lut, *, backend=None):
    """Map every pixel through a lookup table: ``out = lut[img]``.

    Parameters
    ----------
    img : numpy.ndarray or cupy.ndarray
        Image of shape (H, W), (H, W, C) or (N, H, W, C); uint8 or uint16.
    lut : numpy.ndarray or cupy.ndarray
        The table, of `img`'s dtype and array type: shape ``(entries,)`` shared by all
        channels, or ``(entries, C)`` with one column per channel (C = `img`'s channel count,
        1 for a 2-D image). ``entries`` is 256 for uint8 and 65536 for uint16.
    backend : {None, "auto", "cpu", "cuda", "cuda-emulated"}, optional
        Engine override.

    Returns
    -------
    same type as `img`
        The mapped image, same shape and dtype.

    Raises
    ------
    TypeError
        When `img` or `lut` is not an array, `img`'s dtype is not uint8/uint16, `lut`'s dtype
        differs from `img`'s, or NumPy and CuPy arrays are mixed.
    ValueError
        For a wrong number of dimensions, a table of the wrong length, shape or channel count,
        an unknown `backend`.

    Notes
    -----
    Exact on every engine; equal to ``cv2.LUT`` for uint8.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuenhance import apply_lut
    >>> invert = (255 - np.arange(256)).astype(np.uint8)
    >>> apply_lut(np.array([[0, 100, 255]], dtype=np.uint8), invert)
    array([[255, 155,   0]], dtype=uint8)
    """
    _validate.image(img, "img", dtypes=LUT_DTYPES)
    if not _backend.is_array(lut):
        raise TypeError(f"lut must be a NumPy or CuPy array; got {type(lut).__name__}")
    dtype = np.dtype(img.dtype)
    if np.dtype(lut.dtype) != dtype:
        raise TypeError(
            f"lut dtype must equal img dtype ({dtype.name}); got {np.dtype(lut.dtype).name}"
        )
    entries = _LUT_ENTRIES[dtype]
    channels = img.shape[-1] if img.ndim >= 3 else 1
    if lut.ndim not in (1, 2):
        raise ValueError(
            f"lut must have shape ({entries},) or ({entries}, {channels}); got shape "
            f"{tuple(lut.shape)}"
        )
    if lut.shape[0] != entries:
        raise ValueError(
            f"lut must have {entries} entries for a {dtype.name} image; got {lut.shape[0]} "
            f"(shape {tuple(lut.shape)})"
        )
    if lut.ndim == 2 and lut.shape[1] != channels:
        raise ValueError(
            f"lut with one column per channel must have shape ({entries}, {channels}) for an "
            f"image with {channels} channel(s); got {tuple(lut.shape)}"
        )
    engine = _backend.resolve(img, lut, backend=backend)
    return engine.call("tone", "apply_lut", img, lut)


def gamma_correct(img, gamma, *, gain=1.0, backend=None):
    """Gamma curve ``out = gain * in ** gamma`` on the normalised intensity range.

    Parameters
    ----------
    img : numpy.ndarray or cupy.ndarray
        Image of shape (H, W), (H, W, C) or (N, H, W, C); uint8, uint16 or float32. Integer
        images are normalised by 255 / 65535 and scaled back; float images are used as they
        are (no normalisation).
    gamma : float
        Exponent, finite and > 0 (< 1 brightens, > 1 darkens).
    gain : float, optional
        Factor applied after the power, finite and >= 0.
    backend : {None, "auto", "cpu", "cuda", "cuda-emulated"}, optional
        Engine override.

    Returns
    -------
    same type as `img`
        Same shape and dtype.

    Raises
    ------
    TypeError
        For a non-array `img`, an unsupported dtype, or a non-real `gamma`/`gain`.
    ValueError
        For ``gamma <= 0``, ``gain < 0``, a non-finite `gamma`/`gain`, a wrong number of
        dimensions or an unknown `backend`.

    Notes
    -----
    Integer images go through a table built on the host in float64
    (``gain * (i / max) ** gamma * max``), rounded half to even and saturated to the dtype's
    range, so every engine gives identical results. Float32 images are computed directly in
    float32: the value is clipped to [0, 1] first (the domain the integer path has by
    construction, so a negative input gives ``0`` rather than NaN and values above 1 give
    ``gain``), then ``gain * x ** gamma`` (NumPy's float32 power on the CPU; on CUDA a
    table-based pow within 1 ulp for ``gamma <= 64``, ``powf`` above); NaN stays NaN (the file
    runner refuses images holding NaN); engines agree to a relative 1e-6.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuenhance import gamma_correct
    >>> gamma_correct(np.array([[0, 64, 255]], dtype=np.uint8), 0.5)
    array([[  0, 128, 255]], dtype=uint8)
    >>> gamma_correct(np.array([0.25, 1.0], dtype=np.float32).reshape(1, 2), 2.0, gain=2.0)
    array([[0.125, 2.   ]], dtype=float32)
    >>> gamma_correct(np.array([[-0.5, 0.25, 3.0]], dtype=np.float32), 0.5)
    array([[0. , 0.5, 1. ]], dtype=float32)
    """
    _validate.image(img, "img")
    gamma = _validate.real(gamma, "gamma", low=0.0, low_open=True)
    gain = _validate.real(gain, "gain", low=0.0)
    engine = _backend.resolve(img, backend=backend)
    return engine.call("tone", "gamma_correct", img, gamma, gain)


def tone_curve(img, points, *, backend=None):
    """A monotone piecewise-cubic (PCHIP) tone curve through control points.

    Parameters
    ----------
    img : numpy.ndarray or cupy.ndarray
        Image of shape (H, W), (H, W, C) or (N, H, W, C); uint8, uint16 or float32.
        Integer images are normalised by 255 / 65535; floats are used as they are.
    points : sequence of (x, y) pairs
        At least two control points in [0, 1]², x strictly increasing. Inputs outside
        ``[x_first, x_last]`` take the end values.
    backend : {None, "auto", "cpu", "cuda", "cuda-emulated"}, optional
        Engine override.

    Returns
    -------
    same type as `img`
        Same shape and dtype.

    Raises
    ------
    TypeError
        For a non-array `img`, an unsupported dtype or non-numeric points.
    ValueError
        For fewer than two points, coordinates outside [0, 1] or non-finite, x values not
        strictly increasing, a wrong number of dimensions or an unknown `backend`.

    Notes
    -----
    The curve is scipy.interpolate.PchipInterpolator's (Fritsch-Carlson slopes, the
    shape-preserving end condition; two points give a line), written in closed form.
    Integer images go through a table ``rint(curve(v / max) * max)`` built on the host in
    float64 (identical on every engine); float32 images are evaluated directly in float64
    and rounded once to float32 (NaN stays NaN).

    Examples
    --------
    >>> import numpy as np
    >>> from gpuenhance import tone_curve
    >>> tone_curve(np.array([[0, 64, 128, 255]], dtype=np.uint8), [(0, 0), (0.5, 0.6), (1, 1)])
    array([[  0,  84, 153, 255]], dtype=uint8)
    """
    _validate.image(img, "img")
    points = _validate.curve_points(points)
    engine = _backend.resolve(img, backend=backend)
    return engine.call("levels", "tone_curve", img, points)
