"""Band-parallel CPU filters: bit-identical to one whole-image call; the thread settings."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from gpuenhance import _threads, apply_lut, gamma_correct, median_filter
from gpuenhance._cpu import filters as cpu_filters
from gpuenhance._cpu import tone as cpu_tone

BORDERS = ("replicate", "reflect", "reflect_101", "constant")
NP_PAD = {"replicate": "edge", "reflect": "symmetric", "reflect_101": "reflect",
          "constant": "constant"}


@pytest.fixture
def tiny_bands(monkeypatch):
    """Band even tiny images, in bands as thin as one row."""
    monkeypatch.setattr(cpu_filters, "_BAND_MIN_NS", 0)
    monkeypatch.setattr(cpu_filters, "_BAND_MIN_ROWS", 1)
    monkeypatch.setattr(cpu_tone, "_BAND_MIN_ELEMENTS", 0)
    monkeypatch.setattr(cpu_tone, "_BAND_ALIGN", 8)


def cv_median_padded(img, ksize, border):
    """cv2.medianBlur of the np.pad'ed (H, W[, C]) image, cropped: OpenCV's median, any border."""
    r = ksize // 2
    pad = ((r, r), (r, r)) + ((0, 0),) * (img.ndim - 2)
    out = cv2.medianBlur(np.pad(img, pad, mode=NP_PAD[border]), ksize)
    return out[r:r + img.shape[0], r:r + img.shape[1]]


# ----------------------------------------------------------------------------- threads


def test_env_var_sets_the_thread_count(monkeypatch):
    monkeypatch.setenv(_threads.ENV_VAR, "3")
    assert _threads.num_threads() == 3
    with _threads.limit_threads(1):
        assert _threads.num_threads() == 1
    assert _threads.num_threads() == 3


def test_default_is_the_cores_this_process_may_use(monkeypatch):
    monkeypatch.delenv(_threads.ENV_VAR, raising=False)
    import os

    assert _threads.num_threads() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("text", ["0", "-2", "two", "1.5"])
def test_bad_env_var_is_named(monkeypatch, text):
    monkeypatch.setenv(_threads.ENV_VAR, text)
    with pytest.raises(ValueError, match=_threads.ENV_VAR):
        _threads.num_threads()


@pytest.mark.parametrize("n, exc", [(0, ValueError), (-1, ValueError), (True, TypeError),
                                    (2.0, TypeError)])
def test_limit_threads_rejects_bad_counts(n, exc):
    with pytest.raises(exc, match="n must be a positive integer"):
        with _threads.limit_threads(n):
            pass


def test_limit_holds_for_this_thread_only():
    seen = {}
    with _threads.limit_threads(1):
        t = threading.Thread(target=lambda: seen.setdefault("other", _threads.num_threads()))
        t.start()
        t.join()
        seen["here"] = _threads.num_threads()
    assert seen == {"here": 1, "other": _threads.system_threads()}


def test_run_parallel_keeps_order_and_runs_tasks_single_threaded():
    with _threads.limit_threads(3):
        out = _threads.run_parallel(lambda x: (x * x, _threads.num_threads()), range(7))
    assert out == [(x * x, 1) for x in range(7)]


def test_run_parallel_uses_at_most_the_limit():
    names = set()
    lock = threading.Lock()

    def task(x):
        with lock:
            names.add(threading.current_thread().name)
        return x

    with _threads.limit_threads(8):  # grow the pool beyond 2 first
        _threads.run_parallel(task, range(16))
    names.clear()
    with _threads.limit_threads(2):
        _threads.run_parallel(task, range(16))
    assert len(names) <= 2


def test_run_parallel_lets_a_free_thread_take_a_stalled_threads_share():
    """Items are claimed one at a time: while one thread is held up (as by a busy machine),
    the other runs every remaining item, whichever thread it is."""
    import threading

    rest_done = threading.Event()
    done = []
    lock = threading.Lock()

    def task(x):
        if x == 0:
            assert rest_done.wait(timeout=10), "the other thread left items undone"
        with lock:
            done.append(x)
            if len(done) == 5:
                rest_done.set()
        return -x

    with _threads.limit_threads(2):
        assert _threads.run_parallel(task, range(6)) == [0, -1, -2, -3, -4, -5]
    assert sorted(done) == list(range(6)) and done[-1] == 0


def test_run_parallel_raises_a_task_error_after_all_finished():
    """No task may still write into the caller's arrays once the error is raised."""
    import time

    finished = []

    def task(x):
        if x == 1:
            raise KeyError("boom")
        time.sleep(0.05)
        finished.append(x)

    with _threads.limit_threads(2):
        with pytest.raises(KeyError, match="boom"):
            _threads.run_parallel(task, [0, 1])
    assert finished == [0]


# ----------------------------------------------------------------------------- median


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("dtype, ksize", [(np.uint8, 3), (np.uint8, 5), (np.uint8, 7),
                                          (np.uint8, 15), (np.uint16, 3), (np.uint16, 5),
                                          (np.float32, 3), (np.float32, 5)])
@pytest.mark.parametrize("shape", [(29, 23), (40, 17, 3), (9, 12, 4)])
def test_banded_opencv_median_is_bit_identical(rng, tiny_bands, border, dtype, ksize, shape):
    if dtype == np.uint8:
        img = rng.integers(0, 256, shape, dtype=np.uint8)
    elif dtype == np.uint16:
        img = rng.integers(0, 65536, shape).astype(np.uint16)
    else:
        img = rng.standard_normal(shape).astype(np.float32)
    ref = cv_median_padded(img, ksize, border)
    for threads in (2, 3, 4):
        with _threads.limit_threads(threads):
            np.testing.assert_array_equal(median_filter(img, ksize, border=border), ref)


@pytest.mark.parametrize("ksize", [3, 7, 31])
@pytest.mark.parametrize("shape", [(150, 33), (150, 33, 3)])
def test_overlapping_bands_rewrite_every_cut(rng, ksize, shape, monkeypatch):
    """Bands of 16+ rows written straight into the output: the rows around each cut are
    rewritten, and the result is OpenCV's whole-image median."""
    monkeypatch.setattr(cpu_filters, "_BAND_MIN_NS", 0)
    monkeypatch.setattr(cpu_filters, "_BAND_MIN_NS_PER_VALUE", 0.0)
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    ref = cv2.medianBlur(img, ksize)
    for threads in (2, 5):
        with _threads.limit_threads(threads):
            np.testing.assert_array_equal(median_filter(img, ksize), ref)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_banded_per_channel_median(rng, tiny_bands, dtype):
    img = rng.integers(0, 256, (21, 18, 2)).astype(dtype)  # 2 channels: OpenCV per channel
    ref = np.stack([cv_median_padded(img[:, :, c], 5, "reflect") for c in range(2)], -1)
    with _threads.limit_threads(3):
        np.testing.assert_array_equal(median_filter(img, 5, border="reflect"), ref)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
@pytest.mark.parametrize("border", BORDERS)
def test_banded_histogram_median_equals_single_thread(rng, tiny_bands, dtype, border):
    img = (rng.integers(0, 65536, (33, 27, 3)) if dtype == np.uint16
           else rng.standard_normal((33, 27, 3))).astype(dtype)
    with _threads.limit_threads(1):
        one = median_filter(img, 9, border=border)
    with _threads.limit_threads(4):
        many = median_filter(img, 9, border=border)
    np.testing.assert_array_equal(many, one)
    # and the whole-image answer is the sorted-window median
    r = 4
    p = np.pad(img, ((r, r), (r, r), (0, 0)), mode=NP_PAD[border])
    from numpy.lib.stride_tricks import sliding_window_view

    win = sliding_window_view(p, (9, 9), axis=(0, 1)).reshape(33, 27, 3, 81)
    np.testing.assert_array_equal(one, np.sort(win, axis=-1)[..., 40])


def test_batch_of_small_images_runs_side_by_side(rng, monkeypatch):
    # each image below the threshold, the batch above it
    monkeypatch.setattr(cpu_filters, "_BAND_MIN_NS", 20 * 30 * 1.3 * 2)
    imgs = rng.integers(0, 256, (5, 20, 30, 1), dtype=np.uint8)
    ref = np.stack([cv2.medianBlur(im[:, :, 0], 5)[:, :, None] for im in imgs])
    with _threads.limit_threads(2):
        np.testing.assert_array_equal(median_filter(imgs, 5), ref)


def test_large_image_default_path_equals_opencv(rng):
    """A 1080p-wide image takes the banded path with the default thresholds."""
    img = rng.integers(0, 256, (300, 1920), dtype=np.uint8)
    with _threads.limit_threads(2):
        np.testing.assert_array_equal(median_filter(img, 7), cv2.medianBlur(img, 7))
        np.testing.assert_array_equal(median_filter(img, 7, border="reflect"),
                                      cv_median_padded(img, 7, "reflect"))


# ----------------------------------------------------------------------------- tone


@pytest.mark.parametrize("shape", [(37, 41), (30, 22, 3), (2, 17, 19, 4)])
def test_banded_uint16_lut(rng, tiny_bands, shape):
    img = rng.integers(0, 65536, shape).astype(np.uint16)
    lut = rng.integers(0, 65536, 65536).astype(np.uint16)
    with _threads.limit_threads(3):
        np.testing.assert_array_equal(apply_lut(img, lut), lut[img])


def test_banded_per_channel_uint16_lut(rng, tiny_bands):
    img = rng.integers(0, 65536, (31, 29, 3)).astype(np.uint16)
    lut = rng.integers(0, 65536, (65536, 3)).astype(np.uint16)
    ref = np.stack([lut[img[:, :, c], c] for c in range(3)], -1)
    with _threads.limit_threads(3):
        np.testing.assert_array_equal(apply_lut(img, lut), ref)


@pytest.mark.parametrize("gain", [1.0, 1.7])
def test_banded_float_gamma_is_bit_identical(rng, tiny_bands, gain):
    img = rng.random((53, 47, 3), dtype=np.float32)
    ref = np.power(img, np.float32(0.45), dtype=np.float32)
    if gain != 1.0:
        ref *= np.float32(gain)
    with _threads.limit_threads(3):
        np.testing.assert_array_equal(gamma_correct(img, 0.45, gain=gain), ref)
    with _threads.limit_threads(3):  # a non-contiguous input too
        view = img[:, ::2]
        ref2 = np.power(view, np.float32(0.45), dtype=np.float32)
        if gain != 1.0:
            ref2 *= np.float32(gain)
        np.testing.assert_array_equal(gamma_correct(view, 0.45, gain=gain), ref2)


def test_threads_docstring_examples():
    import doctest

    result = doctest.testmod(_threads, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted >= 4
