"""``gpuenhance restore fit|apply`` as a new user runs them: defaults that converge, a held-out
validation split reported and recorded, a refusal when the filter makes validation images worse,
mixed image sizes with --support. Oracles: PSNR computed here in float64 NumPy on the files the
commands wrote, and the public API called directly."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gpuenhance import LMSRestorer, degrade
from gpuenhance.cli import _validation_split, main
from gpuenhance.io import read_image, write_image

SAMPLES = Path(__file__).resolve().parent.parent / "gpuenhance" / "samples"


def psnr8(ref, img):
    mse = np.mean((ref.astype(np.float64) - img.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


def _photo_crops(name, n, size, rng):
    img = cv2.cvtColor(cv2.imread(str(SAMPLES / name)), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    ys = rng.integers(0, h - size + 1, n)
    xs = rng.integers(0, w - size + 1, n)
    return [img[y : y + size, x : x + size] for y, x in zip(ys, xs)]


def _degrade8(crop, seed):
    x = crop.astype(np.float32) / 255.0
    d = degrade.add_gaussian_noise(degrade.turbulence(x, degrade.TURBULENCE_SEVERE), 0.01, seed=seed)
    return np.clip(np.rint(d * 255.0), 0, 255).astype(np.uint8)


def test_new_user_experiment_improves_held_out_photos(tmp_path, capsys):
    """Turbulence-blurred, noisy photographs: fit on three pictures with every default,
    apply to a fourth, disjoint picture; the restored files beat the degraded ones."""
    rng = np.random.default_rng(0)
    train = [c for name in ("chelsea.png", "coffee.jpg", "rocket.jpg")
             for c in _photo_crops(name, 6, 128, rng)]
    test = _photo_crops("astronaut.jpg", 3, 128, rng)
    for i, crop in enumerate(train):
        write_image(tmp_path / "clean" / f"t{i:02d}.png", crop)
        write_image(tmp_path / "degraded" / f"t{i:02d}.png", _degrade8(crop, seed=i))
    test_deg = [_degrade8(crop, seed=100 + i) for i, crop in enumerate(test)]
    for i, d in enumerate(test_deg):
        write_image(tmp_path / "new" / f"a{i}.png", d)

    filt = tmp_path / "filter.npz"
    assert main(["restore", "fit", "--degraded", str(tmp_path / "degraded"), "--clean",
                 str(tmp_path / "clean"), "-o", str(filt)]) == 0
    out = capsys.readouterr().out
    assert "converged" in out and "validation on 2 held-out pairs" in out
    val = LMSRestorer.load(filt).metadata["validation"]
    assert val["psnr_restored"] > val["psnr_degraded"] + 1.0

    assert main(["restore", "apply", "--filter", str(filt), str(tmp_path / "new"), "-o",
                 str(tmp_path / "restored")]) == 0
    assert f"{val['psnr_restored'] - val['psnr_degraded']:+.2f} dB" in capsys.readouterr().out
    for i, (clean, d) in enumerate(zip(test, test_deg)):
        restored = read_image(tmp_path / "restored" / f"a{i}.png")
        assert psnr8(clean, restored) > psnr8(clean, d) + 1.0, i


def test_validation_psnr_is_recorded_and_a_worse_filter_is_refused(tmp_path, capsys):
    rng = np.random.default_rng(1)
    names = [f"p{i}.png" for i in range(10)]
    _, held = _validation_split(names, 0.1, 0)
    truth = {}
    for name in names:
        deg = rng.integers(40, 120, (16, 16), dtype=np.uint8)
        # training pairs double the brightness; the held-out pair is already clean
        clean = deg if name in held else (2 * deg).astype(np.uint8)
        truth[name] = (deg, clean)
        write_image(tmp_path / "degraded" / name, deg)
        write_image(tmp_path / "clean" / name, clean)
    filt = tmp_path / "f.npz"
    args = ["restore", "fit", "--degraded", str(tmp_path / "degraded"), "--clean",
            str(tmp_path / "clean"), "-o", str(filt), "--backend", "cpu"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "worse" in captured.err and "--force" in captured.err and not filt.exists()
    assert main(args + ["--force"]) == 0
    model = LMSRestorer.load(filt)
    deg, clean = truth[held[0]]
    val = model.metadata["validation"]
    assert val["names"] == held and val["pairs"] == 1
    assert val["psnr_degraded"] == 100.0  # identical images (capped)
    expected = psnr8(clean, model.restore(deg))
    np.testing.assert_allclose(val["psnr_restored"], expected, rtol=1e-12)
    assert f"{val['psnr_restored']:.2f} dB restored" in capsys.readouterr().out


def test_val_zero_trains_on_all_and_apply_says_so(tmp_path, capsys):
    rng = np.random.default_rng(2)
    deg = rng.integers(0, 256, (3, 16, 16), dtype=np.uint8)
    clean = (deg // 2).astype(np.uint8)
    for i in range(3):
        write_image(tmp_path / "degraded" / f"p{i}.png", deg[i])
        write_image(tmp_path / "clean" / f"p{i}.png", clean[i])
    filt = tmp_path / "f.npz"
    base = ["restore", "fit", "--degraded", str(tmp_path / "degraded"), "--clean",
            str(tmp_path / "clean"), "-o", str(filt), "--backend", "cpu", "--val", "0"]
    assert main(base + ["--solver", "exact"]) == 0
    oracle = LMSRestorer(solver="exact", backend="cpu").fit(deg[..., None], clean[..., None])
    np.testing.assert_array_equal(LMSRestorer.load(filt).weights_, oracle.weights_)
    assert "validation" not in capsys.readouterr().out
    assert main(["restore", "apply", "--filter", str(filt), str(tmp_path / "degraded"),
                 "-o", str(tmp_path / "o"), "--backend", "cpu"]) == 0
    assert "records no validation" in capsys.readouterr().out
    # one pair cannot be split
    one = tmp_path / "one"
    write_image(one / "d" / "p.png", deg[0])
    write_image(one / "c" / "p.png", clean[0])
    assert main(["restore", "fit", "--degraded", str(one / "d"), "--clean", str(one / "c"),
                 "-o", str(filt), "--backend", "cpu"]) == 2
    assert "--val 0" in capsys.readouterr().err


@pytest.mark.parametrize("val", ["1", "-0.1", "x"])
def test_val_must_be_a_fraction(tmp_path, capsys, val):
    assert main(["restore", "fit", "--degraded", str(tmp_path), "--clean", str(tmp_path),
                 "-o", str(tmp_path / "f.npz"), "--val", val]) == 2
    assert "--val" in capsys.readouterr().err


def test_mixed_sizes_need_support(tmp_path, capsys):
    rng = np.random.default_rng(3)
    shapes = {"a.png": (16, 16), "b.png": (20, 24), "c.png": (18, 16)}
    deg, clean = [], []
    for name, shape in shapes.items():
        d = rng.integers(0, 256, shape, dtype=np.uint8)
        c = (d // 2).astype(np.uint8)
        write_image(tmp_path / "degraded" / name, d)
        write_image(tmp_path / "clean" / name, c)
        deg.append(d)
        clean.append(c)
    filt = tmp_path / "f.npz"
    base = ["restore", "fit", "--degraded", str(tmp_path / "degraded"), "--clean",
            str(tmp_path / "clean"), "-o", str(filt), "--backend", "cpu", "--val", "0"]
    assert main(base) == 2
    assert "--support" in capsys.readouterr().err and not filt.exists()
    assert main(base + ["--support", "1", "--solver", "exact"]) == 0
    oracle = LMSRestorer(support=1, solver="exact", backend="cpu").fit(deg, clean)
    np.testing.assert_array_equal(LMSRestorer.load(filt).kernel_, oracle.kernel_)


def test_progress_bar_counts_epochs(tmp_path, monkeypatch):
    import gpuenhance.cli as cli

    class Bar:
        def __init__(self, total, desc):
            self.total, self.n, self.postfix, self.closed = total, 0, [], False

        def update(self, k):
            self.n += k

        def set_postfix(self, **kw):
            self.postfix.append(kw)

        def close(self):
            self.closed = True

    bars = []
    monkeypatch.setattr(cli, "_progress_bar", lambda total, desc: bars.append(Bar(total, desc)) or bars[-1])
    rng = np.random.default_rng(4)
    for i in range(4):
        d = rng.integers(0, 256, (16, 16), dtype=np.uint8)
        write_image(tmp_path / "degraded" / f"p{i}.png", d)
        write_image(tmp_path / "clean" / f"p{i}.png", (d // 2).astype(np.uint8))
    filt = tmp_path / "f.npz"
    assert main(["restore", "fit", "--degraded", str(tmp_path / "degraded"), "--clean",
                 str(tmp_path / "clean"), "-o", str(filt), "--backend", "cpu", "--val", "0",
                 "--max-epochs", "40"]) == 0
    (bar,) = bars
    model = LMSRestorer.load(filt)
    assert bar.total == 40 and bar.n == model.n_epochs_ and bar.closed and model.converged_
    assert len(bar.postfix) == model.n_epochs_ - 1  # every epoch after the first has a change
