// Gated linear attention oracle: the token-by-token recurrence of SPEC §3 and its reverse-mode
// adjoint, plain loops with the state and every sum held in double.
// Token t of head h of batch b starts at ((b N + t) H + h) Dk in q, k, a and at
// ((b N + t) H + h) Dv in v, o.
#include "fela/ops/gla.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace fela::ops::ref {

template <class T>
void gla_forward(T* o, T* state_out, const T* q, const T* k, const T* v, const T* a,
                 const T* state_in, int64_t B, int64_t N, int64_t H, int64_t Dk, int64_t Dv,
                 double scale) {
  std::vector<double> S(size_t(Dk * Dv));  // [Dk, Dv]
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t s0 = (b * H + h) * Dk * Dv;
      // Read the whole initial state before anything is written: state_in may be state_out.
      for (int64_t x = 0; x < Dk * Dv; ++x) S[x] = state_in ? double(state_in[s0 + x]) : 0.0;
      for (int64_t t = 0; t < N; ++t) {
        const int64_t rk = ((b * N + t) * H + h) * Dk, rv = ((b * N + t) * H + h) * Dv;
        for (int64_t i = 0; i < Dk; ++i) {  // S = diag(exp(a_t)) S + k_t^T v_t
          const double g = std::exp(double(a[rk + i])), ki = k[rk + i];
          for (int64_t j = 0; j < Dv; ++j) S[i * Dv + j] = g * S[i * Dv + j] + ki * v[rv + j];
        }
        for (int64_t j = 0; j < Dv; ++j) {  // o_t = (q_t * scale) S
          double acc = 0;
          for (int64_t i = 0; i < Dk; ++i) acc += double(q[rk + i]) * S[i * Dv + j];
          o[rv + j] = T(acc * scale);
        }
      }
      if (state_out)
        for (int64_t x = 0; x < Dk * Dv; ++x) state_out[s0 + x] = T(S[x]);
    }
}

template <class T>
void gla_backward(T* dq, T* dk, T* dv, T* da, const T* d_o, const T* q, const T* k, const T* v,
                  const T* a, int64_t B, int64_t N, int64_t H, int64_t Dk, int64_t Dv,
                  double scale) {
  const int64_t P = Dk * Dv;
  std::vector<double> S(size_t(N * P));            // [N, Dk, Dv]: S_t for every t, from S_{-1} = 0
  std::vector<double> dS(static_cast<size_t>(P));  // [Dk, Dv]: dL/dS_t, all later uses included
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t t = 0; t < N; ++t) {
        const int64_t rk = ((b * N + t) * H + h) * Dk, rv = ((b * N + t) * H + h) * Dv;
        double* St = &S[size_t(t * P)];
        const double* Sp = t ? St - P : nullptr;
        for (int64_t i = 0; i < Dk; ++i) {
          const double g = std::exp(double(a[rk + i])), ki = k[rk + i];
          for (int64_t j = 0; j < Dv; ++j)
            St[i * Dv + j] = (Sp ? g * Sp[i * Dv + j] : 0.0) + ki * v[rv + j];
        }
      }
      std::fill(dS.begin(), dS.end(), 0.0);
      for (int64_t t = N - 1; t >= 0; --t) {
        const int64_t rk = ((b * N + t) * H + h) * Dk, rv = ((b * N + t) * H + h) * Dv;
        const double* St = &S[size_t(t * P)];
        const double* Sp = t ? St - P : nullptr;
        for (int64_t i = 0; i < Dk; ++i)  // readout o_t = (q_t scale) S_t feeds dS_t
          for (int64_t j = 0; j < Dv; ++j) dS[i * Dv + j] += scale * q[rk + i] * d_o[rv + j];
        for (int64_t i = 0; i < Dk; ++i) {
          double gq = 0, gk = 0, gs = 0;
          for (int64_t j = 0; j < Dv; ++j) {
            gq += St[i * Dv + j] * d_o[rv + j];
            gk += dS[i * Dv + j] * v[rv + j];
            if (Sp) gs += Sp[i * Dv + j] * dS[i * Dv + j];
          }
          const double g = std::exp(double(a[rk + i]));
          dq[rk + i] = T(scale * gq);
          dk[rk + i] = T(gk);
          da[rk + i] = T(g * gs);  // d/da of exp(a) S_{t-1}
        }
        for (int64_t j = 0; j < Dv; ++j) {
          double gv = 0;
          for (int64_t i = 0; i < Dk; ++i) gv += double(k[rk + i]) * dS[i * Dv + j];
          dv[rv + j] = T(gv);
        }
        for (int64_t i = 0; i < Dk; ++i) {  // dS_{t-1} = diag(exp(a_t)) dS_t (+ its readout)
          const double g = std::exp(double(a[rk + i]));
          for (int64_t j = 0; j < Dv; ++j) dS[i * Dv + j] *= g;
        }
      }
    }
}

FELA_INSTANTIATE_FLOAT(gla_forward)
FELA_INSTANTIATE_FLOAT(gla_backward)

}  // namespace fela::ops::ref
