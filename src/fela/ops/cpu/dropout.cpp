// Dropout on the CPU: the mask is a pure function of (seed, index), so elements split across
// threads freely and the result does not depend on the thread count. p = 0 is a copy.
#include "fela/ops/dropout.h"

#include <algorithm>

namespace fela::ops::cpu {

// Below this many elements the loop runs in the calling thread: waking a team costs more.
constexpr int64_t kParallelWork = int64_t(1) << 16;

template <class T>
void dropout_apply(T* y, const T* x, int64_t n, double p, uint64_t seed) {
  if (p == 0) {
    if (y != x) std::copy(x, x + n, y);
    return;
  }
  const double inv = 1.0 / (1.0 - p);
#pragma omp parallel for schedule(static) if (n >= kParallelWork)
  for (int64_t i = 0; i < n; ++i)
    y[i] = dropout_keep(seed, uint64_t(i), p) ? T(double(x[i]) * inv) : T(0);
}

FELA_INSTANTIATE_FLOAT(dropout_apply)

}  // namespace fela::ops::cpu
