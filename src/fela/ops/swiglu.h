// Gated product y = silu(a) * b, elementwise (SPEC §1 MLP, and the output gates of the FNO
// mixer `(y + D u) * silu(z)` and of GLA `RMSNorm(o) * silu(x W_g)`).
//   silu(a) = a * sigmoid(a);  da = dy * b * sigmoid(a) * (1 + a (1 - sigmoid(a))),
//   db = dy * silu(a). All of a, b, y [n] (any shape, same numel); da, db written (=).
// On Device::Cuda every tensor is bf16.
#pragma once
#include "fela/ops/op.h"

namespace fela::ops {

void swiglu_forward(Tensor y, const Tensor& a, const Tensor& b, Impl impl = Impl::Fast);
// da or db may alias dy (each output is written after its inputs at the same index are read).
void swiglu_backward(Tensor da, Tensor db, const Tensor& dy, const Tensor& a, const Tensor& b,
                     Impl impl = Impl::Fast);

namespace ref {
template <class T>
void swiglu_forward(T* y, const T* a, const T* b, int64_t n);
template <class T>
void swiglu_backward(T* da, T* db, const T* dy, const T* a, const T* b, int64_t n);
}  // namespace ref
namespace cpu {
template <class T>
void swiglu_forward(T* y, const T* a, const T* b, int64_t n);
template <class T>
void swiglu_backward(T* da, T* db, const T* dy, const T* a, const T* b, int64_t n);
}  // namespace cpu
// CUDA: all tensors bf16, math in fp32.
namespace cuda {
void swiglu_forward(BFloat16* y, const BFloat16* a, const BFloat16* b, int64_t n);
void swiglu_backward(BFloat16* da, BFloat16* db, const BFloat16* dy, const BFloat16* a,
                     const BFloat16* b, int64_t n);
}  // namespace cuda

}  // namespace fela::ops
