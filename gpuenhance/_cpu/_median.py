"""Exact median of large windows for dtypes OpenCV's medianBlur does not cover.

Huang's sliding histogram over integer keys, walked in a snake (left to right, then one row
down, then right to left), so each output pixel costs ``2 * ksize`` histogram updates plus a
short search, instead of a partial sort of ``ksize**2`` values:

* uint16 images are their own keys (16 bits).
* float images are replaced by their ranks inside the tile being filtered (``argsort``; ties
  broken arbitrarily, which does not change the median's value): the median of the ranks is
  the rank of the median, so the result is the float value itself, bit for bit. Tiles of at
  most 2**16 values have 16-bit ranks. NumPy sorts NaNs last, as ``numpy.partition`` does, so
  the NaN policy of the partial-sort median is kept (NaN counts as larger than every number).

The histogram has three levels (coarse / middle / fine) so that the search after a move is a
few steps: the coarse bucket holding the median is tracked incrementally (it moves little from
one pixel to the next), and the middle and fine levels are scanned inside it.

The kernel is compiled by Numba (a PyPI wheel; no compiler needed) the first time it is used
and cached on disk; it releases the GIL, so bands of one image run on threads. Without Numba
:func:`available` is False and the caller keeps its NumPy partial-sort path.
"""

from __future__ import annotations

import functools

import numpy as np

#: Values in one float tile at most (window included): ranks fit 16-bit keys.
FLOAT_TILE_VALUES = 1 << 16


# uint16 keys: 16-bit images and the ranks of float tiles of at most 2**16 values (the column
# walks read half the bytes of int32 keys: ~1.5x faster); int32 for larger tiles.
_SIGNATURES = ["void(uint16[:, ::1], int64, int64, int32[:, ::1])",
               "void(int32[:, ::1], int64, int64, int32[:, ::1])"]


@functools.lru_cache(maxsize=1)
def _kernel():
    """The compiled histogram walker, or None when Numba is not importable."""
    try:
        import numba
    except Exception:  # noqa: BLE001 - any import problem means "not available"
        return None
    try:  # cached on disk beside this file, or in the user's cache folder
        return numba.njit(_SIGNATURES, nogil=True, cache=True)(_walk)
    except Exception:  # noqa: BLE001 - no writable cache location: compile per process
        return numba.njit(_SIGNATURES, nogil=True)(_walk)


def _walk(src, ksize, nbits, out):  # pragma: no cover - compiled by Numba
    """``out[y, x]`` = median key of ``src[y:y + ksize, x:x + ksize]`` (see module docstring)."""
    hp, wp = src.shape
    h = hp - ksize + 1
    w = wp - ksize + 1
    ts = nbits - 8 if nbits > 8 else 0  # coarse shift
    ms = ts // 2  # middle shift
    top = np.zeros((1 << (nbits - ts)) + 1, np.uint16)
    mid = np.zeros((1 << (nbits - ms)) + 1, np.uint16)
    fine = np.zeros((1 << nbits) + 1, np.uint16)
    rank = (ksize * ksize) // 2
    cm = 0  # coarse bucket holding the median
    cb = 0  # number of window values in buckets below cm
    for i in range(ksize):
        for j in range(ksize):
            v = src[i, j]
            fine[v] += 1
            mid[v >> ms] += 1
            top[v >> ts] += 1
    x = 0
    for y in range(h):
        if y > 0:  # one row down at column x: drop row y-1, add row y+ksize-1
            for j in range(x, x + ksize):
                v = src[y - 1, j]
                fine[v] -= 1
                mid[v >> ms] -= 1
                top[v >> ts] -= 1
                cb -= (v >> ts) < cm  # branch-free: random data mispredicts
                v = src[y + ksize - 1, j]
                fine[v] += 1
                mid[v >> ms] += 1
                top[v >> ts] += 1
                cb += (v >> ts) < cm
        step = 1 if (y & 1) == 0 else -1
        for n in range(w):
            # the median of the window whose left column is x
            while cb > rank:
                cm -= 1
                cb -= top[cm]
            while cb + top[cm] <= rank:
                cb += top[cm]
                cm += 1
            c = cb
            i = cm << (ts - ms)
            while c + mid[i] <= rank:
                c += mid[i]
                i += 1
            i <<= ms
            while c + fine[i] <= rank:
                c += fine[i]
                i += 1
            out[y, x] = i
            if n == w - 1:
                break
            # slide one column: drop column `gone`, add column `new`
            if step == 1:
                gone = x
                new = x + ksize
            else:
                gone = x + ksize - 1
                new = x - 1
            for r in range(y, y + ksize):
                v = src[r, gone]
                fine[v] -= 1
                mid[v >> ms] -= 1
                top[v >> ts] -= 1
                cb -= (v >> ts) < cm  # branch-free: random data mispredicts
                v = src[r, new]
                fine[v] += 1
                mid[v >> ms] += 1
                top[v >> ts] += 1
                cb += (v >> ts) < cm
            x += step



def available() -> bool:
    """Whether the compiled histogram median can run here (Numba importable)."""
    return _kernel() is not None


def median_keys(keys: np.ndarray, ksize: int, nbits: int) -> np.ndarray:
    """Median of every ``ksize x ksize`` window of a 2-D array of keys in ``[0, 2**nbits)``.

    *keys* is already padded: the result has shape ``(h - ksize + 1, w - ksize + 1)``.
    """
    dtype = np.uint16 if nbits <= 16 else np.int32
    src = np.ascontiguousarray(keys, dtype=dtype)
    h, w = src.shape
    out = np.empty((h - ksize + 1, w - ksize + 1), dtype=np.int32)
    _kernel()(src, ksize, max(1, int(nbits)), out)
    return out


def median_plane(padded: np.ndarray, ksize: int) -> np.ndarray:
    """Exact window median of one padded 2-D plane (uint16, float32 or float64)."""
    if padded.dtype == np.uint16:
        return median_keys(padded, ksize, 16).astype(np.uint16)
    flat = padded.reshape(-1)
    order = np.argsort(flat)  # NaNs last, as numpy.partition places them
    nbits = max(1, int(flat.size - 1).bit_length())
    ranks = np.empty(flat.size, dtype=np.uint16 if nbits <= 16 else np.int32)
    ranks[order] = np.arange(flat.size, dtype=ranks.dtype)
    med = median_keys(ranks.reshape(padded.shape), ksize, nbits)
    return flat[order[med]]
