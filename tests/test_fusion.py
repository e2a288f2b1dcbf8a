"""Fusion of a trailing LUT/gamma into the median and Gaussian kernels' store (CUDA engine).

Run on the CUDA-on-CPU emulator. The oracle of every fused result is the same computation
unfused: the filter kernel's output, then the tone engine's LUT/gamma kernel on it (the
numerical contract of fusion is bit-identity with the stages run one by one); integer medians
are also checked against the CPU engine (OpenCV / NumPy). Kernel launches are recorded to
prove that the fused kernel ran and that no separate LUT/gamma pass did.
"""

from __future__ import annotations

import numpy as np
import pytest

import gpuenhance
from gpuenhance import Pipeline
from gpuenhance._cpu import filters as cpu_filters
from gpuenhance._cpu import tone as cpu_tone
from gpuenhance._cuda import filters, tone

EMU = "cuda-emulated"


class _Launches:
    """Records the name expression of every kernel launched through ``ctx.kernel``."""

    def __init__(self):
        self.names: list[str] = []

    def fused(self) -> list[str]:
        """The filter kernels launched with a fused point operation (FUSE != 0)."""
        return [
            n for n in self.names
            if n.startswith(("gpuenhance_median", "gpuenhance_gaussian")) and not n.endswith(", 0>")
        ]

    def point_passes(self) -> list[str]:
        return [n for n in self.names if n.startswith(("gpuenhance_lut", "gpuenhance_gamma"))]


@pytest.fixture
def launches(ctx, monkeypatch):
    rec = _Launches()
    real = ctx.kernel

    def kernel(filename, name):
        kern = real(filename, name)

        def launch(*args, **kwargs):
            rec.names.append(name)
            return kern(*args, **kwargs)

        return launch

    monkeypatch.setattr(ctx, "kernel", kernel)
    return rec


def _random(rng, shape, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        # mostly in [0, 1.5), some negatives (clipped before the power: bit for bit too)
        return (rng.random(shape) * 1.6 - 0.1).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=np.int64).astype(dtype)


def _random_lut(rng, dtype, channels=None):
    dtype = np.dtype(dtype)
    entries = 256 if dtype == np.uint8 else 65536
    shape = (entries,) if channels is None else (entries, channels)
    return _random(rng, shape, dtype)


def assert_bits_equal(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape
    if got.dtype.kind == "f":
        got = got.view(np.uint32 if got.dtype == np.float32 else np.uint64)
        want = want.view(got.dtype)
    np.testing.assert_array_equal(got, want)


# (dtype, ksize, path, histogram threshold override) for every median kernel path
MEDIAN_CASES = [
    (np.uint8, 3, "small"), (np.uint8, 5, "small"), (np.uint8, 7, "small"), (np.uint8, 9, "hist"),
    (np.uint16, 3, "small"), (np.uint16, 5, "small"), (np.uint16, 7, "small"),
    (np.uint16, 9, "hist"),
    (np.float32, 3, "small"), (np.float32, 5, "small"), (np.float32, 7, "small"),
    (np.float32, 9, "select"),
]
_KERNEL = {"small": "gpuenhance_median_small", "hist": "gpuenhance_median_hist",
           "select": "gpuenhance_median_select"}


@pytest.mark.parametrize("dtype,ksize,path", MEDIAN_CASES)
def test_median_gamma_fused_equals_two_stages(ctx, rng, launches, dtype, ksize, path):
    assert filters._median_path(dtype, ksize) == path
    img = _random(rng, (2, 11, 13, 3), dtype)
    gamma, gain = 0.6, 1.3
    want = tone.gamma_correct(ctx, filters.median_filter(ctx, img, ksize, "reflect"), gamma, gain)
    launches.names.clear()
    got = filters.median_filter(ctx, img, ksize, "reflect", gamma=gamma, gain=gain)
    assert launches.names == [launches.fused()[0]] and launches.names[0].startswith(_KERNEL[path])
    assert_bits_equal(got, want)
    if np.dtype(dtype).kind == "u":  # the CPU engine (OpenCV/NumPy) agrees exactly
        cpu = cpu_tone.gamma_correct(cpu_filters.median_filter(img, ksize, "reflect"), gamma, gain)
        np.testing.assert_array_equal(got, cpu)


@pytest.mark.parametrize("dtype,ksize", [(np.uint8, 3), (np.uint8, 9), (np.uint16, 5),
                                         (np.uint16, 9)])
@pytest.mark.parametrize("per_channel", [False, True])
def test_median_lut_fused_equals_apply_lut(ctx, rng, launches, dtype, ksize, per_channel):
    img = _random(rng, (2, 9, 10, 3), dtype)
    lut = _random_lut(rng, dtype, 3 if per_channel else None)
    want = tone.apply_lut(ctx, filters.median_filter(ctx, img, ksize, "constant"), lut)
    launches.names.clear()
    got = filters.median_filter(ctx, img, ksize, "constant", lut=lut)
    assert len(launches.names) == 1 and launches.names == launches.fused()
    assert_bits_equal(got, want)
    np.testing.assert_array_equal(
        got, cpu_tone.apply_lut(cpu_filters.median_filter(img, ksize, "constant"), lut)
    )


@pytest.mark.parametrize("dtype,ksize,path", [(np.uint8, 7, "small"), (np.uint8, 9, "select"),
                                              (np.uint16, 9, "select")])
def test_median_integer_register_and_select_paths_fused(ctx, rng, monkeypatch, launches, dtype,
                                                        ksize, path):
    # The host prefers histograms for these; switch them off to reach the other kernels.
    monkeypatch.setattr(filters, "_HIST_FROM", {})
    assert filters._median_path(dtype, ksize) == path
    img = _random(rng, (1, 10, 9, 2), dtype)
    lut = _random_lut(rng, dtype, 2)
    want = tone.apply_lut(ctx, filters.median_filter(ctx, img, ksize, "reflect_101"), lut)
    launches.names.clear()
    got = filters.median_filter(ctx, img, ksize, "reflect_101", lut=lut)
    assert launches.names == launches.fused() and launches.names[0].startswith(_KERNEL[path])
    assert_bits_equal(got, want)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_median_ksize_1_fused_is_the_point_op(ctx, rng, dtype):
    img = _random(rng, (7, 8), dtype)
    got = filters.median_filter(ctx, img, 1, "replicate", gamma=0.5, gain=1.0)
    assert_bits_equal(got, tone.gamma_correct(ctx, img, 0.5, 1.0))


GAUSS = [(5, 5, 0.0, 0.0), (7, 3, 1.4, 0.8)]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("kx,ky,sx,sy", GAUSS)
@pytest.mark.parametrize("two_pass", [False, True])
def test_gaussian_gamma_fused_equals_two_stages(ctx, rng, monkeypatch, launches, dtype, kx, ky,
                                                sx, sy, two_pass):
    if two_pass:  # no tile fits the (shrunk) shared-memory limit: x pass, then fused y pass
        monkeypatch.setattr(filters, "_SMEM_LIMIT", 64)
        assert filters._tile_shape(kx, ky, 4) is None
    img = _random(rng, (2, 9, 11, 2), dtype)
    gamma, gain = 1.7, 0.9
    want = tone.gamma_correct(
        ctx, filters.gaussian_filter(ctx, img, kx, ky, sx, sy, "reflect_101"), gamma, gain
    )
    launches.names.clear()
    got = filters.gaussian_filter(ctx, img, kx, ky, sx, sy, "reflect_101", gamma=gamma, gain=gain)
    kind = "gpuenhance_gaussian_pass" if two_pass else "gpuenhance_gaussian_tile"
    assert len(launches.names) == (2 if two_pass else 1)
    assert launches.point_passes() == [] and launches.fused() == [launches.names[-1]]
    assert launches.names[-1].startswith(kind)
    assert_bits_equal(got, want)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("lut_shape", ["shared", "column", "per_channel"])
def test_gaussian_lut_fused_equals_apply_lut(ctx, rng, launches, dtype, lut_shape):
    img = _random(rng, (1, 8, 12, 3), dtype)
    lut = _random_lut(rng, dtype, {"shared": None, "column": 1, "per_channel": 3}[lut_shape])
    want = tone.apply_lut(ctx, filters.gaussian_filter(ctx, img, 3, 5, 0.0, 1.1, "constant"), lut)
    launches.names.clear()
    got = filters.gaussian_filter(ctx, img, 3, 5, 0.0, 1.1, "constant", lut=lut)
    assert len(launches.names) == 1 and launches.names == launches.fused()
    assert_bits_equal(got, want)


def test_fusion_argument_errors(ctx, rng):
    img8 = _random(rng, (5, 6, 2), np.uint8)
    with pytest.raises(ValueError, match="lut"):
        filters.median_filter(ctx, img8, 3, "replicate", lut=np.zeros(255, np.uint8))
    with pytest.raises(ValueError, match="lut"):
        filters.median_filter(ctx, img8, 3, "replicate", lut=np.zeros((256, 3), np.uint8))
    with pytest.raises(ValueError, match="not both"):
        filters.median_filter(ctx, img8, 3, "replicate", lut=np.zeros(256, np.uint8), gamma=0.5)
    with pytest.raises(TypeError, match="float64"):
        filters.gaussian_filter(ctx, img8.astype(np.float64), 3, 3, 0.0, 0.0, "reflect",
                                gamma=0.5)
    with pytest.raises(TypeError, match="uint8/uint16"):
        filters.median_filter(ctx, img8.astype(np.float32), 3, "replicate",
                              lut=np.zeros(256, np.float32))


# ---------------------------------------------------------------------------------------------
# The pipeline fuses a filter followed by gamma on the CUDA engines
# ---------------------------------------------------------------------------------------------


def _stage_by_stage(pipe, batch, backend):
    x = batch
    for stage in pipe.stages:
        x = stage(x, backend=backend)
    return x


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize(
    "spec,n_fused",
    [
        ("median:ksize=3 | gamma:gamma=0.7", 1),
        ("median:ksize=9,border=constant | gamma:gamma=1.5,gain=0.8", 1),
        ("gaussian:sigma=1.2 | gamma:gamma=0.45,gain=1.1", 1),
        ("median:ksize=5 | gaussian:ksize=3 | gamma:gamma=2.2 | median:ksize=3", 1),
        ("gamma:gamma=0.5 | median:ksize=3", 0),
    ],
)
def test_pipeline_fused_equals_stage_by_stage(ctx, rng, launches, dtype, spec, n_fused):
    pipe = Pipeline(spec)
    batch = _random(rng, (2, 10, 12, 3), dtype)
    want = _stage_by_stage(pipe, batch, EMU)
    launches.names.clear()
    got = pipe(batch, backend=EMU)
    assert len(launches.fused()) == n_fused
    assert len(launches.point_passes()) == (0 if n_fused else 1)
    assert len(launches.names) == len(pipe) - n_fused
    assert_bits_equal(got, want)


def test_pipeline_integer_fused_equals_cpu_engine(ctx, rng):
    # median and gamma are exact on every engine, so the fused CUDA result equals the CPU's
    pipe = Pipeline("median:ksize=5,border=reflect | gamma:gamma=0.8,gain=1.2")
    batch = _random(rng, (3, 9, 8, 1), np.uint16)
    np.testing.assert_array_equal(pipe(batch, backend=EMU), pipe(batch, backend="cpu"))


def test_pipeline_float64_is_not_fused(ctx, rng, launches):
    # no float64 gamma exists: the pipeline fails in the gamma stage as it would unfused
    batch = _random(rng, (1, 6, 7, 1), np.float64)
    with pytest.raises(TypeError):
        Pipeline("median:ksize=3 | gamma:gamma=0.5")(batch, backend=EMU)
    assert launches.fused() == []
    np.testing.assert_array_equal(
        Pipeline("median:ksize=3")(batch, backend=EMU),
        gpuenhance.median_filter(batch, 3, backend="cpu"),
    )
