"""CPU engine of :func:`gpuenhance.enhance_roi`: patch-SGD (minibatch Adam) in vectorized NumPy.

Model, per channel c: ``out = corr(x, w_c) + b_c`` (correlation, reflect_101 border), on the
image normalized to [0, 1] in float32. Loss: mean squared error over the batch's
``patch x patch`` patches and channels. Parameters are stored as one (C, k*k + 1) array,
``[w_c (row-major), b_c]`` per row; the CUDA engine uses the same layout.

The helpers :func:`patch_positions`, :func:`plateau_check`, :func:`roi_indices` and the Adam
constants are shared with the CUDA engine, so both engines see the same patches, take the same
steps and stop at the same step.
"""

from __future__ import annotations

import cv2
import numpy as np

from .._image import dtype_max

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


def roi_region(img3, roi, radius: int, dtype=np.float32):
    """The ROI grown by *radius* (reflect_101 beyond the image), normalized to [0, 1].

    *img3* is (H, W, C); returns (h + 2r, w + 2r, C) of *dtype*.
    """
    rows, cols = roi_indices(roi, radius, img3.shape[:2])
    scale = dtype(1.0 / dtype_max(img3.dtype))
    return img3[rows][:, cols].astype(dtype) * scale


def gaussian_sigma(ksize: int) -> float:
    """OpenCV's sigma for a Gaussian of size *ksize*: 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8."""
    return 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8


def unsharp_target(region, ksize: int, amount: float):
    """``x + amount * (x - blur(x))`` on the interior of *region* (float32, (h, w, C)).

    The blur is ``cv2.GaussianBlur`` of size *ksize* with the sigma of :func:`gaussian_sigma`;
    the region's margin already holds the image's reflect_101 border, so its interior equals
    the whole-image blur.
    """
    r = ksize // 2
    region = np.ascontiguousarray(region, dtype=np.float32)
    sigma = gaussian_sigma(ksize)
    blur = cv2.GaussianBlur(region, (ksize, ksize), sigmaX=sigma, sigmaY=sigma,
                            borderType=cv2.BORDER_REFLECT_101)
    if blur.ndim == 2:
        blur = blur[:, :, None]
    h, w = region.shape[0] - 2 * r, region.shape[1] - 2 * r
    x = region[r:r + h, r:r + w]
    b = blur[r:r + h, r:r + w]
    return x + np.float32(amount) * (x - b)


def _tiles_loss_grad(params, tiles, targets, weights, ksize: int, count: int):
    """Loss and gradient over tiles (M, C, P + 2r, Q + 2r) against targets (M, C, P, Q).

    Channel-first, so that every per-offset product runs over contiguous rows. *weights* is
    None or (M, P, Q): how many times each pixel counts. *count* normalizes (number of
    pixel-channel terms of the batch).
    """
    k2 = ksize * ksize
    M, C, P, Q = targets.shape
    dtype = tiles.dtype
    w = params[:, :k2].astype(dtype)
    b = params[:, k2].astype(dtype)
    pred = np.empty(targets.shape, dtype=dtype)
    pred[...] = b[:, None, None]
    for d in range(k2):
        dy, dx = divmod(d, ksize)
        pred += tiles[:, :, dy:dy + P, dx:dx + Q] * w[:, d, None, None]
    e = pred - targets
    we = e if weights is None else e * weights[:, None].astype(dtype)
    loss = float(np.einsum("mcpq,mcpq->", we, e, dtype=np.float64) / count)
    grad = np.empty(params.shape, dtype=dtype)
    scale = dtype.type(2.0 / count)
    for d in range(k2):
        dy, dx = divmod(d, ksize)
        grad[:, d] = np.einsum("mcpq,mcpq->c", we, tiles[:, :, dy:dy + P, dx:dx + Q]) * scale
    grad[:, k2] = we.sum(axis=(0, 2, 3)) * scale
    return loss, grad


def coverage(positions, roi_h: int, roi_w: int, patch: int):
    """How many of the patches at *positions* ((B, 2) top-left corners) cover each ROI pixel."""
    diff = np.zeros((roi_h + 1, roi_w + 1), dtype=np.int32)
    ys = positions[:, 0].astype(np.int64)
    xs = positions[:, 1].astype(np.int64)
    np.add.at(diff, (ys, xs), 1)
    np.add.at(diff, (ys, xs + patch), -1)
    np.add.at(diff, (ys + patch, xs), -1)
    np.add.at(diff, (ys + patch, xs + patch), 1)
    return np.cumsum(np.cumsum(diff, axis=0), axis=1)[:roi_h, :roi_w]


def loss_and_grad(params, region, target, positions, patch: int, ksize: int, method="auto"):
    """Mean squared error of one batch of patches and its gradient.

    Parameters
    ----------
    params : ndarray, shape (C, ksize*ksize + 1)
        ``[w (row-major), b]`` per channel.
    region : ndarray, shape (h + 2r, w + 2r, C)
        The normalized ROI with a margin of r = ksize // 2 (reflect_101 beyond the image).
    target : ndarray, shape (h, w, C)
        The target on the ROI.
    positions : ndarray, shape (B, 2)
        Top-left corners (row, column) of the batch's patches, relative to the ROI.
    method : {"auto", "gather", "coverage"}
        "gather" copies the patches; "coverage" evaluates the whole ROI weighted by how many
        patches cover each pixel (cheaper when the patches cover the ROI many times).
        Both give the same values up to rounding.

    Returns
    -------
    loss : float
    grad : ndarray like *params* (computed in *region*'s dtype: float64 in, float64 out)
    """
    region_cf = np.ascontiguousarray(np.moveaxis(region, 2, 0))
    target_cf = np.ascontiguousarray(np.moveaxis(target, 2, 0))
    return loss_and_grad_cf(params, region_cf, target_cf, positions, patch, ksize, method)


def loss_and_grad_cf(params, region, target, positions, patch: int, ksize: int, method="auto"):
    """:func:`loss_and_grad` on channel-first arrays: region (C, h + 2r, w + 2r), target
    (C, h, w)."""
    C, h, w = target.shape
    B = positions.shape[0]
    r = ksize // 2
    count = B * patch * patch * C
    if method == "auto":
        method = "coverage" if B * patch * patch >= h * w // 2 else "gather"
    if method == "coverage":
        weights = coverage(positions, h, w, patch)
        return _tiles_loss_grad(params, region[None], target[None], weights[None], ksize, count)
    ys = positions[:, 0].astype(np.intp)[:, None, None]
    xs = positions[:, 1].astype(np.intp)[:, None, None]
    span = np.arange(patch + 2 * r)
    tiles = region[:, ys + span[None, :, None], xs + span[None, None, :]].transpose(1, 0, 2, 3)
    inner = np.arange(patch)
    targets = target[:, ys + inner[None, :, None], xs + inner[None, None, :]].transpose(1, 0, 2, 3)
    return _tiles_loss_grad(params, tiles, targets, None, ksize, count)


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


def adam_step(params, params0, phi, T, grad, m, v, t: int, lr: float):
    """One preconditioned Adam step in place, float32, in the CUDA kernel's order of operations.

    The gradient is mapped to phi (``T^T grad``), Adam updates phi, and
    ``params = params0 + T phi``.
    """
    bc1, bc2 = adam_scalars(t)
    f = np.float32
    grad = np.einsum("cji,cj->ci", T, grad).astype(f)
    b1, b2 = f(BETA1), f(BETA2)
    m *= b1
    m += (f(1) - b1) * grad
    v *= b2
    v += (f(1) - b2) * (grad * grad)
    mhat = m / bc1
    vhat = v / bc2
    phi -= f(lr) * mhat / (np.sqrt(vhat) + f(EPS))
    params[...] = params0 + np.einsum("cij,cj->ci", T, phi)


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


def finish(img, roi, region, params, ksize: int):
    """The output image: *img* with the ROI replaced by conv + bias, rounded and saturated."""
    x, y, w, h = roi
    k2 = ksize * ksize
    C = params.shape[0]
    pred = np.empty((h, w, C), dtype=np.float32)
    pred[...] = params[:, k2]
    for d in range(k2):
        dy, dx = divmod(d, ksize)
        pred += region[dy:dy + h, dx:dx + w, :] * params[:, d]
    out = img.copy()
    out3 = out.reshape(out.shape[0], out.shape[1], C)
    maxval = dtype_max(img.dtype)
    if img.dtype.kind == "f":
        vals = np.clip(pred, 0.0, 1.0)
    else:
        vals = np.clip(np.rint(pred * np.float32(maxval)), 0, maxval)
    out3[y:y + h, x:x + w] = vals.astype(img.dtype)
    return out


def enhance_roi(img, roi, target, ksize, amount, patch, batch, steps, lr, tol, seed):
    """CPU engine of :func:`gpuenhance.enhance_roi` (arguments already validated).

    Returns (enhanced, kernel (C, k, k), bias (C,), loss_history, steps_run, converged).
    """
    img3 = img if img.ndim == 3 else img[:, :, None]
    x0, y0, w, h = roi
    r = ksize // 2
    C = img3.shape[2]
    region = np.ascontiguousarray(roi_region(img3, roi, r))
    if target is None:
        tgt = unsharp_target(region, ksize, amount)
    else:
        t3 = target if target.ndim == 3 else target[:, :, None]
        tgt = t3[y0:y0 + h, x0:x0 + w].astype(np.float32) * np.float32(1.0 / dtype_max(t3.dtype))
    tgt = np.ascontiguousarray(tgt)
    positions = patch_positions(seed, steps, batch, h, w, patch)
    region_cf = np.ascontiguousarray(np.moveaxis(region, 2, 0))
    tgt_cf = np.ascontiguousarray(np.moveaxis(tgt, 2, 0))
    params = initial_params(C, ksize)
    params0 = params.copy()
    T = preconditioner(feature_moments(region, ksize))
    phi = np.zeros_like(params)
    m = np.zeros_like(params)
    v = np.zeros_like(params)
    losses = np.zeros(steps, dtype=np.float32)
    steps_run, converged = steps, False
    lr_now, reductions = float(lr), 0
    for s in range(steps):
        loss, grad = loss_and_grad_cf(params, region_cf, tgt_cf, positions[s], patch, ksize)
        losses[s] = loss
        adam_step(params, params0, phi, T, grad, m, v, s + 1, step_size(lr_now, s + 1, steps))
        action = plateau_check(losses[:s + 1], s + 1, tol, reductions)
        if action == "stop":
            steps_run, converged = s + 1, True
            break
        if action == "reduce":
            lr_now, reductions = lr_now * 0.1, reductions + 1
    k2 = ksize * ksize
    out = finish(img, roi, region, params, ksize)
    kernel = params[:, :k2].reshape(C, ksize, ksize).copy()
    bias = params[:, k2].copy()
    return out, kernel, bias, losses[:steps_run].copy(), steps_run, converged
