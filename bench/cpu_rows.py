"""The CPU rows of issue 15, side by side: gpuenhance, gpuenhance on one thread, the peers.

    python -m bench.cpu_rows                          # -> bench/results/<date>-<device>-cpu-rows.*
    python -m bench.cpu_rows --before /tmp/base       # plus the engine of an older checkout
    python -m bench.cpu_rows --smoke --out /tmp/x     # tiny inputs, seconds, no claims

Minutes, not the full report's half hour: one image (batch 1) per case, only the cases the
issue names (``CASES``), every implementation of a case measured in turn, ``--rounds`` times
over (interleaved), each row the median of its rounds; long calls run once per round after
one warm-up. Every CPU cell carries the CPU use (process CPU time / wall time) and the
Markdown lists every case where gpuenhance is slower than the best CPU peer.

``--before PATH``: PATH holds an older gpuenhance exported as the package
``gpuenhance_before`` (``git archive <commit> gpuenhance | tar -x -C PATH`` then rename the
folder); its CPU *engine* functions are timed as the "gpuenhance before" column (engine
calls: the public wrapper, the same in both, is not part of it). That column is a
reference, not a peer.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import sys
from pathlib import Path

from . import _timing, report
from ._peers import Impl

CASES = (
    "median-ksize3-uint8-512-b1",
    "median-ksize3-uint8-1080p-b1",
    "median-ksize3-uint8-4K-b1",
    "median-ksize15-uint8-1080p-b1",
    "median-ksize15-uint8-4K-b1",
    "median-ksize5-float32-1080p-b1",
    "median-ksize5-float32-4K-b1",
    "median-ksize7-uint16-1080p-b1",
    "median-ksize7-float32-1080p-b1",
    "median-ksize15-uint16-1080p-b1",
    "median-ksize15-float32-1080p-b1",
    "median-ksize15-uint16-4K-b1",
    "median-ksize15-float32-4K-b1",
    "gaussian-sigma2.0-uint8-4K-b1",
    "gaussian-sigma2.0-float32-4K-b1",
    "lut-uint8-4K-b1",
    "lut-uint16-1080p-b1",
    "lut-uint16-4K-b1",
    "gamma-gamma0.6-uint8-4K-b1",
    "gamma-gamma0.6-float32-1080p-b1",
    "gamma-gamma0.6-float32-4K-b1",
)
SMOKE_CASES = tuple(c.rsplit("-", 2)[0] + "-smoke-b1" for c in CASES)
FAMILIES = ("median", "gaussian", "lut", "gamma")


def _before_impl(path: str) -> Impl:
    """The CPU engine of the gpuenhance exported under *path* as ``gpuenhance_before``."""

    def make(case):
        if path not in sys.path:
            sys.path.insert(0, path)
        filters = importlib.import_module("gpuenhance_before._cpu.filters")
        tone = importlib.import_module("gpuenhance_before._cpu.tone")
        p = case.params
        if case.family == "median":
            return (lambda img: filters.median_filter(img, p["ksize"], "replicate")), _same
        if case.family == "gaussian":
            from gpuenhance import _gauss

            kx, ky, sx, sy = _gauss.resolve(0, p["sigma"], None, case.dtype)
            return (lambda img: filters.gaussian_filter(img, kx, ky, sx, sy, "reflect_101")), _same
        if case.family == "lut":
            return (lambda img, lut: tone.apply_lut(img, lut)), _same
        if case.family == "gamma":
            return (lambda img: tone.gamma_correct(img, p["gamma"], 1.0)), _same
        raise KeyError(case.family)

    return Impl("gpuenhance before", "cpu", make, note=f"CPU engine of {path}",
                extra={"reference": True})


def _same(args):
    return args


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cpu_rows",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--before", default=None, help="folder holding gpuenhance_before")
    ap.add_argument("--cpu-cap-s", type=float, default=40.0,
                    help="skip a call estimated above this many seconds (default 40)")
    ap.add_argument("--cases", default=None, help="comma-separated fnmatch patterns (subset)")
    ap.add_argument("--peers", default=None,
                    help="comma-separated fnmatch patterns of peer names to keep, e.g. 'cv2.*' "
                         "(default: every peer)")
    ap.add_argument("--smoke", action="store_true", help="tiny inputs, one call each")
    ap.add_argument("--settle-s", type=float, default=0.2,
                    help="untimed calls for this long before each timing, after the idle "
                         "pause (default 0.2; 0: the timing starts right after the pause)")
    ap.add_argument("--out", type=Path, default=report.RESULTS)
    ap.add_argument("--tag", default=None, help="suffix of the output file names")
    args = ap.parse_args(argv)

    chosen = SMOKE_CASES if args.smoke else CASES
    if args.cases:
        import fnmatch

        pats = [p.strip() for p in args.cases.split(",") if p.strip()]
        chosen = tuple(c for c in chosen if any(fnmatch.fnmatchcase(c, p) for p in pats))
    extra = {}
    if args.before:
        extra = {fam: [_before_impl(str(Path(args.before).resolve()))] for fam in FAMILIES}

    def timer(fn, inputs):  # long calls: one warm-up and one run per round
        return _timing.time_cpu(fn, inputs, smoke=args.smoke, min_runs=1, max_runs=9,
                                settle_s=args.settle_s)

    info = _timing.device_info()
    stem = f"{_dt.date.today().isoformat()}-{_timing.device_label(info)}-cpu-rows" + (
        "-smoke" if args.smoke else "") + (f"-{args.tag}" if args.tag else "")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = report.run_speed(FAMILIES, smoke=args.smoke, device="cpu", cpu_cap_s=args.cpu_cap_s,
                            cases=list(chosen), rounds=args.rounds, single_thread=True,
                            extra_impls=extra, cpu_timer=timer,
                            impls_only=[p.strip() for p in args.peers.split(",")]
                            if args.peers else None)
    doc = {"schema": 1, "date": _dt.datetime.now().isoformat(timespec="seconds"),
           "command": " ".join(["python", "-m", "bench.cpu_rows"] + list(argv or sys.argv[1:])),
           "device": info, "rounds": args.rounds, "cases": list(chosen), "rows": rows,
           "slower_than_best_peer": report.slower_than_best_peer(rows)}
    (args.out / f"{stem}.json").write_text(json.dumps(report._jsonable(doc), indent=1))
    md = [f"# gpuenhance CPU rows — {stem}\n",
          f"- CPU: {info['cpu_model']} ({info['cpu']})",
          "- versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v),
          f"- {args.rounds} interleaved rounds per case, median of the rounds; "
          "`gpuenhance 1 thread` = the same engine inside `limit_threads(1)`, OpenCV's pool "
          "held to one thread too (`cv2.setNumThreads(1)`)"
          + ("; `gpuenhance before` = the CPU engine before this change" if args.before else ""),
          f"- each timing: one warm-up call, a 50 ms pause, {args.settle_s:g} s of untimed calls "
          "(the steady state a batch runs in), then the timed calls",
          "- these two columns are references: never the best peer; their (×r) is their time "
          "over gpuenhance's"]
    if args.smoke:
        md.append("- **smoke run: tiny inputs, one call each; the times mean nothing**")
    md.append(report.speed_markdown(rows))
    (args.out / f"{stem}.md").write_text("\n".join(md) + "\n")
    print(f"wrote {args.out / stem}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

