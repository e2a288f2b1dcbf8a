"""Image files in and out: decoding with a pixel limit, atomic writes, input discovery.

Arrays follow gpuenhance's image model: (H, W) grayscale, (H, W, 3) RGB, (H, W, 4) RGBA,
dtypes uint8, uint16 (16-bit PNG/TIFF) and float32 (float TIFF). OpenCV decodes and encodes;
colour images are converted between OpenCV's BGR order and RGB here, so callers only ever see
RGB. EXIF orientation is not applied (pixels are returned as stored).
"""

from __future__ import annotations

import glob
import os
import secrets
import struct
from pathlib import Path
from typing import Iterable, NamedTuple

import cv2
import numpy as np

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SUPPORTED_EXTENSIONS",
    "ImageFile",
    "ImageReadError",
    "find_images",
    "image_size",
    "read_image",
    "write_image",
]

#: Extensions read and written (lower case, with the dot).
SUPPORTED_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")

#: Default limit on width * height, a guard against decompression bombs (100 megapixels).
DEFAULT_MAX_PIXELS = 100_000_000

# Which dtypes each format can store without a lossy conversion by OpenCV.
_WRITE_DTYPES = {
    ".png": ("uint8", "uint16"),
    ".tif": ("uint8", "uint16", "float32"),
    ".tiff": ("uint8", "uint16", "float32"),
    ".jpg": ("uint8",),
    ".jpeg": ("uint8",),
    ".bmp": ("uint8",),
    ".webp": ("uint8",),
}
_READ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))


class ImageReadError(ValueError):
    """An image file could not be read; the message names the file and the reason.

    Attributes
    ----------
    path : str
        The file.
    reason : str
        Why it could not be read (without the file name).
    """

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path!r}: {reason}")


class ImageFile(NamedTuple):
    """One input found by :func:`find_images`.

    Attributes
    ----------
    path : pathlib.Path
        The file to read.
    relative : pathlib.Path
        Its path relative to the input it was found under (a directory, or a glob's fixed
        prefix), used to mirror the input layout under an output folder.
    """

    path: Path
    relative: Path


# --------------------------------------------------------------------------- header sizes


def _png_size(data: bytes):
    if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    return None


# SOFn markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes):
    if data[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan: no frame header seen
            return None
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _JPEG_SOF:
            if i + 9 > n:
                return None
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + length
    return None


def _bmp_size(data: bytes):
    if len(data) < 26 or data[:2] != b"BM":
        return None
    (header,) = struct.unpack("<I", data[14:18])
    if header == 12:  # BITMAPCOREHEADER
        width, height = struct.unpack("<HH", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)


def _webp_size(data: bytes):
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and data[20] == 0x2F:
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None


def _tiff_size(data: bytes):
    if data[:4] == b"II*\x00":
        end = "<"
    elif data[:4] == b"MM\x00*":
        end = ">"
    else:
        return None  # not TIFF, or BigTIFF (left to the decoder)
    (offset,) = struct.unpack(end + "I", data[4:8])
    if offset + 2 > len(data):
        return None
    (count,) = struct.unpack(end + "H", data[offset : offset + 2])
    found = {}
    for k in range(count):
        entry = offset + 2 + 12 * k
        if entry + 12 > len(data):
            return None
        tag, typ, num = struct.unpack(end + "HHI", data[entry : entry + 8])
        if tag in (256, 257) and num == 1:
            if typ == 3:  # SHORT
                (value,) = struct.unpack(end + "H", data[entry + 8 : entry + 10])
            elif typ == 4:  # LONG
                (value,) = struct.unpack(end + "I", data[entry + 8 : entry + 12])
            else:
                return None
            found[tag] = value
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


def image_size(data) -> tuple[int, int] | None:
    """Width and height read from an encoded image's header, without decoding it.

    Understands PNG, JPEG, BMP, WebP and classic TIFF (first page).

    Parameters
    ----------
    data : bytes-like
        The file's bytes (the first few kilobytes suffice for all but JPEGs with large
        metadata segments).

    Returns
    -------
    tuple of int or None
        ``(width, height)``, or None when the format is not recognised or the header is
        malformed (the decoder then has the last word).

    Examples
    --------
    >>> import cv2, numpy as np
    >>> ok, buf = cv2.imencode(".png", np.zeros((5, 7), np.uint8))
    >>> image_size(buf.tobytes())
    (7, 5)
    """
    data = bytes(data)
    for parse in (_png_size, _jpeg_size, _bmp_size, _webp_size, _tiff_size):
        try:
            size = parse(data)
        except (struct.error, IndexError):
            size = None
        if size is not None:
            return int(size[0]), int(size[1])
    return None


# --------------------------------------------------------------------------- reading


def _truncation(data: bytes) -> str | None:
    """A reason when a PNG or JPEG stream visibly lacks its end (decoders may pad silently)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if data.rfind(b"IEND") < 0:
            return "truncated PNG (no IEND chunk)"
    elif data[:2] == b"\xff\xd8":
        # Entropy-coded data never contains FF D9, so an EOI after the first scan marks the end.
        scan = data.find(b"\xff\xda")
        if scan < 0 or data.rfind(b"\xff\xd9") < scan:
            return "truncated JPEG (no end-of-image marker after the scan data)"
    return None


def read_image(path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as an RGB(A) or grayscale array.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.png``, ``.jpg``/``.jpeg``, ``.tif``/``.tiff``, ``.bmp`` or ``.webp`` file.
    max_pixels : int or None, optional
        Refuse images with more than this many pixels (width * height); checked from the
        file header before decoding where the format allows, and after decoding always.
        None disables the check (OpenCV's own limit still applies).

    Returns
    -------
    numpy.ndarray
        (H, W) for grayscale, (H, W, 3) RGB or (H, W, 4) RGBA; uint8, uint16 (16-bit PNG and
        TIFF) or float32 (float TIFF).

    Raises
    ------
    ImageReadError
        (a ValueError) naming the file, for a missing or unreadable file, an empty file, an
        unsupported extension, corrupt or truncated data, an unsupported pixel type, or an
        image over *max_pixels*.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> from gpuenhance.io import read_image, write_image
    >>> path = os.path.join(tempfile.mkdtemp(), "a.png")
    >>> write_image(path, np.full((4, 6, 3), 7, np.uint8))
    >>> read_image(path).shape
    (4, 6, 3)
    """
    path = Path(path)
    if max_pixels is not None and (isinstance(max_pixels, bool) or int(max_pixels) < 1):
        raise ValueError(f"max_pixels must be a positive integer or None; got {max_pixels!r}")
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise ImageReadError(
            path,
            f"unsupported file extension {path.suffix!r} "
            f"(supported: {', '.join(SUPPORTED_EXTENSIONS)})",
        )
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageReadError(path, exc.strerror or str(exc)) from exc
    if buf.size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    is_jpeg = buf.size >= 2 and buf[0] == 0xFF and buf[1] == 0xD8
    # JPEG needs the whole stream (frame header after large metadata; end marker check);
    # other formats need the header and, for PNG, the last chunk only.
    raw = buf.tobytes() if is_jpeg else buf[: 1 << 16].tobytes()
    size = image_size(raw)
    if size is not None and max_pixels is not None and size[0] * size[1] > max_pixels:
        raise ImageReadError(
            path,
            f"{size[0]}x{size[1]} = {size[0] * size[1]} pixels exceeds max_pixels={max_pixels}",
        )
    truncated = _truncation(raw if is_jpeg else raw[:8] + buf[-64:].tobytes())
    if truncated:
        raise ImageReadError(path, truncated)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageReadError(path, f"decoder error: {str(exc).strip().splitlines()[-1]}") from exc
    if img is None or img.size == 0:
        raise ImageReadError(path, "corrupt or unrecognised image data")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if max_pixels is not None and img.shape[0] * img.shape[1] > max_pixels:
        raise ImageReadError(
            path,
            f"{img.shape[1]}x{img.shape[0]} = {img.shape[0] * img.shape[1]} pixels "
            f"exceeds max_pixels={max_pixels}",
        )
    if img.dtype not in _READ_DTYPES:
        raise ImageReadError(
            path, f"unsupported pixel type {img.dtype.name} (supported: uint8, uint16, float32)"
        )
    if img.ndim == 3:
        channels = img.shape[2]
        if channels == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        elif channels == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
        else:
            raise ImageReadError(path, f"unsupported channel count {channels}")
    return img


# --------------------------------------------------------------------------- writing


def _encodable(path: Path, img) -> np.ndarray:
    ext = path.suffix.lower()
    if ext not in _WRITE_DTYPES:
        raise ValueError(
            f"path must end in one of {', '.join(SUPPORTED_EXTENSIONS)}; got {str(path)!r}"
        )
    if not isinstance(img, np.ndarray):
        raise TypeError(f"img must be a NumPy array; got {type(img).__name__}")
    if img.dtype.name not in _WRITE_DTYPES[ext]:
        raise TypeError(
            f"img dtype must be one of {', '.join(_WRITE_DTYPES[ext])} for a {ext} file; "
            f"got {img.dtype.name}"
        )
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        out = img
    elif img.ndim == 3 and img.shape[2] == 3:
        out = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        out = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGBA2BGRA)
    else:
        raise ValueError(
            f"img must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); "
            f"got {tuple(img.shape)}"
        )
    if out.size == 0:
        raise ValueError(f"img must not be empty; got shape {tuple(img.shape)}")
    return np.ascontiguousarray(out)


def write_image(path, img, *, params: Iterable[int] = ()) -> None:
    """Write an RGB(A) or grayscale array to an image file, atomically.

    The image is encoded in memory, written to a temporary file in the destination folder
    and renamed over *path* (``os.replace``), so readers never see a partial file and a
    failure leaves no temporary file behind. Missing parent folders are created. This
    function overwrites *path* if it exists: callers that must protect inputs check first.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; the extension picks the format.
    img : numpy.ndarray
        (H, W), (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA. uint8 for every format; uint16
        also for PNG and TIFF; float32 for TIFF.
    params : iterable of int, optional
        OpenCV ``imwrite`` flags, e.g. ``(cv2.IMWRITE_JPEG_QUALITY, 90)``.

    Raises
    ------
    TypeError
        For a non-array or a dtype the format cannot store.
    ValueError
        For an unsupported extension or shape.
    OSError
        When the file cannot be written.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> from gpuenhance.io import read_image, write_image
    >>> path = os.path.join(tempfile.mkdtemp(), "deep.png")
    >>> img = np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000
    >>> write_image(path, img)
    >>> bool((read_image(path) == img).all())
    True
    """
    path = Path(path)
    data = _encodable(path, img)
    ok, encoded = cv2.imencode(path.suffix.lower(), data, list(params))
    if not ok:
        raise OSError(f"OpenCV could not encode {str(path)!r}")
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        # os.open with mode 0o666 lets the umask set the final permissions, as a plain open would.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(encoded.tobytes())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# --------------------------------------------------------------------------- discovery

_GLOB_CHARS = frozenset("*?[")


def _supported(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in SUPPORTED_EXTENSIONS


def _walk(folder: Path, excluded: tuple[Path, ...]):
    """Supported image files under *folder*, skipping hidden entries and *excluded* trees."""
    for root, dirs, files in os.walk(folder):
        root_path = Path(root)
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".") and (root_path / d).resolve() not in excluded
        )
        for name in sorted(files):
            if not name.startswith(".") and _supported(name):
                yield root_path / name


def _glob_base(pattern: str) -> Path:
    """The fixed leading folders of a glob pattern (what relative paths are taken from)."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if _GLOB_CHARS & set(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def find_images(inputs, *, exclude=()) -> list[ImageFile]:
    """Expand files, folders (recursively) and glob patterns into image files.

    Parameters
    ----------
    inputs : str, os.PathLike, or iterable of them
        Files are taken as they are (whatever their extension, so that an unsupported file
        named explicitly is reported rather than silently dropped); folders contribute their
        supported image files, recursively, skipping hidden files and folders; glob patterns
        (``*``, ``?``, ``[``; ``**`` recurses) contribute their matches.
    exclude : iterable of path, optional
        Folders whose contents folder/glob expansion skips (e.g. an output folder inside an
        input folder).

    Returns
    -------
    list of ImageFile
        ``(path, relative)`` pairs, sorted by relative path then path, each file once
        (duplicates by resolved path keep their first occurrence). ``relative`` is the path
        under the folder or glob prefix it was found in, or just the file name for a file.

    Raises
    ------
    FileNotFoundError
        For an input that does not exist or a pattern that matches nothing.

    Examples
    --------
    >>> import os, tempfile
    >>> root = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(root, "sub"))
    >>> for name in ("b.png", "sub/a.jpg", "notes.txt"):
    ...     open(os.path.join(root, name), "wb").close()
    >>> [str(f.relative) for f in find_images(root)]
    ['b.png', 'sub/a.jpg']
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    excluded = tuple(Path(e).resolve() for e in exclude)

    def is_excluded(p: Path) -> bool:
        rp = p.resolve()
        return any(rp == e or e in rp.parents for e in excluded)

    found: list[ImageFile] = []
    for item in inputs:
        text = os.fspath(item)
        path = Path(text)
        if path.is_dir():
            found.extend(ImageFile(p, p.relative_to(path)) for p in _walk(path, excluded))
        elif path.is_file():
            found.append(ImageFile(path, Path(path.name)))
        elif _GLOB_CHARS & set(text):
            base = _glob_base(text)
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise FileNotFoundError(f"no files match the pattern {text!r}")
            for m in matches:
                mp = Path(m)
                if mp.is_dir():
                    found.extend(ImageFile(p, p.relative_to(base)) for p in _walk(mp, excluded))
                elif mp.is_file() and _supported(mp.name) and not is_excluded(mp):
                    found.append(ImageFile(mp, mp.relative_to(base)))
        else:
            raise FileNotFoundError(f"input {text!r} does not exist")
    seen: set[Path] = set()
    unique = []
    for f in found:
        key = f.path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    unique.sort(key=lambda f: (f.relative.as_posix(), f.path.as_posix()))
    return unique
