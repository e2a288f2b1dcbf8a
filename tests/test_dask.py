"""Scale-out on Dask: ``gpuenhance.dask.enhance`` and ``gpuenhance.dask.run_files``.

Oracles: the pipeline run on the whole (computed) array, bit for bit; the single-process
``Pipeline.run_files`` writing the same files, byte for byte; and, for the killed-worker run,
file identities (inode, mtime, size) snapshotted at the moment of the kill plus a log of the
pipeline calls that ran to completion.
"""

from __future__ import annotations

import doctest
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dask.array", reason="the dask extra (dask[array]) is not installed")
pytest.importorskip("distributed", reason="the dask extra (distributed) is not installed")

import dask.array as da  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gpuenhance import Pipeline  # noqa: E402
from gpuenhance.cli import main  # noqa: E402
from gpuenhance.dask import _aligned_chunks, _merge_small_chunks, enhance, run_files  # noqa: E402
from gpuenhance.io import read_image, write_image  # noqa: E402

BORDERS = ("replicate", "reflect", "reflect_101", "constant")


def _random(rng, shape, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.random(shape).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True, dtype=dtype)


def _spec(border: str, dtype) -> str:
    spec = f"median:ksize=5,border={border} | gaussian:sigma=1.1,border={border}"
    if np.dtype(dtype) != np.float64:  # gamma takes uint8/uint16/float32
        spec += " | gamma:gamma=0.7"
    return spec


def _compute(x):
    return x.compute(scheduler="synchronous")


# --------------------------------------------------------------------------- enhance


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("border", BORDERS)
def test_enhance_is_bit_identical_to_the_whole_array(dtype, border):
    rng = np.random.default_rng(7)
    pipe = Pipeline(_spec(border, dtype))
    assert pipe.radius == 7
    # W = 157 so that float blocks are split even after 64-pixel alignment (see enhance).
    img = _random(rng, (24, 157, 3), dtype)
    expected = pipe(img)
    # chunks larger than, equal to and smaller than the radius (1 and 3 are merged)
    for chunks in [(13, 70, 3), (7, 9, 1), (3, 1, 2)]:
        x = da.from_array(img, chunks=chunks)
        out = enhance(x, pipe)
        assert out.dtype == img.dtype and out.shape == img.shape
        np.testing.assert_array_equal(_compute(out), expected, err_msg=f"chunks={chunks}")


@settings(max_examples=10)
@given(
    data=st.data(),
    h=st.integers(1, 30),
    w=st.integers(1, 30),
    dtype=st.sampled_from([np.uint8, np.float32]),
    border=st.sampled_from(BORDERS),
    spec=st.sampled_from(
        ["median:ksize=3", "median:ksize=7", "gaussian:ksize=5,sigma=0", "gaussian:sigma=0.8"]
    ),
)
def test_enhance_any_2d_chunking(data, h, w, dtype, border, spec):
    pipe = Pipeline(f"{spec},border={border}")
    img = _random(np.random.default_rng(h * 31 + w), (h, w), dtype)
    ch = data.draw(st.integers(1, h), label="row chunk")
    cw = data.draw(st.integers(1, w), label="column chunk")
    out = _compute(enhance(da.from_array(img, chunks=(ch, cw)), pipe))
    np.testing.assert_array_equal(out, pipe(img))


def test_enhance_batches_and_chunked_channels():
    rng = np.random.default_rng(3)
    pipe = Pipeline("gaussian:sigma=0.9,border=reflect | median:ksize=3,border=reflect_101")
    batch = _random(rng, (3, 23, 29, 4), np.uint16)
    x = da.from_array(batch, chunks=(2, 6, 5, 1))  # N and C chunked too
    out = enhance(x, pipe)
    assert out.chunks[3] == (4,)  # C rechunked to one chunk
    np.testing.assert_array_equal(_compute(out), pipe(batch))
    gray = _random(rng, (23, 29), np.float32)
    np.testing.assert_array_equal(
        _compute(enhance(da.from_array(gray, chunks=(4, 9)), pipe.spec)), pipe(gray)
    )


def test_enhance_point_pipeline_keeps_chunks():
    img = _random(np.random.default_rng(4), (17, 23, 3), np.uint8)
    x = da.from_array(img, chunks=(2, 3, 3))
    out = enhance(x, "gamma:gamma=0.5")
    assert out.chunks == x.chunks  # radius 0: map_blocks, no rechunk, no halo
    np.testing.assert_array_equal(_compute(out), Pipeline("gamma:gamma=0.5")(img))


@pytest.mark.parametrize("spec", [
    "equalize", "clahe:clip_limit=2:tile_grid=4x4", "white_balance | median:ksize=3",
    "median:ksize=3 | auto_contrast:low=1:high=99",
])
def test_enhance_statistics_stages_see_whole_images(spec):
    """Per-chunk statistics would give each chunk its own histogram: blocks hold whole images."""
    rng = np.random.default_rng(5)
    batch = _random(rng, (3, 40, 37, 3), np.uint8)
    batch[:, :20] //= 4  # a dark top half: per-chunk equalisation would differ from whole-image
    pipe = Pipeline(spec)
    out = enhance(da.from_array(batch, chunks=(2, 10, 9, 3)), pipe)
    assert out.chunks[0] == (2, 1) and out.chunks[1] == (40,) and out.chunks[2] == (37,)
    np.testing.assert_array_equal(_compute(out), pipe(batch))


def test_chunk_rules():
    assert _merge_small_chunks((1, 1, 5, 2, 9), 3) == (7, 2 + 9)
    assert _merge_small_chunks((2, 2), 7) == (4,)
    assert _merge_small_chunks((3, 0, 4), 3) == (3, 4)
    got = _aligned_chunks((50, 50, 50, 7), 64, 70)
    assert sum(got) == 157 and all(c >= 70 for c in got)
    assert all(b % 64 == 0 for b in np.cumsum(got)[:-1])


def test_enhance_errors():
    x = da.zeros((4, 5), dtype=np.uint8, chunks=2)
    with pytest.raises(TypeError, match="dask.array.Array"):
        enhance(np.zeros((4, 5), np.uint8), "median:ksize=3")
    with pytest.raises(ValueError, match="dimensions"):
        enhance(da.zeros((1, 2, 3, 4, 5), dtype=np.uint8), "median:ksize=3")
    with pytest.raises(TypeError, match="dtype"):
        enhance(x.astype(np.int32), "median:ksize=3")
    with pytest.raises(TypeError, match="pipeline"):
        enhance(x, 3)
    with pytest.raises(ValueError, match="stage 1"):
        enhance(x, "median:ksize=4")
    with pytest.raises(ValueError, match="backend"):
        enhance(x, "median:ksize=3", backend="gpu")


# --------------------------------------------------------------------------- cluster


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes, one thread each, on the CPU; shared by the module's tests."""
    from distributed import LocalCluster

    for name in ("distributed", "distributed.nanny", "distributed.scheduler", "distributed.core"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    c = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.CRITICAL,
    )
    try:
        yield c
    finally:
        c.close()


def test_enhance_on_the_cluster(cluster):
    from distributed import Client

    img = _random(np.random.default_rng(5), (40, 57, 3), np.uint8)
    pipe = Pipeline("median:ksize=3 | gaussian:sigma=1.2,border=reflect | gamma:gamma=0.8")
    with Client(cluster) as client:
        out = client.compute(enhance(da.from_array(img, chunks=(9, 11, 3)), pipe)).result()
    np.testing.assert_array_equal(out, pipe(img))


def _write_tree(root: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    images = {
        "a.png": _random(rng, (17, 23, 3), np.uint8),
        "b.png": _random(rng, (17, 23, 3), np.uint8),
        "c.png": _random(rng, (17, 23, 3), np.uint8),
        "sub/d.png": _random(rng, (9, 11), np.uint8),
        "sub/e.png": _random(rng, (13, 8, 4), np.uint8),  # RGBA: alpha passed through
        "sub/deep/f.png": _random(rng, (12, 10), np.uint16),
        "sub/deep/g.tif": _random(rng, (10, 12, 3), np.float32),
    }
    for rel, img in images.items():
        write_image(root / rel, img)
    (root / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return images


def _files(folder: Path) -> dict[str, bytes]:
    """Every non-hidden file under *folder* (relative path -> bytes), report.json excluded."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            if rel.as_posix() != "report.json":
                out[rel.as_posix()] = p.read_bytes()
    return out


def _hidden(folder: Path) -> list[str]:
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob(".*")
        if p.name != ".gpuenhance-manifest.jsonl"  # the single-process run's resume manifest
    )


def test_run_files_on_two_workers_matches_single_process(cluster, tmp_path):
    src = tmp_path / "in"
    images = _write_tree(src)
    spec = "median:ksize=3 | gaussian:sigma=1.2 | gamma:gamma=0.8"
    single = Pipeline(spec).run_files(src, tmp_path / "single", backend="cpu", batch_size=2)
    seen = []
    report = run_files(
        spec, src, tmp_path / "dask", scheduler=cluster.scheduler_address, backend="cpu",
        batch_size=2, files_per_task=2, progress=seen.append,
    )
    expected = _files(tmp_path / "single")
    assert sorted(expected) == sorted(images)
    assert _files(tmp_path / "dask") == expected  # byte-identical, every file
    assert _hidden(tmp_path / "dask") == [".gpuenhance.lock"]  # no temporary file or task record
    assert report.processed == single.processed == len(images)
    assert report.failures == single.failures
    assert [f[1] for f in report.failures] == [single.failures[0][1]]
    assert sorted(report.outputs) == sorted(
        (s, str(tmp_path / "dask" / Path(o).relative_to(tmp_path / "single")))
        for s, o in single.outputs
    )
    assert report.engine == "cpu" and report.pipeline == spec
    assert report.megapixels == pytest.approx(single.megapixels)
    assert sum(seen) == len(images) + 1
    # and the values are the pipeline's (the oracle behind both runs)
    for rel, img in images.items():
        got = read_image(tmp_path / "dask" / rel)
        if img.ndim == 3 and img.shape[2] == 4:
            np.testing.assert_array_equal(got[..., 3], img[..., 3])
            img, got = img[..., :3], got[..., :3]
        np.testing.assert_array_equal(got, Pipeline(spec)(img))


def test_run_files_refuses_like_the_single_process_run(cluster, tmp_path):
    src = tmp_path / "in"
    write_image(src / "x.png", np.zeros((6, 7), np.uint8))
    write_image(src / "out" / "y.png", np.ones((6, 7), np.uint8))
    # y.png inside the output folder, named as a file: its output would overwrite it
    inputs = [src / "x.png", src / "out" / "y.png"]
    single = Pipeline("median:ksize=3").run_files(inputs, src / "out", backend="cpu")
    y_before = (src / "out" / "y.png").read_bytes()
    report = run_files(
        "median:ksize=3", inputs, src / "out", scheduler=cluster.scheduler_address,
        backend="cpu",
    )
    assert report.failures == single.failures and len(report.failures) == 1
    assert "refusing to overwrite" in report.failures[0][1]
    assert (src / "out" / "y.png").read_bytes() == y_before
    assert report.processed == 1


def test_run_files_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="scheduler"):
        run_files("median:ksize=3", tmp_path, tmp_path / "o", scheduler="localhost")
    with pytest.raises(ValueError, match="files_per_task"):
        run_files("median:ksize=3", tmp_path, tmp_path / "o", files_per_task=0)
    with pytest.raises(ValueError, match="resume"):
        run_files("median:ksize=3", tmp_path, tmp_path / "o", resume=True)
    with pytest.raises(FileNotFoundError):
        run_files("median:ksize=3", tmp_path / "missing", tmp_path / "o")
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- a worker dies

_CALLS_IN_THIS_PROCESS = []


class _KillOnce:
    """A pipeline wrapper whose worker process SIGKILLs itself once per test.

    On its second call in a process, if no process has died yet (an O_EXCL marker in
    *state*), it waits until the output of its first call is on disk, snapshots the identity
    of every output present, logs the image it was given as "killed", and kills its own
    process. Every call that completes logs "done <image hash> <pid>".
    """

    def __init__(self, spec: str, state: str, outputs: dict[str, str]):
        self.pipe = Pipeline(spec)
        self.state = state
        self.outputs = outputs  # image hash -> output path

    def _log(self, line: str) -> None:
        fd = os.open(os.path.join(self.state, "calls.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def __call__(self, batch, backend=None):
        digest = hashlib.sha1(np.ascontiguousarray(batch).tobytes()).hexdigest()
        _CALLS_IN_THIS_PROCESS.append(digest)
        if len(_CALLS_IN_THIS_PROCESS) == 2:
            try:
                os.close(os.open(os.path.join(self.state, "killed"), os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                first = Path(self.outputs[_CALLS_IN_THIS_PROCESS[0]])
                deadline = time.monotonic() + 20
                while not first.exists() and time.monotonic() < deadline:
                    time.sleep(0.01)
                snap = {}
                for path in self.outputs.values():
                    try:
                        s = os.stat(path)
                    except FileNotFoundError:
                        continue
                    snap[path] = [s.st_ino, s.st_mtime_ns, s.st_size]
                Path(self.state, "snapshot.json").write_text(json.dumps(snap))
                self._log(f"killed {digest} {os.getpid()}")
                os.kill(os.getpid(), signal.SIGKILL)
        out = self.pipe(batch, backend=backend)
        self._log(f"done {digest} {os.getpid()}")
        return out


def test_a_killed_worker_still_writes_every_output_once(cluster, tmp_path):
    spec = "median:ksize=3 | gamma:gamma=0.6"
    src, out, state = tmp_path / "in", tmp_path / "out", tmp_path / "state"
    state.mkdir()
    rng = np.random.default_rng(21)
    hashes = {}
    for i in range(6):
        img = _random(rng, (17, 23, 3), np.uint8)
        write_image(src / f"im{i}.png", img)
        hashes[hashlib.sha1(img[None].tobytes()).hexdigest()] = str(out / f"im{i}.png")
    Pipeline(spec).run_files(src, tmp_path / "single", backend="cpu")
    killer = _KillOnce(spec, str(state), hashes)
    # 2 tasks of 3 files, one image per pipeline call: each worker runs one task
    report = run_files(
        killer, src, out, scheduler=cluster.scheduler_address, backend="cpu",
        batch_size=1, files_per_task=3, retries=0,
    )
    assert (state / "killed").exists(), "no worker was killed: the test did not test anything"
    assert report.ok and report.processed == 6
    assert _files(out) == _files(tmp_path / "single")  # every output, byte-identical
    assert _hidden(out) == [".gpuenhance.lock"]  # no temporary file, no task record left behind
    log = [line.split() for line in (state / "calls.log").read_text().splitlines()]
    killed = [h for kind, h, _ in log if kind == "killed"]
    done = [h for kind, h, _ in log if kind == "done"]
    assert len(killed) == 1
    # Every image was computed to completion exactly once: the retried task skipped the
    # output its first attempt had finished, and redid only the image the kill interrupted.
    assert sorted(done) == sorted(hashes)
    # Outputs on disk at the moment of the kill (at least the killed task's first one) were
    # never replaced afterwards: same inode, mtime and size now.
    snap = json.loads((state / "snapshot.json").read_text())
    killed_pid = next(pid for kind, _, pid in log if kind == "killed")
    finished_before_kill = [h for kind, h, pid in log if kind == "done" and pid == killed_pid]
    assert len(finished_before_kill) == 1 and hashes[finished_before_kill[0]] in snap
    for path, ident in snap.items():
        s = os.stat(path)
        assert [s.st_ino, s.st_mtime_ns, s.st_size] == ident, path


# --------------------------------------------------------------------------- CLI


def test_cli_scheduler_local(tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    images = {
        "a.png": _random(np.random.default_rng(1), (17, 23, 3), np.uint8),
        "sub/b.png": _random(np.random.default_rng(2), (9, 11), np.uint8),
    }
    for rel, img in images.items():
        write_image(src / rel, img)
    spec = "median:ksize=3 | gamma:gamma=0.5"
    code = main(["run", str(src), "-o", str(out), "--pipeline", spec, "--backend", "cpu",
                 "--batch-size", "1", "--scheduler", "local"])
    assert code == 0
    for rel, img in images.items():
        np.testing.assert_array_equal(read_image(out / rel), Pipeline(spec)(img))
    report = json.loads((out / "report.json").read_text())
    assert report["processed"] == 2 and report["failures"] == [] and report["engine"] == "cpu"
    assert "2 images" in capsys.readouterr().out


def test_cli_scheduler_usage_errors(tmp_path, capsys):
    write_image(tmp_path / "in" / "a.png", np.zeros((5, 6), np.uint8))
    base = ["run", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--backend", "cpu"]
    assert main(base + ["--scheduler", "somewhere"]) == 2
    assert "--scheduler" in capsys.readouterr().err
    assert main(base + ["--scheduler", "local", "--resume"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert not (tmp_path / "out" / "a.png").exists()


# --------------------------------------------------------------------------- packaging


def test_docstring_examples():
    import gpuenhance.dask

    result = doctest.testmod(gpuenhance.dask, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def test_gpuenhance_works_without_dask(tmp_path):
    # dask and distributed made unimportable: the package, the CLI and gpuenhance.dask import;
    # only --scheduler needs them, and says so as a usage error.
    write_image(tmp_path / "in" / "a.png", np.zeros((5, 6), np.uint8))
    code = (
        "import sys\n"
        "sys.modules['dask'] = sys.modules['distributed'] = None\n"
        "import gpuenhance, gpuenhance.dask\n"
        "from gpuenhance.cli import main\n"
        "args = ['run', sys.argv[1], '-o', sys.argv[2], '--backend', 'cpu']\n"
        "assert main(args) == 0\n"
        "sys.exit(main(args + ['--scheduler', 'local']))\n"
    )
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "in"), str(tmp_path / "out")],
        cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "gpuenhance[dask]" in proc.stderr
