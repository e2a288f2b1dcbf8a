// gpuenhance: separable Gaussian filter.
//
// Images are contiguous NHWC; grid.z walks the N*C planes and grid.y the row tiles, both
// grid-stride (the host clamps them to 65535). Element offsets and plane counters are 64-bit
// (gpuenhance_i64); rows and columns are int (the host refuses H, W or a kernel size above
// 2^30 - 1, gpuenhance._cuda._common.MAX_EXTENT). The 1-D taps come
// from the host (gpuenhance._gauss.taps, OpenCV's getGaussianKernel) as arrays of Acc: float
// for uint8/uint16/float32, double for float64. Horizontal pass first, then vertical, as
// OpenCV does; the intermediate stays in Acc (no rounding between passes). Integer outputs are
// rounded half to even and saturated (gpuenhance_cast).
//
// gpuenhance_gaussian_tile<T, Acc, FUSE>: one block computes a bx-by-by output tile:
//   1. load the input tile with its halo, (by+ky-1) x (bx+kx-1), into shared memory through
//      the border rule (constant border: 0), converted to Acc;
//   2. horizontal pass: (by+ky-1) x bx row sums into a second shared buffer;
//   3. vertical pass: each thread sums its column of that buffer and stores its pixel.
//   shared_mem = ((by+ky-1)*(bx+kx-1) + (by+ky-1)*bx + kx + ky) * sizeof(Acc).
// gpuenhance_gaussian_tile_rows<T, Acc, FUSE, RING>: the same on interleaved rows (every
//   channel of a tile at once, several outputs per thread, the tile's rows in chunks, RING: a
//   block walks several row tiles); see its comment at the end of the file.
// gpuenhance_gaussian_pass<Tin, Tout, Acc, FUSE>: one 1-D pass straight from global memory,
//   for kernels too large for the tile's shared memory (host runs x then y through an Acc
//   buffer; only the second pass may fuse).
//
// Fusion (template flag FUSE): a trailing LUT/gamma is applied to the output value right
// before its store (gpuenhance_point in common.cuh). FUSE = 2 (float gamma) is float32 only.
#include "common.cuh"

template <typename T, typename Acc>
__device__ __forceinline__ Acc gpuenhance_gaussian_fetch(const T* __restrict__ plane, int y,
                                                         int x, int H, int W, int C,
                                                         int border) {
    const int yy = gpuenhance_border_index(y, H, border);
    const int xx = gpuenhance_border_index(x, W, border);
    if (yy < 0 || xx < 0) return Acc(0);
    return (Acc)plane[((gpuenhance_i64)yy * W + xx) * C];
}

template <typename T, typename Acc, int FUSE>
__global__ void gpuenhance_gaussian_tile(const T* __restrict__ src, T* __restrict__ dst,
                                         const Acc* __restrict__ taps_x,
                                         const Acc* __restrict__ taps_y, int N, int H, int W,
                                         int C, int kx, int ky, int border,
                                         const T* __restrict__ lut, int lut_channels,
                                         float gamma, float gain) {
    GPUENHANCE_DYNAMIC_SMEM(Acc, smem);
    const int bx = blockDim.x;
    const int by = blockDim.y;
    const int tw = bx + kx - 1;
    const int th = by + ky - 1;
    Acc* tile = smem;            // th x tw
    Acc* rows = tile + th * tw;  // th x bx
    Acc* wx = rows + th * bx;    // kx
    Acc* wy = wx + kx;           // ky
    const int tid = threadIdx.y * bx + threadIdx.x;
    const int nthreads = bx * by;
    for (int i = tid; i < kx; i += nthreads) wx[i] = taps_x[i];
    for (int i = tid; i < ky; i += nthreads) wy[i] = taps_y[i];
    const int x0 = (int)blockIdx.x * bx - kx / 2;
    const int x = (int)blockIdx.x * bx + (int)threadIdx.x;
    const int row_tiles = (H + by - 1) / by;
    const gpuenhance_i64 planes = (gpuenhance_i64)N * C;
    // Planes (grid.z) and row tiles (grid.y), both grid-stride and uniform across the block:
    // every thread reaches every barrier.
    for (gpuenhance_i64 nc = blockIdx.z; nc < planes; nc += gridDim.z) {
        const int c = (int)(nc % C);
        const gpuenhance_i64 base = (nc / C) * H * W * C + c;
        for (int rt = blockIdx.y; rt < row_tiles; rt += gridDim.y) {
            const int y0 = rt * by - ky / 2;
            const int y = rt * by + (int)threadIdx.y;
            __syncthreads();  // taps written; the previous tile's buffers are no longer read
            for (int i = tid; i < th * tw; i += nthreads) {
                const int r = i / tw;
                tile[i] = gpuenhance_gaussian_fetch<T, Acc>(src + base, y0 + r,
                                                            x0 + (i - r * tw), H, W, C, border);
            }
            __syncthreads();
            for (int i = tid; i < th * bx; i += nthreads) {
                const int r = i / bx;
                const Acc* t = tile + r * tw + (i - r * bx);
                Acc acc = 0;
                for (int j = 0; j < kx; ++j) acc += wx[j] * t[j];
                rows[i] = acc;
            }
            __syncthreads();
            if (x < W && y < H) {
                const Acc* t = rows + threadIdx.y * bx + threadIdx.x;
                Acc acc = 0;
                for (int j = 0; j < ky; ++j) acc += wy[j] * t[j * bx];
                dst[base + ((gpuenhance_i64)y * W + x) * C] = gpuenhance_point<T, FUSE>(
                    gpuenhance_cast<T>::from(acc), lut, lut_channels, c, gamma, gain);
            }
        }
    }
}

// One 1-D pass along x (axis 0) or y (axis 1); grid-stride over all N*H*W*C outputs.
template <typename Tin, typename Tout, typename Acc, int FUSE>
__global__ void gpuenhance_gaussian_pass(const Tin* __restrict__ src, Tout* __restrict__ dst,
                                         const Acc* __restrict__ taps, int N, int H, int W,
                                         int C, int k, int axis, int border,
                                         const Tout* __restrict__ lut, int lut_channels,
                                         float gamma, float gain) {
    const gpuenhance_i64 total = (gpuenhance_i64)N * H * W * C;
    const gpuenhance_i64 step = (gpuenhance_i64)gridDim.x * blockDim.x;
    const int r = k / 2;
    for (gpuenhance_i64 i = (gpuenhance_i64)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += step) {
        const int c = (int)(i % C);
        const gpuenhance_i64 p = i / C;
        const int x = (int)(p % W);
        const gpuenhance_i64 q = p / W;
        const int y = (int)(q % H);
        const gpuenhance_i64 n = q / H;
        const Tin* plane = src + n * H * W * C + c;
        Acc acc = 0;
        for (int j = 0; j < k; ++j) {
            const Acc v = axis == 0
                              ? gpuenhance_gaussian_fetch<Tin, Acc>(plane, y, x - r + j, H, W, C,
                                                                    border)
                              : gpuenhance_gaussian_fetch<Tin, Acc>(plane, y - r + j, x, H, W, C,
                                                                    border);
            acc += __ldg(taps + j) * v;
        }
        dst[i] = gpuenhance_point<Tout, FUSE>(gpuenhance_cast<Tout>::from(acc), lut,
                                                       lut_channels, c, gamma, gain);
    }
}

// gpuenhance_gaussian_tile_rows<T, Acc, FUSE, RING>: the tile kernel on interleaved rows. A row
// of an image is W*C values; the window of value e holds the values e + d*C, so one block filters
// every channel of its tile at once (grid.z walks images, not planes) and the global loads
// and stores are contiguous. Arithmetic is the tile kernel's, term for term and in the same
// order (horizontal sums over j = 0..kx-1, then vertical sums over j = 0..ky-1, in Acc), so
// both kernels give the same values.
//   Block (32, BY): each thread computes PX = 4 values (columns tx + 32p, conflict-free in
//   shared memory and coalesced in global memory) of RY = 4 rows; a block covers 128 values of
//   BY*RY rows, which need th = BY*RY + ky - 1 input rows of tw = 128 + (kx-1)*C values (bytes
//   beyond a row map pixel floor(e / C), channel e mod C, through the border rules).
//   The th rows go through shared memory in chunks of `chunk` rows (the host picks the largest
//   chunk that fits, all th rows at once where they fit): stage the chunk's input rows in Acc,
//   horizontal pass into chunk x 128 row sums (one tap read per PX multiply-adds), then each
//   thread adds those rows' terms to its RY x PX vertical sums, which stay in registers across
//   chunks. Row t of the tile is term j = t - (ty*RY + i) of output row i, and chunks come in
//   order of t, so every vertical sum still runs over j = 0..ky-1 in order: any chunk size gives
//   the same values. Shared memory no longer grows with ky (only the chunk does), so every
//   window up to the public limit (ksize 1023) runs here while one row of tw values fits.
//   Staging with `vec` (the host sets it when the image and every row start on a 16-byte
//   boundary): 16-byte vector loads of 16 / sizeof(T) values from the last 16-byte boundary at
//   or before the tile's first value, stored as 16-byte vectors to a row pitch that is a
//   multiple of the vector; vectors that reach past either end of the row take the scalar path.
//   RING (span > 0): a block walks `span` consecutive row tiles (a strip) and keeps all th rows
//   of horizontal sums in a ring, tile row t of the strip's k-th tile in ring row
//   (k * BY*RY + t) mod th; after the strip's first tile only the BY*RY new rows are staged and
//   summed, the first ky - 1 being the previous tile's last ones. The vertical pass reads the
//   ring as two buffers in row order (same values again).
//   shared_mem = (chunk * pitch + R * 128 + kx + ky) * sizeof(Acc), R = th with RING, else
//   chunk; pitch = gpuenhance_gaussian_pitch(tw) (tw, or with `vec` tw + V - 1 rounded up to
//   V = 16/sizeof(T)).
// Launch: grid (ceil(W*C / 128), min(strips, 65535), min(N, 65535)), strips = row tiles
// (RING: row tiles / span, rounded up); grid-stride over strips and images (uniform: every
// thread reaches every barrier). The host uses it while one chunk row fits the shared memory
// and W*C + (kx+1)*C + 256 fits an int (gpuenhance._cuda.filters.gaussian_rows_launch);
// otherwise the tile or two-pass kernels.
#define GPUENHANCE_GAUSSIAN_PX 4
#define GPUENHANCE_GAUSSIAN_RY 4

template <typename T, typename Acc>
__device__ __forceinline__ Acc gpuenhance_gaussian_value(const T* __restrict__ row, int e, int W,
                                                         int C, int WC, int border) {
    if (row == nullptr) return Acc(0);
    if (e >= 0 && e < WC) return (Acc)row[e];
    const int x = e >= 0 ? e / C : -((C - 1 - e) / C);  // floor(e / C)
    const int xx = gpuenhance_border_index(x, W, border);
    return xx < 0 ? Acc(0) : (Acc)row[(gpuenhance_i64)xx * C + (e - x * C)];
}

// Staged values per tile row: tw, or with vector staging room for a leading partial vector,
// rounded up to whole vectors (so that every tile row starts on a vector boundary).
template <typename T>
__device__ __forceinline__ int gpuenhance_gaussian_pitch(int tw, int vec) {
    constexpr int V = 16 / (int)sizeof(T);
    return vec ? (tw + 2 * V - 2) / V * V : tw;
}

// The V = 16 / sizeof(T) values of one 16-byte vector, converted to Acc and stored to the
// (16-byte aligned) shared memory at `out` as whole 16-byte words.
template <typename T, typename Acc>
__device__ __forceinline__ void gpuenhance_gaussian_unpack(uint4 raw, Acc* out) {
    constexpr int V = 16 / (int)sizeof(T);
    struct __align__(16) Pack {
        Acc v[V];
    };
    union {
        uint4 u;
        T t[V];
    } in;
    in.u = raw;
    Pack p;
#pragma unroll
    for (int k = 0; k < V; ++k) p.v[k] = (Acc)in.t[k];
    *reinterpret_cast<Pack*>(out) = p;
}

// The vertical terms one buffer of horizontal row sums holds, added to a thread's RY x PX
// sums: `rows` holds `ch` rows of BW sums (this thread's column at + tx), and output row i of
// the thread takes buffer row first + i + j with tap j, for the j that fall inside. The taps
// all RY rows have there, [m0, m1), go in one loop (one tap read per RY * PX multiply-adds;
// with the whole tile in one buffer that is every tap), the others per row before and after
// it: each sum takes its terms in order of j, so buffers given in order of their rows give
// the sums of one pass over all of them.
template <typename Acc, int RY, int PX, int BW>
__device__ __forceinline__ void gpuenhance_gaussian_vertical(Acc (&acc)[RY][PX],
                                                             const Acc* rows, int first, int ch,
                                                             int ky, const Acc* wy) {
    const int m0 = first < 0 ? -first : 0;  // lo_0, the largest lo_i
    const int hi_last = ch - first - (RY - 1) < ky ? ch - first - (RY - 1) : ky;
    const int m1 = hi_last > m0 ? hi_last : m0;
#pragma unroll
    for (int i = 0; i < RY; ++i) {
        const int lo = first + i < 0 ? -(first + i) : 0;
        const int hi = ch - first - i < ky ? ch - first - i : ky;
        const int end = hi < m0 ? hi : m0;
        for (int j = lo; j < end; ++j) {
            const Acc w = wy[j];
#pragma unroll
            for (int p = 0; p < PX; ++p) acc[i][p] += w * rows[(first + i + j) * BW + 32 * p];
        }
    }
#pragma unroll(sizeof(Acc) == 4 ? 2 : 1)  // double sums: no room for two taps' loads
    for (int j = m0; j < m1; ++j) {
        const Acc w = wy[j];
#pragma unroll
        for (int i = 0; i < RY; ++i) {
#pragma unroll
            for (int p = 0; p < PX; ++p) acc[i][p] += w * rows[(first + i + j) * BW + 32 * p];
        }
    }
#pragma unroll
    for (int i = 0; i < RY; ++i) {
        const int hi = ch - first - i < ky ? ch - first - i : ky;
        for (int j = m1; j < hi; ++j) {
            const Acc w = wy[j];
#pragma unroll
            for (int p = 0; p < PX; ++p) acc[i][p] += w * rows[(first + i + j) * BW + 32 * p];
        }
    }
}

// RING (a template flag: the ring's bookkeeping costs registers the chunked form does not
// need): ring mode, span row tiles per block. At most 256 threads (BY <= 8); chunked: 3 blocks
// per SM, 80 registers (double: 2 blocks, 128); ring: 2 blocks, 128 registers; no spills
// (sm_75..sm_90).
template <typename T, typename Acc, int FUSE, bool RING>
__global__ void __launch_bounds__(256, sizeof(Acc) == 4 && !RING ? 3 : 2)
    gpuenhance_gaussian_tile_rows(const T* __restrict__ src, T* __restrict__ dst,
                                  const Acc* __restrict__ taps_x, const Acc* __restrict__ taps_y,
                                  int N, int H, int W, int C, int kx, int ky, int border,
                                  int chunk, int vec, int span, const T* __restrict__ lut,
                                  int lut_channels, float gamma, float gain) {
    constexpr int PX = GPUENHANCE_GAUSSIAN_PX;
    constexpr int RY = GPUENHANCE_GAUSSIAN_RY;
    constexpr int BW = 32 * PX;  // values per block row
    constexpr int V = 16 / (int)sizeof(T);  // values per 16-byte vector
    GPUENHANCE_DYNAMIC_SMEM(Acc, smem);
    const int WC = W * C;
    const int rows_per_block = (int)blockDim.y * RY;
    const int th = rows_per_block + ky - 1;
    const int tw = BW + (kx - 1) * C;
    const int pitch = gpuenhance_gaussian_pitch<T>(tw, vec);
    constexpr bool ring = RING;  // span > 0 exactly when RING
    const int hrows = ring ? th : chunk;  // rows of horizontal sums kept
    Acc* tile = smem;                      // chunk x pitch
    Acc* rows = tile + chunk * pitch;      // hrows x BW
    Acc* wx = rows + hrows * BW;           // kx
    Acc* wy = wx + kx;                     // ky
    const int tx = threadIdx.x;
    const int ty = threadIdx.y;
    const int tid = ty * 32 + tx;
    const int nthreads = 32 * blockDim.y;
    for (int i = tid; i < kx; i += nthreads) wx[i] = taps_x[i];
    for (int i = tid; i < ky; i += nthreads) wy[i] = taps_y[i];
    const int eb = (int)blockIdx.x * BW;  // first output value of the block
    const int e0 = eb - (kx / 2) * C;     // first value the block reads
    // Tile column 0 holds value s0: e0 itself, or with vector staging the last vector boundary
    // at or before it (`lead` values earlier; rows start on a boundary, so s0 % V == 0).
    const int lead = vec ? ((e0 % V) + V) % V : 0;
    const int s0 = e0 - lead;
    const int r0 = ty * RY;  // the thread's first output row in the tile
    const int row_tiles = (H + rows_per_block - 1) / rows_per_block;
    const int per_strip = ring ? span : 1;  // consecutive row tiles per block
    const int strips = (row_tiles + per_strip - 1) / per_strip;
    for (gpuenhance_i64 n = blockIdx.z; n < N; n += gridDim.z) {
        const T* image = src + n * H * (gpuenhance_i64)WC;
        for (int strip = blockIdx.y; strip < strips; strip += gridDim.y) {
            for (int k = 0; k < per_strip; ++k) {
                const int rt = strip * per_strip + k;
                if (rt >= row_tiles) break;  // uniform
                const int y0 = rt * rows_per_block - ky / 2;
                // Ring: the horizontal sums of tile row t live in row (k * rows + t) mod th, so
                // the next tile of the strip finds its first ky - 1 rows already there and
                // computes only rows_per_block new ones.
                const int slot0 = ring ? (k * rows_per_block) % th : 0;
                const int t_begin = ring && k > 0 ? ky - 1 : 0;
                Acc acc[RY][PX];
#pragma unroll
                for (int i = 0; i < RY; ++i) {
#pragma unroll
                    for (int p = 0; p < PX; ++p) acc[i][p] = 0;
                }
                for (int c0 = t_begin; c0 < th; c0 += chunk) {
                    const int ch = th - c0 < chunk ? th - c0 : chunk;
                    __syncthreads();  // taps written; buffers no longer read
                    for (int t = ty; t < ch; t += blockDim.y) {
                        const int yy = gpuenhance_border_index(y0 + c0 + t, H, border);
                        const T* row = yy < 0 ? nullptr : image + (gpuenhance_i64)yy * WC;
                        Acc* out = tile + t * pitch;
                        if (vec) {
                            for (int q = tx * V; q < pitch; q += 32 * V) {
                                const int g = s0 + q;
                                if (row != nullptr && g >= 0 && g <= WC - V) {
                                    gpuenhance_gaussian_unpack<T, Acc>(
                                        gpuenhance_load16(row + g), out + q);
                                } else {  // a vector past a row end: rare; 8-bit and
                                          // 16-bit not unrolled (code size, compile time)
#pragma unroll(V > 4 ? 1 : V)
                                    for (int v = 0; v < V; ++v)
                                        out[q + v] = gpuenhance_gaussian_value<T, Acc>(
                                            row, g + v, W, C, WC, border);
                                }
                            }
                        } else {
                            for (int e = tx; e < tw; e += 32)
                                out[e] = gpuenhance_gaussian_value<T, Acc>(row, e0 + e, W, C, WC,
                                                                           border);
                        }
                    }
                    __syncthreads();
                    for (int t = ty; t < ch; t += blockDim.y) {
                        const Acc* in = tile + t * pitch + lead + tx;
                        Acc h[PX];
#pragma unroll
                        for (int p = 0; p < PX; ++p) h[p] = 0;
                        for (int j = 0; j < kx; ++j) {
                            const Acc w = wx[j];
#pragma unroll
                            for (int p = 0; p < PX; ++p) h[p] += w * in[32 * p + j * C];
                        }
                        const int slot = ring ? (slot0 + c0 + t) % th : t;
#pragma unroll
                        for (int p = 0; p < PX; ++p) rows[slot * BW + tx + 32 * p] = h[p];
                    }
                    if (ring && c0 + chunk < th) continue;  // uniform
                    // Vertical terms: the chunk's sums, or after the last chunk the ring's,
                    // whose tile rows 0 .. th - slot0 - 1 sit in ring rows slot0 .. and the rest
                    // from ring row 0 (two buffers, in order of their rows). One call site:
                    // the helper is inlined once.
                    __syncthreads();
                    for (int seg = 0; seg < (ring ? 2 : 1); ++seg) {
                        const int start = ring && seg == 0 ? slot0 : 0;
                        const int first = !ring ? r0 - c0 : (seg == 0 ? r0 : r0 - (th - slot0));
                        const int count = !ring ? ch : (seg == 0 ? th - slot0 : slot0);
                        gpuenhance_gaussian_vertical<Acc, RY, PX, BW>(acc, rows + start * BW + tx,
                                                                      first, count, ky, wy);
                    }
                }
#pragma unroll
                for (int i = 0; i < RY; ++i) {
                    const int y = rt * rows_per_block + r0 + i;
                    if (y >= H) continue;
                    T* out = dst + (n * H + y) * (gpuenhance_i64)WC;
#pragma unroll
                    for (int p = 0; p < PX; ++p) {
                        const int e = eb + tx + 32 * p;
                        if (e < WC)
                            out[e] = gpuenhance_point<T, FUSE>(
                                gpuenhance_cast<T>::from(acc[i][p]), lut, lut_channels,
                                FUSE == 1 ? e % C : 0, gamma, gain);
                    }
                }
            }
        }
    }
}
