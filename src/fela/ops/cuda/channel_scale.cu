// Per-channel scaling on the GPU: x, y, dy, dx bf16, the gain g and its gradient fp32, fp32 math.
//   forward    elementwise, grid-stride: y = x g.
//   backward   tiles of 32 columns x a chunk of rows: each element writes dx = dy g and adds
//              dy x, in a fixed order, to a per-chunk partial of dg; then one pass adds the
//              chunks in order to dg. Deterministic, no atomics.
#include <algorithm>

#include "fela/ops/channel_scale.h"
#include "fela/ops/cuda/common.cuh"

namespace fela::ops::cuda {

namespace {
constexpr int kThreads = 256;

__global__ void channel_scale_forward_kernel(__nv_bfloat16* y, const __nv_bfloat16* x,
                                             const float* g, int64_t total, int64_t d) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total;
       k += int64_t(gridDim.x) * blockDim.x)
    store(y, k, load(x, k) * g[k % d]);
}

// dx[r, c] = dy[r, c] g[c] and partial[chunk, c] = sum over the chunk's rows of dy[r, c] x[r, c]
// (column_chunk_sum). dx may alias dy: each element is read, then written, by one thread.
__global__ void channel_scale_backward_kernel(float* partial, __nv_bfloat16* dx,
                                              const __nv_bfloat16* dy, const __nv_bfloat16* x,
                                              const float* g, int64_t R, int64_t d, int64_t rows) {
  column_chunk_sum(partial, R, d, rows, [&](int64_t k, int64_t c) {
    const float gy = load(dy, k);
    store(dx, k, gy * g[c]);
    return gy * load(x, k);
  });
}

}  // namespace

void channel_scale_forward(BFloat16* y, const BFloat16* x, const float* g, int64_t R, int64_t d) {
  const int64_t total = R * d;
  if (total == 0) return;
  channel_scale_forward_kernel<<<grid_for(total, kThreads), kThreads, 0, stream()>>>(dev(y), dev(x),
                                                                                     g, total, d);
  CUDA_CHECK_LAUNCH();
}

void channel_scale_backward(BFloat16* dx, float* dg, const BFloat16* dy, const BFloat16* x,
                            const float* g, int64_t R, int64_t d) {
  if (R == 0 || d == 0) return;
  const ColumnChunks ch = column_chunks(R);
  Scratch partial(size_t(ch.count * d) * sizeof(float));  // [chunks, d]
  channel_scale_backward_kernel<<<column_tiles(d, ch), dim3(32, kSumRows), 0, stream()>>>(
      partial.as<float>(), dev(dx), dev(dy), dev(x), g, R, d, ch.rows);
  CUDA_CHECK_LAUNCH();
  add_chunk_sums(dg, partial.as<float>(), ch.count, d);
}

}  // namespace fela::ops::cuda
