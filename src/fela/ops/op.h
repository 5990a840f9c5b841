// What every op shares: the choice of implementation and the dtype dispatch.
//
// An op lives in one header (ops/<op>.h) that states its math, shapes and gradient
// convention once: parameter gradients are accumulated (+=), activation gradients are
// written (=). The public functions take Tensor views, check arguments once, and pick an
// implementation:
//   Impl::Ref  ops/ref/<op>.cpp   plain loops with double accumulation: the oracle.
//   Impl::Fast ops/cpu/<op>.cpp   BLAS / FFTW / OpenMP on the CPU.
//   Device::Cuda  ops/cuda/<op>.cu  with Impl::Fast (the oracle runs on the CPU only): bf16
//                 activations and weights, fp32 accumulation and parameter gradients.
// Kernels take raw pointers and sizes (llm.c style) and are declared at the bottom of the
// op's header: in namespaces ref and cpu for float and double, in namespace cuda for the dtype
// combinations the op's Signature list accepts on Device::Cuda.
#pragma once
#include <array>
#include <string>

#include "fela/core/error.h"
#include "fela/core/tensor.h"

namespace fela::ops {

enum class Impl { Fast, Ref };

// How an op delivers an activation gradient: written, or added to what the buffer holds (for an
// input that feeds several branches, e.g. the residual stream).
enum class GradMode { Write, Add };

// Calls f.template operator()<T>() with T = float or double, as dt says.
template <class F>
void dispatch_float(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::F32: f.template operator()<float>(); return;
    case DType::F64: f.template operator()<double>(); return;
    default: fail("[", op, "] unsupported dtype ", dtype_name(dt));
  }
}

// One tensor argument of an op call, named for error messages. A null tensor is an optional
// argument that was not given (for example linear_backward without dW): it matches anything.
struct Arg {
  const char* name;
  const Tensor* tensor;
};

// A combination of dtypes that an op accepts on one device, one per argument in the order the
// op lists them, e.g. Signature(Device::Cuda, BF16, BF16, F32) for (x, w, y).
struct Signature {
  static constexpr int kMaxArgs = 8;
  Device device;
  std::array<DType, kMaxArgs> dtypes{};
  int n = 0;
  template <class... D>
  constexpr Signature(Device dev, D... dts) : device(dev), dtypes{dts...}, n(sizeof...(D)) {
    static_assert(sizeof...(D) <= kMaxArgs, "too many op arguments");
  }
};

// Checks that the given tensors live on one device and match one of the op's signatures for
// that device; returns the device. Each op lists every combination it has kernels for, so the
// check and the kernels cannot drift apart.
inline Device check_signature(const char* op, std::initializer_list<Arg> args,
                              std::initializer_list<Signature> accepted) {
  const Arg* first = nullptr;
  for (const Arg& a : args) {
    if (!a.tensor) continue;
    if (!first) first = &a;
    FELA_CHECK(a.tensor->device() == first->tensor->device(), "[", op, "] ", first->name, " is on ",
               device_name(first->tensor->device()), " but ", a.name, " on ",
               device_name(a.tensor->device()));
  }
  if (!first) return Device::Cpu;
  const Device dev = first->tensor->device();
  for (const Signature& s : accepted) {
    if (s.device != dev || s.n != int(args.size())) continue;
    bool match = true;
    int i = 0;
    for (const Arg& a : args) match = match && (!a.tensor || a.tensor->dtype() == s.dtypes[i++]);
    if (match) return dev;
  }
  std::string got, want;
  for (const Arg& a : args)
    if (a.tensor)
      got += detail::concat(got.empty() ? "" : ", ", a.name, " ", dtype_name(a.tensor->dtype()));
  for (const Signature& s : accepted) {
    if (s.device != dev) continue;
    want += want.empty() ? "(" : "; (";
    for (int i = 0; i < s.n; ++i) want += detail::concat(i ? ", " : "", dtype_name(s.dtypes[i]));
    want += ")";
  }
  fail("[", op, "] no ", device_name(dev), " kernel for ", got,
       want.empty() ? std::string("; the op has no kernels there") : "; accepted: " + want);
}

// For tensors on Device::Cuda: the reference implementation runs on the CPU only.
inline void check_cuda_impl(const char* op, Impl impl) {
  FELA_CHECK(impl == Impl::Fast, "[", op, "] Impl::Ref runs on the CPU; copy the tensors there");
}

// What a build without nvcc says when handed CUDA tensors.
[[noreturn]] inline void fail_no_cuda(const char* op) {
  fail("[", op, "] tensors on cuda need a build with the CUDA backend (nvcc)");
}

// Checks that all tensors share x's dtype and live on the CPU (for ops without another backend).
inline void check_same_float(const char* op, std::initializer_list<const Tensor*> ts) {
  const DType dt = (*ts.begin())->dtype();
  for (const Tensor* t : ts) {
    FELA_CHECK(t->dtype() == dt, "[", op, "] mixed dtypes ", dtype_name(dt), " and ",
               dtype_name(t->dtype()));
    FELA_CHECK(t->device() == Device::Cpu, "[", op, "] tensor on a device this build cannot use");
  }
}

}  // namespace fela::ops

// Explicit instantiation of a kernel template for float and double, in its .cpp file.
#define FELA_INSTANTIATE_FLOAT(fn)       \
  template decltype(fn<float>) fn<float>; \
  template decltype(fn<double>) fn<double>;
