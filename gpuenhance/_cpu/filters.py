"""CPU engine: median and Gaussian filters (OpenCV where it covers the case, NumPy otherwise).

Arguments arrive validated and resolved by :mod:`gpuenhance.filters`.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .._image import from_nhwc, to_nhwc

# np.pad modes equal to OpenCV's borderInterpolate rules, repeated reflections included.
_NP_PAD = {
    "replicate": "edge",
    "reflect": "symmetric",
    "reflect_101": "reflect",
    "constant": "constant",
}
_CV_BORDER = {
    "replicate": cv2.BORDER_REPLICATE,
    "reflect": cv2.BORDER_REFLECT,
    "reflect_101": cv2.BORDER_REFLECT_101,
    "constant": cv2.BORDER_CONSTANT,
}

# Bytes of window copies the NumPy median materialises at once.
_MEDIAN_CHUNK_BYTES = 64 * 2**20


def _pad(img_hwc: np.ndarray, r: int, border: str) -> np.ndarray:
    """Pad an (H, W, C) image by r on each side of H and W (zeros for ``constant``)."""
    return np.pad(img_hwc, ((r, r), (r, r), (0, 0)), mode=_NP_PAD[border])


def _plane(img_hwc: np.ndarray) -> np.ndarray:
    """An (H, W, C) image as OpenCV takes it: (H, W) for one channel, else as it is."""
    return img_hwc[:, :, 0] if img_hwc.shape[2] == 1 else img_hwc


def _store(dst_hwc: np.ndarray, call) -> None:
    """``call(dst)`` with OpenCV writing into *dst_hwc* itself; copied only if it could not."""
    dst = _plane(dst_hwc)
    res = call(dst)
    if not np.may_share_memory(res, dst):  # bounds only: cheap
        dst[...] = res.reshape(dst.shape)


def _cv_median_ok(dtype: np.dtype, ksize: int, channels: int) -> bool:
    """Whether cv2.medianBlur computes this case (per channel when ``channels`` is 1)."""
    if channels not in (1, 3, 4):
        return False
    if dtype == np.uint8:
        return True
    return dtype in (np.dtype(np.uint16), np.dtype(np.float32)) and ksize in (3, 5)


def _median_cv(img_hwc: np.ndarray, ksize: int, border: str) -> np.ndarray:
    """cv2.medianBlur on the image padded in the wanted border, cropped back.

    The padding is at least the window radius, so medianBlur's own (replicate) border is never
    reached by an output pixel that is kept: the result is exact for every border.
    """
    h, w, c = img_hwc.shape
    if border == "replicate":  # medianBlur's own border: no padding needed
        src = np.ascontiguousarray(_plane(img_hwc))
        return cv2.medianBlur(src, ksize).reshape(h, w, c)
    r = ksize // 2
    padded = _pad(img_hwc, r, border)
    if c == 1:
        padded = padded[:, :, 0]
    out = cv2.medianBlur(padded, ksize)
    return out.reshape(h + 2 * r, w + 2 * r, c)[r:r + h, r:r + w]


def _median_numpy(img_hwc: np.ndarray, ksize: int, border: str) -> np.ndarray:
    """Exact median by partial sort of each window, in row chunks of bounded memory."""
    r = ksize // 2
    h, w, c = img_hwc.shape
    padded = _pad(img_hwc, r, border)
    area = ksize * ksize
    mid = area // 2
    per_row = w * c * area * img_hwc.dtype.itemsize
    rows = max(1, _MEDIAN_CHUNK_BYTES // per_row)
    out = np.empty((h, w, c), dtype=img_hwc.dtype)
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        win = sliding_window_view(padded[y0:y1 + 2 * r], (ksize, ksize), axis=(0, 1))
        flat = win.reshape(y1 - y0, w, c, area).copy()  # a private, writable copy
        flat.partition(mid, axis=-1)
        out[y0:y1] = flat[..., mid]
    return out


def median_filter(img, ksize: int, border: str):
    """Median over a ksize x ksize window, exact for every dtype and border."""
    if ksize == 1:
        return np.array(img, copy=True)
    x = to_nhwc(img)
    n, h, w, c = x.shape
    out = np.empty((n, h, w, c), dtype=x.dtype)
    dtype = np.dtype(x.dtype)
    whole = _cv_median_ok(dtype, ksize, c)
    if whole and n == 1:  # one OpenCV call: hand its result back without another copy
        res = np.ascontiguousarray(_median_cv(x[0], ksize, border))
        return from_nhwc(res[None], img.ndim)
    per_channel = not whole and _cv_median_ok(dtype, ksize, 1)
    for i in range(n):
        if whole and border == "replicate":
            src = np.ascontiguousarray(_plane(x[i]))
            _store(out[i], lambda dst: cv2.medianBlur(src, ksize, dst=dst))
        elif whole:
            out[i] = _median_cv(x[i], ksize, border)
        elif per_channel:
            for ch in range(c):
                out[i, :, :, ch:ch + 1] = _median_cv(x[i, :, :, ch:ch + 1], ksize, border)
        else:
            out[i] = _median_numpy(x[i], ksize, border)
    return from_nhwc(out, img.ndim)


def gaussian_filter(img, kx: int, ky: int, sx: float, sy: float, border: str):
    """Separable Gaussian through cv2.GaussianBlur (parameters already resolved).

    ``sx``/``sy`` of 0 mean "derived from the size", as for OpenCV (fixed tables up to 9 taps).
    """
    x = to_nhwc(img)
    n, h, w, c = x.shape
    # ISOLATED: never read outside the array, and OpenCV's bit-exact 8/16-bit path always.
    flag = _CV_BORDER[border] | cv2.BORDER_ISOLATED
    if n == 1 and c <= 4:  # one OpenCV call: hand its result back without another copy
        part = np.ascontiguousarray(_plane(x[0]))
        res = cv2.GaussianBlur(part, (kx, ky), sx, sigmaY=sy, borderType=flag)
        return from_nhwc(res.reshape(1, h, w, c), img.ndim)
    out = np.empty((n, h, w, c), dtype=x.dtype)
    for i in range(n):
        if c <= 4:
            src = np.ascontiguousarray(_plane(x[i]))
            _store(out[i], lambda dst: cv2.GaussianBlur(
                src, (kx, ky), sx, sigmaY=sy, borderType=flag, dst=dst))
            continue
        for c0 in range(0, c, 4):  # OpenCV's native channel counts
            c1 = min(c, c0 + 4)
            part = np.ascontiguousarray(_plane(x[i, :, :, c0:c1]))
            res = cv2.GaussianBlur(part, (kx, ky), sx, sigmaY=sy, borderType=flag)
            out[i, :, :, c0:c1] = res.reshape(h, w, c1 - c0)
    return from_nhwc(out, img.ndim)
