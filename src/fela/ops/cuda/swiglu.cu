// SwiGLU gate on the GPU: elementwise, bf16 in and out, fp32 math, grid-stride loops.
// Memory-bound: 3 (forward) or 5 (backward) bf16 streams per element.
#include "fela/ops/cuda/common.cuh"
#include "fela/ops/swiglu.h"

namespace fela::ops::cuda {

namespace {
constexpr int kThreads = 256;

__global__ void swiglu_forward_kernel(__nv_bfloat16* y, const __nv_bfloat16* a,
                                      const __nv_bfloat16* b, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float x = load(a, i), s = 1.f / (1.f + expf(-x));
    store(y, i, x * s * load(b, i));  // y = silu(a) * b
  }
}

// da and db may alias dy: each index is read before it is written, by the same thread.
__global__ void swiglu_backward_kernel(__nv_bfloat16* da, __nv_bfloat16* db,
                                       const __nv_bfloat16* dy, const __nv_bfloat16* a,
                                       const __nv_bfloat16* b, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float x = load(a, i), g = load(dy, i), bv = load(b, i);
    const float s = 1.f / (1.f + expf(-x));
    store(da, i, g * bv * s * (1.f + x * (1.f - s)));  // d silu(a) / da = s (1 + a (1 - s))
    store(db, i, g * x * s);
  }
}
}  // namespace

void swiglu_forward(BFloat16* y, const BFloat16* a, const BFloat16* b, int64_t n) {
  if (n == 0) return;
  swiglu_forward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(dev(y), dev(a), dev(b),
                                                                          n);
  CUDA_CHECK_LAUNCH();
}

void swiglu_backward(BFloat16* da, BFloat16* db, const BFloat16* dy, const BFloat16* a,
                     const BFloat16* b, int64_t n) {
  if (n == 0) return;
  swiglu_backward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(
      dev(da), dev(db), dev(dy), dev(a), dev(b), n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace fela::ops::cuda
