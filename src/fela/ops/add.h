// Residual accumulation y += x (SPEC §1: h = h + Mixer(...), h = h + MLP(...)).
// No backward of its own: the gradient of a sum passes through unchanged.
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

}  // namespace fela::ops
