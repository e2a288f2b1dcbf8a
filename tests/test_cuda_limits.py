"""Size limits of the CUDA engine: huge shapes either get a valid launch or a clear ValueError.

Nothing here allocates a large array. Launch configurations are computed from shapes alone
(``median_launch``, ``gaussian_launch``, ``roi.check_limits``, ``tone._grid``) and checked
against CUDA's grid limits; the refusals of the ops themselves are driven with zero-stride
``np.broadcast_to`` fakes, which the host code refuses from their metadata before reading or
copying any element. The grid-stride loops that let a clamped grid cover any number of row
tiles and planes run on the emulator with the clamps shrunk to 1-2 and are compared with
independent oracles (NumPy median, ``cv2.GaussianBlur``).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_cuda_filters import _random, assert_gauss_close, gaussian_oracle, median_oracle
from tolerances import tol

import gpuenhance
from gpuenhance._cuda import _common, filters, roi, tone
from gpuenhance._cuda._common import GRID_X_MAX, GRID_YZ_MAX, INT32_MAX, MAX_EXTENT

BIG = 2**31  # more elements than a 32-bit index reaches


def _fake(shape, dtype=np.uint8):
    """A zero-stride array of *shape*: one element of memory, any metadata."""
    return np.broadcast_to(np.zeros((1,) * len(shape), dtype=dtype), shape)


def _assert_valid_cover(cfg, shape, rows_per_block):
    """The grid is within CUDA's limits and, with the kernels' strides, covers the batch."""
    n, h, w, c = shape
    gx, gy, gz = cfg["grid"]
    assert 1 <= gx <= GRID_X_MAX and 1 <= gy <= GRID_YZ_MAX and 1 <= gz <= GRID_YZ_MAX
    assert gx * cfg["block"][0] >= w  # columns: one thread each, no x stride
    assert gy == min(-(-h // rows_per_block), GRID_YZ_MAX)  # row tiles: clamp, then stride
    assert gz == min(n * c, GRID_YZ_MAX)  # planes: clamp, then stride


# ---------------------------------------------------------------------------------------------
# Launch configurations of huge shapes (no data)
# ---------------------------------------------------------------------------------------------
MEDIAN_PATHS = [(np.uint8, 3, "small"), (np.uint8, 9, "hist"), (np.uint16, 255, "hist"),
                (np.float32, 7, "small"), (np.float64, 11, "select")]
HUGE_SHAPES = [
    (1, MAX_EXTENT, 3, 1),        # tall: 2^27 row tiles of 8, grid.y clamped
    (1, 5, MAX_EXTENT, 1),        # wide: grid.x of 2^25 blocks
    (100_000, 7, 9, 3),           # 300000 planes, grid.z clamped
    (3, 50_000, 50_000, 1),       # 7.5e9 elements: past 2^31 in total, not per axis
]


@pytest.mark.parametrize("dtype,ksize,path", MEDIAN_PATHS)
@pytest.mark.parametrize("shape", HUGE_SHAPES)
def test_median_launch_of_huge_shapes_is_valid(dtype, ksize, path, shape):
    cfg = filters.median_launch(shape, dtype, ksize)
    assert cfg["path"] == path
    rows = cfg["strip"] if path == "hist" else cfg["block"][1]
    _assert_valid_cover(cfg, shape, rows)
    assert cfg["shared_mem"] <= filters._SMEM_LIMIT


@pytest.mark.parametrize("shape", HUGE_SHAPES)
@pytest.mark.parametrize("kx,ky", [(3, 3), (31, 5), (20001, 3)])
def test_gaussian_launch_of_huge_shapes_is_valid(shape, kx, ky):
    cfg = filters.gaussian_launch(shape, kx, ky, 4)
    if cfg["path"] == "tile":
        _assert_valid_cover(cfg, shape, cfg["block"][1])
        assert cfg["shared_mem"] <= filters._SMEM_LIMIT
    else:  # two 1-D passes: a capped 1-D grid, grid-stride over all N*H*W*C elements
        assert kx == 20001
        n, h, w, c = shape
        total = n * h * w * c
        assert cfg["grid"][1:] == (1, 1)
        assert cfg["grid"][0] == min(-(-total // cfg["block"][0]), filters._PASS_MAX_BLOCKS)


@pytest.mark.parametrize("shape,axis", [((1, MAX_EXTENT + 1, 4, 1), "H"),
                                        ((1, 4, MAX_EXTENT + 1, 1), "W"),
                                        ((BIG, 1, 1, 1), "N"), ((1, 1, 1, BIG), "C")])
def test_launch_refuses_axes_past_32_bit(shape, axis):
    size = shape[("N", "H", "W", "C").index(axis)]
    msg = f"{axis} = {size} exceeds"
    with pytest.raises(ValueError, match=msg):
        filters.median_launch(shape, np.uint8, 3)
    with pytest.raises(ValueError, match=msg):
        filters.gaussian_launch(shape, 3, 3, 4)


def test_gaussian_launch_refuses_kernel_sizes_past_32_bit():
    with pytest.raises(ValueError, match=r"ksize \(x\) must be in \[1, 1073741823\]"):
        filters.gaussian_launch((1, 8, 8, 1), MAX_EXTENT + 2, 3, 4)
    with pytest.raises(ValueError, match=r"ksize \(y\)"):
        filters.gaussian_launch((1, 8, 8, 1), 3, MAX_EXTENT + 2, 4)


def test_largest_extent_fits_the_kernels_int_arithmetic():
    # gpuenhance_border_index's reflection period 2*n, and the furthest coordinate a block
    # touches (last tile + 1024 threads + a 255 window), stay below 2^31.
    assert 2 * MAX_EXTENT <= INT32_MAX
    assert MAX_EXTENT + 1024 + 255 <= INT32_MAX
    # The two-pass Gaussian reads x - k/2 .. x + k/2 with k up to MAX_EXTENT too.
    assert MAX_EXTENT + MAX_EXTENT // 2 <= INT32_MAX


def test_check_grid_refuses_out_of_range_grids():
    assert _common.check_grid((5,), "k") == (5, 1, 1)
    assert _common.check_grid((GRID_X_MAX, GRID_YZ_MAX, GRID_YZ_MAX), "k") == (
        GRID_X_MAX, GRID_YZ_MAX, GRID_YZ_MAX)
    for bad in [(GRID_X_MAX + 1, 1, 1), (1, GRID_YZ_MAX + 1, 1), (1, 1, GRID_YZ_MAX + 1),
                (0, 1, 1)]:
        with pytest.raises(ValueError, match="exceeds CUDA's limits"):
            _common.check_grid(bad, "median_filter")


@pytest.mark.parametrize("n", [1, 16, BIG, 2**40])
def test_lut_grid_is_capped(n):
    # LUT/gamma kernels take 64-bit n and head and walk them grid-stride.
    grid = tone._grid(n, 16)
    assert grid[1:] == (1, 1) and 1 <= grid[0] <= tone._MAX_BLOCKS <= GRID_X_MAX


def test_enhance_roi_limits():
    roi.check_limits((64, 64, GRID_YZ_MAX), GRID_X_MAX, 10)  # the largest accepted
    with pytest.raises(ValueError, match=r"img channels \(C\) must be at most 65535"):
        roi.check_limits((64, 64, GRID_YZ_MAX + 1), 16, 10)
    with pytest.raises(ValueError, match="batch must be at most 2147483647"):
        roi.check_limits((64, 64, 1), BIG, 10)
    with pytest.raises(ValueError, match=r"img width \(W\)"):
        roi.check_limits((8, BIG, 1), 16, 10)


# ---------------------------------------------------------------------------------------------
# The ops refuse huge inputs from their metadata, before touching data
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(MAX_EXTENT + 1, 2), (2, MAX_EXTENT + 1, 1)])
def test_filters_refuse_huge_images_before_any_work(ctx, shape):
    img = _fake(shape)  # 2^30 elements of metadata, one byte of memory
    with pytest.raises(ValueError, match="too large for the CUDA engine"):
        filters.median_filter(ctx, img, 3, "reflect")
    with pytest.raises(ValueError, match="too large for the CUDA engine"):
        filters.gaussian_filter(ctx, img, 3, 3, 0.0, 0.0, "reflect")
    # Through the public API as well (validation reads metadata only; no copy on the way).
    with pytest.raises(ValueError, match="too large for the CUDA engine"):
        gpuenhance.median_filter(img, 5, backend="cuda-emulated")


def test_gaussian_refuses_kernel_size_before_building_taps(ctx, monkeypatch):
    # A smaller limit stands in for 2^30 - 1 (whose taps alone would take 8 GiB): the refusal
    # comes before the taps are computed or uploaded.
    monkeypatch.setattr(filters, "MAX_EXTENT", 7)

    def no_taps(*args):
        raise AssertionError("taps built before the size check")

    monkeypatch.setattr(filters, "_taps", no_taps)
    with pytest.raises(ValueError, match=r"ksize \(x\) must be in \[1, 7\]"):
        filters.gaussian_filter(ctx, np.zeros((4, 5), np.float32), 9, 3, 0.0, 0.0, "reflect")


# ---------------------------------------------------------------------------------------------
# Clamped grids: the kernels' grid-stride loops cover every row tile and plane
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,ksize,path", [(np.uint8, 3, "small"), (np.uint8, 9, "hist"),
                                              (np.uint16, 9, "hist"), (np.float32, 5, "small"),
                                              (np.float32, 9, "select")])
@pytest.mark.parametrize("grid_y,grid_z", [(1, 1), (2, 2)])
def test_median_clamped_grid_strides(ctx, rng, monkeypatch, dtype, ksize, path, grid_y, grid_z):
    monkeypatch.setattr(filters, "_GRID_Y", grid_y)
    monkeypatch.setattr(filters, "_GRID_Z", grid_z)
    # 70 rows: 9 row tiles of 8, or 3 histogram strips of 32; 3 planes.
    img = _random(rng, (1, 70, 6, 3), dtype)
    cfg = filters.median_launch(img.shape, dtype, ksize)
    assert cfg["path"] == path and cfg["grid"][1:] == (grid_y, grid_z)
    got = filters.median_filter(ctx, img, ksize, "reflect_101")
    np.testing.assert_array_equal(got, median_oracle(img, ksize, "reflect_101"))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_median_clamped_grid_strides_fused(ctx, rng, monkeypatch, dtype):
    # The channel of the fused point operation comes from the 64-bit plane counter.
    monkeypatch.setattr(filters, "_GRID_Y", 2)
    monkeypatch.setattr(filters, "_GRID_Z", 2)
    img = _random(rng, (2, 20, 5, 3), dtype)
    med = median_oracle(img, 3, "replicate")
    if dtype == np.uint8:
        lut = _random(rng, (256, 3), np.uint8)
        got = filters.median_filter(ctx, img, 3, "replicate", lut=lut)
        np.testing.assert_array_equal(got, lut[med, np.arange(3)])
    else:
        img = np.abs(img)
        got = filters.median_filter(ctx, img, 3, "replicate", gamma=0.5, gain=1.0)
        med = np.clip(median_oracle(img, 3, "replicate"), 0, 1)  # gamma's float domain
        want = np.power(med, np.float32(0.5))
        np.testing.assert_allclose(got, want, **tol("gamma_correct", np.float32))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_gaussian_clamped_grid_strides(ctx, rng, monkeypatch, dtype):
    monkeypatch.setattr(filters, "_GRID_Y", 2)
    monkeypatch.setattr(filters, "_GRID_Z", 2)
    img = _random(rng, (1, 37, 6, 3), dtype)  # 5 row tiles of 8, 3 planes
    if np.dtype(dtype).kind == "f":
        img = np.abs(img)
    cfg = filters.gaussian_launch(img.shape, 5, 7, 4)
    assert cfg["path"] == "tile" and cfg["grid"][1:] == (2, 2)
    got = filters.gaussian_filter(ctx, img, 5, 7, 0.0, 0.0, "reflect")
    assert_gauss_close(got, gaussian_oracle(img, 5, 7, 0.0, 0.0, "reflect"), dtype)
