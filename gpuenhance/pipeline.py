"""A chain of stages applied to batches of images and to image files.

A pipeline is written as a spec string, stages separated by ``|``, each ``name`` or
``name:param=value,param=value``::

    "median:ksize=3 | gaussian:sigma=1.2 | gamma:gamma=0.8"

Stages: ``median`` (:func:`gpuenhance.median_filter`: ``ksize``, ``border``), ``gaussian``
(:func:`gpuenhance.gaussian_filter`: ``ksize``, ``sigma``, ``sigma_y``, ``border``) and
``gamma`` (:func:`gpuenhance.gamma_correct`: ``gamma``, ``gain``). Parameters are checked when
the pipeline is built, by the rules of the op they go to, so a bad spec fails before any
image is read.

Stage ``k``'s output feeds stage ``k + 1``; on the CUDA engines a filter followed by a gamma
runs as one fused kernel, and ``max_tile`` processes images in exact tiles
(:mod:`gpuenhance._tiles`). :meth:`Pipeline.run_files` runs the pipeline over image files
(:mod:`gpuenhance.batch`; :class:`RunReport`, ``run_files`` and :data:`MANIFEST_NAME` are
re-exported here).
"""

from __future__ import annotations

import numbers
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from . import _backend, _gauss, _tiles, _validate
from .batch.manifest import MANIFEST_NAME  # noqa: F401 - re-exported
from .batch.report import RunReport
from .batch.runner import run_files
from .io import DEFAULT_MAX_PIXELS

__all__ = ["Pipeline", "RunReport", "Stage", "STAGE_PARAMS", "parse_spec"]


# --------------------------------------------------------------------------- stages

#: Parameters each stage accepts (in spec order) and which of them are required.
STAGE_PARAMS: dict[str, dict[str, Any]] = {
    "median": {"params": ("ksize", "border"), "required": ("ksize",)},
    "gaussian": {"params": ("ksize", "sigma", "sigma_y", "border"), "required": ()},
    "gamma": {"params": ("gamma", "gain"), "required": ("gamma",)},
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


_CHECKS = {"median": _check_median, "gaussian": _check_gaussian, "gamma": _check_gamma}


@dataclass(frozen=True)
class Stage:
    """One step of a pipeline: an op name and its keyword parameters.

    Parameters
    ----------
    name : {"median", "gaussian", "gamma"}
        The op.
    params : mapping, optional
        Its parameters (see :data:`STAGE_PARAMS`); stored as a sorted tuple of items so that
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
    def radius(self) -> int:
        """How far (in pixels) one output pixel's inputs reach, for any dtype; 0 for point ops.

        The largest of :meth:`radius_for` over the dtypes (float kernels are the widest
        OpenCV derives from a sigma: 4 sigma per side, 3 for uint8).
        """
        return self.radius_for(np.float32)

    def radius_for(self, dtype) -> int:
        """How far one output pixel's inputs reach for images of *dtype*: median ``ksize // 2``,
        Gaussian ``max(kx, ky) // 2`` of the kernel size resolved for *dtype*, gamma 0."""
        kw = self.kwargs
        if self.name == "median":
            return int(kw["ksize"]) // 2
        if self.name == "gaussian":
            kx, ky, _, _ = _gauss.resolve(
                kw.get("ksize", 0), kw.get("sigma", 0.0), kw.get("sigma_y"), dtype
            )
            return max(kx, ky) // 2
        return 0

    def __call__(self, img, *, backend=None):
        """Apply the stage to *img* (any layout the op accepts)."""
        from . import filters, tone

        func = {
            "median": filters.median_filter,
            "gaussian": filters.gaussian_filter,
            "gamma": tone.gamma_correct,
        }[self.name]
        return func(img, **self.kwargs, backend=backend)

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.params)
        return f"Stage({self.name!r}{args})"


def _format_value(v) -> str:
    return repr(v) if isinstance(v, float) else str(v)


_NUMBER_INT = re.compile(r"^[+-]?\d+$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _parse_value(text: str):
    if _NUMBER_INT.match(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def _validated(stage: Stage, index: int, *, as_value_error: bool) -> Stage:
    """Check *stage* by its op's rules; errors name the stage (1-based) and parameter."""
    where = f"stage {index} {stage.name!r}"
    if stage.name not in STAGE_PARAMS:
        raise ValueError(
            f"stage {index}: unknown stage {stage.name!r}; "
            f"expected one of {', '.join(repr(s) for s in STAGE_PARAMS)}"
        )
    rules = STAGE_PARAMS[stage.name]
    kwargs = stage.kwargs
    for key in kwargs:
        if key not in rules["params"]:
            raise ValueError(
                f"{where}: unknown parameter {key!r}; "
                f"expected {', '.join(repr(p) for p in rules['params'])}"
            )
    for key in rules["required"]:
        if key not in kwargs:
            raise ValueError(f"{where}: missing required parameter {key!r}")
    try:
        checked = _CHECKS[stage.name](kwargs)
    except (TypeError, ValueError) as exc:
        kind = ValueError if as_value_error else type(exc)
        raise kind(f"{where}: {exc}") from None
    return Stage(stage.name, checked)


def parse_spec(spec: str) -> list[Stage]:
    """Parse a pipeline spec string into validated stages.

    Parameters
    ----------
    spec : str
        ``"name:param=value,... | name:param=value | ..."``; values are read as int, float,
        or else text. Parameters within a stage are separated by commas or spaces.

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
    >>> parse_spec("median:ksize=3 | gamma:gamma=0.8")
    [Stage('median', ksize=3), Stage('gamma', gamma=0.8)]
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
        params: dict[str, Any] = {}
        for item in re.split(r"[,\s]+", rest.strip()) if rest.strip() else ():
            key, eq, value = item.partition("=")
            key = key.strip().lower()
            if not eq or not _NAME.match(key) or not value.strip():
                raise ValueError(
                    f"stage {index} {name!r}: malformed parameter {item!r}; expected param=value"
                )
            if key in params:
                raise ValueError(f"stage {index} {name!r}: parameter {key!r} given twice")
            params[key] = _parse_value(value.strip())
        stages.append(_validated(Stage(name, params), index, as_value_error=True))
    return stages


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
            from ._image import from_nhwc, to_nhwc

            out = _tiles.run_tiled(
                lambda window: self(window, backend=engine.name),  # caller's array type
                to_nhwc(batch),
                tile,
                self.radius_for(batch.dtype),
                col_align=_tiles.column_align(batch.dtype),
            )
            return from_nhwc(out, batch.ndim)
        x = engine.to_engine(batch)
        stages, i = self._stages, 0
        while i < len(stages):
            stage, nxt = stages[i], (stages[i + 1] if i + 1 < len(stages) else None)
            if (
                engine.name in ("cuda", "cuda-emulated")
                and stage.name in ("median", "gaussian")
                and nxt is not None
                and nxt.name == "gamma"
                and np.dtype(x.dtype) in _validate.IMAGE_DTYPES
            ):
                # Fusion: the gamma runs inside the filter kernel's store (one pass over
                # memory), bit-identical to the two stages one by one (gpuenhance._cuda.filters).
                kw, g = stage.kwargs, nxt.kwargs
                point = {"gamma": float(g["gamma"]), "gain": float(g.get("gain", 1.0))}
                mod, ctx = engine.module("filters"), engine.context()
                if stage.name == "median":  # defaults below: those of the public ops
                    x = mod.median_filter(
                        ctx, x, kw["ksize"], kw.get("border", "replicate"), **point
                    )
                else:
                    kx, ky, sx, sy = _gauss.resolve(
                        kw.get("ksize", 0), kw.get("sigma", 0.0), kw.get("sigma_y"), x.dtype
                    )
                    x = mod.gaussian_filter(
                        ctx, x, kx, ky, sx, sy, kw.get("border", "reflect_101"), **point
                    )
                i += 2
                continue
            x = stage(x, backend=engine.name)
            i += 1
        return engine.to_caller(x)

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
