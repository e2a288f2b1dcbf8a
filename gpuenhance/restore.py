"""FFT-LMS restoration: a per-frequency restoration filter learned from (degraded, clean) pairs.

Validation, state and dispatch only; the math lives in ``gpuenhance._cpu.restore`` and
``gpuenhance._cuda.restore`` (+ ``kernels/lms.cu``).
"""

from __future__ import annotations

import dataclasses
import os
import zipfile

import numpy as np

from . import _backend, _validate
from ._image import to_nhwc, from_nhwc

#: Forgetting factor of the running per-bin power P of the degraded spectra.
BETA = 0.9

_FORMAT_VERSION = 1


class NotFittedError(ValueError, AttributeError):
    """Raised when an :class:`LMSRestorer` is used before it has been fitted."""


def _to_host(x):
    if x is None:
        return None
    return x.get() if _backend.is_cupy(x) else np.asarray(x)


def _state_engine(engine):
    """The same engine, but handing results back as engine arrays (the state stays there)."""
    return dataclasses.replace(engine, input_on_gpu=engine.name == "cuda")


class LMSRestorer:
    r"""Learn a restoration filter per frequency bin by normalized complex LMS.

    For each channel and each bin of the real 2-D FFT over (H, W) (``norm="ortho"``, float32
    images on their normalized range, complex64 spectra), a complex weight W is learned so that
    ``W * rfft2(degraded) ≈ rfft2(clean)``. One update step on a batch of B pairs with spectra
    ``G_b``, ``F_b``:

    .. math::

        E_b &= F_b - W G_b, \qquad
        \nabla = \tfrac1B \textstyle\sum_b \overline{G_b} E_b, \qquad
        p = \tfrac1B \textstyle\sum_b |G_b|^2, \\
        P &\leftarrow p \text{ (first step)}, \quad
        P \leftarrow \beta P + (1-\beta) p \text{ (later steps)}, \\
        W &\leftarrow W + \mu\,(\nabla - \lambda W) / (P + \varepsilon),

    with ``beta = BETA = 0.9``; P is the running per-bin power of G. The fixed point (``leak=0``)
    is the empirical Wiener filter :math:`\sum \overline{G} F / \sum |G|^2`; one full-batch step
    with ``mu=1`` from W = 0 lands on it.

    Parameters
    ----------
    mu : float, default 0.5
        Normalized step size, in (0, 2].
    leak : float, default 0.0
        Leakage :math:`\lambda \ge 0` pulling W towards 0 (regularisation).
    eps : float, default 1e-8
        Added to P before dividing, > 0.
    support : int or None, default None
        When set to r, W is projected after every update onto spatial convolution kernels of
        (2r+1)² taps centred at the origin (circular distance <= r in each axis), and the
        learned kernel lets :meth:`restore` work on images of any size. Needs 2r+1 <= min(H, W).
        The projection is the closest kernel in the metric of the bin power P + eps (a
        (2r+1)²-square least-squares solve per channel), so the constrained fit converges to
        the least-squares kernel of the pairs; eps also regularises that solve.
    batch_size : int, default 8
        Pairs per update step (the last step of an epoch may have fewer).
    backend : {None, "auto", "cpu", "cuda", "cuda-emulated"}
        Engine; None follows the array type of the inputs.

    Attributes
    ----------
    weights_ : array, complex64 (H, W//2+1, C)
        The learned weights, on the engine that fitted them (NumPy or CuPy array).
    kernel_ : array, float32 (2r+1, 2r+1, C) or None
        The spatial convolution kernel (origin at the centre) when ``support`` is set.
    shape_ : tuple of int
        (H, W, C) of the training images.
    loss_history_ : list of float
        Per epoch (or :meth:`partial_fit` call), the mean over its steps of the step loss: the
        mean squared error per pixel of ``W * G`` against ``F`` before the update, on the
        normalized range (Parseval over the full spectrum, i.e. image-domain units).

    Notes
    -----
    Layouts follow the package's image model: (H, W) is one grayscale pair, (H, W, C) one pair
    with C channels, (N, H, W, C) a stack of N pairs. A grayscale stack is (N, H, W, 1).
    dtypes uint8, uint16 (normalized by 255 / 65535) and float32 (taken as is); ``degraded``
    and ``clean`` may have different dtypes. Filtering is circular (FFT).

    Examples
    --------
    >>> import numpy as np
    >>> from gpuenhance import LMSRestorer, degrade
    >>> rng = np.random.default_rng(0)
    >>> clean = rng.random((4, 32, 48, 1), dtype=np.float32)
    >>> degraded = degrade.turbulence(clean, degrade.TURBULENCE_MILD)
    >>> model = LMSRestorer(mu=1.0, batch_size=4).fit(degraded, clean, epochs=2)
    >>> restored = model.restore(degraded)
    >>> restored.shape, restored.dtype
    ((4, 32, 48, 1), dtype('float32'))
    >>> bool(np.abs(restored - clean).max() < 1e-3)
    True
    """

    def __init__(self, mu=0.5, leak=0.0, eps=1e-8, support=None, *, batch_size=8, backend=None):
        self.mu = _validate.real(mu, "mu", low=0.0, high=2.0, low_open=True)
        self.leak = _validate.real(leak, "leak", low=0.0)
        self.eps = _validate.real(eps, "eps", low=0.0, low_open=True)
        self.support = None if support is None else _validate.integer(support, "support", low=0)
        self.batch_size = _validate.integer(batch_size, "batch_size", low=1)
        if backend is not None and backend != "auto" and backend not in _backend.BACKENDS:
            _backend.resolve(backend=backend)  # raises the standard ValueError
        self.backend = backend
        self._reset()

    # ------------------------------------------------------------------ state
    def _reset(self):
        self._W = None
        self._P = None
        self._kernel = None
        self._shape = None
        self._losses = []
        self._by_size = {}

    @property
    def weights_(self):
        self._check_fitted()
        return self._W

    @property
    def kernel_(self):
        self._check_fitted()
        return self._kernel

    @property
    def shape_(self):
        self._check_fitted()
        return self._shape

    @property
    def loss_history_(self):
        self._check_fitted()
        return [float(_to_host(loss).mean()) if not isinstance(loss, float) else loss
                for loss in self._losses]

    def _check_fitted(self):
        if self._W is None:
            raise NotFittedError(
                "this LMSRestorer is not fitted yet; call fit() or partial_fit() first"
            )

    def __repr__(self):
        return (
            f"LMSRestorer(mu={self.mu}, leak={self.leak}, eps={self.eps}, "
            f"support={self.support}, batch_size={self.batch_size}, backend={self.backend!r})"
        )

    # --------------------------------------------------------------- training
    def _pairs(self, degraded, clean, *, same_shape=True):
        _validate.image(degraded, "degraded")
        _validate.image(clean, "clean")
        if tuple(degraded.shape) != tuple(clean.shape):
            raise ValueError(
                f"clean must have the shape of degraded; got clean {tuple(clean.shape)} and "
                f"degraded {tuple(degraded.shape)}"
            )
        g, f = to_nhwc(degraded), to_nhwc(clean)
        shape = tuple(int(s) for s in g.shape[1:])
        if self.support is not None and 2 * self.support + 1 > min(shape[0], shape[1]):
            raise ValueError(
                f"support must be in [0, {(min(shape[0], shape[1]) - 1) // 2}] for images of "
                f"{shape[0]}x{shape[1]} (2*support+1 <= min(H, W)); got {self.support}"
            )
        if same_shape and self._shape is not None and shape != self._shape:
            raise ValueError(
                f"degraded must have (H, W, C) = {self._shape} like the data this model was "
                f"fitted on; got {shape}"
            )
        engine = _backend.resolve(degraded, clean, backend=self.backend)
        se = _state_engine(engine)
        G = se.call("restore", "spectra", g)
        F = se.call("restore", "spectra", f)
        return se, G, F, shape

    def _epoch(self, se, G, F, order, shape):
        support = -1 if self.support is None else self.support
        W, P, losses = se.call(
            "restore", "nlms_epoch", G, F, self._W, self._P, order, shape[:2],
            self.batch_size, self.mu, self.leak, self.eps, BETA, support,
        )
        self._W, self._P = W, P
        self._losses.append(losses)

    def _finish(self, se, shape):
        self._shape = shape
        self._by_size = {}
        if self.support is not None:
            self._kernel = se.call("restore", "kernel_from_weights", self._W, shape[:2],
                                   self.support)

    def fit(self, degraded, clean, epochs=10, *, seed=0):
        """Learn the filter from scratch on (degraded, clean) pairs.

        Parameters
        ----------
        degraded, clean : array, (H, W), (H, W, C) or (N, H, W, C)
            Pairs of equal shape; uint8, uint16 or float32.
        epochs : int, default 10
            Passes over the pairs; each visits them in an order shuffled by
            ``numpy.random.default_rng(seed)``.
        seed : int or None, default 0
            Seed of the shuffling generator.

        Returns
        -------
        self

        Examples
        --------
        >>> import numpy as np
        >>> from gpuenhance import LMSRestorer
        >>> rng = np.random.default_rng(1)
        >>> clean = rng.random((3, 16, 16, 1), dtype=np.float32)
        >>> model = LMSRestorer(mu=1.0, batch_size=3).fit(0.5 * clean, clean, epochs=1)
        >>> bool(np.allclose(model.weights_, 2.0, atol=1e-5))
        True
        """
        epochs = _validate.integer(epochs, "epochs", low=1)
        if seed is not None:
            seed = _validate.integer(seed, "seed", low=0)
        se, G, F, shape = self._pairs(degraded, clean, same_shape=False)
        self._reset()
        n = int(G.shape[0])
        rng = np.random.default_rng(seed)
        for _ in range(epochs):
            order = rng.permutation(n).astype(np.int32)
            self._epoch(se, G, F, order, shape)
        self._finish(se, shape)
        return self

    def partial_fit(self, degraded, clean):
        """One pass over the pairs, in the given order, continuing from the current state.

        Parameters
        ----------
        degraded, clean : array, (H, W), (H, W, C) or (N, H, W, C)
            Pairs of equal shape, of the (H, W, C) of earlier calls.

        Returns
        -------
        self

        Examples
        --------
        >>> import numpy as np
        >>> from gpuenhance import LMSRestorer
        >>> clean = np.random.default_rng(2).random((2, 16, 16, 1), dtype=np.float32)
        >>> model = LMSRestorer(mu=1.0).partial_fit(0.5 * clean, clean)
        >>> len(model.loss_history_)
        1
        """
        se, G, F, shape = self._pairs(degraded, clean)
        order = np.arange(int(G.shape[0]), dtype=np.int32)
        self._epoch(se, G, F, order, shape)
        self._finish(se, shape)
        return self

    # --------------------------------------------------------------- inference
    def restore(self, degraded):
        """Apply the learned filter: ``irfft2(W * rfft2(degraded))``.

        Parameters
        ----------
        degraded : array, (H, W), (H, W, C) or (N, H, W, C)
            uint8, uint16 or float32, with the C of the training data; the (H, W) of the
            training data unless the model was fitted with ``support``.

        Returns
        -------
        array
            Same shape, dtype and array type as *degraded*; integers rounded half to even and
            saturated.

        Raises
        ------
        NotFittedError
            Before :meth:`fit` / :meth:`partial_fit`.
        ValueError
            For another channel count, or another (H, W) without ``support``.

        Examples
        --------
        >>> import numpy as np
        >>> from gpuenhance import LMSRestorer
        >>> clean = np.random.default_rng(3).random((2, 16, 16, 1), dtype=np.float32)
        >>> model = LMSRestorer(mu=1.0, support=1).fit(0.5 * clean, clean, epochs=2)
        >>> out = model.restore(np.full((20, 24), 100, dtype=np.uint8))
        >>> out.shape, out.dtype, int(out[5, 5])
        ((20, 24), dtype('uint8'), 200)
        """
        _validate.image(degraded, "degraded")
        self._check_fitted()
        g = to_nhwc(degraded)
        shape = tuple(int(s) for s in g.shape[1:])
        if shape[2] != self._shape[2]:
            raise ValueError(
                f"degraded must have {self._shape[2]} channel(s) like the training data; "
                f"got {shape[2]}"
            )
        engine = _backend.resolve(degraded, backend=self.backend)
        se = _state_engine(engine)
        if shape[:2] == self._shape[:2]:
            self._W = se.to_engine(self._W)
            W = self._W
        elif self.support is None:
            raise ValueError(
                f"degraded must be {self._shape[0]}x{self._shape[1]} (the training size) for a "
                f"model fitted without support; got {shape[0]}x{shape[1]}"
            )
        elif 2 * self.support + 1 > min(shape[0], shape[1]):
            raise ValueError(
                f"degraded must be at least {2 * self.support + 1} pixels in H and W for a "
                f"kernel of support {self.support}; got {shape[0]}x{shape[1]}"
            )
        else:
            key = (engine.name, shape[:2])
            if key not in self._by_size:
                self._kernel = se.to_engine(self._kernel)
                self._by_size[key] = se.call("restore", "weights_from_kernel", self._kernel,
                                             shape[:2])
            W = self._by_size[key]
        out = engine.call("restore", "apply", W, g)
        return from_nhwc(out, degraded.ndim)

    # ------------------------------------------------------------- persistence
    def save(self, path):
        """Write the model to *path* as an ``.npz`` archive (no pickles).

        Stores the hyper-parameters, W, P, the training (H, W, C), the spatial kernel (when
        ``support`` is set) and the loss history. The file is written at *path* exactly.

        Examples
        --------
        >>> import numpy as np, tempfile, os
        >>> from gpuenhance import LMSRestorer
        >>> clean = np.random.default_rng(4).random((2, 16, 16, 1), dtype=np.float32)
        >>> model = LMSRestorer(mu=1.0).fit(0.5 * clean, clean, epochs=1)
        >>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
        >>> model.save(path)
        >>> bool(np.array_equal(LMSRestorer.load(path).weights_, model.weights_))
        True
        """
        self._check_fitted()
        kernel = _to_host(self._kernel)
        arrays = dict(
            version=np.int64(_FORMAT_VERSION),
            mu=np.float64(self.mu),
            leak=np.float64(self.leak),
            eps=np.float64(self.eps),
            support=np.int64(-1 if self.support is None else self.support),
            batch_size=np.int64(self.batch_size),
            beta=np.float64(BETA),
            shape=np.asarray(self._shape, dtype=np.int64),
            W=_to_host(self._W).astype(np.complex64),
            P=(np.zeros(0, np.float32) if self._P is None else _to_host(self._P)),
            kernel=np.zeros((0, 0, 0), np.float32) if kernel is None else kernel,
            loss_history=np.asarray(self.loss_history_, dtype=np.float64),
        )
        with open(os.fspath(path), "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path, *, backend=None):
        """Read a model written by :meth:`save`.

        Parameters
        ----------
        path : str or path-like
        backend : {None, "auto", "cpu", "cuda", "cuda-emulated"}
            Engine of the loaded model (its arrays are NumPy until first used).

        Returns
        -------
        LMSRestorer

        Raises
        ------
        ValueError
            When *path* is not a filter file written by :meth:`save` (another kind of file, a
            truncated archive, missing fields) or holds another format version.
        """
        path = os.fspath(path)
        with open(path, "rb") as fh:
            if fh.read(4) != b"PK\x03\x04":
                raise ValueError(
                    f"{path!r} is not an LMSRestorer filter file (an .npz archive written by "
                    f"LMSRestorer.save or 'gpuenhance restore fit'): it is corrupt or another "
                    f"kind of file"
                )
        try:
            return cls._load_npz(path, backend)
        except (KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise ValueError(
                f"{path!r} is not a complete LMSRestorer filter file: {type(exc).__name__}: {exc}"
            ) from None

    @classmethod
    def _load_npz(cls, path, backend):
        with np.load(path, allow_pickle=False) as data:
            version = int(data["version"])
            if version != _FORMAT_VERSION:
                raise ValueError(f"path holds an LMSRestorer of format {version}; "
                                 f"this version reads {_FORMAT_VERSION}")
            support = int(data["support"])
            model = cls(
                mu=float(data["mu"]), leak=float(data["leak"]), eps=float(data["eps"]),
                support=None if support < 0 else support,
                batch_size=int(data["batch_size"]), backend=backend,
            )
            model._W = np.ascontiguousarray(data["W"])
            P = data["P"]
            model._P = None if P.size == 0 else np.ascontiguousarray(P)
            kernel = data["kernel"]
            model._kernel = None if kernel.size == 0 else np.ascontiguousarray(kernel)
            model._shape = tuple(int(s) for s in data["shape"])
            model._losses = [float(v) for v in data["loss_history"]]
        return model
