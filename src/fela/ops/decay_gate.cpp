// Decay gate dispatcher: argument checks, then the ref or cpu kernel for CPU tensors and the
// CUDA kernels for GPU tensors.
#include "fela/ops/decay_gate.h"

namespace fela::ops {

void decay_gate_forward(Tensor a, const Tensor& x, const Tensor& b, double normalizer, Impl impl) {
  const int64_t n = x.size(-1), R = n ? x.numel() / n : 0;
  check_shape(b, {n}, "decay_gate", "b");
  check_shape(a, x.shape(), "decay_gate", "a");
  FELA_CHECK(normalizer > 0, "[decay_gate] normalizer must be positive, got ", normalizer);
  using enum DType;
  using enum Device;
  const Device dev = check_signature("decay_gate", {{"x", &x}, {"b", &b}, {"a", &a}},
                                     {{Cpu, F32, F32, F32},
                                      {Cpu, F64, F64, F64},
                                      {Cuda, BF16, F32, BF16},
                                      {Cuda, BF16, F32, F32}});
  if (dev == Cuda) {
    check_cuda_impl("decay_gate", impl);
#ifdef FELA_HAVE_CUDA
    if (a.dtype() == BF16)
      cuda::decay_gate_forward(a.data<BFloat16>(), x.data<BFloat16>(), b.data<float>(), R, n,
                               normalizer);
    else
      cuda::decay_gate_forward(a.data<float>(), x.data<BFloat16>(), b.data<float>(), R, n,
                               normalizer);
#else
    fail_no_cuda("decay_gate");
#endif
    return;
  }
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
  using enum DType;
  using enum Device;
  const Device dev =
      check_signature("decay_gate", {{"x", &x}, {"b", &b}, {"da", &da}, {"dx", &dx}, {"db", &db}},
                      {{Cpu, F32, F32, F32, F32, F32},
                       {Cpu, F64, F64, F64, F64, F64},
                       {Cuda, BF16, F32, BF16, BF16, F32},
                       {Cuda, BF16, F32, F32, BF16, F32}});
  if (dev == Cuda) {
    check_cuda_impl("decay_gate", impl);
#ifdef FELA_HAVE_CUDA
    if (da.dtype() == BF16)
      cuda::decay_gate_backward(dx.data<BFloat16>(), db.data<float>(), da.data<BFloat16>(),
                                x.data<BFloat16>(), b.data<float>(), R, n, normalizer);
    else
      cuda::decay_gate_backward(dx.data<BFloat16>(), db.data<float>(), da.data<float>(),
                                x.data<BFloat16>(), b.data<float>(), R, n, normalizer);
#else
    fail_no_cuda("decay_gate");
#endif
    return;
  }
  dispatch_float(x.dtype(), "decay_gate", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::decay_gate_backward<T> : cpu::decay_gate_backward<T>;
    f(dx.data<T>(), db.data<T>(), da.data<T>(), x.data<T>(), b.data<T>(), R, n, normalizer);
  });
}

}  // namespace fela::ops
