"""Static SASS facts of the CUDA kernels, without a GPU (the numbers of bench/PERF.md).

Compiles a kernel file with NVRTC for an architecture (as ``gpuenhance._cuda._nvrtc`` does,
same options), disassembles the CUBIN with ``nvdisasm`` (PyPI: nvidia-cuda-nvdisasm, in the bench extra)
and prints, per name expression, the registers and spills ptxas reports and the static SASS
instruction count: in total and the instructions of the kinds that matter (global and shared
loads/stores, integer min/max, byte permutes, funnel shifts, FMA/FADD, branches).

Static counts are of the code, not of its execution: a fully unrolled body executes once per
loop trip, staging loops once per chunk. Divide the count of an unrolled body by the outputs it
produces to get instructions per output (PERF.md does this by hand, per kernel); ``after_last_barrier``
counts the code after the kernel's last ``__syncthreads`` (for the tiled filters: the per-tile
selection and stores, the rare byte-wise edge stores included).

    PYTHONPATH=. python -m bench.sass median.cu sm_90 'gpuenhance_median_small_packed<3, 4, gpuenhance_u8x4, 0>'
    PYTHONPATH=. python -m bench.sass median.cu sm_90          # every name of filters.KERNELS
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from gpuenhance._cuda import _nvrtc
from gpuenhance._cuda._loader import NVRTC_OPTIONS, kernel_source

KINDS = {
    "LDG": r"^LDG", "STG": r"^STG", "LDS": r"^LDS", "STS": r"^STS",
    "IMNMX/VIMNMX": r"^V?IMNMX|^VMNMX", "PRMT": r"^PRMT", "SHF": r"^SHF",
    "FFMA/FADD/FMUL": r"^F(FMA|ADD|MUL)", "BRA": r"^BRA",
}


def _nvdisasm() -> str:
    found = shutil.which("nvdisasm")
    if found:
        return found
    import nvidia

    for root in nvidia.__path__:
        for cand in Path(root).glob("*/bin/nvdisasm"):
            return str(cand)
    raise SystemExit("nvdisasm not found: pip install nvidia-cuda-nvdisasm")


def cubin(filename: str, exprs, arch: str) -> tuple[bytes, dict[str, str], str]:
    """(CUBIN, lowered name by expression, ptxas log) of *exprs* in kernels/*filename*."""
    from cuda.bindings import nvrtc

    check = _nvrtc._check
    (prog,) = check(nvrtc.nvrtcCreateProgram(kernel_source(filename).encode(),
                                             filename.encode(), 0, [], []), "create")
    try:
        for e in exprs:
            check(nvrtc.nvrtcAddNameExpression(prog, e.encode()), "name")
        opts = [o.encode() for o in (*NVRTC_OPTIONS, f"-arch={arch}", "-Xptxas=-v")]
        (status,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        log = _nvrtc._program_log(nvrtc, prog)
        if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise SystemExit(log)
        lowered = {}
        for e in exprs:
            (name,) = check(nvrtc.nvrtcGetLoweredName(prog, e.encode()), "lowered")
            lowered[e] = name.decode() if isinstance(name, bytes) else str(name)
        (size,) = check(nvrtc.nvrtcGetCUBINSize(prog), "cubin size")
        buf = b" " * size
        check(nvrtc.nvrtcGetCUBIN(prog, buf), "cubin")
        return buf, lowered, log
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def sass_by_function(blob: bytes) -> dict[str, list[str]]:
    """Opcode list per mangled function name, from ``nvdisasm``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.cubin"
        path.write_bytes(blob)
        text = subprocess.run([_nvdisasm(), str(path)], capture_output=True,
                              text=True, check=True).stdout
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("//----"):  # a new section
            current = None
            continue
        m = re.match(r"\.text\.(\S+):$", line)
        if m:
            current = out.setdefault(m.group(1), [])
            continue
        m = re.match(r"\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", line)
        if m and current is not None and not m.group(1).startswith("NOP"):
            current.append(m.group(1))
    return out


def report(filename: str, exprs, arch: str) -> list[dict]:
    blob, lowered, log = cubin(filename, exprs, arch)
    entries = _nvrtc._parse_entries(log)
    sass = sass_by_function(blob)
    rows = []
    for e in exprs:
        ops = sass.get(lowered[e], [])
        kinds = collections.Counter()
        for op in ops:
            for kind, pattern in KINDS.items():
                if re.match(pattern, op):
                    kinds[kind] += 1
        info = entries.get(lowered[e], {})
        bars = [i for i, op in enumerate(ops) if op.startswith("BAR")]
        rows.append(dict(kernel=e, arch=arch, registers=info.get("registers"),
                         spill_bytes=info.get("spill_stores", 0) + info.get("spill_loads", 0),
                         sass=len(ops), after_last_barrier=len(ops) - 1 - bars[-1] if bars else "",
                         **{k: kinds[k] for k in KINDS}))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("arch")
    ap.add_argument("exprs", nargs="*")
    args = ap.parse_args(argv)
    exprs = args.exprs
    if not exprs:
        from gpuenhance._cuda import filters, tone

        exprs = {**filters.KERNELS, **tone.KERNELS}[args.file]
    rows = report(args.file, exprs, args.arch)
    cols = ["registers", "spill_bytes", "sass", "after_last_barrier", *KINDS]
    print("| kernel | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for r in rows:
        print(f"| `{r['kernel']}` | " + " | ".join(str(r[c]) for c in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
