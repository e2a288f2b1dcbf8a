"""Bad input raises the same exception, with the same message, on every engine.

Validation lives in the public layer and reads metadata only, so every engine must refuse the
same call in the same words before any work; this test holds each engine to the CPU's answer.
"""

import numpy as np
import pytest

import gpuenhance as ge

IMG = np.zeros((12, 14, 3), np.uint8)
GRAY = np.zeros((12, 14), np.float32)

BAD_CALLS = {
    "median: even ksize": ("ksize", lambda b: ge.median_filter(IMG, 4, backend=b)),
    "median: ksize 0": ("ksize", lambda b: ge.median_filter(IMG, 0, backend=b)),
    "median: float ksize": ("ksize", lambda b: ge.median_filter(IMG, 3.0, backend=b)),
    "median: border": ("border", lambda b: ge.median_filter(IMG, 3, border="wrap", backend=b)),
    "median: ndim": ("img", lambda b: ge.median_filter(np.zeros(5, np.uint8), 3, backend=b)),
    "median: dtype": ("img", lambda b: ge.median_filter(IMG.astype(np.int16), 3, backend=b)),
    "median: list": ("img", lambda b: ge.median_filter([[1, 2], [3, 4]], 3, backend=b)),
    "gaussian: negative sigma": ("sigma", lambda b: ge.gaussian_filter(IMG, 3, -1.0, backend=b)),
    "gaussian: ksize and sigma 0": ("ksize", lambda b: ge.gaussian_filter(IMG, 0, 0.0, backend=b)),
    "gaussian: even ksize": ("ksize", lambda b: ge.gaussian_filter(IMG, 4, backend=b)),
    "lut: wrong length": ("lut", lambda b: ge.apply_lut(IMG, np.zeros(255, np.uint8), backend=b)),
    "lut: wrong dtype": ("lut", lambda b: ge.apply_lut(IMG, np.zeros(256, np.uint16), backend=b)),
    "lut: channels": ("lut", lambda b: ge.apply_lut(IMG, np.zeros((256, 2), np.uint8), backend=b)),
    "gamma: zero": ("gamma", lambda b: ge.gamma_correct(IMG, 0.0, backend=b)),
    "gamma: negative gain": ("gain", lambda b: ge.gamma_correct(IMG, 1.0, gain=-1.0, backend=b)),
    "lms: shapes differ": ("clean", lambda b: ge.LMSRestorer(backend=b).fit(GRAY, GRAY[:-1])),
    "lms: mu": ("mu", lambda b: ge.LMSRestorer(mu=0.0, backend=b)),
    "lms: restore before fit": ("fit", lambda b: ge.LMSRestorer(backend=b).restore(GRAY)),
    "roi: outside": ("roi", lambda b: ge.enhance_roi(GRAY, (10, 10, 8, 8), patch=4, backend=b)),
    "roi: smaller than patch": ("roi", lambda b: ge.enhance_roi(GRAY, (0, 0, 4, 4), patch=8, backend=b)),
    "roi: even ksize": ("ksize", lambda b: ge.enhance_roi(GRAY, (0, 0, 8, 8), ksize=2, patch=4, backend=b)),
}


def _outcome(call, backend):
    with pytest.raises((TypeError, ValueError)) as info:
        call(backend)
    return type(info.value), str(info.value)


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_every_engine_refuses_bad_input_like_the_cpu(case, backend):
    argument, call = BAD_CALLS[case]
    expected = _outcome(call, "cpu")
    assert argument in expected[1], f"the message does not name {argument!r}: {expected[1]}"
    assert _outcome(call, backend) == expected
