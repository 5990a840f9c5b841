#include "fela/ops/decay_gate.h"

namespace fela::ops {

void decay_gate_forward(Tensor a, const Tensor& x, const Tensor& b, double normalizer, Impl impl) {
  const int64_t n = x.size(-1), R = n ? x.numel() / n : 0;
  check_shape(b, {n}, "decay_gate", "b");
  check_shape(a, x.shape(), "decay_gate", "a");
  FELA_CHECK(normalizer > 0, "[decay_gate] normalizer must be positive, got ", normalizer);
  check_same_float("decay_gate", {&x, &b, &a});
  dispatch_float(x.dtype(), "decay_gate", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::decay_gate_forward<T> : cpu::decay_gate_forward<T>;
    f(a.data<T>(), x.data<T>(), b.data<T>(), R, n, normalizer);
  });
}

void decay_gate_backward(Tensor dx, Tensor db, const Tensor& da, const Tensor& x, const Tensor& b,
                         double normalizer, Impl impl) {
  const int64_t n = x.size(-1), R = n ? x.numel() / n : 0;
  check_shape(b, {n}, "decay_gate", "b");
  check_shape(db, {n}, "decay_gate", "db");
  check_shape(da, x.shape(), "decay_gate", "da");
  check_shape(dx, x.shape(), "decay_gate", "dx");
  check_same_float("decay_gate", {&x, &b, &da, &dx, &db});
  dispatch_float(x.dtype(), "decay_gate", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::decay_gate_backward<T> : cpu::decay_gate_backward<T>;
    f(dx.data<T>(), db.data<T>(), da.data<T>(), x.data<T>(), b.data<T>(), R, n, normalizer);
  });
}

}  // namespace fela::ops
