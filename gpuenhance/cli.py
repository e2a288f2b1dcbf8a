"""The ``gpuenhance`` command line.

``gpuenhance run``, ``gpuenhance restore fit|apply`` and ``gpuenhance info``; see
``gpuenhance --help``. Exit codes: 0 when everything succeeded, 1 when some image failed,
2 for a usage error (bad arguments, a bad pipeline spec, a missing input, inputs with no
supported image, an output folder that cannot be used or that another run holds, an
unavailable backend), always with a one-line message and no traceback, before any work.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import _backend
from .io import DEFAULT_MAX_PIXELS, ImageReadError, find_images, read_image, write_image

__all__ = ["main", "build_parser", "contact_sheet"]

DEFAULT_PIPELINE = "median:ksize=3 | gaussian:sigma=1.2 | gamma:gamma=0.8"
BACKEND_CHOICES = ("auto", "cpu", "cuda", "cuda-emulated")
CONTACT_SHEET_WIDTH = 1200


class UsageError(Exception):
    """A problem with how the command was called (exit code 2)."""


# --------------------------------------------------------------------------- helpers


def _int_in(low: int, high: int | None = None):
    """An argparse type: an integer in [low, high] (no upper bound when *high* is None)."""
    if high is not None:
        words = f"an integer from {low} to {high}"
    else:
        words = "a positive integer" if low == 1 else f"an integer >= {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {words}; got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {words}; got {value}")
        return value

    return parse


_positive_int = _int_in(1)
_nonnegative_int = _int_in(0)


def _max_tile(text: str):
    from ._tiles import parse_max_tile

    try:
        return parse_max_tile(text, "--max-tile")
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number; got {text!r}") from None


def _add_engine_options(p: argparse.ArgumentParser, *, batch_default: int | None = 8) -> None:
    p.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default="auto",
        help="engine: auto (CUDA when a GPU works, else CPU), cpu, cuda, cuda-emulated "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--batch-size", type=_positive_int, default=batch_default, metavar="N",
        help="images per batch call (default: "
        + ("8 on CUDA, 1 on the CPU" if batch_default is None else "%(default)s") + ")",
    )


def _add_file_options(p: argparse.ArgumentParser, *, encoder: bool = False) -> None:
    p.add_argument(
        "--workers", type=_positive_int, default=None, metavar="N",
        help="decode/encode threads (default: min(8, CPU count))",
    )
    p.add_argument(
        "--max-pixels", type=_positive_int, default=DEFAULT_MAX_PIXELS, metavar="N",
        help="skip images with more pixels than this (default: %(default)s)",
    )
    if encoder:
        p.add_argument(
            "--quality", type=_int_in(1, 100), default=None, metavar="1-100",
            help="JPEG and WebP quality (default: OpenCV's: 95 for JPEG, lossless WebP)",
        )
        p.add_argument(
            "--png-compression", type=_int_in(0, 9), default=None, metavar="0-9",
            help="PNG compression level (default: OpenCV's 1)",
        )


def _progress_bar(total: int, desc: str):
    """A tqdm bar on a terminal's stderr, or None when stderr is not a terminal."""
    try:
        interactive = sys.stderr.isatty()
    except (AttributeError, ValueError):
        interactive = False
    if not interactive:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr)


REPORT_NAME = "report.json"


def _finish(report) -> int:
    """Print the failures, notes and summary of a run; its exit code."""
    for path, reason in report.failures:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    for path, note in report.notes:
        print(f"note: {path}: {note}", file=sys.stderr)
    if report.passed_over:
        counted = ", ".join(f"{n} {ext}" for ext, n in report.passed_over.items())
        print(f"gpuenhance: passed over {counted} file(s) (unsupported formats)", file=sys.stderr)
    where = f"report: {report.json_path}" if report.json_path else "nothing was written"
    print(f"gpuenhance: {report.summary()}; {where}")
    return 0 if report.ok else 1


def _run_errors():
    """The exceptions a file run raises before any work, reported as usage errors."""
    from .batch.codecs import GpuCodecUnavailableError
    from .batch.outdir import OutputFolderError
    from .batch.plan import NoImagesError

    return (NoImagesError, OutputFolderError, FileNotFoundError, GpuCodecUnavailableError)


def _to_display(img: np.ndarray) -> np.ndarray:
    """An image as (H, W, 3) uint8 RGB for display (alpha dropped, 16-bit scaled down)."""
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = (np.clip(img.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def contact_sheet(pairs, width: int = CONTACT_SHEET_WIDTH, gap: int = 4) -> np.ndarray:
    """Before/after rows: each pair side by side, rows stacked on a white background.

    Parameters
    ----------
    pairs : iterable of (numpy.ndarray, numpy.ndarray)
        (original, enhanced) images; a row is scaled down (never up) so that it fits in
        *width* pixels.
    width : int, optional
        Largest sheet width in pixels; the sheet is as wide as its widest row.
    gap : int, optional
        White space between and around images.

    Returns
    -------
    numpy.ndarray
        (H, W, 3) uint8 RGB with W <= *width*.

    Examples
    --------
    >>> import numpy as np
    >>> sheet = contact_sheet([(np.zeros((10, 20), np.uint8), np.ones((10, 20), np.uint8))])
    >>> sheet.shape
    (18, 52, 3)
    """
    import cv2

    rows = []
    half = (width - 3 * gap) // 2
    for before, after in pairs:
        images = [_to_display(before), _to_display(after)]
        scale = min(1.0, half / max(img.shape[1] for img in images))
        scaled = []
        for img in images:
            size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
            if size != (img.shape[1], img.shape[0]):
                img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            scaled.append(img)
        rows.append(scaled)
    if not rows:
        raise ValueError("pairs must hold at least one (before, after) pair; got none")
    sheet_w = max(sum(img.shape[1] for img in row) + 3 * gap for row in rows)
    sheet_h = sum(max(img.shape[0] for img in row) + gap for row in rows) + gap
    sheet = np.full((sheet_h, sheet_w, 3), 255, np.uint8)
    y = gap
    for row in rows:
        x = gap
        for img in row:
            sheet[y : y + img.shape[0], x : x + img.shape[1]] = img
            x += img.shape[1] + gap
        y += max(img.shape[0] for img in row) + gap
    return sheet


# --------------------------------------------------------------------------- commands


class _Bar:
    """A progress bar started once the run knows how many inputs it has (tqdm on a
    terminal's stderr; nothing otherwise)."""

    def __init__(self, desc: str):
        self.desc = desc
        self.bar = None

    def start(self, total: int) -> None:
        self.bar = _progress_bar(total, self.desc)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _run_files(run, *args, desc: str, **kwargs):
    """Call a file runner with the command line's progress bar and report file; a refusal it
    raises before any work becomes a usage error."""
    bar = _Bar(desc)
    try:
        return run(*args, progress=bar.update, on_start=bar.start, report_name=REPORT_NAME,
                   **kwargs)
    except _run_errors() as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:  # a bad --max-tile for this pipeline, found before any work
        raise UsageError(str(exc)) from None
    finally:
        bar.close()


def _cmd_run(args) -> int:
    from .batch.runner import run_files
    from .pipeline import Pipeline

    try:
        pipeline = Pipeline(args.pipeline)
    except ValueError as exc:
        raise UsageError(f"--pipeline: {exc}") from None
    _backend.require(args.backend)
    out_dir = Path(args.output)
    use_samples = not args.inputs
    if use_samples:
        from .samples import sample_paths

        inputs = [str(p) for p in sample_paths()]
    else:
        inputs = args.inputs
    options = {}
    if args.scheduler is not None:  # one task per batch of files on a Dask cluster
        if args.scheduler != "local" and "://" not in args.scheduler:
            raise UsageError(f"--scheduler must be 'local' or an address such as "
                             f"tcp://host:8786; got {args.scheduler!r}")
        if args.resume:
            raise UsageError("--resume cannot be combined with --scheduler")
        try:
            from .dask import run_files as dask_run_files
            import distributed  # noqa: F401
        except ImportError as exc:
            raise UsageError(f"--scheduler needs the dask extra "
                             f"(pip install 'gpuenhance[dask]'): {exc}") from None

        def run_files(func, *a, label=None, **kw):
            try:
                return dask_run_files(func, *a, scheduler=args.scheduler, label=label, **kw)
            except ConnectionError as exc:
                raise UsageError(str(exc)) from None
    else:
        options["resume"] = args.resume

    report = _run_files(
        run_files,
        pipeline,
        inputs,
        out_dir,
        desc="gpuenhance run",
        label=pipeline.spec,
        backend=args.backend,
        batch_size=args.batch_size,
        workers=args.workers,
        max_pixels=args.max_pixels,
        max_tile=args.max_tile,
        quality=args.quality,
        png_compression=args.png_compression,
        decoder=args.decoder,
        **options,
    )
    if use_samples and report.outputs:
        pairs = [(read_image(src), read_image(dst)) for src, dst in report.outputs]
        write_image(out_dir / "contact_sheet.png", contact_sheet(pairs))
        print(f"gpuenhance: contact sheet: {out_dir / 'contact_sheet.png'}")
    return _finish(report)


def _read_set(folder: str, max_pixels, workers) -> dict:
    try:
        files = find_images(folder)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    if not files:
        raise UsageError(f"no images found in {folder!r}")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        images = list(pool.map(lambda f: read_image(f.path, max_pixels=max_pixels), files))
    return {f.relative.as_posix(): (f.path, img) for f, img in zip(files, images)}


def _as_stack(images: list) -> np.ndarray:
    """(N, H, W, C); alpha is dropped, as ``restore apply`` (run_files) passes it through."""
    stack = np.stack(images)
    if stack.ndim == 3:
        return stack[..., None]
    return stack[..., :3] if stack.shape[-1] == 4 else stack


def _fit_image(img: np.ndarray) -> np.ndarray:
    """One image for fitting; alpha is dropped, as ``restore apply`` (run_files) passes it through."""
    return img[..., :3] if img.ndim == 3 and img.shape[-1] == 4 else img


def _mean_psnr(clean: list, images: list) -> float:
    """Mean PSNR (dB) over pairs, each on its dtype's normalized range (identical: 100 dB)."""
    from ._image import dtype_max
    from .metrics import psnr

    values = []
    for ref, img in zip(clean, images):
        ref64 = np.asarray(ref, np.float64) / dtype_max(ref.dtype)
        img64 = np.asarray(img, np.float64).reshape(ref.shape) / dtype_max(img.dtype)
        value = psnr(ref64, img64, data_range=1.0)
        values.append(min(value, 100.0))
    return float(np.mean(values))


def _validation_split(names: list, fraction: float, seed: int):
    """(training names, validation names): a seeded random ``fraction`` held out."""
    if fraction == 0:
        return names, []
    if len(names) < 2:
        raise UsageError(
            f"--val {fraction:g} holds out pairs for validation but there is only "
            f"{len(names)} pair; add pairs or pass --val 0"
        )
    n_val = min(len(names) - 1, max(1, int(round(fraction * len(names)))))
    order = np.random.default_rng(seed).permutation(len(names))
    held = sorted(names[i] for i in order[:n_val])
    return [n for n in names if n not in set(held)], held


def _fraction(text: str) -> float:
    value = _float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1); got {text!r}")
    return value


def _cmd_restore_fit(args) -> int:
    from .restore import LMSRestorer

    _backend.require(args.backend)
    workers = args.workers or 4
    try:
        degraded = _read_set(args.degraded, args.max_pixels, workers)
        clean = _read_set(args.clean, args.max_pixels, workers)
    except ImageReadError as exc:
        print(f"gpuenhance restore fit: error: {exc}", file=sys.stderr)
        return 1
    only_d = sorted(set(degraded) - set(clean))
    only_c = sorted(set(clean) - set(degraded))
    if only_d or only_c:
        parts = []
        if only_d:
            parts.append(f"{len(only_d)} only in --degraded ({', '.join(only_d[:5])})")
        if only_c:
            parts.append(f"{len(only_c)} only in --clean ({', '.join(only_c[:5])})")
        raise UsageError(
            "--degraded and --clean must hold the same relative paths; " + "; ".join(parts)
        )
    names = sorted(degraded)
    pairs = {n: (_fit_image(degraded[n][1]), _fit_image(clean[n][1])) for n in names}
    ref_name = names[0]
    ref = pairs[ref_name][0]
    for name in names:
        (d_path, _), (c_path, _) = degraded[name], clean[name]
        d, c = pairs[name]
        if c.shape != d.shape:
            raise UsageError(
                f"each clean image must have the shape of its degraded image; clean "
                f"{str(c_path)!r} is {c.shape}, degraded {str(d_path)!r} is {d.shape}"
            )
        channels = (d.shape[2] if d.ndim == 3 else 1, ref.shape[2] if ref.ndim == 3 else 1)
        if channels[0] != channels[1]:
            raise UsageError(
                f"every image must have the channels of {str(degraded[ref_name][0])!r} "
                f"({channels[1]}); {str(d_path)!r} has {channels[0]}"
            )
        if d.shape[:2] != ref.shape[:2] and args.support is None:
            raise UsageError(
                f"images of different sizes need --support R (a spatial kernel of (2R+1)² "
                f"taps fits any size): {str(degraded[ref_name][0])!r} is {ref.shape}, "
                f"{str(d_path)!r} is {d.shape}"
            )
    train, held = _validation_split(names, args.val, args.seed)
    kwargs = dict(mu=args.mu, leak=args.leak, batch_size=args.batch_size, solver=args.solver,
                  tol=args.tol, max_epochs=args.max_epochs, backend=args.backend)
    if args.support is not None:
        kwargs["support"] = args.support
    try:
        restorer = LMSRestorer(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    deg_list = [pairs[n][0] for n in train]
    cln_list = [pairs[n][1] for n in train]
    if len({(d.shape, d.dtype) for d in deg_list} | {(c.shape, c.dtype) for c in cln_list}) == 1:
        deg, cln = _as_stack(deg_list), _as_stack(cln_list)  # one stack: the fast path
    else:
        deg, cln = deg_list, cln_list
    total = 1 if args.solver == "exact" else (args.epochs or args.max_epochs)
    bar = _progress_bar(total, "gpuenhance restore fit")

    def progress(epoch, change):
        if bar is not None:
            bar.update(1)
            if change is not None:
                bar.set_postfix(change=f"{change:.1e}")

    if bar is not None:
        bar.unit = "epoch"
    try:
        restorer.fit(deg, cln, epochs=args.epochs, seed=args.seed, progress=progress)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"cannot fit on these images: {exc}") from None
    finally:
        if bar is not None:
            bar.close()
    how = ("exact solve" if args.solver == "exact" else
           f"{restorer.n_epochs_} epochs" + ("" if args.epochs else
                                             (", converged" if restorer.converged_ else
                                              f", not converged (--max-epochs {args.max_epochs})")))
    print(f"gpuenhance: fitted an LMS restoration filter on {len(train)} pairs ({how})")
    restorer.metadata["training"] = {"pairs": len(train), "epochs": restorer.n_epochs_,
                                     "converged": bool(restorer.converged_)}
    worse = False
    if held:
        val_d = [pairs[n][0] for n in held]
        val_c = [pairs[n][1] for n in held]
        restored = [restorer.restore(d) for d in val_d]
        before, after = _mean_psnr(val_c, val_d), _mean_psnr(val_c, restored)
        restorer.metadata["validation"] = {"pairs": len(held), "names": held,
                                           "psnr_degraded": before, "psnr_restored": after}
        print(f"gpuenhance: validation on {len(held)} held-out pairs: PSNR {before:.2f} dB "
              f"degraded -> {after:.2f} dB restored ({after - before:+.2f} dB)")
        worse = after < before
    if worse and not args.force:
        print(
            "gpuenhance restore fit: error: the filter makes the held-out validation images "
            "worse; not saved. Check that --degraded and --clean pair up and that the "
            "training pairs resemble the images to restore, or pass --force to keep it",
            file=sys.stderr,
        )
        return 1
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    restorer.save(out)
    if worse:
        print("gpuenhance: warning: kept (--force) although it makes validation images worse",
              file=sys.stderr)
    print(f"gpuenhance: saved {out}")
    return 0


def _validation_note(restorer) -> str:
    """What ``restore fit`` recorded about the filter's held-out validation."""
    val = restorer.metadata.get("validation")
    if not val:
        return "the filter records no validation (fitted with --val 0, or not by 'restore fit')"
    gain = val["psnr_restored"] - val["psnr_degraded"]
    return (f"the filter's validation: PSNR {val['psnr_degraded']:.2f} dB -> "
            f"{val['psnr_restored']:.2f} dB ({gain:+.2f} dB) on {val['pairs']} held-out pairs")


def _cmd_restore_apply(args) -> int:
    from .batch.runner import run_files
    from .restore import LMSRestorer

    _backend.require(args.backend)
    try:
        restorer = LMSRestorer.load(args.filter)
    except FileNotFoundError as exc:
        raise UsageError(f"--filter: {exc}") from None
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"--filter: cannot load {args.filter!r}: {exc}") from None
    print(f"gpuenhance: {_validation_note(restorer)}")

    def apply(batch, backend=None):
        restorer.backend = backend  # the engine run_files resolved for this run
        return restorer.restore(batch)

    report = _run_files(
        run_files,
        apply,
        args.inputs,
        Path(args.output),
        desc="gpuenhance restore",
        label=f"restore:filter={args.filter}",
        backend=args.backend,
        batch_size=args.batch_size,
        workers=args.workers,
        max_pixels=args.max_pixels,
    )
    return _finish(report)


def _format_info(report: dict) -> str:
    lines = []
    for key in ("gpuenhance", "python", "numpy", "opencv", "cupy"):
        value = report.get(key)
        lines.append(f"{key + ':':<12}{value if value is not None else 'not installed'}")
    if "jpeg_codec" in report:
        lines.append(f"{'jpeg codec:':<12}{report['jpeg_codec']}")
    lines.append("engines:")
    for name, state in report.get("engines", {}).items():
        lines.append(f"  {name + ':':<15}{state}")
    gpus = report.get("gpus", [])
    lines.append("gpus:" + ("" if gpus else "        none"))
    for gpu in gpus:
        lines.append(
            f"  [{gpu['index']}] {gpu['name']} (compute {gpu['compute_capability']}, "
            f"{gpu['memory_gib']} GiB)"
        )
    return "\n".join(lines)


def _cmd_info(args) -> int:
    from . import info

    from .batch.codecs import gpu_codec_problem

    report = info()
    problem = gpu_codec_problem()
    report["jpeg_codec"] = ("gpu (nvImageCodec)" if problem is None
                            else f"cpu (OpenCV); the GPU codec is unavailable: {problem}")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(_format_info(report))
    return 0


# --------------------------------------------------------------------------- parser


def _stage_epilog() -> str:
    """The --pipeline stages and their parameters, from the pipeline's stage table."""
    from .pipeline import stage_help

    return stage_help()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``gpuenhance`` command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="gpuenhance",
        description="Enhance and restore images in batches on a GPU (or the CPU).",
    )
    parser.add_argument("--version", action="version", version=f"gpuenhance {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser(
        "run",
        help="run an enhancement pipeline over image files",
        description="Run a pipeline over image files (folders recurse, globs expand). "
        "With no INPUT, runs on the bundled sample photos and writes OUT/contact_sheet.png.",
        epilog=_stage_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("inputs", nargs="*", metavar="INPUT", help="files, folders or glob patterns")
    run.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    run.add_argument(
        "--pipeline", default=DEFAULT_PIPELINE, metavar="SPEC",
        help='stages separated by "|", e.g. "median:ksize=3 | gaussian:sigma=1.2 | '
        'gamma:gamma=0.8" (default: %(default)s)',
    )
    _add_engine_options(run, batch_default=None)
    _add_file_options(run, encoder=True)
    run.add_argument(
        "--decoder", choices=("auto", "gpu", "cpu"), default="auto",
        help="where JPEGs are decoded and encoded on the CUDA engine: gpu (nvImageCodec, pixels "
        "stay on the device), cpu (OpenCV, pixels identical to the CPU engine's), auto (gpu "
        "where nvImageCodec works, else cpu with a warning) (default: %(default)s)",
    )
    run.add_argument(
        "--max-tile", type=_max_tile, default=None, metavar="N|HxW",
        help="process images in tiles of at most N x N (or H x W) pixels, halos included; "
        "the result is identical to whole-image processing (default: whole images)",
    )
    run.add_argument(
        "--resume", action="store_true",
        help="skip inputs whose output an earlier run into OUT finished (per "
        "OUT/.gpuenhance-manifest.jsonl: same pipeline, input unchanged, output present)",
    )
    run.add_argument(
        "--scheduler", default=None, metavar="local|tcp://HOST:PORT",
        help="spread batches of files over a Dask cluster: 'local' starts one on this machine "
        "(a worker per GPU with dask-cuda), an address joins a running scheduler; needs "
        "gpuenhance[dask] (default: run in this process)",
    )
    run.set_defaults(handler=_cmd_run)

    from .restore import DEFAULT_MAX_EPOCHS, DEFAULT_TOL, SOLVERS

    restore = sub.add_parser("restore", help="learn or apply an FFT-LMS restoration filter")
    rsub = restore.add_subparsers(dest="restore_command", metavar="ACTION")
    rsub.required = True

    fit = rsub.add_parser(
        "fit",
        help="learn a filter from (degraded, clean) pairs",
        description="Learn a restoration filter from images paired by relative path.",
    )
    fit.add_argument("--degraded", required=True, metavar="DIR", help="folder of degraded images")
    fit.add_argument("--clean", required=True, metavar="DIR", help="folder of clean images")
    fit.add_argument("-o", "--output", required=True, metavar="FILTER", help="filter file (.npz)")
    fit.add_argument("--solver", choices=SOLVERS, default=SOLVERS[0],
                     help="nlms: iterate until converged; exact: solve in one pass "
                     "(default: %(default)s)")
    fit.add_argument("--epochs", type=_positive_int, default=None, metavar="N",
                     help="exactly N NLMS passes at a constant step (default: until the filter "
                     "changes by less than --tol over a pass, at most --max-epochs)")
    fit.add_argument("--tol", type=_float, default=DEFAULT_TOL,
                     help="convergence tolerance (default: %(default)s)")
    fit.add_argument("--max-epochs", type=_positive_int, default=DEFAULT_MAX_EPOCHS, metavar="N",
                     help="most passes when converging (default: %(default)s)")
    fit.add_argument("--mu", type=_float, default=0.5, help="NLMS step size (default: %(default)s)")
    fit.add_argument("--leak", type=_float, default=0.0, help="leakage (default: %(default)s)")
    fit.add_argument("--support", type=_nonnegative_int, default=None, metavar="R",
                     help="spatial support radius of the filter; lets images of different "
                     "sizes train one filter (default: unrestricted)")
    fit.add_argument("--val", type=_fraction, default=0.1, metavar="F",
                     help="fraction of the pairs held out to validate the filter; 0 skips "
                     "(default: %(default)s)")
    fit.add_argument("--seed", type=_nonnegative_int, default=0,
                     help="seed of the validation split and of the pass order (default: %(default)s)")
    fit.add_argument("--force", action="store_true",
                     help="save the filter even when it makes the validation images worse")
    _add_engine_options(fit)
    _add_file_options(fit)
    fit.set_defaults(handler=_cmd_restore_fit)

    apply = rsub.add_parser(
        "apply",
        help="restore images with a learned filter",
        description="Restore image files with a filter from 'gpuenhance restore fit'.",
    )
    apply.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders or glob patterns")
    apply.add_argument("--filter", required=True, metavar="FILTER", help="filter file (.npz)")
    apply.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    _add_engine_options(apply, batch_default=None)
    _add_file_options(apply)
    apply.set_defaults(handler=_cmd_restore_apply)

    info_p = sub.add_parser("info", help="versions, engines and GPUs")
    info_p.add_argument("--json", action="store_true", help="print JSON")
    info_p.set_defaults(handler=_cmd_info)

    return parser


def main(argv=None) -> int:
    """Run the command line with *argv* (default: ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or an argparse usage error (code 2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    command = args.command + (f" {args.restore_command}" if args.command == "restore" else "")

    def show_warning(message, category, filename, lineno, file=None, line=None):
        print(f"gpuenhance {command}: warning: {message}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            return args.handler(args)
    except UsageError as exc:
        print(f"gpuenhance {command}: error: {exc}", file=sys.stderr)
        return 2
    except _backend.BackendUnavailableError as exc:
        print(f"gpuenhance {command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gpuenhance {command}: interrupted", file=sys.stderr)
        return 130
