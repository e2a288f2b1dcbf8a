"""Run the speed suites and the quality table; write JSON, Markdown and PNG plots.

    python -m bench.report                   # full run -> bench/results/<date>-<device>.{json,md,*.png}
    python -m bench.report --smoke           # tiny inputs, one run each -> a temp dir
    python -m bench.report --smoke --out /tmp/benchsmoke

The speed rows are measured by calling the timing helpers directly (bench._runner.measure),
the same code the pytest suites use. Nothing is faked: a peer that is not installed, a case a
library cannot do, a CPU call over the budget, or an op not implemented yet is a row with
that status and a note.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import fnmatch
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from . import _cases, _peers, _runner, _timing

RESULTS = Path(__file__).resolve().parent / "results"


def _selected(case_id: str, patterns) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(case_id, p) for p in patterns)


def _merge_rounds(rounds: list[dict]) -> dict:
    """One row from the same (case, impl) measured in several interleaved rounds: medians."""
    row = dict(rounds[-1])
    ok = [r for r in rounds if r["status"] == "ok" and r.get("median_s")]
    if len(rounds) == 1 or not ok:
        return row
    row = dict(ok[-1])
    t = statistics.median(r["median_s"] for r in ok)
    scale = t / row["median_s"]
    row["median_s"] = t
    row["min_s"] = min(r.get("min_s", t) for r in ok)
    row["runs"] = sum(r.get("runs", 1) for r in ok)
    row["rounds"] = len(ok)
    row["round_medians_s"] = [r["median_s"] for r in ok]
    uses = [r["cpu_use"] for r in ok if r.get("cpu_use") is not None]
    row["cpu_use"] = statistics.median(uses) if uses else None
    for key in ("mpix_s", "gb_s", "steps_per_s"):
        if row.get(key):
            row[key] = row[key] / scale
    return row


def run_speed(families, *, smoke, device, cpu_cap_s, log=print, cases=None, rounds=1,
              single_thread=False, extra_impls=None, cpu_timer=None,
              impls_only=None) -> list[dict]:
    """Measure every (case, impl); *cases*: fnmatch patterns of case ids (None: all).

    With ``rounds > 1`` the implementations of a case are measured in turn, *rounds* times
    over (interleaved, so a busy spell of the machine hits them alike), and each row keeps the
    median of its rounds. *single_thread* adds gpuenhance's CPU engine held to one thread;
    *extra_impls* maps a family to more implementations (placed after gpuenhance's);
    *impls_only*: fnmatch patterns of implementation names to keep (gpuenhance always kept).
    """
    rows: list[dict] = []
    for fam in families:
        impls = _peers.impls(fam)
        if single_thread:
            impls.insert(1, _peers.GPUENHANCE_CPU_1T)
        impls[1:1] = (extra_impls or {}).get(fam, [])
        impls = [i for i in impls if device == "all" or i.device == device]
        if impls_only:
            impls = [i for i in impls if i.name.startswith("gpuenhance")
                     or any(fnmatch.fnmatchcase(i.name, p) for p in impls_only)]
        for case in _cases.cases(fam, smoke=smoke):
            if not _selected(case.id, cases):
                continue
            measured: dict[str, list] = {i.label: [] for i in impls}
            t0 = time.perf_counter()
            for _ in range(max(1, rounds)):
                for impl in impls:
                    row = _runner.measure(case, impl, smoke=smoke, cpu_cap_s=cpu_cap_s,
                                          cpu_timer=cpu_timer)
                    row["reference"] = bool(impl.extra.get("reference"))
                    measured[impl.label].append(row)
            for impl in impls:
                row = _merge_rounds(measured[impl.label])
                rows.append(row)
                t = row.get("median_s")
                use = row.get("cpu_use")
                log(
                    f"  {case.id:<42} {impl.label:<46} "
                    + (f"{t * 1e3:10.3f} ms" if t else f"{row['status']:>13}")
                    + (f" [{use:.2f}]" if use is not None else "")
                )
            log(f"  ({time.perf_counter() - t0:.1f} s for {case.id})")
    _runner.add_ratios(rows)
    return rows


def slower_than_best_peer(rows: list[dict]) -> list[dict]:
    """Every case where gpuenhance (CPU engine) is slower than the fastest CPU peer.

    Extrapolated peers and references (gpuenhance on one thread) are not peers here.
    """
    out = []
    by_case: dict[str, list] = {}
    for r in rows:
        if r["device"] == "cpu" and r["status"] == "ok" and r.get("median_s"):
            by_case.setdefault(r["case"], []).append(r)
    for case_id, rs in by_case.items():
        ge = [r for r in rs if r["is_gpuenhance"]]
        peers = [r for r in rs if not r["is_gpuenhance"] and not r.get("reference")
                 and not r.get("extrapolated")]
        if not ge or not peers:
            continue
        best = min(peers, key=lambda r: r["median_s"])
        if ge[0]["median_s"] > best["median_s"]:
            out.append({"case": case_id, "family": ge[0]["family"],
                        "gpuenhance_s": ge[0]["median_s"], "peer": best["impl"],
                        "peer_s": best["median_s"],
                        "ratio": best["median_s"] / ge[0]["median_s"],
                        "gpuenhance_cpu_use": ge[0].get("cpu_use"),
                        "peer_cpu_use": best.get("cpu_use")})
    return out


def slower_markdown(rows: list[dict]) -> str:
    slow = slower_than_best_peer(rows)
    cpu_cases = {r["case"] for r in rows if r["device"] == "cpu" and r["is_gpuenhance"]}
    if not cpu_cases:
        return ""
    out = ["\n### CPU rows where gpuenhance is slower than the best CPU peer\n"]
    if not slow:
        out.append(f"None of the {len(cpu_cases)} CPU cases measured.")
        return "\n".join(out)
    out.append("(×r) = peer time / gpuenhance time (< 1: gpuenhance slower); [u] = CPU use "
               "(process CPU time / wall time).\n")
    out.append("| case | gpuenhance[cpu] | best peer | peer time |")
    out.append("|---|---|---|---|")
    for s_ in slow:
        gu = s_["gpuenhance_cpu_use"]
        pu = s_["peer_cpu_use"]
        out.append(f"| {s_['case']} | {_fmt_time(s_['gpuenhance_s'])}"
                   + (f" [{gu:.1f}]" if gu is not None else "")
                   + f" | {s_['peer']} | {_fmt_time(s_['peer_s'])} (×{s_['ratio']:.2f})"
                   + (f" [{pu:.1f}]" if pu is not None else "") + " |")
    return "\n".join(out)


# ----------------------------------------------------------------------------- Markdown


def _fmt_time(t):
    if t is None:
        return "-"
    if t >= 1:
        return f"{t:.2f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.2f} ms"
    return f"{t * 1e6:.1f} µs"


def _cell(r):
    if r["status"] != "ok":
        return {"skipped": "skip", "unsupported": "n/a", "not implemented": "not impl.", "error": "error"}[r["status"]]
    s = _fmt_time(r["median_s"])
    if r.get("extrapolated"):
        s += "*"
    if r.get("ratio_vs_gpuenhance") and not r["is_gpuenhance"]:
        s += f" (×{r['ratio_vs_gpuenhance']:.2f})"
    if r["device"] == "cpu" and r.get("cpu_use") is not None:
        s += f" [{r['cpu_use']:.1f}]"
    if r.get("slower_than_best_peer"):
        s += " **slower**"
    if r["device"] == "gpu" and r.get("pct_copy_bw") is not None:
        s += f" [{r['gb_s']:.0f} GB/s, {r['pct_copy_bw']:.0f}%]"
    if r["family"] == "patch_sgd" and r.get("steps_per_s"):
        s += f" {r['steps_per_s']:.1f} steps/s"
    return s


def speed_markdown(rows: list[dict]) -> str:
    out = []
    slow = {s_["case"] for s_ in slower_than_best_peer(rows)}
    for r in rows:
        r["slower_than_best_peer"] = (r["is_gpuenhance"] and r["device"] == "cpu"
                                      and r["case"] in slow)
    for fam in _cases.FAMILIES:
        frows = [r for r in rows if r["family"] == fam]
        if not frows:
            continue
        labels = []
        for r in frows:
            lab = f"{r['impl']}[{r['device']}]"
            if lab not in labels:
                labels.append(lab)
        # a column that is skipped on every row (not installed, no GPU) only clutters: see Notes
        labels = [l for l in labels
                  if any(f"{r['impl']}[{r['device']}]" == l and r["status"] != "skipped" for r in frows)]
        if not labels:
            continue
        out.append(f"\n### {_cases.OP_NAMES[fam]}\n")
        out.append("Median time per call; (×r) = peer time / gpuenhance time on the same device "
                   "(r > 1: gpuenhance faster); CPU cells add [CPU use = process CPU time / wall "
                   "time]; **slower** marks a gpuenhance CPU row slower than the best CPU peer; "
                   "GPU cells add [GB/s, % of copy bandwidth]; * = extrapolated (see notes).\n")
        out.append("| case | " + " | ".join(labels) + " |")
        out.append("|---" * (len(labels) + 1) + "|")
        by_case: dict[str, dict] = {}
        for r in frows:
            by_case.setdefault(r["case"], {})[f"{r['impl']}[{r['device']}]"] = r
        for case_id, cells in by_case.items():
            out.append(f"| {case_id} | " + " | ".join(_cell(cells[l]) if l in cells else "" for l in labels) + " |")
    out.append(slower_markdown(rows))
    notes = {}
    for r in rows:
        if r["status"] != "ok" or r.get("extrapolated"):
            key = (f"{r['impl']}[{r['device']}]", r["status"], r["note"])
            notes[key] = notes.get(key, 0) + 1
    if notes:
        out.append("\n### Notes (skips, unsupported cases, extrapolations)\n")
        for (lab, status, note), n in sorted(notes.items()):
            out.append(f"- {lab} — {status} ×{n}: {note}")
    return "\n".join(out)


def quality_markdown(q: dict) -> str:
    if not q:
        return ""
    out = ["\n## Restoration quality\n", q.get("description", ""), ""]
    if q.get("status") != "ok":
        out.append(f"Quality table: {q.get('status')}: {q.get('note', '')}")
        return "\n".join(out)
    methods = q["methods"]
    out.append("PSNR dB / SSIM on the test images (borders cropped). LMS check: PASS when LMS is within "
               "0.5 dB of the oracle Wiener and no more than 0.1 dB below the tuned parametric Wiener "
               "and the inverse filter; the gaps are LMS minus each.\n")
    out.append("| colour | degradation | noise σ | " + " | ".join(methods) + " | LMS check (Δoracle, Δparam, Δinverse) |")
    out.append("|---" * (len(methods) + 4) + "|")
    for r in q["rows"]:
        cells = []
        for m in methods:
            v = r["methods"].get(m)
            cells.append("-" if v is None else (v.get("status") or f"{v['psnr']:.2f} / {v['ssim']:.3f}"))
        chk = r.get("lms_check", {})
        verdict = chk.get("verdict", "-")
        gaps = ", ".join(f"{chk[k]:+.2f}" if chk.get(k) is not None else "-" for k in ("gap_oracle", "gap_param", "gap_inverse"))
        out.append(f"| {r['colour']} | {r['degradation']} | {r['noise']} | " + " | ".join(cells) + f" | {verdict} ({gaps}) |")
    if q.get("enhance_roi"):
        out.append("\n### enhance_roi against the least-squares optimum\n")
        out.append("| image | ROI MSE (SGD) | ROI MSE (LS optimum) | relative gap | PSNR degraded | PSNR SGD | PSNR LS | steps run |")
        out.append("|---|---|---|---|---|---|---|---|")
        for e in q["enhance_roi"]:
            if e.get("status") != "ok":
                out.append(f"| {e['image']} | {e.get('status')}: {e.get('note', '')} |||||||")
                continue
            out.append(
                f"| {e['image']} | {e['mse_sgd']:.3e} | {e['mse_ls']:.3e} | {e['rel_gap']:+.2%} | "
                f"{e['psnr_degraded']:.2f} | {e['psnr_sgd']:.2f} | {e['psnr_ls']:.2f} | {e['steps_run']} |"
            )
    return "\n".join(out)


# ----------------------------------------------------------------------------- plots


def plots(rows: list[dict], out_dir: Path, stem: str) -> tuple[list[str], str | None]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as exc:
        return [], f"plots skipped: matplotlib not importable ({type(exc).__name__}: {exc})"
    files = []
    for fam in _cases.FAMILIES:
        frows = [r for r in rows if r["family"] == fam and r["status"] == "ok" and r.get("mpix_s")]
        if not frows:
            continue
        panels = sorted({(r["dtype"], r["batch"]) for r in frows})
        fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
        for ax, (dtype, batch) in zip(axes[0], panels):
            series: dict[str, list] = {}
            for r in frows:
                if (r["dtype"], r["batch"]) != (dtype, batch):
                    continue
                p = ",".join(f"{k}={v}" for k, v in r["params"].items() if k in ("ksize", "sigma"))
                key = f"{r['impl']}[{r['device']}]" + (f" {p}" if p else "")
                series.setdefault(key, []).append((r["hw"][0] * r["hw"][1] / 1e6, r["mpix_s"]))
            for key, pts in sorted(series.items()):
                pts.sort()
                ls = "-" if "gpuenhance" in key else "--"
                ax.plot([p[0] for p in pts], [p[1] for p in pts], ls, marker="o", label=key)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("image size (MPix per image)")
            ax.set_ylabel("throughput (MPix/s)")
            ax.set_title(f"{_cases.OP_NAMES[fam]} {dtype} batch {batch}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=6)
        fig.tight_layout()
        path = out_dir / f"{stem}-{fam}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(str(path))
    return files, None


# ----------------------------------------------------------------------------- main


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        try:
            return _jsonable(x.item())
        except Exception:
            return str(x)
    return x


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny inputs, one run each (no timing claims)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output folder (default: bench/results, or a temp dir with --smoke)")
    ap.add_argument("--families", default=",".join(_cases.FAMILIES),
                    help=f"comma-separated subset of {','.join(_cases.FAMILIES)}")
    ap.add_argument("--device", choices=("all", "cpu", "gpu"), default="all",
                    help="which implementations to time")
    ap.add_argument("--cpu-cap-s", type=float, default=_runner.DEFAULT_CPU_CAP_S,
                    help="skip a CPU call estimated to take longer than this many seconds")
    ap.add_argument("--no-quality", action="store_true", help="skip the restoration-quality table")
    ap.add_argument("--no-throughput", action="store_true",
                    help="skip the end-to-end file throughput section (bench/throughput.py)")
    ap.add_argument("--throughput-n", type=int, default=None,
                    help="images in the throughput folder (default 1000 at 1080p; smoke 6 tiny)")
    ap.add_argument("--no-speed", action="store_true", help="skip the speed suites")
    ap.add_argument("--cases", default=None,
                    help="comma-separated fnmatch patterns of case ids to measure "
                         "(e.g. 'median-ksize15-*-4K-b1,lut-uint16-*'); default: all")
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure each case's implementations this many times, interleaved, "
                         "and keep the median (default 1)")
    ap.add_argument("--single-thread", action="store_true",
                    help="add gpuenhance's CPU engine held to one thread (limit_threads(1))")
    ap.add_argument("--stem", default=None, help="output file name stem (default <date>-<device>)")
    args = ap.parse_args(argv)

    out_dir = args.out or (Path(tempfile.mkdtemp(prefix="gpuenhance-bench-")) if args.smoke else RESULTS)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = _timing.device_info()
    stem = args.stem or (f"{_dt.date.today().isoformat()}-{_timing.device_label(info)}"
                         + ("-smoke" if args.smoke else ""))
    print(f"device: {info['gpu']['name'] if info['gpu'] else info['cpu_model']}; output: {out_dir}/{stem}.*")

    t_start = time.perf_counter()
    families = [f for f in args.families.split(",") if f]
    unknown = set(families) - set(_cases.FAMILIES)
    if unknown:
        ap.error(f"unknown families: {sorted(unknown)}")
    patterns = [p.strip() for p in args.cases.split(",") if p.strip()] if args.cases else None
    rows = [] if args.no_speed else run_speed(families, smoke=args.smoke, device=args.device,
                                              cpu_cap_s=args.cpu_cap_s, cases=patterns,
                                              rounds=args.rounds,
                                              single_thread=args.single_thread)
    copy_bw = None
    if info["gpu"] and args.device != "cpu":
        copy_bw = _timing.copy_bandwidth_gbs(smoke=args.smoke)

    q: dict = {}
    if not args.no_quality:
        from . import quality

        print("quality table ...")
        q = quality.run(smoke=args.smoke, log=print)

    tp: dict = {}
    if not args.no_throughput:
        from . import throughput

        print("end-to-end throughput ...")
        try:
            tp = throughput.run(smoke=args.smoke, n=args.throughput_n, log=print)
        except Exception as exc:  # noqa: BLE001 - the section says what went wrong
            tp = {"status": "error", "note": f"{type(exc).__name__}: {exc}"}

    png, plot_note = plots(rows, out_dir, stem)
    doc = {
        "schema": 1,
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "smoke": args.smoke,
        "command": " ".join([os.path.basename(sys.executable), "-m", "bench.report"] + list(argv or sys.argv[1:])),
        "device": info,
        "copy_bandwidth_gb_s": copy_bw,
        "settings": {"cpu_cap_s": args.cpu_cap_s, "families": families, "device": args.device,
                     "cases": patterns, "rounds": args.rounds,
                     "single_thread": args.single_thread,
                     "gpu_min_runs": _timing.GPU_MIN_RUNS,
                     "rotation_min_bytes": _timing.ROTATION_MIN_BYTES},
        "rows": rows,
        "slower_than_best_peer": slower_than_best_peer(rows),
        "quality": q,
        "throughput": tp,
        "plots": png,
        "plot_note": plot_note,
        "wall_s": time.perf_counter() - t_start,
    }
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(_jsonable(doc), indent=1))

    md = [f"# gpuenhance benchmarks — {stem}\n"]
    md.append(f"- CPU: {info['cpu_model']} ({info['cpu']})")
    if info["gpu"]:
        g = info["gpu"]
        md.append(f"- GPU: {g['name']} (cc {g['compute_capability']}, {g['memory_gib']} GiB, driver {g['driver']}, "
                  f"CUDA driver API {g['cuda_driver_api']}, runtime {g['cuda_runtime']})")
        if copy_bw:
            md.append(f"- device-to-device copy bandwidth (this run): {copy_bw['ref']:.0f} GB/s "
                      f"(memcpy {copy_bw['memcpy']:.0f}, elementwise {copy_bw['elementwise']:.0f})")
    else:
        md.append(f"- GPU: none ({info['gpu_problem']})")
    md.append("- versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v))
    if args.smoke:
        md.append("- **smoke run: tiny inputs, one call each; the times mean nothing**")
    if plot_note:
        md.append(f"- {plot_note}")
    md.append(speed_markdown(rows))
    md.append(quality_markdown(q))
    if tp:
        from .throughput import markdown as throughput_markdown

        md.append(throughput_markdown(tp))
    md_path = out_dir / f"{stem}.md"
    md_path.write_text("\n".join(md) + "\n")
    print(f"wrote {json_path}\nwrote {md_path}" + "".join(f"\nwrote {p}" for p in png))
    if plot_note:
        print(plot_note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
