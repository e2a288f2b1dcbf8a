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

try:  # a float32 stack transformed in float32 without a float64 copy, on worker threads
    import scipy.fft as _scipy_fft
except ImportError:  # SciPy is optional here: NumPy's FFT
    _scipy_fft = None


def _rfft2(x, axes, norm=None):
    """``rfft2`` over *axes*: scipy.fft on :func:`_threads.num_threads` workers, else NumPy."""
    if _scipy_fft is None:
        return np.fft.rfft2(x, axes=axes, norm=norm)
    return _scipy_fft.rfft2(x, axes=axes, norm=norm, workers=_threads.num_threads())


def spectra(stack) -> np.ndarray:
    """rfft2 (ortho) of an (N, H, W, C) stack -> complex64 (N, H, W//2+1, C)."""
    g = _rfft2(_spectral.to_float(np, stack), axes=(1, 2), norm="ortho")
    return g.astype(np.complex64, copy=False)


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
    weight = _spectral.column_weights(np, shape).astype(np.float32)[:, None]
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
            W = _spectral.project_support(np, W, P, shape, support, eps)
    return W.astype(np.complex64, copy=False), P.astype(np.float32, copy=False), losses


def apply(W, stack) -> np.ndarray:
    """irfft2(W * rfft2(stack)) of an (N, H, W, C) stack, returned in the stack's dtype.

    Integers are rounded half to even and saturated; floats come back as float32.
    """
    height, width = stack.shape[1], stack.shape[2]
    # NumPy's inverse: scipy.fft's took 1.5x as long here (32 x 512², bench.lms_fft)
    out = np.fft.irfft2(spectra(stack) * W[None], s=(height, width), axes=(1, 2), norm="ortho")
    return _spectral.from_float(np, out.astype(np.float32, copy=False), stack.dtype)


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
