// Test-only: does not compile (undeclared identifier), for the compile-error tests.
#include "common.cuh"

__global__ void gpuenhance_test_broken(float* out) {
    out[threadIdx.x] = gpuenhance_no_such_function(1.0f);
}
