// gpuenhance: patch-SGD enhancement of a region of interest (gpuenhance.enhance_roi).
//
// Model, per channel c: out = corr(x, w_c) + b_c on the image normalized to [0, 1], float32.
// Parameters are (C, K*K + 1) floats, row c = [w_c (row-major), b_c].
//
// region : (roi_h + 2R, roi_w + 2R, C) float32, the ROI grown by R = K / 2 on every side
//          (reflect_101 beyond the image), prepared by the host code.
// target : (roi_h, roi_w, C) float32.
// positions : (steps, batch, 2) int32 top-left corners (row, column) relative to the ROI.
#include "common.cuh"

#define GPUENHANCE_SGD_THREADS 128

// Residuals and gradients of one batch: one block per (patch, channel), 128 threads
// (GPUENHANCE_SGD_THREADS, a power of two; the host launches exactly that many).
// grad (C, K*K + 1) and loss_history[step] are accumulated with one atomicAdd per block per term;
// grad_scale = 2 / count and loss_scale = 1 / count, count = batch * patch * patch * C.
// Dynamic shared memory: (patch + 2R)^2 floats.
template <int K>
__global__ void gpuenhance_patch_sgd_grad(const float* __restrict__ region,
                                          const float* __restrict__ target,
                                          const int* __restrict__ positions,
                                          const float* __restrict__ params,
                                          float* __restrict__ grad,
                                          float* __restrict__ loss_history,
                                          int step, int batch, int patch, int roi_w,
                                          int channels, float grad_scale, float loss_scale) {
    constexpr int R = K / 2;
    constexpr int NP = K * K + 1;
    GPUENHANCE_DYNAMIC_SMEM(float, tile);
    __shared__ float red[NP + 1][GPUENHANCE_SGD_THREADS];
    __shared__ float wsh[NP];

    const int b = blockIdx.x;
    const int c = blockIdx.y;
    const int tid = threadIdx.x;
    const int nt = blockDim.x;
    const gpuenhance_i64 pos = ((gpuenhance_i64)step * batch + b) * 2;
    const int py = positions[pos];
    const int px = positions[pos + 1];
    const int span = patch + 2 * R;
    const gpuenhance_i64 region_w = (gpuenhance_i64)roi_w + 2 * R;

    for (int i = tid; i < span * span; i += nt) {
        const int ty = i / span;
        const int tx = i - ty * span;
        tile[i] = region[(((gpuenhance_i64)(py + ty)) * region_w + (px + tx)) * channels + c];
    }
    if (tid < NP) wsh[tid] = params[c * NP + tid];
    __syncthreads();

    float acc[NP];
#pragma unroll
    for (int t = 0; t < NP; ++t) acc[t] = 0.0f;
    float lacc = 0.0f;

    const int npix = patch * patch;
    for (int p = tid; p < npix; p += nt) {
        const int iy = p / patch;
        const int ix = p - iy * patch;
        float pred = wsh[NP - 1];
#pragma unroll
        for (int dy = 0; dy < K; ++dy) {
#pragma unroll
            for (int dx = 0; dx < K; ++dx) {
                pred += wsh[dy * K + dx] * tile[(iy + dy) * span + ix + dx];
            }
        }
        const float e =
            pred - target[(((gpuenhance_i64)(py + iy)) * roi_w + (px + ix)) * channels + c];
#pragma unroll
        for (int dy = 0; dy < K; ++dy) {
#pragma unroll
            for (int dx = 0; dx < K; ++dx) {
                acc[dy * K + dx] += e * tile[(iy + dy) * span + ix + dx];
            }
        }
        acc[NP - 1] += e;
        lacc += e * e;
    }

    // Block reduction of all NP + 1 terms at once (tree over the threads); every thread
    // reaches every barrier.
#pragma unroll
    for (int t = 0; t < NP; ++t) red[t][tid] = acc[t];
    red[NP][tid] = lacc;
    __syncthreads();
    for (int s = GPUENHANCE_SGD_THREADS / 2; s > 0; s >>= 1) {
        if (tid < s) {
            for (int t = 0; t <= NP; ++t) red[t][tid] += red[t][tid + s];
        }
        __syncthreads();
    }
    if (tid < NP) {
        atomicAdd(&grad[c * NP + tid], red[tid][0] * grad_scale);
    } else if (tid == NP) {
        atomicAdd(&loss_history[step], red[NP][0] * loss_scale);
    }
}

// One preconditioned Adam step: one block per channel, one thread per parameter.
// g_phi = T^T grad; Adam moments and bias correction (bc1 = 1 - beta1^t, bc2 = 1 - beta2^t)
// on phi; params = params0 + T phi; the gradient buffer is zeroed for the next step.
// T : (C, NP, NP) row-major.
template <int K>
__global__ void gpuenhance_patch_sgd_adam(float* __restrict__ params,
                                          const float* __restrict__ params0,
                                          float* __restrict__ phi,
                                          float* __restrict__ m,
                                          float* __restrict__ v,
                                          float* __restrict__ grad,
                                          const float* __restrict__ T,
                                          float lr, float beta1, float beta2,
                                          float bc1, float bc2, float eps) {
    constexpr int NP = K * K + 1;
    __shared__ float gsh[NP];
    __shared__ float psh[NP];
    const int c = blockIdx.x;
    const int i = threadIdx.x;
    const float* Tc = T + (gpuenhance_i64)c * NP * NP;
    if (i < NP) gsh[i] = grad[c * NP + i];
    __syncthreads();
    if (i < NP) {
        const int idx = c * NP + i;
        grad[idx] = 0.0f;
        float g = 0.0f;
        for (int j = 0; j < NP; ++j) g += Tc[j * NP + i] * gsh[j];
        const float mi = beta1 * m[idx] + (1.0f - beta1) * g;
        const float vi = beta2 * v[idx] + (1.0f - beta2) * (g * g);
        m[idx] = mi;
        v[idx] = vi;
        const float mhat = mi / bc1;
        const float vhat = vi / bc2;
        const float p = phi[idx] - lr * mhat / (sqrtf(vhat) + eps);
        phi[idx] = p;
        psh[i] = p;
    }
    __syncthreads();
    if (i < NP) {
        float s = 0.0f;
        for (int j = 0; j < NP; ++j) s += Tc[i * NP + j] * psh[j];
        params[c * NP + i] = params0[c * NP + i] + s;
    }
}

// Saturating store of a normalized value: integers scale by maxval and round half to even,
// float32 clamps to [0, 1].
template <typename T> struct gpuenhance_sgd_store {
    static __device__ __forceinline__ T from(float v, float maxval) {
        return gpuenhance_cast<T>::from(v * maxval);
    }
};
template <> struct gpuenhance_sgd_store<float> {
    static __device__ __forceinline__ float from(float v, float) {
        return fminf(fmaxf(v, 0.0f), 1.0f);
    }
};

// The enhanced ROI: one thread per ROI pixel and channel writes conv + bias into out
// ((img_h, img_w, C), a copy of the input), at (roi_y + iy, roi_x + ix).
template <typename T, int K>
__global__ void gpuenhance_patch_sgd_apply(const float* __restrict__ region,
                                           const float* __restrict__ params,
                                           T* __restrict__ out,
                                           int roi_x, int roi_y, int roi_w, int roi_h,
                                           int img_w, int channels, float maxval) {
    constexpr int NP = K * K + 1;
    const gpuenhance_i64 idx = (gpuenhance_i64)blockIdx.x * blockDim.x + threadIdx.x;
    const gpuenhance_i64 total = (gpuenhance_i64)roi_h * roi_w * channels;
    if (idx >= total) return;  // no barrier in this kernel
    const int c = (int)(idx % channels);
    const gpuenhance_i64 pix = idx / channels;
    const int iy = (int)(pix / roi_w);
    const int ix = (int)(pix - (gpuenhance_i64)iy * roi_w);
    const gpuenhance_i64 region_w = (gpuenhance_i64)roi_w + 2 * (K / 2);
    const float* pc = params + c * NP;
    float acc = pc[NP - 1];
#pragma unroll
    for (int dy = 0; dy < K; ++dy) {
#pragma unroll
        for (int dx = 0; dx < K; ++dx) {
            acc += pc[dy * K + dx] * region[((gpuenhance_i64)(iy + dy) * region_w + ix + dx) * channels + c];
        }
    }
    out[((gpuenhance_i64)(roi_y + iy) * img_w + roi_x + ix) * channels + c] =
        gpuenhance_sgd_store<T>::from(acc, maxval);
}
