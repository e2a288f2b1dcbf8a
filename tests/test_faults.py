"""Whole runs under faults: nothing lost, nothing written where it must not be.

Every test checks that the set of outputs equals the set of good inputs and that each output
is byte-identical to a clean run (the oracle: the same run over a folder holding only the good
inputs), and that failures name the bad files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from gpuenhance import Pipeline
from gpuenhance.cli import main
from gpuenhance.io import ImageFile, write_image
from gpuenhance.pipeline import MANIFEST_NAME

REPO = Path(__file__).resolve().parents[1]
SPEC = "median:ksize=3 | gaussian:sigma=0.8 | gamma:gamma=0.7"


def _outputs(folder: Path) -> dict[str, bytes]:
    """Image outputs under *folder* (relative posix path -> bytes), hidden files excluded."""
    out = {}
    for p in folder.rglob("*"):
        rel = p.relative_to(folder)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts) and p.name != "report.json":
            out[rel.as_posix()] = p.read_bytes()
    return out


def _hidden_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.endswith(".tmp")]


def _good_images(root: Path, rng, n=3) -> dict[str, np.ndarray]:
    images = {f"good{i}.png": rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8) for i in range(n)}
    images["sub/gray.png"] = rng.integers(0, 256, size=(12, 9), dtype=np.uint8)
    for rel, img in images.items():
        write_image(root / rel, img)
    return images


def _clean_run(tmp_path: Path, images: dict, spec=SPEC, **kw) -> dict[str, bytes]:
    clean_in = tmp_path / "clean_in"
    for rel, img in images.items():
        write_image(clean_in / rel, img)
    report = Pipeline(spec).run_files(clean_in, tmp_path / "clean_out", backend="cpu", **kw)
    assert report.ok and report.processed == len(images)
    return _outputs(tmp_path / "clean_out")


def _png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG header (IHDR with a valid CRC) claiming width x height, tiny body."""
    ihdr = np.array([width, height], ">u4").tobytes() + bytes([8, 0, 0, 0, 0])
    chunk = b"IHDR" + ihdr
    crc = zlib.crc32(chunk).to_bytes(4, "big")
    idat = zlib.compress(b"\x00" * 64)
    idat_chunk = b"IDAT" + idat
    return (b"\x89PNG\r\n\x1a\n" + len(ihdr).to_bytes(4, "big") + chunk + crc
            + len(idat).to_bytes(4, "big") + idat_chunk + zlib.crc32(idat_chunk).to_bytes(4, "big")
            + (0).to_bytes(4, "big") + b"IEND" + zlib.crc32(b"IEND").to_bytes(4, "big"))


# --------------------------------------------------------------------------- bad inputs


def test_bad_files_are_reported_and_the_rest_is_exact(tmp_path, rng):
    src = tmp_path / "in"
    good = _good_images(src, rng)
    png = cv2.imencode(".png", good["good0.png"])[1].tobytes()
    jpg = cv2.imencode(".jpg", good["good0.png"])[1].tobytes()
    bad = {
        "empty.png": b"",
        "truncated.png": png[: len(png) * 2 // 3],
        "truncated.jpg": jpg[: len(jpg) // 2],
        "corrupt.png": png[:40] + bytes(200) + png[-12:],  # header and IEND, garbage between
        "noise.jpg": rng.bytes(300),
        "bomb.png": _png_claiming(200_000, 200_000),
        "wide.png": _png_claiming(5000, 3),
    }
    for rel, data in bad.items():
        (src / rel).write_bytes(data)
    (src / "notes.gif").write_bytes(b"GIF89a")
    report = Pipeline(SPEC).run_files([src, src / "notes.gif"], tmp_path / "out", backend="cpu",
                                      max_pixels=10_000)
    failed = {Path(p).name: reason for p, reason in report.failures}
    assert sorted(failed) == sorted([*bad, "notes.gif"])
    assert "exceeds max_pixels=10000" in failed["bomb.png"] and "40000000000" in failed["bomb.png"]
    assert "exceeds max_pixels" in failed["wide.png"]
    assert "empty" in failed["empty.png"] and "unsupported" in failed["notes.gif"]
    assert report.processed == len(good)
    assert _outputs(tmp_path / "out") == _clean_run(tmp_path, good)
    assert _hidden_leftovers(tmp_path / "out") == []


def test_max_pixels_is_configurable_from_the_cli(tmp_path, rng):
    src = tmp_path / "in"
    good = _good_images(src, rng)
    (src / "bomb.png").write_bytes(_png_claiming(70_000, 70_000))
    code = main(["run", str(src), "-o", str(tmp_path / "out"), "--pipeline", SPEC, "--backend",
                 "cpu", "--max-pixels", "1000"])
    assert code == 1
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [Path(f["path"]).name for f in report["failures"]] == ["bomb.png"]
    assert "exceeds max_pixels=1000" in report["failures"][0]["reason"]
    assert _outputs(tmp_path / "out") == _clean_run(tmp_path, good)


def test_a_batch_whose_processing_fails_loses_only_its_images(tmp_path, rng):
    from gpuenhance.pipeline import run_files

    src = tmp_path / "in"
    good = _good_images(src, rng)
    write_image(src / "odd.png", np.zeros((5, 6), np.uint8))  # the only 5x6 image
    pipe = Pipeline(SPEC)

    def flaky(batch, backend=None):
        if batch.shape[1:3] == (5, 6):
            raise RuntimeError("device fault")
        return pipe(batch, backend=backend)

    report = run_files(flaky, src, tmp_path / "out", backend="cpu", batch_size=2, label=SPEC)
    assert [Path(p).name for p, _ in report.failures] == ["odd.png"]
    assert "device fault" in report.failures[0][1]
    assert _outputs(tmp_path / "out") == _clean_run(tmp_path, good, batch_size=2)


def test_out_of_memory_in_a_run_is_survived_by_splitting_and_tiling(tmp_path, rng, monkeypatch):
    """A fake OOM above a size: batches split, single images tiled; outputs still exact."""
    src = tmp_path / "in"
    good = _good_images(src, rng, n=5)
    calls = []
    real_call = Pipeline.__call__

    def limited(self, batch, backend=None, *, max_tile=None):
        if max_tile is None and batch.ndim == 4:
            calls.append(batch.shape)
            if batch.shape[0] * batch.shape[1] * batch.shape[2] > 12 * 23:
                raise MemoryError("fake: out of device memory")
        return real_call(self, batch, backend, max_tile=max_tile)

    monkeypatch.setattr(Pipeline, "__call__", limited)
    report = Pipeline(SPEC).run_files(src, tmp_path / "out", backend="cpu", batch_size=4)
    monkeypatch.undo()
    assert report.ok and report.processed == len(good)
    assert any(s[0] == 1 and s[1] < 17 for s in calls)  # a single image went through tiles
    assert _outputs(tmp_path / "out") == _clean_run(tmp_path, good)


def test_max_tile_run_equals_whole_image_run(tmp_path, rng):
    src = tmp_path / "in"
    good = _good_images(src, rng)
    code = main(["run", str(src), "-o", str(tmp_path / "out"), "--pipeline", SPEC, "--backend",
                 "cpu", "--max-tile", "9x11"])  # the least the pipeline's halo of 4 allows
    assert code == 0
    assert _outputs(tmp_path / "out") == _clean_run(tmp_path, good)
    assert main(["run", str(src), "-o", str(tmp_path / "o2"), "--max-tile", "3x"]) == 2


# --------------------------------------------------------------------------- unsafe paths


def test_outputs_never_escape_the_output_folder(tmp_path, rng):
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = rng.integers(0, 256, size=(8, 8), dtype=np.uint8)
    write_image(outside / "secret.png", secret)
    src = tmp_path / "in"
    good = _good_images(src, rng)
    os.symlink(outside / "secret.png", src / "link_to_file.png")  # input symlink: read, not written
    os.symlink(outside, src / "linkdir")  # a symlinked folder is not walked into
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    os.symlink(outside, out / "evil")  # an output sub-folder pointing outside
    os.symlink(outside / "x.png", out / "link_to_file.png")
    src_evil = tmp_path / "in2" / "evil"
    write_image(src_evil / "escape.png", np.zeros((4, 4), np.uint8))
    before = {p.name: p.read_bytes() for p in outside.iterdir()}
    report = Pipeline(SPEC).run_files([src, tmp_path / "in2"], out, backend="cpu")
    reasons = {Path(p).name: r for p, r in report.failures}
    assert set(reasons) == {"escape.png", "link_to_file.png"}
    assert all("would leave" in r for r in reasons.values())
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == before  # nothing written there
    assert _outputs(out) == _clean_run(tmp_path, good)


def test_dotdot_and_absolute_relative_paths_are_refused(tmp_path, rng, monkeypatch):
    import gpuenhance.batch.plan as pl

    src = tmp_path / "in"
    good = _good_images(src, rng)
    files = pl.find_images(src)
    evil = src / "good0.png"
    monkeypatch.setattr(pl, "find_images", lambda inputs, exclude=(), passed_over=None: files + [
        ImageFile(evil, Path("../escaped.png")),
        ImageFile(evil, Path("sub/../../escaped2.png")),
        ImageFile(evil, tmp_path / "abs.png"),
    ])
    report = Pipeline(SPEC).run_files(src, tmp_path / "out", backend="cpu")
    assert len(report.failures) == 3
    assert all("would leave" in r for _, r in report.failures)
    assert not (tmp_path / "escaped.png").exists() and not (tmp_path / "abs.png").exists()
    assert not (tmp_path / "escaped2.png").exists()
    monkeypatch.undo()
    assert _outputs(tmp_path / "out") == _clean_run(tmp_path, good)


def test_output_folder_given_as_a_symlink_is_written_through(tmp_path, rng):
    src = tmp_path / "in"
    good = _good_images(src, rng)
    real = tmp_path / "real_out"
    real.mkdir()
    os.symlink(real, tmp_path / "out_link")
    report = Pipeline(SPEC).run_files(src, tmp_path / "out_link", backend="cpu")
    assert report.ok
    assert _outputs(real) == _clean_run(tmp_path, good)


# --------------------------------------------------------------------------- resume


def _manifest_entries(out: Path) -> dict[str, dict]:
    path = out / MANIFEST_NAME
    entries = {}
    if path.exists():
        for line in path.read_bytes().split(b"\n")[:-1]:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            entries[e["output"]] = e
    return entries


def test_resume_after_sigkill_finishes_the_rest_without_redoing(tmp_path, rng):
    spec = "median:ksize=9 | gamma:gamma=0.8"  # uint16 median 9: NumPy path, ~30 ms an image
    src = tmp_path / "in"
    images = {f"img{i:02d}.png": rng.integers(0, 65536, size=(64, 64, 3)).astype(np.uint16)
              for i in range(40)}
    for rel, img in images.items():
        write_image(src / rel, img)
    (src / "bad_empty.png").write_bytes(b"")
    (src / "bad_noise.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(100))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpuenhance", "run", str(src), "-o", str(out), "--pipeline", spec,
         "--backend", "cpu", "--batch-size", "1", "--workers", "1"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    try:
        while len(_manifest_entries(out)) < 3:
            assert proc.poll() is None, "the run finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.002)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = _manifest_entries(out)
    assert 3 <= len(done) < len(images)
    before = {rel: os.stat(out / rel) for rel in done}
    # what a kill mid-write leaves: a gpuenhance temp file, and an output not yet in the
    # manifest; beside them a user's file that merely looks like a temporary file
    todo = sorted(set(images) - set(done))
    (out / f".gpuenhance-0123456789abcdef.{todo[-1]}.tmp").write_bytes(b"partial")
    (out / f".{todo[-1]}.0123456789ab.tmp").write_bytes(b"the user's own")
    (out / todo[-1]).write_bytes(b"\x89PNG partial output")

    code = main(["run", str(src), "-o", str(out), "--pipeline", spec, "--backend", "cpu",
                 "--batch-size", "4", "--resume"])
    assert code == 1  # the two bad inputs are reported again
    report = json.loads((out / "report.json").read_text())
    assert report["skipped"] == len(done)
    assert report["processed"] == len(images) - len(done)
    assert sorted(Path(f["path"]).name for f in report["failures"]) == ["bad_empty.png", "bad_noise.png"]
    for rel, st in before.items():  # finished outputs were not redone
        now = os.stat(out / rel)
        assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    assert _hidden_leftovers(out) == [f".{todo[-1]}.0123456789ab.tmp"]
    assert (out / f".{todo[-1]}.0123456789ab.tmp").read_bytes() == b"the user's own"
    clean = tmp_path / "clean"
    assert Pipeline(spec).run_files(src, clean, backend="cpu").processed == len(images)
    assert _outputs(out) == _outputs(clean)
    assert set(_manifest_entries(out)) == set(images)


def test_resume_redoes_changed_inputs_and_a_changed_pipeline(tmp_path, rng):
    src = tmp_path / "in"
    good = _good_images(src, rng)
    out = tmp_path / "out"
    first = Pipeline(SPEC).run_files(src, out, backend="cpu")
    assert first.processed == len(good) and first.skipped == 0
    again = Pipeline(SPEC).run_files(src, out, backend="cpu", resume=True)
    assert again.skipped == len(good) and again.processed == 0 and "skipped" in again.summary()
    # a changed input, a deleted output and a damaged output are redone
    good["good0.png"] = rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8)
    write_image(src / "good0.png", good["good0.png"])
    (out / "good1.png").unlink()
    (out / "sub" / "gray.png").write_bytes(b"junk")
    third = Pipeline(SPEC).run_files(src, out, backend="cpu", resume=True)
    assert third.skipped == len(good) - 3 and third.processed == 3
    assert _outputs(out) == _clean_run(tmp_path, good)
    # another pipeline redoes everything
    other = "median:ksize=5"
    fourth = Pipeline(other).run_files(src, out, backend="cpu", resume=True)
    assert fourth.skipped == 0 and fourth.processed == len(good)
    assert _outputs(out) == _clean_run(tmp_path / "o", good, spec=other)
    # without --resume the manifest starts afresh and everything is processed
    fifth = Pipeline(other).run_files(src, out, backend="cpu")
    assert fifth.skipped == 0 and fifth.processed == len(good)
    assert len(_manifest_entries(out)) == len(good)
