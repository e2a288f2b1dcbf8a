// gpuenhance: FFT-LMS restoration: one fused normalized complex LMS step, and the exact
// solver's accumulation pass.
//
// Spectra are complex64 (float2) arrays laid out (N, H, Wf, C) with Wf = W/2 + 1 (real FFT
// over H and W). One thread owns one frequency bin (h, w, c) of the weights W and of the running
// power P, and walks the B pairs of the batch, whose indices are order[start .. start+B):
//
//   E_b  = F_b - W * G_b
//   grad = mean_b conj(G_b) * E_b          p = mean_b |G_b|^2
//   P    = p (first step) or beta * P + (1 - beta) * p
//   W   += mu * (grad - leak * W) / (P + eps)
//
// The loss of the step, sum_b sum_bins weight * |E_b|^2 * loss_scale (weight 2 for a bin whose
// Hermitian mirror is not stored, else 1: Parseval over the full spectrum), is reduced per block
// in shared memory and written to partials[step * gridDim.x + blockIdx.x]; the host sums those
// once per epoch. No atomics, no early return before the barrier.
#include "common.cuh"

template <int BLOCK>
__global__ void gpuenhance_lms_step(const float2* __restrict__ G, const float2* __restrict__ F,
                                    float2* __restrict__ W, float* __restrict__ P,
                                    const int* __restrict__ order, int start, int batch,
                                    long long nbins, int wf, int channels, int w_even, float mu,
                                    float leak, float eps, float beta, int first,
                                    float loss_scale, float* __restrict__ partials, int step) {
    __shared__ float partial[BLOCK];
    const float inv_batch = 1.0f / (float)batch;
    float acc = 0.0f;
    const long long stride = (long long)gridDim.x * BLOCK;
    for (long long i = (long long)blockIdx.x * BLOCK + threadIdx.x; i < nbins; i += stride) {
        const float2 w = W[i];
        float grad_re = 0.0f, grad_im = 0.0f, power = 0.0f, err = 0.0f;
        for (int b = 0; b < batch; ++b) {
            const long long off = (long long)order[start + b] * nbins + i;
            const float2 g = G[off];
            const float2 f = F[off];
            const float e_re = f.x - (w.x * g.x - w.y * g.y);
            const float e_im = f.y - (w.x * g.y + w.y * g.x);
            grad_re += g.x * e_re + g.y * e_im;
            grad_im += g.x * e_im - g.y * e_re;
            power += g.x * g.x + g.y * g.y;
            err += e_re * e_re + e_im * e_im;
        }
        grad_re *= inv_batch;
        grad_im *= inv_batch;
        power *= inv_batch;
        const float p_new = first ? power : beta * P[i] + (1.0f - beta) * power;
        P[i] = p_new;
        const float step_size = mu / (p_new + eps);
        float2 w_new;
        w_new.x = w.x + step_size * (grad_re - leak * w.x);
        w_new.y = w.y + step_size * (grad_im - leak * w.y);
        W[i] = w_new;
        const int col = (int)((i / channels) % wf);
        const float weight = (col == 0 || (w_even && col == wf - 1)) ? 1.0f : 2.0f;
        acc += weight * err;
    }
    partial[threadIdx.x] = acc * loss_scale;
    __syncthreads();
    for (int half = BLOCK / 2; half > 0; half /= 2) {
        if ((int)threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) partials[(long long)step * gridDim.x + blockIdx.x] = partial[0];
}

// The exact solver's streaming pass: per bin i, over a batch of B pairs laid out (B, nbins),
//
//   X[i] += sum_b conj(G_b) * F_b      S[i] += sum_b |G_b|^2      E[i] += sum_b |F_b|^2
//
// accumulated in double (the sums run over every training pair, so float would lose digits
// the per-bin solve needs). One thread owns one bin of the accumulators: no atomics.
__global__ void gpuenhance_lms_accumulate(const float2* __restrict__ G,
                                          const float2* __restrict__ F,
                                          double2* __restrict__ X, double* __restrict__ S,
                                          double* __restrict__ E, int batch, long long nbins) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < nbins; i += stride) {
        double x_re = 0.0, x_im = 0.0, s = 0.0, e = 0.0;
        for (int b = 0; b < batch; ++b) {
            const long long off = (long long)b * nbins + i;
            const double gx = (double)G[off].x, gy = (double)G[off].y;
            const double fx = (double)F[off].x, fy = (double)F[off].y;
            x_re += gx * fx + gy * fy;
            x_im += gx * fy - gy * fx;
            s += gx * gx + gy * gy;
            e += fx * fx + fy * fy;
        }
        double2 acc = X[i];
        acc.x += x_re;
        acc.y += x_im;
        X[i] = acc;
        S[i] += s;
        E[i] += e;
    }
}
