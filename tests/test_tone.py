"""apply_lut and gamma_correct against cv2.LUT, NumPy indexing and closed forms."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tolerances import tol

import gpuenhance
from gpuenhance import _backend, apply_lut, gamma_correct
from gpuenhance._levels import gamma_table

ENTRIES = {np.dtype(np.uint8): 256, np.dtype(np.uint16): 65536}


def rand_image(rng, shape, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "u":
        return rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    return rng.random(shape).astype(dtype)


def rand_lut(rng, dtype, channels=None):
    dtype = np.dtype(dtype)
    shape = (ENTRIES[dtype],) if channels is None else (ENTRIES[dtype], channels)
    return rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)


def lut_oracle(img, lut):
    """Per-pixel lookup written channel by channel (np.take on each plane)."""
    if lut.ndim == 1:
        return np.take(lut, img.astype(np.int64))
    planes = img[..., None] if img.ndim == 2 else img
    out = np.stack([np.take(lut[:, c], planes[..., c].astype(np.int64))
                    for c in range(lut.shape[1])], axis=-1)
    return out[..., 0] if img.ndim == 2 else out


def cv_lut(img, lut):
    """cv2.LUT image by image; a per-channel table becomes a 256x1 table with C channels."""
    x = {2: img[None, :, :, None], 3: img[None], 4: img}[img.ndim]
    c = x.shape[-1]
    table = lut if lut.ndim == 1 else np.ascontiguousarray(lut).reshape(256, 1, c)
    outs = [cv2.LUT(np.ascontiguousarray(im), table).reshape(im.shape) for im in x]
    out = np.stack(outs)
    return {2: out[0, :, :, 0], 3: out[0], 4: out}[img.ndim]


def assert_close(out, ref, op):
    assert out.dtype == ref.dtype and out.shape == ref.shape
    np.testing.assert_allclose(out.astype(np.float64), ref.astype(np.float64), **tol(op, out.dtype),
                               equal_nan=True)


SHAPES = [(17, 23), (17, 23, 1), (17, 23, 2), (17, 23, 3), (17, 23, 4), (17, 23, 5),
          (2, 9, 11, 3), (3, 5, 4, 1), (1, 1), (1, 9), (9, 1)]


# ------------------------------------------------------------------------------ apply_lut


@pytest.mark.parametrize("shape", SHAPES)
def test_lut_uint8_equals_opencv(rng, shape):
    img = rand_image(rng, shape, np.uint8)
    channels = shape[-1] if len(shape) >= 3 else 1
    shared = rand_lut(rng, np.uint8)
    out = apply_lut(img, shared)
    assert out.dtype == np.uint8 and out.shape == img.shape
    np.testing.assert_array_equal(out, cv_lut(img, shared))
    per_channel = rand_lut(rng, np.uint8, channels)
    np.testing.assert_array_equal(apply_lut(img, per_channel), cv_lut(img, per_channel))


@pytest.mark.parametrize("shape", SHAPES)
def test_lut_uint16(rng, shape):
    img = rand_image(rng, shape, np.uint16)
    channels = shape[-1] if len(shape) >= 3 else 1
    for lut in (rand_lut(rng, np.uint16), rand_lut(rng, np.uint16, channels)):
        out = apply_lut(img, lut)
        assert out.dtype == np.uint16 and out.shape == img.shape
        np.testing.assert_array_equal(out, lut_oracle(img, lut))


def test_lut_closed_form(rng):
    img = rand_image(rng, (6, 7, 3), np.uint8)
    invert = (255 - np.arange(256)).astype(np.uint8)
    np.testing.assert_array_equal(apply_lut(img, invert), 255 - img)
    ramp = np.stack([np.arange(256), np.zeros(256), np.full(256, 7)], -1).astype(np.uint8)
    out = apply_lut(img, ramp)
    np.testing.assert_array_equal(out[..., 0], img[..., 0])
    assert (out[..., 1] == 0).all() and (out[..., 2] == 7).all()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_lut_non_contiguous(rng, dtype):
    base = rand_image(rng, (17, 46, 3), dtype)
    for img in (base[:, ::2], base.transpose(1, 0, 2), base[::-1, :, 1]):
        assert not img.flags.c_contiguous
        lut = rand_lut(rng, dtype)
        np.testing.assert_array_equal(apply_lut(img, lut), lut_oracle(img, lut))
    lut = rand_lut(rng, dtype, 3)[::-1]  # a non-contiguous table
    np.testing.assert_array_equal(apply_lut(base, lut), lut_oracle(base, lut))


@settings(max_examples=20)
@given(data=st.data())
def test_lut_hypothesis(data):
    dtype = np.dtype(data.draw(st.sampled_from([np.uint8, np.uint16])))
    ndim = data.draw(st.sampled_from([2, 3, 4]))
    shape = (data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9)))
    if ndim >= 3:
        shape += (data.draw(st.integers(1, 5)),)
    if ndim == 4:
        shape = (data.draw(st.integers(1, 3)),) + shape
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    img = rand_image(rng, shape, dtype)
    per_channel = data.draw(st.booleans())
    lut = rand_lut(rng, dtype, (shape[-1] if ndim >= 3 else 1) if per_channel else None)
    np.testing.assert_array_equal(apply_lut(img, lut), lut_oracle(img, lut))


@pytest.mark.equivalence("apply_lut")
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("shape", [(2, 13, 17, 3), (13, 17), (5, 6, 4)])
def test_lut_equivalence(backend, rng, dtype, per_channel, shape):
    img = rand_image(rng, shape, dtype)
    channels = shape[-1] if len(shape) >= 3 else 1
    lut = rand_lut(rng, dtype, channels if per_channel else None)
    out = apply_lut(img, lut, backend=backend)
    assert_close(out, lut_oracle(img, lut), "apply_lut")
    if dtype == np.uint8:
        assert_close(out, cv_lut(img, lut), "apply_lut")


@pytest.mark.parametrize(
    "img,lut,exc,match",
    [
        (np.zeros((4, 4), np.uint8), np.zeros(256, np.uint16), TypeError, "lut"),
        (np.zeros((4, 4), np.uint16), np.zeros(65536, np.uint8), TypeError, "lut"),
        (np.zeros((4, 4), np.uint8), np.zeros(256, np.int32), TypeError, "lut"),
        (np.zeros((4, 4), np.uint8), list(range(256)), TypeError, "lut"),
        (np.zeros((4, 4), np.uint8), np.zeros(255, np.uint8), ValueError, "lut"),
        (np.zeros((4, 4), np.uint8), np.zeros(65536, np.uint8), ValueError, "lut"),
        (np.zeros((4, 4), np.uint16), np.zeros(256, np.uint16), ValueError, "lut"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((256, 4), np.uint8), ValueError, "lut"),
        (np.zeros((4, 4), np.uint8), np.zeros((256, 3), np.uint8), ValueError, "lut"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((256, 1, 3), np.uint8), ValueError, "lut"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((3, 256), np.uint8), ValueError, "lut"),
        (np.zeros((4, 4), np.float32), np.zeros(256, np.float32), TypeError, "img"),
        (np.zeros((4, 4), np.int16), np.zeros(256, np.int16), TypeError, "img"),
        (np.zeros((4,), np.uint8), np.zeros(256, np.uint8), ValueError, "img"),
        (np.zeros((1, 1, 4, 4, 1), np.uint8), np.zeros(256, np.uint8), ValueError, "img"),
        ("image", np.zeros(256, np.uint8), TypeError, "img"),
    ],
)
def test_lut_errors(img, lut, exc, match):
    with pytest.raises(exc, match=match):
        apply_lut(img, lut)


def test_lut_bad_backend():
    with pytest.raises(ValueError, match="backend"):
        apply_lut(np.zeros((4, 4), np.uint8), np.zeros(256, np.uint8), backend="opencl")


# -------------------------------------------------------------------------- gamma_correct


@pytest.mark.parametrize("gamma,gain", [(0.5, 1.0), (2.2, 1.0), (1 / 2.2, 1.3), (1.0, 0.5),
                                        (3.0, 0.0), (0.01, 2.0)])
def test_gamma_table_uint8_closed_form(gamma, gain):
    """Entry by entry in Python floats: round half to even, saturate to [0, 255]."""
    table = gamma_table(np.uint8, gamma, gain)
    assert table.dtype == np.uint8 and table.shape == (256,)
    expect = [min(255, max(0, round(gain * math.pow(i / 255, gamma) * 255))) for i in range(256)]
    np.testing.assert_array_equal(table, np.array(expect, dtype=np.uint8))


@pytest.mark.parametrize("gamma,gain", [(0.45, 1.0), (2.4, 1.1)])
def test_gamma_table_uint16_closed_form(gamma, gain):
    table = gamma_table(np.uint16, gamma, gain)
    assert table.dtype == np.uint16 and table.shape == (65536,)
    idx = np.array([0, 1, 2, 100, 1000, 32767, 32768, 60000, 65534, 65535])
    expect = [min(65535, max(0, round(gain * math.pow(int(i) / 65535, gamma) * 65535)))
              for i in idx]
    np.testing.assert_array_equal(table[idx], np.array(expect, dtype=np.uint16))
    assert np.all(np.diff(table.astype(np.int64)) >= 0)  # monotone


def test_gamma_identity_and_saturation(rng):
    img = rand_image(rng, (9, 11, 3), np.uint8)
    np.testing.assert_array_equal(gamma_correct(img, 1.0), img)
    doubled = gamma_correct(img, 1.0, gain=2.0)
    np.testing.assert_array_equal(doubled, np.minimum(img.astype(np.int64) * 2, 255))
    np.testing.assert_array_equal(gamma_correct(img, 2.0, gain=0.0), np.zeros_like(img))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_gamma_integer_images(rng, shape, dtype):
    img = rand_image(rng, shape, dtype)
    top = float(np.iinfo(dtype).max)
    out = gamma_correct(img, 0.7, gain=1.2)
    assert out.dtype == img.dtype and out.shape == img.shape
    ref = np.clip(np.rint(1.2 * (img / top) ** 0.7 * top), 0, top).astype(dtype)
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("shape", SHAPES)
def test_gamma_float32(rng, shape):
    img = (rng.random(shape) * 1.5 - 0.25).astype(np.float32)
    img.flat[0] = 1.25  # above 1: clipped to 1 before the power
    out = gamma_correct(img, 2.2, gain=1.7)
    assert out.dtype == np.float32 and out.shape == img.shape
    ref = (1.7 * np.clip(img.astype(np.float64), 0.0, 1.0) ** 2.2).astype(np.float32)
    assert_close(out, ref, "gamma_correct")
    assert out.flat[0] == np.float32(1.7)


def test_gamma_float32_nan_propagates_and_the_domain_is_clipped():
    """Issue 9: a negative float gave NaN (35% of a float TIFF); the domain is now [0, 1]."""
    img = np.array([[np.nan, 0.0, 0.5, -0.5, np.inf, -np.inf]], dtype=np.float32)
    out = gamma_correct(img, 0.5, gain=2.0)
    assert np.isnan(out[0, 0]) and out[0, 1] == 0.0
    np.testing.assert_allclose(out[0, 2], 2.0 * math.sqrt(0.5), rtol=1e-6)
    assert out[0, 3] == 0.0 and out[0, 4] == 2.0 and out[0, 5] == 0.0
    squared = gamma_correct(np.array([[-0.5, 2.0]], np.float32), 2.0)
    np.testing.assert_array_equal(squared, [[0.0, 1.0]])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_gamma_non_contiguous(rng, dtype):
    base = rand_image(rng, (17, 46, 3), dtype)
    for img in (base[:, ::2], base.transpose(1, 0, 2), base[::-1, :, 0]):
        assert not img.flags.c_contiguous
        np.testing.assert_array_equal(gamma_correct(img, 1.8),
                                      gamma_correct(np.ascontiguousarray(img), 1.8))
        if dtype != np.float32:
            np.testing.assert_array_equal(
                gamma_correct(img, 1.8), lut_oracle(img, gamma_table(dtype, 1.8, 1.0)))


@settings(max_examples=20)
@given(data=st.data())
def test_gamma_hypothesis(data):
    dtype = np.dtype(data.draw(st.sampled_from([np.uint8, np.uint16, np.float32])))
    shape = (data.draw(st.integers(1, 8)), data.draw(st.integers(1, 8)),
             data.draw(st.integers(1, 5)))
    gamma = data.draw(st.floats(0.05, 5.0))
    gain = data.draw(st.floats(0.0, 3.0))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    img = rand_image(rng, shape, dtype)
    out = gamma_correct(img, gamma, gain=gain)
    top = 1.0 if dtype.kind == "f" else float(np.iinfo(dtype).max)
    ref = gain * (img.astype(np.float64) / top) ** gamma * top
    if dtype.kind == "u":
        ref = np.clip(np.rint(ref), 0, top)
    assert_close(out, ref.astype(dtype), "gamma_correct")


@pytest.mark.equivalence("gamma_correct")
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("gamma,gain", [(0.45, 1.0), (2.2, 1.5)])
def test_gamma_equivalence(backend, rng, dtype, gamma, gain):
    img = rand_image(rng, (2, 13, 17, 3), dtype)
    if np.dtype(dtype).kind == "f":  # the float domain is clipped to [0, 1] on every engine
        img = img * np.float32(1.5) - np.float32(0.25)
    out = gamma_correct(img, gamma, gain=gain, backend=backend)
    if np.dtype(dtype).kind == "u":
        ref = lut_oracle(img, gamma_table(dtype, gamma, gain))
    else:
        ref = (gain * np.clip(img.astype(np.float64), 0, 1) ** gamma).astype(np.float32)
    assert_close(out, ref, "gamma_correct")


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(gamma=0.0), ValueError, "gamma"),
        (dict(gamma=-1.0), ValueError, "gamma"),
        (dict(gamma=float("nan")), ValueError, "gamma"),
        (dict(gamma=float("inf")), ValueError, "gamma"),
        (dict(gamma="2"), TypeError, "gamma"),
        (dict(gamma=2.0, gain=-0.1), ValueError, "gain"),
        (dict(gamma=2.0, gain=float("inf")), ValueError, "gain"),
        (dict(gamma=2.0, gain=None), TypeError, "gain"),
        (dict(gamma=2.0, backend="gpu"), ValueError, "backend"),
    ],
)
def test_gamma_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        gamma_correct(np.zeros((4, 4), np.uint8), **kwargs)


@pytest.mark.parametrize("img", [np.zeros((4, 4), np.float64), np.zeros((4, 4), np.int8),
                                 np.zeros((4,), np.uint8), [[0.5]]])
def test_gamma_bad_images(img):
    with pytest.raises((TypeError, ValueError), match="img"):
        gamma_correct(img, 2.0)


@pytest.mark.skipif(_backend.cuda_available(), reason="a GPU works here")
def test_cuda_backend_unavailable_raises():
    with pytest.raises(gpuenhance.BackendUnavailableError):
        apply_lut(np.zeros((4, 4), np.uint8), np.zeros(256, np.uint8), backend="cuda")
    with pytest.raises(gpuenhance.BackendUnavailableError):
        gamma_correct(np.zeros((4, 4), np.float32), 2.0, backend="cuda")
