// FNO mixer core (SPEC §2): a causal M-tap FIR per channel whose taps come from a spectral
// parameterisation, plus the skip term.
//
// Filter (per channel c, M taps from `modes` complex bins, numpy's irfft convention):
//   f[c, :] = irfft(K_re[c, :] + i K_im[c, :] zero-padded to M/2+1 bins, n = M)
//   (Im of bin 0 and, for even M, of bin M/2 are ignored)
// Convolution with skip, on token-major activations:
//   y[b, t, c] = sum_{j=0}^{M-1} f[c, j] * u[b, t-j, c] + skip[c] * u[b, t, c]   (u[t<0] = 0)
// Shapes: k_re, k_im [d, modes]; f [d, M]; u, y [B, N, d]; skip [d].
// Gradients: parameter gradients (dk_re, dk_im, df, dskip) accumulate (+=); du is written (=).
//
// Generation keeps a ring of the last M-1 inputs per sequence: ring [B, M-1, d], zero at the
// start; the input of token t sits in slot t % (M-1). Zeros stand in for t < 0, so a step needs
// no special case for the first M-1 tokens.
#pragma once
#include "fela/ops/op.h"

namespace fela::ops {

// How the Fast path computes the convolution. Auto picks by cost (direct for small M or N).
enum class FirMethod { Auto, Direct, Fft };

void fno_filter_forward(Tensor f, const Tensor& k_re, const Tensor& k_im, Impl impl = Impl::Fast);
void fno_filter_backward(Tensor dk_re, Tensor dk_im, const Tensor& df, Impl impl = Impl::Fast);

void fno_conv_forward(Tensor y, const Tensor& u, const Tensor& f, const Tensor& skip,
                      Impl impl = Impl::Fast, FirMethod method = FirMethod::Auto);
void fno_conv_backward(Tensor du, Tensor df, Tensor dskip, const Tensor& dy, const Tensor& u,
                       const Tensor& f, const Tensor& skip, Impl impl = Impl::Fast,
                       FirMethod method = FirMethod::Auto);

// One generation step for B sequences that have each seen t tokens:
//   y[b, c] = f[c, 0] u[b, c] + sum_{j=1}^{M-1} f[c, j] ring[b, (t-j) % (M-1), c] + skip[c] u[b, c]
// then ring[b, t % (M-1), :] = u[b, :]. u, y [B, d]; ring [B, M-1, d] (M = 1: ring unused).
void fno_conv_step(Tensor y, Tensor ring, const Tensor& u, const Tensor& f, const Tensor& skip,
                   int64_t t);
// Stores the inputs u [B, N, d] of tokens t0 .. t0+N-1 into the ring (slot t % (M-1)); only
// the last M-1 of them can survive. After a prefill from t0 = 0, slots of tokens that were
// never seen keep the caller's zeros.
void fno_ring_load(Tensor ring, const Tensor& u, int64_t t0 = 0);
// The last M-1 inputs before token t in token order: hist[j] = input of token t-(M-1)+j
// (zero for negative positions). ring, hist [M-1, d] (one sequence). Continuing a prefill
// from t puts hist in front of the new inputs.
void fno_ring_unroll(Tensor hist, const Tensor& ring, int64_t t);

namespace ref {
template <class T>
void fno_filter_forward(T* f, const T* k_re, const T* k_im, int64_t d, int64_t modes, int64_t M);
template <class T>
void fno_filter_backward(T* dk_re, T* dk_im, const T* df, int64_t d, int64_t modes, int64_t M);
template <class T>
void fno_conv_forward(T* y, const T* u, const T* f, const T* skip, int64_t B, int64_t N, int64_t d,
                      int64_t M);
template <class T>
void fno_conv_backward(T* du, T* df, T* dskip, const T* dy, const T* u, const T* f, const T* skip,
                       int64_t B, int64_t N, int64_t d, int64_t M);
}  // namespace ref
namespace cpu {
template <class T>
void fno_filter_forward(T* f, const T* k_re, const T* k_im, int64_t d, int64_t modes, int64_t M);
template <class T>
void fno_filter_backward(T* dk_re, T* dk_im, const T* df, int64_t d, int64_t modes, int64_t M);
template <class T>
void fno_conv_forward(T* y, const T* u, const T* f, const T* skip, int64_t B, int64_t N, int64_t d,
                      int64_t M, FirMethod method);
template <class T>
void fno_conv_backward(T* du, T* df, T* dskip, const T* dy, const T* u, const T* f, const T* skip,
                       int64_t B, int64_t N, int64_t d, int64_t M, FirMethod method);
template <class T>
void fno_conv_step(T* y, T* ring, const T* u, const T* f, const T* skip, int64_t B, int64_t d,
                   int64_t M, int64_t t);
}  // namespace cpu

}  // namespace fela::ops
