// Per-channel scaling dispatcher: argument checks, then the ref or cpu kernel for CPU tensors and
// the CUDA kernels for GPU tensors.
#include "fela/ops/channel_scale.h"

namespace fela::ops {

// x [..., d] viewed as [R, d]; g [d]. Returns {R, d}.
static std::pair<int64_t, int64_t> check_channel_scale(const Tensor& x, const Tensor& g) {
  FELA_CHECK(x.rank() >= 1, "[channel_scale] x must have a channel dimension, got ",
             x.shape().str());
  const int64_t d = x.size(-1);
  check_shape(g, {d}, "channel_scale", "g");
  int64_t R = 1;
  for (int i = 0; i + 1 < x.rank(); ++i) R *= x.size(i);
  return {R, d};
}

void channel_scale_forward(Tensor y, const Tensor& x, const Tensor& g, Impl impl) {
  const auto [R, d] = check_channel_scale(x, g);
  check_shape(y, x.shape(), "channel_scale", "y");
  using enum DType;
  using enum Device;
  const Device dev =
      check_signature("channel_scale", {{"x", &x}, {"g", &g}, {"y", &y}},
                      {{Cpu, F32, F32, F32}, {Cpu, F64, F64, F64}, {Cuda, BF16, F32, BF16}});
  if (dev == Cuda) {
    check_cuda_impl("channel_scale", impl);
#ifdef FELA_HAVE_CUDA
    cuda::channel_scale_forward(y.data<BFloat16>(), x.data<BFloat16>(), g.data<float>(), R, d);
#else
    fail_no_cuda("channel_scale");
#endif
    return;
  }
  dispatch_float(x.dtype(), "channel_scale", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::channel_scale_forward<T> : cpu::channel_scale_forward<T>;
    f(y.data<T>(), x.data<T>(), g.data<T>(), R, d);
  });
}

void channel_scale_backward(Tensor dx, Tensor dg, const Tensor& dy, const Tensor& x,
                            const Tensor& g, Impl impl) {
  const auto [R, d] = check_channel_scale(x, g);
  check_shape(dy, x.shape(), "channel_scale", "dy");
  check_shape(dx, x.shape(), "channel_scale", "dx");
  check_shape(dg, {d}, "channel_scale", "dg");
  using enum DType;
  using enum Device;
  const Device dev = check_signature("channel_scale",
                                     {{"x", &x}, {"g", &g}, {"dy", &dy}, {"dx", &dx}, {"dg", &dg}},
                                     {{Cpu, F32, F32, F32, F32, F32},
                                      {Cpu, F64, F64, F64, F64, F64},
                                      {Cuda, BF16, F32, BF16, BF16, F32}});
  if (dev == Cuda) {
    check_cuda_impl("channel_scale", impl);
#ifdef FELA_HAVE_CUDA
    cuda::channel_scale_backward(dx.data<BFloat16>(), dg.data<float>(), dy.data<BFloat16>(),
                                 x.data<BFloat16>(), g.data<float>(), R, d);
#else
    fail_no_cuda("channel_scale");
#endif
    return;
  }
  dispatch_float(x.dtype(), "channel_scale", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::channel_scale_backward<T> : cpu::channel_scale_backward<T>;
    f(dx.data<T>(), dg.data<T>(), dy.data<T>(), x.data<T>(), g.data<T>(), R, d);
  });
}

}  // namespace fela::ops
