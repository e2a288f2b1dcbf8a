"""Tiled processing of images too large for one call, exact to the pixel.

A chain of neighbourhood filters whose radii sum to ``R`` is applied to one *window* of the
image at a time, and the window's *core* is kept. Windows are cores grown by ``R`` on each
side and **clipped to the image**: nothing is ever padded here. Why that is exact, for every
border rule and for chains that mix border rules:

* A core pixel whose whole ``R``-neighbourhood lies inside the window reads exactly what it
  reads on the whole image (by induction over the stages: after stage *s* the pixels at least
  ``r_1 + ... + r_s`` away from a cut side are exact).
* A window side that is clipped lies *on the image edge*, so each stage applies its own border
  rule at the true edge. The rule maps an outside pixel at distance ``k <= r_s`` back to a pixel
  at most ``r_s`` from the edge; a clipped window is at least ``R + 1`` long unless it spans the
  whole axis, so that pixel is inside the window, is exact, and the reflection is the single
  one the whole image performs too (a window spanning the whole axis is the whole axis).

Float results of vectorised CPU code (OpenCV's SIMD row loops) also depend on where a pixel
falls in the loop: pixels in a row's scalar tail are summed without FMA. Windows of float
images therefore start on a multiple of :data:`FLOAT_COLUMN_ALIGN` columns and end on one or at
the image's right edge, which puts every pixel on the same code path as on the whole image
(for any SIMD step dividing 64 elements). Integer paths are exact arithmetic and need no
alignment.

Everything here works on NumPy and CuPy arrays (slicing and assignment only).
"""

from __future__ import annotations

import math
import numbers
import re
import sys
from dataclasses import dataclass
from typing import Callable

__all__ = [
    "FLOAT_COLUMN_ALIGN",
    "Tile",
    "axis_windows",
    "call_resilient",
    "column_align",
    "halve",
    "is_oom",
    "oom_errors",
    "parse_max_tile",
    "plan_tiles",
    "run_tiled",
]

#: Column alignment (pixels) of tile windows for float images; see the module docstring.
FLOAT_COLUMN_ALIGN = 64

_HXW = re.compile(r"^\s*(\d+)\s*[xX*]\s*(\d+)\s*$")


def parse_max_tile(value, name: str = "max_tile") -> tuple[int, int] | None:
    """``None``, ``N`` (an N x N tile), ``"N"``, ``"HxW"`` or ``(H, W)`` as ``(H, W)`` or None.

    Examples
    --------
    >>> parse_max_tile("512x1024"), parse_max_tile(256), parse_max_tile(None)
    ((512, 1024), (256, 256), None)
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        m = _HXW.match(text)
        if m:
            pair = (int(m.group(1)), int(m.group(2)))
        elif text.isdigit():
            pair = (int(text), int(text))
        else:
            raise ValueError(f"{name} must be N or HxW (positive integers); got {value!r}")
    elif isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be N or (H, W); got {value!r}")
        pair = tuple(value)
    else:
        pair = (value, value)
    out = []
    for v in pair:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} must hold integers; got {value!r}")
        if int(v) < 1:
            raise ValueError(f"{name} must be positive; got {value!r}")
        out.append(int(v))
    return out[0], out[1]


def halo_overhead(tile, radius: int, name: str = "max_tile") -> float:
    """Extra work the halos of *radius* add to tiles of *tile* = ``(H, W)`` pixels, as a
    fraction (1.0: every core pixel costs twice); a ValueError when the tile leaves no core.

    Examples
    --------
    >>> round(halo_overhead((64, 64), 4), 3)
    0.306
    """
    th, tw = tile
    least = 2 * radius + 1
    if min(th, tw) < least:
        raise ValueError(
            f"{name} {th}x{tw} is too small for the pipeline's halo of {radius} pixels on each "
            f"side: tiles must be at least {least}x{least} pixels (and should be far larger)"
        )
    return th * tw / ((th - 2 * radius) * (tw - 2 * radius)) - 1.0


def column_align(dtype) -> int:
    """Column alignment of tile windows for images of *dtype* (64 for floats, else 1)."""
    import numpy as np

    return FLOAT_COLUMN_ALIGN if np.dtype(dtype).kind == "f" else 1


# --------------------------------------------------------------------------- planning


def axis_windows(length: int, tile: int, radius: int, align: int = 1):
    """Split one axis into ``(w0, w1, c0, c1)``: window ``[w0, w1)`` and core ``[c0, c1)``.

    Cores partition ``[0, length)``; each window is its core grown by *radius* on both sides,
    rounded outward to multiples of *align*, and clipped to ``[0, length)``. Windows are at
    most *tile* long where ``tile > 2 * radius`` (plus alignment); below that every core is
    one aligned unit and windows are ``2 * radius + 1`` (the least that makes progress).
    An axis no longer than *tile* is one window: the whole axis.

    Examples
    --------
    >>> axis_windows(10, 6, 1)
    [(0, 5, 0, 4), (3, 9, 4, 8), (7, 10, 8, 10)]
    """
    if length <= tile:
        return [(0, length, 0, length)]
    halo = -(-radius // align) * align  # radius rounded up to the alignment
    core = max(align, ((tile - 2 * halo) // align) * align)
    out = []
    for c0 in range(0, length, core):
        c1 = min(length, c0 + core)
        w0 = max(0, c0 - halo)
        w1 = min(length, c1 + halo)
        out.append((w0, w1, c0, c1))
    return out


@dataclass(frozen=True)
class Tile:
    """One tile: the window processed and the core kept, in image coordinates."""

    rows: tuple[int, int, int, int]  # (w0, w1, c0, c1) along H
    cols: tuple[int, int, int, int]  # (w0, w1, c0, c1) along W

    @property
    def window(self) -> tuple[slice, slice]:
        return slice(self.rows[0], self.rows[1]), slice(self.cols[0], self.cols[1])

    @property
    def core(self) -> tuple[slice, slice]:
        return slice(self.rows[2], self.rows[3]), slice(self.cols[2], self.cols[3])

    @property
    def inner(self) -> tuple[slice, slice]:
        """The core's place inside the window's result."""
        r, c = self.rows, self.cols
        return slice(r[2] - r[0], r[3] - r[0]), slice(c[2] - c[0], c[3] - c[0])

    @property
    def window_shape(self) -> tuple[int, int]:
        return self.rows[1] - self.rows[0], self.cols[1] - self.cols[0]


def plan_tiles(height: int, width: int, tile, radius: int, *, col_align: int = 1) -> list[Tile]:
    """Tiles covering an ``height x width`` image; *tile* is ``(H, W)`` as from parse_max_tile."""
    th, tw = tile
    rows = axis_windows(height, th, radius, 1)
    cols = axis_windows(width, tw, radius, col_align)
    return [Tile(r, c) for r in rows for c in cols]


# --------------------------------------------------------------------------- running


def _empty_like(x):
    if type(x).__module__.startswith("cupy"):
        return sys.modules["cupy"].empty_like(x)
    import numpy as np

    return np.empty_like(x)


def run_tiled(func: Callable, batch, tile, radius: int, *, col_align: int = 1):
    """Apply *func* to an (N, H, W, C) *batch* tile by tile and stitch the cores.

    *func* maps an (N, h, w, C) window (a view of *batch*) to an array of the same shape; the
    result has *batch*'s shape, dtype and array type.
    """
    n, h, w, c = batch.shape
    tiles = plan_tiles(h, w, tile, radius, col_align=col_align)
    if len(tiles) == 1:
        return func(batch)
    out = None
    for t in tiles:
        wr, wc = t.window
        res = func(batch[:, wr, wc])
        if out is None:
            out = _empty_like(batch) if type(res) is type(batch) else None
            if out is None:  # func returns another array type (host <-> device)
                mod = sys.modules[type(res).__module__.split(".")[0]]
                out = mod.empty(batch.shape, dtype=res.dtype)
        ir, ic = t.inner
        cr, cc = t.core
        out[:, cr, cc] = res[:, ir, ic]
    return out


# --------------------------------------------------------------------------- out of memory


def oom_errors() -> tuple[type, ...]:
    """Exception types that mean "out of memory": MemoryError and, when CuPy is loaded, its own."""
    errors: list[type] = [MemoryError]
    cp = sys.modules.get("cupy")
    if cp is not None:
        try:
            errors.append(cp.cuda.memory.OutOfMemoryError)
        except AttributeError:
            pass
    return tuple(errors)


def is_oom(exc: BaseException) -> bool:
    """True for an out-of-memory error (see :func:`oom_errors`, plus CUDA allocation failures)."""
    if isinstance(exc, oom_errors()):
        return True
    return type(exc).__name__ == "CUDARuntimeError" and "cudaErrorMemoryAllocation" in str(exc)


def _release_device_memory() -> None:
    cp = sys.modules.get("cupy")
    if cp is not None:
        try:
            cp.get_default_memory_pool().free_all_blocks()
            cp.get_default_pinned_memory_pool().free_all_blocks()
        except Exception:  # noqa: BLE001 - best effort
            pass


def halve(tile, height: int, width: int) -> tuple[int, int]:
    """The next smaller tile after an out-of-memory error: half of each side (at least 1)."""
    th, tw = tile if tile is not None else (height, width)
    th, tw = min(th, height), min(tw, width)
    return max(1, math.ceil(th / 2)), max(1, math.ceil(tw / 2))


def _largest_window(height, width, tile, radius, col_align) -> int:
    return max(
        t.window_shape[0] * t.window_shape[1]
        for t in plan_tiles(height, width, tile, radius, col_align=col_align)
    )


def call_resilient(call: Callable, batch, *, tile=None, radius: int | None = None,
                   col_align: int = 1, concatenate: Callable | None = None,
                   release: Callable[[], None] = _release_device_memory):
    """``call(batch, tile)`` that survives running out of memory.

    On an out-of-memory error (:func:`is_oom`) the device memory pools are released and the
    batch is split in halves, each retried the same way; a single image is retried with the
    tile halved (only when *radius* is given, i.e. the op is local and tiling is exact) until
    the largest window stops shrinking, and then the error is raised.

    Parameters
    ----------
    call : callable
        ``call(batch, tile)`` with tile None (whole images) or ``(H, W)``.
    batch : array
        (N, H, W, C).
    concatenate : callable, optional
        Joins the halves' results (default: the array module's ``concatenate``).
    """
    try:
        return call(batch, tile)
    except Exception as exc:  # noqa: BLE001 - only OOM is handled, the rest re-raised
        if not is_oom(exc):
            raise
        first = exc
    release()
    n, h, w = batch.shape[:3]
    if n > 1:
        half = n // 2
        kw = dict(tile=tile, radius=radius, col_align=col_align, concatenate=concatenate,
                  release=release)
        a = call_resilient(call, batch[:half], **kw)
        b = call_resilient(call, batch[half:], **kw)
        if concatenate is None:
            mod = sys.modules[type(a).__module__.split(".")[0]]
            return mod.concatenate([a, b], axis=0)
        return concatenate([a, b])
    if radius is None:
        raise first
    smaller = halve(tile, h, w)
    if _largest_window(h, w, smaller, radius, col_align) >= _largest_window(
        h, w, tile if tile is not None else (h, w), radius, col_align
    ):
        raise first
    return call_resilient(call, batch, tile=smaller, radius=radius, col_align=col_align,
                          concatenate=concatenate, release=release)
