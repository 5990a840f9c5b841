// Decay gate oracle, in double. logsigmoid(z) = min(z, 0) - log1p(exp(-|z|)) never overflows.
#include <algorithm>
#include <cmath>

#include "fela/ops/decay_gate.h"

namespace fela::ops::ref {

template <class T>
void decay_gate_forward(T* a, const T* x, const T* b, int64_t R, int64_t n, double normalizer) {
  for (int64_t r = 0; r < R; ++r)
    for (int64_t i = 0; i < n; ++i) {
      const double z = double(x[r * n + i]) + b[i];
      a[r * n + i] = T((std::min(z, 0.0) - std::log1p(std::exp(-std::fabs(z)))) / normalizer);
    }
}

template <class T>
void decay_gate_backward(T* dx, T* db, const T* da, const T* x, const T* b, int64_t R, int64_t n,
                         double normalizer) {
  for (int64_t r = 0; r < R; ++r)
    for (int64_t i = 0; i < n; ++i) {
      const double z = double(x[r * n + i]) + b[i];
      const double g = double(da[r * n + i]) / (1.0 + std::exp(z)) / normalizer;
      dx[r * n + i] = T(g);
      db[i] = T(db[i] + g);
    }
}

FELA_INSTANTIATE_FLOAT(decay_gate_forward)
FELA_INSTANTIATE_FLOAT(decay_gate_backward)

}  // namespace fela::ops::ref
