"""CPU engine: histogram equalisation and CLAHE (OpenCV; NumPy for uint16 equalisation).

Arguments arrive validated by :mod:`gpuenhance.contrast`: uint8/uint16, one channel or RGB.
RGB images are processed on Y of ``cv2.cvtColor(COLOR_RGB2YCrCb)`` and converted back.
"""

from __future__ import annotations

import cv2
import numpy as np

from .._image import from_nhwc, to_nhwc


def _on_intensity(img, plane_op):
    """Apply *plane_op(src, dst)* (2-D planes; writes dst) to every image's intensity plane."""
    x = to_nhwc(img)
    out = np.empty(x.shape, dtype=x.dtype)
    for i, im in enumerate(x):
        if im.shape[-1] == 1:
            plane_op(np.ascontiguousarray(im[:, :, 0]), out[i, :, :, 0])
        else:
            ycc = cv2.cvtColor(np.ascontiguousarray(im), cv2.COLOR_RGB2YCrCb)
            y = np.ascontiguousarray(ycc[:, :, 0])
            plane_op(y, y)
            ycc[:, :, 0] = y
            cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB, dst=out[i])
    return from_nhwc(out, img.ndim)


def equalize_table(hist: np.ndarray, dtype) -> np.ndarray:
    """OpenCV's equalisation table of one histogram (``cv::equalizeHist``'s rule, any bins).

    The first non-empty bin f maps to 0 and bin i > f to ``rint(float32(cdf[i] - h[f]) *
    float32(bins - 1) / float32(total - h[f]))``; an image of one level maps to itself.
    """
    bins = hist.size
    total = int(hist.sum())
    first = int(np.flatnonzero(hist)[0])
    if hist[first] == total:
        return np.full(bins, first, dtype=dtype)
    scale = np.float32(bins - 1) / np.float32(total - int(hist[first]))
    cdf = np.cumsum(hist, dtype=np.int64) - int(hist[first])
    table = np.rint(cdf.astype(np.float32) * scale)
    table[: first + 1] = 0
    return np.clip(table, 0, bins - 1).astype(dtype)


def _equalize_plane(plane, dst):
    if plane.dtype == np.uint8:
        cv2.equalizeHist(plane, dst=dst)
    else:
        hist = np.bincount(plane.ravel(), minlength=65536)
        np.take(equalize_table(hist, plane.dtype), plane, out=dst)


def equalize_hist(img):
    """``cv2.equalizeHist`` per image (uint16: the same rule on 65536 bins)."""
    return _on_intensity(img, _equalize_plane)


def clahe(img, clip_limit: float, tile_grid: tuple[int, int]):
    """``cv2.createCLAHE(clip_limit, tile_grid).apply`` per image."""
    op = cv2.createCLAHE(clip_limit, tuple(tile_grid))
    return _on_intensity(img, lambda src, dst: op.apply(src, dst))
