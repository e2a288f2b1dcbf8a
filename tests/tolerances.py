"""The numerical contract as one table (ARCHITECTURE.md, "What keeps the engines honest").
A test never loosens one to pass.

Keys are (op, dtype name). ``atol`` is in the dtype's units, ``rtol`` relative.
"""

TOL = {
    # exact everywhere
    ("median_filter", "uint8"): dict(atol=0, rtol=0),
    ("median_filter", "uint16"): dict(atol=0, rtol=0),
    ("median_filter", "float32"): dict(atol=0, rtol=0),
    ("median_filter", "float64"): dict(atol=0, rtol=0),
    ("apply_lut", "uint8"): dict(atol=0, rtol=0),
    ("apply_lut", "uint16"): dict(atol=0, rtol=0),
    # OpenCV's fixed-point path for integers: within one level
    ("gaussian_filter", "uint8"): dict(atol=1, rtol=0),
    ("gaussian_filter", "uint16"): dict(atol=1, rtol=0),
    ("gaussian_filter", "float32"): dict(atol=1e-6, rtol=1e-5),
    ("gaussian_filter", "float64"): dict(atol=1e-12, rtol=1e-10),
    # gamma: integers go through a LUT (exact), floats computed directly
    ("gamma_correct", "uint8"): dict(atol=0, rtol=0),
    ("gamma_correct", "uint16"): dict(atol=0, rtol=0),
    ("gamma_correct", "float32"): dict(atol=1e-7, rtol=1e-6),
    # LMS: batch NLMS equals the empirical Wiener filter; engines agree
    ("lms_wiener", "complex64"): dict(atol=0, rtol=1e-6),
    ("lms_engines", "complex64"): dict(atol=1e-6, rtol=1e-4),
    # float32 FFT filtering (restore, degrade) against a float64 oracle
    ("fft_filter", "float32"): dict(atol=1e-6, rtol=1e-5),
    # metrics against scikit-image
    ("ssim", "float64"): dict(atol=1e-4, rtol=0),
    ("psnr", "float64"): dict(atol=0, rtol=1e-6),
    # patch SGD: parameters agree across engines
    ("enhance_roi", "params"): dict(atol=1e-5, rtol=1e-4),
}


def tol(op: str, dtype) -> dict:
    """The tolerance of *op* for *dtype* (a dtype or its name)."""
    import numpy as np

    name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    return TOL[(op, name)]

# histogram equalisation and CLAHE: exact against OpenCV (and its rule on 65536 bins)
TOL.update({
    ("equalize_hist", "uint8"): dict(atol=0, rtol=0),
    ("equalize_hist", "uint16"): dict(atol=0, rtol=0),
    ("clahe", "uint8"): dict(atol=0, rtol=0),
    ("clahe", "uint16"): dict(atol=0, rtol=0),
})

# white balance, auto-contrast, tone curves: integers exact (tables), float32 direct
TOL.update({
    (op, dt): dict(atol=0, rtol=0)
    for op in ("white_balance", "auto_contrast", "tone_curve") for dt in ("uint8", "uint16")
})
TOL.update({
    (op, "float32"): dict(atol=1e-7, rtol=1e-6)
    for op in ("white_balance", "auto_contrast", "tone_curve")
})

# unsharp mask: float32 math against the float64 formula
TOL.update({
    ("unsharp_mask", "uint8"): dict(atol=2, rtol=0),
    ("unsharp_mask", "uint16"): dict(atol=2, rtol=0),
    ("unsharp_mask", "float32"): dict(atol=1e-6, rtol=1e-5),
})

# bilateral filter against cv2.bilateralFilter (float colour weights: OpenCV's table vs expf)
TOL.update({
    ("bilateral_filter", "uint8"): dict(atol=1, rtol=0),
    ("bilateral_filter", "float32"): dict(atol=1e-6, rtol=1e-3),
})
