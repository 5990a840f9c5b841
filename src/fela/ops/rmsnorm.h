// RMSNorm over the last dimension (SPEC §1), computed in fp32 or wider.
//   y[r, :] = x[r, :] * rstd[r] * g          rstd[r] = 1 / sqrt(mean(x[r, :]^2) + eps)
// Shapes: x, y [R, d] (any leading shape flattened to R rows); g [d]; rstd [R] (saved for
// backward). Backward: dx = rstd * (dy*g - x * rstd^2 * mean(dy*g*x)),  dg += sum_r dy*x*rstd.
// On Device::Cuda: x, y, dy, dx bf16; g, dg, rstd f32.
#pragma once
#include "fela/ops/op.h"

namespace fela::ops {

void rmsnorm_forward(Tensor y, Tensor rstd, const Tensor& x, const Tensor& g, double eps,
                     Impl impl = Impl::Fast);
// dx may alias dy. dg accumulates.
void rmsnorm_backward(Tensor dx, Tensor dg, const Tensor& dy, const Tensor& x, const Tensor& g,
                      const Tensor& rstd, Impl impl = Impl::Fast);

namespace ref {
template <class T>
void rmsnorm_forward(T* y, T* rstd, const T* x, const T* g, int64_t R, int64_t d, double eps);
template <class T>
void rmsnorm_backward(T* dx, T* dg, const T* dy, const T* x, const T* g, const T* rstd, int64_t R,
                      int64_t d);
}  // namespace ref
namespace cpu {
template <class T>
void rmsnorm_forward(T* y, T* rstd, const T* x, const T* g, int64_t R, int64_t d, double eps);
template <class T>
void rmsnorm_backward(T* dx, T* dg, const T* dy, const T* x, const T* g, const T* rstd, int64_t R,
                      int64_t d);
}  // namespace cpu
// CUDA: activations bf16, gain and rstd fp32, math in fp32.
namespace cuda {
void rmsnorm_forward(BFloat16* y, float* rstd, const BFloat16* x, const float* g, int64_t R,
                     int64_t d, double eps);
void rmsnorm_backward(BFloat16* dx, float* dg, const BFloat16* dy, const BFloat16* x,
                      const float* g, const float* rstd, int64_t R, int64_t d);
}  // namespace cuda

}  // namespace fela::ops
