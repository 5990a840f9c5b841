#include "fela/ops/rmsnorm.h"

namespace fela::ops {

void rmsnorm_forward(Tensor y, Tensor rstd, const Tensor& x, const Tensor& g, double eps,
                     Impl impl) {
  const int64_t d = x.size(-1), R = x.numel() / d;
  check_shape(g, {d}, "rmsnorm", "g");
  check_shape(y, x.shape(), "rmsnorm", "y");
  FELA_CHECK(rstd.numel() == R, "[rmsnorm] rstd has ", rstd.numel(), " values, expected ", R);
  check_same_float("rmsnorm", {&x, &y, &g, &rstd});
  dispatch_float(x.dtype(), "rmsnorm", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::rmsnorm_forward<T> : cpu::rmsnorm_forward<T>;
    f(y.data<T>(), rstd.data<T>(), x.data<T>(), g.data<T>(), R, d, eps);
  });
}

void rmsnorm_backward(Tensor dx, Tensor dg, const Tensor& dy, const Tensor& x, const Tensor& g,
                      const Tensor& rstd, Impl impl) {
  const int64_t d = x.size(-1), R = x.numel() / d;
  check_shape(g, {d}, "rmsnorm", "g");
  check_shape(dg, {d}, "rmsnorm", "dg");
  check_shape(dy, x.shape(), "rmsnorm", "dy");
  check_shape(dx, x.shape(), "rmsnorm", "dx");
  FELA_CHECK(rstd.numel() == R, "[rmsnorm] rstd has ", rstd.numel(), " values, expected ", R);
  check_same_float("rmsnorm", {&x, &dx, &dy, &g, &dg, &rstd});
  dispatch_float(x.dtype(), "rmsnorm", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::rmsnorm_backward<T> : cpu::rmsnorm_backward<T>;
    f(dx.data<T>(), dg.data<T>(), dy.data<T>(), x.data<T>(), g.data<T>(), rstd.data<T>(), R, d);
  });
}

}  // namespace fela::ops
