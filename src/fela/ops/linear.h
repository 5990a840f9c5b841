// Linear map on row vectors (SPEC: y = x W, W stored [in, out]).
//   y[R, out] = x[R, in] W            W [in, out]    (Layout::InOut, every projection)
//   y[R, out] = x[R, in] E^T          E [out, in]    (Layout::OutIn, the tied lm head E^T)
// Backward: dx = dy W^T (written, or added with GradMode::Add, for inputs feeding several
// projections), dW += x^T dy (accumulated). An undefined dx or dW skips that product.
#pragma once
#include "fela/ops/op.h"

namespace fela::ops {

enum class Layout { InOut, OutIn };
enum class GradMode { Write, Add };

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

}  // namespace fela::ops
