"""Bilateral filter parameters by OpenCV's rules (host-side NumPy, shared by both engines)."""

from __future__ import annotations

import numpy as np

#: Largest window radius (d // 2, or round(1.5 * sigma_space) when d <= 0).
MAX_RADIUS = 64


def radius(d: int, sigma_space: float) -> int:
    """cv::bilateralFilter's radius: ``d // 2``, or ``round(1.5 * sigma_space)`` for
    ``d <= 0``; at least 1."""
    r = d // 2 if d > 0 else int(np.rint(sigma_space * 1.5))
    return max(r, 1)


def space_taps(r: int, sigma_space: float):
    """(dy, dx, weights) of the disc ``dy^2 + dx^2 <= r^2`` in OpenCV's order (dy outer):
    weights ``float32(exp(-0.5 * dist^2 / sigma_space^2))`` computed in float64."""
    coeff = -0.5 / (sigma_space * sigma_space)
    dy, dx, wt = [], [], []
    for i in range(-r, r + 1):
        for j in range(-r, r + 1):
            dist = np.sqrt(float(i * i + j * j))
            if dist > r:
                continue
            dy.append(i)
            dx.append(j)
            wt.append(np.float32(np.exp(dist * dist * coeff)))
    return (np.array(dy, np.int32), np.array(dx, np.int32), np.array(wt, np.float32))


def colour_table(sigma_color: float, channels: int) -> np.ndarray:
    """OpenCV's uint8 colour weights: ``float32(exp(-0.5 * i^2 / sigma_color^2))`` for
    ``i`` in ``[0, 256 * channels)``."""
    i = np.arange(256 * channels, dtype=np.float64)
    return np.exp(i * i * (-0.5 / (sigma_color * sigma_color))).astype(np.float32)
