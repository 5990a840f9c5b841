// Inverted dropout on the GPU: elementwise, grid-stride loop, the mask from the same
// dropout_keep(seed, index, p) as the CPU (dropout_hash.h, compiled for the device), so the
// kept elements are bit for bit those of the CPU. Values: x * (1 / (1 - p)) in fp32, stored as
// bf16 or fp32. p = 0 keeps everything (the multiplier is 1), as the CPU's copy does.
#include "fela/ops/cuda/common.cuh"
#include "fela/ops/dropout.h"

namespace fela::ops::cuda {

namespace {
constexpr int kThreads = 256;

// y may alias x: each index is read before it is written, by the same thread.
template <class T>
__global__ void dropout_kernel(T* y, const T* x, int64_t n, double p, uint64_t seed, float inv) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    store(y, i, dropout_keep(seed, uint64_t(i), p) ? load(x, i) * inv : 0.f);
}

template <class T>
void launch(T* y, const T* x, int64_t n, double p, uint64_t seed) {
  if (n == 0) return;
  dropout_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(y, x, n, p, seed,
                                                                   float(1.0 / (1.0 - p)));
  CUDA_CHECK_LAUNCH();
}
}  // namespace

void dropout_apply(BFloat16* y, const BFloat16* x, int64_t n, double p, uint64_t seed) {
  launch(dev(y), dev(x), n, p, seed);
}

void dropout_apply(float* y, const float* x, int64_t n, double p, uint64_t seed) {
  launch(y, x, n, p, seed);
}

}  // namespace fela::ops::cuda
