// RMSNorm on the GPU: bf16 activations, fp32 gain, rstd and math; rows read 16 bytes at a time
// where the width and the pointers allow (W = 8 values per access, else 1).
//   forward   one warp per row: sum of squares by warp shuffles, then y = x * rstd * g; the
//             residual form first writes s = x + b (rounded to bf16) and normalises that.
//   backward  one pass: each warp takes rows in turn, writes (or adds) dx and keeps its share
//             of dg per column in shared memory; the block's warps are summed in order into one
//             partial per block, and the partials in order into dg: deterministic, no atomics.
#include <algorithm>

#include "fela/ops/cuda/common.cuh"
#include "fela/ops/rmsnorm.h"

namespace fela::ops::cuda {

namespace {
constexpr int kWarps = 8;        // rows per block in the forward
// Backward: 8 warps of 2 rows each per block, 16 rows per dg partial. Fewer rows per warp keep
// more rows in flight: at 4 warps x 8 rows, fela-small's 8192 x 768 took 42 us, latency-bound.
constexpr int kBackWarps = 8;
constexpr int kRowsPerWarp = 2;

template <int W>
__global__ void rmsnorm_forward_kernel(__nv_bfloat16* y, float* rstd, __nv_bfloat16* s,
                                       const __nv_bfloat16* x, const __nv_bfloat16* b,
                                       const float* g, int64_t R, int64_t d, float eps) {
  const int64_t r = blockIdx.x * int64_t(kWarps) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= R) return;
  const int64_t n = d / W;
  const __nv_bfloat16* xr = x + r * d;
  float ss = 0.f;
  for (int64_t i = lane; i < n; i += 32) {
    float v[W];
    load_vec<W>(xr + i * W, v);
    if (b) {  // s = x + b as stored (bf16): the norm below reads it back
      float u[W];
      load_vec<W>(b + r * d + i * W, u);
#pragma unroll
      for (int j = 0; j < W; ++j) v[j] = __bfloat162float(__float2bfloat16_rn(v[j] + u[j]));
      store_vec<W>(s + r * d + i * W, v);
    }
#pragma unroll
    for (int j = 0; j < W; ++j) ss += v[j] * v[j];
  }
  const float k = 1.f / sqrtf(warp_sum(ss) / float(d) + eps);  // rstd = 1/sqrt(mean(x^2) + eps)
  if (lane == 0) rstd[r] = k;
  const __nv_bfloat16* src = b ? s + r * d : xr;  // this lane's own values, just written
  for (int64_t i = lane; i < n; i += 32) {
    float v[W];
    load_vec<W>(src + i * W, v);
#pragma unroll
    for (int j = 0; j < W; ++j) v[j] *= k * g[i * W + j];
    store_vec<W>(y + r * d + i * W, v);
  }
}

// Rows [blockIdx.x * rows, ...) of dx = rstd * (dy*g - x * rstd^2 * mean(dy*g*x)) (added to dx
// when add), and partial[blockIdx.x, i] = sum over those rows of dy * x * rstd. dx may alias dy:
// a lane writes only values it has read, after the warp's dot product has read the whole row.
// Shared memory: [kBackWarps][d] floats, column i of a warp touched by one lane only, W at a time
// (as float4s when W = 8: scalar accesses at a stride of 8 floats hit the same banks 8-fold).
template <int W>
__device__ __forceinline__ void add_to_shared(float* p, const float (&v)[W]) {
  if constexpr (W == 1) {
    *p += v[0];
  } else {
    float4* q = reinterpret_cast<float4*>(p);
#pragma unroll
    for (int k = 0; k < W / 4; ++k) {
      float4 t = q[k];
      t.x += v[4 * k], t.y += v[4 * k + 1], t.z += v[4 * k + 2], t.w += v[4 * k + 3];
      q[k] = t;
    }
  }
}

template <int W>
__global__ void rmsnorm_backward_kernel(__nv_bfloat16* dx, float* partial, const __nv_bfloat16* dy,
                                        const __nv_bfloat16* x, const float* g, const float* rstd,
                                        int64_t R, int64_t d, bool add) {
  extern __shared__ float dg_acc[];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t n = d / W;
  float* acc = dg_acc + warp * d;
  for (int64_t i = lane; i < n; i += 32)
#pragma unroll
    for (int j = 0; j < W; ++j) acc[i * W + j] = 0.f;
  const int64_t r0 = blockIdx.x * int64_t(kBackWarps * kRowsPerWarp);
  for (int64_t r = r0 + warp; r < min(R, r0 + kBackWarps * kRowsPerWarp); r += kBackWarps) {
    const __nv_bfloat16 *xr = x + r * d, *dyr = dy + r * d;
    float dot = 0.f;
    for (int64_t i = lane; i < n; i += 32) {
      float u[W], v[W];
      load_vec<W>(dyr + i * W, u);
      load_vec<W>(xr + i * W, v);
#pragma unroll
      for (int j = 0; j < W; ++j) dot += u[j] * g[i * W + j] * v[j];
    }
    const float s = rstd[r], c = s * s * warp_sum(dot) / float(d);
    for (int64_t i = lane; i < n; i += 32) {
      float u[W], v[W], o[W];
      load_vec<W>(dyr + i * W, u);
      load_vec<W>(xr + i * W, v);
      if (add) load_vec<W>(dx + r * d + i * W, o);
#pragma unroll
      for (int j = 0; j < W; ++j) {
        const float dxv = s * (u[j] * g[i * W + j] - v[j] * c);
        o[j] = add ? o[j] + dxv : dxv;
        u[j] *= v[j] * s;  // becomes this row's share of dg
      }
      store_vec<W>(dx + r * d + i * W, o);
      add_to_shared<W>(acc + i * W, u);
    }
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    float t = 0.f;
    for (int w = 0; w < kBackWarps; ++w) t += dg_acc[w * d + i];
    partial[blockIdx.x * d + i] = t;
  }
}

bool vectorized(int64_t d, std::initializer_list<const void*> ptrs) {
  return d % kVec == 0 && aligned16(ptrs);
}
}  // namespace

void rmsnorm_forward(BFloat16* y, float* rstd, BFloat16* s, const BFloat16* x, const BFloat16* b,
                     const float* g, int64_t R, int64_t d, double eps) {
  if (R == 0) return;
  const int64_t blocks = (R + kWarps - 1) / kWarps;
  auto kernel =
      vectorized(d, {y, s, x, b}) ? rmsnorm_forward_kernel<kVec> : rmsnorm_forward_kernel<1>;
  kernel<<<blocks, kWarps * 32, 0, stream()>>>(dev(y), rstd, dev(s), dev(x), dev(b), g, R, d,
                                               float(eps));
  CUDA_CHECK_LAUNCH();
}

void rmsnorm_backward(BFloat16* dx, float* dg, const BFloat16* dy, const BFloat16* x,
                      const float* g, const float* rstd, int64_t R, int64_t d, GradMode dx_mode) {
  if (R == 0 || d == 0) return;
  const size_t smem = size_t(kBackWarps * d) * sizeof(float);
  constexpr size_t kMaxSmem = 227 * 1024;  // the most a Hopper block may take
  FELA_CHECK(smem <= kMaxSmem, "[rmsnorm] width ", d, " exceeds the CUDA backward's shared memory");
  const bool vec = vectorized(d, {dx, dy, x});
  auto kernel = vec ? rmsnorm_backward_kernel<kVec> : rmsnorm_backward_kernel<1>;
  static const bool raised = [] {
    for (auto k : {rmsnorm_backward_kernel<kVec>, rmsnorm_backward_kernel<1>})
      CUDA_CHECK(
          cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kMaxSmem)));
    return true;
  }();
  (void)raised;
  const int64_t rows = kBackWarps * kRowsPerWarp, blocks = (R + rows - 1) / rows;
  FELA_CHECK(blocks < (int64_t(1) << 31), "[rmsnorm] ", R, " rows exceed the CUDA grid");
  Scratch partial(size_t(blocks * d) * sizeof(float));  // [blocks, d]
  kernel<<<unsigned(blocks), kBackWarps * 32, smem, stream()>>>(
      dev(dx), partial.as<float>(), dev(dy), dev(x), g, rstd, R, d, dx_mode == GradMode::Add);
  CUDA_CHECK_LAUNCH();
  add_chunk_sums(dg, partial.as<float>(), blocks, d);
}

}  // namespace fela::ops::cuda
