#include "fela/ops/embedding.h"

namespace fela::ops {

namespace {
void check_tokens(const Tensor& tokens, int64_t V) {
  check_dtype(tokens, DType::I32, "embedding", "tokens");
  const int32_t* t = tokens.data<int32_t>();
  for (int64_t r = 0; r < tokens.numel(); ++r)
    FELA_CHECK(t[r] >= 0 && t[r] < V, "[embedding] token id ", t[r], " out of range [0, ", V, ")");
}
}  // namespace

void embedding_forward(Tensor h, const Tensor& tokens, const Tensor& E, Impl impl) {
  FELA_CHECK(E.rank() == 2, "[embedding] E must be [V, d], got ", E.shape().str());
  const int64_t R = tokens.numel(), d = E.size(1);
  FELA_CHECK(h.numel() == R * d && h.size(-1) == d, "[embedding] h has shape ", h.shape().str(),
             ", expected ", R, " rows of ", d);
  check_tokens(tokens, E.size(0));
  check_same_float("embedding", {&E, &h});
  dispatch_float(E.dtype(), "embedding", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::embedding_forward<T> : cpu::embedding_forward<T>;
    f(h.data<T>(), tokens.data<int32_t>(), E.data<T>(), R, d);
  });
}

void embedding_backward(Tensor dE, const Tensor& dh, const Tensor& tokens, Impl impl) {
  FELA_CHECK(dE.rank() == 2, "[embedding] dE must be [V, d], got ", dE.shape().str());
  const int64_t R = tokens.numel(), d = dE.size(1);
  FELA_CHECK(dh.numel() == R * d, "[embedding] dh has shape ", dh.shape().str(), ", expected ", R,
             " rows of ", d);
  check_tokens(tokens, dE.size(0));
  check_same_float("embedding", {&dE, &dh});
  dispatch_float(dE.dtype(), "embedding", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::embedding_backward<T> : cpu::embedding_backward<T>;
    f(dE.data<T>(), dh.data<T>(), tokens.data<int32_t>(), R, d);
  });
}

}  // namespace fela::ops
