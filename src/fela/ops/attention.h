// Softmax attention pieces for the `A` mixer (SPEC §4).
//
// RoPE (rotate-half): for each head, dimension i < Dh/2 pairs with i + Dh/2; at position p,
//   y_i = x_i cos(p w_i) - x_{i+Dh/2} sin(p w_i),  y_{i+Dh/2} = x_{i+Dh/2} cos(p w_i) + x_i sin(p w_i)
//   w_i = theta^(-2i/Dh), positions p = pos0 + n for token n. x, y [B, N, H, Dh]; y may alias x.
//   Backward applies the inverse rotation: dx = R^T dy (dx may alias dy).
//
// Causal attention with GQA: q [B, Nq, H, Dh], k, v [B, Nk, Hkv, Dh], Nk >= Nq, H % Hkv == 0.
// Query n sits at position Nk - Nq + n and sees keys 0 ..= Nk - Nq + n (so Nq = Nk is training,
// Nq = 1 is a generation step against a KV cache). Query head h reads kv head h / (H / Hkv).
//   P = softmax(q k^T * scale) over visible keys,  o = P v.   o [B, Nq, H, Dh];
//   lse [B, H, Nq] = log-sum-exp of the scaled scores (saved for backward).
// Gradients dq, dk, dv are written (=).
//
// Dropout on the probabilities (SPEC §8, training only), with 0 <= dropout_p < 1:
//   P' = P * keep / (1 - p),  keep = dropout_keep(seed, ((b H + h) Nq + n) Nk + j, p)
// for query n and key j (j counting the Nk keys from 0), and o = P' v; lse stays the
// log-sum-exp of the undropped scores. The mask is recomputed in backward from the seed:
//   dP' = do v^T,  dP = dP' * keep / (1 - p),  D_n = do_n . o_n (= sum_j P'_nj dP'_nj),
//   dS = P * (dP - D),  dv = P'^T do.
// p = 0 is plain attention (the default), bit for bit.
//
// On Device::Cuda: q, k, v, o, d_o, dq, dk, dv and RoPE's tensors bf16, lse fp32, math in fp32;
// Dh <= cuda::kMaxHeadDim. Outputs must not alias inputs, except RoPE's y = x and dx = dy.
// Backward is deterministic (fixed summation order, no atomics) and takes scratch for D
// ([B, H, Nq] fp32) from the stream-ordered pool.
#pragma once
#include <cstdint>

#include "fela/ops/op.h"

namespace fela::ops {

void rope_forward(Tensor y, const Tensor& x, int64_t pos0, double theta, Impl impl = Impl::Fast);
void rope_backward(Tensor dx, const Tensor& dy, int64_t pos0, double theta,
                   Impl impl = Impl::Fast);

void attention_forward(Tensor o, Tensor lse, const Tensor& q, const Tensor& k, const Tensor& v,
                       double scale, Impl impl = Impl::Fast, double dropout_p = 0.0,
                       uint64_t dropout_seed = 0);
void attention_backward(Tensor dq, Tensor dk, Tensor dv, const Tensor& d_o, const Tensor& q,
                        const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse,
                        double scale, Impl impl = Impl::Fast, double dropout_p = 0.0,
                        uint64_t dropout_seed = 0);

namespace ref {
template <class T>
void rope_forward(T* y, const T* x, int64_t B, int64_t N, int64_t H, int64_t Dh, int64_t pos0,
                  double theta);
template <class T>
void rope_backward(T* dx, const T* dy, int64_t B, int64_t N, int64_t H, int64_t Dh, int64_t pos0,
                   double theta);
template <class T>
void attention_forward(T* o, T* lse, const T* q, const T* k, const T* v, int64_t B, int64_t Nq,
                       int64_t Nk, int64_t H, int64_t Hkv, int64_t Dh, double scale,
                       double dropout_p, uint64_t dropout_seed);
template <class T>
void attention_backward(T* dq, T* dk, T* dv, const T* d_o, const T* q, const T* k, const T* v,
                        const T* o, const T* lse, int64_t B, int64_t Nq, int64_t Nk, int64_t H,
                        int64_t Hkv, int64_t Dh, double scale, double dropout_p,
                        uint64_t dropout_seed);
}  // namespace ref
namespace cpu {
template <class T>
void rope_forward(T* y, const T* x, int64_t B, int64_t N, int64_t H, int64_t Dh, int64_t pos0,
                  double theta);
template <class T>
void rope_backward(T* dx, const T* dy, int64_t B, int64_t N, int64_t H, int64_t Dh, int64_t pos0,
                   double theta);
template <class T>
void attention_forward(T* o, T* lse, const T* q, const T* k, const T* v, int64_t B, int64_t Nq,
                       int64_t Nk, int64_t H, int64_t Hkv, int64_t Dh, double scale,
                       double dropout_p, uint64_t dropout_seed);
template <class T>
void attention_backward(T* dq, T* dk, T* dv, const T* d_o, const T* q, const T* k, const T* v,
                        const T* o, const T* lse, int64_t B, int64_t Nq, int64_t Nk, int64_t H,
                        int64_t Hkv, int64_t Dh, double scale, double dropout_p,
                        uint64_t dropout_seed);
}  // namespace cpu
// CUDA: bf16 activations, lse fp32 (ops/cuda/attention.cu).
namespace cuda {
constexpr int64_t kMaxHeadDim = 128;  // head sizes are padded to 16, 32, 64 or 128 in the kernels
void rope_forward(BFloat16* y, const BFloat16* x, int64_t B, int64_t N, int64_t H, int64_t Dh,
                  int64_t pos0, double theta);
void rope_backward(BFloat16* dx, const BFloat16* dy, int64_t B, int64_t N, int64_t H, int64_t Dh,
                   int64_t pos0, double theta);
void attention_forward(BFloat16* o, float* lse, const BFloat16* q, const BFloat16* k,
                       const BFloat16* v, int64_t B, int64_t Nq, int64_t Nk, int64_t H,
                       int64_t Hkv, int64_t Dh, double scale, double dropout_p,
                       uint64_t dropout_seed);
void attention_backward(BFloat16* dq, BFloat16* dk, BFloat16* dv, const BFloat16* d_o,
                        const BFloat16* q, const BFloat16* k, const BFloat16* v,
                        const BFloat16* o, const float* lse, int64_t B, int64_t Nq, int64_t Nk,
                        int64_t H, int64_t Hkv, int64_t Dh, double scale, double dropout_p,
                        uint64_t dropout_seed);
}  // namespace cuda

}  // namespace fela::ops
