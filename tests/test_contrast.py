"""equalize_hist and clahe against cv2.equalizeHist, cv2.createCLAHE and OpenCV's YCrCb."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tolerances import tol

from gpuenhance import clahe, equalize_hist

INT_DTYPES = (np.uint8, np.uint16)


def assert_matches(out, ref, op):
    assert out.dtype == ref.dtype and out.shape == ref.shape
    np.testing.assert_allclose(out.astype(np.float64), ref.astype(np.float64),
                               **tol(op, out.dtype))


def skewed(rng, shape, dtype):
    """A low-contrast image (values squeezed towards the dark end) that equalisation changes."""
    top = np.iinfo(dtype).max
    return (rng.random(shape) ** 2 * top * 0.6).astype(dtype)


def equalize_reference(plane):
    """cv::equalizeHist's loop, written out bin by bin (any number of bins)."""
    bins = np.iinfo(plane.dtype).max + 1
    hist = np.bincount(plane.ravel(), minlength=bins)
    i = 0
    while hist[i] == 0:
        i += 1
    total = plane.size
    if hist[i] == total:
        return np.full_like(plane, i)
    scale = np.float32(bins - 1) / np.float32(total - hist[i])
    lut = np.zeros(bins, dtype=plane.dtype)
    acc = 0
    for j in np.flatnonzero(hist[i + 1:]) + i + 1:  # empty bins add 0 and are never read
        acc += int(hist[j])
        lut[j] = min(max(int(np.rint(np.float32(acc) * scale)), 0), bins - 1)
    return lut[plane]


def per_image(img, plane_op):
    """*plane_op* on each image's plane, through OpenCV's RGB <-> YCrCb for 3 channels."""
    x = {2: img[None, :, :, None], 3: img[None], 4: img}[img.ndim]
    outs = []
    for im in x:
        if im.shape[-1] == 1:
            outs.append(plane_op(np.ascontiguousarray(im[:, :, 0]))[:, :, None])
        else:
            ycc = cv2.cvtColor(np.ascontiguousarray(im), cv2.COLOR_RGB2YCrCb)
            ycc[:, :, 0] = plane_op(np.ascontiguousarray(ycc[:, :, 0]))
            outs.append(cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB))
    out = np.stack(outs)
    return {2: out[0, :, :, 0], 3: out[0], 4: out}[img.ndim]


def equalize_oracle(img):
    if img.dtype == np.uint8:
        return per_image(img, cv2.equalizeHist)
    return per_image(img, equalize_reference)


# The backend fixture is a plain string: nothing to reset between examples.
FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

SHAPES = [(23, 31), (23, 31, 1), (23, 31, 3), (3, 17, 13, 1), (2, 11, 9, 3), (1, 1), (1, 7)]


# ------------------------------------------------------------------------- equalize_hist


@pytest.mark.equivalence("equalize_hist")
@pytest.mark.parametrize("dtype", INT_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_equalize_hist_equals_opencv(backend, rng, dtype, shape):
    img = skewed(rng, shape, dtype)
    out = equalize_hist(img, backend=backend)
    assert_matches(out, equalize_oracle(img), "equalize_hist")


@pytest.mark.equivalence("equalize_hist")
@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_equalize_hist_constant_and_two_level_images(backend, dtype):
    top = np.iinfo(dtype).max
    flat = np.full((2, 5, 6, 1), 7, dtype=dtype)
    flat[1] = top
    np.testing.assert_array_equal(equalize_hist(flat, backend=backend), flat)
    two = np.zeros((4, 4), dtype=dtype)
    two[:, 2:] = 3
    out = equalize_hist(two, backend=backend)
    np.testing.assert_array_equal(out, np.where(two == 3, top, 0).astype(dtype))
    assert_matches(out, equalize_oracle(two), "equalize_hist")


@pytest.mark.equivalence("equalize_hist")
@FIXTURE_OK
@given(data=st.data(), n=st.integers(1, 3), h=st.integers(1, 30), w=st.integers(1, 30),
       color=st.booleans(), dtype=st.sampled_from(INT_DTYPES), levels=st.integers(1, 300))
def test_equalize_hist_hypothesis(backend, data, n, h, w, color, dtype, levels):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    top = np.iinfo(dtype).max
    palette = rng.integers(0, top + 1, levels).astype(dtype)  # few or many distinct levels
    img = palette[rng.integers(0, levels, (n, h, w, 3 if color else 1))]
    assert_matches(equalize_hist(img, backend=backend), equalize_oracle(img), "equalize_hist")


def test_equalize_hist_batch_uses_each_images_own_histogram(rng):
    batch = np.stack([skewed(rng, (9, 8, 1), np.uint8), skewed(rng, (9, 8, 1), np.uint8) // 3])
    out = equalize_hist(batch)
    for i in range(2):
        np.testing.assert_array_equal(out[i, :, :, 0], cv2.equalizeHist(batch[i, :, :, 0]))


def test_ycrcb_fixed_point_equals_opencv_for_every_rgb_colour(rng):
    """The kernel's RGB -> Y -> table -> RGB path against cv2.cvtColor on all 2^24 colours."""
    from gpuenhance._cuda import contrast as cuda_contrast
    from gpuenhance._cuda._loader import get_context

    from conftest import _emulator_problem

    if _emulator_problem() is not None:
        pytest.skip(f"CUDA emulator unavailable: {_emulator_problem()}")
    v = np.arange(1 << 24, dtype=np.uint32)
    img = np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], axis=-1).astype(np.uint8)
    img = img.reshape(1, 4096, 4096, 3)
    table = rng.integers(0, 256, (1, 256), dtype=np.uint8)
    out = cuda_contrast.map_intensity(get_context("cuda-emulated"), img, table)
    ycc = cv2.cvtColor(img[0], cv2.COLOR_RGB2YCrCb)
    ycc[:, :, 0] = cv2.LUT(ycc[:, :, 0], table[0])
    np.testing.assert_array_equal(out[0], cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB))


# --------------------------------------------------------------------------------- clahe


def clahe_oracle(img, clip_limit, tile_grid):
    op = cv2.createCLAHE(clip_limit, tile_grid)
    return per_image(img, op.apply)


CLAHE_CASES = [
    # shape, clip_limit, tile_grid: divisible, neither divisible, one axis divisible,
    # no clipping, tiles larger than the image, a batch
    ((32, 48), 40.0, (8, 4)),
    ((37, 53), 2.0, (4, 3)),
    ((36, 50), 3.0, (4, 6)),
    ((30, 40, 1), 0.0, (5, 2)),
    ((5, 3), 1.0, (4, 4)),
    ((21, 19, 3), 2.5, (3, 3)),
    ((2, 17, 22, 1), 1.5, (2, 3)),
    ((2, 12, 10, 3), 4.0, (3, 2)),
]


@pytest.mark.equivalence("clahe")
@pytest.mark.parametrize("dtype", INT_DTYPES)
@pytest.mark.parametrize("shape,clip_limit,tile_grid", CLAHE_CASES)
def test_clahe_equals_opencv(backend, rng, dtype, shape, clip_limit, tile_grid):
    img = skewed(rng, shape, dtype)
    out = clahe(img, clip_limit, tile_grid, backend=backend)
    assert_matches(out, clahe_oracle(img, clip_limit, tile_grid), "clahe")


@pytest.mark.equivalence("clahe")
@FIXTURE_OK
@given(
    data=st.data(),
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    tx=st.integers(1, 5),
    ty=st.integers(1, 5),
    clip=st.floats(0.0, 8.0),
    color=st.booleans(),
    dtype=st.sampled_from(INT_DTYPES),
)
def test_clahe_hypothesis(backend, data, h, w, tx, ty, clip, color, dtype):
    seed = data.draw(st.integers(0, 2**32 - 1))
    img = skewed(np.random.default_rng(seed), (h, w, 3) if color else (h, w), dtype)
    out = clahe(img, clip, (tx, ty), backend=backend)
    assert_matches(out, clahe_oracle(img, clip, (tx, ty)), "clahe")


def test_clahe_int_tile_grid_means_square(rng):
    img = skewed(rng, (24, 24), np.uint8)
    np.testing.assert_array_equal(clahe(img, 2.0, 3), clahe(img, 2.0, (3, 3)))


# ------------------------------------------------------------------------------- errors


BAD_CALLS = [
    (lambda img, b: equalize_hist(img.astype(np.float32), backend=b), TypeError, "img dtype"),
    (lambda img, b: equalize_hist(np.zeros((4, 4, 2), np.uint8), backend=b), ValueError,
     "1 channel or 3"),
    (lambda img, b: equalize_hist([[1, 2]], backend=b), TypeError, "img must be"),
    (lambda img, b: clahe(img, -1.0, backend=b), ValueError, "clip_limit"),
    (lambda img, b: clahe(img, float("nan"), backend=b), ValueError, "clip_limit"),
    (lambda img, b: clahe(img, "2", backend=b), TypeError, "clip_limit"),
    (lambda img, b: clahe(img, 2.0, (0, 8), backend=b), ValueError, r"tile_grid\[0\]"),
    (lambda img, b: clahe(img, 2.0, (8, 257), backend=b), ValueError, r"tile_grid\[1\]"),
    (lambda img, b: clahe(img, 2.0, (8, 8, 8), backend=b), ValueError, "tile_grid"),
    (lambda img, b: clahe(img, 2.0, 2.5, backend=b), TypeError, "tile_grid"),
    (lambda img, b: clahe(np.zeros((4, 4, 4), np.uint16), backend=b), ValueError,
     "1 channel or 3"),
]


@pytest.mark.parametrize("call,exc,match", BAD_CALLS)
def test_bad_arguments_raise_the_same_error_on_every_engine(backend, call, exc, match):
    with pytest.raises(exc, match=match):
        call(np.zeros((8, 8), np.uint8), backend)


def test_clahe_uint16_groups_images_when_tile_counters_exceed_the_budget(rng, monkeypatch):
    from gpuenhance._cuda import contrast as cuda_contrast

    from conftest import _emulator_problem

    if _emulator_problem() is not None:
        pytest.skip(f"CUDA emulator unavailable: {_emulator_problem()}")
    monkeypatch.setattr(cuda_contrast, "_SCRATCH_BYTES", 6 * 65536 * 4)  # 6 tiles' counters
    img = skewed(rng, (3, 14, 15, 1), np.uint16)
    out = clahe(img, 2.0, (2, 2), backend="cuda-emulated")  # 4 tiles: one image per launch
    assert_matches(out, clahe_oracle(img, 2.0, (2, 2)), "clahe")
