"""Spectral helpers shared by both engines of FFT-LMS restoration (written against ``xp``).

Weights W (H, W//2+1, C) are the unnormalised DFT of a real spatial kernel: ``irfft2(W)`` gives
its taps. P (same shape) is the running per-bin power of the degraded spectra.
"""

from __future__ import annotations

import numpy as np


def project_support(xp, W, P, shape, r, eps):
    """The kernel of (2r+1)² taps closest to W in the metric of the bin power P.

    Solves ``min_k sum_bins (P + eps) |DFT(k) - W|²`` over kernels k whose taps lie within
    circular distance *r* of the origin. In the spatial domain these are the normal equations
    ``A k = b`` with ``A[a, b] = c[a - b]``, ``c = irfft2(P + eps)`` (the circular
    autocorrelation the power stands for) and ``b = irfft2((P + eps) W)`` at the window's taps;
    one (2r+1)²-square system per channel, solved in float64.

    Weighting by P is what makes "update, then constrain" converge: an NLMS step moves each bin
    by ``mu (X/P - W)``, so with this projection the constrained weights approach the
    least-squares kernel of the pairs geometrically, whereas an unweighted projection lets
    bins without signal (tiny P, huge X/P) dominate the kernel.

    Requires ``2r + 1 <= min(H, W)`` (distinct window taps).
    """
    height, width = int(shape[0]), int(shape[1])
    weight = P.astype(xp.float64) + float(eps)
    c = xp.fft.irfft2(weight, s=(height, width), axes=(0, 1))
    b = xp.fft.irfft2(weight * W.astype(xp.complex128), s=(height, width), axes=(0, 1))
    offsets = np.arange(-r, r + 1)
    oy = np.repeat(offsets, offsets.size)
    ox = np.tile(offsets, offsets.size)
    dy = xp.asarray((oy[:, None] - oy[None, :]) % height)
    dx = xp.asarray((ox[:, None] - ox[None, :]) % width)
    ty, tx = xp.asarray(oy % height), xp.asarray(ox % width)
    A = xp.moveaxis(c[dy, dx], -1, 0)                      # (C, n, n)
    rhs = xp.moveaxis(b[ty, tx], -1, 0)[..., None]         # (C, n, 1)
    taps = xp.linalg.solve(A, rhs)[..., 0]                 # (C, n)
    k = xp.zeros((height, width, W.shape[2]), dtype=xp.float64)
    k[ty, tx] = taps.T
    return xp.ascontiguousarray(xp.fft.rfft2(k, axes=(0, 1)).astype(xp.complex64))
