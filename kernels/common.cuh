// gpuenhance: helpers shared by every kernel file.
//
// Compiled by NVRTC for the GPU, and by the CUDA-on-CPU emulator as host C++ (the emulator
// pre-includes its own header, which defines GPUENHANCE_EMULATOR and the CUDA built-ins).
// No system headers: NVRTC has none.
#pragma once

typedef unsigned char gpuenhance_u8;
typedef unsigned short gpuenhance_u16;
typedef long long gpuenhance_i64;

// Dynamic shared memory, declared the same way on both targets:
//   GPUENHANCE_DYNAMIC_SMEM(float, tile);   // float* tile, sized by the launch's shared_mem
#ifdef GPUENHANCE_EMULATOR
#define GPUENHANCE_DYNAMIC_SMEM(T, name) T* name = reinterpret_cast<T*>(gpuenhance_emu_dynamic_smem())
#else
#define GPUENHANCE_DYNAMIC_SMEM(T, name)                                    \
    extern __shared__ __align__(16) unsigned char gpuenhance_dynamic_smem_[]; \
    T* name = reinterpret_cast<T*>(gpuenhance_dynamic_smem_)
#endif

// Border modes, numbered as the host code passes them (gpuenhance._cuda._common.BORDER_CODES).
#define GPUENHANCE_BORDER_REPLICATE 0
#define GPUENHANCE_BORDER_REFLECT 1
#define GPUENHANCE_BORDER_REFLECT_101 2
#define GPUENHANCE_BORDER_CONSTANT 3

// Map a coordinate i (any integer) into [0, n) by OpenCV's rules for `border`
// (replicate: aaa|abcd|ddd, reflect: cba|abcd|dcb, reflect_101: dcb|abcd|cba).
// Returns -1 for a coordinate outside the image under the constant border.
// Closed form, so windows larger than the image (many reflections) cost no loop.
// 32-bit: needs 2 * n and i to fit an int; the host refuses H or W above 2^30 - 1
// (gpuenhance._cuda._common.MAX_EXTENT), and element offsets are formed in gpuenhance_i64.
__device__ __forceinline__ int gpuenhance_border_index(int i, int n, int border) {
    if (i >= 0 && i < n) return i;
    if (border == GPUENHANCE_BORDER_CONSTANT) return -1;
    if (border == GPUENHANCE_BORDER_REPLICATE || n == 1) return i < 0 ? 0 : n - 1;
    const int delta = border == GPUENHANCE_BORDER_REFLECT_101 ? 1 : 0;
    const int period = 2 * n - 2 * delta;
    int m = i % period;
    if (m < 0) m += period;
    return m < n ? m : period - m - (1 - delta);
}

// Saturating conversions from float, rounding half to even as OpenCV's saturate_cast does.
template <typename T> struct gpuenhance_cast;
template <> struct gpuenhance_cast<gpuenhance_u8> {
    static __device__ __forceinline__ gpuenhance_u8 from(float v) {
        v = rintf(v);
        return (gpuenhance_u8)(v <= 0.0f ? 0.0f : (v >= 255.0f ? 255.0f : v));
    }
};
template <> struct gpuenhance_cast<gpuenhance_u16> {
    static __device__ __forceinline__ gpuenhance_u16 from(float v) {
        v = rintf(v);
        return (gpuenhance_u16)(v <= 0.0f ? 0.0f : (v >= 65535.0f ? 65535.0f : v));
    }
};
template <> struct gpuenhance_cast<float> {
    static __device__ __forceinline__ float from(float v) { return v; }
};
template <> struct gpuenhance_cast<double> {
    static __device__ __forceinline__ double from(double v) { return v; }
};

// 16-byte vector loads and stores (the pointer must be 16-byte aligned).
__device__ __forceinline__ uint4 gpuenhance_load16(const void* p) {
    return *reinterpret_cast<const uint4*>(p);
}
__device__ __forceinline__ void gpuenhance_store16(void* p, uint4 v) {
    *reinterpret_cast<uint4*>(p) = v;
}

// Swap two values so that a <= b (compare-exchange of sorting networks).
template <typename T>
__device__ __forceinline__ void gpuenhance_sort2(T& a, T& b) {
    const T lo = a < b ? a : b;
    const T hi = a < b ? b : a;
    a = lo;
    b = hi;
}

// Float gamma: gain * x^gamma with x clipped to [0, 1] first. Comparisons (not fminf/fmaxf)
// so that NaN stays NaN, as numpy.clip keeps it on the CPU engine.
__device__ __forceinline__ float gpuenhance_gamma(float v, float gamma, float gain) {
    const float x = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
    return gain * powf(x, gamma);
}

// The point operation a filter kernel may fuse into its store (template flag FUSE), so that
// "filter, then LUT/gamma" is one pass over memory and equals the two stages one by one:
//   FUSE = 0  none; lut, lut_channels, gamma and gain are not read.
//   FUSE = 1  lookup table (uint8/uint16) on the rounded, saturated value:
//             out = lut[v * lut_channels + c], c = 0 for a shared table (lut_channels = 1),
//             the channel for an (entries, C) table.
//   FUSE = 2  gamma (float32 only): gpuenhance_gamma(v, gamma, gain), the expression of
//             gpuenhance_gamma_f32 (kernels/lut.cu).
template <typename T, int FUSE>
__device__ __forceinline__ T gpuenhance_point(T v, const T* __restrict__ lut, int lut_channels,
                                              int c, float gamma, float gain) {
    if constexpr (FUSE == 1) {
        return __ldg(lut + ((gpuenhance_i64)v * lut_channels + (lut_channels > 1 ? c : 0)));
    } else if constexpr (FUSE == 2) {
        return gpuenhance_gamma(v, gamma, gain);
    } else {
        return v;
    }
}
