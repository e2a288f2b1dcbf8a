"""gpuenhance.io: decoding, the pixel limit, atomic writes and input discovery.

Oracles: the arrays written (lossless formats), OpenCV's own ``cv2.imread`` with the channel
order reversed by hand, and array shapes for header sizes.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from gpuenhance import io as gio
from gpuenhance.io import ImageReadError, find_images, image_size, read_image, write_image


def _cv_read_rgb(path):
    """Independent oracle: OpenCV's imread, BGR(A) -> RGB(A) by slicing."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img.ndim == 3 and img.shape[2] == 3:
        return img[:, :, ::-1]
    if img.ndim == 3 and img.shape[2] == 4:
        return img[:, :, [2, 1, 0, 3]]
    return img


@pytest.mark.parametrize(
    "shape, dtype",
    [
        ((17, 23), np.uint8),
        ((17, 23, 3), np.uint8),
        ((17, 23, 4), np.uint8),
        ((17, 23), np.uint16),
        ((17, 23, 3), np.uint16),
    ],
)
def test_png_round_trip_is_exact(tmp_path, rng, shape, dtype):
    img = rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)
    path = tmp_path / "x.png"
    write_image(path, img)
    back = read_image(path)
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, img)
    # channel order on disk is OpenCV's BGR(A): the file read by OpenCV, reordered, matches
    np.testing.assert_array_equal(_cv_read_rgb(path), img)


@pytest.mark.parametrize("ext", [".tif", ".bmp"])
def test_other_lossless_formats_round_trip(tmp_path, rng, ext):
    img = rng.integers(0, 256, size=(9, 11, 3), dtype=np.uint8)
    write_image(tmp_path / f"x{ext}", img)
    np.testing.assert_array_equal(read_image(tmp_path / f"x{ext}"), img)


def test_float32_tiff_round_trip(tmp_path, rng):
    img = rng.random((6, 7, 3), dtype=np.float32)
    write_image(tmp_path / "f.tiff", img)
    back = read_image(tmp_path / "f.tiff")
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, img)


def test_jpeg_read_matches_opencv(tmp_path, rng):
    img = rng.integers(0, 256, size=(16, 24, 3), dtype=np.uint8)
    path = tmp_path / "x.JPG"  # extension case does not matter
    write_image(path, img)
    np.testing.assert_array_equal(read_image(path), _cv_read_rgb(path))


def test_write_refuses_dtype_the_format_cannot_store(tmp_path):
    with pytest.raises(TypeError, match="uint16"):
        write_image(tmp_path / "x.jpg", np.zeros((4, 4), np.uint16))
    with pytest.raises(ValueError, match="path must end in"):
        write_image(tmp_path / "x.gif", np.zeros((4, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch, rng):
    path = tmp_path / "sub" / "a.png"
    first = rng.integers(0, 256, size=(5, 6), dtype=np.uint8)
    write_image(path, first)  # creates the parent folder
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.png"]

    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(gio.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        write_image(path, np.zeros((5, 6), np.uint8))
    # the old file is intact and the temporary file is gone
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.png"]
    np.testing.assert_array_equal(read_image(path), first)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp", ".tif"])
def test_image_size_from_header(tmp_path, ext):
    img = np.zeros((13, 29, 3), np.uint8)
    write_image(tmp_path / f"s{ext}", img)
    assert image_size((tmp_path / f"s{ext}").read_bytes()) == (29, 13)


def test_image_size_unknown_format_is_none():
    assert image_size(b"not an image at all") is None


# --------------------------------------------------------------------------- bad files


def _png_bytes(shape=(40, 57, 3)) -> bytes:
    img = (np.arange(np.prod(shape)) % 251).astype(np.uint8).reshape(shape)
    return cv2.imencode(".png", img)[1].tobytes()


def _jpeg_bytes(shape=(40, 57, 3)) -> bytes:
    img = (np.arange(np.prod(shape)) % 251).astype(np.uint8).reshape(shape)
    return cv2.imencode(".jpg", img)[1].tobytes()


BAD_FILES = {
    "empty.png": (b"", "empty file"),
    "truncated.png": (_png_bytes()[: len(_png_bytes()) // 2], "truncated PNG"),
    "truncated.jpg": (_jpeg_bytes()[: len(_jpeg_bytes()) // 2], "truncated JPEG"),
    "noise.png": (np.random.default_rng(7).bytes(300), "corrupt"),
    "notes.txt": (b"hello", "unsupported file extension"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_raises_image_read_error_naming_it(tmp_path, name):
    data, fragment = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ImageReadError, match=fragment) as info:
        read_image(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)
    assert info.value.path == str(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="missing.png"):
        read_image(tmp_path / "missing.png")


@pytest.mark.parametrize("maker, ext", [(_png_bytes, ".png"), (_jpeg_bytes, ".jpg")])
def test_max_pixels_refused_before_decoding(tmp_path, monkeypatch, maker, ext):
    path = tmp_path / f"big{ext}"
    path.write_bytes(maker())

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded an image that the header check should refuse")

    monkeypatch.setattr(gio.cv2, "imdecode", no_decode)
    with pytest.raises(ImageReadError, match="2280 pixels exceeds max_pixels=2279"):
        read_image(path, max_pixels=40 * 57 - 1)


def test_max_pixels_boundary_is_inclusive(tmp_path):
    path = tmp_path / "ok.png"
    path.write_bytes(_png_bytes())
    assert read_image(path, max_pixels=40 * 57).shape == (40, 57, 3)


# --------------------------------------------------------------------------- discovery


def _touch(root: Path, *names):
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def test_find_images_directories_recursive_sorted(tmp_path):
    _touch(tmp_path, "b.png", "a/z.JPG", "a/c.tiff", "notes.txt", ".hidden.png", ".cache/x.png")
    found = find_images(tmp_path)
    assert [f.relative.as_posix() for f in found] == ["a/c.tiff", "a/z.JPG", "b.png"]
    assert all(f.path == tmp_path / f.relative for f in found)


def test_find_images_files_globs_and_dedup(tmp_path):
    _touch(tmp_path, "in/one.png", "in/two.jpg", "in/deep/three.png", "odd.xyz")
    found = find_images(
        [
            tmp_path / "in" / "one.png",               # a file: relative = its name
            str(tmp_path / "in" / "**" / "*.png"),     # glob: relative to the fixed prefix
            tmp_path / "in",                           # the folder again: no duplicates
            tmp_path / "odd.xyz",                      # explicit files are kept whatever the ext
        ]
    )
    pairs = [(f.path.relative_to(tmp_path).as_posix(), f.relative.as_posix()) for f in found]
    assert pairs == [
        ("in/deep/three.png", "deep/three.png"),
        ("odd.xyz", "odd.xyz"),
        ("in/one.png", "one.png"),
        ("in/two.jpg", "two.jpg"),
    ]


def test_find_images_exclude_and_missing(tmp_path):
    _touch(tmp_path, "a.png", "out/a.png")
    assert [f.relative.as_posix() for f in find_images(tmp_path, exclude=[tmp_path / "out"])] == [
        "a.png"
    ]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_images(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no files match"):
        find_images(str(tmp_path / "*.webp"))


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_write_permissions_follow_umask(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    write_image(tmp_path / "p.png", np.zeros((2, 2), np.uint8))
    assert (tmp_path / "p.png").stat().st_mode & 0o777 == 0o666 & ~mask
