// Cross-entropy dispatcher: argument checks (targets against V, read through a host copy when
// they live on the GPU), then ref / cpu kernels for CPU tensors and the CUDA kernels for GPU
// tensors.
#include "fela/ops/cross_entropy.h"

namespace fela::ops {

namespace {
// Returns the number of classes: all columns, or `classes` for padded rows (GPU only).
int64_t check_ce(const Tensor& logits, const Tensor& targets, int64_t classes) {
  FELA_CHECK(logits.rank() == 2, "[cross_entropy] logits must be [R, V], got ",
             logits.shape().str());
  check_dtype(targets, DType::I32, "cross_entropy", "targets");
  FELA_CHECK(targets.numel() == logits.size(0), "[cross_entropy] ", targets.numel(),
             " targets for ", logits.size(0), " rows");
  FELA_CHECK(classes >= 0 && classes <= logits.size(1), "[cross_entropy] ", classes,
             " classes in rows of ", logits.size(1));
  const int64_t V = classes ? classes : logits.size(1);
  FELA_CHECK(V == logits.size(1) || logits.device() == Device::Cuda,
             "[cross_entropy] padded logits rows are a GPU layout");
  Array host;
  const int32_t* t = targets.data<int32_t>();
  if (targets.device() != Device::Cpu) {  // R ids: a small copy, and one wait for the GPU
    host = Array::empty(DType::I32, targets.shape());
    tensor_copy(host, targets);
    t = host.data<int32_t>();
  }
  for (int64_t r = 0; r < targets.numel(); ++r)
    FELA_CHECK(t[r] < V, "[cross_entropy] target ", t[r], " out of range [0, ", V, ")");
  return V;
}
}  // namespace

void cross_entropy_forward(Tensor loss, const Tensor& logits, const Tensor& targets, Impl impl,
                           int64_t classes) {
  FELA_CHECK(logits.rank() == 2, "[cross_entropy] logits must be [R, V], got ",
             logits.shape().str());
  check_shape(loss, {logits.size(0)}, "cross_entropy", "loss");
  using enum DType;
  using enum Device;
  const Device dev = check_signature(
      "cross_entropy", {{"logits", &logits}, {"targets", &targets}, {"loss", &loss}},
      {{Cpu, F32, I32, F32}, {Cpu, F64, I32, F64}, {Cuda, BF16, I32, F32}});
  const int64_t V = check_ce(logits, targets, classes);
  if (dev == Cuda) {
    check_cuda_impl("cross_entropy", impl);
#ifdef FELA_HAVE_CUDA
    cuda::cross_entropy_forward(loss.data<float>(), logits.data<BFloat16>(),
                                targets.data<int32_t>(), logits.size(0), V, logits.size(1));
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
                            double scale, Impl impl, int64_t classes) {
  FELA_CHECK(logits.rank() == 2, "[cross_entropy] logits must be [R, V], got ",
             logits.shape().str());
  check_shape(dlogits, logits.shape(), "cross_entropy", "dlogits");
  using enum DType;
  using enum Device;
  const Device dev = check_signature(
      "cross_entropy", {{"logits", &logits}, {"targets", &targets}, {"dlogits", &dlogits}},
      {{Cpu, F32, I32, F32}, {Cpu, F64, I32, F64}, {Cuda, BF16, I32, BF16}});
  if (dev == Cuda) {  // the fused kernel, with its loss written to scratch
    Array loss = Array::empty(DType::F32, {logits.size(0)}, Device::Cuda);
    return cross_entropy_forward_backward(loss, dlogits, logits, targets, scale, impl, classes);
  }
  check_ce(logits, targets, classes);
  dispatch_float(logits.dtype(), "cross_entropy", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::cross_entropy_backward<T> : cpu::cross_entropy_backward<T>;
    f(dlogits.data<T>(), logits.data<T>(), targets.data<int32_t>(), logits.size(0), logits.size(1),
      scale);
  });
}

void cross_entropy_forward_backward(Tensor loss, Tensor dlogits, const Tensor& logits,
                                    const Tensor& targets, double scale, Impl impl,
                                    int64_t classes) {
  if (logits.device() != Device::Cuda) {  // the CPU has no pass to save: the two ops in turn
    cross_entropy_forward(loss, logits, targets, impl, classes);
    return cross_entropy_backward(dlogits, logits, targets, scale, impl, classes);
  }
  FELA_CHECK(logits.rank() == 2, "[cross_entropy] logits must be [R, V], got ",
             logits.shape().str());
  check_shape(loss, {logits.size(0)}, "cross_entropy", "loss");
  check_shape(dlogits, logits.shape(), "cross_entropy", "dlogits");
  using enum DType;
  using enum Device;
  check_signature(
      "cross_entropy",
      {{"logits", &logits}, {"targets", &targets}, {"loss", &loss}, {"dlogits", &dlogits}},
      {{Cuda, BF16, I32, F32, BF16}});
  const int64_t V = check_ce(logits, targets, classes);
  check_cuda_impl("cross_entropy", impl);
#ifdef FELA_HAVE_CUDA
  cuda::cross_entropy_forward_backward(loss.data<float>(), dlogits.data<BFloat16>(),
                                       logits.data<BFloat16>(), targets.data<int32_t>(),
                                       logits.size(0), V, logits.size(1), scale);
#else
  fail_no_cuda("cross_entropy");
#endif
}

}  // namespace fela::ops
