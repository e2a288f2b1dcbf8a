// gpuenhance: median filter kernels.
//
// Images are contiguous NHWC; a launch covers a whole batch: grid.z walks the N*C planes and
// grid.y the row tiles, both grid-stride (the host clamps them to 65535, so any N*C and any H
// fit the grid), plane (n, c) starts at n*H*W*C + c and its pixel (y, x) sits at ((y*W + x)*C).
// Element offsets and plane counters are 64-bit (gpuenhance_i64); rows and columns are int
// (the host refuses H or W above 2^30 - 1, gpuenhance._cuda._common.MAX_EXTENT).
// Outside the image, coordinates map through gpuenhance_border_index (OpenCV's
// borderInterpolate, windows larger than the image included); the constant border reads 0.
//
// Three algorithms, chosen on the host (gpuenhance/_cuda/filters.py):
//
// 1. gpuenhance_median_small<T, K, FUSE>, K in {3, 5, 7}, every dtype. The block stages its
//    tile with the halo in shared memory; each thread copies its K*K window into registers
//    (fully unrolled, compile-time indices) and selects the median there:
//    - 3x3: sort the three rows, then med3(max of the row minima, med3 of the row medians,
//      min of the row maxima) -- the anti-diagonal of the row- and column-sorted 3x3 block.
//    - 5x5, 7x7: forgetful selection. With n = K*K values and m = n/2, take the first m+2
//      values; their minimum and maximum cannot be the median, so both are dropped, the next
//      value joins, and this repeats until one value is left. At most m+2 values are live.
//
// 1b. gpuenhance_median_small_packed<K, RY, V, FUSE>, uint8, uint16 and float32, any odd K (the
//    host instantiates 3 and 5, and 7 for uint8): rows of interleaved values (every channel at
//    once, one 32-bit word -- 4 packed bytes, 2 packed uint16 or 1 float -- of RY rows per
//    thread), each row sorted once, the RY windows' medians by merging the sorted rows they
//    share once and pruning the ranks that cannot be the median; see its section below. The
//    host uses it in place of gpuenhance_median_small (uint8 7x7: of the histograms) while
//    C <= 16.
//
// 2. gpuenhance_median_hist<T, FUSE>, uint8 and uint16, odd K <= 255 (used from K = 9 for
//    uint8, K = 9 for uint16). Each thread owns one output column of a strip of rows and keeps the
//    histogram of its window, sliding it down one row at a time: 2K updates per output pixel
//    plus a lookup of bounded cost, instead of the K*K work of a selection. The histograms
//    are thread-private, in dynamic shared memory, interleaved (counter j of thread t at
//    hist[j * blockDim.x + t]) so that a warp touching the same counter hits distinct banks.
//    Counters are unsigned short: K <= 255 (the public limit) keeps K*K <= 65025 < 65536.
//    - uint8: two levels, 16 coarse bins (value >> 4) and 256 fine bins. Lookup: scan at most
//      16 coarse bins, then at most 16 fine bins inside the coarse bin found.
//    - uint16: 16 bins on bits 15..12 and 256 bins on the high byte are kept for the whole
//      window; the low byte is resolved by a second 16 + 256 pair that counts only the values
//      whose high byte equals one "current" high byte. When the median's high byte changes,
//      that pair is rebuilt from the K*K window (O(K*K), but rare on natural images: the
//      median drifts slowly); updates of values with the current high byte keep it exact.
//      Lookup: at most 16 + 16 + 16 + 16 counter reads. 544 counters per thread.
//
// 3. gpuenhance_median_select<T, FUSE>, any dtype and odd K: the general path for large
//    windows on float32/float64. Radix selection on order-preserving unsigned keys (floats:
//    sign bit flipped for positives, all bits for negatives), 4 bits per pass: each pass counts the
//    window values that match the digits fixed so far into 16 thread-private counters in
//    shared memory, then fixes the next digit. 8 passes (float32) or 16 (float64) over the
//    window, no per-thread window buffer.
//
// NaN inputs: the median of a window holding NaN is unspecified (the paths may differ).
//
// Fusion (template flag FUSE, every kernel): a trailing LUT/gamma is applied to the median
// right before its store (gpuenhance_point in common.cuh).
#include "common.cuh"

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

// Value of plane pixel (y, x) under the border rule; `plane` points at (n, 0, 0, c).
template <typename T>
__device__ __forceinline__ T gpuenhance_median_fetch(const T* __restrict__ plane, int y, int x,
                                                     int H, int W, int C, int border) {
    const int yy = gpuenhance_border_index(y, H, border);
    const int xx = gpuenhance_border_index(x, W, border);
    if (yy < 0 || xx < 0) return T(0);
    return plane[((gpuenhance_i64)yy * W + xx) * C];
}

// Compare-exchange; floats use fminf/fmaxf (one instruction each).
template <typename T>
__device__ __forceinline__ void gpuenhance_median_cx(T& a, T& b) {
    gpuenhance_sort2(a, b);
}
template <>
__device__ __forceinline__ void gpuenhance_median_cx<float>(float& a, float& b) {
    const float lo = fminf(a, b);
    b = fmaxf(a, b);
    a = lo;
}
template <>
__device__ __forceinline__ void gpuenhance_median_cx<double>(double& a, double& b) {
    const double lo = fmin(a, b);
    b = fmax(a, b);
    a = lo;
}

template <typename T>
__device__ __forceinline__ T gpuenhance_median_med3(T a, T b, T c) {
    gpuenhance_median_cx(a, b);
    gpuenhance_median_cx(b, c);
    gpuenhance_median_cx(a, b);
    return b;
}

// Forgetful selection (see the file comment): the median of v[0..NN), NN odd.
template <typename T, int NN>
__device__ __forceinline__ T gpuenhance_median_forgetful(T (&v)[NN]) {
    constexpr int M = NN / 2;
#pragma unroll
    for (int s = 0; s < M; ++s) {
        // Live values: v[2s .. M+2+s). Move the minimum to v[2s], the maximum to v[2s+1].
        const int b = 2 * s;
        const int e = M + 2 + s;
#pragma unroll
        for (int i = b + 1; i < e; ++i) gpuenhance_median_cx(v[b], v[i]);
#pragma unroll
        for (int i = b + 2; i < e; ++i) gpuenhance_median_cx(v[i], v[b + 1]);
    }
    return v[NN - 1];
}

// Median of v[0..K*K) for the register paths.
template <typename T, int K>
struct gpuenhance_median_net {
    static __device__ __forceinline__ T run(T (&v)[K * K]) {
        return gpuenhance_median_forgetful<T, K * K>(v);
    }
};

template <typename T>
struct gpuenhance_median_net<T, 3> {
    static __device__ __forceinline__ T run(T (&v)[9]) {
#pragma unroll
        for (int r = 0; r < 3; ++r) {
            gpuenhance_median_cx(v[3 * r], v[3 * r + 1]);
            gpuenhance_median_cx(v[3 * r + 1], v[3 * r + 2]);
            gpuenhance_median_cx(v[3 * r], v[3 * r + 1]);
        }
        // v[6] = max of the row minima, v[8] = min of the row maxima (the other halves of
        // these compare-exchanges are dead and compiled away).
        gpuenhance_median_cx(v[0], v[3]);
        gpuenhance_median_cx(v[3], v[6]);
        gpuenhance_median_cx(v[5], v[2]);
        gpuenhance_median_cx(v[8], v[5]);
        return gpuenhance_median_med3(v[6], gpuenhance_median_med3(v[1], v[4], v[7]), v[8]);
    }
};

// ---------------------------------------------------------------------------------------------
// 1. Register selection for small windows (tile + halo in shared memory)
// ---------------------------------------------------------------------------------------------
// Launch: block (bx, by), grid (ceil(W/bx), min(ceil(H/by), 65535), min(N*C, 65535)),
// shared_mem = (bx + K - 1) * (by + K - 1) * sizeof(T). The row-tile and plane loops are
// uniform across the block, so every thread reaches every barrier.
template <typename T, int K, int FUSE>
__global__ void gpuenhance_median_small(const T* __restrict__ src, T* __restrict__ dst, int N,
                                        int H, int W, int C, int border,
                                        const T* __restrict__ lut, int lut_channels, float gamma,
                                        float gain) {
    constexpr int R = K / 2;
    GPUENHANCE_DYNAMIC_SMEM(T, tile);
    const int bx = blockDim.x;
    const int by = blockDim.y;
    const int tw = bx + K - 1;
    const int th = by + K - 1;
    const int tid = threadIdx.y * bx + threadIdx.x;
    const int nthreads = bx * by;
    const int x0 = (int)blockIdx.x * bx - R;
    const int x = (int)blockIdx.x * bx + (int)threadIdx.x;
    const int row_tiles = (H + by - 1) / by;
    const gpuenhance_i64 planes = (gpuenhance_i64)N * C;
    for (gpuenhance_i64 nc = blockIdx.z; nc < planes; nc += gridDim.z) {
        const int c = (int)(nc % C);
        const gpuenhance_i64 base = (nc / C) * H * W * C + c;
        for (int rt = blockIdx.y; rt < row_tiles; rt += gridDim.y) {
            const int y0 = rt * by - R;
            const int y = rt * by + (int)threadIdx.y;
            __syncthreads();  // the previous tile is no longer read
            for (int i = tid; i < tw * th; i += nthreads) {
                const int ty = i / tw;
                tile[i] = gpuenhance_median_fetch(src + base, y0 + ty, x0 + (i - ty * tw), H, W,
                                                  C, border);
            }
            __syncthreads();
            if (x < W && y < H) {
                T v[K * K];
                const T* t = tile + threadIdx.y * tw + threadIdx.x;
#pragma unroll
                for (int dy = 0; dy < K; ++dy) {
#pragma unroll
                    for (int dx = 0; dx < K; ++dx) v[dy * K + dx] = t[dy * tw + dx];
                }
                dst[base + ((gpuenhance_i64)y * W + x) * C] = gpuenhance_point<T, FUSE>(
                    gpuenhance_median_net<T, K>::run(v), lut, lut_channels, c, gamma, gain);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1b. uint8 / uint16 / float32 3x3, 5x5 (and uint8 7x7): rows as bytes, several outputs per thread
// ---------------------------------------------------------------------------------------------
// A row of an image is W*C interleaved values, W*Cb bytes with Cb = C * sizeof(T); the window
// of the value at byte j holds the values at bytes j + dx*Cb of the rows y + dy, so every
// channel is filtered at once. Each thread owns one 32-bit word of RY consecutive output rows:
// 4 uint8 or 2 uint16 values (packed: a compare-exchange of two words works on all lanes at
// once) or one float32. The neighbours at +-Cb, +-2Cb bytes are words of the shared tile, unaligned for
// uint8, assembled from two aligned words by a funnel shift.
//
// Reuse across rows: each input row's K horizontal neighbours are sorted once, and the sorted
// row serves the K output rows whose window contains it; the rows that several of the RY
// windows share are merged once for all of them (gpuenhance_median_tiles below). Compare-
// exchanges per output word at RY = 8 (network model, dead code removed): 3x3 9.2, 5x5 37,
// 7x7 86.5 (at RY = 4: 10, 45, 124).
//
// Tile: the block (64, BY) covers TILE = 256 bytes of BY * RY rows of one image. The tile in
// shared memory has TILE + 2 * pad + 16 bytes per row (pad = R*Cb rounded up to 16: the halo,
// and 16 more bytes so the funnel shift's second word exists) and BY * RY + K - 1 rows; shared
// byte s of tile row t is byte jb - pad + s of image row y0 + t, through the border rules
// (bytes beyond the row map pixel x = floor(j / Cb), byte j - x*Cb of it). It is staged in
// 16-byte chunks: a 16-byte load where the chunk lies inside the row and is 16-byte aligned in
// global memory, else 4-byte words, else bytes. Stores are 32-bit where aligned, else bytes.
//
// Launch (gpuenhance._cuda.filters.median_packed_launch): block (64, BY), grid
// (ceil(W*Cb / 256), min(ceil(H / (BY*RY)), 65535), min(N, 65535)) with grid-stride loops over
// row tiles and images (uniform across the block: every thread reaches every barrier),
// shared_mem = (BY*RY + K - 1) * (256 + 2*pad + 16), plus 256 * lut_channels for uint8 with a
// fused table (FUSE = 1: copied behind the tile). The host takes this path while the row's
// bytes (plus 1 KiB) fit an int and C <= 16 (Cb <= 16, 32, 64 bytes); other shapes use
// gpuenhance_median_small.
#define GPUENHANCE_MEDIAN_PACKED_TILE 256

// The word as the network works on it (template parameter V; V::elem is the image's dtype):
// gpuenhance_u8x4 keeps 4 bytes (8-bit lanes, __vminu4/__vmaxu4: about 10 SASS instructions
// per compare-exchange on sm_75..sm_90, which emulate the SIMD video instructions);
// gpuenhance_u16x2x2 spreads them over two words of 16-bit lanes (bytes 0, 2 and bytes 1, 3),
// where __vminu2/__vmaxu2 are one VIMNMX.U16 each on sm_90: 4 instructions per exchange (the
// host picks it for sm_90 and newer). Each byte sits in the high half of its 16-bit lane with
// a neighbouring byte below it: the lane's order follows its high byte (a monotone map, so
// every order statistic of the lanes carries the order statistic of the bytes), and the
// layout costs one shift in (the word itself holds bytes 1, 3 high) and one byte permute out,
// instead of clearing the low halves. gpuenhance_u16x2 is
// 2 uint16 values in 16-bit lanes (__vminu2/__vmaxu2); gpuenhance_f32x1 is one float32
// (fminf/fmaxf).
template <typename E>  // a word of packed unsigned lanes: 4 x uint8 or 2 x uint16
struct gpuenhance_lanes {
    typedef E elem;
    static constexpr int arch = sizeof(E) == 1 ? -1 : 0;  // see gpuenhance_median_packed_built
    unsigned int v;
    static __device__ __forceinline__ gpuenhance_lanes from_word(unsigned int w) { return {w}; }
    __device__ __forceinline__ unsigned int word() const { return v; }
};
typedef gpuenhance_lanes<gpuenhance_u8> gpuenhance_u8x4;
typedef gpuenhance_lanes<gpuenhance_u16> gpuenhance_u16x2;
struct gpuenhance_u16x2x2 {
    typedef gpuenhance_u8 elem;
    static constexpr int arch = 1;
    unsigned int even, odd;  // bytes 0, 2 (shifted up by 8 bits) and bytes 1, 3, high halves
    static __device__ __forceinline__ gpuenhance_u16x2x2 from_word(unsigned int w) {
        return {w << 8, w};
    }
    __device__ __forceinline__ unsigned int word() const { return __byte_perm(even, odd, 0x7351u); }
};
struct gpuenhance_f32x1 {
    typedef float elem;
    static constexpr int arch = 0;
    float v;
    static __device__ __forceinline__ gpuenhance_f32x1 from_word(unsigned int w) {
        return {__uint_as_float(w)};
    }
    __device__ __forceinline__ unsigned int word() const { return __float_as_uint(v); }
};
template <typename E>  // an overload, found by argument-dependent lookup
__device__ __forceinline__ void gpuenhance_median_cx(gpuenhance_lanes<E>& a,
                                                     gpuenhance_lanes<E>& b) {
    const unsigned int lo = sizeof(E) == 1 ? __vminu4(a.v, b.v) : __vminu2(a.v, b.v);
    b.v = sizeof(E) == 1 ? __vmaxu4(a.v, b.v) : __vmaxu2(a.v, b.v);
    a.v = lo;
}
template <>
__device__ __forceinline__ void gpuenhance_median_cx<gpuenhance_u16x2x2>(gpuenhance_u16x2x2& a,
                                                                        gpuenhance_u16x2x2& b) {
    const unsigned int even = __vminu2(a.even, b.even);
    const unsigned int odd = __vminu2(a.odd, b.odd);
    b.even = __vmaxu2(a.even, b.even);
    b.odd = __vmaxu2(a.odd, b.odd);
    a.even = even;
    a.odd = odd;
}
template <>
__device__ __forceinline__ void gpuenhance_median_cx<gpuenhance_f32x1>(gpuenhance_f32x1& a,
                                                                      gpuenhance_f32x1& b) {
    gpuenhance_median_cx(a.v, b.v);
}

// Sort v[0..K) ascending: optimal networks for K = 3, 5, 7 (3, 9 and 16 compare-exchanges),
// Batcher's odd-even merge sort otherwise (K = 9: 26).
template <typename T, int K>
__device__ __forceinline__ void gpuenhance_median_sort(T (&v)[K]);

// Batcher's odd-even merge of the sorted a[0..NA) and b[0..NB) into c[0..NA+NB), any sizes:
// merge the even- and the odd-indexed halves, then one compare-exchange per output pair. Outputs
// nobody reads are dead code, so a merge whose caller keeps a few ranks costs only their cone.
template <typename T, int NA, int NB>
struct gpuenhance_median_merge {
    static __device__ __forceinline__ void run(const T* a, const T* b, T* c) {
        if constexpr (NA == 0 || NB == 0) {
#pragma unroll
            for (int i = 0; i < NA; ++i) c[i] = a[i];
#pragma unroll
            for (int i = 0; i < NB; ++i) c[NA + i] = b[i];
        } else if constexpr (NA == 1 && NB == 1) {
            c[0] = a[0];
            c[1] = b[0];
            gpuenhance_median_cx(c[0], c[1]);
        } else {
            constexpr int AE = (NA + 1) / 2, AO = NA / 2, BE = (NB + 1) / 2, BO = NB / 2;
            constexpr int NV = AE + BE, NW = AO + BO;
            T ae[AE], be[BE], ao[AO > 0 ? AO : 1], bo[BO > 0 ? BO : 1], v[NV], w[NW > 0 ? NW : 1];
#pragma unroll
            for (int i = 0; i < NA; ++i) (i % 2 == 0 ? ae[i / 2] : ao[i / 2]) = a[i];
#pragma unroll
            for (int i = 0; i < NB; ++i) (i % 2 == 0 ? be[i / 2] : bo[i / 2]) = b[i];
            gpuenhance_median_merge<T, AE, BE>::run(ae, be, v);
            gpuenhance_median_merge<T, AO, BO>::run(ao, bo, w);
            // v and w differ by at most 2 in length (0-1 principle); pair w[i] with v[i + 1].
            constexpr int P = NW < NV - 1 ? NW : NV - 1;
            c[0] = v[0];
#pragma unroll
            for (int i = 0; i < P; ++i) {
                T lo = w[i], hi = v[i + 1];
                gpuenhance_median_cx(lo, hi);
                c[1 + 2 * i] = lo;
                c[2 + 2 * i] = hi;
            }
#pragma unroll
            for (int i = P; i < NW; ++i) c[1 + P + i] = w[i];
#pragma unroll
            for (int i = P + 1; i < NV; ++i) c[P + i] = v[i];
        }
    }
};

template <typename T, int K>
__device__ __forceinline__ void gpuenhance_median_sort(T (&v)[K]) {
    if constexpr (K == 2) {
        gpuenhance_median_cx(v[0], v[1]);
    } else if constexpr (K == 3) {
        gpuenhance_median_cx(v[0], v[1]);
        gpuenhance_median_cx(v[1], v[2]);
        gpuenhance_median_cx(v[0], v[1]);
    } else if constexpr (K == 5) {
        gpuenhance_median_cx(v[0], v[1]);
        gpuenhance_median_cx(v[3], v[4]);
        gpuenhance_median_cx(v[2], v[4]);
        gpuenhance_median_cx(v[2], v[3]);
        gpuenhance_median_cx(v[0], v[3]);
        gpuenhance_median_cx(v[0], v[2]);
        gpuenhance_median_cx(v[1], v[4]);
        gpuenhance_median_cx(v[1], v[3]);
        gpuenhance_median_cx(v[1], v[2]);
    } else if constexpr (K == 7) {
        constexpr int net[16][2] = {{0, 6}, {2, 3}, {4, 5}, {0, 2}, {1, 4}, {3, 6}, {0, 1}, {2, 5},
                                    {3, 4}, {1, 2}, {4, 6}, {2, 3}, {4, 5}, {1, 2}, {3, 4}, {5, 6}};
#pragma unroll
        for (int i = 0; i < 16; ++i) gpuenhance_median_cx(v[net[i][0]], v[net[i][1]]);
    } else if constexpr (K > 3) {
        constexpr int H = K / 2;
        T a[H], b[K - H];
#pragma unroll
        for (int i = 0; i < H; ++i) a[i] = v[i];
#pragma unroll
        for (int i = H; i < K; ++i) b[i - H] = v[i];
        gpuenhance_median_sort<T, H>(a);
        gpuenhance_median_sort<T, K - H>(b);
        gpuenhance_median_merge<T, H, K - H>::run(a, b, v);
    }
}

// Medians of the RY vertically adjacent K x K windows of one thread, from its RY + K - 1 sorted
// rows (hierarchical tiling, arXiv 2507.19926, along the columns): the windows of outputs
// [LO, HI) share the rows [HI - 1, LO + K - 1]; that node merges them once (Batcher merges of the
// sorted rows), then splits into two halves, each merging its extra rows into a copy of the
// node's list. Pruning keeps every list short: a list of S values of a window whose median has
// rank m (0-based) of t = 2m + 1 can only hold the median at its ranks [S - m - 1, m], and
// dropping the same number of values below and above keeps the median of what is left, so the
// list keeps those ranks and the window's t and m shrink by the count dropped on each side (D).
// A leaf's list is its window (less 2D values) reduced to the one value, its median.
template <typename T, int K, int RY>
struct gpuenhance_median_tiles {
    static __device__ constexpr int keep_from(int S, int D) {  // ranks that cannot be the median
        return S - (K * K - 2 * D - 1) / 2 - 1 > 0 ? S - (K * K - 2 * D - 1) / 2 - 1 : 0;
    }

    // Merge the sorted rows [R0, R1] (empty when R1 < R0) into out[0 .. (R1 - R0 + 1) * K).
    template <int R0, int R1>
    static __device__ __forceinline__ void rows(const T (&srt)[RY + K - 1][K], T* out) {
        if constexpr (R1 == R0) {
#pragma unroll
            for (int i = 0; i < K; ++i) out[i] = srt[R0][i];
        } else if constexpr (R1 > R0) {
            constexpr int MID = (R0 + R1) / 2;
            T a[(MID - R0 + 1) * K], b[(R1 - MID) * K];
            rows<R0, MID>(srt, a);
            rows<MID + 1, R1>(srt, b);
            gpuenhance_median_merge<T, (MID - R0 + 1) * K, (R1 - MID) * K>::run(a, b, out);
        }
    }

    // The node of outputs [LO, HI); L holds the S values kept of its rows [A, B] (D dropped on
    // each side). Writes med[LO .. HI).
    template <int LO, int HI, int A, int B, int S, int D>
    static __device__ __forceinline__ void node(const T* L, const T (&srt)[RY + K - 1][K],
                                                T (&med)[RY]) {
        if constexpr (HI - LO == 1) {
            static_assert(S == 1, "a leaf's list is its median");
            med[LO] = L[0];
        } else {
            constexpr int MID = LO + (HI - LO + 1) / 2;
            child<LO, MID, A, B, S, D>(L, srt, med);
            child<MID, HI, A, B, S, D>(L, srt, med);
        }
    }

    // Extend the parent's list (rows [A, B], S values, D dropped; A > B: empty) to the rows
    // [HI - 1, LO + K - 1] of outputs [LO, HI), prune, and go on with that node.
    template <int LO, int HI, int A, int B, int S, int D>
    static __device__ __forceinline__ void child(const T* L, const T (&srt)[RY + K - 1][K],
                                                 T (&med)[RY]) {
        constexpr int NA = HI - 1, NB = LO + K - 1;  // the node's rows
        if constexpr (NA > NB) {  // no row common to all of [LO, HI) (RY > K): split at once
            node<LO, HI, A, B, S, D>(L, srt, med);
        } else {
            constexpr bool HAVE = A <= B;
            // The rows to add: below [A, B] and above it (one of the two is empty).
            constexpr int LA = NA, LB = HAVE ? A - 1 : NB, UA = HAVE ? B + 1 : NB + 1, UB = NB;
            constexpr int NL = LB >= LA ? (LB - LA + 1) * K : 0;
            constexpr int NU = UB >= UA ? (UB - UA + 1) * K : 0;
            T lower[NL > 0 ? NL : 1], upper[NU > 0 ? NU : 1], m1[S + NL > 0 ? S + NL : 1],
                all[S + NL + NU];
            rows<LA, LB>(srt, lower);
            rows<UA, UB>(srt, upper);
            gpuenhance_median_merge<T, S, NL>::run(L, lower, m1);
            gpuenhance_median_merge<T, S + NL, NU>::run(m1, upper, all);
            constexpr int S2 = S + NL + NU;
            constexpr int DROP = keep_from(S2, D);
            node<LO, HI, NA, NB, S2 - 2 * DROP, D + DROP>(all + DROP, srt, med);
        }
    }

    static __device__ __forceinline__ void run(const T (&srt)[RY + K - 1][K], T (&med)[RY]) {
        T none[1];
        child<0, RY, 1, 0, 0, 0>(none, srt, med);
    }
};

// Byte j of an image row of W pixels of Cb bytes (WCb = W*Cb) under the border rule;
// row == nullptr: a row outside the image under the constant border (zeros).
__device__ __forceinline__ unsigned int gpuenhance_median_row_byte(const gpuenhance_u8* row, int j,
                                                                   int W, int Cb, int WCb,
                                                                   int border) {
    if (row == nullptr) return 0u;
    if (j >= 0 && j < WCb) return row[j];
    const int x = j >= 0 ? j / Cb : -((Cb - 1 - j) / Cb);  // floor(j / Cb)
    const int xx = gpuenhance_border_index(x, W, border);
    return xx < 0 ? 0u : row[(gpuenhance_i64)xx * Cb + (j - x * Cb)];
}

// Stage the 16 bytes j .. j+15 of an image row into the 16-byte aligned shared `out`.
__device__ __forceinline__ void gpuenhance_median_row_stage(gpuenhance_u8* out,
                                                            const gpuenhance_u8* row, int j,
                                                            int W, int Cb, int WCb, int border) {
    if (row != nullptr && j >= 0 && j <= WCb - 16 &&
        (reinterpret_cast<unsigned long long>(row + j) & 15ull) == 0ull) {
        gpuenhance_store16(out, gpuenhance_load16(row + j));
        return;
    }
    // Rare (unaligned rows, image edges): kept as loops, out of the hot code's way.
#pragma unroll 1
    for (int w = 0; w < 4; ++w) {
        const int jw = j + 4 * w;
        if (row != nullptr && jw >= 0 && jw <= WCb - 4 &&
            (reinterpret_cast<unsigned long long>(row + jw) & 3ull) == 0ull) {
            *reinterpret_cast<unsigned int*>(out + 4 * w) =
                *reinterpret_cast<const unsigned int*>(row + jw);
        } else {
#pragma unroll 1
            for (int e = 0; e < 4; ++e)
                out[4 * w + e] = (gpuenhance_u8)gpuenhance_median_row_byte(row, jw + e, W, Cb,
                                                                           WCb, border);
        }
    }
}

// The two uint8 layouts are launched on one side of compute capability 9.0 each (V::arch: 1 =
// sm_90 and newer only, -1 = below only, 0 = everywhere); compiled for the other side, the kernel
// is a stub that traps, which keeps NVRTC's time for the whole file (CI: every architecture;
// users: the first call) to the kernels that can run. The host picks the layout by the device's
// compute capability, so this assumes the module is compiled for the device's own architecture
// (CuPy does so with NVRTC >= 11.8; an older NVRTC on an sm_90 GPU would reach the trap).
template <typename V>
__device__ constexpr bool gpuenhance_median_packed_built() {
#if defined(__CUDA_ARCH__)
    return V::arch == 0 || (V::arch > 0) == (__CUDA_ARCH__ >= 900);
#else
    return true;  // the emulator runs every layout
#endif
}

template <int K, int RY, typename V, int FUSE>
__device__ __forceinline__ void gpuenhance_median_packed_body(
    const typename V::elem* __restrict__ src_, typename V::elem* __restrict__ dst_, int N, int H,
    int W, int C, int border, const typename V::elem* __restrict__ lut, int lut_channels,
    float gamma, float gain);

template <int K, int RY, typename V, int FUSE>
__global__ void gpuenhance_median_small_packed(const typename V::elem* __restrict__ src_,
                                               typename V::elem* __restrict__ dst_, int N, int H,
                                               int W, int C, int border,
                                               const typename V::elem* __restrict__ lut,
                                               int lut_channels, float gamma, float gain) {
    if constexpr (gpuenhance_median_packed_built<V>()) {
        gpuenhance_median_packed_body<K, RY, V, FUSE>(src_, dst_, N, H, W, C, border, lut,
                                                      lut_channels, gamma, gain);
    } else {
        __trap();
    }
}

template <int K, int RY, typename V, int FUSE>
__device__ __forceinline__ void gpuenhance_median_packed_body(
    const typename V::elem* __restrict__ src_, typename V::elem* __restrict__ dst_, int N, int H,
    int W, int C, int border, const typename V::elem* __restrict__ lut, int lut_channels,
    float gamma, float gain) {
    typedef typename V::elem T;
    constexpr int ES = (int)sizeof(T);
    constexpr int PER_WORD = 4 / ES;  // values per 32-bit word
    constexpr int R = K / 2;
    constexpr int TILE = GPUENHANCE_MEDIAN_PACKED_TILE;
    constexpr int IN_ROWS = RY + K - 1;  // input rows one thread reads
    GPUENHANCE_DYNAMIC_SMEM(gpuenhance_u8, tile);
    const gpuenhance_u8* src = reinterpret_cast<const gpuenhance_u8*>(src_);
    gpuenhance_u8* dst = reinterpret_cast<gpuenhance_u8*>(dst_);
    const int Cb = C * ES;    // bytes per pixel
    const int WCb = W * Cb;   // bytes per row
    const int pad = (R * Cb + 15) / 16 * 16;
    const int sw = TILE + 2 * pad + 16;  // bytes per tile row, a multiple of 16
    const int rows_per_block = (int)blockDim.y * RY;
    const int th = rows_per_block + K - 1;
    const int tid = threadIdx.y * blockDim.x + threadIdx.x;
    const int nthreads = blockDim.x * blockDim.y;
    const int chunks = sw / 16;
    const int jb = (int)blockIdx.x * TILE;
    const int j0 = jb + 4 * (int)threadIdx.x;  // this thread's first output byte
    const int row_tiles = (H + rows_per_block - 1) / rows_per_block;
    const unsigned int* words = reinterpret_cast<const unsigned int*>(tile);
    // uint8 with a fused table: the table moves to shared memory behind the tile, one 256-byte
    // plane per channel (table[c * 256 + v] = lut[v * lut_channels + c]), and each of the
    // thread's 4 bytes reads the plane of its channel (fixed per thread: (j0 + e) % C).
    constexpr bool SHARED_LUT = FUSE == 1 && ES == 1;
    gpuenhance_u8* table = tile + th * sw;
    int plane[4] = {0, 0, 0, 0};
    if constexpr (SHARED_LUT) {
        for (int i = tid; i < 256 * lut_channels; i += nthreads)
            table[i] = (gpuenhance_u8)lut[(i & 255) * lut_channels + (i >> 8)];
        if (lut_channels > 1) {
#pragma unroll
            for (int e = 0; e < 4; ++e) plane[e] = (j0 + e) % C * 256;
        }
        // Visible to every thread after the first barrier of the loops below.
    }
    for (gpuenhance_i64 n = blockIdx.z; n < N; n += gridDim.z) {
        const gpuenhance_u8* image = src + n * H * (gpuenhance_i64)WCb;
        for (int rt = blockIdx.y; rt < row_tiles; rt += gridDim.y) {
            const int y0 = rt * rows_per_block - R;
            __syncthreads();  // the previous tile is no longer read
            for (int i = tid; i < th * chunks; i += nthreads) {
                const int t = i / chunks;
                const int k = i - t * chunks;
                const int yy = gpuenhance_border_index(y0 + t, H, border);
                gpuenhance_median_row_stage(tile + t * sw + 16 * k,
                                            yy < 0 ? nullptr : image + (gpuenhance_i64)yy * WCb,
                                            jb - pad + 16 * k, W, Cb, WCb, border);
            }
            __syncthreads();
            // Sorted horizontal neighbourhoods of this thread's input rows.
            V srt[IN_ROWS][K];
#pragma unroll
            for (int r = 0; r < IN_ROWS; ++r) {
                const unsigned int* trow = words + ((int)threadIdx.y * RY + r) * (sw / 4);
#pragma unroll
                for (int d = 0; d < K; ++d) {
                    const int off = pad + 4 * (int)threadIdx.x + (d - R) * Cb;
                    const int q = off >> 2;
                    // Whole values (float32) and the thread's own word (d = R: pad and 4 * x
                    // are multiples of 4) are word-aligned.
                    srt[r][d] = V::from_word(
                        ES == 4 || d == R
                            ? trow[q]
                            : __funnelshift_r(trow[q], trow[q + 1], 8u * (unsigned)(off & 3)));
                }
                gpuenhance_median_sort<V, K>(srt[r]);
            }
            const int ybase = rt * rows_per_block + (int)threadIdx.y * RY;
            V meds[RY];
            gpuenhance_median_tiles<V, K, RY>::run(srt, meds);
#pragma unroll
            for (int i = 0; i < RY; ++i) {
                const V med = meds[i];
                const int y = ybase + i;
                if (y >= H || j0 >= WCb) continue;
                unsigned int out = med.word();
                if constexpr (SHARED_LUT) {
                    out = (unsigned int)table[plane[0] + (out & 255u)] |
                          (unsigned int)table[plane[1] + ((out >> 8) & 255u)] << 8 |
                          (unsigned int)table[plane[2] + ((out >> 16) & 255u)] << 16 |
                          (unsigned int)table[plane[3] + (out >> 24)] << 24;
                } else if constexpr (FUSE != 0) {
                    int c = (j0 / ES) % C;
                    unsigned int mapped = 0u;
#pragma unroll
                    for (int e = 0; e < PER_WORD; ++e) {
                        constexpr int BITS = 8 * ES;
                        const unsigned int bits =
                            BITS == 32 ? out : (out >> (BITS * e)) & ((1u << (BITS & 31)) - 1u);
                        T v;
                        if constexpr (ES == 4) v = __uint_as_float(bits);
                        else v = (T)bits;
                        const T r = gpuenhance_point<T, FUSE>(v, lut, lut_channels, c, gamma, gain);
                        if constexpr (ES == 4) mapped = __float_as_uint(r);
                        else mapped |= (unsigned int)r << (BITS * e);
                        if (++c == C) c = 0;
                    }
                    out = mapped;
                }
                gpuenhance_u8* o = dst + (n * H + y) * (gpuenhance_i64)WCb + j0;
                if (j0 <= WCb - 4 && (reinterpret_cast<unsigned long long>(o) & 3ull) == 0ull) {
                    *reinterpret_cast<unsigned int*>(o) = out;
                } else {
#pragma unroll
                    for (int e = 0; e < 4; ++e)
                        if (j0 + e < WCb) o[e] = (gpuenhance_u8)(out >> (8 * e));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Sliding histograms for uint8 / uint16
// ---------------------------------------------------------------------------------------------
// Counter layout (offsets in counters, per thread): uint8 uses [0,16) coarse and [16,272) fine;
// uint16 additionally [272,288) and [288,544) for the low byte of the current high byte.
#define GPUENHANCE_MEDIAN_H0 0
#define GPUENHANCE_MEDIAN_H1 16
#define GPUENHANCE_MEDIAN_F0 272
#define GPUENHANCE_MEDIAN_F1 288

// Rank lookup in a 16-bin + 256-bin pair: the 256-bin index holding the rank-th value (0-based)
// and, in `rank`, the rank left inside that bin.
template <typename CountT>
__device__ __forceinline__ int gpuenhance_median_find(const CountT* h, int stride, int l0,
                                                      int l1, unsigned& rank) {
    unsigned acc = 0;
    int cb = 0;
    while (cb < 15 && acc + h[(l0 + cb) * stride] <= rank) {
        acc += h[(l0 + cb) * stride];
        ++cb;
    }
    int fb = cb * 16;
    while (fb < cb * 16 + 15 && acc + h[(l1 + fb) * stride] <= rank) {
        acc += h[(l1 + fb) * stride];
        ++fb;
    }
    rank -= acc;
    return fb;
}

template <typename T, typename CountT>
struct gpuenhance_median_hist_ops;

template <typename CountT>
struct gpuenhance_median_hist_ops<gpuenhance_u8, CountT> {
    static constexpr int counters = 272;
    static __device__ __forceinline__ void update(CountT* h, int stride, unsigned v, int sticky,
                                                  CountT d) {
        (void)sticky;
        h[(GPUENHANCE_MEDIAN_H0 + (v >> 4)) * stride] += d;
        h[(GPUENHANCE_MEDIAN_H1 + v) * stride] += d;
    }
};

template <typename CountT>
struct gpuenhance_median_hist_ops<gpuenhance_u16, CountT> {
    static constexpr int counters = 544;
    static __device__ __forceinline__ void update(CountT* h, int stride, unsigned v, int sticky,
                                                  CountT d) {
        const int hb = (int)(v >> 8);
        h[(GPUENHANCE_MEDIAN_H0 + (v >> 12)) * stride] += d;
        h[(GPUENHANCE_MEDIAN_H1 + hb) * stride] += d;
        if (hb == sticky) {
            h[(GPUENHANCE_MEDIAN_F0 + ((v >> 4) & 15u)) * stride] += d;
            h[(GPUENHANCE_MEDIAN_F1 + (v & 255u)) * stride] += d;
        }
    }
};

// Add (d = 1) or remove (d = CountT(-1), wrapping) window row y of column span [x-R, x+R].
template <typename T, typename CountT>
__device__ __forceinline__ void gpuenhance_median_row(CountT* h, int stride,
                                                      const T* __restrict__ plane, int y, int x,
                                                      int R, int H, int W, int C, int border,
                                                      int sticky, CountT d) {
    const int yy = gpuenhance_border_index(y, H, border);
    for (int dx = -R; dx <= R; ++dx) {
        const int xx = gpuenhance_border_index(x + dx, W, border);
        const unsigned v =
            (yy < 0 || xx < 0) ? 0u : (unsigned)plane[((gpuenhance_i64)yy * W + xx) * C];
        gpuenhance_median_hist_ops<T, CountT>::update(h, stride, v, sticky, d);
    }
}

// Launch: block (bt, 1, 1), grid (ceil(W/bt), min(ceil(H/strip), 65535), min(N*C, 65535)),
// shared_mem = bt * counters * sizeof(CountT) (272 counters for uint8, 544 for uint16).
// CountT: unsigned short holds K * K <= 255 * 255 < 65536 window values; unsigned char holds
// K * K <= 225 (K <= 15) and halves the shared memory per thread, so twice the threads fit an
// SM (the kernel's occupancy is set by shared memory alone). Removal adds CountT(-1), which
// wraps; no counter ever exceeds K * K, so both widths count exactly.
// No barriers: the histograms are private to each thread.
template <typename T, typename CountT, int FUSE>
__global__ void gpuenhance_median_hist(const T* __restrict__ src, T* __restrict__ dst, int N,
                                       int H, int W, int C, int K, int border, int strip,
                                       const T* __restrict__ lut, int lut_channels, float gamma,
                                       float gain) {
    typedef gpuenhance_median_hist_ops<T, CountT> Ops;
    GPUENHANCE_DYNAMIC_SMEM(CountT, hist_all);
    const int stride = blockDim.x;
    CountT* h = hist_all + threadIdx.x;
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    if (x >= W) return;
    const int R = K / 2;
    const unsigned median_rank = (unsigned)K * (unsigned)K / 2u;
    const int strips = (H + strip - 1) / strip;
    const CountT one = 1;
    const CountT minus_one = (CountT)(~(CountT)0);
    const gpuenhance_i64 planes = (gpuenhance_i64)N * C;
    // Planes (grid.z) and row strips (grid.y), both grid-stride.
    for (gpuenhance_i64 nc = blockIdx.z; nc < planes; nc += gridDim.z)
    for (int sb = blockIdx.y; sb < strips; sb += gridDim.y) {
        const int c = (int)(nc % C);
        const gpuenhance_i64 base = (nc / C) * H * W * C + c;
        const T* plane = src + base;
        const int ybeg = sb * strip;
        const int yend = min(H, ybeg + strip);
        for (int j = 0; j < Ops::counters; ++j) h[j * stride] = 0;
        int sticky = -1;  // uint16: the high byte the low-byte pair counts (none yet)
        for (int dy = -R; dy <= R; ++dy)
            gpuenhance_median_row(h, stride, plane, ybeg + dy, x, R, H, W, C, border, sticky, one);
        for (int y = ybeg; y < yend; ++y) {
            unsigned rank = median_rank;
            const int b1 = gpuenhance_median_find(h, stride, GPUENHANCE_MEDIAN_H0,
                                                  GPUENHANCE_MEDIAN_H1, rank);
            unsigned value;
            if (sizeof(T) == 1) {
                value = (unsigned)b1;
            } else {
                if (b1 != sticky) {
                    // Rebuild the low-byte pair for high byte b1 from the whole window.
                    sticky = b1;
                    for (int j = GPUENHANCE_MEDIAN_F0; j < Ops::counters; ++j) h[j * stride] = 0;
                    for (int dy = -R; dy <= R; ++dy) {
                        const int yy = gpuenhance_border_index(y + dy, H, border);
                        for (int dx = -R; dx <= R; ++dx) {
                            const int xx = gpuenhance_border_index(x + dx, W, border);
                            const unsigned v =
                                (yy < 0 || xx < 0)
                                    ? 0u
                                    : (unsigned)plane[((gpuenhance_i64)yy * W + xx) * C];
                            if ((int)(v >> 8) == sticky) {
                                h[(GPUENHANCE_MEDIAN_F0 + ((v >> 4) & 15u)) * stride] += one;
                                h[(GPUENHANCE_MEDIAN_F1 + (v & 255u)) * stride] += one;
                            }
                        }
                    }
                }
                const int b2 = gpuenhance_median_find(h, stride, GPUENHANCE_MEDIAN_F0,
                                                      GPUENHANCE_MEDIAN_F1, rank);
                value = ((unsigned)b1 << 8) | (unsigned)b2;
            }
            dst[base + ((gpuenhance_i64)y * W + x) * C] = gpuenhance_point<T, FUSE>(
                (T)value, lut, lut_channels, c, gamma, gain);
            if (y + 1 < yend) {
                gpuenhance_median_row(h, stride, plane, y - R, x, R, H, W, C, border, sticky,
                                      minus_one);
                gpuenhance_median_row(h, stride, plane, y + R + 1, x, R, H, W, C, border, sticky,
                                      one);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Radix selection, any dtype and window
// ---------------------------------------------------------------------------------------------
template <typename T> struct gpuenhance_median_key;
template <> struct gpuenhance_median_key<gpuenhance_u8> {
    typedef unsigned int U;
    static constexpr int bits = 8;
    static __device__ __forceinline__ U to(gpuenhance_u8 v) { return v; }
    static __device__ __forceinline__ gpuenhance_u8 from(U k) { return (gpuenhance_u8)k; }
};
template <> struct gpuenhance_median_key<gpuenhance_u16> {
    typedef unsigned int U;
    static constexpr int bits = 16;
    static __device__ __forceinline__ U to(gpuenhance_u16 v) { return v; }
    static __device__ __forceinline__ gpuenhance_u16 from(U k) { return (gpuenhance_u16)k; }
};
template <> struct gpuenhance_median_key<float> {
    typedef unsigned int U;
    static constexpr int bits = 32;
    union Pun { float f; unsigned int u; };
    static __device__ __forceinline__ U to(float v) {
        Pun p;
        p.f = v;
        return (p.u & 0x80000000u) ? ~p.u : (p.u | 0x80000000u);
    }
    static __device__ __forceinline__ float from(U k) {
        Pun p;
        p.u = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
        return p.f;
    }
};
template <> struct gpuenhance_median_key<double> {
    typedef unsigned long long U;
    static constexpr int bits = 64;
    union Pun { double f; unsigned long long u; };
    static __device__ __forceinline__ U to(double v) {
        Pun p;
        p.f = v;
        return (p.u & 0x8000000000000000ull) ? ~p.u : (p.u | 0x8000000000000000ull);
    }
    static __device__ __forceinline__ double from(U k) {
        Pun p;
        p.u = (k & 0x8000000000000000ull) ? (k & 0x7fffffffffffffffull) : ~k;
        return p.f;
    }
};

// Launch: block (bx, by), grid (ceil(W/bx), min(ceil(H/by), 65535), min(N*C, 65535)),
// shared_mem = 16 * bx * by * sizeof(unsigned int). No barriers.
template <typename T, int FUSE>
__global__ void gpuenhance_median_select(const T* __restrict__ src, T* __restrict__ dst, int N,
                                         int H, int W, int C, int K, int border,
                                         const T* __restrict__ lut, int lut_channels,
                                         float gamma, float gain) {
    typedef gpuenhance_median_key<T> Key;
    typedef typename Key::U KeyT;
    GPUENHANCE_DYNAMIC_SMEM(unsigned int, counts_all);
    const int stride = blockDim.x * blockDim.y;
    unsigned int* cnt = counts_all + threadIdx.y * blockDim.x + threadIdx.x;
    const int x = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (x >= W) return;
    const int by = blockDim.y;
    const int row_tiles = (H + by - 1) / by;
    const int R = K / 2;
    const gpuenhance_i64 planes = (gpuenhance_i64)N * C;
    // Planes (grid.z) and row tiles (grid.y), both grid-stride.
    for (gpuenhance_i64 nc = blockIdx.z; nc < planes; nc += gridDim.z)
    for (int rt = blockIdx.y; rt < row_tiles; rt += gridDim.y) {
        const int y = rt * by + (int)threadIdx.y;
        if (y >= H) continue;
        const int c = (int)(nc % C);
        const gpuenhance_i64 base = (nc / C) * H * W * C + c;
        const T* plane = src + base;
        unsigned rank = (unsigned)K * (unsigned)K / 2u;
        KeyT prefix = 0;
        for (int shift = Key::bits - 4; shift >= 0; shift -= 4) {
            // Values whose digits above `shift + 4` equal the prefix's take part in this pass.
            const KeyT high = (shift + 4 >= Key::bits) ? (KeyT)0 : ~(((KeyT)1 << (shift + 4)) - 1);
            for (int d = 0; d < 16; ++d) cnt[d * stride] = 0;
            for (int dy = -R; dy <= R; ++dy) {
                const int yy = gpuenhance_border_index(y + dy, H, border);
                for (int dx = -R; dx <= R; ++dx) {
                    const int xx = gpuenhance_border_index(x + dx, W, border);
                    const T v = (yy < 0 || xx < 0) ? T(0)
                                                   : plane[((gpuenhance_i64)yy * W + xx) * C];
                    const KeyT k = Key::to(v);
                    if ((k & high) == prefix) cnt[(int)((k >> shift) & 15u) * stride] += 1u;
                }
            }
            unsigned acc = 0;
            int d = 0;
            while (d < 15 && acc + cnt[d * stride] <= rank) {
                acc += cnt[d * stride];
                ++d;
            }
            rank -= acc;
            prefix |= (KeyT)d << shift;
        }
        dst[base + ((gpuenhance_i64)y * W + x) * C] = gpuenhance_point<T, FUSE>(
            Key::from(prefix), lut, lut_channels, c, gamma, gain);
    }
}
