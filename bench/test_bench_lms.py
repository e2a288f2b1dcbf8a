"""Speed suite: LMSRestorer fit (one epoch) and restore against the closed-form Wiener in
NumPy/CuPy, skimage's Wiener filters, and the naive per-bin Python loop (extrapolated)."""


def test_lms_fit(bench_item, run_bench):
    run_bench(bench_item)


def test_lms_restore(bench_item, run_bench):
    run_bench(bench_item)
