"""Offline NVRTC compile check: compile a kernel file for an architecture, read ptxas' report.

Needs only ``cuda-bindings`` and ``nvidia-cuda-nvrtc`` from PyPI — no GPU, no driver. Used by
tests/test_kernels_compile.py (every kernel compiles for sm_75/sm_80/sm_90; hot kernels do
not spill) and handy by hand::

    >>> from gpuenhance._cuda._nvrtc import compile_report        # doctest: +SKIP
    >>> rep = compile_report("median.cu", ("gpuenhance_median<gpuenhance_u8, 3>",), "sm_90")
    >>> print(rep.table())                                         # doctest: +SKIP
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ._errors import KernelError
from ._loader import NVRTC_OPTIONS, kernel_source

__all__ = ["KernelReport", "CompileReport", "compile_report", "nvrtc_problem", "nvrtc_version"]

_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '([^']+)'")
_REGS = re.compile(r"Used (\d+) registers")
_FRAME = re.compile(
    r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads"
)
_SMEM = re.compile(r"(\d+) bytes smem")


@dataclass(frozen=True)
class KernelReport:
    """ptxas' resource report of one entry function (one name expression)."""

    name_expression: str
    lowered_name: str
    registers: int
    spill_stores: int
    spill_loads: int
    stack_frame: int
    shared_bytes: int
    log: str

    @property
    def spills(self) -> bool:
        return self.spill_stores > 0 or self.spill_loads > 0


@dataclass(frozen=True)
class CompileReport:
    """The result of compiling one file for one architecture."""

    filename: str
    arch: str
    kernels: dict[str, KernelReport] = field(default_factory=dict)
    log: str = ""

    def table(self) -> str:
        """A fixed-width table: one row per name expression."""
        rows = [
            f"{'kernel':<60} {'arch':>6} {'regs':>5} {'stack':>6} {'spill st':>9} {'spill ld':>9} {'smem':>6}"
        ]
        for k in self.kernels.values():
            rows.append(
                f"{self.filename + ': ' + k.name_expression:<60} {self.arch:>6} {k.registers:>5} "
                f"{k.stack_frame:>6} {k.spill_stores:>9} {k.spill_loads:>9} {k.shared_bytes:>6}"
            )
        return "\n".join(rows)


def nvrtc_problem() -> str | None:
    """``None`` when NVRTC can be used here, else why not."""
    try:
        from cuda.bindings import nvrtc  # noqa: F401

        _check(nvrtc.nvrtcVersion(), "nvrtcVersion")
    except Exception as exc:  # ImportError, missing libnvrtc, ...
        return f"{type(exc).__name__}: {exc}"
    return None


def nvrtc_version() -> tuple[int, int]:
    from cuda.bindings import nvrtc

    result = _check(nvrtc.nvrtcVersion(), "nvrtcVersion")
    return int(result[0]), int(result[1])


def _check(result, what: str):
    """cuda.bindings returns (status, *values); raise on a bad status, return the values."""
    from cuda.bindings import nvrtc

    status, *values = result
    if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        _, msg = nvrtc.nvrtcGetErrorString(status)
        raise KernelError(f"{what} failed: {msg.decode() if isinstance(msg, bytes) else msg}")
    return values


def _arch_option(arch) -> str:
    text = str(arch).strip().lower()
    digits = re.fullmatch(r"(?:sm_|compute_)?(\d{2,3})a?", text)
    if not digits:
        raise ValueError(f"arch must look like 'sm_90' or 90, got {arch!r}")
    return f"sm_{digits.group(1)}"


def _program_log(nvrtc, prog) -> str:
    (size,) = _check(nvrtc.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
    buf = b" " * size
    _check(nvrtc.nvrtcGetProgramLog(prog, buf), "nvrtcGetProgramLog")
    return buf.rstrip(b"\0 ").decode(errors="replace")


def _parse_entries(log: str) -> dict[str, dict]:
    """Map mangled entry name -> resource numbers, from an ``-Xptxas=-v`` log."""
    entries: dict[str, dict] = {}
    current = None
    for line in log.splitlines():
        m = _ENTRY.search(line)
        if m:
            current = entries.setdefault(
                m.group(1),
                dict(registers=0, stack_frame=0, spill_stores=0, spill_loads=0, shared_bytes=0, log=[]),
            )
            current["log"].append(line)
            continue
        if current is None:
            continue
        current["log"].append(line)
        if m := _REGS.search(line):
            current["registers"] = int(m.group(1))
        if m := _FRAME.search(line):
            current["stack_frame"] = int(m.group(1))
            current["spill_stores"] = int(m.group(2))
            current["spill_loads"] = int(m.group(3))
        if m := _SMEM.search(line):
            current["shared_bytes"] = int(m.group(1))
    return entries


def compile_report(
    filename: str,
    name_expressions,
    arch="sm_90",
    *,
    source: str | None = None,
    options: tuple[str, ...] = (),
) -> CompileReport:
    """Compile ``kernels/<filename>`` with NVRTC for *arch* and report each name expression.

    Parameters
    ----------
    filename : str
        A kernel file (``"median.cu"``); its text comes from ``kernel_source(filename)``
        (local includes inlined) unless *source* is given.
    name_expressions : iterable of str
        The instantiations to compile, as for ``cupy.RawModule(name_expressions=...)``; all in
        one program.
    arch : str or int
        ``"sm_75"``, ``"sm_80"``, ``90``, ...
    source : str, optional
        The source text to compile instead of the file's (used to test the check itself).
    options : tuple of str
        Extra NVRTC options, after the loader's ``NVRTC_OPTIONS``.

    Returns
    -------
    CompileReport
        ``.kernels[name_expression]`` gives registers, spill stores/loads (bytes), stack frame
        (bytes), static shared memory (bytes) and that entry's lines of the ptxas log.

    Raises
    ------
    KernelError
        The file does not compile (the message names the file and quotes NVRTC's log), or
        NVRTC is missing.
    """
    try:
        from cuda.bindings import nvrtc
    except ImportError as exc:
        raise KernelError(f"NVRTC is not available (pip install cuda-bindings nvidia-cuda-nvrtc): {exc}") from exc
    exprs = tuple(str(e) for e in name_expressions)
    sm = _arch_option(arch)
    text = kernel_source(filename) if source is None else source
    where = f"kernels/{filename}" if source is None else filename
    (prog,) = _check(
        nvrtc.nvrtcCreateProgram(text.encode(), filename.encode(), 0, [], []), "nvrtcCreateProgram"
    )
    try:
        for expr in exprs:
            _check(nvrtc.nvrtcAddNameExpression(prog, expr.encode()), "nvrtcAddNameExpression")
        opts = [o.encode() for o in (*NVRTC_OPTIONS, f"-arch={sm}", "-Xptxas=-v", *options)]
        (status,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        log = _program_log(nvrtc, prog)
        if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise KernelError(f"{where} failed to compile with NVRTC for {sm}:\n{log.strip()}")
        entries = _parse_entries(log)
        kernels: dict[str, KernelReport] = {}
        for expr in exprs:
            (lowered,) = _check(nvrtc.nvrtcGetLoweredName(prog, expr.encode()), "nvrtcGetLoweredName")
            lowered = lowered.decode() if isinstance(lowered, bytes) else str(lowered)
            info = entries.get(lowered)
            if info is None:
                raise KernelError(
                    f"{where}: ptxas reported nothing for {expr!r} ({lowered}) on {sm}; "
                    f"log:\n{log.strip()}"
                )
            kernels[expr] = KernelReport(
                name_expression=expr,
                lowered_name=lowered,
                registers=info["registers"],
                spill_stores=info["spill_stores"],
                spill_loads=info["spill_loads"],
                stack_frame=info["stack_frame"],
                shared_bytes=info["shared_bytes"],
                log="\n".join(info["log"]),
            )
        return CompileReport(filename=filename, arch=sm, kernels=kernels, log=log)
    finally:
        nvrtc.nvrtcDestroyProgram(prog)
