"""Histogram equalisation, CLAHE and auto-contrast: validation and dispatch (the math lives in the engines).

Both work per image of a batch, on one-channel images directly and on RGB images through the
Y channel of OpenCV's YCrCb (``cvtColor(RGB2YCrCb)`` -> op on Y -> ``cvtColor(YCrCb2RGB)``,
the fixed-point conversion reproduced bit for bit on the CUDA engine).
"""

from __future__ import annotations

import numpy as np

from . import _backend, _validate

#: Largest number of CLAHE tiles per axis.
CLAHE_TILES_MAX = 256


def equalize_hist(img, *, backend=None):
    """Histogram equalisation, image by image: ``cv2.equalizeHist``'s rule.

    Parameters
    ----------
    img : numpy.ndarray or cupy.ndarray
        Image of shape (H, W), (H, W, C) or (N, H, W, C) with C = 1 or 3 (RGB); uint8 or
        uint16 (65536 bins).
    backend : {None, "auto", "cpu", "cuda", "cuda-emulated"}, optional
        Engine override.

    Returns
    -------
    same type as `img`
        Same shape and dtype. Each image of a batch is equalised with its own histogram.

    Raises
    ------
    TypeError
        For a non-array `img` or a dtype other than uint8/uint16.
    ValueError
        For a wrong number of dimensions, an empty image, a channel count other than 1 or 3,
        or an unknown `backend`.

    Notes
    -----
    Exact on every engine: uint8 one-channel images equal ``cv2.equalizeHist``; RGB images
    equal ``cvtColor(RGB2YCrCb)``, ``equalizeHist`` on Y, ``cvtColor(YCrCb2RGB)``; uint16
    follows the same rule on 65536 bins (OpenCV has no 16-bit equalizeHist): the first
    occupied level maps to 0, level i to ``rint(float32(cdf[i] - h[first]) * float32(max) /
    float32(total - h[first]))``, and an image of one level is left as it is.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuenhance import equalize_hist
    >>> equalize_hist(np.array([[10, 10, 20, 30]], dtype=np.uint8))
    array([[  0,   0, 128, 255]], dtype=uint8)
    """
    _validate.gray_or_rgb(img, "img", dtypes=_validate.INTEGER_DTYPES)
    engine = _backend.resolve(img, backend=backend)
    return engine.call("contrast", "equalize_hist", img)


def clahe(img, clip_limit=40.0, tile_grid=(8, 8), *, backend=None):
    """Contrast-limited adaptive histogram equalisation: ``cv2.createCLAHE(...).apply``.

    Parameters
    ----------
    img : numpy.ndarray or cupy.ndarray
        Image of shape (H, W), (H, W, C) or (N, H, W, C) with C = 1 or 3 (RGB: on Y of
        YCrCb); uint8 or uint16.
    clip_limit : float, optional
        Contrast limit, finite and >= 0; a tile's bins are clipped at
        ``max(int(clip_limit * tile_area / bins), 1)`` (bins = 256 or 65536) and the excess
        is spread over all bins. 0 disables clipping.
    tile_grid : int or (int, int), optional
        Tiles across and down, as OpenCV's ``tileGridSize`` (width, height); each in
        [1, 256]. An int n means (n, n).
    backend : {None, "auto", "cpu", "cuda", "cuda-emulated"}, optional
        Engine override.

    Returns
    -------
    same type as `img`
        Same shape and dtype.

    Raises
    ------
    TypeError
        For a non-array `img`, a dtype other than uint8/uint16, a non-real `clip_limit` or
        non-integer `tile_grid` entries.
    ValueError
        For a negative or non-finite `clip_limit`, `tile_grid` entries outside [1, 256], a
        channel count other than 1 or 3, a wrong number of dimensions or an unknown
        `backend`.

    Notes
    -----
    Exact on every engine against ``cv2.createCLAHE(clip_limit, tile_grid).apply``,
    including OpenCV's reflect-101 padding of the bottom and right when the image size is
    not divisible by the grid, its clip and redistribution rule and its float32 bilinear
    interpolation between the tile tables.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuenhance import clahe
    >>> img = np.tile(np.arange(0, 64, 4, dtype=np.uint8), (16, 1))
    >>> clahe(img, clip_limit=2.0, tile_grid=(2, 2))[0, :8]
    array([ 8, 16, 24, 32, 40, 45, 49, 52], dtype=uint8)
    """
    _validate.gray_or_rgb(img, "img", dtypes=_validate.INTEGER_DTYPES)
    clip_limit = _validate.real(clip_limit, "clip_limit", low=0.0)
    tile_grid = _validate.pair(tile_grid, "tile_grid", low=1, high=CLAHE_TILES_MAX)
    engine = _backend.resolve(img, backend=backend)
    return engine.call("contrast", "clahe", img, clip_limit, tile_grid)


def auto_contrast(img, low=0.5, high=99.5, *, per_channel=False, backend=None):
    """Percentile stretch to the full range ("auto levels"), image by image.

    Parameters
    ----------
    img : numpy.ndarray or cupy.ndarray
        Image of shape (H, W), (H, W, C) or (N, H, W, C); uint8, uint16 or float32 (full
        range [0, 1]).
    low, high : float, optional
        Percentiles in [0, 100], ``low < high``, taken as ``numpy.percentile(values, q,
        method="inverted_cdf")`` of each image (all channels together, or each channel
        with `per_channel`); ``low`` maps to 0 and ``high`` to full scale.
    per_channel : bool, optional
        Stretch every channel by its own percentiles (this also balances colour).
    backend : {None, "auto", "cpu", "cuda", "cuda-emulated"}, optional
        Engine override.

    Returns
    -------
    same type as `img`
        Same shape and dtype.

    Raises
    ------
    TypeError
        For a non-array `img`, an unsupported dtype, non-real `low`/`high` or a non-bool
        `per_channel`.
    ValueError
        For `low`/`high` outside [0, 100] or ``low >= high``, a wrong number of dimensions
        or an unknown `backend`.

    Notes
    -----
    Integer images go through tables ``rint((v - lo) * max / (hi - lo))`` saturated to the
    dtype (identical on every engine); float32 images map to ``clip((v - lo) / (hi - lo),
    0, 1)`` directly. Where ``hi == lo`` the image is left unchanged.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuenhance import auto_contrast
    >>> auto_contrast(np.array([[50, 100, 150]], dtype=np.uint8), 0, 100)
    array([[  0, 127, 255]], dtype=uint8)
    """
    _validate.image(img, "img")
    low = _validate.real(low, "low", low=0.0, high=100.0)
    high = _validate.real(high, "high", low=0.0, high=100.0)
    if low >= high:
        raise ValueError(f"low must be < high; got low={low}, high={high}")
    if not isinstance(per_channel, (bool, np.bool_)):
        raise TypeError(f"per_channel must be a bool; got {per_channel!r}")
    engine = _backend.resolve(img, backend=backend)
    return engine.call("levels", "auto_contrast", img, low, high, bool(per_channel))
