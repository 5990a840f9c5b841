// y = silu(x) = x sigmoid(x), elementwise (the nonlinearity of CoLA linears, SPEC §8:
// x W -> silu(x A) B). Backward: dx = dy sigmoid(x) (1 + x (1 - sigmoid(x))), written (=);
// dx may alias dy.
#pragma once
#include "fela/ops/op.h"

namespace fela::ops {

void silu_forward(Tensor y, const Tensor& x, Impl impl = Impl::Fast);
void silu_backward(Tensor dx, const Tensor& dy, const Tensor& x, Impl impl = Impl::Fast);

namespace ref {
template <class T>
void silu_forward(T* y, const T* x, int64_t n);
template <class T>
void silu_backward(T* dx, const T* dy, const T* x, int64_t n);
}  // namespace ref
namespace cpu {
template <class T>
void silu_forward(T* y, const T* x, int64_t n);
template <class T>
void silu_backward(T* dx, const T* dy, const T* x, int64_t n);
}  // namespace cpu

}  // namespace fela::ops
