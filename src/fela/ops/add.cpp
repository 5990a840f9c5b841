// Residual add: the dispatcher (CPU ref / cpu kernels, or the CUDA kernel for GPU tensors) and
// the two CPU kernels, which are one line each.
#include "fela/ops/add.h"

namespace fela::ops {

void add_inplace(Tensor y, const Tensor& x, Impl impl) {
  FELA_CHECK(x.numel() == y.numel(), "[add] sizes differ: y ", y.shape().str(), ", x ",
             x.shape().str());
  using enum DType;
  using enum Device;
  const Device dev = check_signature("add", {{"y", &y}, {"x", &x}},
                                     {{Cpu, F32, F32}, {Cpu, F64, F64}, {Cuda, BF16, BF16}, {Cuda, F32, F32}});
  if (dev == Cuda) {
    check_cuda_impl("add", impl);
#ifdef FELA_HAVE_CUDA
    if (y.dtype() == F32)
      cuda::add_inplace(y.data<float>(), x.data<float>(), y.numel());
    else
      cuda::add_inplace(y.data<BFloat16>(), x.data<BFloat16>(), y.numel());
#else
    fail_no_cuda("add");
#endif
    return;
  }
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
