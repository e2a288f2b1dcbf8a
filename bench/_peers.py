"""gpuenhance and the libraries a user would otherwise pick, as runnable implementations.

Each :class:`Impl` names a library call for one op family on one device. ``make(case)``
returns ``(run, prepare)``: ``prepare(args)`` converts the case's arrays (already on the
right device) into what ``run`` takes, outside the timed region; ``run(*args)`` is the timed
call. ``make`` raises :class:`Unsupported` (with the reason) for a case the library cannot
do (e.g. cv2.medianBlur on float32 with ksize > 5). A library that is not installed is
reported by ``unavailable()`` and skipped with that note; nothing is ever substituted.

Extrapolated rows (the naive per-bin LMS loop, per-step L-BFGS) set ``extrapolated`` and
return ``(run, prepare, scale, note)`` from ``make``: the row's time is the measured time of
the small run times *scale*, and the row says so.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import _cases
from ._cases import Case, opencv_gaussian_ksize


class Unsupported(Exception):
    """The library cannot run this case (the message says why)."""


@dataclass
class Impl:
    name: str
    device: str  # "cpu" | "gpu"
    make: Callable[[Case], tuple]
    requires: tuple = ()
    note: str = ""
    extrapolated: bool = False
    is_gpuenhance: bool = False
    tolerate_errors: bool = False  # third-party GPU APIs not verified here: an error is a skip note
    extra: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.name}[{self.device}]"

    def unavailable(self) -> str | None:
        for mod in self.requires:
            problem = _import_problem(mod)
            if problem:
                return problem
        if self.device == "gpu":
            from ._timing import gpu_available

            return gpu_available()
        return None


@functools.lru_cache(maxsize=None)
def _import_problem(mod: str) -> str | None:
    try:
        importlib.import_module(mod)
        return None
    except Exception as exc:
        return f"{mod} not installed ({type(exc).__name__}: {exc})"


def _cv2():
    return importlib.import_module("cv2")


def _cupy():
    return importlib.import_module("cupy")


def _identity(args):
    return args


def _per_image(fn):
    """Run a 2-D library call over each image of an (N, H, W, 1) stack (or one (H, W) image)."""

    def run(img, *rest):
        if img.ndim == 2:
            return fn(img, *rest)
        return [fn(img[i, :, :, 0], *rest) for i in range(img.shape[0])]

    return run


def _nd_size(case: Case, k: int) -> tuple:
    return (k, k) if len(case.shape) == 2 else (1, k, k, 1)


def _nd_sigma(case: Case, s: float) -> tuple:
    return (s, s) if len(case.shape) == 2 else (0, s, s, 0)


# ----------------------------------------------------------------------------- gpuenhance


def _ge_make(device: str):
    def make(case: Case):
        import gpuenhance as ge

        p = case.params
        if case.family == "median":
            return (lambda img: ge.median_filter(img, p["ksize"])), _identity
        if case.family == "gaussian":
            return (lambda img: ge.gaussian_filter(img, 0, p["sigma"])), _identity
        if case.family == "lut":
            return (lambda img, lut: ge.apply_lut(img, lut)), _identity
        if case.family == "gamma":
            return (lambda img: ge.gamma_correct(img, p["gamma"], gain=1.0)), _identity
        if case.family == "equalize":
            return (lambda img: ge.equalize_hist(img)), _identity
        if case.family == "clahe":
            return (lambda img: ge.clahe(img, p["clip_limit"], p["tile_grid"])), _identity
        if case.family == "white_balance":
            return (lambda img: ge.white_balance(img)), _identity
        if case.family == "auto_contrast":
            return (lambda img: ge.auto_contrast(img, p["low"], p["high"])), _identity
        if case.family == "bilateral":
            return (lambda img: ge.bilateral_filter(
                img, p["d"], p["sigma_color"], p["sigma_space"])), _identity
        if case.family == "unsharp":
            return (lambda img: ge.unsharp_mask(img, p["sigma"], p["amount"])), _identity
        if case.family == "tone_curve":
            return (lambda img: ge.tone_curve(img, _cases.TONE_POINTS)), _identity
        if case.family == "lms_fit":
            def fit(deg, clean):
                return ge.LMSRestorer(batch_size=8).fit(deg, clean, epochs=p["epochs"])

            return fit, _identity
        if case.family == "lms_restore":
            cache: dict = {}

            def prepare(args):
                deg, clean = args
                if "r" not in cache:  # one fitted filter serves every rotation copy
                    cache["r"] = ge.LMSRestorer(batch_size=8).fit(deg, clean, epochs=1)
                return (cache["r"], deg)

            return (lambda r, deg: r.restore(deg)), prepare
        if case.family == "patch_sgd":
            roi = _cases.roi_for(case.hw)

            def run(img, target):
                return ge.enhance_roi(
                    img,
                    roi,
                    target=target,
                    ksize=p["ksize"],
                    patch=p["patch"],
                    batch=p["batch"],
                    steps=p["steps"],
                    seed=0,
                )

            return run, _identity
        raise KeyError(case.family)

    return make


GPUENHANCE_CPU = Impl("gpuenhance", "cpu", _ge_make("cpu"), is_gpuenhance=True)


def _ge_single_thread(case: Case):
    """gpuenhance's CPU engine on one thread: the reference of the multi-core speed-up.

    The engine's band threads are held to one here (``limit_threads(1)``) and OpenCV's own
    pool by the runner (the Impl's ``cv2_threads``: ``cv2.setNumThreads(1)`` around the timed
    runs, not inside them, since switching OpenCV's pool costs ~0.1 ms), so the column is a
    true single-threaded call also where OpenCV threads the op itself.
    """
    from gpuenhance._threads import limit_threads

    run, prepare = _ge_make("cpu")(case)

    def single(*args):
        with limit_threads(1):
            return run(*args)

    return single, prepare


#: Not a peer: the same engine on one thread (``bench.report --single-thread``); never the
#: "best peer" a gpuenhance row is compared with.
GPUENHANCE_CPU_1T = Impl("gpuenhance 1 thread", "cpu", _ge_single_thread,
                         note="gpuenhance inside limit_threads(1), OpenCV on 1 thread",
                         extra={"reference": True, "cv2_threads": 1})
GPUENHANCE_GPU = Impl("gpuenhance", "gpu", _ge_make("cuda"), is_gpuenhance=True, requires=("cupy",))


# ----------------------------------------------------------------------------- CPU peers


def _cv2_median(case: Case):
    import cv2

    k = case.params["ksize"]
    if case.dtype != "uint8" and k > 5:
        raise Unsupported("cv2.medianBlur supports ksize > 5 for uint8 only")
    return _per_image(lambda im: cv2.medianBlur(im, k)), _identity


def _scipy_median(case: Case):
    from scipy import ndimage

    size = _nd_size(case, case.params["ksize"])
    return (lambda img: ndimage.median_filter(img, size=size, mode="nearest")), _identity


def _skimage_median(case: Case):
    from skimage import filters

    if case.dtype == "float32":
        raise Unsupported(
            "skimage.filters.median on float delegates to scipy.ndimage.median_filter (that row)"
        )
    fp = np.ones((case.params["ksize"],) * 2, dtype=bool)
    return _per_image(lambda im: filters.median(im, fp, mode="nearest", behavior="rank")), _identity


def _cv2_gaussian(case: Case):
    import cv2

    s = case.params["sigma"]
    return (
        _per_image(lambda im: cv2.GaussianBlur(im, (0, 0), s, borderType=cv2.BORDER_REFLECT_101)),
        _identity,
    )


def _truncate(case: Case) -> float:
    s = case.params["sigma"]
    radius = (opencv_gaussian_ksize(s, case.dtype) - 1) // 2
    return radius / s


def _scipy_gaussian(case: Case):
    from scipy import ndimage

    sig = _nd_sigma(case, case.params["sigma"])
    tr = _truncate(case)
    return (lambda img: ndimage.gaussian_filter(img, sig, mode="mirror", truncate=tr)), _identity


def _skimage_gaussian(case: Case):
    from skimage import filters

    s = case.params["sigma"]
    tr = _truncate(case)
    return (
        _per_image(lambda im: filters.gaussian(im, sigma=s, mode="mirror", truncate=tr, preserve_range=True)),
        _identity,
    )


def _cv2_lut(case: Case):
    import cv2

    if case.dtype != "uint8":
        raise Unsupported("cv2.LUT supports 8-bit input only")
    return _per_image(lambda im, lut: cv2.LUT(im, lut)), _identity


def _numpy_lut(case: Case):
    return (lambda img, lut: lut[img]), _identity


def _cv2_gamma(case: Case):
    import cv2

    if case.dtype != "uint8":
        raise Unsupported("cv2.LUT gamma path is for uint8 only")
    g = case.params["gamma"]

    def run(img):
        table = np.clip(np.rint(255.0 * (np.arange(256) / 255.0) ** g), 0, 255).astype(np.uint8)
        return _per_image(lambda im: cv2.LUT(im, table))(img)

    return run, _identity


def _numpy_gamma(case: Case):
    g = np.float32(case.params["gamma"])
    if case.dtype == "float32":
        return (lambda img: np.power(img, g)), _identity

    def run(img):  # what a NumPy user writes for integers: normalise, power, rescale
        return np.rint(np.power(img.astype(np.float32) / 255.0, g) * 255.0).astype(np.uint8)

    return run, _identity


def _skimage_gamma(case: Case):
    from skimage import exposure

    g = case.params["gamma"]
    return (lambda img: exposure.adjust_gamma(img, g, 1.0)), _identity


def _cv2_equalize(case: Case):
    import cv2

    if case.dtype != "uint8":
        raise Unsupported("cv2.equalizeHist supports 8-bit input only")
    return _per_image(cv2.equalizeHist), _identity


def _bincount_equalize(xp_name: str):
    """What a NumPy/CuPy user writes: bincount, cumulative sum, table, fancy indexing."""

    def make(case: Case):
        xp = importlib.import_module(xp_name)
        bins = 256 if case.dtype == "uint8" else 65536
        top = float(bins - 1)

        def one(im):
            cdf = xp.cumsum(xp.bincount(im.ravel(), minlength=bins))
            lo = cdf[xp.argmax(cdf > 0)]
            table = xp.rint((cdf - lo) * (top / xp.maximum(im.size - lo, 1))).clip(0, top)
            return table.astype(im.dtype)[im]

        return _per_image(one), _identity

    return make


def _skimage_equalize(case: Case):
    from skimage import exposure

    bins = 256 if case.dtype == "uint8" else 65536
    return _per_image(lambda im: exposure.equalize_hist(im, nbins=bins)), _identity


def _cv2_clahe(case: Case):
    import cv2

    p = case.params
    op = cv2.createCLAHE(p["clip_limit"], (p["tile_grid"], p["tile_grid"]))
    return _per_image(op.apply), _identity


def _adapthist(module: str):
    """skimage's / cuCIM's equalize_adapthist with the case's tiles and clip level."""

    def make(case: Case):
        exposure = importlib.import_module(module)
        p = case.params
        # their clip_limit is a fraction of the tile area (OpenCV's a multiple of the mean
        # bin count): clip_limit / bins gives the same clip level
        bins = 256 if case.dtype == "uint8" else 65536
        h, w = case.hw
        size = (max(1, h // p["tile_grid"]), max(1, w // p["tile_grid"]))
        return _per_image(lambda im: exposure.equalize_adapthist(
            im, kernel_size=size, clip_limit=p["clip_limit"] / bins, nbins=bins)), _identity

    return make


def _per_rgb(fn):
    """Run *fn* over each (H, W, C) image of a batch (or one image)."""

    def run(img):
        if img.ndim == 3:
            return fn(img)
        return [fn(im) for im in img]

    return run


def _xp_gray_world(xp_name: str):
    """What a NumPy/CuPy user writes: channel means, gains, multiply, clip, cast."""

    def make(case: Case):
        xp = importlib.import_module(xp_name)
        top = np.iinfo(case.dtype).max if case.dtype != "float32" else None

        def one(im):
            means = im.reshape(-1, im.shape[-1]).mean(axis=0)
            out = im * (means.mean() / means)
            return (xp.clip(xp.rint(out), 0, top) if top else out).astype(im.dtype)

        return _per_rgb(one), _identity

    return make


def _cv2_gray_world(case: Case):
    import cv2

    def one(im):
        means = cv2.mean(im)[: im.shape[-1]]
        target = sum(means) / len(means)
        return cv2.multiply(im, tuple(target / m for m in means) + (0.0,) * (4 - im.shape[-1]))

    return _per_rgb(one), _identity


def _xp_auto_contrast(xp_name: str):
    """xp.percentile (inverted_cdf), then a clipped linear stretch."""

    def make(case: Case):
        xp = importlib.import_module(xp_name)
        p = case.params
        top = float(np.iinfo(case.dtype).max) if case.dtype != "float32" else 1.0

        def one(im):
            lo, hi = xp.percentile(im, (p["low"], p["high"]), method="inverted_cdf")
            out = xp.clip((im - lo) * (top / max(float(hi - lo), 1e-12)), 0, top)
            return (xp.rint(out) if case.dtype != "float32" else out).astype(im.dtype)

        return _per_image(one), _identity

    return make


def _skimage_auto_contrast(case: Case):
    from skimage import exposure

    p = case.params

    def one(im):
        lo, hi = np.percentile(im, (p["low"], p["high"]))
        return exposure.rescale_intensity(im, in_range=(lo, hi))

    return _per_image(one), _identity


def _pchip_table_or_direct(interp_module: str, lut):
    """scipy/cupyx PchipInterpolator: a table through *lut* for uint8, direct for floats."""

    def make(case: Case):
        interp = importlib.import_module(interp_module)
        pts = np.asarray(_cases.TONE_POINTS)
        curve = interp.PchipInterpolator(pts[:, 0], pts[:, 1])
        if case.dtype == "float32":
            return (lambda img: curve(img).astype(np.float32)), _identity
        table = np.clip(np.rint(curve(np.arange(256) / 255.0) * 255), 0, 255).astype(np.uint8)
        return _per_image(lambda im: lut(im, table)), _identity

    return make


def _cv2_unsharp(case: Case):
    """The OpenCV recipe: GaussianBlur, then addWeighted(img, 1 + amount, blur, -amount)."""
    import cv2

    p = case.params

    def one(im):
        blur = cv2.GaussianBlur(im, (0, 0), p["sigma"], borderType=cv2.BORDER_REFLECT_101)
        return cv2.addWeighted(im, 1.0 + p["amount"], blur, -p["amount"], 0)

    return _per_image(one), _identity


def _cv2_bilateral(case: Case):
    import cv2

    p = case.params
    return _per_image(lambda im: cv2.bilateralFilter(
        im, p["d"], p["sigma_color"], p["sigma_space"])), _identity


def _cvcuda_bilateral(case: Case):
    import cvcuda

    p = case.params
    return (lambda t: cvcuda.bilateral_filter(
        t, p["d"], p["sigma_color"], p["sigma_space"], border=cvcuda.Border.REFLECT101)), (
        lambda args: (_cvcuda_tensor(args[0]),))


def _skimage_unsharp(module: str):
    def make(case: Case):
        filters = importlib.import_module(module)
        p = case.params
        return _per_image(lambda im: filters.unsharp_mask(
            im, radius=p["sigma"], amount=p["amount"], preserve_range=True)), _identity

    return make


# --- LMS: vectorised closed form, naive per-bin loop, skimage Wiener


def _nhwc(x):
    return x[None, :, :, None] if x.ndim == 2 else x


def _numpy_wiener_fit(case: Case):
    """The empirical Wiener filter sum(conj(G) F) / sum(|G|^2): batch NLMS's fixed point."""

    def fit(deg, clean):
        g = np.fft.rfft2(_nhwc(deg), axes=(1, 2))
        f = np.fft.rfft2(_nhwc(clean), axes=(1, 2))
        num = (np.conj(g) * f).sum(axis=0)
        den = (g.real**2 + g.imag**2).sum(axis=0) + 1e-8
        return (num / den).astype(np.complex64)

    return fit, _identity


def _numpy_fft_restore(case: Case):
    def prepare(args):
        deg, clean = args
        w = _numpy_wiener_fit(case)[0](_nhwc(deg)[:1], _nhwc(clean)[:1])
        return (w, deg)

    def run(w, deg):
        d = _nhwc(deg)
        return np.fft.irfft2(np.fft.rfft2(d, axes=(1, 2)) * w, s=d.shape[1:3], axes=(1, 2)).astype(np.float32)

    return run, prepare


NAIVE_SPECTRUM = (16, 16)


def _naive_lms_loop(case: Case):
    """The tutorial's NLMS update, one Python iteration per frequency bin (extrapolated)."""
    h, w = NAIVE_SPECTRUM if case.size != "smoke" else (8, 8)
    n_small = 2
    rng = np.random.default_rng(0)
    g = (rng.standard_normal((n_small, h, w // 2 + 1)) + 1j * rng.standard_normal((n_small, h, w // 2 + 1))).astype(np.complex64)
    f = (rng.standard_normal((n_small, h, w // 2 + 1)) + 1j * rng.standard_normal((n_small, h, w // 2 + 1))).astype(np.complex64)
    mu, eps = 0.5, 1e-8

    def run():
        wts = np.zeros((h, w // 2 + 1), np.complex64)
        for n in range(n_small):
            for u in range(h):
                for v in range(w // 2 + 1):
                    gv = g[n, u, v]
                    e = f[n, u, v] - wts[u, v] * gv
                    wts[u, v] += mu * np.conj(gv) * e / (abs(gv) ** 2 + eps)
        return wts

    bins_small = n_small * h * (w // 2 + 1)
    H, W = case.hw
    bins_case = case.batch * H * (W // 2 + 1) * case.params.get("epochs", 1)
    note = (
        f"extrapolated: Python loop timed on {n_small}x{h}x{w // 2 + 1} rfft bins, "
        f"scaled by bins ({bins_case} per epoch, rfft layout); loop only, FFTs not counted"
    )
    return (lambda: run()), (lambda args: ()), bins_case / bins_small, note


def _skimage_wiener(case: Case):
    from skimage import restoration

    psf = _gaussian_psf(2.0, 9)

    def run(deg):
        d = _nhwc(deg)
        return [restoration.wiener(d[i, :, :, 0], psf, balance=0.01, clip=False) for i in range(d.shape[0])]

    return run, (lambda args: (args[0],))


def _skimage_unsupervised_wiener(case: Case):
    from skimage import restoration

    psf = _gaussian_psf(2.0, 9)

    def run(deg):
        d = _nhwc(deg)
        return [
            restoration.unsupervised_wiener(d[i, :, :, 0], psf, clip=False, rng=0)[0]
            for i in range(d.shape[0])
        ]

    return run, (lambda args: (args[0],))


def _gaussian_psf(sigma: float, size: int) -> np.ndarray:
    ax = np.arange(size) - size // 2
    k = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * sigma**2))
    return k / k.sum()


# --- patch SGD: per-step L-BFGS on each sampled patch


LBFGS_STEPS_TIMED = 3


def _lbfgs_patch(case: Case):
    """Tutorial formulation: for every step, sample one patch and run scipy L-BFGS on it."""
    from scipy.optimize import minimize

    p = case.params
    k, patch = p["ksize"], p["patch"]
    img, target = case.make_inputs()
    x0, y0, rw, rh = _cases.roi_for(case.hw)
    rng = np.random.default_rng(0)
    steps_timed = 1 if case.size == "smoke" else LBFGS_STEPS_TIMED
    r = k // 2

    def loss_grad(theta, cols, t):
        pred = cols @ theta[:-1] + theta[-1]
        err = pred - t
        grad = np.empty_like(theta)
        grad[:-1] = 2.0 * cols.T @ err / err.size
        grad[-1] = 2.0 * err.mean()
        return float((err**2).mean()), grad

    def run():
        theta = np.zeros(k * k + 1)
        theta[(k * k) // 2] = 1.0
        for _ in range(steps_timed):
            py = y0 + int(rng.integers(0, max(1, rh - patch + 1)))
            px = x0 + int(rng.integers(0, max(1, rw - patch + 1)))
            ys = slice(max(py - r, 0), py + patch + r)
            xs = slice(max(px - r, 0), px + patch + r)
            win = np.pad(img[ys, xs], r, mode="edge").astype(np.float64)
            cols = np.lib.stride_tricks.sliding_window_view(win, (k, k))
            cols = cols[: patch, : patch].reshape(-1, k * k)
            t = target[py : py + patch, px : px + patch].reshape(-1).astype(np.float64)
            cols = cols[: t.size]
            res = minimize(loss_grad, theta, args=(cols, t), jac=True, method="L-BFGS-B")
            theta = res.x
        return theta

    scale = p["steps"] / steps_timed
    note = (
        f"extrapolated: {steps_timed} steps of scipy L-BFGS-B on one {patch}x{patch} patch each, "
        f"scaled to {p['steps']} steps"
    )
    return (lambda: run()), (lambda args: ()), scale, note


# ----------------------------------------------------------------------------- GPU peers


def _cupyx_median(case: Case):
    from cupyx.scipy import ndimage

    size = _nd_size(case, case.params["ksize"])
    return (lambda img: ndimage.median_filter(img, size=size, mode="nearest")), _identity


def _cupyx_gaussian(case: Case):
    from cupyx.scipy import ndimage

    sig = _nd_sigma(case, case.params["sigma"])
    tr = _truncate(case)
    return (lambda img: ndimage.gaussian_filter(img, sig, mode="mirror", truncate=tr)), _identity


def _cupy_lut(case: Case):
    return (lambda img, lut: lut[img]), _identity


def _cupy_gamma(case: Case):
    import cupy

    g = np.float32(case.params["gamma"])
    if case.dtype == "float32":
        return (lambda img: cupy.power(img, g)), _identity
    return (
        lambda img: cupy.rint(cupy.power(img.astype(cupy.float32) / 255.0, g) * 255.0).astype(cupy.uint8)
    ), _identity


def _cucim_equalize(case: Case):
    from cucim.skimage import exposure

    bins = 256 if case.dtype == "uint8" else 65536
    return _per_image(lambda im: exposure.equalize_hist(im, nbins=bins)), _identity


def _to_torch_nchw(img):
    """Zero-copy CuPy (H, W) / (N, H, W, 1) -> torch (N, 1, H, W) through DLPack."""
    import torch

    t = torch.from_dlpack(img)
    if t.ndim == 2:
        return t[None, None]
    return t.permute(0, 3, 1, 2)


def _torch_dtype_ok(case: Case):
    if case.dtype == "uint16":
        raise Unsupported("torch has no uint16 arithmetic for this op")


def _torchvision_gaussian(case: Case):
    from torchvision.transforms.v2 import functional as F

    _torch_dtype_ok(case)
    s = case.params["sigma"]
    k = opencv_gaussian_ksize(s, case.dtype)
    return (lambda t: F.gaussian_blur(t, [k, k], [s, s])), (lambda args: (_to_torch_nchw(args[0]),))


TORCH_UNFOLD_MAX_BYTES = 16 << 30


def _torch_unfold_median(case: Case):
    import torch
    import torch.nn.functional as F

    _torch_dtype_ok(case)
    k = case.params["ksize"]
    need = case.pixels * k * k * 4
    if need > TORCH_UNFOLD_MAX_BYTES:
        raise Unsupported(
            f"unfold median would materialise {need / 2**30:.1f} GiB (> {TORCH_UNFOLD_MAX_BYTES >> 30} GiB cap)"
        )
    r = k // 2

    def run(t):
        x = t if t.dtype.is_floating_point else t.float()
        x = F.pad(x, (r, r, r, r), mode="replicate")
        win = x.unfold(2, k, 1).unfold(3, k, 1)
        out = win.reshape(*win.shape[:4], k * k).median(dim=-1).values
        return out if t.dtype == out.dtype else out.to(t.dtype)

    _ = torch
    return run, (lambda args: (_to_torch_nchw(args[0]),))


def _cvcuda_tensor(img):
    import cvcuda
    import torch

    t = torch.from_dlpack(img)
    if t.ndim == 2:
        t = t[None, :, :, None]
    return cvcuda.as_tensor(t.contiguous(), "NHWC")


def _cvcuda_median(case: Case):
    import cvcuda

    k = case.params["ksize"]
    return (lambda t: cvcuda.median_blur(t, (k, k))), (lambda args: (_cvcuda_tensor(args[0]),))


def _cvcuda_gaussian(case: Case):
    import cvcuda

    s = case.params["sigma"]
    k = opencv_gaussian_ksize(s, case.dtype)
    return (
        lambda t: cvcuda.gaussian(t, (k, k), (s, s), cvcuda.Border.REFLECT101)
    ), (lambda args: (_cvcuda_tensor(args[0]),))


def _cupy_wiener_fit(case: Case):
    import cupy

    def fit(deg, clean):
        g = cupy.fft.rfft2(_nhwc(deg), axes=(1, 2))
        f = cupy.fft.rfft2(_nhwc(clean), axes=(1, 2))
        num = (cupy.conj(g) * f).sum(axis=0)
        den = (g.real**2 + g.imag**2).sum(axis=0) + 1e-8
        return (num / den).astype(cupy.complex64)

    return fit, _identity


def _cupy_fft_restore(case: Case):
    import cupy

    def prepare(args):
        deg, clean = args
        return (_cupy_wiener_fit(case)[0](_nhwc(deg)[:1], _nhwc(clean)[:1]), deg)

    def run(w, deg):
        d = _nhwc(deg)
        return cupy.fft.irfft2(cupy.fft.rfft2(d, axes=(1, 2)) * w, s=d.shape[1:3], axes=(1, 2)).astype(cupy.float32)

    return run, prepare


# ----------------------------------------------------------------------------- registry

_PER_IMAGE = "per-image Python loop over the batch"

REGISTRY: dict[str, list[Impl]] = {
    "median": [
        GPUENHANCE_CPU,
        Impl("cv2.medianBlur", "cpu", _cv2_median, ("cv2",), _PER_IMAGE),
        Impl("scipy.ndimage.median_filter", "cpu", _scipy_median, ("scipy",)),
        Impl("skimage.filters.median", "cpu", _skimage_median, ("skimage",), "behavior='rank'; " + _PER_IMAGE),
        GPUENHANCE_GPU,
        Impl("cupyx.scipy.ndimage.median_filter", "gpu", _cupyx_median, ("cupy", "cupyx.scipy.ndimage")),
        Impl("torch unfold median", "gpu", _torch_unfold_median, ("cupy", "torch"), "pad+unfold+median; ints via float32",
             tolerate_errors=True),
        Impl("cvcuda.median_blur", "gpu", _cvcuda_median, ("cupy", "torch", "cvcuda"), tolerate_errors=True),
    ],
    "gaussian": [
        GPUENHANCE_CPU,
        Impl("cv2.GaussianBlur", "cpu", _cv2_gaussian, ("cv2",), _PER_IMAGE),
        Impl("scipy.ndimage.gaussian_filter", "cpu", _scipy_gaussian, ("scipy",), "truncate set to OpenCV's radius"),
        Impl("skimage.filters.gaussian", "cpu", _skimage_gaussian, ("skimage",), "computes in float64; " + _PER_IMAGE),
        GPUENHANCE_GPU,
        Impl("cupyx.scipy.ndimage.gaussian_filter", "gpu", _cupyx_gaussian, ("cupy", "cupyx.scipy.ndimage")),
        Impl("torchvision gaussian_blur", "gpu", _torchvision_gaussian, ("cupy", "torch", "torchvision"),
             tolerate_errors=True),
        Impl("cvcuda.gaussian", "gpu", _cvcuda_gaussian, ("cupy", "torch", "cvcuda"), tolerate_errors=True),
    ],
    "lut": [
        GPUENHANCE_CPU,
        Impl("cv2.LUT", "cpu", _cv2_lut, ("cv2",), _PER_IMAGE),
        Impl("numpy lut[img]", "cpu", _numpy_lut),
        GPUENHANCE_GPU,
        Impl("cupy lut[img]", "gpu", _cupy_lut, ("cupy",)),
    ],
    "gamma": [
        GPUENHANCE_CPU,
        Impl("cv2.LUT (gamma table)", "cpu", _cv2_gamma, ("cv2",), "table built per call; " + _PER_IMAGE),
        Impl("numpy power", "cpu", _numpy_gamma),
        Impl("skimage.exposure.adjust_gamma", "cpu", _skimage_gamma, ("skimage",)),
        GPUENHANCE_GPU,
        Impl("cupy power", "gpu", _cupy_gamma, ("cupy",)),
    ],
    "lms_fit": [
        GPUENHANCE_CPU,
        Impl("numpy closed-form Wiener", "cpu", _numpy_wiener_fit, (), "vectorised sum(conj(G)F)/sum(|G|^2)"),
        Impl("naive per-bin NLMS loop", "cpu", _naive_lms_loop, (), extrapolated=True),
        GPUENHANCE_GPU,
        Impl("cupy closed-form Wiener", "gpu", _cupy_wiener_fit, ("cupy",)),
    ],
    "lms_restore": [
        GPUENHANCE_CPU,
        Impl("numpy rfft2 filter", "cpu", _numpy_fft_restore),
        Impl("skimage.restoration.wiener", "cpu", _skimage_wiener, ("skimage",), "9x9 Gaussian PSF, per image"),
        Impl(
            "skimage.restoration.unsupervised_wiener",
            "cpu",
            _skimage_unsupervised_wiener,
            ("skimage",),
            "9x9 Gaussian PSF, per image (Gibbs sampler)",
        ),
        GPUENHANCE_GPU,
        Impl("cupy rfft2 filter", "gpu", _cupy_fft_restore, ("cupy",)),
    ],
    "equalize": [
        GPUENHANCE_CPU,
        Impl("cv2.equalizeHist", "cpu", _cv2_equalize, ("cv2",), _PER_IMAGE),
        Impl("numpy bincount+cumsum", "cpu", _bincount_equalize("numpy"), (), _PER_IMAGE),
        Impl("skimage.exposure.equalize_hist", "cpu", _skimage_equalize, ("skimage",),
             "float64 output in [0, 1]; " + _PER_IMAGE),
        GPUENHANCE_GPU,
        Impl("cupy bincount+cumsum", "gpu", _bincount_equalize("cupy"), ("cupy",), _PER_IMAGE),
        Impl("cucim.skimage.exposure.equalize_hist", "gpu", _cucim_equalize, ("cupy", "cucim"),
             "float output; " + _PER_IMAGE, tolerate_errors=True),
    ],
    "clahe": [
        GPUENHANCE_CPU,
        Impl("cv2.createCLAHE().apply", "cpu", _cv2_clahe, ("cv2",), _PER_IMAGE),
        Impl("skimage.exposure.equalize_adapthist", "cpu", _adapthist("skimage.exposure"),
             ("skimage",),
             "float64 output, its own interpolation; " + _PER_IMAGE),
        GPUENHANCE_GPU,
        Impl("cucim.skimage.exposure.equalize_adapthist", "gpu",
             _adapthist("cucim.skimage.exposure"), ("cupy", "cucim"),
             "float output, skimage's algorithm; " + _PER_IMAGE, tolerate_errors=True),
    ],
    "white_balance": [
        GPUENHANCE_CPU,
        Impl("cv2.mean + cv2.multiply", "cpu", _cv2_gray_world, ("cv2",), _PER_IMAGE),
        Impl("numpy means * gains", "cpu", _xp_gray_world("numpy"), (), _PER_IMAGE),
        GPUENHANCE_GPU,
        Impl("cupy means * gains", "gpu", _xp_gray_world("cupy"), ("cupy",), _PER_IMAGE),
    ],
    "auto_contrast": [
        GPUENHANCE_CPU,
        Impl("numpy percentile + stretch", "cpu", _xp_auto_contrast("numpy"), (), _PER_IMAGE),
        Impl("skimage.exposure.rescale_intensity", "cpu", _skimage_auto_contrast, ("skimage",),
             "np.percentile (linear) in_range; " + _PER_IMAGE),
        GPUENHANCE_GPU,
        Impl("cupy percentile + stretch", "gpu", _xp_auto_contrast("cupy"), ("cupy",),
             _PER_IMAGE),
    ],
    "tone_curve": [
        GPUENHANCE_CPU,
        Impl("scipy PchipInterpolator (+ cv2.LUT)", "cpu",
             _pchip_table_or_direct("scipy.interpolate", lambda im, t: _cv2().LUT(im, t)),
             ("scipy", "cv2"), "uint8: table through cv2.LUT; float32: evaluated directly"),
        GPUENHANCE_GPU,
        Impl("cupyx PchipInterpolator", "gpu",
             _pchip_table_or_direct("cupyx.scipy.interpolate", lambda im, t: _cupy().asarray(t)[im]),
             ("cupy", "cupyx.scipy.interpolate"), "uint8: table indexing; float32: direct"),
    ],
    "unsharp": [
        GPUENHANCE_CPU,
        Impl("cv2.GaussianBlur + addWeighted", "cpu", _cv2_unsharp, ("cv2",), _PER_IMAGE),
        Impl("skimage.filters.unsharp_mask", "cpu", _skimage_unsharp("skimage.filters"),
             ("skimage",), "float64 math; " + _PER_IMAGE),
        GPUENHANCE_GPU,
        Impl("cucim.skimage.filters.unsharp_mask", "gpu", _skimage_unsharp("cucim.skimage.filters"),
             ("cupy", "cucim"), _PER_IMAGE, tolerate_errors=True),
    ],
    "bilateral": [
        GPUENHANCE_CPU,
        Impl("cv2.bilateralFilter", "cpu", _cv2_bilateral, ("cv2",), _PER_IMAGE),
        GPUENHANCE_GPU,
        Impl("cvcuda.bilateral_filter", "gpu", _cvcuda_bilateral, ("cupy", "torch", "cvcuda"),
             tolerate_errors=True),
    ],
    "patch_sgd": [
        GPUENHANCE_CPU,
        Impl("per-step scipy L-BFGS", "cpu", _lbfgs_patch, ("scipy",), extrapolated=True),
        GPUENHANCE_GPU,
    ],
}


def impls(family: str) -> list[Impl]:
    return list(REGISTRY[family])


def to_device(arrays: tuple, device: str) -> tuple:
    if device == "cpu":
        return arrays
    import cupy

    return tuple(cupy.asarray(a) for a in arrays)


def sync_result(res: Any) -> Any:  # noqa: D401 - tiny helper
    """Block until *res* (CuPy / torch / CV-CUDA output) is ready."""
    import cupy

    cupy.cuda.Device().synchronize()
    return res
