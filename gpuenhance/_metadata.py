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

__all__ = ["ImageMetadata", "read_metadata", "upright", "encode", "jpeg_with_metadata"]

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
    mode : str
        How the pixels are stored, in Pillow's words ("RGB", "L", "CMYK", "I;16", ...; empty
        when Pillow does not read the format): what tells a colour JPEG a GPU decoder may take.
    """

    exif: bytes | None = None
    icc_profile: bytes | None = None
    orientation: int = 1
    frames: int = 1
    mode: str = ""

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
                if im.format == "PNG":
                    # Pillow's PNG getexif() decodes the whole image to look for an eXIf
                    # chunk after the pixels; the header's (where writers put it) is in info.
                    exif = Image.Exif()
                    if im.info.get("exif"):
                        exif.load(im.info["exif"])
                else:
                    exif = im.getexif()
                icc = im.info.get("icc_profile") or None
                frames = int(getattr(im, "n_frames", 1))
                is_tiff = im.format == "TIFF"
                mode = im.mode
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
    return ImageMetadata(exif=block, icc_profile=icc, orientation=orientation, frames=frames,
                         mode=mode)


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


_ICC_HEADER = b"ICC_PROFILE\x00"
_SEGMENT_MAX = 65535 - 2  # a JPEG segment's payload: the 16-bit length counts itself


def jpeg_with_metadata(
    data: bytes, metadata: ImageMetadata | None
) -> tuple[bytes, tuple[str, ...]]:
    """Put *metadata* into an encoded JPEG that holds none (what a GPU encoder returns):
    an APP1 ``Exif`` segment and the ICC profile in APP2 ``ICC_PROFILE`` chunks, after the
    JFIF header; the entropy-coded data are not touched. Returns ``(bytes, dropped)``.

    Examples
    --------
    >>> import cv2, io, numpy as np
    >>> from PIL import Image
    >>> exif = Image.Exif(); exif[0x010F] = "Camera"
    >>> plain = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    >>> meta = ImageMetadata(exif=exif.tobytes()[6:], icc_profile=b"not checked here")
    >>> out, dropped = jpeg_with_metadata(plain, meta)
    >>> Image.open(io.BytesIO(out)).getexif()[0x010F], dropped
    ('Camera', ())
    """
    if metadata is None or metadata.empty:
        return data, ()
    if data[:2] != b"\xff\xd8":
        raise ValueError("data must be a JPEG stream (starting with FF D8)")
    # Walk the header segments (up to the first non-APP marker) and keep all but the
    # encoder's own Exif/ICC segments, which ours replace; JFIF (APP0) stays first.
    head, rest, i = [], b"", 2
    while i + 4 <= len(data) and data[i] == 0xFF and 0xE0 <= data[i + 1] <= 0xEF:
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        segment = data[i : i + 2 + length]
        payload = segment[4:]
        mine = (data[i + 1] == 0xE1 and payload.startswith(_EXIF_HEADER)) or (
            data[i + 1] == 0xE2 and payload.startswith(_ICC_HEADER)
        )
        if not mine:
            head.append(segment)
        i += 2 + length
    rest = data[i:]
    ours, dropped = [], []
    if metadata.exif is not None:
        payload = _EXIF_HEADER + metadata.exif
        if len(payload) <= _SEGMENT_MAX:
            ours.append(b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload)
        else:
            dropped.append("exif")
    if metadata.icc_profile is not None:
        room = _SEGMENT_MAX - len(_ICC_HEADER) - 2
        chunks = [metadata.icc_profile[k : k + room]
                  for k in range(0, len(metadata.icc_profile), room)]
        if len(chunks) <= 255:
            for n, chunk in enumerate(chunks, 1):
                payload = _ICC_HEADER + bytes([n, len(chunks)]) + chunk
                ours.append(b"\xff\xe2" + (len(payload) + 2).to_bytes(2, "big") + payload)
        else:
            dropped.append("icc_profile")
    jfif = [s for s in head if s[1] == 0xE0][:1]
    others = [s for s in head if s not in jfif]
    return b"\xff\xd8" + b"".join(jfif + ours + others) + rest, tuple(dropped)
