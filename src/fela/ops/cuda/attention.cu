// RoPE and causal GQA attention on the GPU (attention.h): bf16 tensors, lse fp32, fp32 math.
//
// RoPE: a thread per (token, pair i), looping over the heads. The angle (pos0 + n) w_i is formed
// and reduced modulo 2 pi in double (exact enough for any position below 2^53), then sin and cos
// are taken in fp32; the rotation runs in fp32 and each pair is read before it is written, so y
// may alias x.
//
// Attention: FlashAttention-2 tiling on the tensor cores (mma.sync m16n8k16, bf16 operands,
// fp32 accumulators). A block has 4 warps; each warp owns 16 rows of a 64-row tile; operands
// are staged in shared memory, rows padded by 16 bytes so that fragment loads are free of bank
// conflicts; head sizes are padded with zeros to kD = 16, 32, 64 or 128. Scores are kept in
// log2 units (scale * log2 e) for exp2. Probabilities (and dS in backward) are rounded to bf16
// only as mma operands, as FlashAttention does; row statistics stay fp32. No N x N matrix is
// ever stored.
//   forward   block per (query tile, b, h): online softmax over key tiles of 64;
//             o = (sum_j P'_j v_j) / l, lse = m + log l.
//   backward  D = rowsum(do * o) first; then two kernels that each recompute P from lse, so
//             that every output element is summed by one thread in a fixed order (no atomics,
//             bit-identical reruns):
//             dq    block per (query tile, b, h), over key tiles: dq = scale dS k
//             dk,dv block per (key tile, b, kv head g), over the group's query heads and the
//                   query tiles that see the keys: dv = P'^T do, dk = scale dS^T q.
// Dropout: each visible (query, key) element evaluates dropout_keep of dropout_hash.h at the
// index of attention.h, the function the CPU evaluates, so the mask is the CPU's bit for bit.
// Shared memory per block (bytes, kS = kD + 8): forward 3 * 64 * kS * 2 (51 KiB at kD = 128),
// dq 4 * 64 * kS * 2 (68 KiB), dk/dv (128 + 2 kQ) * kS * 2 + 8 kQ (51 KiB); registers hold the
// 16 x kD fp32 accumulators of each warp (two of them in dk/dv, whence its 32-query steps at
// kD = 128): up to ~250 registers per thread at kD = 128 (ptxas), a few bytes spilled in the
// forward.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "fela/ops/attention.h"
#include "fela/ops/cuda/common.cuh"
#include "fela/ops/dropout_hash.h"

namespace fela::ops::cuda {

namespace {

using bf16 = __nv_bfloat16;

constexpr int kThreads = 128;  // 4 warps per attention block
constexpr int kWarpRows = 16;  // rows of an mma tile: a warp owns 16 rows of the block's tile
constexpr int kTile = 64;      // rows per block tile and keys per step
constexpr int kPad = 8;        // bf16 elements of padding per shared row (16 bytes)
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.69314718055994531f;
constexpr double kTwoPi = 6.283185307179586476925286766559;

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// ---- RoPE ---------------------------------------------------------------------------------------

// x, y [B, N, H, Dh]; BN = B N. sign = -1 applies the inverse rotation (backward).
__global__ void rope_kernel(bf16* y, const bf16* x, int64_t BN, int64_t N, int64_t H, int64_t Dh,
                            int64_t pos0, double theta, float sign) {
  const int64_t half = Dh / 2, count = BN * half;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < count;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t bn = idx / half, i = idx % half;
    // w_i as the CPU computes it; the product and its reduction in double, sin/cos in fp32.
    const double ang = double(pos0 + bn % N) * pow(theta, -2.0 * double(i) / double(Dh));
    const double red = ang - rint(ang / kTwoPi) * kTwoPi;
    float s, c;
    sincosf(float(red), &s, &c);
    s *= sign;
    for (int64_t h = 0; h < H; ++h) {
      const int64_t r = (bn * H + h) * Dh;
      const float x1 = load(x, r + i), x2 = load(x, r + i + half);
      store(y, r + i, x1 * c - x2 * s);
      store(y, r + i + half, x2 * c + x1 * s);
    }
  }
}

void rope_launch(BFloat16* y, const BFloat16* x, int64_t B, int64_t N, int64_t H, int64_t Dh,
                 int64_t pos0, double theta, float sign) {
  const int64_t count = B * N * (Dh / 2);
  if (count == 0 || H == 0) return;
  rope_kernel<<<grid_for(count, 256), 256, 0, stream()>>>(dev(y), dev(x), B * N, N, H, Dh, pos0,
                                                          theta, sign);
  CUDA_CHECK_LAUNCH();
}

// ---- mma fragments ------------------------------------------------------------------------------
// m16n8k16 with g = lane / 4 and c = 2 (lane % 4) (PTX ISA, "matrix fragments for mma.m16n8k16"):
//   A (16 x 16, row-major) regs: (g, c..c+1), (g+8, c..c+1), (g, c+8..c+9), (g+8, c+8..c+9)
//   B (16 x 8, k x n)      regs: (k = c..c+1, n = g), (k = c+8..c+9, n = g)
//   C (16 x 8, fp32)       c0, c1: (g, c), (g, c+1);  c2, c3: (g+8, c), (g+8, c+1)
// The lower half of a register holds the element of lower k (or column).

struct FragA {
  uint32_t x[4];
};

__device__ __forceinline__ void mma(float (&d)[4], const FragA& a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a.x[0]), "r"(a.x[1]), "r"(a.x[2]), "r"(a.x[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t ld32(const bf16* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}
__device__ __forceinline__ uint32_t pack(bf16 lo, bf16 hi) {
  return uint32_t(__bfloat16_as_ushort(lo)) | (uint32_t(__bfloat16_as_ushort(hi)) << 16);
}
__device__ __forceinline__ uint32_t pack(float lo, float hi) {
  return pack(__float2bfloat16_rn(lo), __float2bfloat16_rn(hi));
}

// A = rows [r0, r0 + 16), columns [k0, k0 + 16) of a row-major shared tile of row stride kS.
template <int kS>
__device__ __forceinline__ FragA load_a(const bf16* s, int r0, int k0, int lane) {
  const bf16* p = s + (r0 + lane / 4) * kS + k0 + (lane % 4) * 2;
  return {{ld32(p), ld32(p + 8 * kS), ld32(p + 8), ld32(p + 8 * kS + 8)}};
}

// A from four fp32 accumulator tiles: C tiles t0 (columns k0..k0+7) and t1 (k0+8..k0+15) of a
// 16-row product become the A operand over those 16 columns (P or dS feeding the next product).
__device__ __forceinline__ FragA acc_to_a(const float (&t0)[4], const float (&t1)[4]) {
  return {{pack(t0[0], t0[1]), pack(t0[2], t0[3]), pack(t1[0], t1[1]), pack(t1[2], t1[3])}};
}

// B[k][n] = M[n0 + n][k0 + k] for M row-major in shared memory (k contiguous): keys as columns
// of q k^T, queries as columns of k q^T.
template <int kS>
__device__ __forceinline__ void load_b_nk(uint32_t& b0, uint32_t& b1, const bf16* s, int n0, int k0,
                                          int lane) {
  const bf16* p = s + (n0 + lane / 4) * kS + k0 + (lane % 4) * 2;
  b0 = ld32(p);
  b1 = ld32(p + 8);
}

// B[k][n] = M[k0 + k][n0 + n] for M row-major in shared memory (n contiguous): v in P v, k in
// dS k, do and q in the products over queries.
template <int kS>
__device__ __forceinline__ void load_b_kn(uint32_t& b0, uint32_t& b1, const bf16* s, int k0, int n0,
                                          int lane) {
  const bf16* p = s + (k0 + (lane % 4) * 2) * kS + n0 + lane / 4;
  b0 = pack(p[0], p[kS]);
  b1 = pack(p[8 * kS], p[9 * kS]);
}

// ---- attention ----------------------------------------------------------------------------------

// The sizes and constants of one attention call.
struct Dims {
  int64_t B, Nq, Nk, H, Hkv, Dh;
  int64_t group;     // H / Hkv: query heads per kv head
  int64_t off;       // Nk - Nq: query n sees keys 0 ..= off + n
  float scale;       // of the scores
  float scale_log2;  // scale * log2 e: scores in log2 units
  bool vec;          // 16-byte loads: Dh % 8 == 0 and every tensor 16-byte aligned
  bool drop;         // dropout_p > 0
  double p;          // dropout_p
  uint64_t seed;
  float keep_scale;  // 1 / (1 - p)
};

// Element (b, n, head, 0) of a [B, N, heads, Dh] tensor.
__device__ __forceinline__ int64_t at(int64_t b, int64_t n, int64_t head, int64_t N, int64_t heads,
                                      int64_t Dh) {
  return ((b * N + n) * heads + head) * Dh;
}

// Rows [0, kRows) of a shared tile [kRows, kD + kPad] from global rows g + r * stride, columns
// [0, Dh); rows >= rows and columns >= Dh are zero, so padding adds nothing to the products
// (and no stale NaN from earlier use of shared memory meets a zero probability).
template <int kD, int kRows>
__device__ __forceinline__ void load_tile(bf16* s, const bf16* g, int64_t stride, int64_t rows,
                                          int64_t Dh, bool vec) {
  constexpr int kS = kD + kPad;
  if (vec) {
    constexpr int kChunks = kD / 8;
    for (int c = threadIdx.x; c < kRows * kChunks; c += kThreads) {
      const int r = c / kChunks, e = (c % kChunks) * 8;
      uint4 val = make_uint4(0, 0, 0, 0);
      if (r < rows && e < Dh) val = *reinterpret_cast<const uint4*>(g + r * stride + e);
      *reinterpret_cast<uint4*>(s + r * kS + e) = val;
    }
  } else {
    for (int c = threadIdx.x; c < kRows * kD; c += kThreads) {
      const int r = c / kD, e = c % kD;
      s[r * kS + e] = r < rows && e < Dh ? g[r * stride + e] : __float2bfloat16_rn(0.f);
    }
  }
}

// Query tile and (b, h) of a forward or dq block: the tiles with the most keys run first.
struct QueryBlock {
  int64_t b, h, n0;
};
__device__ __forceinline__ QueryBlock query_block(const Dims& d) {
  const int64_t BH = d.B * d.H, tiles = (d.Nq + kTile - 1) / kTile;
  const int64_t bh = blockIdx.x % BH, tile = tiles - 1 - blockIdx.x / BH;
  return {bh / d.H, bh % d.H, tile * kTile};
}

// Key j of the thread's accumulator element e in the 8-column tile t of a step at j0.
__device__ __forceinline__ int64_t col_of(int64_t j0, int t, int e, int lane) {
  return j0 + t * 8 + (lane % 4) * 2 + (e & 1);
}

// o [B, Nq, H, Dh], lse [B, H, Nq].
template <int kD>
__global__ void __launch_bounds__(kThreads)
    attention_forward_kernel(bf16* o, float* lse, const bf16* q, const bf16* k, const bf16* v,
                             Dims d) {
  constexpr int kS = kD + kPad;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem);  // [64, kS]: query rows n0 ..
  bf16* sK = sQ + kTile * kS;                // [64, kS]: keys j0 ..
  bf16* sV = sK + kTile * kS;                // [64, kS]
  const QueryBlock qb = query_block(d);
  const int64_t b = qb.b, h = qb.h, n0 = qb.n0, g = h / d.group;
  const int lane = threadIdx.x % 32, wr = threadIdx.x / 32 * kWarpRows;
  load_tile<kD, kTile>(sQ, q + at(b, n0, h, d.Nq, d.H, d.Dh), d.H * d.Dh, d.Nq - n0, d.Dh, d.vec);
  // The thread's rows: n[0] (accumulator elements 0, 1) and n[1] = n[0] + 8 (elements 2, 3).
  const int64_t n[2] = {n0 + wr + lane / 4, n0 + wr + lane / 4 + 8};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};  // running max (log2 units), sum
  float acc[kD / 8][4] = {};                               // o, unnormalised
  const int64_t kend = min64(d.Nk, d.off + n0 + kTile);    // keys some row of the tile sees
  for (int64_t j0 = 0; j0 < kend; j0 += kTile) {
    __syncthreads();  // every warp is done with the previous keys
    const int64_t kv = at(b, j0, g, d.Nk, d.Hkv, d.Dh);
    load_tile<kD, kTile>(sK, k + kv, d.Hkv * d.Dh, d.Nk - j0, d.Dh, d.vec);
    load_tile<kD, kTile>(sV, v + kv, d.Hkv * d.Dh, d.Nk - j0, d.Dh, d.vec);
    __syncthreads();
    float s[kTile / 8][4] = {};  // S = q k^T, 16 rows x 64 keys per warp
#pragma unroll
    for (int k0 = 0; k0 < kD; k0 += 16) {
      const FragA a = load_a<kS>(sQ, wr, k0, lane);
#pragma unroll
      for (int t = 0; t < kTile / 8; ++t) {
        uint32_t b0, b1;
        load_b_nk<kS>(b0, b1, sK, t * 8, k0, lane);
        mma(s[t], a, b0, b1);
      }
    }
    // Every row of the tile sees every key of the step: no masking needed.
    const bool full = j0 + kTile <= d.Nk && j0 + kTile - 1 <= d.off + n0;
#pragma unroll
    for (int t = 0; t < kTile / 8; ++t) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t j = col_of(j0, t, e, lane);
        const bool vis = full || (j < d.Nk && j <= d.off + n[e / 2]);
        s[t][e] = vis ? s[t][e] * d.scale_log2 : -INFINITY;
      }
    }
    // Online softmax. Key 0 is in the first step and visible to every row, so m is finite
    // from then on and the first correction is exp2(-inf) = 0.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = m[r];
#pragma unroll
      for (int t = 0; t < kTile / 8; ++t) mx = fmaxf(mx, fmaxf(s[t][2 * r], s[t][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));  // the 4 lanes sharing the row
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float corr = exp2f(m[r] - mx);
      m[r] = mx;
      l[r] *= corr;
#pragma unroll
      for (int u = 0; u < kD / 8; ++u) {
        acc[u][2 * r] *= corr;
        acc[u][2 * r + 1] *= corr;
      }
#pragma unroll
      for (int t = 0; t < kTile / 8; ++t) {
#pragma unroll
        for (int e = 2 * r; e < 2 * r + 2; ++e) {
          s[t][e] = exp2f(s[t][e] - mx);
          l[r] += s[t][e];  // the row sum counts every probability, dropped or not
        }
      }
    }
    if (d.drop) {
      const int64_t row0 = (b * d.H + h) * d.Nq;
#pragma unroll
      for (int t = 0; t < kTile / 8; ++t) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int64_t j = col_of(j0, t, e, lane);
          if (s[t][e] != 0.f && !dropout_keep(d.seed, uint64_t((row0 + n[e / 2]) * d.Nk + j), d.p))
            s[t][e] = 0.f;
        }
      }
    }
    // o += P v over the step's 64 keys, 16 at a time.
#pragma unroll
    for (int kk = 0; kk < kTile / 16; ++kk) {
      const FragA a = acc_to_a(s[2 * kk], s[2 * kk + 1]);
#pragma unroll
      for (int u = 0; u < kD / 8; ++u) {
        uint32_t b0, b1;
        load_b_kn<kS>(b0, b1, sV, kk * 16, u * 8, lane);
        mma(acc[u], a, b0, b1);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    if (n[r] >= d.Nq) continue;
    const float inv = d.keep_scale / l[r];
    bf16* orow = o + at(b, n[r], h, d.Nq, d.H, d.Dh);
#pragma unroll
    for (int u = 0; u < kD / 8; ++u) {
      const int col = u * 8 + (lane % 4) * 2;
      if (col < d.Dh) orow[col] = __float2bfloat16_rn(acc[u][2 * r] * inv);
      if (col + 1 < d.Dh) orow[col + 1] = __float2bfloat16_rn(acc[u][2 * r + 1] * inv);
    }
    if (lane % 4 == 0) lse[(b * d.H + h) * d.Nq + n[r]] = (m[r] + log2f(l[r])) * kLn2;
  }
}

// D [B, H, Nq] = rowsum(do * o): a warp per row (b, n, h) of do, o [B, Nq, H, Dh].
__global__ void attention_delta_kernel(float* D, const bf16* d_o, const bf16* o, int64_t rows,
                                       int64_t Nq, int64_t H, int64_t Dh) {
  const int64_t r = blockIdx.x * int64_t(kThreads / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;  // whole warps
  float s = 0.f;
  for (int64_t e = lane; e < Dh; e += 32) s += load(d_o, r * Dh + e) * load(o, r * Dh + e);
  s = warp_sum(s);
  const int64_t h = r % H, n = r / H % Nq, b = r / H / Nq;
  if (lane == 0) D[(b * H + h) * Nq + n] = s;
}

// dq [B, Nq, H, Dh] = scale sum_j dS_nj k_j, dS = P * (dP' M - D).
template <int kD>
__global__ void __launch_bounds__(kThreads)
    attention_dq_kernel(bf16* dq, const bf16* d_o, const bf16* q, const bf16* k, const bf16* v,
                        const float* lse, const float* D, Dims d) {
  constexpr int kS = kD + kPad;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem);  // [64, kS]: query rows n0 ..
  bf16* sO = sQ + kTile * kS;                // [64, kS]: do rows n0 ..
  bf16* sK = sO + kTile * kS;                // [64, kS]: keys j0 ..
  bf16* sV = sK + kTile * kS;                // [64, kS]
  const QueryBlock qb = query_block(d);
  const int64_t b = qb.b, h = qb.h, n0 = qb.n0, g = h / d.group;
  const int lane = threadIdx.x % 32, wr = threadIdx.x / 32 * kWarpRows;
  const int64_t qi = at(b, n0, h, d.Nq, d.H, d.Dh);
  load_tile<kD, kTile>(sQ, q + qi, d.H * d.Dh, d.Nq - n0, d.Dh, d.vec);
  load_tile<kD, kTile>(sO, d_o + qi, d.H * d.Dh, d.Nq - n0, d.Dh, d.vec);
  const int64_t n[2] = {n0 + wr + lane / 4, n0 + wr + lane / 4 + 8};
  const int64_t row0 = (b * d.H + h) * d.Nq;
  float lse2[2], Dn[2];  // the rows' lse in log2 units, and D
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    lse2[r] = n[r] < d.Nq ? lse[row0 + n[r]] * kLog2e : 0.f;
    Dn[r] = n[r] < d.Nq ? D[row0 + n[r]] : 0.f;
  }
  float acc[kD / 8][4] = {};
  const int64_t kend = min64(d.Nk, d.off + n0 + kTile);
  for (int64_t j0 = 0; j0 < kend; j0 += kTile) {
    __syncthreads();
    const int64_t kv = at(b, j0, g, d.Nk, d.Hkv, d.Dh);
    load_tile<kD, kTile>(sK, k + kv, d.Hkv * d.Dh, d.Nk - j0, d.Dh, d.vec);
    load_tile<kD, kTile>(sV, v + kv, d.Hkv * d.Dh, d.Nk - j0, d.Dh, d.vec);
    __syncthreads();
    float s[kTile / 8][4] = {}, dp[kTile / 8][4] = {};  // S = q k^T, dP' = do v^T
#pragma unroll
    for (int k0 = 0; k0 < kD; k0 += 16) {
      const FragA aq = load_a<kS>(sQ, wr, k0, lane), ao = load_a<kS>(sO, wr, k0, lane);
#pragma unroll
      for (int t = 0; t < kTile / 8; ++t) {
        uint32_t b0, b1;
        load_b_nk<kS>(b0, b1, sK, t * 8, k0, lane);
        mma(s[t], aq, b0, b1);
        load_b_nk<kS>(b0, b1, sV, t * 8, k0, lane);
        mma(dp[t], ao, b0, b1);
      }
    }
#pragma unroll
    for (int t = 0; t < kTile / 8; ++t) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t j = col_of(j0, t, e, lane), nr = n[e / 2];
        float ds = 0.f;
        if (nr < d.Nq && j < d.Nk && j <= d.off + nr) {
          const float P = exp2f(s[t][e] * d.scale_log2 - lse2[e / 2]);
          float dpm = dp[t][e];  // dP = dP' M
          if (d.drop)
            dpm = dropout_keep(d.seed, uint64_t((row0 + nr) * d.Nk + j), d.p) ? dpm * d.keep_scale
                                                                              : 0.f;
          ds = P * (dpm - Dn[e / 2]);
        }
        s[t][e] = ds;
      }
    }
    // dq += dS k over the step's 64 keys.
#pragma unroll
    for (int kk = 0; kk < kTile / 16; ++kk) {
      const FragA a = acc_to_a(s[2 * kk], s[2 * kk + 1]);
#pragma unroll
      for (int u = 0; u < kD / 8; ++u) {
        uint32_t b0, b1;
        load_b_kn<kS>(b0, b1, sK, kk * 16, u * 8, lane);
        mma(acc[u], a, b0, b1);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (n[r] >= d.Nq) continue;
    bf16* row = dq + at(b, n[r], h, d.Nq, d.H, d.Dh);
#pragma unroll
    for (int u = 0; u < kD / 8; ++u) {
      const int col = u * 8 + (lane % 4) * 2;
      if (col < d.Dh) row[col] = __float2bfloat16_rn(acc[u][2 * r] * d.scale);
      if (col + 1 < d.Dh) row[col + 1] = __float2bfloat16_rn(acc[u][2 * r + 1] * d.scale);
    }
  }
}

// Queries per step of the dk/dv kernel: 32 at kD = 128 leaves registers for both accumulators.
template <int kD>
constexpr int kQueryStep = kD <= 64 ? 64 : 32;

// dk, dv [B, Nk, Hkv, Dh] for the 64 keys j0 .. of kv head g: warp rows are keys, columns
// queries, i.e. the transposed products S^T = k q^T and dP'^T = v do^T.
template <int kD>
__global__ void __launch_bounds__(kThreads)
    attention_dkdv_kernel(bf16* dk, bf16* dv, const bf16* d_o, const bf16* q, const bf16* k,
                          const bf16* v, const float* lse, const float* D, Dims d) {
  constexpr int kS = kD + kPad, kQ = kQueryStep<kD>;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sK = reinterpret_cast<bf16*>(smem);            // [64, kS]: keys j0 ..
  bf16* sV = sK + kTile * kS;                          // [64, kS]
  bf16* sQ = sV + kTile * kS;                          // [kQ, kS]: query rows n0 ..
  bf16* sO = sQ + kQ * kS;                             // [kQ, kS]: do rows n0 ..
  float* sL = reinterpret_cast<float*>(sO + kQ * kS);  // [kQ]: lse in log2 units
  float* sD = sL + kQ;                                 // [kQ]: D
  const int64_t BG = d.B * d.Hkv;
  const int64_t bg = blockIdx.x % BG, j0 = blockIdx.x / BG * kTile;  // the first keys (most
  const int64_t b = bg / d.Hkv, g = bg % d.Hkv;                      // queries) run first
  const int lane = threadIdx.x % 32, wr = threadIdx.x / 32 * kWarpRows;
  const int64_t kv = at(b, j0, g, d.Nk, d.Hkv, d.Dh);
  load_tile<kD, kTile>(sK, k + kv, d.Hkv * d.Dh, d.Nk - j0, d.Dh, d.vec);
  load_tile<kD, kTile>(sV, v + kv, d.Hkv * d.Dh, d.Nk - j0, d.Dh, d.vec);
  const int64_t j[2] = {j0 + wr + lane / 4, j0 + wr + lane / 4 + 8};  // the thread's keys
  float dka[kD / 8][4] = {}, dva[kD / 8][4] = {};
  // Query j - off is the first to see key j; all later ones see it too.
  const int64_t nstart = j0 > d.off ? j0 - d.off : 0;
  for (int64_t h = g * d.group; h < (g + 1) * d.group; ++h) {
    const int64_t row0 = (b * d.H + h) * d.Nq;
    for (int64_t n0 = nstart; n0 < d.Nq; n0 += kQ) {
      __syncthreads();  // every warp is done with the previous queries (and sK, sV are loaded)
      const int64_t qi = at(b, n0, h, d.Nq, d.H, d.Dh);
      load_tile<kD, kQ>(sQ, q + qi, d.H * d.Dh, d.Nq - n0, d.Dh, d.vec);
      load_tile<kD, kQ>(sO, d_o + qi, d.H * d.Dh, d.Nq - n0, d.Dh, d.vec);
      for (int i = threadIdx.x; i < kQ; i += kThreads) {
        const bool in = n0 + i < d.Nq;
        sL[i] = in ? lse[row0 + n0 + i] * kLog2e : 0.f;
        sD[i] = in ? D[row0 + n0 + i] : 0.f;
      }
      __syncthreads();
      float s[kQ / 8][4] = {}, dp[kQ / 8][4] = {};  // S^T = k q^T, dP'^T = v do^T
#pragma unroll
      for (int k0 = 0; k0 < kD; k0 += 16) {
        const FragA ak = load_a<kS>(sK, wr, k0, lane), av = load_a<kS>(sV, wr, k0, lane);
#pragma unroll
        for (int t = 0; t < kQ / 8; ++t) {
          uint32_t b0, b1;
          load_b_nk<kS>(b0, b1, sQ, t * 8, k0, lane);
          mma(s[t], ak, b0, b1);
          load_b_nk<kS>(b0, b1, sO, t * 8, k0, lane);
          mma(dp[t], av, b0, b1);
        }
      }
#pragma unroll
      for (int t = 0; t < kQ / 8; ++t) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int c = t * 8 + (lane % 4) * 2 + (e & 1);  // query n0 + c
          const int64_t nq = n0 + c, key = j[e / 2];
          float pm = 0.f, ds = 0.f;  // P' = P M and dS
          if (nq < d.Nq && key < d.Nk && key <= d.off + nq) {
            const float P = exp2f(s[t][e] * d.scale_log2 - sL[c]);
            float mf = 1.f;
            if (d.drop)
              mf = dropout_keep(d.seed, uint64_t((row0 + nq) * d.Nk + key), d.p) ? d.keep_scale
                                                                                 : 0.f;
            pm = P * mf;
            ds = P * (dp[t][e] * mf - sD[c]);
          }
          s[t][e] = pm;
          dp[t][e] = ds;
        }
      }
      // dv += P'^T do, dk += dS^T q over the step's queries, 16 at a time.
#pragma unroll
      for (int kk = 0; kk < kQ / 16; ++kk) {
        const FragA ap = acc_to_a(s[2 * kk], s[2 * kk + 1]);
        const FragA as = acc_to_a(dp[2 * kk], dp[2 * kk + 1]);
#pragma unroll
        for (int u = 0; u < kD / 8; ++u) {
          uint32_t b0, b1;
          load_b_kn<kS>(b0, b1, sO, kk * 16, u * 8, lane);
          mma(dva[u], ap, b0, b1);
          load_b_kn<kS>(b0, b1, sQ, kk * 16, u * 8, lane);
          mma(dka[u], as, b0, b1);
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (j[r] >= d.Nk) continue;
    const int64_t ki = at(b, j[r], g, d.Nk, d.Hkv, d.Dh);
#pragma unroll
    for (int u = 0; u < kD / 8; ++u) {
      const int col = u * 8 + (lane % 4) * 2;
      if (col < d.Dh) {
        dk[ki + col] = __float2bfloat16_rn(dka[u][2 * r] * d.scale);
        dv[ki + col] = __float2bfloat16_rn(dva[u][2 * r]);
      }
      if (col + 1 < d.Dh) {
        dk[ki + col + 1] = __float2bfloat16_rn(dka[u][2 * r + 1] * d.scale);
        dv[ki + col + 1] = __float2bfloat16_rn(dva[u][2 * r + 1]);
      }
    }
  }
}

// Calls f(std::integral_constant<int, kD>) for the padded head size kD >= Dh.
template <class F>
void with_head_dim(int64_t Dh, F&& f) {
  if (Dh <= 16)
    f(std::integral_constant<int, 16>{});
  else if (Dh <= 32)
    f(std::integral_constant<int, 32>{});
  else if (Dh <= 64)
    f(std::integral_constant<int, 64>{});
  else
    f(std::integral_constant<int, 128>{});
}

// Launches kernel with `bytes` of dynamic shared memory, raising the kernel's limit above the
// default 48 KiB on its first launch (a kernel's size is fixed by its template arguments).
template <auto kernel, class... Args>
void launch(int64_t blocks, size_t bytes, Args... args) {
  FELA_CHECK(blocks < (int64_t(1) << 31), "[attention] ", blocks, " blocks exceed the CUDA grid");
  static const bool raised = [bytes] {
    CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
    return true;
  }();
  (void)raised;
  kernel<<<unsigned(blocks), kThreads, bytes, stream()>>>(args...);
  CUDA_CHECK_LAUNCH();
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

Dims make_dims(int64_t B, int64_t Nq, int64_t Nk, int64_t H, int64_t Hkv, int64_t Dh, double scale,
               double p, uint64_t seed, bool aligned) {
  return Dims{B,
              Nq,
              Nk,
              H,
              Hkv,
              Dh,
              H / Hkv,
              Nk - Nq,
              float(scale),
              float(scale * 1.4426950408889634),
              aligned && Dh % 8 == 0,
              p > 0,
              p,
              seed,
              float(1.0 / (1.0 - p))};
}

}  // namespace

void rope_forward(BFloat16* y, const BFloat16* x, int64_t B, int64_t N, int64_t H, int64_t Dh,
                  int64_t pos0, double theta) {
  rope_launch(y, x, B, N, H, Dh, pos0, theta, 1.f);
}

void rope_backward(BFloat16* dx, const BFloat16* dy, int64_t B, int64_t N, int64_t H, int64_t Dh,
                   int64_t pos0, double theta) {
  rope_launch(dx, dy, B, N, H, Dh, pos0, theta, -1.f);
}

void attention_forward(BFloat16* o, float* lse, const BFloat16* q, const BFloat16* k,
                       const BFloat16* v, int64_t B, int64_t Nq, int64_t Nk, int64_t H, int64_t Hkv,
                       int64_t Dh, double scale, double dropout_p, uint64_t dropout_seed) {
  if (B * H * Nq == 0) return;
  const bool aligned = aligned16(q) && aligned16(k) && aligned16(v);
  const Dims d = make_dims(B, Nq, Nk, H, Hkv, Dh, scale, dropout_p, dropout_seed, aligned);
  const int64_t blocks = (Nq + kTile - 1) / kTile * B * H;
  with_head_dim(Dh, [&](auto kd) {
    constexpr int kD = decltype(kd)::value;
    launch<attention_forward_kernel<kD>>(blocks, size_t(3 * kTile * (kD + kPad)) * sizeof(bf16),
                                         dev(o), lse, dev(q), dev(k), dev(v), d);
  });
}

void attention_backward(BFloat16* dq, BFloat16* dk, BFloat16* dv, const BFloat16* d_o,
                        const BFloat16* q, const BFloat16* k, const BFloat16* v, const BFloat16* o,
                        const float* lse, int64_t B, int64_t Nq, int64_t Nk, int64_t H, int64_t Hkv,
                        int64_t Dh, double scale, double dropout_p, uint64_t dropout_seed) {
  if (B * Hkv * Nk == 0) return;
  const bool aligned = aligned16(q) && aligned16(k) && aligned16(v) && aligned16(d_o);
  const Dims d = make_dims(B, Nq, Nk, H, Hkv, Dh, scale, dropout_p, dropout_seed, aligned);
  Scratch delta(size_t(B * H * Nq) * sizeof(float));  // D [B, H, Nq]
  const int64_t rows = B * Nq * H;
  if (rows > 0) {
    const int64_t warps = kThreads / 32;
    attention_delta_kernel<<<unsigned((rows + warps - 1) / warps), kThreads, 0, stream()>>>(
        delta.as<float>(), dev(d_o), dev(o), rows, Nq, H, Dh);
    CUDA_CHECK_LAUNCH();
  }
  with_head_dim(Dh, [&](auto kd) {
    constexpr int kD = decltype(kd)::value;
    constexpr size_t kRow = size_t(kD + kPad) * sizeof(bf16);
    if (rows > 0)
      launch<attention_dq_kernel<kD>>((Nq + kTile - 1) / kTile * B * H, 4 * kTile * kRow, dev(dq),
                                      dev(d_o), dev(q), dev(k), dev(v), lse, delta.as<float>(), d);
    constexpr int kQ = kQueryStep<kD>;
    launch<attention_dkdv_kernel<kD>>(
        (Nk + kTile - 1) / kTile * B * Hkv, (2 * kTile + 2 * kQ) * kRow + 2 * kQ * sizeof(float),
        dev(dk), dev(dv), dev(d_o), dev(q), dev(k), dev(v), lse, delta.as<float>(), d);
  });
}

}  // namespace fela::ops::cuda
