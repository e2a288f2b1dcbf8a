"""Spectral helpers shared by both engines of FFT-LMS restoration (written against ``xp``).

Everything here is engine-neutral: the engines keep only what differs between them (which
FFT library runs, the fused LMS kernels). Spectra are real 2-D FFTs over (H, W) with
``norm="ortho"`` of images on their normalized range, laid out (N, H, W//2+1, C).

Weights W (H, W//2+1, C) are the unnormalised DFT of a real spatial kernel: ``irfft2(W)`` gives
its taps. P (same shape) is the running per-bin power of the degraded spectra.

The support-constrained problems (the NLMS projection and the exact solver) share one piece
of algebra. For a kernel k of (2r+1)² taps at circular offsets ``o_a`` from the origin, any
per-bin quadratic ``sum_bins Q |DFT(k)|² - 2 Re(conj(DFT(k)) B)`` with Q real and B Hermitian
is, in the spatial domain, ``k^T A k - 2 k^T b`` with

    A[a, b] = q[o_a - o_b],   b[a] = beta[o_a],   q = irfft2(Q),   beta = irfft2(B),

(times the pixel count H·W, dropped here), i.e. a (2r+1)²-square system per channel.
"""

from __future__ import annotations

import numpy as np

from ._image import dtype_max


def to_float(xp, stack):
    """(N, H, W, C) of any image dtype -> float32 on the normalized range."""
    out = stack.astype(xp.float32)
    scale = dtype_max(stack.dtype)
    if scale != 1.0:
        out *= np.float32(1.0 / scale)
    return out


def from_float(xp, out, dtype):
    """A float32 result on the normalized range back in *dtype*.

    Integers are scaled, rounded half to even and saturated; floats stay float32.
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in "ui":
        return out
    scale = np.float32(dtype_max(dtype))
    return xp.clip(xp.rint(out * scale), 0, scale).astype(dtype)


def kernel_from_weights(xp, W, shape, r):
    """The (2r+1, 2r+1, C) float32 convolution taps of W, origin at the centre."""
    height, width = int(shape[0]), int(shape[1])
    k = xp.fft.irfft2(W, s=(height, width), axes=(0, 1))
    offsets = np.arange(-r, r + 1)
    taps = k[xp.ix_(xp.asarray(offsets % height), xp.asarray(offsets % width))]
    return xp.ascontiguousarray(taps.astype(xp.float32))


def weights_from_kernel(xp, taps, shape):
    """W (H, W//2+1, C) complex64 of (2r+1, 2r+1, C) taps circularly zero-padded to *shape*."""
    height, width = int(shape[0]), int(shape[1])
    r = (taps.shape[0] - 1) // 2
    offsets = np.arange(-r, r + 1)
    k = xp.zeros((height, width, taps.shape[2]), dtype=xp.float64)
    k[xp.ix_(xp.asarray(offsets % height), xp.asarray(offsets % width))] = taps
    return xp.ascontiguousarray(xp.fft.rfft2(k, axes=(0, 1)).astype(xp.complex64))


def _offsets(r):
    offsets = np.arange(-r, r + 1)
    return np.repeat(offsets, offsets.size), np.tile(offsets, offsets.size)


def normal_equations(xp, Q, B, shape, r):
    """``(A, b)``: the spatial normal equations of the per-bin quadratic (Q, B) above.

    Q real (H, W//2+1, C), B complex of the same shape; returns float64 ``A`` (C, n, n) and
    ``b`` (C, n) with n = (2r+1)², the taps ordered row-major from offset (-r, -r).
    """
    height, width = int(shape[0]), int(shape[1])
    q = xp.fft.irfft2(Q.astype(xp.float64), s=(height, width), axes=(0, 1))
    beta = xp.fft.irfft2(B.astype(xp.complex128), s=(height, width), axes=(0, 1))
    oy, ox = _offsets(r)
    dy = xp.asarray((oy[:, None] - oy[None, :]) % height)
    dx = xp.asarray((ox[:, None] - ox[None, :]) % width)
    A = xp.moveaxis(q[dy, dx], -1, 0)                                  # (C, n, n)
    b = xp.moveaxis(beta[xp.asarray(oy % height), xp.asarray(ox % width)], -1, 0)  # (C, n)
    return A, b


def support_system(xp, S, X, shape, r, scale):
    """The spatial normal equations ``(A, b)`` of the sums S, X, times *scale* (float64)."""
    A, b = normal_equations(xp, S, X, shape, r)
    return A * scale, b * scale


def solve_taps(xp, A, b, reg):
    """Taps (C, n) float64 solving ``(A + reg I) k = b`` per channel."""
    n = A.shape[-1]
    system = A + float(reg) * xp.eye(n, dtype=xp.float64)[None]
    return xp.linalg.solve(system, b[..., None])[..., 0]


def weights_from_taps(xp, taps, shape, r):
    """W (H, W//2+1, C) complex64 of taps (C, n) placed at the window's circular offsets."""
    height, width = int(shape[0]), int(shape[1])
    oy, ox = _offsets(r)
    k = xp.zeros((height, width, taps.shape[0]), dtype=xp.float64)
    k[xp.asarray(oy % height), xp.asarray(ox % width)] = taps.T
    return xp.ascontiguousarray(xp.fft.rfft2(k, axes=(0, 1)).astype(xp.complex64))


def project_support(xp, W, P, shape, r, eps):
    """The kernel of (2r+1)² taps closest to W in the metric of the bin power P.

    Solves ``min_k sum_bins (P + eps) |DFT(k) - W|²`` over kernels k whose taps lie within
    circular distance *r* of the origin. In the spatial domain these are the normal equations
    ``(A + eps I) k = b`` with ``A[a, b] = c[a - b]``, ``c = irfft2(P)`` (the circular
    autocorrelation the power stands for) and ``b = irfft2((P + eps) W)`` at the window's taps;
    one (2r+1)²-square system per channel, solved in float64.

    Weighting by P is what makes "update, then constrain" converge: an NLMS step moves each bin
    by ``mu (X/P - W)``, so with this projection the constrained weights approach the
    least-squares kernel of the pairs geometrically, whereas an unweighted projection lets
    bins without signal (tiny P, huge X/P) dominate the kernel.

    Requires ``2r + 1 <= min(H, W)`` (distinct window taps).
    """
    weight = P.astype(xp.float64) + float(eps)
    A, b = normal_equations(xp, P, weight * W.astype(xp.complex128), shape, r)
    taps = solve_taps(xp, A, b, eps)
    return weights_from_taps(xp, taps, shape, r)


def column_weights(xp, shape):
    """Parseval weights of the rfft columns (W//2+1,): 1 for columns without a stored mirror, else 2."""
    width = int(shape[1])
    weight = np.full(width // 2 + 1, 2.0)
    weight[0] = 1.0
    if width % 2 == 0:
        weight[-1] = 1.0
    return xp.asarray(weight)


def relative_change(xp, new, old, P):
    """``sqrt(sum P |new - old|² / sum P |new|²)``: the change of the restored training spectra.

    Weighting by the bin power P measures the change of the filter where the data has energy
    (the change of ``W * G`` relative to ``W * G``); bins without signal, where W is large and
    irrelevant, do not dominate it.
    """
    p = P.astype(xp.float64)
    diff = (new.astype(xp.complex128) - old.astype(xp.complex128))
    num = float((p * (diff.real**2 + diff.imag**2)).sum())
    den = float((p * (new.real.astype(xp.float64) ** 2 + new.imag.astype(xp.float64) ** 2)).sum())
    return float(np.sqrt(num / den)) if den > 0 else (0.0 if num == 0 else float("inf"))


def power(xp, S, n):
    """The mean per-bin power P = S/n of the degraded spectra, float32."""
    return xp.ascontiguousarray((S * (1.0 / float(n))).astype(xp.float32))


def exact_solution(xp, X, S, E, n, reg, shape):
    """``(W, P, total)``: the per-bin least squares from the float64 sums over n pairs.

    W = (X/n) / (S/n + reg) = X / (S + n reg), divided in float64 and rounded once to
    complex64; P = S/n (float32); ``total`` the sum over pairs and pixels of ``|F - W G|²``:
    per bin ``E - 2 Re(conj(W) X) + |W|² S``, which for W = c X (c real) is
    ``E - |X|² c (2 - c S)``, Parseval-weighted over the full spectrum in float64.
    """
    scale = S + float(n) * float(reg)
    xp.reciprocal(scale, out=scale)
    W = xp.ascontiguousarray((X * scale).astype(xp.complex64))
    gain = X.real * X.real
    gain += X.imag * X.imag
    factor = scale * S
    xp.subtract(2.0, factor, out=factor)
    factor *= scale
    gain *= factor
    total = parseval_sum(xp, E, shape) - parseval_sum(xp, gain, shape)
    return W, power(xp, S, n), total


def parseval_sum(xp, Q, shape):
    """Sum over the full spectrum of a per-bin quantity Q stored in the rfft layout."""
    return float((Q.sum(axis=(0, 2)) * column_weights(xp, shape)).sum())


def solve_support(xp, A, b, reg, shape, r):
    """``(W, quad)``: the taps k solving ``(A + reg I) k = b`` as complex64 W of *shape*, and
    ``sum_c k^T A k - 2 k^T b`` (the data term of the least-squares objective less its
    constant, in A's units)."""
    taps = solve_taps(xp, A, b, reg)
    quad = float((xp.einsum("cn,cnm,cm->", taps, A, taps) - 2.0 * (taps * b).sum()))
    return weights_from_taps(xp, taps, shape, r), quad


def step_size(mu, t, decay):
    """``mu / (1 + t / decay)`` for update t (``decay`` in updates), or ``mu`` when decay is 0."""
    return float(mu) / (1.0 + float(t) / float(decay)) if decay > 0 else float(mu)
