// AdamW and the squared gradient norm on the GPU: fp32 master weights, gradients and moments.
//   adamw_update  one launch over the whole buffer. Each thread owns 4 consecutive elements: it
//                 loads params, grads, m and v (16-byte loads when every pointer allows), then
//                 finds their weight decay by a binary search of the decay ranges (sorted
//                 [begin, end) pairs in device memory; the warp's threads search the same few
//                 hundred bytes, which stay in L1), updates in fp32 and stores params, m, v and
//                 the bf16 shadow. 30 bytes of memory traffic per element, nothing else.
//   grad_norm_sq  two passes in double, deterministic: a grid whose size depends on n alone sums
//                 fixed grid-stride subsets per thread, reduces each block in a fixed tree and
//                 writes one partial per block; one block then adds the partials the same way.
//                 The result is copied to the host (the one wait of a training step).
#include <algorithm>
#include <cmath>

#include "fela/ops/adamw.h"
#include "fela/ops/cuda/common.cuh"

namespace fela::ops::cuda {

namespace {
constexpr int kThreads = 256;
constexpr int kPerThread = 4;            // elements per thread in the update
constexpr int kNormBlocks = 1024;  // partial sums of the norm, at most

// The update's constants, rounded to fp32 once on the host (as the CPU kernel rounds them to T).
struct Consts {
  float b1, b2, one_minus_b1, one_minus_b2, step, inv_bc2, eps, decay, scale;
};

// Index of the first range whose end is past i (K when none).
__device__ __forceinline__ int64_t first_range_ending_after(const DecayRange* r, int64_t K,
                                                            int64_t i) {
  int64_t lo = 0, hi = K;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (__ldg(&r[mid].end) <= i)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

template <bool kAligned, bool kShadow>
__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, __nv_bfloat16* shadow,
                             int64_t n, const DecayRange* ranges, int64_t K, Consts c) {
  const int64_t i0 = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) * kPerThread;
  if (i0 >= n) return;
  const bool full = i0 + kPerThread <= n;
  float pr[kPerThread], gr[kPerThread], mr[kPerThread], vr[kPerThread];
  // all loads first: the range search below overlaps their latency
  if (kAligned && full) {
    const float4 p4 = *reinterpret_cast<const float4*>(p + i0);
    const float4 g4 = *reinterpret_cast<const float4*>(g + i0);
    const float4 m4 = *reinterpret_cast<const float4*>(m + i0);
    const float4 v4 = *reinterpret_cast<const float4*>(v + i0);
    pr[0] = p4.x, pr[1] = p4.y, pr[2] = p4.z, pr[3] = p4.w;
    gr[0] = g4.x, gr[1] = g4.y, gr[2] = g4.z, gr[3] = g4.w;
    mr[0] = m4.x, mr[1] = m4.y, mr[2] = m4.z, mr[3] = m4.w;
    vr[0] = v4.x, vr[1] = v4.y, vr[2] = v4.z, vr[3] = v4.w;
  } else {
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const bool in = i0 + j < n;  // past the end: zeros, computed on and never stored
      pr[j] = in ? p[i0 + j] : 0.f, gr[j] = in ? g[i0 + j] : 0.f;
      mr[j] = in ? m[i0 + j] : 0.f, vr[j] = in ? v[i0 + j] : 0.f;
    }
  }
  // The ranges are sorted, so the later elements only move the search's answer forward.
  int64_t k = first_range_ending_after(ranges, K, i0);
#pragma unroll
  for (int j = 0; j < kPerThread; ++j) {
    const int64_t i = i0 + j;
    while (k < K && __ldg(&ranges[k].end) <= i) ++k;
    const float decay = k < K && __ldg(&ranges[k].begin) <= i ? c.decay : 1.f;
    const float gi = gr[j] * c.scale;
    mr[j] = c.b1 * mr[j] + c.one_minus_b1 * gi;       // m = b1 m + (1-b1) g
    vr[j] = c.b2 * vr[j] + c.one_minus_b2 * gi * gi;  // v = b2 v + (1-b2) g^2
    pr[j] = pr[j] * decay - c.step * mr[j] / (sqrtf(vr[j] * c.inv_bc2) + c.eps);
  }
  if (kAligned && full) {
    *reinterpret_cast<float4*>(p + i0) = make_float4(pr[0], pr[1], pr[2], pr[3]);
    *reinterpret_cast<float4*>(m + i0) = make_float4(mr[0], mr[1], mr[2], mr[3]);
    *reinterpret_cast<float4*>(v + i0) = make_float4(vr[0], vr[1], vr[2], vr[3]);
    if (kShadow) {
      union {
        __nv_bfloat162 h[2];
        uint2 u;
      } pack;
      pack.h[0] = __floats2bfloat162_rn(pr[0], pr[1]);
      pack.h[1] = __floats2bfloat162_rn(pr[2], pr[3]);
      *reinterpret_cast<uint2*>(shadow + i0) = pack.u;
    }
  } else {
#pragma unroll
    for (int j = 0; j < kPerThread; ++j)
      if (i0 + j < n) {
        p[i0 + j] = pr[j], m[i0 + j] = mr[j], v[i0 + j] = vr[j];
        if (kShadow) store(shadow, i0 + j, pr[j]);
      }
  }
}

template <bool kAligned>
__global__ void sumsq_partial_kernel(double* partial, const float* g, int64_t n) {
  __shared__ double shared[32];
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  double acc = 0;
  int64_t tail = 0;
  if (kAligned) {
    const float4* g4 = reinterpret_cast<const float4*>(g);
    const int64_t nv = n / 4;
#pragma unroll 4
    for (int64_t i = t; i < nv; i += stride) {
      const float4 x = g4[i];
      acc += double(x.x) * x.x + double(x.y) * x.y + double(x.z) * x.z + double(x.w) * x.w;
    }
    tail = nv * 4;
  }
  for (int64_t i = tail + t; i < n; i += stride) acc += double(g[i]) * g[i];
  acc = block_sum(acc, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void sum_partials_kernel(double* out, const double* partial, int count) {
  __shared__ double shared[32];
  double acc = 0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
  acc = block_sum(acc, shared);
  if (threadIdx.x == 0) *out = acc;
}

bool aligned(const void* q, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(q) % bytes == 0; }

template <bool kAligned, bool kShadow>
void launch_adamw(float* p, const float* g, float* m, float* v, BFloat16* shadow, int64_t n,
                  const DecayRange* decay, int64_t ndecay, const Consts& c) {
  const int64_t threads_needed = (n + kPerThread - 1) / kPerThread;
  const int64_t blocks = (threads_needed + kThreads - 1) / kThreads;
  adamw_kernel<kAligned, kShadow>
      <<<blocks, kThreads, 0, stream()>>>(p, g, m, v, dev(shadow), n, decay, ndecay, c);
  CUDA_CHECK_LAUNCH();
}
}  // namespace

void adamw_update(float* p, const float* g, float* m, float* v, BFloat16* shadow, int64_t n,
                  const DecayRange* decay, int64_t ndecay, const AdamWHyper& h) {
  if (n == 0) return;
  const double bc1 = 1.0 - std::pow(h.beta1, double(h.t));
  const double bc2 = 1.0 - std::pow(h.beta2, double(h.t));
  const float b1 = float(h.beta1), b2 = float(h.beta2);
  const Consts c{b1,
                 b2,
                 1.f - b1,
                 1.f - b2,
                 float(h.lr / bc1),
                 float(1.0 / bc2),
                 float(h.eps),
                 float(1.0 - h.lr * h.weight_decay),
                 float(h.grad_scale)};
  const bool vec = aligned(p, 16) && aligned(g, 16) && aligned(m, 16) && aligned(v, 16) &&
                   (!shadow || aligned(shadow, 8));
  if (vec && shadow) launch_adamw<true, true>(p, g, m, v, shadow, n, decay, ndecay, c);
  if (vec && !shadow) launch_adamw<true, false>(p, g, m, v, shadow, n, decay, ndecay, c);
  if (!vec && shadow) launch_adamw<false, true>(p, g, m, v, shadow, n, decay, ndecay, c);
  if (!vec && !shadow) launch_adamw<false, false>(p, g, m, v, shadow, n, decay, ndecay, c);
}

double grad_norm_sq(const float* g, int64_t n) {
  if (n == 0) return 0.0;
  const bool vec = aligned(g, 16);
  const int64_t per_block = int64_t(kThreads) * (vec ? 4 : 1);
  const int blocks = int(std::min<int64_t>(kNormBlocks, (n + per_block - 1) / per_block));
  Scratch scratch(sizeof(double) * (blocks + 1));
  double* partial = scratch.as<double>();
  if (vec)
    sumsq_partial_kernel<true><<<blocks, kThreads, 0, stream()>>>(partial, g, n);
  else
    sumsq_partial_kernel<false><<<blocks, kThreads, 0, stream()>>>(partial, g, n);
  CUDA_CHECK_LAUNCH();
  sum_partials_kernel<<<1, 1024, 0, stream()>>>(partial + blocks, partial, blocks);
  CUDA_CHECK_LAUNCH();
  double ss = 0;
  fela::cuda::copy_bytes(&ss, partial + blocks, sizeof ss);
  return ss;
}

}  // namespace fela::ops::cuda
