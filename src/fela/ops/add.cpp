// Elementwise add: the dispatcher (CPU ref / cpu kernels, or the CUDA kernel for GPU tensors) and
// the two CPU kernels, which are one line each.
#include "fela/ops/add.h"

namespace fela::ops {

void add(Tensor y, const Tensor& a, const Tensor& b, Impl impl) {
  FELA_CHECK(a.numel() == y.numel() && b.numel() == y.numel(), "[add] sizes differ: y ",
             y.shape().str(), ", a ", a.shape().str(), ", b ", b.shape().str());
  using enum DType;
  using enum Device;
  const Device dev = check_signature("add", {{"y", &y}, {"a", &a}, {"b", &b}},
                                     {{Cpu, F32, F32, F32},
                                      {Cpu, F64, F64, F64},
                                      {Cuda, BF16, BF16, BF16},
                                      {Cuda, F32, F32, F32}});
  if (dev == Cuda) {
    check_cuda_impl("add", impl);
#ifdef FELA_HAVE_CUDA
    if (y.dtype() == F32)
      cuda::add(y.data<float>(), a.data<float>(), b.data<float>(), y.numel());
    else
      cuda::add(y.data<BFloat16>(), a.data<BFloat16>(), b.data<BFloat16>(), y.numel());
#else
    fail_no_cuda("add");
#endif
    return;
  }
  dispatch_float(y.dtype(), "add", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::add<T> : cpu::add<T>;
    f(y.data<T>(), a.data<T>(), b.data<T>(), y.numel());
  });
}

namespace ref {
template <class T>
void add(T* y, const T* a, const T* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}
FELA_INSTANTIATE_FLOAT(add)
}  // namespace ref

namespace cpu {
template <class T>
void add(T* y, const T* a, const T* b, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}
FELA_INSTANTIATE_FLOAT(add)
}  // namespace cpu

}  // namespace fela::ops
