"""Speed suite: median_filter against cv2, scipy.ndimage, skimage (CPU) and cupyx, torch, CV-CUDA (GPU)."""


def test_median(bench_item, run_bench):
    run_bench(bench_item)
