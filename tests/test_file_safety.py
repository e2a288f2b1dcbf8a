"""Issue 9: `gpuenhance run` never harms a user's files, keeps what a photo carries, and
bounds its work. One regression test (or more) per defect; each failed on the code before."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from gpuenhance import LMSRestorer, Pipeline, gaussian_filter
from gpuenhance.cli import main
from gpuenhance.io import read_image, read_image_with_metadata, write_image

REPO = Path(__file__).resolve().parents[1]
IDENTITY = "gamma:gamma=1"  # pixels pass unchanged: outputs can be compared to their inputs


def _photo(rng, h=24, w=32):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _smooth(h, w):
    """A photo-like picture JPEG keeps well: gradients that tell every orientation apart."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    rgb = np.dstack([255 * x / w, 255 * y / h, 128 + 100 * np.sin(x / 5 + y / 9)])
    return np.rint(rgb).astype(np.uint8)


def _srgb() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestCam"  # Make
    exif.get_ifd(0x8769)[0x9003] = "2026:01:02 03:04:05"  # DateTimeOriginal
    return exif


def _save(path: Path, arr, fmt: str, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(arr).save(path, fmt, **extra, **kw)
    return path


# --------------------------------------------------------------------------- 1. temporaries


def test_a_users_tmp_lookalike_files_survive_a_run(tmp_path, rng):
    """Repro: `.thesis.docx.1.tmp` anywhere under -o was deleted by the start-of-run sweep."""
    write_image(tmp_path / "a.png", _photo(rng))
    home = tmp_path / "h"
    own = {
        home / "d" / ".thesis.docx.1.tmp": b"thesis",
        home / ".notes.txt.0123456789ab.tmp": b"notes",
        home / ".a.png.4242.tmp": b"draft",
    }
    for path, data in own.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    assert main(["run", str(tmp_path / "a.png"), "-o", str(home), "--backend", "cpu"]) == 0
    for path, data in own.items():
        assert path.read_bytes() == data


def test_only_gpuenhance_temporaries_where_outputs_go_are_removed(tmp_path, rng):
    src = tmp_path / "in"
    write_image(src / "sub" / "a.png", _photo(rng))
    out = tmp_path / "out"
    left = out / "sub" / ".gpuenhance-0123456789abcdef.a.png.tmp"  # what a kill leaves
    elsewhere = out / "other" / ".gpuenhance-0123456789abcdef.b.png.tmp"  # no output goes there
    for path in (left, elsewhere):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    assert main(["run", str(src), "-o", str(out), "--backend", "cpu"]) == 0
    assert not left.exists()
    assert elsewhere.read_bytes() == b"partial"


def test_write_image_temporaries_carry_the_gpuenhance_name(tmp_path, monkeypatch, rng):
    seen = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (seen.append(Path(a).name), real(a, b)))
    write_image(tmp_path / "x.png", _photo(rng))
    from gpuenhance.io import TEMP_NAME

    assert len(seen) == 1 and TEMP_NAME.match(seen[0]) and seen[0].startswith(".gpuenhance-")


# --------------------------------------------------------------------------- 2. the lock


_HOLDER = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1], timeout=0)
lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_a_second_run_into_a_held_folder_stops_before_any_work(tmp_path, rng, capsys):
    src = tmp_path / "in"
    write_image(src / "a.png", _photo(rng))
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("the first run's report")
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out / ".gpuenhance.lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["run", str(src), "-o", str(out), "--backend", "cpu"]) == 2
        err = capsys.readouterr().err
        assert "in use by another gpuenhance run" in err and "Traceback" not in err
        assert sorted(p.name for p in out.iterdir()) == [".gpuenhance.lock", "report.json"]
        assert (out / "report.json").read_text() == "the first run's report"
    finally:
        holder.kill()  # a crash releases the OS lock
        holder.wait()
    assert main(["run", str(src), "-o", str(out), "--backend", "cpu"]) == 0
    assert json.loads((out / "report.json").read_text())["processed"] == 1


def test_the_lock_is_free_again_after_a_run(tmp_path, rng):
    from filelock import FileLock

    src = tmp_path / "in"
    write_image(src / "a.png", _photo(rng))
    Pipeline(IDENTITY).run_files(src, tmp_path / "out", backend="cpu")
    with FileLock(tmp_path / "out" / ".gpuenhance.lock", timeout=0):
        pass


# --------------------------------------------------------------------------- 3. metadata


@pytest.mark.parametrize("fmt,ext", [("JPEG", ".jpg"), ("PNG", ".png"), ("TIFF", ".tif"),
                                     ("WEBP", ".webp")])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_reading_applies_exif_orientation_like_pillow(tmp_path, rng, fmt, ext, orientation):
    path = _save(tmp_path / f"p{ext}", _smooth(6, 10), fmt,
                 exif=_exif(orientation).tobytes())
    img = read_image(path)
    with Image.open(path) as im:
        oracle = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert img.shape == oracle.shape
    if fmt == "JPEG":  # the two JPEG decoders may round differently
        assert np.abs(img.astype(int) - oracle).max() <= 2
    else:
        np.testing.assert_array_equal(img, oracle)


@pytest.mark.parametrize("fmt,ext", [("JPEG", ".jpg"), ("PNG", ".png"), ("TIFF", ".tif"),
                                     ("WEBP", ".webp")])
def test_a_portrait_phone_photo_comes_out_upright_with_its_exif_and_profile(
    tmp_path, rng, fmt, ext
):
    """Orientation=6 came out sideways, and the ICC profile and EXIF were dropped."""
    icc = _srgb()
    src = _save(tmp_path / "in" / f"phone{ext}", _smooth(24, 40), fmt,
                exif=_exif(6).tobytes(), icc_profile=icc)
    out = tmp_path / "out"
    assert main(["run", str(src.parent), "-o", str(out), "--backend", "cpu",
                 "--pipeline", IDENTITY]) == 0
    with Image.open(src) as im:
        upright = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    with Image.open(out / src.name) as im:
        exif = im.getexif()
        assert im.info.get("icc_profile") == icc
        written = np.asarray(im.convert("RGB"))
    assert exif.get(0x0112) == 1  # written upright, orientation reset
    assert exif.get(0x010F) == "TestCam"
    assert exif.get_ifd(0x8769).get(0x9003) == "2026:01:02 03:04:05"
    assert written.shape == upright.shape == (40, 24, 3)
    if fmt == "JPEG":  # decoded once more and re-encoded: close, not equal
        assert np.abs(written.astype(int) - upright).mean() < 3
    else:
        np.testing.assert_array_equal(written, upright)


def test_metadata_survive_a_filter_and_the_format_change_of_write_image(tmp_path, rng):
    icc = _srgb()
    src = _save(tmp_path / "a.jpg", _photo(rng), "JPEG", exif=_exif(3).tobytes(),
                icc_profile=icc)
    img, meta = read_image_with_metadata(src)
    assert meta.orientation == 3 and meta.icc_profile == icc
    write_image(tmp_path / "b.png", gaussian_filter(img, sigma=1.0), metadata=meta)
    with Image.open(tmp_path / "b.png") as im:
        assert im.info.get("icc_profile") == icc and im.getexif().get(0x010F) == "TestCam"


def test_a_format_that_cannot_hold_metadata_says_so(tmp_path, rng):
    from gpuenhance._metadata import ImageMetadata

    src = _save(tmp_path / "in" / "a.jpg", _photo(rng), "JPEG", icc_profile=_srgb())
    img, meta = read_image_with_metadata(src)
    with pytest.warns(UserWarning, match="without its icc_profile"):
        write_image(tmp_path / "a.bmp", img, metadata=meta)
    deep = (rng.random((8, 9, 3)) * 65535).astype(np.uint16)
    with pytest.warns(UserWarning, match="icc_profile"):  # Pillow holds no 16-bit colour TIFF
        write_image(tmp_path / "o.tif", deep, metadata=ImageMetadata(icc_profile=_srgb()))
    np.testing.assert_array_equal(read_image(tmp_path / "o.tif"), deep)
    # in a run the report carries the caveat, one note per output
    ok, buf = cv2.imencodeWithMetadata(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                                       [cv2.IMAGE_METADATA_ICCP],
                                       [np.frombuffer(_srgb(), np.uint8)])
    (tmp_path / "in2").mkdir()
    (tmp_path / "in2" / "b.bmp").write_bytes(cv2.imencode(".bmp", img)[1].tobytes())
    report = Pipeline(IDENTITY).run_files(src, tmp_path / "out", backend="cpu")
    assert report.ok and not report.notes  # JPEG holds the profile


# --------------------------------------------------------------------------- 4. multi-page


def test_a_multi_page_tiff_is_reported_not_cut_to_page_one(tmp_path, rng, capsys):
    pages = [Image.fromarray(_photo(rng)) for _ in range(3)]
    src = tmp_path / "in"
    src.mkdir()
    pages[0].save(src / "scan.tif", save_all=True, append_images=pages[1:])
    write_image(src / "ok.png", _photo(rng))
    out = tmp_path / "out"
    assert main(["run", str(src), "-o", str(out), "--backend", "cpu"]) == 1
    report = json.loads((out / "report.json").read_text())
    [failure] = report["failures"]
    assert failure["path"].endswith("scan.tif") and "3 pages" in failure["reason"]
    assert not (out / "scan.tif").exists() and (out / "ok.png").exists()


# --------------------------------------------------------------------------- 5. nothing to do


def test_a_folder_with_no_supported_image_is_an_error_that_counts_what_it_passed_over(
    tmp_path, capsys
):
    src = tmp_path / "phone"
    src.mkdir()
    for name in ("a.heic", "b.HEIC", "c.nef", "d.gif"):
        (src / name).write_bytes(b"not for us")
    out = tmp_path / "out"
    assert main(["run", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no supported images" in err
    assert "2 .heic" in err and "1 .nef" in err and "1 .gif" in err
    assert not out.exists()


def test_passed_over_files_are_counted_in_the_report(tmp_path, rng):
    src = tmp_path / "in"
    write_image(src / "a.png", _photo(rng))
    (src / "b.heic").write_bytes(b"x")
    report = Pipeline(IDENTITY).run_files(src, tmp_path / "out", backend="cpu")
    assert report.passed_over == {".heic": 1} and report.processed == 1


# --------------------------------------------------------------------------- 6. output folder


@pytest.mark.parametrize("bad", ["proc", "under_a_file", "is_a_file"])
def test_an_unusable_output_folder_is_one_line_and_exit_2(tmp_path, rng, capsys, bad):
    write_image(tmp_path / "in" / "a.png", _photo(rng))
    (tmp_path / "file.txt").write_text("x")
    out = {"proc": "/proc/gpuenhance-x", "under_a_file": str(tmp_path / "file.txt" / "o"),
           "is_a_file": str(tmp_path / "file.txt")}[bad]
    assert main(["run", str(tmp_path / "in"), "-o", out, "--backend", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and out in err
    assert (tmp_path / "file.txt").read_text() == "x"


# --------------------------------------------------------------------------- 7. bounded work


def test_a_tile_smaller_than_the_halo_is_refused_before_any_work(tmp_path, rng, capsys):
    write_image(tmp_path / "in" / "a.png", _photo(rng, 512, 512))
    start = time.perf_counter()
    assert main(["run", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--backend", "cpu",
                 "--max-tile", "8"]) == 2
    assert time.perf_counter() - start < 5
    err = capsys.readouterr().err
    # median 3 (1) + Gaussian sigma 1.2 (5 on float images: round(8 * 1.2 + 1) | 1 = 11 taps)
    assert "too small for the pipeline's halo of 6 pixels" in err and "13x13" in err
    assert not (tmp_path / "out").exists()


def test_a_tile_dominated_by_halos_warns_with_the_overhead(tmp_path, rng, capsys):
    write_image(tmp_path / "in" / "a.png", _photo(rng, 40, 40))
    assert main(["run", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--backend", "cpu",
                 "--max-tile", "16"]) == 0
    err = capsys.readouterr().err
    # 16x16 tiles around 4x4 cores (halo 6): 256 / 16 - 1 = 1500% more work
    assert "warning:" in err and "1500%" in err


@pytest.mark.parametrize("sigma", ["1e5", "1e9", "171"])
def test_huge_sigmas_are_refused_at_parse_time_with_the_range(tmp_path, rng, capsys, sigma):
    write_image(tmp_path / "in" / "a.png", _photo(rng))
    start = time.perf_counter()
    assert main(["run", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                 "--pipeline", f"gaussian:sigma={sigma}"]) == 2
    assert time.perf_counter() - start < 5
    err = capsys.readouterr().err
    assert "sigma must be <= 127.75" in err and "1023 taps" in err


def test_the_window_limit_matches_opencvs_derived_size(rng):
    img = _photo(rng, 8, 8)
    top = 170.333  # uint8: round(6 * sigma + 1) | 1 <= 1023
    out = gaussian_filter(img, sigma=top)
    np.testing.assert_allclose(out, cv2.GaussianBlur(img, (0, 0), top,
                                                     borderType=cv2.BORDER_REFLECT_101), atol=1)
    assert cv2.getGaussianKernel(int(np.rint(top * 6 + 1)) | 1, top).shape[0] == 1023
    with pytest.raises(ValueError, match="sigma must be <= 170.333 for uint8"):
        gaussian_filter(img, sigma=170.5)
    with pytest.raises(ValueError, match=r"ksize must be .* \[1, 1023\]"):
        gaussian_filter(img, ksize=1025, sigma=1.0)


# --------------------------------------------------------------------------- 8. float domain


def test_a_float_tiff_with_negative_values_gets_no_nan(tmp_path, rng):
    """A float TIFF with values below 0 through gamma came out 35% NaN, rc 0."""
    img = (rng.random((16, 20)) * 1.4 - 0.35).astype(np.float32)
    write_image(tmp_path / "in" / "f.tif", img)
    assert main(["run", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--backend", "cpu",
                 "--pipeline", "gamma:gamma=0.8"]) == 0
    out = read_image(tmp_path / "out" / "f.tif")
    assert not np.isnan(out).any()
    expected = np.clip(img.astype(np.float64), 0, 1) ** 0.8
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)


def test_nan_in_a_float_image_is_reported_not_processed(tmp_path, rng):
    img = rng.random((8, 9)).astype(np.float32)
    img[3, 4] = np.nan
    write_image(tmp_path / "in" / "nan.tif", img)
    report = Pipeline("gamma:gamma=0.8").run_files(tmp_path / "in", tmp_path / "out",
                                                   backend="cpu")
    [(path, reason)] = report.failures
    assert path.endswith("nan.tif") and "1 NaN" in reason
    assert not (tmp_path / "out" / "nan.tif").exists()


# --------------------------------------------------------------------------- 9. diagnostics


def test_info_names_an_installed_cupy_that_has_no_driver(monkeypatch, capsys):
    from importlib import metadata

    import gpuenhance._backend as backend

    class FakeDist:
        metadata = {"Name": "cupy-cuda12x"}
        version = "13.6.0"

    monkeypatch.setattr(metadata, "distributions", lambda: [FakeDist()])
    monkeypatch.setattr(backend, "_cuda_problem",
                        lambda: "CuPy found no usable CUDA driver or device (x)")
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "cupy:       13.6.0 (cupy-cuda12x)" in out and "not installed" not in out
    assert "no usable CUDA driver" in out


def test_a_big_endian_image_is_refused_for_its_byte_order():
    from gpuenhance import median_filter

    with pytest.raises(TypeError, match="native byte order.*big-endian"):
        median_filter(np.zeros((4, 4), ">u2"), 3)


@pytest.mark.parametrize("content", [b"garbage, not a filter", b"PK\x03\x04truncated zip"])
def test_a_corrupt_filter_file_is_named_as_such(tmp_path, rng, capsys, content):
    write_image(tmp_path / "in" / "a.png", _photo(rng))
    bad = tmp_path / "filter.npz"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match="not .*LMSRestorer filter file"):
        LMSRestorer.load(bad)
    assert main(["restore", "apply", str(tmp_path / "in"), "--filter", str(bad),
                 "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "allow_pickle" not in err and "filter file" in err


# --------------------------------------------------------------------------- 10. refused folder


def test_nothing_is_written_into_an_input_folder_given_as_output(tmp_path, rng, capsys):
    src = tmp_path / "photos"
    write_image(src / "a.png", _photo(rng))
    before = sorted(p.name for p in src.iterdir())
    assert main(["run", str(src), "-o", str(src), "--backend", "cpu"]) == 2
    assert "is the input folder" in capsys.readouterr().err
    assert sorted(p.name for p in src.iterdir()) == before  # no report.json, no lock


# --------------------------------------------------------------------------- encoder options


def test_quality_and_png_compression_reach_the_encoder_and_the_report(tmp_path, rng):
    src = tmp_path / "in"
    img = _photo(rng, 32, 48)
    write_image(src / "a.png", img)
    write_image(src / "b.jpg", img)
    out = tmp_path / "out"
    assert main(["run", str(src), "-o", str(out), "--backend", "cpu", "--pipeline", IDENTITY,
                 "--quality", "40", "--png-compression", "9"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["encoding"] == {"jpeg_quality": 40, "webp_quality": 40, "png_compression": 9}
    decoded_jpg = cv2.imdecode(np.fromfile(src / "b.jpg", np.uint8), cv2.IMREAD_UNCHANGED)
    ok, want = cv2.imencode(".jpg", decoded_jpg, [cv2.IMWRITE_JPEG_QUALITY, 40])
    assert (out / "b.jpg").read_bytes() == want.tobytes()
    ok, want = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert (out / "a.png").read_bytes() == want.tobytes()


def test_default_encoder_settings_are_opencvs_and_reported(tmp_path, rng):
    img = _smooth(64, 96)
    write_image(tmp_path / "in" / "a.png", img)
    assert main(["run", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--backend",
                 "cpu", "--pipeline", IDENTITY]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["encoding"] == {"jpeg_quality": 95, "webp_quality": "lossless",
                                  "png_compression": 1}
    # byte for byte what OpenCV writes with no parameter (naming level 1 changes the strategy)
    ok, want = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    assert (tmp_path / "out" / "a.png").read_bytes() == want.tobytes()


@pytest.mark.parametrize("flag,value", [("--quality", "0"), ("--quality", "101"),
                                        ("--png-compression", "10")])
def test_encoder_options_out_of_range_are_usage_errors(tmp_path, capsys, flag, value):
    assert main(["run", "-o", str(tmp_path / "out"), flag, value]) == 2
    assert "expected an integer from" in capsys.readouterr().err
