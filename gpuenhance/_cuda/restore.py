"""CUDA engine of FFT-LMS restoration: FFTs through ``ctx.xp.fft``, one fused kernel per step.

Same functions and signatures as :mod:`gpuenhance._cpu.restore`, with the kernel context
first. FFTs run on cuFFT (CuPy) or ``numpy.fft`` (emulator), cast to complex64/float32.
Each update step is one launch of ``gpuenhance_lms_step`` (kernels/lms.cu): error, power and
weight update fused, per-block partial sums of the loss written to a small device array that
is summed once per epoch, so an epoch never synchronises with the host. The exact solver's
streaming pass is one launch of ``gpuenhance_lms_accumulate`` per batch of pairs (float64
sums on the device); its per-bin and support solves run through ``ctx.xp``.
"""

from __future__ import annotations

import numpy as np

from .. import _spectral
from .._image import dtype_max
from ._common import blocks
from ._loader import declare

LMS_FILE = "lms.cu"
BLOCK = 256
MAX_BLOCKS = 2048
STEP_KERNEL = f"gpuenhance_lms_step<{BLOCK}>"
ACCUMULATE_KERNEL = "gpuenhance_lms_accumulate"

KERNELS = declare({LMS_FILE: (STEP_KERNEL, ACCUMULATE_KERNEL)})
HOT_KERNELS = (STEP_KERNEL, ACCUMULATE_KERNEL)


def _to_float(ctx, stack):
    xp = ctx.xp
    out = stack.astype(xp.float32)
    scale = dtype_max(stack.dtype)
    if scale != 1.0:
        out *= np.float32(1.0 / scale)
    return out


def spectra(ctx, stack):
    """rfft2 (ortho) of an (N, H, W, C) stack -> complex64 (N, H, W//2+1, C)."""
    g = ctx.xp.fft.rfft2(_to_float(ctx, stack), axes=(1, 2), norm="ortho")
    return ctx.xp.ascontiguousarray(g.astype(ctx.xp.complex64, copy=False))


def project_support(ctx, W, P, shape, r, eps):
    """W constrained to (2r+1)² spatial taps in the metric of the bin power P."""
    return _spectral.project_support(ctx.xp, W, P, shape, r, eps)


def kernel_from_weights(ctx, W, shape, r):
    """The (2r+1, 2r+1, C) float32 convolution taps of W, origin at the centre."""
    xp = ctx.xp
    height, width = int(shape[0]), int(shape[1])
    k = xp.fft.irfft2(W, s=(height, width), axes=(0, 1))
    k = xp.roll(k, (r, r), axis=(0, 1))[: 2 * r + 1, : 2 * r + 1]
    return xp.ascontiguousarray(k.astype(xp.float32))


def weights_from_kernel(ctx, taps, shape):
    """W (H, W//2+1, C) complex64 of (2r+1, 2r+1, C) taps circularly zero-padded to *shape*."""
    xp = ctx.xp
    height, width = int(shape[0]), int(shape[1])
    r = (taps.shape[0] - 1) // 2
    k = xp.zeros((height, width, taps.shape[2]), dtype=xp.float64)
    k[: 2 * r + 1, : 2 * r + 1] = taps
    k = xp.roll(k, (-r, -r), axis=(0, 1))
    return xp.ascontiguousarray(xp.fft.rfft2(k, axes=(0, 1)).astype(xp.complex64))


def nlms_epoch(ctx, G, F, W, P, order, shape, batch_size, mu, leak, eps, beta, support, step0=0,
               decay=0.0):
    """One pass of normalized complex LMS; see :func:`gpuenhance._cpu.restore.nlms_epoch`."""
    xp = ctx.xp
    G = xp.ascontiguousarray(G, dtype=xp.complex64)
    F = xp.ascontiguousarray(F, dtype=xp.complex64)
    bins_shape = G.shape[1:]
    W = (
        xp.zeros(bins_shape, dtype=xp.complex64)
        if W is None
        else xp.array(W, dtype=xp.complex64, order="C", copy=True)
    )
    first = P is None
    P = (
        xp.zeros(bins_shape, dtype=xp.float32)
        if first
        else xp.array(P, dtype=xp.float32, order="C", copy=True)
    )
    order = xp.ascontiguousarray(order, dtype=xp.int32)
    n = int(order.shape[0])
    height, width = int(shape[0]), int(shape[1])
    wf, channels = int(bins_shape[1]), int(bins_shape[2])
    nbins = int(np.prod(bins_shape))
    grid = min(blocks(nbins, BLOCK), MAX_BLOCKS)
    steps = -(-n // batch_size)
    partials = xp.zeros((steps, grid), dtype=xp.float32)
    kernel = ctx.kernel(LMS_FILE, STEP_KERNEL)
    pixels = float(height) * float(width) * float(channels)
    for step in range(steps):
        start = step * batch_size
        batch = min(batch_size, n - start)
        kernel(
            (grid,),
            (BLOCK,),
            (
                G,
                F,
                W,
                P,
                order,
                np.int32(start),
                np.int32(batch),
                np.int64(nbins),
                np.int32(wf),
                np.int32(channels),
                np.int32(width % 2 == 0),
                np.float32(_spectral.step_size(mu, step0 + step, decay)),
                np.float32(leak),
                np.float32(eps),
                np.float32(beta),
                np.int32(first),
                np.float32(1.0 / (batch * pixels)),
                partials,
                np.int32(step),
            ),
        )
        first = False
        if support >= 0:
            W = project_support(ctx, W, P, shape, support, eps)
    return W, P, partials.sum(axis=1)


def concat(ctx, *stacks):
    """The spectra stacks (N_i, H, Wf, C) of one image size, one after the other."""
    return ctx.xp.concatenate(stacks, axis=0)


def accumulate(ctx, X, S, E, degraded, clean):
    """Add a batch of pairs to the exact solver's float64 sums; see the CPU engine's."""
    xp = ctx.xp
    G = spectra(ctx, degraded)
    F = spectra(ctx, clean)
    bins_shape = G.shape[1:]
    if X is None:
        X = xp.zeros(bins_shape, dtype=xp.complex128)
        S = xp.zeros(bins_shape, dtype=xp.float64)
        E = xp.zeros(bins_shape, dtype=xp.float64)
    nbins = int(np.prod(bins_shape))
    kernel = ctx.kernel(LMS_FILE, ACCUMULATE_KERNEL)
    kernel(
        (min(blocks(nbins, BLOCK), MAX_BLOCKS),),
        (BLOCK,),
        (G, F, X, S, E, np.int32(G.shape[0]), np.int64(nbins)),
    )
    return X, S, E


def exact_solution(ctx, X, S, E, n, reg, shape):
    """``(W, P, total)``: per-bin least squares and its error (see _spectral.exact_solution)."""
    return _spectral.exact_solution(ctx.xp, X, S, E, n, reg, shape)


def power(ctx, S, n):
    """P = S/n float32 (see _spectral.power)."""
    return _spectral.power(ctx.xp, S, n)


def relative_change(ctx, new, old, P):
    """P-weighted relative change of the weights (see _spectral.relative_change)."""
    return _spectral.relative_change(ctx.xp, new, old, P)


def support_system(ctx, S, X, shape, r, scale):
    """The spatial normal equations ``(A, b)`` of the sums S, X, times *scale* (float64)."""
    A, b = _spectral.normal_equations(ctx.xp, S, X, shape, r)
    return A * scale, b * scale


def solve_support(ctx, A, b, reg, shape, r):
    """``(W, quad)`` of the taps solving ``(A + reg I) k = b`` (see _spectral.solve_support)."""
    return _spectral.solve_support(ctx.xp, A, b, reg, shape, r)


def parseval_sum(ctx, Q, shape):
    """Sum over the full spectrum of a per-bin quantity in the rfft layout."""
    return _spectral.parseval_sum(ctx.xp, Q, shape)


def apply(ctx, W, stack):
    """irfft2(W * rfft2(stack)) of an (N, H, W, C) stack, returned in the stack's dtype."""
    xp = ctx.xp
    height, width = stack.shape[1], stack.shape[2]
    G = spectra(ctx, stack)
    out = xp.fft.irfft2(G * W[None], s=(height, width), axes=(1, 2), norm="ortho")
    out = out.astype(xp.float32, copy=False)
    dtype = np.dtype(stack.dtype)
    if dtype.kind in "ui":
        scale = np.float32(dtype_max(dtype))
        out = xp.clip(xp.rint(out * scale), 0, scale).astype(dtype)
    return out
