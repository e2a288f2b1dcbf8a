"""Speed suite: unsharp_mask (cv2 GaussianBlur + addWeighted, skimage, cuCIM) and
bilateral_filter (cv2.bilateralFilter, CV-CUDA)."""


def test_unsharp(bench_item, run_bench):
    run_bench(bench_item)


def test_bilateral(bench_item, run_bench):
    run_bench(bench_item)
