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

// x^g for x in [0, 1] (or NaN) and a finite g > 0, in about half the instructions of powf
// (which handles every sign, exponent and infinity): 2^(g * log2 x), with g * log2 x carried in
// two floats (hi + lo) so that its rounding does not grow with |g * log2 x|.
//   log2 x = e + T_i + log2(1 + z): x = 2^e * m (read from x * 2^24: denormals too), m in
//   [1, 2);
//   i = the top 6 bits of m's fraction; z = m * inv_i - 1 (one fma, |z| <= 1/64), inv_i =
//   float(1 / c_i) for the interval's centre c_i (c = 1 for i = 0 and 2 for i = 63, so that x
//   next to 1 on either side has T = 0 and an exact z); T_i = -log2(inv_i), less 1 for
//   i >= 32 (whose e is raised by 1), as a float pair (hi, lo) from float64;
//   log2(1 + z) by its series to z^5 (truncation below 2e-10 relative).
//   g * log2 x: g*e and g*T_hi exactly as pairs (fma residuals), plus g * (T_lo + log2(1+z)).
//   2^y = 2^k * 2^r, k = rint(y), r = y - k in [-0.5, 0.5] from the pairs; 2^r by its series to
//   r^7 (truncation 7e-9 relative); 2^k applied in two exact halves so denormal results round
//   once.
// Error: about 2 ulp (2.4e-7 relative) plus ln2 * g * 7e-10 from the table and series, far
// inside the gamma contract (relative 1e-6, tests/tolerances.py); 0 -> 0, 1 -> 1 exactly, NaN
// stays NaN. Every multiply-add is an explicit fmaf and every other product and sum is
// rounded on its own (__fmul_rn, __fadd_rn), so no contraction changes a bit: the emulator
// computes what the GPU computes. `tab` is gpuenhance_log2_table or a copy of it (shared memory).
struct __align__(16) gpuenhance_log2_entry {
    float inv, hi, lo, pad;
};
// {inv_i, T_hi, T_lo, 0} for i = 0..63 (generated in float64; tests/test_cuda_filters.py
// recomputes it).
__device__ gpuenhance_log2_entry gpuenhance_log2_table[64] = {
    {1.000000000e+00f, 0.0f, 0.0f, 0.0f},
    {9.770992398e-01f, 3.342299536e-02f, 1.476094136e-09f, 0.0f},
    {9.624060392e-01f, 5.528239906e-02f, 1.652576687e-10f, 0.0f},
    {9.481481314e-01f, 7.681562006e-02f, 2.514770392e-09f, 0.0f},
    {9.343065619e-01f, 9.803209454e-02f, -1.569621516e-10f, 0.0f},
    {9.208633304e-01f, 1.189410388e-01f, 9.579839144e-10f, 0.0f},
    {9.078013897e-01f, 1.395514011e-01f, -3.056619846e-09f, 0.0f},
    {8.951048851e-01f, 1.598713547e-01f, -1.797371807e-09f, 0.0f},
    {8.827586174e-01f, 1.799090952e-01f, 2.212786065e-10f, 0.0f},
    {8.707482815e-01f, 1.996723711e-01f, 3.246819702e-09f, 0.0f},
    {8.590604067e-01f, 2.191685140e-01f, -2.692011059e-10f, 0.0f},
    {8.476821184e-01f, 2.384047359e-01f, 4.745880133e-09f, 0.0f},
    {8.366013169e-01f, 2.573878169e-01f, 8.991495548e-09f, 0.0f},
    {8.258064389e-01f, 2.761244178e-01f, 9.662046274e-09f, 0.0f},
    {8.152866364e-01f, 2.946207225e-01f, 4.861523628e-09f, 0.0f},
    {8.050314188e-01f, 3.128830194e-01f, -1.444923559e-08f, 0.0f},
    {7.950310707e-01f, 3.309168518e-01f, -5.166288508e-10f, 0.0f},
    {7.852760553e-01f, 3.487281799e-01f, 7.889799036e-09f, 0.0f},
    {7.757575512e-01f, 3.663222492e-01f, 1.075459011e-08f, 0.0f},
    {7.664670944e-01f, 3.837042451e-01f, -6.361009941e-09f, 0.0f},
    {7.573964596e-01f, 4.008794129e-01f, 4.582101365e-09f, 0.0f},
    {7.485380173e-01f, 4.178524911e-01f, 1.299661623e-08f, 0.0f},
    {7.398843765e-01f, 4.346282482e-01f, 1.166875041e-08f, 0.0f},
    {7.314285636e-01f, 4.512111247e-01f, 2.625310636e-09f, 0.0f},
    {7.231638432e-01f, 4.676055610e-01f, -1.362222157e-08f, 0.0f},
    {7.150837779e-01f, 4.838158190e-01f, 5.630728661e-10f, 0.0f},
    {7.071823478e-01f, 4.998458326e-01f, -1.263082083e-09f, 0.0f},
    {6.994535327e-01f, 5.156998634e-01f, 1.448683129e-08f, 0.0f},
    {6.918919086e-01f, 5.313814282e-01f, -2.659393150e-09f, 0.0f},
    {6.844919920e-01f, 5.468944311e-01f, 5.575364614e-10f, 0.0f},
    {6.772486567e-01f, 5.622424483e-01f, 1.955861784e-08f, 0.0f},
    {6.701570749e-01f, 5.774288177e-01f, -4.493033501e-09f, 0.0f},
    {6.632124186e-01f, -4.075429142e-01f, -1.230218327e-08f, 0.0f},
    {6.564102769e-01f, -3.926697373e-01f, 6.077546910e-09f, 0.0f},
    {6.497461796e-01f, -3.779481649e-01f, 1.395577520e-08f, 0.0f},
    {6.432160735e-01f, -3.633753657e-01f, 1.729315580e-09f, 0.0f},
    {6.368159056e-01f, -3.489482701e-01f, -5.148235616e-09f, 0.0f},
    {6.305418611e-01f, -3.346640468e-01f, -1.119358206e-08f, 0.0f},
    {6.243902445e-01f, -3.205198944e-01f, -7.476672614e-09f, 0.0f},
    {6.183574796e-01f, -3.065130115e-01f, -1.156272944e-08f, 0.0f},
    {6.124401689e-01f, -2.926408052e-01f, -9.601899720e-09f, 0.0f},
    {6.066350937e-01f, -2.789008617e-01f, -3.297280005e-09f, 0.0f},
    {6.009389758e-01f, -2.652904093e-01f, 8.726367184e-09f, 0.0f},
    {5.953488350e-01f, -2.518071532e-01f, 8.188862921e-09f, 0.0f},
    {5.898617506e-01f, -2.384487689e-01f, 2.642234875e-09f, 0.0f},
    {5.844748616e-01f, -2.252128869e-01f, 6.321529966e-09f, 0.0f},
    {5.791855454e-01f, -2.120974958e-01f, -7.292343174e-09f, 0.0f},
    {5.739910603e-01f, -1.991001666e-01f, -6.075654646e-09f, 0.0f},
    {5.688889027e-01f, -1.862188429e-01f, -8.529018602e-10f, 0.0f},
    {5.638766289e-01f, -1.734514534e-01f, -1.427056251e-10f, 0.0f},
    {5.589519739e-01f, -1.607962400e-01f, 5.227613009e-09f, 0.0f},
    {5.541125536e-01f, -1.482509524e-01f, -4.877313664e-09f, 0.0f},
    {5.493562222e-01f, -1.358138472e-01f, -5.474309894e-09f, 0.0f},
    {5.446808338e-01f, -1.234830096e-01f, 1.884294054e-09f, 0.0f},
    {5.400843620e-01f, -1.112566814e-01f, 1.488688062e-10f, 0.0f},
    {5.355648398e-01f, -9.913315624e-02f, 1.170133102e-09f, 0.0f},
    {5.311203599e-01f, -8.711074293e-02f, 3.242344171e-09f, 0.0f},
    {5.267489552e-01f, -7.518745214e-02f, -5.892782928e-10f, 0.0f},
    {5.224489570e-01f, -6.336199492e-02f, -3.597194542e-09f, 0.0f},
    {5.182186365e-01f, -5.163280293e-02f, -1.759457802e-09f, 0.0f},
    {5.140562057e-01f, -3.999801353e-02f, -6.611383663e-10f, 0.0f},
    {5.099601746e-01f, -2.845648862e-02f, -4.206749393e-10f, 0.0f},
    {5.059288740e-01f, -1.700648293e-02f, -1.521192061e-10f, 0.0f},
    {5.000000000e-01f, 0.0f, 0.0f, 0.0f},
};

__device__ __forceinline__ float gpuenhance_pow01(float x, float g,
                                                  const gpuenhance_log2_entry* tab) {
    // x * 2^24 is exact and normal for every x in (0, 1], denormals included.
    const int bits = __float_as_int(__fmul_rn(x, 16777216.0f));
    const int i = (bits >> 17) & 63;
    const gpuenhance_log2_entry t = tab[i];
    const float m = __int_as_float((bits & 0x007fffff) | 0x3f800000);
    const float e = (float)((bits >> 23) - (127 + 24) + (i >> 5));
    const float z = fmaf(m, t.inv, -1.0f);
    float p = fmaf(z, 2.885390222e-01f, -3.606737554e-01f);
    p = fmaf(z, p, 4.808983505e-01f);
    p = fmaf(z, p, -7.213475108e-01f);
    p = fmaf(z, p, 1.442695022e+00f);
    p = __fmul_rn(z, p);                  // log2(1 + z)
    const float y1 = __fmul_rn(g, e);     // g * e = y1 + y1l exactly
    const float y1l = fmaf(g, e, -y1);
    const float y2 = __fmul_rn(g, t.hi);  // g * (T_hi + T_lo + p) = y2 + y2l
    const float y2l = fmaf(g, __fadd_rn(t.lo, p), fmaf(g, t.hi, -y2));
    const float y = __fadd_rn(y1, __fadd_rn(y2, y2l));
    const float k = rintf(y);
    const float r = __fadd_rn(__fadd_rn(__fsub_rn(y1, k), y2), __fadd_rn(y1l, y2l));
    float q = fmaf(r, 1.525273365e-05f, 1.540352969e-04f);
    q = fmaf(r, q, 1.333355787e-03f);
    q = fmaf(r, q, 9.618128650e-03f);
    q = fmaf(r, q, 5.550410971e-02f);
    q = fmaf(r, q, 2.402265072e-01f);
    q = fmaf(r, q, 6.931471825e-01f);
    q = fmaf(r, q, 1.0f);                 // 2^r
    const int ki = max(__float2int_rn(k), -200);  // in [-160, 0] where used
    const int k1 = ki >> 1;
    const float s1 = __int_as_float((k1 + 127) << 23);
    const float s2 = __int_as_float((ki - k1 + 127) << 23);
    const float v = __fmul_rn(__fmul_rn(q, s1), s2);
    // 2^y below 2^-160 (g * log2 x very negative or -inf, and x = 0) is 0; NaN stays NaN.
    const float out = (y < -160.0f || x == 0.0f) ? 0.0f : v;
    return x != x ? x : out;
}

#define GPUENHANCE_POW01_MAX_G 64.0f

// Float gamma: gain * x^gamma with x clipped to [0, 1] first. Comparisons (not fminf/fmaxf)
// so that NaN stays NaN, as numpy.clip keeps it on the CPU engine. gamma > 0 and finite (the
// public op checks it). `tab` as for gpuenhance_pow01.
__device__ __forceinline__ float gpuenhance_gamma(float v, float gamma, float gain,
                                                  const gpuenhance_log2_entry* tab =
                                                      gpuenhance_log2_table) {
    const float x = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
    // Past GPUENHANCE_POW01_MAX_G the error term ln2 * g * 7e-10 (and the rounding of
    // g * log2(1 + z), up to g * 0.0113) would approach the contract: powf there.
    if (gamma > GPUENHANCE_POW01_MAX_G) return __fmul_rn(gain, powf(x, gamma));
    return __fmul_rn(gain, gpuenhance_pow01(x, gamma, tab));
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
