// gpuenhance: separable Gaussian filter.
//
// Images are contiguous NHWC; grid.z walks the N*C planes and grid.y the row tiles, both
// grid-stride (the host clamps them to 65535). Element offsets and plane counters are 64-bit
// (gpuenhance_i64); rows and columns are int (the host refuses H, W or a kernel size above
// 2^30 - 1, gpuenhance._cuda._common.MAX_EXTENT). The 1-D taps come
// from the host (gpuenhance._gauss.taps, OpenCV's getGaussianKernel) as arrays of Acc: float
// for uint8/uint16/float32, double for float64. Horizontal pass first, then vertical, as
// OpenCV does; the intermediate stays in Acc (no rounding between passes). Integer outputs are
// rounded half to even and saturated (gpuenhance_cast).
//
// gpuenhance_gaussian_tile<T, Acc, FUSE>: one block computes a bx-by-by output tile:
//   1. load the input tile with its halo, (by+ky-1) x (bx+kx-1), into shared memory through
//      the border rule (constant border: 0), converted to Acc;
//   2. horizontal pass: (by+ky-1) x bx row sums into a second shared buffer;
//   3. vertical pass: each thread sums its column of that buffer and stores its pixel.
//   shared_mem = ((by+ky-1)*(bx+kx-1) + (by+ky-1)*bx + kx + ky) * sizeof(Acc).
// gpuenhance_gaussian_pass<Tin, Tout, Acc, FUSE>: one 1-D pass straight from global memory,
//   for kernels too large for the tile's shared memory (host runs x then y through an Acc
//   buffer; only the second pass may fuse).
//
// Fusion (template flag FUSE): a trailing LUT/gamma is applied to the output value right
// before its store (gpuenhance_point in common.cuh). FUSE = 2 (float gamma) is float32 only.
#include "common.cuh"

template <typename T, typename Acc>
__device__ __forceinline__ Acc gpuenhance_gaussian_fetch(const T* __restrict__ plane, int y,
                                                         int x, int H, int W, int C,
                                                         int border) {
    const int yy = gpuenhance_border_index(y, H, border);
    const int xx = gpuenhance_border_index(x, W, border);
    if (yy < 0 || xx < 0) return Acc(0);
    return (Acc)plane[((gpuenhance_i64)yy * W + xx) * C];
}

template <typename T, typename Acc, int FUSE>
__global__ void gpuenhance_gaussian_tile(const T* __restrict__ src, T* __restrict__ dst,
                                         const Acc* __restrict__ taps_x,
                                         const Acc* __restrict__ taps_y, int N, int H, int W,
                                         int C, int kx, int ky, int border,
                                         const T* __restrict__ lut, int lut_channels,
                                         float gamma, float gain) {
    GPUENHANCE_DYNAMIC_SMEM(Acc, smem);
    const int bx = blockDim.x;
    const int by = blockDim.y;
    const int tw = bx + kx - 1;
    const int th = by + ky - 1;
    Acc* tile = smem;            // th x tw
    Acc* rows = tile + th * tw;  // th x bx
    Acc* wx = rows + th * bx;    // kx
    Acc* wy = wx + kx;           // ky
    const int tid = threadIdx.y * bx + threadIdx.x;
    const int nthreads = bx * by;
    for (int i = tid; i < kx; i += nthreads) wx[i] = taps_x[i];
    for (int i = tid; i < ky; i += nthreads) wy[i] = taps_y[i];
    const int x0 = (int)blockIdx.x * bx - kx / 2;
    const int x = (int)blockIdx.x * bx + (int)threadIdx.x;
    const int row_tiles = (H + by - 1) / by;
    const gpuenhance_i64 planes = (gpuenhance_i64)N * C;
    // Planes (grid.z) and row tiles (grid.y), both grid-stride and uniform across the block:
    // every thread reaches every barrier.
    for (gpuenhance_i64 nc = blockIdx.z; nc < planes; nc += gridDim.z) {
        const int c = (int)(nc % C);
        const gpuenhance_i64 base = (nc / C) * H * W * C + c;
        for (int rt = blockIdx.y; rt < row_tiles; rt += gridDim.y) {
            const int y0 = rt * by - ky / 2;
            const int y = rt * by + (int)threadIdx.y;
            __syncthreads();  // taps written; the previous tile's buffers are no longer read
            for (int i = tid; i < th * tw; i += nthreads) {
                const int r = i / tw;
                tile[i] = gpuenhance_gaussian_fetch<T, Acc>(src + base, y0 + r,
                                                            x0 + (i - r * tw), H, W, C, border);
            }
            __syncthreads();
            for (int i = tid; i < th * bx; i += nthreads) {
                const int r = i / bx;
                const Acc* t = tile + r * tw + (i - r * bx);
                Acc acc = 0;
                for (int j = 0; j < kx; ++j) acc += wx[j] * t[j];
                rows[i] = acc;
            }
            __syncthreads();
            if (x < W && y < H) {
                const Acc* t = rows + threadIdx.y * bx + threadIdx.x;
                Acc acc = 0;
                for (int j = 0; j < ky; ++j) acc += wy[j] * t[j * bx];
                dst[base + ((gpuenhance_i64)y * W + x) * C] = gpuenhance_point<T, FUSE>(
                    gpuenhance_cast<T>::from(acc), lut, lut_channels, c, gamma, gain);
            }
        }
    }
}

// One 1-D pass along x (axis 0) or y (axis 1); grid-stride over all N*H*W*C outputs.
template <typename Tin, typename Tout, typename Acc, int FUSE>
__global__ void gpuenhance_gaussian_pass(const Tin* __restrict__ src, Tout* __restrict__ dst,
                                         const Acc* __restrict__ taps, int N, int H, int W,
                                         int C, int k, int axis, int border,
                                         const Tout* __restrict__ lut, int lut_channels,
                                         float gamma, float gain) {
    const gpuenhance_i64 total = (gpuenhance_i64)N * H * W * C;
    const gpuenhance_i64 step = (gpuenhance_i64)gridDim.x * blockDim.x;
    const int r = k / 2;
    for (gpuenhance_i64 i = (gpuenhance_i64)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += step) {
        const int c = (int)(i % C);
        const gpuenhance_i64 p = i / C;
        const int x = (int)(p % W);
        const gpuenhance_i64 q = p / W;
        const int y = (int)(q % H);
        const gpuenhance_i64 n = q / H;
        const Tin* plane = src + n * H * W * C + c;
        Acc acc = 0;
        for (int j = 0; j < k; ++j) {
            const Acc v = axis == 0
                              ? gpuenhance_gaussian_fetch<Tin, Acc>(plane, y, x - r + j, H, W, C,
                                                                    border)
                              : gpuenhance_gaussian_fetch<Tin, Acc>(plane, y - r + j, x, H, W, C,
                                                                    border);
            acc += __ldg(taps + j) * v;
        }
        dst[i] = gpuenhance_point<Tout, FUSE>(gpuenhance_cast<Tout>::from(acc), lut,
                                                       lut_channels, c, gamma, gain);
    }
}
