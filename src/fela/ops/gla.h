// Gated linear attention core (SPEC §3), per head h with state S [Dk, Dv]:
//   S_t = diag(exp(a_t)) S_{t-1} + k_t^T v_t        o_t = (q_t * scale) S_t
// a is the log decay (a <= 0, from logsigmoid). Shapes (heads are consecutive column blocks):
//   q, k, a [B, N, H, Dk];  v, o [B, N, H, Dv];  state [B, H, Dk, Dv].
// Impl::Ref runs the recurrence above (the oracle). Impl::Fast runs the chunked form: exact
// within each chunk of `chunk` tokens, state carried between chunks, decay factors formed as
// exp(b_t - b_s) with b the in-chunk cumulative log decay, never as exp(b_t) / exp(b_s), so
// strong decay cannot overflow.
// Gradients: all are activation gradients and are written (=). Backward assumes a zero initial
// state (training); da is the gradient with respect to the log decay a.
//
// Dtypes: on the CPU every tensor is f32, or every tensor f64. On Device::Cuda (Impl::Fast only):
// q, k, v, o, d_o, dq, dk, dv bf16; a, da, state_in, state_out f32. The CUDA kernels use their own
// chunk of 64 tokens whatever `chunk` says (it changes speed, never the result beyond rounding),
// take Dk <= 64 and the Dv their shared memory holds (Dv <= 160 with Dk 64, <= 320 with Dk <= 32),
// and run up to 16 tokens (generation steps) as the plain recurrence in fp32. The chunked form
// allocates stream-ordered scratch: forward (B H) x (spans + 1) fp32 states [Dk, Dv] (spans of
// chunks, as many as fill the GPU) and one fp32 state per 64 tokens per head; backward twice that.
#pragma once
#include "fela/ops/op.h"

namespace fela::ops {

// state_in: initial state or an undefined Tensor for zero. state_out: final state or undefined.
// state_in and state_out may be the same tensor (generation updates the state in place).
void gla_forward(Tensor o, Tensor state_out, const Tensor& q, const Tensor& k, const Tensor& v,
                 const Tensor& a, const Tensor& state_in, double scale, int64_t chunk,
                 Impl impl = Impl::Fast);
void gla_backward(Tensor dq, Tensor dk, Tensor dv, Tensor da, const Tensor& d_o, const Tensor& q,
                  const Tensor& k, const Tensor& v, const Tensor& a, double scale, int64_t chunk,
                  Impl impl = Impl::Fast);

namespace ref {
template <class T>
void gla_forward(T* o, T* state_out, const T* q, const T* k, const T* v, const T* a,
                 const T* state_in, int64_t B, int64_t N, int64_t H, int64_t Dk, int64_t Dv,
                 double scale);
template <class T>
void gla_backward(T* dq, T* dk, T* dv, T* da, const T* d_o, const T* q, const T* k, const T* v,
                  const T* a, int64_t B, int64_t N, int64_t H, int64_t Dk, int64_t Dv,
                  double scale);
}  // namespace ref
namespace cpu {
template <class T>
void gla_forward(T* o, T* state_out, const T* q, const T* k, const T* v, const T* a,
                 const T* state_in, int64_t B, int64_t N, int64_t H, int64_t Dk, int64_t Dv,
                 double scale, int64_t chunk);
template <class T>
void gla_backward(T* dq, T* dk, T* dv, T* da, const T* d_o, const T* q, const T* k, const T* v,
                  const T* a, int64_t B, int64_t N, int64_t H, int64_t Dk, int64_t Dv, double scale,
                  int64_t chunk);
}  // namespace cpu
// CUDA: bf16 activations, f32 decay, state and da; state_in may be state_out.
namespace cuda {
void gla_forward(BFloat16* o, float* state_out, const BFloat16* q, const BFloat16* k,
                 const BFloat16* v, const float* a, const float* state_in, int64_t B, int64_t N,
                 int64_t H, int64_t Dk, int64_t Dv, double scale);
void gla_backward(BFloat16* dq, BFloat16* dk, BFloat16* dv, float* da, const BFloat16* d_o,
                  const BFloat16* q, const BFloat16* k, const BFloat16* v, const float* a,
                  int64_t B, int64_t N, int64_t H, int64_t Dk, int64_t Dv, double scale);
}  // namespace cuda

}  // namespace fela::ops
