"""The CPU engine's compiled 3x3 uint8 median (gpuenhance/_cpu/_median3.py) against OpenCV
and a sorted-window oracle, on whole images, row bands, batches and every border."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from gpuenhance import _threads, median_filter
from gpuenhance._cpu import filters as cpu_filters

_median3 = pytest.importorskip("gpuenhance._cpu._median3", reason="numba is not importable")

BORDERS = ("replicate", "reflect", "reflect_101", "constant")
NP_PAD = {"replicate": "edge", "reflect": "symmetric", "reflect_101": "reflect",
          "constant": "constant"}
# widths around the kernel's vector step (32 values per row inside the borders) and its
# tail step, images one pixel wide or high, and rows of whole vector steps (read as runs of
# the flat image) tall enough to have rows away from the top and bottom
SHAPES = [(1, 1), (1, 2), (2, 1), (3, 3), (1, 40), (40, 1), (5, 7, 3), (9, 33), (9, 34),
          (9, 35), (6, 66), (7, 97), (13, 65, 5), (33, 31, 2), (40, 130, 3), (11, 23, 4),
          (13, 64), (12, 32, 2), (17, 96, 3), (11, 128, 4), (10, 32)]


def sorted_median(img, border):
    """Middle of each sorted 3x3 window of the np.pad'ed (H, W[, C]) image."""
    x = img if img.ndim == 3 else img[:, :, None]
    p = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode=NP_PAD[border])
    win = sliding_window_view(p, (3, 3), axis=(0, 1)).reshape(x.shape + (9,))
    out = np.sort(win, axis=-1)[..., 4]
    return out if img.ndim == 3 else out[:, :, 0]


def rows(img):
    """An (H, W[, C]) image as the kernel's (H, W * C) rows, and its channel count."""
    c = img.shape[2] if img.ndim == 3 else 1
    return img.reshape(img.shape[0], -1), c


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("shape", SHAPES)
def test_whole_image_equals_sorted_windows(rng, border, shape):
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    out = np.empty_like(img)
    src, c = rows(img)
    _median3.median3_rows(src, c, 0, img.shape[0], border, out.reshape(src.shape))
    np.testing.assert_array_equal(out, sorted_median(img, border))


@pytest.mark.parametrize("shape", [(29, 23), (64, 100, 3), (2, 300)])
def test_replicate_equals_opencv(rng, shape):
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    out = np.empty_like(img)
    src, c = rows(img)
    _median3.median3_rows(src, c, 0, img.shape[0], "replicate", out.reshape(src.shape))
    np.testing.assert_array_equal(out, cv2.medianBlur(img, 3))


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("step", [1, 2, 3, 5, 7, 9])
@pytest.mark.parametrize("width", [41, 32])  # 32 x 3 values: rows of whole vector steps
def test_row_bands_fill_only_their_rows(rng, border, step, width):
    """Bands of any height, in any order, give the whole-image result and touch nothing else."""
    img = rng.integers(0, 256, (23, width, 3), dtype=np.uint8)
    ref = sorted_median(img, border)
    src, c = rows(img)
    out = np.full_like(img, 7)
    dst = out.reshape(src.shape)
    starts = list(range(0, 23, step))[::-1]
    for y0 in starts:
        y1 = min(23, y0 + step)
        _median3.median3_rows(src, c, y0, y1, border, dst)
        assert (out[y1:] == ref[y1:]).all() and (out[:y0] == 7).all()
    np.testing.assert_array_equal(out, ref)


def test_extreme_values_and_ties(rng):
    img = rng.choice(np.array([0, 1, 127, 128, 254, 255], np.uint8), (31, 70))
    img[10:20] = 255  # long runs of equal values
    img[:, 5] = 0
    for border in BORDERS:
        out = np.empty_like(img)
        _median3.median3_rows(img, 1, 0, 31, border, out)
        np.testing.assert_array_equal(out, sorted_median(img, border))


@pytest.mark.parametrize("border", BORDERS)
def test_public_median_takes_the_network(rng, monkeypatch, border):
    calls = []
    real = _median3.median3_rows
    monkeypatch.setattr(_median3, "median3_rows", lambda *a: calls.append(a) or real(*a))
    img = rng.integers(0, 256, (3, 17, 21, 3), dtype=np.uint8)
    got = median_filter(img, 3, border=border)
    assert len(calls) == 3  # one call per image, each covering every row
    np.testing.assert_array_equal(got, np.stack([sorted_median(im, border) for im in img]))


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("shape", [(150, 37), (3, 40, 50, 3), (61, 29, 4)])
def test_banded_and_side_by_side_equal_opencv(rng, monkeypatch, threads, shape):
    """Bands of one image (any thread count) and images side by side: OpenCV's result."""
    monkeypatch.setattr(cpu_filters, "_BAND_MIN_NS", 0)
    monkeypatch.setattr(cpu_filters, "_BAND_MIN_ROWS", 5)
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    ref = (np.stack([cv2.medianBlur(im, 3) for im in img]) if img.ndim == 4
           else cv2.medianBlur(img, 3))
    with _threads.limit_threads(threads):
        np.testing.assert_array_equal(median_filter(img, 3), ref)


def test_large_image_default_thresholds_band_it(rng, monkeypatch):
    """A 4K-wide image is banded with the default thresholds; every band reaches the kernel."""
    calls = []
    real = _median3.median3_rows
    monkeypatch.setattr(_median3, "median3_rows", lambda *a: calls.append(a[2:4]) or real(*a))
    img = rng.integers(0, 256, (700, 3840), dtype=np.uint8)
    with _threads.limit_threads(2):
        got = median_filter(img, 3)
    assert sorted(calls) == [(0, 350), (350, 700)]
    np.testing.assert_array_equal(got, cv2.medianBlur(img, 3))


def test_non_contiguous_input(rng):
    img = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    view = img[::2, ::3, ::-1]
    np.testing.assert_array_equal(median_filter(view, 3, border="reflect_101"),
                                  sorted_median(np.ascontiguousarray(view), "reflect_101"))


def test_opencv_does_it_without_numba(rng, monkeypatch):
    monkeypatch.setattr(cpu_filters, "_network3", lambda: None)
    called = []
    monkeypatch.setattr(cpu_filters, "_median3_batch", lambda *a: called.append(a))
    img = rng.integers(0, 256, (19, 26, 3), dtype=np.uint8)
    np.testing.assert_array_equal(median_filter(img, 3, border="constant"),
                                  sorted_median(img, "constant"))
    assert not called


def test_compiles_without_a_disk_cache(rng, numba_without_disk_cache):
    """No writable cache location (numba raises when asked to cache): compiled per process."""
    _median3._kernel.cache_clear()
    try:
        img = rng.integers(0, 256, (12, 40), dtype=np.uint8)
        out = np.empty_like(img)
        _median3.median3_rows(img, 1, 0, 12, "replicate", out)
        np.testing.assert_array_equal(out, cv2.medianBlur(img, 3))
    finally:
        _median3._kernel.cache_clear()  # the next use loads the cached kernel
