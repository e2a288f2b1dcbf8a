"""Patch-SGD enhancement of a region of interest (stub: being written)."""


class EnhanceResult:
    pass


def enhance_roi(img, roi, **kwargs):
    raise NotImplementedError
