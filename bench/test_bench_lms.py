"""Speed suite: LMSRestorer fit (one epoch) and restore against the closed-form Wiener in
NumPy/CuPy, skimage's Wiener filters, and the naive per-bin Python loop (extrapolated); and
``solver="exact"`` (one streaming pass) against one NLMS epoch, side by side in one process."""

import statistics
import time

import pytest

from bench import _cases, _timing


def test_lms_fit(bench_item, run_bench):
    run_bench(bench_item)


def test_lms_restore(bench_item, run_bench):
    run_bench(bench_item)


# the lms_fit grid's sizes; the 4K batch of 32 (over 8 GB of spectra) is left out here
EXACT_CASES = [("512", 1), ("512", 32), ("1080p", 1), ("1080p", 32), ("4K", 1)]


@pytest.mark.parametrize("size, batch", EXACT_CASES, ids=[f"{s}-b{b}" for s, b in EXACT_CASES])
@pytest.mark.parametrize("support", [None, 15], ids=["per-bin", "support15"])
def test_lms_exact_vs_one_epoch(size, batch, support, bench_opts, record_property):
    """Median wall time of ``fit(solver="exact")`` and of ``fit(epochs=1)`` (NLMS) on the CPU
    engine, same inputs, measured one after the other (``pytest -s`` prints the row)."""
    from gpuenhance import LMSRestorer

    smoke = bench_opts["smoke"]
    if smoke and (size, batch) != EXACT_CASES[0]:
        pytest.skip("smoke: the first case proves the code path")
    hw = _cases.SMOKE_HW if smoke else _cases.SIZES[size]
    case = _cases.Case("lms_fit", size, hw, min(batch, 2) if smoke else batch, "float32")
    inputs = [case.make_inputs(seed) for seed in range(2)]
    r = (2 if smoke else support) if support else None

    def exact(deg, clean):
        return LMSRestorer(solver="exact", support=r, backend="cpu").fit(deg, clean)

    def epoch(deg, clean):
        return LMSRestorer(support=r, backend="cpu").fit(deg, clean, epochs=1)

    t_exact, t_epoch = _interleaved(exact, epoch, inputs, smoke)
    ratio = t_epoch["median_s"] / t_exact["median_s"]
    record_property("exact_median_s", t_exact["median_s"])
    record_property("nlms_epoch_median_s", t_epoch["median_s"])
    print(f"\nlms exact vs 1 NLMS epoch [{case.id}, support={r}]: exact "
          f"{t_exact['median_s'] * 1e3:.1f} ms, one epoch {t_epoch['median_s'] * 1e3:.1f} ms "
          f"(epoch / exact = {ratio:.2f}; "
          + ("smoke: one call each, no claim)" if smoke else f"{t_exact['runs']} runs each, interleaved)"))


def _interleaved(fn_a, fn_b, inputs, smoke, target_s=2.0, min_runs=3, max_runs=15):
    """Median wall times of fn_a and fn_b run alternately (a, b, a, b, ...) after one warm-up
    each, so that a load change on a shared machine hits both alike. Smoke: one call each."""
    if smoke:
        return (_timing.time_cpu(fn_a, inputs, smoke=True),
                _timing.time_cpu(fn_b, inputs, smoke=True))
    t0 = time.perf_counter()
    fn_a(*inputs[0])
    fn_b(*inputs[0])
    first = time.perf_counter() - t0
    runs = int(min(max_runs, max(min_runs, target_s / max(first, 1e-9))))
    times = ([], [])
    for i in range(runs):
        args = inputs[(i + 1) % len(inputs)]
        for fn, out in zip((fn_a, fn_b), times):
            t = time.perf_counter()
            fn(*args)
            out.append(time.perf_counter() - t)
    return tuple({"median_s": statistics.median(t), "min_s": min(t), "runs": runs} for t in times)


def test_lms_fft_driver_restores_the_engine_fft(tmp_path, request):
    """bench.lms_fft times both FFT libraries and leaves the engine's own in place."""
    if not request.config.getoption("--smoke"):
        pytest.skip("the full comparison is `python -m bench.lms_fft`, not a pytest case")
    import json

    from bench import lms_fft
    from gpuenhance._cpu import restore as cpu_restore

    shipped = cpu_restore._scipy_fft
    assert lms_fft.main(["--smoke", "--out", str(tmp_path)]) == 0
    assert cpu_restore._scipy_fft is shipped
    (doc_path,) = tmp_path.glob("*-lms-fft-smoke.json")
    rows = json.loads(doc_path.read_text())["rows"]
    want = {"numpy.fft"} | ({"scipy.fft (workers)"} if shipped is not None else set())
    assert {(r["op"], r["fft"]) for r in rows} == {(op, f) for op in ("fit", "restore")
                                                   for f in want}
    assert all(r["median_s"] > 0 and r["peak_mib"] > 0 for r in rows)
