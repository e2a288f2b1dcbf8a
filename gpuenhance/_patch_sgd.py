"""Engine-neutral parts of patch-SGD enhancement of a region (:func:`gpuenhance.enhance_roi`):
the constants, the patch schedule, the region's indices, the whitening preconditioner, Adam's
step sizes and the early-stopping rule. Both engines (``_cpu.roi``, ``_cuda.roi``) take them
from here, so they draw the same patches and stop at the same step.
"""

from __future__ import annotations

import numpy as np

# Adam constants (both engines).
BETA1 = 0.9
BETA2 = 0.999
EPS = 1e-8

# Early stopping is checked every CHECK_EVERY steps, from 2*CHECK_EVERY steps on (the CUDA
# engine reads its on-device loss history only then).
CHECK_EVERY = 50

# A smoothed loss below this (RMS residual 1e-6 of full scale) counts as an exact fit.
LOSS_FLOOR = 1e-12

# Plateaus that divide the step size by 10 before a plateau counts as convergence.
MAX_REDUCTIONS = 2

# Ridge added to the feature moments before whitening, relative to their mean eigenvalue.
RIDGE = 1e-5


def patch_positions(seed: int, steps: int, batch: int, roi_h: int, roi_w: int, patch: int):
    """Top-left corners of every patch of every step, relative to the ROI.

    Returns
    -------
    ndarray of int32, shape (steps, batch, 2)
        ``[..., 0]`` the row (0 .. roi_h - patch), ``[..., 1]`` the column (0 .. roi_w - patch),
        drawn uniformly by ``numpy.random.Generator(numpy.random.PCG64(seed))``.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    high = np.array([roi_h - patch + 1, roi_w - patch + 1], dtype=np.int64)
    return rng.integers(0, high, size=(steps, batch, 2)).astype(np.int32)


def reflect101_index(i, n: int):
    """Map integer coordinates *i* into [0, n) by the reflect_101 rule (dcb|abcd|cba)."""
    i = np.asarray(i, dtype=np.int64)
    if n == 1:
        return np.zeros_like(i)
    period = 2 * n - 2
    m = np.mod(i, period)
    return np.where(m < n, m, period - m)


def roi_indices(roi, radius: int, shape_hw):
    """Row and column indices (reflect_101) of the ROI grown by *radius* on every side."""
    x, y, w, h = roi
    H, W = shape_hw
    rows = reflect101_index(np.arange(y - radius, y + h + radius), H)
    cols = reflect101_index(np.arange(x - radius, x + w + radius), W)
    return rows, cols


def initial_params(channels: int, ksize: int):
    """Identity kernel, zero bias: the fit starts from "no change"."""
    k2 = ksize * ksize
    params = np.zeros((channels, k2 + 1), dtype=np.float32)
    params[:, k2 // 2] = 1.0
    return params


def feature_moments(region, ksize: int, xp=np):
    """Second moments ``H_c = mean(a a^T)`` of the features ``a = [window (row-major), 1]``.

    Over every ROI pixel, or over a regular grid of at most about 256 x 256 of them for larger
    ROIs; float64, shape (C, k*k + 1, k*k + 1). Written against *xp* (NumPy or CuPy).
    """
    r = ksize // 2
    h = region.shape[0] - 2 * r
    w = region.shape[1] - 2 * r
    C = region.shape[2]
    sy = -(-h // 256)
    sx = -(-w // 256)
    ny = len(range(0, h, sy))
    nx = len(range(0, w, sx))
    k2 = ksize * ksize
    feats = xp.ones((ny * nx, C, k2 + 1), dtype=xp.float64)
    for d in range(k2):
        dy, dx = divmod(d, ksize)
        view = region[dy:dy + h:sy, dx:dx + w:sx, :]
        feats[:, :, d] = view.reshape(ny * nx, C).astype(xp.float64)
    feats = feats.transpose(1, 0, 2)  # (C, n, k2 + 1)
    return xp.matmul(feats.transpose(0, 2, 1), feats) / (ny * nx)


def preconditioner(moments):
    """The whitening map T (C, n, n), float32: params = params0 + T @ phi.

    ``T = L^-T`` for the Cholesky factor L of the (ridged) feature moments, so that the loss has
    an (almost) isotropic Hessian in phi and Adam converges in few steps. Host NumPy, float64.
    """
    moments = np.asarray(moments, dtype=np.float64)
    n = moments.shape[-1]
    eye = np.eye(n)
    trace = np.trace(moments, axis1=1, axis2=2)[:, None, None]
    ridged = moments + (RIDGE * trace / n + 1e-12) * eye
    lower = np.linalg.cholesky(ridged)
    T = np.linalg.inv(np.swapaxes(lower, 1, 2))
    return np.ascontiguousarray(T.astype(np.float32))


def step_size(lr: float, t: int, steps: int) -> float:
    """Step size of step *t* (1-based) of *steps*: cosine decay from *lr* towards 0."""
    return lr * 0.5 * (1.0 + np.cos(np.pi * (t - 1) / steps))


def adam_scalars(t: int):
    """Bias corrections ``1 - beta1**t`` and ``1 - beta2**t`` for step *t* (1-based), float32."""
    return np.float32(1.0 - BETA1 ** t), np.float32(1.0 - BETA2 ** t)


def plateau_check(losses, steps_done: int, tol: float, reductions: int) -> str:
    """The early-stopping / step-size schedule test, shared by both engines.

    Applied after *steps_done* steps when that is a multiple of :data:`CHECK_EVERY` and at least
    twice it (otherwise returns ``"continue"``). *losses* holds (at least) the last
    ``2*CHECK_EVERY`` minibatch losses, the last being that of step *steps_done*.

    The loss has plateaued when the mean of the last CHECK_EVERY losses fell by no more than
    ``tol`` (relative) below the mean of the CHECK_EVERY before them. On a plateau the step size
    is divided by 10 (``"reduce"``), up to :data:`MAX_REDUCTIONS` times; a plateau after that,
    or a smoothed loss below :data:`LOSS_FLOOR` (an exact fit), means converged (``"stop"``).
    """
    if steps_done % CHECK_EVERY or steps_done < 2 * CHECK_EVERY:
        return "continue"
    window = np.asarray(losses[-2 * CHECK_EVERY:], dtype=np.float64)
    before = window[:CHECK_EVERY].mean()
    last = window[CHECK_EVERY:].mean()
    if last <= LOSS_FLOOR:
        return "stop"
    if before - last <= tol * before:
        return "stop" if reductions >= MAX_REDUCTIONS else "reduce"
    return "continue"
