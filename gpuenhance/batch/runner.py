"""Running a batch function over image files.

- :func:`process_files` reads, processes and writes a given list of ``(input, output)`` pairs
  and returns one :class:`~gpuenhance.batch.report.FileResult` per pair. It touches nothing but
  those files, so a Dask task (:mod:`gpuenhance.dask`) can run it on its share of a run.
- :func:`run_files` is a whole run into one output folder (what
  :meth:`gpuenhance.Pipeline.run_files` calls): :func:`~gpuenhance.batch.plan.prepare_run`
  checks the output folder, finds the inputs and plans their outputs before any work; then,
  holding the folder's lock (:mod:`gpuenhance.batch.outdir`), it keeps the resume manifest
  (:mod:`gpuenhance.batch.manifest`), calls :func:`process_files` and returns a
  :class:`~gpuenhance.batch.report.RunReport`.
"""

from __future__ import annotations

import functools
import itertools
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from .. import _backend, _tiles, _validate
from .._metadata import jpeg_with_metadata
from .._threads import limit_threads, system_threads
from ..io import (
    DEFAULT_MAX_PIXELS,
    ImageReadError,
    decode_encoded,
    encode_image,
    load_encoded,
    write_bytes_atomically,
    write_image_keeping,
)
from . import outdir, staging
from .codecs import gpu_codec
from .manifest import Manifest
from .plan import check_tile, encoder_settings, prepare_run
from .report import FileResult, RunReport, add_results

__all__ = ["default_batch_size", "default_max_bytes", "process_files", "run_files"]


def _tileable(func) -> bool:
    """Whether *func* can run in exact tiles: it states its halo (a
    :class:`~gpuenhance.Pipeline` does, through ``radius_for(dtype)``) and takes ``max_tile``."""
    return callable(getattr(func, "radius_for", None))


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
    tileable = _tileable(func)
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
        # Images are filtered *workers* at a time: each call gets its share of the cores for
        # band threads (gpuenhance._threads), so the two levels never oversubscribe.
        share = max(1, system_threads() // workers)

        def compute_share(stack):
            with limit_threads(share):
                return compute(stack)

        return staging.PoolRunner(compute_share, pool, depth=workers, fatal=fatal)
    device = staging.cuda_device_or_none() if engine == "cuda" and tile is None else None
    if device is None:
        return staging.SyncRunner(compute, fatal=fatal)
    return staging.StagedRunner(
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
    codec=None,
    device=None,
    max_bytes: int | None = None,
    on_written: Callable[[Any, Any, os.stat_result], Any] | None = None,
    progress: Callable[[int], Any] | None = None,
) -> list[FileResult]:
    """Read, process and atomically write every ``(src, out)`` of *pairs*; nothing else.

    Files are read and checked on a pool of *workers* threads. Images of one shape and dtype
    are batched (at most *batch_size*) for ``func(batch, backend=engine)`` (and
    ``max_tile=tile`` when *tile* is given; grayscale as one channel, RGBA on its RGB channels
    with alpha passed through).

    - With a GPU *codec* (:mod:`gpuenhance.batch.codecs`) on the CUDA engine, the colour JPEGs
      it accepts are never decoded on the host: their bytes are decoded in batches into device
      memory, processed there, encoded on the GPU and written
      (:class:`~gpuenhance.batch.staging.DeviceRunner`; *device* is its stand-in in tests).
    - Every other image is decoded by OpenCV on the pool; on the CUDA engine its batches are
      staged through pinned memory (:class:`~gpuenhance.batch.staging.StagedRunner`), on the
      CPU engine filtered on the pool's threads in parallel.

    Outputs are written atomically on the pool (OpenCV ``imwrite`` flags per extension from
    *encode_params*; the input's EXIF and ICC profile carried over, pixels upright), each
    followed there by ``on_written(src, out, stat)`` (*stat*: the input's ``os.stat`` taken
    before it was read). Decoded images waiting for a batch are bounded by *max_bytes*
    (default :func:`default_max_bytes`): past it the oldest group is processed early. A float
    image holding NaN is reported, not processed. Running out of device memory splits a batch
    and, for a tileable *func*, tiles a single image.

    A file that cannot be read, processed or written (``on_written`` included) is a result with
    an error, the rest go on; :class:`gpuenhance.BackendUnavailableError` propagates.
    ``progress(1)`` is called as each file finishes. Returns the results in that order.
    """
    results: list[FileResult] = []
    encode_params = encode_params or {}
    batch_size = default_batch_size(engine) if batch_size is None else batch_size
    max_bytes = default_max_bytes(batch_size) if max_bytes is None else max_bytes

    def finish(src, out, error: str | None, megapixels: float = 0.0, note=None):
        results.append(FileResult(src, out, error, megapixels, note))
        if progress is not None:
            progress(1)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpuenhance-io")
    runner = _make_runner(func, engine, tile, pool, workers)
    encoder = None  # the GPU codec's encoding thread, when there is one
    on_device = None
    if codec is not None and engine == "cuda" and tile is None:
        device = device or staging.cuda_device_or_none()
        if device is not None:
            encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpuenhance-encode")
            on_device = staging.DeviceRunner(
                lambda x: func(x, backend="cuda"), device, codec, encoder,
                host_encode=lambda img, q: encode_image(
                    "image.jpg", img, params=(cv2.IMWRITE_JPEG_QUALITY, q))[0],
                depth=3, fatal=(_backend.BackendUnavailableError,),
            )
    order_free = getattr(func, "channel_order_free", None)  # BGR is fine: no channel swaps
    jpeg_params = tuple(encode_params.get(".jpg", ()))
    jpeg_quality = jpeg_params[1] if jpeg_params[:1] == (cv2.IMWRITE_JPEG_QUALITY,) else 95

    def read(src):
        try:
            stat = os.stat(src)  # before reading: on_written describes what was read
        except OSError as exc:
            raise ImageReadError(src, exc.strerror or str(exc)) from exc
        encoded = load_encoded(src, max_pixels=max_pixels)
        if on_device is not None and codec.accepts(encoded) and encoded.upright_size:
            return encoded, None, encoded.metadata, stat  # decoded on the GPU
        img, meta = decode_encoded(encoded, max_pixels=max_pixels, bgr=order_free is not None)
        bgr = order_free is not None and img.ndim == 3
        if bgr and not order_free(img.dtype):  # this dtype needs the RGB order after all
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB if img.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
            bgr = False
        if img.dtype.kind == "f":
            nan = int(np.count_nonzero(np.isnan(img)))
            if nan:
                raise ImageReadError(
                    src, f"{nan} NaN values in the image; NaN is not a pixel value, so the "
                    f"image is not processed"
                )
        return None, (img, bgr), meta, stat

    def note_for(out, dropped, what):
        if not dropped:
            return None
        return (f"written without the input's {' and '.join(dropped)}: a "
                f"{os.path.splitext(str(out))[1]} file of {what} cannot hold them")

    def write(img, src, out, stat, meta, bgr):
        params = encode_params.get(os.path.splitext(str(out))[1].lower(), ())
        dropped = write_image_keeping(out, img, params=params, metadata=meta, bgr=bgr)
        if on_written is not None:
            on_written(src, out, stat)
        return note_for(out, dropped, f"{img.dtype} {'colour' if img.ndim == 3 else 'grey'}")

    def write_encoded(data, src, out, stat, meta):
        data, dropped = jpeg_with_metadata(data, meta)
        write_bytes_atomically(out, data)
        if on_written is not None:
            on_written(src, out, stat)
        return note_for(out, dropped, "this size")

    groups: dict[tuple, list] = {}  # key -> [(src, out, encoded, img, stat, meta)] to batch
    held = {"images": 0, "bytes": 0}  # what *groups* hold
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

    def fail_all(items, error):
        for src, out, *_ in items:
            finish(src, out, f"processing failed: {type(error).__name__}: {error}")

    def emit(finished):
        for context, result, error in finished:
            if context[0] == "device":
                _, items, shape = context
                if error is not None:
                    fail_all(items, error)
                    continue
                mp = shape[0] * shape[1] / 1e6
                for (src, out, _, _, stat, meta), data in zip(items, result):
                    if isinstance(data, ImageReadError):  # neither decoder could read it
                        finish(src, out, data.reason)
                    elif isinstance(data, Exception):
                        finish(src, out, f"processing failed: {type(data).__name__}: {data}")
                    else:
                        writes.append((src, out, mp, pool.submit(
                            write_encoded, data, src, out, stat, meta)))
                continue
            _, items, stack, alpha, bgr = context
            if error is None and (result.shape != stack.shape or result.dtype != stack.dtype):
                error = ValueError(
                    f"stage output has shape {result.shape} {result.dtype}, "
                    f"expected {stack.shape} {stack.dtype}"
                )
            if error is not None:
                fail_all(items, error)
                continue
            if alpha is not None:
                result = np.concatenate([result, alpha], axis=-1)
            for i, (src, out, _, img, stat, meta) in enumerate(items):
                out_img = result[i][..., 0] if img.ndim == 2 else result[i]
                mp = img.shape[0] * img.shape[1] / 1e6
                writes.append((src, out, mp, pool.submit(
                    write, out_img, src, out, stat, meta, bgr)))

    def flush(key):
        items = groups.pop(key)
        held["images"] -= len(items)
        held["bytes"] -= sum(_nbytes(item) for item in items)
        if key[0] == "device":
            shape = key[1]
            emit(on_device.submit(
                [enc.data for _, _, enc, *_ in items], ("device", items, shape), shape=shape,
                host_decoders=[functools.partial(_decoded, enc, max_pixels)
                               for _, _, enc, *_ in items],
                quality=jpeg_quality,
            ))
            return
        stack = np.stack([img for _, _, _, img, *_ in items])
        if stack.ndim == 3:  # grayscale: (N, H, W) -> (N, H, W, 1)
            stack = stack[..., None]
        alpha = None
        if stack.shape[-1] == 4:
            alpha = stack[..., 3:]
            stack = np.ascontiguousarray(stack[..., :3])
        emit(runner.submit(stack, ("host", items, stack, alpha, key[3])))

    try:
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
                    encoded, decoded, meta, stat = fut.result()
                except ImageReadError as exc:
                    finish(src, out, exc.reason)
                    continue
                except Exception as exc:  # noqa: BLE001
                    finish(src, out, f"{type(exc).__name__}: {exc}")
                    continue
                if decoded is None:
                    img = None
                    w, h = encoded.upright_size
                    key = ("device", (h, w, 3))
                else:
                    img, bgr = decoded  # bgr: in OpenCV's channel order, written back so
                    key = ("host", img.shape, img.dtype.str, bgr)
                item = (src, out, encoded, img, stat, meta)
                groups.setdefault(key, []).append(item)
                held["images"] += 1
                held["bytes"] += _nbytes(item)
                if len(groups[key]) >= batch_size:
                    flush(key)
                while groups and (held["images"] > 4 * batch_size or held["bytes"] > max_bytes):
                    flush(next(iter(groups)))  # oldest group first
                collect_writes(keep=2 * workers)  # encoded images waiting are bounded too
            for key in list(groups):
                flush(key)
            emit(runner.drain())
            if on_device is not None:
                emit(on_device.drain())
            collect_writes(keep=0)
    finally:
        if encoder is not None:
            encoder.shutdown(wait=True)
    return results


def _nbytes(item) -> int:
    """Host bytes an item waiting for its batch holds (decoded pixels, or the file's bytes)."""
    _, _, encoded, img, *_ = item
    return img.nbytes if img is not None else encoded.data.nbytes


def _decoded(encoded, max_pixels):
    return decode_encoded(encoded, max_pixels=max_pixels)[0]


def default_max_bytes(batch_size: int) -> int:
    """Host bytes the images waiting for a batch may hold by default: room for four batches
    of 4K RGB images (4 x batch_size x 24 MiB), at least 256 MiB, at most a quarter of the
    machine's memory where that is known."""
    budget = max(256 << 20, 4 * batch_size * 3840 * 2160 * 3)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return budget
    return min(budget, max(64 << 20, total // 4))


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
    decoder: str = "auto",
    report_name: str | None = None,
    on_start: Callable[[int], Any] | None = None,
) -> RunReport:
    """Stream image files through ``func(batch, backend=...)``; see :meth:`Pipeline.run_files`.

    *func* maps an (N, H, W, C) NumPy batch to a batch of the same shape and dtype. *label*
    names it in the report and in the resume manifest (a changed label redoes every image).
    *max_tile* needs a :class:`Pipeline` (only local ops can be tiled exactly).
    """
    start = time.perf_counter()
    if batch_size is not None:
        batch_size = _validate.integer(batch_size, "batch_size", low=1)
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    workers = _validate.integer(workers, "workers", low=1)
    if max_pixels is not None:
        max_pixels = _validate.integer(max_pixels, "max_pixels", low=1)
    tile = _tiles.parse_max_tile(max_tile)
    if tile is not None and not _tileable(func):
        raise ValueError("max_tile needs a Pipeline: only local filters can be tiled exactly")
    check_tile(func, tile)
    encoding, params = encoder_settings(quality, png_compression)
    engine = _backend.engine_name(backend)
    codec = gpu_codec(decoder, engine)  # before any work: decoder="gpu" may be refused
    out_dir = Path(out_dir)
    report = RunReport(engine=engine, pipeline=label, encoding=encoding,
                       decoder="gpu" if codec is not None else "cpu")
    plan, files = prepare_run(inputs, out_dir, report)
    if on_start is not None:
        on_start(len(files))
    if progress is not None and report.failures:
        progress(len(report.failures))
    if not plan:  # every output refused: the folder is left as it was
        report.seconds = time.perf_counter() - start
        return report
    with outdir.hold(out_dir, {out.parent for _, out in plan}):
        manifest = Manifest(out_dir, label, {f.path: f.relative.as_posix() for f in files})
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
                max_pixels=max_pixels, tile=tile, encode_params=params, codec=codec,
                on_written=manifest.record, progress=progress,
            )
        finally:
            manifest.close()
        add_results(report, results)
        report.seconds = time.perf_counter() - start
        if report_name is not None:
            report.write_json(out_dir / report_name)
    return report
