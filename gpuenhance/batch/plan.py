"""Everything a run decides before any work: the engine, the outputs of its inputs (refusing
unsafe ones), the tile and encoder settings."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from .. import _tiles, _validate
from ..io import SUPPORTED_EXTENSIONS, find_images
from . import outdir
from .report import RunReport

__all__ = [
    "NoImagesError",
    "check_tile",
    "encoder_settings",
    "plan_outputs",
    "prepare_run",
]


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


class NoImagesError(FileNotFoundError):
    """The inputs hold no image of a supported format; the message counts what was passed
    over, by extension."""


def prepare_run(inputs, out_dir, report: RunReport) -> list[tuple[Path, Path]]:
    """Everything a run checks before any work: the output folder, the inputs, their outputs.

    Refuses an output folder that cannot be used
    (:class:`gpuenhance.batch.outdir.OutputFolderError`) and inputs that hold no supported
    image (:class:`NoImagesError`); records the files passed over and the refused outputs in
    *report*. Returns ``(plan, files)``: the ``(input, output)`` pairs to write and the
    :class:`gpuenhance.io.ImageFile` list found. Nothing is created or written.
    """
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    out_dir = outdir.check_output_folder(out_dir, [p for p in items if Path(p).is_dir()])
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
    (1 to 100) and PNG compression level (0 to 9).

    Left unset, a format gets no parameter at all, so OpenCV encodes it exactly as by default:
    JPEG quality 95, lossless WebP, PNG level 1 with the RLE strategy (naming level 1 would
    switch OpenCV to its default strategy: other bytes, twice the time).
    """
    import cv2

    params = {}
    report = {"jpeg_quality": 95, "webp_quality": "lossless", "png_compression": 1}
    if png_compression is not None:
        level = _validate.integer(png_compression, "png_compression", low=0, high=9)
        params[".png"] = (cv2.IMWRITE_PNG_COMPRESSION, level)
        report["png_compression"] = level
    if quality is not None:
        quality = _validate.integer(quality, "quality", low=1, high=100)
        params[".jpg"] = params[".jpeg"] = (cv2.IMWRITE_JPEG_QUALITY, quality)
        params[".webp"] = (cv2.IMWRITE_WEBP_QUALITY, quality)
        report.update(jpeg_quality=quality, webp_quality=quality)
    return report, params
