"""Deprecated: the old name of :mod:`gpuenhance.roi` (patch-SGD enhancement of a region).

``local`` also named the local filters and the local Dask cluster, so the module was renamed
for what it holds. Importing it still works in 0.1 and warns; it goes in the next release.
Import :func:`~gpuenhance.enhance_roi` and :class:`~gpuenhance.EnhanceResult` from
``gpuenhance`` or ``gpuenhance.roi`` instead.
"""

import warnings

from .roi import MAX_KSIZE, MAX_PATCH, EnhanceResult, enhance_roi

__all__ = ["MAX_KSIZE", "MAX_PATCH", "EnhanceResult", "enhance_roi"]

warnings.warn(
    "gpuenhance.local is deprecated and goes in the next release: it was renamed "
    "gpuenhance.roi (or import enhance_roi and EnhanceResult from gpuenhance)",
    DeprecationWarning,
    stacklevel=2,
)
