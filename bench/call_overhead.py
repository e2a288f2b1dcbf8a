"""The public wrapper's fixed cost per call: ``gpuenhance.median_filter(img, 3)`` against the
``cv2.medianBlur(img, 3)`` it ends in, on an 8 x 8 image (all overhead) and on 512² uint8.

    python -m bench.call_overhead                       # this checkout
    python -m bench.call_overhead --before /tmp/base    # and an older one, alternated

Each measurement is a loop of calls timed in process CPU time (less disturbed than wall time
on a shared machine), gpuenhance and cv2 alternating, ``--rounds`` times; the cell is the
median per call. ``--before PATH``: PATH holds an older ``gpuenhance`` package (``git archive
<commit> gpuenhance | tar -x -C PATH``); it runs in a child process with ``PYTHONPATH=PATH``,
alternating with a child of this checkout, so both see the machine alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = {"8x8": ((8, 8), 3000), "512": ((512, 512), 200)}


def measure(rounds: int, smoke: bool = False) -> dict:
    """``{case: {"gpuenhance": s, "cv2": s}}``: median CPU seconds per call."""
    import cv2
    import numpy as np

    import gpuenhance as ge

    rng = np.random.default_rng(0)
    out = {}
    for name, (hw, reps) in CASES.items():
        img = rng.integers(0, 256, hw, dtype=np.uint8)
        reps = 1 if smoke else reps
        calls = {"gpuenhance": lambda: ge.median_filter(img, 3),
                 "cv2": lambda: cv2.medianBlur(img, 3)}
        times: dict[str, list] = {k: [] for k in calls}
        for _ in range(rounds):
            for key, fn in calls.items():
                fn()
                c0 = time.process_time()
                for _ in range(reps):
                    fn()
                times[key].append((time.process_time() - c0) / reps)
        out[name] = {k: statistics.median(v) for k, v in times.items()}
    return out


def _child(path: str | None, rounds: int, smoke: bool) -> dict:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([path or root, root])
    args = [sys.executable, "-m", "bench.call_overhead", "--child", "--rounds", str(rounds)]
    # cwd first on the child's sys.path (``-m``): the checkout whose gpuenhance is timed
    res = subprocess.run(args + (["--smoke"] if smoke else []), env=env, cwd=path or root,
                         capture_output=True, text=True, check=True)
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    want = Path(path or root).resolve()
    if Path(doc.pop("package")).resolve().parents[1] != want:
        raise RuntimeError(f"the child imported gpuenhance from outside {want}")
    return doc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.call_overhead",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--before", default=None, help="folder holding an older gpuenhance")
    ap.add_argument("--alternations", type=int, default=3,
                    help="with --before: children per checkout, alternated (default 3)")
    ap.add_argument("--smoke", action="store_true", help="one call per loop, no claims")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        import gpuenhance

        print(json.dumps({"package": gpuenhance.__file__, **measure(args.rounds, args.smoke)}))
        return 0
    runs: dict[str, list] = {"now": []}
    if args.before:
        runs["before"] = []
    for _ in range(args.alternations if args.before else 1):
        for label in runs:
            path = str(Path(args.before).resolve()) if label == "before" else None
            runs[label].append(_child(path, args.rounds, args.smoke))
    print("| checkout | case | gpuenhance.median_filter | cv2.medianBlur | overhead | ratio |")
    print("|---|---|---|---|---|---|")
    for label, docs in runs.items():
        for case in CASES:
            g = statistics.median(d[case]["gpuenhance"] for d in docs)
            c = statistics.median(d[case]["cv2"] for d in docs)
            print(f"| {label} | {case} | {g * 1e6:.1f} µs | {c * 1e6:.1f} µs | "
                  f"{(g - c) * 1e6:+.1f} µs | ×{c / g:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
