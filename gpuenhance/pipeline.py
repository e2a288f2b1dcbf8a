"""A chain of stages applied to batches of images and to image files.

A pipeline is written as a spec string, stages separated by ``|``, each ``name`` or
``name:param=value:param=value`` (parameters separated by ``:``, ``,`` or spaces; spaces
around ``=``, ``:`` and ``|`` are fine)::

    "median:ksize=3 | gaussian:sigma=1.2 | gamma:gamma=0.8"
    "equalize | clahe:clip_limit=2:tile_grid=8x8 | lut:file=table.npy"

The stages and their parameters are one table, :data:`STAGES` (:func:`stage_help` prints
it): each stage's op, parameter kinds and ranges, halo radius, whether it needs statistics of
the whole image, and whether it is a point operation a filter kernel may absorb. Parameters
are checked when the pipeline is built, by the rules of the op they go to, so a bad spec fails
before any image is read; omitted parameters take the op's own defaults.

Stage ``k``'s output feeds stage ``k + 1``. Where the engine's filter accepts a trailing
point operation (the CUDA engines' median and Gaussian take ``gamma=``/``lut=``), a filter
followed by ``gamma``, ``lut`` or an integer ``tone_curve`` runs as one fused kernel.
``max_tile`` processes images in exact tiles (:mod:`gpuenhance._tiles`); stages that need
whole-image statistics (``equalize``, ``clahe``, ``white_balance``, ``auto_contrast``) run on the
whole image between tiled runs of the local stages, so the result is still identical to
whole-image processing. :meth:`Pipeline.run_files` runs the pipeline over image files
(:mod:`gpuenhance.batch`; :class:`RunReport`, ``run_files`` and :data:`MANIFEST_NAME` are
re-exported here).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import numbers
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from . import _backend, _gauss, _tiles, _validate
from .batch.manifest import MANIFEST_NAME  # noqa: F401 - re-exported
from .batch.report import RunReport
from .batch.runner import run_files
from .io import DEFAULT_MAX_PIXELS

__all__ = ["Pipeline", "RunReport", "Stage", "STAGES", "STAGE_PARAMS", "parse_spec",
           "stage_help"]


# --------------------------------------------------------------------------- stage table

#: Stages that filter or map each channel alike and alone (see Pipeline.channel_order_free).
_ORDER_FREE = frozenset({"median", "gaussian", "gamma", "unsharp", "tone_curve"})


@dataclass(frozen=True)
class Param:
    """One stage parameter: its name, how spec text is read, and its range in words."""

    name: str
    kind: str = "number"  # number | text | bool | grid | points | floats | path
    accepts: str = ""
    required: bool = False


@dataclass(frozen=True)
class StageKind:
    """A row of the stage table.

    Attributes
    ----------
    op : str
        ``"module.function"`` of the public op in :mod:`gpuenhance` the stage calls.
    check : callable
        ``check(params) -> params``: the op's own validation; raises TypeError/ValueError.
    radius : callable, optional
        ``radius(params, dtype) -> int``: how far an output pixel's inputs reach; None for
        point and whole-image operations (radius 0).
    whole_image : bool
        The op needs statistics of the whole image (tiles cannot compute it alone).
    point : callable, optional
        For point operations a filter may absorb: ``point(params, x, xp) -> kwargs`` of the
        engine filter's fused point operation, or None when this input cannot fuse.
    fused : callable, optional
        For filters that may absorb a point operation: ``fused(engine_fn, x, params,
        point_kwargs)`` calls the engine's filter (its context bound) with the point
        operation; *params* has the op's defaults filled in.
    arguments : callable, optional
        ``arguments(params, img) -> kwargs`` of the op call (default: the params).
    """

    name: str
    op: str
    summary: str
    params: tuple = ()
    check: Callable | None = None
    radius: Callable | None = None
    whole_image: bool = False
    point: Callable | None = None
    fused: Callable | None = None
    arguments: Callable | None = None

    def function(self):
        """The public op."""
        module, name = self.op.rsplit(".", 1)
        return getattr(importlib.import_module(f"gpuenhance.{module}"), name)

    def defaults(self) -> dict:
        """The op's own defaults for the stage's parameters that have one."""
        sig = inspect.signature(self.function())
        return {
            p.name: sig.parameters[p.name].default
            for p in self.params
            if p.name in sig.parameters
            and sig.parameters[p.name].default is not inspect.Parameter.empty
        }


# Each check applies the op's own validation (the same helpers the public function calls), so
# a spec is refused at parse time for exactly the reasons the op would refuse it.


def _check_median(p: dict) -> dict:
    from .filters import MEDIAN_KSIZE_MAX

    out = {"ksize": _validate.odd_ksize(p["ksize"], "ksize", low=1, high=MEDIAN_KSIZE_MAX)}
    if "border" in p:
        out["border"] = _validate.border(p["border"])
    return out


def _check_gaussian(p: dict) -> dict:
    ksize = p.get("ksize", 0)
    if isinstance(ksize, bool) or not isinstance(ksize, numbers.Integral):
        raise TypeError(f"ksize must be an integer in a pipeline stage; got {ksize!r}")
    _gauss.resolve(ksize, p.get("sigma", 0.0), p.get("sigma_y"), np.float32)
    out: dict[str, Any] = {}
    if "ksize" in p:
        out["ksize"] = int(ksize)
    if "sigma" in p:
        out["sigma"] = float(p["sigma"])
    if p.get("sigma_y") is not None:
        out["sigma_y"] = float(p["sigma_y"])
    if "border" in p:
        out["border"] = _validate.border(p["border"])
    return out


def _check_gamma(p: dict) -> dict:
    out = {"gamma": _validate.real(p["gamma"], "gamma", low=0.0, low_open=True)}
    if "gain" in p:
        out["gain"] = _validate.real(p["gain"], "gain", low=0.0)
    return out


def _check_none(p: dict) -> dict:
    return {}


def _check_clahe(p: dict) -> dict:
    from .contrast import CLAHE_TILES_MAX

    out: dict[str, Any] = {}
    if "clip_limit" in p:
        out["clip_limit"] = _validate.real(p["clip_limit"], "clip_limit", low=0.0)
    if "tile_grid" in p:
        out["tile_grid"] = _validate.pair(p["tile_grid"], "tile_grid", low=1,
                                          high=CLAHE_TILES_MAX)
    return out


def _with_defaults(stage: str, p: dict) -> dict:
    """*p* with the op's own defaults filled in (for checks that relate parameters)."""
    return {**STAGES[stage].defaults(), **p}


def _check_white_balance(p: dict) -> dict:
    from .color import WHITE_BALANCE_METHODS

    out: dict[str, Any] = {}
    method = _with_defaults("white_balance", p)["method"]
    if method not in WHITE_BALANCE_METHODS:
        raise ValueError(f"method must be one of "
                         f"{', '.join(repr(m) for m in WHITE_BALANCE_METHODS)}; got {method!r}")
    if "method" in p:
        out["method"] = method
    if "percentile" in p:
        out["percentile"] = _validate.real(p["percentile"], "percentile", low=0.0, high=100.0,
                                           low_open=True)
    gains = p.get("gains")
    if (method == "gains") != (gains is not None):
        raise ValueError("gains must be given exactly when method=gains (one per channel)")
    if gains is not None:
        values = gains if isinstance(gains, tuple) else (gains,)
        out["gains"] = tuple(_validate.real(g, f"gains[{i}]", low=0.0)
                             for i, g in enumerate(values))
    return out


def _check_auto_contrast(p: dict) -> dict:
    out: dict[str, Any] = {}
    full = _with_defaults("auto_contrast", p)
    low = _validate.real(full["low"], "low", low=0.0, high=100.0)
    high = _validate.real(full["high"], "high", low=0.0, high=100.0)
    if low >= high:
        raise ValueError(f"low must be < high; got low={low}, high={high}")
    if "low" in p:
        out["low"] = low
    if "high" in p:
        out["high"] = high
    if "per_channel" in p:
        if not isinstance(p["per_channel"], bool):
            raise TypeError(f"per_channel must be true or false; got {p['per_channel']!r}")
        out["per_channel"] = p["per_channel"]
    return out


def _check_tone_curve(p: dict) -> dict:
    return {"points": _validate.curve_points(p["points"])}


def _point_tone_curve(p: dict, x, xp):
    from . import _levels

    dtype = np.dtype(x.dtype)
    if dtype not in _LUT_ENTRIES:
        return None  # floats are evaluated directly
    return {"lut": xp.asarray(_levels.curve_table(p["points"], dtype))}


def _check_unsharp(p: dict) -> dict:
    out: dict[str, Any] = {}
    if "sigma" in p:
        out["sigma"] = _validate.real(p["sigma"], "sigma", low=0.0, low_open=True)
    for key in ("amount", "threshold"):
        if key in p:
            out[key] = _validate.real(p[key], key, low=0.0)
    return out


def _radius_unsharp(p: dict, dtype) -> int:
    sigma = _with_defaults("unsharp", p)["sigma"]
    return _gauss.resolve(0, sigma, None, dtype)[0] // 2


def _check_bilateral(p: dict) -> dict:
    from .bilateral import checked_parameters

    d, sc, ss = checked_parameters(p["d"], p["sigma_color"], p["sigma_space"])
    out: dict[str, Any] = {"d": d, "sigma_color": sc, "sigma_space": ss}
    if "border" in p:
        out["border"] = _validate.border(p["border"])
    return out


def _radius_bilateral(p: dict, dtype) -> int:
    from . import _bilateral

    return _bilateral.radius(p["d"], p["sigma_space"])


def _radius_median(p: dict, dtype) -> int:
    return int(p["ksize"]) // 2


def _radius_gaussian(p: dict, dtype) -> int:
    kx, ky, _, _ = _gauss.resolve(p.get("ksize", 0), p.get("sigma", 0.0), p.get("sigma_y"), dtype)
    return max(kx, ky) // 2


def _fused_median(fn, x, p: dict, point: dict):
    return fn(x, p["ksize"], p["border"], **point)


def _fused_gaussian(fn, x, p: dict, point: dict):
    kx, ky, sx, sy = _gauss.resolve(p["ksize"], p["sigma"], p["sigma_y"], x.dtype)
    return fn(x, kx, ky, sx, sy, p["border"], **point)


def _point_gamma(p: dict, x, xp):
    if np.dtype(x.dtype) not in _validate.IMAGE_DTYPES:
        return None
    return {"gamma": float(p["gamma"]), "gain": float(p["gain"])}


# ----------------------------------------------------------------------- lut:file=...

_LUT_ENTRIES = {np.dtype(np.uint8): 256, np.dtype(np.uint16): 65536}


def load_lut_file(path) -> np.ndarray:
    """Load and check a lookup table saved with ``numpy.save`` (read-only, memoized).

    The table must be uint8 with 256 entries or uint16 with 65536, of shape ``(entries,)``
    or ``(entries, C)`` (one column per channel). ``allow_pickle=False``: a file holding
    Python objects is refused, never executed.

    Raises
    ------
    ValueError
        Naming the file: missing, unreadable, not a ``.npy`` array, or a table of the wrong
        dtype or shape.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"file must be a path; got {type(path).__name__}")
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ValueError(f"file {path!r}: cannot read the table ({exc.strerror or exc})") from None
    return _load_lut_cached(os.path.abspath(path), st.st_mtime_ns, st.st_size, path)


@functools.lru_cache(maxsize=16)
def _load_lut_cached(abspath: str, mtime_ns: int, size: int, shown: str) -> np.ndarray:
    try:
        table = np.load(abspath, allow_pickle=False)
    except Exception as exc:  # ValueError (pickled data), OSError, EOFError, zip errors, ...
        raise ValueError(
            f"file {shown!r} is not a NumPy .npy table: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(table, np.ndarray):
        if hasattr(table, "close"):
            table.close()
        raise ValueError(f"file {shown!r} is not a NumPy .npy table (an .npz archive?)")
    dtype = np.dtype(table.dtype)
    entries = _LUT_ENTRIES.get(dtype)
    if entries is None or table.ndim not in (1, 2) or table.shape[0] != entries or (
        table.ndim == 2 and table.shape[1] < 1
    ):
        raise ValueError(
            f"file {shown!r} must hold a uint8 table of shape (256,) or (256, C), or a uint16 "
            f"table of shape (65536,) or (65536, C); got {dtype.name} {tuple(table.shape)}"
        )
    table = np.ascontiguousarray(table)
    table.flags.writeable = False
    return table


def _check_lut(p: dict) -> dict:
    load_lut_file(p["file"])
    return {"file": os.fspath(p["file"])}


def _lut_table(p: dict, img, xp):
    """The stage's table for *img*: TypeError naming the file when the dtype differs."""
    table = load_lut_file(p["file"])
    if np.dtype(table.dtype) != np.dtype(img.dtype):
        raise TypeError(
            f"lut file {p['file']!r} holds a {np.dtype(table.dtype).name} table; it cannot map "
            f"{np.dtype(img.dtype).name} images"
        )
    channels = img.shape[-1] if img.ndim >= 3 else 1
    if table.ndim == 2 and table.shape[1] not in (1, channels):
        raise ValueError(
            f"lut file {p['file']!r} has {table.shape[1]} columns (one per channel); the "
            f"image has {channels} channel(s)"
        )
    return xp.asarray(table)


def _arguments_lut(p: dict, img) -> dict:
    xp = _backend._cupy_module() if _backend.is_cupy(img) else np
    return {"lut": _lut_table(p, img, xp)}


def _point_lut(p: dict, x, xp):
    table = load_lut_file(p["file"])
    channels = int(x.shape[-1]) if x.ndim >= 3 else 1
    if np.dtype(table.dtype) != np.dtype(x.dtype) or (
        table.ndim == 2 and table.shape[1] not in (1, channels)
    ):
        return None  # not fusable: the stage alone raises the error naming the file
    return {"lut": xp.asarray(table)}


_BORDER = Param("border", "text", "|".join(_validate.BORDERS))

#: The stage table: every pipeline stage, in the order ``run --help`` lists them.
STAGES: dict[str, StageKind] = {
    k.name: k
    for k in (
        StageKind(
            "median", "filters.median_filter", "median filter (impulse noise)",
            (Param("ksize", accepts="odd, 1..255", required=True), _BORDER),
            _check_median, radius=_radius_median, fused=_fused_median,
        ),
        StageKind(
            "gaussian", "filters.gaussian_filter", "Gaussian smoothing (OpenCV's ksize/sigma rules)",
            (Param("ksize", accepts="0 or odd 1..1023; 0 = from sigma"),
             Param("sigma", accepts="0..127.75 (uint8: 170.3; windows <= 1023 taps); "
                                    "0 = from ksize"),
             Param("sigma_y", accepts=">= 0; default = sigma"), _BORDER),
            _check_gaussian, radius=_radius_gaussian, fused=_fused_gaussian,
        ),
        StageKind(
            "unsharp", "sharpen.unsharp_mask", "unsharp mask x + amount * (x - Gaussian(x))",
            (Param("sigma", accepts="> 0"), Param("amount", accepts=">= 0"),
             Param("threshold", accepts=">= 0, in pixel units")),
            _check_unsharp, radius=_radius_unsharp,
        ),
        StageKind(
            "bilateral", "bilateral.bilateral_filter",
            "edge-preserving bilateral filter (cv2.bilateralFilter; uint8/float32, 1 or 3 channels)",
            (Param("d", accepts="0..129; 0 = from sigma_space", required=True),
             Param("sigma_color", accepts="> 0, pixel units", required=True),
             Param("sigma_space", accepts="> 0, pixels", required=True), _BORDER),
            _check_bilateral, radius=_radius_bilateral,
        ),
        StageKind(
            "gamma", "tone.gamma_correct", "gamma curve gain * x**gamma",
            (Param("gamma", accepts="> 0", required=True), Param("gain", accepts=">= 0")),
            _check_gamma, point=_point_gamma,
        ),
        StageKind(
            "lut", "tone.apply_lut", "lookup table from a .npy file (uint8: 256 entries, "
            "uint16: 65536; one column per channel allowed)",
            (Param("file", "path", "path of a table saved by numpy.save", required=True),),
            _check_lut, point=_point_lut, arguments=_arguments_lut,
        ),
        StageKind(
            "tone_curve", "tone.tone_curve", "monotone PCHIP tone curve through control points",
            (Param("points", "points", "x,y;x,y;... in [0, 1], x increasing, >= 2 points",
                   required=True),),
            _check_tone_curve, point=_point_tone_curve,
        ),
        StageKind(
            "white_balance", "color.white_balance", "per-channel gains against a colour cast",
            (Param("method", "text", "gray_world|white_patch|gains"),
             Param("percentile", accepts="(0, 100]; for white_patch"),
             Param("gains", "floats", "g1,g2,...: one per channel, >= 0; for gains")),
            _check_white_balance, whole_image=True,
        ),
        StageKind(
            "auto_contrast", "contrast.auto_contrast", "percentile stretch to the full range",
            (Param("low", accepts="0..100 percentile"), Param("high", accepts="0..100, > low"),
             Param("per_channel", "bool", "true|false")),
            _check_auto_contrast, whole_image=True,
        ),
        StageKind(
            "equalize", "contrast.equalize_hist", "histogram equalisation (RGB: on Y of YCrCb)",
            (), _check_none, whole_image=True,
        ),
        StageKind(
            "clahe", "contrast.clahe", "contrast-limited adaptive equalisation (RGB: on Y)",
            (Param("clip_limit", accepts=">= 0; 0 = no clipping"),
             Param("tile_grid", "grid", "NxM tiles across x down (or N), each 1..256")),
            _check_clahe, whole_image=True,
        ),
    )
}

#: Parameters each stage accepts (in spec order) and which of them are required.
STAGE_PARAMS: dict[str, dict[str, Any]] = {
    name: {"params": tuple(p.name for p in kind.params),
           "required": tuple(p.name for p in kind.params if p.required)}
    for name, kind in STAGES.items()
}


def stage_help() -> str:
    """The stage table in words: every stage, its parameters, their ranges and defaults.

    Examples
    --------
    >>> print(stage_help().splitlines()[1])
      median        median filter (impulse noise)
    """
    lines = ['stages (SPEC = "name:param=value:param=value | name ..."):']
    for kind in STAGES.values():
        lines.append(f"  {kind.name:<13} {kind.summary}")
        defaults = kind.defaults()
        for p in kind.params:
            if p.required:
                note = "required"
            elif p.name in defaults and defaults[p.name] is not None:
                note = f"default {_format_value(defaults[p.name])}"
            else:
                note = "optional"
            lines.append(f"      {p.name:<11} {p.accepts} ({note})")
    return "\n".join(lines)


@dataclass(frozen=True)
class Stage:
    """One step of a pipeline: an op name and its keyword parameters.

    Parameters
    ----------
    name : str
        The stage (a key of :data:`STAGES`: ``"median"``, ``"gaussian"``, ``"gamma"``,
        ``"unsharp"``, ``"bilateral"``, ``"lut"``, ``"tone_curve"``, ``"white_balance"``, ``"auto_contrast"``,
        ``"equalize"``, ``"clahe"``).
    params : mapping, optional
        Its parameters (see :data:`STAGES`); stored as a sorted tuple of items so that
        stages are immutable and hashable.

    Examples
    --------
    >>> Stage("median", {"ksize": 3})
    Stage('median', ksize=3)
    >>> Stage("median", {"ksize": 3}).kwargs
    {'ksize': 3}
    """

    name: str
    params: tuple = ()

    def __post_init__(self):
        params = self.params
        if isinstance(params, Mapping):
            params = tuple(params.items())
        object.__setattr__(self, "params", tuple(sorted(tuple(params), key=lambda kv: kv[0])))

    @property
    def kind(self) -> StageKind:
        """The stage's row of :data:`STAGES`."""
        return STAGES[self.name]

    @property
    def kwargs(self) -> dict:
        """The parameters as a dict."""
        return dict(self.params)

    @property
    def spec(self) -> str:
        """The stage as spec text, e.g. ``"gaussian:sigma=1.2"``."""
        if not self.params:
            return self.name
        return self.name + ":" + ",".join(f"{k}={_format_value(v)}" for k, v in self.params)

    @property
    def whole_image(self) -> bool:
        """Whether the stage needs statistics of the whole image (no tiling through it)."""
        return self.kind.whole_image

    @property
    def radius(self) -> int:
        """How far (in pixels) one output pixel's inputs reach, for any dtype; 0 for point ops.

        The largest of :meth:`radius_for` over the dtypes (float kernels are the widest
        OpenCV derives from a sigma: 4 sigma per side, 3 for uint8).
        """
        return self.radius_for(np.float32)

    def radius_for(self, dtype) -> int:
        """How far one output pixel's inputs reach for images of *dtype*: median ``ksize // 2``,
        Gaussian ``max(kx, ky) // 2`` of the kernel size resolved for *dtype*, point and
        whole-image stages 0 (whole-image stages are never tiled)."""
        kind = self.kind
        return 0 if kind.radius is None else kind.radius(self.kwargs, dtype)

    def resolved(self) -> dict:
        """The parameters with the op's defaults filled in."""
        return {**self.kind.defaults(), **self.kwargs}

    def __call__(self, img, *, backend=None):
        """Apply the stage to *img* (any layout the op accepts)."""
        kind = self.kind
        kwargs = kind.arguments(self.kwargs, img) if kind.arguments else self.kwargs
        return kind.function()(img, **kwargs, backend=backend)

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.params)
        return f"Stage({self.name!r}{args})"


def _format_value(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, tuple) and len(v) == 2 and all(isinstance(t, int) for t in v):
        return f"{v[0]}x{v[1]}"
    if isinstance(v, tuple) and all(isinstance(t, (int, float)) for t in v):
        return ",".join(_format_value(t) for t in v)
    if isinstance(v, tuple):
        return ";".join(",".join(_format_value(t) for t in item) if isinstance(item, tuple)
                        else _format_value(item) for item in v)
    return str(v)


_NUMBER_INT = re.compile(r"^[+-]?\d+$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A parameter starts at a name followed by "=", at the start or after a separator.
_KEY = re.compile(r"(?:^|[,:\s])\s*([A-Za-z_][A-Za-z0-9_]*)\s*=")
_SEPARATORS = re.compile(r"[,:\s]")


def _number(text: str):
    if _NUMBER_INT.match(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def _parse_value(text: str, kind: str, where: str, key: str):
    """Spec text of one parameter as a Python value (the op's check judges it)."""
    if kind in ("number", "text"):
        if _SEPARATORS.search(text):
            raise ValueError(f"{where}: malformed parameter {key}={text!r}; expected param=value")
        return _number(text) if kind == "number" else text
    if kind == "path":
        return text
    if kind == "bool":
        lowered = text.lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise ValueError(f"{where}: malformed {key}={text!r}; expected true or false")
    try:
        if kind == "floats":  # "1.2,1.0,0.9"
            return tuple(float(t) for t in text.split(","))
        if kind == "grid":  # "8x8" or "8"
            parts = [t.strip() for t in text.lower().split("x")]
            values = tuple(int(t) for t in parts)
            if len(values) not in (1, 2):
                raise ValueError
            return values[0] if len(values) == 1 else values
        # points: "x,y; x,y; ..."
        return tuple(tuple(float(v) for v in pt.split(","))
                     for pt in text.strip().strip(";").split(";"))
    except ValueError:
        expected = {"grid": "N or NxM with integers", "points": "x,y;x,y;... with numbers",
                    "floats": "comma-separated numbers"}[kind]
        raise ValueError(f"{where}: malformed {key}={text!r}; expected {expected}") from None


def _validated(stage: Stage, index: int, *, as_value_error: bool) -> Stage:
    """Check *stage* by its op's rules; errors name the stage (1-based) and parameter."""
    where = f"stage {index} {stage.name!r}"
    if stage.name not in STAGES:
        raise ValueError(
            f"stage {index}: unknown stage {stage.name!r}; "
            f"expected one of {', '.join(repr(s) for s in STAGES)}"
        )
    rules = STAGE_PARAMS[stage.name]
    kwargs = stage.kwargs
    for key in kwargs:
        if key not in rules["params"]:
            expected = ", ".join(repr(p) for p in rules["params"]) or "none"
            raise ValueError(f"{where}: unknown parameter {key!r}; expected {expected}")
    for key in rules["required"]:
        if key not in kwargs:
            raise ValueError(f"{where}: missing required parameter {key!r}")
    try:
        checked = STAGES[stage.name].check(kwargs)
    except (TypeError, ValueError) as exc:
        kind = ValueError if as_value_error else type(exc)
        raise kind(f"{where}: {exc}") from None
    return Stage(stage.name, checked)


def _parse_params(rest: str, index: int, name: str) -> dict[str, Any]:
    where = f"stage {index} {name!r}"
    kinds = {p.name: p.kind for p in STAGES[name].params} if name in STAGES else {}
    matches = list(_KEY.finditer(rest))
    lead = rest[: matches[0].start()] if matches else rest
    if lead.strip(" \t\n,:"):
        raise ValueError(f"{where}: malformed parameter {lead.strip()!r}; expected param=value")
    params: dict[str, Any] = {}
    for m, nxt in zip(matches, matches[1:] + [None]):
        key = m.group(1).lower()
        value = rest[m.end(): nxt.start() if nxt else len(rest)].strip()
        value = value.rstrip(",:").strip() if kinds.get(key) != "path" else value
        if not value:
            raise ValueError(f"{where}: malformed parameter {key + '='!r}; expected param=value")
        if key in params:
            raise ValueError(f"{where}: parameter {key!r} given twice")
        params[key] = _parse_value(value, kinds.get(key, "number"), where, key)
    return params


def parse_spec(spec: str) -> list[Stage]:
    """Parse a pipeline spec string into validated stages.

    Parameters
    ----------
    spec : str
        ``"name:param=value:param=value | name | ..."``; parameters are separated by ``:``,
        ``,`` or spaces, and spaces around ``=``, ``:`` and ``|`` are ignored. Values are
        read by the parameter's kind (see :data:`STAGES`): numbers as int or float, else
        text; grids as ``8x8``; curve points as ``x,y;x,y``; file paths as written.

    Returns
    -------
    list of Stage

    Raises
    ------
    ValueError
        Naming the stage (1-based position and name) and the parameter: an empty stage, an
        unknown stage or parameter, a malformed ``param=value``, a repeated parameter, a
        missing required parameter, or a value its op would refuse.

    Examples
    --------
    >>> parse_spec("median:ksize=3 | gamma : gamma = 0.8")
    [Stage('median', ksize=3), Stage('gamma', gamma=0.8)]
    >>> parse_spec("clahe:clip_limit=2:tile_grid=4x8")
    [Stage('clahe', clip_limit=2.0, tile_grid=(4, 8))]
    >>> parse_spec("median:ksize=4")
    Traceback (most recent call last):
    ...
    ValueError: stage 1 'median': ksize must be odd; got 4
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a str; got {type(spec).__name__}")
    if not spec.strip():
        raise ValueError("spec must name at least one stage; got an empty string")
    stages = []
    for index, text in enumerate(spec.split("|"), start=1):
        text = text.strip()
        if not text:
            raise ValueError(f"stage {index} is empty (check the '|' separators)")
        name, _, rest = text.partition(":")
        name = name.strip().lower()
        if not _NAME.match(name):
            raise ValueError(f"stage {index}: malformed stage name {name!r} in {text!r}")
        params = _parse_params(rest, index, name)
        stages.append(_validated(Stage(name, params), index, as_value_error=True))
    return stages


# --------------------------------------------------------------------------- fusion


def _engine_function(engine, kind: StageKind):
    """The engine's implementation of *kind*'s op (same module and name as the public op)."""
    module, name = kind.op.rsplit(".", 1)
    return getattr(engine.module(module), name, None)


@functools.lru_cache(maxsize=None)
def _accepts(fn, names: tuple[str, ...]) -> bool:
    params = inspect.signature(fn).parameters
    return all(n in params and params[n].kind is inspect.Parameter.KEYWORD_ONLY for n in names)


def _fused_call(engine, stage: Stage, nxt: Stage | None, x):
    """*stage* and the point stage *nxt* as one engine call, or None where they do not fuse.

    Fusion is asked of the engine: it happens when the engine's function for *stage* takes
    the point operation's keywords (the CUDA engines' median and Gaussian take ``gamma=``,
    ``gain=`` and ``lut=`` and apply them in the kernel's store, bit-identical to the two
    stages one by one; the CPU engine's take none).
    """
    if nxt is None or stage.kind.fused is None or nxt.kind.point is None:
        return None
    fn = _engine_function(engine, stage.kind)
    if fn is None:
        return None
    point = nxt.kind.point(nxt.resolved(), x, engine.xp)
    if point is None or not _accepts(fn, tuple(sorted(point))):
        return None
    ctx = engine.context() if engine.name != "cpu" else None
    call = fn if ctx is None else functools.partial(fn, ctx)
    return stage.kind.fused(call, x, stage.resolved(), point)


# --------------------------------------------------------------------------- pipeline


class Pipeline:
    """A chain of stages applied in order.

    Parameters
    ----------
    stages : str or iterable of Stage
        A spec string (see :func:`parse_spec`) or stage objects (validated the same way).

    Raises
    ------
    ValueError
        For a bad spec or stage, naming the stage and the parameter.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuenhance import Pipeline
    >>> pipe = Pipeline("median:ksize=3 | gaussian:sigma=1.2 | gamma:gamma=0.8")
    >>> pipe.radius
    6
    >>> Pipeline(pipe.spec) == pipe
    True
    """

    def __init__(self, stages):
        if isinstance(stages, str):
            parsed = parse_spec(stages)
        else:
            parsed = []
            for index, stage in enumerate(stages, start=1):
                if not isinstance(stage, Stage):
                    raise TypeError(
                        f"stages must be a spec string or Stage objects; "
                        f"stage {index} is {type(stage).__name__}"
                    )
                parsed.append(_validated(stage, index, as_value_error=False))
        if not parsed:
            raise ValueError("stages must hold at least one stage; got none")
        self._stages = tuple(parsed)

    @classmethod
    def from_spec(cls, spec: str) -> "Pipeline":
        """Build a pipeline from a spec string (same as ``Pipeline(spec)``)."""
        if not isinstance(spec, str):
            raise TypeError(f"spec must be a str; got {type(spec).__name__}")
        return cls(spec)

    @property
    def stages(self) -> tuple[Stage, ...]:
        return self._stages

    @property
    def spec(self) -> str:
        """The pipeline as a spec string; ``Pipeline(p.spec) == p``."""
        return " | ".join(s.spec for s in self._stages)

    @property
    def radius(self) -> int:
        """Sum of the stages' radii: the halo a tile needs for exact results (any dtype)."""
        return sum(s.radius for s in self._stages)

    def radius_for(self, dtype) -> int:
        """Sum of the stages' radii for images of *dtype* (at most :attr:`radius`)."""
        return sum(s.radius_for(dtype) for s in self._stages)

    def channel_order_free(self, dtype) -> bool:
        """Whether the pipeline gives the same pixels on BGR as on RGB images of *dtype*: every
        stage treats each channel alike and alone (the file runner then skips OpenCV's channel
        swaps). Stages that mix channels (white balance, equalisation on Y, bilateral's colour
        distance) or carry per-channel data (a lookup file) do not, nor does a float Gaussian
        (OpenCV's float kernel rounds a row's last values on another path, so a channel's
        place in the row matters by an ulp).

        Examples
        --------
        >>> import numpy as np
        >>> Pipeline("median:ksize=3 | gamma:gamma=0.8").channel_order_free(np.uint8)
        True
        >>> Pipeline("white_balance").channel_order_free(np.uint8)
        False
        """
        floats = np.dtype(dtype).kind == "f"
        return all(
            s.name in _ORDER_FREE and not (floats and s.name in ("gaussian", "unsharp"))
            for s in self._stages
        )

    def __eq__(self, other) -> bool:
        return isinstance(other, Pipeline) and self._stages == other._stages

    def __hash__(self) -> int:
        return hash(self._stages)

    def __len__(self) -> int:
        return len(self._stages)

    def __repr__(self) -> str:
        return f"Pipeline({self.spec!r})"

    def __call__(self, batch, backend=None, *, max_tile=None):
        """Apply the stages in order to an image or a batch.

        Parameters
        ----------
        batch : numpy.ndarray or cupy.ndarray
            (H, W), (H, W, C) or (N, H, W, C), a dtype every stage accepts.
        backend : {None, "auto", "cpu", "cuda", "cuda-emulated"}, optional
            As for the ops. With ``"cuda"`` and NumPy input the batch is uploaded once, every
            stage runs on the GPU, and the result is downloaded once.
        max_tile : int, str or (int, int), optional
            Process each image in tiles of at most ``N x N`` (``N``) or ``H x W`` (``"HxW"``,
            ``(H, W)``) pixels, halos included, and stitch them: the result is identical to
            whole-image processing (see :mod:`gpuenhance._tiles`). With NumPy input and
            ``backend="cuda"`` only one tile at a time is on the GPU, so images larger than
            device memory fit. Windows grow to ``2 * radius + 1`` where the tile is smaller,
            and float images' windows are aligned to 64 columns.

        Returns
        -------
        array
            Same shape, dtype and array type as *batch*.

        Examples
        --------
        >>> import numpy as np
        >>> from gpuenhance import Pipeline, gamma_correct, median_filter
        >>> img = np.random.default_rng(0).integers(0, 256, (2, 8, 9, 3), dtype=np.uint8)
        >>> out = Pipeline("median:ksize=3 | gamma:gamma=0.5")(img)
        >>> bool((out == gamma_correct(median_filter(img, 3), 0.5)).all())
        True
        """
        _validate.image(batch, "batch", dtypes=_validate.FILTER_DTYPES)
        engine = _backend.resolve(batch, backend=backend)
        tile = _tiles.parse_max_tile(max_tile)
        if tile is not None:
            return self._tiled(batch, engine, tile)
        x = engine.to_engine(batch)
        stages, i = self._stages, 0
        while i < len(stages):
            stage, nxt = stages[i], (stages[i + 1] if i + 1 < len(stages) else None)
            fused = _fused_call(engine, stage, nxt, x)
            if fused is not None:
                x = fused
                i += 2
                continue
            x = stage(x, backend=engine.name)
            i += 1
        return engine.to_caller(x)

    def _segments(self) -> list[tuple[Stage, ...]]:
        """The stages cut into runs of local stages and single whole-image stages."""
        segments: list[tuple[Stage, ...]] = []
        run: list[Stage] = []
        for stage in self._stages:
            if stage.whole_image:
                if run:
                    segments.append(tuple(run))
                    run = []
                segments.append((stage,))
            else:
                run.append(stage)
        if run:
            segments.append(tuple(run))
        return segments

    def _tiled(self, batch, engine, tile):
        """Tiles for the local stages; whole-image stages on the whole intermediate image."""
        from ._image import from_nhwc, to_nhwc

        x = to_nhwc(batch)
        for segment in self._segments():
            part = Pipeline(segment)
            if segment[0].whole_image:
                x = part(x, backend=engine.name)
            else:
                x = _tiles.run_tiled(
                    lambda window, part=part: part(window, backend=engine.name),
                    x,
                    tile,
                    part.radius_for(batch.dtype),
                    col_align=_tiles.column_align(batch.dtype),
                )
        return from_nhwc(x, batch.ndim)

    def run_files(
        self,
        inputs,
        out_dir,
        *,
        backend=None,
        batch_size: int | None = None,
        workers: int | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        progress: Callable[[int], Any] | None = None,
        max_tile=None,
        resume: bool = False,
        quality: int | None = None,
        png_compression: int | None = None,
        decoder: str = "auto",
    ) -> RunReport:
        """Run the pipeline over image files, writing the results under *out_dir*.

        Parameters
        ----------
        inputs : path, glob pattern, or iterable of them
            Files, folders (recursive) and glob patterns, as for :func:`gpuenhance.io.find_images`.
        out_dir : path
            Output folder (created if missing). Each output goes to ``out_dir/<relative path>``
            with the input's extension and dtype. Folder inputs that contain *out_dir* skip it.
        backend : {None, "auto", "cpu", "cuda", "cuda-emulated"}, optional
            None/``"auto"`` picks ``"cuda"`` when a GPU works here and ``"cpu"`` otherwise.
        batch_size : int, optional
            Most images per batch call (images of one shape and dtype are stacked); default
            8 on the CUDA engine and 1 on the CPU engine, where stacking only adds copies.
        workers : int, optional
            Decode/encode threads; default ``min(8, os.cpu_count())``.
        max_pixels : int or None, optional
            Per-image pixel limit (see :func:`gpuenhance.io.read_image`).
        progress : callable, optional
            Called with the number of images just finished (processed, failed or skipped),
            e.g. a ``tqdm`` bar's ``update``.
        max_tile : int, str or (int, int), optional
            Process images in tiles of at most this size (see :meth:`__call__`); exact.
        resume : bool, optional
            Skip inputs whose output a previous run into *out_dir* finished: the manifest
            ``out_dir/.gpuenhance-manifest.jsonl`` records, after each output's atomic rename,
            the relative input path, output path, input size and mtime and the pipeline spec;
            an input is skipped when its entry matches (same spec, input unchanged, output
            present with the recorded size). Everything else is processed again. Without
            *resume* the manifest is started afresh.
        quality : int, optional
            JPEG and WebP quality, 1 to 100 (default OpenCV's: 95 for JPEG, lossless WebP).
        png_compression : int, optional
            PNG compression level, 0 to 9 (default OpenCV's 1).
        decoder : {"auto", "gpu", "cpu"}, optional
            Where colour JPEGs are decoded and encoded on the CUDA engine: ``"gpu"``
            (nvImageCodec, straight into and out of device memory: pixels never visit the
            host), ``"cpu"`` (OpenCV: pixels identical to the CPU engine's) or ``"auto"``
            (the GPU where nvImageCodec works, else the CPU with a warning saying why). See
            :mod:`gpuenhance.batch.codecs`.

        Returns
        -------
        RunReport

        Raises
        ------
        FileNotFoundError
            For an input that does not exist, or inputs holding no supported image
            (``gpuenhance.batch.plan.NoImagesError``, counting what was passed over), before any work.
        OSError
            ``gpuenhance.batch.outdir.OutputFolderError`` when *out_dir* cannot be created or
            written, is an input folder, or is held by another live run (before any work).
        ValueError
            For a bad argument, or a *max_tile* smaller than the pipeline's halo.
        gpuenhance.batch.codecs.GpuCodecUnavailableError
            For ``decoder="gpu"`` where nvImageCodec or the CUDA engine does not work.
        gpuenhance.BackendUnavailableError
            For ``backend="cuda"`` where no GPU works (before any work).

        Examples
        --------
        >>> import os, tempfile, numpy as np
        >>> from gpuenhance import Pipeline
        >>> from gpuenhance.io import write_image
        >>> root = tempfile.mkdtemp()
        >>> write_image(os.path.join(root, "in", "a.png"), np.zeros((8, 9), np.uint8))
        >>> report = Pipeline("median:ksize=3").run_files(
        ...     os.path.join(root, "in"), os.path.join(root, "out"), backend="cpu")
        >>> report.processed, report.failures
        (1, [])

        Notes
        -----
        An output path that equals an input path (the same file, links included), that
        would leave *out_dir*, or that two inputs share, is refused: that input is reported
        as a failure and nothing is written for it; when every output is refused, nothing at
        all is written. RGBA images are processed on their RGB channels; alpha is passed
        through unchanged. Pixels are read upright (EXIF orientation applied) and written
        upright, with the rest of the EXIF block and the ICC profile carried over where the
        format holds them (see :mod:`gpuenhance.io`). A float image holding NaN is reported,
        not processed. While the run writes, it holds an OS lock on *out_dir*
        (``.gpuenhance.lock``), so a second run into the same folder stops before any work;
        the gpuenhance temporary files a killed run left in the output folders are removed
        at the start, and no other file is ever removed. On the CUDA engine batches are staged through
        pinned memory on separate upload/compute/download streams
        (:mod:`gpuenhance.batch.staging`); running out of device memory splits the batch and, for
        a single image, halves the tile size until it fits.
        """
        return run_files(
            self,
            inputs,
            out_dir,
            backend=backend,
            batch_size=batch_size,
            workers=workers,
            max_pixels=max_pixels,
            progress=progress,
            label=self.spec,
            max_tile=max_tile,
            resume=resume,
            quality=quality,
            png_compression=png_compression,
            decoder=decoder,
        )
