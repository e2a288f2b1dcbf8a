"""Shared fixtures: the ``backend`` fixture over every engine, and the Hypothesis profile."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from gpuenhance import _backend

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _emulator_problem() -> str | None:
    from gpuenhance._cuda.emulator import compiler_problem

    return compiler_problem()


@pytest.fixture(scope="module")
def ctx():
    """The emulated CUDA engine's kernel context (skips where the emulator cannot build)."""
    problem = _emulator_problem()
    if problem is not None:
        pytest.skip(f"CUDA emulator unavailable: {problem}")
    from gpuenhance._cuda._loader import get_context

    return get_context("cuda-emulated")


@pytest.fixture(
    params=[
        "cpu",
        "cuda-emulated",
        pytest.param("cuda", marks=pytest.mark.gpu),
    ]
)
def backend(request) -> str:
    """Each engine in turn; ``cuda`` skips with the reason when no GPU works here."""
    name = request.param
    if name == "cuda" and not _backend.cuda_available():
        pytest.skip(f"no working GPU: {_backend._cuda_problem()}")
    if name == "cuda-emulated":
        problem = _emulator_problem()
        if problem is not None:
            pytest.skip(f"CUDA emulator unavailable: {problem}")
    return name


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def numba_without_disk_cache(monkeypatch):
    """``numba.njit`` raising when asked to cache, as where no cache location is writable."""
    numba = pytest.importorskip("numba")
    real = numba.njit

    def njit(*args, **kwargs):
        if kwargs.get("cache"):
            raise RuntimeError("cannot cache function: no locator available")
        return real(*args, **kwargs)

    monkeypatch.setattr(numba, "njit", njit)
