// Linear map on row vectors (SPEC: y = x W, W stored [in, out]).
//   y[R, out] = x[R, in] W            W [in, out]    (Layout::InOut, every projection)
//   y[R, out] = x[R, in] E^T          E [out, in]    (Layout::OutIn, the tied lm head E^T)
// Backward: dx = dy W^T (written, or added with GradMode::Add, for inputs feeding several
// projections), dW += x^T dy (accumulated). An undefined dx or dW skips that product.
// On Device::Cuda: x, w, dy, dx bf16; y bf16 or f32; dW f32 (the fp32 gradient of the master
// weights, of which w is the bf16 compute copy).
#pragma once
#include "fela/ops/op.h"

namespace fela::ops {

enum class Layout { InOut, OutIn };

void linear_forward(Tensor y, const Tensor& x, const Tensor& w, Layout layout = Layout::InOut,
                    Impl impl = Impl::Fast);
void linear_backward(Tensor dx, Tensor dw, const Tensor& dy, const Tensor& x, const Tensor& w,
                     Layout layout = Layout::InOut, GradMode dx_mode = GradMode::Write,
                     Impl impl = Impl::Fast);

namespace ref {
template <class T>
void linear_forward(T* y, const T* x, const T* w, int64_t R, int64_t in, int64_t out, Layout lay);
template <class T>
void linear_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, int64_t R, int64_t in,
                     int64_t out, Layout lay, GradMode dx_mode);
}  // namespace ref
namespace cpu {
template <class T>
void linear_forward(T* y, const T* x, const T* w, int64_t R, int64_t in, int64_t out, Layout lay);
template <class T>
void linear_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, int64_t R, int64_t in,
                     int64_t out, Layout lay, GradMode dx_mode);
}  // namespace cpu
// CUDA (cuBLASLt, fp32 accumulation): x, w, dy, dx bf16; y bf16 or fp32; dW fp32 (+=).
namespace cuda {
void linear_forward(BFloat16* y, const BFloat16* x, const BFloat16* w, int64_t R, int64_t in,
                    int64_t out, Layout lay);
void linear_forward(float* y, const BFloat16* x, const BFloat16* w, int64_t R, int64_t in,
                    int64_t out, Layout lay);
void linear_backward(BFloat16* dx, float* dw, const BFloat16* dy, const BFloat16* x,
                     const BFloat16* w, int64_t R, int64_t in, int64_t out, Layout lay,
                     GradMode dx_mode);
}  // namespace cuda

}  // namespace fela::ops
