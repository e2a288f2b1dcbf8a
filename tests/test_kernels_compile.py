"""Every kernel compiles with NVRTC for sm_75/sm_80/sm_90 (no GPU needed), hot kernels do not
spill, and every kernels/*.cu file is claimed by a _cuda topic module's KERNELS.

The register/spill table of each compile is printed (see it with ``pytest -s`` or ``-rP``).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

pytest.importorskip(
    "cuda.bindings.nvrtc",
    reason="NVRTC compile checks need cuda-bindings and nvidia-cuda-nvrtc (pip install -e .[test])",
)

from gpuenhance._cuda import _nvrtc  # noqa: E402
from gpuenhance._cuda._loader import KernelError, kernel_dir, kernel_source  # noqa: E402

_problem = _nvrtc.nvrtc_problem()
pytestmark = pytest.mark.skipif(_problem is not None, reason=f"NVRTC unusable here: {_problem}")

ARCHS = ("sm_75", "sm_80", "sm_90")
TOPICS = ("filters", "tone", "restore", "roi", "contrast", "levels", "sharpen", "bilateral")
TEST_KERNELS = Path(__file__).parent / "emulator_kernels"


def _load_topics():
    """(modules by topic, missing topics, import errors by topic)."""
    modules, missing, errors = {}, [], {}
    for topic in TOPICS:
        name = f"gpuenhance._cuda.{topic}"
        try:
            modules[topic] = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                missing.append(topic)
            else:
                errors[topic] = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # reported by test_topic_modules_import
            errors[topic] = f"{type(exc).__name__}: {exc}"
    return modules, missing, errors


MODULES, MISSING, IMPORT_ERRORS = _load_topics()


def _claims() -> dict[str, list[str]]:
    """kernel file -> every name expression any topic module lists for it (order kept)."""
    claims: dict[str, list[str]] = {}
    for mod in MODULES.values():
        for filename, exprs in getattr(mod, "KERNELS", {}).items():
            bucket = claims.setdefault(filename, [])
            bucket.extend(e for e in exprs if e not in bucket)
    return claims


CLAIMS = _claims()
HOT = {e for mod in MODULES.values() for e in getattr(mod, "HOT_KERNELS", ())}
# Launched on compute capability 9.0+ only: checked for spills in the sm_90 compile.
HOT_SM90 = {e for mod in MODULES.values() for e in getattr(mod, "HOT_KERNELS_SM90", ())}
KERNEL_FILES = sorted(p.name for p in kernel_dir().glob("*.cu"))


def _skip_missing_topics():
    for topic in MISSING:
        pytest.skip(f"gpuenhance._cuda.{topic} does not exist yet")


@pytest.mark.parametrize("topic", TOPICS)
def test_topic_modules_import(topic):
    if topic in MISSING:
        pytest.skip(f"gpuenhance._cuda.{topic} does not exist yet")
    assert topic not in IMPORT_ERRORS, IMPORT_ERRORS.get(topic)
    mod = MODULES[topic]
    assert isinstance(getattr(mod, "KERNELS", None), dict), f"{mod.__name__} must define KERNELS"
    assert isinstance(getattr(mod, "HOT_KERNELS", None), tuple), f"{mod.__name__} must define HOT_KERNELS"
    for filename, exprs in mod.KERNELS.items():
        assert filename.endswith(".cu") and (kernel_dir() / filename).is_file(), (
            f"{mod.__name__}.KERNELS names {filename!r}, which is not a file in kernels/"
        )
        assert exprs and all(isinstance(e, str) and e for e in exprs), f"{filename}: empty name expressions"
    listed = {e for exprs in mod.KERNELS.values() for e in exprs}
    stray = [e for e in mod.HOT_KERNELS if e not in listed]
    assert not stray, f"{mod.__name__}.HOT_KERNELS not in its KERNELS: {stray}"


def test_every_kernel_file_is_claimed():
    _skip_missing_topics()
    unclaimed = [f for f in KERNEL_FILES if f not in CLAIMS]
    assert not unclaimed, f"kernels/*.cu files no _cuda topic module lists in KERNELS: {unclaimed}"


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("filename", KERNEL_FILES)
def test_kernel_file_compiles(filename, arch):
    exprs = CLAIMS.get(filename)
    if not exprs:
        if MISSING:
            pytest.skip(f"{filename} unclaimed; topic modules missing: {MISSING}")
        pytest.fail(f"kernels/{filename} is not listed in any _cuda topic module's KERNELS")
    report = _nvrtc.compile_report(filename, exprs, arch)
    print()
    print(report.table())
    assert set(report.kernels) == set(exprs)
    hot = HOT | HOT_SM90 if arch == "sm_90" else HOT
    spilling = [
        f"{e}: {k.spill_stores} B spill stores, {k.spill_loads} B spill loads"
        for e, k in report.kernels.items()
        if e in hot and k.spills
    ]
    assert not spilling, f"hot kernels of kernels/{filename} spill on {arch}:\n" + "\n".join(spilling)


def test_sm90_only_hot_kernels_are_claimed():
    # Kernels the host launches on compute capability 9.0+ only (HOT_KERNELS_SM90) are compiled
    # with their file and checked for spills by test_kernel_file_compiles[sm_90] (one compile).
    if not HOT_SM90:
        pytest.skip("no topic module lists sm_90-only kernels")
    claimed = {e for exprs in CLAIMS.values() for e in exprs}
    assert HOT_SM90 <= claimed, sorted(HOT_SM90 - claimed)


# ---------------------------------------------------------------------------------------------
# The check itself, on the test-only kernels
# ---------------------------------------------------------------------------------------------


def _test_source(name: str) -> str:
    text = (TEST_KERNELS / name).read_text()
    return re.sub(r'^#include "common.cuh"$', lambda m: kernel_source("common.cuh"), text, flags=re.M)


def test_report_on_a_kernel_that_compiles():
    exprs = (
        "gpuenhance_test_add<float>",
        "gpuenhance_test_transpose<16>",
        "gpuenhance_test_median<gpuenhance_u8, 1>",
        "gpuenhance_test_block_sum<double>",
        "gpuenhance_test_simd",  # the SIMD/byte-perm/funnel-shift intrinsics exist on the GPU
    )
    report = _nvrtc.compile_report("basics.cu", exprs, 80, source=_test_source("basics.cu"))
    print()
    print(report.table())
    assert report.arch == "sm_80"
    assert list(report.kernels) == list(exprs)
    for expr, k in report.kernels.items():
        assert 0 < k.registers <= 255
        assert k.spill_stores == 0 and k.spill_loads == 0 and k.stack_frame >= 0
        assert k.lowered_name.startswith("_Z") and k.lowered_name in k.log
    # tile[16][17] floats of static shared memory
    assert report.kernels["gpuenhance_test_transpose<16>"].shared_bytes == 16 * 17 * 4
    assert "Used" in report.log and "registers" in report.log


def test_report_parses_spills():
    log = (
        "ptxas info    : Compiling entry function '_Z1kv' for 'sm_90'\n"
        "ptxas info    : Function properties for _Z1kv\n"
        "ptxas         .     96 bytes stack frame, 24 bytes spill stores, 16 bytes spill loads\n"
        "ptxas info    : Used 255 registers, used 0 barriers, 2048 bytes smem\n"
    )
    entry = _nvrtc._parse_entries(log)["_Z1kv"]
    assert (entry["registers"], entry["stack_frame"], entry["spill_stores"], entry["spill_loads"]) == (255, 96, 24, 16)
    assert entry["shared_bytes"] == 2048


def test_report_on_a_kernel_that_fails():
    with pytest.raises(KernelError) as info:
        _nvrtc.compile_report("broken.cu", ("gpuenhance_test_broken",), "sm_75", source=_test_source("broken.cu"))
    msg = str(info.value)
    assert "broken.cu failed to compile with NVRTC for sm_75" in msg
    assert "gpuenhance_no_such_function" in msg and "undefined" in msg  # NVRTC's log quoted


def test_bad_arch_rejected():
    with pytest.raises(ValueError, match="arch"):
        _nvrtc.compile_report("basics.cu", ("gpuenhance_test_add<float>",), "ampere", source="")
