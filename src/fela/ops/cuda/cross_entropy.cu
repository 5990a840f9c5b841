// Cross-entropy on the GPU: one block per row of bf16 logits, fp32 math. Each thread keeps an
// online (max, sum of exp) over its strided share of the row; the block combines them into
// logsumexp. Nothing of size [R, V] is allocated: the backward writes bf16 dlogits straight from
// the logits, in place when they alias.
#include <cmath>

#include "fela/ops/cross_entropy.h"
#include "fela/ops/cuda/common.cuh"

namespace fela::ops::cuda {

namespace {
constexpr int kThreads = 512;

// Running max m and sum of exp(x - m) over some values.
struct MaxSum {
  float m, s;
};

__device__ __forceinline__ MaxSum combine(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) return {m, 0.f};
  return {m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

// logsumexp of row x[0..V) over the block; every thread gets it. All its reads of x come before
// its first barrier, so once it returns the caller may overwrite x.
__device__ float row_logsumexp(const __nv_bfloat16* x, int64_t V) {
  __shared__ MaxSum parts[32];
  MaxSum t{-INFINITY, 0.f};
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
    const float xv = load(x, v);
    if (xv > t.m) {
      t.s = t.s * expf(t.m - xv) + 1.f;
      t.m = xv;
    } else if (xv > -INFINITY) {
      t.s += expf(xv - t.m);
    }
  }
  for (int o = 16; o > 0; o >>= 1)
    t = combine(t, {__shfl_xor_sync(0xffffffffu, t.m, o), __shfl_xor_sync(0xffffffffu, t.s, o)});
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
  if (lane == 0) parts[warp] = t;
  __syncthreads();
  t = lane < nwarps ? parts[lane] : MaxSum{-INFINITY, 0.f};
  for (int o = 16; o > 0; o >>= 1)
    t = combine(t, {__shfl_xor_sync(0xffffffffu, t.m, o), __shfl_xor_sync(0xffffffffu, t.s, o)});
  __syncthreads();
  return t.m + logf(t.s);
}

__global__ void cross_entropy_forward_kernel(float* loss, const __nv_bfloat16* logits,
                                             const int32_t* targets, int64_t V, int64_t ld) {
  const int64_t r = blockIdx.x;
  const int32_t t = targets[r];
  if (t < 0) {  // ignored row
    if (threadIdx.x == 0) loss[r] = 0.f;
    return;
  }
  const __nv_bfloat16* x = logits + r * ld;
  const float lse = row_logsumexp(x, V);
  if (threadIdx.x == 0) loss[r] = lse - load(x, t);  // logsumexp(x) - x[target]
}

// dlogits = (softmax(x) - onehot(target)) * scale; zero rows where the target is ignored.
__global__ void cross_entropy_backward_kernel(__nv_bfloat16* dlogits, const __nv_bfloat16* logits,
                                              const int32_t* targets, int64_t V, int64_t ld,
                                              float scale) {
  const int64_t r = blockIdx.x;
  const int32_t t = targets[r];
  __nv_bfloat16* g = dlogits + r * ld;
  if (t < 0) {
    for (int64_t v = threadIdx.x; v < ld; v += blockDim.x) store(g, v, 0.f);
    return;
  }
  const __nv_bfloat16* x = logits + r * ld;
  const float lse = row_logsumexp(x, V);
  for (int64_t v = threadIdx.x; v < ld; v += blockDim.x)  // padding columns get 0
    store(g, v, v < V ? (expf(load(x, v) - lse) - (v == t ? 1.f : 0.f)) * scale : 0.f);
}
}  // namespace

void cross_entropy_forward(float* loss, const BFloat16* logits, const int32_t* targets, int64_t R,
                           int64_t V, int64_t ld) {
  if (R == 0) return;
  FELA_CHECK(R < (int64_t(1) << 31), "[cross_entropy] ", R, " rows exceed the CUDA grid");
  cross_entropy_forward_kernel<<<unsigned(R), kThreads, 0, stream()>>>(loss, dev(logits), targets,
                                                                       V, ld);
  CUDA_CHECK_LAUNCH();
}

void cross_entropy_backward(BFloat16* dlogits, const BFloat16* logits, const int32_t* targets,
                            int64_t R, int64_t V, int64_t ld, double scale) {
  if (R == 0 || V == 0) return;
  FELA_CHECK(R < (int64_t(1) << 31), "[cross_entropy] ", R, " rows exceed the CUDA grid");
  cross_entropy_backward_kernel<<<unsigned(R), kThreads, 0, stream()>>>(dev(dlogits), dev(logits),
                                                                        targets, V, ld, float(scale));
  CUDA_CHECK_LAUNCH();
}

}  // namespace fela::ops::cuda
