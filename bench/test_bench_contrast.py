"""Speed suite: equalize_hist and clahe against cv2, NumPy/CuPy histograms, scikit-image, cuCIM."""


def test_equalize(bench_item, run_bench):
    run_bench(bench_item)


def test_clahe(bench_item, run_bench):
    run_bench(bench_item)
