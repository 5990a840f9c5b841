// RMSNorm over the last dimension (SPEC §1), computed in fp32 or wider.
//   y[r, :] = x[r, :] * rstd[r] * g          rstd[r] = 1 / sqrt(mean(x[r, :]^2) + eps)
// Shapes: x, y [R, d] (any leading shape flattened to R rows); g [d]; rstd [R] (saved for
// backward). Backward: dx = rstd * (dy*g - x * rstd^2 * mean(dy*g*x)),  dg += sum_r dy*x*rstd.
// Residual form (SPEC §1, h = h + branch followed by the next norm): s = a + b, y = RMSNorm(s),
// with s kept in the activation dtype and normalised as stored.
// On Device::Cuda: x, y, dy, dx, a, b, s bf16; g, dg, rstd f32.
#pragma once
#include "fela/ops/op.h"

namespace fela::ops {

void rmsnorm_forward(Tensor y, Tensor rstd, const Tensor& x, const Tensor& g, double eps,
                     Impl impl = Impl::Fast);
// s may alias a or b.
void add_rmsnorm_forward(Tensor s, Tensor y, Tensor rstd, const Tensor& a, const Tensor& b,
                         const Tensor& g, double eps, Impl impl = Impl::Fast);
// dx may alias dy. dg accumulates; dx is written, or added to with GradMode::Add (the residual
// stream's gradient takes the norm's dx this way).
void rmsnorm_backward(Tensor dx, Tensor dg, const Tensor& dy, const Tensor& x, const Tensor& g,
                      const Tensor& rstd, Impl impl = Impl::Fast,
                      GradMode dx_mode = GradMode::Write);

namespace ref {
template <class T>
void rmsnorm_forward(T* y, T* rstd, const T* x, const T* g, int64_t R, int64_t d, double eps);
template <class T>
void rmsnorm_backward(T* dx, T* dg, const T* dy, const T* x, const T* g, const T* rstd, int64_t R,
                      int64_t d, GradMode dx_mode);
}  // namespace ref
namespace cpu {
template <class T>
void rmsnorm_forward(T* y, T* rstd, const T* x, const T* g, int64_t R, int64_t d, double eps);
template <class T>
void rmsnorm_backward(T* dx, T* dg, const T* dy, const T* x, const T* g, const T* rstd, int64_t R,
                      int64_t d, GradMode dx_mode);
}  // namespace cpu
// CUDA: activations bf16, gain and rstd fp32, math in fp32. The forward with b (non-null) is the
// residual form, writing s = x + b and normalising it.
namespace cuda {
void rmsnorm_forward(BFloat16* y, float* rstd, BFloat16* s, const BFloat16* x, const BFloat16* b,
                     const float* g, int64_t R, int64_t d, double eps);
void rmsnorm_backward(BFloat16* dx, float* dg, const BFloat16* dy, const BFloat16* x,
                      const float* g, const float* rstd, int64_t R, int64_t d, GradMode dx_mode);
}  // namespace cuda

}  // namespace fela::ops
