"""bilateral_filter against cv2.bilateralFilter."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tolerances import tol

from gpuenhance import bilateral_filter

CV_BORDER = {"replicate": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT,
             "reflect_101": cv2.BORDER_REFLECT_101, "constant": cv2.BORDER_CONSTANT}


def oracle(img, d, sigma_color, sigma_space, border="reflect_101"):
    x = {2: img[None, :, :, None], 3: img[None], 4: img}[img.ndim]
    outs = [cv2.bilateralFilter(np.ascontiguousarray(im), d, sigma_color, sigma_space,
                                borderType=CV_BORDER[border]).reshape(im.shape) for im in x]
    out = np.stack(outs)
    return {2: out[0, :, :, 0], 3: out[0], 4: out}[img.ndim]


def sample(rng, shape, dtype):
    """Flat regions with edges plus noise: what the filter is for."""
    base = np.repeat(np.repeat(rng.random((3, 3) + shape[2:]), -(-shape[0] // 3), 0),
                     -(-shape[1] // 3), 1)[: shape[0], : shape[1]] if len(shape) >= 2 else None
    img = np.clip(base + 0.08 * rng.standard_normal(shape), 0, 1)
    return (img * 255).astype(np.uint8) if dtype == np.uint8 else img.astype(np.float32)


def check(out, img, *args, **kw):
    ref = oracle(img, *args, **kw)
    assert out.dtype == ref.dtype and out.shape == ref.shape
    np.testing.assert_allclose(out.astype(np.float64), ref.astype(np.float64),
                               **tol("bilateral_filter", img.dtype))


def colour_sigma(dtype, s):
    return s if dtype == np.uint8 else s / 255.0


@pytest.mark.equivalence("bilateral_filter")
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("shape", [(20, 23), (17, 19, 3), (15, 16, 1)])
@pytest.mark.parametrize("border", ["reflect_101", "replicate", "reflect", "constant"])
@pytest.mark.parametrize("d,sc,ss", [(5, 30.0, 3.0), (0, 50.0, 2.0), (9, 75.0, 75.0)])
def test_bilateral_equals_opencv(backend, rng, dtype, shape, border, d, sc, ss):
    img = sample(rng, shape, dtype)
    out = bilateral_filter(img, d, colour_sigma(dtype, sc), ss, border=border, backend=backend)
    check(out, img, d, colour_sigma(dtype, sc), ss, border)


@pytest.mark.equivalence("bilateral_filter")
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_bilateral_batch_and_edges(backend, rng, dtype):
    img = np.stack([sample(rng, (12, 14, 3), dtype) for _ in range(3)])
    out = bilateral_filter(img, 7, colour_sigma(dtype, 25.0), 4.0, backend=backend)
    check(out, img, 7, colour_sigma(dtype, 25.0), 4.0)
    step = np.zeros((8, 10), dtype)
    step[:, 5:] = 200 if dtype == np.uint8 else 0.8
    out = bilateral_filter(step, 5, colour_sigma(dtype, 10.0), 5.0, backend=backend)
    # the edge is preserved (float32: up to the rounding of sum / weight)
    np.testing.assert_allclose(out, step, **tol("bilateral_filter", dtype))


@pytest.mark.equivalence("bilateral_filter")
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), dtype=st.sampled_from([np.uint8, np.float32]), d=st.integers(0, 11),
       sc=st.floats(2.0, 120.0), ss=st.floats(0.5, 6.0), channels=st.sampled_from([1, 3]),
       border=st.sampled_from(sorted(CV_BORDER)))
def test_bilateral_hypothesis(backend, data, dtype, d, sc, ss, channels, border):
    h, w = data.draw(st.integers(1, 16)), data.draw(st.integers(1, 16))
    img = sample(np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))), (h, w, channels),
                 dtype)
    out = bilateral_filter(img, d, colour_sigma(dtype, sc), ss, border=border, backend=backend)
    check(out, img, d, colour_sigma(dtype, sc), ss, border)


BAD_CALLS = [
    (lambda i, b: bilateral_filter(i, 5, 0.0, 3.0, backend=b), ValueError, "sigma_color must be > 0"),
    (lambda i, b: bilateral_filter(i, 5, 10.0, -1, backend=b), ValueError, "sigma_space must be > 0"),
    (lambda i, b: bilateral_filter(i, -1, 10.0, 3.0, backend=b), ValueError, r"d must be in \[0, 129\]"),
    (lambda i, b: bilateral_filter(i, 5.0, 10.0, 3.0, backend=b), TypeError, "d must be an integer"),
    (lambda i, b: bilateral_filter(i, 0, 10.0, 50.0, backend=b), ValueError, "radius of 75"),
    (lambda i, b: bilateral_filter(i, 5, 10.0, 3.0, border="wrap", backend=b), ValueError, "border"),
    (lambda i, b: bilateral_filter(i.astype(np.uint16), 5, 10.0, 3.0, backend=b), TypeError,
     "img dtype"),
    (lambda i, b: bilateral_filter(np.zeros((5, 5, 4), np.uint8), 5, 10.0, 3.0, backend=b),
     ValueError, "1 channel or 3"),
]


@pytest.mark.parametrize("call,exc,match", BAD_CALLS)
def test_bad_arguments_raise_the_same_error_on_every_engine(backend, call, exc, match):
    with pytest.raises(exc, match=match):
        call(np.zeros((6, 7), np.uint8), backend)
