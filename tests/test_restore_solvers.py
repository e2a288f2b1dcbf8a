"""LMSRestorer's solvers and schedules: the exact solver against float64 closed forms (per bin,
and the support-constrained least squares solved directly in the spatial domain), the default
fit's convergence to it, mixed image sizes, persistence of the new state, and errors — on every
engine. Oracles: float64 NumPy sums and a float64 direct least-squares solve over shifted
images (no FFT), independent of the spectral algebra under test."""

from __future__ import annotations

import numpy as np
import pytest
from test_restore import pairs, rfft, scenes
from tolerances import tol

from gpuenhance import LMSRestorer, degrade
from gpuenhance.restore import DEFAULT_MAX_EPOCHS, DEFAULT_TOL

H, W = 32, 48


def _host(x):
    return x.get() if hasattr(x, "get") else np.asarray(x)


def exact64(G, F, reg):
    """(X/n) / (S/n + reg) in float64 from the same complex64 spectra (upcast)."""
    G = G.astype(np.complex128)
    F = F.astype(np.complex128)
    n = G.shape[0]
    return ((np.conj(G) * F).sum(axis=0) / n) / ((np.abs(G) ** 2).sum(axis=0) / n + reg)


def assert_per_bin(Wgot, G, F, reg, rtol):
    """|W - oracle| <= rtol * (sum|G||F|/n) / (S/n + reg): the error bound of the float sums."""
    G = G.astype(np.complex128)
    F = F.astype(np.complex128)
    n = G.shape[0]
    scale = ((np.abs(G) * np.abs(F)).sum(axis=0) / n) / ((np.abs(G) ** 2).sum(axis=0) / n + reg)
    err = np.abs(_host(Wgot).astype(np.complex128) - exact64(G, F, reg))
    worst = float((err / scale).max())
    assert worst <= rtol, f"max error {worst:.3g} of the sum's scale (rtol {rtol})"


def direct_kernel64(degraded, clean, r, reg):
    """Least-squares kernel of (2r+1)² taps by a float64 solve over shifted images (no FFT).

    Minimises sum_images ||f - k ⊛ g||² / (pixels of all images) + reg ||k||² per channel,
    ⊛ circular, (k ⊛ g)(y, x) = sum k[dy, dx] g(y - dy, x - dx). Inputs: lists of (H, W, C)
    float images. Returns taps (2r+1, 2r+1, C) with the origin at the centre.
    """
    offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
    channels = degraded[0].shape[2]
    out = np.empty((2 * r + 1, 2 * r + 1, channels))
    pixels = sum(g.shape[0] * g.shape[1] for g in degraded)
    for c in range(channels):
        rows, target = [], []
        for g, f in zip(degraded, clean):
            g64 = g[..., c].astype(np.float64)
            rows.append(np.stack([np.roll(g64, o, axis=(0, 1)).ravel() for o in offsets], axis=1))
            target.append(f[..., c].astype(np.float64).ravel())
        A, t = np.concatenate(rows), np.concatenate(target)
        k = np.linalg.solve(A.T @ A / pixels + reg * np.eye(len(offsets)), A.T @ t / pixels)
        out[..., c] = k.reshape(2 * r + 1, 2 * r + 1)
    return out


def mse(a, b):
    return float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


# ----------------------------------------------------------------------------- exact, per bin
@pytest.mark.equivalence("LMSRestorer")
@pytest.mark.parametrize("channels, leak", [(1, 0.0), (3, 1e-3)])
def test_exact_equals_float64_closed_form(backend, channels, leak):
    deg, clean = pairs(n=11, c=channels, noise=0.01)
    eps = 1e-6
    model = LMSRestorer(eps=eps, leak=leak, solver="exact", batch_size=4, backend=backend)
    model.fit(deg, clean)
    assert model.weights_.dtype == np.complex64 and model.n_epochs_ == 1 and model.converged_
    assert_per_bin(model.weights_, rfft(deg, backend), rfft(clean, backend), eps + leak,
                   tol("lms_wiener", "complex64")["rtol"])
    # its one loss entry is the training MSE of its own restoration (image-domain oracle)
    restored = model.restore(deg)
    np.testing.assert_allclose(model.loss_history_, [mse(restored, clean)],
                               **tol("lms_engines", "complex64"))


def test_exact_streams_in_batches(monkeypatch):
    from gpuenhance._cpu import restore as engine

    seen = []
    real = engine.accumulate

    def spy(X, S, E, g, f):
        seen.append(int(g.shape[0]))
        return real(X, S, E, g, f)

    monkeypatch.setattr(engine, "accumulate", spy)
    deg, clean = pairs(n=10)
    streamed = LMSRestorer(solver="exact", batch_size=3, backend="cpu").fit(deg, clean)
    assert seen == [3, 3, 3, 1]  # never more than batch_size pairs' spectra at once
    seen.clear()
    whole = LMSRestorer(solver="exact", batch_size=10, backend="cpu").fit(deg, clean)
    assert seen == [10]
    np.testing.assert_allclose(streamed.weights_, whole.weights_, **tol("lms_wiener", "complex64"))


# ------------------------------------------------------------------------- exact, support
@pytest.mark.equivalence("LMSRestorer")
def test_exact_support_equals_direct_least_squares(backend):
    r, reg = 2, 1e-6
    deg, clean = pairs(n=6, c=2, noise=0.01)
    model = LMSRestorer(eps=reg, support=r, solver="exact", backend=backend).fit(deg, clean)
    expected = direct_kernel64(list(deg), list(clean), r, reg)
    np.testing.assert_allclose(_host(model.kernel_), expected, **tol("fft_filter", "float32"))
    np.testing.assert_allclose(model.loss_history_, [mse(model.restore(deg), clean)],
                               **tol("lms_engines", "complex64"))


@pytest.mark.equivalence("LMSRestorer")
def test_exact_support_mixed_sizes_equals_direct_least_squares(backend):
    r, reg = 2, 1e-6
    big_d, big_c = pairs(n=3, noise=0.01, seed=0)
    small_c = scenes(2, 20, 27, seed=4)
    small_d = degrade.add_gaussian_noise(degrade.turbulence(small_c, degrade.TURBULENCE_SEVERE),
                                         0.01, seed=5)
    single_d = big_d[0, :, :25]  # one (H, W, C) image of a third size
    single_c = big_c[0, :, :25]
    model = LMSRestorer(eps=reg, support=r, solver="exact", batch_size=2, backend=backend)
    model.fit([big_d, small_d, single_d], [big_c, small_c, single_c])
    expected = direct_kernel64([*big_d, *small_d, single_d], [*big_c, *small_c, single_c], r, reg)
    np.testing.assert_allclose(_host(model.kernel_), expected, **tol("fft_filter", "float32"))
    assert model.shape_ == (H, W, 1)
    # restores any size with that kernel; its loss is the pixel-pooled training MSE
    out = model.restore(small_d)
    assert out.shape == small_d.shape
    parts = [(big_d, big_c), (small_d, small_c), (single_d, single_c)]
    squared = sum(float(np.sum((model.restore(d).astype(np.float64) - c) ** 2)) for d, c in parts)
    pixels = sum(c.size for _, c in parts)
    np.testing.assert_allclose(model.loss_history_, [squared / pixels],
                               **tol("lms_engines", "complex64"))


# ------------------------------------------------------------------- default NLMS schedule
@pytest.mark.equivalence("LMSRestorer")
def test_default_fit_converges_to_the_exact_solution(backend):
    deg, clean = pairs(n=24, noise=0.003, seed=3)
    test_d, test_c = pairs(n=4, noise=0.003, seed=40)
    exact = LMSRestorer(solver="exact", backend=backend).fit(deg, clean)
    epochs = []
    model = LMSRestorer(backend=backend).fit(deg, clean, progress=lambda e, c: epochs.append((e, c)))
    assert model.converged_ and 1 < model.n_epochs_ < DEFAULT_MAX_EPOCHS
    assert [e for e, _ in epochs] == list(range(1, model.n_epochs_ + 1))
    assert epochs[0][1] is None and epochs[-1][1] < DEFAULT_TOL
    assert all(c >= DEFAULT_TOL for _, c in epochs[1:-1])  # it stopped at the first one below
    assert len(model.loss_history_) == model.n_epochs_

    def psnr(out):
        return 10 * np.log10(1.0 / mse(np.clip(out, 0, 1), test_c))

    gap = psnr(model.restore(test_d)) - psnr(exact.restore(test_d))
    # held-out scenes: the converged NLMS filter restores as well as the exact one, whereas a
    # constant step's noise floor keeps 10 epochs measurably below it
    assert abs(gap) < 0.05, gap
    constant = LMSRestorer(backend=backend).fit(deg, clean, epochs=10)
    assert psnr(constant.restore(test_d)) < psnr(exact.restore(test_d)) - 0.05


def test_explicit_epochs_run_exactly_and_at_constant_step():
    deg, clean = pairs(n=12)
    model = LMSRestorer(batch_size=4, tol=1.0).fit(deg, clean, epochs=3)
    assert model.n_epochs_ == 3 and len(model.loss_history_) == 3  # tol does not stop it
    # constant step: the engine's epoch at decay=0 is today's update (mu throughout)
    from gpuenhance._cpu.restore import nlms_epoch

    G, F = rfft(deg).astype(np.complex64), rfft(clean).astype(np.complex64)
    rng = np.random.default_rng(0)
    Wm = P = None
    for _ in range(3):
        Wm, P, _ = nlms_epoch(G, F, Wm, P, rng.permutation(12).astype(np.int32), (H, W), 4,
                              0.5, 0.0, 1e-8, 0.9, -1)
    np.testing.assert_allclose(model.weights_, Wm, **tol("lms_engines", "complex64"))


def test_max_epochs_caps_the_default_fit():
    deg, clean = pairs(n=12)
    model = LMSRestorer(batch_size=2, tol=1e-12, max_epochs=3).fit(deg, clean)
    assert model.n_epochs_ == 3 and not model.converged_


# ---------------------------------------------------------------------------- mixed sizes
@pytest.mark.equivalence("LMSRestorer")
def test_nlms_support_on_mixed_sizes_reaches_the_exact_kernel(backend):
    r = 1
    big_d, big_c = pairs(n=6, noise=0.01, seed=0)
    small_c = scenes(6, 20, 27, seed=4)
    small_d = degrade.add_gaussian_noise(degrade.turbulence(small_c, degrade.TURBULENCE_SEVERE),
                                         0.01, seed=5)
    data = ([big_d, small_d], [big_c, small_c])
    exact = LMSRestorer(support=r, solver="exact", backend=backend).fit(*data)
    model = LMSRestorer(support=r, batch_size=3, backend=backend).fit(*data)
    assert model.converged_

    def train_mse(m):
        return (mse(m.restore(big_d), big_c) * big_d[..., 0].size
                + mse(m.restore(small_d), small_c) * small_d[..., 0].size) / (
                    big_d[..., 0].size + small_d[..., 0].size)

    # Each size's steps are preconditioned by its own bin power, so the visits settle near,
    # not on, the pixel-weighted optimum: measured 1.4 % above it in the limit (tol -> 0),
    # 2.0 % at the default tol; a single size converges onto it (test_restore.py).
    best = train_mse(exact)
    assert best <= train_mse(model) <= 1.03 * best


def test_mixed_sizes_without_support_name_support():
    a_d, a_c = pairs(n=2)
    b_c = scenes(2, 20, 27)
    with pytest.raises(ValueError, match="support"):
        LMSRestorer().fit([a_d, b_c], [a_c, b_c])
    with pytest.raises(ValueError, match="support"):
        LMSRestorer(solver="exact").fit([a_d, b_c], [a_c, b_c])
    # a list of one size is fine without support: the same as the stacked arrays
    listed = LMSRestorer(solver="exact").fit([a_d[0], a_d[1]], [a_c[0], a_c[1]])
    stacked = LMSRestorer(solver="exact").fit(a_d, a_c)
    np.testing.assert_allclose(listed.weights_, stacked.weights_, **tol("lms_wiener", "complex64"))


# ------------------------------------------------------------------------------ persistence
def test_save_load_keeps_solver_state_and_metadata(tmp_path):
    deg, clean = pairs(n=4)
    model = LMSRestorer(solver="exact", tol=1e-3, max_epochs=7, support=1).fit(deg, clean)
    model.metadata["validation"] = {"psnr_degraded": 20.5, "psnr_restored": 25.25}
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = LMSRestorer.load(path)
    assert (loaded.solver, loaded.tol, loaded.max_epochs) == ("exact", 1e-3, 7)
    assert (loaded.n_epochs_, loaded.converged_) == (1, True)
    assert loaded.metadata == model.metadata
    np.testing.assert_array_equal(loaded.kernel_, model.kernel_)


def test_load_reads_format_1(tmp_path):
    deg, clean = pairs(n=3)
    model = LMSRestorer().fit(deg, clean, epochs=2)
    path = tmp_path / "old.npz"
    np.savez(path, version=np.int64(1), mu=np.float64(0.5), leak=np.float64(0.0),
             eps=np.float64(1e-8), support=np.int64(-1), batch_size=np.int64(8),
             beta=np.float64(0.9), shape=np.asarray(model.shape_, np.int64), W=model.weights_,
             P=model._P, kernel=np.zeros((0, 0, 0), np.float32),
             loss_history=np.asarray(model.loss_history_))
    loaded = LMSRestorer.load(path)
    assert loaded.solver == "nlms" and loaded.metadata == {} and loaded.n_epochs_ == 2
    np.testing.assert_array_equal(loaded.restore(deg), model.restore(deg))


# ---------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("backend_name", ["cpu", "cuda-emulated"])
def test_new_argument_errors(backend_name):
    deg, clean = pairs(n=2)
    for kwargs, name in [(dict(solver="lsq"), "solver"), (dict(tol=0.0), "tol"),
                         (dict(max_epochs=0), "max_epochs")]:
        with pytest.raises(ValueError, match=name):
            LMSRestorer(backend=backend_name, **kwargs)
    model = LMSRestorer(support=1, backend=backend_name)
    with pytest.raises(ValueError, match="clean"):
        model.fit([deg[0], deg[1]], [clean[0]])
    with pytest.raises(TypeError, match="lists"):
        model.fit([deg[0]], clean[0])
    with pytest.raises(ValueError, match="degraded"):
        model.fit([], [])
    with pytest.raises(ValueError, match=r"degraded\[1\].*channel"):
        model.fit([deg[0], np.zeros((20, 20, 3), np.float32)],
                  [clean[0], np.zeros((20, 20, 3), np.float32)])
    with pytest.raises(TypeError, match=r"degraded\[1\]"):
        model.fit([deg[0], deg[1].astype(np.int32)], [clean[0], clean[1]])
    with pytest.raises(ValueError, match="support"):
        LMSRestorer(support=5, backend=backend_name).fit([deg[0], deg[0, :9, :9]],
                                                         [clean[0], clean[0, :9, :9]])
    with pytest.raises(TypeError, match="progress"):
        model.fit(deg, clean, progress=3)
    with pytest.raises(TypeError, match="degraded"):
        model.partial_fit([deg[0]], [clean[0]])
