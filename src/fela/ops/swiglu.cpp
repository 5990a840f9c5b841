#include "fela/ops/swiglu.h"

namespace fela::ops {

void swiglu_forward(Tensor y, const Tensor& a, const Tensor& b, Impl impl) {
  const int64_t n = a.numel();
  FELA_CHECK(b.numel() == n && y.numel() == n, "[swiglu] sizes differ: a ", a.shape().str(),
             ", b ", b.shape().str(), ", y ", y.shape().str());
  check_same_float("swiglu", {&a, &b, &y});
  dispatch_float(a.dtype(), "swiglu", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::swiglu_forward<T> : cpu::swiglu_forward<T>;
    f(y.data<T>(), a.data<T>(), b.data<T>(), n);
  });
}

void swiglu_backward(Tensor da, Tensor db, const Tensor& dy, const Tensor& a, const Tensor& b,
                     Impl impl) {
  const int64_t n = a.numel();
  FELA_CHECK(b.numel() == n && dy.numel() == n && da.numel() == n && db.numel() == n,
             "[swiglu] gradient sizes differ from a ", a.shape().str());
  check_same_float("swiglu", {&a, &b, &dy, &da, &db});
  dispatch_float(a.dtype(), "swiglu", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::swiglu_backward<T> : cpu::swiglu_backward<T>;
    f(da.data<T>(), db.data<T>(), dy.data<T>(), a.data<T>(), b.data<T>(), n);
  });
}

}  // namespace fela::ops
