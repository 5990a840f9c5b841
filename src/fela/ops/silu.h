// y = silu(x) = x sigmoid(x), elementwise (the nonlinearity of CoLA linears, SPEC §8:
// x W -> silu(x A) B). Backward: dx = dy sigmoid(x) (1 + x (1 - sigmoid(x))), written (=);
// dx may alias dy. On Device::Cuda every tensor is bf16 (math in fp32).
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
// CUDA: all tensors bf16, math in fp32.
namespace cuda {
void silu_forward(BFloat16* y, const BFloat16* x, int64_t n);
void silu_backward(BFloat16* dx, const BFloat16* dy, const BFloat16* x, int64_t n);
}  // namespace cuda

}  // namespace fela::ops
