"""The issue-15 CPU rows driver runs (smoke: tiny inputs, one call each, no timing claims)."""

import json

import pytest


def test_cpu_rows_driver_writes_rows(tmp_path, request):
    if not request.config.getoption("--smoke"):
        pytest.skip("the full CPU-row run is `python -m bench.cpu_rows`, not a pytest case")
    from bench import cpu_rows

    assert cpu_rows.main(["--smoke", "--rounds", "1", "--out", str(tmp_path),
                          "--cases", "median-ksize15-*,lut-uint16-*"]) == 0
    (doc_path,) = tmp_path.glob("*-cpu-rows-smoke.json")
    doc = json.loads(doc_path.read_text())
    cases = {r["case"] for r in doc["rows"]}
    assert cases == {"median-ksize15-uint8-smoke-b1", "median-ksize15-uint16-smoke-b1",
                     "median-ksize15-float32-smoke-b1", "lut-uint16-smoke-b1"}
    impls = {r["impl"] for r in doc["rows"]}
    assert {"gpuenhance", "gpuenhance 1 thread", "cv2.medianBlur"} <= impls
    assert "slower than the best CPU peer" in doc_path.with_suffix(".md").read_text()
    # the single-thread reference ran with OpenCV's pool at one thread; the others as set
    import cv2

    pools = {r["impl"]: r["threads"]["cv2_threads"] for r in doc["rows"]
             if r["case"] == "lut-uint16-smoke-b1" and r["status"] == "ok"}
    assert pools["gpuenhance 1 thread"] == 1
    assert pools["gpuenhance"] == cv2.getNumThreads()


def test_call_overhead_driver_runs_this_checkout(capsys, request):
    if not request.config.getoption("--smoke"):
        pytest.skip("the measurement is `python -m bench.call_overhead`, not a pytest case")
    from bench import call_overhead

    assert call_overhead.main(["--smoke", "--rounds", "1"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| now |")]
    assert [ln.split("|")[2].strip() for ln in lines] == list(call_overhead.CASES)


def test_settle_calls_come_before_the_timed_ones():
    """time_cpu's settle phase: untimed calls after the pause, then exactly the timed runs."""
    import time

    from bench import _timing

    calls = []
    res = _timing.time_cpu(lambda: calls.append(time.perf_counter()), [()], target_s=0.0,
                           min_runs=3, max_runs=3, settle_s=0.02)
    assert res["runs"] == 3
    assert len(calls) > 1 + 3 + 10  # the warm-up, many settle calls, the timed runs
    assert calls[-3] - calls[0] >= 0.05 + 0.02  # timed runs start after pause and settling
