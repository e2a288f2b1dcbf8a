"""Tiled pipelines (gpuenhance._tiles) and the out-of-memory fallback.

Oracle: the same pipeline on the whole image, which tiled processing must equal bit for bit;
for the plan, the definition (cores partition the axis, windows are cores grown by the radius
and clipped to the image).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuenhance import Pipeline, _tiles
from gpuenhance._validate import BORDERS
from gpuenhance.pipeline import Stage

DTYPES = (np.uint8, np.uint16, np.float32)


def _image(rng, shape, dtype):
    if np.dtype(dtype).kind == "f":
        return rng.random(shape, dtype=np.float32)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)


@st.composite
def stages(draw):
    kind = draw(st.sampled_from(["median", "gaussian", "gamma"]))
    if kind == "median":
        return Stage("median", {"ksize": draw(st.sampled_from([1, 3, 5, 7])),
                                "border": draw(st.sampled_from(BORDERS))})
    if kind == "gaussian":
        params = {"border": draw(st.sampled_from(BORDERS))}
        ksize = draw(st.sampled_from([0, 1, 3, 5, 7]))
        if ksize:
            params["ksize"] = ksize
        sigma = draw(st.sampled_from([0.0, 0.6, 1.3, 2.0]))
        if ksize == 0 and sigma == 0.0:
            sigma = 0.9
        params["sigma"] = sigma
        if draw(st.booleans()):
            params["sigma_y"] = draw(st.sampled_from([0.5, 1.7]))
        return Stage("gaussian", params)
    return Stage("gamma", {"gamma": draw(st.sampled_from([0.5, 1.0, 2.2]))})


# --------------------------------------------------------------------------- plan


@given(length=st.integers(1, 90), tile=st.integers(1, 40), radius=st.integers(0, 9),
       align=st.sampled_from([1, 4, 64]))
def test_axis_windows_partition_and_halo(length, tile, radius, align):
    windows = _tiles.axis_windows(length, tile, radius, align)
    # cores partition [0, length) in order
    assert windows[0][2] == 0 and windows[-1][3] == length
    for (_, _, _, c1), (_, _, c0, _) in zip(windows, windows[1:]):
        assert c0 == c1
    for w0, w1, c0, c1 in windows:
        assert 0 <= w0 <= c0 < c1 <= w1 <= length
        # the halo is the full radius on every side that is not the image edge
        assert w0 == 0 or c0 - w0 >= radius
        assert w1 == length or w1 - c1 >= radius
        # aligned windows: start on a multiple, end on one or at the edge
        assert w0 % align == 0 and (w1 == length or w1 % align == 0)
        if len(windows) > 1 and align == 1 and tile > 2 * radius:
            assert w1 - w0 <= tile
    if length <= tile:
        assert windows == [(0, length, 0, length)]


def test_parse_max_tile():
    assert _tiles.parse_max_tile("64") == (64, 64)
    assert _tiles.parse_max_tile(" 3x5 ") == (3, 5)
    assert _tiles.parse_max_tile((7, 2)) == (7, 2)
    assert _tiles.parse_max_tile(np.int64(9)) == (9, 9)
    for bad in ("0", "3x0", "x3", "abc", -1, (1, 2, 3)):
        with pytest.raises(ValueError, match="max_tile"):
            _tiles.parse_max_tile(bad)
    with pytest.raises(TypeError, match="max_tile"):
        _tiles.parse_max_tile(2.5)


def test_radius_is_the_exact_sum_of_stage_radii():
    # Gaussian size from sigma: round(sigma * 2 * (3 if uint8 else 4) + 1) | 1
    pipe = Pipeline("median:ksize=7 | gaussian:sigma=1.3 | gamma:gamma=2 | gaussian:sigma_y=3,sigma=1")
    k8 = int(np.rint(1.3 * 6 + 1)) | 1
    k32 = int(np.rint(1.3 * 8 + 1)) | 1
    assert pipe.radius_for(np.uint8) == 3 + k8 // 2 + 0 + (int(np.rint(3 * 6 + 1)) | 1) // 2
    assert pipe.radius_for(np.float32) == 3 + k32 // 2 + 0 + (int(np.rint(3 * 8 + 1)) | 1) // 2
    assert pipe.radius == pipe.radius_for(np.float32) == pipe.radius_for(np.uint16)
    assert Pipeline("gaussian:ksize=5,sigma=4").radius_for(np.uint8) == 2  # ksize given wins


# --------------------------------------------------------------------------- exactness


@settings(max_examples=40)
@given(data=st.data())
def test_tiled_equals_whole_image_for_random_pipelines(data):
    chain = data.draw(st.lists(stages(), min_size=1, max_size=3))
    pipe = Pipeline(chain)
    dtype = data.draw(st.sampled_from(DTYPES))
    wide = np.dtype(dtype).kind == "f" and data.draw(st.booleans())
    h = data.draw(st.integers(1, 22))
    w = data.draw(st.integers(65, 150)) if wide else data.draw(st.integers(1, 22))
    c = data.draw(st.sampled_from([1, 3]))
    n = data.draw(st.integers(1, 2))
    tile = (data.draw(st.integers(1, 12)), data.draw(st.integers(1, 12)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    img = _image(rng, (n, h, w, c), dtype)
    expected = pipe(img)
    np.testing.assert_array_equal(pipe(img, max_tile=tile), expected)


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_tiled_mixed_borders_every_tile_size(rng, border, dtype):
    """Tiles down to 1 pixel (far below the 2 * radius region), each border, mixed chains."""
    others = [b for b in BORDERS if b != border]
    pipe = Pipeline(f"median:ksize=5,border={border} | gaussian:sigma=1.1,border={others[0]} "
                    f"| gamma:gamma=0.7 | gaussian:ksize=3,border={border}")
    img = _image(rng, (1, 9, 10, 3), dtype)
    expected = pipe(img)
    for tile in (1, 3, (4, 9), (9, 1), (1, 10), 40):
        np.testing.assert_array_equal(pipe(img, max_tile=tile), expected, err_msg=str(tile))


@pytest.mark.parametrize("shape", [(1, 1), (1, 30), (30, 1), (2, 17), (5, 3, 3)])
def test_tiled_thin_images(rng, shape):
    pipe = Pipeline("median:ksize=3,border=reflect | gaussian:sigma=1.5,border=reflect_101 "
                    "| median:ksize=5,border=constant")
    for dtype in DTYPES:
        img = _image(rng, shape, dtype)
        expected = pipe(img)
        for tile in (1, 2, 5):
            got = pipe(img, max_tile=tile)
            assert got.shape == img.shape
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("border", BORDERS)
def test_tiled_float_wide_rows_use_aligned_windows(rng, border):
    """Float rows wider than the SIMD alignment are cut into several windows, still exact."""
    pipe = Pipeline(f"gaussian:sigma=1.3,border={border} | gaussian:ksize=5,sigma=0.7,border=replicate")
    img = _image(rng, (1, 9, 301, 3), np.float32)
    expected = pipe(img)
    for tile in ((3, 70), (9, 100), (2, 1)):
        assert len(_tiles.plan_tiles(9, 301, _tiles.parse_max_tile(tile), pipe.radius_for(np.float32),
                                     col_align=64)) > 3
        np.testing.assert_array_equal(pipe(img, max_tile=tile), expected)


def test_tiled_calls_see_bounded_windows(rng):
    seen = []
    pipe = Pipeline("median:ksize=3 | gaussian:ksize=5")  # radius 1 + 2
    img = _image(rng, (2, 40, 56, 1), np.uint8)
    original = Pipeline.__call__

    def spy(self, batch, backend=None, *, max_tile=None):
        if max_tile is None:
            seen.append(batch.shape)
        return original(self, batch, backend, max_tile=max_tile)

    Pipeline.__call__ = spy
    try:
        out = pipe(img, max_tile="16x20")
    finally:
        Pipeline.__call__ = original
    np.testing.assert_array_equal(out, pipe(img))
    assert len(seen) == 4 * 4  # cores of 10 rows x 14 columns
    assert all(s[0] == 2 and s[1] <= 16 and s[2] <= 20 for s in seen)


def test_max_tile_layouts_and_errors(rng):
    pipe = Pipeline("median:ksize=3")
    img = _image(rng, (17, 23), np.uint8)
    out = pipe(img, max_tile=4)
    assert out.shape == img.shape and out.dtype == img.dtype
    np.testing.assert_array_equal(out, pipe(img))
    with pytest.raises(ValueError, match="max_tile"):
        pipe(img, max_tile=0)


# --------------------------------------------------------------------------- out of memory


class FakeOOM(MemoryError):
    pass


def test_oom_errors_include_memory_error():
    assert MemoryError in _tiles.oom_errors()
    assert _tiles.is_oom(FakeOOM("x")) and not _tiles.is_oom(ValueError("x"))


def test_oom_splits_batches_then_tiles_single_images(rng):
    pipe = Pipeline("median:ksize=3,border=reflect | gaussian:sigma=1")
    batch = _image(rng, (5, 24, 30, 3), np.uint8)
    limit = 2 * 24 * 30  # "device memory": at most 2 whole images, or tiles below that
    calls = []

    def call(b, tile):
        def guarded(window):
            calls.append(window.shape)
            if window.shape[0] * window.shape[1] * window.shape[2] > limit:
                raise FakeOOM("out of memory (fake)")
            return pipe(window)

        if tile is None:
            return guarded(b)
        return _tiles.run_tiled(guarded, b, tile, pipe.radius_for(b.dtype))

    released = []
    out = _tiles.call_resilient(call, batch, radius=pipe.radius_for(batch.dtype),
                                release=lambda: released.append(1))
    np.testing.assert_array_equal(out, pipe(batch))
    assert calls[0][0] == 5 and released  # the first attempt failed and released memory
    assert max(s[0] for s in calls[1:]) <= 3

    # a limit below one image: batches split down to single images, which are then tiled
    limit = 24 * 30 // 3
    calls.clear()
    out = _tiles.call_resilient(call, batch, radius=pipe.radius_for(batch.dtype),
                                release=lambda: None)
    np.testing.assert_array_equal(out, pipe(batch))
    assert any(s[1] < 24 or s[2] < 30 for s in calls)  # tiles were used


def test_oom_without_radius_or_below_the_smallest_tile_is_raised(rng):
    batch = _image(rng, (2, 8, 8, 1), np.uint8)

    def always(b, tile):
        raise FakeOOM("never fits")

    with pytest.raises(FakeOOM):
        _tiles.call_resilient(always, batch, release=lambda: None)  # not tileable
    with pytest.raises(FakeOOM):
        _tiles.call_resilient(always, batch, radius=2, release=lambda: None)

    def broken(b, tile):
        raise ValueError("not an OOM")

    with pytest.raises(ValueError):
        _tiles.call_resilient(broken, batch, radius=2, release=lambda: None)
