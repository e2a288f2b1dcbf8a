"""Running a batch function over image files: planning, processing, reporting, resuming.

Two layers:

- :func:`process_files` reads, processes and writes a given list of ``(input, output)`` pairs
  and returns one :class:`FileResult` per pair. It touches nothing but those files, so a Dask
  task (:mod:`gpuenhance.dask`) can run it on its share of a run.
- :func:`run_files` is a whole run into one output folder (what
  :meth:`gpuenhance.Pipeline.run_files` calls): :func:`prepare_run` checks the output folder,
  finds the inputs and plans their outputs (refusing unsafe ones) before any work; then, holding
  the folder's lock (:mod:`gpuenhance._outdir`), it keeps the resume manifest
  (:data:`MANIFEST_NAME`), calls :func:`process_files` and returns a :class:`RunReport`.
  The Dask runner (:func:`gpuenhance.dask.run_files`) shares :func:`prepare_run` and the lock.

:class:`RunReport`, :func:`run_files` and :data:`MANIFEST_NAME` are re-exported by
:mod:`gpuenhance.pipeline`.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from . import _backend, _outdir, _staging, _tiles, _validate
from .io import (
    DEFAULT_MAX_PIXELS,
    SUPPORTED_EXTENSIONS,
    ImageReadError,
    find_images,
    read_image_with_metadata,
    write_bytes_atomically,
    write_image_keeping,
)

__all__ = [
    "MANIFEST_NAME",
    "FileResult",
    "NoImagesError",
    "RunReport",
    "prepare_run",
    "process_files",
    "run_files",
]


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
    passed_over : dict
        ``{extension: count}`` of files in the input folders not read for their extension.
    encoding : dict
        The encoder settings used (JPEG/WebP ``quality``, PNG ``png_compression``).
    notes : list of (str, str)
        ``(output path, note)`` for outputs written with a caveat, e.g. metadata that their
        format could not hold.
    json_path : str or None
        Where :meth:`write_json` last wrote this report (not part of the JSON).
    """

    processed: int = 0
    failures: list = field(default_factory=list)
    megapixels: float = 0.0
    seconds: float = 0.0
    engine: str = "cpu"
    outputs: list = field(default_factory=list)
    pipeline: str = ""
    skipped: int = 0
    passed_over: dict = field(default_factory=dict)
    encoding: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    json_path: str | None = None

    @property
    def ok(self) -> bool:
        """True when no image failed."""
        return not self.failures

    @property
    def megapixels_per_second(self) -> float:
        return self.megapixels / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        del d["json_path"]
        d["failures"] = [{"path": p, "reason": r} for p, r in self.failures]
        d["outputs"] = [{"input": i, "output": o} for i, o in self.outputs]
        d["notes"] = [{"output": o, "note": n} for o, n in self.notes]
        d["megapixels_per_second"] = self.megapixels_per_second
        d["failed"] = len(self.failures)
        return d

    def write_json(self, path) -> None:
        """Write the report as JSON (atomically: temporary file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(path, (json.dumps(self.to_dict(), indent=2) + "\n").encode())
        self.json_path = str(path)

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


class FileResult(NamedTuple):
    """What became of one ``(src, out)`` pair of :func:`process_files`."""

    src: Any
    out: Any
    error: str | None  # why nothing was written for *src*; None when *out* was written
    megapixels: float = 0.0
    note: str | None = None  # a caveat about a written *out* (metadata its format dropped)


def add_results(report: RunReport, results) -> None:
    """Count :class:`FileResult` items into *report* (outputs, failures, megapixels)."""
    for r in results:
        if r.error is None:
            report.processed += 1
            report.megapixels += r.megapixels
            report.outputs.append((str(r.src), str(r.out)))
            if r.note:
                report.notes.append((str(r.out), r.note))
        else:
            report.failures.append((str(r.src), r.error))


# --------------------------------------------------------------------------- engine, outputs


def resolve_engine(backend) -> str:
    """The engine name a run uses here: None/"auto" is CUDA when a GPU works, else CPU."""
    if backend in (None, "auto"):
        return "cuda" if _backend.cuda_available() else "cpu"
    return _backend.resolve(backend=backend).name


def plan_outputs(files, out_dir: Path, failures: list) -> list[tuple[Path, Path]]:
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
            reason = f"output path {str(out)!r} would leave {str(out_dir)!r}"
        elif out_resolved in inputs_resolved or (out.exists() and _same_file(out, f.path)):
            reason = f"output path {str(out)!r} is an input file; refusing to overwrite it"
        elif out_resolved in claimed:
            reason = (
                f"output path {str(out)!r} is already the output of {str(claimed[out_resolved])!r}"
            )
        else:
            claimed[out_resolved] = f.path
            plan.append((f.path, out))
            continue
        failures.append((str(f.path), reason))
    return plan


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# --------------------------------------------------------------------------- processing


def default_batch_size(engine: str) -> int:
    """Images per call when the caller gives none: 8 on CUDA (one launch per batch), else 1.

    The CPU engine filters the images of a batch one after another, so stacking only adds
    copies and cache misses (1080p, median 3 | Gaussian 1.2 | gamma, 2 cores: 18.7 images/s
    at 1 against 12.6 at 8).
    """
    return 8 if engine == "cuda" else 1


def _make_runner(func, engine: str, tile, pool, workers: int):
    """The batch runner of a run: staged on CUDA (whole images), on the *pool*'s threads on
    the CPU engine (images filtered in parallel: OpenCV releases the GIL), synchronous on the
    emulator (already one thread per CUDA thread)."""
    from .pipeline import Pipeline

    tileable = isinstance(func, Pipeline)
    fatal = (_backend.BackendUnavailableError,)

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

    if engine == "cpu" and workers > 1:
        return _staging.PoolRunner(compute, pool, depth=workers, fatal=fatal)
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


def process_files(
    func,
    pairs,
    *,
    engine: str,
    batch_size: int | None = None,
    workers: int = 1,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    tile=None,
    encode_params: dict | None = None,
    on_written: Callable[[Any, Any, os.stat_result], Any] | None = None,
    progress: Callable[[int], Any] | None = None,
) -> list[FileResult]:
    """Read, process and atomically write every ``(src, out)`` of *pairs*; nothing else.

    Inputs are decoded on a pool of *workers* threads; images of one shape and dtype are
    stacked into batches of at most *batch_size* for ``func(batch, backend=engine)`` (and
    ``max_tile=tile`` when *tile* is given; grayscale as one channel, RGBA on its RGB channels
    with alpha passed through); outputs are written with :func:`gpuenhance.io.write_image` on
    the pool (OpenCV ``imwrite`` flags per extension from *encode_params*; the input's EXIF and ICC profile carried over, pixels
    upright), each followed there by ``on_written(src, out, stat)`` (*stat*: the input's
    ``os.stat`` taken before it was decoded). A float image holding NaN is reported, not
    processed. On the CUDA engine batches are staged
    (:mod:`gpuenhance._staging`); running out of device memory splits a batch and, for a
    :class:`~gpuenhance.Pipeline`, tiles a single image.

    A file that cannot be read, processed or written (``on_written`` included) is a result with
    an error, the rest go on; :class:`gpuenhance.BackendUnavailableError` propagates.
    ``progress(1)`` is called as each file finishes. Returns the results in that order.
    """
    results: list[FileResult] = []
    encode_params = encode_params or {}

    def finish(src, out, error: str | None, megapixels: float = 0.0, note=None):
        results.append(FileResult(src, out, error, megapixels, note))
        if progress is not None:
            progress(1)

    def read(src):
        try:
            stat = os.stat(src)  # before decoding: on_written describes what was read
        except OSError as exc:
            raise ImageReadError(src, exc.strerror or str(exc)) from exc
        img, meta = read_image_with_metadata(src, max_pixels=max_pixels)
        if img.dtype.kind == "f":
            nan = int(np.count_nonzero(np.isnan(img)))
            if nan:
                raise ImageReadError(
                    src, f"{nan} NaN values in the image; NaN is not a pixel value, so the "
                    f"image is not processed"
                )
        return img, meta, stat

    def write(img, src, out, stat, meta):
        params = encode_params.get(os.path.splitext(str(out))[1].lower(), ())
        dropped = write_image_keeping(out, img, params=params, metadata=meta)
        if on_written is not None:
            on_written(src, out, stat)
        if dropped:
            return (f"written without the input's {' and '.join(dropped)}: a {os.path.splitext(str(out))[1]} "
                    f"file of {img.dtype} {'colour' if img.ndim == 3 else 'grey'} cannot hold them")
        return None

    batch_size = default_batch_size(engine) if batch_size is None else batch_size
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpuenhance-io")
    runner = _make_runner(func, engine, tile, pool, workers)
    groups: dict[tuple, list] = {}  # (shape, dtype) -> [(src, out, img, stat, meta)] to batch
    pending = 0  # images in *groups*
    writes: deque = deque()  # (src, out, megapixels, future), in submission order

    def collect_writes(keep: int):
        """Account for finished writes; wait for the oldest until at most *keep* are left."""
        for _ in range(len(writes)):
            src, out, mp, fut = writes.popleft()
            if len(writes) + 1 <= keep and not fut.done():
                writes.append((src, out, mp, fut))
                continue
            try:
                note = fut.result()
            except Exception as exc:  # noqa: BLE001 - any failure is reported per file
                finish(src, out, f"cannot write {str(out)!r}: {exc}")
            else:
                finish(src, out, None, mp, note)

    def emit(finished):
        for (items, stack, alpha), result, error in finished:
            if error is None and (result.shape != stack.shape or result.dtype != stack.dtype):
                error = ValueError(
                    f"stage output has shape {result.shape} {result.dtype}, "
                    f"expected {stack.shape} {stack.dtype}"
                )
            if error is not None:
                for src, out, *_ in items:
                    finish(src, out, f"processing failed: {type(error).__name__}: {error}")
                continue
            if alpha is not None:
                result = np.concatenate([result, alpha], axis=-1)
            for i, (src, out, img, stat, meta) in enumerate(items):
                out_img = result[i][..., 0] if img.ndim == 2 else result[i]
                mp = img.shape[0] * img.shape[1] / 1e6
                writes.append((src, out, mp, pool.submit(write, out_img, src, out, stat, meta)))

    def flush(key):
        nonlocal pending
        items = groups.pop(key)
        pending -= len(items)
        stack = np.stack([img for _, _, img, *_ in items])
        if stack.ndim == 3:  # grayscale: (N, H, W) -> (N, H, W, 1)
            stack = stack[..., None]
        alpha = None
        if stack.shape[-1] == 4:
            alpha = stack[..., 3:]
            stack = np.ascontiguousarray(stack[..., :3])
        emit(runner.submit(stack, (items, stack, alpha)))

    with pool:
        window = max(2 * workers, batch_size)  # reads in flight
        todo = iter(pairs)
        reads: deque = deque()
        while True:
            for src, out in itertools.islice(todo, window - len(reads)):
                reads.append((src, out, pool.submit(read, src)))
            if not reads:
                break
            src, out, fut = reads.popleft()
            try:
                img, meta, stat = fut.result()
            except ImageReadError as exc:
                finish(src, out, exc.reason)
                continue
            except Exception as exc:  # noqa: BLE001
                finish(src, out, f"{type(exc).__name__}: {exc}")
                continue
            key = (img.shape, img.dtype.str)
            groups.setdefault(key, []).append((src, out, img, stat, meta))
            pending += 1
            if len(groups[key]) >= batch_size:
                flush(key)
            while pending > 4 * batch_size:
                flush(next(iter(groups)))  # oldest group first
            collect_writes(keep=2 * workers)  # encoded images waiting are bounded too
        for key in list(groups):
            flush(key)
        emit(runner.drain())
        collect_writes(keep=0)
    return results


# --------------------------------------------------------------------------- a whole run

#: The resume manifest in an output folder: one JSON line per finished output.
MANIFEST_NAME = ".gpuenhance-manifest.jsonl"

class _Manifest:
    """``out_dir/.gpuenhance-manifest.jsonl``: what finished, for ``resume``.

    Each line: ``{"input": relative input path, "output": output path relative to out_dir,
    "size": input bytes, "mtime_ns": input mtime, "output_size": output bytes, "spec": ...}``,
    appended and fsync'd after the output's atomic rename. A line cut short by a kill is
    ignored; the last line for an output wins.
    """

    def __init__(self, out_dir: Path, spec: str, relative: dict):
        self.out_dir = out_dir
        self.path = out_dir / MANIFEST_NAME
        self.spec = spec
        self.relative = relative  # input path -> its relative path (posix)
        self.lock = threading.Lock()
        self.fd: int | None = None

    def _rel_out(self, out: Path) -> str:
        return out.relative_to(self.out_dir).as_posix()

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

    def done(self, entry: dict | None, src: Path, out: Path) -> bool:
        """Whether *entry* says *out* is the finished result of the unchanged *src*."""
        if not entry or entry.get("spec") != self.spec or entry.get("input") != self.relative[src]:
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

    def unfinished(self, plan: list) -> tuple[list, list[dict]]:
        """``(todo, keep)``: the pairs of *plan* not done, and the entries that stay valid."""
        entries = self.load()
        planned = {self._rel_out(out) for _, out in plan}
        todo, keep = [], []
        for src, out in plan:
            entry = entries.get(self._rel_out(out))
            if self.done(entry, src, out):
                keep.append(entry)
            else:
                todo.append((src, out))
        # entries of outputs this run does not touch stay valid
        keep.extend(e for k, e in entries.items() if k not in planned)
        return todo, keep

    def start(self, keep: list[dict]) -> None:
        """Rewrite the manifest with *keep* only (atomically), then open it for appending."""
        write_bytes_atomically(self.path, b"".join(self._line(e) for e in keep), fsync=True)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    @staticmethod
    def _line(entry: dict) -> bytes:
        return (json.dumps(entry, sort_keys=True) + "\n").encode()

    def record(self, src: Path, out: Path, stat: os.stat_result) -> None:
        """Append (and fsync) the entry of *out*, written from *src* as *stat* describes it."""
        entry = {
            "input": self.relative[src],
            "output": self._rel_out(out),
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


class NoImagesError(FileNotFoundError):
    """The inputs hold no image of a supported format; the message counts what was passed
    over, by extension."""


def prepare_run(inputs, out_dir, report: RunReport) -> list[tuple[Path, Path]]:
    """Everything a run checks before any work: the output folder, the inputs, their outputs.

    Refuses an output folder that cannot be used (:class:`gpuenhance._outdir.OutputFolderError`)
    and inputs that hold no supported image (:class:`NoImagesError`); records the files passed
    over and the refused outputs in *report*. Returns ``(plan, files)``: the ``(input,
    output)`` pairs to write and the :class:`gpuenhance.io.ImageFile` list found. Nothing is
    created or written.
    """
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    out_dir = _outdir.check_output_folder(out_dir, [p for p in items if Path(p).is_dir()])
    passed_over: dict = {}
    files = find_images(items, exclude=[out_dir], passed_over=passed_over)
    report.passed_over = dict(sorted(passed_over.items()))
    if not files:
        counted = ", ".join(f"{n} {ext}" for ext, n in report.passed_over.items())
        raise NoImagesError(
            "no supported images in the inputs"
            + (f"; passed over {counted} file(s)" if counted else " (no files found)")
            + f" (supported: {', '.join(SUPPORTED_EXTENSIONS)})"
        )
    return plan_outputs(files, out_dir, report.failures), files


def check_tile(func, tile) -> None:
    """Refuse a tile too small for *func*'s halo; warn when halos would dominate the work."""
    if tile is None:
        return
    radius = max(func.radius_for(np.dtype(d)) for d in _validate.IMAGE_DTYPES)
    overhead = _tiles.halo_overhead(tile, radius)
    if overhead > 1.0:
        warnings.warn(
            f"max_tile {tile[0]}x{tile[1]} with the pipeline's halo of {radius} pixels: halos "
            f"add about {overhead:.0%} to the work (tiles of at least "
            f"{8 * radius + 64}x{8 * radius + 64} keep it under 60%)",
            UserWarning,
            stacklevel=3,
        )


def encoder_settings(quality: int | None = None, png_compression: int | None = None):
    """``(report dict, {extension: OpenCV imwrite params})`` for a run's JPEG/WebP quality
    (1 to 100) and PNG compression level (0 to 9). Left unset, each format keeps OpenCV's
    default: JPEG quality 95, lossless WebP, PNG level 1."""
    import cv2

    level = 1 if png_compression is None else _validate.integer(
        png_compression, "png_compression", low=0, high=9
    )
    params = {".png": (cv2.IMWRITE_PNG_COMPRESSION, level)}
    report = {"jpeg_quality": 95, "webp_quality": "lossless", "png_compression": level}
    if quality is not None:
        quality = _validate.integer(quality, "quality", low=1, high=100)
        params[".jpg"] = params[".jpeg"] = (cv2.IMWRITE_JPEG_QUALITY, quality)
        params[".webp"] = (cv2.IMWRITE_WEBP_QUALITY, quality)
        report.update(jpeg_quality=quality, webp_quality=quality)
    return report, params


def run_files(
    func,
    inputs,
    out_dir,
    *,
    backend=None,
    batch_size: int | None = None,
    workers: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    progress: Callable[[int], Any] | None = None,
    label: str = "",
    max_tile=None,
    resume: bool = False,
    quality: int | None = None,
    png_compression: int | None = None,
    report_name: str | None = None,
    on_start: Callable[[int], Any] | None = None,
) -> RunReport:
    """Stream image files through ``func(batch, backend=...)``; see :meth:`Pipeline.run_files`.

    *func* maps an (N, H, W, C) NumPy batch to a batch of the same shape and dtype. *label*
    names it in the report and in the resume manifest (a changed label redoes every image).
    *max_tile* needs a :class:`Pipeline` (only local ops can be tiled exactly).
    """
    from .pipeline import Pipeline

    start = time.perf_counter()
    if batch_size is not None:
        batch_size = _validate.integer(batch_size, "batch_size", low=1)
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    workers = _validate.integer(workers, "workers", low=1)
    if max_pixels is not None:
        max_pixels = _validate.integer(max_pixels, "max_pixels", low=1)
    tile = _tiles.parse_max_tile(max_tile)
    if tile is not None and not isinstance(func, Pipeline):
        raise ValueError("max_tile needs a Pipeline: only local filters can be tiled exactly")
    check_tile(func, tile)
    encoding, params = encoder_settings(quality, png_compression)
    engine = resolve_engine(backend)
    out_dir = Path(out_dir)
    report = RunReport(engine=engine, pipeline=label, encoding=encoding)
    plan, files = prepare_run(inputs, out_dir, report)
    if on_start is not None:
        on_start(len(files))
    if progress is not None and report.failures:
        progress(len(report.failures))
    if not plan:  # every output refused: the folder is left as it was
        report.seconds = time.perf_counter() - start
        return report
    with _outdir.hold(out_dir, {out.parent for _, out in plan}):
        manifest = _Manifest(out_dir, label, {f.path: f.relative.as_posix() for f in files})
        keep: list[dict] = []
        if resume:
            todo, keep = manifest.unfinished(plan)
            report.skipped = len(plan) - len(todo)
            plan = todo
            if progress is not None and report.skipped:
                progress(report.skipped)
        if plan or keep or manifest.path.exists():
            manifest.start(keep)  # (a run that writes nothing leaves no manifest behind)
        try:
            results = process_files(
                func, plan, engine=engine, batch_size=batch_size, workers=workers,
                max_pixels=max_pixels, tile=tile, encode_params=params,
                on_written=manifest.record, progress=progress,
            )
        finally:
            manifest.close()
        add_results(report, results)
        report.seconds = time.perf_counter() - start
        if report_name is not None:
            report.write_json(out_dir / report_name)
    return report
