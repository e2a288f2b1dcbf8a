"""LMSRestorer: the fixed point is the empirical Wiener filter, support projection, persistence,
errors, and CPU / CUDA engine equivalence. Oracles: the Wiener closed form and image-domain
quantities computed independently in float64 NumPy."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from tolerances import tol

from gpuenhance import LMSRestorer, degrade
from gpuenhance.restore import BETA, NotFittedError

H, W = 32, 48


def _host(x):
    return x.get() if hasattr(x, "get") else np.asarray(x)


def scenes(n, h=H, w=W, c=1, seed=0):
    """Smooth random scenes in [0, 1] (cubic upsampling of coarse noise), float32 (n, h, w, c)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, h, w, c), np.float32)
    for i in range(n):
        coarse = rng.random((h // 4 + 2, w // 4 + 2, c)).astype(np.float32)
        fine = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, c)
        out[i] = np.clip(fine, 0.0, 1.0)
    return out


def pairs(n=12, c=1, noise=0.01, w=W, seed=0):
    clean = scenes(n, w=w, c=c, seed=seed)
    blurred = degrade.turbulence(clean, degrade.TURBULENCE_SEVERE)
    return degrade.add_gaussian_noise(blurred, noise, seed=seed + 1), clean


def wiener64(G, F):
    """Empirical Wiener filter sum conj(G) F / sum |G|^2 over the pairs, in float64."""
    G = G.astype(np.complex128)
    F = F.astype(np.complex128)
    return (np.conj(G) * F).sum(axis=0) / (np.abs(G) ** 2).sum(axis=0)


def rfft(stack, backend="cpu"):
    """The spectra the engine computes (the FFT itself is not under test): the CPU engine's
    scipy.fft where SciPy is importable, NumPy's FFT on the other engines' host oracle."""
    from gpuenhance._cpu import restore as cpu_restore

    if backend == "cpu" and cpu_restore._scipy_fft is not None:
        return cpu_restore._scipy_fft.rfft2(stack, axes=(1, 2), norm="ortho")
    return np.fft.rfft2(stack, axes=(1, 2), norm="ortho")


def rel_norm(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ----------------------------------------------------------------------------- fixed point
def assert_wiener(W, G, F, rtol):
    """|W - Wiener| <= rtol * sum|G||F| / sum|G|^2 in every bin.

    The scale is the error bound of a float sum (relative to the sum of the magnitudes of its
    terms); it equals |Wiener| wherever the pairs agree in phase and only exceeds it in bins
    where sum conj(G) F cancels (noise), which float32 cannot resolve to 1e-6 of the result.
    """
    G = G.astype(np.complex128)
    F = F.astype(np.complex128)
    expected = wiener64(G, F)
    scale = (np.abs(G) * np.abs(F)).sum(axis=0) / (np.abs(G) ** 2).sum(axis=0)
    err = np.abs(W.astype(np.complex128) - expected)
    worst = float((err / scale).max())
    assert worst <= rtol, f"max error {worst:.3g} of the sum's scale (rtol {rtol})"


@pytest.mark.parametrize("channels, noise", [(1, 0.0), (1, 0.01), (3, 0.01)])
def test_full_batch_nlms_equals_empirical_wiener(channels, noise):
    deg, clean = pairs(c=channels, noise=noise)
    model = LMSRestorer(mu=1.0, eps=1e-20, batch_size=len(deg)).fit(deg, clean, epochs=3)
    assert model.weights_.dtype == np.complex64
    assert model.weights_.shape == (H, W // 2 + 1, channels)
    # The oracle sees the same complex64 spectra (the FFT is not under test here), upcast:
    # the Wiener sums over pairs and the division run in float64.
    rtol = tol("lms_wiener", "complex64")["rtol"]
    assert_wiener(model.weights_, rfft(deg), rfft(clean), rtol)
    if noise == 0.0:  # phases agree: plain elementwise relative error
        expected = wiener64(rfft(deg), rfft(clean))
        np.testing.assert_allclose(model.weights_, expected, **tol("lms_wiener", "complex64"))


def test_stochastic_nlms_lands_near_wiener():
    deg, clean = pairs(noise=0.001)
    expected = wiener64(rfft(deg.astype(np.float64)), rfft(clean.astype(np.float64)))
    model = LMSRestorer(mu=0.5, batch_size=3).fit(deg, clean, epochs=10)
    assert rel_norm(model.weights_, expected) < 0.05
    # and it is a genuinely stochastic iterate, not the closed form
    assert rel_norm(model.weights_, expected) > 1e-4


def test_partial_fit_full_batch_is_wiener_and_keeps_state():
    deg, clean = pairs()
    model = LMSRestorer(mu=1.0, eps=1e-20, batch_size=len(deg)).partial_fit(deg, clean)
    rtol = tol("lms_wiener", "complex64")["rtol"]
    assert_wiener(model.weights_, rfft(deg), rfft(clean), rtol)
    model.partial_fit(deg, clean)  # already at the fixed point: stays there
    assert_wiener(model.weights_, rfft(deg), rfft(clean), rtol)
    assert len(model.loss_history_) == 2


def test_leak_shrinks_weights_by_closed_form():
    deg, clean = pairs(noise=0.0)
    n = len(deg)
    G, F = rfft(deg), rfft(clean)
    p = (np.abs(G.astype(np.complex128)) ** 2).mean(axis=0)
    leak = 0.5 * float(p.min())
    model = LMSRestorer(mu=1.0, eps=1e-20, leak=leak, batch_size=n).fit(deg, clean, epochs=2)
    wiener = wiener64(G, F)
    # step 1 (W = 0): the leak term vanishes, W = Wiener; step 2: grad = 0 at the Wiener point,
    # P = beta p + (1 - beta) p = p, so W = Wiener * (1 - leak / p).
    expected = wiener * (1.0 - leak / p)
    np.testing.assert_allclose(model.weights_, expected, **tol("lms_wiener", "complex64"))
    assert np.all(np.abs(model.weights_) <= np.abs(wiener) * (1 + 1e-6))
    assert np.linalg.norm(model.weights_) < np.linalg.norm(wiener)
    weakest = np.unravel_index(np.argmin(p), p.shape)
    np.testing.assert_allclose(
        abs(model.weights_[weakest]), 0.5 * abs(wiener[weakest]), **tol("lms_wiener", "complex64")
    )


def test_first_step_P_is_the_batch_power_then_running_average():
    deg, clean = pairs(n=6)
    model = LMSRestorer(mu=0.5, batch_size=3).partial_fit(deg, clean)
    G = rfft(deg).astype(np.complex128)
    p1 = (np.abs(G[:3]) ** 2).mean(axis=0)
    p2 = (np.abs(G[3:]) ** 2).mean(axis=0)
    expected = BETA * p1 + (1 - BETA) * p2
    np.testing.assert_allclose(model._P, expected, **tol("lms_engines", "complex64"))


# ------------------------------------------------------------------------------- the loss
@pytest.mark.parametrize("width", [W, W - 1])  # even and odd widths (Parseval weights)
def test_loss_is_image_domain_mse(width):
    deg, clean = pairs(n=5, w=width)
    model = LMSRestorer(mu=1.0, eps=1e-20, batch_size=5).fit(deg, clean, epochs=2)
    d64, c64 = deg.astype(np.float64), clean.astype(np.float64)
    # epoch 1 starts from W = 0: the error is the clean image itself
    first = np.mean(c64**2)
    # epoch 2 starts at the Wiener filter: the error is the Wiener restoration's
    wiener = wiener64(rfft(deg), rfft(clean))
    restored = np.fft.irfft2(wiener[None] * rfft(d64), s=(H, width), axes=(1, 2), norm="ortho")
    second = np.mean((restored - c64) ** 2)
    np.testing.assert_allclose(
        model.loss_history_, [first, second], **tol("lms_engines", "complex64")
    )


def test_seeded_shuffle_is_reproducible():
    deg, clean = pairs(n=6)
    a = LMSRestorer(batch_size=2).fit(deg, clean, epochs=3, seed=7)
    b = LMSRestorer(batch_size=2).fit(deg, clean, epochs=3, seed=7)
    c = LMSRestorer(batch_size=2).fit(deg, clean, epochs=3, seed=8)
    np.testing.assert_array_equal(a.weights_, b.weights_)
    assert not np.array_equal(a.weights_, c.weights_)
    assert len(a.loss_history_) == 3 and a.loss_history_[-1] < a.loss_history_[0]


# -------------------------------------------------------------------------------- support
def circular_convolve(img, taps):
    """sum_{dy,dx} taps[r+dy, r+dx] * img[y-dy, x-dx] (wrap-around), float64."""
    r = (taps.shape[0] - 1) // 2
    out = np.zeros(img.shape, np.float64)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out += taps[r + dy, r + dx] * np.roll(img, (dy, dx), axis=(0, 1))
    return out


def test_support_keeps_taps_in_window_and_restores_other_sizes():
    r = 2
    deg, clean = pairs(c=2)
    model = LMSRestorer(mu=0.5, support=r, batch_size=4).fit(deg, clean, epochs=3)
    spatial = np.fft.irfft2(model.weights_.astype(np.complex128), s=(H, W), axes=(0, 1))
    inside = np.zeros((H, W), bool)
    inside[np.ix_(np.r_[0 : r + 1, H - r : H], np.r_[0 : r + 1, W - r : W])] = True
    scale = np.abs(spatial).max()
    assert np.abs(spatial[~inside]).max() <= 1e-6 * scale
    taps = model.kernel_
    assert taps.shape == (2 * r + 1, 2 * r + 1, 2) and taps.dtype == np.float32
    offsets = np.arange(-r, r + 1)
    np.testing.assert_allclose(taps, spatial[np.ix_(offsets % H, offsets % W)], atol=1e-6 * scale)

    other = scenes(2, 20, 27, c=2, seed=5)
    out = model.restore(other)
    assert out.shape == other.shape and out.dtype == np.float32
    taps64, other64 = taps.astype(np.float64), other.astype(np.float64)
    expected = np.stack(
        [
            np.stack([circular_convolve(other64[n, :, :, c], taps64[:, :, c]) for c in range(2)], -1)
            for n in range(2)
        ]
    )
    np.testing.assert_allclose(out, expected, **tol("fft_filter", "float32"))


def least_squares_kernel_mse(deg, clean, r):
    """Training MSE of the best (2r+1)² circular kernel: normal equations in float64 (one channel)."""
    G = np.fft.fft2(deg[..., 0].astype(np.float64))
    F = np.fft.fft2(clean[..., 0].astype(np.float64))
    h, w = G.shape[1:]
    p = np.fft.ifft2((np.abs(G) ** 2).sum(axis=0)).real  # autocorrelation of the degraded images
    x = np.fft.ifft2((np.conj(G) * F).sum(axis=0)).real  # cross-correlation with the clean ones
    o = np.arange(-r, r + 1)
    oy, ox = np.repeat(o, o.size), np.tile(o, o.size)
    A = p[(oy[:, None] - oy[None, :]) % h, (ox[:, None] - ox[None, :]) % w]
    k = np.linalg.solve(A, x[oy % h, ox % w])
    K = np.zeros((h, w))
    K[oy % h, ox % w] = k
    out = np.fft.ifft2(G * np.fft.fft2(K)).real
    return float(np.mean((out - clean[..., 0]) ** 2))


@pytest.mark.parametrize("mu, epochs", [(1.0, 2), (0.5, 24)])
def test_support_fit_reaches_least_squares_kernel(mu, epochs):
    # "update, then constrain" must converge to the least-squares kernel of the pairs (the
    # constrained fixed point), in one full-batch step for mu = 1 and geometrically otherwise.
    r = 2
    deg, clean = pairs(noise=0.0)
    model = LMSRestorer(mu=mu, eps=1e-20, support=r, batch_size=len(deg)).fit(deg, clean, epochs=epochs)
    got = float(np.mean((model.restore(deg).astype(np.float64) - clean[..., 0:1]) ** 2))
    best = least_squares_kernel_mse(deg, clean, r)
    assert got <= 1.05 * best, f"support fit MSE {got:.3g}, least-squares kernel {best:.3g}"


def test_support_too_large_and_small_restore_raise():
    deg, clean = pairs(n=2)
    with pytest.raises(ValueError, match="support"):
        LMSRestorer(support=16).fit(deg, clean, epochs=1)  # 33 > H = 32
    model = LMSRestorer(support=3).fit(deg, clean, epochs=1)
    with pytest.raises(ValueError, match="degraded"):
        model.restore(np.zeros((6, 40, 1), np.float32))


# ------------------------------------------------------------------------ dtypes, layouts
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_identity_model_returns_input_in_its_dtype(dtype):
    rng = np.random.default_rng(3)
    if np.dtype(dtype).kind == "u":
        imgs = rng.integers(0, np.iinfo(dtype).max, (4, 17, 23), endpoint=True).astype(dtype)
    else:
        imgs = rng.random((4, 17, 23)).astype(dtype)
    model = LMSRestorer(mu=1.0, batch_size=4).fit(imgs[..., None], imgs[..., None], epochs=2)
    out = model.restore(imgs[0])  # (H, W) single image of the package image model
    assert out.dtype == dtype and out.shape == (17, 23)
    if np.dtype(dtype).kind == "u":
        np.testing.assert_array_equal(out, imgs[0])
    else:
        np.testing.assert_allclose(out, imgs[0], atol=1e-6)


def test_integer_output_is_rounded_and_saturated():
    clean = scenes(3, 17, 23)
    model = LMSRestorer(mu=1.0, eps=1e-20, batch_size=3).fit(clean, np.float32(1.6) * clean, epochs=2)
    img = (scenes(1, 17, 23, seed=9)[0, :, :, 0] * 255).astype(np.uint8)
    out = model.restore(img)
    expected = np.clip(np.rint(1.6 * img.astype(np.float64)), 0, 255)
    assert out.dtype == np.uint8
    assert np.abs(out.astype(np.int64) - expected).max() <= 1  # float32 rounding at .5 only
    assert (out == 255).any()


def test_restoring_turbulence_raises_psnr():
    clean = (scenes(14, seed=2) * 255).round().astype(np.uint8)
    deg = degrade.add_gaussian_noise(degrade.turbulence(clean, degrade.TURBULENCE_SEVERE), 0.002, seed=3)
    model = LMSRestorer(mu=0.5, batch_size=4).fit(deg[:12], clean[:12], epochs=8)
    out = model.restore(deg[12:])

    def psnr(a, b):
        return 10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))

    assert out.dtype == np.uint8
    assert psnr(clean[12:], out) > psnr(clean[12:], deg[12:]) + 6.0


# ---------------------------------------------------------------------------- persistence
def test_save_load_round_trip(tmp_path):
    deg, clean = pairs(n=6, c=2)
    model = LMSRestorer(mu=0.7, leak=1e-4, eps=1e-7, support=2, batch_size=3).fit(deg, clean, epochs=2)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = LMSRestorer.load(path)
    for name in ("mu", "leak", "eps", "support", "batch_size"):
        assert getattr(loaded, name) == getattr(model, name)
    assert loaded.shape_ == model.shape_ == (H, W, 2)
    np.testing.assert_array_equal(loaded.weights_, model.weights_)
    np.testing.assert_array_equal(loaded.kernel_, model.kernel_)
    np.testing.assert_array_equal(loaded._P, model._P)
    assert loaded.loss_history_ == model.loss_history_
    np.testing.assert_array_equal(loaded.restore(deg[:2]), model.restore(deg[:2]))
    # state continues identically
    model.partial_fit(deg, clean)
    loaded.partial_fit(deg, clean)
    np.testing.assert_array_equal(loaded.weights_, model.weights_)
    with np.load(path, allow_pickle=False) as data:
        assert {"W", "P", "shape", "kernel", "mu"} <= set(data.files)


# --------------------------------------------------------------------------------- errors
def test_argument_errors():
    deg, clean = pairs(n=2)
    with pytest.raises(ValueError, match="clean"):
        LMSRestorer().fit(deg, clean[:, :, :-1])
    for kwargs, name in [
        (dict(mu=0.0), "mu"), (dict(mu=2.5), "mu"), (dict(leak=-1e-3), "leak"),
        (dict(eps=0.0), "eps"), (dict(support=-1), "support"), (dict(batch_size=0), "batch_size"),
    ]:
        with pytest.raises(ValueError, match=name):
            LMSRestorer(**kwargs)
    with pytest.raises(ValueError, match="epochs"):
        LMSRestorer().fit(deg, clean, epochs=0)
    with pytest.raises(TypeError, match="degraded"):
        LMSRestorer().fit(deg.astype(np.int32), clean)
    model = LMSRestorer()
    with pytest.raises(NotFittedError):
        model.restore(deg)
    assert issubclass(NotFittedError, ValueError)
    model.fit(deg, clean, epochs=1)
    with pytest.raises(ValueError, match="degraded"):
        model.restore(np.zeros((2, H + 1, W, 1), np.float32))
    with pytest.raises(ValueError, match="channel"):
        model.restore(np.zeros((H, W, 3), np.float32))
    with pytest.raises(ValueError, match="degraded"):
        model.partial_fit(np.zeros((1, H, W - 2, 1), np.float32), np.zeros((1, H, W - 2, 1), np.float32))


# ---------------------------------------------------------------------------- equivalence
@pytest.mark.equivalence("LMSRestorer")
@pytest.mark.parametrize("support", [None, 2])
def test_engines_agree(backend, support):
    rng = np.random.default_rng(11)
    clean = rng.random((6, 17, 23, 2)).astype(np.float32)
    deg = degrade.add_gaussian_noise(degrade.turbulence(clean, degrade.TURBULENCE_MILD), 0.01, seed=1)
    deg8 = (np.clip(deg, 0, 1) * 255).round().astype(np.uint8)
    kw = dict(mu=0.5, leak=1e-4, support=support, batch_size=4)
    ref = LMSRestorer(**kw, backend="cpu").fit(deg8, clean, epochs=2)
    got = LMSRestorer(**kw, backend=backend).fit(deg8, clean, epochs=2)
    t = tol("lms_engines", "complex64")
    np.testing.assert_allclose(_host(got.weights_), ref.weights_, **t)
    np.testing.assert_allclose(_host(got._P), ref._P, **t)
    np.testing.assert_allclose(got.loss_history_, ref.loss_history_, **t)
    got.partial_fit(deg8[:3], clean[:3])
    ref.partial_fit(deg8[:3], clean[:3])
    np.testing.assert_allclose(_host(got.weights_), ref.weights_, **t)
    out_ref = ref.restore(deg[:2])
    out = got.restore(deg[:2])
    assert type(out) is np.ndarray and out.dtype == np.float32
    np.testing.assert_allclose(out, out_ref, **t)
    out8 = got.restore(deg8[:2])
    assert np.abs(out8.astype(np.int64) - ref.restore(deg8[:2])).max() <= 1
    if support is not None:
        np.testing.assert_allclose(_host(got.kernel_), ref.kernel_, **t)
        small = deg[0, :11, :13]
        np.testing.assert_allclose(got.restore(small), ref.restore(small), **t)


def test_cpu_spectra_through_scipy_fft_or_numpy(monkeypatch):
    """The CPU engine's batch FFTs: scipy.fft (same values on any worker count), else NumPy."""
    from gpuenhance import _threads
    from gpuenhance._cpu import restore as cpu_restore

    stack = scenes(5, c=3)
    if cpu_restore._scipy_fft is not None:
        import scipy.fft

        ref = scipy.fft.rfft2(stack, axes=(1, 2), norm="ortho", workers=1)
        with _threads.limit_threads(2):
            np.testing.assert_array_equal(cpu_restore.spectra(stack), ref)
    monkeypatch.setattr(cpu_restore, "_scipy_fft", None)
    ref = np.fft.rfft2(stack, axes=(1, 2), norm="ortho").astype(np.complex64)
    np.testing.assert_array_equal(cpu_restore.spectra(stack), ref)
    taps = np.eye(H, W, dtype=np.float32)[:, :, None]
    wts = np.fft.rfft2(taps, axes=(0, 1)).astype(np.complex64)
    ref = np.fft.irfft2(ref * wts[None], s=(H, W), axes=(1, 2), norm="ortho").astype(np.float32)
    np.testing.assert_array_equal(cpu_restore.apply(wts, stack), ref)
