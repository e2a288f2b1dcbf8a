"""Speed suite: gaussian_filter against cv2, scipy.ndimage, skimage (CPU) and cupyx, torchvision, CV-CUDA (GPU)."""


def test_gaussian(bench_item, run_bench):
    run_bench(bench_item)
