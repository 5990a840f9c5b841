#include "fela/ops/add.h"

namespace fela::ops {

void add_inplace(Tensor y, const Tensor& x, Impl impl) {
  FELA_CHECK(x.numel() == y.numel(), "[add] sizes differ: y ", y.shape().str(), ", x ",
             x.shape().str());
  check_same_float("add", {&y, &x});
  dispatch_float(y.dtype(), "add", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::add_inplace<T> : cpu::add_inplace<T>;
    f(y.data<T>(), x.data<T>(), y.numel());
  });
}

namespace ref {
template <class T>
void add_inplace(T* y, const T* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}
FELA_INSTANTIATE_FLOAT(add_inplace)
}  // namespace ref

namespace cpu {
template <class T>
void add_inplace(T* y, const T* x, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}
FELA_INSTANTIATE_FLOAT(add_inplace)
}  // namespace cpu

}  // namespace fela::ops
