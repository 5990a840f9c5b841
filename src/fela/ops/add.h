// Residual accumulation y += x (SPEC §1: h = h + Mixer(...), h = h + MLP(...)).
// No backward of its own: the gradient of a sum passes through unchanged.
// On Device::Cuda y and x are bf16 (the sum in fp32, rounded once) or both f32.
#pragma once
#include "fela/ops/op.h"

namespace fela::ops {

void add_inplace(Tensor y, const Tensor& x, Impl impl = Impl::Fast);

namespace ref {
template <class T>
void add_inplace(T* y, const T* x, int64_t n);
}  // namespace ref
namespace cpu {
template <class T>
void add_inplace(T* y, const T* x, int64_t n);
}  // namespace cpu
// CUDA: bf16, the sum in fp32.
namespace cuda {
void add_inplace(BFloat16* y, const BFloat16* x, int64_t n);
void add_inplace(float* y, const float* x, int64_t n);
}  // namespace cuda

}  // namespace fela::ops
