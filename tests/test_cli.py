"""The ``gpuenhance`` command line, run in-process through ``main([...])``.

Oracles: the public API called directly (Pipeline, LMSRestorer), OpenCV decoding the
written files, and the bundled sample list.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import gpuenhance
from gpuenhance import LMSRestorer, Pipeline, _backend
from gpuenhance.cli import DEFAULT_PIPELINE, contact_sheet, main
from gpuenhance.io import read_image, write_image
from gpuenhance.samples import sample_paths

REPO = Path(__file__).resolve().parents[1]


def test_run_writes_outputs_and_report(tmp_path, rng, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    imgs = {
        "a.png": rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8),
        "sub/b.png": rng.integers(0, 256, size=(9, 11), dtype=np.uint8),
    }
    for rel, img in imgs.items():
        write_image(src / rel, img)
    spec = "median:ksize=3 | gamma:gamma=0.5"
    code = main(["run", str(src), "-o", str(out), "--pipeline", spec, "--backend", "cpu",
                 "--batch-size", "2", "--workers", "1"])
    assert code == 0
    for rel, img in imgs.items():
        np.testing.assert_array_equal(read_image(out / rel), Pipeline(spec)(img))
    report = json.loads((out / "report.json").read_text())
    assert report["processed"] == 2 and report["failures"] == [] and report["engine"] == "cpu"
    assert report["pipeline"] == spec
    assert sorted(Path(o["output"]).relative_to(out).as_posix() for o in report["outputs"]) == [
        "a.png", "sub/b.png"
    ]
    stdout = capsys.readouterr().out
    assert "2 images" in stdout and "MP/s" in stdout and "cpu" in stdout and "0 failed" in stdout
    assert not (out / "contact_sheet.png").exists()  # only for the sample run


def test_run_with_a_failure_exits_1(tmp_path, capsys):
    src = tmp_path / "in"
    write_image(src / "ok.png", np.zeros((6, 7), np.uint8))
    (src / "bad.png").write_bytes(b"")
    code = main(["run", str(src), "-o", str(tmp_path / "out"), "--backend", "cpu"])
    assert code == 1
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["processed"] == 1
    assert [Path(f["path"]).name for f in report["failures"]] == ["bad.png"]
    err = capsys.readouterr().err
    assert "bad.png" in err and "empty file" in err


@pytest.mark.parametrize(
    "spec, fragments",
    [
        ("median:ksize=4", ["stage 1 'median'", "ksize must be odd; got 4"]),
        ("median:ksize=3 | gaussian:sigmax=1", ["stage 2 'gaussian'", "unknown parameter 'sigmax'"]),
    ],
)
def test_bad_spec_is_a_usage_error(tmp_path, capsys, spec, fragments):
    code = main(["run", "-o", str(tmp_path / "out"), "--pipeline", spec])
    assert code == 2
    err = capsys.readouterr().err
    assert all(f in err for f in fragments)
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["run", str(tmp_path / "missing"), "-o", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["run", "--batch-size", "0", "-o", str(tmp_path / "o")]) == 2
    assert main(["run"]) == 2  # -o is required
    assert main(["frobnicate"]) == 2
    assert main(["--help"]) == 0
    (tmp_path / "file").write_bytes(b"")
    assert main(["run", "-o", str(tmp_path / "file")]) == 2
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.skipif(_backend.cuda_available(), reason="a GPU works here")
def test_backend_cuda_without_gpu_exits_2(tmp_path, capsys):
    code = main(["run", "-o", str(tmp_path / "out"), "--backend", "cuda"])
    assert code == 2
    err = capsys.readouterr().err
    assert "backend='cuda' was requested" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_run_on_samples_writes_contact_sheet(tmp_path):
    out = tmp_path / "out"
    assert main(["run", "-o", str(out), "--backend", "cpu"]) == 0
    samples = sample_paths()
    report = json.loads((out / "report.json").read_text())
    assert report["processed"] == len(samples) and report["pipeline"] == DEFAULT_PIPELINE
    for path in samples:
        expected = Pipeline(DEFAULT_PIPELINE)(read_image(path))
        if path.suffix.lower() in (".jpg", ".jpeg"):  # lossy: the same encoding, by OpenCV
            buf = cv2.imencode(path.suffix, np.ascontiguousarray(expected[..., ::-1]))[1]
            expected = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)[..., ::-1]
        np.testing.assert_array_equal(read_image(out / path.name), expected)
    data = (out / "contact_sheet.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    sheet = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    # every sample is narrower than half the 1200 px sheet, so rows keep their natural size
    shapes = [read_image(p).shape for p in samples]
    assert all(w <= (1200 - 12) // 2 for _, w, _ in shapes)
    assert sheet.shape == (sum(h + 4 for h, _, _ in shapes) + 4, max(2 * w + 12 for _, w, _ in shapes), 3)


def test_contact_sheet_layout():
    before = np.zeros((10, 20, 3), np.uint8)
    after = np.full((10, 20, 3), 100, np.uint8)
    sheet = contact_sheet([(before, after), (before[..., 0], after[..., 0])], width=60, gap=2)
    # rows of 10 + gap, plus the bottom gap; images placed at x = 2 and x = 2 + 20 + 2
    assert sheet.shape == (2 * 12 + 2, 2 + 20 + 2 + 20 + 2, 3)
    for y in (2, 14):
        np.testing.assert_array_equal(sheet[y : y + 10, 2:22], before)
        np.testing.assert_array_equal(sheet[y : y + 10, 24:44], after)
    assert (sheet[:2] == 255).all() and (sheet[:, 44:] == 255).all()
    # a row too wide is scaled down (INTER_AREA) to fit: 2 x 40 px + 3 gaps in 40 px
    wide = np.full((20, 40, 3), 80, np.uint8)
    small = contact_sheet([(wide, wide)], width=40, gap=2)
    assert small.shape[1] <= 40
    np.testing.assert_array_equal(small[2:2 + 8, 2:2 + 17], 80)


def _restore_pairs(root, rng, n=3, shape=(16, 16)):
    clean = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    degraded = (clean // 2).astype(np.uint8)
    for i in range(n):
        write_image(root / "clean" / f"p{i}.png", clean[i])
        write_image(root / "degraded" / f"p{i}.png", degraded[i])
    return degraded, clean


def test_restore_fit_and_apply_match_the_api(tmp_path, rng):
    degraded, clean = _restore_pairs(tmp_path, rng)
    filt = tmp_path / "filter.npz"
    code = main(["restore", "fit", "--degraded", str(tmp_path / "degraded"), "--clean",
                 str(tmp_path / "clean"), "-o", str(filt), "--epochs", "2", "--mu", "1.0",
                 "--backend", "cpu", "--val", "0"])
    assert code == 0
    oracle = LMSRestorer(mu=1.0, backend="cpu").fit(degraded[..., None], clean[..., None], epochs=2)
    np.testing.assert_array_equal(LMSRestorer.load(filt).weights_, oracle.weights_)

    out = tmp_path / "restored"
    code = main(["restore", "apply", "--filter", str(filt), str(tmp_path / "degraded"), "-o",
                 str(out), "--backend", "cpu"])
    assert code == 0
    for i in range(len(degraded)):
        np.testing.assert_array_equal(read_image(out / f"p{i}.png"), oracle.restore(degraded[i]))
    assert json.loads((out / "report.json").read_text())["processed"] == len(degraded)


def test_restore_fit_mismatched_sets_and_shapes(tmp_path, rng, capsys):
    _restore_pairs(tmp_path, rng)
    (tmp_path / "clean" / "p2.png").unlink()
    args = ["restore", "fit", "--degraded", str(tmp_path / "degraded"), "--clean",
            str(tmp_path / "clean"), "-o", str(tmp_path / "f.npz"), "--backend", "cpu"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "only in --degraded (p2.png)" in err and "Traceback" not in err
    write_image(tmp_path / "clean" / "p2.png", np.zeros((8, 8), np.uint8))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "p2.png" in err and "(8, 8)" in err
    assert not (tmp_path / "f.npz").exists()


def test_restore_apply_missing_filter(tmp_path, capsys):
    write_image(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    code = main(["restore", "apply", "--filter", str(tmp_path / "none.npz"),
                 str(tmp_path / "a.png"), "-o", str(tmp_path / "o")])
    assert code == 2 and "--filter" in capsys.readouterr().err


def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["gpuenhance"] == gpuenhance.__version__
    assert data["engines"]["cpu"] == "available"


def test_python_dash_m_info_subprocess():
    proc = subprocess.run(
        [sys.executable, "-m", "gpuenhance", "info"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr
    assert f"gpuenhance: {gpuenhance.__version__}" in proc.stdout
    assert "cpu:" in proc.stdout and "available" in proc.stdout


def test_the_command_line_has_no_bench_command(capsys):
    """The product does not depend on its benchmark folder: benchmarks run as
    ``python -m bench.report`` from a checkout."""
    assert main(["bench"]) == 2
    assert "invalid choice: 'bench'" in capsys.readouterr().err
