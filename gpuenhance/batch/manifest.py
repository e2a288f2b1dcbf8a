"""The resume manifest of an output folder: one JSON line per finished output."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from ..io import write_bytes_atomically

__all__ = ["MANIFEST_NAME", "Manifest"]

#: The resume manifest in an output folder: one JSON line per finished output.
MANIFEST_NAME = ".gpuenhance-manifest.jsonl"

class Manifest:
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
