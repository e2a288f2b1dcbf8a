"""PSNR and SSIM against scikit-image (a test-only dependency) and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from gpuenhance import metrics
from tolerances import tol

# Agreement with skimage.metrics (absolute for SSIM on [-1, 1], relative for PSNR in dB;
# skimage computes float32 input in float32 while gpuenhance accumulates in float64).
SSIM_ATOL = tol("ssim", "float64")["atol"]
PSNR_RTOL = tol("psnr", "float64")["rtol"]


def noisy_pair(shape, dtype, seed, sigma=0.08):
    rng = np.random.default_rng(seed)
    full = 1.0 if np.dtype(dtype).kind == "f" else float(np.iinfo(dtype).max)
    ref = rng.random(shape)
    ref = (ref + np.roll(ref, 1, axis=0) + np.roll(ref, 1, axis=1)) / 3  # some structure
    test = np.clip(ref + rng.normal(0, sigma, shape), 0, 1)
    if full != 1.0:
        return np.rint(ref * full).astype(dtype), np.rint(test * full).astype(dtype)
    return ref.astype(dtype), test.astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(17, 23), (40, 57, 3)])
def test_psnr_matches_skimage(dtype, shape):
    ref, test = noisy_pair(shape, dtype, seed=1)
    kw = {"data_range": 1.0} if np.dtype(dtype).kind == "f" else {}
    expected = peak_signal_noise_ratio(ref, test, **kw)
    assert metrics.psnr(ref, test) == pytest.approx(expected, rel=PSNR_RTOL)


def test_psnr_closed_form_and_edge_cases():
    a = np.zeros((4, 4), np.uint8)
    b = a.copy()
    b[0, 0] = 16  # MSE = 256 / 16 = 16
    assert metrics.psnr(a, b) == pytest.approx(10 * np.log10(255**2 / 16), rel=1e-12)
    assert metrics.psnr(a, b, data_range=100) == pytest.approx(10 * np.log10(100**2 / 16), rel=1e-12)
    assert metrics.psnr(a, a) == float("inf")
    with pytest.raises(ValueError, match="test"):
        metrics.psnr(a, np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match="data_range"):
        metrics.psnr(a, b, data_range=0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(17, 23), (40, 57), (7, 9)])
@pytest.mark.parametrize("seed", [0, 1])
def test_ssim_matches_skimage_gray(dtype, shape, seed):
    ref, test = noisy_pair(shape, dtype, seed=seed, sigma=0.05 + 0.1 * seed)
    full = 1.0 if np.dtype(dtype).kind == "f" else float(np.iinfo(dtype).max)
    expected = structural_similarity(ref, test, data_range=full)
    assert metrics.ssim(ref, test) == pytest.approx(expected, abs=SSIM_ATOL)  # default range


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("channel_axis", [-1, 0])
def test_ssim_matches_skimage_colour(dtype, channel_axis):
    ref, test = noisy_pair((40, 57, 3), dtype, seed=3)
    if channel_axis == 0:
        ref, test = np.moveaxis(ref, -1, 0).copy(), np.moveaxis(test, -1, 0).copy()
    kw = {"data_range": 1.0} if np.dtype(dtype).kind == "f" else {}
    expected = structural_similarity(ref, test, channel_axis=channel_axis, **kw)
    got = metrics.ssim(ref, test, channel_axis=channel_axis)
    assert got == pytest.approx(expected, abs=SSIM_ATOL)


def test_ssim_explicit_data_range_and_volume():
    ref, test = noisy_pair((9, 10, 11), np.float64, seed=4)
    assert metrics.ssim(ref, test, data_range=2.0) == pytest.approx(
        structural_similarity(ref, test, data_range=2.0), abs=SSIM_ATOL
    )


def test_ssim_identity_and_errors():
    img, _ = noisy_pair((16, 16), np.uint8, seed=5)
    assert metrics.ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="7"):
        metrics.ssim(img[:6], img[:6])
    with pytest.raises(ValueError, match="test"):
        metrics.ssim(img, img[:, :-1])
    with pytest.raises(TypeError, match="reference"):
        metrics.ssim(img.astype(np.int32), img)
