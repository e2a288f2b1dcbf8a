"""End-to-end file throughput: ``Pipeline.run_files`` against a plain OpenCV loop.

    python -m bench.throughput                      # 1000 images, 1920x1080, half JPEG, half PNG
    python -m bench.throughput --n 200 --json /tmp/throughput.json
    python -m bench.throughput --smoke              # 6 tiny images; proves it runs, no timing claims

What is measured, on the same files, the same cores and the same pipeline
(``median:ksize=3 | gaussian:sigma=1.2 | gamma:gamma=0.8``), each method reading every file,
filtering it and writing the result under a fresh temporary output folder (removed after):

* ``gpuenhance[cpu]``: ``Pipeline(spec).run_files(folder, out, backend="cpu")`` with its default
  workers (``min(8, os.cpu_count())`` decode/encode threads) at batch size 8 (the default) and 1;
* ``opencv loop``: the loop users write, one file after another: ``cv2.imread`` ->
  ``cv2.medianBlur(img, 3)`` -> ``cv2.GaussianBlur(img, (0, 0), 1.2)`` (OpenCV derives the
  kernel size) -> ``cv2.LUT`` with a gamma table -> ``cv2.imwrite``; OpenCV's own internal
  threads are left as they are (``cv2.getNumThreads()`` is recorded);
* ``opencv loop, threads``: the same per-file function over a ``ThreadPoolExecutor`` with as many
  workers as gpuenhance uses, so both sides have the same cores and the same I/O parallelism;
* ``gpuenhance[cuda]`` (when CuPy and a GPU work): ``run_files(backend="cuda")``, plus the share
  of the wall time the GPU's compute stream is busy with the pipeline (CUDA events recorded on
  the compute stream around every batch call, summed, over the run's wall time).

Wall time covers discovery, decoding, filtering and encoding (output folder creation
included), after one untimed warm-up run of each method on a few files; with ``--repeat R``
the methods run in R round-robin rounds and each row reports its median. The inputs are read
once beforehand so that every method reads them from the page cache. Rows report images/s,
MPix/s, wall seconds and the ratio to the plain loops (``plain time / method time``: > 1 means
faster than the plain loop).

Check (not timed): for a few JPEG and PNG files, gpuenhance's result array (``Pipeline`` on
``gpuenhance.io.read_image``'s RGB array, CPU engine) must equal the OpenCV loop's result array
(BGR, converted) exactly, and the files both write must decode to identical pixels (both encode
the same array with OpenCV's default settings: JPEG quality 95, PNG default compression).

The input folder is generated deterministically from a seed (smooth random colour fields at
two scales, antialiased shapes and lines for edges, mild Gaussian noise: content that JPEG and
PNG compress the way they compress photographs, unlike pure noise), in subfolders of 100,
even indices JPEG (quality 90), odd PNG. It is cached (by default under the system temp folder,
keyed by count, size and seed), so reruns do not regenerate it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from . import _timing

SPEC = "median:ksize=3 | gaussian:sigma=1.2 | gamma:gamma=0.8"
MEDIAN_KSIZE = 3
GAUSS_SIGMA = 1.2
GAMMA = 0.8
JPEG_QUALITY = 90
SEED = 20250
PER_FOLDER = 100
DEFAULT_N = 1000
DEFAULT_SIZE = (1920, 1080)  # width x height
SMOKE_N = 6
SMOKE_SIZE = (64, 48)
CHECK_FILES = 6  # files (half JPEG, half PNG) compared between gpuenhance and the plain loop
_EXTS = (".jpg", ".png")
_MARKER = ".bench-throughput.json"


# ----------------------------------------------------------------------------- inputs


def parse_size(text: str) -> tuple[int, int]:
    """``"1920x1080"`` -> ``(1920, 1080)`` (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, e.g. 1920x1080; got {text!r}")
    if w < 8 or h < 8:
        raise argparse.ArgumentTypeError(f"size must be at least 8x8; got {text!r}")
    return w, h


def synth_image(seed: int, index: int, width: int, height: int) -> np.ndarray:
    """A deterministic natural-looking (H, W, 3) uint8 BGR image: image *index* of *seed*.

    Smooth colour fields at a coarse and a medium scale (bicubic upsampling of Gaussian
    noise; a shared brightness component plus weaker per-channel colour), a few dozen antialiased filled shapes and lines (sharp edges), and Gaussian noise
    of sigma 2 (sensor-like grain).
    """
    rng = np.random.default_rng([seed, index])
    field = np.zeros((height, width, 3), np.float32)
    for cells, luma, chroma in ((6, 55.0, 25.0), (40, 15.0, 6.0)):
        gh = max(2, round(height * cells / max(width, height)) + 1)
        gw = max(2, round(width * cells / max(width, height)) + 1)
        coarse = (rng.standard_normal((gh, gw, 1), dtype=np.float32) * np.float32(luma)
                  + rng.standard_normal((gh, gw, 3), dtype=np.float32) * np.float32(chroma))
        field += cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    field += rng.uniform(60, 190, size=3).astype(np.float32)
    scale = max(width, height)
    for _ in range(int(rng.integers(12, 30))):
        colour = tuple(float(v) for v in rng.uniform(0, 255, size=3))
        kind = int(rng.integers(0, 3))
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        if kind == 0:
            r = int(rng.integers(2, max(3, scale // 8)))
            cv2.circle(field, (cx, cy), r, colour, -1, cv2.LINE_AA)
        elif kind == 1:
            pts = rng.integers(-scale // 6, scale // 6, size=(int(rng.integers(3, 7)), 2)) + (cx, cy)
            cv2.fillPoly(field, [pts.astype(np.int32)], colour, cv2.LINE_AA)
        else:
            x2, y2 = int(rng.integers(0, width)), int(rng.integers(0, height))
            thick = int(rng.integers(1, max(2, scale // 150)))
            cv2.line(field, (cx, cy), (x2, y2), colour, thick, cv2.LINE_AA)
    field += rng.standard_normal((height, width, 3), dtype=np.float32) * np.float32(2.0)
    return np.clip(np.rint(field), 0, 255).astype(np.uint8)


FORMATS = ("both", "jpeg", "png")


def image_relpath(index: int, formats: str = "both") -> str:
    """Relative path of image *index*: ``dNN/imgNNNN.jpg`` (even) or ``.png`` (odd); every one
    a JPEG (``formats="jpeg"``) or a PNG (``"png"``)."""
    ext = {"both": _EXTS[index % 2], "jpeg": _EXTS[0], "png": _EXTS[1]}[formats]
    return f"d{index // PER_FOLDER:02d}/img{index:04d}{ext}"


def _write_input(root: Path, seed: int, index: int, width: int, height: int,
                 formats: str = "both") -> None:
    path = root / image_relpath(index, formats)
    if path.exists():
        return
    img = synth_image(seed, index, width, height)
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if path.suffix == ".jpg" else []
    ok, data = cv2.imencode(path.suffix, img, params)
    if not ok:
        raise OSError(f"cannot encode {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    tmp.write_bytes(data.tobytes())
    os.replace(tmp, path)  # a killed generation leaves no half-written image behind


def default_data_dir(n: int, size: tuple[int, int], seed: int, formats: str = "both") -> Path:
    name = f"n{n}-{size[0]}x{size[1]}-s{seed}" + ("" if formats == "both" else f"-{formats}")
    return Path(tempfile.gettempdir()) / "gpuenhance-bench-throughput" / name


def ensure_inputs(root: Path, n: int, size: tuple[int, int], *, seed: int = SEED,
                  workers: int = 1, log: Callable = print, formats: str = "both") -> dict:
    """Generate the *n* input images under *root* unless a finished set is there.

    Returns ``{"data_dir", "generated", "generate_s", "bytes", "jpeg", "png"}``; *generated*
    is 0 when the cached set was complete.
    """
    root = Path(root)
    want = {"n": n, "width": size[0], "height": size[1], "seed": seed,
            "jpeg_quality": JPEG_QUALITY, "generator": 1, "formats": formats}
    marker = root / _MARKER
    generated = 0
    t0 = time.perf_counter()
    try:
        complete = json.loads(marker.read_text()) == want
    except (OSError, ValueError):
        complete = False
    if not complete or not all((root / image_relpath(i, formats)).exists() for i in range(n)):
        root.mkdir(parents=True, exist_ok=True)
        todo = [i for i in range(n) if not (root / image_relpath(i, formats)).exists()]
        if todo:
            log(f"generating {len(todo)} of {n} {size[0]}x{size[1]} images under {root} ...")
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            list(pool.map(lambda i: _write_input(root, seed, i, *size, formats), todo))
        generated = len(todo)
        marker.write_text(json.dumps(want))
    nbytes = sum((root / image_relpath(i, formats)).stat().st_size for i in range(n))
    jpeg = {"both": (n + 1) // 2, "jpeg": n, "png": 0}[formats]
    return {"data_dir": str(root), "generated": generated,
            "generate_s": time.perf_counter() - t0 if generated else 0.0, "bytes": nbytes,
            "jpeg": jpeg, "png": n - jpeg}


def list_inputs(root: Path) -> list[Path]:
    """The input images under *root* (recursive, sorted, hidden files skipped)."""
    found = []
    for dirpath, dirnames, names in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / nm for nm in sorted(names)
                     if not nm.startswith(".") and nm.lower().endswith((".jpg", ".jpeg", ".png")))
    return found


def _warm_page_cache(files: list[Path]) -> None:
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(1 << 22):
                pass


# ----------------------------------------------------------------------------- the plain loop


def gamma_lut(gamma: float = GAMMA) -> np.ndarray:
    """The 256-entry gamma table as users write it: ``round(255 * (i / 255) ** gamma)``."""
    return np.array([round(((i / 255.0) ** gamma) * 255.0) for i in range(256)], dtype=np.uint8)


def plain_filter(img: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """median 3 -> Gaussian sigma 1.2 (OpenCV's ksize rule) -> gamma LUT, plain OpenCV."""
    img = cv2.medianBlur(img, MEDIAN_KSIZE)
    img = cv2.GaussianBlur(img, (0, 0), GAUSS_SIGMA)
    return cv2.LUT(img, lut)


def plain_file(src: Path, dst: Path, lut: np.ndarray) -> int:
    """Read, filter and write one file; return its pixel count."""
    img = cv2.imread(str(src))
    if img is None:
        raise OSError(f"cannot read {src}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(dst), plain_filter(img, lut)):
        raise OSError(f"cannot write {dst}")
    return img.shape[0] * img.shape[1]


def plain_run(in_root: Path, out_root: Path, *, workers: int = 0) -> dict:
    """The plain OpenCV loop over every image under *in_root*; *workers* > 0: a thread pool."""
    t0 = time.perf_counter()
    lut = gamma_lut()
    files = list_inputs(in_root)
    jobs = [(f, out_root / f.relative_to(in_root)) for f in files]
    if workers > 0:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pixels = list(pool.map(lambda job: plain_file(job[0], job[1], lut), jobs))
    else:
        pixels = [plain_file(src, dst, lut) for src, dst in jobs]
    return {"images": len(pixels), "megapixels": sum(pixels) / 1e6, "failed": 0,
            "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------- gpuenhance


def _event_timed_pipeline(spec: str):
    """A Pipeline that records CUDA events on the current stream around every call.

    run_files' CUDA runner calls the pipeline with the compute stream current, so the events
    bracket each batch's work on that stream; the sum of their intervals is the time the
    compute stream spends on the pipeline (host launch gaps inside a call included).
    """
    import cupy

    from gpuenhance import Pipeline

    class EventTimedPipeline(Pipeline):
        def __init__(self, stages):
            super().__init__(stages)
            self.events: list = []
            self._depth = 0  # tiled calls re-enter __call__ per tile: time the outer call only

        def __call__(self, batch, backend=None, **kwargs):
            if self._depth:
                return super().__call__(batch, backend=backend, **kwargs)
            start, end = cupy.cuda.Event(), cupy.cuda.Event()
            start.record()
            self._depth += 1
            try:
                out = super().__call__(batch, backend=backend, **kwargs)
            finally:
                self._depth -= 1
            end.record()
            self.events.append((start, end))
            return out

        def busy_seconds(self) -> float:
            total = 0.0
            for start, end in self.events:
                end.synchronize()
                total += cupy.cuda.get_elapsed_time(start, end) / 1e3
            return total

    return EventTimedPipeline(spec)


def gpuenhance_run(in_root: Path, out_root: Path, *, backend: str, batch_size: int,
                   workers: int | None, pipe=None, decoder: str = "auto") -> dict:
    from gpuenhance import Pipeline

    pipe = pipe if pipe is not None else Pipeline(SPEC)
    t0 = time.perf_counter()
    with _timing.RssSampler() as rss:
        rep = pipe.run_files(in_root, out_root, backend=backend, batch_size=batch_size,
                             workers=workers, decoder=decoder)
    wall = time.perf_counter() - t0
    out = {"images": rep.processed, "megapixels": rep.megapixels, "failed": len(rep.failures),
           "seconds": wall, "report_seconds": rep.seconds, "engine": rep.engine,
           "decoder": rep.decoder, "peak_rss_mib": rss.peak_mib}
    if rep.failures:
        out["first_failure"] = f"{rep.failures[0][0]}: {rep.failures[0][1]}"
    return out


# ----------------------------------------------------------------------------- measuring


def _method_table(workers: int, gpu_problem: str | None, batch_sizes=(8, 1)) -> list[dict]:
    methods = []
    for bs in batch_sizes:
        methods.append({"method": f"gpuenhance-cpu-b{bs}", "label": f"gpuenhance[cpu] run_files, batch {bs}",
                        "kind": "gpuenhance", "backend": "cpu", "batch_size": bs, "workers": workers,
                        "device": "cpu"})
    methods.append({"method": "opencv-loop", "label": "OpenCV loop, 1 thread (cv2 internal threads as set)",
                    "kind": "plain", "workers": 0, "device": "cpu"})
    methods.append({"method": "opencv-loop-threads", "label": f"OpenCV loop, {workers} threads over files",
                    "kind": "plain", "workers": workers, "device": "cpu"})
    for bs, decoder in ((32, "gpu"), (8, "gpu"), (8, "cpu")):
        where = "nvImageCodec" if decoder == "gpu" else "OpenCV"
        methods.append({"method": f"gpuenhance-cuda-b{bs}-{decoder}dec",
                        "label": f"gpuenhance[cuda] run_files, batch {bs}, JPEG via {where}",
                        "kind": "gpuenhance", "backend": "cuda", "batch_size": bs,
                        "workers": workers, "device": "gpu", "decoder": decoder,
                        "skip": gpu_problem})
    return methods


def _run_once(m: dict, in_root: Path, out_root: Path, pipe=None) -> dict:
    if m["kind"] == "plain":
        return plain_run(in_root, out_root, workers=m["workers"])
    return gpuenhance_run(in_root, out_root, backend=m["backend"], batch_size=m["batch_size"],
                          workers=m["workers"], pipe=pipe, decoder=m.get("decoder", "auto"))


class _Method:
    """One method being measured: its row, its warm-up, its timed runs."""

    def __init__(self, m: dict):
        self.m = m
        self.row = {k: v for k, v in m.items() if k not in ("kind", "skip")}
        self.row.update(status="ok", note="")
        self.pipe = None
        self.walls: list[float] = []
        self.busy: list[float] = []
        self.last: dict = {}
        if m.get("skip"):
            self.row.update(status="skipped", note=m["skip"])

    @property
    def ok(self) -> bool:
        return self.row["status"] == "ok"

    def _fail(self, exc: BaseException) -> None:
        self.row.update(status="error", note=f"{type(exc).__name__}: {exc}")

    def warm_up(self, warm_root: Path | None, scratch: Path) -> None:
        """Untimed run on *warm_root* (imports, thread pools, kernel compilation)."""
        if not self.ok:
            return
        try:
            if self.m["kind"] == "gpuenhance" and self.m["backend"] == "cuda":
                self.pipe = _event_timed_pipeline(SPEC)
            if warm_root is not None:
                out = scratch / f"{self.m['method']}-warmup"
                _run_once(self.m, warm_root, out, self.pipe)
                shutil.rmtree(out, ignore_errors=True)
        except Exception as exc:  # noqa: BLE001 - the row says what went wrong
            self._fail(exc)

    def timed_run(self, in_root: Path, scratch: Path) -> None:
        """One full run over *in_root* into a fresh folder (removed afterwards, untimed)."""
        if not self.ok:
            return
        out = scratch / f"{self.m['method']}-{len(self.walls)}"
        try:
            if self.pipe is not None:
                self.pipe.events.clear()
            self.last = _run_once(self.m, in_root, out, self.pipe)
            self.walls.append(self.last["seconds"])
            if self.pipe is not None and self.pipe.events:
                self.busy.append(self.pipe.busy_seconds() / self.last["seconds"])
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)
        finally:
            shutil.rmtree(out, ignore_errors=True)

    def finish(self) -> dict:
        row, last = self.row, self.last
        if not self.ok:
            return row
        wall = statistics.median(self.walls)
        row.update(images=last["images"], failed=last["failed"], megapixels=last["megapixels"],
                   wall_s=wall, run_walls_s=self.walls, images_s=last["images"] / wall,
                   mpix_s=last["megapixels"] / wall)
        for key in ("engine", "decoder", "peak_rss_mib"):
            if key in last:
                row[key] = last[key]
        if last.get("first_failure"):
            row["note"] = f"{last['failed']} failed, e.g. {last['first_failure']}"
        if self.pipe is not None:
            row["gpu_busy_share"] = statistics.median(self.busy) if self.busy else None
            row["gpu_busy_note"] = (
                "GPU busy = compute-stream busy share: sum of CUDA-event intervals around each "
                "batch call on the compute stream / wall time (host launch gaps inside a call "
                "count as busy; uploads/downloads on their own streams are not counted)"
                if self.busy else "no pipeline calls were observed on the GPU; busy share not measured")
        return row


def measure(methods: list[dict], in_root: Path, warm_root: Path | None, scratch: Path, *,
            repeat: int = 1, log: Callable = print) -> list[dict]:
    """Warm every method up, then *repeat* rounds of one timed run per method, round-robin
    (so that a change in machine load mid-measurement does not fall on one method only)."""
    states = [_Method(m) for m in methods]
    for st in states:
        st.warm_up(warm_root, scratch)
    for r in range(repeat):
        for st in states:
            t0 = time.perf_counter()
            st.timed_run(in_root, scratch)
            if st.ok:
                log(f"  [{r + 1}/{repeat}] {st.row['label']:<54} {st.walls[-1]:8.2f} s")
            elif r == 0:
                log(f"  {st.row['label']:<60} {st.row['status']}: {st.row['note']}")
    rows = [st.finish() for st in states]
    for row in rows:
        if row["status"] == "ok":
            log(f"  {row['label']:<58} {row['images_s']:8.2f} img/s {row['mpix_s']:8.2f} MPix/s "
                f"{row['wall_s']:8.2f} s")
    return rows


def check_equal(in_root: Path, scratch: Path, k: int = CHECK_FILES) -> dict:
    """Do gpuenhance[cpu] and the plain OpenCV loop compute the same images? (see module doc)"""
    from gpuenhance import Pipeline
    from gpuenhance.io import read_image

    files = list_inputs(in_root)
    jpgs = [f for f in files if f.suffix == ".jpg"][: (k + 1) // 2]
    pngs = [f for f in files if f.suffix == ".png"][: k // 2]
    chosen = jpgs + pngs
    pipe, lut = Pipeline(SPEC), gamma_lut()
    sub_in = scratch / "check-in"
    for f in chosen:  # a folder of just these files, same relative layout
        dst = sub_in / f.relative_to(in_root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dst)
    out_ge, out_cv = scratch / "check-gpuenhance", scratch / "check-opencv"
    rep = pipe.run_files(sub_in, out_ge, backend="cpu")
    plain_run(sub_in, out_cv)
    details, ok = [], True
    for f in chosen:
        rel = f.relative_to(in_root)
        ge = np.asarray(pipe(read_image(f)[None], backend="cpu"))[0]
        cv = cv2.cvtColor(plain_filter(cv2.imread(str(f)), lut), cv2.COLOR_BGR2RGB)
        arrays_equal = ge.shape == cv.shape and bool(np.array_equal(ge, cv))
        max_diff = int(np.abs(ge.astype(np.int16) - cv.astype(np.int16)).max()) if ge.shape == cv.shape else None
        a = cv2.imread(str(out_ge / rel), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(out_cv / rel), cv2.IMREAD_UNCHANGED)
        files_equal = a is not None and b is not None and a.shape == b.shape and bool(np.array_equal(a, b))
        same_bytes = (out_ge / rel).exists() and (out_cv / rel).exists() and \
            (out_ge / rel).read_bytes() == (out_cv / rel).read_bytes()
        ok = ok and arrays_equal and files_equal
        details.append({"file": rel.as_posix(), "arrays_equal": arrays_equal, "max_abs_diff": max_diff,
                        "decoded_outputs_equal": files_equal, "output_bytes_identical": same_bytes})
    for d in (sub_in, out_ge, out_cv):
        shutil.rmtree(d, ignore_errors=True)
    return {
        "verdict": "PASS" if ok and rep.processed == len(chosen) else "FAIL",
        "files": len(chosen),
        "statement": (
            "gpuenhance[cpu] Pipeline on gpuenhance.io.read_image's RGB array == the OpenCV loop's "
            "result (BGR converted to RGB), exactly, for every checked JPEG and PNG input; and the "
            "output files the two write decode to identical pixels (same array, same OpenCV encoder "
            "defaults)"),
        "details": details,
    }


def run(*, n: int | None = None, size: tuple[int, int] | None = None, smoke: bool = False,
        workers: int | None = None, repeat: int = 1, data_dir: Path | None = None,
        seed: int = SEED, batch_sizes=(8, 1), log: Callable = print,
        formats: str = "both") -> dict:
    """Generate (or reuse) the inputs, time every method, check equality; return the section."""
    n = n if n is not None else (SMOKE_N if smoke else DEFAULT_N)
    size = size if size is not None else (SMOKE_SIZE if smoke else DEFAULT_SIZE)
    if n < 2:
        raise ValueError(f"n must be at least 2 (one JPEG and one PNG); got {n}")
    if formats not in FORMATS:
        raise ValueError(f"formats must be one of {FORMATS}; got {formats!r}")
    workers_resolved = workers if workers is not None else min(8, os.cpu_count() or 1)
    threads = _timing.cpu_threads()
    root = Path(data_dir) if data_dir is not None else default_data_dir(n, size, seed, formats)
    t0 = time.perf_counter()
    data = ensure_inputs(root, n, size, seed=seed, workers=threads.get("affinity_cores") or 1,
                         log=log, formats=formats)
    files = list_inputs(root)
    if len(files) != n:
        raise RuntimeError(f"{root} holds {len(files)} images, expected {n} (remove it to regenerate)")
    _warm_page_cache(files)
    gpu_problem = _timing.gpu_available()
    scratch = Path(tempfile.mkdtemp(prefix="gpuenhance-throughput-"))
    try:
        # warm-up folder: the first few files (both formats), same layout
        warm_root = scratch / "warm-in"
        for f in files[: min(4, n)]:
            dst = warm_root / f.relative_to(root)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dst)
        rows = measure(_method_table(workers_resolved, gpu_problem, batch_sizes), root,
                       None if smoke else warm_root, scratch, repeat=1 if smoke else repeat, log=log)
        check = check_equal(root, scratch)
        log(f"  check: {check['verdict']} on {check['files']} files")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    base = {r["method"]: r.get("wall_s") for r in rows if r["status"] == "ok"}
    for r in rows:
        if r["status"] != "ok":
            continue
        for key, ref in (("ratio_vs_plain", "opencv-loop"), ("ratio_vs_plain_threads", "opencv-loop-threads")):
            r[key] = base[ref] / r["wall_s"] if base.get(ref) and r["wall_s"] > 0 else None
    return {
        "status": "ok",
        "smoke": smoke,
        "description": "End to end over a folder of images: read, filter, write (bench/throughput.py).",
        "settings": {
            "n": n, "size": f"{size[0]}x{size[1]}", "seed": seed, "spec": SPEC,
            "input_jpeg_quality": JPEG_QUALITY, "jpeg": data["jpeg"], "png": data["png"],
            "input_bytes": data["bytes"], "data_dir": data["data_dir"],
            "generated": data["generated"], "generate_s": data["generate_s"],
            "workers": workers_resolved, "repeat": 1 if smoke else repeat,
            "warmup": "none (smoke)" if smoke else "one untimed run on 4 files per method",
            "cpu": threads, "cpu_model": _timing.cpu_model(),
            "opencv_threads": cv2.getNumThreads(), "gpu": gpu_problem or "available",
        },
        "rows": rows,
        "check": check,
        "wall_s": time.perf_counter() - t0,
    }


# ----------------------------------------------------------------------------- Markdown


def markdown(doc: dict) -> str:
    """The throughput section of the report (a Markdown table and its notes)."""
    if not doc:
        return ""
    out = ["\n## End-to-end file throughput\n"]
    if doc.get("status") != "ok":
        out.append(f"Throughput: {doc.get('status')}: {doc.get('note', '')}")
        return "\n".join(out)
    s = doc["settings"]
    cpu = s.get("cpu", {})
    out.append(
        f"{s['n']} images of {s['size']} ({s['jpeg']} JPEG q{s['input_jpeg_quality']}, {s['png']} PNG, "
        f"{s['input_bytes'] / 2**20:.0f} MiB, from the page cache), pipeline `{s['spec']}`; read, "
        f"filter, write to a fresh folder; {cpu.get('affinity_cores')} cores, OpenCV threads "
        f"{s['opencv_threads']}, {s['workers']} I/O workers; median of {s['repeat']} run(s) after "
        f"{s['warmup']}. Ratios: plain loop time / method time (> 1: faster than the plain loop)."
        + (" **Smoke run: the times mean nothing.**" if doc.get("smoke") else "") + "\n")
    out.append("| method | images/s | MPix/s | wall | × vs loop | × vs threaded loop | GPU busy "
               "| peak RSS |")
    out.append("|---|---|---|---|---|---|---|---|")
    for r in doc["rows"]:
        if r["status"] != "ok":
            out.append(f"| {r['label']} | {r['status']}: {r['note']} |||||||")
            continue
        busy = r.get("gpu_busy_share")
        ratio = lambda v: f"{v:.2f}" if v else "-"  # noqa: E731
        out.append(
            f"| {r['label']} | {r['images_s']:.2f} | {r['mpix_s']:.1f} | {r['wall_s']:.2f} s | "
            f"{ratio(r.get('ratio_vs_plain'))} | {ratio(r.get('ratio_vs_plain_threads'))} | "
            + (f"{busy:.0%}" if busy is not None else "-") + " | "
            + (f"{r['peak_rss_mib']:.0f} MiB" if r.get("peak_rss_mib") else "-") + " |")
    c = doc.get("check") or {}
    if c:
        out.append(f"\nSame result check: **{c['verdict']}** on {c['files']} files — {c['statement']}.")
    notes = sorted({r["gpu_busy_note"] for r in doc["rows"] if r.get("gpu_busy_note")})
    notes += sorted({f"{r['label']}: {r['note']}" for r in doc["rows"] if r["status"] == "ok" and r["note"]})
    out.extend(f"- {n}" for n in notes)
    return "\n".join(out)


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=None, help=f"number of images (default {DEFAULT_N}; smoke {SMOKE_N})")
    ap.add_argument("--size", type=parse_size, default=None,
                    help="WIDTHxHEIGHT (default 1920x1080; smoke 64x48)")
    ap.add_argument("--smoke", action="store_true", help="tiny images, one run, no warm-up (no timing claims)")
    ap.add_argument("--workers", type=int, default=None,
                    help="I/O workers for gpuenhance and the threaded loop (default min(8, cpu count))")
    ap.add_argument("--repeat", type=int, default=1,
                    help="timed runs per method, in round-robin rounds (median reported)")
    ap.add_argument("--data", type=Path, default=None,
                    help="input folder (generated there if missing; default: a cache under the temp folder)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--formats", choices=FORMATS, default="both",
                    help="input formats: half JPEG half PNG (default), all JPEG, or all PNG")
    ap.add_argument("--json", type=Path, default=None, help="write the section as JSON here")
    args = ap.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        ap.error("--workers must be at least 1")
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    doc = run(n=args.n, size=args.size, smoke=args.smoke, workers=args.workers, repeat=args.repeat,
              data_dir=args.data, seed=args.seed, formats=args.formats)
    print(markdown(doc))
    if args.json:
        from .report import _jsonable

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_jsonable(doc), indent=1))
        print(f"wrote {args.json}")
    return 0 if doc["check"]["verdict"] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
