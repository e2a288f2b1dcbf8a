"""Image files in and out: decoding with a pixel limit, atomic writes, input discovery.

Arrays follow gpuenhance's image model: (H, W) grayscale, (H, W, 3) RGB, (H, W, 4) RGBA,
dtypes uint8, uint16 (16-bit PNG/TIFF) and float32 (float TIFF). OpenCV decodes and encodes;
colour images are converted between OpenCV's BGR order and RGB here, so callers only ever see
RGB.

Metadata policy (:mod:`gpuenhance._metadata`): reading applies the EXIF orientation, so pixels
come back upright; :func:`write_image` given the metadata of a read writes the picture upright
with the orientation reset and carries the rest of EXIF and the ICC profile over to JPEG, PNG,
WebP and TIFF. Multi-page and animated files are refused rather than cut to their first page.

Temporary files are named ``.gpuenhance-<16 hex>.<name>.tmp`` (:data:`TEMP_NAME`): no other
program's files match, so a run may remove those a killed run left without touching anything
a user owns.
"""

from __future__ import annotations

import glob
import os
import re
import secrets
import struct
import warnings
from pathlib import Path
from typing import Iterable, NamedTuple

import cv2
import numpy as np

from ._metadata import ImageMetadata, encode, read_metadata, upright

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SUPPORTED_EXTENSIONS",
    "TEMP_NAME",
    "ImageFile",
    "ImageMetadata",
    "ImageReadError",
    "find_images",
    "image_size",
    "read_image",
    "read_image_with_metadata",
    "EncodedImage",
    "load_encoded",
    "decode_encoded",
    "encode_image",
    "write_bytes_atomically",
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

#: The name of every temporary file gpuenhance writes (and the only files it ever removes).
TEMP_NAME = re.compile(r"^\.gpuenhance-[0-9a-f]{16}\..+\.tmp$")


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
    """Read an image file as an RGB(A) or grayscale array, upright.

    The EXIF orientation is applied (a portrait phone photo comes back portrait); use
    :func:`read_image_with_metadata` to keep the EXIF block and ICC profile for writing.

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
        unsupported extension, corrupt or truncated data, an unsupported pixel type, a
        multi-page or animated file, or an image over *max_pixels*.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> from gpuenhance.io import read_image, write_image
    >>> path = os.path.join(tempfile.mkdtemp(), "a.png")
    >>> write_image(path, np.full((4, 6, 3), 7, np.uint8))
    >>> read_image(path).shape
    (4, 6, 3)
    """
    return read_image_with_metadata(path, max_pixels=max_pixels)[0]


def read_image_with_metadata(
    path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, ImageMetadata]:
    """Read an image file upright, with the metadata :func:`write_image` carries over.

    Parameters and errors as for :func:`read_image`.

    Returns
    -------
    img : numpy.ndarray
        As :func:`read_image` returns it (EXIF orientation applied).
    metadata : ImageMetadata
        EXIF (orientation reset to 1) and ICC profile, for ``write_image(..., metadata=...)``.

    Examples
    --------
    >>> import io, os, tempfile, numpy as np
    >>> from PIL import Image
    >>> exif = Image.Exif(); exif[0x0112] = 6  # stored lying on its side
    >>> path = os.path.join(tempfile.mkdtemp(), "phone.jpg")
    >>> Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(path, exif=exif.tobytes())
    >>> img, meta = read_image_with_metadata(path)
    >>> img.shape, meta.orientation
    ((6, 4, 3), 6)
    """
    return decode_encoded(load_encoded(path, max_pixels=max_pixels), max_pixels=max_pixels)


class EncodedImage(NamedTuple):
    """An image file read and checked but not decoded (see :func:`load_encoded`).

    Attributes
    ----------
    path : pathlib.Path
        The file.
    data : numpy.ndarray
        Its bytes (uint8).
    metadata : ImageMetadata
        EXIF, ICC profile, orientation, pages, and the stored pixel mode.
    size : tuple of int or None
        ``(width, height)`` as stored, from the header (None where the header did not say).
    """

    path: Path
    data: np.ndarray
    metadata: ImageMetadata
    size: tuple | None

    @property
    def is_jpeg(self) -> bool:
        return self.data.size >= 2 and self.data[0] == 0xFF and self.data[1] == 0xD8

    @property
    def upright_size(self) -> tuple | None:
        """``(width, height)`` once the EXIF orientation is applied."""
        if self.size is None:
            return None
        w, h = self.size
        return (h, w) if self.metadata.orientation in (5, 6, 7, 8) else (w, h)


def load_encoded(path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> EncodedImage:
    """Read an image file and check everything that can be checked before decoding it:
    extension, emptiness, the size its header declares against *max_pixels*, visible
    truncation, pages. Raises :class:`ImageReadError` as :func:`read_image` does."""
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
    metadata = read_metadata(buf.tobytes())
    if metadata.frames > 1:
        raise ImageReadError(
            path,
            f"multi-page or animated image ({metadata.frames} pages); only single images are "
            f"processed, so it is skipped rather than cut to its first page",
        )
    return EncodedImage(path, buf, metadata, size)


def decode_encoded(
    encoded: EncodedImage, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, bgr: bool = False
) -> tuple[np.ndarray, ImageMetadata]:
    """Decode what :func:`load_encoded` read, with OpenCV, upright; ``(img, metadata)``.

    *bgr* keeps OpenCV's channel order (BGR, BGRA) instead of converting to RGB: for callers
    whose processing does not depend on the order and that write with ``bgr=True`` too."""
    path, buf, metadata = encoded.path, encoded.data, encoded.metadata
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
        if channels not in (3, 4):
            raise ImageReadError(path, f"unsupported channel count {channels}")
        if not bgr:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB if channels == 3 else cv2.COLOR_BGRA2RGBA)
    if not _orients_itself(buf):
        img = upright(img, metadata.orientation)
    return img, metadata


def _orients_itself(buf: np.ndarray) -> bool:
    """Whether OpenCV's decoder already applied the file's orientation (its TIFF decoder does,
    even with IMREAD_UNCHANGED; the others return pixels as stored)."""
    head = buf[:4].tobytes()
    return head in (b"II*\x00", b"MM\x00*")


# --------------------------------------------------------------------------- writing


def _encodable(path: Path, img, bgr: bool = False) -> np.ndarray:
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
    if img.ndim == 2 or (bgr and img.ndim == 3 and img.shape[2] in (3, 4)):
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


def write_bytes_atomically(path, data: bytes, *, fsync: bool = False) -> None:
    """Write *data* to *path* through a temporary file in the same folder and a rename.

    Readers never see a partial file; on failure the temporary file is removed and *path* is
    untouched. The temporary file's name matches :data:`TEMP_NAME`. *fsync* flushes the data
    to disk before the rename. Missing parent folders are created.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "notes.txt")
    >>> write_bytes_atomically(path, b"done")
    >>> open(path, "rb").read(), os.listdir(os.path.dirname(path))
    (b'done', ['notes.txt'])
    """
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".gpuenhance-{secrets.token_hex(8)}.{path.name}.tmp"
    try:
        # os.open with mode 0o666 lets the umask set the final permissions, as a plain open would.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_image(
    path, img, *, params: Iterable[int] = (), metadata: ImageMetadata | None = None
) -> None:
    """Write an RGB(A) or grayscale array to an image file, atomically.

    The image is encoded in memory and written with :func:`write_bytes_atomically`, so
    readers never see a partial file and a failure leaves no temporary file behind. Missing
    parent folders are created. This function overwrites *path* if it exists: callers that
    must protect inputs check first.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; the extension picks the format.
    img : numpy.ndarray
        (H, W), (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA. uint8 for every format; uint16
        also for PNG and TIFF; float32 for TIFF.
    params : iterable of int, optional
        OpenCV ``imwrite`` flags, e.g. ``(cv2.IMWRITE_JPEG_QUALITY, 90)``.
    metadata : ImageMetadata, optional
        What :func:`read_image_with_metadata` returned: its EXIF block (orientation 1) and
        ICC profile are written with the image where the format holds them. A format that
        cannot hold some of it (BMP holds none; a TIFF of uint16 or float32 colour is written
        without them) gets the image alone, with a :class:`UserWarning` naming what was left.

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
    dropped = write_image_keeping(path, img, params=params, metadata=metadata)
    if dropped:
        warnings.warn(
            f"{str(path)!r} was written without its {' and '.join(dropped)}: "
            f"the format cannot hold them for a {img.dtype} image",
            UserWarning,
            stacklevel=2,
        )


def write_image_keeping(path, img, *, params=(), metadata=None, bgr=False) -> tuple[str, ...]:
    """:func:`write_image` that returns, rather than warns about, the metadata it could not
    keep (``("exif", "icc_profile")``, a part of it, or an empty tuple). *bgr*: *img* is in
    OpenCV's channel order (see :func:`decode_encoded`)."""
    encoded, dropped = encode_image(path, img, params=params, metadata=metadata, bgr=bgr)
    write_bytes_atomically(path, encoded)
    return dropped


def encode_image(path, img, *, params=(), metadata=None, bgr=False
                 ) -> tuple[bytes, tuple[str, ...]]:
    """The bytes :func:`write_image` would write to *path* (its extension picks the format),
    and the kinds of *metadata* the format could not hold.

    Examples
    --------
    >>> import numpy as np
    >>> data, dropped = encode_image("x.png", np.zeros((2, 3), np.uint8))
    >>> data[:4], dropped
    (b'\x89PNG', ())
    """
    path = Path(path)
    data = _encodable(path, img, bgr)
    rgb = img[:, :, 0] if img.ndim == 3 and img.shape[2] == 1 else img
    tiff = path.suffix.lower() in (".tif", ".tiff")
    pillow = tiff and metadata is not None and not metadata.empty
    if bgr and rgb.ndim == 3 and pillow:  # only Pillow's TIFF writer reads the RGB order
        rgb = cv2.cvtColor(rgb, cv2.COLOR_BGR2RGB if rgb.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
    return encode(path.suffix.lower(), rgb, data, params, metadata)


# --------------------------------------------------------------------------- discovery

_GLOB_CHARS = frozenset("*?[")


def _supported(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in SUPPORTED_EXTENSIONS


def _walk(folder: Path, excluded: tuple[Path, ...], passed_over: dict):
    """Supported image files under *folder*, skipping hidden entries and *excluded* trees;
    the other files are counted by extension into *passed_over*."""
    for root, dirs, files in os.walk(folder):
        root_path = Path(root)
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".") and (root_path / d).resolve() not in excluded
        )
        for name in sorted(files):
            if name.startswith("."):
                continue
            if _supported(name):
                yield root_path / name
            else:
                ext = os.path.splitext(name)[1].lower() or "(no extension)"
                passed_over[ext] = passed_over.get(ext, 0) + 1


def _glob_base(pattern: str) -> Path:
    """The fixed leading folders of a glob pattern (what relative paths are taken from)."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if _GLOB_CHARS & set(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def find_images(inputs, *, exclude=(), passed_over: dict | None = None) -> list[ImageFile]:
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
    passed_over : dict, optional
        When given, receives ``{extension: count}`` of the visible files that folder and glob
        expansion passed over for an unsupported extension (e.g. ``{".heic": 3}``).

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
    skipped: dict = {} if passed_over is None else passed_over

    def is_excluded(p: Path) -> bool:
        rp = p.resolve()
        return any(rp == e or e in rp.parents for e in excluded)

    found: list[ImageFile] = []
    for item in inputs:
        text = os.fspath(item)
        path = Path(text)
        if path.is_dir():
            found.extend(
                ImageFile(p, p.relative_to(path)) for p in _walk(path, excluded, skipped)
            )
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
                    found.extend(
                        ImageFile(p, p.relative_to(base)) for p in _walk(mp, excluded, skipped)
                    )
                elif mp.is_file() and not is_excluded(mp):
                    if _supported(mp.name):
                        found.append(ImageFile(mp, mp.relative_to(base)))
                    else:
                        ext = mp.suffix.lower() or "(no extension)"
                        skipped[ext] = skipped.get(ext, 0) + 1
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
