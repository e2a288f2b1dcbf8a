"""LUT and gamma (stub: being written)."""


def apply_lut(img, lut, *, backend=None):
    raise NotImplementedError


def gamma_correct(img, gamma, *, gain=1.0, backend=None):
    raise NotImplementedError
