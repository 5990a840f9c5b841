// Dropout oracle: y[i] = x[i] keep(seed, i) / (1 - p), one element at a time, in double.
#include "fela/ops/dropout.h"

namespace fela::ops::ref {

template <class T>
void dropout_apply(T* y, const T* x, int64_t n, double p, uint64_t seed) {
  for (int64_t i = 0; i < n; ++i)
    y[i] = dropout_keep(seed, uint64_t(i), p) ? T(double(x[i]) / (1.0 - p)) : T(0);
}

FELA_INSTANTIATE_FLOAT(dropout_apply)

}  // namespace fela::ops::ref
