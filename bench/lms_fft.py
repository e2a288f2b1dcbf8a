"""The CPU engine's LMS FFTs: scipy.fft on the engine's threads against NumPy's FFT.

    python -m bench.lms_fft                       # -> bench/results/<date>-<device>-lms-fft.*
    python -m bench.lms_fft --smoke --out /tmp/x  # tiny inputs, one call each, no claims

The same ``LMSRestorer`` fit (one epoch, batch 8) and restore of 32 images of 512 x 512 run
with the engine's FFT as shipped (forward ``scipy.fft``, ``workers = num_threads()``) and with SciPy
hidden from the engine (NumPy's ``numpy.fft``), in interleaved rounds; each cell is the median
of its rounds with the CPU use (process CPU time / wall time) and the peak of Python-tracked
allocations during one call (``tracemalloc``: NumPy and SciPy arrays).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import statistics
import time
import tracemalloc
from pathlib import Path

from . import _timing, report


def _variants():
    from gpuenhance._cpu import restore as cpu_restore

    shipped = cpu_restore._scipy_fft
    out = {"numpy.fft": None}
    if shipped is not None:
        out["scipy.fft (workers)"] = shipped
    return cpu_restore, out


def _calls(deg, clean):
    import gpuenhance as ge

    model = ge.LMSRestorer(batch_size=8).fit(deg, clean, epochs=1)
    return {"fit": lambda: ge.LMSRestorer(batch_size=8).fit(deg, clean, epochs=1),
            "restore": lambda: model.restore(deg)}


def measure(n: int, hw: tuple[int, int], rounds: int) -> list[dict]:
    """Rows ``{op, fft, median_s, cpu_use, peak_mib}``; the variants alternate every round."""
    from . import _cases

    case = _cases.Case("lms_fit", "x", hw, n, "float32", {"epochs": 1})
    deg, clean = case.make_inputs(0)
    cpu_restore, variants = _variants()
    shipped = cpu_restore._scipy_fft
    calls = _calls(deg, clean)
    samples: dict[tuple, list] = {}
    try:
        for _ in range(rounds):
            for op, fn in calls.items():
                for name, module in variants.items():
                    cpu_restore._scipy_fft = module
                    fn()  # warm-up
                    c0, w0 = time.process_time(), time.perf_counter()
                    fn()
                    wall = time.perf_counter() - w0
                    samples.setdefault((op, name), []).append(
                        (wall, (time.process_time() - c0) / wall))
        rows = []
        for (op, name), vals in samples.items():
            cpu_restore._scipy_fft = variants[name]
            tracemalloc.start()
            calls[op]()
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            rows.append({"op": op, "fft": name, "median_s": statistics.median(v[0] for v in vals),
                         "cpu_use": statistics.median(v[1] for v in vals), "peak_mib": peak,
                         "rounds": len(vals)})
    finally:
        cpu_restore._scipy_fft = shipped
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.lms_fft",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="4 images of 32 x 48, one round")
    ap.add_argument("--out", type=Path, default=report.RESULTS)
    args = ap.parse_args(argv)
    n, hw, rounds = (4, (32, 48), 1) if args.smoke else (32, (512, 512), args.rounds)
    rows = measure(n, hw, rounds)
    info = _timing.device_info()
    stem = f"{_dt.date.today().isoformat()}-{_timing.device_label(info)}-lms-fft" + (
        "-smoke" if args.smoke else "")
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"date": _dt.datetime.now().isoformat(timespec="seconds"), "device": info,
           "images": [n, *hw], "rounds": rounds, "rows": rows}
    (args.out / f"{stem}.json").write_text(json.dumps(report._jsonable(doc), indent=1))
    md = [f"# CPU engine LMS FFTs — {stem}\n",
          f"- CPU: {info['cpu_model']} ({info['cpu']}); {n} images of {hw[0]} x {hw[1]}, "
          f"float32, 1 epoch, batch 8; {rounds} interleaved rounds, median",
          "", "| op | FFT | time [CPU use] | peak MiB (tracemalloc) |", "|---|---|---|---|"]
    md += [f"| {r['op']} | {r['fft']} | {r['median_s'] * 1e3:.1f} ms [{r['cpu_use']:.1f}] | "
           f"{r['peak_mib']:.0f} |" for r in rows]
    if args.smoke:
        md.append("\n**smoke run: tiny inputs; the numbers mean nothing**")
    (args.out / f"{stem}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
