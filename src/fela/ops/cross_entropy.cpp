// Cross-entropy dispatcher: argument checks (targets against V, read through a host copy when
// they live on the GPU), then ref / cpu kernels for CPU tensors and the CUDA kernels for GPU
// tensors.
#include "fela/ops/cross_entropy.h"

namespace fela::ops {

namespace {
void check_ce(const Tensor& logits, const Tensor& targets) {
  FELA_CHECK(logits.rank() == 2, "[cross_entropy] logits must be [R, V], got ",
             logits.shape().str());
  check_dtype(targets, DType::I32, "cross_entropy", "targets");
  FELA_CHECK(targets.numel() == logits.size(0), "[cross_entropy] ", targets.numel(),
             " targets for ", logits.size(0), " rows");
  Array host;
  const int32_t* t = targets.data<int32_t>();
  if (targets.device() != Device::Cpu) {  // R ids: a small copy, and one wait for the GPU
    host = Array::empty(DType::I32, targets.shape());
    tensor_copy(host, targets);
    t = host.data<int32_t>();
  }
  for (int64_t r = 0; r < targets.numel(); ++r)
    FELA_CHECK(t[r] < logits.size(1), "[cross_entropy] target ", t[r], " out of range [0, ",
               logits.size(1), ")");
}
}  // namespace

void cross_entropy_forward(Tensor loss, const Tensor& logits, const Tensor& targets, Impl impl) {
  FELA_CHECK(logits.rank() == 2, "[cross_entropy] logits must be [R, V], got ",
             logits.shape().str());
  check_shape(loss, {logits.size(0)}, "cross_entropy", "loss");
  using enum DType;
  using enum Device;
  const Device dev = check_signature(
      "cross_entropy", {{"logits", &logits}, {"targets", &targets}, {"loss", &loss}},
      {{Cpu, F32, I32, F32}, {Cpu, F64, I32, F64}, {Cuda, BF16, I32, F32}});
  check_ce(logits, targets);
  if (dev == Cuda) {
    check_cuda_impl("cross_entropy", impl);
#ifdef FELA_HAVE_CUDA
    cuda::cross_entropy_forward(loss.data<float>(), logits.data<BFloat16>(),
                                targets.data<int32_t>(), logits.size(0), logits.size(1));
#else
    fail_no_cuda("cross_entropy");
#endif
    return;
  }
  dispatch_float(logits.dtype(), "cross_entropy", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::cross_entropy_forward<T> : cpu::cross_entropy_forward<T>;
    f(loss.data<T>(), logits.data<T>(), targets.data<int32_t>(), logits.size(0), logits.size(1));
  });
}

void cross_entropy_backward(Tensor dlogits, const Tensor& logits, const Tensor& targets,
                            double scale, Impl impl) {
  FELA_CHECK(logits.rank() == 2, "[cross_entropy] logits must be [R, V], got ",
             logits.shape().str());
  check_shape(dlogits, logits.shape(), "cross_entropy", "dlogits");
  using enum DType;
  using enum Device;
  const Device dev = check_signature(
      "cross_entropy", {{"logits", &logits}, {"targets", &targets}, {"dlogits", &dlogits}},
      {{Cpu, F32, I32, F32}, {Cpu, F64, I32, F64}, {Cuda, BF16, I32, BF16}});
  check_ce(logits, targets);
  if (dev == Cuda) {
    check_cuda_impl("cross_entropy", impl);
#ifdef FELA_HAVE_CUDA
    cuda::cross_entropy_backward(dlogits.data<BFloat16>(), logits.data<BFloat16>(),
                                 targets.data<int32_t>(), logits.size(0), logits.size(1), scale);
#else
    fail_no_cuda("cross_entropy");
#endif
    return;
  }
  dispatch_float(logits.dtype(), "cross_entropy", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::cross_entropy_backward<T> : cpu::cross_entropy_backward<T>;
    f(dlogits.data<T>(), logits.data<T>(), targets.data<int32_t>(), logits.size(0), logits.size(1),
      scale);
  });
}

}  // namespace fela::ops
