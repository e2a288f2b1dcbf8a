"""The CPU engine's sliding-histogram median (gpuenhance/_cpu/_median.py) against sort oracles."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from gpuenhance import median_filter
from gpuenhance._cpu import _median
from gpuenhance._cpu import filters as cpu_filters

pytestmark = pytest.mark.skipif(not _median.available(), reason="numba is not importable")

NP_PAD = {"replicate": "edge", "reflect": "symmetric", "reflect_101": "reflect",
          "constant": "constant"}


def sorted_window_median(padded, ksize):
    """Middle element of each sorted ksize x ksize window of a padded 2-D plane (NaNs last)."""
    win = sliding_window_view(padded, (ksize, ksize))
    flat = np.sort(win.reshape(win.shape[:2] + (-1,)), axis=-1)
    return flat[..., (ksize * ksize) // 2]


def filter_oracle(img, ksize, border):
    """The window median of an (H, W) or (H, W, C) image padded by the border rule."""
    r = ksize // 2
    x = img if img.ndim == 3 else img[:, :, None]
    p = np.pad(x, ((r, r), (r, r), (0, 0)), mode=NP_PAD[border])
    out = np.stack([sorted_window_median(p[:, :, c], ksize) for c in range(x.shape[2])], -1)
    return out if img.ndim == 3 else out[:, :, 0]


def values(rng, shape, dtype, kind):
    if kind == "ties":  # few distinct values: long runs of equal keys
        return rng.integers(0, 4, shape).astype(dtype)
    if dtype == np.uint16:
        return rng.integers(0, 65536, shape).astype(np.uint16)
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("ksize", [3, 7, 9, 15])
@pytest.mark.parametrize("shape", [(23, 31), (15, 15), (40, 17)])
@pytest.mark.parametrize("kind", ["random", "ties"])
def test_median_plane_equals_sorted_windows(rng, dtype, ksize, shape, kind):
    if shape[0] < ksize or shape[1] < ksize:
        pytest.skip("the plane is the padded input: at least one window")
    plane = values(rng, shape, dtype, kind)
    got = _median.median_plane(plane, ksize)
    ref = sorted_window_median(plane, ksize)
    assert got.dtype == plane.dtype
    np.testing.assert_array_equal(got, ref)


def test_median_plane_extreme_uint16_keys(rng):
    plane = rng.choice(np.array([0, 1, 255, 256, 65279, 65535], np.uint16), (30, 30))
    np.testing.assert_array_equal(_median.median_plane(plane, 11),
                                  sorted_window_median(plane, 11))


def test_median_plane_float_specials_keep_nan_policy(rng):
    """NaN counts as larger than every number (as numpy.partition and np.sort place it)."""
    plane = rng.standard_normal((40, 50)).astype(np.float32)
    pick = rng.random(plane.shape)
    plane[pick < 0.45] = np.nan
    plane[(pick >= 0.45) & (pick < 0.5)] = np.inf
    plane[(pick >= 0.5) & (pick < 0.55)] = -np.inf
    plane[(pick >= 0.55) & (pick < 0.6)] = -0.0
    for ksize in (3, 7, 9):
        got = _median.median_plane(plane, ksize)
        ref = sorted_window_median(plane, ksize)
        np.testing.assert_array_equal(got, ref)  # NaN == NaN here, -0.0 == 0.0
        assert np.isnan(got).any() and not np.isnan(got).all()


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("border", sorted(NP_PAD))
@pytest.mark.parametrize("ksize", [7, 11])
def test_public_median_uses_exact_histogram(rng, dtype, border, ksize):
    img = values(rng, (19, 26, 2), dtype, "random")
    np.testing.assert_array_equal(median_filter(img, ksize, border=border),
                                  filter_oracle(img, ksize, border))


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_window_larger_than_image(rng, dtype):
    img = values(rng, (4, 6), dtype, "random")
    np.testing.assert_array_equal(median_filter(img, 31, border="reflect"),
                                  filter_oracle(img, 31, "reflect"))


@pytest.mark.parametrize("ksize", [9, 15])
def test_float_tiles_are_exact(rng, monkeypatch, ksize):
    """Floats are ranked per tile: many small tiles (9) or long bands (15: the window is too
    large for a tile) give the whole-image result."""
    monkeypatch.setattr(_median, "FLOAT_TILE_VALUES", 24 * 24)
    img = values(rng, (37, 21, 2), np.float32, "random")
    np.testing.assert_array_equal(median_filter(img, ksize, border="reflect_101"),
                                  filter_oracle(img, ksize, "reflect_101"))


def test_large_float_tile_uses_32_bit_ranks(rng):
    plane = values(rng, (300, 260), np.float32, "random")  # 78000 values > 2**16
    np.testing.assert_array_equal(_median.median_plane(plane, 5), sorted_window_median(plane, 5))


def test_numpy_fallback_without_numba(rng, monkeypatch):
    monkeypatch.setattr(_median, "available", lambda: False)
    monkeypatch.setattr(cpu_filters, "_MEDIAN_CHUNK_BYTES", 1)  # one row per chunk
    img = values(rng, (9, 11, 2), np.float64, "random")
    np.testing.assert_array_equal(median_filter(img, 5, border="constant"),
                                  filter_oracle(img, 5, "constant"))


def test_compiles_without_a_disk_cache(rng, numba_without_disk_cache):
    """No writable cache location (numba raises when asked to cache): compiled per process."""
    _median._kernel.cache_clear()
    try:
        plane = values(rng, (20, 24), np.uint16, "random")
        np.testing.assert_array_equal(_median.median_plane(plane, 7),
                                      sorted_window_median(plane, 7))
    finally:
        _median._kernel.cache_clear()  # the next use compiles (or loads) the cached kernel
