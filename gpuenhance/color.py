"""White balance: validation and dispatch (the math lives in the engines)."""

from __future__ import annotations

import numpy as np

from . import _backend, _validate

WHITE_BALANCE_METHODS = ("gray_world", "white_patch", "gains")


def white_balance(img, method="gray_world", *, percentile=99.0, gains=None, backend=None):
    """Per-channel gains that neutralise a colour cast, image by image.

    Parameters
    ----------
    img : numpy.ndarray or cupy.ndarray
        Image of shape (H, W), (H, W, C) or (N, H, W, C); uint8, uint16 or float32
        (full scale 1.0).
    method : {"gray_world", "white_patch", "gains"}, optional
        ``"gray_world"``: each channel's mean is brought to the mean of the channel means;
        ``"white_patch"``: each channel's `percentile` is brought to full scale;
        ``"gains"``: the explicit per-channel `gains`.
    percentile : float, optional
        For ``"white_patch"``: in (0, 100], taken as
        ``numpy.percentile(channel, percentile, method="inverted_cdf")``.
    gains : sequence of float, optional
        For ``"gains"`` (and only there): one finite gain >= 0 per channel.
    backend : {None, "auto", "cpu", "cuda", "cuda-emulated"}, optional
        Engine override.

    Returns
    -------
    same type as `img`
        Same shape and dtype.

    Raises
    ------
    TypeError
        For a non-array `img`, an unsupported dtype or non-real `percentile`/`gains`.
    ValueError
        For an unknown `method`, `percentile` outside (0, 100], `gains` missing for
        ``"gains"``, given for another method or of the wrong length, a negative or
        non-finite gain, a wrong number of dimensions or an unknown `backend`.

    Notes
    -----
    A channel whose mean (or percentile value) is 0 keeps gain 1. Integer images go through
    per-channel tables ``rint(v * gain)`` saturated to the dtype, the gains computed in
    float64 from exact statistics, so every engine gives identical results; float32 images
    are multiplied directly (engines agree to a relative 1e-6).

    Examples
    --------
    >>> import numpy as np
    >>> from gpuenhance import white_balance
    >>> img = np.array([[[100, 50, 150], [100, 50, 150]]], dtype=np.uint8)
    >>> white_balance(img)
    array([[[100, 100, 100],
            [100, 100, 100]]], dtype=uint8)
    >>> white_balance(img, "gains", gains=(1.0, 2.0, 0.5))
    array([[[100, 100,  75],
            [100, 100,  75]]], dtype=uint8)
    """
    _validate.image(img, "img")
    if method not in WHITE_BALANCE_METHODS:
        raise ValueError(f"method must be one of "
                         f"{', '.join(repr(m) for m in WHITE_BALANCE_METHODS)}; got {method!r}")
    percentile = _validate.real(percentile, "percentile", low=0.0, high=100.0, low_open=True)
    channels = img.shape[-1] if img.ndim >= 3 else 1
    if method == "gains":
        if gains is None:
            raise ValueError("gains must be given (one per channel) for method='gains'")
        if _backend.is_array(gains) and not isinstance(gains, np.ndarray):
            raise TypeError("gains must be a sequence of numbers or a NumPy array; got a "
                            f"{type(gains).__name__}")
        try:
            values = list(gains)
        except TypeError:
            raise TypeError(f"gains must be a sequence of numbers; got {gains!r}") from None
        if len(values) != channels:
            raise ValueError(f"gains must have one value per channel ({channels}); "
                             f"got {len(values)}")
        gains = tuple(_validate.real(g, f"gains[{i}]", low=0.0) for i, g in enumerate(values))
    elif gains is not None:
        raise ValueError(f"gains is only used with method='gains'; got method={method!r}")
    engine = _backend.resolve(img, backend=backend)
    return engine.call("levels", "white_balance", img, method, percentile, gains)
