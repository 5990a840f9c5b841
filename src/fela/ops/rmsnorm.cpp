// RMSNorm dispatcher: argument checks, then ref / cpu kernels for CPU tensors and the CUDA
// kernels for GPU tensors.
#include "fela/ops/rmsnorm.h"

#include "fela/ops/add.h"

namespace fela::ops {

namespace {
struct Rows {
  int64_t R, d;
};
// x as R rows of d values; checks the gain g [d] and the saved rstd [R] against them.
Rows norm_rows(const Tensor& x, const Tensor& g, const Tensor& rstd) {
  const int64_t d = x.size(-1), R = x.numel() / d;
  check_shape(g, {d}, "rmsnorm", "g");
  FELA_CHECK(rstd.numel() == R, "[rmsnorm] rstd has ", rstd.numel(), " values, expected ", R);
  return {R, d};
}
}  // namespace

void rmsnorm_forward(Tensor y, Tensor rstd, const Tensor& x, const Tensor& g, double eps,
                     Impl impl) {
  const auto [R, d] = norm_rows(x, g, rstd);
  check_shape(y, x.shape(), "rmsnorm", "y");
  using enum DType;
  using enum Device;
  const Device dev = check_signature(
      "rmsnorm", {{"x", &x}, {"y", &y}, {"g", &g}, {"rstd", &rstd}},
      {{Cpu, F32, F32, F32, F32}, {Cpu, F64, F64, F64, F64}, {Cuda, BF16, BF16, F32, F32}});
  if (dev == Cuda) {
    check_cuda_impl("rmsnorm", impl);
#ifdef FELA_HAVE_CUDA
    cuda::rmsnorm_forward(y.data<BFloat16>(), rstd.data<float>(), nullptr, x.data<BFloat16>(),
                          nullptr, g.data<float>(), R, d, eps);
#else
    fail_no_cuda("rmsnorm");
#endif
    return;
  }
  dispatch_float(x.dtype(), "rmsnorm", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::rmsnorm_forward<T> : cpu::rmsnorm_forward<T>;
    f(y.data<T>(), rstd.data<T>(), x.data<T>(), g.data<T>(), R, d, eps);
  });
}

void add_rmsnorm_forward(Tensor s, Tensor y, Tensor rstd, const Tensor& a, const Tensor& b,
                         const Tensor& g, double eps, Impl impl) {
  check_shape(b, a.shape(), "rmsnorm", "b");
  check_shape(s, a.shape(), "rmsnorm", "s");
  if (a.device() != Device::Cuda) {  // the CPU's sum and norm, in turn
    add(s, a, b, impl);
    return rmsnorm_forward(y, rstd, s, g, eps, impl);
  }
  [[maybe_unused]] const auto [R, d] = norm_rows(a, g, rstd);  // used by the CUDA call
  check_shape(y, a.shape(), "rmsnorm", "y");
  using enum DType;
  using enum Device;
  check_signature("rmsnorm",
                  {{"a", &a}, {"b", &b}, {"s", &s}, {"y", &y}, {"g", &g}, {"rstd", &rstd}},
                  {{Cuda, BF16, BF16, BF16, BF16, F32, F32}});
  check_cuda_impl("rmsnorm", impl);
#ifdef FELA_HAVE_CUDA
  cuda::rmsnorm_forward(y.data<BFloat16>(), rstd.data<float>(), s.data<BFloat16>(),
                        a.data<BFloat16>(), b.data<BFloat16>(), g.data<float>(), R, d, eps);
#else
  fail_no_cuda("rmsnorm");
#endif
}

void rmsnorm_backward(Tensor dx, Tensor dg, const Tensor& dy, const Tensor& x, const Tensor& g,
                      const Tensor& rstd, Impl impl, GradMode dx_mode) {
  const auto [R, d] = norm_rows(x, g, rstd);
  check_shape(dg, {d}, "rmsnorm", "dg");
  check_shape(dy, x.shape(), "rmsnorm", "dy");
  check_shape(dx, x.shape(), "rmsnorm", "dx");
  using enum DType;
  using enum Device;
  const Device dev = check_signature(
      "rmsnorm", {{"x", &x}, {"dx", &dx}, {"dy", &dy}, {"g", &g}, {"dg", &dg}, {"rstd", &rstd}},
      {{Cpu, F32, F32, F32, F32, F32, F32},
       {Cpu, F64, F64, F64, F64, F64, F64},
       {Cuda, BF16, BF16, BF16, F32, F32, F32}});
  if (dev == Cuda) {
    check_cuda_impl("rmsnorm", impl);
#ifdef FELA_HAVE_CUDA
    cuda::rmsnorm_backward(dx.data<BFloat16>(), dg.data<float>(), dy.data<BFloat16>(),
                           x.data<BFloat16>(), g.data<float>(), rstd.data<float>(), R, d, dx_mode);
#else
    fail_no_cuda("rmsnorm");
#endif
    return;
  }
  dispatch_float(x.dtype(), "rmsnorm", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::rmsnorm_backward<T> : cpu::rmsnorm_backward<T>;
    f(dx.data<T>(), dg.data<T>(), dy.data<T>(), x.data<T>(), g.data<T>(), rstd.data<T>(), R, d,
      dx_mode);
  });
}

}  // namespace fela::ops
