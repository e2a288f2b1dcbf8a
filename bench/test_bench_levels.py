"""Speed suite: white_balance, auto_contrast and tone_curve against cv2, NumPy/CuPy, SciPy, skimage."""


def test_white_balance(bench_item, run_bench):
    run_bench(bench_item)


def test_auto_contrast(bench_item, run_bench):
    run_bench(bench_item)


def test_tone_curve(bench_item, run_bench):
    run_bench(bench_item)
