// Cast on the GPU: elementwise f32 <-> bf16 (round to nearest even), grid-stride loops.
#include "fela/ops/cast.h"
#include "fela/ops/cuda/common.cuh"

namespace fela::ops::cuda {

namespace {
constexpr int kThreads = 256;

template <class Y, class X>
__global__ void cast_kernel(Y* y, const X* x, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    store(y, i, load(x, i));
}
}  // namespace

void cast(BFloat16* y, const float* x, int64_t n) {
  if (n == 0) return;
  cast_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(dev(y), x, n);
  CUDA_CHECK_LAUNCH();
}

void cast(float* y, const BFloat16* x, int64_t n) {
  if (n == 0) return;
  cast_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(y, dev(x), n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace fela::ops::cuda
