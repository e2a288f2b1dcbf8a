"""Timing and resource helpers shared by the pytest suites and ``bench.report``.

CPU: wall time with ``time.perf_counter``, one warm-up, the median of repeated runs; the
thread count OpenCV uses is recorded with every row.

GPU: CUDA events around each run on the current stream, warm-up runs first, the median of
at least 20 runs; the inputs rotate among enough distinct copies that the whole rotation set
is larger than twice the L2 cache (and at least 128 MiB), so a run never reads an input that
the previous run left in L2. Each GPU row also carries achieved GB/s (from the bytes the op
must read and write at least once) and that as a percentage of the device-to-device copy
bandwidth measured in the same process, the peak of the CuPy memory pool during one call,
and host RSS.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any, Callable, Sequence

MIB = 1 << 20
GPU_MIN_RUNS = 20
ROTATION_MIN_BYTES = 128 * MIB


# ----------------------------------------------------------------------------- host


def host_rss_mib() -> float | None:
    """Current resident set size of this process in MiB (psutil when installed)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / MIB
    except Exception:
        return None


class RssSampler:
    """Peak resident set size of this process while the ``with`` block runs, sampled every
    *interval* seconds on a thread (psutil), in MiB; ``peak_mib`` is None without psutil."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak_mib = None
        self._stop = None

    def __enter__(self):
        import threading

        try:
            import psutil
        except ImportError:
            return self
        proc = psutil.Process()
        self._stop = threading.Event()
        self.peak_mib = proc.memory_info().rss / MIB

        def sample():
            while not self._stop.wait(self.interval):
                self.peak_mib = max(self.peak_mib, proc.memory_info().rss / MIB)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._stop is not None:
            self._stop.set()
            self._thread.join()
        return False


def host_peak_rss_mib() -> float:
    """Peak resident set size of this process so far (getrusage; KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (MIB if sys.platform == "darwin" else 1024)


def host_available_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None


def cpu_threads() -> dict:
    """Threads the CPU peers may use: OpenCV's setting and the cores this process may run on."""
    info: dict[str, Any] = {"os_cpu_count": os.cpu_count()}
    try:
        info["affinity_cores"] = len(os.sched_getaffinity(0))
    except AttributeError:
        info["affinity_cores"] = os.cpu_count()
    try:
        import cv2

        info["cv2_threads"] = cv2.getNumThreads()
    except Exception:
        info["cv2_threads"] = None
    return info


@contextlib.contextmanager
def cv2_threads(n: int | None):
    """OpenCV's pool held to *n* threads inside the block (None: left as it is)."""
    if n is None:
        yield
        return
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(n)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def time_cpu(
    fn: Callable[..., Any],
    inputs: Sequence[tuple],
    *,
    smoke: bool = False,
    target_s: float = 1.0,
    min_runs: int = 3,
    max_runs: int = 20,
    settle_s: float = 0.0,
) -> dict:
    """Median wall time of ``fn(*inputs[i % len(inputs)])``.

    One warm-up call, then as many runs as fit in about *target_s* (between *min_runs* and
    *max_runs*). In smoke mode: a single call, no warm-up.

    *settle_s*: after the pause that lets OpenCV's pool threads fall asleep, keep calling
    *fn* (untimed) for this long before the timed runs. On a virtual machine the first tens
    of milliseconds after an idle pause run slower (a 2-core EPYC VM: cv2.medianBlur 3x3 on
    512x512 took 72 us per call for 70 ms after a 50 ms pause, 53 us back to back), so
    without it short calls are timed in that state rather than the steady one a batch runs in.
    """
    n_in = len(inputs)
    if smoke:
        t0 = time.perf_counter()
        fn(*inputs[0])
        dt = time.perf_counter() - t0
        return {"median_s": dt, "min_s": dt, "runs": 1, "warmup": 0, "timer": "perf_counter"}
    t0 = time.perf_counter()
    fn(*inputs[0])
    first = time.perf_counter() - t0
    runs = int(min(max_runs, max(min_runs, target_s / max(first, 1e-9))))
    times = []
    # OpenCV's pool threads spin for 10-20 ms after a parallel call (the warm-up's, or the
    # previous row's) and that CPU time is not this call's: let them fall asleep first
    time.sleep(0.05)
    settle_end = time.perf_counter() + settle_s
    i = 0
    while time.perf_counter() < settle_end:
        fn(*inputs[i % n_in])
        i += 1
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    for i in range(runs):
        args = inputs[(i + 1) % n_in]
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    wall = time.perf_counter() - wall0
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "runs": runs,
        "warmup": 1,
        "timer": "perf_counter",
        # cores kept busy on average: process CPU time (all threads) / wall time of the runs
        "cpu_use": (time.process_time() - cpu0) / wall if wall > 0 else None,
    }


# ----------------------------------------------------------------------------- GPU


def gpu_available() -> str | None:
    """None when CuPy and a CUDA device work here, else the reason."""
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "CuPy sees no CUDA device"
        return None
    except Exception as exc:  # ImportError or a driver error
        return f"no GPU: {type(exc).__name__}: {exc}"


def gpu_l2_bytes() -> int:
    import cupy

    try:
        return int(cupy.cuda.Device().attributes["L2CacheSize"])
    except Exception:
        return 50 * MIB  # H100's 50 MiB as a conservative stand-in


def rotation_count(input_bytes: int, *, smoke: bool = False, max_copies: int = 512) -> int:
    """How many distinct input copies make a rotation set > 2x L2 and >= 128 MiB."""
    if smoke:
        return 1
    target = max(ROTATION_MIN_BYTES, 2 * gpu_l2_bytes() + 1)
    return int(min(max_copies, max(2 if input_bytes < target else 1, math.ceil(target / max(input_bytes, 1)))))


def time_gpu(
    fn: Callable[..., Any],
    inputs: Sequence[tuple],
    *,
    smoke: bool = False,
    warmup: int = 3,
    runs: int = GPU_MIN_RUNS,
    max_total_s: float = 20.0,
) -> dict:
    """Median of CUDA-event times of ``fn(*inputs[i % len(inputs)])`` on the current stream.

    Each run is bracketed by its own pair of events; the host does not wait between runs,
    so launch overhead that leaves the GPU idle inside a run is counted, host work between
    runs is not. *runs* is at least 20 (fewer only in smoke mode, or when one run is so long
    that 20 would exceed *max_total_s*; the row then records how many it had).
    """
    import cupy

    n_in = len(inputs)
    stream = cupy.cuda.get_current_stream()
    if smoke:
        warmup, runs = 1, 1
    for i in range(warmup):
        fn(*inputs[i % n_in])
    stream.synchronize()
    # one probe to bound the total time
    if not smoke:
        s, e = cupy.cuda.Event(), cupy.cuda.Event()
        s.record(stream)
        fn(*inputs[warmup % n_in])
        e.record(stream)
        e.synchronize()
        one = cupy.cuda.get_elapsed_time(s, e) / 1e3
        if one * runs > max_total_s:
            runs = max(3, int(max_total_s / max(one, 1e-9)))
    starts = [cupy.cuda.Event() for _ in range(runs)]
    ends = [cupy.cuda.Event() for _ in range(runs)]
    for i in range(runs):
        args = inputs[(warmup + 1 + i) % n_in]
        starts[i].record(stream)
        fn(*args)
        ends[i].record(stream)
    ends[-1].synchronize()
    times = [cupy.cuda.get_elapsed_time(s, e) / 1e3 for s, e in zip(starts, ends)]
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "runs": runs,
        "warmup": warmup,
        "timer": "cuda-events",
        "rotation_copies": n_in,
    }


class _PeakTracker:
    """Wraps the CuPy pool allocator to record the pool's high-water mark of used bytes."""

    def __init__(self):
        import cupy

        self.pool = cupy.get_default_memory_pool()
        self.baseline = self.pool.used_bytes()
        self.peak = self.baseline

    def malloc(self, size):
        mem = self.pool.malloc(size)
        used = self.pool.used_bytes()
        if used > self.peak:
            self.peak = used
        return mem


def gpu_peak_memory(fn: Callable[..., Any], args: tuple) -> dict:
    """Peak device memory of one call: CuPy pool high-water mark (and torch's, if loaded).

    ``peak_pool_mib`` is the pool's used bytes at its highest during the call;
    ``peak_extra_mib`` is that minus what was in use before (inputs already resident).
    """
    import cupy

    out: dict[str, Any] = {}
    cupy.cuda.get_current_stream().synchronize()
    tracker = _PeakTracker()
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            torch.cuda.reset_peak_memory_stats()
            torch_base = torch.cuda.memory_allocated()
        except Exception:
            torch = None
    cupy.cuda.set_allocator(tracker.malloc)
    try:
        res = fn(*args)
        cupy.cuda.get_current_stream().synchronize()
        del res
    finally:
        cupy.cuda.set_allocator(tracker.pool.malloc)
    out["peak_pool_mib"] = tracker.peak / MIB
    out["peak_extra_mib"] = (tracker.peak - tracker.baseline) / MIB
    if torch is not None:
        try:
            out["torch_peak_extra_mib"] = (torch.cuda.max_memory_allocated() - torch_base) / MIB
        except Exception:
            pass
    return out


_COPY_BW: dict[str, float] = {}


def copy_bandwidth_gbs(nbytes: int = 1 << 30, *, smoke: bool = False) -> dict:
    """Device-to-device copy bandwidth (GB/s, read + write counted) measured here, cached.

    Two figures: ``memcpy`` (cudaMemcpyAsync device to device) and ``elementwise``
    (``cupy.copyto``); the reference for the roofline column is the larger.
    """
    if "ref" in _COPY_BW:
        return dict(_COPY_BW)
    import cupy

    if smoke:
        nbytes = 16 * MIB
    a = cupy.ones(nbytes, dtype=cupy.uint8)
    b = cupy.empty_like(a)
    t_memcpy = time_gpu(lambda x, y: y.data.copy_from_device_async(x.data, nbytes), [(a, b)], smoke=smoke)
    t_elem = time_gpu(lambda x, y: cupy.copyto(y, x), [(a, b)], smoke=smoke)
    del a, b
    cupy.get_default_memory_pool().free_all_blocks()
    _COPY_BW["memcpy"] = 2 * nbytes / t_memcpy["median_s"] / 1e9
    _COPY_BW["elementwise"] = 2 * nbytes / t_elem["median_s"] / 1e9
    _COPY_BW["ref"] = max(_COPY_BW["memcpy"], _COPY_BW["elementwise"])
    _COPY_BW["buffer_bytes"] = nbytes
    return dict(_COPY_BW)


def gpu_sync() -> None:
    import cupy

    cupy.cuda.get_current_stream().synchronize()


# ----------------------------------------------------------------------------- device / versions


def _version(mod: str) -> str | None:
    try:
        m = __import__(mod)
        return str(getattr(m, "__version__", "?"))
    except Exception:
        return None


def device_info() -> dict:
    """CPU model and cores, GPU name and driver (when one works), library versions."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu": cpu_threads(),
    }
    versions = {}
    for mod in (
        "gpuenhance",
        "numpy",
        "cv2",
        "scipy",
        "skimage",
        "cupy",
        "torch",
        "torchvision",
        "cvcuda",
        "pytest_benchmark",
        "matplotlib",
    ):
        versions[mod] = _version(mod)
    info["versions"] = versions
    problem = gpu_available()
    info["gpu"] = None
    info["gpu_problem"] = problem
    if problem is None:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"]
        drv = cupy.cuda.runtime.driverGetVersion()
        rt = cupy.cuda.runtime.runtimeGetVersion()
        info["gpu"] = {
            "name": name.decode() if isinstance(name, bytes) else str(name),
            "compute_capability": f"{props['major']}.{props['minor']}",
            "memory_gib": round(props["totalGlobalMem"] / 2**30, 1),
            "l2_bytes": gpu_l2_bytes(),
            "cuda_driver_api": f"{drv // 1000}.{(drv % 1000) // 10}",
            "cuda_runtime": f"{rt // 1000}.{(rt % 1000) // 10}",
            "driver": _nvidia_smi_driver(),
        }
    return info


def _nvidia_smi_driver() -> str | None:
    import subprocess

    try:
        res = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return res.stdout.strip().splitlines()[0] if res.returncode == 0 and res.stdout.strip() else None
    except Exception:
        return None


def device_label(info: dict) -> str:
    """Short file-name-safe device label: GPU name, or CPU model + core count."""
    import re

    if info.get("gpu"):
        label = info["gpu"]["name"]
    else:
        label = f"{info['cpu_model']}-{info['cpu'].get('affinity_cores')}c"
    label = re.sub(r"\(R\)|\(TM\)|CPU|Processor|@.*", "", label)
    return re.sub(r"[^A-Za-z0-9.]+", "-", label).strip("-").lower() or "unknown"
