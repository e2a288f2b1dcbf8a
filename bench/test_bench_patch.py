"""Speed suite: enhance_roi patch-SGD steps per second against per-step scipy L-BFGS (extrapolated)."""


def test_patch_sgd(bench_item, run_bench):
    run_bench(bench_item)
