"""CUDA engine: histogram equalisation and CLAHE (kernels/contrast.cu, kernels/ycrcb.cuh).

Arguments arrive validated by :mod:`gpuenhance.contrast`: uint8/uint16, one channel or RGB.
The whole (N, H, W, C) batch is processed per launch, every image with its own statistics:
equalisation is histogram -> LUT -> map (three launches), CLAHE tile LUTs -> map (two); the
statistics stay on the device between launches (no host round trip, no synchronisation).
uint16 images count into 65536 global bins per image (equalisation) or per tile (CLAHE):
256 KiB per image or tile of scratch; CLAHE takes the images of a batch in groups whose
counters fit 256 MiB (one group, one launch, for grids up to 1024 tiles).
"""

from __future__ import annotations

import numpy as np

from .._image import from_nhwc, to_nhwc
from ._common import GRID_YZ_MAX, blocks, check_grid, check_nhwc, ctype
from ._loader import declare

_THREADS = 256  # GPUENHANCE_CONTRAST_THREADS in kernels/contrast.cu
_MAX_BLOCKS_X = 1024
_BINS = {np.dtype(np.uint8): 256, np.dtype(np.uint16): 65536}
# Most bytes of uint16 CLAHE tile counters allocated for one launch.
_SCRATCH_BYTES = 256 << 20
_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))


def _name(kernel: str, dtype, color: bool | None) -> str:
    args = ctype(dtype) if color is None else f"{ctype(dtype)}, {str(color).lower()}"
    return f"gpuenhance_{kernel}<{args}>"


KERNELS = declare({
    "contrast.cu": tuple(
        _name(k, d, c)
        for d in _DTYPES
        for k, colors in (("histogram", (False, True)), ("equalize_lut", (None,)),
                          ("intensity_map", (False, True)), ("clahe_lut", (False, True)),
                          ("clahe_map", (False, True)))
        for c in colors
    )
})


def _prepare(ctx, img):
    xp = ctx.xp
    x = xp.ascontiguousarray(to_nhwc(img))
    check_nhwc(x.shape)
    return x, xp.empty(x.shape, dtype=x.dtype), x.shape[-1] == 3


def _pixel_grid(pixels: int, images: int) -> tuple[int, int, int]:
    return check_grid((min(blocks(pixels, _THREADS), _MAX_BLOCKS_X), min(images, GRID_YZ_MAX), 1),
                      "contrast")


def map_intensity(ctx, img, luts):
    """``out[n] = luts[n][v]`` on each pixel's intensity (its Y for RGB, Cr/Cb kept).

    *luts* is an (N, BINS) array of the image's dtype, one table per image of the batch.
    """
    x, out, color = _prepare(ctx, img)
    n, h, w, _ = x.shape
    dtype = np.dtype(x.dtype)
    ctx.kernel("contrast.cu", _name("intensity_map", dtype, color))(
        _pixel_grid(h * w, n), (_THREADS, 1, 1),
        (x, out, ctx.xp.ascontiguousarray(luts), np.int64(h * w), np.int32(n)))
    return from_nhwc(out, img.ndim)


def equalize_luts(ctx, x):
    """The (N, BINS) equalisation tables of a contiguous (N, H, W, C) batch."""
    xp = ctx.xp
    n, h, w, c = x.shape
    dtype = np.dtype(x.dtype)
    bins = _BINS[dtype]
    hist = xp.zeros((n, bins), dtype=np.uint32)
    ctx.kernel("contrast.cu", _name("histogram", dtype, c == 3))(
        _pixel_grid(h * w, n), (_THREADS, 1, 1), (x, hist, np.int64(h * w), np.int32(n)))
    luts = xp.empty((n, bins), dtype=dtype)
    ctx.kernel("contrast.cu", _name("equalize_lut", dtype, None))(
        (min(n, GRID_YZ_MAX), 1, 1), (_THREADS, 1, 1), (hist, luts, np.int64(h * w), np.int32(n)))
    return luts


def equalize_hist(ctx, img):
    """Histogram equalisation per image, exactly ``cv2.equalizeHist`` (on Y for RGB)."""
    x, _, _ = _prepare(ctx, img)
    return from_nhwc(map_intensity(ctx, x, equalize_luts(ctx, x)), img.ndim)


def clahe_geometry(height: int, width: int, tile_grid) -> tuple[int, int]:
    """OpenCV's CLAHE tile size ``(tile_h, tile_w)`` for an image and a grid (x, y).

    The rule of ``cv::CLAHE::apply``: when either size is not divisible by the grid, the
    image is padded by ``tiles - size % tiles`` on the bottom and on the right (both axes).
    """
    tiles_x, tiles_y = tile_grid
    if width % tiles_x == 0 and height % tiles_y == 0:
        ext_h, ext_w = height, width
    else:
        ext_h, ext_w = height + tiles_y - height % tiles_y, width + tiles_x - width % tiles_x
    return ext_h // tiles_y, ext_w // tiles_x


def clahe(ctx, img, clip_limit: float, tile_grid: tuple[int, int]):
    """Contrast-limited adaptive equalisation per image, exactly ``cv2.createCLAHE().apply``."""
    xp = ctx.xp
    x, out, color = _prepare(ctx, img)
    n, h, w, _ = x.shape
    dtype = np.dtype(x.dtype)
    bins = _BINS[dtype]
    tiles_x, tiles_y = tile_grid
    tile_h, tile_w = clahe_geometry(h, w, tile_grid)
    area = tile_h * tile_w
    lut_scale = np.float32(bins - 1) / np.float32(area)
    clip = max(int(clip_limit * area / bins), 1) if clip_limit > 0.0 else 0
    tiles = tiles_x * tiles_y
    luts = xp.empty((n, tiles, bins), dtype=dtype)
    # uint16 counts in global memory, 256 KiB per tile: images go in groups whose counters
    # fit _SCRATCH_BYTES (one launch for the batch unless the grid is very fine)
    per_launch = n if bins == 256 else max(1, min(n, _SCRATCH_BYTES // (tiles * bins * 4)))
    scratch = xp.zeros((1,), dtype=np.uint32)
    for i0 in range(0, n, per_launch):
        i1 = min(n, i0 + per_launch)
        if bins > 256:
            scratch = xp.zeros((i1 - i0, tiles, bins), dtype=np.uint32)
        ctx.kernel("contrast.cu", _name("clahe_lut", dtype, color))(
            check_grid((tiles, min(i1 - i0, GRID_YZ_MAX), 1), "clahe"), (_THREADS, 1, 1),
            (x[i0:i1], luts[i0:i1], scratch, np.int32(h), np.int32(w), np.int32(tiles_x),
             np.int32(tile_h), np.int32(tile_w), np.int32(clip), np.float32(lut_scale),
             np.int32(i1 - i0)))
    ctx.kernel("contrast.cu", _name("clahe_map", dtype, color))(
        _pixel_grid(h * w, n), (_THREADS, 1, 1),
        (x, out, luts, np.int32(h), np.int32(w), np.int32(tiles_x), np.int32(tiles_y),
         np.int32(tile_h), np.int32(tile_w), np.int32(n)))
    return from_nhwc(out, img.ndim)

# Every kernel here runs once per pixel or per tile on every call: none may spill.
HOT_KERNELS = KERNELS["contrast.cu"]
