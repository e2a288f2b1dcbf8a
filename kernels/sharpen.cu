// gpuenhance: unsharp mask  out = x + amount * (x - G(x))  where |x - G(x)| > threshold,
// G the separable Gaussian with the host's float32 taps (OpenCV's ksize/sigma rules) and the
// reflect-101 border; computed in float32, integers rounded half to even and saturated.
//
// One pass (gpuenhance_unsharp_tile): a 16x16 output tile per block; the block stages its
// (16 + 2r)^2 input window in shared memory (as float), filters the rows into a second shared
// buffer ((16 + 2r) x 16), then the columns, and applies the mask in the store -- the image is
// read once and written once. Windows too large for shared memory (radius above ~40) take two
// passes of gpuenhance_unsharp_pass: the rows to a float32 buffer, then its columns and the
// mask.
//
// Layout: contiguous NHWC; grid.z walks the N * C planes (grid-stride, grid.z <= 65535),
// plane p = n * C + c. Offsets are 64-bit.
#include "common.cuh"

#define GPUENHANCE_UNSHARP_TILE 16

__device__ __forceinline__ gpuenhance_i64 gpuenhance_unsharp_at(int plane, int y, int x, int h,
                                                               int w, int c) {
    const gpuenhance_i64 n = plane / c;
    return ((n * h + y) * (gpuenhance_i64)w + x) * c + plane % c;
}

template <typename T>
__device__ __forceinline__ T gpuenhance_unsharp_value(float x, float blurred, float amount,
                                                      float threshold) {
    const float d = x - blurred;
    return gpuenhance_cast<T>::from(fabsf(d) > threshold ? x + amount * d : x);
}

// Launch: block (16, 16), grid (ceil(W / 16), ceil(H / 16), min(N * C, 65535)),
// shared_mem = ((16 + 2r)^2 + (16 + 2r) * 16) * 4 bytes.
template <typename T>
__global__ void gpuenhance_unsharp_tile(const T* __restrict__ src, T* __restrict__ dst,
                                        const float* __restrict__ taps, int radius, int planes,
                                        int h, int w, int c, float amount, float threshold) {
    constexpr int TILE = GPUENHANCE_UNSHARP_TILE;
    GPUENHANCE_DYNAMIC_SMEM(float, window);
    const int span = TILE + 2 * radius;
    float* rows = window + span * span;  // span x TILE
    const int x0 = blockIdx.x * TILE, y0 = blockIdx.y * TILE;
    const int tid = threadIdx.y * TILE + threadIdx.x;
    for (int p = blockIdx.z; p < planes; p += gridDim.z) {
        for (int i = tid; i < span * span; i += TILE * TILE) {
            const int y = gpuenhance_border_index(y0 - radius + i / span, h,
                                                  GPUENHANCE_BORDER_REFLECT_101);
            const int x = gpuenhance_border_index(x0 - radius + i % span, w,
                                                  GPUENHANCE_BORDER_REFLECT_101);
            window[i] = (float)src[gpuenhance_unsharp_at(p, y, x, h, w, c)];
        }
        __syncthreads();
        for (int i = tid; i < span * TILE; i += TILE * TILE) {
            const int r = i / TILE, col = i % TILE;
            const float* in = window + r * span + col;
            float acc = 0.0f;
            for (int k = 0; k <= 2 * radius; ++k) acc += taps[k] * in[k];
            rows[i] = acc;
        }
        __syncthreads();
        const int x = x0 + threadIdx.x, y = y0 + threadIdx.y;
        if (x < w && y < h) {
            float acc = 0.0f;
            for (int k = 0; k <= 2 * radius; ++k)
                acc += taps[k] * rows[(threadIdx.y + k) * TILE + threadIdx.x];
            const float center = window[(threadIdx.y + radius) * span + threadIdx.x + radius];
            dst[gpuenhance_unsharp_at(p, y, x, h, w, c)] =
                gpuenhance_unsharp_value<T>(center, acc, amount, threshold);
        }
        __syncthreads();
    }
}

// Two-pass path. COLS = false: the rows of every plane of src into `tmp` (float32, NHWC like
// src); COLS = true: the columns of `tmp`, then the mask, into dst.
// Launch: block (16, 16), grid (ceil(W / 16), ceil(H / 16), min(N * C, 65535)).
template <typename T, bool COLS>
__global__ void gpuenhance_unsharp_pass(const T* __restrict__ src, float* __restrict__ tmp,
                                        T* __restrict__ dst, const float* __restrict__ taps,
                                        int radius, int planes, int h, int w, int c,
                                        float amount, float threshold) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= w || y >= h) return;
    for (int p = blockIdx.z; p < planes; p += gridDim.z) {
        float acc = 0.0f;
        for (int k = 0; k <= 2 * radius; ++k) {
            if constexpr (COLS) {
                const int yy = gpuenhance_border_index(y - radius + k, h,
                                                       GPUENHANCE_BORDER_REFLECT_101);
                acc += taps[k] * tmp[gpuenhance_unsharp_at(p, yy, x, h, w, c)];
            } else {
                const int xx = gpuenhance_border_index(x - radius + k, w,
                                                       GPUENHANCE_BORDER_REFLECT_101);
                acc += taps[k] * (float)src[gpuenhance_unsharp_at(p, y, xx, h, w, c)];
            }
        }
        const gpuenhance_i64 at = gpuenhance_unsharp_at(p, y, x, h, w, c);
        if constexpr (COLS) {
            dst[at] = gpuenhance_unsharp_value<T>((float)src[at], acc, amount, threshold);
        } else {
            tmp[at] = acc;
        }
    }
}
