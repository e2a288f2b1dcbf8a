"""The CUDA-on-CPU emulator (gpuenhance._cuda.emulator): every CUDA feature the kernels may use,
each checked against a NumPy (or OpenCV) reference. Kernels: tests/emulator_kernels/*.cu."""

from __future__ import annotations

import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from gpuenhance._cuda import emulator
from gpuenhance._cuda._loader import KernelError, kernel_source

KERNEL_DIR = Path(__file__).parent / "emulator_kernels"

_problem = emulator.compiler_problem()
pytestmark = pytest.mark.skipif(_problem is not None, reason=f"CUDA emulator unavailable: {_problem}")


def test_source(name: str) -> str:
    """A test kernel's text with ``#include "common.cuh"`` inlined, as the loader does."""
    text = (KERNEL_DIR / name).read_text()
    return re.sub(r'^#include "common.cuh"$', lambda m: kernel_source("common.cuh"), text, flags=re.M)


test_source.__test__ = False  # not a test

BASICS = (
    "gpuenhance_test_add<float>",
    "gpuenhance_test_add<int>",
    "gpuenhance_test_index3d",
    "gpuenhance_test_reverse",
    "gpuenhance_test_transpose<16>",
    "gpuenhance_test_block_sum<float>",
    "gpuenhance_test_block_sum<double>",
    "gpuenhance_test_histogram",
    "gpuenhance_test_atomics",
    "gpuenhance_test_early_exit",
    "gpuenhance_test_scalars",
    "gpuenhance_test_math",
    "gpuenhance_test_copy16",
    "gpuenhance_test_median<gpuenhance_u8, 1>",
    "gpuenhance_test_median<float, 2>",
    "gpuenhance_test_smem_peek",
    "gpuenhance_test_simd",
)


@pytest.fixture(scope="module")
def mod():
    return emulator.load_module(test_source("basics.cu"), BASICS, filename="basics.cu")


def test_compiler_problem_is_none_and_cached():
    assert emulator.compiler_problem() is None
    assert emulator.compiler_problem.cache_info().hits >= 1


def test_vector_add_1d_grid_with_tail(mod, rng):
    n = 1000  # not a multiple of the block
    a = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    out = np.full(n + 8, -7.0, np.float32)  # guard cells past n must stay untouched
    mod.get_function("gpuenhance_test_add<float>")((4,), (256,), (a, b, out, np.int32(n)))
    np.testing.assert_array_equal(out[:n], a + b)
    np.testing.assert_array_equal(out[n:], -7.0)


def test_two_template_instantiations(mod, rng):
    a = rng.integers(-1000, 1000, 77).astype(np.int32)
    b = rng.integers(-1000, 1000, 77).astype(np.int32)
    out = np.zeros(77, np.int32)
    mod.get_function("gpuenhance_test_add<int>")(3, 32, (a, b, out, np.int32(77)))
    np.testing.assert_array_equal(out, a + b)
    fa, fb, fo = a.astype(np.float32), b.astype(np.float32), np.zeros(77, np.float32)
    mod.get_function("gpuenhance_test_add<float>")(3, 32, (fa, fb, fo, np.int32(77)))
    np.testing.assert_array_equal(fo, fa + fb)


@pytest.mark.parametrize("block", [(4, 3, 2), (8, 8, 1), (1, 1, 4)])
def test_3d_grid_and_block_indices(mod, block):
    nx, ny, nz = 9, 7, 5
    grid = tuple(-(-n // b) for n, b in zip((nx, ny, nz), block))
    out = np.full((nz, ny, nx), -1, np.int32)
    mod.get_function("gpuenhance_test_index3d")(grid, block, (out, np.int32(nx), np.int32(ny), np.int32(nz)))
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    bx, by, bz = block
    gx, gy, _ = grid
    tid = x % bx + bx * (y % by + by * (z % bz))
    bid = x // bx + gx * (y // by + gy * (z // bz))
    np.testing.assert_array_equal(out, bid * 10000 + tid)


def test_static_shared_memory_block_reversal(mod, rng):
    x = rng.standard_normal(5 * 64).astype(np.float32)
    out = np.zeros_like(x)
    mod.get_function("gpuenhance_test_reverse")((5,), (64,), (x, out))
    np.testing.assert_array_equal(out, x.reshape(5, 64)[:, ::-1].ravel())


@pytest.mark.parametrize("shape", [(40, 57), (16, 16), (3, 33)])
def test_static_shared_memory_tile_transpose(mod, rng, shape):
    h, w = shape
    x = rng.standard_normal(shape).astype(np.float32)
    out = np.zeros((w, h), np.float32)
    grid = (-(-w // 16), -(-h // 16))
    mod.get_function("gpuenhance_test_transpose<16>")(grid, (16, 16), (x, out, np.int32(h), np.int32(w)))
    np.testing.assert_array_equal(out, x.T)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dynamic_shared_memory_block_sum(mod, rng, dtype):
    n, bs = 300, 64
    x = rng.integers(-50, 50, n).astype(dtype)  # integers: exact in any summation order
    nb = -(-n // bs)
    out = np.zeros(nb, dtype)
    name = f"gpuenhance_test_block_sum<{'float' if dtype == np.float32 else 'double'}>"
    kern = mod.get_function(name)
    kern((nb,), (bs,), (x, out, np.int32(n)), shared_mem=bs * np.dtype(dtype).itemsize)
    padded = np.zeros(nb * bs, dtype)
    padded[:n] = x
    np.testing.assert_array_equal(out, padded.reshape(nb, bs).sum(axis=1))


def test_dynamic_shared_memory_limit(mod):
    kern = mod.get_function("gpuenhance_test_block_sum<float>")
    x = np.zeros(4, np.float32)
    with pytest.raises(KernelError, match="dynamic shared memory"):
        kern((1,), (4,), (x, x, np.int32(4)), shared_mem=64 * 1024)


def test_atomic_histogram(mod, rng):
    x = rng.integers(0, 256, 5000).astype(np.uint8)
    hist = np.zeros(256, np.uint32)
    mod.get_function("gpuenhance_test_histogram")((20,), (256,), (x, hist, np.int32(x.size)))
    np.testing.assert_array_equal(hist, np.bincount(x, minlength=256))


def test_atomics_float_double_minmax_ull(mod, rng):
    n = 700
    x = rng.integers(-8, 8, n).astype(np.float32) / 4  # dyadic: float sums are exact
    v = rng.integers(-10**6, 10**6, n).astype(np.int32)
    fsum, dsum = np.zeros(1, np.float32), np.zeros(1, np.float64)
    imax = np.array([np.iinfo(np.int32).min], np.int32)
    imin = np.array([np.iinfo(np.int32).max], np.int32)
    count = np.zeros(1, np.uint64)
    mod.get_function("gpuenhance_test_atomics")(
        (3,), (256,), (x, v, fsum, dsum, imax, imin, count, np.int32(n))
    )
    assert fsum[0] == x.sum(dtype=np.float64)
    assert dsum[0] == x.sum(dtype=np.float64)
    assert imax[0] == v.max() and imin[0] == v.min()
    assert count[0] == n


@pytest.mark.parametrize("n", [1, 50, 127, 128])
def test_early_return_while_others_hit_barriers(mod, rng, n):
    x = rng.standard_normal(n).astype(np.float32)
    out = np.zeros(n, np.float32)
    mod.get_function("gpuenhance_test_early_exit")((1,), (128,), (x, out, np.int32(n)))
    np.testing.assert_array_equal(out, np.roll(x * 2, 1) + 1)


def test_scalar_argument_types(mod):
    out = np.zeros(6, np.float64)
    args = (out, np.int32(-7), np.int64(2**40 + 3), np.float32(1.5), 2.25, np.uint32(2**32 - 1), np.uint8(200))
    mod.get_function("gpuenhance_test_scalars")(1, 1, args)
    np.testing.assert_array_equal(out, [-7, 2**40 + 3, 1.5, 2.25, 2**32 - 1, 200])


def test_python_scalars_map_like_cupy(mod):
    out = np.zeros(6, np.float64)
    kern = mod.get_function("gpuenhance_test_scalars")
    # Python float -> float64 (the double parameter) works ...
    kern(1, 1, (out, np.int32(1), np.int64(2), np.float32(3), 4.0, np.uint32(5), np.uint8(6)))
    np.testing.assert_array_equal(out, [1, 2, 3, 4, 5, 6])
    # ... Python int -> int64, which an `int` parameter does not take.
    with pytest.raises(TypeError, match=r"argument 1 is int64 \(8 bytes\).*np\.int32"):
        kern(1, 1, (out, 1, np.int64(2), np.float32(3), 4.0, np.uint32(5), np.uint8(6)))


def test_argument_checks(mod):
    kern = mod.get_function("gpuenhance_test_add<float>")
    a = np.zeros(8, np.float32)
    with pytest.raises(TypeError, match="takes 4 arguments, 3 given"):
        kern(1, 8, (a, a, a))
    with pytest.raises(TypeError, match="argument 3 is float32"):
        kern(1, 8, (a, a, a, np.float32(8)))
    with pytest.raises(TypeError, match="argument 3 is an array"):
        kern(1, 8, (a, a, a, a))
    with pytest.raises(TypeError, match="argument 0 .*parameter is a pointer"):
        kern(1, 8, (np.float32(1), a, a, np.int32(8)))
    with pytest.raises(TypeError, match="unsupported type list"):
        kern(1, 8, ([1.0], a, a, np.int32(8)))
    with pytest.raises(ValueError, match="grid"):
        kern(0, 8, (a, a, a, np.int32(8)))
    with pytest.raises(KernelError, match="invalid launch configuration"):
        kern(1, (64, 32), (a, a, a, np.int32(8)))


def test_non_contiguous_array_rejected(mod):
    a = np.zeros(16, np.float32)
    with pytest.raises(ValueError, match="argument 1 is a non-contiguous array"):
        mod.get_function("gpuenhance_test_add<float>")(1, 8, (a[:8], a[::2], a[8:], np.int32(8)))


def test_math_builtins_and_vector_types(mod):
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.3, 1.7, -2.2, 254.5, 255.5, 300.0], np.float32)
    out = np.zeros((x.size, 8), np.float32)
    mod.get_function("gpuenhance_test_math")((1,), (32,), (x, out, np.int32(x.size)))
    i = np.arange(x.size)
    expected = np.stack(
        [
            np.rint(x),  # half to even, as CUDA's rintf
            np.rint(x),
            np.clip(x, 0, 1),
            np.maximum(x, 0.5),
            np.minimum(i, 3) + np.maximum(x, 0.25),
            x / 2,
            np.clip(np.rint(x), 0, 255),
            np.abs(x) + np.floor(x) + np.ceil(x),
        ],
        axis=1,
    ).astype(np.float32)
    np.testing.assert_array_equal(out, expected)


def test_vector_copy16(mod, rng):
    x = rng.integers(0, 256, 16 * 37).astype(np.uint8)
    out = np.zeros_like(x)
    mod.get_function("gpuenhance_test_copy16")((2,), (32,), (x, out, np.int32(37)))
    np.testing.assert_array_equal(out, x)


def _lanes(a, b, bits, op):
    """Lane-wise *op* on the *bits*-wide unsigned fields of uint32 arrays (plain NumPy)."""
    view = {8: np.uint8, 16: np.uint16}[bits]
    return op(a.view(view), b.view(view)).view(np.uint32)


def _byte_perm(x, y, s):
    both = x.astype(np.uint64) | (y.astype(np.uint64) << np.uint64(32))
    r = np.zeros_like(x)
    for n in range(4):
        sel = (s >> np.uint32(4 * n)) & np.uint32(7)
        byte = (both >> (np.uint64(8) * sel.astype(np.uint64))) & np.uint64(0xFF)
        r |= byte.astype(np.uint32) << np.uint32(8 * n)
    return r


def _funnel(lo, hi, shift, left, clamp):
    """Python-int reference of the four funnel shifts, element by element."""
    out = []
    for a, b, s in zip(lo.tolist(), hi.tolist(), shift.tolist()):
        both = (b << 32) | a
        k = min(s, 32) if clamp else s & 31
        out.append(((both << k) >> 32) & 0xFFFFFFFF if left else (both >> k) & 0xFFFFFFFF)
    return np.array(out, np.uint32)


def test_simd_byte_perm_and_funnel_shift_intrinsics(mod, rng):
    n = 300
    a = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    b = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    b[:40] = a[:40]  # equal lanes
    b[40:80] = a[40:80] ^ np.uint32(0x00FF00FF)  # some lanes equal, some not
    s = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    s[:64] = np.arange(64, dtype=np.uint32)  # every shift 0..63, clamped and masked
    a[80], b[80], s[80] = 0x03020100, 0x07060504, 0x7531  # the CUDA docs' byte numbering
    out = np.zeros((n, 10), np.uint32)
    mod.get_function("gpuenhance_test_simd")((3,), (128,), (a, b, s, out, np.int32(n)))
    expected = np.stack(
        [
            _lanes(a, b, 8, np.minimum),
            _lanes(a, b, 8, np.maximum),
            _lanes(a, b, 16, np.minimum),
            _lanes(a, b, 16, np.maximum),
            _byte_perm(a, b, s),
            _funnel(a, b, s, left=True, clamp=False),
            _funnel(a, b, s, left=True, clamp=True),
            _funnel(a, b, s, left=False, clamp=False),
            _funnel(a, b, s, left=False, clamp=True),
            _byte_perm(a, b, s & np.uint32(0x7777)),
        ],
        axis=1,
    )
    np.testing.assert_array_equal(out, expected)
    assert out[80, 4] == 0x07050301
    assert out[80, 7] == 0x02820181 and out[80, 5] == 0x0A080604  # shifts by 0x7531 & 31 = 17


def test_median_name_expression_matches_opencv(mod, rng):
    img = rng.integers(0, 256, (23, 17)).astype(np.uint8)
    out = np.zeros_like(img)
    mod.get_function("gpuenhance_test_median<gpuenhance_u8, 1>")(
        (2, 2), (16, 16), (img, out, np.int32(23), np.int32(17))
    )
    np.testing.assert_array_equal(out, cv2.medianBlur(img, 3))
    fimg = rng.standard_normal((23, 17)).astype(np.float32)
    fout = np.zeros_like(fimg)
    mod.get_function("gpuenhance_test_median<float, 2>")(
        (2, 2), (16, 16), (fimg, fout, np.int32(23), np.int32(17))
    )
    np.testing.assert_array_equal(fout, cv2.medianBlur(fimg, 5))


def test_64x64_with_16x16_blocks_is_fast(mod, rng):
    img = rng.integers(0, 256, (64, 64)).astype(np.uint8)
    out = np.zeros_like(img)
    kern = mod.get_function("gpuenhance_test_median<gpuenhance_u8, 1>")
    args = (img, out, np.int32(64), np.int32(64))
    kern((4, 4), (16, 16), args)  # warm
    start = time.perf_counter()
    kern((4, 4), (16, 16), args)
    assert time.perf_counter() - start < 0.5
    np.testing.assert_array_equal(out, cv2.medianBlur(img, 3))


def test_unknown_name_expression(mod):
    with pytest.raises(KernelError, match=r"'gpuenhance_test_add<double>'.*basics\.cu|basics\.cu.*'gpuenhance_test_add<double>'"):
        mod.get_function("gpuenhance_test_add<double>")


def test_compile_error_names_the_file():
    with pytest.raises(KernelError) as info:
        emulator.load_module(test_source("broken.cu"), ("gpuenhance_test_broken",), filename="broken.cu")
    msg = str(info.value)
    assert "broken.cu" in msg
    assert "gpuenhance_no_such_function" in msg  # the compiler's own message is quoted


def test_bad_name_expression_is_a_compile_error():
    exprs = ("gpuenhance_test_add<float>", "gpuenhance_test_median<float>")  # missing R
    with pytest.raises(KernelError) as info:
        emulator.load_module(test_source("basics.cu"), exprs, filename="basics.cu")
    msg = str(info.value)
    assert msg.startswith("basics.cu failed to compile")
    assert "do not name a __global__ function" in msg
    assert "'gpuenhance_test_median<float>'" in msg and "'gpuenhance_test_add<float>'" not in msg


@pytest.mark.parametrize("poison, expected", [("1", 0xFFFFFFFF), ("0", 0)])
def test_dynamic_shared_memory_is_reset_before_every_block(mod, monkeypatch, poison, expected):
    monkeypatch.setenv("GPUENHANCE_EMULATOR_POISON", poison)
    out = np.full(3 * 32, 123, np.uint32)
    mod.get_function("gpuenhance_test_smem_peek")((3,), (32,), (out,), shared_mem=32 * 4)
    np.testing.assert_array_equal(out, expected)


def test_launches_from_several_python_threads(mod, rng):
    from concurrent.futures import ThreadPoolExecutor

    kern = mod.get_function("gpuenhance_test_transpose<16>")
    inputs = [rng.standard_normal((20 + i, 33 - i)).astype(np.float32) for i in range(6)]

    def run(x):
        h, w = x.shape
        out = np.zeros((w, h), np.float32)
        kern((-(-w // 16), -(-h // 16)), (16, 16), (x, out, np.int32(h), np.int32(w)))
        return out

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(run, inputs))
    for x, out in zip(inputs, results):
        np.testing.assert_array_equal(out, x.T)


def test_block_sizes_change_between_launches(mod, rng):
    # The runtime pools its threads: bigger, smaller, then odd block shapes in turn.
    x = rng.standard_normal(1000).astype(np.float32)
    kern = mod.get_function("gpuenhance_test_add<float>")
    for threads in (1024, 1, 96, 42, 512):
        out = np.zeros_like(x)
        kern((-(-1000 // threads),), (threads,), (x, x, out, np.int32(1000)))
        np.testing.assert_array_equal(out, 2 * x)


def test_disk_cache_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUENHANCE_CACHE_DIR", str(tmp_path))
    src = test_source("basics.cu") + "\n// cache test\n"
    exprs = ("gpuenhance_test_add<float>",)
    calls = []
    real = emulator.module._compile_shared_object

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(emulator.module, "_compile_shared_object", counting)
    emulator.load_module(src, exprs, filename="basics.cu")
    assert len(calls) == 1
    assert len(list((tmp_path / "emulator").glob("*.so"))) == 1
    # A fresh process would find the .so on disk: forget the in-process memo and load again.
    monkeypatch.setattr(emulator.module, "_MODULES", {})
    mod = emulator.load_module(src, exprs, filename="basics.cu")
    assert len(calls) == 1
    a = np.arange(5, dtype=np.float32)
    out = np.zeros(5, np.float32)
    mod.get_function("gpuenhance_test_add<float>")(1, 8, (a, a, out, np.int32(5)))
    np.testing.assert_array_equal(out, 2 * a)


def test_in_process_memo(mod):
    again = emulator.load_module(test_source("basics.cu"), BASICS, filename="basics.cu")
    assert again is mod


def test_divergent_barrier_times_out(monkeypatch):
    src = test_source("basics.cu") + r"""
__global__ void gpuenhance_test_spin(int* flag) {
    // Thread 0 waits at a barrier while thread 1 spins forever on a flag nobody sets: a hang.
    if (threadIdx.x == 0) { __syncthreads(); }
    else { while (atomicAdd(flag, 0) == 0) { } }
}
"""
    mod = emulator.load_module(src, ("gpuenhance_test_spin",), filename="spin.cu")
    monkeypatch.setenv("GPUENHANCE_EMULATOR_BARRIER_TIMEOUT", "0.3")
    flag = np.zeros(1, np.int32)
    kern = mod.get_function("gpuenhance_test_spin")
    import threading

    # The spinning thread never ends by itself: release it once the launch has failed.
    def release():
        time.sleep(1.0)
        flag[0] = 1

    t = threading.Thread(target=release)
    t.start()
    with pytest.raises(KernelError, match=r"gpuenhance_test_spin.*__syncthreads waited"):
        kern(1, 2, (flag,))
    t.join()
