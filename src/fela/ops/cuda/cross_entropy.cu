// Cross-entropy on the GPU: one block per row of bf16 logits, fp32 math. Each thread keeps an
// online (max, sum of exp) over its strided share of the row, read 16 bytes at a time; the block
// combines them into logsumexp. The training head calls the fused form, which writes the loss
// and then, in a second sweep over the same row (kept in shared memory by the first), the bf16
// dlogits in place. Nothing of size [R, V] is allocated, and the logits are read from memory
// once.
#include <cmath>

#include "fela/ops/cross_entropy.h"
#include "fela/ops/cuda/common.cuh"

namespace fela::ops::cuda {

namespace {
constexpr int kThreads = 512;
constexpr float kLog2e = 1.4426950408889634f;

// Running max m and sum of exp(x - m) over some values.
struct MaxSum {
  float m, s;
};

__device__ __forceinline__ MaxSum combine(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) return {m, 0.f};
  return {m, a.s * exp2f((a.m - m) * kLog2e) + b.s * exp2f((b.m - m) * kLog2e)};
}

__device__ __forceinline__ MaxSum block_combine(MaxSum t) {
  __shared__ MaxSum parts[32];
  for (int o = 16; o > 0; o >>= 1)
    t = combine(t, {__shfl_xor_sync(0xffffffffu, t.m, o), __shfl_xor_sync(0xffffffffu, t.s, o)});
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
  if (lane == 0) parts[warp] = t;
  __syncthreads();
  t = lane < nwarps ? parts[lane] : MaxSum{-INFINITY, 0.f};
  for (int o = 16; o > 0; o >>= 1)
    t = combine(t, {__shfl_xor_sync(0xffffffffu, t.m, o), __shfl_xor_sync(0xffffffffu, t.s, o)});
  return t;
}

// Loss of row blockIdx.x and, with kGrad, its dlogits = (softmax - onehot) * scale (padding
// columns V..ld-1 and ignored rows get 0). W values per access: 8 when rows are 16-byte
// aligned, else 1. With kCache the first sweep keeps the row in shared memory (ceil(V / W) W
// values of dynamic shared memory) and the second reads it there: 50304 logits take 100 KB, so
// two rows per SM are in flight. Without it the second sweep rereads the row from global memory,
// where it is in L2 only if few enough rows are in flight: at four 512-thread blocks per SM
// (53 MB of rows) it was not, and fela-small's head took 0.84 ms instead of about 0.55.
// dlogits may alias logits: every read of the row (the target's logit included) precedes the
// block's barrier, and in the second sweep each thread rewrites only the values it has just read.
template <int W, bool kGrad, bool kCache>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_kernel(float* loss, __nv_bfloat16* dlogits, const __nv_bfloat16* logits,
                         const int32_t* targets, int64_t V, int64_t ld, float scale) {
  extern __shared__ __align__(16) __nv_bfloat16 cache[];
  const int64_t r = blockIdx.x;
  const int32_t t = targets[r];
  const __nv_bfloat16* x = logits + r * ld;
  if (t < 0) {  // ignored row
    if (threadIdx.x == 0) loss[r] = 0.f;
    if constexpr (kGrad)
      for (int64_t v = threadIdx.x; v < ld; v += blockDim.x)
        dlogits[r * ld + v] = __float2bfloat16_rn(0.f);
    return;
  }
  const float xt = threadIdx.x == 0 ? __bfloat162float(x[t]) : 0.f;
  MaxSum acc{-INFINITY, 0.f};
  const int64_t nvec = (V + W - 1) / W;
  for (int64_t i = threadIdx.x; i < nvec; i += blockDim.x) {
    float v[W];
    load_vec<W>(x + i * W, v);
    if constexpr (kCache) store_vec<W>(cache + i * W, v);  // bf16 -> float -> bf16 is exact
    float m = acc.m;
#pragma unroll
    for (int j = 0; j < W; ++j)
      if (i * W + j < V) m = fmaxf(m, v[j]);
    if (m == -INFINITY) continue;
    float s = acc.s * exp2f((acc.m - m) * kLog2e);
#pragma unroll
    for (int j = 0; j < W; ++j)
      if (i * W + j < V) s += exp2f((v[j] - m) * kLog2e);
    acc = {m, s};
  }
  acc = block_combine(acc);  // its barrier also orders the cache's writes before its reads
  if (threadIdx.x == 0) loss[r] = acc.m + logf(acc.s) - xt;  // logsumexp(x) - x[target]
  if constexpr (kGrad) {
    __nv_bfloat16* g = dlogits + r * ld;
    const float c = scale / acc.s;  // softmax = exp(x - m) / s
    for (int64_t i = threadIdx.x; i < ld / W; i += blockDim.x) {
      float v[W] = {};
      if (i < nvec) load_vec<W>((kCache ? cache : x) + i * W, v);
#pragma unroll
      for (int j = 0; j < W; ++j) {
        const int64_t col = i * W + j;
        v[j] = col < V ? exp2f((v[j] - acc.m) * kLog2e) * c - (col == t ? scale : 0.f) : 0.f;
      }
      store_vec<W>(g + i * W, v);
    }
  }
}

// Shared memory a block may take on Hopper; rows up to this size are cached.
constexpr size_t kMaxCache = 200 * 1024;

template <bool kGrad>
void launch(float* loss, BFloat16* dlogits, const BFloat16* logits, const int32_t* targets,
            int64_t R, int64_t V, int64_t ld, float scale) {
  if (R == 0) return;
  FELA_CHECK(R < (int64_t(1) << 31), "[cross_entropy] ", R, " rows exceed the CUDA grid");
  const bool vec = ld % kVec == 0 && aligned16({logits, dlogits});
  const size_t row_bytes = size_t((V + kVec - 1) / kVec * kVec) * sizeof(BFloat16);
  const bool cache = kGrad && vec && row_bytes <= kMaxCache;  // only the fused form rereads
  static const bool raised = [] {
    CUDA_CHECK(cudaFuncSetAttribute(cross_entropy_kernel<kVec, kGrad, true>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, int(kMaxCache)));
    return true;
  }();
  (void)raised;
  auto kernel = cache ? cross_entropy_kernel<kVec, kGrad, true>
                : vec ? cross_entropy_kernel<kVec, kGrad, false>
                      : cross_entropy_kernel<1, kGrad, false>;
  kernel<<<unsigned(R), kThreads, cache ? row_bytes : 0, stream()>>>(
      loss, dev(dlogits), dev(logits), targets, V, ld, scale);
  CUDA_CHECK_LAUNCH();
}
}  // namespace

void cross_entropy_forward(float* loss, const BFloat16* logits, const int32_t* targets, int64_t R,
                           int64_t V, int64_t ld) {
  launch<false>(loss, nullptr, logits, targets, R, V, ld, 0.f);
}

void cross_entropy_forward_backward(float* loss, BFloat16* dlogits, const BFloat16* logits,
                                    const int32_t* targets, int64_t R, int64_t V, int64_t ld,
                                    double scale) {
  launch<true>(loss, dlogits, logits, targets, R, V, ld, float(scale));
}

}  // namespace fela::ops::cuda
