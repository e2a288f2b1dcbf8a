"""enhance_roi: patch-SGD enhancement of a region of interest.

Oracles: float64 finite differences, a known kernel recovered from white noise, the float64
weighted least-squares optimum over all ROI patches, a float64 NumPy conv + bias, NumPy's
PCG64 generator, and the closed-form unsharp-mask kernel.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from tolerances import tol

import gpuenhance
from gpuenhance import EnhanceResult, enhance_roi
from gpuenhance import _patch_sgd
from gpuenhance._cpu import roi as cpu_roi


def _region64(img, roi, r):
    """float64 normalized ROI grown by r with NumPy's reflect (= OpenCV reflect_101) padding."""
    img3 = img if img.ndim == 3 else img[:, :, None]
    scale = 255.0 if img.dtype == np.uint8 else 65535.0 if img.dtype == np.uint16 else 1.0
    padded = np.pad(img3.astype(np.float64) / scale, ((r, r), (r, r), (0, 0)), mode="reflect")
    x, y, w, h = roi
    return padded[y:y + h + 2 * r, x:x + w + 2 * r]


def _conv64(region, kernel, bias):
    """float64 correlation + bias on the interior of region (h + 2r, w + 2r, C)."""
    C, k, _ = kernel.shape
    win = sliding_window_view(region, (k, k), axis=(0, 1))  # (h, w, C, k, k)
    return np.einsum("hwcij,cij->hwc", win, kernel.astype(np.float64)) + bias.astype(np.float64)


# ---------------------------------------------------------------------------------------------
# gradient


@pytest.mark.parametrize("method", ["gather", "coverage"])
@pytest.mark.parametrize("ksize", [1, 3, 5])
def test_gradient_matches_finite_differences(method, ksize):
    rng = np.random.default_rng(3)
    C, h, w, patch, B = 2, 11, 13, 4, 5
    r = ksize // 2
    region = rng.random((h + 2 * r, w + 2 * r, C))
    target = rng.random((h, w, C))
    params = rng.normal(size=(C, ksize * ksize + 1))
    positions = _patch_sgd.patch_positions(7, 1, B, h, w, patch)[0]
    loss, grad = cpu_roi.loss_and_grad(params, region, target, positions, patch, ksize, method)
    assert grad.dtype == np.float64
    eps = 1e-6
    fd = np.empty_like(params)
    for idx in np.ndindex(params.shape):
        p1, p2 = params.copy(), params.copy()
        p1[idx] += eps
        p2[idx] -= eps
        l1, _ = cpu_roi.loss_and_grad(p1, region, target, positions, patch, ksize, method)
        l2, _ = cpu_roi.loss_and_grad(p2, region, target, positions, patch, ksize, method)
        fd[idx] = (l1 - l2) / (2 * eps)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)
    # the loss itself against a direct float64 oracle over the listed patches
    pred = _conv64(region, params[:, :-1].reshape(C, ksize, ksize), params[:, -1])
    terms = [((pred - target)[y:y + patch, x:x + patch] ** 2) for y, x in positions]
    assert loss == pytest.approx(np.mean(terms), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# what the fit learns


def test_recovers_known_kernel_from_white_noise():
    rng = np.random.default_rng(5)
    img = rng.random((40, 57, 2), dtype=np.float32)
    w_true = rng.normal(0, 0.3, size=(2, 3, 3)).astype(np.float32)
    b_true = np.array([0.1, -0.05], dtype=np.float32)
    target = np.stack(
        [cv2.filter2D(img[:, :, c], -1, w_true[c], borderType=cv2.BORDER_REFLECT_101) + b_true[c]
         for c in range(2)], axis=-1).astype(np.float32)
    out, res = enhance_roi(img, (3, 2, 48, 30), target=target, patch=8, batch=32, steps=300)
    assert isinstance(res, EnhanceResult)
    assert np.linalg.norm(res.kernel - w_true) < 1e-2
    assert np.abs(res.bias - b_true).max() < 1e-2


def test_default_target_is_unsharp_mask_kernel():
    # target x + a(x - blur x) is exactly conv(x, (1 + a) delta - a g): the fit must find it.
    import skimage.data

    img = skimage.data.camera()[200:260, 180:250]
    amount = 0.7
    out, res = enhance_roi(img, (4, 6, 56, 48), amount=amount, patch=16, batch=32, steps=600)
    sigma = 0.3 * ((3 - 1) * 0.5 - 1) + 0.8
    g = np.exp(-(np.arange(3) - 1.0) ** 2 / (2 * sigma**2))
    g /= g.sum()
    expected = -amount * np.outer(g, g)
    expected[1, 1] += 1 + amount
    np.testing.assert_allclose(res.kernel[0], expected, atol=1e-3)
    assert abs(res.bias[0]) < 1e-3
    assert res.converged and res.steps_run % 50 == 0 and res.steps_run < 600
    assert res.loss_history.shape == (res.steps_run,)


def test_natural_image_reaches_least_squares_optimum():
    import skimage.data

    clean = skimage.data.camera()[150:230, 120:210]
    rng = np.random.default_rng(2)
    blurred = cv2.GaussianBlur(clean.astype(np.float32), (5, 5), 1.2)
    degraded = np.clip(np.rint(blurred + rng.normal(0, 4, clean.shape)), 0, 255).astype(np.uint8)
    roi, patch, k = (6, 5, 72, 64), 16, 3
    x, y, w, h = roi
    _, res = enhance_roi(degraded, roi, target=clean, patch=patch, batch=64, steps=300)

    # oracle: weighted least squares over ALL patches of the ROI (each pixel weighted by the
    # number of patches covering it), float64 normal equations
    cover_y = np.convolve(np.ones(h - patch + 1), np.ones(patch))
    cover_x = np.convolve(np.ones(w - patch + 1), np.ones(patch))
    weight = np.outer(cover_y, cover_x).ravel()
    region = _region64(degraded, roi, 1)[:, :, 0]
    A = np.c_[sliding_window_view(region, (k, k)).reshape(-1, k * k), np.ones(h * w)]
    t = clean[y:y + h, x:x + w].astype(np.float64).ravel() / 255
    sol = np.linalg.solve(A.T @ (A * weight[:, None]), A.T @ (weight * t))

    def loss(p):
        e = A @ p - t
        return np.sum(weight * e * e) / weight.sum()

    learned = np.r_[res.kernel.ravel(), res.bias].astype(np.float64)
    assert loss(learned) <= 1.01 * loss(sol)


# ---------------------------------------------------------------------------------------------
# the output image


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("shape", [(23, 29), (23, 29, 3)])
def test_output_outside_identical_inside_conv_oracle(dtype, shape):
    rng = np.random.default_rng(9)
    if dtype == np.float32:
        img = rng.random(shape, dtype=np.float32)
    else:
        img = rng.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)
    img_f = np.asfortranarray(img)  # non-contiguous layouts are accepted
    roi = (0, 13, 29, 10)  # touches three image borders: reflect_101 beyond them
    out, res = enhance_roi(img_f, roi, ksize=5, amount=1.5, patch=6, batch=8, steps=40)
    assert out.shape == img.shape and out.dtype == img.dtype
    x, y, w, h = roi
    mask = np.zeros(img.shape[:2], dtype=bool)
    mask[y:y + h, x:x + w] = True
    assert np.array_equal(out[~mask], img[~mask])
    pred = _conv64(_region64(img, roi, 2), res.kernel, res.bias)
    got = out[y:y + h, x:x + w].reshape(pred.shape)
    if dtype == np.float32:
        np.testing.assert_allclose(got, np.clip(pred, 0, 1), atol=1e-6)
    else:
        scaled = pred * np.iinfo(dtype).max
        ref = np.clip(np.rint(scaled), 0, np.iinfo(dtype).max)
        # float32 arithmetic may land on the other side of a .5 tie: allowed only there
        near_tie = np.abs(np.abs(scaled - np.floor(scaled)) - 0.5) < 1e-3 * np.iinfo(dtype).max / 255
        diff = np.abs(got.astype(np.int64) - ref.astype(np.int64))
        assert np.all(diff[~near_tie] == 0)
        assert np.all(diff <= 1)


def test_constant_roi_is_left_unchanged():
    img = np.full((20, 24), 77, dtype=np.uint8)
    out, res = enhance_roi(img, (2, 2, 16, 16), patch=8, batch=8, steps=100)
    assert np.all(np.isfinite(res.kernel)) and np.all(np.isfinite(res.bias))
    assert np.array_equal(out, img)


# ---------------------------------------------------------------------------------------------
# patches and engines


def test_patch_positions_come_from_pcg64():
    pos = _patch_sgd.patch_positions(11, 6, 5, 20, 30, 7)
    assert pos.dtype == np.int32 and pos.shape == (6, 5, 2)
    ref = np.random.Generator(np.random.PCG64(11)).integers(
        0, np.array([14, 24]), size=(6, 5, 2))
    assert np.array_equal(pos, ref)
    assert pos[..., 0].min() >= 0 and pos[..., 0].max() <= 13
    assert pos[..., 1].min() >= 0 and pos[..., 1].max() <= 23


@pytest.mark.equivalence("enhance_roi")
@pytest.mark.parametrize("supervised", [False, True])
def test_engines_agree(backend, supervised):
    rng = np.random.default_rng(21)
    img = rng.integers(0, 256, size=(30, 34, 2), dtype=np.uint8)
    target = rng.integers(0, 256, size=img.shape, dtype=np.uint8) if supervised else None
    roi, patch, batch, steps = (4, 3, 24, 24), 8, 8, 20
    kwargs = dict(target=target, patch=patch, batch=batch, steps=steps, seed=4)
    out, res = enhance_roi(img, roi, backend=backend, **kwargs)
    ref_out, ref = enhance_roi(img, roi, backend="cpu", **kwargs)
    t = tol("enhance_roi", "params")
    np.testing.assert_allclose(res.kernel, ref.kernel, **t)
    np.testing.assert_allclose(res.bias, ref.bias, **t)
    assert res.steps_run == ref.steps_run and res.converged == ref.converged
    np.testing.assert_allclose(res.loss_history, ref.loss_history, rtol=1e-4)
    assert np.abs(out.astype(int) - ref_out.astype(int)).max() <= 1

    # same patches: the first loss (identity kernel, zero bias) is the float64 oracle's loss
    # on the PCG64 positions of step 0
    x, y, w, h = roi
    region = _region64(img, roi, 1)
    if supervised:
        tgt = target[y:y + h, x:x + w].astype(np.float64) / 255
    else:
        sigma = 0.8
        g = np.exp(-(np.arange(3) - 1.0) ** 2 / (2 * sigma**2))
        g /= g.sum()
        blur = _conv64(region, np.stack([np.outer(g, g)] * 2), np.zeros(2))
        tgt = 2 * region[1:-1, 1:-1] - blur
    pos = np.random.Generator(np.random.PCG64(4)).integers(
        0, np.array([h - patch + 1, w - patch + 1]), size=(steps, batch, 2))[0]
    err = region[1:-1, 1:-1] - tgt
    first = np.mean([err[py:py + patch, px:px + patch] ** 2 for py, px in pos])
    assert res.loss_history[0] == pytest.approx(first, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# errors


IMG = np.zeros((20, 24, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "roi",
    [(1, 2, 3), (1, 2, 3, 4, 5), (0, 0, 10.0, 10), "abcd", 7, (0, 0, True, 10),
     (0, 0, 0, 10), (0, 0, 10, -1), (-1, 0, 10, 10), (0, 0, 25, 10), (20, 15, 5, 6),
     (0, 0, 7, 10), (0, 0, 10, 7)],
)
def test_bad_roi(roi):
    with pytest.raises(ValueError, match="roi"):
        enhance_roi(IMG, roi, patch=8)


@pytest.mark.parametrize(
    "kwargs, exc, name",
    [
        (dict(patch=0), ValueError, "patch"),
        (dict(patch=65), ValueError, "patch"),
        (dict(ksize=4), ValueError, "ksize"),
        (dict(ksize=9), ValueError, "ksize"),
        (dict(batch=0), ValueError, "batch"),
        (dict(steps=0), ValueError, "steps"),
        (dict(lr=0.0), ValueError, "lr"),
        (dict(lr=-1e-3), ValueError, "lr"),
        (dict(tol=-1.0), ValueError, "tol"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(target=np.zeros((20, 23, 3), np.uint8)), ValueError, "target"),
        (dict(target=np.zeros((20, 24, 3), np.uint16)), TypeError, "target"),
        (dict(backend="gpu"), ValueError, "backend"),
    ],
)
def test_bad_arguments(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        enhance_roi(IMG, (0, 0, 16, 16), **{"patch": 8, **kwargs})


def test_bad_images():
    with pytest.raises(ValueError, match="img"):
        enhance_roi(np.zeros((1, 20, 24, 3), np.uint8), (0, 0, 16, 16), patch=8)
    with pytest.raises(TypeError, match="img"):
        enhance_roi(np.zeros((20, 24), np.int32), (0, 0, 16, 16), patch=8)
    with pytest.raises(TypeError, match="img"):
        enhance_roi([[0, 1]], (0, 0, 1, 1), patch=1)


def test_public_export():
    assert gpuenhance.enhance_roi is enhance_roi


def test_the_old_module_name_still_works_and_warns(monkeypatch):
    import importlib
    import sys

    from gpuenhance import roi

    monkeypatch.delitem(sys.modules, "gpuenhance.local", raising=False)
    with pytest.warns(DeprecationWarning, match="gpuenhance.roi"):
        old = importlib.import_module("gpuenhance.local")
    assert old.enhance_roi is roi.enhance_roi
    assert old.EnhanceResult is roi.EnhanceResult
