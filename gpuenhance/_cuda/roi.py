"""CUDA engine of :func:`gpuenhance.enhance_roi` (kernels/patch_sgd.cu).

Same algorithm, patches and stopping rule as :mod:`gpuenhance._cpu.roi`. Per SGD step two
launches, no host synchronisation: ``gpuenhance_patch_sgd_grad<K>`` (one block per patch and
channel: residuals, gradient and loss accumulated into device buffers) and
``gpuenhance_patch_sgd_adam<K>`` (preconditioned Adam step, zeroes the gradient buffer).
The loss history stays on the device; every ``CHECK_EVERY`` steps (from ``2*CHECK_EVERY`` on)
the host reads the last ``2*CHECK_EVERY`` losses for the plateau test (step-size reduction
and early stopping). Before the loop the
(C, k*k+1, k*k+1) feature moments are read back once to build the whitening preconditioner on
the host (the same NumPy code as the CPU engine), and the patch positions are uploaded once.
These two reads are the only device-to-host transfers of the op.

Limits (:func:`check_limits`, checked before any work): at most 65535 channels and 2^31 - 1
patches per batch (the gradient kernel's grid is (batch, C)); offsets are 64-bit.
"""

from __future__ import annotations

import numpy as np

from .. import _patch_sgd as _ref
from .._gauss import effective_sigma, taps
from .._image import dtype_max
from ._common import GRID_X_MAX, GRID_YZ_MAX, INT32_MAX, blocks, check_grid, ctype
from ._loader import declare

KSIZES = (1, 3, 5, 7)
_DTYPES = ("gpuenhance_u8", "gpuenhance_u16", "float")
THREADS = 256
SGD_THREADS = 128  # GPUENHANCE_SGD_THREADS in kernels/patch_sgd.cu

KERNELS = declare({
    "patch_sgd.cu": tuple(f"gpuenhance_patch_sgd_grad<{k}>" for k in KSIZES)
    + tuple(f"gpuenhance_patch_sgd_adam<{k}>" for k in KSIZES)
    + tuple(f"gpuenhance_patch_sgd_apply<{t}, {k}>" for t in _DTYPES for k in KSIZES)
})
HOT_KERNELS = (
    "gpuenhance_patch_sgd_grad<3>",
    "gpuenhance_patch_sgd_grad<5>",
    "gpuenhance_patch_sgd_adam<3>",
    "gpuenhance_patch_sgd_adam<5>",
)


def check_limits(shape3, batch: int, steps: int) -> None:
    """Refuse, before any work, what the kernels' launch shapes and int arguments cannot take.

    The gradient kernel runs one block per (patch, channel) on grid (batch, C), so C is at most
    65535 (grid.y) and batch at most 2^31 - 1 (grid.x); H, W and steps are passed as ``int``.
    Offsets inside the kernels are 64-bit.
    """
    H, W, C = (int(v) for v in shape3)
    for what, value, limit in (("img channels (C)", C, GRID_YZ_MAX),
                               ("batch", batch, GRID_X_MAX),
                               ("img height (H)", H, INT32_MAX),
                               ("img width (W)", W, INT32_MAX),
                               ("steps", steps, INT32_MAX)):
        if int(value) > limit:
            raise ValueError(
                f"{what} must be at most {limit} for the CUDA engine of enhance_roi (CUDA "
                f"launch limits / 32-bit kernel arguments); got {value}"
            )


def _host(a):
    """A small device array as NumPy (one explicit read)."""
    return a.get() if hasattr(a, "get") else np.asarray(a)


def _unsharp_target(xp, region, ksize: int, amount: float):
    """``x + amount * (x - blur(x))`` on the region's interior, separable blur in float32."""
    r = ksize // 2
    h = region.shape[0] - 2 * r
    w = region.shape[1] - 2 * r
    g = taps(ksize, effective_sigma(ksize, 0)).astype(np.float32)
    rows = xp.zeros((region.shape[0], w, region.shape[2]), dtype=xp.float32)
    for d in range(ksize):
        rows += region[:, d:d + w, :] * np.float32(g[d])
    blur = xp.zeros((h, w, region.shape[2]), dtype=xp.float32)
    for d in range(ksize):
        blur += rows[d:d + h] * np.float32(g[d])
    x = region[r:r + h, r:r + w]
    return xp.ascontiguousarray(x + np.float32(amount) * (x - blur))


def enhance_roi(ctx, img, roi, target, ksize, amount, patch, batch, steps, lr, tol, seed):
    """CUDA engine of :func:`gpuenhance.enhance_roi` (arguments already validated).

    Returns (enhanced, kernel (C, k, k), bias (C,), loss_history, steps_run, converged).
    """
    xp = ctx.xp
    img3 = img if img.ndim == 3 else img[:, :, None]
    H, W, C = (int(s) for s in img3.shape)
    check_limits((H, W, C), batch, steps)
    x0, y0, w, h = roi
    r = ksize // 2
    k2 = ksize * ksize
    npar = k2 + 1
    f32 = np.float32

    rows, cols = _ref.roi_indices(roi, r, (H, W))
    rows = xp.asarray(rows)
    cols = xp.asarray(cols)
    scale = f32(1.0 / dtype_max(img3.dtype))
    region = xp.ascontiguousarray(img3[rows][:, cols].astype(xp.float32) * scale)
    if target is None:
        tgt = _unsharp_target(xp, region, ksize, amount)
    else:
        t3 = target if target.ndim == 3 else target[:, :, None]
        tgt = xp.ascontiguousarray(
            t3[y0:y0 + h, x0:x0 + w].astype(xp.float32) * f32(1.0 / dtype_max(t3.dtype))
        )

    positions = xp.asarray(_ref.patch_positions(seed, steps, batch, h, w, patch))
    T = xp.asarray(_ref.preconditioner(_host(_ref.feature_moments(region, ksize, xp))))
    params = xp.asarray(_ref.initial_params(C, ksize))
    params0 = params.copy()
    phi = xp.zeros_like(params)
    m = xp.zeros_like(params)
    v = xp.zeros_like(params)
    grad = xp.zeros_like(params)
    losses = xp.zeros(steps, dtype=xp.float32)

    k_grad = ctx.kernel("patch_sgd.cu", f"gpuenhance_patch_sgd_grad<{ksize}>")
    k_adam = ctx.kernel("patch_sgd.cu", f"gpuenhance_patch_sgd_adam<{ksize}>")
    k_apply = ctx.kernel("patch_sgd.cu",
                         f"gpuenhance_patch_sgd_apply<{ctype(img.dtype)}, {ksize}>")

    count = batch * patch * patch * C
    span = patch + 2 * r
    smem = span * span * 4
    adam_threads = 32 * blocks(npar, 32)
    grad_args_tail = (
        np.int32(batch), np.int32(patch), np.int32(w), np.int32(C),
        f32(2.0 / count), f32(1.0 / count),
    )
    steps_run, converged = steps, False
    lr_now, reductions = float(lr), 0
    for s in range(steps):
        k_grad(
            (batch, C), (SGD_THREADS,),
            (region, tgt, positions, params, grad, losses, np.int32(s)) + grad_args_tail,
            shared_mem=smem,
        )
        bc1, bc2 = _ref.adam_scalars(s + 1)
        k_adam(
            (C,), (adam_threads,),
            (params, params0, phi, m, v, grad, T, f32(_ref.step_size(lr_now, s + 1, steps)), f32(_ref.BETA1), f32(_ref.BETA2),
             bc1, bc2, f32(_ref.EPS)),
        )
        done = s + 1
        if done % _ref.CHECK_EVERY == 0 and done >= 2 * _ref.CHECK_EVERY:
            window = _host(losses[done - 2 * _ref.CHECK_EVERY:done])
            action = _ref.plateau_check(window, done, tol, reductions)
            if action == "stop":
                steps_run, converged = done, True
                break
            if action == "reduce":
                lr_now, reductions = lr_now * 0.1, reductions + 1

    out = xp.array(img, order="C", copy=True)
    total = h * w * C
    k_apply(
        check_grid((blocks(total, THREADS),), "enhance_roi"), (THREADS,),
        (region, params, out, np.int32(x0), np.int32(y0), np.int32(w), np.int32(h),
         np.int32(W), np.int32(C), f32(dtype_max(img.dtype))),
    )
    kernel = params[:, :k2].reshape(C, ksize, ksize).copy()
    bias = params[:, k2].copy()
    return out, kernel, bias, losses[:steps_run].copy(), steps_run, converged
