"""Every public op has a cross-backend equivalence test.

An equivalence test is a test function taking the ``backend`` fixture and marked
``@pytest.mark.equivalence("op", ...)``.
"""

import ast
from pathlib import Path

import gpuenhance

PUBLIC_OPS = {
    "median_filter",
    "gaussian_filter",
    "apply_lut",
    "gamma_correct",
    "LMSRestorer",
    "enhance_roi",
    "equalize_hist",
    "clahe",
    "white_balance",
    "auto_contrast",
    "tone_curve",
    "unsharp_mask",
    "bilateral_filter",
}


def _covered_ops() -> set[str]:
    covered: set[str] = set()
    for path in Path(__file__).parent.rglob("test_*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef):
                continue
            if "backend" not in {a.arg for a in node.args.args}:
                continue
            for dec in node.decorator_list:
                if (
                    isinstance(dec, ast.Call)
                    and isinstance(dec.func, ast.Attribute)
                    and dec.func.attr == "equivalence"
                ):
                    covered.update(a.value for a in dec.args if isinstance(a, ast.Constant))
    return covered


def test_public_ops_are_listed():
    for op in PUBLIC_OPS:
        assert hasattr(gpuenhance, op), op


def test_every_public_op_has_an_equivalence_test():
    missing = PUBLIC_OPS - _covered_ops()
    assert not missing, f"public ops with no cross-backend equivalence test: {sorted(missing)}"
