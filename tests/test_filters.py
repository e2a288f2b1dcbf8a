"""median_filter and gaussian_filter against OpenCV and NumPy oracles."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view
from tolerances import tol

import gpuenhance
from gpuenhance import _backend, _gauss, gaussian_filter, median_filter
from gpuenhance._cpu import filters as cpu_filters

BORDERS = ("replicate", "reflect", "reflect_101", "constant")
NP_PAD = {"replicate": "edge", "reflect": "symmetric", "reflect_101": "reflect",
          "constant": "constant"}
CV_BORDER = {"replicate": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT,
             "reflect_101": cv2.BORDER_REFLECT_101, "constant": cv2.BORDER_CONSTANT}
DTYPES = (np.uint8, np.uint16, np.float32, np.float64)


# ----------------------------------------------------------------------------- helpers


def rand_image(rng, shape, dtype, levels=None):
    """Random image; *levels* limits integers to a few values (many ties for the median)."""
    dtype = np.dtype(dtype)
    if levels is not None:
        return rng.integers(0, levels, shape).astype(dtype)
    if dtype == np.uint8:
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if dtype == np.uint16:
        return rng.integers(0, 65536, shape, dtype=np.uint16)
    return rng.standard_normal(shape).astype(dtype)


def as4(img):
    """(N, H, W, C) view of an oracle input (independent of gpuenhance._image)."""
    return {2: img[None, :, :, None], 3: img[None], 4: img}[img.ndim]


def back(out4, ndim):
    return {2: out4[0, :, :, 0], 3: out4[0], 4: out4}[ndim]


def median_oracle(img, ksize, border):
    """np.median over each window of the np.pad'ed image."""
    r = ksize // 2
    x = as4(img)
    p = np.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode=NP_PAD[border])
    win = sliding_window_view(p, (ksize, ksize), axis=(1, 2))  # (N, H, W, C, k, k)
    out = np.median(win, axis=(-2, -1)).astype(img.dtype)
    return back(out, img.ndim)


def gauss_oracle(img, kx, ky, sx, sy, border):
    """Float64 separable convolution with OpenCV's own taps over the np.pad'ed image."""
    tx = cv2.getGaussianKernel(kx, sx, cv2.CV_64F).ravel()
    ty = cv2.getGaussianKernel(ky, sy, cv2.CV_64F).ravel()
    x = as4(img).astype(np.float64)
    rx, ry = kx // 2, ky // 2
    p = np.pad(x, ((0, 0), (ry, ry), (rx, rx), (0, 0)), mode=NP_PAD[border])
    h, w = x.shape[1:3]
    v = sum(ty[i] * p[:, i:i + h] for i in range(ky))
    out = sum(tx[j] * v[:, :, j:j + w] for j in range(kx))
    return back(out, img.ndim)


def cv_gauss(img, ksize, sigma, sigma_y, border):
    """cv2.GaussianBlur applied image by image (any layout)."""
    x = as4(img)
    outs = []
    for im in x:
        res = cv2.GaussianBlur(np.ascontiguousarray(im), ksize, sigma, sigmaY=sigma_y,
                               borderType=CV_BORDER[border])
        outs.append(res.reshape(im.shape))
    return back(np.stack(outs), img.ndim)


def cv_median(img, ksize):
    x = as4(img)
    outs = [cv2.medianBlur(np.ascontiguousarray(im), ksize).reshape(im.shape) for im in x]
    return back(np.stack(outs), img.ndim)


def assert_close(out, ref, op):
    """Compare with the tolerance table, in float64 (no unsigned wrap-around)."""
    assert out.dtype == ref.dtype
    assert out.shape == ref.shape
    np.testing.assert_allclose(out.astype(np.float64), ref.astype(np.float64), **tol(op, out.dtype))


def border_index(i, n, border):
    """OpenCV's borderInterpolate, by its definition (repeated reflection)."""
    if border == "replicate":
        return min(max(i, 0), n - 1)
    if n == 1:
        return 0
    delta = 1 if border == "reflect_101" else 0
    while not 0 <= i < n:
        i = -i - 1 + delta if i < 0 else 2 * n - 1 - i - delta
    return i


# ------------------------------------------------------------------ the oracles themselves


@pytest.mark.parametrize("border", ["replicate", "reflect", "reflect_101"])
@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("r", [1, 4, 13])
def test_np_pad_modes_follow_opencv_border_rules(border, n, r):
    a = np.arange(n, dtype=np.float32)
    expect = np.array([a[border_index(i, n, border)] for i in range(-r, n + r)])
    np.testing.assert_array_equal(np.pad(a, r, mode=NP_PAD[border]), expect)
    cv = cv2.copyMakeBorder(a[None, :], 0, 0, r, r, CV_BORDER[border])[0]
    np.testing.assert_array_equal(cv, expect)


# -------------------------------------------------------------------------------- median


@pytest.mark.parametrize(
    "dtype,ksize",
    [(np.uint8, 3), (np.uint8, 5), (np.uint8, 7), (np.uint8, 9), (np.uint8, 31),
     (np.uint16, 3), (np.uint16, 5), (np.float32, 3), (np.float32, 5)],
)
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_median_equals_opencv(rng, dtype, ksize, channels):
    img = rand_image(rng, (17, 23, channels), dtype)
    if channels == 1:
        img = img[:, :, 0]
    out = median_filter(img, ksize)
    np.testing.assert_array_equal(out, cv2.medianBlur(img, ksize))
    assert out.dtype == img.dtype and out.shape == img.shape


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ksize", [3, 7])
def test_median_borders_against_numpy(rng, border, dtype, ksize):
    img = rand_image(rng, (17, 23, 3), dtype)
    out = median_filter(img, ksize, border=border)
    np.testing.assert_array_equal(out, median_oracle(img, ksize, border))


@pytest.mark.parametrize("dtype", DTYPES)
def test_median_with_many_ties(rng, dtype):
    img = rand_image(rng, (17, 23), dtype, levels=3)
    for k in (3, 5, 9):
        np.testing.assert_array_equal(median_filter(img, k, border="reflect"),
                                      median_oracle(img, k, "reflect"))


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (2, 3), (3, 4, 2)])
@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_median_window_larger_than_image(rng, shape, border, dtype):
    img = rand_image(rng, shape, dtype)
    for k in (5, 15):
        np.testing.assert_array_equal(median_filter(img, k, border=border),
                                      median_oracle(img, k, border))


def test_median_window_larger_than_image_equals_opencv(rng):
    img = rand_image(rng, (3, 4), np.uint8)
    np.testing.assert_array_equal(median_filter(img, 31), cv2.medianBlur(img, 31))


@pytest.mark.parametrize(
    "shape", [(17, 23), (17, 23, 1), (17, 23, 2), (17, 23, 3), (17, 23, 4), (17, 23, 5),
              (2, 9, 11, 3), (3, 8, 7, 1), (2, 6, 5, 5)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_median_layouts(rng, shape, dtype):
    img = rand_image(rng, shape, dtype)
    for k in (3, 7):
        out = median_filter(img, k, border="reflect_101")
        assert out.shape == img.shape and out.dtype == img.dtype
        np.testing.assert_array_equal(out, median_oracle(img, k, "reflect_101"))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("channels", [2, 5])
def test_median_unsupported_channel_counts_match_opencv_per_channel(rng, dtype, channels):
    img = rand_image(rng, (17, 23, channels), dtype)
    for k in (3, 5):
        ref = np.stack([cv2.medianBlur(np.ascontiguousarray(img[:, :, c]), k)
                        for c in range(channels)], axis=-1)
        np.testing.assert_array_equal(median_filter(img, k), ref)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_median_non_contiguous(rng, dtype):
    base = rand_image(rng, (17, 46, 3), dtype)
    for img in (base[:, ::2], base.transpose(1, 0, 2), base[::-1, :, 1]):
        assert not img.flags.c_contiguous
        for k in (3, 7):
            np.testing.assert_array_equal(median_filter(img, k, border="reflect"),
                                          median_oracle(np.ascontiguousarray(img), k, "reflect"))


def test_median_ksize_1_is_a_copy(rng):
    img = rand_image(rng, (5, 6, 3), np.float32)
    out = median_filter(img, 1)
    np.testing.assert_array_equal(out, img)
    assert not np.shares_memory(out, img)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_median_largest_window(rng, dtype):
    img = rand_image(rng, (3, 5), dtype)
    np.testing.assert_array_equal(median_filter(img, 255, border="reflect_101"),
                                  median_oracle(img, 255, "reflect_101"))


def test_median_numpy_path_in_small_chunks(rng, monkeypatch):
    monkeypatch.setattr(cpu_filters, "_MEDIAN_CHUNK_BYTES", 1)  # one row per chunk
    img = rand_image(rng, (9, 11, 2), np.float64)
    np.testing.assert_array_equal(median_filter(img, 5, border="constant"),
                                  median_oracle(img, 5, "constant"))


_layouts = st.sampled_from([2, 3, 4])


@st.composite
def image_cases(draw, dtypes=DTYPES, max_side=12):
    ndim = draw(_layouts)
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    shape = (h, w)
    if ndim >= 3:
        shape = shape + (draw(st.integers(1, 5)),)
    if ndim == 4:
        shape = (draw(st.integers(1, 2)),) + shape
    dtype = draw(st.sampled_from(dtypes))
    seed = draw(st.integers(0, 2**32 - 1))
    img = rand_image(np.random.default_rng(seed), shape, dtype)
    return img


@settings(max_examples=20)
@given(img=image_cases(), ksize=st.sampled_from([1, 3, 5, 7, 11, 21]),
       border=st.sampled_from(BORDERS))
def test_median_hypothesis(img, ksize, border):
    out = median_filter(img, ksize, border=border)
    np.testing.assert_array_equal(out, median_oracle(img, ksize, border))


@pytest.mark.equivalence("median_filter")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ksize,border", [(3, "replicate"), (5, "reflect"),
                                          (7, "reflect_101"), (9, "constant")])
def test_median_equivalence(backend, rng, dtype, ksize, border):
    img = rand_image(rng, (2, 13, 17, 3), dtype)
    out = median_filter(img, ksize, border=border, backend=backend)
    assert_close(out, median_oracle(img, ksize, border), "median_filter")
    if border == "replicate" and not (dtype in (np.uint16, np.float32) and ksize > 5) \
            and dtype != np.float64:
        assert_close(out, cv_median(img, ksize), "median_filter")


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(ksize=4), ValueError, "ksize"),
        (dict(ksize=0), ValueError, "ksize"),
        (dict(ksize=-3), ValueError, "ksize"),
        (dict(ksize=257), ValueError, "ksize"),
        (dict(ksize=3.0), TypeError, "ksize"),
        (dict(ksize=True), TypeError, "ksize"),
        (dict(ksize=3, border="wrap"), ValueError, "border"),
        (dict(ksize=3, backend="gpu"), ValueError, "backend"),
    ],
)
def test_median_errors(kwargs, exc, match):
    img = np.zeros((5, 5), np.uint8)
    with pytest.raises(exc, match=match):
        median_filter(img, **kwargs)


@pytest.mark.parametrize(
    "img,exc",
    [
        (np.zeros((5, 5), np.int32), TypeError),
        (np.zeros((5, 5), np.float16), TypeError),
        (np.zeros((5,), np.uint8), ValueError),
        (np.zeros((1, 2, 5, 5, 1), np.uint8), ValueError),
        (np.zeros((0, 5), np.uint8), ValueError),
        ([[1, 2], [3, 4]], TypeError),
    ],
)
def test_filters_reject_bad_images(img, exc):
    with pytest.raises(exc, match="img"):
        median_filter(img, 3)
    with pytest.raises(exc, match="img"):
        gaussian_filter(img, 3)


@pytest.mark.skipif(_backend.cuda_available(), reason="a GPU works here")
def test_cuda_backend_unavailable_raises():
    img = np.zeros((5, 5), np.uint8)
    with pytest.raises(gpuenhance.BackendUnavailableError):
        median_filter(img, 3, backend="cuda")
    with pytest.raises(gpuenhance.BackendUnavailableError):
        gaussian_filter(img, 3, backend="cuda")


# ------------------------------------------------------------------------- Gaussian taps


@pytest.mark.parametrize("ksize", [1, 3, 5, 7, 9])
def test_taps_small_tables_equal_opencv(ksize):
    for sigma in (0.0, -1.0):
        np.testing.assert_array_equal(_gauss.taps(ksize, sigma),
                                      cv2.getGaussianKernel(ksize, sigma, cv2.CV_64F).ravel())


@pytest.mark.parametrize("ksize", [1, 3, 5, 9, 11, 13, 31, 61, 101, 255])
@pytest.mark.parametrize("sigma", [0.0, 0.3, 0.8, 1.7, 4.0, 33.0])
def test_taps_equal_opencv(ksize, sigma):
    t = _gauss.taps(ksize, sigma)
    ref = cv2.getGaussianKernel(ksize, sigma, cv2.CV_64F).ravel()
    assert t.dtype == np.float64 and t.shape == (ksize,)
    # OpenCV evaluates exp in software double precision: last bits only.
    np.testing.assert_allclose(t, ref, rtol=1e-13, atol=1e-200)
    np.testing.assert_allclose(t.sum(), 1.0, rtol=1e-14)


@pytest.mark.parametrize("dtype,bits", [(np.uint8, 8), (np.uint16, 16)])
@pytest.mark.parametrize("ksize,sigma", [(3, 0.0), (9, 0.0), (11, 0.0), (15, 2.0), (25, 4.0),
                                         (31, 5.0), (7, 0.3), (61, 10.0)])
def test_opencv_fixed_point_taps_reproduce_opencv(rng, dtype, bits, ksize, sigma):
    """Exact accumulation of the quantised taps + round-half-up == cv2.GaussianBlur."""
    t = _gauss.opencv_taps(ksize, sigma, dtype)
    assert t.sum() == 1.0
    np.testing.assert_array_equal(t * 2**bits, np.rint(t * 2**bits))
    img = rand_image(rng, (17, 23), dtype)
    p = np.pad(img.astype(np.float64), ksize // 2, mode="reflect")
    v = sum(t[i] * p[i:i + 17] for i in range(ksize))
    exact = sum(t[j] * v[:, j:j + 23] for j in range(ksize))
    ref = cv2.GaussianBlur(img, (ksize, ksize), sigma)
    np.testing.assert_array_equal(np.floor(exact + 0.5).astype(dtype), ref)


def test_opencv_taps_float():
    np.testing.assert_array_equal(_gauss.opencv_taps(13, 2.0, np.float64), _gauss.taps(13, 2.0))
    np.testing.assert_array_equal(
        _gauss.opencv_taps(13, 2.0, np.float32),
        cv2.getGaussianKernel(13, 2.0, cv2.CV_32F).ravel().astype(np.float64))


@pytest.mark.parametrize(
    "args,expect",
    [
        ((3, 0.0, None, np.uint8), (3, 3, 0.0, 0.0)),
        (((5, 7), 0.0, None, np.float32), (5, 7, 0.0, 0.0)),
        ((0, 1.0, None, np.uint8), (7, 7, 1.0, 1.0)),       # 1*3*2+1
        ((0, 1.0, None, np.float32), (9, 9, 1.0, 1.0)),     # 1*4*2+1
        ((0, 1.0, None, np.uint16), (9, 9, 1.0, 1.0)),
        ((0, 0.25, None, np.uint8), (3, 3, 0.25, 0.25)),    # rint(2.5) = 2, | 1 = 3
        ((0, 2.0, 0.5, np.float64), (17, 5, 2.0, 0.5)),
        ((0, 2.0, 0.0, np.float64), (17, 17, 2.0, 2.0)),
        (((0, 5), 1.5, None, np.uint8), (11, 5, 1.5, 1.5)),  # rint(10) | 1 = 11
        (((3, 0), 0.0, 1.0, np.float32), (3, 9, 0.0, 1.0)),
    ],
)
def test_resolve_rules(args, expect):
    assert _gauss.resolve(*args) == expect


def test_effective_sigma():
    assert _gauss.effective_sigma(3, 0.0) == pytest.approx(0.8)
    assert _gauss.effective_sigma(11, 0.0) == pytest.approx(0.3 * (5 - 1) + 0.8)
    assert _gauss.effective_sigma(11, 2.5) == 2.5


# ------------------------------------------------------------------------------ Gaussian


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("ksize,sigma,sigma_y", [(3, 0.0, None), (5, 1.2, None), (9, 0.0, None),
                                                 ((7, 3), 2.0, 0.7), (0, 1.6, None),
                                                 (15, 0.0, None)])
def test_gaussian_equals_opencv(rng, dtype, border, ksize, sigma, sigma_y):
    img = rand_image(rng, (17, 23, 3), dtype)
    k = (ksize, ksize) if isinstance(ksize, int) else ksize
    ref = cv_gauss(img, k, sigma, sigma_y or 0, border)
    out = gaussian_filter(img, ksize, sigma, sigma_y=sigma_y, border=border)
    assert_close(out, ref, "gaussian_filter")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("border", BORDERS)
def test_gaussian_against_numpy_oracle(rng, dtype, border):
    """Independent of OpenCV's filtering: constant border = zero padding, etc."""
    img = rand_image(rng, (2, 11, 13, 2), dtype)
    out = gaussian_filter(img, (5, 9), 1.1, sigma_y=2.3, border=border)
    ref = gauss_oracle(img, 5, 9, 1.1, 2.3, border).astype(dtype)
    assert_close(out, ref, "gaussian_filter")


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 3), (3, 2, 4)])
@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_gaussian_window_larger_than_image(rng, shape, border, dtype):
    img = rand_image(rng, shape, dtype)
    out = gaussian_filter(img, 31, 5.0, border=border)
    assert_close(out, cv_gauss(img, (31, 31), 5.0, 0, border), "gaussian_filter")
    if dtype == np.float32:
        assert_close(out, gauss_oracle(img, 31, 31, 5.0, 5.0, border).astype(dtype),
                     "gaussian_filter")


@pytest.mark.parametrize(
    "shape", [(17, 23), (17, 23, 1), (17, 23, 2), (17, 23, 4), (17, 23, 5), (17, 23, 9),
              (3, 9, 11, 3), (2, 8, 7, 1)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_layouts(rng, shape, dtype):
    img = rand_image(rng, shape, dtype)
    out = gaussian_filter(img, 5, 1.3)
    assert out.shape == img.shape and out.dtype == img.dtype
    assert_close(out, cv_gauss(img, (5, 5), 1.3, 0, "reflect_101"), "gaussian_filter")


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_gaussian_non_contiguous(rng, dtype):
    base = rand_image(rng, (17, 46, 3), dtype)
    for img in (base[:, ::2], base.transpose(1, 0, 2), base[::-1, :, 2]):
        assert not img.flags.c_contiguous
        out = gaussian_filter(img, 7, 0.0, border="reflect")
        assert_close(out, cv_gauss(np.ascontiguousarray(img), (7, 7), 0, 0, "reflect"),
                     "gaussian_filter")


def test_gaussian_ksize_1_is_identity(rng):
    img = rand_image(rng, (5, 6, 3), np.float32)
    np.testing.assert_array_equal(gaussian_filter(img, 1), img)


@settings(max_examples=20)
@given(img=image_cases(), kx=st.sampled_from([0, 1, 3, 5, 9, 13]),
       ky=st.sampled_from([0, 1, 3, 7]), sigma=st.sampled_from([0.0, 0.6, 1.5, 3.0]),
       sigma_y=st.sampled_from([None, 0.0, 0.9, 2.2]), border=st.sampled_from(BORDERS))
def test_gaussian_hypothesis(img, kx, ky, sigma, sigma_y, border):
    if (kx == 0 and sigma == 0) or (ky == 0 and not sigma_y and sigma == 0):
        with pytest.raises(ValueError, match="sigma"):
            gaussian_filter(img, (kx, ky), sigma, sigma_y=sigma_y, border=border)
        return
    out = gaussian_filter(img, (kx, ky), sigma, sigma_y=sigma_y, border=border)
    assert_close(out, cv_gauss(img, (kx, ky), sigma, sigma_y or 0, border), "gaussian_filter")


@pytest.mark.equivalence("gaussian_filter")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ksize,sigma,sigma_y,border", [
    (3, 0.0, None, "reflect_101"), (0, 1.5, None, "reflect"), ((9, 5), 2.0, 0.8, "replicate"),
    (21, 3.0, None, "constant"), (13, 0.0, None, "reflect_101")])
def test_gaussian_equivalence(backend, rng, dtype, ksize, sigma, sigma_y, border):
    img = rand_image(rng, (2, 13, 17, 3), dtype)
    if np.dtype(dtype).kind == "u":
        img[0, :, :8] = np.iinfo(dtype).max  # a saturated edge
    k = (ksize, ksize) if isinstance(ksize, int) else ksize
    out = gaussian_filter(img, ksize, sigma, sigma_y=sigma_y, border=border, backend=backend)
    assert_close(out, cv_gauss(img, k, sigma, sigma_y or 0, border), "gaussian_filter")


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(ksize=4), ValueError, "ksize"),
        (dict(ksize=-3), ValueError, "ksize"),
        (dict(ksize=(3, 4)), ValueError, "ksize"),
        (dict(ksize=(3, 3, 3)), ValueError, "ksize"),
        (dict(ksize=3.0), TypeError, "ksize"),
        (dict(ksize="3"), TypeError, "ksize"),
        (dict(ksize=0, sigma=0.0), ValueError, "sigma"),
        (dict(), ValueError, "sigma"),
        (dict(ksize=(3, 0), sigma=0.0), ValueError, "sigma_y"),
        (dict(ksize=3, sigma=-1.0), ValueError, "sigma"),
        (dict(ksize=3, sigma=float("nan")), ValueError, "sigma"),
        (dict(ksize=3, sigma=float("inf")), ValueError, "sigma"),
        (dict(ksize=3, sigma="1"), TypeError, "sigma"),
        (dict(ksize=3, sigma_y=-0.5), ValueError, "sigma_y"),
        (dict(ksize=3, border="wrap"), ValueError, "border"),
        (dict(ksize=3, backend="cuda-fast"), ValueError, "backend"),
    ],
)
def test_gaussian_errors(kwargs, exc, match):
    img = np.zeros((5, 5), np.float32)
    with pytest.raises(exc, match=match):
        gaussian_filter(img, **kwargs)
