// Residual accumulation y += x on the GPU: elementwise, bf16 in and out, the sum in fp32 (one
// rounding to bf16 per element), grid-stride loop. Memory-bound: 3 bf16 streams per element.
#include "fela/ops/add.h"
#include "fela/ops/cuda/common.cuh"

namespace fela::ops::cuda {

namespace {
constexpr int kThreads = 256;

template <class T>
__global__ void add_inplace_kernel(T* y, const T* x, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    store(y, i, load(y, i) + load(x, i));
}
}  // namespace

void add_inplace(BFloat16* y, const BFloat16* x, int64_t n) {
  if (n == 0) return;
  add_inplace_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(dev(y), dev(x), n);
  CUDA_CHECK_LAUNCH();
}

void add_inplace(float* y, const float* x, int64_t n) {
  if (n == 0) return;
  add_inplace_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(y, x, n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace fela::ops::cuda
