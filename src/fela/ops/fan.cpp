// FAN projection dispatcher (SPEC §8): argument checks, then the ref or cpu kernel for CPU
// tensors and the CUDA kernels for GPU tensors.
#include "fela/ops/fan.h"

namespace fela::ops {

// Rows of t viewed as [R, cols]: the product of every dimension but the last.
static int64_t fan_rows(const Tensor& t) {
  int64_t R = 1;
  for (int i = 0; i + 1 < t.rank(); ++i) R *= t.size(i);
  return R;
}

// p [..., dp] and l [..., dl] with the same leading dimensions as ref, checked by name.
static void check_fan_rows(const Tensor& t, const Tensor& ref, const char* name,
                           const char* ref_name) {
  FELA_CHECK(t.rank() == ref.rank(), "[fan] ", name, " ", t.shape().str(), " and ", ref_name, " ",
             ref.shape().str(), " differ in rank");
  for (int i = 0; i + 1 < t.rank(); ++i)
    FELA_CHECK(t.size(i) == ref.size(i), "[fan] ", name, " ", t.shape().str(), " and ", ref_name,
               " ", ref.shape().str(), " differ in their leading dimensions");
}

void fan_forward(Tensor y, const Tensor& p, const Tensor& l, Impl impl) {
  FELA_CHECK(p.rank() >= 1, "[fan] p must be [R, dp], got ", p.shape().str());
  check_fan_rows(l, p, "l", "p");
  check_fan_rows(y, p, "y", "p");
  const int64_t R = fan_rows(p), dp = p.size(-1), dl = l.size(-1);
  FELA_CHECK(y.size(-1) == 2 * dp + dl, "[fan] y has ", y.size(-1),
             " columns, need 2 dp + dl = ", 2 * dp + dl);
  using enum DType;
  using enum Device;
  const Device dev =
      check_signature("fan", {{"p", &p}, {"l", &l}, {"y", &y}},
                      {{Cpu, F32, F32, F32}, {Cpu, F64, F64, F64}, {Cuda, BF16, BF16, BF16}});
  if (dev == Cuda) {
    check_cuda_impl("fan", impl);
#ifdef FELA_HAVE_CUDA
    cuda::fan_forward(y.data<BFloat16>(), p.data<BFloat16>(), l.data<BFloat16>(), R, dp, dl);
#else
    fail_no_cuda("fan");
#endif
    return;
  }
  dispatch_float(p.dtype(), "fan", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::fan_forward<T> : cpu::fan_forward<T>;
    f(y.data<T>(), p.data<T>(), l.data<T>(), R, dp, dl);
  });
}

void fan_backward(Tensor dp, Tensor dl, const Tensor& dy, const Tensor& p, Impl impl) {
  FELA_CHECK(p.rank() >= 1, "[fan] p must be [R, dp], got ", p.shape().str());
  check_shape(dp, p.shape(), "fan", "dp");
  check_fan_rows(dl, p, "dl", "p");
  check_fan_rows(dy, p, "dy", "p");
  const int64_t R = fan_rows(p), dpw = p.size(-1), dlw = dl.size(-1);
  FELA_CHECK(dy.size(-1) == 2 * dpw + dlw, "[fan] dy has ", dy.size(-1),
             " columns, need 2 dp + dl = ", 2 * dpw + dlw);
  using enum DType;
  using enum Device;
  const Device dev = check_signature(
      "fan", {{"p", &p}, {"dy", &dy}, {"dp", &dp}, {"dl", &dl}},
      {{Cpu, F32, F32, F32, F32}, {Cpu, F64, F64, F64, F64}, {Cuda, BF16, BF16, BF16, BF16}});
  if (dev == Cuda) {
    check_cuda_impl("fan", impl);
#ifdef FELA_HAVE_CUDA
    cuda::fan_backward(dp.data<BFloat16>(), dl.data<BFloat16>(), dy.data<BFloat16>(),
                       p.data<BFloat16>(), R, dpw, dlw);
#else
    fail_no_cuda("fan");
#endif
    return;
  }
  dispatch_float(p.dtype(), "fan", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::fan_backward<T> : cpu::fan_backward<T>;
    f(dp.data<T>(), dl.data<T>(), dy.data<T>(), p.data<T>(), R, dpw, dlw);
  });
}

}  // namespace fela::ops
