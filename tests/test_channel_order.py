"""Pipelines that treat channels alike and alone run on OpenCV's BGR order in the file runner
(no channel swaps): the property must hold exactly, and outputs must not change."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from gpuenhance import Pipeline
from gpuenhance.batch.runner import process_files
from gpuenhance.io import write_image

ORDER_FREE = [
    "median:ksize=3", "median:ksize=7", "gaussian:sigma=1.3", "gamma:gamma=0.7:gain=1.1",
    "unsharp:sigma=1.2:amount=0.8:threshold=3", "tone_curve:points=0,0;0.4,0.6;1,1",
    "median:ksize=3 | gaussian:sigma=1.2 | gamma:gamma=0.8",
]
NOT_FREE = ["white_balance", "equalize", "clahe", "auto_contrast",
            "bilateral:d=5:sigma_color=20:sigma_space=3",
            "median:ksize=3 | white_balance:method=gains:gains=1,1.2,0.9"]


@pytest.mark.parametrize("spec", ORDER_FREE)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_order_free_pipelines_commute_with_a_channel_swap(backend, rng, spec, dtype):
    pipe = Pipeline(spec)
    if not pipe.channel_order_free(dtype):  # float Gaussians: OpenCV rounds row tails apart
        assert np.dtype(dtype).kind == "f" and ("gaussian" in spec or "unsharp" in spec)
        return
    if np.dtype(dtype).kind == "f":
        img = rng.random((2, 19, 23, 3), dtype=np.float32)
    else:
        img = rng.integers(0, np.iinfo(dtype).max + 1, (2, 19, 23, 3)).astype(dtype)
    swapped = np.ascontiguousarray(img[..., ::-1])
    np.testing.assert_array_equal(pipe(swapped, backend=backend)[..., ::-1],
                                  pipe(img, backend=backend))


@pytest.mark.parametrize("spec", NOT_FREE)
def test_channel_mixing_pipelines_are_not_order_free(spec):
    assert not Pipeline(spec).channel_order_free(np.uint8)


def test_the_runner_skips_the_swaps_and_writes_the_same_bytes(tmp_path, rng, monkeypatch):
    for i in range(3):
        write_image(tmp_path / "in" / f"{i}.png", rng.integers(0, 256, (16, 20, 3), np.uint8))
        write_image(tmp_path / "in" / f"{i}.jpg", rng.integers(0, 256, (16, 20, 3), np.uint8))
    pipe = Pipeline(ORDER_FREE[-1])
    inputs = sorted((tmp_path / "in").iterdir())
    pairs = lambda out: [(p, out / p.name) for p in inputs]  # noqa: E731
    swaps = []
    real = cv2.cvtColor
    monkeypatch.setattr(cv2, "cvtColor", lambda img, code: (swaps.append(code), real(img, code))[1])
    assert all(r.error is None for r in process_files(pipe, pairs(tmp_path / "bgr"), engine="cpu"))
    assert swaps == []
    monkeypatch.setattr(Pipeline, "channel_order_free", lambda self, dtype: False)
    assert all(r.error is None for r in process_files(pipe, pairs(tmp_path / "rgb"), engine="cpu"))
    assert swaps  # the RGB path swaps on read and on write
    for p in sorted((tmp_path / "rgb").iterdir()):
        assert (tmp_path / "bgr" / p.name).read_bytes() == p.read_bytes(), p.name
