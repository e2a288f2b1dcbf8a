"""A chain of stages applied to batches of images and to image files.

A pipeline is written as a spec string, stages separated by ``|``, each ``name`` or
``name:param=value,param=value``::

    "median:ksize=3 | gaussian:sigma=1.2 | gamma:gamma=0.8"

Stages: ``median`` (:func:`gpuenhance.median_filter`: ``ksize``, ``border``), ``gaussian``
(:func:`gpuenhance.gaussian_filter`: ``ksize``, ``sigma``, ``sigma_y``, ``border``) and
``gamma`` (:func:`gpuenhance.gamma_correct`: ``gamma``, ``gain``). Parameters are checked when
the pipeline is built, by the rules of the op they go to, so a bad spec fails before any
image is read.

:meth:`Pipeline.run_files` streams files through the pipeline: decoding and encoding on a
thread pool (OpenCV releases the GIL), images of one shape and dtype stacked into one batch
call, outputs mirroring the inputs' relative paths, written atomically; a file that cannot be
read or processed is reported and skipped.
"""

from __future__ import annotations

import json
import numbers
import os
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from . import _backend, _gauss, _tiles, _validate
from .io import DEFAULT_MAX_PIXELS, ImageReadError, find_images, read_image, write_image

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


# --------------------------------------------------------------------------- reports


@dataclass
class RunReport:
    """What a :meth:`Pipeline.run_files` call did.

    Attributes
    ----------
    processed : int
        Images written.
    failures : list of (str, str)
        ``(input path, reason)`` for every image skipped.
    megapixels : float
        Sum of width * height of the processed images, in millions.
    seconds : float
        Wall time of the whole run (discovery, decode, compute, encode).
    engine : str
        The engine that computed ("cpu", "cuda", "cuda-emulated").
    outputs : list of (str, str)
        ``(input path, output path)`` for every processed image.
    pipeline : str
        The pipeline's spec.
    skipped : int
        Inputs not processed again because ``resume=True`` found their output done (see
        :data:`MANIFEST_NAME`); they are neither in *outputs* nor in *processed*.
    """

    processed: int = 0
    failures: list = field(default_factory=list)
    megapixels: float = 0.0
    seconds: float = 0.0
    engine: str = "cpu"
    outputs: list = field(default_factory=list)
    pipeline: str = ""
    skipped: int = 0

    @property
    def ok(self) -> bool:
        """True when no image failed."""
        return not self.failures

    @property
    def megapixels_per_second(self) -> float:
        return self.megapixels / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["failures"] = [{"path": p, "reason": r} for p, r in self.failures]
        d["outputs"] = [{"input": i, "output": o} for i, o in self.outputs]
        d["megapixels_per_second"] = self.megapixels_per_second
        d["failed"] = len(self.failures)
        return d

    def write_json(self, path) -> None:
        """Write the report as JSON (atomically: temporary file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def summary(self) -> str:
        """One line: images, megapixels per second, engine, failures (and skipped, if any)."""
        text = (
            f"{self.processed} images, {self.megapixels:.2f} MP in {self.seconds:.2f} s "
            f"({self.megapixels_per_second:.2f} MP/s) on {self.engine}; "
            f"{len(self.failures)} failed"
        )
        if self.skipped:
            text += f"; {self.skipped} skipped (already done)"
        return text


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
        batch_size: int = 8,
        workers: int | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        progress: Callable[[int], Any] | None = None,
        max_tile=None,
        resume: bool = False,
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
            Most images per batch call (images of one shape and dtype are stacked).
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

        Returns
        -------
        RunReport

        Raises
        ------
        FileNotFoundError
            For an input that does not exist (before any work).
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
        as a failure and nothing is written for it. RGBA images are processed on their RGB
        channels; alpha is passed through unchanged. Temporary files a killed run left in
        *out_dir* are removed at the start. On the CUDA engine batches are staged through
        pinned memory on separate upload/compute/download streams
        (:mod:`gpuenhance._staging`); running out of device memory splits the batch and, for
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
        )


# --------------------------------------------------------------------------- file runner


def _resolve_backend(backend) -> str:
    if backend in (None, "auto"):
        return "cuda" if _backend.cuda_available() else "cpu"
    return _backend.resolve(backend=backend).name


def _plan_outputs(files, out_dir: Path, failures: list) -> list[tuple[Path, Path]]:
    """Pair every input with its output path, refusing unsafe ones (recorded in *failures*)."""
    out_root = out_dir.resolve()
    inputs_resolved = {f.path.resolve(): f.path for f in files}
    claimed: dict[Path, Path] = {}
    plan = []
    for f in files:
        rel = f.relative
        out = out_dir / rel
        out_resolved = out.resolve()
        if rel.is_absolute() or ".." in rel.parts or (
            out_resolved != out_root and out_root not in out_resolved.parents
        ):
            failures.append((str(f.path), f"output path {str(out)!r} would leave {str(out_dir)!r}"))
            continue
        if out_resolved in inputs_resolved or (out.exists() and _same_file(out, f.path)):
            failures.append(
                (str(f.path), f"output path {str(out)!r} is an input file; refusing to overwrite it")
            )
            continue
        if out_resolved in claimed:
            failures.append(
                (
                    str(f.path),
                    f"output path {str(out)!r} is already the output of {str(claimed[out_resolved])!r}",
                )
            )
            continue
        claimed[out_resolved] = f.path
        plan.append((f.path, out))
    return plan


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


#: The resume manifest in an output folder: one JSON line per finished output.
MANIFEST_NAME = ".gpuenhance-manifest.jsonl"

# Hidden temporary files of io.write_image (".<name>.<12 hex>.tmp") and of the report and
# manifest rewrites (".<name>.<pid>.tmp"): what a killed run can leave behind.
_TEMP_NAME = re.compile(r"^\..+\.(?:[0-9a-f]{12}|\d+)\.tmp$")


def _remove_temp_files(out_dir: Path) -> int:
    """Delete temporary files left in *out_dir* by a killed run; return how many."""
    removed = 0
    if not out_dir.is_dir():
        return 0
    for root, _dirs, names in os.walk(out_dir):
        for name in names:
            if _TEMP_NAME.match(name):
                try:
                    os.unlink(os.path.join(root, name))
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


class _Manifest:
    """``out_dir/.gpuenhance-manifest.jsonl``: what finished, for ``resume``.

    Each line: ``{"input": relative input path, "output": output path relative to out_dir,
    "size": input bytes, "mtime_ns": input mtime, "output_size": output bytes, "spec": ...}``,
    appended and fsync'd after the output's atomic rename. A line cut short by a kill is
    ignored; the last line for an output wins.
    """

    def __init__(self, out_dir: Path, spec: str):
        import threading

        self.path = out_dir / MANIFEST_NAME
        self.spec = spec
        self.lock = threading.Lock()
        self.fd: int | None = None

    def load(self) -> dict[str, dict]:
        entries: dict[str, dict] = {}
        try:
            data = self.path.read_bytes()
        except OSError:
            return entries
        for line in data.split(b"\n")[:-1]:  # the last piece has no newline: unfinished
            try:
                entry = json.loads(line)
                entries[str(entry["output"])] = entry
            except (ValueError, KeyError, TypeError):
                continue
        return entries

    def done(self, entry: dict | None, rel_in: str, src: Path, out: Path) -> bool:
        """Whether *entry* says *out* is the finished result of the unchanged *src*."""
        if not entry or entry.get("spec") != self.spec or entry.get("input") != rel_in:
            return False
        try:
            st, ost = os.stat(src), os.stat(out)
        except OSError:
            return False
        return (
            entry.get("size") == st.st_size
            and entry.get("mtime_ns") == st.st_mtime_ns
            and entry.get("output_size") == ost.st_size
        )

    def start(self, keep: list[dict]) -> None:
        """Rewrite the manifest with *keep* only (atomically), then open it for appending."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(b"".join(self._line(e) for e in keep))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    @staticmethod
    def _line(entry: dict) -> bytes:
        return (json.dumps(entry, sort_keys=True) + "\n").encode()

    def record(self, rel_in: str, rel_out: str, stat: os.stat_result, out: Path) -> None:
        entry = {
            "input": rel_in,
            "output": rel_out,
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "output_size": os.stat(out).st_size,
            "spec": self.spec,
        }
        line = self._line(entry)
        with self.lock:
            os.write(self.fd, line)
            os.fsync(self.fd)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _make_runner(func, engine: str, tile, *, fatal: tuple):
    """The batch runner of a run: staged on CUDA (whole images), synchronous otherwise."""
    from . import _staging

    tileable = isinstance(func, Pipeline)

    def compute(stack):
        def call(batch, t):
            if t is None:
                return np.asarray(func(batch, backend=engine))
            return np.asarray(func(batch, backend=engine, max_tile=t))

        return _tiles.call_resilient(
            call,
            stack,
            tile=tile,
            radius=func.radius_for(stack.dtype) if tileable else None,
            col_align=_tiles.column_align(stack.dtype),
        )

    device = _staging.cuda_device_or_none() if engine == "cuda" and tile is None else None
    if device is None:
        return _staging.SyncRunner(compute, fatal=fatal)
    return _staging.StagedRunner(
        lambda x: func(x, backend="cuda"),
        device,
        depth=3,
        fallback=compute,
        release=_tiles._release_device_memory,
        fatal=fatal,
    )


def run_files(
    func,
    inputs,
    out_dir,
    *,
    backend=None,
    batch_size: int = 8,
    workers: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    progress: Callable[[int], Any] | None = None,
    label: str = "",
    max_tile=None,
    resume: bool = False,
) -> RunReport:
    """Stream image files through ``func(batch, backend=...)``; see :meth:`Pipeline.run_files`.

    *func* maps an (N, H, W, C) NumPy batch to a batch of the same shape and dtype. *label*
    names it in the report and in the resume manifest (a changed label redoes every image).
    *max_tile* needs a :class:`Pipeline` (only local ops can be tiled exactly).
    """
    start = time.perf_counter()
    batch_size = _validate.integer(batch_size, "batch_size", low=1)
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    workers = _validate.integer(workers, "workers", low=1)
    if max_pixels is not None:
        max_pixels = _validate.integer(max_pixels, "max_pixels", low=1)
    tile = _tiles.parse_max_tile(max_tile)
    if tile is not None and not isinstance(func, Pipeline):
        raise ValueError("max_tile needs a Pipeline: only local filters can be tiled exactly")
    engine = _resolve_backend(backend)
    out_dir = Path(out_dir)
    files = find_images(inputs, exclude=[out_dir])
    report = RunReport(engine=engine, pipeline=label)
    plan = _plan_outputs(files, out_dir, report.failures)
    relative = {f.path: f.relative.as_posix() for f in files}
    if progress is not None and report.failures:
        progress(len(report.failures))
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_temp_files(out_dir)

    manifest = _Manifest(out_dir, label)
    keep: list[dict] = []
    if resume:
        entries = manifest.load()
        planned = {out.relative_to(out_dir).as_posix() for _, out in plan}
        todo = []
        for src, out in plan:
            rel_out = out.relative_to(out_dir).as_posix()
            entry = entries.get(rel_out)
            if manifest.done(entry, relative[src], src, out):
                keep.append(entry)
                report.skipped += 1
            else:
                todo.append((src, out))
        # entries of outputs this run does not touch stay valid
        keep.extend(e for k, e in entries.items() if k not in planned)
        plan = todo
        if progress is not None and report.skipped:
            progress(report.skipped)
    if plan or keep or manifest.path.exists():
        manifest.start(keep)  # (a run that writes nothing leaves no manifest behind)

    def done(n: int = 1):
        if progress is not None:
            progress(n)

    def fail(path: Path, reason: str):
        report.failures.append((str(path), reason))
        done()

    def encode(img, src: Path, out: Path, stat):
        write_image(out, img)
        manifest.record(relative[src], out.relative_to(out_dir).as_posix(), stat, out)
        return out

    # Decoded images waiting for a batch, grouped by (shape, dtype).
    groups: dict[tuple, list[tuple[Path, Path, np.ndarray, os.stat_result]]] = {}
    pending_images = 0
    max_pending = 4 * batch_size
    writes: list[tuple[Path, Path, int, Future]] = []
    runner = _make_runner(func, engine, tile, fatal=(_backend.BackendUnavailableError,))

    def collect_writes(block: bool):
        keep_w = []
        for src, out, pixels, fut in writes:
            if not block and not fut.done():
                keep_w.append((src, out, pixels, fut))
                continue
            try:
                fut.result()
            except Exception as exc:  # noqa: BLE001 - any failure is reported per file
                fail(src, f"cannot write {str(out)!r}: {exc}")
            else:
                report.processed += 1
                report.megapixels += pixels / 1e6
                report.outputs.append((str(src), str(out)))
                done()
        writes[:] = keep_w

    def emit(finished, pool):
        for (items, stack, alpha), result, error in finished:
            if error is None and (result.shape != stack.shape or result.dtype != stack.dtype):
                error = ValueError(
                    f"stage output has shape {result.shape} {result.dtype}, "
                    f"expected {stack.shape} {stack.dtype}"
                )
            if error is not None:
                for src, _, _, _ in items:
                    fail(src, f"processing failed: {type(error).__name__}: {error}")
                continue
            if alpha is not None:
                result = np.concatenate([result, alpha], axis=-1)
            for i, (src, out, img, stat) in enumerate(items):
                out_img = result[i]
                if img.ndim == 2:
                    out_img = out_img[..., 0]
                pixels = img.shape[0] * img.shape[1]
                writes.append((src, out, pixels, pool.submit(encode, out_img, src, out, stat)))

    def flush(key, pool):
        nonlocal pending_images
        items = groups.pop(key)
        pending_images -= len(items)
        stack = np.stack([img for _, _, img, _ in items])
        if stack.ndim == 3:  # grayscale: (N, H, W) -> (N, H, W, 1)
            stack = stack[..., None]
        alpha = None
        if stack.shape[-1] == 4:
            alpha = stack[..., 3:]
            stack = np.ascontiguousarray(stack[..., :3])
        emit(runner.submit(stack, (items, stack, alpha)), pool)

    def read(src: Path):
        stat = os.stat(src)  # before decoding: the manifest describes what was read
        return read_image(src, max_pixels=max_pixels), stat

    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpuenhance-io") as pool:
            window = max(2 * workers, batch_size)
            reads: list[tuple[Path, Path, Future]] = []
            queue = iter(plan)
            exhausted = False
            while True:
                while not exhausted and len(reads) < window:
                    nxt = next(queue, None)
                    if nxt is None:
                        exhausted = True
                        break
                    reads.append((nxt[0], nxt[1], pool.submit(read, nxt[0])))
                if not reads:
                    break
                src, out, fut = reads.pop(0)
                try:
                    img, stat = fut.result()
                except ImageReadError as exc:
                    fail(src, exc.reason)
                    continue
                except Exception as exc:  # noqa: BLE001
                    fail(src, f"{type(exc).__name__}: {exc}")
                    continue
                key = (img.shape, img.dtype.str)
                groups.setdefault(key, []).append((src, out, img, stat))
                pending_images += 1
                if len(groups[key]) >= batch_size:
                    flush(key, pool)
                while pending_images > max_pending:
                    flush(next(iter(groups)), pool)  # oldest group first
                collect_writes(block=False)
            for key in list(groups):
                flush(key, pool)
            emit(runner.drain(), pool)
            collect_writes(block=True)
    finally:
        manifest.close()
    report.seconds = time.perf_counter() - start
    return report
