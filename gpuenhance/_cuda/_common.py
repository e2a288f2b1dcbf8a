"""Host-side constants shared by the CUDA topic modules."""

import numpy as np

# Must match the GPUENHANCE_BORDER_* numbers in kernels/common.cuh.
BORDER_CODES = {"replicate": 0, "reflect": 1, "reflect_101": 2, "constant": 3}

# C++ spelling of each dtype, for name expressions such as "gpuenhance_lut<gpuenhance_u8>".
CTYPES = {
    np.dtype(np.uint8): "gpuenhance_u8",
    np.dtype(np.uint16): "gpuenhance_u16",
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
}


def ctype(dtype) -> str:
    """The C++ type name of *dtype* as the kernels spell it."""
    return CTYPES[np.dtype(dtype)]


def blocks(n: int, per_block: int) -> int:
    """Number of blocks of *per_block* needed to cover *n* items."""
    return max(1, -(-int(n) // int(per_block)))
