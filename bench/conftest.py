"""pytest options and parametrisation for the benchmark suites.

``--smoke`` shrinks every case to 32x48 (batch 1 and 2) and runs it once: no timing claims,
no timing assertions, just proof that every case and peer runs. Without it the suites time
the full grid (see bench/_cases.py) with pytest-benchmark on the CPU and CUDA events on the
GPU; CPU calls whose estimated time exceeds ``--cpu-cap-s`` are skipped with that note.
"""

from __future__ import annotations

import itertools

import pytest

from bench import _cases, _peers, _runner, _timing


def pytest_addoption(parser):
    group = parser.getgroup("gpuenhance-bench")
    group.addoption("--smoke", action="store_true", default=False,
                    help="tiny inputs, one run per case, no timing claims")
    group.addoption("--cpu-cap-s", type=float, default=_runner.DEFAULT_CPU_CAP_S,
                    help="skip a CPU call estimated to take longer than this (seconds)")
    group.addoption("--bench-device", choices=("all", "cpu", "gpu"), default="all",
                    help="which implementations to run")


def _items(family: str, config):
    smoke = config.getoption("--smoke")
    want = config.getoption("--bench-device")
    params = []
    for case in _cases.cases(family, smoke=smoke):
        for impl in _peers.impls(family):
            if want != "all" and impl.device != want:
                continue
            marks = []
            problem = impl.unavailable()
            if problem:
                marks.append(pytest.mark.skip(reason=f"{impl.label}: {problem}"))
            params.append(pytest.param((case, impl), id=f"{case.id}-{impl.label}", marks=marks))
    return params


def pytest_configure(config):
    # skimage's rank filters warn that 16-bit input is slow: that is the peer's real behaviour
    config.addinivalue_line("filterwarnings", "ignore:Bad rank filter performance:UserWarning")


def pytest_generate_tests(metafunc):
    if "bench_item" in metafunc.fixturenames:
        family = metafunc.function.__name__.removeprefix("test_")
        metafunc.parametrize("bench_item", _items(family, metafunc.config))


@pytest.fixture
def bench_opts(request) -> dict:
    return {
        "smoke": request.config.getoption("--smoke"),
        "cpu_cap_s": request.config.getoption("--cpu-cap-s"),
    }


def _cpu_timer(benchmark, smoke):
    def timer(fn, inputs):
        cycle = itertools.cycle(inputs)

        def setup():
            return next(cycle), {}

        if smoke:
            rounds, warm = 1, 0
            est = None
        else:
            est = _timing.time_cpu(fn, inputs, smoke=True)["median_s"]
            rounds, warm = int(min(20, max(3, 1.0 / max(est, 1e-9)))), 1
        benchmark.pedantic(fn, setup=setup, rounds=rounds, iterations=1, warmup_rounds=warm)
        stats = getattr(getattr(benchmark, "stats", None), "stats", None)
        if stats is None:  # --benchmark-disable: pytest-benchmark ran it once untimed
            return _timing.time_cpu(fn, inputs, smoke=True)
        return {"median_s": stats.median, "min_s": stats.min, "runs": rounds,
                "warmup": warm, "timer": "pytest-benchmark perf_counter"}

    return timer


def _gpu_timer(benchmark, smoke):
    def timer(fn, inputs):
        timing = _timing.time_gpu(fn, inputs, smoke=smoke)
        cycle = itertools.cycle(inputs)

        def synced(*args):
            out = fn(*args)
            _timing.gpu_sync()
            return out

        def setup():
            return next(cycle), {}

        # also recorded by pytest-benchmark (host wall time incl. sync) for its JSON;
        # the row's median_s is the CUDA-event figure above
        benchmark.pedantic(synced, setup=setup, rounds=timing["runs"], iterations=1,
                           warmup_rounds=0 if smoke else 1)
        return timing

    return timer


@pytest.fixture
def run_bench(benchmark, bench_opts):
    """Measure one (case, impl); skip with the row's note unless it ran."""

    def go(item):
        case, impl = item
        smoke = bench_opts["smoke"]
        row = _runner.measure(
            case, impl, smoke=smoke, cpu_cap_s=bench_opts["cpu_cap_s"],
            cpu_timer=_cpu_timer(benchmark, smoke), gpu_timer=_gpu_timer(benchmark, smoke),
        )
        benchmark.extra_info.update(_runner.row_summary(row))
        benchmark.extra_info["impl"] = impl.label
        if row["status"] == "error" and not impl.tolerate_errors:
            pytest.fail(f"{impl.label} on {case.id}: {row['note']}")
        if row["status"] != "ok":
            pytest.skip(f"{row['status']}: {impl.label}: {row['note']}")
        return row

    return go
