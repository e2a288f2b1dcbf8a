"""Patch-SGD enhancement of a region of interest: :func:`enhance_roi`."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from . import _backend, _validate

MAX_KSIZE = 7
MAX_PATCH = 64


@dataclass
class EnhanceResult:
    """What :func:`enhance_roi` learned.

    Attributes
    ----------
    kernel : ndarray of float32, shape (C, ksize, ksize)
        Correlation kernel of each channel (C = 1 for a 2-D image).
    bias : ndarray of float32, shape (C,)
        Bias of each channel, on the normalized [0, 1] scale.
    loss_history : ndarray of float32, shape (steps_run,)
        Minibatch loss of every step, before that step's update.
    steps_run : int
        Steps taken (``steps`` unless it stopped early).
    converged : bool
        Whether the early-stopping test fired (see :func:`enhance_roi`).
    """

    kernel: np.ndarray
    bias: np.ndarray
    loss_history: np.ndarray
    steps_run: int
    converged: bool


def _roi(roi, shape_hw, patch):
    if (
        isinstance(roi, (str, bytes))
        or not hasattr(roi, "__len__")
        or len(roi) != 4
        or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in roi)
    ):
        raise ValueError(f"roi must be 4 integers (x, y, w, h); got {roi!r}")
    x, y, w, h = (int(v) for v in roi)
    H, W = shape_hw
    if w <= 0 or h <= 0:
        raise ValueError(f"roi width and height must be > 0; got roi={(x, y, w, h)}")
    if x < 0 or y < 0 or x + w > W or y + h > H:
        raise ValueError(
            f"roi must lie inside the image (0 <= x, x + w <= {W}, 0 <= y, y + h <= {H}); "
            f"got roi={(x, y, w, h)}"
        )
    if w < patch or h < patch:
        raise ValueError(
            f"roi must be at least patch x patch = {patch} x {patch}; got roi={(x, y, w, h)}"
        )
    return (x, y, w, h)


def enhance_roi(img, roi, *, target=None, ksize=3, amount=1.0, patch=32, batch=256, steps=300,
                lr=5e-2, tol=1e-6, seed=0, backend=None):
    """Learn a small kernel + bias on patches of a region of interest and apply it there.

    Per channel c the model is ``out = corr(x, w_c) + b_c`` (a ``ksize x ksize`` correlation
    plus a bias) on the image normalized to [0, 1] (integers divided by their maximum) in
    float32, with the reflect_101 border for pixels outside the image. It is fitted by
    minibatch Adam on the mean squared error over ``batch`` patches of ``patch x patch``
    pixels per step, whose top-left corners are drawn uniformly (so that every patch lies
    inside the ROI) by ``numpy.random.Generator(numpy.random.PCG64(seed))``: every engine sees
    the same patches. Adam runs in whitened coordinates (the Cholesky factor of the ROI's
    feature second moments), which makes the fit converge in a few hundred steps on natural
    images; the fit starts from the identity kernel and zero bias.

    Only pixels inside the ROI change: there the output is conv + bias of the whole image,
    rounded half to even and saturated to the input dtype (float32 is clipped to [0, 1]);
    outside, the output is bit-identical to the input.

    Parameters
    ----------
    img : ndarray, shape (H, W) or (H, W, C), dtype uint8, uint16 or float32
        NumPy or CuPy. Batches (N, H, W, C) are not accepted: one model is learned per image.
    roi : tuple of 4 int
        ``(x, y, w, h)``: column, row, width and height, inside the image and at least
        ``patch x patch``.
    target : ndarray, optional
        Supervised target, same shape and dtype as *img*. None (default): the unsharp mask
        ``x + amount * (x - blur(x))``, blur = Gaussian of size *ksize* with OpenCV's sigma
        ``0.3 * ((ksize - 1) * 0.5 - 1) + 0.8``, reflect_101 border.
    ksize : {1, 3, 5, 7}
        Kernel size (odd).
    amount : float
        Unsharp-mask strength (only used when *target* is None).
    patch : int in [1, 64]
        Patch side.
    batch : int >= 1
        Patches per step.
    steps : int >= 1
        Maximum number of Adam steps. Default 300: the whitened fit of a 3x3 kernel on a
        natural image reaches the least-squares loss within a fraction of a percent by then.
    lr : float > 0
        Initial Adam step size in whitened coordinates (betas 0.9, 0.999, eps 1e-8). Step t of
        ``steps`` uses ``lr * (1 + cos(pi * (t - 1) / steps)) / 2`` (cosine decay), further
        divided by 10 at each loss plateau (see *tol*). Default 5e-2: with the decay, the fit
        ends within 0.1 % of the least-squares loss in our tests, and starts fast enough to
        reach kernels far from the identity.
    tol : float >= 0
        Plateau test and early stopping: every 50 steps, from step 100 on, the mean loss of
        the last 50 steps is compared with the mean of the 50 before. When it fell by no more
        than ``tol`` (relative), the step size is divided by 10; the third such plateau, or a
        mean loss below 1e-12 (an exact fit, RMS residual 1e-6 of full scale), means the fit
        has converged and it stops (``converged=True``). The CUDA engine keeps its loss
        history on the device and reads it only at these checks; the CPU engine checks at the
        same steps, so both stop at the same step.
    seed : int >= 0
        Seed of the patch positions.
    backend : {None, "auto", "cpu", "cuda", "cuda-emulated"}
        Engine; None follows the input's array type.

    Returns
    -------
    enhanced : ndarray
        Same shape, dtype and array type as *img*.
    result : EnhanceResult
        The learned kernel and bias (NumPy), the loss history, steps run and convergence.

    Raises
    ------
    TypeError
        For a wrong array type or dtype, or a *target* whose dtype differs from *img*'s.
    ValueError
        For a bad *roi*, *ksize*, *patch*, *batch*, *steps*, *lr*, *tol*, *seed*, a 4-D *img*,
        or a *target* of another shape.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuenhance import enhance_roi
    >>> rng = np.random.default_rng(0)
    >>> img = rng.integers(0, 256, size=(40, 48), dtype=np.uint8)
    >>> out, res = enhance_roi(img, (8, 4, 24, 24), patch=8, batch=16, steps=100)
    >>> out.shape, out.dtype
    ((40, 48), dtype('uint8'))
    >>> res.kernel.shape, res.bias.shape
    ((1, 3, 3), (1,))
    >>> bool(np.array_equal(out[:4], img[:4]))  # outside the ROI: unchanged
    True
    """
    _validate.image(img, "img")
    if img.ndim == 4:
        raise ValueError(
            f"img must have shape (H, W) or (H, W, C) (one model per image); "
            f"got shape {tuple(img.shape)}"
        )
    ksize = _validate.odd_ksize(ksize, "ksize", low=1, high=MAX_KSIZE)
    patch = _validate.integer(patch, "patch", low=1, high=MAX_PATCH)
    batch = _validate.integer(batch, "batch", low=1)
    steps = _validate.integer(steps, "steps", low=1)
    lr = _validate.real(lr, "lr", low=0.0, low_open=True)
    tol = _validate.real(tol, "tol", low=0.0)
    amount = _validate.real(amount, "amount")
    seed = _validate.integer(seed, "seed", low=0)
    roi = _roi(roi, img.shape[:2], patch)
    if target is not None:
        _validate.image(target, "target")
        _validate.same_shape(img, target, ("img", "target"))
        if np.dtype(target.dtype) != np.dtype(img.dtype):
            raise TypeError(
                f"target must have the dtype of img ({np.dtype(img.dtype).name}); "
                f"got {np.dtype(target.dtype).name}"
            )
    engine = _backend.resolve(img, target, backend=backend)
    out, kernel, bias, losses, steps_run, converged = engine.call(
        "roi", "enhance_roi", img, roi, target, ksize, amount, patch, batch, steps, lr, tol, seed
    )

    result = EnhanceResult(
        kernel=_backend.to_host(kernel), bias=_backend.to_host(bias),
        loss_history=_backend.to_host(losses),
        steps_run=int(steps_run), converged=bool(converged),
    )
    return out, result
