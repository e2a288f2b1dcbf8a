"""CPU engine: bilateral filter (cv2.bilateralFilter image by image).

Arguments arrive validated by :mod:`gpuenhance.bilateral`.
"""

from __future__ import annotations

import cv2
import numpy as np

from .._image import from_nhwc, to_nhwc

_CV_BORDER = {"replicate": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT,
              "reflect_101": cv2.BORDER_REFLECT_101, "constant": cv2.BORDER_CONSTANT}


def bilateral_filter(img, r: int, sigma_color: float, sigma_space: float, border: str):
    x = to_nhwc(img)
    out = np.empty(x.shape, dtype=x.dtype)
    h, w, c = x.shape[1:]
    for i, im in enumerate(x):
        res = cv2.bilateralFilter(np.ascontiguousarray(im), 2 * r + 1, sigma_color, sigma_space,
                                  borderType=_CV_BORDER[border])
        out[i] = res.reshape(h, w, c)
    return from_nhwc(out, img.ndim)
