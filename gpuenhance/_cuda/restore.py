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
from ._common import blocks
from ._loader import declare

LMS_FILE = "lms.cu"
BLOCK = 256
MAX_BLOCKS = 2048
STEP_KERNEL = f"gpuenhance_lms_step<{BLOCK}>"
ACCUMULATE_KERNEL = "gpuenhance_lms_accumulate"

KERNELS = declare({LMS_FILE: (STEP_KERNEL, ACCUMULATE_KERNEL)})
HOT_KERNELS = (STEP_KERNEL, ACCUMULATE_KERNEL)


def spectra(ctx, stack):
    """rfft2 (ortho) of an (N, H, W, C) stack -> complex64 (N, H, W//2+1, C)."""
    xp = ctx.xp
    g = xp.fft.rfft2(_spectral.to_float(xp, stack), axes=(1, 2), norm="ortho")
    return xp.ascontiguousarray(g.astype(xp.complex64, copy=False))


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
            W = _spectral.project_support(xp, W, P, shape, support, eps)
    return W, P, partials.sum(axis=1)


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


def apply(ctx, W, stack):
    """irfft2(W * rfft2(stack)) of an (N, H, W, C) stack, returned in the stack's dtype."""
    xp = ctx.xp
    height, width = stack.shape[1], stack.shape[2]
    out = xp.fft.irfft2(spectra(ctx, stack) * W[None], s=(height, width), axes=(1, 2),
                        norm="ortho")
    return _spectral.from_float(xp, out.astype(xp.float32, copy=False), stack.dtype)
