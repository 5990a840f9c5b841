// RoPE and causal GQA attention on the CPU, with OpenMP.
//
// RoPE builds a cos/sin table [N, Dh/2] once per call (angles in double) and rotates rows in
// parallel. Attention works on blocks of kRows query rows of one head (or kRows keys of one kv
// head in backward), each block in one thread, with a small register-tiled matrix product
// (tile_gemm). K and V are first repacked per kv head (K transposed, so that scores come out as
// rows of contiguous keys). Forward, per block: S = q k^T over the visible keys, a
// max-subtracted softmax per row, o = P v, and lse saved. Backward runs two passes that each
// recompute P from lse, so that no two threads ever write the same row and no reduction
// buffers are needed:
//   pass 1, over query blocks (b, h):  dS = P * (do v^T - D),  dq = scale dS k
//   pass 2, over key blocks (b, g):    dk = scale dS^T q,  dv = P^T do, summed over the query
//                                       heads of kv head g and the queries that see the keys.
// Each output element is summed in a fixed order, so results do not depend on the thread count.
// Probability dropout (attention.h) is a compile-time switch of both kernels, chosen once per
// call: without it the code is plain attention; with it each P_nj is masked where it is formed,
// from the counter-based hash of dropout.h (in forward, 1 / (1 - p) joins the row's 1 / sum).
#include "fela/ops/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "fela/ops/dropout.h"

namespace fela::ops::cpu {

// Below this many multiply-adds (or values moved) a loop runs in the calling thread: waking a
// team costs more than it saves, and decode steps and tests make many small calls.
constexpr int64_t kParallelWork = int64_t(1) << 16;

// cos/sin tables [N, Dh/2] for positions pos0 + n, computed in double.
template <class T>
static void rope_table(std::vector<T>& cs, std::vector<T>& sn, int64_t N, int64_t Dh, int64_t pos0,
                       double theta) {
  const int64_t half = Dh / 2;
  std::vector<double> w(half);
  for (int64_t i = 0; i < half; ++i) w[i] = std::pow(theta, -2.0 * double(i) / double(Dh));
  cs.resize(size_t(N * half));
  sn.resize(size_t(N * half));
#pragma omp parallel for schedule(static) if (N * Dh >= kParallelWork)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < half; ++i) {
      const double ang = double(pos0 + n) * w[i];
      cs[n * half + i] = T(std::cos(ang));
      sn[n * half + i] = T(std::sin(ang));
    }
}

// out = R(sign * angle) in, per head; out may alias in (each pair is read before written).
template <class T>
static void rope_apply(T* out, const T* in, int64_t B, int64_t N, int64_t H, int64_t Dh,
                       int64_t pos0, double theta, T sign) {
  const int64_t half = Dh / 2;
  std::vector<T> cs, sn;
  rope_table(cs, sn, N, Dh, pos0, theta);
#pragma omp parallel for collapse(2) schedule(static) if (B * N * H * Dh >= kParallelWork)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < N; ++n) {
      const T *c = cs.data() + n * half, *s = sn.data() + n * half;
      for (int64_t h = 0; h < H; ++h) {
        const int64_t row = ((b * N + n) * H + h) * Dh;
        const T* x = in + row;
        T* y = out + row;
        for (int64_t i = 0; i < half; ++i) {
          const T x1 = x[i], x2 = x[i + half], si = sign * s[i];
          y[i] = x1 * c[i] - x2 * si;
          y[i + half] = x2 * c[i] + x1 * si;
        }
      }
    }
}

template <class T>
void rope_forward(T* y, const T* x, int64_t B, int64_t N, int64_t H, int64_t Dh, int64_t pos0,
                  double theta) {
  rope_apply(y, x, B, N, H, Dh, pos0, theta, T(1));
}

template <class T>
void rope_backward(T* dx, const T* dy, int64_t B, int64_t N, int64_t H, int64_t Dh, int64_t pos0,
                   double theta) {
  rope_apply(dx, dy, B, N, H, Dh, pos0, theta, T(-1));
}

// Query rows (or keys) per block. A block's scores [kRows, Nk] take 512 KiB (float) at Nk = 4096.
constexpr int64_t kRows = 32;
// Rows of a register tile: MR accumulators of one 64-byte vector each. Eight hide the FMA
// latency with AVX-512's 32 registers; with AVX2 a row takes two registers of 16, so four.
#if defined(__AVX512F__)
constexpr int kTileRows = 8;
#else
constexpr int kTileRows = 4;
#endif

// One MR x NR tile of C = A B (or C += A B), K deep, NR = one cache line of B. The MR x NR
// accumulators live in registers; each step broadcasts MR values of A against one row of B.
template <int MR, class T>
static inline void tile(int64_t K, const T* A, int64_t ars, int64_t acs, const T* B, int64_t ldb,
                        T* C, int64_t ldc, bool accumulate) {
  constexpr int NR = 64 / sizeof(T);
  T c[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int x = 0; x < NR; ++x) c[r][x] = T(0);
  for (int64_t p = 0; p < K; ++p) {
    const T* b = B + p * ldb;
    for (int r = 0; r < MR; ++r) {
      const T a = A[r * ars + p * acs];
#pragma omp simd
      for (int x = 0; x < NR; ++x) c[r][x] += a * b[x];
    }
  }
  for (int r = 0; r < MR; ++r)
#pragma omp simd
    for (int x = 0; x < NR; ++x) C[r * ldc + x] = (accumulate ? C[r * ldc + x] : T(0)) + c[r][x];
}

// The same for the last nr < NR columns, in plain loops.
template <int MR, class T>
static void tile_edge(int64_t nr, int64_t K, const T* A, int64_t ars, int64_t acs, const T* B,
                      int64_t ldb, T* C, int64_t ldc, bool accumulate) {
  for (int r = 0; r < MR; ++r)
    for (int64_t x = 0; x < nr; ++x) {
      T c = 0;
      for (int64_t p = 0; p < K; ++p) c += A[r * ars + p * acs] * B[p * ldb + x];
      C[r * ldc + x] = (accumulate ? C[r * ldc + x] : T(0)) + c;
    }
}

// Rows [i, M) of C in tiles of MR rows, as far as whole tiles go; returns the next row.
template <int MR, class T>
static int64_t tile_rows(int64_t i, int64_t M, int64_t N, int64_t K, const T* A, int64_t ars,
                         int64_t acs, const T* B, int64_t ldb, T* C, int64_t ldc, bool accumulate) {
  constexpr int64_t NR = 64 / sizeof(T);
  for (; i + MR <= M; i += MR) {
    int64_t j = 0;
    for (; j + NR <= N; j += NR)
      tile<MR>(K, A + i * ars, ars, acs, B + j, ldb, C + i * ldc + j, ldc, accumulate);
    if (j < N)
      tile_edge<MR>(N - j, K, A + i * ars, ars, acs, B + j, ldb, C + i * ldc + j, ldc, accumulate);
  }
  return i;
}

// C [M, N] = A [M, K] B [K, N], or C += A B when accumulate. Element (i, p) of A is
// A[i * ars + p * acs], so a transposed A is a swap of strides; B and C are row-major with
// leading dimensions ldb and ldc. Sizes here are one block, so this runs inside one thread.
template <class T>
static void tile_gemm(int64_t M, int64_t N, int64_t K, const T* A, int64_t ars, int64_t acs,
                      const T* B, int64_t ldb, T* C, int64_t ldc, bool accumulate) {
  int64_t i = tile_rows<kTileRows>(0, M, N, K, A, ars, acs, B, ldb, C, ldc, accumulate);
  i = tile_rows<4>(i, M, N, K, A, ars, acs, B, ldb, C, ldc, accumulate);
  tile_rows<1>(i, M, N, K, A, ars, acs, B, ldb, C, ldc, accumulate);
}

// x [B, Nk, Hkv, Dh] repacked per (batch, kv head) as a row-major matrix, transposed
// [Dh, Nk] (keys contiguous, for q k^T) or as is [Nk, Dh] (contiguous rows, for P v). The
// leading dimension ld is an odd number of cache lines, so that the rows a tile walks down
// fall in different L1 sets (a power-of-two stride makes them all collide).
template <class T>
struct Packed {
  std::vector<T> data;
  int64_t rows = 0, ld = 0, Hkv = 0;
  const T* head(int64_t b, int64_t g) const { return data.data() + (b * Hkv + g) * rows * ld; }
};

template <class T>
static Packed<T> pack(const T* x, int64_t B, int64_t Nk, int64_t Hkv, int64_t Dh, bool transpose) {
  constexpr int64_t line = 64 / sizeof(T);
  Packed<T> p;
  const int64_t cols = transpose ? Nk : Dh, lines = (cols + line - 1) / line;
  p.rows = transpose ? Dh : Nk;
  p.ld = (lines | 1) * line;
  p.Hkv = Hkv;
  p.data.assign(size_t(B * Hkv * p.rows * p.ld), T(0));
#pragma omp parallel for collapse(2) schedule(static) if (B * Nk * Hkv * Dh >= kParallelWork)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t g = 0; g < Hkv; ++g) {
      T* dst = p.data.data() + (b * Hkv + g) * p.rows * p.ld;
      for (int64_t j = 0; j < Nk; ++j) {
        const T* src = x + ((b * Nk + j) * Hkv + g) * Dh;
        for (int64_t e = 0; e < Dh; ++e)
          (transpose ? dst[e * p.ld + j] : dst[j * p.ld + e]) = src[e];
      }
    }
  return p;
}

// The dropout mask of one call: element ((b H + h) Nq + n) Nk + j of the [B, H, Nq, Nk]
// probabilities is kept with probability 1 - p and then scaled by ks = 1 / (1 - p).
template <class T>
struct DropMask {
  double p;
  uint64_t seed;
  T ks;
  bool keep(int64_t index) const { return dropout_keep(seed, uint64_t(index), p); }
};

template <bool kDrop, class T>
static void forward_impl(T* o, T* lse, const T* q, const T* k, const T* v, int64_t B, int64_t Nq,
                         int64_t Nk, int64_t H, int64_t Hkv, int64_t Dh, double scale,
                         const DropMask<T>& drop) {
  const int64_t group = H / Hkv, off = Nk - Nq, qs = H * Dh;  // qs: stride between q tokens
  const int64_t blocks = (Nq + kRows - 1) / kRows;
  const T sc = T(scale);
  const Packed<T> kt = pack(k, B, Nk, Hkv, Dh, true), vp = pack(v, B, Nk, Hkv, Dh, false);
#pragma omp parallel if (B * H * Nq * Nk * Dh >= kParallelWork)
  {
    std::vector<T> S(size_t(kRows * Nk));  // [m, kend]: scores, then probabilities
    std::vector<double> inv(kRows);        // 1 / row sums
#pragma omp for collapse(3) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t blk = 0; blk < blocks; ++blk) {
          const int64_t n0 = blk * kRows, m = std::min(kRows, Nq - n0);
          const int64_t kend = off + n0 + m;  // keys that some row of the block sees
          const int64_t g = h / group, qi = (b * Nq + n0) * qs + h * Dh;  // row n0 of head h
          tile_gemm(m, kend, Dh, q + qi, qs, 1, kt.head(b, g), kt.ld, S.data(), kend, false);
          for (int64_t r = 0; r < m; ++r) {
            T* row = S.data() + r * kend;
            const int64_t cnt = off + n0 + r + 1;  // keys 0 .. off + n0 + r
            T mx = -std::numeric_limits<T>::infinity();
            for (int64_t j = 0; j < cnt; ++j) mx = std::max(mx, row[j] * sc);
            double sum = 0;
            for (int64_t j = 0; j < cnt; ++j) {
              row[j] = std::exp(row[j] * sc - mx);
              sum += row[j];
            }
            std::fill(row + cnt, row + kend, T(0));  // the causal mask
            inv[r] = 1.0 / sum;
            lse[(b * H + h) * Nq + n0 + r] = T(double(mx) + std::log(sum));
            if constexpr (kDrop) {  // P' = P keep / (1 - p): zero the dropped, rescale with inv
              const int64_t base = ((b * H + h) * Nq + n0 + r) * Nk;
              for (int64_t j = 0; j < cnt; ++j)
                if (!drop.keep(base + j)) row[j] = T(0);
              inv[r] /= 1.0 - drop.p;
            }
          }
          T* ob = o + qi;
          tile_gemm(m, Dh, kend, S.data(), kend, 1, vp.head(b, g), vp.ld, ob, qs, false);
          for (int64_t r = 0; r < m; ++r)
            for (int64_t e = 0; e < Dh; ++e) ob[r * qs + e] = T(ob[r * qs + e] * inv[r]);
        }
  }
}

// With dropout, dP' = do v^T is what the products give; the mask turns it into dP = dP' M
// (M = keep / (1 - p)) before dS = P (dP - D), and pass 2 multiplies do by P' = P M for dv.
template <bool kDrop, class T>
static void backward_impl(T* dq, T* dk, T* dv, const T* d_o, const T* q, const T* k, const T* v,
                          const T* o, const T* lse, int64_t B, int64_t Nq, int64_t Nk, int64_t H,
                          int64_t Hkv, int64_t Dh, double scale, const DropMask<T>& drop) {
  const int64_t group = H / Hkv, off = Nk - Nq;
  const int64_t qs = H * Dh, ks = Hkv * Dh;  // strides between tokens of q and of k
  const T sc = T(scale);
  const Packed<T> kt = pack(k, B, Nk, Hkv, Dh, true), vt = pack(v, B, Nk, Hkv, Dh, true);
  const Packed<T> kp = pack(k, B, Nk, Hkv, Dh, false);
  // Dd [B, H, Nq]: D_n = do_n . o_n = sum_j P_nj dP_nj, laid out like lse.
  std::vector<T> Dd(size_t(B * H * Nq));
#pragma omp parallel for collapse(3) schedule(static) if (B * H * Nq * Dh >= kParallelWork)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t n = 0; n < Nq; ++n) {
        const T *don = d_o + (b * Nq + n) * qs + h * Dh, *on = o + (b * Nq + n) * qs + h * Dh;
        T s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t e = 0; e < Dh; ++e) s += don[e] * on[e];
        Dd[(b * H + h) * Nq + n] = s;
      }

  const int64_t qblocks = (Nq + kRows - 1) / kRows, kblocks = (Nk + kRows - 1) / kRows;
#pragma omp parallel if (B * H * Nq * Nk * Dh >= kParallelWork)
  {
    std::vector<T> S(size_t(kRows * Nk)), dP(size_t(kRows * Nk));
    // Pass 1: dq for a block of query rows [n0, n0 + m) of head h; S, dP [m, kend].
#pragma omp for collapse(3) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t blk = 0; blk < qblocks; ++blk) {
          const int64_t n0 = blk * kRows, m = std::min(kRows, Nq - n0), kend = off + n0 + m;
          const int64_t g = h / group, qi = (b * Nq + n0) * qs + h * Dh;  // row n0 of head h
          const T *lh = lse + (b * H + h) * Nq + n0, *Dn = Dd.data() + (b * H + h) * Nq + n0;
          tile_gemm(m, kend, Dh, q + qi, qs, 1, kt.head(b, g), kt.ld, S.data(), kend, false);
          tile_gemm(m, kend, Dh, d_o + qi, qs, 1, vt.head(b, g), vt.ld, dP.data(), kend, false);
          for (int64_t r = 0; r < m; ++r) {
            const int64_t cnt = off + n0 + r + 1;
            T *s = S.data() + r * kend, *dp = dP.data() + r * kend;
            if constexpr (kDrop) {
              const int64_t base = ((b * H + h) * Nq + n0 + r) * Nk;
              for (int64_t j = 0; j < cnt; ++j) {
                const T dpj = drop.keep(base + j) ? dp[j] * drop.ks : T(0);  // dP = dP' M
                s[j] = sc * std::exp(s[j] * sc - lh[r]) * (dpj - Dn[r]);
              }
            } else {
              for (int64_t j = 0; j < cnt; ++j)  // scale * dS, kept in S
                s[j] = sc * std::exp(s[j] * sc - lh[r]) * (dp[j] - Dn[r]);
            }
            std::fill(s + cnt, s + kend, T(0));
          }
          tile_gemm(m, Dh, kend, S.data(), kend, 1, kp.head(b, g), kp.ld, dq + qi, qs, false);
        }
#pragma omp for collapse(3) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t g = 0; g < Hkv; ++g)
        for (int64_t blk = 0; blk < kblocks; ++blk) {
          // Pass 2: dk, dv for a block of keys [j0, j0 + w) of kv head g, against the queries
          // n >= j0 - off (the first that sees key j0) of each head of the group; S, dP [m, w].
          const int64_t j0 = blk * kRows, w = std::min(kRows, Nk - j0);
          const int64_t ki = (b * Nk + j0) * ks + g * Dh;  // key j0 of kv head g in dk, dv
          for (int64_t j = 0; j < w; ++j)
            for (int64_t e = 0; e < Dh; ++e) dk[ki + j * ks + e] = dv[ki + j * ks + e] = T(0);
          for (int64_t h = g * group; h < (g + 1) * group; ++h)
            for (int64_t n0 = std::max<int64_t>(0, j0 - off); n0 < Nq; n0 += kRows) {
              const int64_t m = std::min(kRows, Nq - n0), qi = (b * Nq + n0) * qs + h * Dh;
              const T *lh = lse + (b * H + h) * Nq + n0, *Dn = Dd.data() + (b * H + h) * Nq + n0;
              tile_gemm(m, w, Dh, q + qi, qs, 1, kt.head(b, g) + j0, kt.ld, S.data(), w, false);
              tile_gemm(m, w, Dh, d_o + qi, qs, 1, vt.head(b, g) + j0, vt.ld, dP.data(), w, false);
              for (int64_t r = 0; r < m; ++r) {
                const int64_t cnt = std::min(w, off + n0 + r + 1 - j0);  // >= 1 by the choice of n0
                T *s = S.data() + r * w, *dp = dP.data() + r * w;
                if constexpr (kDrop) {
                  const int64_t base = ((b * H + h) * Nq + n0 + r) * Nk + j0;
                  for (int64_t c = 0; c < cnt; ++c) {
                    const T P = std::exp(s[c] * sc - lh[r]);
                    const bool kept = drop.keep(base + c);
                    s[c] = kept ? P * drop.ks : T(0);                            // P'
                    dp[c] = sc * P * ((kept ? dp[c] * drop.ks : T(0)) - Dn[r]);  // scale * dS
                  }
                } else {
                  for (int64_t c = 0; c < cnt; ++c) {
                    s[c] = std::exp(s[c] * sc - lh[r]);   // P
                    dp[c] = sc * s[c] * (dp[c] - Dn[r]);  // scale * dS
                  }
                }
                std::fill(s + cnt, s + w, T(0));
                std::fill(dp + cnt, dp + w, T(0));
              }
              // dk [w, Dh] += (scale dS)^T q,  dv [w, Dh] += P^T do (transposes by strides)
              tile_gemm(w, Dh, m, dP.data(), 1, w, q + qi, qs, dk + ki, ks, true);
              tile_gemm(w, Dh, m, S.data(), 1, w, d_o + qi, qs, dv + ki, ks, true);
            }
        }
  }
}

template <class T>
void attention_forward(T* o, T* lse, const T* q, const T* k, const T* v, int64_t B, int64_t Nq,
                       int64_t Nk, int64_t H, int64_t Hkv, int64_t Dh, double scale,
                       double dropout_p, uint64_t dropout_seed) {
  const DropMask<T> drop{dropout_p, dropout_seed, T(1.0 / (1.0 - dropout_p))};
  if (dropout_p > 0)
    forward_impl<true>(o, lse, q, k, v, B, Nq, Nk, H, Hkv, Dh, scale, drop);
  else
    forward_impl<false>(o, lse, q, k, v, B, Nq, Nk, H, Hkv, Dh, scale, drop);
}

template <class T>
void attention_backward(T* dq, T* dk, T* dv, const T* d_o, const T* q, const T* k, const T* v,
                        const T* o, const T* lse, int64_t B, int64_t Nq, int64_t Nk, int64_t H,
                        int64_t Hkv, int64_t Dh, double scale, double dropout_p,
                        uint64_t dropout_seed) {
  const DropMask<T> drop{dropout_p, dropout_seed, T(1.0 / (1.0 - dropout_p))};
  if (dropout_p > 0)
    backward_impl<true>(dq, dk, dv, d_o, q, k, v, o, lse, B, Nq, Nk, H, Hkv, Dh, scale, drop);
  else
    backward_impl<false>(dq, dk, dv, d_o, q, k, v, o, lse, B, Nq, Nk, H, Hkv, Dh, scale, drop);
}

FELA_INSTANTIATE_FLOAT(rope_forward)
FELA_INSTANTIATE_FLOAT(rope_backward)
FELA_INSTANTIATE_FLOAT(attention_forward)
FELA_INSTANTIATE_FLOAT(attention_backward)

}  // namespace fela::ops::cpu
