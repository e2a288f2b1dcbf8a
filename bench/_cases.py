"""The benchmark cases: one list per op family, shared by the pytest suites and the report.

Full mode: sizes 512x512, 1080p (1080x1920), 4K (2160x3840); batch 1 (an (H, W) image) and
batch 32 (an (N, H, W, 1) stack, also for LMS pairs); single-channel images.
Smoke mode: every case shrinks to 32x48 and batch 1 or 2, keeping all other parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

SIZES = {"512": (512, 512), "1080p": (1080, 1920), "4K": (2160, 3840)}
BATCHES = (1, 32)
SMOKE_HW = (32, 48)
SMOKE_BATCHES = (1, 2)

MEDIAN_KSIZES = (3, 5, 7, 15, 31)
GAUSSIAN_SIGMAS = (1.0, 2.0, 5.0)
GAMMA = 0.6
LMS_EPOCHS = 1
PATCH = {"ksize": 3, "patch": 32, "batch": 256, "steps": 50}
PATCH_SMOKE = {"ksize": 3, "patch": 8, "batch": 8, "steps": 2}

CLAHE = {"clip_limit": 2.0, "tile_grid": 8}
AUTO_CONTRAST = {"low": 0.5, "high": 99.5}
TONE_POINTS = ((0.0, 0.0), (0.25, 0.35), (0.75, 0.85), (1.0, 1.0))

FAMILIES = ("median", "gaussian", "lut", "gamma", "lms_fit", "lms_restore", "patch_sgd",
            "equalize", "clahe", "white_balance", "auto_contrast", "tone_curve", "unsharp",
            "bilateral")
UNSHARP = {"sigma": 1.0, "amount": 1.0}
BILATERAL = {"d": 9, "sigma_color": 75.0, "sigma_space": 75.0}
OP_NAMES = {
    "median": "median_filter",
    "gaussian": "gaussian_filter",
    "lut": "apply_lut",
    "gamma": "gamma_correct",
    "lms_fit": "LMSRestorer.fit",
    "lms_restore": "LMSRestorer.restore",
    "patch_sgd": "enhance_roi",
    "equalize": "equalize_hist",
    "clahe": "clahe",
    "white_balance": "white_balance",
    "auto_contrast": "auto_contrast",
    "tone_curve": "tone_curve",
    "unsharp": "unsharp_mask",
    "bilateral": "bilateral_filter",
}


def opencv_gaussian_ksize(sigma: float, dtype) -> int:
    """OpenCV's rule for ksize=0: round(sigma * (3 for uint8 else 4) * 2 + 1) | 1."""
    factor = 3 if np.dtype(dtype) == np.uint8 else 4
    return int(round(sigma * factor * 2 + 1)) | 1


@dataclass(frozen=True)
class Case:
    family: str
    size: str
    hw: tuple
    batch: int
    dtype: str
    params: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def op(self) -> str:
        return OP_NAMES[self.family]

    @property
    def stack(self) -> bool:
        return self.family in ("lms_fit", "lms_restore")

    @property
    def shape(self) -> tuple:
        h, w = self.hw
        if self.family == "white_balance":  # colour: RGB images
            return (h, w, 3) if self.batch == 1 else (self.batch, h, w, 3)
        if self.family == "patch_sgd" or self.batch == 1:
            return (h, w)
        return (self.batch, h, w, 1)

    @property
    def pixels(self) -> int:
        return int(np.prod(self.shape))

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    @property
    def image_bytes(self) -> int:
        return self.pixels * self.itemsize

    @property
    def bytes_moved(self) -> int:
        """Bytes the op must read and write at least once (the GB/s numerator)."""
        if self.family in ("median", "gaussian", "gamma", "lms_restore", "clahe", "tone_curve",
                           "unsharp", "bilateral"):
            return 2 * self.image_bytes
        if self.family == "lut":
            return 2 * self.image_bytes + (256 if self.dtype == "uint8" else 65536 * 2)
        if self.family == "lms_fit":
            return 2 * self.image_bytes  # read degraded + clean once per epoch
        if self.family in ("equalize", "white_balance", "auto_contrast"):
            return 3 * self.image_bytes  # read for the statistics, read and write to map
        if self.family == "patch_sgd":
            p, k, b, s = (self.params[x] for x in ("patch", "ksize", "batch", "steps"))
            # per step: a batch of input patches (with halo) and target patches, float32
            return s * b * ((p + k - 1) ** 2 + p * p) * 4
        raise KeyError(self.family)

    @property
    def id(self) -> str:
        p = "-".join(f"{k}{v}" for k, v in self.params.items() if k not in ("patch", "batch", "steps"))
        parts = [self.family, p, self.dtype, self.size, f"b{self.batch}"]
        return "-".join(x for x in parts if x)

    def cost_key(self) -> tuple:
        """Parameters that set the per-pixel cost (everything but size and batch)."""
        return (self.family, self.dtype, tuple(sorted(self.params.items())))

    def probe(self) -> "Case":
        """A 256x256 single-image version used to estimate the cost of this case on the CPU."""
        return replace(self, size="probe", hw=(256, 256), batch=1)

    def make_inputs(self, seed: int = 0) -> tuple:
        """The op's array arguments, as NumPy arrays (deterministic for a seed)."""
        rng = np.random.default_rng(seed)
        if self.family == "lut":
            img = _random_image(rng, self.shape, self.dtype)
            n = 256 if self.dtype == "uint8" else 65536
            lut = rng.integers(0, np.iinfo(self.dtype).max + 1, n).astype(self.dtype)
            return (img, lut)
        if self.family in ("lms_fit", "lms_restore"):
            clean = _random_image(rng, self.shape, "float32")
            # a mild circular blur plus noise: a realistic (degraded, clean) pair
            c4 = clean.reshape((-1,) + self.hw + (1,))
            spec = np.fft.rfft2(c4, axes=(1, 2))
            fy = np.fft.fftfreq(self.hw[0])[:, None, None]
            fx = np.fft.rfftfreq(self.hw[1])[None, :, None]
            otf = np.exp(-((fy**2 + fx**2) * 40.0)).astype(np.complex64)
            deg = np.fft.irfft2(spec * otf, s=self.hw, axes=(1, 2)).astype(np.float32)
            deg += rng.normal(0, 0.01, deg.shape).astype(np.float32)
            return (deg.reshape(self.shape), clean)
        if self.family == "patch_sgd":
            clean = _random_image(rng, self.shape, "float32")
            deg = (clean + rng.normal(0, 0.05, clean.shape)).astype(np.float32)
            return (deg, clean)
        return (_random_image(rng, self.shape, self.dtype),)


def _random_image(rng, shape, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "u":
        return rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    # smooth-ish content in [0, 1]: noise over a gradient, like a natural image's range
    img = rng.random(shape, dtype=np.float32)
    return img.astype(dtype)


def _grid(smoke: bool):
    if smoke:
        return [("smoke", SMOKE_HW, b) for b in SMOKE_BATCHES]
    return [(name, hw, b) for name, hw in SIZES.items() for b in BATCHES]


def cases(family: str, smoke: bool = False) -> list[Case]:
    """Every case of *family*, sizes ascending (the CPU cost probe relies on nothing else)."""
    grid = _grid(smoke)
    out: list[Case] = []
    for size, hw, batch in grid:
        if family == "median":
            for dtype in ("uint8", "uint16", "float32"):
                for k in MEDIAN_KSIZES:
                    out.append(Case(family, size, hw, batch, dtype, {"ksize": k}))
        elif family == "gaussian":
            for dtype in ("uint8", "float32"):
                for s in GAUSSIAN_SIGMAS:
                    out.append(Case(family, size, hw, batch, dtype, {"sigma": s}))
        elif family == "lut":
            for dtype in ("uint8", "uint16"):
                out.append(Case(family, size, hw, batch, dtype, {}))
        elif family == "gamma":
            for dtype in ("uint8", "float32"):
                out.append(Case(family, size, hw, batch, dtype, {"gamma": GAMMA}))
        elif family == "equalize":
            for dtype in ("uint8", "uint16"):
                out.append(Case(family, size, hw, batch, dtype, {}))
        elif family in ("white_balance", "auto_contrast"):
            for dtype in ("uint8", "uint16", "float32"):
                params = dict(AUTO_CONTRAST) if family == "auto_contrast" else {}
                out.append(Case(family, size, hw, batch, dtype, params))
        elif family == "bilateral":
            for dtype in ("uint8", "float32"):
                params = dict(BILATERAL)
                if dtype == "float32":
                    params["sigma_color"] = BILATERAL["sigma_color"] / 255.0
                out.append(Case(family, size, hw, batch, dtype, params))
        elif family == "unsharp":
            for dtype in ("uint8", "float32"):
                out.append(Case(family, size, hw, batch, dtype, dict(UNSHARP)))
        elif family == "tone_curve":
            for dtype in ("uint8", "float32"):
                out.append(Case(family, size, hw, batch, dtype, {}))
        elif family == "clahe":
            for dtype in ("uint8", "uint16"):
                out.append(Case(family, size, hw, batch, dtype, dict(CLAHE)))
        elif family in ("lms_fit", "lms_restore"):
            params = {"epochs": LMS_EPOCHS} if family == "lms_fit" else {}
            out.append(Case(family, size, hw, batch, "float32", params))
        elif family == "patch_sgd":
            if batch != (SMOKE_BATCHES[0] if smoke else 1):
                continue  # enhance_roi works on one image
            out.append(Case(family, size, hw, 1, "float32", dict(PATCH_SMOKE if smoke else PATCH)))
        else:
            raise KeyError(family)
    return out


def roi_for(hw: tuple) -> tuple:
    """The region of interest used for enhance_roi: the central half, as (x, y, w, h)."""
    h, w = hw
    return (w // 4, h // 4, max(1, w // 2), max(1, h // 2))
