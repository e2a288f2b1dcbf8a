// gpuenhance: block-wide scans shared by the histogram kernels (contrast.cu, levels.cu).
#pragma once

// Block-wide exclusive prefix of one value per thread (blockDim.x <= 256); returns the sum of
// the values of the threads before this one. `scratch` holds blockDim.x entries.
__device__ __forceinline__ unsigned long long gpuenhance_block_exclusive(
    unsigned long long v, unsigned long long* scratch) {
    scratch[threadIdx.x] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned long long run = 0;
        for (int t = 0; t < (int)blockDim.x; ++t) {
            const unsigned long long x = scratch[t];
            scratch[t] = run;
            run += x;
        }
    }
    __syncthreads();
    const unsigned long long r = scratch[threadIdx.x];
    __syncthreads();
    return r;
}
