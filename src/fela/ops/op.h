// What every op shares: the choice of implementation and the dtype dispatch.
//
// An op lives in one header (ops/<op>.h) that states its math, shapes and gradient
// convention once: parameter gradients are accumulated (+=), activation gradients are
// written (=). The public functions take Tensor views, check arguments once, and pick an
// implementation:
//   Impl::Ref  ops/ref/<op>.cpp   plain loops with double accumulation: the oracle.
//   Impl::Fast ops/cpu/<op>.cpp   BLAS / FFTW / OpenMP on the CPU (ops/cuda/ on the GPU).
// Kernels take raw pointers and sizes (llm.c style) and are declared at the bottom of the
// op's header, in namespaces ref and cpu, for float and double.
#pragma once
#include "fela/core/error.h"
#include "fela/core/tensor.h"

namespace fela::ops {

enum class Impl { Fast, Ref };

// Calls f.template operator()<T>() with T = float or double, as dt says.
template <class F>
void dispatch_float(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::F32: f.template operator()<float>(); return;
    case DType::F64: f.template operator()<double>(); return;
    default: fail("[", op, "] unsupported dtype ", dtype_name(dt));
  }
}

// Checks that all tensors share x's dtype and live on the CPU (until a backend takes them).
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
