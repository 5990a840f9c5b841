// FNO mixer oracle (SPEC §2): the spectral filter as direct cosine/sine sums and the causal FIR
// as plain loops, all accumulated in double. Slow on purpose: the fast paths are checked
// against it, so it shares no code with them.
#include "fela/ops/fno.h"

#include <cmath>
#include <numbers>

namespace fela::ops::ref {
namespace {

// numpy irfft weight of bin k for length M: 1 for DC and (M even) Nyquist, 2 otherwise.
double bin_weight(int64_t k, int64_t M) { return (k == 0 || 2 * k == M) ? 1.0 : 2.0; }
// True for the bins whose imaginary part irfft ignores.
bool imag_ignored(int64_t k, int64_t M) { return k == 0 || 2 * k == M; }
// Angle 2 pi k j / M, with k j reduced mod M first so large products stay exact.
double angle(int64_t k, int64_t j, int64_t M) {
  return 2.0 * std::numbers::pi * double((k * j) % M) / double(M);
}

}  // namespace

template <class T>
void fno_filter_forward(T* f, const T* k_re, const T* k_im, int64_t d, int64_t modes, int64_t M) {
  for (int64_t c = 0; c < d; ++c)
    for (int64_t j = 0; j < M; ++j) {
      double s = 0;
      for (int64_t k = 0; k < modes; ++k) {
        const double a = angle(k, j, M), w = bin_weight(k, M);
        s += w * double(k_re[c * modes + k]) * std::cos(a);
        if (!imag_ignored(k, M)) s -= w * double(k_im[c * modes + k]) * std::sin(a);
      }
      f[c * M + j] = T(s / double(M));
    }
}

template <class T>
void fno_filter_backward(T* dk_re, T* dk_im, const T* df, int64_t d, int64_t modes, int64_t M) {
  for (int64_t c = 0; c < d; ++c)
    for (int64_t k = 0; k < modes; ++k) {
      double sr = 0, si = 0;
      for (int64_t j = 0; j < M; ++j) {
        const double a = angle(k, j, M);
        sr += double(df[c * M + j]) * std::cos(a);
        si -= double(df[c * M + j]) * std::sin(a);
      }
      const double w = bin_weight(k, M) / double(M);
      dk_re[c * modes + k] += T(w * sr);
      if (!imag_ignored(k, M)) dk_im[c * modes + k] += T(w * si);
    }
}

template <class T>
void fno_conv_forward(T* y, const T* u, const T* f, const T* skip, int64_t B, int64_t N, int64_t d,
                      int64_t M) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < N; ++t)
      for (int64_t c = 0; c < d; ++c) {
        double s = double(skip[c]) * u[(b * N + t) * d + c];
        for (int64_t j = 0; j < M && j <= t; ++j)
          s += double(f[c * M + j]) * u[(b * N + t - j) * d + c];
        y[(b * N + t) * d + c] = T(s);
      }
}

template <class T>
void fno_conv_backward(T* du, T* df, T* dskip, const T* dy, const T* u, const T* f, const T* skip,
                       int64_t B, int64_t N, int64_t d, int64_t M) {
  // du[b, s, c] = skip[c] dy[b, s, c] + sum_j f[c, j] dy[b, s + j, c]
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < N; ++s)
      for (int64_t c = 0; c < d; ++c) {
        double a = double(skip[c]) * dy[(b * N + s) * d + c];
        for (int64_t j = 0; j < M && s + j < N; ++j)
          a += double(f[c * M + j]) * dy[(b * N + s + j) * d + c];
        du[(b * N + s) * d + c] = T(a);
      }
  // df[c, j] += sum_{b, t} dy[b, t, c] u[b, t - j, c];  dskip[c] += sum_{b, t} dy u
  for (int64_t c = 0; c < d; ++c) {
    for (int64_t j = 0; j < M; ++j) {
      double a = 0;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = j; t < N; ++t)
          a += double(dy[(b * N + t) * d + c]) * u[(b * N + t - j) * d + c];
      df[c * M + j] += T(a);
    }
    double a = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < N; ++t) a += double(dy[(b * N + t) * d + c]) * u[(b * N + t) * d + c];
    dskip[c] += T(a);
  }
}

FELA_INSTANTIATE_FLOAT(fno_filter_forward)
FELA_INSTANTIATE_FLOAT(fno_filter_backward)
FELA_INSTANTIATE_FLOAT(fno_conv_forward)
FELA_INSTANTIATE_FLOAT(fno_conv_backward)

}  // namespace fela::ops::ref
