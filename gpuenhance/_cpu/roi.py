"""CPU engine of :func:`gpuenhance.enhance_roi`: patch-SGD (minibatch Adam) in vectorized NumPy.

Model, per channel c: ``out = corr(x, w_c) + b_c`` (correlation, reflect_101 border), on the
image normalized to [0, 1] in float32. Loss: mean squared error over the batch's
``patch x patch`` patches and channels. Parameters are stored as one (C, k*k + 1) array,
``[w_c (row-major), b_c]`` per row; the CUDA engine uses the same layout.

The engine-neutral half (patch schedule, region indices, preconditioner, Adam constants and
steps, the plateau check) is :mod:`gpuenhance._patch_sgd`, shared with the CUDA engine, so both
engines see the same patches, take the same steps and stop at the same step.
"""

from __future__ import annotations

import cv2
import numpy as np

from .._gauss import effective_sigma
from .._image import dtype_max
from .._patch_sgd import (
    BETA1, BETA2, EPS, adam_scalars, feature_moments, initial_params,
    patch_positions, plateau_check, preconditioner, roi_indices, step_size,
)


def roi_region(img3, roi, radius: int, dtype=np.float32):
    """The ROI grown by *radius* (reflect_101 beyond the image), normalized to [0, 1].

    *img3* is (H, W, C); returns (h + 2r, w + 2r, C) of *dtype*.
    """
    rows, cols = roi_indices(roi, radius, img3.shape[:2])
    scale = dtype(1.0 / dtype_max(img3.dtype))
    return img3[rows][:, cols].astype(dtype) * scale


def unsharp_target(region, ksize: int, amount: float):
    """``x + amount * (x - blur(x))`` on the interior of *region* (float32, (h, w, C)).

    The blur is ``cv2.GaussianBlur`` of size *ksize* with OpenCV's derived sigma
    (:func:`gpuenhance._gauss.effective_sigma`);
    the region's margin already holds the image's reflect_101 border, so its interior equals
    the whole-image blur.
    """
    r = ksize // 2
    region = np.ascontiguousarray(region, dtype=np.float32)
    sigma = effective_sigma(ksize, 0)
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
