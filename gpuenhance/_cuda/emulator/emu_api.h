// gpuenhance CUDA emulator: the C interface between a compiled kernel module (cuda_emu.h) and
// the runtime library (runtime.cpp), which owns the worker threads and the barriers.
#pragma once

#include <stddef.h>

#define GPUENHANCE_EMU_API_VERSION 1

extern "C" {

// Runs the kernel for one (thread, block): v = threadIdx.xyz, blockIdx.xyz, blockDim.xyz,
// gridDim.xyz. Returns 0, or nonzero when the kernel was unwound because the launch failed.
typedef int (*gpuenhance_emu_block_fn)(void* ctx, const unsigned* v);

struct gpuenhance_emu_api {
    int version;
    // Runs a whole launch; 0 on success, else nonzero with a message in err.
    int (*launch)(gpuenhance_emu_block_fn fn, void* ctx, const unsigned* grid, const unsigned* block,
                  size_t smem_bytes, double timeout_s, int poison, char* err, size_t errlen);
    // __syncthreads of the calling kernel thread: 0 to go on, nonzero when the launch failed.
    int (*sync)(void);
    // The current block's dynamic shared memory.
    void* (*smem)(void);
    // Fails the current launch with a message (first message wins).
    void (*fail)(const char* message);
};
}
