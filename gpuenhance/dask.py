"""Scale-out on Dask: pipelines over chunked arrays, and file batches on a cluster.

Two entry points, both needing the ``dask`` extra (``pip install gpuenhance[dask]``); nothing in
gpuenhance imports this module, and it imports Dask only inside its functions.

- :func:`enhance` applies a :class:`~gpuenhance.Pipeline` to a Dask array of NumPy or CuPy
  chunks with ``map_overlap``. Every block carries a halo of ``pipeline.radius`` real neighbour
  pixels on the H and W axes and *no* padding at the array's edges (``boundary="none"``), so
  each stage sees the true image edge and applies its own border rule there. The result is
  bit-identical to running the pipeline on the whole array, for every border mode.
- :func:`run_files` spreads image files over a ``dask.distributed`` cluster: one task per
  batch of files, each task reading, processing and atomically writing its files, with the
  same output planning and refusal rules as :meth:`Pipeline.run_files`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import _backend, _validate
from .io import DEFAULT_MAX_PIXELS, image_size, write_bytes_atomically

__all__ = ["enhance", "run_files"]


# --------------------------------------------------------------------------- helpers


def _as_pipeline(pipeline):
    from .pipeline import Pipeline

    if isinstance(pipeline, Pipeline):
        return pipeline
    if isinstance(pipeline, str):
        return Pipeline(pipeline)
    raise TypeError(f"pipeline must be a Pipeline or a spec string; got {type(pipeline).__name__}")


def _merge_small_chunks(chunks: tuple, minimum: int) -> tuple:
    """Merge neighbouring chunks (dropping empty ones) until each holds at least *minimum*.

    Existing chunk boundaries are kept where possible, so the rechunk moves little data. An
    axis shorter than *minimum* becomes one chunk.
    """
    sizes = [int(c) for c in chunks if c > 0]
    if not sizes:
        return tuple(chunks)
    if sum(sizes) <= minimum:
        return (sum(sizes),)
    out: list[int] = []
    acc = 0
    for c in sizes:
        acc += c
        if acc >= minimum:
            out.append(acc)
            acc = 0
    if acc:  # a short tail joins the chunk before it
        out[-1] += acc
    return tuple(out)


#: Float blocks with a Gaussian stage start at multiples of this many pixels (see enhance).
_ROW_ALIGN = 64


def _aligned_chunks(chunks: tuple, align: int, minimum: int) -> tuple:
    """Chunks whose boundaries are multiples of *align*, each at least *minimum* long."""
    total = int(sum(chunks))
    bounds = sorted(
        {-(-int(b) // align) * align for b in np.cumsum(chunks)[:-1] if b > 0} - {0}
    )
    bounds = [b for b in bounds if b < total]
    sizes = np.diff([0, *bounds, total]).tolist()
    return _merge_small_chunks(tuple(sizes), minimum)


def _apply_block(block, *, pipeline, backend):
    return pipeline(block, backend=backend)


# --------------------------------------------------------------------------- arrays


def enhance(array, pipeline, *, backend=None):
    """Apply a pipeline to a Dask array, bit-identical to running it on the whole array.

    Parameters
    ----------
    array : dask.array.Array
        (H, W), (H, W, C) or (N, H, W, C) with NumPy or CuPy chunks of a dtype every stage
        accepts. H and W may be chunked any way; a chunked C axis is rechunked to one chunk.
    pipeline : Pipeline or str
        The pipeline, or its spec string.
    backend : {None, "auto", "cpu", "cuda", "cuda-emulated"}, optional
        Passed to the pipeline for every block (None follows each chunk's array type).

    Returns
    -------
    dask.array.Array
        Lazy; same shape, dtype and chunk array type as *array*. Its chunks are those of
        *array* after the rechunks described in the notes.

    Raises
    ------
    TypeError
        For a non-Dask input, a dtype the stages refuse, or a bad *pipeline* type.
    ValueError
        For a layout with other than 2-4 dimensions, a bad spec, or an unknown *backend*.

    Notes
    -----
    Blocks are processed by ``map_overlap`` with ``depth = pipeline.radius`` on H and W (0 on N
    and C) and ``boundary="none"``: interior halos are real neighbour pixels, and a block at
    the array's edge is not padded there, so the stage's own border rule (replicate, reflect,
    ...) applies at the true image edge. Stage ``k`` can only corrupt pixels within
    ``radius_1 + ... + radius_k`` of a halo's outer edge; the halo is the sum of all radii, so
    every kept pixel is exact.

    Dask needs every chunk along an overlapped axis to be at least the depth. Chunks smaller
    than ``pipeline.radius`` are merged with their neighbours (an axis shorter than the
    radius becomes one chunk), so tiny chunks cost a rechunk, not an error.

    A pipeline with a stage that needs whole-image statistics (``equalize``, ``clahe``,
    ``white_balance``, ``auto_contrast``) is applied to blocks holding whole images: H and W
    are rechunked to one chunk each (the N axis of a batch stays chunked).

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from gpuenhance import Pipeline
    >>> from gpuenhance.dask import enhance
    >>> img = np.random.default_rng(0).integers(0, 256, (40, 57, 3), dtype=np.uint8)
    >>> pipe = Pipeline("median:ksize=3 | gaussian:sigma=1.2,border=reflect")
    >>> out = enhance(da.from_array(img, chunks=(16, 20, 3)), pipe)
    >>> bool((out.compute(scheduler="synchronous") == pipe(img)).all())
    True
    """
    import dask.array as da

    if not isinstance(array, da.Array):
        raise TypeError(f"array must be a dask.array.Array; got {type(array).__name__}")
    pipe = _as_pipeline(pipeline)
    _backend.check_name(backend)
    if array.ndim not in (2, 3, 4):
        raise ValueError(
            f"array must have shape (H, W), (H, W, C) or (N, H, W, C); "
            f"got {array.ndim} dimensions {tuple(array.shape)}"
        )
    dtype = np.dtype(array.dtype)
    if dtype not in [np.dtype(d) for d in _validate.FILTER_DTYPES]:
        raise TypeError(
            f"array dtype must be one of "
            f"{', '.join(np.dtype(d).name for d in _validate.FILTER_DTYPES)}; got {dtype.name}"
        )
    spatial = (0, 1) if array.ndim in (2, 3) else (1, 2)
    channel = {2: None, 3: 2, 4: 3}[array.ndim]
    if channel is not None and len(array.chunks[channel]) > 1:
        array = array.rechunk({channel: -1})
    func = functools.partial(_apply_block, pipeline=pipe, backend=backend)
    if any(stage.whole_image for stage in pipe.stages):
        # equalize, CLAHE, white balance, auto-contrast: each image's statistics come from the
        # whole image, so a block must hold whole images (N may stay chunked).
        whole = {axis: -1 for axis in spatial if len(array.chunks[axis]) > 1}
        if whole:
            array = array.rechunk(whole)
        return array.map_blocks(func, dtype=dtype, meta=array._meta)
    depth = pipe.radius
    if depth == 0:  # point operations only: blocks are independent
        return array.map_blocks(func, dtype=dtype, meta=array._meta)
    depths = {axis: 0 for axis in range(array.ndim)}
    depths[spatial[0]] = depth
    depths[spatial[1]] = depth
    new_chunks = {}
    for axis in spatial:
        new_chunks[axis] = _merge_small_chunks(array.chunks[axis], depth)
    if dtype.kind == "f" and any(s.name == "gaussian" for s in pipe.stages):
        # OpenCV's float Gaussian computes the last (W*C mod vector width) values of every row
        # on a scalar path that rounds differently from its SIMD path: a value depends on
        # where its row ends. Start every block at a multiple of _ROW_ALIGN pixels (so the
        # last block's row tail is the whole image's) and widen the right halo by
        # _ROW_ALIGN (so other blocks' tails fall in discarded pixels).
        w = spatial[1]
        left = -(-depth // _ROW_ALIGN) * _ROW_ALIGN
        right = depth + _ROW_ALIGN
        depths[w] = (left, right)
        new_chunks[w] = _aligned_chunks(array.chunks[w], _ROW_ALIGN, max(left, right))
    new_chunks = {a: c for a, c in new_chunks.items() if c != array.chunks[a]}
    if new_chunks:
        array = array.rechunk(new_chunks)
    for axis in spatial:
        if len(array.chunks[axis]) == 1:  # no neighbours: the whole axis is in every block
            depths[axis] = 0
    return array.map_overlap(
        func,
        depth=depths,
        boundary="none",
        trim=True,
        allow_rechunk=False,  # done above, by the rule documented in the notes
        dtype=dtype,
        meta=array._meta,
    )


# --------------------------------------------------------------------------- file tasks


def _identity(path: str):
    """(inode, mtime_ns, size) of a file, or None when it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return [st.st_ino, st.st_mtime_ns, st.st_size]


def _megapixels_of(path: str) -> float | None:
    try:
        size = image_size(Path(path).read_bytes())
    except OSError:
        return None
    return None if size is None else size[0] * size[1] / 1e6


def _load_or_write_marker(marker: Path, items) -> tuple[dict, bool]:
    """The batch's record of its outputs' state before its first attempt wrote anything.

    Returns ``(before, first_attempt)``. The record is written atomically before any output,
    so a later attempt that finds it knows which outputs an earlier attempt already replaced.
    """
    try:
        return json.loads(marker.read_text()), False
    except FileNotFoundError:
        pass
    except ValueError:  # unreadable record: treat this as a first attempt (rewrites, never skips)
        pass
    before = {out: _identity(out) for _, out in items}
    marker.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomically(marker, json.dumps(before).encode())
    return before, True


def _run_batch(func, items, marker, backend, batch_size, workers, max_pixels, max_tile,
               encode_params=None, decoder="auto"):
    """One task: read, process and atomically write *items* (``[(input, output), ...]``).

    Returns ``(engine, [FileResult, ...])``. Idempotent: outputs are replaced atomically (never
    partial), and on a re-execution (the scheduler reruns a task whose worker died) an output
    whose file identity (inode, mtime, size) changed since the first attempt's record was
    completed by an earlier attempt and is skipped, so each output is written once per run.
    """
    from . import _tiles
    from .batch.report import FileResult
    from .batch.runner import process_files

    from .batch.codecs import gpu_codec

    engine = _backend.engine_name(backend)  # this worker's engine (BackendUnavailableError: no GPU)
    codec = gpu_codec(decoder, engine)  # this worker's GPU codec, if any
    before, first = _load_or_write_marker(Path(marker), items)
    done, todo = [], []
    for src, out in items:
        if not first and out in before:
            now = _identity(out)
            if now is not None and now != before[out]:  # replaced by an earlier attempt
                mp = _megapixels_of(out)
                if mp is not None:
                    done.append(FileResult(src, out, None, mp))
                    continue
        todo.append((src, out))
    results = process_files(
        func, todo, engine=engine, batch_size=batch_size, workers=workers or 1,
        max_pixels=max_pixels, tile=_tiles.parse_max_tile(max_tile), encode_params=encode_params,
        codec=codec,
    )
    return engine, done + results


@contextlib.contextmanager
def _client_for(scheduler, backend, n_workers, threads_per_worker):
    """A distributed Client for *scheduler*; closes what it started."""
    from distributed import Client

    if not isinstance(scheduler, str):  # a Client the caller owns
        yield scheduler
        return
    if scheduler != "local":
        try:
            client = Client(scheduler)
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(
                f"cannot connect to the Dask scheduler at {scheduler!r}: {exc}"
            ) from None
        try:
            yield client
        finally:
            client.close()
        return
    # dashboard_address=":0": the scheduler's HTTP server (always started, dashboard or not)
    # takes a free port instead of fighting over 8787 with other clusters on this machine.
    cluster = None
    if backend not in ("cpu", "cuda-emulated") and _backend.cuda_available():
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            LocalCUDACluster = None
        if LocalCUDACluster is not None:  # one worker per GPU, pinned by CUDA_VISIBLE_DEVICES
            cluster = LocalCUDACluster(
                threads_per_worker=threads_per_worker, dashboard_address=":0"
            )
        elif n_workers is None:
            n_workers = 1  # without dask-cuda every worker would share the first GPU
            gpus = len(_backend.info().get("gpus", []))
            if gpus > 1:
                warnings.warn(
                    f"{gpus} GPUs but dask-cuda is not installed: one worker on the first GPU "
                    f"(pip install dask-cuda for one worker per GPU)", UserWarning, stacklevel=3)
    if cluster is None:
        from distributed import LocalCluster

        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            dashboard_address=":0",
        )
    try:
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def run_files(
    pipeline,
    inputs,
    out_dir,
    *,
    scheduler="local",
    backend=None,
    batch_size: int | None = None,
    files_per_task: int | None = None,
    workers: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    retries: int = 2,
    progress: Callable[[int], Any] | None = None,
    label: str | None = None,
    max_tile=None,
    resume: bool = False,
    quality: int | None = None,
    png_compression: int | None = None,
    decoder: str = "auto",
    report_name: str | None = None,
    on_start: Callable[[int], Any] | None = None,
):
    """Run a pipeline over image files on a ``dask.distributed`` cluster.

    Files are discovered and their outputs planned here, exactly as by
    :meth:`Pipeline.run_files` (same mirroring under *out_dir*, same refusals); then one task
    per batch of files reads, processes and atomically writes them on a worker.

    Parameters
    ----------
    pipeline : Pipeline, str or callable
        A pipeline, its spec, or any picklable ``f(batch, backend=...)`` mapping an
        (N, H, W, C) NumPy batch to one of the same shape and dtype.
    inputs : path, glob pattern, or iterable of them
        As for :func:`gpuenhance.io.find_images`.
    out_dir : path
        Output folder; must be reachable at the same path from every worker (a shared
        filesystem for a multi-machine cluster).
    scheduler : "local", str or distributed.Client, optional
        ``"local"`` starts a cluster on this machine for the call and closes it after:
        ``dask_cuda.LocalCUDACluster`` (one worker per GPU) when dask-cuda is importable, a GPU
        works and *backend* allows CUDA, else a ``LocalCluster`` of worker processes. An
        address such as ``"tcp://host:8786"`` connects to a running scheduler. A ``Client``
        is used as it is and left open.
    backend : {None, "auto", "cpu", "cuda", "cuda-emulated"}, optional
        Resolved on each worker (None/"auto": CUDA where that worker has a working GPU).
    batch_size : int, optional
        Most images per pipeline call, as for :meth:`Pipeline.run_files`.
    files_per_task : int, optional
        Files per task (default *batch_size*, or 8 when that is not given).
    workers : int, optional
        Decode/encode threads inside each task (default 1: parallelism comes from the
        cluster's workers).
    max_pixels : int or None, optional
        Per-image pixel limit.
    n_workers, threads_per_worker : int, optional
        Size of a ``"local"`` CPU cluster (default: Dask's choice of processes, 1 thread each;
        1 process when a GPU works but dask-cuda is missing).
    retries : int, optional
        Times a task that raised is resubmitted (``Client.submit(retries=...)``). A task whose
        worker died is rescheduled by the scheduler itself (up to its ``allowed-failures``).
    progress : callable, optional
        Called with the number of images each finished task (or refusal) accounts for.
    label : str, optional
        The report's ``pipeline`` field (default: the spec, or the callable's name).
    max_tile : optional
        Passed to every pipeline call (``pipeline(batch, backend=..., max_tile=...)``); needs
        a :class:`Pipeline` whose call accepts it.
    resume : bool, optional
        Not supported (a distributed run is idempotent within itself, but keeps no manifest
        across runs); True raises ValueError.
    quality, png_compression : int, optional
        Encoder settings, as for :meth:`Pipeline.run_files`.
    decoder : {"auto", "gpu", "cpu"}, optional
        As for :meth:`Pipeline.run_files`, resolved on each worker for its own GPU.
    report_name : str, optional
        Write the report as JSON to ``out_dir/report_name`` while the run holds the folder.
    on_start : callable, optional
        Called with the number of inputs found, once the checks passed and before any work.

    Returns
    -------
    RunReport
        Merged over the tasks; ``outputs`` in input order; ``engine`` names every engine that
        computed (``"cpu+cuda"`` for a mixed cluster).

    Raises
    ------
    FileNotFoundError
        For an input that does not exist (before any work).
    ConnectionError
        When no scheduler answers at the given address.
    gpuenhance.BackendUnavailableError
        For ``backend="cuda"`` with ``scheduler="local"`` where no GPU works here (before any
        work), or when a worker reports it.

    Notes
    -----
    Every output is replaced atomically (``io.write_image``: temporary file, then rename), so
    no reader and no later attempt ever sees a partial file. A task records its outputs'
    file identities (inode, mtime, size) under ``out_dir/.gpuenhance-dask-<run id>/`` before
    writing; when the scheduler reruns it because its worker died, outputs whose identity
    changed since were completed by the earlier attempt and are skipped, so each output is
    written once. An image whose processing was cut short is processed again. The record is
    removed when the call ends. A task that still fails (after *retries*, or a worker killed
    too often) has its files reported as failures; the other tasks' outputs stand.

    Examples
    --------
    >>> from gpuenhance.dask import run_files
    >>> address = "tcp://scheduler-host:8786"
    >>> report = run_files("median:ksize=3", "in/", "out/", scheduler=address)  # doctest: +SKIP
    >>> report.processed, report.failures  # doctest: +SKIP
    (12, [])
    """
    from .batch import outdir
    from .batch.codecs import DECODERS
    from .batch.plan import check_tile, encoder_settings, prepare_run
    from .batch.report import RunReport
    from .pipeline import Pipeline

    start = time.perf_counter()
    if isinstance(pipeline, str):
        pipeline = Pipeline(pipeline)
    if isinstance(pipeline, Pipeline):
        default_label = pipeline.spec
    elif callable(pipeline):
        default_label = getattr(pipeline, "__name__", type(pipeline).__name__)
    else:
        raise TypeError(
            f"pipeline must be a Pipeline, a spec string or a callable; "
            f"got {type(pipeline).__name__}"
        )
    label = default_label if label is None else str(label)
    if batch_size is not None:
        batch_size = _validate.integer(batch_size, "batch_size", low=1)
    if files_per_task is None:
        files_per_task = 8 if batch_size is None else batch_size
    else:
        files_per_task = _validate.integer(files_per_task, "files_per_task", low=1)
    if workers is not None:
        workers = _validate.integer(workers, "workers", low=1)
    if max_pixels is not None:
        max_pixels = _validate.integer(max_pixels, "max_pixels", low=1)
    if n_workers is not None:
        n_workers = _validate.integer(n_workers, "n_workers", low=1)
    threads_per_worker = _validate.integer(threads_per_worker, "threads_per_worker", low=1)
    retries = _validate.integer(retries, "retries", low=0)
    _backend.check_name(backend)
    if resume:
        raise ValueError("resume is not supported by gpuenhance.dask.run_files")
    if max_tile is not None:
        if not isinstance(pipeline, Pipeline):
            raise ValueError("max_tile needs a Pipeline: only local filters can be tiled exactly")
        from . import _tiles

        check_tile(pipeline, _tiles.parse_max_tile(max_tile))  # before any work
    if isinstance(scheduler, str):
        if scheduler != "local" and "://" not in scheduler:
            raise ValueError(
                f"scheduler must be 'local', a scheduler address such as 'tcp://host:8786', "
                f"or a distributed.Client; got {scheduler!r}"
            )
        if scheduler == "local":
            _backend.require(backend)
    else:
        from distributed import Client

        if not isinstance(scheduler, Client):
            raise TypeError(
                f"scheduler must be a str or a distributed.Client; got {type(scheduler).__name__}"
            )

    encoding, params = encoder_settings(quality, png_compression)
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(map(repr, DECODERS))}; "
                         f"got {decoder!r}")
    out_dir = Path(out_dir)
    report = RunReport(pipeline=label, encoding=encoding)
    plan, files = prepare_run(inputs, out_dir, report)
    if on_start is not None:
        on_start(len(files))
    if progress is not None and report.failures:
        progress(len(report.failures))
    if not plan:  # every output refused: the folder is left as it was
        report.engine = "cuda" if backend == "cuda" else _backend.engine_name(backend)
        report.seconds = time.perf_counter() - start
        return report
    with outdir.hold(out_dir, {out.parent for _, out in plan}):
        _run_tasks(report, plan, out_dir, pipeline, scheduler, backend, batch_size,
                   files_per_task, workers, max_pixels, max_tile, params, decoder, n_workers,
                   threads_per_worker, retries, progress)
        report.seconds = time.perf_counter() - start
        if report_name is not None:
            report.write_json(out_dir / report_name)
    return report


def _run_tasks(report, plan, out_dir, pipeline, scheduler, backend, batch_size, files_per_task,
               workers, max_pixels, max_tile, params, decoder, n_workers, threads_per_worker,
               retries, progress):
    """Submit one task per batch of *plan* and merge their results into *report*."""
    from distributed import as_completed

    from .batch.report import FileResult, add_results

    batches = [
        [(str(src), str(out)) for src, out in plan[i : i + files_per_task]]
        for i in range(0, len(plan), files_per_task)
    ]
    results: list = [None] * len(batches)  # (engine or None, [FileResult, ...]) per task
    run_id = uuid.uuid4().hex[:16]
    state_dir = out_dir / f".gpuenhance-dask-{run_id}"
    try:
        if batches:
            with _client_for(scheduler, backend, n_workers, threads_per_worker) as client:
                futures = {}
                for index, items in enumerate(batches):
                    fut = client.submit(
                        _run_batch, pipeline, items, str(state_dir / f"batch-{index:06d}.json"),
                        backend, batch_size, workers, max_pixels, max_tile, params, decoder,
                        key=f"gpuenhance-files-{run_id}-{index}", retries=retries, pure=False,
                    )
                    futures[fut] = index
                try:
                    for fut in as_completed(list(futures)):
                        index = futures[fut]
                        try:
                            results[index] = fut.result()
                        except _backend.BackendUnavailableError:
                            raise
                        except Exception as exc:  # noqa: BLE001 - the batch's files are reported
                            reason = f"task failed: {type(exc).__name__}: {exc}"
                            results[index] = (
                                None, [FileResult(src, out, reason) for src, out in batches[index]]
                            )
                        if progress is not None:
                            progress(len(batches[index]))
                finally:
                    client.cancel(list(futures))
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    order = {str(src): i for i, (src, _) in enumerate(plan)}
    for _, files_done in results:
        add_results(report, files_done)
    report.outputs.sort(key=lambda pair: order.get(pair[0], len(order)))
    engines = {engine for engine, _ in results if engine is not None}
    if engines:
        report.engine = "+".join(sorted(engines))
    else:  # nothing ran: name the engine this machine would have used
        report.engine = "cuda" if backend == "cuda" else _backend.engine_name(backend)
