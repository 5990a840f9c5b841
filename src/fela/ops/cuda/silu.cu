// SiLU on the GPU: elementwise, bf16 in and out, fp32 math, grid-stride loops.
// Memory-bound: 2 (forward) or 3 (backward) bf16 streams per element.
#include "fela/ops/cuda/common.cuh"
#include "fela/ops/silu.h"

namespace fela::ops::cuda {

namespace {
constexpr int kThreads = 256;

// sigmoid(v) = 1 / (1 + exp(-v)): 0, not NaN, when exp overflows, as in the oracle.
__device__ __forceinline__ float sigmoid(float v) { return 1.f / (1.f + expf(-v)); }

__global__ void silu_forward_kernel(__nv_bfloat16* y, const __nv_bfloat16* x, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float v = load(x, i);
    store(y, i, v * sigmoid(v));
  }
}

// dx may alias dy: each index is read before it is written, by the same thread.
__global__ void silu_backward_kernel(__nv_bfloat16* dx, const __nv_bfloat16* dy,
                                     const __nv_bfloat16* x, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float v = load(x, i), s = sigmoid(v);
    store(dx, i, load(dy, i) * s * (1.f + v * (1.f - s)));
  }
}
}  // namespace

void silu_forward(BFloat16* y, const BFloat16* x, int64_t n) {
  if (n == 0) return;
  silu_forward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(dev(y), dev(x), n);
  CUDA_CHECK_LAUNCH();
}

void silu_backward(BFloat16* dx, const BFloat16* dy, const BFloat16* x, int64_t n) {
  if (n == 0) return;
  silu_backward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(dev(dx), dev(dy), dev(x),
                                                                         n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace fela::ops::cuda
