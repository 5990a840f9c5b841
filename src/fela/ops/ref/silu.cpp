// SiLU oracle in double. sigmoid(x) = 1 / (1 + exp(-x)) gives 0, not NaN, when exp overflows.
#include "fela/ops/silu.h"

#include <cmath>

namespace fela::ops::ref {

template <class T>
void silu_forward(T* y, const T* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i], s = 1.0 / (1.0 + std::exp(-v));
    y[i] = T(v * s);
  }
}

template <class T>
void silu_backward(T* dx, const T* dy, const T* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i], s = 1.0 / (1.0 + std::exp(-v));
    dx[i] = T(double(dy[i]) * s * (1.0 + v * (1.0 - s)));
  }
}

FELA_INSTANTIATE_FLOAT(silu_forward)
FELA_INSTANTIATE_FLOAT(silu_backward)

}  // namespace fela::ops::ref
