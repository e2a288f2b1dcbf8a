"""The 3x3 median of uint8 images as a sorting network compiled by Numba.

``cv2.medianBlur`` computes a 3x3 median with a 19-exchange network on the nine values of each
window (about 30 min/max per output once unused halves are dropped). This kernel shares work
between neighbouring windows instead:

* each input row's horizontal triples ``(x - 1, x, x + 1)`` are sorted once (6 min/max) and
  serve the three output rows that read that row;
* the median of a window is ``med3(max of the 3 lows, med3 of the 3 middles, min of the 3
  highs)`` of its three sorted triples (Paeth's reduction);
* four output rows are computed together from six input rows, so the pairs of triples that
  two outputs share are merged once: 19 min/max per output in all.

The loops are plain element loops that LLVM vectorises (``vpminub``/``vpmaxub`` on AVX2). A
row's tail is one more vector step overlapping the previous one (it recomputes the same
values) instead of a scalar remainder; the pixels next to the left and right borders take a
scalar loop. Where a row is a whole number of vector steps (widths of 512, 1920, 3840...),
rows away from the top and bottom are read as runs of the flat image that reach into the
neighbouring rows, so one loop covers them with no tail step (512x512 on one core: 42.9 ->
39.9 us) and the scalar loop then rewrites the border pixels. Every order of min/max that
selects the median gives the same value, so the result equals ``cv2.medianBlur`` bit for bit.
Measured on a 2-core EPYC: 1.1-1.3x ``cv2.medianBlur`` on one core once warm (bench/results);
16-bit images ran slower than OpenCV's network with the same loops, so they keep it.

Every border rule is supported: the kernel picks the rows above and below the image by the
rule (zeros for ``constant``), and the scalar edge loop the columns. A call fills output rows
``[y0, y1)`` reading only input rows, so row bands of one image run on threads with no halo
copies (the kernel releases the GIL).

The kernel is compiled the first time it is used (about 10 s) and cached on disk, like the
histogram median (:mod:`._median`).
"""

from __future__ import annotations

import functools

import numba
import numpy as np

#: What a window reads one pixel outside the image: the edge pixel itself (replicate and
#: reflect, which agree at distance 1), the pixel one further in (reflect_101), or zero.
SAME, MIRROR, ZERO = 0, 1, 2
_MODE = {"replicate": SAME, "reflect": SAME, "reflect_101": MIRROR, "constant": ZERO}

# Elements per vector step of the overlapping tail: at least one AVX2/AVX-512 vector of uint8.
_STEP = 32

# uint8 only: the same loops on uint16 ran slower than cv2.medianBlur (512x512: 138 vs
# 89 us; 1080p: even), so 16-bit images keep OpenCV's network.
_SIGNATURE = "void(uint8[:, ::1], int64, int64, int64, int64, uint8[:, ::1])"


@numba.njit
def _lo(a, b):  # pragma: no cover - compiled by Numba
    return a if a < b else b


@numba.njit
def _hi(a, b):  # pragma: no cover - compiled by Numba
    return b if a < b else a


@numba.njit
def _med3(a, b, c):  # pragma: no cover - compiled by Numba
    return _hi(_lo(a, b), _lo(_hi(a, b), c))


@numba.njit
def _sort3(a, b, c):  # pragma: no cover - compiled by Numba
    """(min, median, max) of three values."""
    p = _lo(b, c)
    q = _hi(b, c)
    return _lo(a, p), _hi(p, _lo(a, q)), _hi(a, q)


@numba.njit
def _four(l0, m0, h0, l1, m1, h1, l2, m2, h2,
          l3, m3, h3, l4, m4, h4, l5, m5, h5):  # pragma: no cover - compiled by Numba
    """Medians of four vertically adjacent windows from the sorted triples of six rows."""
    a12 = _hi(l1, l2)
    a34 = _hi(l3, l4)
    z12 = _lo(h1, h2)
    z34 = _lo(h3, h4)
    s12 = _lo(m1, m2)
    t12 = _hi(m1, m2)
    s34 = _lo(m3, m4)
    t34 = _hi(m3, m4)
    return (_med3(_hi(l0, a12), _hi(s12, _lo(t12, m0)), _lo(h0, z12)),
            _med3(_hi(a12, l3), _hi(s12, _lo(t12, m3)), _lo(z12, h3)),
            _med3(_hi(l2, a34), _hi(s34, _lo(t34, m2)), _lo(h2, z34)),
            _med3(_hi(a34, l5), _hi(s34, _lo(t34, m5)), _lo(z34, h5)))


@numba.njit(inline="always")
def _interior(r0, r1, r2, r3, r4, r5, o0, o1, o2, o3, c, s, k):  # pragma: no cover
    """Four output rows at elements ``[s + c, s + c + k)``, whose neighbours are all inside."""
    a0 = r0[s:s + k]
    b0 = r0[s + c:s + c + k]
    e0 = r0[s + 2 * c:s + 2 * c + k]
    a1 = r1[s:s + k]
    b1 = r1[s + c:s + c + k]
    e1 = r1[s + 2 * c:s + 2 * c + k]
    a2 = r2[s:s + k]
    b2 = r2[s + c:s + c + k]
    e2 = r2[s + 2 * c:s + 2 * c + k]
    a3 = r3[s:s + k]
    b3 = r3[s + c:s + c + k]
    e3 = r3[s + 2 * c:s + 2 * c + k]
    a4 = r4[s:s + k]
    b4 = r4[s + c:s + c + k]
    e4 = r4[s + 2 * c:s + 2 * c + k]
    a5 = r5[s:s + k]
    b5 = r5[s + c:s + c + k]
    e5 = r5[s + 2 * c:s + 2 * c + k]
    p0 = o0[s + c:s + c + k]
    p1 = o1[s + c:s + c + k]
    p2 = o2[s + c:s + c + k]
    p3 = o3[s + c:s + c + k]
    for i in range(k):
        l0, m0, h0 = _sort3(a0[i], b0[i], e0[i])
        l1, m1, h1 = _sort3(a1[i], b1[i], e1[i])
        l2, m2, h2 = _sort3(a2[i], b2[i], e2[i])
        l3, m3, h3 = _sort3(a3[i], b3[i], e3[i])
        l4, m4, h4 = _sort3(a4[i], b4[i], e4[i])
        l5, m5, h5 = _sort3(a5[i], b5[i], e5[i])
        v0, v1, v2, v3 = _four(l0, m0, h0, l1, m1, h1, l2, m2, h2,
                               l3, m3, h3, l4, m4, h4, l5, m5, h5)
        p3[i] = v3
        p2[i] = v2
        p1[i] = v1
        p0[i] = v0


@numba.njit
def _neighbours(j, c, n, mode):  # pragma: no cover - compiled by Numba
    """Indices of the left and right neighbours of element *j* of a row of *n*, and whether
    each is read (0: it is outside and zero)."""
    il = j - c
    lk = 1
    if il < 0:
        lk = 0 if mode == ZERO else 1
        il = j + c if mode == MIRROR and j + c < n else j  # one pixel wide: itself
    ir = j + c
    rk = 1
    if ir >= n:
        rk = 0 if mode == ZERO else 1
        ir = j - c if mode == MIRROR and j >= c else j
    return il, ir, lk, rk


@numba.njit(inline="always")
def _edge(r0, r1, r2, r3, r4, r5, o0, o1, o2, o3, c, n, j, mode):  # pragma: no cover
    """Four output rows at element *j*, with the column border rule."""
    il, ir, lk, rk = _neighbours(j, c, n, mode)
    l0, m0, h0 = _sort3(r0[il] * lk, r0[j], r0[ir] * rk)
    l1, m1, h1 = _sort3(r1[il] * lk, r1[j], r1[ir] * rk)
    l2, m2, h2 = _sort3(r2[il] * lk, r2[j], r2[ir] * rk)
    l3, m3, h3 = _sort3(r3[il] * lk, r3[j], r3[ir] * rk)
    l4, m4, h4 = _sort3(r4[il] * lk, r4[j], r4[ir] * rk)
    l5, m5, h5 = _sort3(r5[il] * lk, r5[j], r5[ir] * rk)
    v0, v1, v2, v3 = _four(l0, m0, h0, l1, m1, h1, l2, m2, h2,
                           l3, m3, h3, l4, m4, h4, l5, m5, h5)
    o3[j] = v3
    o2[j] = v2
    o1[j] = v1
    o0[j] = v0


@numba.njit(inline="always")
def _edges(r0, r1, r2, r3, r4, r5, o0, o1, o2, o3, c, n, mode):  # pragma: no cover
    """Four output rows at the *c* elements at each end of a row."""
    for j in range(c):
        _edge(r0, r1, r2, r3, r4, r5, o0, o1, o2, o3, c, n, j, mode)
        _edge(r0, r1, r2, r3, r4, r5, o0, o1, o2, o3, c, n, n - c + j, mode)


@numba.njit(inline="always")
def _row(src, r, top, bottom):  # pragma: no cover - compiled by Numba
    if r < 0:
        return top
    if r >= src.shape[0]:
        return bottom
    return src[r]


@numba.njit(inline="always")
def _group(r0, r1, r2, r3, r4, r5, o0, o1, o2, o3, c, n, mode):  # pragma: no cover
    """Four output rows from the six input rows around them."""
    inner = n - 2 * c  # elements whose neighbours are inside the row
    if inner >= _STEP:
        full = inner - inner % _STEP
        _interior(r0, r1, r2, r3, r4, r5, o0, o1, o2, o3, c, 0, full)
        if full < inner:  # the tail: one more step, overlapping the last
            _interior(r0, r1, r2, r3, r4, r5, o0, o1, o2, o3, c, inner - _STEP, _STEP)
        _edges(r0, r1, r2, r3, r4, r5, o0, o1, o2, o3, c, n, mode)
    else:
        for j in range(n):
            _edge(r0, r1, r2, r3, r4, r5, o0, o1, o2, o3, c, n, j, mode)


def _rows(src, c, y0, y1, mode, dst):  # pragma: no cover - compiled by Numba
    """``dst[y0:y1]`` = 3x3 median of *src*, an image as ``(H, W * c)`` rows (see module)."""
    h, n = src.shape
    if mode == ZERO:
        top = np.zeros(n, src.dtype)
        bottom = top
    elif mode == MIRROR and h > 1:
        top = src[1]
        bottom = src[h - 2]
    else:
        top = src[0]
        bottom = src[h - 1]
    spare = np.empty((3, n), src.dtype)  # rows past y1 of the last group of four
    # Rows of a whole number of vector steps, far enough from the top and bottom, are read and
    # written as runs of the flat image from c before a row's start to c past its end: one
    # loop with no tail step covers the row, the c values at each end read the neighbouring
    # rows (wrong there, but the edge loop rewrites them) and every read stays in the image.
    whole = n % _STEP == 0 and n - 2 * c >= _STEP
    flat_src = src.reshape(h * n)
    flat_dst = dst.reshape(h * n)
    m = n + 2 * c
    for y in range(y0, y1, 4):
        o0 = dst[y]
        o1 = dst[y + 1] if y + 1 < y1 else spare[0]
        o2 = dst[y + 2] if y + 2 < y1 else spare[1]
        o3 = dst[y + 3] if y + 3 < y1 else spare[2]
        if whole and 2 <= y and y + 6 <= h and y + 4 <= y1:
            b = y * n - c  # where the run of output row y starts
            _interior(flat_src[b - n:b - n + m], flat_src[b:b + m], flat_src[b + n:b + n + m],
                      flat_src[b + 2 * n:b + 2 * n + m], flat_src[b + 3 * n:b + 3 * n + m],
                      flat_src[b + 4 * n:b + 4 * n + m], flat_dst[b:b + m],
                      flat_dst[b + n:b + n + m], flat_dst[b + 2 * n:b + 2 * n + m],
                      flat_dst[b + 3 * n:b + 3 * n + m], c, 0, n)
            _edges(src[y - 1], src[y], src[y + 1], src[y + 2], src[y + 3], src[y + 4],
                   o0, o1, o2, o3, c, n, mode)
        elif 1 <= y and y + 4 < h:  # inside: rows straight from the image
            _group(src[y - 1], src[y], src[y + 1], src[y + 2], src[y + 3], src[y + 4],
                   o0, o1, o2, o3, c, n, mode)
        else:  # at the top or bottom: the outside rows, and any row for spare outputs
            _group(_row(src, y - 1, top, bottom), _row(src, y, top, bottom),
                   _row(src, y + 1, top, bottom), _row(src, y + 2, top, bottom),
                   _row(src, y + 3, top, bottom), _row(src, y + 4, top, bottom),
                   o0, o1, o2, o3, c, n, mode)


@functools.lru_cache(maxsize=1)
def _kernel():
    """The compiled row filler (compiled once per process, or loaded from the disk cache)."""
    try:  # cached on disk beside this file, or in the user's cache folder
        return numba.njit([_SIGNATURE], nogil=True, cache=True)(_rows)
    except Exception:  # noqa: BLE001 - no writable cache location: compile per process
        return numba.njit([_SIGNATURE], nogil=True)(_rows)


def warm() -> None:
    """Compile the kernel now (or load it from the disk cache)."""
    _kernel()


def median3_rows(src: np.ndarray, channels: int, y0: int, y1: int, border: str,
                 dst: np.ndarray) -> None:
    """Fill ``dst[y0:y1]`` with the 3x3 median of *src* under the *border* rule.

    Parameters
    ----------
    src, dst : numpy.ndarray
        C-contiguous uint8 images viewed as ``(H, W * channels)`` rows, same
        shape and dtype; *dst* must not overlap *src*.
    channels : int
        Interleaved channels per pixel.
    y0, y1 : int
        The output rows to fill.
    border : str
        One of OpenCV's rules, as :func:`gpuenhance.median_filter` names them.

    Examples
    --------
    >>> import cv2
    >>> img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    >>> out = np.empty_like(img)
    >>> median3_rows(img.reshape(5, 21), 3, 0, 5, "replicate", out.reshape(5, 21))
    >>> bool((out == cv2.medianBlur(img, 3)).all())
    True
    """
    _kernel()(src, channels, y0, y1, _MODE[border], dst)
