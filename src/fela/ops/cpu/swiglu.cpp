// SwiGLU gate on the CPU: one vectorisable pass, OpenMP over elements.
#include <cmath>

#include "fela/ops/swiglu.h"

namespace fela::ops::cpu {

template <class T>
void swiglu_forward(T* y, const T* a, const T* b, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T x = a[i];
    y[i] = x / (T(1) + std::exp(-x)) * b[i];
  }
}

template <class T>
void swiglu_backward(T* da, T* db, const T* dy, const T* a, const T* b, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T x = a[i], s = T(1) / (T(1) + std::exp(-x)), g = dy[i], bv = b[i];
    da[i] = g * bv * s * (T(1) + x * (T(1) - s));
    db[i] = g * x * s;
  }
}

FELA_INSTANTIATE_FLOAT(swiglu_forward)
FELA_INSTANTIATE_FLOAT(swiglu_backward)

}  // namespace fela::ops::cpu
