// Gated linear attention on the CPU in chunked form (Yang et al. 2024, as fla's chunk_gla).
// Within a chunk of L <= C tokens, b_t = a_{t0} + ... + a_t is the in-chunk cumulative log decay
// (per key dim); with S the state entering the chunk:
//   o_t   = (q_t scale exp(b_t)) S  +  sum_{s<=t} A[t,s] v_s,
//   A[t,s] = scale sum_i q_t[i] k_s[i] exp(b_t[i] - b_s[i])
//   S'    = diag(exp(b_L)) S + sum_s (k_s exp(b_L - b_s))^T v_s          (b_L: last token's b)
// Every decay factor is exp of a difference that is <= 0 when a <= 0, never a ratio of
// exponentials, so strong decay underflows to 0 instead of overflowing. b is kept in double so
// that differences of large cumulative sums stay accurate in the float path.
// Backward walks the chunks in reverse carrying dS = dL/dS' and uses, for the log decay, the
// identity dL/dB_t = q_t dq_t - k_t dk_t (B_t the cumulative log decay from the sequence start,
// zero initial state), so da_r = sum_{t>=r} (q_t dq_t - k_t dk_t): an in-chunk reverse cumulative
// sum plus sum_{t after the chunk} of the same, which equals sum_j S'[i,j] dS[i,j].
// Matrix products go to BLAS; (batch, head) pairs run in parallel under OpenMP.
#include "fela/ops/gla.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace fela::ops::cpu {

namespace {

// Row-major C = op(A) op(B) + beta C.
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
          const float* Bm, int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(M),
              int(N), int(K), 1.0f, A, int(lda), Bm, int(ldb), beta, C, int(ldc));
}
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const double* A, int64_t lda,
          const double* Bm, int64_t ldb, double beta, double* C, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(M),
              int(N), int(K), 1.0, A, int(lda), Bm, int(ldb), beta, C, int(ldc));
}

// One thread's buffers for one chunk of one head.
template <class T>
struct ChunkWork {
  int64_t Dk;
  std::vector<double> bc;  // [C, Dk] in-chunk cumulative log decay b
  std::vector<T> qg;       // [C, Dk] q_t scale exp(b_t)
  std::vector<T> kd;       // [C, Dk] k_s exp(b_L - b_s)
  std::vector<T> A;        // [C, C] intra-chunk scores, zero above the diagonal
  std::vector<T> gL;       // [Dk] exp(b_L): decay over the whole chunk

  ChunkWork(int64_t C, int64_t Dk_)
      : Dk(Dk_),
        bc(size_t(C * Dk)),
        qg(size_t(C * Dk)),
        kd(size_t(C * Dk)),
        A(size_t(C * C)),
        gL(static_cast<size_t>(Dk)) {}

  // Fills bc, qg, kd, gL for L tokens at q, k, a (consecutive tokens ld apart).
  void decay(int64_t L, const T* q, const T* k, const T* a, int64_t ld, double scale) {
    for (int64_t i = 0; i < Dk; ++i) bc[i] = a[i];
    for (int64_t t = 1; t < L; ++t)
      for (int64_t i = 0; i < Dk; ++i) bc[t * Dk + i] = bc[(t - 1) * Dk + i] + a[t * ld + i];
    const double* bL = &bc[(L - 1) * Dk];
    for (int64_t t = 0; t < L; ++t)
      for (int64_t i = 0; i < Dk; ++i) {
        const double bt = bc[t * Dk + i];
        qg[t * Dk + i] = T(q[t * ld + i] * scale * std::exp(bt));
        kd[t * Dk + i] = T(k[t * ld + i] * std::exp(bL[i] - bt));
      }
    for (int64_t i = 0; i < Dk; ++i) gL[i] = T(std::exp(bL[i]));
  }
};

// Whether a call has enough work (multiply-adds, about) to pay for waking a thread team: small
// calls such as generation's one-token steps run on the calling thread.
bool parallel_worth(int64_t B, int64_t N, int64_t H, int64_t Dk, int64_t Dv, int64_t C) {
  return B * H > 1 && B * H * N * Dk * (Dv + C) >= (int64_t(1) << 17);
}

// exp(b_t - b_s) in the working precision (float exp for the float path).
template <class T>
inline T decay_factor(double bt, double bs) {
  return std::exp(T(bt - bs));
}

}  // namespace

template <class T>
void gla_forward(T* o, T* state_out, const T* q, const T* k, const T* v, const T* a,
                 const T* state_in, int64_t B, int64_t N, int64_t H, int64_t Dk, int64_t Dv,
                 double scale, int64_t chunk) {
  const int64_t ldk = H * Dk, ldv = H * Dv, P = Dk * Dv;
  const int64_t C = std::max<int64_t>(1, std::min(chunk, N));
#pragma omp parallel if (parallel_worth(B, N, H, Dk, Dv, C))
  {
    ChunkWork<T> w(C, Dk);
    std::vector<T> S(static_cast<size_t>(P));  // [Dk, Dv] state entering the current chunk
#pragma omp for schedule(dynamic)
    for (int64_t bh = 0; bh < B * H; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const int64_t rk = b * N * ldk + h * Dk, rv = b * N * ldv + h * Dv;  // token 0 of head
      // The whole initial state is read before anything is written: state_in may be state_out.
      for (int64_t x = 0; x < P; ++x) S[x] = state_in ? state_in[bh * P + x] : T(0);
      for (int64_t t0 = 0; t0 < N; t0 += C) {
        const int64_t L = std::min(C, N - t0);
        const T *qc = q + rk + t0 * ldk, *kc = k + rk + t0 * ldk, *ac = a + rk + t0 * ldk;
        const T* vc = v + rv + t0 * ldv;  // [L, Dv], row stride ldv
        T* oc = o + rv + t0 * ldv;        // [L, Dv], row stride ldv
        w.decay(L, qc, kc, ac, ldk, scale);
        gemm(false, false, L, Dv, Dk, w.qg.data(), Dk, S.data(), Dv, T(0), oc, ldv);  // inter
        for (int64_t t = 0; t < L; ++t) {
          const double* bt = &w.bc[t * Dk];
          for (int64_t s = 0; s <= t; ++s) {
            const double* bs = &w.bc[s * Dk];
            T acc = 0;
            for (int64_t i = 0; i < Dk; ++i)
              acc += qc[t * ldk + i] * kc[s * ldk + i] * decay_factor<T>(bt[i], bs[i]);
            w.A[t * L + s] = T(scale) * acc;
          }
          for (int64_t s = t + 1; s < L; ++s) w.A[t * L + s] = 0;
        }
        gemm(false, false, L, Dv, L, w.A.data(), L, vc, ldv, T(1), oc, ldv);  // intra
        for (int64_t i = 0; i < Dk; ++i)
          for (int64_t j = 0; j < Dv; ++j) S[i * Dv + j] *= w.gL[i];
        gemm(true, false, Dk, Dv, L, w.kd.data(), Dk, vc, ldv, T(1), S.data(), Dv);
      }
      if (state_out)
        for (int64_t x = 0; x < P; ++x) state_out[bh * P + x] = S[x];
    }
  }
}

template <class T>
void gla_backward(T* dq, T* dk, T* dv, T* da, const T* d_o, const T* q, const T* k, const T* v,
                  const T* a, int64_t B, int64_t N, int64_t H, int64_t Dk, int64_t Dv, double scale,
                  int64_t chunk) {
  if (N == 0) return;
  const int64_t ldk = H * Dk, ldv = H * Dv, P = Dk * Dv;
  const int64_t C = std::max<int64_t>(1, std::min(chunk, N));
  const int64_t nc = (N + C - 1) / C;
#pragma omp parallel if (parallel_worth(B, N, H, Dk, Dv, C))
  {
    ChunkWork<T> w(C, Dk);
    std::vector<T> Sc(size_t(nc * P));          // [nc, Dk, Dv] state entering each chunk
    std::vector<T> dS(static_cast<size_t>(P));  // [Dk, Dv] dL/d(state leaving the current chunk)
    std::vector<T> dA(size_t(C * C));           // [C, C] dA[t,s] = do_t . v_s
    std::vector<T> dQ(size_t(C * Dk)), dK(size_t(C * Dk));  // [C, Dk]
    std::vector<double> acc(static_cast<size_t>(Dk));       // [Dk] running sum for da
#pragma omp for schedule(dynamic)
    for (int64_t bh = 0; bh < B * H; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const int64_t rk = b * N * ldk + h * Dk, rv = b * N * ldv + h * Dv;  // token 0 of head

      // Recompute the state entering every chunk, from zero.
      std::fill(Sc.begin(), Sc.begin() + P, T(0));
      for (int64_t c = 0; c + 1 < nc; ++c) {
        const int64_t t0 = c * C, L = C;  // never the last, so never short
        w.decay(L, q + rk + t0 * ldk, k + rk + t0 * ldk, a + rk + t0 * ldk, ldk, scale);
        const T* Sp = &Sc[c * P];
        T* Sn = &Sc[(c + 1) * P];
        for (int64_t i = 0; i < Dk; ++i)
          for (int64_t j = 0; j < Dv; ++j) Sn[i * Dv + j] = w.gL[i] * Sp[i * Dv + j];
        gemm(true, false, Dk, Dv, L, w.kd.data(), Dk, v + rv + t0 * ldv, ldv, T(1), Sn, Dv);
      }

      std::fill(dS.begin(), dS.end(), T(0));
      for (int64_t c = nc - 1; c >= 0; --c) {
        const int64_t t0 = c * C, L = std::min(C, N - t0);
        const T *qc = q + rk + t0 * ldk, *kc = k + rk + t0 * ldk, *ac = a + rk + t0 * ldk;
        const T *vc = v + rv + t0 * ldv, *doc = d_o + rv + t0 * ldv;  // [L, Dv]
        T *dqc = dq + rk + t0 * ldk, *dkc = dk + rk + t0 * ldk, *dac = da + rk + t0 * ldk;
        T* dvc = dv + rv + t0 * ldv;
        const T* Sp = &Sc[c * P];
        w.decay(L, qc, kc, ac, ldk, scale);

        // Tokens after this chunk contribute sum_j S'[i,j] dS[i,j] to every da in it.
        for (int64_t i = 0; i < Dk; ++i) {
          double s = 0;
          if (c + 1 < nc)
            for (int64_t j = 0; j < Dv; ++j)
              s += double(Sc[(c + 1) * P + i * Dv + j]) * dS[i * Dv + j];
          acc[i] = s;
        }

        gemm(false, true, L, L, Dv, doc, ldv, vc, ldv, T(0), dA.data(), L);  // dA = dO V^T
        // Inter-chunk parts: dq_t = scale exp(b_t) (S do_t^T), dk_s = exp(b_L - b_s) (dS v_s^T).
        gemm(false, true, L, Dk, Dv, doc, ldv, Sp, Dv, T(0), dQ.data(), Dk);
        gemm(false, true, L, Dk, Dv, vc, ldv, dS.data(), Dv, T(0), dK.data(), Dk);
        const double* bL = &w.bc[(L - 1) * Dk];
        for (int64_t t = 0; t < L; ++t)
          for (int64_t i = 0; i < Dk; ++i) {
            const double bt = w.bc[t * Dk + i];
            dQ[t * Dk + i] *= T(scale * std::exp(bt));
            dK[t * Dk + i] *= T(std::exp(bL[i] - bt));
          }
        // Intra-chunk: scores A (for dv) and their adjoints into dq, dk, one decay factor each.
        for (int64_t t = 0; t < L; ++t) {
          const double* bt = &w.bc[t * Dk];
          const T* qt = qc + t * ldk;
          T* dqt = &dQ[t * Dk];
          for (int64_t s = 0; s <= t; ++s) {
            const double* bs = &w.bc[s * Dk];
            const T* ks = kc + s * ldk;
            T* dks = &dK[s * Dk];
            const T g = T(scale) * dA[t * L + s];
            T sc = 0;
            for (int64_t i = 0; i < Dk; ++i) {
              const T e = decay_factor<T>(bt[i], bs[i]);
              sc += qt[i] * ks[i] * e;
              dqt[i] += g * ks[i] * e;
              dks[i] += g * qt[i] * e;
            }
            w.A[t * L + s] = T(scale) * sc;
          }
          for (int64_t s = t + 1; s < L; ++s) w.A[t * L + s] = 0;
        }
        // dv_s = sum_{t>=s} A[t,s] do_t + (k_s exp(b_L - b_s)) dS
        gemm(true, false, L, Dv, L, w.A.data(), L, doc, ldv, T(0), dvc, ldv);
        gemm(false, false, L, Dv, Dk, w.kd.data(), Dk, dS.data(), Dv, T(1), dvc, ldv);

        for (int64_t t = L - 1; t >= 0; --t)
          for (int64_t i = 0; i < Dk; ++i) {
            const T qi = qc[t * ldk + i], ki = kc[t * ldk + i];
            acc[i] += double(qi) * dQ[t * Dk + i] - double(ki) * dK[t * Dk + i];
            dac[t * ldk + i] = T(acc[i]);
            dqc[t * ldk + i] = dQ[t * Dk + i];
            dkc[t * ldk + i] = dK[t * Dk + i];
          }
        // a_0 only decays the zero initial state: its gradient is exactly 0, where the sum
        // above leaves rounding noise of the size of the other terms.
        if (c == 0)
          for (int64_t i = 0; i < Dk; ++i) dac[i] = T(0);

        // dS for the previous chunk: diag(exp(b_L)) dS + (q scale exp(b))^T dO.
        for (int64_t i = 0; i < Dk; ++i)
          for (int64_t j = 0; j < Dv; ++j) dS[i * Dv + j] *= w.gL[i];
        gemm(true, false, Dk, Dv, L, w.qg.data(), Dk, doc, ldv, T(1), dS.data(), Dv);
      }
    }
  }
}

FELA_INSTANTIATE_FLOAT(gla_forward)
FELA_INSTANTIATE_FLOAT(gla_backward)

}  // namespace fela::ops::cpu
