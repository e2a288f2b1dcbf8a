"""gpuenhance.pipeline: spec parsing, batch application and the file runner.

Oracles: the public ops composed by hand (``gamma_correct(gaussian_filter(median_filter(x)))``),
OpenCV's kernel-size rule for the radius, and the files/arrays the tests wrote themselves.
"""

from __future__ import annotations

import json
import math
import os

import cv2
import numpy as np
import pytest

import gpuenhance
from gpuenhance import Pipeline
from gpuenhance.io import read_image, write_image
from gpuenhance.pipeline import RunReport, Stage, parse_spec

from fakes import FakeGPU

SPEC = "median:ksize=3 | gaussian:sigma=1.2 | gamma:gamma=0.8"


def _by_hand(img, backend=None):
    """The oracle: the public ops called one by one."""
    out = gpuenhance.median_filter(img, 3, backend=backend)
    out = gpuenhance.gaussian_filter(out, sigma=1.2, backend=backend)
    return gpuenhance.gamma_correct(out, 0.8, backend=backend)


# --------------------------------------------------------------------------- spec


def test_parse_valid_spec():
    stages = parse_spec(" Median:ksize=5,border=reflect |gaussian:ksize=5 sigma=0.5 sigma_y=2| gamma:gamma=2,gain=0.5")
    assert stages == [
        Stage("median", {"ksize": 5, "border": "reflect"}),
        Stage("gaussian", {"ksize": 5, "sigma": 0.5, "sigma_y": 2.0}),
        Stage("gamma", {"gamma": 2.0, "gain": 0.5}),
    ]
    assert isinstance(stages[0].kwargs["ksize"], int)
    assert isinstance(stages[2].kwargs["gamma"], float)


def test_spec_and_repr_round_trip():
    pipe = Pipeline.from_spec(SPEC)
    assert Pipeline(pipe.spec) == pipe
    assert eval(repr(pipe), {"Pipeline": Pipeline}) == pipe
    assert pipe.spec == SPEC
    assert Pipeline(list(pipe.stages)) == pipe
    assert len(pipe) == 3 and hash(pipe) == hash(Pipeline(SPEC))


def test_radius_is_the_sum_of_stage_radii():
    # OpenCV derives a float kernel of round(sigma * 4 * 2 + 1) | 1 taps from sigma
    k = int(math.floor(1.2 * 8 + 1 + 0.5)) | 1
    assert Pipeline(SPEC).radius == 1 + k // 2 + 0
    assert Pipeline("median:ksize=7 | gaussian:ksize=5,sigma=3").radius == 3 + 2
    assert Pipeline("gaussian:sigma=1,sigma_y=2").radius == (int(2 * 8 + 1.5) | 1) // 2


@pytest.mark.parametrize(
    "spec, fragments",
    [
        ("median:ksize=4", ["stage 1 'median'", "ksize must be odd; got 4"]),
        ("median:ksize=3 | blur:ksize=3", ["stage 2", "unknown stage 'blur'"]),
        ("median:size=3", ["stage 1 'median'", "unknown parameter 'size'"]),
        ("gamma:gamma=0.8 | median", ["stage 2 'median'", "missing required parameter 'ksize'"]),
        ("median:ksize=abc", ["stage 1 'median'", "ksize must be an integer", "'abc'"]),
        ("median:ksize=3.5", ["stage 1 'median'", "ksize"]),
        ("median:ksize", ["stage 1 'median'", "malformed parameter 'ksize'"]),
        ("median:=3", ["stage 1 'median'", "malformed parameter"]),
        ("median:ksize=3,ksize=5", ["stage 1 'median'", "'ksize' given twice"]),
        ("median:ksize=3 || gamma:gamma=1", ["stage 2 is empty"]),
        ("", ["at least one stage"]),
        ("median:ksize=301", ["stage 1 'median'", "ksize must be in [1, 255]"]),
        ("median:ksize=3,border=wrap", ["stage 1 'median'", "border must be one of"]),
        ("gaussian:ksize=4", ["stage 1 'gaussian'", "ksize", "got 4"]),
        ("gaussian:sigma=-1", ["stage 1 'gaussian'", "sigma must be >= 0"]),
        ("gaussian:ksize=0", ["stage 1 'gaussian'", "ksize and sigma must not both be 0"]),
        ("gamma:gamma=0", ["stage 1 'gamma'", "gamma must be > 0"]),
        ("gamma:gamma=nan", ["stage 1 'gamma'", "gamma must be finite"]),
        ("gamma:gamma=1,gain=-2", ["stage 1 'gamma'", "gain must be >= 0"]),
        ("lut:lut=x", ["stage 1 'lut'", "unknown parameter 'lut'"]),
        ("blur:ksize=3", ["stage 1", "unknown stage 'blur'"]),
    ],
)
def test_bad_spec_names_stage_and_parameter(spec, fragments):
    with pytest.raises(ValueError) as info:
        Pipeline(spec)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_stage_objects_are_validated_keeping_the_exception_type():
    with pytest.raises(TypeError, match=r"stage 2 'median': ksize must be an integer"):
        Pipeline([Stage("gamma", {"gamma": 1.0}), Stage("median", {"ksize": 3.0})])
    with pytest.raises(ValueError, match=r"stage 1 'median': ksize must be odd"):
        Pipeline([Stage("median", {"ksize": 2})])
    with pytest.raises(TypeError, match="Stage objects"):
        Pipeline(["median:ksize=3"])
    with pytest.raises(ValueError, match="at least one stage"):
        Pipeline([])


# --------------------------------------------------------------------------- arrays


@pytest.mark.parametrize(
    "shape, dtype",
    [((2, 17, 23, 3), np.uint8), ((17, 23), np.uint16), ((3, 9, 11, 1), np.float32)],
)
def test_call_equals_ops_composed_by_hand(rng, shape, dtype):
    if dtype == np.float32:
        img = rng.random(shape, dtype=np.float32)
    else:
        img = rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)
    out = Pipeline(SPEC)(img)
    assert out.shape == img.shape and out.dtype == img.dtype
    np.testing.assert_array_equal(out, _by_hand(img))


def test_call_on_each_engine_equals_ops_composed_on_that_engine(backend, rng):
    img = rng.integers(0, 256, size=(2, 17, 23, 3), dtype=np.uint8)
    np.testing.assert_array_equal(Pipeline(SPEC)(img, backend=backend), _by_hand(img, backend))


def test_call_validates_input():
    with pytest.raises(TypeError, match="batch must be a NumPy or CuPy array"):
        Pipeline(SPEC)([[1, 2], [3, 4]])


# --------------------------------------------------------------------------- files


def _write_inputs(root, rng):
    """A small tree of inputs of several shapes, dtypes and formats."""
    images = {
        "a.png": rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8),
        "b.png": rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8),
        "sub/c.png": rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8),
        "sub/gray.png": rng.integers(0, 256, size=(12, 9), dtype=np.uint8),
        "sub/deep/d16.png": rng.integers(0, 65536, size=(10, 14, 3)).astype(np.uint16),
        "e.tif": rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8),
    }
    for rel, img in images.items():
        write_image(root / rel, img)
    return images


def _snapshot(root):
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_run_files_outputs_mirror_inputs_and_equal_the_ops(tmp_path, rng):
    src, out = tmp_path / "in", tmp_path / "out"
    images = _write_inputs(src, rng)
    before = _snapshot(src)
    calls = []

    def spy(batch, backend=None):
        calls.append(batch.shape)
        return Pipeline(SPEC)(batch, backend=backend)

    finished = []
    from gpuenhance.pipeline import run_files

    report = run_files(spy, src, out, backend="cpu", batch_size=2, workers=2,
                       progress=finished.append, label="spy")
    assert report.ok and report.processed == len(images)
    assert report.engine == "cpu"
    assert sum(finished) == len(images)
    for rel, img in images.items():
        got = read_image(out / rel)
        assert got.dtype == img.dtype
        np.testing.assert_array_equal(got, _by_hand(img))
    # one shape+dtype per batch, at most batch_size images each; 4 images of 17x23x3 uint8
    assert sorted(calls) == sorted(
        [(2, 17, 23, 3), (2, 17, 23, 3), (1, 12, 9, 1), (1, 10, 14, 3)]
    )
    pixels = 4 * 17 * 23 + 12 * 9 + 10 * 14
    assert report.megapixels == pytest.approx(pixels / 1e6)
    assert _snapshot(src) == before  # inputs untouched
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_run_files_alpha_is_passed_through(tmp_path, rng):
    img = rng.integers(0, 256, size=(17, 23, 4), dtype=np.uint8)
    write_image(tmp_path / "in" / "rgba.png", img)
    report = Pipeline(SPEC).run_files(tmp_path / "in", tmp_path / "out", backend="cpu")
    assert report.ok
    got = read_image(tmp_path / "out" / "rgba.png")
    np.testing.assert_array_equal(got[..., 3], img[..., 3])
    np.testing.assert_array_equal(got[..., :3], _by_hand(np.ascontiguousarray(img[..., :3])))


def test_run_files_reports_bad_files_and_processes_the_rest(tmp_path, rng):
    src = tmp_path / "in"
    good = rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8)
    write_image(src / "good.png", good)
    write_image(src / "big.png", np.zeros((40, 57), np.uint8))
    png = cv2.imencode(".png", good)[1].tobytes()
    jpg = cv2.imencode(".jpg", good)[1].tobytes()
    (src / "empty.png").write_bytes(b"")
    (src / "trunc.png").write_bytes(png[: len(png) // 2])
    (src / "trunc.jpg").write_bytes(jpg[: len(jpg) // 2])
    (src / "noise.jpg").write_bytes(rng.bytes(200))
    (src / "notes.gif").write_bytes(b"GIF89a")
    inputs = [src, src / "notes.gif"]  # a folder skips .gif; named explicitly it is reported
    report = Pipeline(SPEC).run_files(inputs, tmp_path / "out", backend="cpu",
                                      max_pixels=40 * 57 - 1)
    assert report.processed == 1
    failed = {os.path.basename(p): reason for p, reason in report.failures}
    assert sorted(failed) == sorted(
        ["big.png", "empty.png", "trunc.png", "trunc.jpg", "noise.jpg", "notes.gif"]
    )
    assert "exceeds max_pixels" in failed["big.png"]
    assert "empty" in failed["empty.png"]
    assert "truncated" in failed["trunc.png"] and "truncated" in failed["trunc.jpg"]
    assert "unsupported file extension" in failed["notes.gif"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        ".gpuenhance-manifest.jsonl", ".gpuenhance.lock", "good.png"
    ]
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "good.png"), _by_hand(good))


def test_run_files_refuses_to_overwrite_inputs(tmp_path, rng):
    from gpuenhance.batch.outdir import OutputFolderError

    src = tmp_path / "in"
    _write_inputs(src, rng)
    before = _snapshot(src)
    with pytest.raises(OutputFolderError, match="is the input folder"):
        Pipeline(SPEC).run_files(src, src, backend="cpu")
    assert _snapshot(src) == before
    # named file by file, each output would be its input: each is refused, nothing written
    files = sorted(p for p in src.rglob("*.png"))
    report = Pipeline(SPEC).run_files([str(f) for f in files if f.parent == src], src,
                                      backend="cpu")
    assert report.processed == 0 and report.failures
    assert all("is an input file" in reason for _, reason in report.failures)
    assert _snapshot(src) == before


def test_run_files_output_inside_input_folder_is_skipped(tmp_path, rng):
    src = tmp_path / "in"
    _write_inputs(src, rng)
    first = Pipeline(SPEC).run_files(src, src / "out", backend="cpu")
    again = Pipeline(SPEC).run_files(src, src / "out", backend="cpu")
    assert first.processed == again.processed == 6 and again.ok


def test_run_files_refuses_paths_that_escape_or_collide(tmp_path, rng):
    img = rng.integers(0, 256, size=(5, 7), dtype=np.uint8)
    write_image(tmp_path / "a" / "x.png", img)
    write_image(tmp_path / "b" / "x.png", img)
    write_image(tmp_path / "c" / "sub" / "y.png", img)
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, out / "sub")  # out/sub/y.png would land outside out/
    report = Pipeline("gamma:gamma=1").run_files(
        [tmp_path / "a" / "x.png", tmp_path / "b" / "x.png", tmp_path / "c"], out, backend="cpu"
    )
    reasons = sorted(r for _, r in report.failures)
    assert report.processed == 1
    assert len(reasons) == 2
    assert any("already the output of" in r for r in reasons)
    assert any("would leave" in r for r in reasons)
    assert list(elsewhere.iterdir()) == []


def test_run_files_processing_error_is_reported(tmp_path, rng):
    from gpuenhance.pipeline import run_files

    write_image(tmp_path / "in" / "a.png", np.zeros((5, 7), np.uint8))
    write_image(tmp_path / "in" / "b.png", np.zeros((5, 7), np.uint8))

    def broken(batch, backend=None):
        raise RuntimeError("kernel exploded")

    report = run_files(broken, tmp_path / "in", tmp_path / "out", backend="cpu")
    assert report.processed == 0 and len(report.failures) == 2
    assert all("kernel exploded" in r for _, r in report.failures)


def test_run_files_missing_input_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError):
        Pipeline(SPEC).run_files(tmp_path / "nope", tmp_path / "out")
    with pytest.raises(ValueError, match="batch_size"):
        Pipeline(SPEC).run_files(tmp_path, tmp_path / "out", batch_size=0)


def test_report_json(tmp_path):
    report = RunReport(processed=2, failures=[("x.png", "bad")], megapixels=3.0, seconds=1.5,
                       engine="cpu", outputs=[("a.png", "o/a.png")], pipeline=SPEC)
    report.write_json(tmp_path / "r" / "report.json")
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["processed"] == 2 and data["failed"] == 1
    assert data["failures"] == [{"path": "x.png", "reason": "bad"}]
    assert data["outputs"] == [{"input": "a.png", "output": "o/a.png"}]
    assert data["megapixels_per_second"] == 2.0 and data["pipeline"] == SPEC
    assert "2 images" in report.summary() and "1 failed" in report.summary()
    assert [p.name for p in (tmp_path / "r").iterdir()] == ["report.json"]


# --------------------------------------------------------------------------- CUDA staging


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_staged_runner_with_a_lazy_fake_gpu_equals_direct_calls(rng, depth, seed):
    from gpuenhance.batch.staging import StagedRunner

    pipe = Pipeline("median:ksize=3 | gamma:gamma=0.5")
    gpu = FakeGPU(seed)
    runner = StagedRunner(lambda x: pipe(x), gpu, depth=depth)
    shapes = [(2, 9, 11, 3), (2, 9, 11, 3), (1, 5, 7, 1), (3, 9, 11, 3), (2, 9, 11, 3), (1, 4, 4, 3)]
    batches = [rng.integers(0, 256, size=s, dtype=np.uint8) for s in shapes]
    originals = [b.copy() for b in batches]
    got = []
    for i, b in enumerate(batches):
        finished = runner.submit(b, i)
        # nothing finishes before `depth` batches are in flight; then one per submit
        assert len(finished) == (1 if i >= depth else 0)
        if i == 0:
            assert gpu.log == []  # work is only queued: the fake runs it at a sync
        got.extend(finished)
        b[...] = 0  # the caller may reuse its batch at once: the runner copied it
    got.extend(runner.drain())
    assert [ctx for ctx, _, _ in got] == list(range(len(shapes)))
    for (i, result, error) in got:
        assert error is None
        np.testing.assert_array_equal(result, pipe(originals[i]))
    assert all(not s.ops for s in gpu.streams)
    # pinned buffers are reused: two per slot, grown at most to the largest batch
    largest = max(int(np.prod(s)) for s in shapes)
    assert gpu.pinned_bytes <= 2 * depth * largest * 3


def test_staged_runner_out_of_memory_falls_back_and_other_errors_are_returned(rng):
    from gpuenhance.batch.staging import StagedRunner

    gpu = FakeGPU()
    real_empty = gpu.device_empty

    def empty(shape, dtype, stream):
        if shape[0] > 2:
            raise MemoryError("fake device OOM")
        return real_empty(shape, dtype, stream)

    gpu.device_empty = empty
    fallback_calls = []

    def fallback(batch):
        fallback_calls.append(batch.shape)
        return batch + 1

    runner = StagedRunner(lambda x: x + 1, gpu, depth=2, fallback=fallback,
                          release=lambda: fallback_calls.append("released"))
    a = rng.integers(0, 200, size=(2, 3, 4, 1), dtype=np.uint8)
    big = rng.integers(0, 200, size=(4, 3, 4, 1), dtype=np.uint8)
    assert runner.submit(a, "a") == []
    finished = runner.submit(big, "big")  # OOM: drains "a", releases, computes on the fallback
    assert [ctx for ctx, _, _ in finished] == ["a", "big"]
    np.testing.assert_array_equal(finished[0][1], a + 1)
    np.testing.assert_array_equal(finished[1][1], big + 1)
    assert fallback_calls == ["released", (4, 3, 4, 1)]

    def broken(x):
        raise RuntimeError("kernel exploded")

    gpu.launch = lambda func, x, stream: broken(x)
    (ctx, result, error), = runner.submit(a, "c")
    assert ctx == "c" and result is None and "exploded" in str(error)


def test_sync_runner_returns_errors_and_propagates_fatal():
    from gpuenhance.batch.staging import SyncRunner

    class Fatal(Exception):
        pass

    def compute(batch):
        if batch == "fatal":
            raise Fatal()
        if batch == "bad":
            raise ValueError("bad batch")
        return batch * 2

    runner = SyncRunner(compute, fatal=(Fatal,))
    assert runner.submit(3, "x") == [("x", 6, None)]
    (ctx, result, error), = runner.submit("bad", "y")
    assert result is None and isinstance(error, ValueError)
    with pytest.raises(Fatal):
        runner.submit("fatal", "z")
    assert runner.drain() == []
