// gpuenhance: level operations per image of an (N, H, W, C) batch -- white balance,
// auto-contrast (per-channel tables from image statistics) and float tone curves.
//
// Integer images, three launches on one stream and no host round trip:
//   gpuenhance_channel_histogram  per-image, per-channel (or pooled) histograms; uint8 with
//                                 few channels in privatised shared-memory bins (dynamic
//                                 shared memory, groups x 256 counters), otherwise global
//                                 atomics on groups x BINS counters per image;
//   gpuenhance_levels_table       one block per image: the statistics from the histograms
//                                 (exact integer sums and order statistics) and the tables,
//                                 in float64 with one rounding per operation exactly as
//                                 gpuenhance/_levels.py computes them on the host;
//   gpuenhance_channel_map        out = table[n][v * C + c].
// Float32 tone curves: gpuenhance_tone_curve_f32 evaluates the PCHIP cubic in float64.
#include "common.cuh"
#include "scan.cuh"

#define GPUENHANCE_LEVELS_THREADS 256

template <typename T> struct gpuenhance_levels_bins;
template <> struct gpuenhance_levels_bins<gpuenhance_u8> { static constexpr int N = 256; };
template <> struct gpuenhance_levels_bins<gpuenhance_u16> { static constexpr int N = 65536; };

// hist: images x groups x BINS, zeroed by the host; groups = channels, or 1 (all channels
// pooled). values = H * W * C. SMEM: shared_mem = groups * BINS * 4 bytes.
// Launch: grid (any, min(images, 65535)), 1-D blocks.
template <typename T, bool SMEM>
__global__ void gpuenhance_channel_histogram(const T* __restrict__ src,
                                             unsigned int* __restrict__ hist,
                                             gpuenhance_i64 values, int channels, int groups,
                                             int images) {
    constexpr int BINS = gpuenhance_levels_bins<T>::N;
    const gpuenhance_i64 step = (gpuenhance_i64)gridDim.x * blockDim.x;
    const gpuenhance_i64 first = (gpuenhance_i64)blockIdx.x * blockDim.x + threadIdx.x;
    for (int n = blockIdx.y; n < images; n += gridDim.y) {
        const T* img = src + (gpuenhance_i64)n * values;
        unsigned int* h = hist + (gpuenhance_i64)n * groups * BINS;
        if constexpr (SMEM) {
            GPUENHANCE_DYNAMIC_SMEM(unsigned int, local);
            for (int i = threadIdx.x; i < groups * BINS; i += blockDim.x) local[i] = 0u;
            __syncthreads();
            for (gpuenhance_i64 i = first; i < values; i += step) {
                const int g = groups == 1 ? 0 : (int)(i % channels);
                atomicAdd(&local[g * BINS + img[i]], 1u);
            }
            __syncthreads();
            for (int i = threadIdx.x; i < groups * BINS; i += blockDim.x)
                if (local[i]) atomicAdd(&h[i], local[i]);
            __syncthreads();
        } else {
            for (gpuenhance_i64 i = first; i < values; i += step) {
                const int g = groups == 1 ? 0 : (int)(i % channels);
                atomicAdd(&h[(gpuenhance_i64)g * BINS + img[i]], 1u);
            }
        }
    }
}

// The value of 0-based rank `rank` in a histogram (every thread returns it).
// scratch: blockDim.x entries; `found` a shared int.
__device__ int gpuenhance_rank_value(const unsigned int* h, int bins, gpuenhance_i64 rank,
                                     unsigned long long* scratch, int* found) {
    const int per = bins / (int)blockDim.x;
    const int lo = (int)threadIdx.x * per;
    unsigned long long sum = 0;
    for (int i = lo; i < lo + per; ++i) sum += h[i];
    unsigned long long run = gpuenhance_block_exclusive(sum, scratch);
    const unsigned long long r = (unsigned long long)rank;
    if (run <= r && r < run + sum) {
        for (int i = lo; i < lo + per; ++i) {
            run += h[i];
            if (r < run) {
                *found = i;
                break;
            }
        }
    }
    __syncthreads();
    const int v = *found;
    __syncthreads();
    return v;
}

__device__ __forceinline__ double gpuenhance_levels_clamp(double v, double top) {
    return v < 0.0 ? 0.0 : (v > top ? top : v);
}

// table: images x BINS x channels. mode 0: gray world (groups = channels; gain = mean of the
// channel means / channel mean), mode 1: white patch (gain = max / value at rank_hi), mode 2:
// stretch ((v - value at rank_lo) * max / (value at rank_hi - value at rank_lo); identity
// when the span is 0). Zero means / values give gain 1. count = values per group.
// Launch: grid (min(images, 65535)), 256 threads, shared_mem = 3 * groups * 8 bytes.
template <typename T>
__global__ void gpuenhance_levels_table(const unsigned int* __restrict__ hist,
                                        T* __restrict__ table, gpuenhance_i64 count,
                                        int channels, int groups, int mode,
                                        gpuenhance_i64 rank_lo, gpuenhance_i64 rank_hi,
                                        int images) {
    constexpr int BINS = gpuenhance_levels_bins<T>::N;
    const double top = (double)(BINS - 1);
    __shared__ unsigned long long scratch[GPUENHANCE_LEVELS_THREADS];
    __shared__ unsigned long long acc;
    __shared__ int found;
    GPUENHANCE_DYNAMIC_SMEM(double, stat);  // lo[groups], hi[groups], gain or scale[groups]
    double* lo_v = stat;
    double* hi_v = stat + groups;
    double* k_v = stat + 2 * groups;
    const int per = BINS / (int)blockDim.x;
    const int first = (int)threadIdx.x * per;
    for (int n = blockIdx.x; n < images; n += gridDim.x) {
        for (int g = 0; g < groups; ++g) {
            const unsigned int* h = hist + ((gpuenhance_i64)n * groups + g) * BINS;
            if (mode == 0) {
                if (threadIdx.x == 0) acc = 0ull;
                __syncthreads();
                unsigned long long s = 0;
                for (int i = first; i < first + per; ++i) s += (unsigned long long)i * h[i];
                if (s) atomicAdd(&acc, s);
                __syncthreads();
                if (threadIdx.x == 0) hi_v[g] = (double)acc / (double)count;
                __syncthreads();
            } else {
                const int hi = gpuenhance_rank_value(h, BINS, rank_hi, scratch, &found);
                const int lo = mode == 2 ? gpuenhance_rank_value(h, BINS, rank_lo, scratch, &found)
                                         : 0;
                if (threadIdx.x == 0) {
                    lo_v[g] = (double)lo;
                    hi_v[g] = (double)hi;
                }
            }
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            double total = 0.0;
            for (int g = 0; g < groups; ++g) total = __dadd_rn(total, hi_v[g]);
            const double target = total / (double)groups;
            for (int g = 0; g < groups; ++g) {
                if (mode == 0) k_v[g] = hi_v[g] > 0.0 ? target / hi_v[g] : 1.0;
                else if (mode == 1) k_v[g] = hi_v[g] > 0.0 ? top / hi_v[g] : 1.0;
                else {
                    const double span = __dadd_rn(hi_v[g], -lo_v[g]);
                    k_v[g] = span > 0.0 ? top / span : 0.0;
                }
            }
        }
        __syncthreads();
        T* out = table + (gpuenhance_i64)n * BINS * channels;
        for (gpuenhance_i64 e = threadIdx.x; e < (gpuenhance_i64)BINS * channels; e += blockDim.x) {
            const int v = (int)(e / channels);
            const int g = groups == 1 ? 0 : (int)(e % channels);
            double r;
            if (mode == 2) {
                r = k_v[g] > 0.0 ? rint(__dmul_rn(__dadd_rn((double)v, -lo_v[g]), k_v[g]))
                                 : (double)v;
            } else {
                r = rint(__dmul_rn((double)v, k_v[g]));
            }
            out[e] = (T)gpuenhance_levels_clamp(r, top);
        }
        __syncthreads();
    }
}

// out[i] = table[n][src[i] * channels + i % channels]. Launch: grid (any, min(images, 65535)).
template <typename T>
__global__ void gpuenhance_channel_map(const T* __restrict__ src, T* __restrict__ dst,
                                       const T* __restrict__ table, gpuenhance_i64 values,
                                       int channels, int images) {
    constexpr int BINS = gpuenhance_levels_bins<T>::N;
    const gpuenhance_i64 step = (gpuenhance_i64)gridDim.x * blockDim.x;
    const gpuenhance_i64 first = (gpuenhance_i64)blockIdx.x * blockDim.x + threadIdx.x;
    for (int n = blockIdx.y; n < images; n += gridDim.y) {
        const gpuenhance_i64 base = (gpuenhance_i64)n * values;
        const T* tab = table + (gpuenhance_i64)n * BINS * channels;
        for (gpuenhance_i64 i = first; i < values; i += step)
            dst[base + i] = __ldg(tab + (gpuenhance_i64)src[base + i] * channels + i % channels);
    }
}

// PCHIP tone curve on float32: u clipped to [x[0], x[k-1]], interval i = the last one with
// x[i] <= u, y = ((c0 t + c1) t + c2) t + c3 in float64 (t = u - x[i]); NaN stays NaN.
// coef: (k - 1) x 4. Launch: 1-D, any grid.
__global__ void gpuenhance_tone_curve_f32(const float* __restrict__ src, float* __restrict__ dst,
                                          const double* __restrict__ xs,
                                          const double* __restrict__ coef, int k,
                                          gpuenhance_i64 n) {
    const gpuenhance_i64 step = (gpuenhance_i64)gridDim.x * blockDim.x;
    for (gpuenhance_i64 j = (gpuenhance_i64)blockIdx.x * blockDim.x + threadIdx.x; j < n;
         j += step) {
        const float f = src[j];
        if (f != f) {
            dst[j] = f;
            continue;
        }
        double u = (double)f;
        u = u < xs[0] ? xs[0] : (u > xs[k - 1] ? xs[k - 1] : u);
        int i = 0;
        while (i < k - 2 && xs[i + 1] <= u) ++i;
        const double* c = coef + 4 * i;
        const double t = __dadd_rn(u, -xs[i]);
        double y = __dadd_rn(__dmul_rn(c[0], t), c[1]);
        y = __dadd_rn(__dmul_rn(y, t), c[2]);
        y = __dadd_rn(__dmul_rn(y, t), c[3]);
        dst[j] = (float)y;
    }
}
