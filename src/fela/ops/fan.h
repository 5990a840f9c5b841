// FAN projection's periodic part (SPEC §8): given p = x W_p [R, dp] and l = x W_l [R, dl],
//   y[R, 2 dp + dl] = [cos(p) || sin(p) || l]
// (the caller computes the two linears). Backward: dp = -sin(p) dy_cos + cos(p) dy_sin,
// dl = dy_l; both written (=). On Device::Cuda every tensor is bf16 (math in fp32).
#pragma once
#include "fela/ops/op.h"

namespace fela::ops {

void fan_forward(Tensor y, const Tensor& p, const Tensor& l, Impl impl = Impl::Fast);
void fan_backward(Tensor dp, Tensor dl, const Tensor& dy, const Tensor& p, Impl impl = Impl::Fast);

namespace ref {
template <class T>
void fan_forward(T* y, const T* p, const T* l, int64_t R, int64_t dp, int64_t dl);
template <class T>
void fan_backward(T* dp, T* dl, const T* dy, const T* p, int64_t R, int64_t dpw, int64_t dlw);
}  // namespace ref
namespace cpu {
template <class T>
void fan_forward(T* y, const T* p, const T* l, int64_t R, int64_t dp, int64_t dl);
template <class T>
void fan_backward(T* dp, T* dl, const T* dy, const T* p, int64_t R, int64_t dpw, int64_t dlw);
}  // namespace cpu
// CUDA: all tensors bf16, math in fp32.
namespace cuda {
void fan_forward(BFloat16* y, const BFloat16* p, const BFloat16* l, int64_t R, int64_t dp,
                 int64_t dl);
void fan_backward(BFloat16* dp, BFloat16* dl, const BFloat16* dy, const BFloat16* p, int64_t R,
                  int64_t dpw, int64_t dlw);
}  // namespace cuda

}  // namespace fela::ops
