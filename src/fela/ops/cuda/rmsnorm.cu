// RMSNorm on the GPU: bf16 activations, fp32 gain, rstd and math; rows read 16 bytes at a time
// where the width and the pointers allow (W = 8 values per access, else 1).
//   A row belongs to a group of L lanes (L = 32, or 16 or 8 for narrow rows such as GLA's 64-wide
//   heads, so that no lane idles); sums over the row are shuffles within the group.
//   forward   y = x * rstd * g; the residual form first writes s = x + b (rounded to bf16) and
//             normalises that.
//   backward  one pass: each group takes rows in turn, writes (or adds) dx and keeps its share
//             of dg per column in shared memory; the block's groups are summed in order into one
//             partial per block, and the partials in order into dg: deterministic, no atomics.
#include <algorithm>

#include "fela/ops/cuda/common.cuh"
#include "fela/ops/rmsnorm.h"

namespace fela::ops::cuda {

namespace {
constexpr int kWarps = 8;           // warps per block
constexpr int kMaxPartials = 1024;  // dg partials (blocks) of the backward, at most
// Backward rows per group, at least: few rows per group keep many rows in flight (4 warps x 8
// rows for fela-small's 8192 x 768 took 42 us, latency-bound).
constexpr int kMinRowsPerGroup = 2;

// Sum over the L lanes of a row group (L a power of two dividing 32).
template <int L>
__device__ __forceinline__ float group_sum(float v) {
  for (int o = L / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <int W, int L>
__global__ void rmsnorm_forward_kernel(__nv_bfloat16* y, float* rstd, __nv_bfloat16* s,
                                       const __nv_bfloat16* x, const __nv_bfloat16* b,
                                       const float* g, int64_t R, int64_t d, float eps) {
  const int64_t r = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / L;
  const int lane = threadIdx.x % L;
  const bool live = r < R;  // groups past the last row still join the warp's shuffles
  const int64_t n = d / W;
  const __nv_bfloat16* xr = x + r * d;
  float ss = 0.f;
  for (int64_t i = lane; live && i < n; i += L) {
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
  const float k = 1.f / sqrtf(group_sum<L>(ss) / float(d) + eps);  // 1/sqrt(mean(x^2) + eps)
  if (!live) return;
  if (lane == 0) rstd[r] = k;
  const __nv_bfloat16* src = b ? s + r * d : xr;  // this lane's own values, just written
  for (int64_t i = lane; i < n; i += L) {
    float v[W];
    load_vec<W>(src + i * W, v);
#pragma unroll
    for (int j = 0; j < W; ++j) v[j] *= k * g[i * W + j];
    store_vec<W>(y + r * d + i * W, v);
  }
}

// Shared memory: [groups][d] floats, column i of a group touched by one lane only, W at a time
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

// Rows [blockIdx.x * rows, ...) of dx = rstd * (dy*g - x * rstd^2 * mean(dy*g*x)) (added to dx
// when add), and partial[blockIdx.x, i] = sum over those rows of dy * x * rstd. Group q of the
// block takes rows q, q + groups, ... dx may alias dy: a lane writes only values it has read,
// after its group's dot product has read the whole row.
template <int W, int L>
__global__ void rmsnorm_backward_kernel(__nv_bfloat16* dx, float* partial, const __nv_bfloat16* dy,
                                        const __nv_bfloat16* x, const float* g, const float* rstd,
                                        int64_t R, int64_t d, int64_t rows, bool add) {
  extern __shared__ float dg_acc[];
  constexpr int kGroups = kWarps * 32 / L;
  const int lane = threadIdx.x % L, group = threadIdx.x / L;
  const int64_t n = d / W;
  float* acc = dg_acc + group * d;
  for (int64_t i = lane; i < n; i += L)
#pragma unroll
    for (int j = 0; j < W; ++j) acc[i * W + j] = 0.f;
  const int64_t r0 = blockIdx.x * rows, r1 = min(R, r0 + rows);
  // Every group runs the same number of iterations (the shuffles need whole warps).
  for (int64_t base = r0; base < r1; base += kGroups) {
    const int64_t r = base + group;
    const bool live = r < r1;
    const __nv_bfloat16 *xr = x + r * d, *dyr = dy + r * d;
    float dot = 0.f;
    for (int64_t i = lane; live && i < n; i += L) {
      float u[W], v[W];
      load_vec<W>(dyr + i * W, u);
      load_vec<W>(xr + i * W, v);
#pragma unroll
      for (int j = 0; j < W; ++j) dot += u[j] * g[i * W + j] * v[j];
    }
    dot = group_sum<L>(dot);
    if (!live) continue;
    const float s = rstd[r], c = s * s * dot / float(d);
    for (int64_t i = lane; i < n; i += L) {
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
    for (int q = 0; q < kGroups; ++q) t += dg_acc[q * d + i];
    partial[blockIdx.x * d + i] = t;
  }
}

bool vectorized(int64_t d, std::initializer_list<const void*> ptrs) {
  return d % kVec == 0 && aligned16(ptrs);
}

// Lanes per row: the fewest of 8, 16, 32 that cover the row's accesses once.
int lanes_for(int64_t accesses) { return accesses <= 8 ? 8 : accesses <= 16 ? 16 : 32; }

// Calls f.template operator()<W, L>() for the row layout of width d.
template <class F>
void dispatch_rows(int64_t d, bool vec, F&& f) {
  const int W = vec ? kVec : 1, L = lanes_for(d / W);
  if (W == kVec) {
    if (L == 8) return f.template operator()<kVec, 8>();
    if (L == 16) return f.template operator()<kVec, 16>();
    return f.template operator()<kVec, 32>();
  }
  if (L == 8) return f.template operator()<1, 8>();
  if (L == 16) return f.template operator()<1, 16>();
  return f.template operator()<1, 32>();
}
}  // namespace

void rmsnorm_forward(BFloat16* y, float* rstd, BFloat16* s, const BFloat16* x, const BFloat16* b,
                     const float* g, int64_t R, int64_t d, double eps) {
  if (R == 0) return;
  dispatch_rows(d, vectorized(d, {y, s, x, b}), [&]<int W, int L>() {
    const int64_t rows_per_block = kWarps * 32 / L,
                  blocks = (R + rows_per_block - 1) / rows_per_block;
    FELA_CHECK(blocks < (int64_t(1) << 31), "[rmsnorm] ", R, " rows exceed the CUDA grid");
    rmsnorm_forward_kernel<W, L><<<unsigned(blocks), kWarps * 32, 0, stream()>>>(
        dev(y), rstd, dev(s), dev(x), dev(b), g, R, d, float(eps));
    CUDA_CHECK_LAUNCH();
  });
}

void rmsnorm_backward(BFloat16* dx, float* dg, const BFloat16* dy, const BFloat16* x,
                      const float* g, const float* rstd, int64_t R, int64_t d, GradMode dx_mode) {
  if (R == 0 || d == 0) return;
  dispatch_rows(d, vectorized(d, {dx, dy, x}), [&]<int W, int L>() {
    constexpr int64_t kGroups = kWarps * 32 / L;
    const size_t smem = size_t(kGroups * d) * sizeof(float);
    constexpr size_t kMaxSmem = 227 * 1024;  // the most a Hopper block may take
    FELA_CHECK(smem <= kMaxSmem, "[rmsnorm] width ", d,
               " exceeds the CUDA backward's shared memory");
    static const bool raised = [] {
      CUDA_CHECK(cudaFuncSetAttribute(rmsnorm_backward_kernel<W, L>,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize, int(kMaxSmem)));
      return true;
    }();
    (void)raised;
    // Rows per block: kMinRowsPerGroup per group, more when that would exceed kMaxPartials.
    const int64_t per_group = std::max<int64_t>(
        kMinRowsPerGroup, (R + kGroups * kMaxPartials - 1) / (kGroups * kMaxPartials));
    const int64_t rows = kGroups * per_group, blocks = (R + rows - 1) / rows;
    Scratch partial(size_t(blocks * d) * sizeof(float));  // [blocks, d]
    rmsnorm_backward_kernel<W, L><<<unsigned(blocks), kWarps * 32, smem, stream()>>>(
        dev(dx), partial.as<float>(), dev(dy), dev(x), g, rstd, R, d, rows,
        dx_mode == GradMode::Add);
    CUDA_CHECK_LAUNCH();
    add_chunk_sums(dg, partial.as<float>(), blocks, d);
  });
}

}  // namespace fela::ops::cuda
