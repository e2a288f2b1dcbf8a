"""white_balance, auto_contrast and tone_curve against NumPy statistics and SciPy's PCHIP."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.interpolate import PchipInterpolator
from tolerances import tol

from gpuenhance import auto_contrast, tone_curve, white_balance

DTYPES = (np.uint8, np.uint16, np.float32)
SHAPES = [(13, 17, 3), (2, 9, 11, 3), (3, 7, 5, 1), (11, 12), (6, 8, 4)]
FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def image(rng, shape, dtype, cast=(0.9, 0.6, 1.0, 0.8)):
    """A colour-cast image: channel c scaled by cast[c % 4]."""
    base = rng.random(shape)
    if len(shape) >= 3:
        base = base * np.array([cast[c % 4] for c in range(shape[-1])])
    dtype = np.dtype(dtype)
    if dtype.kind == "u":
        return np.rint(base * 0.8 * np.iinfo(dtype).max).astype(dtype)
    return base.astype(np.float32)


def full(dtype):
    dtype = np.dtype(dtype)
    return float(np.iinfo(dtype).max) if dtype.kind == "u" else 1.0


def nhwc(img):
    return {2: img[None, :, :, None], 3: img[None], 4: img}[img.ndim]


def back(out, ndim):
    return {2: out[0, :, :, 0], 3: out[0], 4: out}[ndim]


def apply_gains(im, gains):
    """One (H, W, C) image times per-channel gains: tables rint(v * g) for integers."""
    if im.dtype.kind == "u":
        top = np.iinfo(im.dtype).max
        out = np.rint(im.astype(np.float64) * np.asarray(gains, dtype=np.float64))
        return np.clip(out, 0, top).astype(im.dtype)
    return (im * np.asarray(gains, dtype=np.float32)).astype(np.float32)


def gray_world_oracle(img):
    out = []
    for im in nhwc(img):
        c = im.shape[-1]
        if im.dtype.kind == "u":
            means = [int(im[:, :, k].sum(dtype=np.int64)) / im[:, :, k].size for k in range(c)]
        else:
            means = [float(im[:, :, k].mean(dtype=np.float64)) for k in range(c)]
        target = sum(means) / c
        out.append(apply_gains(im, [target / m if m > 0 else 1.0 for m in means]))
    return back(np.stack(out), img.ndim)


def white_patch_oracle(img, q):
    out = []
    for im in nhwc(img):
        vals = [float(np.percentile(im[:, :, k], q, method="inverted_cdf"))
                for k in range(im.shape[-1])]
        out.append(apply_gains(im, [full(im.dtype) / v if v > 0 else 1.0 for v in vals]))
    return back(np.stack(out), img.ndim)


def stretch(im, lo, hi):
    """One channel (or image) stretched from [lo, hi] to the full range."""
    if hi <= lo:
        return im
    if im.dtype.kind == "u":
        top = float(np.iinfo(im.dtype).max)
        t = np.rint((im.astype(np.float64) - lo) * (top / (hi - lo)))
        return np.clip(t, 0, top).astype(im.dtype)
    t = (im - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    return np.clip(t, 0, 1).astype(np.float32)


def auto_contrast_oracle(img, low, high, per_channel):
    out = []
    for im in nhwc(img):
        if per_channel:
            planes = []
            for k in range(im.shape[-1]):
                lo, hi = np.percentile(im[:, :, k], [low, high], method="inverted_cdf")
                planes.append(stretch(im[:, :, k], float(lo), float(hi)))
            out.append(np.stack(planes, axis=-1))
        else:
            lo, hi = np.percentile(im, [low, high], method="inverted_cdf")
            out.append(stretch(im, float(lo), float(hi)))
    return back(np.stack(out), img.ndim)


def curve_oracle(img, points):
    pts = np.asarray(points, dtype=np.float64)
    curve = PchipInterpolator(pts[:, 0], pts[:, 1])
    if img.dtype.kind == "u":
        top = float(np.iinfo(img.dtype).max)
        table = curve(np.clip(np.arange(int(top) + 1) / top, pts[0, 0], pts[-1, 0]))
        return np.clip(np.rint(table * top), 0, top).astype(img.dtype)[img]
    return curve(np.clip(img.astype(np.float64), pts[0, 0], pts[-1, 0])).astype(np.float32)


def assert_matches(out, ref, op):
    assert out.dtype == ref.dtype and out.shape == ref.shape
    np.testing.assert_allclose(out.astype(np.float64), ref.astype(np.float64),
                               **tol(op, out.dtype), equal_nan=True)


# ------------------------------------------------------------------------- white_balance


@pytest.mark.equivalence("white_balance")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_white_balance_gray_world(backend, rng, dtype, shape):
    img = image(rng, shape, dtype)
    assert_matches(white_balance(img, backend=backend), gray_world_oracle(img), "white_balance")


@pytest.mark.equivalence("white_balance")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("q", [99.0, 50.0, 100.0, 0.1])
def test_white_balance_white_patch(backend, rng, dtype, q):
    img = image(rng, (2, 15, 13, 3), dtype)
    out = white_balance(img, "white_patch", percentile=q, backend=backend)
    assert_matches(out, white_patch_oracle(img, q), "white_balance")


@pytest.mark.equivalence("white_balance")
@pytest.mark.parametrize("dtype", DTYPES)
def test_white_balance_gains_saturate(backend, rng, dtype):
    img = image(rng, (9, 10, 3), dtype)
    gains = (1.7, 0.0, 1.0)
    out = white_balance(img, "gains", gains=gains, backend=backend)
    assert_matches(out, apply_gains(img, gains), "white_balance")
    if np.dtype(dtype).kind == "u":
        assert out[..., 0].max() == np.iinfo(dtype).max  # saturated, not wrapped


@pytest.mark.equivalence("white_balance")
def test_white_balance_zero_channel_keeps_gain_one(backend, rng):
    img = image(rng, (6, 7, 3), np.uint8)
    img[..., 1] = 0
    out = white_balance(img, backend=backend)
    np.testing.assert_array_equal(out[..., 1], 0)
    assert_matches(out, gray_world_oracle(img), "white_balance")


# ------------------------------------------------------------------------- auto_contrast


@pytest.mark.equivalence("auto_contrast")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("per_channel", [False, True])
def test_auto_contrast_equals_numpy_percentiles(backend, rng, dtype, shape, per_channel):
    img = image(rng, shape, dtype)
    out = auto_contrast(img, 1.0, 99.0, per_channel=per_channel, backend=backend)
    assert_matches(out, auto_contrast_oracle(img, 1.0, 99.0, per_channel), "auto_contrast")


@pytest.mark.equivalence("auto_contrast")
@pytest.mark.parametrize("dtype", DTYPES)
def test_auto_contrast_flat_image_is_unchanged(backend, dtype):
    img = np.full((2, 5, 4, 3), 0.25 if dtype == np.float32 else 40, dtype=dtype)
    np.testing.assert_array_equal(auto_contrast(img, backend=backend), img)


@pytest.mark.equivalence("auto_contrast", "white_balance")
@FIXTURE_OK
@given(
    data=st.data(),
    shape=st.sampled_from([(5, 4, 3), (2, 3, 6, 2), (9, 1), (1, 7, 4)]),
    dtype=st.sampled_from(DTYPES),
    low=st.floats(0, 49),
    high=st.floats(51, 100),
    per_channel=st.booleans(),
)
def test_levels_hypothesis(backend, data, shape, dtype, low, high, per_channel):
    img = image(np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))), shape, dtype)
    out = auto_contrast(img, low, high, per_channel=per_channel, backend=backend)
    assert_matches(out, auto_contrast_oracle(img, low, high, per_channel), "auto_contrast")
    out = white_balance(img, "white_patch", percentile=high, backend=backend)
    assert_matches(out, white_patch_oracle(img, high), "white_balance")


# ---------------------------------------------------------------------------- tone_curve

CURVES = [
    [(0, 0), (1, 1)],
    [(0, 0), (0.5, 0.6), (1, 1)],
    [(0, 0.1), (0.2, 0.1), (0.4, 0.5), (0.9, 0.95), (1, 1)],  # a flat part stays flat
    [(0.1, 0.0), (0.3, 0.7), (0.6, 0.4), (0.8, 0.9)],  # non-monotone data, clipped ends
    [(0, 1), (0.3, 0.8), (1, 0)],  # decreasing
]


@pytest.mark.equivalence("tone_curve")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("points", CURVES)
def test_tone_curve_equals_scipy_pchip(backend, rng, dtype, points):
    img = image(rng, (2, 11, 13, 3), dtype)
    if np.dtype(dtype) == np.float32:
        img.flat[:4] = [np.nan, -0.5, 1.5, 0.0]
    assert_matches(tone_curve(img, points, backend=backend), curve_oracle(img, points),
                   "tone_curve")


@pytest.mark.equivalence("tone_curve")
@FIXTURE_OK
@given(data=st.data(), k=st.integers(2, 7), dtype=st.sampled_from(DTYPES))
def test_tone_curve_hypothesis(backend, data, k, dtype):
    xs = sorted(set(data.draw(st.lists(st.integers(0, 1000), min_size=k, max_size=k))))
    if len(xs) < 2:
        xs = [0, 1000]
    ys = data.draw(st.lists(st.integers(0, 1000), min_size=len(xs), max_size=len(xs)))
    points = [(x / 1000, y / 1000) for x, y in zip(xs, ys)]
    img = image(np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))), (7, 9), dtype)
    assert_matches(tone_curve(img, points, backend=backend), curve_oracle(img, points),
                   "tone_curve")


# -------------------------------------------------------------------------------- errors

BAD_CALLS = [
    (lambda i, b: white_balance(i, "grey", backend=b), ValueError, "method must be one of"),
    (lambda i, b: white_balance(i, "white_patch", percentile=0, backend=b), ValueError,
     "percentile must be > 0"),
    (lambda i, b: white_balance(i, "white_patch", percentile=101, backend=b), ValueError,
     "percentile must be <= 100"),
    (lambda i, b: white_balance(i, "gains", backend=b), ValueError, "gains must be given"),
    (lambda i, b: white_balance(i, "gains", gains=(1, 2), backend=b), ValueError,
     r"one value per channel \(3\)"),
    (lambda i, b: white_balance(i, "gains", gains=(1, -2, 1), backend=b), ValueError,
     r"gains\[1\] must be >= 0"),
    (lambda i, b: white_balance(i, gains=(1, 1, 1), backend=b), ValueError,
     "only used with method='gains'"),
    (lambda i, b: white_balance(i.astype(np.int16), backend=b), TypeError, "img dtype"),
    (lambda i, b: auto_contrast(i, 60, 40, backend=b), ValueError, "low must be < high"),
    (lambda i, b: auto_contrast(i, -1, 40, backend=b), ValueError, "low must be >= 0"),
    (lambda i, b: auto_contrast(i, 1, 140, backend=b), ValueError, "high must be <= 100"),
    (lambda i, b: auto_contrast(i, per_channel=1, backend=b), TypeError, "per_channel"),
    (lambda i, b: tone_curve(i, [(0, 0)], backend=b), ValueError, "at least two"),
    (lambda i, b: tone_curve(i, [(0, 0), (0, 1)], backend=b), ValueError,
     "strictly increasing"),
    (lambda i, b: tone_curve(i, [(0, 0), (1, 1.5)], backend=b), ValueError,
     r"points\[1\]\[1\] must be <= 1"),
    (lambda i, b: tone_curve(i, [(0, 0), (1, "a")], backend=b), TypeError, "points"),
    (lambda i, b: tone_curve(i, 3, backend=b), TypeError, "points"),
]


@pytest.mark.parametrize("call,exc,match", BAD_CALLS)
def test_bad_arguments_raise_the_same_error_on_every_engine(backend, call, exc, match):
    with pytest.raises(exc, match=match):
        call(np.zeros((4, 5, 3), np.uint8), backend)
