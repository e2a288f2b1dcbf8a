// Test-only kernels for tests/test_emulator.py (also compiled by NVRTC in test_kernels_compile.py).
#include "common.cuh"

// out[i] = a[i] + b[i]
template <typename T>
__global__ void gpuenhance_test_add(const T* __restrict__ a, const T* __restrict__ b,
                                    T* __restrict__ out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    out[i] = a[i] + b[i];
}

// Writes the flat 3-D global coordinates of every thread: out[z][y][x] = encode(x, y, z).
__global__ void gpuenhance_test_index3d(int* __restrict__ out, int nx, int ny, int nz) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    const int z = blockIdx.z * blockDim.z + threadIdx.z;
    if (x >= nx || y >= ny || z >= nz) return;
    const int tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const int bid = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    out[(z * ny + y) * nx + x] = bid * 10000 + tid;
}

// Each block reverses its tile of 64 through static shared memory.
__global__ void gpuenhance_test_reverse(const float* __restrict__ in, float* __restrict__ out) {
    __shared__ float tile[64];
    const int base = blockIdx.x * 64;
    tile[threadIdx.x] = in[base + threadIdx.x];
    __syncthreads();
    out[base + threadIdx.x] = tile[63 - threadIdx.x];
}

// Tile transpose (16x16 tiles, 2-D grid) through static shared memory.
template <int TILE>
__global__ void gpuenhance_test_transpose(const float* __restrict__ in, float* __restrict__ out,
                                          int h, int w) {
    __shared__ float tile[TILE][TILE + 1];
    int x = blockIdx.x * TILE + threadIdx.x;
    int y = blockIdx.y * TILE + threadIdx.y;
    tile[threadIdx.y][threadIdx.x] = (x < w && y < h) ? in[y * w + x] : 0.0f;
    __syncthreads();
    x = blockIdx.y * TILE + threadIdx.x;
    y = blockIdx.x * TILE + threadIdx.y;
    if (x < h && y < w) out[y * h + x] = tile[threadIdx.x][threadIdx.y];
}

// Block sums through dynamic shared memory (tree reduction; blockDim.x a power of two).
template <typename T>
__global__ void gpuenhance_test_block_sum(const T* __restrict__ in, T* __restrict__ out, int n) {
    GPUENHANCE_DYNAMIC_SMEM(T, buf);
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    buf[threadIdx.x] = i < n ? in[i] : T(0);
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = buf[0];
}

// Histogram of uint8 values with unsigned atomics, and a float sum with atomicAdd.
__global__ void gpuenhance_test_histogram(const gpuenhance_u8* __restrict__ in,
                                          unsigned* __restrict__ hist, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) atomicAdd(&hist[in[i]], 1u);
}

__global__ void gpuenhance_test_atomics(const float* __restrict__ x, const int* __restrict__ v,
                                        float* __restrict__ fsum, double* __restrict__ dsum,
                                        int* __restrict__ imax, int* __restrict__ imin,
                                        unsigned long long* __restrict__ count, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    atomicAdd(fsum, x[i]);
    atomicAdd(dsum, (double)x[i]);
    atomicMax(imax, v[i]);
    atomicMin(imin, v[i]);
    atomicAdd(count, 1ull);
}

// Threads past n return early; the rest still meet at two barriers.
__global__ void gpuenhance_test_early_exit(const float* __restrict__ in, float* __restrict__ out,
                                           int n) {
    __shared__ float tile[128];
    const int i = threadIdx.x;
    if (i >= n) return;
    tile[i] = in[i] * 2.0f;
    __syncthreads();
    const float left = tile[(i + n - 1) % n];
    __syncthreads();
    tile[i] = left;
    __syncthreads();
    out[i] = tile[i] + 1.0f;
}

// Scalar parameters of several types.
__global__ void gpuenhance_test_scalars(double* __restrict__ out, int a, long long b, float c,
                                        double d, unsigned e, gpuenhance_u8 f) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    out[0] = (double)a;
    out[1] = (double)b;
    out[2] = (double)c;
    out[3] = d;
    out[4] = (double)e;
    out[5] = (double)f;
}

// Math built-ins and vector types.
__global__ void gpuenhance_test_math(const float* __restrict__ x, float* __restrict__ out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float v = __ldg(&x[i]);
    const float4 q = make_float4(rintf(v), (float)__float2int_rn(v), __saturatef(v), fmaxf(v, 0.5f));
    float* o = out + 8 * i;
    o[0] = q.x;
    o[1] = q.y;
    o[2] = q.z;
    o[3] = q.w;
    o[4] = (float)min(i, 3) + max(v, 0.25f);
    o[5] = __fdividef(v, 2.0f);
    o[6] = (float)gpuenhance_cast<gpuenhance_u8>::from(v);
    o[7] = fabsf(v) + floorf(v) + ceilf(v);
}

// 16-byte vector copy through gpuenhance_load16/store16 (common.cuh).
__global__ void gpuenhance_test_copy16(const gpuenhance_u8* __restrict__ in,
                                       gpuenhance_u8* __restrict__ out, int n16) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n16) gpuenhance_store16(out + 16 * i, gpuenhance_load16(in + 16 * i));
}

// A median of a (2R+1)^2 window with a sorting network-free selection (template over
// dtype and radius, like the library's kernels).
template <typename T, int R>
__global__ void gpuenhance_test_median(const T* __restrict__ in, T* __restrict__ out, int h, int w) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= w || y >= h) return;
    T v[(2 * R + 1) * (2 * R + 1)];
    int k = 0;
    for (int dy = -R; dy <= R; ++dy)
        for (int dx = -R; dx <= R; ++dx) {
            const int yy = gpuenhance_border_index(y + dy, h, GPUENHANCE_BORDER_REPLICATE);
            const int xx = gpuenhance_border_index(x + dx, w, GPUENHANCE_BORDER_REPLICATE);
            v[k++] = in[yy * w + xx];
        }
    const int N = (2 * R + 1) * (2 * R + 1);
    for (int a = 0; a < N; ++a)
        for (int b = 0; b + 1 < N - a; ++b) gpuenhance_sort2(v[b], v[b + 1]);
    out[y * w + x] = v[N / 2];
}

// Reads dynamic shared memory that no thread wrote (to see the emulator's poison bytes).
__global__ void gpuenhance_test_smem_peek(unsigned* __restrict__ out) {
    GPUENHANCE_DYNAMIC_SMEM(unsigned, buf);
    out[blockIdx.x * blockDim.x + threadIdx.x] = buf[threadIdx.x];
    __syncthreads();
    buf[threadIdx.x] = 7u;  // must not survive into the next block
}

// SIMD-in-a-word, byte-permute and funnel-shift intrinsics: out[10 * i + k] is intrinsic k of
// (a[i], b[i], s[i]).
__global__ void gpuenhance_test_simd(const unsigned* __restrict__ a, const unsigned* __restrict__ b,
                                     const unsigned* __restrict__ s, unsigned* __restrict__ out,
                                     int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    unsigned* o = out + 10 * i;
    o[0] = __vminu4(a[i], b[i]);
    o[1] = __vmaxu4(a[i], b[i]);
    o[2] = __vminu2(a[i], b[i]);
    o[3] = __vmaxu2(a[i], b[i]);
    o[4] = __byte_perm(a[i], b[i], s[i]);
    o[5] = __funnelshift_l(a[i], b[i], s[i]);
    o[6] = __funnelshift_lc(a[i], b[i], s[i]);
    o[7] = __funnelshift_r(a[i], b[i], s[i]);
    o[8] = __funnelshift_rc(a[i], b[i], s[i]);
    o[9] = __byte_perm(a[i], b[i], s[i] & 0x7777u);
}
