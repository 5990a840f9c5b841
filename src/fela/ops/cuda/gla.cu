// Gated linear attention on the GPU (SPEC §3): the chunked form of ops/cpu/gla.cpp with the chunk
// products on tensor cores (mma.sync m16n8k16, bf16 operands, fp32 accumulation).
//
// Work. Tokens come in chunks of kC = 64 (the kernels' own tiling: the op's `chunk` changes
// nothing here), chunks in spans of consecutive chunks. The recurrences over states run one CTA
// per (b h, span), chunk after chunk; the outputs and gradients, which need only the states at
// their chunk's ends, run one CTA per (b h, chunk), all in parallel. The warps of a CTA own the
// 16-token blocks of a chunk: each has 8 warps, warps w and w + 4 on block w. Forward:
//   gla_state_kernel   each span's final state from a zero state, and its total decay; also
//                      the state entering each chunk relative to its span (Lc), and the decay
//                      from the span's start to each chunk (Dc);
//   gla_scan_kernel    the state entering every span, from state_in; the final state;
//   gla_output_kernel  o of one chunk from its entering state Dc ⊙ (span's entering state) + Lc.
// Backward (zero initial state): the same two passes; gla_dstate_kernel, each span's dL/dS from
// its own outputs, keeping dL/dS at each chunk's end relative to the span's end (Ldc) and the
// decay from there to the span's end (Ddc); gla_dscan_kernel, dL/dS at every span's end;
// gla_grads_kernel, dq, dk, dv, da of one chunk.
// Up to kMaxStep tokens (a generation step) run the recurrence itself in fp32 (gla_step_kernel).
//
// Decay. b_t is the log decay summed from the chunk start (in double while it is formed); block J
// starts at c_J = b_{16J} and ends at d_J = b_{16J+15}. The kernels store
//   QB_t = q_t exp(b_t - c_J),  KE_s = k_s exp(d_K - b_s),  BETA_t = b_t - c_J   (t in J, s in K)
// so that  q_t k_s exp(b_t - b_s) = QB_t P_JK KE_s  with  P_JK = exp(c_J - d_K) <= 1 for K < J.
// Every factor is exp of a difference <= 0: strong decay underflows, nothing overflows. On the
// diagonal block P_JJ = exp(c_J - d_J) >= 1; the factored product is used there only while that
// block's decay span c_J - d_J stays below kDiagSpan (e^40), and otherwise the diagonal scores
// are summed channel by channel with exp(BETA_t - BETA_s) (strong decay). Across chunks:
// exp(b_t) = exp(BETA_t) E_J with E_J = exp(c_J), exp(b_L - b_s) = exp(d_K - b_s) F_K with
// F_K = exp(d_3 - d_K), and the whole chunk decays by GL = exp(d_3).
//
// Precision. q, k, v, dO are bf16 and enter the tensor cores as they are. Every other operand
// (decayed q and k, scores, states) is split into two bf16 terms hi + lo (16 significant bits)
// and multiplied as hi*hi + hi*lo + lo*hi, so products carry about 2^-17 relative error instead
// of bf16's 2^-9: the state that generation carries stays within fp32-like error of the
// recurrence, and o, dq, dk, dv are limited by their bf16 storage.
//
// Determinism: every sum has a fixed order (no atomics on floats).
#include <algorithm>

#include "fela/ops/cuda/common.cuh"
#include "fela/ops/gla.h"

namespace fela::ops::cuda {

namespace {

constexpr int kC = 64;                      // tokens per chunk
constexpr int kBlocks = 4;                  // 16-token blocks per chunk
constexpr int kWideThreads = 64 * kBlocks;  // chunk kernels: two warps per 16-token block
constexpr int kMaxStep = 16;                // token counts the step kernel takes
constexpr double kDiagSpan = 40.0;          // largest block decay span for the factored diagonal
constexpr int kMul = 25;                    // multipliers per channel: P[16], E[4], F[4], GL
constexpr int kScanBatch = 8;               // spans whose loads the scan kernels issue together
constexpr int kCSlot = 8, kDSlot = 12;      // rows of c_J and d_J in the cd array of doubles

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float bf(bf16 x) { return __bfloat162float(x); }

// ---- what a kernel gets -----------------------------------------------------------------------

struct Params {
  const bf16 *q, *k, *v, *dO;  // [B, N, H, Dk] / [B, N, H, Dv]
  const float* a;              // [B, N, H, Dk]
  bf16 *o, *dq, *dk, *dv;
  float* da;
  const float* state_in;  // [B, H, Dk, Dv] or null
  float* state_out;       // [B, H, Dk, Dv] or null (may be state_in)
  float* U;    // [BH, nsp + 1, DKP, DVP]: span states from zero, then entering states (+ final)
  float* G;    // [BH, nsp, DKP]: decay over each span
  float* Lc;   // [BH, nc, DKP, DVP]: state entering each chunk from a zero state at its span start
  float* Dc;   // [BH, nc, DKP]: decay from the span start to each chunk
  float* dU;   // [BH, nsp, DKP, DVP]: span dL/dS from its own outputs, then dL/dS at span ends
  float* Ldc;  // [BH, nc, DKP, DVP]: dL/dS at each chunk's end from zero at its span's end
  float* Ddc;  // [BH, nc, DKP]: decay from each chunk's end to its span's end
  int64_t B, N, H, BH;
  int Dk, Dv, DKP, DVP;
  int nc, cps, nsp;  // chunks, chunks per span, spans
  float scale;
  bool vec, vec_qk, vec_a;  // v (and dO), q and k, a rows can be read 16 bytes at a time
  bool pair_v, pair_k;      // dv, dq and dk, da take two adjacent columns in one store (o does
  bool pair_a;              // not: its kernel, held to 80 registers, would spill more)
};

// ---- shared memory ----------------------------------------------------------------------------

enum class Kind { State, Output, DState, Grads };

// Byte offsets into the dynamic shared memory (-1: unused by that kernel) and row strides, padded
// so that the fragment loads of each array spread over the banks.
struct Smem {
  int sq, sv, sh;  // elements per row: [kC, DKP] arrays, [kC, DVP] bf16 arrays, [DKP, DVP] states
  int qr, kr;      // bf16 [kC, sq]: raw q, k
  int qb, ke;      // fp32 [kC, sq]: QB, KE
  int beta;        // fp32 [kC, sq]: raw a until prepare turns it into BETA; the recurrences,
                   // which need no BETA, stage a in their KE or QB (5 CTAs fit an SM at Dk 32)
  int v, dO;       // bf16 [kC, sv]
  int hs, dhs;     // fp32 [DKP, sh]: state S, dL/dS
  int mul;         // fp32 [kMul, DKP]: P[J*4+K], E[J], F[K], GL
  int cd;          // double [16, DKP]: half-block sums, c_J, d_J (kCSlot, kDSlot)
  int ld;          // double [DKP]: log decay since the span start
  int flags;       // int [4]: diagonal block J needs the channel-by-channel scores
  int tot, acc;    // fp32 [4, DKP] block totals and [DKP] later-chunk part, for da
  int dat;         // fp32 [kBlocks, 16, 17]: each warp's diagonal block of dA
  int bytes;
};

__host__ __device__ inline int carve(int& at, int bytes, bool used) {
  if (!used) return -1;
  const int o = at;
  at += (bytes + 15) / 16 * 16;
  return o;
}

__host__ __device__ inline Smem smem_layout(int dkp, int dvp, Kind kind) {
  const bool st = kind == Kind::State, out = kind == Kind::Output, ds = kind == Kind::DState,
             gr = kind == Kind::Grads;
  Smem m{};
  m.sq = dkp + 8;
  m.sv = dvp + 8;
  m.sh = dvp + 4;
  int at = 0;
  m.qr = carve(at, kC * m.sq * 2, out || ds || gr);
  m.kr = carve(at, kC * m.sq * 2, st || out || gr);
  m.qb = carve(at, kC * m.sq * 4, out || ds || gr);
  m.ke = carve(at, kC * m.sq * 4, st || out || gr);
  m.beta = st ? m.ke : ds ? m.qb : carve(at, kC * m.sq * 4, true);
  m.v = carve(at, kC * m.sv * 2, st || out || gr);
  m.dO = carve(at, kC * m.sv * 2, ds || gr);
  m.hs = carve(at, dkp * m.sh * 4, st || out || gr);
  m.dhs = carve(at, dkp * m.sh * 4, ds || gr);
  m.mul = carve(at, kMul * dkp * 4, true);
  m.cd = carve(at, 16 * dkp * 8, true);
  m.ld = carve(at, dkp * 8, st || ds);
  m.flags = carve(at, 4 * 4, true);
  m.tot = carve(at, 4 * dkp * 4, gr);
  m.acc = carve(at, dkp * 4, gr);
  m.dat = carve(at, kBlocks * 16 * 17 * 4, gr);
  m.bytes = at;
  return m;
}

template <class T>
__device__ __forceinline__ T* at(char* sm, int off) {
  return reinterpret_cast<T*>(sm + off);
}

// ---- tensor-core fragments --------------------------------------------------------------------
// m16n8k16 with lane = 4 g + c: A (16x16, row-major) holds rows g, g+8 and columns 2c, 2c+1,
// 2c+8, 2c+9; B (16x8) holds k rows 2c, 2c+1, 2c+8, 2c+9 of column g; C (16x8) holds rows g, g+8
// and columns 2c, 2c+1 as c[0..1] (row g) and c[2..3] (row g+8). The first element of each pair
// sits in the low 16 bits.

__device__ __forceinline__ uint32_t bits(__nv_bfloat162 x) {
  return *reinterpret_cast<uint32_t*>(&x);
}
__device__ __forceinline__ uint32_t pack(float x0, float x1) {
  return bits(__floats2bfloat162_rn(x0, x1));
}

struct Split {
  uint32_t hi, lo;
};
// x = hi + lo + O(2^-17 x): lo is the bf16 rounding of the exact fp32 remainder.
__device__ __forceinline__ Split split(float x0, float x1) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(x0, x1);
  const float2 hf = __bfloat1622float2(h);
  return {bits(h), pack(x0 - hf.x, x1 - hf.y)};
}

struct FragA {
  uint32_t hi[4], lo[4];
};
struct FragB {
  uint32_t hi[2], lo[2];
};

__device__ __forceinline__ int lane_g() { return (threadIdx.x % 32) / 4; }
__device__ __forceinline__ int lane_c() { return threadIdx.x % 4; }

// f(r, k) with r, k in 0..15.
template <class F>
__device__ __forceinline__ FragA frag_a(F f) {
  const int g = lane_g(), c = 2 * lane_c();
  const Split s0 = split(f(g, c), f(g, c + 1)), s1 = split(f(g + 8, c), f(g + 8, c + 1));
  const Split s2 = split(f(g, c + 8), f(g, c + 9)), s3 = split(f(g + 8, c + 8), f(g + 8, c + 9));
  return {{s0.hi, s1.hi, s2.hi, s3.hi}, {s0.lo, s1.lo, s2.lo, s3.lo}};
}
// f(k, n) with k in 0..15, n in 0..7.
template <class F>
__device__ __forceinline__ FragB frag_b(F f) {
  const int g = lane_g(), c = 2 * lane_c();
  const Split s0 = split(f(c, g), f(c + 1, g)), s1 = split(f(c + 8, g), f(c + 9, g));
  return {{s0.hi, s1.hi}, {s0.lo, s1.lo}};
}
// Two C fragments (columns 0..7 and 8..15), times mul, as the A fragment of a 16x16 block.
__device__ __forceinline__ FragA frag_from_acc(const float (&c0)[4], const float (&c1)[4],
                                               float mul) {
  const Split s0 = split(c0[0] * mul, c0[1] * mul), s1 = split(c0[2] * mul, c0[3] * mul);
  const Split s2 = split(c1[0] * mul, c1[1] * mul), s3 = split(c1[2] * mul, c1[3] * mul);
  return {{s0.hi, s1.hi, s2.hi, s3.hi}, {s0.lo, s1.lo, s2.lo, s3.lo}};
}

__device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                    uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// Both operands split: hi*hi + hi*lo + lo*hi (lo*lo is below the fp32 accumulation).
__device__ __forceinline__ void mma3(float (&d)[4], const FragA& a, const FragB& b) {
  mma(d, a.lo, b.hi[0], b.hi[1]);
  mma(d, a.hi, b.lo[0], b.lo[1]);
  mma(d, a.hi, b.hi[0], b.hi[1]);
}
// A split, B exact.
__device__ __forceinline__ void mma_ae(float (&d)[4], const FragA& a, const uint32_t (&b)[2]) {
  mma(d, a.lo, b[0], b[1]);
  mma(d, a.hi, b[0], b[1]);
}
// A exact, B split.
__device__ __forceinline__ void mma_be(float (&d)[4], const uint32_t (&a)[4], const FragB& b) {
  mma(d, a, b.lo[0], b.lo[1]);
  mma(d, a, b.hi[0], b.hi[1]);
}

// Fragments straight from shared memory: ldmatrix for bf16 tiles (one instruction per two 8 x 16
// pieces instead of eight 2-byte loads), 8-byte loads of fp32 pairs that are adjacent in k.
// Row starts and the column offsets used are 16-byte aligned (rows of sv, sq elements).
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const bf16* p, bool trans) {
  const uint32_t a = uint32_t(__cvta_generic_to_shared(p));
  if (trans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
// A fragment of the 16 x 16 bf16 block X[r][k] (rows ld apart).
__device__ __forceinline__ void lda_bf(uint32_t (&a)[4], const bf16* X, int ld) {
  const int l = threadIdx.x % 32;
  ldsm_x4(a, X + ((l & 7) + (l & 8)) * ld + (l & 16) / 2, false);
}
// B fragments of n-tiles 0 and 1 (n 0..7, 8..15) of a bf16 block stored as X[n][k] (nk) or
// X[k][n] (kn), rows ld apart.
__device__ __forceinline__ void ldb_bf(uint32_t (&b0)[2], uint32_t (&b1)[2], const bf16* X, int ld,
                                       bool kn) {
  const int l = threadIdx.x % 32;
  uint32_t r[4];
  if (kn)
    ldsm_x4(r, X + ((l & 7) + (l & 8)) * ld + (l & 16) / 2, true);
  else
    ldsm_x4(r, X + ((l & 7) + (l & 16) / 2) * ld + (l & 8), false);
  b0[0] = r[0];
  b0[1] = r[1];
  b1[0] = r[2];
  b1[1] = r[3];
}
// x[0..1] m[0..1] s split (m null: ones).
__device__ __forceinline__ Split split2(const float* x, const float* m, float s) {
  const float2 v = *reinterpret_cast<const float2*>(x);
  const float2 f = m ? *reinterpret_cast<const float2*>(m) : make_float2(1.f, 1.f);
  return split(v.x * f.x * s, v.y * f.y * s);
}
// A fragment of X[r][k] m[k] s, fp32, rows ld apart.
__device__ __forceinline__ FragA lda_f32(const float* X, int ld, const float* m, float s) {
  const int g = lane_g(), c = 2 * lane_c();
  const float* m0 = m ? m + c : nullptr;
  const float* m8 = m ? m + c + 8 : nullptr;
  const Split s0 = split2(X + g * ld + c, m0, s), s1 = split2(X + (g + 8) * ld + c, m0, s);
  const Split s2 = split2(X + g * ld + c + 8, m8, s), s3 = split2(X + (g + 8) * ld + c + 8, m8, s);
  return {{s0.hi, s1.hi, s2.hi, s3.hi}, {s0.lo, s1.lo, s2.lo, s3.lo}};
}
// B fragment (k 0..15, n 0..7) of X[n][k] m[k] s, fp32, rows ld apart.
__device__ __forceinline__ FragB ldb_f32(const float* X, int ld, const float* m, float s) {
  const int g = lane_g(), c = 2 * lane_c();
  const Split s0 = split2(X + g * ld + c, m ? m + c : nullptr, s);
  const Split s1 = split2(X + g * ld + c + 8, m ? m + c + 8 : nullptr, s);
  return {{s0.hi, s1.hi}, {s0.lo, s1.lo}};
}

// Row and column of C-fragment element e of n-tile nt (within a 16-row block).
__device__ __forceinline__ int c_row(int e) { return lane_g() + 8 * (e >> 1); }
__device__ __forceinline__ int c_col(int nt, int e) { return 8 * nt + 2 * lane_c() + (e & 1); }

// Columns j, j + 1 (j even) of an output row: one store of both where `pair` (even row widths and
// an array aligned to the pair: every pair is aligned) and both exist, else one by one. Halves
// the store instructions and the sectors they touch, as the C fragments hold such pairs.
__device__ __forceinline__ void store_pair(bf16* row, int j, int cols, float x0, float x1,
                                           bool pair) {
  if (pair && j + 1 < cols) {
    *reinterpret_cast<__nv_bfloat162*>(row + j) = __floats2bfloat162_rn(x0, x1);
  } else {
    if (j < cols) row[j] = __float2bfloat16_rn(x0);
    if (j + 1 < cols) row[j + 1] = __float2bfloat16_rn(x1);
  }
}
__device__ __forceinline__ void store_pair(float* row, int j, int cols, float x0, float x1,
                                           bool pair) {
  if (pair && j + 1 < cols) {
    *reinterpret_cast<float2*>(row + j) = make_float2(x0, x1);
  } else {
    if (j < cols) row[j] = x0;
    if (j + 1 < cols) row[j + 1] = x1;
  }
}

// ---- per-chunk staging ------------------------------------------------------------------------

// Tokens of the chunk starting at t0 (kC but for the last).
__device__ __forceinline__ int chunk_rows(const Params& p, int t0) {
  return p.N - t0 < kC ? int(p.N - t0) : kC;
}

// Element offsets of token t0, head h, channel 0 in the [B, N, H, D] arrays.
__device__ __forceinline__ int64_t koff(const Params& p, int64_t bh, int t0) {
  return ((bh / p.H * p.N + t0) * p.H + bh % p.H) * p.Dk;
}
__device__ __forceinline__ int64_t voff(const Params& p, int64_t bh, int t0) {
  return ((bh / p.H * p.N + t0) * p.H + bh % p.H) * p.Dv;
}

__device__ __forceinline__ float zero_of(const float*) { return 0.f; }
__device__ __forceinline__ bf16 zero_of(const bf16*) { return __float2bfloat16_rn(0.f); }

// 16 bytes global -> shared without passing through registers; zeros when !full.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool full) {
  const uint32_t d = uint32_t(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src),
               "r"(full ? 16 : 0)
               : "memory");
}

// A [kC, cols] tile of a token-major array (rows ld elements apart) into shared memory (rows sd
// elements apart), zero past `rows` and past `cols` up to pcols. When vec (cols and pcols whole
// 16-byte pieces, src and ld 16-byte aligned) by cp.async: every tile of a chunk is in flight at
// once, and the caller's loads of states overlap them; prepare waits for them. Otherwise each
// thread issues a batch of loads before it stores any, so that their latencies overlap.
template <class T>
__device__ void stage_tile(T* dst, int sd, const T* src, int64_t ld, int rows, int cols, int pcols,
                           bool vec) {
  constexpr int kBatch = 8;
  if (vec) {
    constexpr int E = 16 / sizeof(T);
    const int per = pcols / E, n = kC * per;
    for (int it = threadIdx.x; it < n; it += blockDim.x) {
      const int r = it / per, j = it % per * E;
      const bool full = r < rows && j < cols;
      cp_async16(dst + r * sd + j, full ? src + r * ld + j : src, full);
    }
  } else {
    const int n = kC * pcols;
    for (int i0 = threadIdx.x; i0 < n; i0 += int(blockDim.x) * kBatch) {
      T x[kBatch];
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int it = i0 + u * int(blockDim.x), r = it / pcols, j = it % pcols;
        x[u] = it < n && r < rows && j < cols ? src[r * ld + j] : zero_of(src);
      }
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int it = i0 + u * int(blockDim.x), r = it / pcols, j = it % pcols;
        if (it < n) dst[r * sd + j] = x[u];
      }
    }
  }
}

// The chunk of `rows` tokens at t0 of head bh: raw q, k, a into QR, KR, BETA (those the kernel's
// layout has), and rows of Y (v or dO) into Ys.
template <int DKP>
__device__ void stage_chunk(const Smem& m, char* sm, const Params& p, int64_t bh, int t0, int rows,
                            bf16* Ys, const bf16* Y) {
  const int64_t ld = p.H * p.Dk, off = koff(p, bh, t0);
  stage_tile(Ys, m.sv, Y + voff(p, bh, t0), p.H * p.Dv, rows, p.Dv, p.DVP, p.vec);
  if (m.qr >= 0) stage_tile(at<bf16>(sm, m.qr), m.sq, p.q + off, ld, rows, p.Dk, DKP, p.vec_qk);
  if (m.kr >= 0) stage_tile(at<bf16>(sm, m.kr), m.sq, p.k + off, ld, rows, p.Dk, DKP, p.vec_qk);
  stage_tile(at<float>(sm, m.beta), m.sq, p.a + off, ld, rows, p.Dk, DKP, p.vec_a);
}

// After stage_chunk: fills the arrays of the kernel's layout (QB, KE; BETA over the raw a), the
// multipliers, the fallback flags, and in cd the half-block sums, c_J and d_J (doubles). Rows past
// the sequence and channels past Dk were staged as zeros (a = 0). Waits for the chunk's cp.async
// copies; starts and ends with a barrier. Work items are half blocks (h, J, i): 8 tokens of block
// J, channel i, so that the serial chain of sums and exponentials is 8 long and every thread
// takes part; the multipliers are one exponential per item.
template <int DKP>
__device__ void prepare(const Smem& m, char* sm) {
  const int tid = threadIdx.x, sq = m.sq;
  double* half = at<double>(sm, m.cd);  // [8, DKP]: sum of a over half block 2 J + h
  double* cc = half + kCSlot * DKP;
  double* dd = half + kDSlot * DKP;
  int* flags = at<int>(sm, m.flags);
  float* AB = at<float>(sm, m.beta);  // raw a, overwritten by BETA element by element
  const bool keep_beta = m.beta != m.qb && m.beta != m.ke;  // else a is overwritten by QB or KE
  asm volatile("cp.async.wait_all;\n" ::: "memory");
  if (tid < 4) flags[tid] = 0;
  __syncthreads();
  for (int it = tid; it < 8 * DKP; it += blockDim.x) {  // it = (2 J + h) DKP + i
    const int hb = it / DKP, i = it % DKP;
    double s = 0;
#pragma unroll
    for (int u = 0; u < 8; ++u) s += AB[(8 * hb + u) * sq + i];
    half[it] = s;
  }
  __syncthreads();
  // Item (h, J, i) rewrites only its own 8 tokens of channel i, each after reading it; a_0 of the
  // block, which both halves read, keeps its raw value until the next phase writes token 0's
  // BETA_0 = 0 and, where a shares their array, its QB and KE.
  for (int it = tid; it < 8 * DKP; it += blockDim.x) {
    const int hb = it / DKP, J = hb / 2, h = hb % 2, i = it % DKP;
    const double a0 = AB[16 * J * sq + i];
    double c = a0;
    for (int K = 0; K < J; ++K) c += half[2 * K * DKP + i] + half[(2 * K + 1) * DKP + i];
    const double bend = half[2 * J * DKP + i] + half[(2 * J + 1) * DKP + i] - a0;  // BETA_15
    if (h == 0) {
      cc[J * DKP + i] = c;
      dd[J * DKP + i] = c + bend;
      if (-bend > kDiagSpan) atomicOr(&flags[J], 1);
    }
    double beta = (h ? half[2 * J * DKP + i] : 0.0) - a0;  // BETA before the first token, less a
#pragma unroll 4
    for (int u = 0; u < 8; ++u) {
      const int x = (16 * J + 8 * h + u) * sq + i;
      beta += AB[x];
      if (h == 0 && u == 0) continue;
      if (m.qb >= 0) at<float>(sm, m.qb)[x] = bf(at<bf16>(sm, m.qr)[x]) * expf(float(beta));
      if (m.ke >= 0) at<float>(sm, m.ke)[x] = bf(at<bf16>(sm, m.kr)[x]) * expf(float(bend - beta));
      if (keep_beta) AB[x] = float(beta);
    }
  }
  __syncthreads();
  float* mul = at<float>(sm, m.mul);
  for (int it = tid; it < 4 * DKP; it += blockDim.x) {  // token 0 of block J: BETA_0 = 0
    const int J = it / DKP, i = it % DKP, x = 16 * J * sq + i;
    if (m.qb >= 0) at<float>(sm, m.qb)[x] = bf(at<bf16>(sm, m.qr)[x]);
    if (m.ke >= 0)
      at<float>(sm, m.ke)[x] = bf(at<bf16>(sm, m.kr)[x]) * expf(float(dd[it] - cc[it]));
    if (keep_beta) AB[x] = 0.f;
  }
  for (int it = tid; it < kMul * DKP; it += blockDim.x) {  // it = multiplier DKP + i
    const int x = it / DKP, i = it % DKP;
    double e;
    // P_JK (K <= J) is used only below kDiagSpan on the diagonal; the clamp keeps it finite.
    if (x < 16) {
      const int J = x / 4, K = x % 4;
      if (K > J) continue;
      e = fmin(cc[J * DKP + i] - dd[K * DKP + i], 80.0);
    } else if (x < 20) {
      e = cc[(x - 16) * DKP + i];
    } else if (x < 24) {
      e = dd[3 * DKP + i] - dd[(x - 20) * DKP + i];
    } else {
      e = dd[3 * DKP + i];
    }
    mul[it] = expf(float(e));
  }
  __syncthreads();
}

// dst (shared, rows sh apart) = diag(D) H + L for dense [DKP, DVP] states in global memory; D and
// L may be null (ones, zeros). Loads are batched as in stage_tile.
__device__ void state_to_smem(float* dst, int sh, const float* H, const float* D, const float* L,
                              int DKP, int DVP) {
  constexpr int kBatch = 4;
  const int per = DVP / 4, n = DKP * per;
  for (int i0 = threadIdx.x; i0 < n; i0 += int(blockDim.x) * kBatch) {
    float4 h[kBatch], l[kBatch];
    float d[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int it = i0 + u * int(blockDim.x), i = it / per, j = it % per * 4;
      h[u] = l[u] = make_float4(0.f, 0.f, 0.f, 0.f);
      d[u] = 1.f;
      if (it < n) {
        h[u] = *reinterpret_cast<const float4*>(H + int64_t(i) * DVP + j);
        if (L) l[u] = *reinterpret_cast<const float4*>(L + int64_t(i) * DVP + j);
        if (D) d[u] = D[i];
      }
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int it = i0 + u * int(blockDim.x), i = it / per, j = it % per * 4;
      if (it < n)
        *reinterpret_cast<float4*>(dst + i * sh + j) =
            make_float4(d[u] * h[u].x + l[u].x, d[u] * h[u].y + l[u].y, d[u] * h[u].z + l[u].z,
                        d[u] * h[u].w + l[u].w);
    }
  }
}
__device__ void state_to_global(float* dst, const float* src, int sh, int DKP, int DVP) {
  const int per = DVP / 4;
  for (int it = threadIdx.x; it < DKP * per; it += blockDim.x) {
    const int i = it / per, j = (it % per) * 4;
    *reinterpret_cast<float4*>(dst + int64_t(i) * DVP + j) =
        *reinterpret_cast<const float4*>(src + i * sh + j);
  }
}
__device__ void state_zero(float* dst, int sh, int DKP) {
  for (int it = threadIdx.x; it < DKP * sh; it += blockDim.x) dst[it] = 0.f;
}

// X = diag(GL) X + (R ⊙ M_block scale)^T Y over the chunk: the state update (R = KE, M = F,
// Y = V) and the backward one (X = dL/dS, R = QB, M = E, scale, Y = dO). X is [DKP, DVP],
// split among the warps in 16 x 32 tiles; each element is read and written by one thread.
template <int DKP>
__device__ void state_step(float* X, int sh, const float* R, int sq, const float* M, float scale,
                           const bf16* Y, int sv, const float* GL, int DVP) {
  constexpr int MT = DKP / 16;
  const int w = threadIdx.x / 32;
  const int tiles = MT * (DVP / 32);
  for (int tt = w; tt < tiles; tt += blockDim.x / 32) {
    const int mt = tt % MT, gc = tt / MT;
    float acc[4][4] = {};
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) {  // tokens of block ks
      const FragA fa = frag_a([&](int r, int k) {
        const int i = 16 * mt + r;
        return R[(16 * ks + k) * sq + i] * M[ks * DKP + i] * scale;
      });
#pragma unroll
      for (int nt = 0; nt < 4; nt += 2) {
        uint32_t fb0[2], fb1[2];
        ldb_bf(fb0, fb1, Y + 16 * ks * sv + 32 * gc + 8 * nt, sv, true);
        mma_ae(acc[nt], fa, fb0);
        mma_ae(acc[nt + 1], fa, fb1);
      }
    }
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = 16 * mt + c_row(e), j = 32 * gc + c_col(nt, e);
        X[i * sh + j] = GL[i] * X[i * sh + j] + acc[nt][e];
      }
  }
}

// Diagonal-block scores summed channel by channel, for strong decay, at the lane's C positions:
// transposed = false: row t, column s, kept where s <= t; true: row s, column t, kept where
// t >= s. Unscaled. exp(BETA_t - BETA_s) <= 1 within a block. Not inlined, like the other
// strong-decay paths: rarely taken, they would otherwise crowd the instruction cache.
template <int DKP>
__device__ __noinline__ void diag_scores(float (&s)[2][4], const bf16* QR, const bf16* KR,
                                         const float* BETA, int sq, int J, bool transposed) {
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int row = c_row(e), col = c_col(nt, e);
      const int t = 16 * J + (transposed ? col : row), u = 16 * J + (transposed ? row : col);
      float acc = 0.f;
      if (u <= t)
        for (int i = 0; i < DKP; ++i)
          acc +=
              bf(QR[t * sq + i]) * bf(KR[u * sq + i]) * expf(BETA[t * sq + i] - BETA[u * sq + i]);
      s[nt][e] = acc;
    }
}

// ---- forward: o for one chunk -----------------------------------------------------------------

// Block w: o_t = sum_{K<=w} A_wK V_K + (QB_t E_w scale) S for its 16 tokens, with
// A_wK = scale QB_w diag(P_wK) KE_K^T (masked on the diagonal block). Warps w and w + 4 both form
// A_wK and take alternate 32-column groups of o.
template <int DKP>
__device__ void chunk_output(const Smem& m, char* sm, const Params& p, bf16* o, int rows) {
  constexpr int KS = DKP / 16;
  const int w = threadIdx.x / 32 % kBlocks, half = threadIdx.x / 32 / kBlocks;
  const int halves = blockDim.x / (32 * kBlocks), sq = m.sq, sv = m.sv, sh = m.sh;
  const float* QB = at<float>(sm, m.qb);
  const float* KE = at<float>(sm, m.ke);
  const float* BETA = at<float>(sm, m.beta);
  const bf16* QR = at<bf16>(sm, m.qr);
  const bf16* KR = at<bf16>(sm, m.kr);
  const bf16* V = at<bf16>(sm, m.v);
  const float* HS = at<float>(sm, m.hs);
  const float* P = at<float>(sm, m.mul);
  const float* E = P + 16 * DKP;
  const bool fallback = at<int>(sm, m.flags)[w] != 0;

  FragA qa[KS];
#pragma unroll
  for (int ks = 0; ks < KS; ++ks) qa[ks] = lda_f32(QB + 16 * w * sq + 16 * ks, sq, nullptr, 1.f);
  FragA sa[4];  // A_wK as A fragments (K <= w)
#pragma unroll
  for (int K = 0; K < 4; ++K) {
    if (K > w) continue;
    float s[2][4] = {};
    if (K == w && fallback) {
      diag_scores<DKP>(s, QR, KR, BETA, sq, w, false);
    } else {
#pragma unroll
      for (int ks = 0; ks < KS; ++ks)
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) {
          const FragB fb = ldb_f32(KE + (16 * K + 8 * nt) * sq + 16 * ks, sq,
                                   P + (w * 4 + K) * DKP + 16 * ks, 1.f);
          mma3(s[nt], qa[ks], fb);
        }
      if (K == w)
#pragma unroll
        for (int nt = 0; nt < 2; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            if (c_col(nt, e) > c_row(e)) s[nt][e] = 0.f;
    }
    sa[K] = frag_from_acc(s[0], s[1], p.scale);
  }
  FragA qi[KS];  // QB E_w scale: the queries against the entering state
#pragma unroll
  for (int ks = 0; ks < KS; ++ks)
    qi[ks] = lda_f32(QB + 16 * w * sq + 16 * ks, sq, E + w * DKP + 16 * ks, p.scale);
  const int64_t ldv = p.H * p.Dv;
  for (int gc = half; gc < p.DVP / 32; gc += halves) {
    float acc[4][4] = {};
#pragma unroll
    for (int K = 0; K < 4; ++K) {
      if (K > w) continue;
#pragma unroll
      for (int nt = 0; nt < 4; nt += 2) {
        uint32_t fb0[2], fb1[2];
        ldb_bf(fb0, fb1, V + 16 * K * sv + 32 * gc + 8 * nt, sv, true);
        mma_ae(acc[nt], sa[K], fb0);
        mma_ae(acc[nt + 1], sa[K], fb1);
      }
    }
#pragma unroll
    for (int ks = 0; ks < KS; ++ks)
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        const FragB fb =
            frag_b([&](int k, int n) { return HS[(16 * ks + k) * sh + 32 * gc + 8 * nt + n]; });
        mma3(acc[nt], qi[ks], fb);
      }
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = 16 * w + c_row(e), j = 32 * gc + c_col(nt, e);
        if (r < rows && j < p.Dv) o[r * ldv + j] = __float2bfloat16_rn(acc[nt][e]);
      }
  }
}

// ---- backward: dq, dk, dv, da for one chunk ---------------------------------------------------

// In-lane-column suffix sum over g' >= g (the 8 lanes sharing c).
__device__ __forceinline__ float suffix8(float v) {
  const int g = lane_g();
#pragma unroll
  for (int d = 1; d < 8; d *= 2) {
    const float o = __shfl_down_sync(0xffffffffu, v, 4 * d);
    if (g + d < 8) v += o;
  }
  return v;
}

// The diagonal block's part of dq_t / scale (t = 16 w + row), channel i, channel by channel:
// sum over s <= t of dA[t, s] k_s exp(BETA_t - BETA_s), for strong decay.
__device__ __noinline__ float diag_dq(const float* DAT, const bf16* KR, const float* BETA, int sq,
                                      int w, int row, int i) {
  const int t = 16 * w + row;
  float s = 0.f;
  for (int u = 0; u <= row; ++u) {
    const int su = 16 * w + u;
    s += DAT[row * 17 + u] * bf(KR[su * sq + i]) * expf(BETA[t * sq + i] - BETA[su * sq + i]);
  }
  return s;
}
// Likewise dk_s / scale (s = 16 w + row): sum over t >= s of dA[t, s] q_t exp(BETA_t - BETA_s).
__device__ __noinline__ float diag_dk(const float* DAT, const bf16* QR, const float* BETA, int sq,
                                      int w, int row, int i) {
  const int s = 16 * w + row;
  float acc = 0.f;
  for (int u = row; u < 16; ++u) {
    const int tu = 16 * w + u;
    acc += DAT[u * 17 + row] * bf(QR[tu * sq + i]) * expf(BETA[tu * sq + i] - BETA[s * sq + i]);
  }
  return acc;
}

// Warp w < 4 takes row block w (dq: dA_wK = dO_w V_K^T) and column block w (dk: dA^T_Jw for
// J >= w), which balances the triangle, and da; warp w + 4 takes dv of column block w (the scores
// A^T_Jw for J >= w). HS is the state entering the chunk, DHS the
// gradient with respect to the state leaving it, ACC[i] = sum_j S'[i,j] dS'[i,j] (the tokens after
// the chunk). Ends after its da stores; contains one barrier.
template <int DKP>
__device__ void chunk_grads(const Smem& m, char* sm, const Params& p, int64_t bh, int t0, int rows,
                            bool seq_start) {
  constexpr int KS = DKP / 16, NT = DKP / 8;
  const int warp = threadIdx.x / 32, w = warp % kBlocks, sq = m.sq, sv = m.sv, sh = m.sh,
            VS = p.DVP / 16;
  const bool dv_warp = warp >= kBlocks;
  const float* QB = at<float>(sm, m.qb);
  const float* KE = at<float>(sm, m.ke);
  const float* BETA = at<float>(sm, m.beta);
  const bf16* QR = at<bf16>(sm, m.qr);
  const bf16* KR = at<bf16>(sm, m.kr);
  const bf16* V = at<bf16>(sm, m.v);
  const bf16* DO = at<bf16>(sm, m.dO);
  const float* HS = at<float>(sm, m.hs);
  const float* DHS = at<float>(sm, m.dhs);
  const float* P = at<float>(sm, m.mul);
  const float* E = P + 16 * DKP;
  const float* F = P + 20 * DKP;
  float* TOT = at<float>(sm, m.tot);
  const float* ACC = at<float>(sm, m.acc);
  float* DAT = at<float>(sm, m.dat) + w * 16 * 17;  // dA of the diagonal block, [t][s]
  const bool fallback = at<int>(sm, m.flags)[w] != 0;
  const int64_t ldk = p.H * p.Dk, ldv = p.H * p.Dv;
  const int64_t kbase = koff(p, bh, t0), vbase = voff(p, bh, t0);
  const float scale = p.scale;

  float x[NT][4] = {};  // q dq - k dk, then da
  if (!dv_warp) {
    // dA_wK[t, s] = dO_t . v_s (exact bf16 products)
    float dA[4][2][4] = {};
    for (int ks = 0; ks < VS; ++ks) {
      uint32_t fa[4];
      lda_bf(fa, DO + 16 * w * sv + 16 * ks, sv);
#pragma unroll
      for (int K = 0; K < 4; ++K) {
        if (K > w) continue;
        uint32_t fb0[2], fb1[2];
        ldb_bf(fb0, fb1, V + 16 * K * sv + 16 * ks, sv, false);
        mma(dA[K][0], fa, fb0[0], fb0[1]);
        mma(dA[K][1], fa, fb1[0], fb1[1]);
      }
    }
#pragma unroll
    for (int K = 0; K < 4; ++K) {
      if (K != w) continue;
#pragma unroll
      for (int nt = 0; nt < 2; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          if (c_col(nt, e) > c_row(e)) dA[K][nt][e] = 0.f;
          DAT[c_row(e) * 17 + c_col(nt, e)] = dA[K][nt][e];
        }
    }
    __syncwarp();

    // dq_t = scale exp(BETA_t) (sum_K dA_wK (KE_K ⊙ P_wK) + dO_t (S ⊙ E_w)^T)
    {
      float dq[NT][4] = {};
#pragma unroll
      for (int K = 0; K < 4; ++K) {
        if (K > w || (K == w && fallback)) continue;
        const FragA fa = frag_from_acc(dA[K][0], dA[K][1], 1.f);
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          const FragB fb = frag_b([&](int k, int n) {
            const int i = 8 * nt + n;
            return KE[(16 * K + k) * sq + i] * P[(w * 4 + K) * DKP + i];
          });
          mma3(dq[nt], fa, fb);
        }
      }
      for (int ks = 0; ks < VS; ++ks) {
        uint32_t fa[4];
        lda_bf(fa, DO + 16 * w * sv + 16 * ks, sv);
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          const FragB fb =
              ldb_f32(HS + 8 * nt * sh + 16 * ks, sh, nullptr, E[w * DKP + 8 * nt + lane_g()]);
          mma_be(dq[nt], fa, fb);
        }
      }
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        float gs[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int row = c_row(e), t = 16 * w + row, i = c_col(nt, e);
          float g = scale * expf(BETA[t * sq + i]) * dq[nt][e];
          if (fallback) g += scale * diag_dq(DAT, KR, BETA, sq, w, row, i);
          gs[e] = g;
          x[nt][e] = bf(QR[t * sq + i]) * g;
        }
#pragma unroll
        for (int e = 0; e < 4; e += 2) {
          const int t = 16 * w + c_row(e);
          if (t < rows)
            store_pair(p.dq + kbase + t * ldk, c_col(nt, e), p.Dk, gs[e], gs[e + 1], p.pair_k);
        }
      }
    }

    // dk_s = exp(d_w - b_s) (sum_{J>=w} dA^T_Jw (QB_J ⊙ P_Jw scale) + v_s (dS ⊙ F_w)^T)
    {
      float dk[NT][4] = {};
#pragma unroll
      for (int J = 0; J < 4; ++J) {
        if (J < w) continue;
        const bool diag_fb = J == w && fallback;
        if (diag_fb) continue;  // the diagonal block, channel by channel below
        float d[2][4] = {};     // dA^T_Jw[s, t] = v_s . dO_t
        for (int ks = 0; ks < VS; ++ks) {
          uint32_t fa[4], fb0[2], fb1[2];
          lda_bf(fa, V + 16 * w * sv + 16 * ks, sv);
          ldb_bf(fb0, fb1, DO + 16 * J * sv + 16 * ks, sv, false);
          mma(d[0], fa, fb0[0], fb0[1]);
          mma(d[1], fa, fb1[0], fb1[1]);
        }
        if (J == w)
#pragma unroll
          for (int nt = 0; nt < 2; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e)
              if (c_col(nt, e) < c_row(e)) d[nt][e] = 0.f;
        if (!diag_fb) {
          const FragA fa = frag_from_acc(d[0], d[1], 1.f);
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) {
            const FragB fb = frag_b([&](int k, int n) {
              const int i = 8 * nt + n;
              return QB[(16 * J + k) * sq + i] * P[(J * 4 + w) * DKP + i] * scale;
            });
            mma3(dk[nt], fa, fb);
          }
        }
      }
      for (int ks = 0; ks < VS; ++ks) {
        uint32_t fa[4];
        lda_bf(fa, V + 16 * w * sv + 16 * ks, sv);
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          const FragB fb =
              ldb_f32(DHS + 8 * nt * sh + 16 * ks, sh, nullptr, F[w * DKP + 8 * nt + lane_g()]);
          mma_be(dk[nt], fa, fb);
        }
      }
      const int last = (16 * w + 15) * sq;
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        float gs[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int row = c_row(e), s = 16 * w + row, i = c_col(nt, e);
          float g = expf(BETA[last + i] - BETA[s * sq + i]) * dk[nt][e];
          if (fallback) g += scale * diag_dk(DAT, QR, BETA, sq, w, row, i);
          gs[e] = g;
          x[nt][e] -= bf(KR[s * sq + i]) * g;
        }
#pragma unroll
        for (int e = 0; e < 4; e += 2) {
          const int s = 16 * w + c_row(e);
          if (s < rows)
            store_pair(p.dk + kbase + s * ldk, c_col(nt, e), p.Dk, gs[e], gs[e + 1], p.pair_k);
        }
      }
    }

  }  // !dv_warp

  // dv_s = sum_{J>=w} A^T_Jw dO_J + (KE_s ⊙ F_w) dS, on the other warps: the scores
  // A^T_Jw[s, t] = scale QB_t P_Jw KE_s (unscaled first; masked on the diagonal block).
  if (dv_warp) {
    FragA at_[4];
#pragma unroll
    for (int J = 0; J < 4; ++J) {
      if (J < w) continue;
      float s[2][4] = {};
      if (J == w && fallback) {
        diag_scores<DKP>(s, QR, KR, BETA, sq, w, true);
      } else {
#pragma unroll
        for (int ks = 0; ks < KS; ++ks) {
          const FragA fa =
              lda_f32(KE + 16 * w * sq + 16 * ks, sq, P + (J * 4 + w) * DKP + 16 * ks, 1.f);
#pragma unroll
          for (int nt = 0; nt < 2; ++nt) {
            const FragB fb = ldb_f32(QB + (16 * J + 8 * nt) * sq + 16 * ks, sq, nullptr, 1.f);
            mma3(s[nt], fa, fb);
          }
        }
      }
      if (J == w)
#pragma unroll
        for (int nt = 0; nt < 2; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            if (c_col(nt, e) < c_row(e)) s[nt][e] = 0.f;
      at_[J] = frag_from_acc(s[0], s[1], scale);
    }
    FragA kl[KS];
#pragma unroll
    for (int ks = 0; ks < KS; ++ks)
      kl[ks] = lda_f32(KE + 16 * w * sq + 16 * ks, sq, F + w * DKP + 16 * ks, 1.f);
    for (int gc = 0; gc < p.DVP / 32; ++gc) {
      float acc[4][4] = {};
#pragma unroll
      for (int J = 0; J < 4; ++J) {
        if (J < w) continue;
#pragma unroll
        for (int nt = 0; nt < 4; nt += 2) {
          uint32_t fb0[2], fb1[2];
          ldb_bf(fb0, fb1, DO + 16 * J * sv + 32 * gc + 8 * nt, sv, true);
          mma_ae(acc[nt], at_[J], fb0);
          mma_ae(acc[nt + 1], at_[J], fb1);
        }
      }
#pragma unroll
      for (int ks = 0; ks < KS; ++ks)
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) {
          const FragB fb =
              frag_b([&](int k, int n) { return DHS[(16 * ks + k) * sh + 32 * gc + 8 * nt + n]; });
          mma3(acc[nt], kl[ks], fb);
        }
#pragma unroll
      for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int e = 0; e < 4; e += 2) {
          const int s = 16 * w + c_row(e);
          if (s < rows)
            store_pair(p.dv + vbase + s * ldv, 32 * gc + c_col(nt, e), p.Dv, acc[nt][e],
                       acc[nt][e + 1], p.pair_v);
        }
    }
  }

  // da_r = sum_{t >= r} (q_t dq_t - k_t dk_t): within the block by shuffles, then the later
  // blocks' totals and ACC (the chunks after this one).
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float hi = suffix8(x[nt][2 + h]);
      const float total_hi = __shfl_sync(0xffffffffu, hi, lane_c());
      const float lo = suffix8(x[nt][h]) + total_hi;
      x[nt][h] = lo;
      x[nt][2 + h] = hi;
      if (lane_g() == 0 && !dv_warp) TOT[w * DKP + c_col(nt, h)] = lo;
    }
  __syncthreads();
  if (dv_warp) return;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = 16 * w + c_row(e), i = c_col(nt, e);
      float later = ACC[i];
      for (int u = w + 1; u < kBlocks; ++u) later += TOT[u * DKP + i];
      // a_0 only decays the zero initial state: its gradient is exactly 0.
      x[nt][e] = seq_start && r == 0 ? 0.f : x[nt][e] + later;
    }
#pragma unroll
    for (int e = 0; e < 4; e += 2) {
      const int r = 16 * w + c_row(e);
      if (r < rows)
        store_pair(p.da + kbase + r * ldk, c_col(nt, e), p.Dk, x[nt][e], x[nt][e + 1], p.pair_a);
    }
  }
}

// ---- kernels ----------------------------------------------------------------------------------

// One span from a zero state: its final state into U, its decay into G; also the state entering
// each chunk (Lc) and the decay to it (Dc).
template <int DKP>
__global__ void __launch_bounds__(kWideThreads) gla_state_kernel(Params p) {
  extern __shared__ __align__(16) char sm[];
  const Smem m = smem_layout(DKP, p.DVP, Kind::State);
  const int span = blockIdx.x;
  const int64_t bh = blockIdx.y, P2 = int64_t(DKP) * p.DVP;
  const int c0 = span * p.cps, c1 = min(c0 + p.cps, p.nc);
  float* HS = at<float>(sm, m.hs);
  double* LD = at<double>(sm, m.ld);
  const double* dd = at<double>(sm, m.cd) + kDSlot * DKP;
  const float* mul = at<float>(sm, m.mul);
  state_zero(HS, m.sh, DKP);
  for (int i = threadIdx.x; i < DKP; i += blockDim.x) LD[i] = 0;
  __syncthreads();
  for (int ch = c0; ch < c1; ++ch) {
    const int t0 = ch * kC, rows = chunk_rows(p, t0);
    state_to_global(p.Lc + (bh * p.nc + ch) * P2, HS, m.sh, DKP, p.DVP);
    for (int i = threadIdx.x; i < DKP; i += blockDim.x)
      p.Dc[(bh * p.nc + ch) * DKP + i] = expf(float(LD[i]));
    stage_chunk<DKP>(m, sm, p, bh, t0, rows, at<bf16>(sm, m.v), p.v);
    prepare<DKP>(m, sm);
    state_step<DKP>(HS, m.sh, at<float>(sm, m.ke), m.sq, mul + 20 * DKP, 1.f, at<bf16>(sm, m.v),
                    m.sv, mul + 24 * DKP, p.DVP);
    for (int i = threadIdx.x; i < DKP; i += blockDim.x) LD[i] += dd[3 * DKP + i];
    __syncthreads();
  }
  state_to_global(p.U + (bh * (p.nsp + 1) + span) * P2, HS, m.sh, DKP, p.DVP);
  for (int i = threadIdx.x; i < DKP; i += blockDim.x)
    p.G[(bh * p.nsp + span) * DKP + i] = expf(float(LD[i]));
}

// U[span] (from zero) -> the state entering each span (U[nsp]: the final state), one thread per
// state element. state_in is read before state_out is written, element by element: they may
// be one buffer.
__global__ void gla_scan_kernel(Params p) {
  const int64_t P2 = int64_t(p.DKP) * p.DVP;
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (e >= p.BH * P2) return;
  const int64_t bh = e / P2;
  const int x = int(e % P2), i = x / p.DVP, j = x % p.DVP;
  const bool real = i < p.Dk && j < p.Dv;
  const int64_t so = (bh * p.Dk + i) * p.Dv + j;
  float h = p.state_in && real ? p.state_in[so] : 0.f;
  float* u = p.U + bh * (p.nsp + 1) * P2 + x;
  const float* g = p.G + bh * p.nsp * p.DKP + i;
  for (int s0 = 0; s0 < p.nsp; s0 += kScanBatch) {  // loads first, so that they overlap
    float local[kScanBatch], gs[kScanBatch];
#pragma unroll
    for (int b = 0; b < kScanBatch; ++b)
      if (s0 + b < p.nsp) {
        local[b] = u[(s0 + b) * P2];
        gs[b] = g[(s0 + b) * p.DKP];
      }
#pragma unroll
    for (int b = 0; b < kScanBatch; ++b)
      if (s0 + b < p.nsp) {
        u[(s0 + b) * P2] = h;
        h = gs[b] * h + local[b];
      }
  }
  p.U[(bh * (p.nsp + 1) + p.nsp) * P2 + x] = h;
  if (p.state_out && real) p.state_out[so] = h;
}

// One chunk from the state entering it, Dc ⊙ (the state entering its span) + Lc. With Dk <= 32
// three CTAs fit an SM's shared memory; the register cap lets them be resident together.
template <int DKP>
__global__ void __launch_bounds__(kWideThreads, DKP == 32 ? 3 : 1) gla_output_kernel(Params p) {
  extern __shared__ __align__(16) char sm[];
  const Smem m = smem_layout(DKP, p.DVP, Kind::Output);
  const int ch = blockIdx.x, span = ch / p.cps, t0 = ch * kC, rows = chunk_rows(p, t0);
  const int64_t bh = blockIdx.y, P2 = int64_t(DKP) * p.DVP, cx = bh * p.nc + ch;
  stage_chunk<DKP>(m, sm, p, bh, t0, rows, at<bf16>(sm, m.v), p.v);  // in flight during the next
  state_to_smem(at<float>(sm, m.hs), m.sh, p.U + (bh * (p.nsp + 1) + span) * P2, p.Dc + cx * DKP,
                p.Lc + cx * P2, DKP, p.DVP);
  prepare<DKP>(m, sm);  // its first barrier publishes the state and the staged chunk
  chunk_output<DKP>(m, sm, p, p.o + voff(p, bh, t0), rows);
}

// One span backwards from dL/dS = 0 at its end: dU = dL/d(state entering the span) from the
// span's own outputs.
template <int DKP>
__global__ void __launch_bounds__(kWideThreads) gla_dstate_kernel(Params p) {
  extern __shared__ __align__(16) char sm[];
  const Smem m = smem_layout(DKP, p.DVP, Kind::DState);
  const int span = blockIdx.x;
  const int64_t bh = blockIdx.y, P2 = int64_t(DKP) * p.DVP;
  const int c0 = span * p.cps, c1 = min(c0 + p.cps, p.nc);
  float* DHS = at<float>(sm, m.dhs);
  double* LD = at<double>(sm, m.ld);
  const double* dd = at<double>(sm, m.cd) + kDSlot * DKP;
  const float* mul = at<float>(sm, m.mul);
  state_zero(DHS, m.sh, DKP);
  for (int i = threadIdx.x; i < DKP; i += blockDim.x) LD[i] = 0;
  __syncthreads();
  for (int ch = c1 - 1; ch >= c0; --ch) {
    const int t0 = ch * kC, rows = chunk_rows(p, t0);
    state_to_global(p.Ldc + (bh * p.nc + ch) * P2, DHS, m.sh, DKP, p.DVP);
    for (int i = threadIdx.x; i < DKP; i += blockDim.x)
      p.Ddc[(bh * p.nc + ch) * DKP + i] = expf(float(LD[i]));
    stage_chunk<DKP>(m, sm, p, bh, t0, rows, at<bf16>(sm, m.dO), p.dO);
    prepare<DKP>(m, sm);
    state_step<DKP>(DHS, m.sh, at<float>(sm, m.qb), m.sq, mul + 16 * DKP, p.scale,
                    at<bf16>(sm, m.dO), m.sv, mul + 24 * DKP, p.DVP);
    for (int i = threadIdx.x; i < DKP; i += blockDim.x) LD[i] += dd[3 * DKP + i];
    __syncthreads();
  }
  state_to_global(p.dU + (bh * p.nsp + span) * P2, DHS, m.sh, DKP, p.DVP);
}

// dU[span] (the span's own part) -> dL/dS at each span's end, one thread per element.
__global__ void gla_dscan_kernel(Params p) {
  const int64_t P2 = int64_t(p.DKP) * p.DVP;
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (e >= p.BH * P2) return;
  const int64_t bh = e / P2;
  const int x = int(e % P2), i = x / p.DVP;
  float d = 0.f;
  float* u = p.dU + bh * p.nsp * P2 + x;
  const float* g = p.G + bh * p.nsp * p.DKP + i;
  for (int s0 = p.nsp - 1; s0 >= 0; s0 -= kScanBatch) {  // loads first, so that they overlap
    float local[kScanBatch], gs[kScanBatch];
#pragma unroll
    for (int b = 0; b < kScanBatch; ++b)
      if (s0 - b >= 0) {
        local[b] = u[(s0 - b) * P2];
        gs[b] = g[(s0 - b) * p.DKP];
      }
#pragma unroll
    for (int b = 0; b < kScanBatch; ++b)
      if (s0 - b >= 0) {
        u[(s0 - b) * P2] = d;
        d = gs[b] * d + local[b];
      }
  }
}

// ACC[i] = sum_j S[i,j] dS[i,j] with S and dS at the end of chunk ch (S there is the state
// entering chunk ch + 1): the part of da from the tokens after the chunk. dS is DHS (shared);
// each state row is summed by blockDim / DKP neighbouring lanes in a fixed order.
template <int DKP>
__device__ void later_part(float* ACC, const float* DHS, int sh, const Params& p, int64_t bh,
                           int ch) {
  const int tpr = int(blockDim.x) / DKP, i = threadIdx.x / tpr, part = threadIdx.x % tpr;
  float s = 0.f;
  if (ch + 1 < p.nc) {  // dS = 0 after the last token
    const int nx = ch + 1, span = nx / p.cps;
    const int64_t P2 = int64_t(DKP) * p.DVP, cx = bh * p.nc + nx;
    const float d = p.Dc[cx * DKP + i];
    const float* H = p.U + (bh * (p.nsp + 1) + span) * P2 + int64_t(i) * p.DVP;
    const float* L = p.Lc + cx * P2 + int64_t(i) * p.DVP;
    for (int j = 4 * part; j < p.DVP; j += 4 * tpr) {
      const float4 h = *reinterpret_cast<const float4*>(H + j);
      const float4 l = *reinterpret_cast<const float4*>(L + j);
      const float* g = DHS + i * sh + j;
      s += (d * h.x + l.x) * g[0] + (d * h.y + l.y) * g[1] + (d * h.z + l.z) * g[2] +
           (d * h.w + l.w) * g[3];
    }
  }
  for (int o = 1; o < tpr; o *= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (part == 0) ACC[i] = s;
}

// One chunk: S entering it and dL/dS leaving it are the span's parts decayed plus the chunk's own
// (Dc ⊙ U + Lc, Ddc ⊙ dU + Ldc). With Dk <= 32 two CTAs fit an SM (shared memory and registers).
template <int DKP>
__global__ void __launch_bounds__(kWideThreads, DKP == 32 ? 2 : 1) gla_grads_kernel(Params p) {
  extern __shared__ __align__(16) char sm[];
  const Smem m = smem_layout(DKP, p.DVP, Kind::Grads);
  const int ch = blockIdx.x, span = ch / p.cps, t0 = ch * kC, rows = chunk_rows(p, t0);
  const int64_t bh = blockIdx.y, P2 = int64_t(DKP) * p.DVP, cx = bh * p.nc + ch;
  float* DHS = at<float>(sm, m.dhs);
  // The chunk's tiles first: their cp.async copies are in flight while the states are loaded.
  stage_chunk<DKP>(m, sm, p, bh, t0, rows, at<bf16>(sm, m.v), p.v);
  stage_tile(at<bf16>(sm, m.dO), m.sv, p.dO + voff(p, bh, t0), p.H * p.Dv, rows, p.Dv, p.DVP,
             p.vec);
  state_to_smem(at<float>(sm, m.hs), m.sh, p.U + (bh * (p.nsp + 1) + span) * P2, p.Dc + cx * DKP,
                p.Lc + cx * P2, DKP, p.DVP);
  state_to_smem(DHS, m.sh, p.dU + (bh * p.nsp + span) * P2, p.Ddc + cx * DKP, p.Ldc + cx * P2, DKP,
                p.DVP);
  __syncthreads();
  later_part<DKP>(at<float>(sm, m.acc), DHS, m.sh, p, bh, ch);
  prepare<DKP>(m, sm);  // its barriers publish ACC too
  chunk_grads<DKP>(m, sm, p, bh, t0, rows, ch == 0);
}

// The recurrence itself for N <= kMaxStep tokens, one thread per (b, h, j) and state column j,
// in fp32: S[i,j] = exp(a_t[i]) S[i,j] + k_t[i] v_t[j], o_t[j] = scale sum_i q_t[i] S[i,j]. Each
// thread reads its state column before writing it, so state_in may be state_out; it takes the
// column 8 rows at a time, all loads of a batch before its stores, so that they overlap.
__global__ void gla_step_kernel(bf16* o, float* state_out, const bf16* q, const bf16* k,
                                const bf16* v, const float* a, const float* state_in, int64_t B,
                                int N, int64_t H, int Dk, int Dv, float scale) {
  constexpr int kRows = 8;
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (e >= B * H * Dv) return;
  const int j = int(e % Dv);
  const int64_t bh = e / Dv, b = bh / H, h = bh % H;
  float vt[kMaxStep], acc[kMaxStep];
#pragma unroll
  for (int t = 0; t < kMaxStep; ++t) {
    vt[t] = t < N ? bf(v[((b * N + t) * H + h) * Dv + j]) : 0.f;
    acc[t] = 0.f;
  }
  for (int i0 = 0; i0 < Dk; i0 += kRows) {
    float s[kRows];
#pragma unroll
    for (int u = 0; u < kRows; ++u)
      s[u] = state_in && i0 + u < Dk ? state_in[(bh * Dk + i0 + u) * Dv + j] : 0.f;
#pragma unroll
    for (int t = 0; t < kMaxStep; ++t) {
      if (t >= N) break;
      float g[kRows], kk[kRows], qq[kRows];
#pragma unroll
      for (int u = 0; u < kRows; ++u) {
        const int64_t rk = ((b * N + t) * H + h) * Dk + i0 + u;
        const bool in = i0 + u < Dk;
        g[u] = in ? expf(a[rk]) : 1.f;
        kk[u] = in ? bf(k[rk]) : 0.f;
        qq[u] = in ? bf(q[rk]) : 0.f;
      }
#pragma unroll
      for (int u = 0; u < kRows; ++u) {
        s[u] = g[u] * s[u] + kk[u] * vt[t];
        acc[t] += qq[u] * s[u];
      }
    }
    if (state_out)
#pragma unroll
      for (int u = 0; u < kRows; ++u)
        if (i0 + u < Dk) state_out[(bh * Dk + i0 + u) * Dv + j] = s[u];
  }
#pragma unroll
  for (int t = 0; t < kMaxStep; ++t) {
    if (t >= N) break;
    o[((b * N + t) * H + h) * Dv + j] = __float2bfloat16_rn(acc[t] * scale);
  }
}

// ---- host side --------------------------------------------------------------------------------

int device_attr(cudaDeviceAttr what) {
  int dev = 0, v = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&v, what, dev));
  return v;
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }
bool aligned(const void* ptr, int bytes) { return reinterpret_cast<uintptr_t>(ptr) % bytes == 0; }

Params plan(int64_t B, int64_t N, int64_t H, int64_t Dk, int64_t Dv, double scale) {
  FELA_CHECK(Dk <= 64, "[gla] the CUDA kernels take head widths Dk up to 64, got ", Dk);
  Params p{};
  p.B = B;
  p.N = N;
  p.H = H;
  p.BH = B * H;
  FELA_CHECK(p.BH < 65536, "[gla] B x H = ", p.BH, " exceeds the CUDA kernels' grid");
  p.Dk = int(Dk);
  p.Dv = int(Dv);
  p.DKP = Dk <= 32 ? 32 : 64;
  p.DVP = int((Dv + 31) / 32 * 32);
  p.scale = float(scale);
  p.nc = int((N + kC - 1) / kC);
  return p;
}

// Sets up `kernel` for kind's shared memory; returns how many of its blocks an SM holds at once.
template <class Kernel>
int prepare_launch(Kernel kernel, const Params& p, Kind kind) {
  const Smem m = smem_layout(p.DKP, p.DVP, kind);
  static const int max_smem = device_attr(cudaDevAttrMaxSharedMemoryPerBlockOptin);
  FELA_CHECK(m.bytes <= max_smem, "[gla] Dk ", p.Dk, " x Dv ", p.Dv, " needs ", m.bytes,
             " bytes of shared memory per block; this GPU has ", max_smem);
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, m.bytes));
  int n = 0;
  CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, kWideThreads, m.bytes));
  return std::max(n, 1);
}

// Spans of whole chunks for the recurrences, as many as run in one wave of `per_sm` blocks per SM
// (a second, partial wave would cost as much as the first), but no more than about four blocks
// per SM.
void plan_spans(Params& p, int per_sm) {
  static const int sms = device_attr(cudaDevAttrMultiProcessorCount);
  const int64_t fill = (4 * sms + p.BH - 1) / p.BH, wave = int64_t(per_sm) * sms / p.BH;
  const int64_t want = std::clamp<int64_t>(std::min(fill, wave), 1, p.nc);
  p.cps = int((p.nc + want - 1) / want);
  p.nsp = (p.nc + p.cps - 1) / p.cps;
}

template <class Kernel>
void launch(Kernel kernel, const Params& p, Kind kind, int blocks) {
  prepare_launch(kernel, p, kind);
  kernel<<<dim3(unsigned(blocks), unsigned(p.BH)), kWideThreads,
           smem_layout(p.DKP, p.DVP, kind).bytes, stream()>>>(p);
  CUDA_CHECK_LAUNCH();
}

void launch_scan(void (*kernel)(Params), const Params& p) {
  const int64_t n = p.BH * p.DKP * p.DVP;
  kernel<<<unsigned((n + 255) / 256), 256, 0, stream()>>>(p);
  CUDA_CHECK_LAUNCH();
}

template <int DKP>
void forward_chunked(Params& p) {
  plan_spans(p, prepare_launch(gla_state_kernel<DKP>, p, Kind::State));
  const size_t P2 = size_t(DKP) * p.DVP;
  Scratch U(size_t(p.BH) * (p.nsp + 1) * P2 * sizeof(float));
  Scratch G(size_t(p.BH) * p.nsp * DKP * sizeof(float));
  Scratch Lc(size_t(p.BH) * p.nc * P2 * sizeof(float));
  Scratch Dc(size_t(p.BH) * p.nc * DKP * sizeof(float));
  p.U = U.as<float>();
  p.G = G.as<float>();
  p.Lc = Lc.as<float>();
  p.Dc = Dc.as<float>();
  launch(gla_state_kernel<DKP>, p, Kind::State, p.nsp);
  launch_scan(gla_scan_kernel, p);
  launch(gla_output_kernel<DKP>, p, Kind::Output, p.nc);
}

template <int DKP>
void backward_chunked(Params& p) {
  plan_spans(p, std::min(prepare_launch(gla_state_kernel<DKP>, p, Kind::State),
                         prepare_launch(gla_dstate_kernel<DKP>, p, Kind::DState)));
  const size_t P2 = size_t(DKP) * p.DVP;
  Scratch U(size_t(p.BH) * (p.nsp + 1) * P2 * sizeof(float));
  Scratch G(size_t(p.BH) * p.nsp * DKP * sizeof(float));
  Scratch Lc(size_t(p.BH) * p.nc * P2 * sizeof(float));
  Scratch Dc(size_t(p.BH) * p.nc * DKP * sizeof(float));
  Scratch dU(size_t(p.BH) * p.nsp * P2 * sizeof(float));
  Scratch Ldc(size_t(p.BH) * p.nc * P2 * sizeof(float));
  Scratch Ddc(size_t(p.BH) * p.nc * DKP * sizeof(float));
  p.U = U.as<float>();
  p.G = G.as<float>();
  p.Lc = Lc.as<float>();
  p.Dc = Dc.as<float>();
  p.dU = dU.as<float>();
  p.Ldc = Ldc.as<float>();
  p.Ddc = Ddc.as<float>();
  launch(gla_state_kernel<DKP>, p, Kind::State, p.nsp);
  launch_scan(gla_scan_kernel, p);
  launch(gla_dstate_kernel<DKP>, p, Kind::DState, p.nsp);
  launch_scan(gla_dscan_kernel, p);
  launch(gla_grads_kernel<DKP>, p, Kind::Grads, p.nc);
}

}  // namespace

void gla_forward(BFloat16* o, float* state_out, const BFloat16* q, const BFloat16* k,
                 const BFloat16* v, const float* a, const float* state_in, int64_t B, int64_t N,
                 int64_t H, int64_t Dk, int64_t Dv, double scale) {
  if (B * H == 0) return;
  if (N <= kMaxStep) {
    const int64_t n = B * H * Dv;
    gla_step_kernel<<<unsigned((n + 127) / 128), 128, 0, stream()>>>(
        dev(o), state_out, dev(q), dev(k), dev(v), a, state_in, B, int(N), H, int(Dk), int(Dv),
        float(scale));
    CUDA_CHECK_LAUNCH();
    return;
  }
  Params p = plan(B, N, H, Dk, Dv, scale);
  p.q = dev(q);
  p.k = dev(k);
  p.v = dev(v);
  p.a = a;
  p.o = dev(o);
  p.state_in = state_in;
  p.state_out = state_out;
  p.vec = Dv % 8 == 0 && aligned16(v);
  p.vec_qk = Dk % 8 == 0 && aligned16(q) && aligned16(k);
  p.vec_a = Dk % 4 == 0 && aligned16(a);
  if (p.DKP == 32)
    forward_chunked<32>(p);
  else
    forward_chunked<64>(p);
}

void gla_backward(BFloat16* dq, BFloat16* dk, BFloat16* dv, float* da, const BFloat16* d_o,
                  const BFloat16* q, const BFloat16* k, const BFloat16* v, const float* a,
                  int64_t B, int64_t N, int64_t H, int64_t Dk, int64_t Dv, double scale) {
  if (B * H * N == 0) return;
  Params p = plan(B, N, H, Dk, Dv, scale);
  p.q = dev(q);
  p.k = dev(k);
  p.v = dev(v);
  p.dO = dev(d_o);
  p.a = a;
  p.dq = dev(dq);
  p.dk = dev(dk);
  p.dv = dev(dv);
  p.da = da;
  p.vec = Dv % 8 == 0 && aligned16(v) && aligned16(d_o);
  p.vec_qk = Dk % 8 == 0 && aligned16(q) && aligned16(k);
  p.vec_a = Dk % 4 == 0 && aligned16(a);
  p.pair_v = Dv % 2 == 0 && aligned(p.dv, 4);
  p.pair_k = Dk % 2 == 0 && aligned(p.dq, 4) && aligned(p.dk, 4);
  p.pair_a = Dk % 2 == 0 && aligned(p.da, 8);
  if (p.DKP == 32)
    backward_chunked<32>(p);
  else
    backward_chunked<64>(p);
}

}  // namespace fela::ops::cuda
