// GLA's log-decay gate (SPEC §3):  a[R, n] = logsigmoid(x[R, n] + b[n]) / normalizer
// where x = (input W_a1) W_a2 comes from the caller's two linears. a <= 0.
// Backward: dx = da * sigmoid(-(x + b)) / normalizer (written), db += sum_r dx (accumulated).
#pragma once
#include "fela/ops/op.h"

namespace fela::ops {

void decay_gate_forward(Tensor a, const Tensor& x, const Tensor& b, double normalizer,
                        Impl impl = Impl::Fast);
// dx may alias da.
void decay_gate_backward(Tensor dx, Tensor db, const Tensor& da, const Tensor& x, const Tensor& b,
                         double normalizer, Impl impl = Impl::Fast);

namespace ref {
template <class T>
void decay_gate_forward(T* a, const T* x, const T* b, int64_t R, int64_t n, double normalizer);
template <class T>
void decay_gate_backward(T* dx, T* db, const T* da, const T* x, const T* b, int64_t R, int64_t n,
                         double normalizer);
}  // namespace ref
namespace cpu {
template <class T>
void decay_gate_forward(T* a, const T* x, const T* b, int64_t R, int64_t n, double normalizer);
template <class T>
void decay_gate_backward(T* dx, T* db, const T* da, const T* x, const T* b, int64_t R, int64_t n,
                         double normalizer);
}  // namespace cpu

}  // namespace fela::ops
