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
//
// On Device::Cuda: u, y, du, dy, ring, hist bf16; k_re, k_im, f, skip and their gradients fp32
// (the filter is small and stays fp32); fp32 accumulation throughout (Toeplitz multiplies bf16
// values: the inputs as they are, the taps split into two bf16 parts). df and dskip are reduced
// over B*N in a fixed order (no atomics), so results repeat bit for bit. FirMethod keeps its
// meaning there: Direct sums over taps in fp32 on the CUDA cores, Fft uses cuFFT (overlap-save
// blocks), Toeplitz runs the sums as block-Toeplitz products on the tensor cores, Auto picks by
// the cost model in ops/cuda/fno.cu, fitted to bench_fno's measurements. Scratch comes from the
// stream-ordered pool and is released when the call returns (Toeplitz: the taps' bf16 pairs, at
// most 2 (d + 7) (M + 190) 32-bit words, and in the backward channel-major copies of dy and u, at
// most 2 B d (N + M + 2048) bf16 values; Fft: about 2 B d (N + M) fp32 values forward, twice
// that backward).
#pragma once
#include "fela/ops/op.h"

namespace fela::ops {

// How the Fast path computes the convolution. Auto picks by cost (direct for small M or N).
// Toeplitz (CUDA): the direct sums as block-Toeplitz matrix products on the tensor cores, taps
// split into two bf16 parts (16 significant bits); on the CPU it runs Direct.
enum class FirMethod { Auto, Direct, Fft, Toeplitz };
const char* fir_method_name(FirMethod m);  // "auto", "direct", "fft", "toeplitz"

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
// CUDA: activations bf16, filter, skip and their gradients fp32, math in fp32. None of the
// outputs may alias an input.
namespace cuda {
void fno_filter_forward(float* f, const float* k_re, const float* k_im, int64_t d, int64_t modes,
                        int64_t M);
void fno_filter_backward(float* dk_re, float* dk_im, const float* df, int64_t d, int64_t modes,
                         int64_t M);
void fno_conv_forward(BFloat16* y, const BFloat16* u, const float* f, const float* skip, int64_t B,
                      int64_t N, int64_t d, int64_t M, FirMethod method);
void fno_conv_backward(BFloat16* du, float* df, float* dskip, const BFloat16* dy, const BFloat16* u,
                       const float* f, const float* skip, int64_t B, int64_t N, int64_t d,
                       int64_t M, FirMethod method);
void fno_conv_step(BFloat16* y, BFloat16* ring, const BFloat16* u, const float* f,
                   const float* skip, int64_t B, int64_t d, int64_t M, int64_t t);
// ring [B, R, d] with R = M-1 >= 1; u [B, N, d]; hist, ring [R, d]: device-to-device copies.
void fno_ring_load(BFloat16* ring, const BFloat16* u, int64_t B, int64_t N, int64_t d, int64_t R,
                   int64_t t0);
void fno_ring_unroll(BFloat16* hist, const BFloat16* ring, int64_t R, int64_t d, int64_t t);
// The method Auto runs for a convolution of this shape (for benchmarks and tests).
FirMethod fno_auto_method(int64_t B, int64_t N, int64_t d, int64_t M, bool backward);
}  // namespace cuda

}  // namespace fela::ops
