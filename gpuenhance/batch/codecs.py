"""Where images are decoded and encoded in a file run.

Two codecs:

- the CPU codec is :mod:`gpuenhance.io` (OpenCV, on the run's I/O threads): every format, the
  pixels the CPU engine sees;
- :class:`NvImageCodec` decodes colour JPEGs straight into device memory and encodes JPEGs from
  it, in batches, through NVIDIA nvImageCodec (the GPU's hardware JPEG decoder where it has
  one), so that on the CUDA engine a JPEG's pixels never cross to the host.

:func:`gpu_codec` picks one for a run from ``decoder="auto" | "gpu" | "cpu"``. A GPU codec that
is missing or broken falls back to the CPU codec with one warning that says why (``"auto"``),
or stops the run before any work (``"gpu"``).

Rounding: nvJPEG and libjpeg-turbo use different IDCTs and chroma upsampling, so a JPEG decoded
on the GPU may differ from OpenCV's decode by a few levels per pixel; ``decoder="cpu"`` gives
pixels identical to the CPU engine's.
"""

from __future__ import annotations

import functools
import warnings

__all__ = [
    "DECODERS", "GpuCodecUnavailableError", "NvImageCodec", "gpu_codec", "gpu_codec_problem",
]

#: The values of ``decoder``.
DECODERS = ("auto", "gpu", "cpu")


class GpuCodecUnavailableError(RuntimeError):
    """``decoder="gpu"`` was asked for where nvImageCodec or a GPU does not work."""


class NvImageCodec:
    """JPEG decoding into, and encoding from, device memory with nvImageCodec.

    Images are CuPy arrays of shape (H, W, 3), uint8, RGB. Every call takes the CUDA stream it
    is ordered on; results are ready in that stream's order.
    """

    #: nvImageCodec's JPEG encoder defaults to 4:4:4; OpenCV's (the CPU codec) to 4:2:0.
    SUBSAMPLING = "CSS_420"

    def __init__(self):
        import cupy
        from nvidia import nvimgcodec

        self._cp = cupy
        self._nv = nvimgcodec
        # fancy upsampling: libjpeg-turbo's (OpenCV's) default, so the two decoders agree more
        self.decoder = nvimgcodec.Decoder(options=":fancy_upsampling=1")
        self.encoder = nvimgcodec.Encoder()
        self.decode_params = nvimgcodec.DecodeParams(
            apply_exif_orientation=True, color_spec=nvimgcodec.ColorSpec.RGB
        )

    @staticmethod
    def accepts(encoded) -> bool:
        """Whether this codec decodes *encoded* (a :class:`gpuenhance.io.EncodedImage`): a
        colour (YCbCr) JPEG. Grey and CMYK JPEGs and other formats go to the CPU codec."""
        return encoded.is_jpeg and encoded.metadata.mode == "RGB"

    def decode(self, datas, stream):
        """Decode JPEG byte strings; a device array, or None where decoding failed, each."""
        images = self.decoder.decode(list(datas), params=self.decode_params,
                                     cuda_stream=stream.ptr)
        return [None if im is None else self._cp.asarray(im) for im in images]

    def encode(self, images, quality: int, stream):
        """Encode device images as JPEG bytes (None where encoding failed)."""
        nv = self._nv
        params = nv.EncodeParams(
            quality=float(quality),
            chroma_subsampling=getattr(nv.ChromaSubsampling, self.SUBSAMPLING),
        )
        wrapped = [nv.as_image(self._cp.ascontiguousarray(img), cuda_stream=stream.ptr)
                   for img in images]
        out = self.encoder.encode(wrapped, "jpeg", params=params, cuda_stream=stream.ptr)
        return [None if b is None else bytes(b) for b in out]


@functools.lru_cache(maxsize=1)
def gpu_codec_problem() -> str | None:
    """Why nvImageCodec cannot decode on this machine's GPU, or None when it can."""
    from .. import _backend

    problem = _backend._cuda_problem()
    if problem is not None:
        return problem
    try:
        from nvidia import nvimgcodec  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError or a broken install
        return (f"nvImageCodec is not importable ({type(exc).__name__}: {exc}); install "
                f"gpuenhance[cuda12] or gpuenhance[cuda13]")
    try:
        NvImageCodec()
    except Exception as exc:  # noqa: BLE001 - e.g. libnvjpeg missing, no device
        return f"nvImageCodec cannot start ({type(exc).__name__}: {exc})"
    return None


def gpu_codec(decoder: str, engine: str, *, factory=None):
    """The GPU codec a run uses, or None for the CPU codec.

    Parameters
    ----------
    decoder : {"auto", "gpu", "cpu"}
        ``"auto"``: the GPU codec where the engine is CUDA and nvImageCodec works, otherwise
        the CPU codec (with one :class:`UserWarning` saying why, on the CUDA engine only);
        ``"gpu"``: the GPU codec or :class:`GpuCodecUnavailableError`; ``"cpu"``: None.
    engine : str
        The run's engine; only ``"cuda"`` can use a GPU codec.
    factory : callable, optional
        Makes the codec (default :class:`NvImageCodec`); tests pass a stand-in.

    Examples
    --------
    >>> gpu_codec("cpu", "cuda") is None
    True
    """
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(map(repr, DECODERS))}; "
                         f"got {decoder!r}")
    if decoder == "cpu":
        return None
    if engine != "cuda":
        if decoder == "gpu":
            raise GpuCodecUnavailableError(
                f"decoder='gpu' needs the CUDA engine; this run uses {engine!r}"
            )
        return None
    if factory is not None:
        return factory()
    problem = gpu_codec_problem()
    if problem is None:
        return NvImageCodec()
    if decoder == "gpu":
        raise GpuCodecUnavailableError(f"decoder='gpu' was requested but {problem}")
    warnings.warn(f"JPEG decode and encode fall back to the CPU (OpenCV): {problem}",
                  UserWarning, stacklevel=2)
    return None
