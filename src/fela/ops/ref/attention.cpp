// RoPE and causal GQA attention oracle: plain loops straight from attention.h, double
// accumulation, angles in double. Never optimised; the cpu kernels and tests compare to it.
// Probability dropout multiplies each P_nj by its mask factor keep / (1 - p), looked up per
// element from the counter-based hash of dropout.h.
#include "fela/ops/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "fela/ops/dropout.h"

namespace fela::ops::ref {

// Rotates every pair (i, i + Dh/2) of every head by angle p * theta^(-2i/Dh), p = pos0 + n;
// sign = -1 rotates backwards (the transpose). out may alias in: both halves are read first.
template <class T>
static void rope_rotate(T* out, const T* in, int64_t B, int64_t N, int64_t H, int64_t Dh,
                        int64_t pos0, double theta, double sign) {
  const int64_t half = Dh / 2;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t h = 0; h < H; ++h) {
        const int64_t row = ((b * N + n) * H + h) * Dh;
        for (int64_t i = 0; i < half; ++i) {
          const double w = std::pow(theta, -2.0 * double(i) / double(Dh));
          const double ang = double(pos0 + n) * w;
          const double c = std::cos(ang), s = sign * std::sin(ang);
          const double x1 = in[row + i], x2 = in[row + i + half];
          out[row + i] = T(x1 * c - x2 * s);
          out[row + i + half] = T(x2 * c + x1 * s);
        }
      }
}

template <class T>
void rope_forward(T* y, const T* x, int64_t B, int64_t N, int64_t H, int64_t Dh, int64_t pos0,
                  double theta) {
  rope_rotate(y, x, B, N, H, Dh, pos0, theta, 1.0);
}

template <class T>
void rope_backward(T* dx, const T* dy, int64_t B, int64_t N, int64_t H, int64_t Dh, int64_t pos0,
                   double theta) {
  rope_rotate(dx, dy, B, N, H, Dh, pos0, theta, -1.0);
}

// Element (b, n, h, :) of a [B, N, heads, Dh] tensor.
static inline int64_t at(int64_t b, int64_t n, int64_t h, int64_t N, int64_t heads, int64_t Dh) {
  return ((b * N + n) * heads + h) * Dh;
}

// keep / (1 - p) for element `index` of the [B, H, Nq, Nk] probabilities; 1 without dropout.
static inline double drop_factor(uint64_t seed, int64_t index, double p) {
  if (p == 0) return 1.0;
  return dropout_keep(seed, uint64_t(index), p) ? 1.0 / (1.0 - p) : 0.0;
}

template <class T>
void attention_forward(T* o, T* lse, const T* q, const T* k, const T* v, int64_t B, int64_t Nq,
                       int64_t Nk, int64_t H, int64_t Hkv, int64_t Dh, double scale,
                       double dropout_p, uint64_t dropout_seed) {
  const int64_t group = H / Hkv, off = Nk - Nq;
  std::vector<double> s(Nk), acc(Dh);  // s: scores of one query row
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / group;
      for (int64_t n = 0; n < Nq; ++n) {
        const T* qn = q + at(b, n, h, Nq, H, Dh);
        const int64_t last = off + n;  // the last visible key
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j <= last; ++j) {
          const T* kj = k + at(b, j, g, Nk, Hkv, Dh);
          double dot = 0;
          for (int64_t e = 0; e < Dh; ++e) dot += double(qn[e]) * kj[e];
          s[j] = dot * scale;
          m = std::max(m, s[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j <= last; ++j) sum += std::exp(s[j] - m);
        const double l = m + std::log(sum);
        for (int64_t e = 0; e < Dh; ++e) acc[e] = 0;
        const int64_t row = ((b * H + h) * Nq + n) * Nk;  // the row's first mask index
        for (int64_t j = 0; j <= last; ++j) {
          const double p = std::exp(s[j] - l) * drop_factor(dropout_seed, row + j, dropout_p);
          const T* vj = v + at(b, j, g, Nk, Hkv, Dh);
          for (int64_t e = 0; e < Dh; ++e) acc[e] += p * vj[e];
        }
        T* on = o + at(b, n, h, Nq, H, Dh);
        for (int64_t e = 0; e < Dh; ++e) on[e] = T(acc[e]);
        lse[(b * H + h) * Nq + n] = T(l);
      }
    }
}

// With P = exp(S - lse), M the mask factors (1 without dropout), P' = P * M and
// D_n = do_n . o_n (= sum_j P'_nj dP'_nj, because o = P' v):
//   dP = (do v^T) * M,  dS = P * (dP - D),  dq = scale dS k,  dk = scale dS^T q,  dv = P'^T do,
// dk and dv summed over the query heads that share the kv head.
template <class T>
void attention_backward(T* dq, T* dk, T* dv, const T* d_o, const T* q, const T* k, const T* v,
                        const T* o, const T* lse, int64_t B, int64_t Nq, int64_t Nk, int64_t H,
                        int64_t Hkv, int64_t Dh, double scale, double dropout_p,
                        uint64_t dropout_seed) {
  const int64_t group = H / Hkv, off = Nk - Nq;
  std::vector<double> dk_acc(size_t(B * Nk * Hkv * Dh), 0.0), dv_acc(dk_acc.size(), 0.0);
  std::vector<double> dq_acc(Dh);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / group;
      for (int64_t n = 0; n < Nq; ++n) {
        const int64_t qi = at(b, n, h, Nq, H, Dh);
        const T *qn = q + qi, *don = d_o + qi, *on = o + qi;
        const double l = lse[(b * H + h) * Nq + n];
        double D = 0;
        for (int64_t e = 0; e < Dh; ++e) D += double(don[e]) * on[e];
        for (int64_t e = 0; e < Dh; ++e) dq_acc[e] = 0;
        const int64_t row = ((b * H + h) * Nq + n) * Nk;  // the row's first mask index
        for (int64_t j = 0; j <= off + n; ++j) {
          const int64_t ki = at(b, j, g, Nk, Hkv, Dh);
          const T *kj = k + ki, *vj = v + ki;
          double sdot = 0, dp = 0;
          for (int64_t e = 0; e < Dh; ++e) {
            sdot += double(qn[e]) * kj[e];
            dp += double(don[e]) * vj[e];
          }
          const double p = std::exp(sdot * scale - l);
          const double mf = drop_factor(dropout_seed, row + j, dropout_p);
          const double ds = p * (dp * mf - D);
          for (int64_t e = 0; e < Dh; ++e) {
            dq_acc[e] += scale * ds * kj[e];
            dk_acc[ki + e] += scale * ds * qn[e];
            dv_acc[ki + e] += p * mf * don[e];
          }
        }
        for (int64_t e = 0; e < Dh; ++e) dq[qi + e] = T(dq_acc[e]);
      }
    }
  for (size_t i = 0; i < dk_acc.size(); ++i) {
    dk[i] = T(dk_acc[i]);
    dv[i] = T(dv_acc[i]);
  }
}

FELA_INSTANTIATE_FLOAT(rope_forward)
FELA_INSTANTIATE_FLOAT(rope_backward)
FELA_INSTANTIATE_FLOAT(attention_forward)
FELA_INSTANTIATE_FLOAT(attention_backward)

}  // namespace fela::ops::ref
