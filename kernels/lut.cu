// gpuenhance: lookup tables (uint8/uint16) and float gamma.
//
// All kernels treat the image as one flat contiguous array of n elements and walk it with a
// grid-stride loop on 64-bit indices, in three parts:
//   [0, head)            scalar: the elements before the first 16-byte-aligned one of the
//                        destination (one vector more when the source lies `delta` bytes past
//                        a boundary and the first vector would read before the array; the
//                        host sets head = n, all scalar, when no element of the destination
//                        starts on a boundary);
//   [head, head + V*m)   16-byte vectors (uint4 / float4): aligned 16-byte stores, and loads of
//                        the same 16 bytes of the source at any alignment: `delta` =
//                        (source - destination) mod 16 bytes; with delta = 0 one aligned load,
//                        else the two aligned 16-byte vectors holding those bytes, funnel-
//                        shifted into place (gpuenhance_load16_shifted). Two vectors per thread
//                        and trip (vectors k and k + grid size, all loads first); m stops where
//                        the last vector's second aligned load would pass the source's end;
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

// The 16 bytes at p, which lie `delta` (1..15) bytes past a 16-byte boundary: the two aligned
// vectors that hold them (p - delta and p - delta + 16, both must be readable), shifted down by
// delta bytes: word w of the result is bytes 4w..4w+3 of p.
__device__ __forceinline__ uint4 gpuenhance_load16_shifted(const void* p, unsigned delta) {
    const unsigned char* a = reinterpret_cast<const unsigned char*>(p) - delta;
    const uint4 lo = gpuenhance_load16(a);
    const uint4 hi = gpuenhance_load16(a + 16);
    const unsigned q = delta >> 2;             // whole words to skip, 0..3
    const unsigned sh = 8u * (delta & 3u);     // then bytes, as a bit shift
    // r[k] = word q + k of the 8 words lo.x .. hi.w (selects on the uniform q).
    const unsigned w0 = q == 0 ? lo.x : q == 1 ? lo.y : q == 2 ? lo.z : lo.w;
    const unsigned w1 = q == 0 ? lo.y : q == 1 ? lo.z : q == 2 ? lo.w : hi.x;
    const unsigned w2 = q == 0 ? lo.z : q == 1 ? lo.w : q == 2 ? hi.x : hi.y;
    const unsigned w3 = q == 0 ? lo.w : q == 1 ? hi.x : q == 2 ? hi.y : hi.z;
    const unsigned w4 = q == 0 ? hi.x : q == 1 ? hi.y : q == 2 ? hi.z : hi.w;
    uint4 r;
    r.x = __funnelshift_r(w0, w1, sh);
    r.y = __funnelshift_r(w1, w2, sh);
    r.z = __funnelshift_r(w2, w3, sh);
    r.w = __funnelshift_r(w3, w4, sh);
    return r;
}

// Vectors of V elements the kernels may take from [head, n): all whole ones with delta = 0;
// with delta > 0 those whose second aligned load (reaching 16 - delta bytes past the vector's
// end) stays inside the source.
__device__ __forceinline__ gpuenhance_i64 gpuenhance_vectors(gpuenhance_i64 n, gpuenhance_i64 head,
                                                             int delta, int size) {
    const int past = delta ? (16 - delta + size - 1) / size : 0;
    const gpuenhance_i64 room = n - head - past;
    return room > 0 ? room / (16 / size) : 0;
}

// The 16 source bytes at src (delta bytes past a boundary), as one uint4.
__device__ __forceinline__ uint4 gpuenhance_load16_any(const void* src, int delta) {
    return delta ? gpuenhance_load16_shifted(src, (unsigned)delta) : gpuenhance_load16(src);
}

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
                               int delta, int channels) {
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
    const gpuenhance_i64 nvec = gpuenhance_vectors(n, head, delta, (int)sizeof(T));
    // Vectors k and k + step per trip: both loads are issued before the lookups, so each
    // thread keeps 32 bytes in flight.
    for (gpuenhance_i64 k = t; k < nvec; k += 2 * step) {
        const bool second = k + step < nvec;
        const uint4 in[2] = {
            gpuenhance_load16_any(src + head + k * V, delta),
            second ? gpuenhance_load16_any(src + head + (k + step) * V, delta) : uint4{}};
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
// head/vector/tail split (16-byte vectors of 4 floats). The expression is gpuenhance_gamma
// (common.cuh, gpuenhance_pow01), the very one the filters fuse.
__global__ void gpuenhance_gamma_f32(const float* __restrict__ src, float* __restrict__ dst,
                                     gpuenhance_i64 n, gpuenhance_i64 head, int delta,
                                     float gamma, float gain) {
    // The log2 table of gpuenhance_pow01 (1 KiB) in shared memory: conflict-free-enough
    // lookups instead of cached global loads.
    __shared__ gpuenhance_log2_entry tab[64];
    for (int i = threadIdx.x; i < 64; i += blockDim.x) tab[i] = gpuenhance_log2_table[i];
    __syncthreads();
    const gpuenhance_i64 step = (gpuenhance_i64)gridDim.x * blockDim.x;
    const gpuenhance_i64 t = (gpuenhance_i64)blockIdx.x * blockDim.x + threadIdx.x;
    for (gpuenhance_i64 i = t; i < head; i += step)
        dst[i] = gpuenhance_gamma(src[i], gamma, gain, tab);
    const gpuenhance_i64 nvec = gpuenhance_vectors(n, head, delta, 4);
    for (gpuenhance_i64 k = t; k < nvec; k += 2 * step) {  // two vectors in flight, as above
        const bool second = k + step < nvec;
        const uint4 in[2] = {
            gpuenhance_load16_any(src + head + k * 4, delta),
            second ? gpuenhance_load16_any(src + head + (k + step) * 4, delta) : uint4{}};
#pragma unroll
        for (int u = 0; u < 2; ++u) {
            if (u == 1 && !second) break;
            float4 out;
            out.x = gpuenhance_gamma(__uint_as_float(in[u].x), gamma, gain, tab);
            out.y = gpuenhance_gamma(__uint_as_float(in[u].y), gamma, gain, tab);
            out.z = gpuenhance_gamma(__uint_as_float(in[u].z), gamma, gain, tab);
            out.w = gpuenhance_gamma(__uint_as_float(in[u].w), gamma, gain, tab);
            *reinterpret_cast<float4*>(dst + head + (k + u * step) * 4) = out;
        }
    }
    for (gpuenhance_i64 i = head + nvec * 4 + t; i < n; i += step)
        dst[i] = gpuenhance_gamma(src[i], gamma, gain, tab);
}
