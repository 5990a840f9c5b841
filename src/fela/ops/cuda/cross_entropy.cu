// Cross-entropy on the GPU: one block per row of bf16 logits, fp32 math. Each thread keeps an
// online (max, sum of exp) over its strided share of the row, read 16 bytes at a time; the block
// combines them into logsumexp. The training head calls the fused form, which writes the loss
// and then, in a second sweep over the same row (from L2: a block's row is 100 KB and only a
// few hundred rows are in flight), the bf16 dlogits in place. Nothing of size [R, V] is
// allocated, and the logits are read from memory once.
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
// aligned, else 1. dlogits may alias logits: every read of the row (the target's logit
// included) precedes the block's barrier, and in the second sweep each thread rewrites only the
// values it has just read.
template <int W, bool kGrad>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_kernel(float* loss, __nv_bfloat16* dlogits, const __nv_bfloat16* logits,
                         const int32_t* targets, int64_t V, int64_t ld, float scale) {
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
  acc = block_combine(acc);
  if (threadIdx.x == 0) loss[r] = acc.m + logf(acc.s) - xt;  // logsumexp(x) - x[target]
  if constexpr (kGrad) {
    __nv_bfloat16* g = dlogits + r * ld;
    const float c = scale / acc.s;  // softmax = exp(x - m) / s
    for (int64_t i = threadIdx.x; i < ld / W; i += blockDim.x) {
      float v[W];
      load_vec<W>(x + i * W, v);
#pragma unroll
      for (int j = 0; j < W; ++j) {
        const int64_t col = i * W + j;
        v[j] = col < V ? exp2f((v[j] - acc.m) * kLog2e) * c - (col == t ? scale : 0.f) : 0.f;
      }
      store_vec<W>(g + i * W, v);
    }
  }
}

template <bool kGrad>
void launch(float* loss, BFloat16* dlogits, const BFloat16* logits, const int32_t* targets,
            int64_t R, int64_t V, int64_t ld, float scale) {
  if (R == 0) return;
  FELA_CHECK(R < (int64_t(1) << 31), "[cross_entropy] ", R, " rows exceed the CUDA grid");
  const bool vec = ld % kVec == 0 && aligned16({logits, dlogits});
  auto kernel = vec ? cross_entropy_kernel<kVec, kGrad> : cross_entropy_kernel<1, kGrad>;
  kernel<<<unsigned(R), kThreads, 0, stream()>>>(loss, dev(dlogits), dev(logits), targets, V, ld,
                                                 scale);
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
