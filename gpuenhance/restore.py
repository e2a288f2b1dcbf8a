"""FFT-LMS restoration: a per-frequency restoration filter learned from (degraded, clean) pairs.

Validation, state and dispatch only; the math lives in ``gpuenhance._cpu.restore`` and
``gpuenhance._cuda.restore`` (+ ``kernels/lms.cu``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile

import numpy as np

from . import _backend, _spectral, _validate
from ._image import to_nhwc, from_nhwc

#: Forgetting factor of the running per-bin power P of the degraded spectra.
BETA = 0.9

#: Solvers of :meth:`LMSRestorer.fit`.
SOLVERS = ("nlms", "exact")

#: Default stopping tolerance of ``fit(epochs=None)``: the P-weighted relative change of the
#: filter over one epoch (see :class:`LMSRestorer`). Chosen by measurement on held-out
#: photographs (bench/quality.py data, turbulence and noise): with the decaying step, the
#: restored PSNR at this change is within 0.05 dB of the converged filter's.
DEFAULT_TOL = 5e-4

#: Default cap on the epochs of ``fit(epochs=None)``.
DEFAULT_MAX_EPOCHS = 100

#: Decay time, in updates, of the step size of ``fit(epochs=None)``: ``mu / (1 + t / DECAY)``.
DECAY = 16

_FORMAT_VERSION = 2
_READS = (1, 2)


class NotFittedError(ValueError, AttributeError):
    """Raised when an :class:`LMSRestorer` is used before it has been fitted."""


def _mean_loss(loss):
    """A loss_history_ entry: a float, an engine array of step losses, or a tuple of those."""
    if isinstance(loss, float):
        return loss
    parts = loss if isinstance(loss, tuple) else (loss,)
    return float(np.concatenate([np.ravel(_backend.to_host(p)) for p in parts]).mean())


def _state_engine(engine):
    """The same engine, but handing results back as engine arrays (the state stays there)."""
    return dataclasses.replace(engine, input_on_gpu=engine.name == "cuda")


class LMSRestorer:
    r"""Learn a restoration filter per frequency bin by normalized complex LMS, or solve for it.

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
        W &\leftarrow W + \mu_t\,(\nabla - \lambda W) / (P + \varepsilon),

    with ``beta = BETA = 0.9``; P is the running per-bin power of G. The fixed point (``leak=0``)
    is the empirical Wiener filter :math:`\sum \overline{G} F / \sum |G|^2`; one full-batch step
    with ``mu=1`` from W = 0 lands on it.

    **Convergence.** ``fit(epochs=None)`` (the default) runs epochs until the filter stops
    changing: until the relative change over an epoch, measured where the data has energy,
    :math:`\sqrt{\sum P |W_e - W_{e-1}|^2 / \sum P |W_e|^2}`, falls below ``tol``, or
    ``max_epochs`` have run (``n_epochs_`` and ``converged_`` say which). Its step size decays,
    :math:`\mu_t = \mu / (1 + t / 16)` for update t (:data:`DECAY`), so that the minibatch noise
    of the iterate vanishes and the filter settles on the fixed point rather than around it.
    Measured on held-out photographs (turbulence, noise σ 0.001-0.01, minibatches of 8): a
    constant step stays 0.1-0.3 dB below the closed form however long it runs; the decaying
    step reaches it within 0.01 dB in 5-15 epochs, where averaging the constant-step iterates
    still missed by 0.04 dB after 30. ``fit(epochs=N)`` runs exactly N epochs at the constant
    step ``mu``.

    **Solvers.** ``solver="exact"`` skips the iterations: one streaming pass over the pairs
    (``batch_size`` at a time, memory independent of their number) accumulates
    :math:`X = \sum \overline{G} F` and :math:`S = \sum |G|^2` per bin in float64, and the
    filter is the regularised least-squares solution :math:`W = (X/n) / (S/n + \lambda +
    \varepsilon)` (n pairs), i.e. NLMS's fixed point with ``eps`` added to the denominator.
    With ``support`` it is the least-squares kernel of (2r+1)² taps, minimising
    :math:`\sum_n \|f_n - k \circledast g_n\|^2 / N_{pix} + (\lambda + \varepsilon)\|k\|^2`
    (the spatial normal equations formed from X and S, one (2r+1)²-square solve per channel).
    Pick ``"exact"`` to fit a fixed training set: it costs the FFTs every NLMS epoch needs plus
    about one NLMS update (one solve with support), so it is faster than an epoch of several
    updates (32 pairs, batch_size 8, CPU: 1.1-2.7x per bin, where the FFTs dominate both, and
    1.4-4.7x with support 15; even for a single pair; bench/test_bench_lms.py) and is the optimum NLMS only approaches (on a list of sizes, NLMS visits one size at a time
    and settles within ~2 % of the optimum's training error, not on it). Pick ``"nlms"`` for
    :meth:`partial_fit`, streams of pairs that never sit in memory together, or a filter that
    should track drifting data. Bins whose power is far below ``eps`` are damped by the exact
    solver (NLMS's fixed point ignores eps): lower ``eps`` for noise-free float data.

    Parameters
    ----------
    mu : float, default 0.5
        Normalized step size, in (0, 2].
    leak : float, default 0.0
        Leakage :math:`\lambda \ge 0` pulling W towards 0 (regularisation).
    eps : float, default 1e-8
        Added to P before dividing, > 0; regularises the exact solves.
    support : int or None, default None
        When set to r, W is projected after every update onto spatial convolution kernels of
        (2r+1)² taps centred at the origin (circular distance <= r in each axis), and the
        learned kernel lets :meth:`restore` work on images of any size — and :meth:`fit` on
        a list of images of different sizes. Needs 2r+1 <= min(H, W).
        The projection is the closest kernel in the metric of the bin power P + eps (a
        (2r+1)²-square least-squares solve per channel), so the constrained fit converges to
        the least-squares kernel of the pairs; eps also regularises that solve.
    batch_size : int, default 8
        Pairs per update step (the last step of an epoch may have fewer); pairs per pass of
        the exact solver's accumulation.
    solver : {"nlms", "exact"}, default "nlms"
        How :meth:`fit` finds the filter (see above).
    tol : float, default 5e-4
        Stopping tolerance of ``fit(epochs=None)`` (:data:`DEFAULT_TOL`), > 0.
    max_epochs : int, default 100
        Most epochs ``fit(epochs=None)`` runs.
    backend : {None, "auto", "cpu", "cuda", "cuda-emulated"}
        Engine; None follows the array type of the inputs.

    Attributes
    ----------
    weights_ : array, complex64 (H, W//2+1, C)
        The learned weights, on the engine that fitted them (NumPy or CuPy array).
    kernel_ : array, float32 (2r+1, 2r+1, C) or None
        The spatial convolution kernel (origin at the centre) when ``support`` is set.
    shape_ : tuple of int
        (H, W, C) of the training images (of the first image, for a list of sizes).
    loss_history_ : list of float
        Per epoch (or :meth:`partial_fit` call), the mean over its steps of the step loss: the
        mean squared error per pixel of ``W * G`` against ``F`` before the update, on the
        normalized range (Parseval over the full spectrum, i.e. image-domain units). For
        ``solver="exact"``, one entry: the training error of the solution.
    n_epochs_ : int
        Epochs :meth:`fit` ran (1 for the exact solver's single pass).
    converged_ : bool
        Whether the last epoch changed the filter by less than ``tol`` (always True for the
        exact solver).
    metadata : dict
        Free-form JSON-serialisable notes saved with the model (the command line records its
        validation PSNRs here); :meth:`fit` clears it.

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
    >>> exact = LMSRestorer(solver="exact").fit(degraded, clean)
    >>> bool(np.abs(exact.restore(degraded) - clean).max() < 1e-3), exact.n_epochs_
    (True, 1)
    """

    def __init__(self, mu=0.5, leak=0.0, eps=1e-8, support=None, *, batch_size=8,
                 solver="nlms", tol=DEFAULT_TOL, max_epochs=DEFAULT_MAX_EPOCHS, backend=None):
        self.mu = _validate.real(mu, "mu", low=0.0, high=2.0, low_open=True)
        self.leak = _validate.real(leak, "leak", low=0.0)
        self.eps = _validate.real(eps, "eps", low=0.0, low_open=True)
        self.support = None if support is None else _validate.integer(support, "support", low=0)
        self.batch_size = _validate.integer(batch_size, "batch_size", low=1)
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(map(repr, SOLVERS))}; got {solver!r}")
        self.solver = solver
        self.tol = _validate.real(tol, "tol", low=0.0, low_open=True)
        self.max_epochs = _validate.integer(max_epochs, "max_epochs", low=1)
        _backend.check_name(backend)
        self.backend = backend
        self.metadata = {}
        self._reset()

    # ------------------------------------------------------------------ state
    def _reset(self):
        self._W = None
        self._P = None
        self._kernel = None
        self._shape = None
        self._losses = []
        self._by_size = {}
        self._n_epochs = 0
        self._converged = False

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
    def n_epochs_(self):
        self._check_fitted()
        return self._n_epochs

    @property
    def converged_(self):
        self._check_fitted()
        return self._converged

    @property
    def loss_history_(self):
        self._check_fitted()
        return [_mean_loss(loss) for loss in self._losses]

    def _check_fitted(self):
        if self._W is None:
            raise NotFittedError(
                "this LMSRestorer is not fitted yet; call fit() or partial_fit() first"
            )

    def __repr__(self):
        return (
            f"LMSRestorer(mu={self.mu}, leak={self.leak}, eps={self.eps}, "
            f"support={self.support}, batch_size={self.batch_size}, solver={self.solver!r}, "
            f"tol={self.tol}, max_epochs={self.max_epochs}, backend={self.backend!r})"
        )

    # --------------------------------------------------------------- training
    def _groups(self, degraded, clean, *, allow_list=True):
        """Validate the pairs; return the engine and [(shape, [(g, f), ...]), ...] by size.

        Groups keep the order in which their size first appears; all validation happens
        before any array is touched.
        """
        listed = isinstance(degraded, (list, tuple)) or isinstance(clean, (list, tuple))
        if listed:
            if not allow_list:
                raise TypeError("degraded must be an array here (a list of arrays is for fit)")
            if not isinstance(degraded, (list, tuple)) or not isinstance(clean, (list, tuple)):
                raise TypeError("degraded and clean must both be arrays or both be lists of arrays")
            if len(degraded) != len(clean):
                raise ValueError(f"clean must hold as many arrays as degraded; got {len(clean)} "
                                 f"and {len(degraded)}")
            if not degraded:
                raise ValueError("degraded must not be an empty list")
            names = [(f"degraded[{i}]", f"clean[{i}]") for i in range(len(degraded))]
        else:
            degraded, clean = [degraded], [clean]
            names = [("degraded", "clean")]
        parts = []
        for g, f, (gname, fname) in zip(degraded, clean, names):
            _validate.image(g, gname)
            _validate.image(f, fname)
            if tuple(g.shape) != tuple(f.shape):
                raise ValueError(
                    f"{fname} must have the shape of {gname}; got {fname} {tuple(f.shape)} and "
                    f"{gname} {tuple(g.shape)}"
                )
            parts.append((to_nhwc(g), to_nhwc(f), gname))
        groups: dict = {}
        for g, f, gname in parts:
            shape = tuple(int(s) for s in g.shape[1:])
            first = parts[0][0]
            if shape[2] != int(first.shape[3]):
                raise ValueError(f"{gname} has {shape[2]} channel(s) but {parts[0][2]} has "
                                 f"{int(first.shape[3])}; every pair needs the same channels")
            groups.setdefault(shape, []).append((g, f))
        if len(groups) > 1 and self.support is None:
            sizes = ", ".join(f"{h}x{w}" for h, w, _ in groups)
            raise ValueError(
                f"degraded holds images of different sizes ({sizes}); a per-frequency filter "
                "is tied to one size: set support=r (a spatial kernel of (2r+1)² taps, "
                "independent of the image size) to fit on mixed sizes"
            )
        smallest = min(min(h, w) for h, w, _ in groups)
        if self.support is not None and 2 * self.support + 1 > smallest:
            h, w, _ = min(groups, key=lambda s: min(s[0], s[1]))
            raise ValueError(
                f"support must be in [0, {(smallest - 1) // 2}] for images of "
                f"{h}x{w} (2*support+1 <= min(H, W)); got {self.support}"
            )
        engine = _backend.resolve(*[a for g, f, _ in parts for a in (g, f)], backend=self.backend)
        return engine, list(groups.items())

    def _pairs(self, degraded, clean):
        """Spectra of one stack of pairs for partial_fit: (state engine, G, F, shape)."""
        engine, groups = self._groups(degraded, clean, allow_list=False)
        (shape, [(g, f)]), = groups
        if self._shape is not None and shape != self._shape:
            raise ValueError(
                f"degraded must have (H, W, C) = {self._shape} like the data this model was "
                f"fitted on; got {shape}"
            )
        se = _state_engine(engine)
        return se, se.call("restore", "spectra", g), se.call("restore", "spectra", f), shape

    def _epoch(self, se, G, F, W, P, order, shape, step0=0, decay=0.0):
        support = -1 if self.support is None else self.support
        return se.call(
            "restore", "nlms_epoch", G, F, W, P, order, shape[:2],
            self.batch_size, self.mu, self.leak, self.eps, BETA, support, step0, decay,
        )

    def _change(self, se, previous):
        """The P-weighted relative change of the weights since *previous* (None: first fit)."""
        if previous is None:
            return None
        return _spectral.relative_change(se.xp, self._W, se.to_engine(previous), self._P)

    def _finish(self, se, shape):
        self._shape = shape
        self._by_size = {}
        if self.support is not None:
            self._kernel = _spectral.kernel_from_weights(se.xp, self._W, shape[:2], self.support)

    def fit(self, degraded, clean, epochs=None, *, seed=0, progress=None):
        """Learn the filter from scratch on (degraded, clean) pairs.

        Parameters
        ----------
        degraded, clean : array or list of arrays
            Pairs of equal shape, (H, W), (H, W, C) or (N, H, W, C); uint8, uint16 or float32.
            Lists pair up element by element; their images may differ in size (H, W) only
            when ``support`` is set (the channel count C is shared).
        epochs : int or None, default None
            None: run until converged (relative change below ``tol``, at most
            ``max_epochs``, decaying step; see the class notes). N: exactly N passes at the
            constant step ``mu``. Each pass visits the pairs in an order shuffled by
            ``numpy.random.default_rng(seed)``. Ignored by ``solver="exact"`` (one pass).
        seed : int or None, default 0
            Seed of the shuffling generator.
        progress : callable or None
            Called after every epoch as ``progress(epoch, change)`` with the epoch's relative
            change of the filter (None after the first epoch).

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
        >>> model = LMSRestorer(batch_size=1).fit(0.5 * clean, clean)
        >>> model.converged_, bool(np.allclose(model.weights_, 2.0, atol=1e-2))
        (True, True)
        """
        if epochs is not None:
            epochs = _validate.integer(epochs, "epochs", low=1)
        if seed is not None:
            seed = _validate.integer(seed, "seed", low=0)
        if progress is not None and not callable(progress):
            raise TypeError(f"progress must be callable or None; got {type(progress).__name__}")
        engine, groups = self._groups(degraded, clean)
        self._reset()
        self.metadata = {}
        se = _state_engine(engine)
        if self.solver == "exact":
            self._fit_exact(se, groups)
            if progress is not None:
                progress(1, None)
        else:
            self._fit_nlms(se, groups, epochs, seed, progress)
        self._finish(se, groups[0][0])
        return self

    def _fit_exact(self, se, groups):
        # Memory: the sums of the current size and of the first size (whose W and P are the
        # model's state); with support, every size is reduced to its (2r+1)²-square normal
        # equations (and the energy of its clean images) as soon as its pass is done.
        reg = self.eps + self.leak
        r = self.support
        pixels = sum(int(g.shape[0]) * h * w for (h, w, _), parts in groups for g, _ in parts)
        A = b = None
        energy = 0.0
        for index, (shape, parts) in enumerate(groups):
            X = S = E = None
            n = 0
            for g, f in parts:
                for start in range(0, int(g.shape[0]), self.batch_size):
                    stop = start + self.batch_size
                    X, S, E = se.call("restore", "accumulate", X, S, E, g[start:stop], f[start:stop])
                n += int(g.shape[0])
            if index == 0:  # with support, only its power is needed later
                first = (shape, X, S, E, n) if r is None else (shape, None, S, None, n)
            if r is not None:
                h, w = shape[:2]
                Ag, bg = _spectral.support_system(se.xp, S, X, (h, w), r, h * w / pixels)
                A, b = (Ag, bg) if A is None else (A + Ag, b + bg)
                energy += _spectral.parseval_sum(se.xp, E, (h, w))
            X = S = E = None
        shape, X, S, E, n = first
        channels = shape[2]
        if r is None:
            W, P, total = _spectral.exact_solution(se.xp, X, S, E, n, reg, shape[:2])
            loss = total / (n * shape[0] * shape[1] * channels)
        else:
            P = _spectral.power(se.xp, S, n)
            # sum_n ||f - k ⊛ g||² / pixels = energy / pixels + k^T A k - 2 k^T b, per channel
            W, quad = _spectral.solve_support(se.xp, A, b, reg, shape[:2], r)
            loss = (energy / pixels + quad) / channels
        self._W, self._P = W, P
        self._losses = [float(loss)]
        self._n_epochs, self._converged = 1, True

    def _fit_nlms(self, se, groups, epochs, seed, progress):
        spectra = []
        for shape, parts in groups:
            G = [se.call("restore", "spectra", g) for g, _ in parts]
            F = [se.call("restore", "spectra", f) for _, f in parts]
            if len(parts) > 1:
                G, F = se.xp.concatenate(G), se.xp.concatenate(F)
            else:
                G, F = G[0], F[0]
            spectra.append((shape, G, F, int(G.shape[0])))
        rng = np.random.default_rng(seed)
        decay = 0.0 if epochs is not None else float(DECAY)
        t = 0
        powers = [None] * len(spectra)
        kernel = None
        for epoch in range(epochs or self.max_epochs):
            previous = self._W
            if len(spectra) == 1:
                shape, G, F, n = spectra[0]
                order = rng.permutation(n).astype(np.int32)
                self._W, self._P, losses = self._epoch(se, G, F, self._W, self._P, order, shape,
                                                       t, decay)
                t += -(-n // self.batch_size)
            else:
                # one kernel, visited size by size: each group's weights are the kernel's
                # transfer function on its grid, and go back to the kernel after its pass
                losses = []
                for i in rng.permutation(len(spectra)):
                    shape, G, F, n = spectra[i]
                    W = (None if kernel is None
                         else _spectral.weights_from_kernel(se.xp, kernel, shape[:2]))
                    order = rng.permutation(n).astype(np.int32)
                    W, powers[i], loss = self._epoch(se, G, F, W, powers[i], order, shape, t, decay)
                    kernel = _spectral.kernel_from_weights(se.xp, W, shape[:2], self.support)
                    losses.append(loss)
                    t += -(-n // self.batch_size)
                losses = tuple(losses)
                self._W = _spectral.weights_from_kernel(se.xp, kernel, spectra[0][0][:2])
                self._P = powers[0]
            self._losses.append(losses)
            self._n_epochs = epoch + 1
            change = self._change(se, previous)
            self._converged = change is not None and change < self.tol
            if progress is not None:
                progress(epoch + 1, change)
            if epochs is None and self._converged:
                break

    def partial_fit(self, degraded, clean):
        """One pass over the pairs, in the given order, continuing from the current state.

        Always NLMS at the constant step ``mu``, whatever ``solver`` (a model fitted with
        ``solver="exact"`` continues from the exact solution and its power).

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
        previous = self._W
        self._W, self._P, losses = self._epoch(se, G, F, self._W, self._P, order, shape)
        self._losses.append(losses)
        self._n_epochs += 1
        change = self._change(se, previous)
        self._converged = change is not None and change < self.tol
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
                self._by_size[key] = _spectral.weights_from_kernel(se.xp, self._kernel, shape[:2])
            W = self._by_size[key]
        out = engine.call("restore", "apply", W, g)
        return from_nhwc(out, degraded.ndim)

    # ------------------------------------------------------------- persistence
    def save(self, path):
        """Write the model to *path* as an ``.npz`` archive (no pickles).

        Stores the hyper-parameters, W, P, the training (H, W, C), the spatial kernel (when
        ``support`` is set), the loss history, ``n_epochs_``, ``converged_`` and
        :attr:`metadata` (as JSON). The file is written at *path* exactly.

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
        kernel = _backend.to_host(self._kernel)
        arrays = dict(
            version=np.int64(_FORMAT_VERSION),
            mu=np.float64(self.mu),
            leak=np.float64(self.leak),
            eps=np.float64(self.eps),
            support=np.int64(-1 if self.support is None else self.support),
            batch_size=np.int64(self.batch_size),
            beta=np.float64(BETA),
            shape=np.asarray(self._shape, dtype=np.int64),
            W=_backend.to_host(self._W).astype(np.complex64),
            P=(np.zeros(0, np.float32) if self._P is None else _backend.to_host(self._P)),
            kernel=np.zeros((0, 0, 0), np.float32) if kernel is None else kernel,
            loss_history=np.asarray(self.loss_history_, dtype=np.float64),
            solver=np.str_(self.solver),
            tol=np.float64(self.tol),
            max_epochs=np.int64(self.max_epochs),
            n_epochs=np.int64(self._n_epochs),
            converged=np.bool_(self._converged),
            metadata=np.str_(json.dumps(self.metadata)),
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

        Reads the current format and format 1 (files written before ``solver`` and
        :attr:`metadata` existed: NLMS, empty metadata).

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
            if version not in _READS:
                raise ValueError(f"path holds an LMSRestorer of format {version}; "
                                 f"this version reads {', '.join(map(str, _READS))}")
            support = int(data["support"])
            extra = {}
            if version >= 2:
                extra = dict(solver=str(data["solver"]), tol=float(data["tol"]),
                             max_epochs=int(data["max_epochs"]))
            model = cls(
                mu=float(data["mu"]), leak=float(data["leak"]), eps=float(data["eps"]),
                support=None if support < 0 else support,
                batch_size=int(data["batch_size"]), backend=backend, **extra,
            )
            model._W = np.ascontiguousarray(data["W"])
            P = data["P"]
            model._P = None if P.size == 0 else np.ascontiguousarray(P)
            kernel = data["kernel"]
            model._kernel = None if kernel.size == 0 else np.ascontiguousarray(kernel)
            model._shape = tuple(int(s) for s in data["shape"])
            model._losses = [float(v) for v in data["loss_history"]]
            if version >= 2:
                model._n_epochs = int(data["n_epochs"])
                model._converged = bool(data["converged"])
                model.metadata = json.loads(str(data["metadata"]))
            else:
                model._n_epochs = len(model._losses)
        return model
