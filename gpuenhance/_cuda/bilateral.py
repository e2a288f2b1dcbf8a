"""CUDA engine: bilateral filter (kernels/bilateral.cu).

Arguments arrive validated by :mod:`gpuenhance.bilateral` (uint8/float32, 1 or 3 channels,
radius resolved by OpenCV's rule). One launch for the whole batch; the window's offsets and
space weights and the uint8 colour table are built on the host (:mod:`gpuenhance._bilateral`).
"""

from __future__ import annotations

import numpy as np

from .. import _bilateral
from .._image import from_nhwc, to_nhwc
from ._common import BORDER_CODES, GRID_YZ_MAX, blocks, check_grid, check_nhwc, ctype
from ._loader import declare

_TILE = 16

KERNELS = declare({
    "bilateral.cu": tuple(
        f"gpuenhance_bilateral<{ctype(d)}, {cn}>" for d in (np.uint8, np.float32) for cn in (1, 3)
    )
})
HOT_KERNELS = KERNELS["bilateral.cu"]


def bilateral_filter(ctx, img, r: int, sigma_color: float, sigma_space: float, border: str):
    xp = ctx.xp
    x = xp.ascontiguousarray(to_nhwc(img))
    check_nhwc(x.shape)
    n, h, w, c = x.shape
    out = xp.empty_like(x)
    dy, dx, space = _bilateral.space_taps(r, sigma_space)
    colour = _bilateral.colour_table(sigma_color, c)
    grid = check_grid((blocks(w, _TILE), blocks(h, _TILE), min(n, GRID_YZ_MAX)), "bilateral")
    ctx.kernel("bilateral.cu", f"gpuenhance_bilateral<{ctype(x.dtype)}, {c}>")(
        grid, (_TILE, _TILE, 1),
        (x, out, xp.asarray(dy), xp.asarray(dx), xp.asarray(space), xp.asarray(colour),
         np.float32(-0.5 / (sigma_color * sigma_color)), np.int32(dy.size), np.int32(n),
         np.int32(h), np.int32(w), np.int32(BORDER_CODES[border])))
    return from_nhwc(out, img.ndim)
