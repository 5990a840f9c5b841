// SiLU dispatcher: argument checks, then the ref or cpu kernel.
#include "fela/ops/silu.h"

namespace fela::ops {

void silu_forward(Tensor y, const Tensor& x, Impl impl) {
  check_shape(y, x.shape(), "silu", "y");
  check_same_float("silu", {&x, &y});
  dispatch_float(x.dtype(), "silu", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::silu_forward<T> : cpu::silu_forward<T>;
    f(y.data<T>(), x.data<T>(), x.numel());
  });
}

void silu_backward(Tensor dx, const Tensor& dy, const Tensor& x, Impl impl) {
  check_shape(dy, x.shape(), "silu", "dy");
  check_shape(dx, x.shape(), "silu", "dx");
  check_same_float("silu", {&x, &dy, &dx});
  dispatch_float(x.dtype(), "silu", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::silu_backward<T> : cpu::silu_backward<T>;
    f(dx.data<T>(), dy.data<T>(), x.data<T>(), x.numel());
  });
}

}  // namespace fela::ops
