// gpuenhance CUDA-on-CPU emulator: the CUDA built-ins that kernels/*.cu use, as host C++.
//
// Pre-included (g++ -include) before a kernel file's source. The Python side
// (gpuenhance/_cuda/emulator/__init__.py) appends one extern "C" launch wrapper per name
// expression, which calls gpuenhance_emu::launch(&(<name expression>), ...), and binds the
// module to the runtime library (runtime.cpp, see emu_api.h) with gpuenhance_emu_bind.
//
// Execution model (runtime.cpp): one launch runs on blockDim.x*y*z real OS threads (pooled).
// Each thread walks every block of the grid in order (blockIdx.x fastest), running the kernel
// for its threadIdx; all threads meet at a barrier between blocks. So __shared__ (mapped to
// function-scope `static`) is per block, as on a GPU. __syncthreads is a blocking barrier
// among the block's threads; a thread that has returned from the kernel counts as arrived at
// every later barrier of that block. Launches are serialized process-wide.
// Only light headers here: the heavy machinery lives in the runtime, compiled once.
#pragma once

#define GPUENHANCE_EMULATOR 1

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <exception>
#include <limits>
#include <type_traits>
#include <utility>

#include "emu_api.h"

// ---------------------------------------------------------------------------------------------
// Qualifiers
// ---------------------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __noinline__ __attribute__((noinline))
#define __forceinline__ inline
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static
#define __launch_bounds__(...)
// __restrict__ is a GNU C++ keyword already.

// ---------------------------------------------------------------------------------------------
// Vector types (CUDA's sizes and alignments)
// ---------------------------------------------------------------------------------------------
#define GPUENHANCE_EMU_VEC2(NAME, T, ALIGN)                                                       \
    struct __attribute__((aligned(ALIGN))) NAME {                                               \
        T x, y;                                                                                 \
    };                                                                                          \
    static inline NAME make_##NAME(T x, T y) {                                                  \
        NAME v;                                                                                 \
        v.x = x;                                                                                \
        v.y = y;                                                                                \
        return v;                                                                               \
    }
#define GPUENHANCE_EMU_VEC3(NAME, T)                                                              \
    struct NAME {                                                                               \
        T x, y, z;                                                                              \
    };                                                                                          \
    static inline NAME make_##NAME(T x, T y, T z) {                                             \
        NAME v;                                                                                 \
        v.x = x;                                                                                \
        v.y = y;                                                                                \
        v.z = z;                                                                                \
        return v;                                                                               \
    }
#define GPUENHANCE_EMU_VEC4(NAME, T, ALIGN)                                                       \
    struct __attribute__((aligned(ALIGN))) NAME {                                               \
        T x, y, z, w;                                                                           \
    };                                                                                          \
    static inline NAME make_##NAME(T x, T y, T z, T w) {                                        \
        NAME v;                                                                                 \
        v.x = x;                                                                                \
        v.y = y;                                                                                \
        v.z = z;                                                                                \
        v.w = w;                                                                                \
        return v;                                                                               \
    }

GPUENHANCE_EMU_VEC2(char2, signed char, 2)
GPUENHANCE_EMU_VEC4(char4, signed char, 4)
GPUENHANCE_EMU_VEC2(uchar2, unsigned char, 2)
GPUENHANCE_EMU_VEC3(uchar3, unsigned char)
GPUENHANCE_EMU_VEC4(uchar4, unsigned char, 4)
GPUENHANCE_EMU_VEC2(short2, short, 4)
GPUENHANCE_EMU_VEC4(short4, short, 8)
GPUENHANCE_EMU_VEC2(ushort2, unsigned short, 4)
GPUENHANCE_EMU_VEC4(ushort4, unsigned short, 8)
GPUENHANCE_EMU_VEC2(int2, int, 8)
GPUENHANCE_EMU_VEC3(int3, int)
GPUENHANCE_EMU_VEC4(int4, int, 16)
GPUENHANCE_EMU_VEC2(uint2, unsigned int, 8)
GPUENHANCE_EMU_VEC3(uint3, unsigned int)
GPUENHANCE_EMU_VEC4(uint4, unsigned int, 16)
GPUENHANCE_EMU_VEC2(longlong2, long long, 16)
GPUENHANCE_EMU_VEC2(ulonglong2, unsigned long long, 16)
GPUENHANCE_EMU_VEC2(float2, float, 8)
GPUENHANCE_EMU_VEC3(float3, float)
GPUENHANCE_EMU_VEC4(float4, float, 16)
GPUENHANCE_EMU_VEC2(double2, double, 16)
GPUENHANCE_EMU_VEC3(double3, double)

#undef GPUENHANCE_EMU_VEC2
#undef GPUENHANCE_EMU_VEC3
#undef GPUENHANCE_EMU_VEC4

static_assert(sizeof(uint4) == 16 && alignof(uint4) == 16, "uint4 layout");
static_assert(sizeof(float4) == 16 && alignof(float4) == 16, "float4 layout");
static_assert(sizeof(uchar4) == 4 && alignof(uchar4) == 4, "uchar4 layout");
static_assert(sizeof(ushort4) == 8 && alignof(ushort4) == 8, "ushort4 layout");
static_assert(sizeof(double2) == 16 && alignof(double2) == 16, "double2 layout");

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
        : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};

// ---------------------------------------------------------------------------------------------
// Built-in variables: per OS thread, set by the runtime before each (thread, block).
// ---------------------------------------------------------------------------------------------
static thread_local uint3 threadIdx;
static thread_local uint3 blockIdx;
static thread_local dim3 blockDim;
static thread_local dim3 gridDim;
static const int warpSize = 32;

// ---------------------------------------------------------------------------------------------
// Runtime binding, barrier, dynamic shared memory, launch wrappers
// ---------------------------------------------------------------------------------------------
static const gpuenhance_emu_api* gpuenhance_emu_rt = nullptr;

extern "C" int gpuenhance_emu_bind(const gpuenhance_emu_api* api) {
    if (api == nullptr || api->version != GPUENHANCE_EMU_API_VERSION) return 1;
    gpuenhance_emu_rt = api;
    return 0;
}

namespace gpuenhance_emu {

// Thrown inside a kernel thread to unwind it when the launch has failed elsewhere.
struct Abort {};

template <typename T>
using arg_t = std::remove_cv_t<std::remove_reference_t<T>>;

template <typename... P>
struct Call {
    void (*f)(P...);
    void** args;
};

template <typename... P, size_t... I>
inline void call_kernel(const Call<P...>& c, std::index_sequence<I...>) {
    c.f(*static_cast<arg_t<P>*>(c.args[I])...);
}

template <typename... P>
int run_block(void* ctx, const unsigned* v) {
    threadIdx = uint3{v[0], v[1], v[2]};
    blockIdx = uint3{v[3], v[4], v[5]};
    blockDim = dim3(v[6], v[7], v[8]);
    gridDim = dim3(v[9], v[10], v[11]);
    try {
        call_kernel(*static_cast<const Call<P...>*>(ctx), std::index_sequence_for<P...>{});
    } catch (const Abort&) {
        return 1;
    } catch (const std::exception& e) {
        gpuenhance_emu_rt->fail(e.what());
        return 1;
    } catch (...) {
        gpuenhance_emu_rt->fail("unknown exception in kernel");
        return 1;
    }
    return 0;
}

inline int not_bound(char* err, size_t errlen) {
    const char msg[] = "emulated module not bound to the runtime";
    if (err && errlen) {
        size_t n = sizeof(msg) < errlen ? sizeof(msg) : errlen;
        memcpy(err, msg, n);
        err[n - 1] = 0;
    }
    return 1;
}

template <typename... P>
inline int launch(void (*f)(P...), const unsigned* grid, const unsigned* block, size_t smem,
                  void** args, double timeout_s, int poison, char* err, size_t errlen) {
    if (gpuenhance_emu_rt == nullptr) return not_bound(err, errlen);
    const Call<P...> call{f, args};
    return gpuenhance_emu_rt->launch(&run_block<P...>, const_cast<Call<P...>*>(&call), grid, block,
                                     smem, timeout_s, poison, err, errlen);
}

// Parameter kinds for the host-side argument check: one "<kind><size>," per parameter, kind
// p (pointer), b (bool), f (floating), i / u (signed / unsigned integer), o (other).
template <typename T>
constexpr char kind_of() {
    using U = arg_t<T>;
    if constexpr (std::is_pointer_v<U>) return 'p';
    else if constexpr (std::is_same_v<U, bool>) return 'b';
    else if constexpr (std::is_floating_point_v<U>) return 'f';
    else if constexpr (std::is_integral_v<U>) return std::is_signed_v<U> ? 'i' : 'u';
    else return 'o';
}

template <typename... P>
inline const char* signature(void (*)(P...)) {
    static char text[8 * sizeof...(P) + 1];
    const char kinds[] = {kind_of<P>()..., 0};
    const size_t sizes[] = {sizeof(arg_t<P>)..., 0};
    char* out = text;
    for (size_t i = 0; i < sizeof...(P); ++i) out += snprintf(out, 8, "%c%zu,", kinds[i], sizes[i]);
    *out = 0;
    return text;
}

}  // namespace gpuenhance_emu

static inline void __syncthreads() {
    if (gpuenhance_emu_rt->sync()) throw gpuenhance_emu::Abort{};
}
static inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void* gpuenhance_emu_dynamic_smem() { return gpuenhance_emu_rt->smem(); }

// ---------------------------------------------------------------------------------------------
// Atomics (return the old value), on GCC/Clang __atomic built-ins
// ---------------------------------------------------------------------------------------------
namespace gpuenhance_emu {
template <typename T, typename F>
inline T atomic_update(T* addr, F f) {
    T old;
    __atomic_load(addr, &old, __ATOMIC_RELAXED);
    T desired = f(old);
    while (!__atomic_compare_exchange(addr, &old, &desired, true, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
        desired = f(old);
    return old;
}
}  // namespace gpuenhance_emu

#define GPUENHANCE_EMU_ATOMICS(T)                                                                \
    static inline T atomicAdd(T* a, T v) {                                                     \
        return gpuenhance_emu::atomic_update(a, [v](T o) { return (T)(o + v); });               \
    }                                                                                          \
    static inline T atomicSub(T* a, T v) {                                                     \
        return gpuenhance_emu::atomic_update(a, [v](T o) { return (T)(o - v); });               \
    }                                                                                          \
    static inline T atomicMax(T* a, T v) {                                                     \
        return gpuenhance_emu::atomic_update(a, [v](T o) { return o < v ? v : o; });           \
    }                                                                                          \
    static inline T atomicMin(T* a, T v) {                                                     \
        return gpuenhance_emu::atomic_update(a, [v](T o) { return v < o ? v : o; });           \
    }                                                                                          \
    static inline T atomicExch(T* a, T v) {                                                    \
        T old;                                                                                 \
        __atomic_exchange(a, &v, &old, __ATOMIC_SEQ_CST);                                      \
        return old;                                                                            \
    }                                                                                          \
    static inline T atomicCAS(T* a, T compare, T v) {                                          \
        __atomic_compare_exchange(a, &compare, &v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);   \
        return compare;                                                                        \
    }

GPUENHANCE_EMU_ATOMICS(int)
GPUENHANCE_EMU_ATOMICS(unsigned int)
GPUENHANCE_EMU_ATOMICS(unsigned long long)
GPUENHANCE_EMU_ATOMICS(long long)
GPUENHANCE_EMU_ATOMICS(float)
GPUENHANCE_EMU_ATOMICS(double)
#undef GPUENHANCE_EMU_ATOMICS

// ---------------------------------------------------------------------------------------------
// Loads
// ---------------------------------------------------------------------------------------------
template <typename T>
static inline T __ldg(const T* p) { return *p; }

// ---------------------------------------------------------------------------------------------
// Math. The C library gives expf, powf, logf, sqrtf, fabsf, fminf, fmaxf, floorf, ceilf, sinf,
// cosf, fmaf, rintf (half to even in the default rounding mode, as CUDA), and the double ones.
// ---------------------------------------------------------------------------------------------
// Renamed through macros: glibc declares some of these names (__expf, exp10f, ...) itself.
static inline float gpuenhance_emu_rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double gpuenhance_emu_rsqrt(double x) { return 1.0 / sqrt(x); }
static inline float gpuenhance_emu_expf_fast(float x) { return expf(x); }
static inline float gpuenhance_emu_exp10f_fast(float x) { return powf(10.0f, x); }
static inline float gpuenhance_emu_exp10f(float x) { return powf(10.0f, x); }
static inline float gpuenhance_emu_logf(float x) { return logf(x); }
static inline float gpuenhance_emu_log2f(float x) { return log2f(x); }
static inline float gpuenhance_emu_log10f(float x) { return log10f(x); }
static inline float gpuenhance_emu_powf(float x, float y) { return powf(x, y); }
static inline float gpuenhance_emu_sinf(float x) { return sinf(x); }
static inline float gpuenhance_emu_cosf(float x) { return cosf(x); }
static inline float gpuenhance_emu_tanf(float x) { return tanf(x); }
static inline float gpuenhance_emu_fdividef(float x, float y) { return x / y; }
static inline float gpuenhance_emu_frcp_rn(float x) { return 1.0f / x; }
static inline float gpuenhance_emu_fsqrt_rn(float x) { return sqrtf(x); }
static inline float gpuenhance_emu_fadd_rn(float x, float y) { return x + y; }
static inline float gpuenhance_emu_fsub_rn(float x, float y) { return x - y; }
static inline float gpuenhance_emu_fmul_rn(float x, float y) { return x * y; }
static inline float gpuenhance_emu_fdiv_rn(float x, float y) { return x / y; }
static inline float gpuenhance_emu_fmaf_rn(float x, float y, float z) { return fmaf(x, y, z); }
static inline double gpuenhance_emu_dadd_rn(double x, double y) { return x + y; }
static inline double gpuenhance_emu_dmul_rn(double x, double y) { return x * y; }
static inline float gpuenhance_emu_saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }

#define rsqrtf gpuenhance_emu_rsqrtf
#define rsqrt gpuenhance_emu_rsqrt
#define __expf gpuenhance_emu_expf_fast
#define __exp10f gpuenhance_emu_exp10f_fast
#define __logf gpuenhance_emu_logf
#define __log2f gpuenhance_emu_log2f
#define __log10f gpuenhance_emu_log10f
#define __powf gpuenhance_emu_powf
#define __sinf gpuenhance_emu_sinf
#define __cosf gpuenhance_emu_cosf
#define __tanf gpuenhance_emu_tanf
#define __fdividef gpuenhance_emu_fdividef
#define __frcp_rn gpuenhance_emu_frcp_rn
#define __fsqrt_rn gpuenhance_emu_fsqrt_rn
#define __fadd_rn gpuenhance_emu_fadd_rn
#define __fsub_rn gpuenhance_emu_fsub_rn
#define __fmul_rn gpuenhance_emu_fmul_rn
#define __fdiv_rn gpuenhance_emu_fdiv_rn
#define __fmaf_rn gpuenhance_emu_fmaf_rn
#define __dadd_rn gpuenhance_emu_dadd_rn
#define __dmul_rn gpuenhance_emu_dmul_rn
#define __saturatef gpuenhance_emu_saturatef
#define exp10f gpuenhance_emu_exp10f

namespace gpuenhance_emu {
// CUDA's float/double -> integer conversions saturate and send NaN to 0.
template <typename I, typename F>
inline I sat_convert(F r) {
    if (r != r) return 0;
    if (r <= (F)std::numeric_limits<I>::min()) return std::numeric_limits<I>::min();
    if (r >= (F)std::numeric_limits<I>::max()) return std::numeric_limits<I>::max();
    return (I)r;
}
}  // namespace gpuenhance_emu

static inline int __float2int_rn(float x) { return gpuenhance_emu::sat_convert<int>(rintf(x)); }
static inline int __float2int_rz(float x) { return gpuenhance_emu::sat_convert<int>(truncf(x)); }
static inline int __float2int_rd(float x) { return gpuenhance_emu::sat_convert<int>(floorf(x)); }
static inline int __float2int_ru(float x) { return gpuenhance_emu::sat_convert<int>(ceilf(x)); }
static inline unsigned __float2uint_rn(float x) { return gpuenhance_emu::sat_convert<unsigned>(rintf(x)); }
static inline unsigned __float2uint_rz(float x) { return gpuenhance_emu::sat_convert<unsigned>(truncf(x)); }
static inline long long __float2ll_rn(float x) { return gpuenhance_emu::sat_convert<long long>(rintf(x)); }
static inline int __double2int_rn(double x) { return gpuenhance_emu::sat_convert<int>(rint(x)); }
static inline int __double2int_rz(double x) { return gpuenhance_emu::sat_convert<int>(trunc(x)); }
static inline float __int2float_rn(int x) { return (float)x; }
static inline float __uint2float_rn(unsigned x) { return (float)x; }
static inline int __float_as_int(float x) { int i; memcpy(&i, &x, 4); return i; }
static inline unsigned __float_as_uint(float x) { unsigned i; memcpy(&i, &x, 4); return i; }
static inline float __int_as_float(int i) { float x; memcpy(&x, &i, 4); return x; }
static inline float __uint_as_float(unsigned i) { float x; memcpy(&x, &i, 4); return x; }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __mul24(int x, int y) { return x * y; }
static inline unsigned __umul24(unsigned x, unsigned y) { return x * y; }

// min/max overloads as CUDA's math headers declare them (mixed signedness -> unsigned).
#define GPUENHANCE_EMU_MINMAX(R, A, B)                                  \
    static inline R min(A a, B b) { return (R)a < (R)b ? (R)a : (R)b; } \
    static inline R max(A a, B b) { return (R)a < (R)b ? (R)b : (R)a; }
GPUENHANCE_EMU_MINMAX(int, int, int)
GPUENHANCE_EMU_MINMAX(unsigned int, unsigned int, unsigned int)
GPUENHANCE_EMU_MINMAX(unsigned int, int, unsigned int)
GPUENHANCE_EMU_MINMAX(unsigned int, unsigned int, int)
GPUENHANCE_EMU_MINMAX(long, long, long)
GPUENHANCE_EMU_MINMAX(unsigned long, unsigned long, unsigned long)
GPUENHANCE_EMU_MINMAX(unsigned long, long, unsigned long)
GPUENHANCE_EMU_MINMAX(unsigned long, unsigned long, long)
GPUENHANCE_EMU_MINMAX(long long, long long, long long)
GPUENHANCE_EMU_MINMAX(unsigned long long, unsigned long long, unsigned long long)
GPUENHANCE_EMU_MINMAX(unsigned long long, long long, unsigned long long)
GPUENHANCE_EMU_MINMAX(unsigned long long, unsigned long long, long long)
#undef GPUENHANCE_EMU_MINMAX
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }
static inline double min(float a, double b) { return fmin((double)a, b); }
static inline double max(float a, double b) { return fmax((double)a, b); }
static inline double min(double a, float b) { return fmin(a, (double)b); }
static inline double max(double a, float b) { return fmax(a, (double)b); }

// ---------------------------------------------------------------------------------------------
// __trap: a kernel that must never run here (a stub for another architecture) aborts loudly.
[[noreturn]] static inline void __trap() {
    fprintf(stderr, "gpuenhance emulator: __trap() called in a kernel\n");
    abort();
}

// SIMD-in-a-word and byte/funnel-shift intrinsics (CUDA Math API, integer intrinsics).
// Lanes are the 8-bit (…4) or 16-bit (…2) fields of a 32-bit word, lane 0 in the low bits.
// ---------------------------------------------------------------------------------------------
namespace gpuenhance_emu {
template <int BITS, typename F>
inline unsigned simd_lanes(unsigned a, unsigned b, F f) {
    constexpr unsigned mask = (1u << BITS) - 1u;
    unsigned r = 0;
    for (int s = 0; s < 32; s += BITS) r |= (f((a >> s) & mask, (b >> s) & mask) & mask) << s;
    return r;
}
}  // namespace gpuenhance_emu

static inline unsigned __vminu4(unsigned a, unsigned b) {
    return gpuenhance_emu::simd_lanes<8>(a, b, [](unsigned x, unsigned y) { return x < y ? x : y; });
}
static inline unsigned __vmaxu4(unsigned a, unsigned b) {
    return gpuenhance_emu::simd_lanes<8>(a, b, [](unsigned x, unsigned y) { return x < y ? y : x; });
}
static inline unsigned __vminu2(unsigned a, unsigned b) {
    return gpuenhance_emu::simd_lanes<16>(a, b, [](unsigned x, unsigned y) { return x < y ? x : y; });
}
static inline unsigned __vmaxu2(unsigned a, unsigned b) {
    return gpuenhance_emu::simd_lanes<16>(a, b, [](unsigned x, unsigned y) { return x < y ? y : x; });
}

// Byte n of the result is byte (s >> 4n) & 7 of the 8 bytes {y, x} (x = bytes 0..3).
static inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    const unsigned long long both = ((unsigned long long)y << 32) | x;
    unsigned r = 0;
    for (int n = 0; n < 4; ++n) r |= (unsigned)((both >> (8 * ((s >> (4 * n)) & 7u))) & 0xFFu) << (8 * n);
    return r;
}

// Funnel shifts of the 64-bit hi:lo: _l returns the high word after a left shift, _r the low
// word after a right shift; the plain forms shift by (shift & 31), the c forms by min(shift, 32).
static inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned shift) {
    const unsigned long long both = ((unsigned long long)hi << 32) | lo;
    return (unsigned)((both << (shift & 31u)) >> 32);
}
static inline unsigned __funnelshift_lc(unsigned lo, unsigned hi, unsigned shift) {
    const unsigned long long both = ((unsigned long long)hi << 32) | lo;
    return shift >= 32u ? lo : (unsigned)((both << shift) >> 32);
}
static inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned shift) {
    const unsigned long long both = ((unsigned long long)hi << 32) | lo;
    return (unsigned)(both >> (shift & 31u));
}
static inline unsigned __funnelshift_rc(unsigned lo, unsigned hi, unsigned shift) {
    const unsigned long long both = ((unsigned long long)hi << 32) | lo;
    return shift >= 32u ? hi : (unsigned)(both >> shift);
}
