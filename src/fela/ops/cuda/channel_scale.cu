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
constexpr int kMinChunk = 64;     // rows per partial sum of dg, at least
constexpr int kMaxChunks = 1024;  // partial sums of dg, at most: bounds the scratch to 4 KiB * d
constexpr int kTileY = 8;         // threads down the rows of a tile

__global__ void channel_scale_forward_kernel(__nv_bfloat16* y, const __nv_bfloat16* x,
                                             const float* g, int64_t total, int64_t d) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total;
       k += int64_t(gridDim.x) * blockDim.x)
    store(y, k, load(x, k) * g[k % d]);
}

// Block (column tile blockIdx.x, row chunk blockIdx.y), threads (32 columns, kTileY rows):
// dx[r, c] = dy[r, c] g[c] for the chunk's rows and partial[chunk, c] = sum of dy[r, c] x[r, c].
// dx may alias dy: each element is read, then written, by one thread.
__global__ void channel_scale_backward_kernel(float* partial, __nv_bfloat16* dx,
                                              const __nv_bfloat16* dy, const __nv_bfloat16* x,
                                              const float* g, int64_t R, int64_t d, int64_t chunk) {
  __shared__ float tile[kTileY][33];
  const int64_t c = blockIdx.x * int64_t(32) + threadIdx.x;
  const int64_t r0 = blockIdx.y * chunk, r1 = min(r0 + chunk, R);
  float acc = 0.f;
  if (c < d) {
    const float gc = g[c];
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kTileY) {
      const int64_t k = r * d + c;
      const float gy = load(dy, k);
      acc += gy * load(x, k);
      store(dx, k, gy * gc);
    }
  }
  tile[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < d) {
    float s = 0.f;
    for (int j = 0; j < kTileY; ++j) s += tile[j][threadIdx.x];
    partial[blockIdx.y * d + c] = s;
  }
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
  const int64_t chunk = std::max<int64_t>(kMinChunk, (R + kMaxChunks - 1) / kMaxChunks);
  const int64_t chunks = (R + chunk - 1) / chunk;
  Scratch partial(size_t(chunks * d) * sizeof(float));          // [chunks, d]
  const dim3 tiles(unsigned((d + 31) / 32), unsigned(chunks));  // (column tile, row chunk)
  channel_scale_backward_kernel<<<tiles, dim3(32, kTileY), 0, stream()>>>(
      partial.as<float>(), dev(dx), dev(dy), dev(x), g, R, d, chunk);
  CUDA_CHECK_LAUNCH();
  add_chunk_sums(dg, partial.as<float>(), chunks, d);
}

}  // namespace fela::ops::cuda
