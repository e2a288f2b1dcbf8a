"""Median and Gaussian filters (stub: being written)."""


def median_filter(img, ksize, *, border="replicate", backend=None):
    raise NotImplementedError


def gaussian_filter(img, ksize=0, sigma=0.0, *, sigma_y=None, border="reflect_101", backend=None):
    raise NotImplementedError
