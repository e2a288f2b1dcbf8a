"""FFT-LMS restoration (stub: being written)."""


class LMSRestorer:
    pass
