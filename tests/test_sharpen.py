"""unsharp_mask against the float64 formula with OpenCV's Gaussian taps and ksize rule."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage
from tolerances import tol

from gpuenhance import unsharp_mask

DTYPES = (np.uint8, np.uint16, np.float32)


def opencv_ksize(sigma, dtype):
    return int(round(sigma * (3 if np.dtype(dtype) == np.uint8 else 4) * 2 + 1)) | 1


def oracle(img, sigma, amount, threshold):
    """(result, ambiguous): the formula in float64; `ambiguous` marks |d| within float32
    rounding of the threshold, where either side of the comparison is right."""
    k = opencv_ksize(sigma, img.dtype)
    taps = cv2.getGaussianKernel(k, sigma, ktype=cv2.CV_64F).ravel()
    x = {2: img[None, :, :, None], 3: img[None], 4: img}[img.ndim].astype(np.float64)
    blur = ndimage.correlate1d(x, taps, axis=1, mode="mirror")  # mirror = reflect-101
    blur = ndimage.correlate1d(blur, taps, axis=2, mode="mirror")
    d = x - blur
    out = np.where(np.abs(d) > threshold, x + amount * d, x)
    scale = np.iinfo(img.dtype).max if img.dtype.kind == "u" else 1.0
    ambiguous = np.abs(np.abs(d) - threshold) < 1e-5 * scale
    if img.dtype.kind == "u":
        out = np.clip(np.rint(out), 0, np.iinfo(img.dtype).max)
    shape = img.shape
    return out.reshape(shape).astype(img.dtype), ambiguous.reshape(shape)


def sample(rng, shape, dtype):
    top = np.iinfo(dtype).max if np.dtype(dtype).kind == "u" else 1.0
    smooth = ndimage.gaussian_filter(rng.random(shape), 1.5)  # edges and flat parts
    img = np.clip(smooth * 2.5 - 0.75 + 0.05 * rng.random(shape), 0, 1) * top
    return np.rint(img).astype(dtype) if np.dtype(dtype).kind == "u" else img.astype(dtype)


def check(out, img, sigma, amount, threshold):
    ref, ambiguous = oracle(img, sigma, amount, threshold)
    assert out.dtype == img.dtype and out.shape == img.shape
    keep = ~ambiguous
    np.testing.assert_allclose(out[keep].astype(np.float64), ref[keep].astype(np.float64),
                               **tol("unsharp_mask", img.dtype))


@pytest.mark.equivalence("unsharp_mask")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(23, 29), (19, 21, 3), (2, 13, 17, 1), (9, 11, 5), (1, 6)])
@pytest.mark.parametrize("sigma,amount,threshold", [(1.0, 1.0, 0), (0.6, 2.5, 0),
                                                    (2.0, 0.8, 3)])
def test_unsharp_mask_equals_the_formula(backend, rng, dtype, shape, sigma, amount, threshold):
    img = sample(rng, shape, dtype)
    if np.dtype(dtype) == np.float32:
        threshold = threshold / 255.0
    check(unsharp_mask(img, sigma, amount, threshold, backend=backend), img, sigma, amount,
          threshold)


@pytest.mark.equivalence("unsharp_mask")
@pytest.mark.parametrize("dtype", DTYPES)
def test_unsharp_mask_wide_sigma_takes_two_passes(backend, rng, dtype):
    from gpuenhance._cuda.sharpen import _SMEM_LIMIT, tile_shared_bytes

    sigma = 16.0
    assert tile_shared_bytes(opencv_ksize(sigma, dtype) // 2) > _SMEM_LIMIT
    img = sample(rng, (2, 12, 15, 2), dtype)
    check(unsharp_mask(img, sigma, 1.2, backend=backend), img, sigma, 1.2, 0.0)


@pytest.mark.equivalence("unsharp_mask")
def test_unsharp_mask_threshold_leaves_flat_areas_and_saturates(backend):
    img = np.full((12, 12), 100, np.uint8)
    img[6:, :] = 250
    out = unsharp_mask(img, 1.0, 3.0, 5, backend=backend)
    assert out[0, 0] == 100 and out[-1, -1] == 250  # far from the edge: |d| <= threshold
    assert out[6, 3] == 255 and out[5, 3] < 100  # overshoot saturates, undershoot darkens
    check(out, img, 1.0, 3.0, 5)


@pytest.mark.equivalence("unsharp_mask")
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), dtype=st.sampled_from(DTYPES), sigma=st.floats(0.3, 4.0),
       amount=st.floats(0.0, 3.0), threshold=st.integers(0, 10))
def test_unsharp_mask_hypothesis(backend, data, dtype, sigma, amount, threshold):
    h, w = data.draw(st.integers(1, 24)), data.draw(st.integers(1, 24))
    img = sample(np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))), (h, w, 3), dtype)
    if np.dtype(dtype) == np.float32:
        threshold = threshold / 255.0
    check(unsharp_mask(img, sigma, amount, threshold, backend=backend), img, sigma, amount,
          threshold)


BAD_CALLS = [
    (lambda i, b: unsharp_mask(i, 0, backend=b), ValueError, "sigma must be > 0"),
    (lambda i, b: unsharp_mask(i, float("inf"), backend=b), ValueError, "sigma must be finite"),
    (lambda i, b: unsharp_mask(i, 1.0, -1, backend=b), ValueError, "amount must be >= 0"),
    (lambda i, b: unsharp_mask(i, 1.0, 1.0, -2, backend=b), ValueError, "threshold must be >= 0"),
    (lambda i, b: unsharp_mask(i, "1", backend=b), TypeError, "sigma must be a real number"),
    (lambda i, b: unsharp_mask(i.astype(np.float64), backend=b), TypeError, "img dtype"),
]


@pytest.mark.parametrize("call,exc,match", BAD_CALLS)
def test_bad_arguments_raise_the_same_error_on_every_engine(backend, call, exc, match):
    with pytest.raises(exc, match=match):
        call(np.zeros((6, 7), np.uint8), backend)
