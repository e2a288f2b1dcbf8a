"""Measure one (case, implementation) pair and return a result row.

Used by the pytest suites (which hand in pytest-benchmark as the CPU timer) and by
``bench.report`` (which uses :func:`bench._timing.time_cpu`). A row always comes back:
``status`` is "ok", "skipped" (not installed, over the CPU budget, no GPU), "unsupported"
(the library cannot do the case), "not implemented" (a gpuenhance op still raising
NotImplementedError) or "error" (with the exception in ``note``). Nothing is substituted.
"""

from __future__ import annotations

import time
import traceback
from typing import Any, Callable

from . import _peers, _timing
from ._cases import Case
from ._peers import Impl, Unsupported

DEFAULT_CPU_CAP_S = 3.0
_COST_CACHE: dict[tuple, float] = {}


def base_row(case: Case, impl: Impl) -> dict:
    return {
        "family": case.family,
        "op": case.op,
        "case": case.id,
        "params": dict(case.params),
        "size": case.size,
        "hw": list(case.hw),
        "batch": case.batch,
        "dtype": case.dtype,
        "shape": list(case.shape),
        "impl": impl.name,
        "device": impl.device,
        "is_gpuenhance": impl.is_gpuenhance,
        "status": "ok",
        "note": impl.note,
        "extrapolated": impl.extrapolated,
        "median_s": None,
    }


def _skip(row: dict, status: str, note: str) -> dict:
    row["status"] = status
    row["note"] = (note + ("; " + row["note"] if row["note"] else "")).strip("; ")
    return row


def _estimate_cpu_s(case: Case, impl: Impl) -> float | None:
    """Seconds one call of *case* would take, from a 256x256 probe (cached per cost key)."""
    probe = case.probe()
    if case.pixels <= 4 * probe.pixels:
        return None
    key = (impl.name, impl.device) + case.cost_key()
    if key not in _COST_CACHE:
        run, prepare = impl.make(probe)
        args = prepare(probe.make_inputs())
        run(*args)  # first call: imports, plans, caches
        t0 = time.perf_counter()
        run(*args)
        _COST_CACHE[key] = (time.perf_counter() - t0) / probe.pixels
    return _COST_CACHE[key] * case.pixels


def measure(
    case: Case,
    impl: Impl,
    *,
    smoke: bool = False,
    cpu_cap_s: float = DEFAULT_CPU_CAP_S,
    cpu_timer: Callable | None = None,
    gpu_timer: Callable | None = None,
) -> dict:
    """Time *impl* on *case*; return the row (see module docstring)."""
    row = base_row(case, impl)
    problem = impl.unavailable()
    if problem:
        return _skip(row, "skipped", problem)
    try:
        made = impl.make(case)
    except Unsupported as exc:
        return _skip(row, "unsupported", str(exc))
    except NotImplementedError:
        return _skip(row, "not implemented", f"gpuenhance {case.op} is not implemented yet")
    except Exception as exc:
        return _skip(row, "error", f"{type(exc).__name__}: {exc}")
    try:
        if impl.extrapolated:
            return _measure_extrapolated(row, case, made, smoke=smoke, cpu_timer=cpu_timer)
        run, prepare = made
        if impl.device == "cpu":
            return _measure_cpu(row, case, impl, run, prepare, smoke, cpu_cap_s, cpu_timer)
        return _measure_gpu(row, case, run, prepare, smoke, gpu_timer)
    except Unsupported as exc:
        return _skip(row, "unsupported", str(exc))
    except NotImplementedError:
        return _skip(row, "not implemented", f"gpuenhance {case.op} is not implemented yet")
    except Exception as exc:
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return _skip(row, "error", tb[:500])


def _finish(row: dict, case: Case, timing: dict) -> dict:
    row.update(timing)
    t = row["median_s"]
    row["mpix_s"] = case.pixels / t / 1e6 if t else None
    row["gb_s"] = case.bytes_moved / t / 1e9 if t else None
    if case.family == "patch_sgd" and t:
        row["steps_per_s"] = case.params["steps"] / t
    if case.family == "lms_fit" and t:
        row["s_per_epoch"] = t / case.params.get("epochs", 1)
    return row


def _measure_cpu(row, case, impl, run, prepare, smoke, cap, cpu_timer) -> dict:
    if not smoke:
        avail = _timing.host_available_bytes()
        if avail is not None and case.image_bytes * 8 > avail:
            return _skip(
                row,
                "skipped",
                f"skipped on CPU: ~8x the {case.image_bytes / 2**30:.2f} GiB input would exceed "
                f"available RAM ({avail / 2**30:.1f} GiB)",
            )
        est = _estimate_cpu_s(case, impl)
        if est is not None and est > cap:
            row["estimated_s"] = est
            return _skip(
                row,
                "skipped",
                f"skipped on CPU: estimated {est:.1f} s per call (linear from a 256x256 probe) "
                f"exceeds the per-call budget of {cap:g} s (--cpu-cap-s)",
            )
    inputs = [prepare(case.make_inputs(seed)) for seed in range(1 if smoke else 2)]
    timer = cpu_timer or (lambda fn, ins: _timing.time_cpu(fn, ins, smoke=smoke))
    with _timing.cv2_threads(impl.extra.get("cv2_threads")):
        timing = timer(run, inputs)
        row["threads"] = _timing.cpu_threads()
    row["host_rss_mib"] = _timing.host_rss_mib()
    row["host_peak_rss_mib"] = _timing.host_peak_rss_mib()
    return _finish(row, case, timing)


def _measure_gpu(row, case, run, prepare, smoke, gpu_timer) -> dict:
    import cupy

    host = case.make_inputs(0)
    first = _peers.to_device(host, "gpu")
    n = _timing.rotation_count(sum(a.nbytes for a in host[:1]), smoke=smoke)
    # rotate the first (image) argument; the others (lut, clean stack) are shared
    copies = [first] + [(first[0].copy(),) + tuple(first[1:]) for _ in range(n - 1)]
    inputs = [prepare(c) for c in copies]
    timer = gpu_timer or (lambda fn, ins: _timing.time_gpu(fn, ins, smoke=smoke))
    timing = timer(run, inputs)
    row.update(_timing.gpu_peak_memory(run, inputs[0]))
    row["host_rss_mib"] = _timing.host_rss_mib()
    row["host_peak_rss_mib"] = _timing.host_peak_rss_mib()
    _finish(row, case, timing)
    bw = _timing.copy_bandwidth_gbs(smoke=smoke)
    row["copy_gb_s"] = bw["ref"]
    row["pct_copy_bw"] = 100.0 * row["gb_s"] / bw["ref"] if row.get("gb_s") else None
    del inputs, copies, first
    cupy.get_default_memory_pool().free_all_blocks()
    return row


def _measure_extrapolated(row, case, made, *, smoke, cpu_timer) -> dict:
    run, prepare, scale, note = made
    inputs = [prepare(())]
    timer = cpu_timer or (lambda fn, ins: _timing.time_cpu(fn, ins, smoke=smoke, max_runs=5))
    timing = dict(timer(run, inputs))
    row["measured_s"] = timing["median_s"]
    row["extrapolation_factor"] = scale
    timing["median_s"] = timing["median_s"] * scale
    timing["min_s"] = timing["min_s"] * scale
    row["note"] = note + ("; " + row["note"] if row["note"] else "")
    row["threads"] = _timing.cpu_threads()
    return _finish(row, case, timing)


def add_ratios(rows: list[dict]) -> None:
    """ratio_vs_gpuenhance = row time / gpuenhance time, same case, same device kind.

    Above 1: gpuenhance is that many times faster. GPU gpuenhance rows also get
    ``ratio_vs_gpuenhance_cpu`` (CPU engine time / CUDA engine time).
    """
    ref: dict[tuple, float] = {}
    for r in rows:
        if r["is_gpuenhance"] and r["status"] == "ok" and r["median_s"]:
            ref[(r["case"], r["device"])] = r["median_s"]
    for r in rows:
        t = r.get("median_s")
        g = ref.get((r["case"], r["device"]))
        r["ratio_vs_gpuenhance"] = (t / g) if (t and g and r["status"] == "ok") else None
        if r["is_gpuenhance"] and r["device"] == "gpu":
            c = ref.get((r["case"], "cpu"))
            r["ratio_vs_gpuenhance_cpu"] = (c / t) if (c and t) else None


def row_summary(row: dict) -> dict[str, Any]:
    """The fields worth attaching to a pytest-benchmark record."""
    keys = (
        "status",
        "note",
        "median_s",
        "mpix_s",
        "gb_s",
        "pct_copy_bw",
        "copy_gb_s",
        "peak_pool_mib",
        "peak_extra_mib",
        "torch_peak_extra_mib",
        "host_rss_mib",
        "host_peak_rss_mib",
        "runs",
        "timer",
        "rotation_copies",
        "steps_per_s",
        "extrapolated",
        "extrapolation_factor",
        "measured_s",
        "threads",
        "cpu_use",
    )
    return {k: row[k] for k in keys if k in row}
