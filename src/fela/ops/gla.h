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
                  const T* a, int64_t B, int64_t N, int64_t H, int64_t Dk, int64_t Dv,
                  double scale, int64_t chunk);
}  // namespace cpu

}  // namespace fela::ops
