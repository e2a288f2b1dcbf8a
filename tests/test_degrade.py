"""Degradation models against closed forms and independent filters (SciPy, NumPy loops)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from tolerances import tol

from gpuenhance import degrade

F32 = tol("fft_filter", "float32")  # float32 FFT filtering vs a float64 oracle


# ------------------------------------------------------------------------------ OTFs
@pytest.mark.parametrize("shape", [(8, 8), (7, 9), (6, 5), (1, 4)])
@pytest.mark.parametrize("k", [degrade.TURBULENCE_SEVERE, degrade.TURBULENCE_MILD, degrade.TURBULENCE_LOW])
def test_turbulence_otf_matches_centred_gonzalez_woods(shape, k):
    h, w = shape
    Hf = degrade.turbulence_otf(shape, k)
    assert Hf.shape == shape
    assert Hf[0, 0] == 1.0
    # The textbook form on a centred spectrum, shifted back to FFT order.
    p, q = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    centred = np.exp(-k * ((p - h // 2) ** 2 + (q - w // 2) ** 2) ** (5.0 / 6.0))
    np.testing.assert_allclose(Hf, np.fft.ifftshift(centred), rtol=1e-15, atol=0)
    # symmetry H(u, v) = H(-u, -v)
    mirror = Hf[(-np.arange(h)) % h][:, (-np.arange(w)) % w]
    np.testing.assert_array_equal(Hf, mirror)


def test_turbulence_otf_known_value():
    Hf = degrade.turbulence_otf((16, 20), 0.0025)
    assert Hf[1, 2] == pytest.approx(np.exp(-0.0025 * 5 ** (5 / 6)), rel=1e-15)
    assert Hf[-3, 4] == pytest.approx(np.exp(-0.0025 * 25 ** (5 / 6)), rel=1e-15)
    assert Hf[8, 10] == pytest.approx(np.exp(-0.0025 * 164 ** (5 / 6)), rel=1e-15)  # Nyquist


def test_gaussian_blur_matches_scipy_wrap():
    img = np.random.default_rng(0).random((40, 57)).astype(np.float32)
    out = degrade.gaussian_blur(img, 1.5)
    expected = ndimage.gaussian_filter(img.astype(np.float64), 1.5, mode="wrap", truncate=7)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, **F32)
    assert degrade.gaussian_otf((40, 57), 1.5)[0, 0] == 1.0


@pytest.mark.parametrize("length, angle", [(1, 0), (3, 0), (4, 0), (5, 90), (7, 30), (6, 135), (9, -45)])
def test_motion_kernel_is_normalized_and_centred(length, angle):
    kern = degrade.motion_kernel(length, angle)
    size = 2 * (length // 2) + 1
    assert kern.shape == (size, size) and kern.dtype == np.float32
    assert float(kern.sum(dtype=np.float64)) == pytest.approx(1.0, abs=1e-6)
    assert (kern >= 0).all()
    np.testing.assert_allclose(kern, kern[::-1, ::-1], atol=1e-7)  # point-symmetric
    ys, xs = np.nonzero(kern > 1e-6)
    c = size // 2
    # the centre of mass is the centre
    assert np.average(ys, weights=kern[ys, xs]) == pytest.approx(c, abs=1e-5)
    assert np.average(xs, weights=kern[ys, xs]) == pytest.approx(c, abs=1e-5)


def test_motion_kernel_closed_forms():
    np.testing.assert_allclose(degrade.motion_kernel(5, 0)[2], np.full(5, 0.2), rtol=1e-7)
    np.testing.assert_allclose(degrade.motion_kernel(4, 0)[2], [0.125, 0.25, 0.25, 0.25, 0.125], rtol=1e-7)
    np.testing.assert_allclose(degrade.motion_kernel(3, 90)[:, 1], np.full(3, 1 / 3), atol=1e-7)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_motion_blur_matches_scipy_correlate(dtype):
    rng = np.random.default_rng(1)
    img = (rng.random((40, 57, 2)) * (255 if dtype == np.uint8 else 1)).astype(dtype)
    out = degrade.motion_blur(img, 7, 30)
    kern = degrade.motion_kernel(7, 30).astype(np.float64)
    expected = np.stack(
        [ndimage.correlate(img[..., c].astype(np.float64), kern, mode="mirror") for c in range(2)], -1
    )
    assert out.dtype == dtype and out.shape == img.shape
    if dtype == np.uint8:
        assert np.abs(out.astype(np.float64) - expected).max() <= 0.5 + 1e-3
    else:
        np.testing.assert_allclose(out, expected, **F32)


def test_motion_otf_is_circular_convolution_with_the_kernel():
    img = np.random.default_rng(2).random((24, 31))
    out = degrade.apply_otf(img, degrade.motion_otf(img.shape, 6, 20))
    expected = ndimage.convolve(img, degrade.motion_kernel(6, 20).astype(np.float64), mode="wrap")
    np.testing.assert_allclose(out, expected, atol=1e-12)


def test_turbulence_is_circular_convolution():
    img = np.random.default_rng(3).random((17, 23))
    k = degrade.TURBULENCE_SEVERE
    out = degrade.turbulence(img, k)
    # oracle: direct circular convolution with the kernel ifft2(H), in the image domain
    kernel = np.real(np.fft.ifft2(degrade.turbulence_otf(img.shape, k)))
    expected = np.zeros_like(img)
    for dy in range(17):
        for dx in range(23):
            expected += kernel[dy, dx] * np.roll(img, (dy, dx), axis=(0, 1))
    np.testing.assert_allclose(out, expected, atol=1e-12)


def test_turbulence_preserves_constant_images_and_dtype():
    img = np.full((2, 9, 12, 3), 1234, np.uint16)
    out = degrade.turbulence(img, degrade.TURBULENCE_SEVERE)
    assert out.dtype == np.uint16 and out.shape == img.shape
    np.testing.assert_array_equal(out, img)


# ----------------------------------------------------------------------------- noise
def test_gaussian_noise_statistics_and_seed():
    img = np.full((128, 128), 0.5, np.float32)
    noisy = degrade.add_gaussian_noise(img, 0.05, seed=4)
    diff = noisy.astype(np.float64) - 0.5
    n = diff.size
    assert abs(diff.mean()) < 4 * 0.05 / np.sqrt(n)
    assert abs(diff.std() - 0.05) < 4 * 0.05 / np.sqrt(2 * n)
    np.testing.assert_array_equal(noisy, degrade.add_gaussian_noise(img, 0.05, seed=4))
    assert not np.array_equal(noisy, degrade.add_gaussian_noise(img, 0.05, seed=5))


def test_gaussian_noise_integer_rounding_and_clipping():
    img = np.random.default_rng(6).integers(0, 256, (20, 30, 3)).astype(np.uint8)
    out = degrade.add_gaussian_noise(img, 0.2, seed=7)
    noise = np.random.default_rng(7).normal(0.0, 0.2, img.shape)
    expected = np.clip(np.rint((img / 255.0 + noise) * 255.0), 0, 255)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)
    assert (out == 0).any() and (out == 255).any()


# ---------------------------------------------------------------------------- Wiener
def test_wiener_k0_inverts_noise_free_turbulence():
    img = np.random.default_rng(8).random((2, 17, 24, 3))
    Hf = degrade.turbulence_otf(img.shape[1:3], degrade.TURBULENCE_SEVERE)
    restored = degrade.wiener_restore(degrade.apply_otf(img, Hf), Hf, 0.0)
    np.testing.assert_allclose(restored, img, atol=1e-10)


def test_wiener_k0_inverts_on_nonzero_bins_and_zeros_the_rest():
    rng = np.random.default_rng(9)
    img = rng.random((16, 21))
    Hf = degrade.turbulence_otf(img.shape, degrade.TURBULENCE_MILD)
    zero = np.zeros(img.shape, bool)
    zero[3, 5] = zero[-3, -5] = True  # a symmetric pair of dead bins keeps H Hermitian
    Hf[zero] = 0.0
    restored = degrade.wiener_restore(degrade.apply_otf(img, Hf), Hf, 0.0)
    spec, expected = np.fft.fft2(restored), np.fft.fft2(img)
    np.testing.assert_allclose(spec[~zero], expected[~zero], atol=1e-10)
    np.testing.assert_allclose(spec[zero], 0.0, atol=1e-10)


def test_wiener_with_k_is_the_closed_form_filter():
    rng = np.random.default_rng(10)
    deg = rng.random((12, 15))
    Hf = degrade.motion_otf(deg.shape, 5, 45)
    out = degrade.wiener_restore(deg, Hf, 0.01)
    expected = np.real(np.fft.ifft2(np.conj(Hf) / (np.abs(Hf) ** 2 + 0.01) * np.fft.fft2(deg)))
    np.testing.assert_allclose(out, expected, atol=1e-12)


def test_errors_name_the_argument():
    img = np.zeros((8, 8), np.float32)
    with pytest.raises(ValueError, match="otf"):
        degrade.apply_otf(img, np.ones((8, 9)))
    with pytest.raises(ValueError, match="H"):
        degrade.wiener_restore(img, np.ones((7, 8)), 0.1)
    with pytest.raises(ValueError, match="K"):
        degrade.wiener_restore(img, np.ones((8, 8)), -1.0)
    with pytest.raises(ValueError, match="sigma"):
        degrade.add_gaussian_noise(img, -0.1)
    with pytest.raises(ValueError, match="k"):
        degrade.turbulence_otf((8, 8), -1.0)
    with pytest.raises(ValueError, match="length"):
        degrade.motion_kernel(0, 0)
    with pytest.raises(ValueError, match="length"):
        degrade.motion_otf((4, 4), 9, 0)
    with pytest.raises(TypeError, match="img"):
        degrade.turbulence(np.zeros((8, 8), np.int32), 0.001)
