"""Host-side constants and launch-limit checks shared by the CUDA topic modules."""

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

INT32_MAX = 2**31 - 1
# CUDA's grid limits: grid.x <= 2^31 - 1, grid.y and grid.z <= 65535.
GRID_X_MAX = INT32_MAX
GRID_YZ_MAX = 65535
# Largest image height or width the 2-D kernels take. Plane coordinates, window offsets and
# the reflection period of gpuenhance_border_index (2 * n) are 32-bit ints in the kernels; all
# element offsets are 64-bit (gpuenhance_i64), so only the per-axis extent is limited.
MAX_EXTENT = 2**30 - 1


def ctype(dtype) -> str:
    """The C++ type name of *dtype* as the kernels spell it."""
    return CTYPES[np.dtype(dtype)]


def data_address(a) -> int:
    """The address of the first element of a CuPy or NumPy array (alignment checks)."""
    ptr = getattr(a.data, "ptr", None)
    return int(ptr) if ptr is not None else int(a.ctypes.data)


def blocks(n: int, per_block: int) -> int:
    """Number of blocks of *per_block* needed to cover *n* items."""
    return max(1, -(-int(n) // int(per_block)))


def check_nhwc(shape, name: str = "img") -> None:
    """Refuse an (N, H, W, C) batch the 2-D kernels cannot index, before any work.

    Raises
    ------
    ValueError
        When H or W exceeds :data:`MAX_EXTENT`, or N or C exceeds 2^31 - 1 (the kernels take
        them as ``int``). The message names the axis, its size and the limit.
    """
    n, h, w, c = (int(s) for s in shape)
    for axis, size, limit in (("H", h, MAX_EXTENT), ("W", w, MAX_EXTENT),
                              ("N", n, INT32_MAX), ("C", c, INT32_MAX)):
        if size > limit:
            raise ValueError(
                f"{name} is too large for the CUDA engine: {axis} = {size} exceeds {limit} "
                f"(the kernels index {axis} with 32-bit integers); process it in tiles or "
                f"use backend='cpu'"
            )


def check_grid(grid, where: str) -> tuple[int, int, int]:
    """*grid* as a 3-tuple of ints, or ValueError when it exceeds CUDA's grid limits.

    Launch configurations clamp grid.y / grid.z and stride in the kernels, so this only fires
    for shapes the per-axis checks should already have refused: a guard against a silent
    launch failure.
    """
    g = tuple(int(v) for v in grid) + (1,) * (3 - len(grid))
    if not (1 <= g[0] <= GRID_X_MAX and 1 <= g[1] <= GRID_YZ_MAX and 1 <= g[2] <= GRID_YZ_MAX):
        raise ValueError(
            f"{where}: launch grid {g} exceeds CUDA's limits (grid.x <= {GRID_X_MAX}, "
            f"grid.y and grid.z <= {GRID_YZ_MAX}); the input is too large for the CUDA engine"
        )
    return g
