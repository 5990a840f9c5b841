// RMSNorm on the GPU: bf16 activations, fp32 gain, rstd and math.
//   forward      one warp per row: sum of squares by warp shuffles, then y = x * rstd * g.
//   backward dg  tiles of 32 columns x a chunk of rows summed in a fixed order into per-chunk
//                partials, then one pass over the chunks: deterministic, no atomics.
//   backward dx  one warp per row, after dg, because dx may alias dy.
#include <algorithm>

#include "fela/ops/cuda/common.cuh"
#include "fela/ops/rmsnorm.h"

namespace fela::ops::cuda {

namespace {
constexpr int kWarps = 8;         // rows per block in the row kernels
constexpr int kMinChunk = 64;     // rows per partial sum of dg, at least
constexpr int kMaxChunks = 1024;  // partial sums of dg, at most: bounds the scratch to 4 KiB * d
constexpr int kTileY = 8;         // threads down the rows of a dg tile

__global__ void rmsnorm_forward_kernel(__nv_bfloat16* y, float* rstd, const __nv_bfloat16* x,
                                       const float* g, int64_t R, int64_t d, float eps) {
  const int64_t r = blockIdx.x * int64_t(kWarps) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= R) return;
  const __nv_bfloat16* xr = x + r * d;
  float ss = 0.f;
  for (int64_t i = lane; i < d; i += 32) {
    const float v = load(xr, i);
    ss += v * v;
  }
  const float s = 1.f / sqrtf(warp_sum(ss) / float(d) + eps);  // rstd = 1/sqrt(mean(x^2) + eps)
  if (lane == 0) rstd[r] = s;
  for (int64_t i = lane; i < d; i += 32) store(y + r * d, i, load(xr, i) * s * g[i]);
}

// partial[chunk, i] = sum over the chunk's rows r of dy[r, i] * x[r, i] * rstd[r].
__global__ void rmsnorm_dg_partial_kernel(float* partial, const __nv_bfloat16* dy,
                                          const __nv_bfloat16* x, const float* rstd, int64_t R,
                                          int64_t d, int64_t chunk) {
  __shared__ float tile[kTileY][33];
  const int64_t i = blockIdx.y * int64_t(32) + threadIdx.x;
  const int64_t r0 = blockIdx.x * chunk, r1 = min(r0 + chunk, R);
  float acc = 0.f;
  if (i < d)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kTileY)
      acc += load(dy, r * d + i) * load(x, r * d + i) * rstd[r];
  tile[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && i < d) {
    float s = 0.f;
    for (int k = 0; k < kTileY; ++k) s += tile[k][threadIdx.x];
    partial[blockIdx.x * d + i] = s;
  }
}


// dx = rstd * (dy*g - x * rstd^2 * mean(dy*g*x)). dx may alias dy: the warp reads the whole row
// for the dot product before any lane writes, and each lane writes only what it reads.
__global__ void rmsnorm_dx_kernel(__nv_bfloat16* dx, const __nv_bfloat16* dy,
                                  const __nv_bfloat16* x, const float* g, const float* rstd,
                                  int64_t R, int64_t d) {
  const int64_t r = blockIdx.x * int64_t(kWarps) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= R) return;
  const __nv_bfloat16 *xr = x + r * d, *dyr = dy + r * d;
  float dot = 0.f;
  for (int64_t i = lane; i < d; i += 32) dot += load(dyr, i) * g[i] * load(xr, i);
  const float s = rstd[r], c = s * s * warp_sum(dot) / float(d);
  for (int64_t i = lane; i < d; i += 32)
    store(dx + r * d, i, s * (load(dyr, i) * g[i] - load(xr, i) * c));
}
}  // namespace

void rmsnorm_forward(BFloat16* y, float* rstd, const BFloat16* x, const float* g, int64_t R,
                     int64_t d, double eps) {
  if (R == 0) return;
  const int64_t blocks = (R + kWarps - 1) / kWarps;
  rmsnorm_forward_kernel<<<blocks, kWarps * 32, 0, stream()>>>(dev(y), rstd, dev(x), g, R, d,
                                                               float(eps));
  CUDA_CHECK_LAUNCH();
}

void rmsnorm_backward(BFloat16* dx, float* dg, const BFloat16* dy, const BFloat16* x,
                      const float* g, const float* rstd, int64_t R, int64_t d) {
  if (R == 0 || d == 0) return;
  const int64_t chunk = std::max<int64_t>(kMinChunk, (R + kMaxChunks - 1) / kMaxChunks);
  const int64_t chunks = (R + chunk - 1) / chunk;
  Scratch partial(size_t(chunks * d) * sizeof(float));  // [chunks, d]
  FELA_CHECK(d < 32 * 65536, "[rmsnorm] width ", d, " exceeds the CUDA backward's grid");
  const dim3 tiles(unsigned(chunks), unsigned((d + 31) / 32));  // (row chunk, column tile)
  rmsnorm_dg_partial_kernel<<<tiles, dim3(32, kTileY), 0, stream()>>>(partial.as<float>(), dev(dy),
                                                                      dev(x), rstd, R, d, chunk);
  CUDA_CHECK_LAUNCH();
  add_chunk_sums_kernel<<<unsigned((d + 255) / 256), 256, 0, stream()>>>(dg, partial.as<float>(),
                                                                            chunks, d);
  CUDA_CHECK_LAUNCH();
  const int64_t blocks = (R + kWarps - 1) / kWarps;
  rmsnorm_dx_kernel<<<blocks, kWarps * 32, 0, stream()>>>(dev(dx), dev(dy), dev(x), g, rstd, R, d);
  CUDA_CHECK_LAUNCH();
}

}  // namespace fela::ops::cuda
