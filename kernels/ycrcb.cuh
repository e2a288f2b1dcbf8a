// gpuenhance: RGB <-> YCrCb in OpenCV's fixed point (cv::cvtColor COLOR_RGB2YCrCb /
// COLOR_YCrCb2RGB for 8- and 16-bit images), bit for bit.
//
// 14-bit coefficients (0.299, 0.587, 0.114 for Y; 0.713 and 0.564 for Cr and Cb; 1.403,
// -0.714, -0.344, 1.773 back), CV_DESCALE rounding ((v + 2^13) >> 14, an arithmetic shift for
// negative v) and saturation to [0, TOP]; `half` is 128 (uint8) or 32768 (uint16). Every
// intermediate fits a 32-bit int for 16-bit inputs (largest: 65535 * 11682 + 32768 * 2^14).
#pragma once

#include "common.cuh"

template <typename T> struct gpuenhance_ycc_range;
template <> struct gpuenhance_ycc_range<gpuenhance_u8> {
    static constexpr int TOP = 255, HALF = 128;
};
template <> struct gpuenhance_ycc_range<gpuenhance_u16> {
    static constexpr int TOP = 65535, HALF = 32768;
};

__device__ __forceinline__ int gpuenhance_descale14(int v) { return (v + (1 << 13)) >> 14; }

template <typename T>
__device__ __forceinline__ int gpuenhance_ycc_clamp(int v) {
    constexpr int TOP = gpuenhance_ycc_range<T>::TOP;
    return v < 0 ? 0 : (v > TOP ? TOP : v);
}

// Y of an RGB pixel (OpenCV: R2Y 4899, G2Y 9617, B2Y 1868).
template <typename T>
__device__ __forceinline__ int gpuenhance_rgb_luma(int r, int g, int b) {
    return gpuenhance_ycc_clamp<T>(gpuenhance_descale14(r * 4899 + g * 9617 + b * 1868));
}

// Cr and Cb of an RGB pixel whose Y is y.
template <typename T>
__device__ __forceinline__ void gpuenhance_rgb_chroma(int r, int b, int y, int& cr, int& cb) {
    constexpr int DELTA = gpuenhance_ycc_range<T>::HALF << 14;
    cr = gpuenhance_ycc_clamp<T>(gpuenhance_descale14((r - y) * 11682 + DELTA));
    cb = gpuenhance_ycc_clamp<T>(gpuenhance_descale14((b - y) * 9241 + DELTA));
}

// RGB of a YCrCb pixel.
template <typename T>
__device__ __forceinline__ void gpuenhance_ycc_to_rgb(int y, int cr, int cb, int& r, int& g, int& b) {
    constexpr int HALF = gpuenhance_ycc_range<T>::HALF;
    cr -= HALF;
    cb -= HALF;
    r = gpuenhance_ycc_clamp<T>(y + gpuenhance_descale14(cr * 22987));
    g = gpuenhance_ycc_clamp<T>(y + gpuenhance_descale14(cb * -5636 + cr * -11698));
    b = gpuenhance_ycc_clamp<T>(y + gpuenhance_descale14(cb * 29049));
}

// The value an intensity op works on: the pixel itself (C = 1) or its Y (RGB, C = 3).
template <typename T, bool COLOR>
__device__ __forceinline__ int gpuenhance_intensity(const T* px) {
    if constexpr (COLOR) {
        return gpuenhance_rgb_luma<T>(px[0], px[1], px[2]);
    } else {
        return px[0];
    }
}

// Write the pixel `px` with its intensity replaced by `v` to `out`: v itself (C = 1), or the
// RGB of (v, Cr, Cb) with Cr, Cb those of px (C = 3) -- cvtColor there and back.
template <typename T, bool COLOR>
__device__ __forceinline__ void gpuenhance_set_intensity(const T* px, T* out, int v) {
    if constexpr (COLOR) {
        const int r0 = px[0], g0 = px[1], b0 = px[2];
        int cr, cb, r, g, b;
        gpuenhance_rgb_chroma<T>(r0, b0, gpuenhance_rgb_luma<T>(r0, g0, b0), cr, cb);
        gpuenhance_ycc_to_rgb<T>(v, cr, cb, r, g, b);
        out[0] = (T)r;
        out[1] = (T)g;
        out[2] = (T)b;
    } else {
        out[0] = (T)v;
    }
}
