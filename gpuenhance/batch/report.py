"""What a file run did: one :class:`FileResult` per file, merged into a :class:`RunReport`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ..io import write_bytes_atomically

__all__ = ["FileResult", "RunReport", "add_results"]


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
    decoder : str
        Where JPEGs were decoded and encoded: ``"gpu"`` (nvImageCodec) or ``"cpu"`` (OpenCV).
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
    decoder: str = "cpu"
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
