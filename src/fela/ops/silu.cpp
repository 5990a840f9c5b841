// SiLU dispatcher: argument checks, then the ref or cpu kernel for CPU tensors and the CUDA
// kernels for GPU tensors.
#include "fela/ops/silu.h"

namespace fela::ops {

void silu_forward(Tensor y, const Tensor& x, Impl impl) {
  check_shape(y, x.shape(), "silu", "y");
  using enum DType;
  using enum Device;
  const Device dev = check_signature("silu", {{"x", &x}, {"y", &y}},
                                     {{Cpu, F32, F32}, {Cpu, F64, F64}, {Cuda, BF16, BF16}});
  if (dev == Cuda) {
    check_cuda_impl("silu", impl);
#ifdef FELA_HAVE_CUDA
    cuda::silu_forward(y.data<BFloat16>(), x.data<BFloat16>(), x.numel());
#else
    fail_no_cuda("silu");
#endif
    return;
  }
  dispatch_float(x.dtype(), "silu", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::silu_forward<T> : cpu::silu_forward<T>;
    f(y.data<T>(), x.data<T>(), x.numel());
  });
}

void silu_backward(Tensor dx, const Tensor& dy, const Tensor& x, Impl impl) {
  check_shape(dy, x.shape(), "silu", "dy");
  check_shape(dx, x.shape(), "silu", "dx");
  using enum DType;
  using enum Device;
  const Device dev =
      check_signature("silu", {{"x", &x}, {"dy", &dy}, {"dx", &dx}},
                      {{Cpu, F32, F32, F32}, {Cpu, F64, F64, F64}, {Cuda, BF16, BF16, BF16}});
  if (dev == Cuda) {
    check_cuda_impl("silu", impl);
#ifdef FELA_HAVE_CUDA
    cuda::silu_backward(dx.data<BFloat16>(), dy.data<BFloat16>(), x.data<BFloat16>(), x.numel());
#else
    fail_no_cuda("silu");
#endif
    return;
  }
  dispatch_float(x.dtype(), "silu", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::silu_backward<T> : cpu::silu_backward<T>;
    f(dx.data<T>(), dy.data<T>(), x.data<T>(), x.numel());
  });
}

}  // namespace fela::ops
