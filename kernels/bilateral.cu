// gpuenhance: bilateral filter with cv2.bilateralFilter's semantics (uint8 and float32, one
// or three channels).
//
// out(p) = sum_k w_k v(p + o_k) / sum_k w_k over the window offsets o_k with |o_k| <= radius
// (a disc, OpenCV's order: dy outer, dx inner), w_k = space[k] * colour weight of the distance
// between v(p + o_k) and v(p): |dv| for one channel, the L1 sum over RGB for three. uint8: the
// colour weight from the host's table of 256 * CN floats (OpenCV's colour table), the result
// rounded half to even; float32: expf(dist^2 * colour_coeff) computed directly (OpenCV
// interpolates a table: results agree to a relative 1e-3). Outside pixels by the border
// rule; the constant border reads 0 (cv::copyMakeBorder's default value).
// Launch: block (16, 16), grid (ceil(W / 16), ceil(H / 16), min(N, 65535)).
#include "common.cuh"

template <typename T, int CN>
__global__ void gpuenhance_bilateral(const T* __restrict__ src, T* __restrict__ dst,
                                     const int* __restrict__ dy, const int* __restrict__ dx,
                                     const float* __restrict__ space,
                                     const float* __restrict__ colour, float colour_coeff,
                                     int taps, int images, int h, int w, int border) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= w || y >= h) return;
    for (int n = blockIdx.z; n < images; n += gridDim.z) {
        const T* img = src + (gpuenhance_i64)n * h * w * CN;
        const T* centre = img + ((gpuenhance_i64)y * w + x) * CN;
        float c0[CN];
        for (int c = 0; c < CN; ++c) c0[c] = (float)centre[c];
        float sum[CN];
        for (int c = 0; c < CN; ++c) sum[c] = 0.0f;
        float wsum = 0.0f;
        for (int k = 0; k < taps; ++k) {
            const int yy = gpuenhance_border_index(y + dy[k], h, border);
            const int xx = gpuenhance_border_index(x + dx[k], w, border);
            float v[CN];
            if (yy < 0 || xx < 0) {
                for (int c = 0; c < CN; ++c) v[c] = 0.0f;
            } else {
                const T* q = img + ((gpuenhance_i64)yy * w + xx) * CN;
                for (int c = 0; c < CN; ++c) v[c] = (float)q[c];
            }
            float dist = 0.0f;
            for (int c = 0; c < CN; ++c) dist += fabsf(v[c] - c0[c]);
            float cw;
            if constexpr (sizeof(T) == 1) {
                cw = colour[(int)dist];
            } else {
                cw = expf(dist * dist * colour_coeff);
            }
            const float wk = space[k] * cw;
            wsum += wk;
            for (int c = 0; c < CN; ++c) sum[c] += v[c] * wk;
        }
        T* out = dst + (gpuenhance_i64)n * h * w * CN + ((gpuenhance_i64)y * w + x) * CN;
        for (int c = 0; c < CN; ++c) out[c] = gpuenhance_cast<T>::from(sum[c] / wsum);
    }
}
