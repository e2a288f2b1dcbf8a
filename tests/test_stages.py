"""The pipeline's stage table: new stages, the lut file stage, spec spacing, the stage help."""

from __future__ import annotations

import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from gpuenhance import Pipeline, apply_lut, clahe, equalize_hist, median_filter
from gpuenhance.pipeline import STAGES, Stage, parse_spec, stage_help


def test_spaces_around_equals_colons_and_bars_are_accepted():
    tight = parse_spec("median:ksize=5,border=reflect|gamma:gamma=0.8,gain=0.5")
    for spec in (
        "median : ksize = 5 , border = reflect | gamma : gamma = 0.8 gain = 0.5",
        "  median:ksize= 5:border =reflect  |  gamma:gamma =0.8:gain= 0.5 ",
        "median:ksize=5 border=reflect | gamma: gamma=0.8, gain=0.5",
    ):
        assert parse_spec(spec) == tight, spec


@pytest.mark.parametrize(
    "spec, fragments",
    [
        ("median:ksize = ", ["stage 1 'median'", "malformed parameter 'ksize='"]),
        ("median:ksize=3 5", ["stage 1 'median'", "malformed parameter ksize='3 5'"]),
        ("median:3", ["stage 1 'median'", "malformed parameter '3'"]),
        ("clahe:tile_grid=8y8", ["stage 1 'clahe'", "malformed tile_grid='8y8'"]),
        ("clahe:tile_grid=0x8", ["stage 1 'clahe'", "tile_grid[0] must be in [1, 256]"]),
        ("clahe:clip_limit=-1", ["stage 1 'clahe'", "clip_limit must be >= 0"]),
        ("equalize:bins=3", ["stage 1 'equalize'", "unknown parameter 'bins'; expected none"]),
        ("lut", ["stage 1 'lut'", "missing required parameter 'file'"]),
    ],
)
def test_bad_new_stage_specs_name_stage_and_parameter(spec, fragments):
    with pytest.raises(ValueError) as info:
        Pipeline(spec)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_spec_round_trips_grids():
    pipe = Pipeline("clahe : clip_limit=2 : tile_grid=4x6 | equalize")
    assert pipe.stages[0].kwargs == {"clip_limit": 2.0, "tile_grid": (4, 6)}
    assert Pipeline(pipe.spec) == pipe
    assert Pipeline("clahe:tile_grid=3").stages[0].kwargs == {"tile_grid": (3, 3)}


# ---------------------------------------------------------------------------------- lut


@pytest.fixture
def table_file(tmp_path, rng):
    def write(table, name="table.npy"):
        path = tmp_path / name
        np.save(path, table)
        return str(path)

    return write


@pytest.mark.parametrize("dtype,entries", [(np.uint8, 256), (np.uint16, 65536)])
@pytest.mark.parametrize("per_channel", [False, True])
def test_lut_stage_equals_apply_lut(backend, rng, table_file, dtype, entries, per_channel):
    shape = (entries, 3) if per_channel else (entries,)
    table = rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    img = rng.integers(0, np.iinfo(dtype).max + 1, (2, 7, 9, 3), dtype=dtype)
    path = table_file(table)
    out = Pipeline(f"lut:file={path}")(img, backend=backend)
    np.testing.assert_array_equal(out, apply_lut(img, table))
    # after a filter (fused into the filter kernel where the engine can)
    out = Pipeline(f"median:ksize=3 | lut : file = {path}")(img, backend=backend)
    np.testing.assert_array_equal(out, apply_lut(median_filter(img, 3), table))


def test_lut_stage_uint8_equals_cv2_lut(rng, table_file):
    table = rng.integers(0, 256, 256, dtype=np.uint8)
    img = rng.integers(0, 256, (11, 13), dtype=np.uint8)
    out = Pipeline(f"lut:file={table_file(table)}")(img)
    np.testing.assert_array_equal(out, cv2.LUT(img, table))


def test_lut_stage_refuses_bad_files_naming_them(tmp_path, table_file):
    cases = {
        "missing.npy": None,
        "objects.npy": np.array([{"a": 1}], dtype=object),
        "float.npy": np.zeros(256, np.float32),
        "short.npy": np.zeros(255, np.uint8),
        "three_d.npy": np.zeros((256, 1, 1), np.uint8),
        "u16_small.npy": np.zeros(256, np.uint16),
    }
    for name, table in cases.items():
        path = tmp_path / name
        if table is not None:
            np.save(path, table, allow_pickle=True)
        with pytest.raises(ValueError) as info:
            Pipeline(f"lut:file={path}")
        assert name in str(info.value) and "stage 1 'lut'" in str(info.value), name
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not a numpy file at all")
    npz = tmp_path / "archive.npz"
    np.savez(npz, t=np.zeros(256, np.uint8))
    for path in (garbage, npz):
        with pytest.raises(ValueError, match=path.name):
            Pipeline(f"lut:file={path}")


def test_lut_stage_dtype_or_channel_mismatch_names_the_file(table_file):
    path = table_file(np.zeros(256, np.uint8), "u8.npy")
    with pytest.raises(TypeError, match="u8.npy.*uint8 table.*uint16"):
        Pipeline(f"lut:file={path}")(np.zeros((4, 4), np.uint16))
    path = table_file(np.zeros((256, 3), np.uint8), "rgb.npy")
    with pytest.raises(ValueError, match="rgb.npy.*3 columns.*2 channel"):
        Pipeline(f"lut:file={path}")(np.zeros((4, 4, 2), np.uint8))


# ------------------------------------------------------------------- statistics stages


@pytest.mark.equivalence("equalize_hist", "clahe")
def test_statistics_stages_equal_their_ops(backend, rng):
    img = (rng.random((2, 19, 23, 3)) ** 2 * 200).astype(np.uint8)
    out = Pipeline("equalize | clahe:clip_limit=2:tile_grid=3x2")(img, backend=backend)
    np.testing.assert_array_equal(out, clahe(equalize_hist(img), 2.0, (3, 2)))


@pytest.mark.parametrize("tile", [8, (6, 11)])
def test_tiled_pipeline_with_statistics_stages_equals_whole_image(rng, tile):
    img = (rng.random((2, 29, 37, 3)) ** 2 * 200).astype(np.uint8)
    pipe = Pipeline("median:ksize=3 | equalize | gaussian:sigma=1 | clahe:tile_grid=3 | "
                    "gamma:gamma=0.8")
    np.testing.assert_array_equal(pipe(img, max_tile=tile), pipe(img))
    assert [len(s) for s in pipe._segments()] == [1, 1, 1, 1, 1]


# ---------------------------------------------------------------------------------- help


def test_stage_help_lists_every_stage_and_parameter_with_its_range():
    from gpuenhance.contrast import CLAHE_TILES_MAX
    from gpuenhance.filters import MEDIAN_KSIZE_MAX

    text = stage_help()
    for name, kind in STAGES.items():
        assert f"\n  {name} " in text
        for p in kind.params:
            assert f"      {p.name} " in text and p.accepts in text
    assert f"odd, 1..{MEDIAN_KSIZE_MAX} (required)" in text
    assert f"each 1..{CLAHE_TILES_MAX} (default 8x8)" in text
    assert "(default 40.0)" in text  # clahe's own default


def test_run_help_shows_the_stage_table():
    out = subprocess.run([sys.executable, "-m", "gpuenhance", "run", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert stage_help() in out


def test_stage_defaults_come_from_the_op():
    assert Stage("clahe").resolved() == {"clip_limit": 40.0, "tile_grid": (8, 8)}
    assert Stage("median", {"ksize": 3}).resolved() == {"ksize": 3, "border": "replicate"}


# ------------------------------------------------------------------ level stages


@pytest.mark.equivalence("white_balance", "auto_contrast", "tone_curve")
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_level_stages_equal_their_ops(backend, rng, dtype):
    from gpuenhance import auto_contrast, tone_curve, white_balance

    top = np.iinfo(dtype).max if np.dtype(dtype).kind == "u" else 1.0
    img = (rng.random((2, 9, 11, 3)) * 0.7 * top).astype(dtype)
    spec = ("median:ksize=3 | tone_curve : points = 0,0; 0.5,0.6; 1,1 | "
            "white_balance:method=gains:gains=1.2,1,0.9 | white_balance | "
            "auto_contrast:low=1:high=99:per_channel=true")
    out = Pipeline(spec)(img, backend=backend)
    ref = tone_curve(median_filter(img, 3), [(0, 0), (0.5, 0.6), (1, 1)])
    ref = white_balance(white_balance(ref, "gains", gains=(1.2, 1, 0.9)))
    ref = auto_contrast(ref, 1, 99, per_channel=True)
    if np.dtype(dtype).kind == "u":
        np.testing.assert_array_equal(out, ref)
    else:
        np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-7)


def test_level_stage_specs_round_trip_and_refuse_bad_values():
    pipe = Pipeline("white_balance:method=white_patch:percentile=98 | auto_contrast:per_channel=on"
                    " | tone_curve:points=0,0;1,0.5")
    assert Pipeline(pipe.spec) == pipe
    assert pipe.stages[1].kwargs == {"per_channel": True}
    for spec, fragment in [
        ("white_balance:method=grey", "method must be one of"),
        ("white_balance:gains=1,1,1", "gains must be given exactly when method=gains"),
        ("white_balance:method=gains", "gains must be given exactly when method=gains"),
        ("auto_contrast:low=99.7", "low must be < high"),  # high: the op default 99.5
        ("auto_contrast:per_channel=maybe", "malformed per_channel='maybe'"),
        ("tone_curve:points=0,0;1", "at least two (x, y) pairs"),
        ("tone_curve:points=0,0;a,1", "malformed points="),
        ("tone_curve:points=0.5,0;0.2,1", "strictly increasing"),
    ]:
        with pytest.raises(ValueError, match=re.escape(fragment)):
            Pipeline(spec)


def test_integer_tone_curve_fuses_into_the_filter_on_cuda_engines(rng, monkeypatch):
    from gpuenhance import tone_curve
    from gpuenhance._cuda import levels as cuda_levels
    from gpuenhance._cuda import tone as cuda_tone

    calls = []
    for mod, name in ((cuda_tone, "apply_lut"), (cuda_levels, "tone_curve")):
        monkeypatch.setattr(mod, name, lambda *a, **k: calls.append(1))
    img = rng.integers(0, 256, (9, 10), dtype=np.uint8)
    out = Pipeline("median:ksize=3 | tone_curve:points=0,0;0.4,0.7;1,1")(
        img, backend="cuda-emulated")
    assert calls == []  # no separate table pass: the curve ran in the median kernel
    monkeypatch.undo()
    np.testing.assert_array_equal(out, tone_curve(median_filter(img, 3),
                                                  [(0, 0), (0.4, 0.7), (1, 1)]))


@pytest.mark.equivalence("unsharp_mask")
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_unsharp_stage_equals_the_op_whole_and_tiled(backend, rng, dtype):
    from gpuenhance import unsharp_mask

    img = (rng.random((2, 23, 31, 3)) * (255 if dtype == np.uint8 else 1)).astype(dtype)
    pipe = Pipeline("unsharp:sigma=1.5:amount=0.8:threshold=0 | median:ksize=3")
    ref = median_filter(unsharp_mask(img, 1.5, 0.8, 0, backend=backend), 3, backend=backend)
    np.testing.assert_array_equal(pipe(img, backend=backend), ref)
    if backend == "cpu":  # tiles with halos: identical to the whole image
        k = int(round(1.5 * (3 if dtype == np.uint8 else 4) * 2 + 1)) | 1
        assert pipe.radius_for(dtype) == k // 2 + 1
        np.testing.assert_array_equal(pipe(img, backend=backend, max_tile=9), ref)


@pytest.mark.equivalence("bilateral_filter")
def test_bilateral_stage_equals_the_op_whole_and_tiled(backend, rng):
    from gpuenhance import bilateral_filter

    img = rng.integers(0, 256, (2, 19, 22, 3), dtype=np.uint8)
    pipe = Pipeline("bilateral : d=9 : sigma_color=75 : sigma_space=75 | gamma:gamma=0.9")
    ref = Pipeline("gamma:gamma=0.9")(bilateral_filter(img, 9, 75.0, 75.0, backend=backend),
                                      backend=backend)
    np.testing.assert_array_equal(pipe(img, backend=backend), ref)
    assert pipe.radius == 4
    np.testing.assert_array_equal(pipe(img, backend=backend, max_tile=10), ref)
    with pytest.raises(ValueError, match="stage 1 'bilateral': sigma_space gives a window"):
        Pipeline("bilateral:d=0:sigma_color=10:sigma_space=60")
