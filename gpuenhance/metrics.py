"""Image quality metrics: PSNR and SSIM, computed in float64 with NumPy.

:func:`ssim` follows the definition of ``skimage.metrics.structural_similarity`` with its
defaults (7x7 uniform window, K1 = 0.01, K2 = 0.03, sample covariance, symmetric-reflect
filtering, mean over the map with a border of 3 pixels cropped) without depending on it.
NumPy input (CuPy arrays are moved to the host).
"""

from __future__ import annotations

import numpy as np

from . import _backend, _validate
from ._image import dtype_max

__all__ = ["psnr", "ssim"]

_DTYPES = _validate.FILTER_DTYPES


def _pair(reference, test):
    for name, arr in (("reference", reference), ("test", test)):
        if not _backend.is_array(arr):
            raise TypeError(f"{name} must be a NumPy or CuPy array; got {type(arr).__name__}")
        if np.dtype(arr.dtype) not in _DTYPES:
            raise TypeError(
                f"{name} dtype must be one of uint8, uint16, float32, float64; "
                f"got {np.dtype(arr.dtype).name}"
            )
        if arr.size == 0:
            raise ValueError(f"{name} must not be empty")
    if tuple(reference.shape) != tuple(test.shape):
        raise ValueError(
            f"test must have the shape of reference; got reference {tuple(reference.shape)} "
            f"and test {tuple(test.shape)}"
        )


def _data_range(data_range, dtype):
    if data_range is None:
        return dtype_max(dtype)
    return _validate.real(data_range, "data_range", low=0.0, low_open=True)


def psnr(reference, test, *, data_range=None):
    r"""Peak signal-to-noise ratio :math:`10 \log_{10}(R^2 / \mathrm{MSE})` in dB.

    Parameters
    ----------
    reference, test : array
        Images of equal shape (any layout); uint8, uint16, float32 or float64.
    data_range : float, optional
        R; defaults to the reference dtype's full scale: 255, 65535, or 1.0 for floats.

    Returns
    -------
    float
        ``inf`` when the images are equal.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuenhance.metrics import psnr
    >>> a = np.zeros((4, 4), np.uint8); b = a.copy(); b[0, 0] = 16
    >>> round(psnr(a, b), 4)
    36.0896
    """
    _pair(reference, test)
    r = _data_range(data_range, reference.dtype)
    ref = _backend.to_host(reference).astype(np.float64)
    tst = _backend.to_host(test).astype(np.float64)
    mse = float(np.mean((ref - tst) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(r * r / mse))


def _box_mean(x, size):
    """Mean over a size^ndim window, symmetric ('reflect', edge repeated) borders, float64.

    Separable: each axis is a sum of *size* shifted slices of the padded array, so there is
    no running-sum cancellation.
    """
    pad = size // 2
    out = x
    for axis in range(x.ndim):
        widths = [(0, 0)] * x.ndim
        widths[axis] = (pad, size - 1 - pad)
        padded = np.pad(out, widths, mode="symmetric")
        n = x.shape[axis]
        acc = np.zeros_like(out)
        for k in range(size):
            index = [slice(None)] * x.ndim
            index[axis] = slice(k, k + n)
            acc += padded[tuple(index)]
        out = acc
    return out / float(size**x.ndim)


def _ssim_single(x, y, data_range, win_size=7, k1=0.01, k2=0.03):
    npix = win_size**x.ndim
    cov_norm = npix / (npix - 1.0)
    ux = _box_mean(x, win_size)
    uy = _box_mean(y, win_size)
    uxx = _box_mean(x * x, win_size)
    uyy = _box_mean(y * y, win_size)
    uxy = _box_mean(x * y, win_size)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    num = (2.0 * ux * uy + c1) * (2.0 * vxy + c2)
    den = (ux * ux + uy * uy + c1) * (vx + vy + c2)
    s = num / den
    pad = (win_size - 1) // 2
    crop = tuple(slice(pad, n - pad) for n in s.shape)
    return float(s[crop].mean(dtype=np.float64))


def ssim(reference, test, *, data_range=None, channel_axis=None):
    """Mean structural similarity index.

    Same definition and defaults as ``skimage.metrics.structural_similarity``: a 7x7 (7^d for
    d spatial dimensions) uniform window with symmetric borders, K1 = 0.01, K2 = 0.03, sample
    covariance (N / (N - 1)), mean of the SSIM map after cropping 3 pixels at every border.

    Parameters
    ----------
    reference, test : array
        Images of equal shape; uint8, uint16, float32 or float64. Without *channel_axis* every
        axis is spatial (a 2-D image, or a volume); every spatial size must be >= 7.
    data_range : float, optional
        Defaults to the reference dtype's full scale: 255, 65535, or 1.0 for floats.
    channel_axis : int, optional
        Axis of the channels; the result is the mean of the per-channel SSIMs.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> from gpuenhance.metrics import ssim
    >>> img = np.random.default_rng(0).random((16, 16), dtype=np.float32)
    >>> ssim(img, img)
    1.0
    >>> bool(ssim(img, np.zeros_like(img)) < 0.05)
    True
    """
    _pair(reference, test)
    r = _data_range(data_range, reference.dtype)
    ref = _backend.to_host(reference).astype(np.float64)
    tst = _backend.to_host(test).astype(np.float64)
    if channel_axis is not None:
        axis = _validate.integer(channel_axis, "channel_axis", low=-ref.ndim, high=ref.ndim - 1)
        ref = np.moveaxis(ref, axis, -1)
        tst = np.moveaxis(tst, axis, -1)
        spatial = ref.shape[:-1]
    else:
        spatial = ref.shape
    if min(spatial) < 7:
        raise ValueError(
            f"reference must be at least 7 pixels along every spatial axis (7x7 window); "
            f"got spatial shape {tuple(spatial)}"
        )
    if channel_axis is None:
        return _ssim_single(ref, tst, r)
    values = [_ssim_single(ref[..., c], tst[..., c], r) for c in range(ref.shape[-1])]
    return float(np.mean(values))
