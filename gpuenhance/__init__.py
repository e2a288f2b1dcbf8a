"""gpuenhance: GPU image enhancement and restoration in batches, with a CPU engine.

The public API, nothing else. See README.md and ARCHITECTURE.md.
"""

__version__ = "0.1.0"

from . import degrade, metrics
from ._backend import BackendUnavailableError, info
from .bilateral import bilateral_filter
from .color import white_balance
from .contrast import auto_contrast, clahe, equalize_hist
from .filters import gaussian_filter, median_filter
from .roi import EnhanceResult, enhance_roi
from .pipeline import Pipeline
from .restore import LMSRestorer
from .sharpen import unsharp_mask
from .tone import apply_lut, gamma_correct, tone_curve

__all__ = [
    "BackendUnavailableError",
    "EnhanceResult",
    "LMSRestorer",
    "Pipeline",
    "apply_lut",
    "auto_contrast",
    "bilateral_filter",
    "clahe",
    "degrade",
    "enhance_roi",
    "equalize_hist",
    "gamma_correct",
    "gaussian_filter",
    "info",
    "median_filter",
    "metrics",
    "tone_curve",
    "unsharp_mask",
    "white_balance",
]
