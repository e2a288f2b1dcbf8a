"""CPU engine of FFT-LMS restoration (NumPy, float32 images and complex64 spectra).

The forward batch FFT (spectra of a stack) runs through ``scipy.fft`` where SciPy is
importable: float32 in, complex64 out with no temporary copy of the stack, on
:func:`gpuenhance._threads.num_threads` workers (``python -m bench.lms_fft``: a 32 x 512² fit
peaks at 100 MiB, 128 with NumPy's FFT); else, and for the inverse (NumPy's was faster),
through NumPy's.

Spectra are real 2-D FFTs over (H, W) with ``norm="ortho"``, laid out (N, H, W//2+1, C).
Weights W are (H, W//2+1, C) complex64 and multiply those spectra; W is the unnormalised DFT
of a real spatial convolution kernel, so ``irfft2(W)`` (``norm="backward"``) gives its taps.
Every function is vectorized over the batch and the bins; the only Python loop is over the
update steps of an epoch.
"""

from __future__ import annotations

import numpy as np

from .. import _spectral, _threads
from .._image import dtype_max

try:  # a float32 stack transformed in float32 without a float64 copy, on worker threads
    import scipy.fft as _scipy_fft
except ImportError:  # SciPy is optional here: NumPy's FFT
    _scipy_fft = None


def _rfft2(x, axes, norm=None):
    """``rfft2`` over *axes*: scipy.fft on :func:`_threads.num_threads` workers, else NumPy."""
    if _scipy_fft is None:
        return np.fft.rfft2(x, axes=axes, norm=norm)
    return _scipy_fft.rfft2(x, axes=axes, norm=norm, workers=_threads.num_threads())


def _to_float(stack) -> np.ndarray:
    """(N, H, W, C) of any image dtype -> float32 on the normalized range."""
    out = stack.astype(np.float32)
    scale = dtype_max(stack.dtype)
    if scale != 1.0:
        out *= np.float32(1.0 / scale)
    return out


def spectra(stack) -> np.ndarray:
    """rfft2 (ortho) of an (N, H, W, C) stack -> complex64 (N, H, W//2+1, C)."""
    g = _rfft2(_to_float(stack), axes=(1, 2), norm="ortho")
    return g.astype(np.complex64, copy=False)


def _column_weights(shape) -> np.ndarray:
    """Parseval weights of the rfft columns: 1 for columns without a stored mirror, else 2."""
    return _spectral.column_weights(np, shape).astype(np.float32)


def project_support(W, P, shape, r, eps) -> np.ndarray:
    """W constrained to (2r+1)² spatial taps in the metric of the bin power P."""
    return _spectral.project_support(np, W, P, shape, r, eps)


def kernel_from_weights(W, shape, r) -> np.ndarray:
    """The (2r+1, 2r+1, C) float32 convolution taps of W, origin at the centre."""
    height, width = int(shape[0]), int(shape[1])
    k = np.fft.irfft2(W, s=(height, width), axes=(0, 1))
    offsets = np.arange(-r, r + 1)
    taps = k[np.ix_(offsets % height, offsets % width)]
    return taps.astype(np.float32)


def weights_from_kernel(taps, shape) -> np.ndarray:
    """W (H, W//2+1, C) complex64 of (2r+1, 2r+1, C) taps circularly zero-padded to *shape*."""
    height, width = int(shape[0]), int(shape[1])
    r = (taps.shape[0] - 1) // 2
    offsets = np.arange(-r, r + 1)
    k = np.zeros((height, width, taps.shape[2]), dtype=np.float64)
    k[np.ix_(offsets % height, offsets % width)] = taps
    return np.fft.rfft2(k, axes=(0, 1)).astype(np.complex64)


def nlms_epoch(G, F, W, P, order, shape, batch_size, mu, leak, eps, beta, support, step0=0,
               decay=0.0):
    """One pass of normalized complex LMS over the pairs in *order*, *batch_size* at a time.

    Parameters
    ----------
    G, F : ndarray, complex64 (N, H, Wf, C)
        Spectra of the degraded and clean images.
    W : ndarray, complex64 (H, Wf, C) or None
        Current weights (None: zeros).
    P : ndarray, float32 (H, Wf, C) or None
        Running per-bin power of G (None: the first step initializes it).
    order : ndarray of int
        Pair indices in the order they are visited.
    shape : (int, int)
        (H, W) of the images.
    batch_size : int
    mu, leak, eps, beta : float
    support : int
        Radius of the spatial support projection, or -1 for none.
    step0, decay : int, float
        With ``decay > 0`` the step size of the update with global index t = step0 + step is
        ``mu / (1 + t / decay)``; with 0 it is ``mu`` throughout.

    Returns
    -------
    W, P : ndarray
        Updated state.
    losses : ndarray, float32 (steps,)
        Per-step loss: mean squared error per pixel before the update (Parseval over the full
        spectrum).
    """
    if W is None:
        W = np.zeros(G.shape[1:], dtype=np.complex64)
    else:
        W = W.astype(np.complex64, copy=True)
    first = P is None
    P = np.zeros(G.shape[1:], dtype=np.float32) if first else P.astype(np.float32, copy=True)
    weight = _column_weights(shape)[:, None]
    pixels = float(shape[0]) * float(shape[1]) * float(G.shape[3])
    leak, eps, beta = (np.float32(v) for v in (leak, eps, beta))
    order = np.asarray(order)
    steps = -(-len(order) // batch_size)
    losses = np.empty(steps, dtype=np.float32)
    for step in range(steps):
        idx = order[step * batch_size : (step + 1) * batch_size]
        Gb = G[idx]
        E = F[idx] - W * Gb
        err = (E.real * E.real + E.imag * E.imag).sum(axis=0)
        losses[step] = np.float32((err * weight).sum(dtype=np.float64) / (len(idx) * pixels))
        grad = (np.conj(Gb) * E).mean(axis=0)
        p = (Gb.real * Gb.real + Gb.imag * Gb.imag).mean(axis=0)
        if first:
            P = p
            first = False
        else:
            P = beta * P + (np.float32(1) - beta) * p
        mu_t = np.float32(_spectral.step_size(mu, step0 + step, decay))
        W = W + (mu_t / (P + eps)) * (grad - leak * W)
        if support >= 0:
            W = project_support(W, P, shape, support, eps)
    return W.astype(np.complex64, copy=False), P.astype(np.float32, copy=False), losses


def apply(W, stack) -> np.ndarray:
    """irfft2(W * rfft2(stack)) of an (N, H, W, C) stack, returned in the stack's dtype.

    Integers are rounded half to even and saturated; floats come back as float32.
    """
    height, width = stack.shape[1], stack.shape[2]
    G = spectra(stack)
    # NumPy's inverse: scipy.fft's took 1.5x as long here (32 x 512², bench.lms_fft)
    out = np.fft.irfft2(G * W[None], s=(height, width), axes=(1, 2), norm="ortho")
    out = out.astype(np.float32, copy=False)
    dtype = np.dtype(stack.dtype)
    if dtype.kind in "ui":
        scale = np.float32(dtype_max(dtype))
        out = np.clip(np.rint(out * scale), 0, scale).astype(dtype)
    return out


def concat(*stacks):
    """The spectra stacks (N_i, H, Wf, C) of one image size, one after the other."""
    return np.concatenate(stacks, axis=0)


def accumulate(X, S, E, degraded, clean):
    """Add a batch of pairs (N, H, W, C) to the exact solver's sums (None: start from zero).

    Returns ``(X, S, E)``: float64 sums of conj(G) F, |G|² and |F|² per bin (complex128 /
    float64 / float64, shaped (H, W//2+1, C)), over ortho spectra of the normalized images.
    """
    G = spectra(degraded)
    F = spectra(clean)
    # products in complex64 / float32 (each term to float32 rounding), sums in float64;
    # G is this call's own array, so it is conjugated and multiplied in place
    s = (G.real * G.real + G.imag * G.imag).sum(axis=0, dtype=np.float64)
    e = (F.real * F.real + F.imag * F.imag).sum(axis=0, dtype=np.float64)
    np.conjugate(G, out=G)
    G *= F
    x = G.sum(axis=0, dtype=np.complex128)
    if X is None:
        return x, s, e
    X += x
    S += s
    E += e
    return X, S, E


def exact_solution(X, S, E, n, reg, shape):
    """``(W, P, total)``: per-bin least squares and its error (see _spectral.exact_solution)."""
    return _spectral.exact_solution(np, X, S, E, n, reg, shape)


def power(S, n):
    """P = S/n float32 (see _spectral.power)."""
    return _spectral.power(np, S, n)


def relative_change(new, old, P):
    """P-weighted relative change of the weights (see _spectral.relative_change)."""
    return _spectral.relative_change(np, new, old, P)


def support_system(S, X, shape, r, scale):
    """The spatial normal equations ``(A, b)`` of the sums S, X, times *scale* (float64)."""
    A, b = _spectral.normal_equations(np, S, X, shape, r)
    return A * scale, b * scale


def solve_support(A, b, reg, shape, r):
    """``(W, quad)`` of the taps solving ``(A + reg I) k = b`` (see _spectral.solve_support)."""
    return _spectral.solve_support(np, A, b, reg, shape, r)


def parseval_sum(Q, shape):
    """Sum over the full spectrum of a per-bin quantity in the rfft layout."""
    return _spectral.parseval_sum(np, Q, shape)
