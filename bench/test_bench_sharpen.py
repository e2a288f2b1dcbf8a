"""Speed suite: unsharp_mask against cv2 (GaussianBlur + addWeighted), skimage and cuCIM."""


def test_unsharp(bench_item, run_bench):
    run_bench(bench_item)
