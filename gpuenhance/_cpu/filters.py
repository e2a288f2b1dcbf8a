"""CPU engine: median and Gaussian filters (OpenCV where it covers the case, NumPy otherwise).

Arguments arrive validated and resolved by :mod:`gpuenhance.filters`.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import _threads
from .._image import from_nhwc, to_nhwc
from .._tiles import axis_windows
from . import _median

# np.pad modes equal to OpenCV's borderInterpolate rules, repeated reflections included.
_NP_PAD = {
    "replicate": "edge",
    "reflect": "symmetric",
    "reflect_101": "reflect",
    "constant": "constant",
}
_CV_BORDER = {
    "replicate": cv2.BORDER_REPLICATE,
    "reflect": cv2.BORDER_REFLECT,
    "reflect_101": cv2.BORDER_REFLECT_101,
    "constant": cv2.BORDER_CONSTANT,
}

# Bytes of window copies the NumPy median materialises at once.
_MEDIAN_CHUNK_BYTES = 64 * 2**20

# A median estimated to take less than this on one thread runs as one call on the calling
# thread. An estimate, not a measured crossover (the shared 2-core machine gave none): a
# thread hand-off costs tens of microseconds, and at 7 ms (ksize-5 float32 1080p) two bands
# already ran 1.55x faster than one call (bench/results, quiet run).
_BAND_MIN_NS = 400_000
# Approximate single-thread cost of cv2.medianBlur in ns per value (2-core EPYC and Xeon
# runs): the sorting networks of ksize 3 and 5, then the O(1) histogram of uint8 (ksize >= 7).
# uint8 ksize 3 is what the quiet EPYC run measured on photographs (1080p RGB in 0.40 ms), so
# 1080p stays one call (two bands took 0.53 ms there) and 4K is banded (1.58 -> 1.37 ms).
_CV_MEDIAN_NS = {("B", 3): 0.06, ("B", 5): 1.3, ("H", 3): 0.4, ("H", 5): 2.4,  # dtype.char
                 ("f", 3): 0.8, ("f", 5): 3.5}
_CV_MEDIAN_NS_LARGE = 30.0
_HIST_MEDIAN_NS = 60.0  # the sliding-histogram median, at least
# The compiled uint8 3x3 network (_median3), ns per value on one thread (2-core EPYC,
# 512x512 to 4K, gray and RGB: 0.12-0.18 warm). 1080p gray stays one call; 1080p RGB and
# 4K are banded (two bands on two cores: 4K gray 1.50 -> 1.12 ms, 1080p RGB 0.96 -> 0.82).
_NETWORK3_NS = 0.15
# With a border other than replicate, ops cheaper than this per value are never banded: each
# band is padded and its result copied into the output once more, which costs about as much
# as the op (4K ksize-3 uint8: 1.3 ms on one thread, 2.1 ms in two bands on two cores).
# Replicate bands are filtered straight into the output (_median_cv_overlap), so they pay off
# for the cheapest networks too (quiet 2-core EPYC, RGB uint8 ksize 3: 1080p 1.19 -> 0.97 ms,
# 4K 4.93 -> 2.89 ms in two bands).
_BAND_MIN_NS_PER_VALUE = 1.0
# Bands thinner than this many output rows are not worth a thread.
_BAND_MIN_ROWS = 16


def _pad(img_hwc: np.ndarray, r: int, border: str) -> np.ndarray:
    """Pad an (H, W, C) image by r on each side of H and W (zeros for ``constant``)."""
    return np.pad(img_hwc, ((r, r), (r, r), (0, 0)), mode=_NP_PAD[border])


def _plane(img_hwc: np.ndarray) -> np.ndarray:
    """An (H, W, C) image as OpenCV takes it: (H, W) for one channel, else as it is."""
    return img_hwc[:, :, 0] if img_hwc.shape[2] == 1 else img_hwc


def _store(dst_hwc: np.ndarray, call) -> None:
    """``call(dst)`` with OpenCV writing into *dst_hwc* itself; copied only if it could not."""
    _store_plane(_plane(dst_hwc), call)


def _store_plane(dst: np.ndarray, call) -> None:
    """``call(dst)`` for an array shaped as OpenCV returns it; copied only if it could not."""
    res = call(dst)
    if not np.may_share_memory(res, dst):  # bounds only: cheap
        dst[...] = res.reshape(dst.shape)


def _cv_median_ok(dtype: np.dtype, ksize: int, channels: int) -> bool:
    """Whether cv2.medianBlur computes this case (per channel when ``channels`` is 1)."""
    if channels not in (1, 3, 4):
        return False
    if dtype == np.uint8:
        return True
    return dtype in (np.dtype(np.uint16), np.dtype(np.float32)) and ksize in (3, 5)


def _median_numpy(img_hwc: np.ndarray, ksize: int, border: str) -> np.ndarray:
    """Exact median by partial sort of each window, in row chunks of bounded memory.

    The fallback of the histogram median where Numba cannot be imported.
    """
    r = ksize // 2
    h, w, c = img_hwc.shape
    padded = _pad(img_hwc, r, border)
    area = ksize * ksize
    mid = area // 2
    per_row = w * c * area * img_hwc.dtype.itemsize
    rows = max(1, _MEDIAN_CHUNK_BYTES // per_row)
    out = np.empty((h, w, c), dtype=img_hwc.dtype)
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        win = sliding_window_view(padded[y0:y1 + 2 * r], (ksize, ksize), axis=(0, 1))
        flat = win.reshape(y1 - y0, w, c, area).copy()  # a private, writable copy
        flat.partition(mid, axis=-1)
        out[y0:y1] = flat[..., mid]
    return out


def _median_cv_image(x_hwc: np.ndarray, ksize: int, border: str, out_hwc: np.ndarray,
                     threads: int) -> None:
    """cv2.medianBlur of one image into *out_hwc*, in row bands on *threads* threads.

    A band is its output rows plus ``r = ksize // 2`` rows of real image above and below,
    clipped to the image (``_tiles.axis_windows``). Where it is clipped (the image's top or
    bottom) and on the left and right, the band gets the border: medianBlur's own for
    ``replicate``, else ``cv2.copyMakeBorder`` by OpenCV's rules. Either reads only image rows
    within ``r`` of that edge, which the band holds (a band is at least ``r + 1`` rows long),
    so every kept pixel sees what it sees on the whole image; the result is cropped to the
    band's own rows. An image not longer than ``2 r`` on a side is padded whole (``_pad``:
    repeated reflections) and filtered in one call.
    """
    h, w, c = x_hwc.shape
    r = ksize // 2
    dst = _plane(out_hwc)
    if border != "replicate" and (h <= 2 * r or w <= 2 * r):
        res = cv2.medianBlur(np.ascontiguousarray(_plane(_pad(x_hwc, r, border))), ksize)
        dst[...] = res[r:r + h, r:r + w]
        return
    src = np.ascontiguousarray(_plane(x_hwc))
    bands = _row_bands(h, r, threads, _BAND_MIN_ROWS)
    if border == "replicate" and dst.flags.c_contiguous:
        _median_cv_overlap(src, ksize, dst, bands, threads)
        return

    def one(band):
        c0, c1 = band
        a, b = max(0, c0 - r), min(h, c1 + r)
        part, top, left = src[a:b], 0, 0
        if border != "replicate":
            top, left = r - (c0 - a), r
            part = cv2.copyMakeBorder(part, top, r - (b - c1), r, r, _CV_BORDER[border])
        res = cv2.medianBlur(part, ksize)
        dst[c0:c1] = res[c0 - a + top:c1 - a + top, left:left + w]

    _threads.run_parallel(one, bands, threads)


def _median_cv_overlap(src: np.ndarray, ksize: int, dst: np.ndarray,
                       bands: list[tuple[int, int]], threads: int) -> None:
    """Replicate-border cv2.medianBlur of *src* straight into *dst*, in row *bands*.

    Each band filters its window (its rows and ``r = ksize // 2`` more on each side, clipped
    to the image) into the same rows of *dst*, with no copy of a band's result. A window's
    first and last ``r`` rows are wrong where it was cut inside the image (medianBlur
    replicates the cut), and the neighbouring band writes those rows too, right; so once
    every band is done, the ``2 r`` rows around each cut are filtered again from a strip of
    ``4 r`` image rows, which holds every row they read. A rewritten row equals the
    whole-image result: the median only reads values, never positions.
    """
    h = src.shape[0]
    r = ksize // 2

    def one(band):
        a, b = max(0, band[0] - r), min(h, band[1] + r)
        _store_plane(dst[a:b], lambda d: cv2.medianBlur(src[a:b], ksize, dst=d))

    _threads.run_parallel(one, bands, threads)
    for _, cut in bands[:-1]:
        a, b = max(0, cut - 2 * r), min(h, cut + 2 * r)
        y0, y1 = max(0, cut - r), min(h, cut + r)
        dst[y0:y1] = cv2.medianBlur(src[a:b], ksize)[y0 - a:y1 - a]


def _median_hist_image(x_hwc: np.ndarray, ksize: int, border: str, out_hwc: np.ndarray,
                       threads: int) -> None:
    """The sliding-histogram median (``_median``) of one image, per channel, in parts.

    The image is padded whole; a part is a window of the padded image (its output core plus
    ``ksize - 1``), so it reads what the whole image reads. uint16: one row band per thread.
    Floats: tiles of at most ``_median.FLOAT_TILE_VALUES`` values, whose ranks are 16-bit
    keys (row bands of 32-bit ranks for windows too large for such tiles).
    """
    h, w, c = x_hwc.shape
    r = ksize // 2
    padded = _pad(x_hwc, r, border)
    if x_hwc.dtype == np.uint16:
        parts = [(y0, y1, 0, w) for y0, y1 in _row_bands(h, r, threads, _BAND_MIN_ROWS)]
    else:
        side = math.isqrt(_median.FLOAT_TILE_VALUES) - 2 * r
        if side >= 16:
            parts = [(y0, y1, x0, x1) for y0, y1 in _spans(h, side) for x0, x1 in _spans(w, side)]
        else:  # the halo would be most of a tile: long bands (sorted at most twice over)
            parts = [(y0, y1, 0, w) for y0, y1 in _spans(h, max(8, 2 * r))]
    items = [(ch,) + p for ch in range(c) for p in parts]

    def one(item):
        ch, y0, y1, x0, x1 = item
        out_hwc[y0:y1, x0:x1, ch] = _median.median_plane(
            padded[y0:y1 + 2 * r, x0:x1 + 2 * r, ch], ksize)

    _threads.run_parallel(one, items, threads)


def _spans(n: int, step: int) -> list[tuple[int, int]]:
    """``[a, b)`` ranges of at most *step* covering ``range(n)``."""
    return [(a, min(n, a + step)) for a in range(0, n, step)]


def _row_bands(h: int, radius: int, threads: int, min_rows: int) -> list[tuple[int, int]]:
    """Output row ranges ``[c0, c1)`` of the bands of an image *h* rows high.

    One band per thread (cores from :func:`gpuenhance._tiles.axis_windows`), none thinner
    than *min_rows*.
    """
    per = max(-(-h // max(1, threads)), min_rows)
    return [(c0, c1) for _, _, c0, c1 in axis_windows(h, per + 2 * radius, radius)]


def _threads_for(cost_ns: float, min_ns: float) -> int:
    return _threads.num_threads() if cost_ns >= min_ns else 1


def _split_threads(n: int, band_ns: float, image_ns: float) -> tuple[int, int]:
    """(threads per image, images side by side) for a batch of *n* images.

    An image worth banding (*band_ns*) gets bands on every thread, one image at a time;
    otherwise images run side by side, which needs no extra copy and so pays off for cheap
    ops too.
    """
    per_image = _threads_for(band_ns, _BAND_MIN_NS)
    across = 1 if per_image > 1 else min(n, _threads_for(n * image_ns, _BAND_MIN_NS))
    return per_image, across


@functools.lru_cache(maxsize=1)
def _network3():
    """The compiled 3x3 median (:mod:`._median3`), or None where Numba cannot be imported."""
    try:
        from . import _median3

        _median3.warm()
    except Exception:  # noqa: BLE001 - any import or compile problem: OpenCV does it
        return None
    return _median3


def _median3_batch(img, border: str):
    """The 3x3 median of uint8 images by the compiled network (:mod:`._median3`).

    A small image is one kernel call on the calling thread, with no other views or copies
    (at 512x512 the Python around it is a tenth of the call); large images run in row bands
    on every thread, each band written straight into the output (the network reads rows,
    never copies them); batches of smaller images side by side.
    """
    network = _network3()
    x = img if img.flags.c_contiguous else np.ascontiguousarray(img)
    out = np.empty_like(x)
    h = x.shape[-3] if x.ndim == 4 else x.shape[0]
    row = x.shape[-1] * x.shape[-2] if x.ndim >= 3 else x.shape[1]  # values per image row
    c = x.shape[-1] if x.ndim >= 3 else 1
    if x.ndim < 4 and _NETWORK3_NS * x.size < _BAND_MIN_NS:  # one small image: one call
        if x.ndim == 2:
            network.median3_rows(x, 1, 0, h, border, out)
        else:
            network.median3_rows(x.reshape(h, row), c, 0, h, border, out.reshape(h, row))
        return out
    src = x.reshape(-1, h, row)
    dst = out.reshape(src.shape)
    n = src.shape[0]
    image_ns = _NETWORK3_NS * h * row
    if n * image_ns < _BAND_MIN_NS:  # small images: each in one call on this thread
        for i in range(n):
            network.median3_rows(src[i], c, 0, h, border, dst[i])
        return out
    per_image, across = _split_threads(n, image_ns, image_ns)
    bands = _row_bands(h, 1, per_image, _BAND_MIN_ROWS)

    def one(i):
        _threads.run_parallel(
            lambda band: network.median3_rows(src[i], c, band[0], band[1], border, dst[i]),
            bands, per_image)

    _threads.run_parallel(one, range(n), across)
    return out


def median_filter(img, ksize: int, border: str):
    """Median over a ksize x ksize window, exact for every dtype and border."""
    if ksize == 1:
        return np.array(img, copy=True)
    if ksize == 3 and img.dtype == np.uint8 and _network3() is not None:
        return _median3_batch(img, border)
    if img.ndim == 2 and border == "replicate":  # the common call, with no detours
        ns = _CV_MEDIAN_NS.get((img.dtype.char, ksize))  # OpenCV's sorting networks
        if ns is not None and ns * img.size < _BAND_MIN_NS:
            return cv2.medianBlur(np.ascontiguousarray(img), ksize)
    x = to_nhwc(img)
    n, h, w, c = x.shape
    dtype = x.dtype
    whole = _cv_median_ok(dtype, ksize, c)
    per_channel = not whole and _cv_median_ok(dtype, ksize, 1)
    hist = not whole and not per_channel and _median.available()
    if hist or not (whole or per_channel):
        ns = _HIST_MEDIAN_NS
    else:
        ns = _CV_MEDIAN_NS.get((dtype.char, ksize), _CV_MEDIAN_NS_LARGE)  # .name is slow
    image_ns = ns * h * w * c
    band_ns = image_ns if ns >= _BAND_MIN_NS_PER_VALUE or border == "replicate" else 0.0
    if whole and n == 1 and border == "replicate" and band_ns < _BAND_MIN_NS:
        # one OpenCV call, its result handed back without another copy
        res = cv2.medianBlur(np.ascontiguousarray(_plane(x[0])), ksize)
        return from_nhwc(res.reshape(1, h, w, c), img.ndim)
    out = np.empty((n, h, w, c), dtype=x.dtype)
    per_image, across = _split_threads(n, band_ns, image_ns)

    def one(i):
        if whole:
            _median_cv_image(x[i], ksize, border, out[i], per_image)
        elif per_channel:
            for ch in range(c):
                _median_cv_image(x[i, :, :, ch:ch + 1], ksize, border,
                                 out[i, :, :, ch:ch + 1], per_image)
        elif hist:
            _median_hist_image(x[i], ksize, border, out[i], per_image)
        else:
            out[i] = _median_numpy(x[i], ksize, border)

    # large images: bands of each image on every thread; small ones: images side by side
    _threads.run_parallel(one, range(n), across)
    return from_nhwc(out, img.ndim)


def gaussian_filter(img, kx: int, ky: int, sx: float, sy: float, border: str):
    """Separable Gaussian through cv2.GaussianBlur (parameters already resolved).

    ``sx``/``sy`` of 0 mean "derived from the size", as for OpenCV (fixed tables up to 9 taps).
    """
    x = to_nhwc(img)
    n, h, w, c = x.shape
    # ISOLATED: never read outside the array, and OpenCV's bit-exact 8/16-bit path always.
    flag = _CV_BORDER[border] | cv2.BORDER_ISOLATED
    if n == 1 and c <= 4:  # one OpenCV call: hand its result back without another copy
        part = np.ascontiguousarray(_plane(x[0]))
        res = cv2.GaussianBlur(part, (kx, ky), sx, sigmaY=sy, borderType=flag)
        return from_nhwc(res.reshape(1, h, w, c), img.ndim)
    out = np.empty((n, h, w, c), dtype=x.dtype)
    for i in range(n):
        if c <= 4:
            src = np.ascontiguousarray(_plane(x[i]))
            _store(out[i], lambda dst: cv2.GaussianBlur(
                src, (kx, ky), sx, sigmaY=sy, borderType=flag, dst=dst))
            continue
        for c0 in range(0, c, 4):  # OpenCV's native channel counts
            c1 = min(c, c0 + 4)
            part = np.ascontiguousarray(_plane(x[i, :, :, c0:c1]))
            res = cv2.GaussianBlur(part, (kx, ky), sx, sigmaY=sy, borderType=flag)
            out[i, :, :, c0:c1] = res.reshape(h, w, c1 - c0)
    return from_nhwc(out, img.ndim)
