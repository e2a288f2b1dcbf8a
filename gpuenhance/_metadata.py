"""What a photo carries besides its pixels: EXIF orientation, the rest of EXIF, the ICC profile.

The policy of :mod:`gpuenhance.io`: decoding applies the EXIF orientation, so filters see the
picture upright; outputs are written upright with the orientation tag reset to 1 ("normal"),
and the rest of the EXIF block and the ICC colour profile are carried over to the formats that
hold them (JPEG, PNG, WebP, TIFF). Pillow parses and serialises EXIF; OpenCV keeps encoding the
pixels (so pixel data are unchanged by this module), with ``cv2.imencodeWithMetadata`` for
JPEG, PNG and WebP. TIFF metadata are written by Pillow, which holds grayscale of every dtype
and 8-bit RGB(A); an RGB(A) TIFF of uint16 or float32 is written by OpenCV without them, and
the writer says so (:func:`encode` returns what it could not keep).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

__all__ = ["ImageMetadata", "read_metadata", "upright", "encode"]

ORIENTATION = 0x0112  # EXIF/TIFF tag 274

# TIFF tags that describe a picture rather than how its pixels are stored: what a TIFF's main
# IFD can carry over to another file (Pillow's getexif() of a TIFF is the whole IFD, strip
# offsets and all). Resolution, descriptions, camera, dates, authorship, the EXIF and GPS IFDs.
_TIFF_DESCRIPTIVE = frozenset({
    269, 270, 271, 272, 282, 283, 296, 305, 306, 315, 316, 33432, 0x8769, 0x8825,
})
_EXIF_HEADER = b"Exif\x00\x00"


@dataclass(frozen=True)
class ImageMetadata:
    """Metadata read from an image file, as written back to its output.

    Attributes
    ----------
    exif : bytes or None
        The EXIF block (TIFF structure without the ``Exif\\0\\0`` header) with the orientation
        tag reset to 1, or None when the file had none.
    icc_profile : bytes or None
        The embedded ICC colour profile, or None.
    orientation : int
        The EXIF orientation the file declared (1 to 8; 1 when absent or invalid). Reading
        applies it; it is kept here for reports.
    frames : int
        Pages (TIFF) or frames (animated PNG/WebP) in the file.
    """

    exif: bytes | None = None
    icc_profile: bytes | None = None
    orientation: int = 1
    frames: int = 1

    @property
    def empty(self) -> bool:
        """True when there is nothing to write back (no EXIF, no ICC profile)."""
        return self.exif is None and self.icc_profile is None


def read_metadata(data: bytes) -> ImageMetadata:
    """Parse an encoded image's EXIF, ICC profile and page count (headers only, no pixels).

    Parameters
    ----------
    data : bytes
        The whole file.

    Returns
    -------
    ImageMetadata
        Empty when Pillow does not recognise the format.

    Examples
    --------
    >>> import io, numpy as np
    >>> from PIL import Image
    >>> exif = Image.Exif(); exif[0x0112] = 6; exif[0x010F] = "Camera"
    >>> buf = io.BytesIO()
    >>> Image.fromarray(np.zeros((2, 3), np.uint8)).save(buf, "JPEG", exif=exif.tobytes())
    >>> meta = read_metadata(buf.getvalue())
    >>> kept = Image.Exif(); kept.load(meta.exif)
    >>> meta.orientation, kept[0x0112], kept[0x010F]
    (6, 1, 'Camera')
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # size limits are io's business, checked before
            with Image.open(io.BytesIO(data)) as im:
                exif = im.getexif()
                icc = im.info.get("icc_profile") or None
                frames = int(getattr(im, "n_frames", 1))
                is_tiff = im.format == "TIFF"
    except Exception:  # noqa: BLE001 - not a format Pillow reads: no metadata to carry
        return ImageMetadata()
    if is_tiff:
        kept = Image.Exif()
        for tag in _TIFF_DESCRIPTIVE & set(exif):
            if tag in (0x8769, 0x8825):
                kept.get_ifd(tag).update(exif.get_ifd(tag))
            else:
                kept[tag] = exif[tag]
        kept[ORIENTATION] = exif.get(ORIENTATION, 1)
        exif = kept
    orientation = exif.get(ORIENTATION, 1)
    if not isinstance(orientation, int) or not 1 <= orientation <= 8:
        orientation = 1
    block = None
    if len(exif) > 0:
        if ORIENTATION in exif:
            exif[ORIENTATION] = 1
        block = exif.tobytes()
        if block.startswith(_EXIF_HEADER):
            block = block[len(_EXIF_HEADER):]
    return ImageMetadata(exif=block, icc_profile=icc, orientation=orientation, frames=frames)


def upright(img: np.ndarray, orientation: int) -> np.ndarray:
    """The picture *img* shows when displayed under EXIF *orientation* (1 to 8).

    Examples
    --------
    >>> import numpy as np
    >>> upright(np.array([[1, 2], [3, 4]]), 6)  # stored rotated: turn 90 degrees clockwise
    array([[3, 1],
           [4, 2]])
    """
    if orientation in (5, 6, 7, 8):  # the stored rows are the picture's columns
        img = np.swapaxes(img, 0, 1)
        flips = {5: (), 6: (1,), 7: (0, 1), 8: (0,)}[orientation]
    else:
        flips = {1: (), 2: (1,), 3: (0, 1), 4: (0,)}.get(orientation, ())
    for axis in flips:
        img = np.flip(img, axis)
    return np.ascontiguousarray(img)


def _pillow_tiff(img: np.ndarray) -> Image.Image | None:
    """*img* (RGB order) as a Pillow image when Pillow can store it in a TIFF, else None."""
    if img.ndim == 2 or img.dtype == np.uint8:
        return Image.fromarray(np.ascontiguousarray(img))
    return None


def encode(ext: str, img: np.ndarray, bgr: np.ndarray, params, metadata: ImageMetadata | None):
    """Encode an image with *metadata*; return ``(bytes, dropped)``.

    *img* is the picture in RGB(A) order, *bgr* the same in OpenCV's order (what
    ``cv2.imencode`` gets); *dropped* names the metadata the format could not keep here (an
    empty tuple when everything was kept).
    """
    dropped: tuple[str, ...] = ()
    if metadata is not None and not metadata.empty:
        wanted = tuple(n for n in ("exif", "icc_profile") if getattr(metadata, n) is not None)
        if ext in (".tif", ".tiff"):
            pil = _pillow_tiff(img)
            if pil is not None:
                out = io.BytesIO()
                extra = {"icc_profile": metadata.icc_profile} if metadata.icc_profile else {}
                if metadata.exif:
                    extra["exif"] = _EXIF_HEADER + metadata.exif
                pil.save(out, "TIFF", **extra)
                return out.getvalue(), ()
            dropped = wanted  # Pillow cannot hold this pixel type in a TIFF
        elif ext in (".jpg", ".jpeg", ".png", ".webp"):
            types, chunks = [], []
            if metadata.exif is not None:
                header = _EXIF_HEADER if ext in (".jpg", ".jpeg") else b""
                types.append(cv2.IMAGE_METADATA_EXIF)
                chunks.append(np.frombuffer(header + metadata.exif, np.uint8))
            if metadata.icc_profile is not None:
                types.append(cv2.IMAGE_METADATA_ICCP)
                chunks.append(np.frombuffer(metadata.icc_profile, np.uint8))
            ok, buf = cv2.imencodeWithMetadata(ext, bgr, types, chunks, list(params))
            if not ok:
                raise OSError(f"OpenCV could not encode a {ext} image with its metadata")
            return buf.tobytes(), ()
        else:
            dropped = wanted  # BMP holds neither
    ok, buf = cv2.imencode(ext, bgr, list(params))
    if not ok:
        raise OSError(f"OpenCV could not encode a {ext} image")
    return buf.tobytes(), dropped
