#include "fela/ops/cross_entropy.h"

namespace fela::ops {

namespace {
void check_ce(const Tensor& logits, const Tensor& targets) {
  FELA_CHECK(logits.rank() == 2, "[cross_entropy] logits must be [R, V], got ",
             logits.shape().str());
  check_dtype(targets, DType::I32, "cross_entropy", "targets");
  FELA_CHECK(targets.numel() == logits.size(0), "[cross_entropy] ", targets.numel(),
             " targets for ", logits.size(0), " rows");
  const int32_t* t = targets.data<int32_t>();
  for (int64_t r = 0; r < targets.numel(); ++r)
    FELA_CHECK(t[r] < logits.size(1), "[cross_entropy] target ", t[r], " out of range [0, ",
               logits.size(1), ")");
}
}  // namespace

void cross_entropy_forward(Tensor loss, const Tensor& logits, const Tensor& targets, Impl impl) {
  check_ce(logits, targets);
  check_shape(loss, {logits.size(0)}, "cross_entropy", "loss");
  check_same_float("cross_entropy", {&logits, &loss});
  dispatch_float(logits.dtype(), "cross_entropy", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::cross_entropy_forward<T> : cpu::cross_entropy_forward<T>;
    f(loss.data<T>(), logits.data<T>(), targets.data<int32_t>(), logits.size(0), logits.size(1));
  });
}

void cross_entropy_backward(Tensor dlogits, const Tensor& logits, const Tensor& targets,
                            double scale, Impl impl) {
  check_ce(logits, targets);
  check_shape(dlogits, logits.shape(), "cross_entropy", "dlogits");
  check_same_float("cross_entropy", {&logits, &dlogits});
  dispatch_float(logits.dtype(), "cross_entropy", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::cross_entropy_backward<T> : cpu::cross_entropy_backward<T>;
    f(dlogits.data<T>(), logits.data<T>(), targets.data<int32_t>(), logits.size(0),
      logits.size(1), scale);
  });
}

}  // namespace fela::ops
