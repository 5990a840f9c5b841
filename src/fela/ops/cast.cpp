// Cast dispatcher: a plain loop on the CPU (no reference/fast split: the loop is the math), the
// CUDA kernels for GPU tensors.
#include "fela/ops/cast.h"

#include <type_traits>

#include "fela/core/bf16.h"

namespace fela::ops {

namespace {
template <class Y, class X>
void cast_loop(Y* y, const X* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<Y, BFloat16>)
      y[i] = BFloat16(float(x[i]));
    else
      y[i] = Y(double(x[i]));
  }
}
template <class Y>
void cast_from(Y* y, const Tensor& x) {
  switch (x.dtype()) {
    case DType::F32:
      return cast_loop(y, x.data<float>(), x.numel());
    case DType::F64:
      return cast_loop(y, x.data<double>(), x.numel());
    case DType::BF16:
      return cast_loop(y, x.data<BFloat16>(), x.numel());
    default:
      fail("[cast] unsupported dtype ", dtype_name(x.dtype()));
  }
}
}  // namespace

void cast(Tensor y, const Tensor& x) {
  check_shape(y, x.shape(), "cast", "y");
  using enum DType;
  using enum Device;
  const Device dev = check_signature("cast", {{"x", &x}, {"y", &y}},
                                     {{Cpu, F32, F32},
                                      {Cpu, F32, F64},
                                      {Cpu, F32, BF16},
                                      {Cpu, F64, F32},
                                      {Cpu, F64, F64},
                                      {Cpu, F64, BF16},
                                      {Cpu, BF16, F32},
                                      {Cpu, BF16, F64},
                                      {Cpu, BF16, BF16},
                                      {Cuda, F32, BF16},
                                      {Cuda, BF16, F32}});
  if (dev == Cuda) {
#ifdef FELA_HAVE_CUDA
    if (y.dtype() == BF16)
      cuda::cast(y.data<BFloat16>(), x.data<float>(), x.numel());
    else
      cuda::cast(y.data<float>(), x.data<BFloat16>(), x.numel());
#else
    fail_no_cuda("cast");
#endif
    return;
  }
  switch (y.dtype()) {
    case F32:
      return cast_from(y.data<float>(), x);
    case F64:
      return cast_from(y.data<double>(), x);
    default:
      return cast_from(y.data<BFloat16>(), x);
  }
}

}  // namespace fela::ops
