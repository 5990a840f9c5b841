// Inverted dropout dispatcher (SPEC §8): argument checks, then the ref or cpu kernel for CPU
// tensors and the CUDA kernel for GPU tensors. Forward and backward apply the same mask, so both
// go to one kernel, dropout_apply. The hash that defines the mask lives in dropout_hash.h.
#include "fela/ops/dropout.h"

namespace fela::ops {

namespace {

// Checks p, shapes and dtypes; returns the device of the tensors.
Device check_dropout(const Tensor& out, const Tensor& in, double p, const char* out_name,
                     const char* in_name, Impl impl) {
  FELA_CHECK(p >= 0 && p < 1, "[dropout] p must be in [0, 1), got ", p);
  check_shape(out, in.shape(), "dropout", out_name);
  using enum DType;
  using enum Device;
  const Device dev =
      check_signature("dropout", {{in_name, &in}, {out_name, &out}},
                      {{Cpu, F32, F32}, {Cpu, F64, F64}, {Cuda, BF16, BF16}, {Cuda, F32, F32}});
  if (dev == Cuda) check_cuda_impl("dropout", impl);
  return dev;
}

void apply(Tensor out, const Tensor& in, double p, uint64_t seed, Impl impl, Device dev) {
  if (dev == Device::Cuda) {
#ifdef FELA_HAVE_CUDA
    if (in.dtype() == DType::BF16)
      cuda::dropout_apply(out.data<BFloat16>(), in.data<BFloat16>(), in.numel(), p, seed);
    else
      cuda::dropout_apply(out.data<float>(), in.data<float>(), in.numel(), p, seed);
#else
    fail_no_cuda("dropout");
#endif
    return;
  }
  dispatch_float(in.dtype(), "dropout", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::dropout_apply<T> : cpu::dropout_apply<T>;
    f(out.data<T>(), in.data<T>(), in.numel(), p, seed);
  });
}

}  // namespace

void dropout_forward(Tensor y, const Tensor& x, double p, uint64_t seed, Impl impl) {
  const Device dev = check_dropout(y, x, p, "y", "x", impl);
  apply(y, x, p, seed, impl, dev);
}

void dropout_backward(Tensor dx, const Tensor& dy, double p, uint64_t seed, Impl impl) {
  const Device dev = check_dropout(dx, dy, p, "dx", "dy", impl);
  apply(dx, dy, p, seed, impl, dev);
}

}  // namespace fela::ops
