"""Argument checks shared by both engines.

Every check reads metadata only (type, shape, dtype, Python scalars): reading a device
array's values would synchronise the GPU. Errors name the argument and the accepted range.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._backend import is_array

IMAGE_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
FILTER_DTYPES = IMAGE_DTYPES + (np.dtype(np.float64),)
BORDERS = ("replicate", "reflect", "reflect_101", "constant")


def _dtype_names(dtypes) -> str:
    return ", ".join(np.dtype(d).name for d in dtypes)


def image(img, name: str = "img", *, dtypes=IMAGE_DTYPES) -> None:
    """Check that *img* is a NumPy/CuPy image of shape (H, W), (H, W, C) or (N, H, W, C).

    Raises
    ------
    TypeError
        When *img* is not a NumPy or CuPy array, or its dtype is not one of *dtypes*.
    ValueError
        For a wrong number of dimensions or an empty image.
    """
    if type(img) is not np.ndarray and not is_array(img):  # the NumPy test first: cheap
        raise TypeError(
            f"{name} must be a NumPy or CuPy array; got {type(img).__name__}"
        )
    if img.ndim not in (2, 3, 4):
        raise ValueError(
            f"{name} must have shape (H, W), (H, W, C) or (N, H, W, C); got ndim={img.ndim} "
            f"(shape {tuple(img.shape)})"
        )
    if img.size == 0:
        raise ValueError(f"{name} must not be empty; got shape {tuple(img.shape)}")
    if img.dtype in dtypes:  # dtype equality: byte order counts, '>u2' is not uint16
        return
    dtype = np.dtype(img.dtype)
    if dtype not in tuple(np.dtype(d) for d in dtypes):
        if dtype.newbyteorder("=") in tuple(np.dtype(d) for d in dtypes):
            raise TypeError(
                f"{name} must be in native byte order; got {dtype.name} stored "
                f"{'big' if dtype.byteorder == '>' else 'little'}-endian ({dtype.str!r}): "
                f"convert it with {name}.astype({dtype.name!r})"
            )
        raise TypeError(f"{name} dtype must be one of {_dtype_names(dtypes)}; got {dtype.name}")


def integer(value, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """Return *value* as int, checking that it is an integer in [low, high]."""
    if type(value) is not int:  # bool is not int by type; the ABC check only when needed
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an integer; got {value!r}")
        value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name} must be in [{lo}, {hi}]; got {value}")
    return value


def odd_ksize(value, name: str = "ksize", *, low: int = 1, high: int | None = None) -> int:
    """Return *value* as an odd positive int in [low, high]."""
    k = integer(value, name, low=low, high=high)
    if k % 2 == 0:
        raise ValueError(f"{name} must be odd; got {k}")
    return k


def real(value, name: str, *, low: float | None = None, high: float | None = None,
         low_open: bool = False) -> float:
    """Return *value* as a finite float in [low, high] ((low, high] when *low_open*)."""
    if type(value) is not float:  # the ABC check only for other types
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a real number; got {value!r}")
        value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}; got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}; got {value}")
    return value


def border(value, name: str = "border") -> str:
    """Return *value* if it is one of :data:`BORDERS`."""
    if value not in BORDERS:
        raise ValueError(
            f"{name} must be one of {', '.join(repr(b) for b in BORDERS)}; got {value!r}"
        )
    return value


def same_shape(a, b, names: tuple[str, str]) -> None:
    """Check that arrays *a* and *b* have equal shapes."""
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape; "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )


INTEGER_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))


def gray_or_rgb(img, name: str = "img", *, dtypes=IMAGE_DTYPES) -> None:
    """Check *img* as for :func:`image`, with one channel ((H, W) or C = 1) or three (RGB).

    Raises
    ------
    TypeError, ValueError
        As :func:`image`; ValueError for a channel count other than 1 or 3.
    """
    image(img, name, dtypes=dtypes)
    if img.ndim >= 3 and img.shape[-1] not in (1, 3):
        raise ValueError(
            f"{name} must have 1 channel or 3 (RGB); got {img.shape[-1]} channels "
            f"(shape {tuple(img.shape)})"
        )


def pair(value, name: str, *, low: int, high: int) -> tuple[int, int]:
    """Return *value* (an int n, or a pair of ints) as ``(a, b)``, each in [low, high]."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an integer or a pair of integers; got {value!r}")
        return (integer(value[0], f"{name}[0]", low=low, high=high),
                integer(value[1], f"{name}[1]", low=low, high=high))
    v = integer(value, name, low=low, high=high)
    return (v, v)


def curve_points(points, name: str = "points") -> tuple[tuple[float, float], ...]:
    """Return tone-curve control points as a tuple of (x, y) floats.

    At least two pairs, every coordinate finite and in [0, 1], x strictly increasing.
    Accepts a sequence of pairs or a (K, 2) array (NumPy; a device array is refused, since
    reading it would synchronise the GPU).
    """
    if is_array(points) and not isinstance(points, np.ndarray):
        raise TypeError(f"{name} must be a sequence of (x, y) pairs or a NumPy array; "
                        f"got {type(points).__name__}")
    try:
        pts = [tuple(p) for p in points]
    except TypeError:
        raise TypeError(f"{name} must be a sequence of (x, y) pairs; got {points!r}") from None
    if len(pts) < 2 or any(len(p) != 2 for p in pts):
        raise ValueError(f"{name} must hold at least two (x, y) pairs; got {points!r}")
    out = tuple((real(x, f"{name}[{i}][0]", low=0.0, high=1.0),
                 real(y, f"{name}[{i}][1]", low=0.0, high=1.0)) for i, (x, y) in enumerate(pts))
    for i in range(1, len(out)):
        if out[i][0] <= out[i - 1][0]:
            raise ValueError(f"{name} x values must be strictly increasing; got "
                             f"{out[i - 1][0]} then {out[i][0]} at {name}[{i}]")
    return out
