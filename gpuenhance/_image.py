"""The image model shared by both engines: every layout viewed as (N, H, W, C).

(H, W) is one single-channel image, (H, W, C) one image with C channels and
(N, H, W, C) a batch. Engines compute on the 4-D view and hand back the caller's layout.
Works on NumPy and CuPy arrays alike (reshape only, no copies of contiguous data).
"""

from __future__ import annotations


def to_nhwc(img):
    """View *img* as (N, H, W, C)."""
    if img.ndim == 2:
        return img[None, :, :, None]
    if img.ndim == 3:
        return img[None]
    return img


def from_nhwc(out, ndim: int):
    """Give an (N, H, W, C) result the layout of an input that had *ndim* dimensions."""
    if ndim == 2:
        return out[0, :, :, 0]
    if ndim == 3:
        return out[0]
    return out


def dtype_max(dtype) -> float:
    """The value that stands for full scale: 255, 65535, or 1.0 for floats."""
    import numpy as np

    dtype = np.dtype(dtype)
    return float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0
