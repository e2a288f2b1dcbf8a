"""The runnable examples in the public docstrings run and print what they say."""

import doctest
import importlib

import pytest

MODULES = [
    "gpuenhance._backend",
    "gpuenhance.filters",
    "gpuenhance.tone",
    "gpuenhance.contrast",
    "gpuenhance.color",
    "gpuenhance.sharpen",
    "gpuenhance.bilateral",
    "gpuenhance.restore",
    "gpuenhance.roi",
    "gpuenhance.degrade",
    "gpuenhance.metrics",
    "gpuenhance.pipeline",
    "gpuenhance.io",
    "gpuenhance._metadata",
    "gpuenhance.batch.outdir",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
    assert result.attempted > 0, f"{name} has no runnable examples"
