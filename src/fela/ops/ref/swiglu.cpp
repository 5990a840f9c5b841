// SwiGLU gate oracle, in double.
#include <cmath>

#include "fela/ops/swiglu.h"

namespace fela::ops::ref {

template <class T>
void swiglu_forward(T* y, const T* a, const T* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double x = a[i], s = 1.0 / (1.0 + std::exp(-x));
    y[i] = T(x * s * double(b[i]));
  }
}

template <class T>
void swiglu_backward(T* da, T* db, const T* dy, const T* a, const T* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double x = a[i], s = 1.0 / (1.0 + std::exp(-x)), g = dy[i], bv = b[i];
    da[i] = T(g * bv * s * (1.0 + x * (1.0 - s)));
    db[i] = T(g * x * s);
  }
}

FELA_INSTANTIATE_FLOAT(swiglu_forward)
FELA_INSTANTIATE_FLOAT(swiglu_backward)

}  // namespace fela::ops::ref
