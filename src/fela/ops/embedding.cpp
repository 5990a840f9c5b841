// Embedding dispatcher: argument checks (token ids against V, read through a host copy when
// they live on the GPU), then ref / cpu kernels for CPU tensors and the CUDA kernels for GPU
// tensors.
#include "fela/ops/embedding.h"

namespace fela::ops {

namespace {
void check_tokens(const Tensor& tokens, int64_t V) {
  Array host;
  const int32_t* t = tokens.data<int32_t>();
  if (tokens.device() != Device::Cpu) {  // R ids: a small copy, and one wait for the GPU
    host = Array::empty(DType::I32, tokens.shape());
    tensor_copy(host, tokens);
    t = host.data<int32_t>();
  }
  for (int64_t r = 0; r < tokens.numel(); ++r)
    FELA_CHECK(t[r] >= 0 && t[r] < V, "[embedding] token id ", t[r], " out of range [0, ", V, ")");
}
}  // namespace

void embedding_forward(Tensor h, const Tensor& tokens, const Tensor& E, Impl impl) {
  FELA_CHECK(E.rank() == 2, "[embedding] E must be [V, d], got ", E.shape().str());
  const int64_t R = tokens.numel(), d = E.size(1);
  FELA_CHECK(h.numel() == R * d && h.size(-1) == d, "[embedding] h has shape ", h.shape().str(),
             ", expected ", R, " rows of ", d);
  using enum DType;
  using enum Device;
  const Device dev =
      check_signature("embedding", {{"tokens", &tokens}, {"E", &E}, {"h", &h}},
                      {{Cpu, I32, F32, F32}, {Cpu, I32, F64, F64}, {Cuda, I32, BF16, BF16}});
  check_tokens(tokens, E.size(0));
  if (dev == Cuda) {
    check_cuda_impl("embedding", impl);
#ifdef FELA_HAVE_CUDA
    cuda::embedding_forward(h.data<BFloat16>(), tokens.data<int32_t>(), E.data<BFloat16>(), R, d);
#else
    fail_no_cuda("embedding");
#endif
    return;
  }
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
  using enum DType;
  using enum Device;
  const Device dev =
      check_signature("embedding", {{"tokens", &tokens}, {"dh", &dh}, {"dE", &dE}},
                      {{Cpu, I32, F32, F32}, {Cpu, I32, F64, F64}, {Cuda, I32, BF16, F32}});
  check_tokens(tokens, dE.size(0));
  if (dev == Cuda) {
    check_cuda_impl("embedding", impl);
#ifdef FELA_HAVE_CUDA
    cuda::embedding_backward(dE.data<float>(), dh.data<BFloat16>(), tokens.data<int32_t>(), R,
                             dE.size(0), d);
#else
    fail_no_cuda("embedding");
#endif
    return;
  }
  dispatch_float(dE.dtype(), "embedding", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::embedding_backward<T> : cpu::embedding_backward<T>;
    f(dE.data<T>(), dh.data<T>(), tokens.data<int32_t>(), R, d);
  });
}

}  // namespace fela::ops
