// Linear dispatcher: argument checks, then ref / cpu kernels for CPU tensors and cuBLASLt for
// GPU tensors.
#include "fela/ops/linear.h"

namespace fela::ops {

namespace {
struct LinearDims {
  int64_t R, in, out;
};
LinearDims linear_dims(const Tensor& x, const Tensor& w, Layout layout) {
  FELA_CHECK(w.rank() == 2, "[linear] weight must be a matrix, got ", w.shape().str());
  const int64_t in = x.size(-1);
  const int64_t w_in = layout == Layout::InOut ? w.size(0) : w.size(1);
  FELA_CHECK(w_in == in, "[linear] input has ", in, " features, weight ", w.shape().str(),
             layout == Layout::OutIn ? " (stored [out, in])" : "");
  return {in ? x.numel() / in : 0, in, layout == Layout::InOut ? w.size(1) : w.size(0)};
}
}  // namespace

void linear_forward(Tensor y, const Tensor& x, const Tensor& w, Layout layout, Impl impl) {
  const auto [R, in, out] = linear_dims(x, w, layout);
  FELA_CHECK(y.numel() == R * out && y.size(-1) == out, "[linear] y has shape ", y.shape().str(),
             ", expected ", R, " rows of ", out);
  using enum DType;
  using enum Device;
  const Device dev = check_signature("linear", {{"x", &x}, {"w", &w}, {"y", &y}},
                                     {{Cpu, F32, F32, F32},
                                      {Cpu, F64, F64, F64},
                                      {Cuda, BF16, BF16, BF16},
                                      {Cuda, BF16, BF16, F32}});
  if (dev == Cuda) {
    check_cuda_impl("linear", impl);
#ifdef FELA_HAVE_CUDA
    if (y.dtype() == BF16)
      cuda::linear_forward(y.data<BFloat16>(), x.data<BFloat16>(), w.data<BFloat16>(), R, in, out,
                           layout);
    else
      cuda::linear_forward(y.data<float>(), x.data<BFloat16>(), w.data<BFloat16>(), R, in, out,
                           layout);
#else
    fail_no_cuda("linear");
#endif
    return;
  }
  dispatch_float(x.dtype(), "linear", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::linear_forward<T> : cpu::linear_forward<T>;
    f(y.data<T>(), x.data<T>(), w.data<T>(), R, in, out, layout);
  });
}

void linear_backward(Tensor dx, Tensor dw, const Tensor& dy, const Tensor& x, const Tensor& w,
                     Layout layout, GradMode dx_mode, Impl impl) {
  const auto [R, in, out] = linear_dims(x, w, layout);
  FELA_CHECK(dy.numel() == R * out, "[linear] dy has shape ", dy.shape().str(), ", expected ", R,
             " rows of ", out);
  if (dx.raw()) check_shape(dx, x.shape(), "linear", "dx");
  if (dw.raw()) check_shape(dw, w.shape(), "linear", "dw");
  using enum DType;
  using enum Device;
  const Device dev = check_signature("linear",
                                     {{"x", &x},
                                      {"w", &w},
                                      {"dy", &dy},
                                      {"dx", dx.raw() ? &dx : nullptr},
                                      {"dw", dw.raw() ? &dw : nullptr}},
                                     {{Cpu, F32, F32, F32, F32, F32},
                                      {Cpu, F64, F64, F64, F64, F64},
                                      {Cuda, BF16, BF16, BF16, BF16, F32}});
  if (dev == Cuda) {
    check_cuda_impl("linear", impl);
#ifdef FELA_HAVE_CUDA
    cuda::linear_backward(dx.raw() ? dx.data<BFloat16>() : nullptr,
                          dw.raw() ? dw.data<float>() : nullptr, dy.data<BFloat16>(),
                          x.data<BFloat16>(), w.data<BFloat16>(), R, in, out, layout, dx_mode);
#else
    fail_no_cuda("linear");
#endif
    return;
  }
  dispatch_float(x.dtype(), "linear", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::linear_backward<T> : cpu::linear_backward<T>;
    f(dx.raw() ? dx.data<T>() : nullptr, dw.raw() ? dw.data<T>() : nullptr, dy.data<T>(),
      x.data<T>(), w.data<T>(), R, in, out, layout, dx_mode);
  });
}

}  // namespace fela::ops
