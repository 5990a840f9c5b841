// Elementwise sum y = a + b on the GPU: bf16 with the sum in fp32 (one rounding per element),
// 16 bytes per access where the pointers allow; or f32. Memory-bound: 3 streams per element.
#include "fela/ops/add.h"
#include "fela/ops/cuda/common.cuh"

namespace fela::ops::cuda {

namespace {
constexpr int kThreads = 256;

// Vectors of W values first, then the n % W tail one by one. y may alias a or b: each element
// is read before it is written, by the same thread.
template <int W>
__global__ void add_kernel(__nv_bfloat16* y, const __nv_bfloat16* a, const __nv_bfloat16* b,
                           int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  for (int64_t i = first; i < n / W; i += stride) {
    float u[W], v[W];
    load_vec<W>(a + i * W, u);
    load_vec<W>(b + i * W, v);
#pragma unroll
    for (int j = 0; j < W; ++j) u[j] += v[j];
    store_vec<W>(y + i * W, u);
  }
  for (int64_t i = n / W * W + first; i < n; i += stride)
    y[i] = __float2bfloat16_rn(__bfloat162float(a[i]) + __bfloat162float(b[i]));
}

__global__ void add_f32_kernel(float* y, const float* a, const float* b, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = a[i] + b[i];
}
}  // namespace

void add(BFloat16* y, const BFloat16* a, const BFloat16* b, int64_t n) {
  if (n == 0) return;
  if (aligned16({y, a, b}))
    add_kernel<kVec>
        <<<grid_for(n / kVec + 1, kThreads), kThreads, 0, stream()>>>(dev(y), dev(a), dev(b), n);
  else
    add_kernel<1><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(dev(y), dev(a), dev(b), n);
  CUDA_CHECK_LAUNCH();
}

void add(float* y, const float* a, const float* b, int64_t n) {
  if (n == 0) return;
  add_f32_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(y, a, b, n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace fela::ops::cuda
