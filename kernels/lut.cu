// gpuenhance: lookup tables (uint8/uint16) and float gamma.
//
// All kernels treat the image as one flat contiguous array of n elements and walk it with a
// grid-stride loop on 64-bit indices, in three parts:
//   [0, head)            scalar: the elements before the first 16-byte-aligned one (the host
//                        sets head = n, all scalar, when source and destination are not
//                        aligned alike);
//   [head, head + V*m)   16-byte vectors (uint4 / float4) loaded and stored whole, two per
//                        thread and trip (vectors k and k + grid size, both loads first);
//   the rest             scalar tail.
// Per-channel tables: the table is (entries, C) row-major and element i of an NHWC array has
// channel i % C, so entry v of channel c is lut[v * C + c].
//
// uint8: the table (256 * C entries) is staged in shared memory (SMEM = true; the host uses
// it while 256 * C bytes fit the 48 KiB default). uint16: the 65536-entry table (128 KiB per
// channel) does not fit the 48 KiB default shared memory, so it is read from global memory
// through __ldg (read-only cache). Opting into more dynamic shared memory is possible on
// sm_80+ but not needed: the hot entries of a real image stay in L1/L2.
#include "common.cuh"

template <typename T, bool SMEM>
__device__ __forceinline__ T gpuenhance_lut_read(const T* tab, gpuenhance_i64 i) {
    return SMEM ? tab[i] : __ldg(tab + i);
}

// Map the elements packed in one 32-bit word (4 uint8 or 2 uint16, lowest address in the
// low bits); `c` is the channel of the first element and is advanced past the word.
template <typename T, bool PER_CHANNEL, bool SMEM>
__device__ __forceinline__ unsigned int gpuenhance_lut_word(unsigned int w, const T* tab, int& c,
                                                            int channels) {
    constexpr int E = 4 / (int)sizeof(T);
    constexpr int BITS = 8 * (int)sizeof(T);
    constexpr unsigned int MASK = (1u << BITS) - 1u;
    unsigned int r = 0;
#pragma unroll
    for (int e = 0; e < E; ++e) {
        const unsigned int v = (w >> (e * BITS)) & MASK;
        const unsigned int out =
            PER_CHANNEL ? gpuenhance_lut_read<T, SMEM>(tab, (gpuenhance_i64)v * channels + c)
                        : gpuenhance_lut_read<T, SMEM>(tab, v);
        r |= out << (e * BITS);
        if (PER_CHANNEL && ++c == channels) c = 0;
    }
    return r;
}

// Launch: 1-D blocks, any grid; shared_mem = 256 * C bytes when SMEM, else 0.
template <typename T, bool PER_CHANNEL, bool SMEM>
__global__ void gpuenhance_lut(const T* __restrict__ src, T* __restrict__ dst,
                               const T* __restrict__ lut, gpuenhance_i64 n, gpuenhance_i64 head,
                               int channels) {
    constexpr int V = 16 / (int)sizeof(T);
    const T* tab = lut;
    if (SMEM) {
        GPUENHANCE_DYNAMIC_SMEM(T, table);
        const int entries = (sizeof(T) == 1 ? 256 : 65536) * (PER_CHANNEL ? channels : 1);
        for (int i = threadIdx.x; i < entries; i += blockDim.x) table[i] = lut[i];
        __syncthreads();
        tab = table;
    }
    const gpuenhance_i64 step = (gpuenhance_i64)gridDim.x * blockDim.x;
    const gpuenhance_i64 t = (gpuenhance_i64)blockIdx.x * blockDim.x + threadIdx.x;
    for (gpuenhance_i64 i = t; i < head; i += step) {
        const gpuenhance_i64 e = PER_CHANNEL ? (gpuenhance_i64)src[i] * channels + i % channels
                                             : (gpuenhance_i64)src[i];
        dst[i] = gpuenhance_lut_read<T, SMEM>(tab, e);
    }
    const gpuenhance_i64 nvec = (n - head) / V;
    // Vectors k and k + step per trip: both loads are issued before the lookups, so each
    // thread keeps 32 bytes in flight.
    for (gpuenhance_i64 k = t; k < nvec; k += 2 * step) {
        const bool second = k + step < nvec;
        const uint4 in[2] = {gpuenhance_load16(src + head + k * V),
                             second ? gpuenhance_load16(src + head + (k + step) * V) : uint4{}};
#pragma unroll
        for (int u = 0; u < 2; ++u) {
            if (u == 1 && !second) break;
            const gpuenhance_i64 at = head + (k + u * step) * V;
            int c = PER_CHANNEL ? (int)(at % channels) : 0;
            uint4 out;
            out.x = gpuenhance_lut_word<T, PER_CHANNEL, SMEM>(in[u].x, tab, c, channels);
            out.y = gpuenhance_lut_word<T, PER_CHANNEL, SMEM>(in[u].y, tab, c, channels);
            out.z = gpuenhance_lut_word<T, PER_CHANNEL, SMEM>(in[u].z, tab, c, channels);
            out.w = gpuenhance_lut_word<T, PER_CHANNEL, SMEM>(in[u].w, tab, c, channels);
            gpuenhance_store16(dst + at, out);
        }
    }
    for (gpuenhance_i64 i = head + nvec * V + t; i < n; i += step) {
        const gpuenhance_i64 e = PER_CHANNEL ? (gpuenhance_i64)src[i] * channels + i % channels
                                             : (gpuenhance_i64)src[i];
        dst[i] = gpuenhance_lut_read<T, SMEM>(tab, e);
    }
}

// out = gain * x^gamma on float32, x clipped to [0, 1] first (NaN propagates); same
// head/vector/tail split (float4). The expression is gpuenhance_gamma (common.cuh).
__global__ void gpuenhance_gamma_f32(const float* __restrict__ src, float* __restrict__ dst,
                                     gpuenhance_i64 n, gpuenhance_i64 head, float gamma,
                                     float gain) {
    const gpuenhance_i64 step = (gpuenhance_i64)gridDim.x * blockDim.x;
    const gpuenhance_i64 t = (gpuenhance_i64)blockIdx.x * blockDim.x + threadIdx.x;
    for (gpuenhance_i64 i = t; i < head; i += step)
        dst[i] = gpuenhance_gamma(src[i], gamma, gain);
    const gpuenhance_i64 nvec = (n - head) / 4;
    for (gpuenhance_i64 k = t; k < nvec; k += 2 * step) {  // two vectors in flight, as above
        const bool second = k + step < nvec;
        const float4 in[2] = {
            *reinterpret_cast<const float4*>(src + head + k * 4),
            second ? *reinterpret_cast<const float4*>(src + head + (k + step) * 4) : float4{}};
#pragma unroll
        for (int u = 0; u < 2; ++u) {
            if (u == 1 && !second) break;
            float4 out;
            out.x = gpuenhance_gamma(in[u].x, gamma, gain);
            out.y = gpuenhance_gamma(in[u].y, gamma, gain);
            out.z = gpuenhance_gamma(in[u].z, gamma, gain);
            out.w = gpuenhance_gamma(in[u].w, gamma, gain);
            *reinterpret_cast<float4*>(dst + head + (k + u * step) * 4) = out;
        }
    }
    for (gpuenhance_i64 i = head + nvec * 4 + t; i < n; i += step)
        dst[i] = gpuenhance_gamma(src[i], gamma, gain);
}
