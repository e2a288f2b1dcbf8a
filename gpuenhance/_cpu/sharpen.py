"""CPU engine: unsharp mask (cv2.GaussianBlur on a float32 copy, the mask in NumPy).

Arguments arrive validated and resolved by :mod:`gpuenhance.sharpen`.
"""

from __future__ import annotations

import cv2
import numpy as np

from .._image import from_nhwc, to_nhwc

_FLAG = cv2.BORDER_REFLECT_101 | cv2.BORDER_ISOLATED


def _blur(im32, ksize: int, sigma: float):
    """Float32 Gaussian of one (H, W, C) image, OpenCV's channel counts at a time."""
    h, w, c = im32.shape
    if c <= 4:
        return cv2.GaussianBlur(im32, (ksize, ksize), sigma, borderType=_FLAG).reshape(h, w, c)
    return np.concatenate([_blur(np.ascontiguousarray(im32[:, :, k:k + 4]), ksize, sigma)
                           for k in range(0, c, 4)], axis=-1)


_CV_DEPTH = {np.dtype(np.uint8): cv2.CV_8U, np.dtype(np.uint16): cv2.CV_16U,
             np.dtype(np.float32): cv2.CV_32F}


def unsharp_mask(img, ksize: int, sigma: float, amount: float, threshold: float):
    """``x + amount * (x - G(x))`` where ``|x - G(x)| > threshold``, in float32."""
    x = to_nhwc(img)
    n, h, w, c = x.shape
    out = np.empty(x.shape, dtype=x.dtype)
    amount32, threshold32 = np.float32(amount), np.float32(threshold)
    for i, im in enumerate(x):
        im32 = np.ascontiguousarray(im, dtype=np.float32)
        blur = _blur(im32, ksize, sigma)
        if threshold == 0.0:  # no mask: one OpenCV pass, (1 + a) x - a G(x), rounded, saturated
            cv2.addWeighted(im32.reshape(h, w * c), 1.0 + amount, blur.reshape(h, w * c),
                            -amount, 0.0, dst=out[i].reshape(h, w * c),
                            dtype=_CV_DEPTH[x.dtype])
            continue
        d = im32 - blur
        res = np.where(np.abs(d) > threshold32, im32 + amount32 * d, im32)
        if x.dtype.kind == "u":
            top = np.iinfo(x.dtype).max
            res = np.clip(np.rint(res), 0, top)
        out[i] = res
    return from_nhwc(out, img.ndim)
