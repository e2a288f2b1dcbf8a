"""One GPU check, for a session that is lent a GPU: correctness, sanitizers, throughput.

Run from a source checkout on the GPU machine (nothing is downloaded; wheels that the machine
lacks, e.g. nvImageCodec, are installed beforehand with ``pip install --target DIR`` and put on
``PYTHONPATH``)::

    PYTHONPATH=.:$WHEELS python -m bench.gpu_check --out bench/results/gpu-check

Steps, each with its own time limit so the whole stays under about five minutes:

1. the machine: ``nvidia-smi``, driver, CuPy, nvImageCodec, OpenCV versions;
2. ``pytest -m gpu tests`` — every CUDA case of the equivalence suite and the nvImageCodec tests;
3. ``compute-sanitizer`` memcheck, racecheck and synccheck over the CUDA filter, fusion and
   device-path tests (``--skip-sanitizer`` leaves them out);
4. the file throughput table (``bench/throughput.py``) on a folder of 1080p JPEGs and one of
   PNGs: the CPU engine, the plain OpenCV loops, and the CUDA engine with JPEGs decoded by
   nvImageCodec and by OpenCV.

Everything is written under ``--out`` (``check.md`` and ``check.json``, the logs of each step);
commit that folder with the device named in its name. The exit code is 0 when every step passed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SANITIZED = ["tests/test_cuda_filters.py", "tests/test_fusion.py", "tests/test_device_path.py"]


def _run(cmd: list[str], log: Path, timeout: float, env=None) -> dict:
    """Run *cmd* in the checkout with its output in *log*; status, exit code and seconds."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        try:
            rc = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                                timeout=timeout, env=env).returncode
            status = "passed" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            rc, status = None, f"timed out after {timeout:.0f} s"
        except FileNotFoundError as exc:
            rc, status = None, f"not run: {exc}"
    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
    return {"cmd": " ".join(cmd), "status": status, "rc": rc,
            "seconds": round(time.perf_counter() - t0, 1), "tail": tail, "log": log.name}


def machine() -> dict:
    facts = {"python": sys.version.split()[0]}
    smi = shutil.which("nvidia-smi")
    if smi:
        out = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True)
        facts["gpus"] = out.stdout.strip().splitlines()
    for name, mod in (("cupy", "cupy"), ("opencv", "cv2"), ("numpy", "numpy"),
                      ("nvimgcodec", "nvidia.nvimgcodec")):
        try:
            module = __import__(mod, fromlist=["__version__"])
            facts[name] = getattr(module, "__version__", "?")
        except Exception as exc:  # noqa: BLE001 - recorded, not fatal
            facts[name] = f"not importable: {type(exc).__name__}: {exc}"
    from gpuenhance.batch.codecs import gpu_codec_problem

    facts["gpu_codec"] = gpu_codec_problem() or "available"
    return facts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu-check")
    ap.add_argument("--n", type=int, default=400, help="images per throughput folder")
    ap.add_argument("--skip-sanitizer", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    doc = {"machine": machine(), "steps": {}}
    steps = doc["steps"]
    steps["gpu tests"] = _run([py, "-m", "pytest", "-q", "-m", "gpu", "tests", "-p",
                               "no:cacheprovider"], out / "gpu-tests.log", 150, env)
    if not args.skip_sanitizer:
        sanitizer = shutil.which("compute-sanitizer") or "compute-sanitizer"
        for tool, subset in (("memcheck", SANITIZED), ("racecheck", SANITIZED[:1]),
                             ("synccheck", SANITIZED[:1])):
            cmd = [sanitizer, f"--tool={tool}", "--error-exitcode=1", py, "-m", "pytest", "-q",
                   "-x", "-m", "gpu", *subset, "-p", "no:cacheprovider"]
            steps[f"compute-sanitizer {tool}"] = _run(cmd, out / f"sanitizer-{tool}.log", 90, env)
    if not args.skip_throughput:
        for formats in ("jpeg", "png"):
            js = out / f"throughput-{formats}.json"
            steps[f"throughput {formats}"] = _run(
                [py, "-m", "bench.throughput", "--n", str(args.n), "--formats", formats,
                 "--json", str(js)], out / f"throughput-{formats}.log", 240, env)
    (out / "check.json").write_text(json.dumps(doc, indent=1))
    lines = ["# GPU check", "", "Machine: " + json.dumps(doc["machine"]), "",
             "| step | status | seconds | last lines |", "|---|---|---|---|"]
    for name, step in steps.items():
        tail = " / ".join(step["tail"]).replace("|", "\\|")
        lines.append(f"| {name} | {step['status']} | {step['seconds']} | {tail} |")
    for formats in ("jpeg", "png"):
        log = out / f"throughput-{formats}.log"
        if log.exists():
            text = log.read_text(errors="replace")
            if "## End-to-end file throughput" in text:
                lines += ["", text[text.index("## End-to-end file throughput"):].strip()]
    (out / "check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(s["status"] == "passed" for s in steps.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
