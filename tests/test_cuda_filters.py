"""CUDA-engine specifics of the median, Gaussian and LUT/gamma kernels, run on the emulator.

The public-op equivalence tests (tests/test_filters.py, tests/test_tone.py) compare engines;
these tests drive ``gpuenhance._cuda.filters`` / ``gpuenhance._cuda.tone`` directly so that
every kernel path (median networks, sliding histograms, radix selection, Gaussian tile and
two-pass fallback, LUT shared/global tables, vector head/tail) is hit at its thresholds, and
compare with OpenCV or an independent NumPy oracle.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from tolerances import tol

from gpuenhance import _gauss
from gpuenhance._cuda import filters, tone

BORDERS = ("replicate", "reflect", "reflect_101", "constant")
_NP_PAD = {"replicate": "edge", "reflect": "symmetric", "reflect_101": "reflect",
           "constant": "constant"}
_CV_BORDER = {"replicate": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT,
              "reflect_101": cv2.BORDER_REFLECT_101, "constant": cv2.BORDER_CONSTANT}


def _random(rng, shape, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=np.int64).astype(dtype)


def _pad_hw(x4, r, border):
    """Pad H and W of an NHWC array by r; np.pad's modes repeat reflections like OpenCV."""
    return np.pad(x4, ((0, 0), (r, r), (r, r), (0, 0)), mode=_NP_PAD[border])


def median_oracle(img, k, border):
    """Middle element of each sorted k x k window (NumPy, independent of both engines)."""
    x = img
    if img.ndim == 2:
        x = img[None, :, :, None]
    elif img.ndim == 3:
        x = img[None]
    r = k // 2
    win = sliding_window_view(_pad_hw(x, r, border), (k, k), axis=(1, 2))
    flat = np.sort(win.reshape(win.shape[:4] + (k * k,)), axis=-1)
    return flat[..., (k * k) // 2].reshape(img.shape)


def gaussian_oracle(img, kx, ky, sx, sy, border):
    """cv2.GaussianBlur per image (<= 4 channels), OpenCV's own border handling."""
    x = img[None] if img.ndim == 3 else (img[None, :, :, None] if img.ndim == 2 else img)
    out = np.stack([
        cv2.GaussianBlur(np.ascontiguousarray(im), (kx, ky), sx, sigmaY=sy,
                         borderType=_CV_BORDER[border] | cv2.BORDER_ISOLATED).reshape(im.shape)
        for im in x
    ])
    return out.reshape(img.shape)


def assert_gauss_close(got, want, dtype):
    t = tol("gaussian_filter", dtype)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), **t)


# ---------------------------------------------------------------------------------------------
# Median
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "dtype,ksize,path",
    [
        (np.uint8, 3, "small"), (np.uint8, 5, "small"), (np.uint8, 7, "small"),
        (np.uint8, 9, "hist"),
        (np.uint16, 3, "small"), (np.uint16, 5, "small"), (np.uint16, 7, "small"),
        (np.uint16, 9, "hist"),
        (np.float32, 3, "small"), (np.float32, 5, "small"), (np.float32, 7, "small"),
        (np.float32, 9, "select"),
        (np.float64, 3, "small"), (np.float64, 7, "small"), (np.float64, 9, "select"),
    ],
)
@pytest.mark.parametrize("border", BORDERS)
def test_median_paths_equal_oracle(ctx, rng, dtype, ksize, path, border):
    assert filters._median_path(dtype, ksize) == path
    img = _random(rng, (13, 17, 2), dtype)
    got = filters.median_filter(ctx, img, ksize, border)
    assert got.dtype == img.dtype and got.shape == img.shape
    np.testing.assert_array_equal(got, median_oracle(img, ksize, border))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("ksize,path", [(7, "small"), (9, "select")])
def test_median_integer_paths_without_histograms(ctx, rng, monkeypatch, dtype, ksize, path):
    # The register and radix-selection kernels are correct for integers too (the host only
    # prefers histograms there): switch the histogram path off and compare.
    monkeypatch.setattr(filters, "_HIST_FROM", {})
    assert filters._median_path(dtype, ksize) == path
    img = _random(rng, (11, 14), dtype)
    for border in ("reflect", "constant"):
        np.testing.assert_array_equal(filters.median_filter(ctx, img, ksize, border),
                                      median_oracle(img, ksize, border))


@pytest.mark.parametrize("dtype,ksize", [(np.uint8, 3), (np.uint8, 5), (np.uint8, 9),
                                         (np.uint16, 3), (np.uint16, 5), (np.float32, 3),
                                         (np.float32, 5)])
def test_median_equals_cv2_medianblur(ctx, rng, dtype, ksize):
    img = _random(rng, (17, 23), dtype)
    np.testing.assert_array_equal(filters.median_filter(ctx, img, ksize, "replicate"),
                                  cv2.medianBlur(img, ksize))


@pytest.mark.parametrize("shape", [(1, 9), (9, 1), (2, 3), (1, 1)])
@pytest.mark.parametrize("dtype,ksize", [(np.uint8, 5), (np.uint8, 11), (np.uint16, 7),
                                         (np.uint16, 11), (np.float32, 5), (np.float64, 11)])
@pytest.mark.parametrize("border", BORDERS)
def test_median_window_larger_than_image(ctx, rng, shape, dtype, ksize, border):
    img = _random(rng, shape, dtype)
    np.testing.assert_array_equal(filters.median_filter(ctx, img, ksize, border),
                                  median_oracle(img, ksize, border))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_median_ties_few_levels(ctx, rng, dtype):
    # Three distinct values: many equal keys in every window, on every path.
    img = (rng.integers(0, 3, (11, 14, 1)) * 100).astype(dtype)
    for k in (3, 5, 7, 9, 13):
        np.testing.assert_array_equal(filters.median_filter(ctx, img, k, "reflect"),
                                      median_oracle(img, k, "reflect"))


def test_median_uint16_histogram_rebuilds(ctx, rng):
    # Full-range noise moves the median's high byte almost every pixel (low-byte pair rebuilt);
    # a narrow range crossing a high-byte boundary (0x7500) keeps it mostly.
    spread = _random(rng, (12, 15), np.uint16)
    narrow = (0x7500 - 300 + rng.integers(0, 600, (12, 15))).astype(np.uint16)
    for img in (spread, narrow):
        for k in (9, 11):
            np.testing.assert_array_equal(filters.median_filter(ctx, img, k, "reflect_101"),
                                          median_oracle(img, k, "reflect_101"))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("ksize,count", [(13, "unsigned char"), (15, "unsigned char"),
                                         (17, "unsigned short")])
def test_median_histogram_counter_width(ctx, rng, launched, dtype, ksize, count):
    # 8-bit counters up to K = 15 (K*K = 225 values in one bin at most), 16-bit beyond. A
    # flat image with a few outliers fills one bin with (nearly) the whole window.
    flat = np.full((20, 19), 200, dtype)
    flat[rng.integers(0, 20, 12), rng.integers(0, 19, 12)] = 7
    for img in (flat, _random(rng, (20, 19), dtype)):
        launched.clear()
        for border in ("reflect", "constant"):
            np.testing.assert_array_equal(filters.median_filter(ctx, img, ksize, border),
                                          median_oracle(img, ksize, border))
        assert launched[0] == f"gpuenhance_median_hist<{filters.ctype(dtype)}, {count}, 0>"


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_median_histogram_largest_window(ctx, rng, dtype):
    # ksize 255 (the public maximum): 65025 window values, the most the 16-bit counters hold.
    img = _random(rng, (3, 4), dtype)
    np.testing.assert_array_equal(filters.median_filter(ctx, img, 255, "reflect"),
                                  median_oracle(img, 255, "reflect"))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_median_histogram_refuses_windows_past_16_bit_counters(ctx, dtype):
    # 257 * 257 > 65535: unreachable through the public op (ksize <= 255), refused here.
    img = np.zeros((3, 4), dtype)
    with pytest.raises(ValueError, match=r"ksize must be in \[1, 255\]"):
        filters.median_filter(ctx, img, 257, "reflect")


@pytest.mark.parametrize("ksize", [3, 7, 9])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_median_batch_and_grid_z_stride(ctx, rng, monkeypatch, dtype, ksize):
    # N*C = 6 planes on a grid.z of 4: the kernels' plane loop covers the rest.
    monkeypatch.setattr(filters, "_GRID_Z", 4)
    img = _random(rng, (2, 3, 5, 3), dtype)
    got = filters.median_filter(ctx, img, ksize, "reflect_101")
    np.testing.assert_array_equal(got, median_oracle(img, ksize, "reflect_101"))


def test_median_ksize_one_is_a_copy(ctx, rng):
    img = _random(rng, (5, 6, 3), np.uint16)[:, ::2]
    got = filters.median_filter(ctx, img, 1, "constant")
    np.testing.assert_array_equal(got, img)
    assert not np.shares_memory(got, img)


def test_median_non_contiguous_input(ctx, rng):
    base = _random(rng, (14, 20, 3), np.uint8)
    img = base[::2, 1::2]
    np.testing.assert_array_equal(filters.median_filter(ctx, img, 3, "reflect"),
                                  median_oracle(np.ascontiguousarray(img), 3, "reflect"))


# The packed kernel (gpuenhance_median_small_packed): uint8 in both lane layouts (8-bit lanes,
# the 16-bit lanes sm_90 gets), uint16 and float32; rows that are not 4- or 16-byte aligned, several
# 256-byte tiles and row tiles, image edges inside a word, batches.
@pytest.fixture
def launched(ctx, monkeypatch):
    """The name expressions of the kernels launched (through ``ctx.kernel``), in order."""
    names = []
    real = ctx.kernel

    def spy(filename, name):
        names.append(name)
        return real(filename, name)

    monkeypatch.setattr(ctx, "kernel", spy)
    return names


PACKED = [(np.uint8, "gpuenhance_u8x4"), (np.uint8, "gpuenhance_u16x2x2"),
          (np.uint16, "gpuenhance_u16x2"), (np.float32, "gpuenhance_f32x1")]


@pytest.fixture(params=PACKED, ids=[lanes for _, lanes in PACKED])
def packed(request, monkeypatch, launched):
    """(dtype, lane layout forced for it, the kernels launched)."""
    dtype, lanes = request.param
    monkeypatch.setattr(filters, "_packed_lanes", lambda _ctx, _dtype: lanes)
    return np.dtype(dtype), lanes, launched


def _packed_or_generic(dtype, ksize, lanes, fuse=0):
    """The kernel the host launches: packed where it has the window (7x7: uint8 only)."""
    if ksize in filters._PACKED_K[dtype]:
        return filters._packed_name(ksize, fuse, lanes)
    return filters._small_name(dtype, ksize, fuse)


# Widths: odd, not a multiple of 4 or 16 bytes; 18 rows and more: several row tiles of 8 rows
# per thread; 1 x 5: every window reaches past the image on every side.
@pytest.mark.parametrize("shape", [(2, 37, 101, 3), (1, 18, 150, 1), (3, 9, 23, 4), (1, 1, 5, 3)])
@pytest.mark.parametrize("ksize", [3, 5, 7])
@pytest.mark.parametrize("border", BORDERS)
def test_median_packed_equals_oracle(packed, ctx, rng, shape, ksize, border):
    dtype, lanes, names = packed
    img = _random(rng, shape, dtype)
    got = filters.median_filter(ctx, img, ksize, border)
    np.testing.assert_array_equal(got, median_oracle(img, ksize, border))
    assert names == [_packed_or_generic(dtype, ksize, lanes)]


@pytest.mark.parametrize("shape", [(17, 23), (17, 23, 3), (17, 23, 4)])
@pytest.mark.parametrize("ksize", [3, 5, 7])
def test_median_packed_equals_cv2_medianblur(packed, ctx, rng, shape, ksize):
    dtype, lanes, names = packed
    img = _random(rng, shape, dtype)
    # OpenCV filters windows above 5 for uint8 only
    want = (cv2.medianBlur(img, ksize) if dtype == np.uint8 or ksize <= 5
            else median_oracle(img, ksize, "replicate"))
    np.testing.assert_array_equal(filters.median_filter(ctx, img, ksize, "replicate"), want)
    assert names == [_packed_or_generic(dtype, ksize, lanes)]


@pytest.mark.parametrize("ksize", [3, 5, 7])
def test_median_packed_fused(packed, ctx, rng, ksize):
    dtype, lanes, names = packed
    img = _random(rng, (2, 11, 45, 3), dtype)  # uint8: 135-byte rows, words straddle pixels
    med = median_oracle(img, ksize, "reflect")
    if dtype.kind == "u":
        lut = _random(rng, (np.iinfo(dtype).max + 1, 3), dtype)
        got = filters.median_filter(ctx, img, ksize, "reflect", lut=lut)
        np.testing.assert_array_equal(got, lut[med, np.arange(3)])
    else:
        img = np.abs(img)
        med = median_oracle(img, ksize, "reflect")
        got = filters.median_filter(ctx, img, ksize, "reflect", gamma=0.6, gain=1.1)
        want = np.float32(1.1) * np.power(np.clip(med, 0, 1), np.float32(0.6))  # [0, 1] domain
        np.testing.assert_allclose(got, want, **tol("gamma_correct", np.float32))
    assert names == [_packed_or_generic(dtype, ksize, lanes, 1 if dtype.kind == "u" else 2)]


@pytest.mark.parametrize("grid_y,grid_z", [(1, 1), (2, 2)])
def test_median_packed_clamped_grid_strides(packed, ctx, rng, monkeypatch, grid_y, grid_z):
    dtype = packed[0]
    monkeypatch.setattr(filters, "_GRID_Y", grid_y)
    monkeypatch.setattr(filters, "_GRID_Z", grid_z)
    img = _random(rng, (3, 40, 7, 3), dtype)  # 3 row tiles of 16, 3 images
    assert filters.median_packed_launch(img.shape, dtype, 5)["grid"] == (1, grid_y, grid_z)
    np.testing.assert_array_equal(filters.median_filter(ctx, img, 5, "reflect_101"),
                                  median_oracle(img, 5, "reflect_101"))


@pytest.mark.parametrize("dtype,ksize", [(np.uint8, 5), (np.uint16, 5), (np.float32, 5),
                                         (np.uint8, 7)])
def test_median_many_channels_use_the_generic_kernel(ctx, rng, launched, dtype, ksize):
    # C = 16 is the packed kernel's last channel count (pixels of 16, 32, 64 bytes); 17 is not.
    assert filters.median_packed_launch((1, 6, 7, 16), dtype, ksize) is not None
    assert filters.median_packed_launch((1, 6, 7, 17), dtype, ksize) is None
    for c in (16, 17):
        img = _random(rng, (6, 7, c), dtype)
        np.testing.assert_array_equal(filters.median_filter(ctx, img, ksize, "reflect"),
                                      median_oracle(img, ksize, "reflect"))
    assert launched[0].startswith("gpuenhance_median_small_packed<")
    assert launched[1] == filters._small_name(dtype, ksize)


def test_median_packed_has_no_float64_form():
    assert filters.median_packed_launch((1, 6, 7, 3), np.float64, 3) is None
    assert filters.median_packed_launch((1, 6, 7, 3), np.float32, 7) is None


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("shape", [(1, 2**30 - 1, 3, 1), (1, 5, 2**30 - 1, 1), (100_000, 7, 9, 3),
                                   (3, 50_000, 50_000, 1), (1, 4, 2**29, 4)])
def test_median_packed_launch_of_huge_shapes(dtype, shape):
    n, h, w, c = shape
    row_bytes = w * c * np.dtype(dtype).itemsize
    cfg = filters.median_packed_launch(shape, dtype, 3)
    if row_bytes > 2**31 - 1 - 1024:  # byte offsets of a row must fit an int: generic kernel
        assert cfg is None
        return
    gx, gy, gz = cfg["grid"]
    assert gx * cfg["block"][0] * 4 >= row_bytes and gx <= 2**31 - 1  # 4 bytes per thread
    assert gy == min(-(-h // cfg["rows"]), 65535) and gz == min(n, 65535)
    lanes = filters._PACKED_LANES[np.dtype(dtype)][0]
    assert cfg["rows"] == cfg["block"][1] * filters._packed_ry(3, lanes)
    assert cfg["shared_mem"] <= filters._SMEM_LIMIT


# ---------------------------------------------------------------------------------------------
# Gaussian
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("params", [(3, 3, 0.0, 0.0), (5, 9, 1.3, 2.1), (1, 7, 0.0, 1.7)])
def test_gaussian_tile_equals_cv2(ctx, rng, dtype, border, params):
    kx, ky, sx, sy = params
    img = _random(rng, (13, 17, 3), dtype)
    if np.dtype(dtype).kind == "f":
        img = np.abs(img)
    got = filters.gaussian_filter(ctx, img, kx, ky, sx, sy, border)
    assert_gauss_close(got, gaussian_oracle(img, kx, ky, sx, sy, border), dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
@pytest.mark.parametrize("border", BORDERS)
def test_gaussian_kernel_larger_than_image(ctx, rng, dtype, border):
    img = _random(rng, (1, 5), dtype)
    got = filters.gaussian_filter(ctx, img, 15, 9, 4.0, 3.0, border)
    assert_gauss_close(got, gaussian_oracle(img, 15, 9, 4.0, 3.0, border), dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("border", ["reflect", "constant"])
def test_gaussian_two_pass_fallback(ctx, rng, monkeypatch, dtype, border):
    # No tile fits the (shrunk) shared-memory limit: x pass then y pass through an Acc buffer.
    monkeypatch.setattr(filters, "_SMEM_LIMIT", 64)
    assert filters._tile_shape(7, 5, 4) is None
    img = _random(rng, (2, 9, 11, 2), dtype)
    if np.dtype(dtype).kind == "f":
        img = np.abs(img)
    got = filters.gaussian_filter(ctx, img, 7, 5, 1.5, 0.9, border)
    assert_gauss_close(got, gaussian_oracle(img, 7, 5, 1.5, 0.9, border), dtype)


def test_gaussian_batch_grid_z_stride(ctx, rng, monkeypatch):
    monkeypatch.setattr(filters, "_GRID_Z", 2)
    img = _random(rng, (2, 6, 7, 3), np.uint8)
    got = filters.gaussian_filter(ctx, img, 5, 5, 0.0, 0.0, "reflect_101")
    assert_gauss_close(got, gaussian_oracle(img, 5, 5, 0.0, 0.0, "reflect_101"), np.uint8)


# The interleaved-rows kernel (gpuenhance_gaussian_tile_rows) does the tile kernel's arithmetic
# term for term: bit-identical to it, and so within the contract of cv2.GaussianBlur.
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("shape,params", [((2, 19, 150, 3), (7, 5, 0.0, 0.0)),
                                          ((1, 9, 37, 4), (9, 3, 2.0, 0.7)),
                                          ((1, 33, 5, 1), (1, 15, 0.0, 2.5)),
                                          ((1, 40, 21, 2), (9, 1, 1.5, 0.0))])
@pytest.mark.parametrize("border", BORDERS)
def test_gaussian_rows_equals_tile_kernel_and_cv2(ctx, rng, monkeypatch, launched, dtype,
                                                  shape, params, border):
    kx, ky, sx, sy = params
    img = _random(rng, shape, dtype)
    if np.dtype(dtype).kind == "f":
        img = np.abs(img)
    got = filters.gaussian_filter(ctx, img, kx, ky, sx, sy, border)
    assert launched[0] in _rows_names(dtype)
    assert_gauss_close(got, gaussian_oracle(img, kx, ky, sx, sy, border), dtype)
    monkeypatch.setattr(filters, "gaussian_rows_launch", lambda *args, **kwargs: None)
    want = filters.gaussian_filter(ctx, img, kx, ky, sx, sy, border)
    assert launched[1] == filters._tile_name(dtype)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("grid_y,grid_z", [(1, 1), (2, 2)])
def test_gaussian_rows_clamped_grid_strides(ctx, rng, monkeypatch, launched, grid_y, grid_z):
    monkeypatch.setattr(filters, "_GRID_Y", grid_y)
    monkeypatch.setattr(filters, "_GRID_Z", grid_z)
    img = _random(rng, (3, 70, 6, 3), np.uint8)  # 3 images; 3 row tiles of 32
    cfg = filters.gaussian_rows_launch(img.shape, 5, 7, 4)
    assert cfg["grid"] == (1, grid_y, grid_z) and cfg["rows"] == 32
    got = filters.gaussian_filter(ctx, img, 5, 7, 0.0, 0.0, "reflect")
    assert launched == [filters._rows_name(np.uint8, ring=cfg["span"] > 0)]
    assert_gauss_close(got, gaussian_oracle(img, 5, 7, 0.0, 0.0, "reflect"), np.uint8)


def test_gaussian_rows_fused_per_channel_lut(ctx, rng, launched):
    img = _random(rng, (2, 10, 45, 3), np.uint8)
    lut = _random(rng, (256, 3), np.uint8)
    plain = filters.gaussian_filter(ctx, img, 5, 5, 0.0, 0.0, "reflect_101")
    got = filters.gaussian_filter(ctx, img, 5, 5, 0.0, 0.0, "reflect_101", lut=lut)
    assert launched[0] in _rows_names(np.uint8) and launched[1] in _rows_names(np.uint8, 1)
    np.testing.assert_array_equal(got, lut[plain, np.arange(3)])


def test_gaussian_rows_falls_back_when_shared_memory_is_short(ctx, monkeypatch):
    # The tile's rows pass in chunks, so only a row too wide for shared memory (a long
    # horizontal window on many channels) leaves the rows kernel: then the per-plane tile
    # kernel (or the two-pass one) runs.
    # 16 channels, k61: rows of 128 + 60*16 staged values and 128 sums, 4 bytes each.
    assert filters.gaussian_rows_launch((1, 64, 64, 16), 61, 61, 4)["chunk"] == (
        (48 * 1024 // 4 - 122) // (128 + 60 * 16 + 128))
    assert filters.gaussian_rows_launch((1, 64, 64, 200), 61, 3, 4) is None
    assert filters.gaussian_launch((1, 64, 64, 200), 61, 3, 4)["path"] == "tile"
    monkeypatch.setattr(filters, "_SMEM_LIMIT", 64)
    assert filters.gaussian_rows_launch((1, 64, 64, 1), 3, 3, 4) is None


def _rows_names(dtype, fuse=0):
    """Both forms of the rows kernel (chunked and ring) for *dtype*."""
    return {filters._rows_name(dtype, fuse, ring) for ring in filters._rings(dtype)}


def _gauss_image(rng, shape, dtype):
    img = _random(rng, shape, dtype)
    return np.abs(img) if np.dtype(dtype).kind == "f" else img


def _rows_with(monkeypatch, *, vec=None, budget=None):
    """Force the rows kernel's vector staging on/off and its shared-memory budget."""
    if vec is not None:
        monkeypatch.setattr(filters, "_rows_vectors", lambda x: vec)
    if budget is not None:
        monkeypatch.setattr(filters, "_rows_budget", lambda optin: budget)


# A block walking several row tiles keeps the last ky - 1 rows of horizontal sums (ring mode):
# bit-identical to the per-plane tile kernel, on every dtype and border, with strips that do
# and do not divide the row tiles, chunked staging, and grid-stride strips.
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("border", BORDERS)
def test_gaussian_rows_ring_equals_tile_kernel(ctx, rng, monkeypatch, launched, dtype, border):
    img = _gauss_image(rng, (2, 150, 16, 3), dtype)  # 5 row tiles of 32
    kx, ky, sx, sy = 7, 13, 1.4, 2.3
    with monkeypatch.context() as m:
        m.setattr(filters, "gaussian_rows_launch", lambda *args, **kwargs: None)
        want = filters.gaussian_filter(ctx, img, kx, ky, sx, sy, border)
    monkeypatch.setattr(filters, "_ROWS_MIN_BLOCKS", 1)
    monkeypatch.setattr(filters, "_ROWS_RING_STAGE", 1)
    monkeypatch.setattr(filters, "_ROWS_RING_MIN_K", 1)
    size, acc = np.dtype(dtype).itemsize, filters._ACC_DTYPE[np.dtype(dtype)].itemsize
    th = 32 + ky - 1
    for span, chunk, grid_y in ((8, th, 65535), (2, 5, 65535), (4, th, 1)):
        monkeypatch.setattr(filters, "_ROWS_SPAN", span)
        monkeypatch.setattr(filters, "_GRID_Y", grid_y)
        pitch = filters._rows_pitch(kx, 3, size, filters._rows_vectors(img))
        budget = (chunk * pitch + th * filters._ROWS_BW + kx + ky) * acc
        cfg = filters.gaussian_rows_launch(img.shape, kx, ky, acc, itemsize=size,
                                           vec=filters._rows_vectors(img), smem_limit=budget)
        assert (cfg["span"], cfg["chunk"]) == (min(span, 5), chunk)
        _rows_with(monkeypatch, budget=budget)
        got = filters.gaussian_filter(ctx, img, kx, ky, sx, sy, border)
        np.testing.assert_array_equal(got, want, err_msg=f"span={span} chunk={chunk}")
    assert launched == [filters._tile_name(dtype)] + [filters._rows_name(dtype, ring=True)] * 3


# Chunks of the tile's rows (any size) and vector staging (16-byte loads) do not change a
# value: the rows kernel stays bit-identical to the per-plane tile kernel.
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("border", BORDERS)
def test_gaussian_rows_chunks_and_vectors_equal_tile_kernel(ctx, rng, monkeypatch, launched,
                                                            dtype, border):
    # 16 pixels x 3 channels: rows of 48 values, a 16-byte multiple for every dtype.
    img = _gauss_image(rng, (2, 13, 16, 3), dtype)
    kx, ky, sx, sy = 11, 9, 2.0, 1.6
    with monkeypatch.context() as m:
        m.setattr(filters, "gaussian_rows_launch", lambda *args, **kwargs: None)
        want = filters.gaussian_filter(ctx, img, kx, ky, sx, sy, border)
    assert launched == [filters._tile_name(dtype)]
    acc = filters._ACC_DTYPE[np.dtype(dtype)].itemsize
    for vec, chunk in ((False, 40), (True, 40), (True, 3), (False, 1)):
        per_row = filters._rows_pitch(kx, 3, np.dtype(dtype).itemsize, vec) + filters._ROWS_BW
        _rows_with(monkeypatch, vec=vec, budget=(chunk * per_row + kx + ky) * acc)
        got = filters.gaussian_filter(ctx, img, kx, ky, sx, sy, border)
        np.testing.assert_array_equal(got, want, err_msg=f"vec={vec} chunk={chunk}")
    assert len(launched) == 5 and set(launched[1:]) <= _rows_names(dtype)


def test_gaussian_rows_vector_rule(ctx):
    # 16-byte loads only where the data and every row start on a 16-byte boundary.
    buf = np.zeros(4096 + 64, dtype=np.uint8)
    start = (-buf.ctypes.data) % 16
    aligned = buf[start:start + 2 * 8 * 16 * 3].reshape(2, 8, 16, 3)  # 48-byte rows
    assert filters._rows_vectors(aligned)
    assert not filters._rows_vectors(buf[start + 1:start + 1 + 768].reshape(2, 8, 16, 3))
    assert not filters._rows_vectors(buf[start:start + 2 * 8 * 15 * 3].reshape(2, 8, 15, 3))
    assert filters._rows_vectors(buf[start:start + 768].view(np.uint16).reshape(2, 8, 8, 3))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_gaussian_rows_vectors_on_misaligned_and_odd_rows(ctx, rng, launched, dtype):
    # Vector staging runs where allowed and both kinds of row equal OpenCV.
    for shape, offset in (((1, 11, 32, 3), 0), ((1, 11, 32, 3), 1), ((1, 11, 31, 3), 0)):
        size = int(np.prod(shape))
        buf = _gauss_image(rng, (size + 16,), dtype)
        start = (-buf.ctypes.data // buf.itemsize) % (16 // buf.itemsize) + offset
        img = buf[start:start + size].reshape(shape)
        assert filters._rows_vectors(img) == (offset == 0 and shape[2] == 32)
        got = filters.gaussian_filter(ctx, img, 13, 7, 2.2, 1.3, "reflect_101")
        assert_gauss_close(got, gaussian_oracle(img, 13, 7, 2.2, 1.3, "reflect_101"), dtype)
    assert len(launched) == 3 and set(launched) <= _rows_names(dtype)


def test_gaussian_rows_opt_in_shared_memory(ctx, rng, monkeypatch, launched):
    # sigma 5 float32 (k41) on RGB: all 72 rows of the tile (108 KiB) where the device lets a
    # block opt into that much (an H100/H200: 227 KiB), chunks of them in the default 48 KiB.
    img = _gauss_image(rng, (1, 9, 50, 3), np.float32)
    k = _gauss.resolve(0, 5.0, None, np.float32)[0]
    assert k == 41
    vec = filters._rows_vectors(img)
    default = filters.gaussian_rows_launch(img.shape, k, k, 4, itemsize=4, vec=vec)
    assert default["shared_mem"] <= filters._SMEM_LIMIT and default["chunk"] < 72
    big = filters.gaussian_rows_launch(img.shape, k, k, 4, itemsize=4, vec=vec,
                                       smem_limit=filters._rows_budget(227 * 1024))
    assert big["chunk"] == 72 and big["shared_mem"] > filters._SMEM_LIMIT
    want = gaussian_oracle(img, k, k, 5.0, 5.0, "reflect_101")
    default_got = filters.gaussian_filter(ctx, img, k, k, 5.0, 5.0, "reflect_101")
    monkeypatch.setattr(filters, "_smem_optin", lambda c: 227 * 1024)
    got = filters.gaussian_filter(ctx, img, k, k, 5.0, 5.0, "reflect_101")
    assert len(launched) == 2 and set(launched) <= _rows_names(np.float32)
    kern = ctx.kernel("gaussian.cu", launched[1])
    assert kern.max_dynamic_shared_size_bytes >= big["shared_mem"]
    assert_gauss_close(got, want, np.float32)
    np.testing.assert_array_equal(got, default_got)


# Windows past every tile (up to the public limit, ksize 1023): the rows kernel in chunks,
# bit-identical to the two 1-D passes (the same sums in the same order) and within the
# contract of cv2.GaussianBlur.
@pytest.mark.parametrize("dtype,shape,kx,ky,border", [
    (np.uint8, (1, 40, 23, 3), 129, 255, "reflect_101"),
    (np.float32, (1, 7, 9, 2), 61, 301, "reflect"),
    (np.float64, (1, 5, 6, 1), 1023, 1023, "constant"),
    (np.uint16, (1, 30, 70, 1), 255, 61, "replicate"),
])
def test_gaussian_rows_large_windows(ctx, rng, monkeypatch, launched, dtype, shape, kx, ky,
                                     border):
    img = _gauss_image(rng, shape, dtype)
    sx, sy = kx / 6.0, ky / 6.0
    assert filters.gaussian_launch(shape, kx, ky, 4)["path"] == "two_pass"
    got = filters.gaussian_filter(ctx, img, kx, ky, sx, sy, border)
    assert launched == [filters._rows_name(dtype)]  # ring mode needs all th rows: chunks here
    assert_gauss_close(got, gaussian_oracle(img, kx, ky, sx, sy, border), dtype)
    monkeypatch.setattr(filters, "gaussian_rows_launch", lambda *args, **kwargs: None)
    np.testing.assert_array_equal(filters.gaussian_filter(ctx, img, kx, ky, sx, sy, border), got)
    assert launched[1:] == list(filters._pass_names(dtype))


@pytest.mark.parametrize("shape", [(1, 2**30 - 1, 3, 1), (1, 5, 2**30 - 1, 1), (100_000, 7, 9, 3),
                                   (3, 50_000, 50_000, 1), (1, 4, 2**29, 4)])
def test_gaussian_rows_launch_of_huge_shapes(shape):
    n, h, w, c = shape
    cfg = filters.gaussian_rows_launch(shape, 7, 7, 4)
    if w * c > 2**31 - 1 - 512:  # the row's offsets must fit an int: the tile kernel runs
        assert cfg is None
        return
    gx, gy, gz = cfg["grid"]
    assert gx * cfg["block"][0] * 4 >= w * c and gx <= 2**31 - 1  # 4 values per thread
    strips = -(-(-(-h // cfg["rows"])) // max(cfg["span"], 1))  # row tiles per block: span
    assert gy == min(strips, 65535) and gz == min(n, 65535)
    assert cfg["shared_mem"] <= filters._SMEM_LIMIT


def test_gaussian_taps_uploaded_once(ctx):
    a = filters._taps(ctx, 7, 1.5, np.uint8)
    assert a is filters._taps(ctx, 7, 1.5, np.uint8)
    np.testing.assert_array_equal(a, _gauss.opencv_taps(7, 1.5, np.uint8).astype(np.float32))
    d = filters._taps(ctx, 7, 1.5, np.float64)
    assert d.dtype == np.float64
    np.testing.assert_allclose(d, cv2.getGaussianKernel(7, 1.5, ktype=cv2.CV_64F).ravel(),
                               rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# LUT and gamma
# ---------------------------------------------------------------------------------------------
def _lut_oracle(img, lut):
    if lut.ndim == 2 and lut.shape[1] > 1:
        return lut[img, np.arange(img.shape[-1])]
    return lut.reshape(-1)[img]


@pytest.mark.parametrize("shape", [(13, 17), (2, 5, 7, 3), (4, 9, 4)])
def test_lut_uint8_equals_cv2(ctx, rng, shape):
    img = _random(rng, shape, np.uint8)
    lut = _random(rng, (256,), np.uint8)
    got = tone.apply_lut(ctx, img, lut)
    flat = img.reshape(-1, shape[-1]) if img.ndim > 2 else img
    want = cv2.LUT(np.ascontiguousarray(flat), lut).reshape(shape)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype,channels", [(np.uint8, 3), (np.uint8, 200), (np.uint16, 3),
                                            (np.uint16, 1)])
def test_lut_per_channel(ctx, rng, dtype, channels):
    # uint8 with 3 channels: shared-memory table; 200 channels (51 KiB) and uint16: global.
    entries = 256 if dtype == np.uint8 else 65536
    img = _random(rng, (2, 3, 5, channels), dtype)
    lut = _random(rng, (entries, channels), dtype)
    got = tone.apply_lut(ctx, img, lut)
    np.testing.assert_array_equal(got, _lut_oracle(img, lut))
    if dtype == np.uint8 and channels == 3:
        flat = np.ascontiguousarray(img.reshape(-1, 1, channels))
        cv = cv2.LUT(flat, np.ascontiguousarray(lut.reshape(256, 1, channels)))
        np.testing.assert_array_equal(got, cv.reshape(img.shape))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_lut_misaligned_views_and_odd_lengths(ctx, rng, dtype):
    # Contiguous views starting 0..16 elements into a buffer: scalar head, vectors, tail; and
    # a source 1 byte off (uint16 elements straddling words), still loaded as vectors.
    entries = 256 if dtype == np.uint8 else 65536
    lut = _random(rng, (entries,), dtype)
    base = _random(rng, (120,), dtype)
    for offset in (0, 1, 3, 8, 15, 16):
        for n in (1, 15, 16, 17, 61):
            view = base[offset:offset + n].reshape(1, n)
            np.testing.assert_array_equal(tone.apply_lut(ctx, view, lut), lut[view])
    raw = np.zeros(2 * 70 + 1, dtype=np.uint8)
    odd = raw[1:].view(dtype)  # misaligned by one byte
    odd[:] = _random(rng, odd.shape, dtype)
    img = odd.reshape(1, -1)
    out = np.empty_like(img)
    head, delta = tone._head(ctx, img, out)
    assert head < img.size and delta == (img.ctypes.data - out.ctypes.data) % 16 != 0
    np.testing.assert_array_equal(tone.apply_lut(ctx, img, lut), lut[img])


@pytest.mark.parametrize("dtype,channels", [(np.uint8, 1), (np.uint8, 3), (np.uint16, 3)])
def test_lut_two_vectors_per_trip_with_a_small_grid(ctx, rng, monkeypatch, dtype, channels):
    # One block of 256 threads: every thread makes several trips of two vectors each, the
    # last trips with and without a second vector, then the scalar tail.
    monkeypatch.setattr(tone, "_MAX_BLOCKS", 1)
    assert tone._grid(10**6, 32)[0] == 1
    entries = 256 if dtype == np.uint8 else 65536
    img = _random(rng, (2, 37, 41, channels), dtype)  # 1076+ vectors: 4+ half-full trips
    for lut in (_random(rng, (entries,), dtype), _random(rng, (entries, channels), dtype)):
        np.testing.assert_array_equal(tone.apply_lut(ctx, img, lut), _lut_oracle(img, lut))


def test_gamma_float_two_vectors_per_trip_with_a_small_grid(ctx, rng, monkeypatch):
    monkeypatch.setattr(tone, "_MAX_BLOCKS", 1)
    img = np.abs(_random(rng, (3, 29, 30, 3), np.float32))  # 1957 vectors and a 2-value tail
    got = tone.gamma_correct(ctx, img, 0.7, 1.2)
    np.testing.assert_allclose(got, np.float32(1.2) * np.power(np.clip(img, 0, 1), np.float32(0.7)),
                               **tol("gamma_correct", np.float32))


def test_lut_column_table_is_shared(ctx, rng):
    img = _random(rng, (6, 7, 2), np.uint8)
    lut = _random(rng, (256, 1), np.uint8)
    np.testing.assert_array_equal(tone.apply_lut(ctx, img, lut), lut[img, 0])


def _aligned(n, offset):
    """n uint8 elements starting `offset` bytes past a 16-byte boundary."""
    buf = np.zeros(n + 32, dtype=np.uint8)
    start = (-buf.ctypes.data) % 16 + offset
    return buf[start:start + n]


def test_head_alignment_rule(ctx):
    # The head reaches the destination's next 16-byte boundary, one vector further when the
    # source's first aligned load would start before the source; delta is the source's offset.
    assert tone._head(ctx, _aligned(37, 3), _aligned(37, 3)) == (13, 0)
    assert tone._head(ctx, _aligned(37, 0), _aligned(37, 0)) == (0, 0)
    assert tone._head(ctx, _aligned(5, 3), _aligned(5, 3)) == (5, 0)
    assert tone._head(ctx, _aligned(37, 3), _aligned(37, 0)) == (16, 3)
    assert tone._head(ctx, _aligned(37, 0), _aligned(37, 3)) == (13, 13)
    assert tone._head(ctx, _aligned(37, 9), _aligned(37, 4)) == (12, 5)
    odd16 = _aligned(41, 1)[:40].view(np.uint16)
    assert tone._head(ctx, odd16, _aligned(40, 0)[:40].view(np.uint16)) == (8, 1)
    # no destination element starts on a boundary: all scalar
    assert tone._head(ctx, _aligned(40, 0).view(np.uint16), odd16) == (20, 0)


def _filled(rng, n, offset, dtype):
    """n values of dtype starting `offset` bytes past a 16-byte boundary, random."""
    size = np.dtype(dtype).itemsize
    view = _aligned(n * size, offset).view(dtype)
    view[:] = _random(rng, (n,), dtype)
    return view


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_lut_any_source_and_destination_offsets(ctx, rng, monkeypatch, dtype):
    # Every pair of byte offsets past a 16-byte boundary (uint16: even destinations), one
    # block so that threads make trips of two vectors; vectors, head and tail equal table[x].
    monkeypatch.setattr(tone, "_MAX_BLOCKS", 1)
    entries = 256 if dtype == np.uint8 else 65536
    lut = _random(rng, (entries,), dtype)
    size = np.dtype(dtype).itemsize
    n = (16 // size) * (256 + 37) + 5  # 293 vectors: the second vector of a trip, a tail
    for so in range(16):
        for do in range(0, 16, size):
            src, dst = _filled(rng, n, so, dtype), _aligned(n * size, do).view(dtype)
            dst[:] = 0
            head, delta = tone._head(ctx, src, dst)
            assert delta == (so - do) % 16 and head * size >= delta
            tone._lut_into(ctx, src.reshape(1, n), dst.reshape(1, n), lut)
            np.testing.assert_array_equal(dst, lut[src], err_msg=f"offsets {so}, {do}")


def test_lut_per_channel_offset_source(ctx, rng):
    # A per-channel table on an offset slice of a contiguous buffer: each element's channel is
    # its index in the view, whatever the alignment.
    lut = _random(rng, (256, 3), np.uint8)
    buf = _random(rng, (3 * 700 + 5,), np.uint8)
    img = buf[5:].reshape(1, 700, 3)
    np.testing.assert_array_equal(tone.apply_lut(ctx, img, lut), _lut_oracle(img, lut))


def test_gamma_float_any_source_and_destination_offsets(ctx, rng, monkeypatch):
    monkeypatch.setattr(tone, "_MAX_BLOCKS", 1)
    n = 4 * (256 + 37) + 3
    for so, do in ((4, 0), (0, 8), (12, 4), (8, 8), (0, 0)):
        src, dst = _filled(rng, n, so, np.float32), _aligned(4 * n, do).view(np.float32)
        src[:] = np.abs(src)
        tone._gamma_into(ctx, src, dst, 0.7, 1.2)
        want = np.float32(1.2) * np.power(np.clip(src, 0, 1), np.float32(0.7))
        np.testing.assert_allclose(dst, want, **tol("gamma_correct", np.float32))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("gamma,gain", [(2.2, 1.0), (0.45, 1.3), (1.0, 0.5)])
def test_gamma_integer_table(ctx, rng, dtype, gamma, gain):
    img = _random(rng, (2, 4, 5, 3), dtype)
    top = float(np.iinfo(dtype).max)
    want = np.clip(np.rint(gain * (img / top) ** gamma * top), 0, top).astype(dtype)
    np.testing.assert_array_equal(tone.gamma_correct(ctx, img, gamma, gain), want)


def test_gamma_table_cached(ctx):
    a = tone._gamma_table(ctx, "uint8", 2.2, 1.0)
    assert a is tone._gamma_table(ctx, "uint8", 2.2, 1.0)


@pytest.mark.parametrize("gamma,gain", [(2.2, 1.0), (0.45, 1.7), (1.0, 1.0)])
def test_gamma_float_direct_nan_inf(ctx, gamma, gain):
    vals = np.array([0.0, 0.25, np.nan, 1.0, -0.5, np.inf, 1e-30, 0.7, 3.0], dtype=np.float32)
    img = np.tile(vals, 5)[1:40].reshape(3, 13)  # odd length, misaligned start
    got = tone.gamma_correct(ctx, img, gamma, gain)
    # the float domain is [0, 1] (numpy.clip keeps NaN), as on the CPU engine
    want = np.float32(gain) * np.power(np.clip(img, 0, 1), np.float32(gamma))
    assert got.dtype == np.float32 and got.shape == img.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, **tol("gamma_correct", np.float32))


# Float gamma: gpuenhance_pow01 (kernels/common.cuh), 2^(g * log2 x) from a 64-entry table and
# two short series, against a float64 oracle over the whole of [0, 1].
def _unit_interval_floats(rng, n):
    """n random float32 bit patterns in [0, 1] (every binade, denormals included), the 4096
    floats just below 1, each table interval's ends, and 0, 1, the smallest denormal, NaN."""
    bits = rng.integers(0, 0x3F800001, n, dtype=np.uint32)
    near_one = np.arange(0x3F800000 - 4096, 0x3F800000, dtype=np.uint32)
    ends = (0x3F800000 + (np.arange(64, dtype=np.uint32) << 17))[:, None] + np.array([0, 1])
    ends = np.concatenate([(ends - 0x800000).ravel(), (ends - 0x3000000).ravel()])
    special = np.array([0, 1, 0x3F800000, 0x7FC00000, 0x00800000, 0x007FFFFF], dtype=np.uint32)
    return np.concatenate([bits, near_one, ends.astype(np.uint32), special]).view(np.float32)


@pytest.mark.parametrize("gamma,gain", [(1 / 2.2, 1.0), (2.2, 1.0), (0.01, 1.0), (7.5, 3.0),
                                        (64.0, 1.0), (64.5, 1.0), (300.0, 0.5)])
def test_gamma_float_against_float64_over_the_unit_interval(ctx, rng, gamma, gain):
    x = _unit_interval_floats(rng, 60_000).reshape(1, -1)
    got = tone.gamma_correct(ctx, x, gamma, gain)
    x64 = x.astype(np.float64)
    want = float(np.float32(gain)) * x64 ** float(np.float32(gamma))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(x))
    np.testing.assert_allclose(got, want, **tol("gamma_correct", np.float32))
    # exact where the result is: 0 -> 0, 1 -> gain
    assert got[0, -6] == 0.0 and got[0, -4] == np.float32(gain)


def test_gamma_table_matches_its_definition():
    # The table in kernels/common.cuh, recomputed: centre c_i of the mantissa interval
    # [1 + i/64, 1 + (i+1)/64) (c = 1 and 2 at the ends), inv = float(1/c),
    # T = -log2(inv) (- 1 from i = 32 on) split into float hi + lo.
    import re

    from gpuenhance._cuda._loader import kernel_source

    text = kernel_source("lut.cu")
    body = text[text.index("gpuenhance_log2_table[64] = {"):]
    body = body[:body.index("};")]
    rows = re.findall(r"\{([^{}]*)\},", body)
    got = np.array([[float(v.rstrip("f")) for v in row.split(",")] for row in rows],
                   dtype=np.float32)
    assert got.shape == (64, 4)
    for i in range(64):
        c = 1.0 if i == 0 else 2.0 if i == 63 else 1.0 + (i + 0.5) / 64
        inv = np.float32(1.0 / c)
        t = -np.log2(np.float64(inv)) - (1.0 if i >= 32 else 0.0)
        hi = np.float32(t)
        assert (got[i, 0], got[i, 1], got[i, 3]) == (inv, hi, 0.0), i
        assert got[i, 2] == np.float32(t - np.float64(hi)), i


def test_gaussian_rows_launch_of_the_issue_cases():
    # 4K RGB on an H200 (227 KiB opt-in: 113.5 KiB planned per block). sigma 5 float32 (k41):
    # ring mode, all 72 rows of sums and a 72-row stage in 109 768 bytes, 8 row tiles per
    # block; sigma 1 uint8 (k7): chunked (the ring saves 6 of 38 rows), all 38 rows at once.
    budget = filters._rows_budget(232448)
    big = filters.gaussian_rows_launch((2, 2160, 3840, 3), 41, 41, 4, itemsize=4, vec=True,
                                       smem_limit=budget)
    assert (big["span"], big["chunk"]) == (8, 72)
    assert big["shared_mem"] == (72 * 252 + 72 * 128 + 82) * 4
    assert big["grid"] == (90, 9, 2)
    small = filters.gaussian_rows_launch((8, 2160, 3840, 3), 7, 7, 4, itemsize=1, vec=True,
                                         smem_limit=budget)
    assert (small["span"], small["chunk"]) == (0, 38)
    assert small["grid"] == (90, 68, 8)
