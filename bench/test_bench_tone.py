"""Speed suite: apply_lut and gamma_correct against cv2.LUT, NumPy/CuPy fancy indexing, skimage."""


def test_lut(bench_item, run_bench):
    run_bench(bench_item)


def test_gamma(bench_item, run_bench):
    run_bench(bench_item)
