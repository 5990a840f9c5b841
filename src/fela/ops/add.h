// Elementwise sum y = a + b (SPEC §1's residual stream: h = h + Mixer(...), h = h + MLP(...)).
// y may alias a or b; add_inplace(y, x) is y += x. No backward of its own: the gradient of a
// sum passes through unchanged.
// On Device::Cuda all three are bf16 (the sum in fp32, rounded once) or all f32.
#pragma once
#include "fela/ops/op.h"

namespace fela::ops {

void add(Tensor y, const Tensor& a, const Tensor& b, Impl impl = Impl::Fast);
inline void add_inplace(Tensor y, const Tensor& x, Impl impl = Impl::Fast) { add(y, y, x, impl); }

namespace ref {
template <class T>
void add(T* y, const T* a, const T* b, int64_t n);
}  // namespace ref
namespace cpu {
template <class T>
void add(T* y, const T* a, const T* b, int64_t n);
}  // namespace cpu
// CUDA: bf16 with the sum in fp32, or f32.
namespace cuda {
void add(BFloat16* y, const BFloat16* a, const BFloat16* b, int64_t n);
void add(float* y, const float* a, const float* b, int64_t n);
}  // namespace cuda

}  // namespace fela::ops
