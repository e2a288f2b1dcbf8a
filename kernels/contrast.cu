// gpuenhance: histogram equalisation and CLAHE on one-channel and RGB images (uint8/uint16),
// per image of an (N, H, W, C) batch, equal to cv2.equalizeHist / cv2.createCLAHE().apply
// (RGB: on Y of OpenCV's fixed-point YCrCb, see ycrcb.cuh).
//
// Layout: contiguous NHWC, C = 1 (COLOR = false) or 3 (COLOR = true); images are indexed by
// blockIdx.y in a grid-stride loop over `images` (grid.y <= 65535); offsets are 64-bit.
// Bins: 256 for uint8, 65536 for uint16 (the value itself, as OpenCV's CLAHE does).
//
// Equalisation, three launches on one stream and no host round trip:
//   gpuenhance_histogram      per-image histograms (uint8: privatised shared-memory bins
//                             merged with one global atomic per non-empty bin and block;
//                             uint16: global atomics on the image's 65536 bins);
//   gpuenhance_equalize_lut   one block per image: OpenCV's rule (first non-empty bin -> 0,
//                             lut[i] = rint(float(cdf[i] - h[first]) * float(BINS - 1) /
//                             float(total - h[first]))), a constant image maps to itself;
//   gpuenhance_intensity_map  out = lut[n][v] on the intensity (on Y for RGB).
// CLAHE, two launches:
//   gpuenhance_clahe_lut      one block per (tile, image): the tile histogram of the image
//                             padded by reflect-101 on the bottom/right (OpenCV pads when a size
//                             is not divisible by the grid), clipping, redistribution of the
//                             clipped count (batch to every bin, residual to every
//                             max(BINS / residual, 1)-th bin), CDF and the tile LUT
//                             rint(float(cdf) * lut_scale);
//   gpuenhance_clahe_map      bilinear interpolation between the four nearest tile LUTs in
//                             float32 with OpenCV's expression order (_rn intrinsics: no FMA
//                             contraction, so results are bit-identical).
#include "common.cuh"
#include "scan.cuh"
#include "ycrcb.cuh"

#define GPUENHANCE_CONTRAST_THREADS 256

template <typename T> struct gpuenhance_bins;
template <> struct gpuenhance_bins<gpuenhance_u8> { static constexpr int N = 256; };
template <> struct gpuenhance_bins<gpuenhance_u16> { static constexpr int N = 65536; };

// hist: images x BINS, zeroed by the host. Launch: grid (any, min(images, 65535)), 256 threads.
template <typename T, bool COLOR>
__global__ void gpuenhance_histogram(const T* __restrict__ src, unsigned int* __restrict__ hist,
                                     gpuenhance_i64 pixels, int images) {
    constexpr int BINS = gpuenhance_bins<T>::N;
    constexpr int C = COLOR ? 3 : 1;
    const gpuenhance_i64 step = (gpuenhance_i64)gridDim.x * blockDim.x;
    const gpuenhance_i64 first = (gpuenhance_i64)blockIdx.x * blockDim.x + threadIdx.x;
    for (int n = blockIdx.y; n < images; n += gridDim.y) {
        const T* img = src + (gpuenhance_i64)n * pixels * C;
        unsigned int* h = hist + (gpuenhance_i64)n * BINS;
        if constexpr (BINS == 256) {
            __shared__ unsigned int local[256];
            for (int i = threadIdx.x; i < 256; i += blockDim.x) local[i] = 0u;
            __syncthreads();
            for (gpuenhance_i64 p = first; p < pixels; p += step)
                atomicAdd(&local[gpuenhance_intensity<T, COLOR>(img + p * C)], 1u);
            __syncthreads();
            for (int i = threadIdx.x; i < 256; i += blockDim.x)
                if (local[i]) atomicAdd(&h[i], local[i]);
            __syncthreads();
        } else {
            for (gpuenhance_i64 p = first; p < pixels; p += step)
                atomicAdd(&h[gpuenhance_intensity<T, COLOR>(img + p * C)], 1u);
        }
    }
}

// lut: images x BINS. Launch: grid (min(images, 65535)), 256 threads (divides BINS).
template <typename T>
__global__ void gpuenhance_equalize_lut(const unsigned int* __restrict__ hist, T* __restrict__ lut,
                                        gpuenhance_i64 pixels, int images) {
    constexpr int BINS = gpuenhance_bins<T>::N;
    __shared__ unsigned long long partial[GPUENHANCE_CONTRAST_THREADS];
    __shared__ int first_bin;
    const int per = BINS / (int)blockDim.x;
    const int lo = (int)threadIdx.x * per;
    for (int n = blockIdx.x; n < images; n += gridDim.x) {
        const unsigned int* h = hist + (gpuenhance_i64)n * BINS;
        T* out = lut + (gpuenhance_i64)n * BINS;
        if (threadIdx.x == 0) first_bin = BINS;
        __syncthreads();
        unsigned long long sum = 0;
        int mine = BINS;
        for (int i = lo; i < lo + per; ++i) {
            const unsigned int c = h[i];
            if (c && mine == BINS) mine = i;
            sum += c;
        }
        if (mine < BINS) atomicMin(&first_bin, mine);
        unsigned long long run = gpuenhance_block_exclusive(sum, partial);
        const int f = first_bin;
        const unsigned long long hf = h[f];
        if (hf == (unsigned long long)pixels) {  // one level only: OpenCV sets the image to it
            for (int i = lo; i < lo + per; ++i) out[i] = (T)f;
        } else {
            const float scale = __fdiv_rn((float)(BINS - 1), (float)(gpuenhance_i64)(pixels - hf));
            for (int i = lo; i < lo + per; ++i) {
                run += h[i];
                out[i] = i <= f ? (T)0
                                : gpuenhance_cast<T>::from(
                                      __fmul_rn((float)(gpuenhance_i64)(run - hf), scale));
            }
        }
        __syncthreads();
    }
}

// out = lut[n][intensity] (RGB: new Y, same Cr/Cb). Launch: grid (any, min(images, 65535)).
template <typename T, bool COLOR>
__global__ void gpuenhance_intensity_map(const T* __restrict__ src, T* __restrict__ dst,
                                         const T* __restrict__ lut, gpuenhance_i64 pixels,
                                         int images) {
    constexpr int BINS = gpuenhance_bins<T>::N;
    constexpr int C = COLOR ? 3 : 1;
    const gpuenhance_i64 step = (gpuenhance_i64)gridDim.x * blockDim.x;
    const gpuenhance_i64 first = (gpuenhance_i64)blockIdx.x * blockDim.x + threadIdx.x;
    for (int n = blockIdx.y; n < images; n += gridDim.y) {
        const gpuenhance_i64 base = (gpuenhance_i64)n * pixels * C;
        const T* table = lut + (gpuenhance_i64)n * BINS;
        for (gpuenhance_i64 p = first; p < pixels; p += step) {
            const T* px = src + base + p * C;
            gpuenhance_set_intensity<T, COLOR>(px, dst + base + p * C,
                                               __ldg(table + gpuenhance_intensity<T, COLOR>(px)));
        }
    }
}

// luts: images x tiles x BINS. scratch: images x tiles x BINS zeroed counters (uint16 only;
// uint8 counts in shared memory and ignores it). Launch: grid (tiles_x * tiles_y,
// min(images, 65535)), 256 threads.
template <typename T, bool COLOR>
__global__ void gpuenhance_clahe_lut(const T* __restrict__ src, T* __restrict__ luts,
                                     unsigned int* __restrict__ scratch, int height, int width,
                                     int tiles_x, int tile_h, int tile_w, int clip,
                                     float lut_scale, int images) {
    constexpr int BINS = gpuenhance_bins<T>::N;
    constexpr int C = COLOR ? 3 : 1;
    __shared__ unsigned long long partial[GPUENHANCE_CONTRAST_THREADS];
    __shared__ unsigned int clipped_total;
    const int tile = blockIdx.x;
    const int tiles = gridDim.x;
    const int row0 = (tile / tiles_x) * tile_h, col0 = (tile % tiles_x) * tile_w;
    const int per = BINS / (int)blockDim.x;
    const int lo = (int)threadIdx.x * per;
    const gpuenhance_i64 area = (gpuenhance_i64)tile_h * tile_w;
    for (int n = blockIdx.y; n < images; n += gridDim.y) {
        const T* img = src + (gpuenhance_i64)n * height * width * C;
        const gpuenhance_i64 slot = ((gpuenhance_i64)n * tiles + tile) * BINS;
        unsigned int* h;
        if constexpr (BINS == 256) {
            __shared__ unsigned int local[256];
            h = local;
            for (int i = threadIdx.x; i < 256; i += blockDim.x) local[i] = 0u;
        } else {
            h = scratch + slot;
        }
        if (threadIdx.x == 0) clipped_total = 0u;
        __syncthreads();
        for (gpuenhance_i64 k = threadIdx.x; k < area; k += blockDim.x) {
            const int y = gpuenhance_border_index(row0 + (int)(k / tile_w), height,
                                                  GPUENHANCE_BORDER_REFLECT_101);
            const int x = gpuenhance_border_index(col0 + (int)(k % tile_w), width,
                                                  GPUENHANCE_BORDER_REFLECT_101);
            atomicAdd(&h[gpuenhance_intensity<T, COLOR>(img + ((gpuenhance_i64)y * width + x) * C)],
                      1u);
        }
        __syncthreads();
        if (clip > 0) {
            unsigned int excess = 0;
            for (int i = lo; i < lo + per; ++i) {
                if (h[i] > (unsigned int)clip) {
                    excess += h[i] - (unsigned int)clip;
                    h[i] = (unsigned int)clip;
                }
            }
            if (excess) atomicAdd(&clipped_total, excess);
            __syncthreads();
            const int clipped = (int)clipped_total;
            const int batch = clipped / BINS;
            const int residual = clipped - batch * BINS;
            const int rstep = residual ? (BINS / residual > 1 ? BINS / residual : 1) : 1;
            for (int i = lo; i < lo + per; ++i)
                h[i] += batch + ((residual && i % rstep == 0 && i / rstep < residual) ? 1 : 0);
        }
        unsigned long long sum = 0;
        for (int i = lo; i < lo + per; ++i) sum += h[i];
        unsigned long long run = gpuenhance_block_exclusive(sum, partial);
        for (int i = lo; i < lo + per; ++i) {
            run += h[i];
            luts[slot + i] = gpuenhance_cast<T>::from(__fmul_rn((float)(gpuenhance_i64)run, lut_scale));
        }
        __syncthreads();
    }
}

// Launch: grid (any, min(images, 65535)), 1-D blocks; one thread per pixel (grid-stride).
template <typename T, bool COLOR>
__global__ void gpuenhance_clahe_map(const T* __restrict__ src, T* __restrict__ dst,
                                     const T* __restrict__ luts, int height, int width,
                                     int tiles_x, int tiles_y, int tile_h, int tile_w,
                                     int images) {
    constexpr int BINS = gpuenhance_bins<T>::N;
    constexpr int C = COLOR ? 3 : 1;
    const float inv_tw = __fdiv_rn(1.0f, (float)tile_w);
    const float inv_th = __fdiv_rn(1.0f, (float)tile_h);
    const gpuenhance_i64 pixels = (gpuenhance_i64)height * width;
    const gpuenhance_i64 step = (gpuenhance_i64)gridDim.x * blockDim.x;
    const gpuenhance_i64 first = (gpuenhance_i64)blockIdx.x * blockDim.x + threadIdx.x;
    for (int n = blockIdx.y; n < images; n += gridDim.y) {
        const gpuenhance_i64 base = (gpuenhance_i64)n * pixels * C;
        const T* tab = luts + (gpuenhance_i64)n * tiles_x * tiles_y * BINS;
        for (gpuenhance_i64 p = first; p < pixels; p += step) {
            const int y = (int)(p / width), x = (int)(p % width);
            const float txf = __fsub_rn(__fmul_rn((float)x, inv_tw), 0.5f);
            const float tyf = __fsub_rn(__fmul_rn((float)y, inv_th), 0.5f);
            int tx1 = (int)floorf(txf), ty1 = (int)floorf(tyf);
            const float xa = __fsub_rn(txf, (float)tx1), xa1 = __fsub_rn(1.0f, xa);
            const float ya = __fsub_rn(tyf, (float)ty1), ya1 = __fsub_rn(1.0f, ya);
            int tx2 = tx1 + 1, ty2 = ty1 + 1;
            tx1 = tx1 < 0 ? 0 : tx1;
            ty1 = ty1 < 0 ? 0 : ty1;
            tx2 = tx2 > tiles_x - 1 ? tiles_x - 1 : tx2;
            ty2 = ty2 > tiles_y - 1 ? tiles_y - 1 : ty2;
            const T* px = src + base + p * C;
            const int v = gpuenhance_intensity<T, COLOR>(px);
            const T* l1 = tab + (gpuenhance_i64)ty1 * tiles_x * BINS + v;
            const T* l2 = tab + (gpuenhance_i64)ty2 * tiles_x * BINS + v;
            const float a = __fadd_rn(__fmul_rn((float)__ldg(l1 + (gpuenhance_i64)tx1 * BINS), xa1),
                                      __fmul_rn((float)__ldg(l1 + (gpuenhance_i64)tx2 * BINS), xa));
            const float b = __fadd_rn(__fmul_rn((float)__ldg(l2 + (gpuenhance_i64)tx1 * BINS), xa1),
                                      __fmul_rn((float)__ldg(l2 + (gpuenhance_i64)tx2 * BINS), xa));
            const float res = __fadd_rn(__fmul_rn(a, ya1), __fmul_rn(b, ya));
            gpuenhance_set_intensity<T, COLOR>(px, dst + base + p * C,
                                               (int)gpuenhance_cast<T>::from(res));
        }
    }
}
