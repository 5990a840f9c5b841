// SwiGLU gate dispatcher: argument checks, then ref / cpu kernels for CPU tensors and the CUDA
// kernels for GPU tensors.
#include "fela/ops/swiglu.h"

namespace fela::ops {

void swiglu_forward(Tensor y, const Tensor& a, const Tensor& b, Impl impl) {
  const int64_t n = a.numel();
  FELA_CHECK(b.numel() == n && y.numel() == n, "[swiglu] sizes differ: a ", a.shape().str(), ", b ",
             b.shape().str(), ", y ", y.shape().str());
  using enum DType;
  using enum Device;
  const Device dev =
      check_signature("swiglu", {{"a", &a}, {"b", &b}, {"y", &y}},
                      {{Cpu, F32, F32, F32}, {Cpu, F64, F64, F64}, {Cuda, BF16, BF16, BF16}});
  if (dev == Cuda) {
    check_cuda_impl("swiglu", impl);
#ifdef FELA_HAVE_CUDA
    cuda::swiglu_forward(y.data<BFloat16>(), a.data<BFloat16>(), b.data<BFloat16>(), n);
#else
    fail_no_cuda("swiglu");
#endif
    return;
  }
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
  using enum DType;
  using enum Device;
  const Device dev =
      check_signature("swiglu", {{"a", &a}, {"b", &b}, {"dy", &dy}, {"da", &da}, {"db", &db}},
                      {{Cpu, F32, F32, F32, F32, F32},
                       {Cpu, F64, F64, F64, F64, F64},
                       {Cuda, BF16, BF16, BF16, BF16, BF16}});
  if (dev == Cuda) {
    check_cuda_impl("swiglu", impl);
#ifdef FELA_HAVE_CUDA
    cuda::swiglu_backward(da.data<BFloat16>(), db.data<BFloat16>(), dy.data<BFloat16>(),
                          a.data<BFloat16>(), b.data<BFloat16>(), n);
#else
    fail_no_cuda("swiglu");
#endif
    return;
  }
  dispatch_float(a.dtype(), "swiglu", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::swiglu_backward<T> : cpu::swiglu_backward<T>;
    f(da.data<T>(), db.data<T>(), dy.data<T>(), a.data<T>(), b.data<T>(), n);
  });
}

}  // namespace fela::ops
